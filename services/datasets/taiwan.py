"""The one conversion between a row of the Taiwan credit data set and the ledger's contract.

The data set ("default of credit card clients", Yeh and Lien 2009) describes, for each client
of a Taiwanese bank, a credit line and six monthly statements from April to September 2005.
That is exactly what a lending partner reports to the ledger, so a row becomes one
`PartnerReport` (a credit line and six statements), and the credit history the ledger returns
for that user, read as of `STATEMENTS_AS_OF`, gives the row back value for value.

Model training uses the same functions: `to_credit_history(row)` is the history the ledger would
return for a row, so features computed from it during training are computed exactly as they
will be in production.

Columns and their meaning (money in whole New Taiwan dollars, all values integers):

* ``ID``: the client; becomes the user ``tw-<ID>``.
* ``LIMIT_BAL``: the credit line.
* ``PAY_0, PAY_2 … PAY_6``: repayment status in September (PAY_0), August (PAY_2) … April
  (PAY_6) 2005: -2 no use, -1 paid in full, 0 revolving, n >= 1 paid n months late.
* ``BILL_AMT1 … BILL_AMT6``: statement balance in September (1) … April (6); may be negative.
* ``PAY_AMT1 … PAY_AMT6``: amount paid in September (1) … April (6).
* ``default.payment.next.month``: the label (1 when the client defaulted in October 2005).
* ``SEX, EDUCATION, MARRIAGE, AGE``: protected attributes. They are never part of a `TaiwanRow`
  and never reach the ledger; `read_protected_attributes` reads them apart, for measuring
  fairness only.

Every value in the data set is a whole number of dollars (the parser rejects anything else), and
TWD has two minor digits in ISO 4217, so amounts convert exactly as dollars * 100 in integers.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, TextIO

from sesame.ledger.v1 import ledger_service_pb2
from sesame.type.v1 import money_pb2

PARTNER_ID = "taiwan-credit-2005"
USER_ID_PREFIX = "tw-"
CURRENCY_CODE = "TWD"
# ISO 4217 gives TWD two minor digits, so one dollar is 100 minor units.
MINOR_UNITS_PER_DOLLAR = 100

ID_COLUMN = "ID"
CREDIT_LINE_COLUMN = "LIMIT_BAL"
LABEL_COLUMN = "default.payment.next.month"
PROTECTED_COLUMNS = ("SEX", "EDUCATION", "MARRIAGE", "AGE")


class Period(NamedTuple):
    """A calendar month."""

    year: int
    month: int


@dataclass(frozen=True)
class MonthColumns:
    """The three columns that describe one month, and the month they describe."""

    period: Period
    repayment_status_column: str
    balance_column: str
    amount_paid_column: str


# Newest first, the order of the data set's columns and of the ledger's history. The data set
# numbers statuses PAY_0, PAY_2 … PAY_6 (there is no PAY_1) but amounts 1 … 6.
MONTHS: tuple[MonthColumns, ...] = (
    MonthColumns(Period(2005, 9), "PAY_0", "BILL_AMT1", "PAY_AMT1"),
    MonthColumns(Period(2005, 8), "PAY_2", "BILL_AMT2", "PAY_AMT2"),
    MonthColumns(Period(2005, 7), "PAY_3", "BILL_AMT3", "PAY_AMT3"),
    MonthColumns(Period(2005, 6), "PAY_4", "BILL_AMT4", "PAY_AMT4"),
    MonthColumns(Period(2005, 5), "PAY_5", "BILL_AMT5", "PAY_AMT5"),
    MonthColumns(Period(2005, 4), "PAY_6", "BILL_AMT6", "PAY_AMT6"),
)
STATEMENT_PERIODS = tuple(month.period for month in MONTHS)
STATEMENT_COUNT = len(MONTHS)

REPAYMENT_STATUS_COLUMNS = tuple(month.repayment_status_column for month in MONTHS)
BALANCE_COLUMNS = tuple(month.balance_column for month in MONTHS)
AMOUNT_PAID_COLUMNS = tuple(month.amount_paid_column for month in MONTHS)

# The columns a row gives to the ledger and gets back from it, in the data set's order.
BEHAVIOUR_COLUMNS = (
    ID_COLUMN,
    CREDIT_LINE_COLUMN,
    *REPAYMENT_STATUS_COLUMNS,
    *BALANCE_COLUMNS,
    *AMOUNT_PAID_COLUMNS,
)
# Every column of the data set's files, in their order.
ALL_COLUMNS = (
    ID_COLUMN,
    CREDIT_LINE_COLUMN,
    *PROTECTED_COLUMNS,
    *REPAYMENT_STATUS_COLUMNS,
    *BALANCE_COLUMNS,
    *AMOUNT_PAID_COLUMNS,
    LABEL_COLUMN,
)

# The end of September 2005, the last month reported: a history read as of this time counts all
# six statements, because the ledger counts a statement once its month has ended.
STATEMENTS_AS_OF = datetime(2005, 10, 1, tzinfo=UTC)

# The data set's repayment codes that are not a number of months late.
NO_USE_CODE = -2
PAID_IN_FULL_CODE = -1
REVOLVING_CODE = 0
_STATUS_BY_CODE = {
    NO_USE_CODE: ledger_service_pb2.REPAYMENT_STATUS_NO_USE,
    PAID_IN_FULL_CODE: ledger_service_pb2.REPAYMENT_STATUS_PAID_IN_FULL,
    REVOLVING_CODE: ledger_service_pb2.REPAYMENT_STATUS_REVOLVING,
}
_CODE_BY_STATUS = {status: code for code, status in _STATUS_BY_CODE.items()}
# The data set's own codebook ends at 9 ("nine months and above"); the training split never goes
# above 8. A larger value is not something the data set defines, so it is rejected, not guessed.
MONTHS_LATE_MAX = 9

# A trillion dollars: far above any amount in the data set (the largest is under two million),
# and, in minor units, far below what the ledger or an int64 can hold.
AMOUNT_DOLLARS_MAX = 10**12
# The data set numbers its clients 1 to 30000; the bound only keeps user ids short.
CLIENT_ID_MAX = 10**15

_INTEGER = re.compile(r"-?[0-9]+")


class TaiwanDataError(ValueError):
    """A value in the data set, or in a history meant to reproduce it, cannot be converted."""


@dataclass(frozen=True)
class TaiwanMonth:
    """One month of a client's account as the data set reports it, in whole NT dollars."""

    period: Period
    # PAY_x: -2 no use, -1 paid in full, 0 revolving, n >= 1 paid n months late.
    repayment_code: int
    # BILL_AMTx; negative when the client holds a credit balance.
    balance_dollars: int
    # PAY_AMTx; zero or positive.
    amount_paid_dollars: int


