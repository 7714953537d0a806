"""An obligation's amount due may be zero: ReduceObligation lowers it, down to what was paid,
which is zero when nothing was. The CHECK constraint `amount_due_minor > 0` becomes
`amount_due_minor >= 0`; `paid_within_due` still keeps what was paid within what is due.

SQLite cannot alter a constraint, so there the table is rebuilt (Alembic's batch mode copies the
rows and recreates the index); PostgreSQL drops and adds the constraint in place.

Revision ID: 0002_amount_due_not_negative
Revises: 0001_initial_schema
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

# At most 32 characters: Alembic's version table holds no longer a revision id.
revision = "0002_amount_due_not_negative"
down_revision = "0001_initial_schema"
branch_labels = None
depends_on = None

POSITIVE = "ck_obligation_amount_due_positive"
NOT_NEGATIVE = "ck_obligation_amount_due_not_negative"


def upgrade() -> None:
    with op.batch_alter_table("obligation") as obligation:
        obligation.drop_constraint(op.f(POSITIVE), type_="check")
        obligation.create_check_constraint(op.f(NOT_NEGATIVE), "amount_due_minor >= 0")


def downgrade() -> None:
    # Fails while an obligation is reduced to zero: such a row has no place in the old schema.
    with op.batch_alter_table("obligation") as obligation:
        obligation.drop_constraint(op.f(NOT_NEGATIVE), type_="check")
        obligation.create_check_constraint(op.f(POSITIVE), "amount_due_minor > 0")
