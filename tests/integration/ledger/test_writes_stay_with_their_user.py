"""What deploy/SCALING.md's plan for the ledger past one PostgreSQL primary rests on: a write for
one user changes only that user's rows, so with the user as the distribution column every such
transaction stays on one shard.

Each write runs alone against a database holding other users' rows too; the rows it inserted,
changed or deleted are compared with a snapshot of every table taken before. Each changed row
must belong to the user: by its user_id column, or for a hold's resolution by its hold's user.
Two exceptions are the ones the plan names, and no others: the single row of `journal_head`
(the global entry sequence) and the write's own `request_record` row (keyed by its request id,
to be keyed by user and request id on a distributed engine). A new global row or a write that
reaches another user's rows fails here, and the plan must be revisited.

Batches (partner statements, the expiry sweep) touch several users by nature: every row they
change belongs to one of the users they name, so they split by user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sesame.ledger.v1 import ledger_service_pb2 as pb
from sqlalchemy import Engine, select

from services.ledger.storage.tables import ledger_metadata

Row = tuple[str, tuple[Any, ...]]  # (table, the row's values in column order)
# Rows no user owns, each the plan's to deal with (deploy/SCALING.md).
GLOBAL_TABLES = frozenset({"journal_head"})
REQUEST_TABLE = "request_record"
# A hold's resolution is the hold's user's: it is keyed by hold_id alone.
BY_HOLD = {"hold_resolution": "hold_id"}
GLOBAL, REQUEST, UNATTRIBUTED = "(global)", "(request)", "(unattributed)"
BYSTANDER = "bystander"


def snapshot(database: Engine) -> set[Row]:
    rows: set[Row] = set()
    with database.connect() as connection:
        for table in ledger_metadata.sorted_tables:
            for row in connection.execute(select(table)):
                rows.add((table.name, tuple(row)))
    return rows


def column_index(table_name: str, column: str) -> int:
    return [c.name for c in ledger_metadata.tables[table_name].columns].index(column)


@dataclass(frozen=True)
class Changes:
    """The rows one write inserted, changed (old and new values) or deleted."""

    rows: set[Row]
    hold_users: dict[str, str]

    def by_owner(self) -> dict[str, set[Row]]:
        owners: dict[str, set[Row]] = {}
        for table, values in self.rows:
            if table in GLOBAL_TABLES:
                owner = GLOBAL
            elif table == REQUEST_TABLE:
                owner = REQUEST
            elif table in BY_HOLD:
                hold_id = values[column_index(table, BY_HOLD[table])]
                owner = self.hold_users.get(hold_id, UNATTRIBUTED)
            elif "user_id" in ledger_metadata.tables[table].columns:
                owner = values[column_index(table, "user_id")]
            else:
                owner = UNATTRIBUTED
            owners.setdefault(owner, set()).add((table, values))
        return owners

    def users(self) -> set[str]:
        return set(self.by_owner()) - {GLOBAL, REQUEST}


def changes_of(database: Engine, write: Callable[[], object]) -> Changes:
    before = snapshot(database)
    write()
    after = snapshot(database)
    hold_users = {
        values[column_index("hold", "hold_id")]: values[column_index("hold", "user_id")]
        for table, values in before | after
        if table == "hold"
    }
    return Changes(before ^ after, hold_users)


def assert_changes_only(changes: Changes, users: set[str], *, request_records: int) -> None:
    owners = changes.by_owner()
    assert UNATTRIBUTED not in owners, owners.get(UNATTRIBUTED)
    assert changes.users() == users, changes.users()
    # The write's own idempotency record, and nothing else keyed by request id.
    assert len(owners.get(REQUEST, set())) == request_records, owners.get(REQUEST)
    assert {table for table, _ in owners.get(GLOBAL, set())} <= GLOBAL_TABLES


def with_a_bystander(client: Any) -> None:
    """Another user's capacity, hold and obligation, which every write below leaves alone."""
    client.set_capacity(BYSTANDER, 100_000)
    client.place_hold(BYSTANDER, 10_000)
    client.create_obligation(BYSTANDER, 5_000)


def test_each_single_user_write_changes_only_its_users_rows(client: Any, database: Engine) -> None:
    with_a_bystander(client)
    user = "single"

    def only_the_user(write: Callable[[], object]) -> Any:
        answers: list[object] = []
        changes = changes_of(database, lambda: answers.append(write()))
        assert_changes_only(changes, {user}, request_records=1)
        return answers[0]

    only_the_user(lambda: client.set_capacity(user, 100_000))
    first = only_the_user(lambda: client.place_hold(user, 10_000))
    second = only_the_user(lambda: client.place_hold(user, 10_000))
    only_the_user(lambda: client.capture(first.hold_id, 4_000))
    only_the_user(lambda: client.release(second.hold_id, fulfilled=True))
    obligation = only_the_user(lambda: client.create_obligation(user, 5_000))
    only_the_user(lambda: client.pay(obligation.obligation_id, 1_000))
    only_the_user(lambda: client.reduce(obligation.obligation_id, 3_000))
    only_the_user(lambda: client.pay(obligation.obligation_id, 2_000))
    only_the_user(
        lambda: client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME)
    )


def test_a_partner_batch_changes_only_the_rows_of_the_users_it_reports(
    client: Any, database: Engine
) -> None:
    with_a_bystander(client)
    users = {"partner-user-1", "partner-user-2"}
    reports = [
        pb.PartnerReport(
            user_id=user_id,
            partner_id="bank",
            credit_line=client.money(500_000),
            statements=[
                pb.Statement(
                    period=pb.StatementPeriod(year=2005, month=month),
                    balance=client.money(100_000),
                    amount_paid=client.money(10_000),
                    repayment_status=pb.REPAYMENT_STATUS_REVOLVING,
                )
                for month in (8, 9)
            ],
        )
        for user_id in sorted(users)
    ]
    request = pb.RecordPartnerStatementsRequest(request_id=client.new_request_id(), reports=reports)
    changes = changes_of(database, lambda: client.call("RecordPartnerStatements", request))
    # Every reported user's rows change, nobody else's: the batch splits into a write per user.
    assert_changes_only(changes, users, request_records=1)


def test_the_expiry_sweep_changes_only_the_rows_of_users_whose_holds_expired(
    client: Any, database: Engine
) -> None:
    with_a_bystander(client)
    users = {"expiring-1", "expiring-2"}
    for user_id in sorted(users):
        client.set_capacity(user_id, 100_000)
        client.place_hold(user_id, 10_000, expires_in_s=60)
    client.clock.advance(seconds=120)
    changes = changes_of(database, lambda: client.sweep(100))
    assert_changes_only(changes, users, request_records=0)
