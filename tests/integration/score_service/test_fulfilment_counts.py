"""The fulfilment record counts, through a real ledger and GetScore: a user whose whole record is
Sesame's own is scored once three months of obligations are kept, a default recorded in the
ledger lowers the next score below what the bike scenario waives in full and the reasons name
it, and a kept promise never lowers it. Each next score is read once the ledger's entry stream
has carried the new outcome to the score service's cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb, ledger_service_pb2_grpc
from sesame.score.v1 import score_service_pb2 as pb
from sesame.type.v1.money_pb2 import Money

from services.datasets import taiwan
from services.waiver.adapters.seed_file import read_seed_file
from services.waiver.domain.capacity import capacity_for
from services.waiver.domain.decision import ScoreView, WaiverOutcome, decide
from services.waiver.settings import SEED_POLICIES_FILE

from .conftest import CALL_TIMEOUT_S, RunningLedger, ScoreServer

INVALIDATION_WAIT_S = 5.0
FEE_MINOR = 300  # a 3-yuan bike fee
YUAN_MINOR = 100
BIKE_DEPOSIT_MINOR = 99 * YUAN_MINOR


def due_in_month(months_before_now: int) -> datetime:
    """The 5th of a month that ended `months_before_now` months ago (1: the month before this)."""
    month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(months_before_now):
        month_start = (month_start - timedelta(days=1)).replace(day=1)
    return month_start + timedelta(days=4)


def timestamp(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


class SesameRecord:
    """Obligations written through the ledger directly, as the waiver writes them."""

    def __init__(self, ledger: RunningLedger, user_id: str) -> None:
        self.stub = ledger_service_pb2_grpc.LedgerServiceStub(ledger.channel)
        self.user_id = user_id
        ledger.grant_consent(user_id)

    def _obligation(self, key: str, due: datetime) -> str:
        created = self.stub.CreateObligation(
            ledger_pb.CreateObligationRequest(
                request_id=f"{self.user_id}-{key}-create",
                user_id=self.user_id,
                amount_due=Money(currency_code="CNY", amount_minor=FEE_MINOR),
                due_time=timestamp(due),
                purpose="bike rental fee",
            ),
            timeout=CALL_TIMEOUT_S,
        )
        return created.obligation.obligation_id

    def paid(self, key: str, due: datetime, *, days_late: int = 0) -> None:
        obligation_id = self._obligation(key, due)
        paid_at = due + timedelta(days=days_late) - timedelta(hours=1)
        self.stub.RecordPayment(
            ledger_pb.RecordPaymentRequest(
                request_id=f"{self.user_id}-{key}-pay",
                obligation_id=obligation_id,
                amount=Money(currency_code="CNY", amount_minor=FEE_MINOR),
                paid_time=timestamp(paid_at),
            ),
            timeout=CALL_TIMEOUT_S,
        )
        self._close(
            key,
            obligation_id,
            ledger_pb.OBLIGATION_OUTCOME_LATE
            if days_late
            else ledger_pb.OBLIGATION_OUTCOME_ON_TIME,
            days_late,
            paid_at,
        )

    def defaulted(self, key: str, due: datetime) -> None:
        obligation_id = self._obligation(key, due)
        self._close(key, obligation_id, ledger_pb.OBLIGATION_OUTCOME_DEFAULTED, 0, due)

    def _close(
        self, key: str, obligation_id: str, outcome: int, days_late: int, closed_at: datetime
    ) -> None:
        self.stub.CloseObligation(
            ledger_pb.CloseObligationRequest(
                request_id=f"{self.user_id}-{key}-close",
                obligation_id=obligation_id,
                outcome=outcome,  # type: ignore[arg-type]
                days_late=days_late,
                close_time=timestamp(closed_at),
            ),
            timeout=CALL_TIMEOUT_S,
        )


def score_now(server: ScoreServer, user_id: str) -> pb.Score:
    request = pb.GetScoreRequest(user_id=user_id)
    return server.stub.GetScore(request, timeout=CALL_TIMEOUT_S).score


def next_score(server: ScoreServer, user_id: str, changed: Callable[[pb.Score], bool]) -> pb.Score:
    """The score once the entry stream has carried the new entry (the cache keeps a history for
    a minute otherwise)."""
    deadline = time.monotonic() + INVALIDATION_WAIT_S
    score = score_now(server, user_id)
    while not changed(score) and time.monotonic() < deadline:
        time.sleep(0.02)
        score = score_now(server, user_id)
    return score


def bike_decision(score: pb.Score) -> WaiverOutcome:
    """What the seed policy of the bike scenario decides for a 99-yuan deposit with this score,
    through the waiver's own pure decision function and capacity table."""
    (bike,) = [
        policy
        for policy in read_seed_file(SEED_POLICIES_FILE, YUAN_MINOR)
        if policy.scenario_id == "bike"
    ]
    view = ScoreView(
        score=None if score.thin_file else score.score,
        probability_of_default=None if score.thin_file else score.probability_of_default,
        reasons=(),
        model_version=score.model_version,
    )
    capacity_minor = capacity_for(view.score, YUAN_MINOR).capacity_minor
    return decide(
        risk_minor=BIKE_DEPOSIT_MINOR,
        policy=bike,
        score=view,
        capacity_minor=capacity_minor,
        remaining_capacity_minor=capacity_minor,
        currency_code="CNY",
        unit_minor=YUAN_MINOR,
    ).outcome


