"""PostgreSQL: a write's locks and look-ups in one statement.

Holds, obligations and accounts are locked in the order every writer uses (holds, obligations,
accounts; each sorted by key): the top-level UNION ALL runs its branches in order, and each
MATERIALIZED query locks its rows, sorted, when first read. The requests are looked up last.
Rows come back as JSON, tagged with their kind, so one result carries four tables.

The look-up of requests sees the statement's snapshot, taken before any lock wait: a duplicate
committed while this statement waited is not seen here, and the unique key on request ids then
makes the transaction fail and run again (see `postgres`), after which it is.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from sqlalchemy import TextClause, text

from services.ledger.domain.records import UserState
from services.ledger.service.ports import Locked
from services.ledger.storage import rows

LOCK_STATEMENT: TextClause = text(
    "WITH locked_holds AS MATERIALIZED ("
    " SELECT * FROM hold WHERE hold_id = ANY(CAST(:hold_ids AS text[]))"
    " ORDER BY hold_id FOR UPDATE),"
    " locked_obligations AS MATERIALIZED ("
    " SELECT * FROM obligation WHERE obligation_id = ANY(CAST(:obligation_ids AS text[]))"
    " ORDER BY obligation_id FOR UPDATE),"
    " locked_accounts AS MATERIALIZED ("
    " SELECT * FROM account WHERE user_id = ANY(ARRAY("
    " SELECT unnest(CAST(:user_ids AS text[]))"
    " UNION SELECT user_id FROM locked_holds"
    " UNION SELECT user_id FROM locked_obligations))"
    " ORDER BY user_id FOR UPDATE)"
    " SELECT 'hold', row_to_json(locked_holds)::text FROM locked_holds"
    " UNION ALL SELECT 'obligation', row_to_json(locked_obligations)::text"
    " FROM locked_obligations"
    " UNION ALL SELECT 'account', row_to_json(locked_accounts)::text FROM locked_accounts"
    " UNION ALL SELECT 'request', row_to_json(request_record)::text FROM request_record"
    " WHERE request_id = ANY(CAST(:request_ids AS text[]))"
)


def add_locked_row(locked: Locked, kind: str, row_json: str) -> None:
    """Adds one row of the statement's result to what was locked."""
    row = SimpleNamespace(**json.loads(row_json))
    if kind == "hold":
        locked.holds.append(rows.hold_from(row))  # type: ignore[arg-type]
    elif kind == "obligation":
        locked.obligations.append(rows.obligation_from(row))  # type: ignore[arg-type]
    elif kind == "account":
        account, chain = rows.account_from(row)  # type: ignore[arg-type]
        locked.states[account.user_id] = UserState(account=account, chain=chain)
    else:
        assert kind == "request", kind
        request = rows.request_from(row)  # type: ignore[arg-type]
        locked.requests[request.request_id] = request