@dataclass(frozen=True)
class TaiwanRow:
    """A client's behaviour columns and label; the protected attributes are left out on purpose."""

    client_id: int
    credit_line_dollars: int
    # Six months, newest (September 2005) first, in the order of `MONTHS`.
    months: tuple[TaiwanMonth, ...]
    # The label: True when the client defaulted in October 2005.
    defaulted_next_month: bool

    def __post_init__(self) -> None:
        periods = tuple(month.period for month in self.months)
        if periods != STATEMENT_PERIODS:
            raise TaiwanDataError(f"expected the months {STATEMENT_PERIODS}, got {periods}")

    def behaviour_values(self) -> dict[str, int]:
        """The row's behaviour columns as the data set names them, in `BEHAVIOUR_COLUMNS` order."""
        values = {ID_COLUMN: self.client_id, CREDIT_LINE_COLUMN: self.credit_line_dollars}
        values |= _monthly_values(self.months)
        return {column: values[column] for column in BEHAVIOUR_COLUMNS}


@dataclass(frozen=True)
class ProtectedAttributes:
    """A client's protected attributes, as coded in the data set; for fairness measurement only."""

    client_id: int
    sex: int
    education: int
    marriage: int
    age: int


# ---------------------------------------------------------------------------------------------
# Reading the CSV


