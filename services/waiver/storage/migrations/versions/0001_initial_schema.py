"""The waiver's first schema: orders, scenario policies, request records, user capacities.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "waiver_order",
        sa.Column("merchant_id", sa.String(128), nullable=False),
        sa.Column("out_order_no", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("create_time_us", sa.BigInteger(), nullable=True),
        sa.Column("next_change_us", sa.BigInteger(), nullable=True),
        sa.Column("pending_since_us", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("create_attempt", sa.Integer(), nullable=False),
        sa.Column("order_json", sa.Text(), nullable=True),
        sa.Column("pending_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("merchant_id", "out_order_no", name="pk_waiver_order"),
    )
    op.create_index(
        "ix_waiver_order_listing", "waiver_order", ["merchant_id", "create_time_us", "out_order_no"]
    )
    op.create_index(
        "ix_waiver_order_listing_by_state",
        "waiver_order",
        ["merchant_id", "state", "create_time_us", "out_order_no"],
    )
    op.create_index("ix_waiver_order_next_change_us", "waiver_order", ["next_change_us"])
    op.create_index("ix_waiver_order_pending_since_us", "waiver_order", ["pending_since_us"])
    op.create_table(
        "scenario_policy",
        sa.Column("merchant_id", sa.String(128), nullable=False),
        sa.Column("scenario_id", sa.String(64), nullable=False),
        sa.Column("policy_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "scenario_id", name="pk_scenario_policy"),
    )
    op.create_table(
        "waiver_request",
        sa.Column("merchant_id", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("out_order_no", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_reason", sa.String(64), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("error_state", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "request_id", name="pk_waiver_request"),
    )
    op.create_table(
        "user_capacity",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("band", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("capacity_minor", sa.BigInteger(), nullable=False),
        sa.Column("change_number", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_capacity"),
    )


def downgrade() -> None:
    op.drop_table("user_capacity")
    op.drop_table("waiver_request")
    op.drop_table("scenario_policy")
    op.drop_table("waiver_order")
