"""The waiver's storage ports over SQLAlchemy Core, on SQLite or PostgreSQL alike.

Every write runs in one short transaction (on SQLite `BEGIN IMMEDIATE`, see
`services.common.database`). Concurrent writers of one order are ordered by its version column:
an update names the version it read and changes nothing when the row has moved on
(`OrderConflict`). Reads outside a transaction see the latest committed rows.

The statements every order step runs are built once, with bound parameters, rather than per
call: SQLAlchemy then builds each expression and computes its cache key once, not on every call.

On PostgreSQL a step's round trips to the database are kept few. Under READ COMMITTED
(`services.common.database`) a statement sees the rows committed when it starts, whether or not
it runs inside a transaction, so reads need no transaction of their own: every connection stays
in autocommit for as long as it lives (none is switched in and out of it per use, which costs
the service CPU on every checkout and return), reads run on their own (one round trip each
instead of BEGIN, the read and ROLLBACK), and a transaction sends its own BEGIN at its first
write, the reads before it running on their own, as they would have seen the same rows inside
it; a transaction that only reads never begins. Plain
reads take no locks a transaction would keep; a read that must lock rows belongs after a write
or goes through `_write`. SQLite keeps `BEGIN IMMEDIATE` first: there, the transaction's write
lock is what keeps other writers out between its reads and its writes. An insert that may find
its key taken skips it (ON CONFLICT DO NOTHING) and says so by its row count, on either
database, instead of failing in a savepoint.

An order step's writes need no transaction on PostgreSQL either (`SqlWaiverStorage._write_order`):
the order's row and the record of the request that changes it are one statement, the record
inserted for the row the write returns (`_recording_request`), so that a single statement in
autocommit writes both or neither, and commits them as durably as COMMIT would. A step that
records a change in flight leaves the settled order as it is (`save_pending`) rather than
writing it again unchanged.

On PostgreSQL the statements of every order step (the step's read, and the order's and the
request record's writes) go to psycopg directly, as SQLAlchemy compiled them once for it
(`_driver_sql`): run through SQLAlchemy, each would cost the service about as much CPU again in
SQLAlchemy's execution machinery as in the driver. Their parameters and columns need no
conversion on this dialect (strings, integers and booleans). Statements sent this way are not
seen by SQLAlchemy's transaction, so a transaction is committed or rolled back by the driver.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import (
    Connection,
    CursorResult,
    Executable,
    Insert,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeoutError
from sqlalchemy.sql import ClauseElement

from services.common.database import POSTGRESQL_ISOLATION_LEVEL, create_service_engine
from services.common.errors import Unavailable
from services.waiver.domain import reasons
from services.waiver.domain.order import Order, OrderState
from services.waiver.domain.policy import ScenarioPolicy
from services.waiver.service.ports import (
    CapacityRecord,
    OrderConflict,
    OrderContext,
    RequestRecord,
    StoredOrder,
)
from services.waiver.storage import codec
from services.waiver.storage.tables import (
    capacity_table,
    order_table,
    policy_table,
    request_table,
)

_CONNECTION_SQLSTATE_PREFIXES = ("08", "57P")
_BEGIN = f"BEGIN ISOLATION LEVEL {POSTGRESQL_ISOLATION_LEVEL}"
RecordT = TypeVar("RecordT", RequestRecord, CapacityRecord)


def _inserts_if_new(table: Table) -> dict[str, Executable]:
    """An insert that skips a row whose key is taken, by dialect; its row count says which
    (SQLAlchemy keeps an insert's row count only when asked)."""
    return {
        "postgresql": postgresql.insert(table)
        .on_conflict_do_nothing()
        .execution_options(preserve_rowcount=True),
        "sqlite": sqlite.insert(table)
        .on_conflict_do_nothing()
        .execution_options(preserve_rowcount=True),
    }


# The statements of every order step, built once (see the module's docstring). A WHERE clause's
# parameters are named apart from the columns, whose values come from the parameters given.
_ORDER_KEY = (order_table.c.merchant_id == bindparam("key_merchant_id")) & (
    order_table.c.out_order_no == bindparam("key_out_order_no")
)
_SELECT_ORDER = select(order_table).where(_ORDER_KEY)
_INSERT_ORDER_IF_NEW = _inserts_if_new(order_table)
_UPDATE_ORDER = update(order_table).where(
    _ORDER_KEY & (order_table.c.version == bindparam("expected_version"))
)
# The row's change in flight alone (`SqlWaiverStorage.save_pending`): the settled order, and the
# columns that follow from it, stay as they are. Its parameters are the columns' names after
# `_NEW`.
_PENDING_COLUMNS = ("pending_since_us", "pending_json", "version", "create_attempt")
_NEW = "new_"
_UPDATE_PENDING = (
    update(order_table)
    .where(_ORDER_KEY & (order_table.c.version == bindparam("expected_version")))
    .values({name: bindparam(f"{_NEW}{name}") for name in _PENDING_COLUMNS})
)
_SELECT_REQUEST = select(request_table).where(
    (request_table.c.merchant_id == bindparam("key_merchant_id"))
    & (request_table.c.request_id == bindparam("key_request_id"))
)
_INSERT_REQUEST_IF_NEW = _inserts_if_new(request_table)
_POLICY_KEY = (policy_table.c.merchant_id == bindparam("key_merchant_id")) & (
    policy_table.c.scenario_id == bindparam("key_scenario_id")
)
_SELECT_POLICY = select(policy_table.c.policy_json).where(_POLICY_KEY)
_SELECT_CAPACITY = select(capacity_table).where(
    capacity_table.c.user_id == bindparam("key_user_id")
)
_INSERT_CAPACITY_IF_NEW = _inserts_if_new(capacity_table)
# The parameters of a request's record written with an order's row: its columns' names after
# `_REQUEST`.
_REQUEST = "request_"


def _recording_request(order_write: Insert | Update) -> Executable:
    """`order_write` (one order's row) and the insert of a request's record in one statement,
    on PostgreSQL: the record is inserted for the row the write returns, so both are written or,
    when the key is taken or the row has moved on, neither. A record whose id is taken fails the
    whole statement (a unique violation), the order's write with it."""
    written = order_write.returning(order_table.c.version).cte("written_order")
    record = select(
        *(bindparam(f"{_REQUEST}{column.name}", type_=column.type) for column in request_table.c)
    ).select_from(written)
    return (
        insert(request_table)
        .from_select([column.name for column in request_table.c], record)
        .add_cte(written)
    )


_INSERT_ORDER_RECORDING_REQUEST = _recording_request(
    postgresql.insert(order_table).on_conflict_do_nothing()
)
_UPDATE_ORDER_RECORDING_REQUEST = _recording_request(_UPDATE_ORDER)
_UPDATE_PENDING_RECORDING_REQUEST = _recording_request(_UPDATE_PENDING)


def _prefixed(table: Table, prefix: str) -> list[Any]:
    return [column.label(f"{prefix}{column.name}") for column in table.c]


# A step's reads in one statement: each table joined on its own key to a single row, so every
# part is present or NULL on its own.
_ANCHOR = select(literal(1).label("anchor")).subquery("anchor")
_SELECT_CONTEXT = select(
    *_prefixed(order_table, "order_"),
    *_prefixed(request_table, "request_"),
    policy_table.c.policy_json.label("policy_policy_json"),
    *_prefixed(capacity_table, "capacity_"),
).select_from(
    _ANCHOR.outerjoin(order_table, _ORDER_KEY)
    .outerjoin(
        request_table,
        (request_table.c.merchant_id == bindparam("key_merchant_id"))
        & (request_table.c.request_id == bindparam("key_request_id")),
    )
    .outerjoin(policy_table, _POLICY_KEY)
    .outerjoin(capacity_table, capacity_table.c.user_id == bindparam("key_user_id"))
)
# Its columns' names in the order it selects them: a row from the driver is named by these, not by
# the cursor's description, which psycopg builds anew for every result.
_CONTEXT_COLUMN_NAMES = tuple(column.name for column in _SELECT_CONTEXT.selected_columns)
_UPDATE_CAPACITY = update(capacity_table).where(
    (capacity_table.c.user_id == bindparam("key_user_id"))
    & (capacity_table.c.change_number == bindparam("previous_change_number"))
    & (capacity_table.c.applied == bindparam("previous_applied"))
)


@dataclass(frozen=True)
class _DriverStatement:
    """A statement as psycopg takes it: its text, and the values of parameters bound in it."""

    sql: str
    bound: dict[str, Any]


_POSTGRESQL_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


@cache
def _driver_sql(statement: Executable) -> _DriverStatement:
    compiled = cast(ClauseElement, statement).compile(dialect=_POSTGRESQL_DIALECT)
    bound = {name: value for name, value in compiled.params.items() if value is not None}
    return _DriverStatement(compiled.string, bound)


def _driver(connection: Connection) -> psycopg.Connection[Any]:
    driver_connection = connection.connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection), "PostgreSQL through psycopg 3"
    return driver_connection


