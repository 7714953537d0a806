"""The business proof: Sesame's risk-priced waivers against flat score thresholds, on real outcomes.

`make simulate CSV=path` (`python -m services.suite.simulate path`) starts a fresh local suite on a
clock the simulation controls (SESAME_*_CLOCK_FILE, for simulations and tests only), replays the
CSV into the ledger, and then sends every user one order in each scenario of the seed policies
through CreateOrder, in waves: every user's bike order, then every user's power-bank order, and so
on, each wave resolved before the next is created. The risk amounts (yuan) are fixed:

    bike 99, power-bank 99, hotel 500, car-rental 5,000, apartment 3,000

A user whose row says `default.payment.next.month = 1` breaks every promise: the merchant
completes each waived order with the whole risk amount, the user never pays, and the order runs
through overdue to breached (the loss is the waived amount). Every other user's orders are
completed with the scenario's usual charge and paid at once. The clock then moves past the
scenario's payment window, grace and breach periods, the waiver's sweeper writes the breaches,
and the next wave starts. A second round repeats the five waves once the first round's outcomes
are in the ledger.

The same orders are decided by flat thresholds (the whole deposit waived at or above 550, 600,
650 or 700, nothing below, no capacity limit) from the score the user had when Sesame decided
(GetScore, asked by the simulation at the same moment). For each policy the simulation prints
the orders fully deposit-free, the orders with any waiver, the deposits waived, the loss and the
loss rate, saves a plot of deposit-free orders against loss (flat thresholds from 450 to 700,
Sesame's policy marked), and ends with RESULT lines:

    RESULT deposit_free_gain_vs_550 <Sesame's fully deposit-free orders / the 550 rule's>
    RESULT loss_vs_550 <Sesame's loss / the 550 rule's>
    RESULT waived_vs_550 <deposits waived by Sesame / by the 550 rule>
    RESULT breached_orders_waived_first_round <orders of users who breached that got a waiver>
    RESULT breached_orders_waived_second_round <the same users' orders that got one in round 2>

The comparison with the flat rules is made on the first round, where every decision reads the
same data the CSV holds. The policies' budgets come from the seed policy file; the simulation
never tunes anything on the CSV it is given.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf import timestamp_pb2
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc
from sesame.type.v1.money_pb2 import Money
from sesame.type.v1.time_range_pb2 import TimeRange
from sesame.waiver.v1 import waiver_service_pb2 as waiver_pb, waiver_service_pb2_grpc

from services.common.clock import ClockFile
from services.datasets import taiwan
from services.datasets.replayer import replay_csv
from services.suite.launch import (
    HOST,
    SUITE,
    free_port,
    plaintext_suite,
    start_suite,
    stop_all,
    suite_environment,
)

MERCHANT_ID = "sesame-demo"
CURRENCY_CODE = "CNY"
YUAN = 100
# The simulation's clock starts when the data set's statements have all been reported.
SIMULATION_START = taiwan.STATEMENTS_AS_OF
FLAT_THRESHOLDS = (550, 600, 650, 700)
PLOTTED_THRESHOLDS = tuple(range(450, 705, 10))
ROUNDS = 2
CLIENT_THREADS = 24
SCORE_BATCH_USERS = 1000
CALL_DEADLINE_S = 30.0
SETTLE_TIMEOUT_S = 600.0
# How long an order's time window lasts, and how long after the clock moved the simulation waits
# for the waiver's sweeper to write the breaches.
ORDER_WINDOW = timedelta(hours=1)
# The score cache's age limit during a simulation (see `_suite_environment`): far below the time
# between waves, long enough for the two reads of one order (the simulation's, the waiver's).
SCORE_CACHE_MAX_AGE_S = 0.05


@dataclass(frozen=True)
class Scenario:
    scenario_id: str
    risk_yuan: int
    # What a merchant charges a user who keeps the promise (the service's price).
    usual_charge_yuan: int


SCENARIOS = (
    Scenario("bike", 99, 3),
    Scenario("power-bank", 99, 5),
    Scenario("hotel", 500, 300),
    Scenario("car-rental", 5000, 600),
    Scenario("apartment", 3000, 2500),
)


@dataclass
class OrderOutcome:
    """One simulated order: what Sesame decided and what the user's score was then."""

    user_id: str
    defaulted: bool
    scenario_id: str
    round_number: int
    risk_minor: int
    waived_minor: int
    outcome: int
    score: int  # 0 for a thin file
    probability_of_default: float | None


