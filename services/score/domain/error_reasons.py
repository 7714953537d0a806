"""Stable error reasons of the score service (google.rpc.ErrorInfo.reason), the names of the
contract's ErrorReason enum (protos/sesame/score/v1/error_reason.proto). Callers branch on them,
so a published reason never changes; add new ones instead.

Not to be confused with `reasons.py`: the reasons behind a score, which are its explanation.
"""

from typing import Final

# Invalid input (INVALID_ARGUMENT, with a BadRequest naming every bad field): the checks every
# service shares (see `services.common.validation`) and the score's own.
from services.common.validation import (
    FIELD_REQUIRED as FIELD_REQUIRED,
    ID_INVALID as ID_INVALID,
    REQUEST_ID_REQUIRED as REQUEST_ID_REQUIRED,
    REQUEST_UNDECODABLE as REQUEST_UNDECODABLE,
)

TIMESTAMP_INVALID: Final = "TIMESTAMP_INVALID"
TOO_MANY_USERS: Final = "TOO_MANY_USERS"
FEATURE_VALUES_NOT_WHOLE_ROWS: Final = "FEATURE_VALUES_NOT_WHOLE_ROWS"
TOO_MANY_FEATURE_ROWS: Final = "TOO_MANY_FEATURE_ROWS"
FEATURE_VALUE_NOT_FINITE: Final = "FEATURE_VALUE_NOT_FINITE"
FEATURE_VALUE_OUT_OF_RANGE: Final = "FEATURE_VALUE_OUT_OF_RANGE"
MODEL_VERSION_INVALID: Final = "MODEL_VERSION_INVALID"

# Missing (NOT_FOUND).
MODEL_VERSION_NOT_FOUND: Final = "MODEL_VERSION_NOT_FOUND"

# A model unfit to serve (FAILED_PRECONDITION); the previous model keeps serving.
MODEL_REJECTED: Final = "MODEL_REJECTED"
# A user without consent to be scored now (FAILED_PRECONDITION): never granted, or withdrawn.
CONSENT_MISSING: Final = "CONSENT_MISSING"
CONSENT_WITHDRAWN: Final = "CONSENT_WITHDRAWN"

# Not ready or a dependency down (UNAVAILABLE; retrying later may succeed).
MODEL_NOT_LOADED: Final = "MODEL_NOT_LOADED"
LEDGER_UNAVAILABLE: Final = "LEDGER_UNAVAILABLE"