# Inclusive bounds each column's value must lie within. Protected columns get the widest bound,
# because their codes are not used here.
_ANY_AMOUNT = (-AMOUNT_DOLLARS_MAX, AMOUNT_DOLLARS_MAX)
_BOUNDS_BY_COLUMN: Mapping[str, tuple[int, int]] = {
    ID_COLUMN: (1, CLIENT_ID_MAX),
    # The ledger only accepts a positive credit line.
    CREDIT_LINE_COLUMN: (1, AMOUNT_DOLLARS_MAX),
    **dict.fromkeys(REPAYMENT_STATUS_COLUMNS, (NO_USE_CODE, MONTHS_LATE_MAX)),
    **dict.fromkeys(BALANCE_COLUMNS, _ANY_AMOUNT),
    **dict.fromkeys(AMOUNT_PAID_COLUMNS, (0, AMOUNT_DOLLARS_MAX)),
    LABEL_COLUMN: (0, 1),
}


def read_rows(path: Path | str) -> Iterator[TaiwanRow]:
    """Yields the rows of a data set file (``.csv``, or ``.csv.gz`` read transparently).

    Raises `TaiwanDataError` naming the file, line and column of the first value that is missing,
    not a whole integer, or out of range.
    """
    for values in _read_integer_records(Path(path)):
        yield _row_from_values(values)


def read_protected_attributes(path: Path | str) -> Iterator[ProtectedAttributes]:
    """Yields each client's protected attributes, for measuring fairness and nothing else."""
    for values in _read_integer_records(Path(path)):
        yield ProtectedAttributes(
            client_id=values[ID_COLUMN],
            sex=values["SEX"],
            education=values["EDUCATION"],
            marriage=values["MARRIAGE"],
            age=values["AGE"],
        )


def _read_integer_records(path: Path) -> Iterator[dict[str, int]]:
    with open_text(path) as text:
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise TaiwanDataError(f"{path}: the file is empty, expected a header line")
            _check_header(path, header)
            for fields in reader:
                yield _parse_record(path, reader.line_num, header, fields)
        except csv.Error as error:
            raise TaiwanDataError(
                f"{path} line {reader.line_num}: not valid CSV ({error})"
            ) from None
        except UnicodeDecodeError:
            # Text is decoded in blocks ahead of the parser, so the line is only approximate.
            raise TaiwanDataError(
                f"{path} near line {reader.line_num + 1}: not UTF-8 text"
            ) from None


def open_text(path: Path) -> TextIO:
    """The file as text, uncompressed when its name ends in .gz."""
    # utf-8-sig drops a byte-order mark, which would otherwise make the first column "\ufeffID".
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _check_header(path: Path, header: list[str]) -> None:
    missing = [column for column in ALL_COLUMNS if column not in header]
    unexpected = [column for column in header if column not in ALL_COLUMNS]
    repeated = sorted({column for column in header if header.count(column) > 1})
    if missing or unexpected or repeated:
        raise TaiwanDataError(
            f"{path} line 1: header does not match the Taiwan credit data set"
            f" (missing {missing}, unexpected {unexpected}, repeated {repeated})"
        )


def _parse_record(path: Path, line: int, header: list[str], fields: list[str]) -> dict[str, int]:
    if len(fields) != len(header):
        raise TaiwanDataError(
            f"{path} line {line}: expected {len(header)} values, found {len(fields)}"
        )
    return {
        column: _parse_value(path, line, column, text)
        for column, text in zip(header, fields, strict=True)
    }


