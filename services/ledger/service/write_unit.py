"""The working set of one write transaction: the users it locked, their states as stored and as
changed, and the journal entries and request records to write.

One transaction may carry several requests (see `batch_writer`): each sees the effects of those
before it, and the difference between the stored and the changed states is written once, at the
end, followed by the journal entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.ledger.domain.events import Event
from services.ledger.domain.journal import NewEntry, chain_events
from services.ledger.domain.projection import apply
from services.ledger.domain.records import CreditLine, HoldState, UserState
from services.ledger.service.ports import StateChanges, StoredRequest, WriteTransaction


class WriteUnit:
    """Loads what rules need, applies the events they decide, and stores the difference.

    `states` are the users' live states; `_stored` mirrors what the database holds, so records
    loaded at any time are known to exist (and are updated, not inserted). A record already in
    the live state is never replaced by a load: the live one may carry this transaction's
    changes.
    """

    def __init__(self, transaction: WriteTransaction, now_us: int) -> None:
        self.transaction = transaction
        self.now_us = now_us
        self.states: dict[str, UserState] = {}
        self.hold_owners: dict[str, str] = {}
        self.obligation_owners: dict[str, str] = {}
        self._stored: dict[str, UserState] = {}
        self._entries: list[NewEntry] = []
        self._requests: list[StoredRequest] = []

    # Loading

    def lock(
        self,
        *,
        hold_ids: Iterable[str] = (),
        obligation_ids: Iterable[str] = (),
        user_ids: Iterable[str] = (),
        request_ids: Iterable[str] = (),
    ) -> dict[str, StoredRequest]:
        """Locks everything the transaction's requests name, in the order every writer uses
        (see `ports.WriteTransaction.lock`), and returns the stored answers by request id."""
        assert not self.states, "a write unit locks once, before anything else"
        locked = self.transaction.lock(
            sorted(set(hold_ids)),
            sorted(set(obligation_ids)),
            sorted(set(user_ids)),
            sorted(set(request_ids)),
        )
        for user_id, state in locked.states.items():
            self.states[user_id] = state
            self._stored[user_id] = state.snapshot()
        for hold in locked.holds:
            self.hold_owners[hold.hold_id] = hold.user_id
            self._adopt(hold.user_id, "holds", hold.hold_id, hold)
        for obligation in locked.obligations:
            self.obligation_owners[obligation.obligation_id] = obligation.user_id
            self._adopt(obligation.user_id, "obligations", obligation.obligation_id, obligation)
        return locked.requests

    def state(self, user_id: str) -> UserState:
        return self.states[user_id]

    def load_open_holds(self, user_id: str) -> None:
        for hold in self.transaction.load_open_holds(user_id):
            self._adopt(hold.user_id, "holds", hold.hold_id, hold)

    def load_partner_data(self, user_ids: Sequence[str]) -> None:
        if not user_ids:
            return
        for statement in self.transaction.load_statements(user_ids):
            self._adopt(statement.user_id, "statements", statement.period, statement)
        for credit_line in self.transaction.load_credit_lines(user_ids):
            self._adopt_credit_line(credit_line)

    def _adopt(self, user_id: str, kind: str, key: object, record: object) -> None:
        live: dict[object, object] = getattr(self.states[user_id], kind)
        if key not in live:
            live[key] = record
            getattr(self._stored[user_id], kind)[key] = record

    def _adopt_credit_line(self, credit_line: CreditLine) -> None:
        live = self.states[credit_line.user_id]
        if live.credit_line is None:
            live.credit_line = credit_line
            self._stored[credit_line.user_id].credit_line = credit_line

    # Recording

    def record(
        self, user_id: str, events: Sequence[Event], *, request_id: str, request_hash: str
    ) -> None:
        """Applies the events to the user's state and chains them onto the user's journal."""
        if not events:
            return
        state = self.states[user_id]
        for event in events:
            apply(state, event)
        entries, state.chain = chain_events(
            state.chain,
            user_id,
            events,
            request_id=request_id,
            request_hash=request_hash,
            recorded_at_us=self.now_us,
        )
        self._entries.extend(entries)

    def add_request(self, request: StoredRequest) -> None:
        self._requests.append(request)

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    def persist(self) -> int:
        """Stores the changed projections and the request records, then, last, the entries
        (appending allocates global sequences and holds the journal head until commit).
        Returns how many entries were appended."""
        changes = StateChanges()
        for user_id, stored in self._stored.items():
            collect_changes(stored, self.states[user_id], changes)
        if changes.is_empty() and not self._requests and not self._entries:
            return 0
        self.transaction.persist(changes, self._requests, self._entries)
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class RequestScope:
    """What one request's rule sees of a shared write unit: entries carry its request id."""

    unit: WriteUnit
    request_id: str
    request_hash: str

    @property
    def now_us(self) -> int:
        return self.unit.now_us

    def state(self, user_id: str) -> UserState:
        return self.unit.state(user_id)

    def record(self, user_id: str, events: Sequence[Event]) -> None:
        self.unit.record(
            user_id, events, request_id=self.request_id, request_hash=self.request_hash
        )


def collect_changes(stored: UserState, live: UserState, changes: StateChanges) -> None:
    """Adds to `changes` every record of `live` that is new or differs from `stored`."""
    assert stored.user_id == live.user_id
    if stored.account != live.account or stored.chain != live.chain:
        changes.accounts.append((live.account, live.chain))
    assert stored.holds.keys() <= live.holds.keys(), "records are never removed"
    for hold_id, hold in live.holds.items():
        previous = stored.holds.get(hold_id)
        if previous is None:
            changes.new_holds.append(hold)
            assert hold.state is HoldState.OPEN, "a hold is resolved in a later request"
        elif previous != hold:
            changes.changed_holds.append(hold)
            if previous.state is not hold.state:
                assert previous.state is HoldState.OPEN, "a hold leaves OPEN exactly once"
                changes.resolved_holds.append(hold)
    for obligation_id, obligation in live.obligations.items():
        previous_obligation = stored.obligations.get(obligation_id)
        if previous_obligation is None:
            changes.new_obligations.append(obligation)
        elif previous_obligation != obligation:
            changes.changed_obligations.append(obligation)
    for period, statement in live.statements.items():
        previous_statement = stored.statements.get(period)
        if previous_statement is None:
            changes.new_statements.append(statement)
        elif previous_statement != statement:
            changes.changed_statements.append(statement)
    if live.credit_line != stored.credit_line:
        assert live.credit_line is not None, "a credit line is never removed"
        if stored.credit_line is None:
            changes.new_credit_lines.append(live.credit_line)
        else:
            changes.changed_credit_lines.append(live.credit_line)