@dataclass
class Tally:
    """A policy's totals over a set of orders."""

    deposit_free: int = 0
    any_waiver: int = 0
    waived_minor: int = 0
    loss_minor: int = 0

    def add(self, waived_minor: int, risk_minor: int, defaulted: bool) -> None:
        if waived_minor <= 0:
            return
        self.any_waiver += 1
        self.deposit_free += int(waived_minor == risk_minor)
        self.waived_minor += waived_minor
        if defaulted:
            self.loss_minor += waived_minor

    @property
    def loss_rate(self) -> float:
        return self.loss_minor / self.waived_minor if self.waived_minor else 0.0


@dataclass
class Simulation:
    waiver: waiver_service_pb2_grpc.WaiverServiceStub
    scores: score_service_pb2_grpc.ScoreServiceStub
    clock: ClockFile
    wait_for_sweeper: Callable[[list[tuple[str, str]]], None]
    outcomes: list[OrderOutcome] = field(default_factory=list)

    def run_wave(
        self,
        pool: ThreadPoolExecutor,
        users: Sequence[tuple[str, bool]],
        scenario: Scenario,
        round_number: int,
    ) -> None:
        start = self.clock.now_us()
        outcomes = list(
            pool.map(lambda user: self._order(user, scenario, round_number, start), users)
        )
        self.outcomes.extend(outcomes)
        breaching = [
            (MERCHANT_ID, _out_order_no(outcome))
            for outcome in outcomes
            if outcome.defaulted and outcome.waived_minor > 0
        ]
        policy = self.waiver.GetScenarioPolicy(
            waiver_pb.GetScenarioPolicyRequest(
                merchant_id=MERCHANT_ID, scenario_id=scenario.scenario_id
            ),
            timeout=CALL_DEADLINE_S,
        ).policy
        # Past the payment window, the grace and the breach periods: every unpaid order breached.
        resolve_s = (
            policy.payment_window.seconds
            + policy.grace_period.seconds
            + policy.breach_period.seconds
            + 3600
        )
        self.clock.advance(resolve_s)
        self.wait_for_sweeper(breaching)

    def _order(
        self, user: tuple[str, bool], scenario: Scenario, round_number: int, start_us: int
    ) -> OrderOutcome:
        user_id, defaulted = user
        score = self.scores.GetScore(
            score_service_pb2.GetScoreRequest(user_id=user_id), timeout=CALL_DEADLINE_S
        ).score
        out_order_no = f"r{round_number}-{scenario.scenario_id}-{user_id}"
        risk_minor = scenario.risk_yuan * YUAN
        request = waiver_pb.CreateOrderRequest(
            request_id=f"create-{out_order_no}",
            merchant_id=MERCHANT_ID,
            out_order_no=out_order_no,
            user_id=user_id,
            scenario_id=scenario.scenario_id,
            risk_fund_type=waiver_pb.RISK_FUND_TYPE_DEPOSIT,
            risk_amount=_money(risk_minor),
            time_range=TimeRange(
                start_time=_timestamp(start_us),
                end_time=_timestamp(start_us + int(ORDER_WINDOW.total_seconds() * 1e6)),
            ),
        )
        order = _call(self.waiver.CreateOrder, request).order
        waived_minor = order.decision.waived_amount.amount_minor
        if waived_minor > 0:
            self._resolve(out_order_no, order, scenario, defaulted, start_us)
        return OrderOutcome(
            user_id=user_id,
            defaulted=defaulted,
            scenario_id=scenario.scenario_id,
            round_number=round_number,
            risk_minor=risk_minor,
            waived_minor=waived_minor,
            outcome=order.decision.outcome,
            score=0 if score.thin_file else score.score,
            probability_of_default=None if score.thin_file else score.probability_of_default,
        )

    def _resolve(
        self,
        out_order_no: str,
        order: waiver_pb.Order,
        scenario: Scenario,
        defaulted: bool,
        now_us: int,
    ) -> None:
        """A defaulter is charged the whole risk amount and never pays; anyone else is charged
        the usual price and pays it at once."""
        total_minor = (
            order.risk_amount.amount_minor if defaulted else scenario.usual_charge_yuan * YUAN
        )
        completed = _call(
            self.waiver.CompleteOrder,
            waiver_pb.CompleteOrderRequest(
                request_id=f"complete-{out_order_no}",
                merchant_id=MERCHANT_ID,
                out_order_no=out_order_no,
                total_amount=_money(total_minor),
                end_time=_timestamp(now_us),
            ),
        ).order
        due_minor = completed.credit_charge_amount.amount_minor
        if defaulted or due_minor == 0:
            return
        _call(
            self.waiver.SyncPayment,
            waiver_pb.SyncPaymentRequest(
                request_id=f"pay-{out_order_no}",
                merchant_id=MERCHANT_ID,
                out_order_no=out_order_no,
                amount=_money(due_minor),
                paid_time=_timestamp(now_us),
            ),
        )


