"""Requests to commands and domain values to messages: the waiver's one request reader.

Every field of every request is checked here, all problems of a request at once (see
`services.common.validation`); what needs the order, the policy or the clock is checked by the use
cases. Amounts must be in the waiver's currency.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from google.protobuf import duration_pb2, timestamp_pb2
from sesame.type.v1.money_pb2 import Money as MoneyMessage
from sesame.waiver.v1 import waiver_service_pb2 as pb

from services.common.money import Money
from services.common.validation import Sign, Violations
from services.waiver.domain import commands, reasons
from services.waiver.domain.decision import WaiverOutcome
from services.waiver.domain.order import LineItem, OrderRequest, OrderState, RiskFundType
from services.waiver.domain.policy import (
    ScenarioPolicy,
    ScoringUnavailableAction,
    ThinFileTreatment,
    check_policy,
)
from services.waiver.service.orders import OrderView

OUT_ORDER_NO_LENGTH_MAX = 64
SCENARIO_ID_LENGTH_MAX = 64
LINE_ITEM_NAME_LENGTH_MAX = 64
LINE_ITEM_DESCRIPTION_LENGTH_MAX = 256
LINE_ITEM_COUNT_MAX = 100
POST_PAYMENTS_MAX = 100
POST_DISCOUNTS_MAX = 30
STATE_REASON_LENGTH_MAX = 50
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
LANGUAGES = ("en", "zh")
# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
TIMESTAMP_SECONDS_MIN = -62_135_596_800
TIMESTAMP_SECONDS_MAX = 253_402_300_799
# google.protobuf.Duration's own range: +-10,000 years.
DURATION_SECONDS_MAX = 315_576_000_000
NANOS_PER_MICROSECOND = 1000
MICROSECONDS_PER_SECOND = 1_000_000

_RISK_FUND_TYPES = {
    pb.RISK_FUND_TYPE_DEPOSIT: RiskFundType.DEPOSIT,
    pb.RISK_FUND_TYPE_ADVANCE: RiskFundType.ADVANCE,
    pb.RISK_FUND_TYPE_CASH_DEPOSIT: RiskFundType.CASH_DEPOSIT,
    pb.RISK_FUND_TYPE_ESTIMATE_ORDER_COST: RiskFundType.ESTIMATE_ORDER_COST,
}
_RISK_FUND_TYPE_MESSAGES = {value: key for key, value in _RISK_FUND_TYPES.items()}
_STATES = {
    pb.ORDER_STATE_CREATED: OrderState.CREATED,
    pb.ORDER_STATE_DOING: OrderState.DOING,
    pb.ORDER_STATE_AWAITING_PAYMENT: OrderState.AWAITING_PAYMENT,
    pb.ORDER_STATE_DONE: OrderState.DONE,
    pb.ORDER_STATE_REVOKED: OrderState.REVOKED,
    pb.ORDER_STATE_EXPIRED: OrderState.EXPIRED,
    pb.ORDER_STATE_OVERDUE: OrderState.OVERDUE,
    pb.ORDER_STATE_BREACHED: OrderState.BREACHED,
    pb.ORDER_STATE_DENIED: OrderState.DENIED,
}
_STATE_MESSAGES = {value: key for key, value in _STATES.items()}
_OUTCOME_MESSAGES = {
    WaiverOutcome.FULL: pb.WAIVER_OUTCOME_FULL,
    WaiverOutcome.PARTIAL: pb.WAIVER_OUTCOME_PARTIAL,
    WaiverOutcome.DENIED: pb.WAIVER_OUTCOME_DENIED,
}
_THIN_FILE_TREATMENTS = {
    pb.THIN_FILE_TREATMENT_DENY: ThinFileTreatment.DENY,
    pb.THIN_FILE_TREATMENT_STARTER_WAIVER: ThinFileTreatment.STARTER_WAIVER,
}
_THIN_FILE_TREATMENT_MESSAGES = {value: key for key, value in _THIN_FILE_TREATMENTS.items()}
_SCORING_UNAVAILABLE_ACTIONS = {
    pb.SCORING_UNAVAILABLE_ACTION_REFUSE_ORDER: ScoringUnavailableAction.REFUSE_ORDER,
    pb.SCORING_UNAVAILABLE_ACTION_FULL_DEPOSIT: ScoringUnavailableAction.FULL_DEPOSIT,
}
_SCORING_UNAVAILABLE_ACTION_MESSAGES = {
    value: key for key, value in _SCORING_UNAVAILABLE_ACTIONS.items()
}


class RequestReader:
    """Reads requests into commands for one currency; every problem is collected, then raised."""

    def __init__(self, currency_code: str) -> None:
        self.currency_code = currency_code

    # Orders

    def create_order(self, request: pb.CreateOrderRequest) -> commands.CreateOrder:
        violations = Violations()
        violations.request_id(request.request_id)
        self._order_key(violations, request.merchant_id, request.out_order_no)
        violations.identifier("user_id", request.user_id)
        _scenario_id(violations, "scenario_id", request.scenario_id)
        risk_fund_type = _RISK_FUND_TYPES.get(request.risk_fund_type)
        if risk_fund_type is None:
            violations.add(
                "risk_fund_type", reasons.ENUM_VALUE_INVALID, "must be a known risk fund type"
            )
        risk_minor = self._amount(violations, "risk_amount", request, "risk_amount", Sign.POSITIVE)
        start_us, end_us = self._time_range(violations, request)
        payments = self._line_items(
            violations, "post_payments", request.post_payments, POST_PAYMENTS_MAX
        )
        discounts = self._line_items(
            violations, "post_discounts", request.post_discounts, POST_DISCOUNTS_MAX
        )
        language_code = request.language_code or "en"
        if language_code not in LANGUAGES:
            violations.add("language_code", reasons.LANGUAGE_UNSUPPORTED, 'must be "en" or "zh"')
        violations.raise_if_any()
        assert risk_fund_type is not None and start_us is not None and end_us is not None
        return commands.CreateOrder(
            request.request_id,
            OrderRequest(
                merchant_id=request.merchant_id,
                out_order_no=request.out_order_no,
                user_id=request.user_id,
                scenario_id=request.scenario_id,
                risk_fund_type=risk_fund_type,
                risk_minor=risk_minor,
                start_us=start_us,
                end_us=end_us,
                post_payments=payments,
                post_discounts=discounts,
                language_code=language_code,
            ),
        )

    def complete_order(self, request: pb.CompleteOrderRequest) -> commands.CompleteOrder:
        violations = Violations()
        violations.request_id(request.request_id)
        self._order_key(violations, request.merchant_id, request.out_order_no)
        payments = self._line_items(
            violations, "post_payments", request.post_payments, POST_PAYMENTS_MAX
        )
        discounts = self._line_items(
            violations, "post_discounts", request.post_discounts, POST_DISCOUNTS_MAX
        )
        total_minor = self._amount(
            violations, "total_amount", request, "total_amount", Sign.NOT_NEGATIVE
        )
        end_time_us = _timestamp_us(violations, "end_time", request, "end_time")
        if not violations and (payments or discounts):
            lines_minor = sum(item.total_minor for item in payments) - sum(
                item.total_minor for item in discounts
            )
            if lines_minor != total_minor:
                violations.add(
                    "total_amount",
                    reasons.TOTAL_MISMATCH,
                    "must be the payments minus the discounts",
                )
        violations.raise_if_any()
        assert end_time_us is not None
        return commands.CompleteOrder(
            request.request_id,
            request.merchant_id,
            request.out_order_no,
            total_minor,
            end_time_us,
            payments,
            discounts,
        )

    def cancel_order(self, request: pb.CancelOrderRequest) -> commands.CancelOrder:
        violations = Violations()
        violations.request_id(request.request_id)
        self._order_key(violations, request.merchant_id, request.out_order_no)
        violations.text("reason", request.reason, STATE_REASON_LENGTH_MAX, required=True)
        violations.raise_if_any()
        return commands.CancelOrder(
            request.request_id, request.merchant_id, request.out_order_no, request.reason
        )

    def sync_payment(self, request: pb.SyncPaymentRequest) -> commands.SyncPayment:
        violations = Violations()
        violations.request_id(request.request_id)
        self._order_key(violations, request.merchant_id, request.out_order_no)
        amount_minor = self._amount(violations, "amount", request, "amount", Sign.POSITIVE)
        paid_time_us = _timestamp_us(violations, "paid_time", request, "paid_time")
        violations.raise_if_any()
        assert paid_time_us is not None
        return commands.SyncPayment(
            request.request_id,
            request.merchant_id,
            request.out_order_no,
            amount_minor,
            paid_time_us,
        )

    def modify_order(self, request: pb.ModifyOrderRequest) -> commands.ModifyOrder:
        violations = Violations()
        violations.request_id(request.request_id)
        self._order_key(violations, request.merchant_id, request.out_order_no)
        total_minor = self._amount(
            violations, "total_amount", request, "total_amount", Sign.NOT_NEGATIVE
        )
        violations.text("reason", request.reason, STATE_REASON_LENGTH_MAX, required=True)
        violations.raise_if_any()
        return commands.ModifyOrder(
            request.request_id,
            request.merchant_id,
            request.out_order_no,
            total_minor,
            request.reason,
        )

    def order_key(self, request: pb.GetOrderRequest) -> tuple[str, str]:
        violations = Violations()
        self._order_key(violations, request.merchant_id, request.out_order_no)
        violations.raise_if_any()
        return request.merchant_id, request.out_order_no

    def list_orders(
        self, request: pb.ListOrdersRequest
    ) -> tuple[str, OrderState | None, tuple[int, str] | None, int]:
        violations = Violations()
        violations.identifier("merchant_id", request.merchant_id)
        state = _STATES.get(request.state)
        if request.state != pb.ORDER_STATE_UNSPECIFIED and state is None:
            violations.add("state", reasons.ENUM_VALUE_INVALID, "must be a known order state")
        size = _page_size(violations, request.page_size)
        scope = {"merchant_id": request.merchant_id, "state": request.state}
        after = _page_position(violations, request.page_token, scope, (int, str))
        violations.raise_if_any()
        position = None if after is None else (int(str(after[0])), str(after[1]))
        return request.merchant_id, state, position, size

    # Policies

    def put_scenario_policy(
        self, request: pb.PutScenarioPolicyRequest
    ) -> commands.PutScenarioPolicy:
        violations = Violations()
        violations.request_id(request.request_id)
        if not request.HasField("policy"):
            violations.add("policy", reasons.FIELD_REQUIRED, "is required")
            violations.raise_if_any()
        message = request.policy
        thin_file_treatment = _THIN_FILE_TREATMENTS.get(message.thin_file_treatment)
        if thin_file_treatment is None:
            violations.add(
                "policy.thin_file_treatment",
                reasons.ENUM_VALUE_INVALID,
                "must be a known treatment",
            )
        action = _SCORING_UNAVAILABLE_ACTIONS.get(message.scoring_unavailable_action)
        if action is None:
            violations.add(
                "policy.scoring_unavailable_action",
                reasons.ENUM_VALUE_INVALID,
                "must be a known action",
            )
        thin_file_minor = 0
        if message.HasField("thin_file_max_waiver_amount"):
            thin_file_minor = self._amount(
                violations,
                "policy.thin_file_max_waiver_amount",
                message,
                "thin_file_max_waiver_amount",
                Sign.POSITIVE,
            )
        policy = ScenarioPolicy(
            merchant_id=message.merchant_id,
            scenario_id=message.scenario_id,
            minimum_score=message.minimum_score,
            max_waiver_minor=self._amount(
                violations, "policy.max_waiver_amount", message, "max_waiver_amount", Sign.POSITIVE
            ),
            expected_loss_budget_minor=self._amount(
                violations,
                "policy.expected_loss_budget",
                message,
                "expected_loss_budget",
                Sign.POSITIVE,
            ),
            max_service_duration_us=_duration_us(
                violations, "policy.max_service_duration", message, "max_service_duration"
            ),
            grace_period_us=_duration_us(
                violations, "policy.grace_period", message, "grace_period"
            ),
            breach_period_us=_duration_us(
                violations, "policy.breach_period", message, "breach_period"
            ),
            payment_window_us=_duration_us(
                violations, "policy.payment_window", message, "payment_window"
            ),
            thin_file_treatment=thin_file_treatment or ThinFileTreatment.DENY,
            thin_file_max_waiver_minor=thin_file_minor,
            scoring_unavailable_action=action or ScoringUnavailableAction.FULL_DEPOSIT,
        )
        check_policy(violations, policy, self.currency_code)
        violations.raise_if_any()
        return commands.PutScenarioPolicy(request.request_id, policy)

    def policy_key(self, request: pb.GetScenarioPolicyRequest) -> tuple[str, str]:
        violations = Violations()
        violations.identifier("merchant_id", request.merchant_id)
        _scenario_id(violations, "scenario_id", request.scenario_id)
        violations.raise_if_any()
        return request.merchant_id, request.scenario_id

    def list_scenario_policies(
        self, request: pb.ListScenarioPoliciesRequest
    ) -> tuple[str, str, int]:
        violations = Violations()
        violations.identifier("merchant_id", request.merchant_id)
        size = _page_size(violations, request.page_size)
        after = _page_position(
            violations, request.page_token, {"merchant_id": request.merchant_id}, (str,)
        )
        violations.raise_if_any()
        return request.merchant_id, "" if after is None else str(after[0]), size

    # Parts

    def _order_key(self, violations: Violations, merchant_id: str, out_order_no: str) -> None:
        violations.identifier("merchant_id", merchant_id)
        violations.identifier("out_order_no", out_order_no)
        if len(out_order_no) > OUT_ORDER_NO_LENGTH_MAX:
            violations.add(
                "out_order_no",
                reasons.ID_INVALID,
                f"must be at most {OUT_ORDER_NO_LENGTH_MAX} characters",
            )

    def _amount(
        self, violations: Violations, field: str, message: object, name: str, sign: Sign
    ) -> int:
        """The amount of a Money field in the waiver's currency (0 when it is wrong)."""
        if not message.HasField(name):  # type: ignore[attr-defined]
            violations.add(field, reasons.FIELD_REQUIRED, "is required")
            return 0
        money: MoneyMessage = getattr(message, name)
        before = len(violations)
        violations.money(field, Money(money.currency_code, money.amount_minor), sign)
        if len(violations) == before and money.currency_code != self.currency_code:
            violations.add(
                f"{field}.currency_code",
                reasons.CURRENCY_NOT_SUPPORTED,
                f"must be {self.currency_code}, the waiver's currency",
            )
        return money.amount_minor

    def _time_range(
        self, violations: Violations, request: pb.CreateOrderRequest
    ) -> tuple[int | None, int | None]:
        if not request.HasField("time_range"):
            violations.add("time_range", reasons.FIELD_REQUIRED, "is required")
            return None, None
        time_range = request.time_range
        start_us = _timestamp_us(violations, "time_range.start_time", time_range, "start_time")
        end_us = _timestamp_us(violations, "time_range.end_time", time_range, "end_time")
        if start_us is not None and end_us is not None and end_us <= start_us:
            violations.add(
                "time_range.end_time", reasons.TIME_RANGE_INVALID, "must be after start_time"
            )
        return start_us, end_us

    def _line_items(
        self,
        violations: Violations,
        field: str,
        items: Sequence[pb.LineItem],
        count_max: int,
    ) -> tuple[LineItem, ...]:
        if len(items) > count_max:
            violations.add(
                field, reasons.TOO_MANY_LINE_ITEMS, f"must hold at most {count_max} items"
            )
            return ()
        read = []
        for index, item in enumerate(items):
            item_field = f"{field}[{index}]"
            violations.text(
                f"{item_field}.name", item.name, LINE_ITEM_NAME_LENGTH_MAX, required=True
            )
            violations.text(
                f"{item_field}.description", item.description, LINE_ITEM_DESCRIPTION_LENGTH_MAX
            )
            amount_minor = self._amount(
                violations, f"{item_field}.amount", item, "amount", Sign.POSITIVE
            )
            if not 0 <= item.count <= LINE_ITEM_COUNT_MAX:
                violations.add(
                    f"{item_field}.count",
                    reasons.VALUE_OUT_OF_RANGE,
                    f"must be 0 to {LINE_ITEM_COUNT_MAX} (0 means 1)",
                )
            read.append(LineItem(item.name, amount_minor, item.count or 1, item.description))
        return tuple(read)


