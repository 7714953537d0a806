"""Each request record says how many journal entries its request wrote (`entry_count`), so that
VerifyChain can hold the records against the journal: every entry a request wrote carries its
request id, and a record deleted or edited behind the ledger's back (which would let a retried
request apply twice) no longer goes unnoticed.

Existing records get the count of the entries that carry their request id, the sweeper's
expiries aside (those carry "expiry:<hold_id>" and have no record), counted in one pass over the
journal. A refusal writes nothing, which a CHECK constraint now says.

SQLite cannot alter a column's default or add a constraint in place, so there the table is
rebuilt (Alembic's batch mode); PostgreSQL alters it.

Revision ID: 0003_request_entry_count
Revises: 0002_amount_due_not_negative
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_request_entry_count"
down_revision = "0002_amount_due_not_negative"
branch_labels = None
depends_on = None

NOT_NEGATIVE = "ck_request_record_entry_count_not_negative"
REFUSAL_WRITES_NOTHING = "ck_request_record_refusal_writes_nothing"


def upgrade() -> None:
    with op.batch_alter_table("request_record") as request_record:
        request_record.add_column(
            sa.Column("entry_count", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE request_record SET entry_count = counted.entry_count"
        " FROM (SELECT request_id, count(*) AS entry_count FROM journal_entry"
        " WHERE entry_type <> 'HOLD_EXPIRED' GROUP BY request_id) AS counted"
        " WHERE counted.request_id = request_record.request_id"
    )
    with op.batch_alter_table("request_record") as request_record:
        request_record.alter_column("entry_count", server_default=None)
        request_record.create_check_constraint(op.f(NOT_NEGATIVE), "entry_count >= 0")
        request_record.create_check_constraint(
            op.f(REFUSAL_WRITES_NOTHING), "outcome = 'SUCCEEDED' OR entry_count = 0"
        )


def downgrade() -> None:
    with op.batch_alter_table("request_record") as request_record:
        request_record.drop_constraint(op.f(REFUSAL_WRITES_NOTHING), type_="check")
        request_record.drop_constraint(op.f(NOT_NEGATIVE), type_="check")
        request_record.drop_column("entry_count")
