"""The codec turns records into plain values and back, and refuses anything unexpected."""

from __future__ import annotations

import pytest

from services.common.money import Money
from services.ledger.domain import commands
from services.ledger.domain.codec import DecodeError, from_plain, to_plain, with_defaults
from services.ledger.domain.events import (
    HoldReleased,
    ObligationReduced,
    StatementReported,
    decode_event,
)
from services.ledger.domain.records import (
    Hold,
    HoldState,
    Obligation,
    ObligationOutcome,
    RepaymentStatus,
    StatementPeriod,
)
from services.ledger.domain.results import CaptureResult


def test_records_round_trip_through_plain_values():
    hold = Hold("h", "u", "CNY", 5, HoldState.CAPTURED, "", 1, 2, 5, 3, "o", False)
    result = CaptureResult(hold=hold, obligation=None)
    command = commands.RecordPartnerStatements(
        "r",
        (
            commands.PartnerReport(
                "u",
                "bank",
                None,
                (
                    commands.StatementReport(
                        StatementPeriod(2005, 4), Money("TWD", -1), None, RepaymentStatus.LATE, 2
                    ),
                ),
            ),
        ),
    )

    assert from_plain(CaptureResult, to_plain(result)) == result
    assert from_plain(commands.RecordPartnerStatements, to_plain(command)) == command
    assert to_plain(ObligationOutcome.LATE) == "LATE"


def test_floats_have_no_plain_form():
    with pytest.raises(TypeError):
        to_plain(Money("CNY", 1.5))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [
        {"hold_id": "h", "fulfilled": 1, "released_at_us": 5},  # an int is not a bool
        {"hold_id": "h", "fulfilled": True, "released_at_us": True},  # nor a bool an int
        {"hold_id": "h", "fulfilled": True, "released_at_us": 5.0},
        {"hold_id": "h", "fulfilled": True},
        {"hold_id": "h", "fulfilled": True, "released_at_us": 5, "extra": 1},
        ["h", True, 5],
    ],
)
def test_decoding_is_strict(payload):
    with pytest.raises(DecodeError):
        decode_event("HOLD_RELEASED", payload)


def test_events_decode_by_entry_type():
    payload = to_plain(StatementReported("bank", 2005, 4, "TWD", -3, 0, RepaymentStatus.NO_USE, 0))

    assert decode_event("STATEMENT_REPORTED", payload).period == StatementPeriod(2005, 4)
    assert decode_event("HOLD_RELEASED", to_plain(HoldReleased("h", True, 5))) == HoldReleased(
        "h", True, 5
    )
    with pytest.raises(ValueError):
        decode_event("NOT_A_TYPE", {})


def test_a_reduction_is_journaled_with_both_amounts_its_reason_and_its_time():
    reduction = ObligationReduced("o", 1_000, 600, "discount", 5)

    payload = to_plain(reduction)

    # The payload's keys are the journal's format: renaming one is a schema change.
    assert payload == {
        "obligation_id": "o",
        "previous_amount_due_minor": 1_000,
        "amount_due_minor": 600,
        "reason": "discount",
        "reduced_at_us": 5,
    }
    assert decode_event("OBLIGATION_REDUCED", payload) == reduction


def test_an_answer_stored_before_a_field_with_a_default_existed_still_decodes():
    # A capture's answer as stored before obligations carried a statement: the keys the
    # obligation lacks are filled with their defaults; everything else stays strict.
    obligation = Obligation("o-1", "user-1", "CNY", 300, 1, "fee", "ref", 2)
    hold = Hold("h", "u", "CNY", 5, HoldState.CAPTURED, "", 1, 2, 5, 3, "o-1", False)
    stored = to_plain(CaptureResult(hold=hold, obligation=obligation))
    assert isinstance(stored, dict) and isinstance(stored["obligation"], dict)
    del stored["obligation"]["attached_statement"]
    del stored["obligation"]["attached_statement_at_us"]

    with pytest.raises(DecodeError):
        from_plain(CaptureResult, stored)
    decoded = from_plain(CaptureResult, with_defaults(CaptureResult, stored))

    assert decoded.obligation == obligation