ResponseT = TypeVar("ResponseT")


def _call(method: Callable[..., ResponseT], request: object) -> ResponseT:
    """One call, retried with the same request on UNAVAILABLE or ORDER_BUSY, as clients must."""
    for attempt in range(20):
        try:
            return method(request, timeout=CALL_DEADLINE_S)
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED):
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt))
    return method(request, timeout=CALL_DEADLINE_S)


def _out_order_no(outcome: OrderOutcome) -> str:
    return f"r{outcome.round_number}-{outcome.scenario_id}-{outcome.user_id}"


def _money(amount_minor: int) -> Money:
    return Money(currency_code=CURRENCY_CODE, amount_minor=amount_minor)


def _timestamp(moment_us: int) -> timestamp_pb2.Timestamp:
    seconds, microseconds = divmod(moment_us, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=microseconds * 1000)


# ----------------------------------------------------------------------------------------------
# The policies compared


def sesame_tally(outcomes: Sequence[OrderOutcome]) -> Tally:
    tally = Tally()
    for outcome in outcomes:
        tally.add(outcome.waived_minor, outcome.risk_minor, outcome.defaulted)
    return tally


def flat_tally(outcomes: Sequence[OrderOutcome], threshold: int) -> Tally:
    """The whole deposit waived at or above the threshold (a thin file has no score: nothing)."""
    tally = Tally()
    for outcome in outcomes:
        waived = outcome.risk_minor if outcome.score >= threshold else 0
        tally.add(waived, outcome.risk_minor, outcome.defaulted)
    return tally