def _scenario_id(violations: Violations, field: str, scenario_id: str) -> None:
    violations.identifier(field, scenario_id)
    if len(scenario_id) > SCENARIO_ID_LENGTH_MAX:
        violations.add(
            field, reasons.ID_INVALID, f"must be at most {SCENARIO_ID_LENGTH_MAX} characters"
        )


def _timestamp_us(violations: Violations, field: str, message: object, name: str) -> int | None:
    """Microseconds since the epoch; None (and a violation) when unset or not a valid time."""
    if not message.HasField(name):  # type: ignore[attr-defined]
        violations.add(field, reasons.FIELD_REQUIRED, "is required")
        return None
    timestamp: timestamp_pb2.Timestamp = getattr(message, name)
    if not (
        TIMESTAMP_SECONDS_MIN <= timestamp.seconds <= TIMESTAMP_SECONDS_MAX
        and 0 <= timestamp.nanos <= 999_999_999
    ):
        violations.add(
            field, reasons.TIMESTAMP_INVALID, "must be a valid google.protobuf.Timestamp"
        )
        return None
    if timestamp.seconds < 0:
        violations.add(field, reasons.TIMESTAMP_INVALID, "must not be before 1970")
        return None
    return timestamp.seconds * MICROSECONDS_PER_SECOND + timestamp.nanos // NANOS_PER_MICROSECOND