def _parse_value(path: Path, line: int, column: str, text: str) -> int:
    # int() alone would also accept " 12", "+12" and "1_200"; the data set has none of those,
    # so anything but plain digits means the file is not what we think it is.
    if not _INTEGER.fullmatch(text):
        raise TaiwanDataError(
            f"{path} line {line}, column {column}: expected a whole number, got {text!r}"
        )
    value = int(text)
    lowest, highest = _BOUNDS_BY_COLUMN.get(column, _ANY_AMOUNT)
    if not lowest <= value <= highest:
        raise TaiwanDataError(
            f"{path} line {line}, column {column}: {value} is outside {lowest}..{highest}"
        )
    return value


def _row_from_values(values: Mapping[str, int]) -> TaiwanRow:
    return TaiwanRow(
        client_id=values[ID_COLUMN],
        credit_line_dollars=values[CREDIT_LINE_COLUMN],
        months=tuple(
            TaiwanMonth(
                period=month.period,
                repayment_code=values[month.repayment_status_column],
                balance_dollars=values[month.balance_column],
                amount_paid_dollars=values[month.amount_paid_column],
            )
            for month in MONTHS
        ),
        defaulted_next_month=values[LABEL_COLUMN] == 1,
    )


def _monthly_values(months: tuple[TaiwanMonth, ...]) -> dict[str, int]:
    values: dict[str, int] = {}
    for columns, month in zip(MONTHS, months, strict=True):
        values[columns.repayment_status_column] = month.repayment_code
        values[columns.balance_column] = month.balance_dollars
        values[columns.amount_paid_column] = month.amount_paid_dollars
    return values


# ---------------------------------------------------------------------------------------------
# Row to ledger


def user_id_for(client_id: int) -> str:
    """The ledger user a client of the data set becomes."""
    return f"{USER_ID_PREFIX}{client_id}"


def to_partner_report(row: TaiwanRow) -> ledger_service_pb2.PartnerReport:
    """The report a lending partner would send for this client: credit line and six statements."""
    return ledger_service_pb2.PartnerReport(
        user_id=user_id_for(row.client_id),
        partner_id=PARTNER_ID,
        credit_line=_money(row.credit_line_dollars),
        statements=[_statement(month) for month in row.months],
    )


def to_credit_history(row: TaiwanRow) -> ledger_service_pb2.GetCreditHistoryResponse:
    """The history the ledger returns for this client as of `STATEMENTS_AS_OF`, once replayed.

    Sequence numbers are left at zero: they depend on the ledger, not on the row.
    """
    history = ledger_service_pb2.GetCreditHistoryResponse(
        user_id=user_id_for(row.client_id),
        credit_line=_money(row.credit_line_dollars),
        statements=[_statement(month) for month in row.months],
    )
    history.as_of_time.FromDatetime(STATEMENTS_AS_OF)
    return history


def credit_history_request(user_id: str) -> ledger_service_pb2.GetCreditHistoryRequest:
    """The request that reads back exactly the six replayed statements of a user."""
    request = ledger_service_pb2.GetCreditHistoryRequest(
        user_id=user_id, max_statements=STATEMENT_COUNT
    )
    request.as_of_time.FromDatetime(STATEMENTS_AS_OF)
    return request


def _money(dollars: int) -> money_pb2.Money:
    return money_pb2.Money(
        currency_code=CURRENCY_CODE, amount_minor=dollars * MINOR_UNITS_PER_DOLLAR
    )


def _statement(month: TaiwanMonth) -> ledger_service_pb2.Statement:
    status, months_late = repayment_status_for(month.repayment_code)
    return ledger_service_pb2.Statement(
        period=ledger_service_pb2.StatementPeriod(year=month.period.year, month=month.period.month),
        balance=_money(month.balance_dollars),
        amount_paid=_money(month.amount_paid_dollars),
        repayment_status=status,
        months_late=months_late,
    )


