"""Checking requests at the edge: every problem of a request reported at once, in one format.

Every Sesame contract states the same conventions for the fields all services share (request
ids, identifiers, texts, money), so the checks and their reasons live here; each service adds
the checks of its own fields. A request is checked as a whole, and every problem found is
reported, each with the path of the offending field as the request names it
(`reports[3].statements[1].period.month`) and a reason of its own, up to a limit that keeps the
error small::

    violations = Violations()
    violations.request_id(request.request_id)
    violations.money("amount", amount, Sign.POSITIVE)
    violations.raise_if_any()

raises one `InvalidArgument` whose ErrorInfo reason is the first problem's and whose BadRequest
lists every field, or returns when there is nothing to say.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Final

from services.common.errors import FieldViolation, InvalidArgument
from services.common.money import MAX_AMOUNT_MINOR, Money, is_known_currency
from services.common.request_decoding import REQUEST_UNDECODABLE as REQUEST_UNDECODABLE

VIOLATIONS_REPORTED_MAX = 50
ID_LENGTH_MAX = 128

# The reasons of the shared checks; every service's ErrorReason enum lists them.
REQUEST_ID_REQUIRED: Final = "REQUEST_ID_REQUIRED"
FIELD_REQUIRED: Final = "FIELD_REQUIRED"
ID_INVALID: Final = "ID_INVALID"
TEXT_TOO_LONG: Final = "TEXT_TOO_LONG"
TEXT_INVALID: Final = "TEXT_INVALID"
CURRENCY_UNKNOWN: Final = "CURRENCY_UNKNOWN"
AMOUNT_NOT_POSITIVE: Final = "AMOUNT_NOT_POSITIVE"
AMOUNT_NEGATIVE: Final = "AMOUNT_NEGATIVE"
AMOUNT_TOO_LARGE: Final = "AMOUNT_TOO_LARGE"
VALUE_OUT_OF_RANGE: Final = "VALUE_OUT_OF_RANGE"

# Printable ASCII, space included: ids travel in logs, URLs and CSV files, where control
# characters and non-ASCII look-alikes would make two different ids read the same.
_PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))
_CONTROL_CHARACTERS = frozenset(chr(code) for code in (*range(0x20), 0x7F))


class Sign(Enum):
    """Which amounts a Money field accepts."""

    POSITIVE = auto()
    NOT_NEGATIVE = auto()
    ANY = auto()


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid identifier, or None when it is."""
    if not value:
        return "is required"
    if len(value) > ID_LENGTH_MAX:
        return f"must be at most {ID_LENGTH_MAX} characters"
    if not _PRINTABLE_ASCII.issuperset(value):
        return "must contain printable ASCII characters only"
    if not value.strip():
        return "must not be blank"
    return None


class Violations:
    """Collects the problems of one request, then raises them as one INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self._found: list[FieldViolation] = []
        self._count = 0

    def __len__(self) -> int:
        """How many problems were found so far."""
        return self._count

    def add(self, field: str, reason: str, description: str) -> None:
        self._count += 1
        if len(self._found) < VIOLATIONS_REPORTED_MAX:
            self._found.append(FieldViolation(field, description, reason))

    def raise_if_any(self) -> None:
        if not self._found:
            return
        first = self._found[0]
        more = f" (and {self._count - 1} more)" if self._count > 1 else ""
        raise InvalidArgument(
            f"{first.field}: {first.description}{more}",
            reason=first.reason,
            field_violations=self._found,
        )

    # The checks of the fields every contract shares.

    def request_id(self, request_id: str) -> None:
        if not request_id:
            self.add("request_id", REQUEST_ID_REQUIRED, "is required for every mutation")
        else:
            self.identifier("request_id", request_id)

    def identifier(self, field: str, value: str) -> None:
        problem = id_problem(value)
        if problem is not None:
            reason = FIELD_REQUIRED if not value else ID_INVALID
            self.add(field, reason, problem)

    def text(self, field: str, value: str, length_max: int, *, required: bool = False) -> None:
        if required and not value.strip():
            self.add(field, FIELD_REQUIRED, "is required")
        elif len(value) > length_max:
            self.add(field, TEXT_TOO_LONG, f"must be at most {length_max} characters")
        elif any(character in _CONTROL_CHARACTERS for character in value):
            # Control characters (NUL above all, which PostgreSQL text cannot hold) have no
            # place in a text a person reads, and would make two texts print alike.
            self.add(field, TEXT_INVALID, "must not contain control characters")

    def money(self, field: str, money: Money | None, sign: Sign) -> None:
        if money is None:
            self.add(field, FIELD_REQUIRED, "is required")
            return
        if not is_known_currency(money.currency_code):
            self.add(
                f"{field}.currency_code",
                CURRENCY_UNKNOWN,
                "must be an ISO 4217 currency code in upper case",
            )
        self.amount(f"{field}.amount_minor", money.amount_minor, sign)

    def amount(self, field: str, amount_minor: int, sign: Sign) -> None:
        if sign is Sign.POSITIVE and amount_minor <= 0:
            self.add(field, AMOUNT_NOT_POSITIVE, "must be positive")
        elif sign is Sign.NOT_NEGATIVE and amount_minor < 0:
            self.add(field, AMOUNT_NEGATIVE, "must not be negative")
        elif abs(amount_minor) >= MAX_AMOUNT_MINOR:
            self.add(field, AMOUNT_TOO_LARGE, f"must be below {MAX_AMOUNT_MINOR}")

    def required(self, field: str, value: object) -> None:
        if value is None:
            self.add(field, FIELD_REQUIRED, "is required")

    def in_range(self, field: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            self.add(field, VALUE_OUT_OF_RANGE, f"must be {low} to {high}")