def _duration_us(violations: Violations, field: str, message: object, name: str) -> int:
    """Microseconds; 0 (and a violation) when unset or not a valid duration."""
    if not message.HasField(name):  # type: ignore[attr-defined]
        violations.add(field, reasons.FIELD_REQUIRED, "is required")
        return 0
    duration: duration_pb2.Duration = getattr(message, name)
    seconds, nanos = duration.seconds, duration.nanos
    valid = (
        abs(seconds) <= DURATION_SECONDS_MAX
        and abs(nanos) <= 999_999_999
        and (seconds == 0 or nanos == 0 or (seconds > 0) == (nanos > 0))
    )
    if not valid:
        violations.add(field, reasons.DURATION_INVALID, "must be a valid google.protobuf.Duration")
        return 0
    return seconds * MICROSECONDS_PER_SECOND + int(nanos / NANOS_PER_MICROSECOND)


def _page_size(violations: Violations, page_size: int) -> int:
    if not 0 <= page_size <= PAGE_SIZE_MAX:
        violations.add("page_size", reasons.VALUE_OUT_OF_RANGE, f"must be 0 to {PAGE_SIZE_MAX}")
    return page_size or PAGE_SIZE_DEFAULT


def page_token(scope: dict[str, object], position: Sequence[object]) -> str:
    """An opaque token for the next page of the list `scope` describes."""
    plain = json.dumps({"scope": scope, "after": list(position)}, sort_keys=True)
    return base64.urlsafe_b64encode(plain.encode()).decode()