def repayment_status_for(code: int) -> tuple[ledger_service_pb2.RepaymentStatus.ValueType, int]:
    """The ledger's repayment status and months late for a PAY_x code of the data set."""
    if code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[code], 0
    if 1 <= code <= MONTHS_LATE_MAX:
        return ledger_service_pb2.REPAYMENT_STATUS_LATE, code
    raise TaiwanDataError(
        f"repayment code {code} is not defined by the data set"
        f" (expected -2, -1, 0 or 1..{MONTHS_LATE_MAX})"
    )


# ---------------------------------------------------------------------------------------------
# Ledger to row


def row_values_from_history(
    history: ledger_service_pb2.GetCreditHistoryResponse,
) -> dict[str, int]:
    """The behaviour columns of the row a replayed user's history came from.

    The keys and order are those of `BEHAVIOUR_COLUMNS` (and of `TaiwanRow.behaviour_values`), so
    a round trip is checked with one comparison. Statements are found by period, so the order
    of the history and any statements outside April to September 2005 do not matter. Raises
    `TaiwanDataError` when the history cannot have come from a row: a foreign user, a missing
    credit line or month, another currency, or an amount that is not whole dollars.
    """
    if not history.HasField("credit_line"):
        raise TaiwanDataError(f"history of {history.user_id!r} has no credit line")
    statements_by_period = _statements_by_period(history)
    values = {
        ID_COLUMN: client_id_for(history.user_id),
        CREDIT_LINE_COLUMN: _dollars(history.credit_line, "credit_line"),
    }
    for columns in MONTHS:
        statement = statements_by_period.get(columns.period)
        if statement is None:
            raise TaiwanDataError(
                f"history of {history.user_id!r} has no statement for {columns.period}"
            )
        values[columns.repayment_status_column] = repayment_code_for(statement)
        values[columns.balance_column] = _dollars(statement.balance, columns.balance_column)
        values[columns.amount_paid_column] = _dollars(
            statement.amount_paid, columns.amount_paid_column
        )
    return {column: values[column] for column in BEHAVIOUR_COLUMNS}


def client_id_for(user_id: str) -> int:
    """The data set's ID of a replayed user (the inverse of `user_id_for`)."""
    digits = user_id.removeprefix(USER_ID_PREFIX)
    if digits == user_id or not digits.isascii() or not digits.isdigit():
        raise TaiwanDataError(f"user {user_id!r} was not replayed from the Taiwan data set")
    return int(digits)


def repayment_code_for(statement: ledger_service_pb2.Statement) -> int:
    """The data set's PAY_x code for a statement (the inverse of `repayment_status_for`)."""
    status = statement.repayment_status
    if status in _CODE_BY_STATUS and statement.months_late == 0:
        return _CODE_BY_STATUS[status]
    if status == ledger_service_pb2.REPAYMENT_STATUS_LATE and statement.months_late >= 1:
        return statement.months_late
    raise TaiwanDataError(
        f"statement for {statement.period.year}-{statement.period.month:02d} has repayment status"
        f" {ledger_service_pb2.RepaymentStatus.Name(status)} with months_late"
        f" {statement.months_late}, which no PAY_x code stands for"
    )


def _statements_by_period(
    history: ledger_service_pb2.GetCreditHistoryResponse,
) -> dict[Period, ledger_service_pb2.Statement]:
    by_period: dict[Period, ledger_service_pb2.Statement] = {}
    for statement in history.statements:
        period = Period(statement.period.year, statement.period.month)
        if period in by_period:
            raise TaiwanDataError(f"history of {history.user_id!r} repeats the period {period}")
        by_period[period] = statement
    return by_period


def _dollars(money: money_pb2.Money, field: str) -> int:
    if money.currency_code != CURRENCY_CODE:
        raise TaiwanDataError(f"{field}: expected {CURRENCY_CODE}, got {money.currency_code!r}")
    dollars, cents = divmod(money.amount_minor, MINOR_UNITS_PER_DOLLAR)
    if cents != 0:
        raise TaiwanDataError(f"{field}: {money.amount_minor} minor units is not whole dollars")
    return dollars
