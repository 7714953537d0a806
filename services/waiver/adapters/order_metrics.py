"""Orders as Prometheus counts: what was decided, what states orders reached, how much credit
stood in for deposits and how much of it was lost to breaches (deploy/observability)."""

from __future__ import annotations

from prometheus_client import Counter

from services.waiver.domain.order import Order, OrderState

DECISIONS = Counter(
    "sesame_waiver_decisions_total",
    "Orders created, by scenario and the decision's outcome (FULL, PARTIAL, DENIED).",
    ["scenario", "outcome"],
)
WAIVED = Counter(
    "sesame_waiver_waived_minor_total",
    "Deposits waived by credit at creation, in minor units of the currency.",
    ["scenario", "currency"],
)
SETTLED = Counter(
    "sesame_waiver_orders_settled_total",
    "Order changes settled, by scenario and the state the order reached.",
    ["scenario", "state"],
)
DEFAULTED = Counter(
    "sesame_waiver_defaulted_minor_total",
    "Credit lost to breached orders (the hold captured, or what was still owed), minor units.",
    ["scenario", "currency"],
)


class PrometheusOrderMetrics:
    """`OrderMetrics` on the process's Prometheus registry."""

    def __init__(self, currency_code: str) -> None:
        self._currency_code = currency_code

    def order_settled(self, previous: Order | None, settled: Order) -> None:
        scenario = settled.request.scenario_id
        if previous is None:
            DECISIONS.labels(scenario, settled.decision.outcome.name).inc()
            WAIVED.labels(scenario, self._currency_code).inc(settled.decision.waived_minor)
        if previous is not None and previous.state is settled.state:
            return
        SETTLED.labels(scenario, settled.state.name).inc()
        if settled.state is OrderState.BREACHED:
            # Uncompleted, the whole hold is captured and defaulted; completed, what was owed.
            lost_minor = settled.due_minor if settled.completed else settled.decision.waived_minor
            DEFAULTED.labels(scenario, self._currency_code).inc(lost_minor)
