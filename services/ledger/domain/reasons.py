"""Stable error reasons of the ledger (google.rpc.ErrorInfo.reason): exactly the names of the
contract's ErrorReason enum (protos/sesame/ledger/v1/error_reason.proto, which says the status
code and meaning of each; a unit test keeps the two equal). Callers branch on them, so a
published reason never changes; add new ones, here and in the enum, instead."""

from typing import Final

# Invalid input (INVALID_ARGUMENT, never stored for idempotency): the checks every service shares
# (see `services.common.validation`) and the ledger's own.
from services.common.validation import (
    AMOUNT_NEGATIVE as AMOUNT_NEGATIVE,
    AMOUNT_NOT_POSITIVE as AMOUNT_NOT_POSITIVE,
    AMOUNT_TOO_LARGE as AMOUNT_TOO_LARGE,
    CURRENCY_UNKNOWN as CURRENCY_UNKNOWN,
    FIELD_REQUIRED as FIELD_REQUIRED,
    ID_INVALID as ID_INVALID,
    REQUEST_ID_REQUIRED as REQUEST_ID_REQUIRED,
    REQUEST_UNDECODABLE as REQUEST_UNDECODABLE,
    TEXT_INVALID as TEXT_INVALID,
    TEXT_TOO_LONG as TEXT_TOO_LONG,
    VALUE_OUT_OF_RANGE as VALUE_OUT_OF_RANGE,
)

DURATION_INVALID: Final = "DURATION_INVALID"
TIMESTAMP_INVALID: Final = "TIMESTAMP_INVALID"
ENUM_VALUE_INVALID: Final = "ENUM_VALUE_INVALID"
PERIOD_INVALID: Final = "PERIOD_INVALID"
MONTHS_LATE_INVALID: Final = "MONTHS_LATE_INVALID"
DAYS_LATE_INVALID: Final = "DAYS_LATE_INVALID"
BATCH_SIZE_INVALID: Final = "BATCH_SIZE_INVALID"
TOO_MANY_STATEMENTS: Final = "TOO_MANY_STATEMENTS"
DUPLICATE_USER: Final = "DUPLICATE_USER"
DUPLICATE_PERIOD: Final = "DUPLICATE_PERIOD"
PAGE_TOKEN_INVALID: Final = "PAGE_TOKEN_INVALID"
DUE_TIME_TOO_EARLY: Final = "DUE_TIME_TOO_EARLY"
CHECKPOINT_INVALID: Final = "CHECKPOINT_INVALID"
# Invalid for the hold named, whatever its state: a hold's amount never changes, so the same
# request is always wrong (INVALID_ARGUMENT, not stored).
CAPTURE_EXCEEDS_HOLD: Final = "CAPTURE_EXCEEDS_HOLD"
# A currency other than the one it must match. INVALID_ARGUMENT against a hold's or obligation's
# currency (which never changes, though an obligation's amount may be lowered);
# FAILED_PRECONDITION against the account's currency (which a capacity change can set) or the
# user's recorded partner data, and then stored like every business rule.
CURRENCY_MISMATCH: Final = "CURRENCY_MISMATCH"

# Missing (NOT_FOUND, not stored: ids are server-assigned, so the answer can never change).
HOLD_NOT_FOUND: Final = "HOLD_NOT_FOUND"
OBLIGATION_NOT_FOUND: Final = "OBLIGATION_NOT_FOUND"
CHECKPOINT_NOT_FOUND: Final = "CHECKPOINT_NOT_FOUND"
USER_NOT_IN_CHECKPOINT: Final = "USER_NOT_IN_CHECKPOINT"

# Business rules (FAILED_PRECONDITION, stored and replayed for a retried request id).
INSUFFICIENT_CAPACITY: Final = "INSUFFICIENT_CAPACITY"
HOLD_ALREADY_RESOLVED: Final = "HOLD_ALREADY_RESOLVED"
HOLD_EXPIRED: Final = "HOLD_EXPIRED"
OBLIGATION_ALREADY_CLOSED: Final = "OBLIGATION_ALREADY_CLOSED"
PAYMENT_EXCEEDS_DUE: Final = "PAYMENT_EXCEEDS_DUE"
OBLIGATION_NOT_PAID_IN_FULL: Final = "OBLIGATION_NOT_PAID_IN_FULL"
# A reduction depends on the obligation's amounts now (a payment or an earlier reduction moves
# them), so these are refusals, stored, not invalid input.
AMOUNT_DUE_NOT_LOWER: Final = "AMOUNT_DUE_NOT_LOWER"
AMOUNT_DUE_BELOW_PAID: Final = "AMOUNT_DUE_BELOW_PAID"
# A statement attached to a record that is no negative record (an open obligation, or one
# closed on time): stored, because the obligation may still close late or defaulted.
RECORD_NOT_NEGATIVE: Final = "RECORD_NOT_NEGATIVE"
# A read that needs the checkpoint key when the ledger runs without one.
CHECKPOINTS_NOT_CONFIGURED: Final = "CHECKPOINTS_NOT_CONFIGURED"

# Idempotency and storage.
REQUEST_ID_REUSED: Final = "REQUEST_ID_REUSED"
STORAGE_CONTENDED: Final = "STORAGE_CONTENDED"
STORAGE_UNAVAILABLE: Final = "STORAGE_UNAVAILABLE"
SHUTTING_DOWN: Final = "SHUTTING_DOWN"
