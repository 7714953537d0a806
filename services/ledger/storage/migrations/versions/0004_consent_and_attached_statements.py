"""A user's consent to be scored on the account (`consent_state`, `consent_since_us`), and the
user's own statement attached to a negative record on the obligation (`attached_statement`,
`attached_statement_at_us`).

Every account that existed had no consent recorded (NOT_GIVEN) and every obligation no
statement, which the columns' defaults say; the journal holds no consent or statement entry yet,
so the projections stay what a rebuild from the journal gives. Adding a column with a default
is done in place on both SQLite and PostgreSQL.

Revision ID: 0004_consent_and_statements
Revises: 0003_request_entry_count
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_consent_and_statements"
down_revision = "0003_request_entry_count"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "account",
        sa.Column("consent_state", sa.String(16), nullable=False, server_default="NOT_GIVEN"),
    )
    op.add_column("account", sa.Column("consent_since_us", sa.BigInteger(), nullable=True))
    op.add_column(
        "obligation",
        sa.Column("attached_statement", sa.Text(), nullable=False, server_default=""),
    )
    op.add_column(
        "obligation", sa.Column("attached_statement_at_us", sa.BigInteger(), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("obligation") as obligation:
        obligation.drop_column("attached_statement_at_us")
        obligation.drop_column("attached_statement")
    with op.batch_alter_table("account") as account:
        account.drop_column("consent_since_us")
        account.drop_column("consent_state")
