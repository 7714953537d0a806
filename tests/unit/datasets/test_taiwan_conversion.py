"""A row of the Taiwan credit data set becomes a partner report, and the ledger's history of the
replayed user gives the row back exactly."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sesame.ledger.v1 import ledger_service_pb2
from sesame.type.v1 import money_pb2

from services.datasets import taiwan
from services.datasets.taiwan import (
    TaiwanDataError,
    TaiwanMonth,
    TaiwanRow,
    credit_history_request,
    read_protected_attributes,
    read_rows,
    row_values_from_history,
    to_credit_history,
    to_partner_report,
)

SAMPLE_CSV = Path(__file__).parents[2] / "fixtures" / "taiwan_sample.csv"
SAMPLE_IDS = [1, 4, 5, 6, 27, 69, 650, 2325]

Status = ledger_service_pb2.RepaymentStatus


def sample_rows() -> list[TaiwanRow]:
    return list(read_rows(SAMPLE_CSV))


def sample_csv_values() -> list[dict[str, int]]:
    with SAMPLE_CSV.open(newline="") as text:
        return [
            {column: int(value) for column, value in row.items()} for row in csv.DictReader(text)
        ]


def history_the_ledger_would_return(
    report: ledger_service_pb2.PartnerReport,
) -> ledger_service_pb2.GetCreditHistoryResponse:
    """What GetCreditHistory returns once the report is recorded: statements newest first."""
    newest_first = sorted(
        report.statements, key=lambda statement: (statement.period.year, statement.period.month)
    )[::-1]
    return ledger_service_pb2.GetCreditHistoryResponse(
        user_id=report.user_id, credit_line=report.credit_line, statements=newest_first
    )


def twd(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="TWD", amount_minor=amount_minor)


def row_with_first_month(**changes: object) -> TaiwanRow:
    first_row = sample_rows()[0]
    september = dataclasses.replace(first_row.months[0], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(first_row, months=(september, *first_row.months[1:]))


# Reading the file


def test_the_sample_rows_are_read_in_file_order() -> None:
    assert [row.client_id for row in sample_rows()] == SAMPLE_IDS


def test_the_first_row_is_read_with_every_behaviour_value_and_its_label() -> None:
    first = sample_rows()[0]

    assert first.client_id == 1
    assert first.credit_line_dollars == 20000
    assert first.months[0] == TaiwanMonth(taiwan.Period(2005, 9), 2, 3913, 0)
    assert first.months[1] == TaiwanMonth(taiwan.Period(2005, 8), 2, 3102, 689)
    assert first.months[2] == TaiwanMonth(taiwan.Period(2005, 7), -1, 689, 0)
    assert first.months[5] == TaiwanMonth(taiwan.Period(2005, 4), -2, 0, 0)
    assert first.defaulted_next_month is True


def test_behaviour_values_are_the_csv_columns_without_protected_attributes_or_label() -> None:
    for row, csv_values in zip(sample_rows(), sample_csv_values(), strict=True):
        expected = {column: csv_values[column] for column in taiwan.BEHAVIOUR_COLUMNS}
        assert row.behaviour_values() == expected
        assert list(row.behaviour_values()) == list(taiwan.BEHAVIOUR_COLUMNS)


def test_a_gzipped_file_reads_the_same_rows(tmp_path: Path) -> None:
    compressed = tmp_path / "taiwan_sample.csv.gz"
    with SAMPLE_CSV.open("rb") as plain, gzip.open(compressed, "wb") as packed:
        shutil.copyfileobj(plain, packed)

    assert list(read_rows(compressed)) == sample_rows()


def test_protected_attributes_are_read_apart_for_fairness_measurement() -> None:
    attributes = list(read_protected_attributes(SAMPLE_CSV))

    assert [each.client_id for each in attributes] == SAMPLE_IDS
    assert attributes[0] == taiwan.ProtectedAttributes(
        client_id=1, sex=2, education=2, marriage=1, age=24
    )


# Malformed files


def write_sample_with(tmp_path: Path, line_number: int, column: str, value: str) -> Path:
    """The sample with one value replaced; line_number counts the header as line 1."""
    lines = SAMPLE_CSV.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[line_number - 1].split(",")
    fields[header.index(column)] = value
    lines[line_number - 1] = ",".join(fields)
    path = tmp_path / "malformed.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("BILL_AMT2", "3102.5"),
        ("PAY_AMT1", ""),
        ("LIMIT_BAL", "20,000"),
        ("PAY_0", "two"),
        ("BILL_AMT6", " 12"),
        ("PAY_AMT3", "1e3"),
    ],
)
def test_a_value_that_is_not_a_whole_number_names_its_line_and_column(
    tmp_path: Path, column: str, value: str
) -> None:
    # "20,000" is written unquoted, so it also splits the line into one value too many.
    path = write_sample_with(tmp_path, line_number=3, column=column, value=value)

    with pytest.raises(TaiwanDataError, match=r"line 3\b") as raised:
        list(read_rows(path))

    if "," not in value:
        assert f"column {column}" in str(raised.value)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("PAY_0", "-3"),
        ("PAY_4", "10"),
        ("PAY_AMT2", "-1"),
        ("LIMIT_BAL", "0"),
        ("ID", "0"),
        ("default.payment.next.month", "2"),
    ],
)
def test_a_value_the_data_set_does_not_define_names_its_line_and_column(
    tmp_path: Path, column: str, value: str
) -> None:
    path = write_sample_with(tmp_path, line_number=5, column=column, value=value)

    with pytest.raises(TaiwanDataError, match=rf"line 5, column {column}\b"):
        list(read_rows(path))


def test_a_missing_column_is_reported_from_the_header(tmp_path: Path) -> None:
    lines = SAMPLE_CSV.read_text().replace("PAY_AMT6,", "PAY_AMT_6,").splitlines()
    path = tmp_path / "renamed.csv"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(TaiwanDataError, match=r"line 1: .*missing \['PAY_AMT6'\]"):
        list(read_rows(path))


def test_a_line_with_too_few_values_names_the_line(tmp_path: Path) -> None:
    lines = SAMPLE_CSV.read_text().splitlines()
    lines[6] = lines[6].rsplit(",", 1)[0]
    path = tmp_path / "short.csv"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(TaiwanDataError, match=r"line 7: expected 25 values, found 24"):
        list(read_rows(path))


def test_broken_quoting_names_the_line(tmp_path: Path) -> None:
    lines = SAMPLE_CSV.read_text().splitlines()
    lines[3] = lines[3].replace(",50000,", ',"50000"x,', 1)
    path = tmp_path / "quoted.csv"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(TaiwanDataError, match=r"line 4: not valid CSV"):
        list(read_rows(path))


def test_a_file_that_is_not_text_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(SAMPLE_CSV.read_bytes() + b"\xff\xfe\x00,1\n")

    with pytest.raises(TaiwanDataError, match="not UTF-8 text"):
        list(read_rows(path))


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")

    with pytest.raises(TaiwanDataError, match="empty"):
        list(read_rows(path))


# Row to report


def test_the_first_row_becomes_a_report_of_its_credit_line_and_six_statements() -> None:
    report = to_partner_report(sample_rows()[0])

    assert report.user_id == "tw-1"
    assert report.partner_id == "taiwan-credit-2005"
    assert report.credit_line == twd(2_000_000)
    assert [(s.period.year, s.period.month) for s in report.statements] == [
        (2005, 9),
        (2005, 8),
        (2005, 7),
        (2005, 6),
        (2005, 5),
        (2005, 4),
    ]
    assert [(s.repayment_status, s.months_late) for s in report.statements] == [
        (Status.REPAYMENT_STATUS_LATE, 2),
        (Status.REPAYMENT_STATUS_LATE, 2),
        (Status.REPAYMENT_STATUS_PAID_IN_FULL, 0),
        (Status.REPAYMENT_STATUS_PAID_IN_FULL, 0),
        (Status.REPAYMENT_STATUS_NO_USE, 0),
        (Status.REPAYMENT_STATUS_NO_USE, 0),
    ]
    assert [s.balance for s in report.statements] == [
        twd(391_300),
        twd(310_200),
        twd(68_900),
        twd(0),
        twd(0),
        twd(0),
    ]
    assert [s.amount_paid for s in report.statements] == [
        twd(0),
        twd(68_900),
        twd(0),
        twd(0),
        twd(0),
        twd(0),
    ]


def test_every_amount_is_the_csv_value_in_cents_and_negative_balances_stay_negative() -> None:
    for row, csv_values in zip(sample_rows(), sample_csv_values(), strict=True):
        report = to_partner_report(row)
        balances = [statement.balance.amount_minor for statement in report.statements]
        paid = [statement.amount_paid.amount_minor for statement in report.statements]

        assert report.credit_line.amount_minor == csv_values["LIMIT_BAL"] * 100
        assert balances == [csv_values[column] * 100 for column in taiwan.BALANCE_COLUMNS]
        assert paid == [csv_values[column] * 100 for column in taiwan.AMOUNT_PAID_COLUMNS]

    client_27 = to_partner_report(sample_rows()[4])
    assert client_27.statements[0].balance == twd(-10_900)


def test_amounts_beyond_float_precision_convert_exactly() -> None:
    # 2**53 + 1 dollars: a float cannot hold it, let alone its value in cents. The file reader
    # refuses amounts this large, but the conversion itself must not depend on that.
    dollars = 2**53 + 1
    assert float(dollars) * 100 != dollars * 100
    report = to_partner_report(row_with_first_month(balance_dollars=dollars))

    assert report.statements[0].balance.amount_minor == 900_719_925_474_099_300


@pytest.mark.parametrize(
    ("code", "status", "months_late"),
    [
        (-2, Status.REPAYMENT_STATUS_NO_USE, 0),
        (-1, Status.REPAYMENT_STATUS_PAID_IN_FULL, 0),
        (0, Status.REPAYMENT_STATUS_REVOLVING, 0),
        (1, Status.REPAYMENT_STATUS_LATE, 1),
        (8, Status.REPAYMENT_STATUS_LATE, 8),
        (9, Status.REPAYMENT_STATUS_LATE, 9),
    ],
)
def test_each_repayment_code_has_one_status(code: int, status: int, months_late: int) -> None:
    statement = to_partner_report(row_with_first_month(repayment_code=code)).statements[0]

    assert (statement.repayment_status, statement.months_late) == (status, months_late)


@pytest.mark.parametrize("code", [-3, 10, 99])
def test_a_repayment_code_the_data_set_does_not_define_is_refused(code: int) -> None:
    with pytest.raises(TaiwanDataError, match=f"repayment code {code} "):
        to_partner_report(row_with_first_month(repayment_code=code))


def test_protected_attributes_never_reach_the_report(tmp_path: Path) -> None:
    # The same clients with every protected attribute changed must give the very same reports.
    changed = tmp_path / "protected_changed.csv"
    with SAMPLE_CSV.open(newline="") as source, changed.open("w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for row in reader:
            writer.writerow(row | {"SEX": "1", "EDUCATION": "6", "MARRIAGE": "3", "AGE": "79"})

    reports = [to_partner_report(row).SerializeToString() for row in sample_rows()]
    changed_reports = [to_partner_report(row).SerializeToString() for row in read_rows(changed)]

    assert changed_reports == reports
    field_names = {field.name for field in dataclasses.fields(TaiwanRow)}
    assert field_names.isdisjoint({"sex", "education", "marriage", "age"})


def test_a_row_must_cover_april_to_september_2005_newest_first() -> None:
    first_row = sample_rows()[0]

    with pytest.raises(TaiwanDataError, match="expected the months"):
        dataclasses.replace(first_row, months=first_row.months[::-1])


# Ledger history to row


def test_the_history_of_a_replayed_row_gives_back_every_value() -> None:
    for row in sample_rows():
        history = history_the_ledger_would_return(to_partner_report(row))

        assert row_values_from_history(history) == row.behaviour_values()


def test_the_history_of_a_row_is_what_the_ledger_returns_for_its_report() -> None:
    for row in sample_rows():
        expected = history_the_ledger_would_return(to_partner_report(row))
        expected.as_of_time.FromDatetime(datetime(2005, 10, 1, tzinfo=UTC))

        assert to_credit_history(row) == expected


def test_statements_are_found_by_period_whatever_their_order_or_company() -> None:
    row = sample_rows()[5]
    history = history_the_ledger_would_return(to_partner_report(row))
    older = ledger_service_pb2.Statement(
        period=ledger_service_pb2.StatementPeriod(year=2005, month=3),
        balance=twd(100),
        amount_paid=twd(0),
        repayment_status=Status.REPAYMENT_STATUS_REVOLVING,
    )
    shuffled = ledger_service_pb2.GetCreditHistoryResponse(
        user_id=history.user_id,
        credit_line=history.credit_line,
        statements=[*history.statements[3:], older, *history.statements[:3]],
    )

    assert row_values_from_history(shuffled) == row.behaviour_values()


def test_a_history_missing_a_month_cannot_give_back_a_row() -> None:
    history = history_the_ledger_would_return(to_partner_report(sample_rows()[0]))
    del history.statements[2]

    with pytest.raises(TaiwanDataError, match=r"no statement for Period\(year=2005, month=7\)"):
        row_values_from_history(history)


def test_a_history_without_a_credit_line_cannot_give_back_a_row() -> None:
    history = history_the_ledger_would_return(to_partner_report(sample_rows()[0]))
    history.ClearField("credit_line")

    with pytest.raises(TaiwanDataError, match="no credit line"):
        row_values_from_history(history)


def test_an_amount_that_is_not_whole_dollars_is_refused_rather_than_rounded() -> None:
    history = history_the_ledger_would_return(to_partner_report(sample_rows()[0]))
    history.statements[0].balance.amount_minor += 1

    with pytest.raises(TaiwanDataError, match="not whole dollars"):
        row_values_from_history(history)


def test_an_amount_in_another_currency_is_refused() -> None:
    history = history_the_ledger_would_return(to_partner_report(sample_rows()[0]))
    history.credit_line.currency_code = "USD"

    with pytest.raises(TaiwanDataError, match="expected TWD"):
        row_values_from_history(history)


# "\u0661" is ARABIC-INDIC DIGIT ONE, a digit to str.isdigit but not an ID of the data set.
@pytest.mark.parametrize("user_id", ["user-1", "tw-", "tw-1a", "tw--1", "tw-\u0661"])
def test_a_user_not_replayed_from_the_data_set_is_refused(user_id: str) -> None:
    history = history_the_ledger_would_return(to_partner_report(sample_rows()[0]))
    history.user_id = user_id

    with pytest.raises(TaiwanDataError, match="not replayed from the Taiwan data set"):
        row_values_from_history(history)


@pytest.mark.parametrize(
    ("status", "months_late"),
    [
        (Status.REPAYMENT_STATUS_UNSPECIFIED, 0),
        (Status.REPAYMENT_STATUS_LATE, 0),
        (Status.REPAYMENT_STATUS_REVOLVING, 3),
    ],
)
def test_a_status_no_repayment_code_stands_for_is_refused(status: int, months_late: int) -> None:
    history = history_the_ledger_would_return(to_partner_report(sample_rows()[0]))
    history.statements[0].repayment_status = status  # type: ignore[assignment]
    history.statements[0].months_late = months_late

    with pytest.raises(TaiwanDataError, match="which no PAY_x code stands for"):
        row_values_from_history(history)


def test_the_history_request_reads_six_statements_as_of_the_start_of_october_2005() -> None:
    request = credit_history_request("tw-27")

    assert request.user_id == "tw-27"
    assert request.max_statements == 6
    assert request.as_of_time.ToDatetime(tzinfo=UTC) == datetime(2005, 10, 1, tzinfo=UTC)
    assert datetime(2005, 10, 1, tzinfo=UTC) == taiwan.STATEMENTS_AS_OF