def test_three_kept_months_make_a_score_and_a_default_the_next_month_takes_the_bike_away(
    ledger: RunningLedger, score_server: ScoreServer
) -> None:
    user_id = "sesame-only-1"
    record = SesameRecord(ledger, user_id)
    record.paid("m4", due_in_month(4))
    record.paid("m3", due_in_month(3))
    thin = score_now(score_server, user_id)

    record.paid("m2", due_in_month(2))
    kept = next_score(score_server, user_id, lambda score: not score.thin_file)

    record.defaulted("m1", due_in_month(1))
    broke = next_score(score_server, user_id, lambda score: score.score != kept.score)

    assert thin.thin_file
    assert thin.thin_file_reason == pb.THIN_FILE_REASON_TOO_FEW_MONTHS_ON_RECORD
    assert (thin.sesame_obligation_count, thin.partner_statement_count) == (2, 0)
    assert not kept.thin_file and kept.sesame_obligation_count == 3
    assert bike_decision(kept) is WaiverOutcome.FULL
    assert broke.score < kept.score and broke.sesame_obligation_count == 4
    assert bike_decision(broke) is not WaiverOutcome.FULL
    assert broke.reasons[0].code == "SESAME_ORDER_DEFAULTED"
    assert due_in_month(1).strftime("%B") in broke.reasons[0].message_en
    assert "芝麻订单" in broke.reasons[0].message_zh


def test_a_kept_promise_never_lowers_the_score_and_a_late_one_never_raises_it(
    ledger: RunningLedger, score_server: ScoreServer
) -> None:
    user_id = "sesame-only-2"
    record = SesameRecord(ledger, user_id)
    for months in (5, 4, 3):
        record.paid(f"m{months}", due_in_month(months))
    record.defaulted("m6", due_in_month(6))
    before = score_now(score_server, user_id)

    record.paid("m2", due_in_month(2))
    kept = next_score(
        score_server,
        user_id,
        lambda score: score.sesame_obligation_count != before.sesame_obligation_count,
    )
    record.paid("m1", due_in_month(1), days_late=12)
    late = next_score(
        score_server,
        user_id,
        lambda score: score.sesame_obligation_count != kept.sesame_obligation_count,
    )

    assert (before.sesame_obligation_count, kept.sesame_obligation_count) == (4, 5)
    assert late.sesame_obligation_count == 6
    assert kept.score >= before.score
    assert late.score < kept.score
    codes = [reason.code for reason in late.reasons]
    assert "SESAME_ORDER_PAID_LATE" in codes or "SESAME_ORDER_DEFAULTED" in codes


def test_a_partner_history_says_it_rests_on_six_statements_and_no_obligation(
    score_server: ScoreServer,
) -> None:
    request = pb.GetScoreRequest(user_id="tw-1", as_of_time=timestamp(taiwan.STATEMENTS_AS_OF))

    score = score_server.stub.GetScore(request, timeout=CALL_TIMEOUT_S).score

    assert not score.thin_file
    assert (score.partner_statement_count, score.sesame_obligation_count) == (6, 0)
