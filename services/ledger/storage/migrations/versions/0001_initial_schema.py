"""The ledger's initial schema: journal, projections, idempotency records and the journal's
append-only triggers.

Revision ID: 0001_initial_schema
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial_schema"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(128)
HASH = sa.String(64)
CURRENCY = sa.String(3)
STATE = sa.String(16)
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

REFUSAL_MESSAGE = "the journal is append-only"


def upgrade() -> None:
    _create_account()
    _create_journal()
    _create_holds()
    _create_obligations()
    _create_partner_data()
    _create_request_record()
    _create_journal_triggers()


def downgrade() -> None:
    _drop_journal_triggers()
    for table in (
        "request_record",
        "credit_line",
        "statement",
        "obligation",
        "hold_resolution",
        "hold",
        "journal_entry",
        "journal_head",
        "account",
    ):
        op.drop_table(table)


def _create_account() -> None:
    op.create_table(
        "account",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("currency_code", CURRENCY, nullable=False),
        sa.Column("waiver_capacity_minor", sa.BigInteger(), nullable=False),
        sa.Column("held_minor", sa.BigInteger(), nullable=False),
        sa.Column("open_hold_count", sa.BigInteger(), nullable=False),
        sa.Column("outstanding_minor", sa.BigInteger(), nullable=False),
        sa.Column("on_time_count", sa.BigInteger(), nullable=False),
        sa.Column("late_up_to_30_days_count", sa.BigInteger(), nullable=False),
        sa.Column("late_over_30_days_count", sa.BigInteger(), nullable=False),
        sa.Column("defaulted_count", sa.BigInteger(), nullable=False),
        sa.Column("fulfilled_count", sa.BigInteger(), nullable=False),
        sa.Column("last_user_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", HASH, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_account"),
        sa.CheckConstraint(
            "waiver_capacity_minor >= 0", name=op.f("ck_account_capacity_not_negative")
        ),
        sa.CheckConstraint("held_minor >= 0", name=op.f("ck_account_held_not_negative")),
        sa.CheckConstraint(
            "open_hold_count >= 0", name=op.f("ck_account_open_hold_count_not_negative")
        ),
        sa.CheckConstraint(
            "outstanding_minor >= 0", name=op.f("ck_account_outstanding_not_negative")
        ),
        sa.CheckConstraint(
            "on_time_count >= 0 AND late_up_to_30_days_count >= 0"
            " AND late_over_30_days_count >= 0 AND defaulted_count >= 0 AND fulfilled_count >= 0",
            name=op.f("ck_account_counts_not_negative"),
        ),
        sa.CheckConstraint(
            "last_user_sequence >= 0", name=op.f("ck_account_last_user_sequence_not_negative")
        ),
    )


def _create_journal() -> None:
    op.create_table(
        "journal_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_global_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal_head"),
        sa.CheckConstraint("id = 1", name=op.f("ck_journal_head_single_row")),
        sa.CheckConstraint(
            "last_global_sequence >= 0", name=op.f("ck_journal_head_sequence_not_negative")
        ),
    )
    op.execute("INSERT INTO journal_head (id, last_global_sequence) VALUES (1, 0)")
    op.create_table(
        "journal_entry",
        sa.Column("global_sequence", SEQUENCE, autoincrement=False, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("user_sequence", sa.BigInteger(), nullable=False),
        sa.Column("entry_type", sa.String(32), nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("request_id", ID, nullable=False),
        sa.Column("request_hash", HASH, nullable=False),
        sa.Column("previous_hash", HASH, nullable=False),
        sa.Column("hash", HASH, nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("global_sequence", name="pk_journal_entry"),
        sa.UniqueConstraint(
            "user_id", "user_sequence", name="uq_journal_entry_user_id_user_sequence"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["account.user_id"], name="fk_journal_entry_user_id_account"
        ),
        sa.CheckConstraint(
            "global_sequence > 0", name=op.f("ck_journal_entry_global_sequence_positive")
        ),
        sa.CheckConstraint(
            "user_sequence > 0", name=op.f("ck_journal_entry_user_sequence_positive")
        ),
    )


def _create_holds() -> None:
    op.create_table(
        "hold",
        sa.Column("hold_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("currency_code", CURRENCY, nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("reference", ID, nullable=False),
        sa.Column("placed_at_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=False),
        sa.Column("captured_minor", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at_us", sa.BigInteger(), nullable=True),
        sa.Column("obligation_id", ID, nullable=False),
        sa.Column("fulfilled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("hold_id", name="pk_hold"),
        sa.ForeignKeyConstraint(["user_id"], ["account.user_id"], name="fk_hold_user_id_account"),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_hold_amount_positive")),
        sa.CheckConstraint(
            "captured_minor >= 0 AND captured_minor <= amount_minor",
            name=op.f("ck_hold_captured_within_amount"),
        ),
        sa.CheckConstraint(
            "state IN ('OPEN', 'CAPTURED', 'RELEASED', 'EXPIRED')", name=op.f("ck_hold_state_known")
        ),
        sa.CheckConstraint(
            "(state = 'OPEN') = (resolved_at_us IS NULL)",
            name=op.f("ck_hold_resolved_exactly_when_not_open"),
        ),
        sa.CheckConstraint(
            "expires_at_us > placed_at_us", name=op.f("ck_hold_expires_after_placed")
        ),
    )
    op.create_index("ix_hold_user_id_state", "hold", ["user_id", "state"])
    op.create_index(
        "ix_hold_open_expires_at_us",
        "hold",
        ["expires_at_us"],
        sqlite_where=sa.text("state = 'OPEN'"),
        postgresql_where=sa.text("state = 'OPEN'"),
    )
    op.create_table(
        "hold_resolution",
        sa.Column("hold_id", ID, nullable=False),
        sa.Column("resolution", STATE, nullable=False),
        sa.Column("resolved_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hold_id", name="pk_hold_resolution"),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["hold.hold_id"], name="fk_hold_resolution_hold_id_hold"
        ),
        sa.CheckConstraint(
            "resolution IN ('CAPTURED', 'RELEASED', 'EXPIRED')",
            name=op.f("ck_hold_resolution_resolution_known"),
        ),
    )


def _create_obligations() -> None:
    op.create_table(
        "obligation",
        sa.Column("obligation_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("currency_code", CURRENCY, nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("due_at_us", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.String(256), nullable=False),
        sa.Column("reference", ID, nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("hold_id", ID, nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("outcome", STATE, nullable=True),
        sa.Column("days_late", sa.Integer(), nullable=False),
        sa.Column("closed_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("obligation_id", name="pk_obligation"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["account.user_id"], name="fk_obligation_user_id_account"
        ),
        sa.CheckConstraint("amount_due_minor > 0", name=op.f("ck_obligation_amount_due_positive")),
        sa.CheckConstraint(
            "amount_paid_minor >= 0 AND amount_paid_minor <= amount_due_minor",
            name=op.f("ck_obligation_paid_within_due"),
        ),
        sa.CheckConstraint("state IN ('OPEN', 'CLOSED')", name=op.f("ck_obligation_state_known")),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('ON_TIME', 'LATE', 'DEFAULTED')",
            name=op.f("ck_obligation_outcome_known"),
        ),
        sa.CheckConstraint(
            "(state = 'CLOSED') = (outcome IS NOT NULL)",
            name=op.f("ck_obligation_outcome_when_closed"),
        ),
        sa.CheckConstraint("days_late >= 0", name=op.f("ck_obligation_days_late_not_negative")),
    )
    op.create_index(
        "ix_obligation_user_id_created_at_us", "obligation", ["user_id", "created_at_us"]
    )


def _create_partner_data() -> None:
    op.create_table(
        "statement",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("partner_id", ID, nullable=False),
        sa.Column("currency_code", CURRENCY, nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("repayment_status", STATE, nullable=False),
        sa.Column("months_late", sa.Integer(), nullable=False),
        sa.Column("period_end_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "year", "month", name="pk_statement"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["account.user_id"], name="fk_statement_user_id_account"
        ),
        sa.CheckConstraint("month BETWEEN 1 AND 12", name=op.f("ck_statement_month_in_year")),
        sa.CheckConstraint(
            "amount_paid_minor >= 0", name=op.f("ck_statement_amount_paid_not_negative")
        ),
        sa.CheckConstraint(
            "repayment_status IN ('NO_USE', 'PAID_IN_FULL', 'REVOLVING', 'LATE')",
            name=op.f("ck_statement_repayment_status_known"),
        ),
        sa.CheckConstraint(
            "months_late BETWEEN 0 AND 99", name=op.f("ck_statement_months_late_in_range")
        ),
    )
    op.create_table(
        "credit_line",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("partner_id", ID, nullable=False),
        sa.Column("currency_code", CURRENCY, nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_credit_line"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["account.user_id"], name="fk_credit_line_user_id_account"
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_credit_line_amount_positive")),
    )


def _create_request_record() -> None:
    op.create_table(
        "request_record",
        sa.Column("request_id", ID, nullable=False),
        sa.Column("request_hash", HASH, nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("outcome", STATE, nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("error_reason", sa.String(64), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_request_record"),
        sa.CheckConstraint(
            "outcome IN ('SUCCEEDED', 'FAILED')", name=op.f("ck_request_record_outcome_known")
        ),
    )


def _create_journal_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER journal_entry_refuses_{operation.lower()}"
                f" BEFORE {operation} ON journal_entry"
                f" BEGIN SELECT RAISE(ABORT, '{REFUSAL_MESSAGE}'); END"
            )
        return
    op.execute(
        "CREATE FUNCTION journal_entry_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN RAISE EXCEPTION USING MESSAGE = '{REFUSAL_MESSAGE}: ' || TG_OP || ' refused';"
        " END $$"
    )
    op.execute(
        "CREATE TRIGGER journal_entry_refuses_change BEFORE UPDATE OR DELETE ON journal_entry"
        " FOR EACH ROW EXECUTE FUNCTION journal_entry_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER journal_entry_refuses_truncate BEFORE TRUNCATE ON journal_entry"
        " FOR EACH STATEMENT EXECUTE FUNCTION journal_entry_refuse_change()"
    )


def _drop_journal_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS journal_entry_refuses_update")
        op.execute("DROP TRIGGER IF EXISTS journal_entry_refuses_delete")
        return
    op.execute("DROP TRIGGER IF EXISTS journal_entry_refuses_truncate ON journal_entry")
    op.execute("DROP TRIGGER IF EXISTS journal_entry_refuses_change ON journal_entry")
    op.execute("DROP FUNCTION IF EXISTS journal_entry_refuse_change()")
