"""The schema: the migration builds exactly the models, runs safely more than once (and from
several processes at once), and the database itself refuses impossible rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from services.ledger.storage.migrate import VERSION_TABLE, upgrade
from services.ledger.storage.tables import ledger_metadata

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


def test_the_migration_creates_exactly_the_models(empty_database_url):
    upgrade(empty_database_url)

    engine = create_engine(empty_database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        differences = compare_metadata(context, ledger_metadata)
    engine.dispose()
    assert differences == []


def test_migrating_an_up_to_date_schema_changes_nothing(empty_database_url):
    upgrade(empty_database_url)
    upgrade(empty_database_url)

    engine = create_engine(empty_database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM journal_head")).scalar_one() == 1
    engine.dispose()


@pytest.mark.slow
def test_migrating_from_several_processes_at_once_is_safe(empty_database_url):
    migrate = (
        f"from services.ledger.storage.migrate import upgrade; upgrade({empty_database_url!r})"
    )
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY_ROOT))
    processes = [
        subprocess.Popen([sys.executable, "-c", migrate], env=environment, cwd=REPOSITORY_ROOT)
        for _ in range(3)
    ]
    exit_codes = [process.wait(timeout=120) for process in processes]

    assert exit_codes == [0, 0, 0]
    engine = create_engine(empty_database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM journal_head")).scalar_one() == 1
    engine.dispose()


@pytest.fixture
def account_row(database):
    with database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO account VALUES ('user-1', 'CNY', 100, 0, 0, 0, 0, 0, 0, 0, 0, 0,"
                f" '{'0' * 64}', 'NOT_GIVEN', NULL)"
            )
        )
    return "user-1"


def insert_hold(database, hold_id: str, amount_minor: int) -> None:
    with database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO hold (hold_id, user_id, currency_code, amount_minor, state,"
                " reference, placed_at_us, expires_at_us, captured_minor, resolved_at_us,"
                " obligation_id, fulfilled)"
                " VALUES (:hold_id, 'user-1', 'CNY', :amount, 'OPEN', '', 1, 2, 0, NULL, '', false)"
            ),
            {"hold_id": hold_id, "amount": amount_minor},
        )


def test_the_database_refuses_a_hold_of_no_amount(database, account_row):
    for amount_minor in (0, -1):
        with pytest.raises(IntegrityError):
            insert_hold(database, f"hold-{amount_minor}", amount_minor)


def test_the_database_refuses_a_second_resolution_of_a_hold(database, account_row):
    insert_hold(database, "hold-1", 100)
    resolve = text(
        "INSERT INTO hold_resolution (hold_id, resolution, resolved_at_us)"
        " VALUES ('hold-1', :resolution, 5)"
    )
    with database.begin() as connection:
        connection.execute(resolve, {"resolution": "RELEASED"})

    with pytest.raises(IntegrityError), database.begin() as connection:
        connection.execute(resolve, {"resolution": "CAPTURED"})


def test_the_database_refuses_a_payment_above_the_amount_due(database, account_row):
    with pytest.raises(IntegrityError), database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO obligation (obligation_id, user_id, currency_code, amount_due_minor,"
                " amount_paid_minor, due_at_us, purpose, reference, created_at_us, hold_id,"
                " state, outcome, days_late, closed_at_us)"
                " VALUES ('o-1', 'user-1', 'CNY', 100, 101, 1, '', '', 1, '', 'OPEN', NULL, 0,"
                " NULL)"
            )
        )


def insert_obligation(database, obligation_id: str, amount_due_minor: int) -> None:
    with database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO obligation (obligation_id, user_id, currency_code, amount_due_minor,"
                " amount_paid_minor, due_at_us, purpose, reference, created_at_us, hold_id,"
                " state, outcome, days_late, closed_at_us)"
                " VALUES (:obligation_id, 'user-1', 'CNY', :amount, 0, 1, '', '', 1, '', 'OPEN',"
                " NULL, 0, NULL)"
            ),
            {"obligation_id": obligation_id, "amount": amount_due_minor},
        )


def test_the_database_takes_an_obligation_reduced_to_zero_but_not_below(database, account_row):
    insert_obligation(database, "o-zero", 0)

    with pytest.raises(IntegrityError):
        insert_obligation(database, "o-negative", -1)


def test_the_second_migration_keeps_the_obligations_and_lets_their_amount_due_reach_zero(
    empty_database_url,
):
    upgrade(empty_database_url, "0001_initial_schema")
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO account VALUES ('user-1', 'CNY', 100, 0, 0, 500, 0, 0, 0, 0, 0, 0,"
                f" '{'0' * 64}')"
            )
        )
    insert_obligation(engine, "o-1", 500)
    with pytest.raises(IntegrityError):
        insert_obligation(engine, "o-zero-before", 0)

    upgrade(empty_database_url)

    insert_obligation(engine, "o-zero-after", 0)
    with engine.connect() as connection:
        amounts = connection.execute(
            text("SELECT obligation_id, amount_due_minor FROM obligation ORDER BY obligation_id")
        ).all()
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        differences = compare_metadata(context, ledger_metadata)
    engine.dispose()
    assert [tuple(row) for row in amounts] == [("o-1", 500), ("o-zero-after", 0)]
    # The index the rebuilt table (on SQLite) must keep is among what is compared.
    assert differences == []


def test_the_third_migration_counts_each_request_records_entries(empty_database_url):
    upgrade(empty_database_url, "0002_amount_due_not_negative")
    engine = create_engine(empty_database_url)
    hash_ = "0" * 64
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO account VALUES ('user-1', 'CNY', 100, 0, 0, 0, 0, 0, 0, 0, 0, 3,"
                f" '{hash_}')"
            )
        )
        for sequence, entry_type, request_id in (
            (1, "CAPACITY_SET", "r-1"),
            (2, "HOLD_PLACED", "r-2"),
            (3, "HOLD_EXPIRED", "expiry:h-1"),
        ):
            connection.execute(
                text(
                    f"INSERT INTO journal_entry VALUES ({sequence}, 'user-1', {sequence},"
                    f" '{entry_type}', '{{}}', '{request_id}', '{hash_}', '{hash_}', '{hash_}', 1)"
                )
            )
        for request_id, outcome in (("r-1", "SUCCEEDED"), ("r-2", "SUCCEEDED"), ("r-3", "FAILED")):
            connection.execute(
                text(
                    f"INSERT INTO request_record VALUES ('{request_id}', '{hash_}', 'M',"
                    f" '{outcome}', '', '', '', 1)"
                )
            )

    upgrade(empty_database_url)

    with engine.connect() as connection:
        counts = connection.execute(
            text("SELECT request_id, entry_count FROM request_record ORDER BY request_id")
        ).all()
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        differences = compare_metadata(context, ledger_metadata)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text("UPDATE request_record SET entry_count = 1 WHERE request_id = 'r-3'")
        )
    engine.dispose()
    assert [tuple(row) for row in counts] == [("r-1", 1), ("r-2", 1), ("r-3", 0)]
    assert differences == []


def test_the_fourth_migration_gives_existing_accounts_no_consent_and_obligations_no_statement(
    empty_database_url,
):
    upgrade(empty_database_url, "0003_request_entry_count")
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO account VALUES ('user-1', 'CNY', 100, 0, 0, 500, 0, 0, 0, 0, 0, 0,"
                f" '{'0' * 64}')"
            )
        )
    insert_obligation(engine, "o-1", 500)

    upgrade(empty_database_url)

    with engine.connect() as connection:
        account = connection.execute(
            text("SELECT consent_state, consent_since_us FROM account")
        ).one()
        obligation = connection.execute(
            text("SELECT attached_statement, attached_statement_at_us FROM obligation")
        ).one()
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        differences = compare_metadata(context, ledger_metadata)
    engine.dispose()
    assert tuple(account) == ("NOT_GIVEN", None)
    assert tuple(obligation) == ("", None)
    assert differences == []
