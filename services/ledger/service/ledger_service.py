"""The ledger's use cases.

Each mutation is one request in a write transaction (shared with concurrent requests, see
`batch_writer`) that:

1. locks what it names: holds and obligations first, then the users' account rows (each kind
   in sorted order; missing accounts are created), and looks up its request id: a stored answer
   is replayed, or refused with REQUEST_ID_REUSED if the request differs,
2. loads what its rule reads, lets the domain decide, and applies the events to the state,
3. stores the changed projections and the answer, then appends the entries, allocating their
   global sequences last, and commits.

A business refusal (FAILED_PRECONDITION) is stored like a success and replayed to retries, so a
retry never turns a refusal into an acceptance after the state has changed. Invalid input and
unknown holds or obligations are not stored: their answer can never change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import structlog

from services.common.clock import Clock
from services.common.errors import FailedPrecondition, NotFound, Unavailable
from services.common.validation import Violations
from services.ledger.domain import commands, reasons, rules, validation
from services.ledger.domain.canonical import request_hash
from services.ledger.domain.checkpoints import (
    HASH_HEX_LENGTH,
    KEY_ID_HEX_LENGTH,
    SIGNATURE_HEX_LENGTH,
    Checkpoint,
    CheckpointProof,
    proof_for,
)
from services.ledger.domain.codec import Plain, to_plain
from services.ledger.domain.events import changes_credit_history
from services.ledger.domain.journal import JournalEntry, expiry_request
from services.ledger.domain.records import ChainHead, Hold, Obligation, UserState
from services.ledger.domain.results import (
    AccountSummary,
    CaptureResult,
    ConsentStatus,
    CreditHistory,
    PartnerStatementsResult,
    SweepResult,
)
from services.ledger.domain.verification import (
    ChainMismatch,
    MismatchKind,
    VerificationReport,
    checkpoint_mismatch,
    first_of,
    request_record_mismatch,
    verify_user,
)
from services.ledger.service.batch_writer import BATCH_WEIGHT_MAX, BatchWriter, WriteJob
from services.ledger.service.checkpoints import checkpoint_of
from services.ledger.service.ids import IdGenerator, RandomIds
from services.ledger.service.notifier import EntryNotifier
from services.ledger.service.page_tokens import (
    EntryPageToken,
    decode_page_token,
    encode_page_token,
)
from services.ledger.service.ports import CheckpointVerifier, LedgerStorage, ReadTransaction
from services.ledger.service.recent_entries import RecentEntries
from services.ledger.service.retry import RetryPolicy, with_retries
from services.ledger.service.typed_entries import TypedEntry, typed_entries
from services.ledger.service.write_unit import RequestScope, WriteUnit

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

ResultT = TypeVar("ResultT")

SWEEP_MAX_HOLDS_DEFAULT = 1000
SWEEP_MAX_HOLDS_LIMIT = 10_000
# Small enough that one sweep transaction holds few account locks for long.
SWEEP_HOLDS_PER_TRANSACTION = 100
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
CREDIT_HISTORY_STATEMENTS_DEFAULT = 12
CREDIT_HISTORY_OBLIGATIONS_MAX = 100
WATCH_PAGE_SIZE = 500
VERIFY_USERS_PER_CHUNK = 500


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """What a watch yields once it has yielded every entry committed before it began."""

    # The newest entry committed when the watch began (0: none).
    global_sequence: int


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: tuple[TypedEntry, ...]
    # Empty when there are no more entries.
    next_page_token: str


class LedgerService:
    """The ledger's use cases over a storage, a clock and an id generator."""

    def __init__(
        self,
        storage: LedgerStorage,
        clock: Clock,
        *,
        ids: IdGenerator | None = None,
        retry: RetryPolicy | None = None,
        notifier: EntryNotifier | None = None,
        watch_poll_interval_s: float = 0.1,
        batch_weight_max: int = BATCH_WEIGHT_MAX,
        checkpoint_verifier: CheckpointVerifier | None = None,
    ) -> None:
        self._storage = storage
        # Checks the signature of a checkpoint given to VerifyChain; None when the ledger runs
        # without a checkpoint key.
        self._checkpoint_verifier = checkpoint_verifier
        self._clock = clock
        self._ids = ids or RandomIds()
        self._retry = retry or RetryPolicy()
        self.notifier = notifier or EntryNotifier()
        self._watch_poll_interval_s = watch_poll_interval_s
        self._recent_entries = RecentEntries(
            storage, capacity=2 * WATCH_PAGE_SIZE, poll_interval_s=watch_poll_interval_s
        )
        self._writer = BatchWriter(
            storage,
            clock,
            self.notifier,
            self._retry,
            batch_weight_max=batch_weight_max,
            batches_running_max=storage.write_concurrency,
        )

    def begin_shutdown(self) -> None:
        """Ends every entry stream (with UNAVAILABLE, so clients resume elsewhere)."""
        self.notifier.close()

    def close(self) -> None:
        """Ends every entry stream and releases the storage."""
        self.begin_shutdown()
        self._storage.close()

    # ------------------------------------------------------------------------------------------
    # Mutations

    def set_waiver_capacity(self, command: commands.SetWaiverCapacity) -> AccountSummary:
        validation.validate_set_waiver_capacity(command)

        def decide(scope: RequestScope) -> AccountSummary:
            scope.unit.load_open_holds(command.user_id)
            state = scope.state(command.user_id)
            scope.record(command.user_id, rules.decide_set_waiver_capacity(state, command))
            return _summary_of(state, scope.now_us)

        return self._write(
            "SetWaiverCapacity", command, AccountSummary, decide, user_ids=(command.user_id,)
        )

    def place_hold(self, command: commands.PlaceHold) -> Hold:
        validation.validate_place_hold(command)

        def decide(scope: RequestScope) -> Hold:
            state = scope.state(command.user_id)
            if rules.needs_open_holds_for_place_hold(state, command):
                scope.unit.load_open_holds(command.user_id)
            hold_id = self._ids.new_hold_id()
            events = rules.decide_place_hold(state, command, scope.now_us, hold_id)
            scope.record(command.user_id, events)
            return state.holds[hold_id]

        return self._write("PlaceHold", command, Hold, decide, user_ids=(command.user_id,))

    def capture_hold(self, command: commands.CaptureHold) -> CaptureResult:
        validation.validate_capture_hold(command)

        def decide(scope: RequestScope) -> CaptureResult:
            state = scope.state(_hold_owner(scope, command.hold_id))
            obligation_id = self._ids.new_obligation_id()
            events = rules.decide_capture_hold(state, command, scope.now_us, obligation_id)
            scope.record(state.user_id, events)
            return CaptureResult(
                hold=state.holds[command.hold_id],
                obligation=state.obligations.get(obligation_id),
            )

        return self._write(
            "CaptureHold", command, CaptureResult, decide, hold_ids=(command.hold_id,)
        )

    def release_hold(self, command: commands.ReleaseHold) -> Hold:
        validation.validate_release_hold(command)

        def decide(scope: RequestScope) -> Hold:
            state = scope.state(_hold_owner(scope, command.hold_id))
            scope.record(state.user_id, rules.decide_release_hold(state, command, scope.now_us))
            return state.holds[command.hold_id]

        return self._write("ReleaseHold", command, Hold, decide, hold_ids=(command.hold_id,))

    def create_obligation(self, command: commands.CreateObligation) -> Obligation:
        validation.validate_create_obligation(command)

        def decide(scope: RequestScope) -> Obligation:
            state = scope.state(command.user_id)
            obligation_id = self._ids.new_obligation_id()
            events = rules.decide_create_obligation(state, command, scope.now_us, obligation_id)
            scope.record(command.user_id, events)
            return state.obligations[obligation_id]

        return self._write(
            "CreateObligation", command, Obligation, decide, user_ids=(command.user_id,)
        )

    def record_payment(self, command: commands.RecordPayment) -> Obligation:
        validation.validate_record_payment(command)

        def decide(scope: RequestScope) -> Obligation:
            state = scope.state(_obligation_owner(scope, command.obligation_id))
            events = rules.decide_record_payment(state, command, scope.now_us)
            scope.record(state.user_id, events)
            return state.obligations[command.obligation_id]

        return self._write(
            "RecordPayment", command, Obligation, decide, obligation_ids=(command.obligation_id,)
        )

    def close_obligation(self, command: commands.CloseObligation) -> Obligation:
        validation.validate_close_obligation(command)

        def decide(scope: RequestScope) -> Obligation:
            state = scope.state(_obligation_owner(scope, command.obligation_id))
            events = rules.decide_close_obligation(state, command, scope.now_us)
            scope.record(state.user_id, events)
            return state.obligations[command.obligation_id]

        return self._write(
            "CloseObligation", command, Obligation, decide, obligation_ids=(command.obligation_id,)
        )

    def reduce_obligation(self, command: commands.ReduceObligation) -> Obligation:
        validation.validate_reduce_obligation(command)

        def decide(scope: RequestScope) -> Obligation:
            state = scope.state(_obligation_owner(scope, command.obligation_id))
            events = rules.decide_reduce_obligation(state, command, scope.now_us)
            scope.record(state.user_id, events)
            return state.obligations[command.obligation_id]

        return self._write(
            "ReduceObligation", command, Obligation, decide, obligation_ids=(command.obligation_id,)
        )

    def record_partner_statements(
        self, command: commands.RecordPartnerStatements
    ) -> PartnerStatementsResult:
        validation.validate_record_partner_statements(command)
        user_ids = tuple(report.user_id for report in command.reports)

        def decide(scope: RequestScope) -> PartnerStatementsResult:
            # Every report is checked before any is recorded: a refusal records nothing.
            for index, report in enumerate(command.reports):
                rules.require_partner_currency(
                    scope.state(report.user_id), report, f"reports[{index}]"
                )
            results = []
            for report in command.reports:
                events, result = rules.decide_partner_report(scope.state(report.user_id), report)
                scope.record(report.user_id, events)
                results.append(result)
            return PartnerStatementsResult(tuple(results))

        return self._write(
            "RecordPartnerStatements",
            command,
            PartnerStatementsResult,
            decide,
            user_ids=user_ids,
            partner_data_user_ids=user_ids,
            weight=len(user_ids),
        )

    def record_consent(self, command: commands.RecordConsent) -> ConsentStatus:
        validation.validate_record_consent(command)

        def decide(scope: RequestScope) -> ConsentStatus:
            state = scope.state(command.user_id)
            scope.record(command.user_id, rules.decide_record_consent(state, command, scope.now_us))
            return ConsentStatus.of(state.account)

        return self._write(
            "RecordConsent", command, ConsentStatus, decide, user_ids=(command.user_id,)
        )

    def attach_statement(self, command: commands.AttachStatement) -> Obligation:
        validation.validate_attach_statement(command)

        def decide(scope: RequestScope) -> Obligation:
            # Another user's obligation is answered as one that does not exist, so that a user
            # learns nothing of other users' records.
            owner = _obligation_owner(scope, command.obligation_id)
            if owner != command.user_id:
                raise NotFound("no such obligation", reason=reasons.OBLIGATION_NOT_FOUND)
            state = scope.state(owner)
            events = rules.decide_attach_statement(state, command, scope.now_us)
            scope.record(owner, events)
            return state.obligations[command.obligation_id]

        return self._write(
            "AttachStatement",
            command,
            Obligation,
            decide,
            obligation_ids=(command.obligation_id,),
        )

    def _write(
        self,
        method: str,
        command: commands.MutationCommand,
        result_type: type[ResultT],
        decide: Callable[[RequestScope], ResultT],
        **locks_and_loads: Any,
    ) -> ResultT:
        job = WriteJob(
            method=method,
            request_id=command.request_id,
            request_hash=request_hash(method, _command_plain(command)),
            result_type=result_type,
            decide=decide,
            **locks_and_loads,
        )
        result: ResultT = self._writer.submit(job)
        return result

    def sweep_expired_holds(self, max_holds: int = 0) -> SweepResult:
        """Journals the expiry of open holds past their expiry time, at most `max_holds` of them.

        Safe to run concurrently: each expiry re-checks the hold under its account's lock, so a
        hold resolved meanwhile (by another sweeper or a capture) is skipped, not expired twice.
        """
        violations = Violations()
        if not 0 <= max_holds <= SWEEP_MAX_HOLDS_LIMIT:
            violations.add(
                "max_holds", reasons.VALUE_OUT_OF_RANGE, f"must be 0 to {SWEEP_MAX_HOLDS_LIMIT}"
            )
        violations.raise_if_any()
        max_holds = max_holds or SWEEP_MAX_HOLDS_DEFAULT
        now_us = self._clock.now_us()
        with self._storage.read() as reader:
            candidates = reader.expired_open_holds(now_us, max_holds + 1)
        more_remaining = len(candidates) > max_holds
        candidates = candidates[:max_holds]
        expired_count = 0
        for start in range(0, len(candidates), SWEEP_HOLDS_PER_TRANSACTION):
            chunk = candidates[start : start + SWEEP_HOLDS_PER_TRANSACTION]
            expired_count += with_retries(self._retry, partial(self._expire, chunk, now_us))
        if expired_count:
            log.info("holds_expired", expired_count=expired_count, more_remaining=more_remaining)
        return SweepResult(expired_count=expired_count, more_remaining=more_remaining)

    def _expire(self, holds: Sequence[tuple[str, str]], now_us: int) -> int:
        """Expires the listed holds that are still open, in one transaction of their own. The
        sweeper writes no request record: the hold's own state makes an expiry happen once."""
        with self._storage.write() as transaction:
            unit = WriteUnit(transaction, now_us)
            unit.lock(hold_ids=(hold_id for hold_id, _ in holds))
            expired = 0
            for hold_id, user_id in holds:
                events = rules.decide_expire_hold(unit.state(user_id), hold_id, now_us)
                expiry_request_id, expiry_request_hash = expiry_request(hold_id)
                unit.record(
                    user_id, events, request_id=expiry_request_id, request_hash=expiry_request_hash
                )
                expired += len(events)
            appended = unit.persist()
        if appended:
            self.notifier.published()
        return expired

    # ------------------------------------------------------------------------------------------
    # Reads

    def get_hold(self, hold_id: str) -> Hold:
        _require_id("hold_id", hold_id)
        with self._storage.read() as reader:
            hold = reader.get_hold(hold_id)
        if hold is None:
            raise NotFound("no such hold", reason=reasons.HOLD_NOT_FOUND)
        return hold.as_seen_at(self._clock.now_us())

    def get_obligation(self, obligation_id: str) -> Obligation:
        _require_id("obligation_id", obligation_id)
        with self._storage.read() as reader:
            obligation = reader.get_obligation(obligation_id)
        if obligation is None:
            raise NotFound("no such obligation", reason=reasons.OBLIGATION_NOT_FOUND)
        return obligation

    def get_account_summary(self, user_id: str) -> AccountSummary:
        _require_id("user_id", user_id)
        now_us = self._clock.now_us()
        with self._storage.read() as reader:
            found = reader.get_account(user_id)
            held_minor, open_count = reader.open_holds_summary(user_id, now_us)
        state = UserState.empty(user_id) if found is None else UserState(*found)
        return AccountSummary.of(
            state.account,
            state.chain,
            held_unexpired_minor=held_minor,
            open_unexpired_hold_count=open_count,
        )

    def get_credit_history(
        self, user_id: str, as_of_us: int | None = None, max_statements: int = 0
    ) -> CreditHistory:
        violations = Violations()
        validation.check_credit_history_query(violations, user_id, max_statements)
        violations.raise_if_any()
        as_of_us = self._clock.now_us() if as_of_us is None else as_of_us
        statements_max = max_statements or CREDIT_HISTORY_STATEMENTS_DEFAULT
        with self._storage.read() as reader:
            found = reader.get_account(user_id)
            chain = ChainHead() if found is None else found[1]
            statements = reader.statements_ended_by(user_id, as_of_us, statements_max)
            obligations = reader.obligations_created_by(
                user_id, as_of_us, CREDIT_HISTORY_OBLIGATIONS_MAX
            )
            credit_line = reader.get_credit_line(user_id)
            consent = (
                ConsentStatus.of(UserState.empty(user_id).account)
                if found is None
                else ConsentStatus.of(found[0])
            )
            last_global_sequence = (
                reader.global_sequence_of(user_id, chain.user_sequence)
                if chain.user_sequence
                else 0
            )
        # Business time decides what the history shows (months ended, obligations created by
        # as_of); corrections recorded later are shown, because they say what really happened.
        return CreditHistory(
            user_id=user_id,
            credit_line=credit_line,
            statements=tuple(statements),
            obligations=tuple(obligation.as_of(as_of_us) for obligation in obligations),
            as_of_us=as_of_us,
            last_user_sequence=chain.user_sequence,
            last_global_sequence=last_global_sequence,
            consent=consent,
        )

    def list_entries(
        self, user_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> EntryPage:
        violations = Violations()
        if user_id:
            violations.identifier("user_id", user_id)
        if not 0 <= page_size <= PAGE_SIZE_MAX:
            violations.add("page_size", reasons.VALUE_OUT_OF_RANGE, f"must be 0 to {PAGE_SIZE_MAX}")
        token = (
            decode_page_token(page_token, user_id, violations)
            if page_token
            else EntryPageToken(user_id=user_id, after_global_sequence=0, after_user_sequence=0)
        )
        violations.raise_if_any()
        assert token is not None, "an unreadable page token is a violation"
        page_size = page_size or PAGE_SIZE_DEFAULT
        with self._storage.read() as reader:
            if user_id:
                entries = reader.user_entries_after(
                    user_id, token.after_user_sequence, page_size + 1
                )
            else:
                entries = reader.entries_after(token.after_global_sequence, page_size + 1)
            page = typed_entries(entries[:page_size], reader)
        if len(entries) <= page_size:
            return EntryPage(tuple(page), next_page_token="")
        last = page[-1].entry
        next_token = EntryPageToken(user_id, last.global_sequence, last.user_sequence)
        return EntryPage(tuple(page), next_page_token=encode_page_token(next_token))

    def watch_entries(
        self,
        after_global_sequence: int,
        should_continue: Callable[[], bool],
        *,
        credit_history_only: bool = False,
        report_caught_up: bool = False,
        from_now: bool = False,
    ) -> Iterator[TypedEntry | CaughtUp]:
        """Entries after the given global sequence (or, `from_now`, after the newest committed
        now): the backlog page by page, then new ones as they commit, until `should_continue()`
        turns false or the service closes.

        Global sequences are allocated in commit order, so reading `> last seen` never skips
        an entry that commits later. `credit_history_only` leaves out the entries that do not
        change a user's credit history (`changes_credit_history`); `report_caught_up` yields
        `CaughtUp` once, when every entry committed before the call has been yielded or left
        out.
        """
        violations = Violations()
        if after_global_sequence < 0:
            violations.add(
                "after_global_sequence", reasons.VALUE_OUT_OF_RANGE, "must not be negative"
            )
        elif from_now and after_global_sequence != 0:
            violations.add(
                "after_global_sequence",
                reasons.VALUE_OUT_OF_RANGE,
                "must be 0 when the watch starts from now",
            )
        violations.raise_if_any()
        cursor = after_global_sequence
        catch_up_to: int | None = None
        if report_caught_up or from_now:
            with self._storage.read() as reader:
                head = reader.head_global_sequence()
            cursor = head if from_now else cursor
            catch_up_to = head if report_caught_up else None
        while should_continue():
            if self.notifier.closed:
                # UNAVAILABLE, not a normal end: the client should resume elsewhere from the
                # last entry it processed.
                raise Unavailable(
                    "the ledger is shutting down; resume after the last global_sequence received",
                    reason=reasons.SHUTTING_DOWN,
                )
            if catch_up_to is not None and cursor >= catch_up_to:
                yield CaughtUp(catch_up_to)
                catch_up_to = None
            # Taken before reading, so a commit between the read and the wait is not missed.
            publications_seen = self.notifier.publications
            entries = self._recent_entries.after(cursor, publications_seen, WATCH_PAGE_SIZE)
            if entries is None:  # behind the recent entries: a backlog, read from the journal
                with self._storage.read() as reader:
                    entries = typed_entries(reader.entries_after(cursor, WATCH_PAGE_SIZE), reader)
            if entries:
                assert entries[0].entry.global_sequence > cursor
                if credit_history_only:
                    yield from (
                        typed for typed in entries if changes_credit_history(typed.entry.entry_type)
                    )
                else:
                    yield from entries
                cursor = entries[-1].entry.global_sequence
            else:
                self.notifier.wait_for_publication_after(
                    publications_seen, self._watch_poll_interval_s
                )

    def verify_chain(
        self, user_id: str = "", checkpoint: Checkpoint | None = None
    ) -> VerificationReport:
        """Recomputes every hash and projection of one user (or all) from one snapshot, holds
        the request records against the entries, and, given a checkpoint, every user's chain
        head at its global sequence against its signed Merkle root (whatever `user_id` says:
        the root covers every user)."""
        violations = Violations()
        if user_id:
            violations.identifier("user_id", user_id)
        if checkpoint is not None:
            _check_checkpoint_shape(violations, checkpoint)
        violations.raise_if_any()
        if checkpoint is not None and self._checkpoint_verifier is None:
            raise FailedPrecondition(
                "this ledger has no checkpoint key to check a checkpoint's signature with",
                reason=reasons.CHECKPOINTS_NOT_CONFIGURED,
            )
        with self._storage.read() as reader:
            if user_id:
                report = self._verify_users(reader, [[user_id]])
            else:
                report = _with_journal_size_check(
                    self._verify_users(reader, _user_chunks(reader)), reader
                )
            report = _with_request_records_check(report, reader, user_id)
            if checkpoint is not None:
                report = self._with_checkpoint_check(report, reader, checkpoint)
            return report

    def _with_checkpoint_check(
        self, report: VerificationReport, reader: ReadTransaction, checkpoint: Checkpoint
    ) -> VerificationReport:
        verifier = self._checkpoint_verifier
        assert verifier is not None
        signature_valid = checkpoint.key_id == verifier.key_id and verifier.verify(
            bytes.fromhex(checkpoint.signature), checkpoint.signed_bytes()
        )
        head = reader.head_global_sequence()
        mismatch = checkpoint_mismatch(
            checkpoint,
            signature_valid=signature_valid,
            journal_head_global_sequence=head,
            heads_at_checkpoint=(
                reader.chain_heads_at(checkpoint.global_sequence)
                if signature_valid and checkpoint.global_sequence <= head
                else []
            ),
        )
        first = first_of(report.first_mismatch, mismatch)
        return VerificationReport(report.users_checked, report.entries_checked, first)

    def checkpoint_proof(self, user_id: str, checkpoint_sequence: int = 0) -> CheckpointProof:
        """The proof that the user's chain head at a journaled checkpoint (0: the latest) is a
        leaf of its tree, built from the journal as it is now: if the journal was rewritten
        since, the proof does not lead to the signed root, which is how a holder of the
        checkpoint finds out."""
        violations = Violations()
        violations.identifier("user_id", user_id)
        if checkpoint_sequence < 0:
            violations.add(
                "checkpoint_sequence", reasons.VALUE_OUT_OF_RANGE, "must not be negative"
            )
        violations.raise_if_any()
        with self._storage.read() as reader:
            entry = reader.checkpoint_entry(checkpoint_sequence)
            checkpoint = None if entry is None else checkpoint_of(entry)
            if checkpoint is None:
                raise NotFound("no such checkpoint", reason=reasons.CHECKPOINT_NOT_FOUND)
            leaves = reader.chain_heads_at(checkpoint.global_sequence)
        proof = proof_for(checkpoint, leaves, user_id)
        if proof is None:
            raise NotFound(
                "the user had no entry by the checkpoint", reason=reasons.USER_NOT_IN_CHECKPOINT
            )
        return proof

    def _verify_users(
        self, reader: ReadTransaction, user_chunks: Iterator[list[str]] | list[list[str]]
    ) -> VerificationReport:
        users_checked = 0
        entries_checked = 0
        first: ChainMismatch | None = None
        for user_ids in user_chunks:
            stored = reader.stored_states(user_ids)
            entries_by_user: dict[str, list[JournalEntry]] = {user: [] for user in user_ids}
            for entry in reader.entries_of_users(user_ids):
                entries_by_user[entry.user_id].append(entry)
            for user in user_ids:
                verified = verify_user(user, entries_by_user[user], stored.get(user))
                users_checked += 1
                entries_checked += verified.entries_checked
                mismatch = verified.mismatch
                if mismatch is not None and (
                    first is None or mismatch.sort_key() < first.sort_key()
                ):
                    first = mismatch
        return VerificationReport(users_checked, entries_checked, first)


# ----------------------------------------------------------------------------------------------
# Helpers


def _hold_owner(scope: RequestScope, hold_id: str) -> str:
    owner = scope.unit.hold_owners.get(hold_id)
    if owner is None:
        raise NotFound("no such hold", reason=reasons.HOLD_NOT_FOUND)
    return owner


def _obligation_owner(scope: RequestScope, obligation_id: str) -> str:
    owner = scope.unit.obligation_owners.get(obligation_id)
    if owner is None:
        raise NotFound("no such obligation", reason=reasons.OBLIGATION_NOT_FOUND)
    return owner


def _summary_of(state: UserState, now_us: int) -> AccountSummary:
    open_holds = [hold for hold in state.holds.values() if hold.is_open_at(now_us)]
    return AccountSummary.of(
        state.account,
        state.chain,
        held_unexpired_minor=rules.held_unexpired_minor(state, now_us),
        open_unexpired_hold_count=len(open_holds),
    )


def _command_plain(command: commands.MutationCommand) -> Plain:
    # The request id is the key the hash is stored under, not part of what was asked.
    plain = to_plain(command)
    assert isinstance(plain, dict)
    return {key: value for key, value in plain.items() if key != "request_id"}


def _require_id(field: str, value: str) -> None:
    violations = Violations()
    violations.identifier(field, value)
    violations.raise_if_any()


def _user_chunks(reader: ReadTransaction) -> Iterator[list[str]]:
    after_user_id = ""
    while True:
        user_ids = reader.users_after(after_user_id, VERIFY_USERS_PER_CHUNK)
        if not user_ids:
            return
        yield user_ids
        after_user_id = user_ids[-1]


def _check_checkpoint_shape(violations: Violations, checkpoint: Checkpoint) -> None:
    for field, value in (
        ("checkpoint_sequence", checkpoint.checkpoint_sequence),
        ("global_sequence", checkpoint.global_sequence),
        ("user_count", checkpoint.user_count),
    ):
        if value < 0:
            violations.add(
                f"checkpoint.{field}", reasons.CHECKPOINT_INVALID, "must not be negative"
            )
    for field, text, length in (
        ("merkle_root", checkpoint.merkle_root, HASH_HEX_LENGTH),
        ("signature", checkpoint.signature, SIGNATURE_HEX_LENGTH),
        ("key_id", checkpoint.key_id, KEY_ID_HEX_LENGTH),
    ):
        if len(text) != length or not set(text) <= _LOWER_HEX_DIGITS:
            violations.add(
                f"checkpoint.{field}",
                reasons.CHECKPOINT_INVALID,
                f"must be {length} lower-case hex digits",
            )


_LOWER_HEX_DIGITS = frozenset("0123456789abcdef")


def _with_request_records_check(
    report: VerificationReport, reader: ReadTransaction, user_id: str
) -> VerificationReport:
    """Adds the first disagreement between request records and the entries carrying their ids
    (of the user, or of the whole journal), when it comes before what was found already."""
    found = reader.first_request_disagreement(user_id or None)
    mismatch = None if found is None else request_record_mismatch(found, every_user=not user_id)
    first = first_of(report.first_mismatch, mismatch)
    return VerificationReport(report.users_checked, report.entries_checked, first)


def _with_journal_size_check(
    report: VerificationReport, reader: ReadTransaction
) -> VerificationReport:
    """Adds a SEQUENCE finding when the journal holds more or fewer entries than its head
    allocated (an entry deleted or inserted behind the ledger's back)."""
    size = reader.journal_size()
    consistent = size.entry_count == size.head_global_sequence == report.entries_checked
    if consistent or report.first_mismatch is not None:
        return report
    mismatch = ChainMismatch(
        MismatchKind.SEQUENCE,
        user_id="",
        user_sequence=0,
        global_sequence=0,
        detail=(
            f"the journal holds {size.entry_count} entries but its head allocated"
            f" {size.head_global_sequence} global sequences"
        ),
    )
    return VerificationReport(report.users_checked, report.entries_checked, mismatch)
