"""PostgreSQL: a write's projections and request records in one statement, its journal entries
in a second.

Each part is a data-modifying WITH query that reads its rows from one JSON parameter
(`json_populate_recordset` over the table's own row type), so a statement's text and parameters
never change with the number of rows. The statement holds only the parts that have rows: a
PlaceHold writes three tables, a ReleaseHold four, and an empty part left in would still be
planned and run, costing the server CPU time on every write for nothing. The few combinations
that occur are each prepared once per connection (see `pipeline`).

The entries have a statement of their own, sent after the projections' and before COMMIT in the
same round trip (see `pipeline`): it allocates their global sequences from the journal head, and
the head row then stays locked until commit, which keeps commits in sequence order (see
`ports.WriteTransaction.persist`). The head is every writer's hot spot, so the projections are
written before it is taken, not while it is held.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import TextClause, text

from services.ledger.domain.journal import NewEntry
from services.ledger.domain.records import Account, ChainHead
from services.ledger.service.ports import StateChanges, StoredRequest
from services.ledger.storage import rows


@dataclass(frozen=True)
class _Part:
    """One WITH query: insert rows into a table, or update the rows matched on key columns."""

    name: str
    table: str
    key_columns: tuple[str, ...] = ()
    updated_columns: tuple[str, ...] = ()

    @property
    def keys_name(self) -> str:
        return f"{self.name}_keys"

    def sql(self) -> str:
        source = f"json_populate_recordset(NULL::{self.table}, CAST(:{self.name} AS json))"
        if not self.key_columns:
            return f"{self.name} AS (INSERT INTO {self.table} SELECT * FROM {source})"
        assignments = ", ".join(f"{column} = new.{column}" for column in self.updated_columns)
        matches = " AND ".join(
            f"{self.table}.{column} = new.{column}" for column in self.key_columns
        )
        # The same rows' first key as an array lets the planner find them through the primary
        # key; otherwise it assumes many JSON rows and joins them with a scan of the table.
        key = self.key_columns[0]
        matches += f" AND {self.table}.{key} = ANY(CAST(:{self.keys_name} AS text[]))"
        return (
            f"{self.name} AS (UPDATE {self.table} SET {assignments}"
            f" FROM {source} AS new WHERE {matches})"
        )


_ACCOUNT_UPDATES = _Part(
    "account_updates",
    "account",
    ("user_id",),
    (
        "currency_code",
        "waiver_capacity_minor",
        "held_minor",
        "open_hold_count",
        "outstanding_minor",
        "on_time_count",
        "late_up_to_30_days_count",
        "late_over_30_days_count",
        "defaulted_count",
        "fulfilled_count",
        "last_user_sequence",
        "last_hash",
        "consent_state",
        "consent_since_us",
    ),
)
_NEW_HOLDS = _Part("new_holds", "hold")
_HOLD_UPDATES = _Part(
    "hold_updates",
    "hold",
    ("hold_id",),
    ("state", "captured_minor", "resolved_at_us", "obligation_id", "fulfilled"),
)
_HOLD_RESOLUTIONS = _Part("hold_resolutions", "hold_resolution")
_NEW_OBLIGATIONS = _Part("new_obligations", "obligation")
_OBLIGATION_UPDATES = _Part(
    "obligation_updates",
    "obligation",
    ("obligation_id",),
    (
        "amount_due_minor",
        "amount_paid_minor",
        "state",
        "outcome",
        "days_late",
        "closed_at_us",
        "attached_statement",
        "attached_statement_at_us",
    ),
)
_NEW_STATEMENTS = _Part("new_statements", "statement")
_STATEMENT_UPDATES = _Part(
    "statement_updates",
    "statement",
    ("user_id", "year", "month"),
    (
        "partner_id",
        "currency_code",
        "balance_minor",
        "amount_paid_minor",
        "repayment_status",
        "months_late",
    ),
)
_NEW_CREDIT_LINES = _Part("new_credit_lines", "credit_line")
_CREDIT_LINE_UPDATES = _Part(
    "credit_line_updates",
    "credit_line",
    ("user_id",),
    ("partner_id", "currency_code", "amount_minor"),
)
_NEW_REQUESTS = _Part("new_requests", "request_record")
_PARTS = (
    _ACCOUNT_UPDATES,
    _NEW_HOLDS,
    _HOLD_UPDATES,
    _HOLD_RESOLUTIONS,
    _NEW_OBLIGATIONS,
    _OBLIGATION_UPDATES,
    _NEW_STATEMENTS,
    _STATEMENT_UPDATES,
    _NEW_CREDIT_LINES,
    _CREDIT_LINE_UPDATES,
    _NEW_REQUESTS,
)

_ENTRY_COLUMNS = (
    "user_id",
    "user_sequence",
    "entry_type",
    "payload_json",
    "request_id",
    "request_hash",
    "previous_hash",
    "hash",
    "recorded_at_us",
)
# The entries arrive in journal order; WITH ORDINALITY numbers them from 1, which places
# each right after the head's previous value.
_APPEND_ENTRIES: TextClause = text(
    "WITH head AS (UPDATE journal_head SET last_global_sequence = last_global_sequence"
    " + CAST(:entry_count AS bigint) WHERE id = 1 RETURNING last_global_sequence),"
    f" new_entries AS (INSERT INTO journal_entry (global_sequence, {', '.join(_ENTRY_COLUMNS)})"
    " SELECT head.last_global_sequence - CAST(:entry_count AS bigint) + entry.ordinality,"
    f" {', '.join(f'entry.{column}' for column in _ENTRY_COLUMNS)}"
    " FROM head CROSS JOIN json_populate_recordset(NULL::journal_entry, CAST(:entries AS json))"
    " WITH ORDINALITY AS entry)"
    " SELECT last_global_sequence FROM head"
)


@cache
def _write_projections(parts: tuple[_Part, ...]) -> TextClause:
    """One statement writing the given parts (in `_PARTS` order)."""
    return text("WITH " + ", ".join(part.sql() for part in parts) + " SELECT 0")


Statements = list[tuple[TextClause, dict[str, Any]]]

# Accounts are created as their users are first locked; another writer may create the same
# ones first, and then those are left as they are.
_CREATE_ACCOUNTS: TextClause = text(
    "INSERT INTO account SELECT * FROM"
    " json_populate_recordset(NULL::account, CAST(:accounts AS json))"
    " ON CONFLICT (user_id) DO NOTHING"
)


def create_accounts(user_ids: Sequence[str]) -> tuple[TextClause, dict[str, Any]]:
    """One statement creating the users' accounts, empty, unless they exist; a partner
    statement batch creates hundreds at once."""
    new_accounts = [
        rows.account_values(Account(user_id=user_id), ChainHead()) for user_id in user_ids
    ]
    return _CREATE_ACCOUNTS, {"accounts": _json(new_accounts)}


def bulk_write(
    changes: StateChanges, requests: Sequence[StoredRequest], entries: Sequence[NewEntry]
) -> Statements:
    """The statements and their parameters, in the order they must run: the projections and
    request records, then, with entries, the append (which returns the last global sequence
    allocated)."""
    statements: Statements = []
    parts = _projection_parts(changes, requests)
    if parts:
        statement = _write_projections(tuple(parts))
        statements.append((statement, _projection_parameters(parts)))
    if entries:
        statements.append((_APPEND_ENTRIES, _entry_parameters(entries)))
    return statements


def _projection_parts(
    changes: StateChanges, requests: Sequence[StoredRequest]
) -> dict[_Part, list[dict[str, Any]]]:
    """The rows of each part that has any, in `_PARTS` order."""
    parts: dict[_Part, list[dict[str, Any]]] = {
        _ACCOUNT_UPDATES: [
            rows.account_values(account, chain) for account, chain in changes.accounts
        ],
        _NEW_HOLDS: [rows.hold_values(hold) for hold in changes.new_holds],
        _HOLD_UPDATES: [rows.hold_values(hold) for hold in changes.changed_holds],
        _HOLD_RESOLUTIONS: [rows.hold_resolution_values(hold) for hold in changes.resolved_holds],
        _NEW_OBLIGATIONS: [rows.obligation_values(record) for record in changes.new_obligations],
        _OBLIGATION_UPDATES: [
            rows.obligation_values(record) for record in changes.changed_obligations
        ],
        _NEW_STATEMENTS: [rows.statement_values(record) for record in changes.new_statements],
        _STATEMENT_UPDATES: [
            rows.statement_values(record) for record in changes.changed_statements
        ],
        _NEW_CREDIT_LINES: [rows.credit_line_values(record) for record in changes.new_credit_lines],
        _CREDIT_LINE_UPDATES: [
            rows.credit_line_values(record) for record in changes.changed_credit_lines
        ],
        _NEW_REQUESTS: [rows.request_values(request) for request in requests],
    }
    assert tuple(parts) == _PARTS, "the parts in the order every writer writes them"
    return {part: values for part, values in parts.items() if values}


def _projection_parameters(parts: dict[_Part, list[dict[str, Any]]]) -> dict[str, Any]:
    parameters: dict[str, Any] = {part.name: _json(values) for part, values in parts.items()}
    for part, values in parts.items():
        if part.key_columns:
            parameters[part.keys_name] = sorted({row[part.key_columns[0]] for row in values})
    return parameters


def _entry_parameters(entries: Sequence[NewEntry]) -> dict[str, Any]:
    return {
        "entry_count": len(entries),
        "entries": _json(
            [{column: getattr(entry, column) for column in _ENTRY_COLUMNS} for entry in entries]
        ),
    }


def _json(values: list[dict[str, Any]]) -> str:
    # Plain ASCII JSON keeps every character exact: json_populate_recordset decodes the
    # escapes back into the same text.
    return json.dumps(values, separators=(",", ":"))