def _page_position(
    violations: Violations, token: str, scope: dict[str, object], kinds: tuple[type, ...]
) -> list[object] | None:
    """The position a page token continues after: values of `kinds`, integers within int64."""
    if not token:
        return None
    try:
        plain = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        after = plain["after"]
        if plain["scope"] != scope or not isinstance(after, list) or len(after) != len(kinds):
            raise ValueError("the token belongs to another list")
        for value, kind in zip(after, kinds, strict=True):
            if type(value) is not kind or (isinstance(value, int) and not 0 <= value < 2**63):
                raise ValueError("the token's position is not one a list returned")
        return after
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        violations.add(
            "page_token", reasons.PAGE_TOKEN_INVALID, "must be a token this list returned"
        )
        return None


# ----------------------------------------------------------------------------------------------
# Domain values to messages


def order_message(view: OrderView, currency_code: str) -> pb.Order:
    order = view.order
    request = order.request
    language = request.language_code

    def money(amount_minor: int) -> MoneyMessage:
        return MoneyMessage(currency_code=currency_code, amount_minor=amount_minor)

    message = pb.Order(
        merchant_id=request.merchant_id,
        out_order_no=request.out_order_no,
        user_id=request.user_id,
        scenario_id=request.scenario_id,
        state=_STATE_MESSAGES[view.state],
        risk_fund_type=_RISK_FUND_TYPE_MESSAGES[request.risk_fund_type],
        risk_amount=money(request.risk_minor),
        decision=pb.Decision(
            outcome=_OUTCOME_MESSAGES[order.decision.outcome],
            waived_amount=money(order.decision.waived_minor),
            deposit_amount=money(order.decision.deposit_minor),
            reasons=[
                pb.DecisionReason(
                    code=reason.code,
                    message=reason.message(language),
                    advice=reason.advice(language),
                )
                for reason in order.decision.reasons
            ],
        ),
        post_payments=[_line_item_message(item, currency_code) for item in order.post_payments],
        post_discounts=[_line_item_message(item, currency_code) for item in order.post_discounts],
        paid_amount=money(order.paid_minor),
        state_reason=order.state_reason,
        language_code=language,
    )
    message.time_range.start_time.CopyFrom(_timestamp(request.start_us))
    message.time_range.end_time.CopyFrom(_timestamp(request.end_us))
    message.create_time.CopyFrom(_timestamp(order.create_time_us))
    message.update_time.CopyFrom(_timestamp(order.update_time_us))
    if order.total_minor is not None:
        message.total_amount.CopyFrom(money(order.total_minor))
        message.credit_charge_amount.CopyFrom(money(order.credit_charge_minor))
    if order.end_time_us is not None:
        message.end_time.CopyFrom(_timestamp(order.end_time_us))
    if order.payment_due_us is not None:
        message.payment_due_time.CopyFrom(_timestamp(order.payment_due_us))
    return message