def report(outcomes: Sequence[OrderOutcome], plot_path: Path | None) -> dict[str, float]:
    first = [outcome for outcome in outcomes if outcome.round_number == 1]
    second = [outcome for outcome in outcomes if outcome.round_number == 2]
    rows = [("Sesame", sesame_tally(first))]
    rows += [(f"flat {threshold}", flat_tally(first, threshold)) for threshold in FLAT_THRESHOLDS]
    print(f"\nRound 1: {len(first)} orders of {len({o.user_id for o in first})} users")
    print(_table(rows))
    if second:
        print(f"\nRound 2 (after round 1's outcomes are in the ledger): {len(second)} orders")
        print(_table([("Sesame", sesame_tally(second))]))
    by_scenario = [
        (
            f"Sesame {scenario.scenario_id}",
            sesame_tally([o for o in first if o.scenario_id == scenario.scenario_id]),
        )
        for scenario in SCENARIOS
    ]
    print("\nRound 1 by scenario:")
    print(_table(by_scenario))
    if plot_path is not None:
        _plot(first, rows[0][1], plot_path)
        print(f"\nplot saved: {plot_path}")
    sesame, flat_550 = rows[0][1], rows[1][1]
    breachers = {o.user_id for o in first if o.defaulted and o.waived_minor > 0}
    return {
        "deposit_free_gain_vs_550": _ratio(sesame.deposit_free, flat_550.deposit_free),
        "loss_vs_550": _ratio(sesame.loss_minor, flat_550.loss_minor),
        "waived_vs_550": _ratio(sesame.waived_minor, flat_550.waived_minor),
        "breached_orders_waived_first_round": sum(
            1 for o in first if o.user_id in breachers and o.waived_minor > 0
        ),
        "breached_orders_waived_second_round": sum(
            1 for o in second if o.user_id in breachers and o.waived_minor > 0
        ),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def _table(rows: Sequence[tuple[str, Tally]]) -> str:
    header = (
        f"{'policy':<22} {'deposit-free':>12} {'any waiver':>11} {'waived (yuan)':>14}"
        f" {'loss (yuan)':>12} {'loss rate':>9}"
    )
    lines = [header, "-" * len(header)]
    for name, tally in rows:
        lines.append(
            f"{name:<22} {tally.deposit_free:>12} {tally.any_waiver:>11}"
            f" {tally.waived_minor / YUAN:>14,.0f} {tally.loss_minor / YUAN:>12,.0f}"
            f" {tally.loss_rate:>9.3f}"
        )
    return "\n".join(lines)


def _plot(outcomes: Sequence[OrderOutcome], sesame: Tally, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flats = [(threshold, flat_tally(outcomes, threshold)) for threshold in PLOTTED_THRESHOLDS]
    figure, axes = plt.subplots(figsize=(7, 5))
    thousand_yuan = 1000 * YUAN
    axes.plot(
        [tally.deposit_free for _, tally in flats],
        [tally.loss_minor / thousand_yuan for _, tally in flats],
        marker="o",
        markersize=3,
        label="flat threshold (450 to 700)",
    )
    labelled: set[tuple[int, int]] = set()
    for threshold, tally in flats:
        point = (tally.deposit_free, tally.loss_minor)
        if threshold in FLAT_THRESHOLDS and point not in labelled:
            labelled.add(point)
            axes.annotate(f"flat {threshold}", (point[0], point[1] / thousand_yuan))
    axes.scatter(
        [sesame.deposit_free],
        [sesame.loss_minor / thousand_yuan],
        color="red",
        zorder=3,
        s=60,
        label="Sesame's risk-priced policies",
    )
    axes.set_xlabel("orders fully deposit-free")
    axes.set_ylabel("loss (thousand yuan)")
    axes.set_title("Deposit-free orders against loss, first round")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ----------------------------------------------------------------------------------------------
# Running it


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sesame's policy against flat thresholds.")
    parser.add_argument("csv", type=Path, help="a .csv or .csv.gz file in the data set's schema")
    parser.add_argument("--users", type=int, default=0, help="only the first N users (0: all)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, choices=(1, 2))
    parser.add_argument("--plot", type=Path, default=Path("var/simulate/deposit_free_vs_loss.png"))
    parser.add_argument(
        "--orders-csv",
        type=Path,
        default=Path("var/simulate/orders.csv"),
        help="where every simulated order is written (for tuning on training data)",
    )
    parser.add_argument(
        "--scores-only",
        action="store_true",
        help="only score every user and write the orders file, for choosing budgets on"
        " training data (services.waiver.tuning.choose_budgets); no order is created",
    )
    arguments = parser.parse_args(argv)
    rows = list(taiwan.read_rows(arguments.csv))
    if arguments.users:
        rows = rows[: arguments.users]
    users = [(taiwan.user_id_for(row.client_id), bool(row.defaulted_next_month)) for row in rows]
    with tempfile.TemporaryDirectory(prefix="sesame-simulate-") as directory:
        outcomes = _simulate(
            Path(directory),
            arguments.csv,
            users,
            0 if arguments.scores_only else arguments.rounds,
            subset=bool(arguments.users),
        )
    _write_orders(arguments.orders_csv, outcomes)
    if arguments.scores_only:
        print(f"scores of {len(users)} users written to {arguments.orders_csv}")
        return 0
    for name, value in report(outcomes, arguments.plot).items():
        print(
            f"RESULT {name} {value:.4f}" if isinstance(value, float) else f"RESULT {name} {value}"
        )
    return 0


def _simulate(
    directory: Path, csv_path: Path, users: list[tuple[str, bool]], rounds: int, *, subset: bool
) -> list[OrderOutcome]:
    clock = ClockFile(directory / "clock", int(SIMULATION_START.timestamp() * 1_000_000))
    environment = _suite_environment(directory, clock.path)
    processes = start_suite(environment)
    try:
        ledger_address, score_address, waiver_address = (
            f"{HOST}:{service.port(environment)}" for service in SUITE
        )
        replayed = (
            _subset_csv(csv_path, directory, {user for user, _ in users}) if subset else csv_path
        )
        with grpc.insecure_channel(ledger_address) as ledger_channel:
            print(replay_csv(replayed, ledger_channel, progress=False).line(), flush=True)
        with (
            grpc.insecure_channel(waiver_address) as waiver_channel,
            grpc.insecure_channel(score_address) as score_channel,
            ThreadPoolExecutor(CLIENT_THREADS) as pool,
        ):
            waiver = waiver_service_pb2_grpc.WaiverServiceStub(waiver_channel)
            simulation = Simulation(
                waiver,
                score_service_pb2_grpc.ScoreServiceStub(score_channel),
                clock,
                lambda keys: _wait_until_breached(waiver, keys),
            )
            if rounds == 0:
                return _scored_without_orders(simulation.scores, users)
            for round_number in range(1, rounds + 1):
                for scenario in SCENARIOS:
                    started = time.monotonic()
                    simulation.run_wave(pool, users, scenario, round_number)
                    print(
                        f"round {round_number} {scenario.scenario_id}: {len(users)} orders in"
                        f" {time.monotonic() - started:.0f} s (simulated time now"
                        f" {_moment(clock.now_us())})",
                        flush=True,
                    )
        return simulation.outcomes
    finally:
        stop_all(processes)


def _scored_without_orders(
    scores: score_service_pb2_grpc.ScoreServiceStub, users: Sequence[tuple[str, bool]]
) -> list[OrderOutcome]:
    """Every user's score now, as first-round orders of every scenario that waived nothing."""
    outcomes = []
    for start in range(0, len(users), SCORE_BATCH_USERS):
        chunk = users[start : start + SCORE_BATCH_USERS]
        results = scores.BatchGetScores(
            score_service_pb2.BatchGetScoresRequest(user_ids=[user for user, _ in chunk]),
            timeout=CALL_DEADLINE_S,
        ).results
        for (user_id, defaulted), result in zip(chunk, results, strict=True):
            if not result.HasField("score"):
                raise RuntimeError(f"{user_id}: no score ({result.error.message})")
            score = result.score
            outcomes += [
                OrderOutcome(
                    user_id,
                    defaulted,
                    scenario.scenario_id,
                    1,
                    scenario.risk_yuan * YUAN,
                    0,
                    0,
                    0 if score.thin_file else score.score,
                    None if score.thin_file else score.probability_of_default,
                )
                for scenario in SCENARIOS
            ]
    return outcomes


def _wait_until_breached(
    waiver: waiver_service_pb2_grpc.WaiverServiceStub, keys: list[tuple[str, str]]
) -> None:
    """Waits until the waiver's sweeper has written every breach (its answers show a breach at
    once, but the ledger learns of it when the sweeper writes it)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    remaining = set(keys)
    while remaining and time.monotonic() < deadline:
        listed = _breached_orders(waiver)
        remaining -= listed
        if remaining:
            time.sleep(0.5)
    if remaining:
        raise RuntimeError(f"{len(remaining)} orders were not breached in time")


def _breached_orders(waiver: waiver_service_pb2_grpc.WaiverServiceStub) -> set[tuple[str, str]]:
    """Orders whose breach is written (their stored state is BREACHED)."""
    found: set[tuple[str, str]] = set()
    token = ""
    while True:
        page = waiver.ListOrders(
            waiver_pb.ListOrdersRequest(
                merchant_id=MERCHANT_ID,
                state=waiver_pb.ORDER_STATE_BREACHED,
                page_size=1000,
                page_token=token,
            ),
            timeout=CALL_DEADLINE_S,
        )
        found |= {(order.merchant_id, order.out_order_no) for order in page.orders}
        token = page.next_page_token
        if not token:
            return found


def _suite_environment(directory: Path, clock_path: Path) -> dict[str, str]:
    environment = dict(os.environ)
    for service in SUITE:
        prefix = service.environment_prefix
        environment[f"{prefix}PORT"] = str(free_port())
        environment.setdefault(f"{prefix}LOG_LEVEL", "WARNING")
    environment["SESAME_LEDGER_DATABASE_URL"] = f"sqlite:///{directory / 'ledger.db'}"
    environment["SESAME_WAIVER_DATABASE_URL"] = f"sqlite:///{directory / 'waiver.db'}"
    environment["SESAME_LEDGER_CREATE_SCHEMA"] = "true"
    environment["SESAME_WAIVER_CREATE_SCHEMA"] = "true"
    environment["SESAME_LEDGER_CLOCK_FILE"] = str(clock_path)
    environment["SESAME_WAIVER_CLOCK_FILE"] = str(clock_path)
    environment["SESAME_WAIVER_SWEEP_INTERVAL_S"] = "0.2"
    environment.setdefault("SESAME_SCORE_WORKERS", "1")
    # A score "as of now" moves without a new ledger entry when a month ends, and the score's
    # cache shows that within its age limit (a minute). The simulation moves its clock by days in
    # seconds, across month ends, so the limit must be shorter than the time between two waves,
    # or a wave could be decided on the score of a month that has ended since.
    environment["SESAME_SCORE_CACHE_MAX_AGE_S"] = str(SCORE_CACHE_MAX_AGE_S)
    for variable in (
        "SESAME_SCORE_LEDGER_ADDRESS",
        "SESAME_WAIVER_LEDGER_ADDRESS",
        "SESAME_WAIVER_SCORE_ADDRESS",
    ):
        environment.pop(variable, None)
    # A private suite on loopback, driven by this tool alone: plaintext, asked for by name.
    return suite_environment({**environment, **plaintext_suite()})


def _subset_csv(csv_path: Path, directory: Path, user_ids: set[str]) -> Path:
    """The CSV's rows of the simulated users only (all of them unless --users)."""
    subset = directory / "users.csv"
    with taiwan.open_text(csv_path) as source, subset.open("w", newline="") as target:
        reader = csv.reader(source)
        writer = csv.writer(target)
        header = next(reader)
        writer.writerow(header)
        id_index = header.index(taiwan.ID_COLUMN)
        for record in reader:
            if taiwan.user_id_for(int(record[id_index])) in user_ids:
                writer.writerow(record)
    return subset


def _write_orders(path: Path, outcomes: Sequence[OrderOutcome]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "round",
                "scenario_id",
                "user_id",
                "defaulted",
                "score",
                "probability_of_default",
                "risk_minor",
                "waived_minor",
            ]
        )
        for o in outcomes:
            writer.writerow(
                [
                    o.round_number,
                    o.scenario_id,
                    o.user_id,
                    int(o.defaulted),
                    o.score,
                    "" if o.probability_of_default is None else f"{o.probability_of_default:.6f}",
                    o.risk_minor,
                    o.waived_minor,
                ]
            )


def _moment(moment_us: int) -> str:
    return datetime.fromtimestamp(moment_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M")


if __name__ == "__main__":
    sys.exit(main())
