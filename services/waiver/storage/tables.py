"""The waiver's tables. Queries use their SQLAlchemy Core form (`Model.__table__`).

An order's row keeps the order as a JSON document (`order_json`, the settled order; `pending_json`,
the change in flight) beside the columns queries need: its state, when it was created, when its
next time-driven change is due, when its change in flight started, and the version that orders
concurrent writers. Times are integer microseconds since the Unix epoch (UTC).

The migration in `migrations/versions` creates exactly these tables; a test compares the two.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
waiver_metadata = MetaData(naming_convention=NAMING_CONVENTION)
ID_LENGTH = 128


class WaiverTable(SQLModel, registry=registry(metadata=waiver_metadata)):
    """Base of the waiver's tables: their own metadata, apart from other services' tables."""


def _key(length: int = ID_LENGTH) -> Any:
    return Field(sa_column=Column(String(length), primary_key=True, nullable=False))


def _text(length: int = ID_LENGTH, *, nullable: bool = False) -> Any:
    return Field(sa_column=Column(String(length), nullable=nullable))


def _integer(*, nullable: bool = False) -> Any:
    return Field(sa_column=Column(BigInteger, nullable=nullable))


class OrderRow(WaiverTable, table=True):
    __tablename__: ClassVar[str] = "waiver_order"
    __table_args__ = (
        Index("ix_waiver_order_listing", "merchant_id", "create_time_us", "out_order_no"),
        Index(
            "ix_waiver_order_listing_by_state",
            "merchant_id",
            "state",
            "create_time_us",
            "out_order_no",
        ),
        Index("ix_waiver_order_next_change_us", "next_change_us"),
        Index("ix_waiver_order_pending_since_us", "pending_since_us"),
    )

    merchant_id: str = _key()
    out_order_no: str = _key(64)
    user_id: str = _text()
    fingerprint: str = _text(64)
    # The settled order's state; NULL until the order's creation has finished.
    state: str | None = _text(32, nullable=True)
    create_time_us: int | None = _integer(nullable=True)
    next_change_us: int | None = _integer(nullable=True)
    pending_since_us: int | None = _integer(nullable=True)
    version: int = _integer()
    create_attempt: int = Field(sa_column=Column(Integer, nullable=False))
    order_json: str | None = Field(sa_column=Column(Text, nullable=True))
    pending_json: str | None = Field(sa_column=Column(Text, nullable=True))


class PolicyRow(WaiverTable, table=True):
    __tablename__: ClassVar[str] = "scenario_policy"

    merchant_id: str = _key()
    scenario_id: str = _key(64)
    policy_json: str = Field(sa_column=Column(Text, nullable=False))


class RequestRow(WaiverTable, table=True):
    __tablename__: ClassVar[str] = "waiver_request"

    merchant_id: str = _key()
    request_id: str = _key()
    method: str = _text(64)
    request_hash: str = _text(64)
    out_order_no: str = _text(64)
    outcome: str = _text(16)
    error_reason: str = _text(64)
    error_message: str = Field(sa_column=Column(Text, nullable=False))
    error_state: str = _text(64)


class CapacityRow(WaiverTable, table=True):
    __tablename__: ClassVar[str] = "user_capacity"

    user_id: str = _key()
    band: str = _text(32)
    model_version: str = _text(64)
    capacity_minor: int = _integer()
    change_number: int = _integer()
    applied: bool = Field(sa_column=Column(Boolean, nullable=False))


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


order_table = _table(OrderRow)
policy_table = _table(PolicyRow)
request_table = _table(RequestRow)
capacity_table = _table(CapacityRow)