def policy_message(policy: ScenarioPolicy, currency_code: str) -> pb.ScenarioPolicy:
    def money(amount_minor: int) -> MoneyMessage:
        return MoneyMessage(currency_code=currency_code, amount_minor=amount_minor)

    message = pb.ScenarioPolicy(
        merchant_id=policy.merchant_id,
        scenario_id=policy.scenario_id,
        minimum_score=policy.minimum_score,
        max_waiver_amount=money(policy.max_waiver_minor),
        expected_loss_budget=money(policy.expected_loss_budget_minor),
        max_service_duration=_duration(policy.max_service_duration_us),
        grace_period=_duration(policy.grace_period_us),
        breach_period=_duration(policy.breach_period_us),
        payment_window=_duration(policy.payment_window_us),
        thin_file_treatment=_THIN_FILE_TREATMENT_MESSAGES[policy.thin_file_treatment],
        scoring_unavailable_action=_SCORING_UNAVAILABLE_ACTION_MESSAGES[
            policy.scoring_unavailable_action
        ],
    )
    if policy.thin_file_max_waiver_minor:
        message.thin_file_max_waiver_amount.CopyFrom(money(policy.thin_file_max_waiver_minor))
    message.update_time.CopyFrom(_timestamp(policy.update_time_us))
    return message


def _line_item_message(item: LineItem, currency_code: str) -> pb.LineItem:
    return pb.LineItem(
        name=item.name,
        amount=MoneyMessage(currency_code=currency_code, amount_minor=item.amount_minor),
        count=item.count,
        description=item.description,
    )


def _timestamp(moment_us: int) -> timestamp_pb2.Timestamp:
    seconds, microseconds = divmod(moment_us, MICROSECONDS_PER_SECOND)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=microseconds * NANOS_PER_MICROSECOND)


def _duration(span_us: int) -> duration_pb2.Duration:
    seconds, microseconds = divmod(span_us, MICROSECONDS_PER_SECOND)
    return duration_pb2.Duration(seconds=seconds, nanos=microseconds * NANOS_PER_MICROSECOND)