def _driver_execute(
    connection: Connection, statement: Executable, parameters: dict[str, Any]
) -> psycopg.Cursor[Any]:
    """Runs one of the statements built once above through psycopg, on PostgreSQL."""
    driver_statement = _driver_sql(statement)
    values = {**driver_statement.bound, **parameters} if driver_statement.bound else parameters
    return _driver(connection).execute(driver_statement.sql, values)


class SqlWaiverStorage:
    def __init__(
        self, database_url: str, *, pool_size: int = 10, pool_timeout_s: float = 10.0
    ) -> None:
        # See the module's docstring: on PostgreSQL, connections live in autocommit.
        self._engine = create_service_engine(
            database_url,
            pool_size=pool_size,
            pool_timeout_s=pool_timeout_s,
            postgresql_isolation_level="AUTOCOMMIT",
        )
        self._reads_in_autocommit = self._engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[SqlWaiverTransaction]:
        with _translated_errors(), self._engine.connect() as connection:
            if not self._reads_in_autocommit:
                with connection.begin():
                    yield SqlWaiverTransaction(connection, begin_at_first_write=False)
                return
            try:
                yield SqlWaiverTransaction(connection, begin_at_first_write=True)
            except BaseException:
                # psycopg sends ROLLBACK, or COMMIT below, only when a transaction is open.
                _driver(connection).rollback()
                connection.rollback()
                raise
            _driver(connection).commit()
            connection.commit()

    def insert_order(self, stored: StoredOrder, request: RequestRecord) -> None:
        """A new order's row and the record of the request that creates it, together, in a
        transaction of their own (see `_write_order`)."""
        self._write_order(
            lambda transaction: transaction.insert_order(stored),
            _INSERT_ORDER_IF_NEW["postgresql"],
            _INSERT_ORDER_RECORDING_REQUEST,
            lambda: _order_values(stored),
            request,
        )

    def update_order(
        self, stored: StoredOrder, expected_version: int, request: RequestRecord | None = None
    ) -> None:
        """Writes `stored` over the row at `expected_version`, with the request's record if one
        is given, in a transaction of their own (see `_write_order`)."""
        self._write_order(
            lambda transaction: transaction.update_order(stored, expected_version),
            _UPDATE_ORDER,
            _UPDATE_ORDER_RECORDING_REQUEST,
            lambda: _update_values(stored, expected_version),
            request,
        )

    def save_pending(
        self, stored: StoredOrder, expected_version: int, request: RequestRecord | None = None
    ) -> None:
        """`update_order` for a row whose settled order has not changed since it was read at
        `expected_version`: only its change in flight, version and create attempt are written,
        so the settled order is not encoded and sent again."""
        assert stored.version == expected_version + 1
        self._write_order(
            lambda transaction: transaction.save_pending(stored, expected_version),
            _UPDATE_PENDING,
            _UPDATE_PENDING_RECORDING_REQUEST,
            lambda: _pending_values(stored, expected_version),
            request,
        )

    def _write_order(
        self,
        in_transaction: Callable[[SqlWaiverTransaction], None],
        alone: Executable,
        recording_request: Executable,
        values: Callable[[], dict[str, Any]],
        request: RequestRecord | None,
    ) -> None:
        """One write of an order's row (`in_transaction` as a transaction's step) and, when
        `request` is given, the request's record: both or neither. `OrderConflict` when the key
        is taken, the row has moved on, or the request id was recorded for another request.

        On PostgreSQL this is one statement in autocommit (`alone`, or `recording_request` with
        the record; `values` gives the parameters): committed as durably as by COMMIT before it
        answers, without BEGIN and COMMIT around it or a statement for each row. A record whose
        id is taken already fails that statement whole: then a transaction writes both, as
        SQLite always does, and tells a retry of the same request (the creation of an order
        undone meanwhile, whose retry creates it again) from another request's id."""
        if self._reads_in_autocommit:
            statement, parameters = alone, values()
            if request is not None:
                statement, parameters = recording_request, parameters | _request_values(request)
            try:
                with self._reading() as connection:  # in autocommit: each statement commits
                    written = _driver_execute(connection, statement, parameters).rowcount
            except psycopg.errors.UniqueViolation:
                pass  # the request id is taken: written below, as on SQLite
            else:
                if written != 1:
                    raise OrderConflict("the order's key is taken or its row moved on")
                return
        with self.transaction() as transaction:
            in_transaction(transaction)
            if request is not None:
                transaction.save_request(request)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with _translated_errors(), self._engine.connect() as connection:
            yield connection

    def get_order(self, merchant_id: str, out_order_no: str) -> StoredOrder | None:
        with self._reading() as connection:
            return _get_order(connection.execute, merchant_id, out_order_no)

    def read_context(
        self,
        merchant_id: str,
        out_order_no: str,
        request_id: str,
        *,
        scenario_id: str = "",
        user_id: str = "",
    ) -> OrderContext:
        parameters = {
            "key_merchant_id": merchant_id,
            "key_out_order_no": out_order_no,
            "key_request_id": request_id,
            "key_scenario_id": scenario_id,
            "key_user_id": user_id,
        }
        with self._reading() as connection:
            if self._reads_in_autocommit:
                found = _driver_execute(connection, _SELECT_CONTEXT, parameters).fetchone()
                assert found is not None
                row = dict(zip(_CONTEXT_COLUMN_NAMES, found, strict=True))
            else:
                row = connection.execute(_SELECT_CONTEXT, parameters).one()._asdict()
        return OrderContext(
            stored=_stored_order(_part(row, "order_", order_table)),
            request=_record(RequestRecord, _part(row, "request_", request_table)),
            policy=(
                None
                if row["policy_policy_json"] is None
                else codec.policy_from_json(row["policy_policy_json"])
            ),
            capacity=_record(CapacityRecord, _part(row, "capacity_", capacity_table)),
        )

    def list_orders(
        self,
        merchant_id: str,
        state: OrderState | None,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[Order]:
        condition = and_(order_table.c.merchant_id == merchant_id, order_table.c.state.is_not(None))
        if state is not None:
            condition = and_(condition, order_table.c.state == state.value)
        if after is not None:
            condition = and_(
                condition,
                tuple_(order_table.c.create_time_us, order_table.c.out_order_no) < tuple_(*after),
            )
        query = (
            select(order_table.c.order_json)
            .where(condition)
            .order_by(order_table.c.create_time_us.desc(), order_table.c.out_order_no.desc())
            .limit(limit)
        )
        with self._reading() as connection:
            return [codec.order_from_json(row.order_json) for row in connection.execute(query)]

    def list_policies(
        self, merchant_id: str, after_scenario_id: str, limit: int
    ) -> list[ScenarioPolicy]:
        query = (
            select(policy_table.c.policy_json)
            .where(
                (policy_table.c.merchant_id == merchant_id)
                & (policy_table.c.scenario_id > after_scenario_id)
            )
            .order_by(policy_table.c.scenario_id)
            .limit(limit)
        )
        with self._reading() as connection:
            return [codec.policy_from_json(row.policy_json) for row in connection.execute(query)]

    def orders_due(self, now_us: int, limit: int) -> list[tuple[str, str]]:
        query = (
            select(order_table.c.merchant_id, order_table.c.out_order_no)
            .where(
                (order_table.c.next_change_us <= now_us) & order_table.c.pending_since_us.is_(None)
            )
            .order_by(order_table.c.next_change_us)
            .limit(limit)
        )
        with self._reading() as connection:
            return [(row.merchant_id, row.out_order_no) for row in connection.execute(query)]

    def stalled_orders(self, since_before_us: int, limit: int) -> list[tuple[str, str]]:
        query = (
            select(order_table.c.merchant_id, order_table.c.out_order_no)
            .where(order_table.c.pending_since_us < since_before_us)
            .order_by(order_table.c.pending_since_us)
            .limit(limit)
        )
        with self._reading() as connection:
            return [(row.merchant_id, row.out_order_no) for row in connection.execute(query)]

    def close(self) -> None:
        self._engine.dispose()


class SqlWaiverTransaction:
    """One transaction over `connection`. Every statement goes through `_read` (a plain SELECT)
    or `_write`. With `begin_at_first_write` (PostgreSQL, see the module's docstring) the
    connection is in autocommit and the transaction begins at the first write, the reads before
    it running on their own: a write sent any other way would commit on its own."""

    def __init__(self, connection: Connection, *, begin_at_first_write: bool) -> None:
        self._connection = connection
        self._begin_at_first_write = begin_at_first_write

    def _write(self, statement: Executable, parameters: dict[str, Any]) -> CursorResult[Any]:
        if self._begin_at_first_write:
            # The connection is in autocommit: the transaction is begun here, by the driver
            # itself (through SQLAlchemy, a BEGIN costs as much CPU as a statement), and psycopg
            # commits or rolls back the one it finds open.
            _driver(self._connection).execute(_BEGIN)
            self._begin_at_first_write = False
        return self._connection.execute(statement, parameters)

    def _write_count(self, statement: Executable, parameters: dict[str, Any]) -> int:
        """Runs one of the statements built once at the top (see the module's docstring); the
        number of rows it wrote."""
        if self._connection.dialect.name != "postgresql":
            return self._write(statement, parameters).rowcount
        if self._begin_at_first_write:
            _driver(self._connection).execute(_BEGIN)
            self._begin_at_first_write = False
        return _driver_execute(self._connection, statement, parameters).rowcount

    def _read(self, statement: Executable, parameters: dict[str, Any]) -> CursorResult[Any]:
        # A read may run before the transaction begins: it must change nothing.
        assert statement.is_select, "a statement that writes goes through _write"
        return self._connection.execute(statement, parameters)

    def get_order(self, merchant_id: str, out_order_no: str) -> StoredOrder | None:
        return _get_order(self._read, merchant_id, out_order_no)

    def insert_order(self, stored: StoredOrder) -> None:
        statement = _INSERT_ORDER_IF_NEW[self._connection.dialect.name]
        if self._write_count(statement, _order_values(stored)) != 1:
            raise OrderConflict(f"{stored.merchant_id}/{stored.out_order_no} exists")

    def update_order(self, stored: StoredOrder, expected_version: int) -> None:
        assert stored.version == expected_version + 1
        if self._write_count(_UPDATE_ORDER, _update_values(stored, expected_version)) != 1:
            raise OrderConflict(f"{stored.merchant_id}/{stored.out_order_no} moved on")

    def save_pending(self, stored: StoredOrder, expected_version: int) -> None:
        """See `SqlWaiverStorage.save_pending`."""
        assert stored.version == expected_version + 1
        if self._write_count(_UPDATE_PENDING, _pending_values(stored, expected_version)) != 1:
            raise OrderConflict(f"{stored.merchant_id}/{stored.out_order_no} moved on")

    def find_request(self, merchant_id: str, request_id: str) -> RequestRecord | None:
        row = self._read(
            _SELECT_REQUEST, {"key_merchant_id": merchant_id, "key_request_id": request_id}
        ).first()
        return None if row is None else RequestRecord(**row._asdict())

    def save_request(self, record: RequestRecord) -> None:
        """Records the request unless its id is recorded already (a retry). An id recorded for
        another request (its method, hash or order differ) is `OrderConflict`: callers look for
        that first, so a call that got there first recorded it meanwhile."""
        statement = _INSERT_REQUEST_IF_NEW[self._connection.dialect.name]
        if self._write_count(statement, record.__dict__) == 1:
            return
        found = self.find_request(record.merchant_id, record.request_id)
        assert found is not None
        if (found.method, found.request_hash, found.out_order_no) != (
            record.method,
            record.request_hash,
            record.out_order_no,
        ):
            raise OrderConflict(f"request {record.request_id} recorded meanwhile")

    def get_policy(self, merchant_id: str, scenario_id: str) -> ScenarioPolicy | None:
        row = self._read(
            _SELECT_POLICY, {"key_merchant_id": merchant_id, "key_scenario_id": scenario_id}
        ).first()
        return None if row is None else codec.policy_from_json(row.policy_json)

    def put_policy(self, policy: ScenarioPolicy) -> None:
        key = (policy_table.c.merchant_id == policy.merchant_id) & (
            policy_table.c.scenario_id == policy.scenario_id
        )
        self._write(delete(policy_table).where(key), {})
        self._write(
            insert(policy_table).values(
                merchant_id=policy.merchant_id,
                scenario_id=policy.scenario_id,
                policy_json=codec.policy_json(policy),
            ),
            {},
        )

    def get_capacity(self, user_id: str) -> CapacityRecord | None:
        row = self._read(_SELECT_CAPACITY, {"key_user_id": user_id}).first()
        return None if row is None else CapacityRecord(**row._asdict())

    def save_capacity(self, record: CapacityRecord, previous: CapacityRecord | None) -> None:
        """Writes `record` if the user's row is still `previous`; else `OrderConflict`."""
        values = record.__dict__
        if previous is None:
            statement = _INSERT_CAPACITY_IF_NEW[self._connection.dialect.name]
            if self._write(statement, values).rowcount != 1:
                raise OrderConflict(f"capacity of {record.user_id} recorded meanwhile")
            return
        result = self._write(
            _UPDATE_CAPACITY,
            {
                **values,
                "key_user_id": record.user_id,
                "previous_change_number": previous.change_number,
                "previous_applied": previous.applied,
            },
        )
        if result.rowcount != 1:
            raise OrderConflict(f"capacity of {record.user_id} changed meanwhile")


def _get_order(
    execute: Callable[[Executable, dict[str, Any]], CursorResult[Any]],
    merchant_id: str,
    out_order_no: str,
) -> StoredOrder | None:
    row = execute(
        _SELECT_ORDER, {"key_merchant_id": merchant_id, "key_out_order_no": out_order_no}
    ).first()
    return None if row is None else _stored_order(row._asdict())


@cache
def _labels(prefix: str, table: Table) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A table's key column as labelled in a joined row, and each column with its label."""
    primary_key = next(iter(table.primary_key.columns)).name
    return f"{prefix}{primary_key}", tuple(
        (column.name, f"{prefix}{column.name}") for column in table.c
    )


def _part(row: dict[str, Any], prefix: str, table: Table) -> dict[str, Any] | None:
    """One table's columns of a joined row, or None when its key is NULL (no such row)."""
    key_label, labels = _labels(prefix, table)
    if row[key_label] is None:
        return None
    return {name: row[label] for name, label in labels}


def _record(kind: type[RecordT], values: dict[str, Any] | None) -> RecordT | None:
    return None if values is None else kind(**values)


def _stored_order(values: dict[str, Any] | None) -> StoredOrder | None:
    if values is None:
        return None
    order_json, pending_json = values["order_json"], values["pending_json"]
    return StoredOrder(
        merchant_id=values["merchant_id"],
        out_order_no=values["out_order_no"],
        fingerprint=values["fingerprint"],
        order=None if order_json is None else codec.order_from_json(order_json),
        pending=None if pending_json is None else codec.pending_from_json(pending_json),
        version=values["version"],
        create_attempt=values["create_attempt"],
    )


def _order_values(stored: StoredOrder) -> dict[str, Any]:
    order = stored.order
    pending = stored.pending
    known = order if order is not None else (None if pending is None else pending.change.order)
    return {
        "merchant_id": stored.merchant_id,
        "out_order_no": stored.out_order_no,
        "user_id": "" if known is None else known.request.user_id,
        "fingerprint": stored.fingerprint,
        "state": None if order is None else order.state.value,
        "create_time_us": None if order is None else order.create_time_us,
        "next_change_us": None if order is None else order.next_change_us(),
        "pending_since_us": None if pending is None else pending.since_us,
        "version": stored.version,
        "create_attempt": stored.create_attempt,
        "order_json": None if order is None else codec.order_json(order),
        "pending_json": None if pending is None else codec.pending_json(pending),
    }


def _key_values(stored: StoredOrder, expected_version: int) -> dict[str, Any]:
    return {
        "key_merchant_id": stored.merchant_id,
        "key_out_order_no": stored.out_order_no,
        "expected_version": expected_version,
    }


def _update_values(stored: StoredOrder, expected_version: int) -> dict[str, Any]:
    return {**_order_values(stored), **_key_values(stored, expected_version)}


def _pending_values(stored: StoredOrder, expected_version: int) -> dict[str, Any]:
    pending = stored.pending
    return {
        f"{_NEW}pending_since_us": None if pending is None else pending.since_us,
        f"{_NEW}pending_json": None if pending is None else codec.pending_json(pending),
        f"{_NEW}version": stored.version,
        f"{_NEW}create_attempt": stored.create_attempt,
        **_key_values(stored, expected_version),
    }


def _request_values(record: RequestRecord) -> dict[str, Any]:
    return {f"{_REQUEST}{name}": value for name, value in record.__dict__.items()}


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except DBAPIError as error:
        if _is_unavailable(error):
            raise _unavailable() from error
        raise
    except PoolTimeoutError as error:
        raise _unavailable() from error
    except psycopg.OperationalError as error:
        # From a statement sent to the driver itself (a transaction's BEGIN).
        raise _unavailable() from error


def _is_unavailable(error: DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    original = error.orig
    if isinstance(original, sqlite3.OperationalError):
        return "locked" in str(original) or "busy" in str(original)
    sqlstate: str | None = getattr(original, "sqlstate", None)
    if sqlstate is None:
        return not isinstance(original, sqlite3.Error) and "connection" in str(original)
    return sqlstate.startswith(_CONNECTION_SQLSTATE_PREFIXES)


def _unavailable() -> Unavailable:
    return Unavailable(
        "the waiver's database is unavailable; retry with the same request_id",
        reason=reasons.STORAGE_UNAVAILABLE,
    )
