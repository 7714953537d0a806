"""Chooses each scenario's expected-loss budget and minimum score on training data.

    python -m services.waiver.tuning.choose_budgets var/simulate/orders.csv

The input is the orders file `make simulate` writes (`--orders-csv`), from a run on the training
rows (data/taiwan-credit): for each user and scenario, the score and probability of default the
user had when the order was decided, the risk amount, and whether the user defaulted. The tool
decides every order again with the waiver's own `decide` for candidate budgets and minimum scores
(the policies' other fields as the seed file has them, capacity from the score band), and picks
one candidate per scenario so that the orders fully deposit-free are as many as possible while
the total loss stays at or below a share (0.9 by default, a margin for rows it did not see) of the
flat 550 rule's on the same orders. It prints the chosen
parameters for the seed file; it never looks at the rows a simulation is judged on.

The choice is a Lagrangian relaxation: for a price per yuan of loss, each scenario independently
takes the candidate with the most deposit-free orders net of its priced loss; the price is
bisected until the total loss fits.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from services.waiver.adapters.seed_file import read_seed_file
from services.waiver.domain.capacity import capacity_for
from services.waiver.domain.decision import ScoreView, WaiverOutcome, decide
from services.waiver.domain.policy import ScenarioPolicy
from services.waiver.settings import SEED_POLICIES_FILE

YUAN = 100
BUDGETS_YUAN = (5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500)
MINIMUM_SCORES = (400, 425, 450, 475, 500, 525, 550, 575, 600)
FLAT_THRESHOLD = 550
# A margin below the flat rule's loss, for rows the budgets were not chosen on.
LOSS_SHARE_DEFAULT = 0.9


@dataclass(frozen=True)
class TrainingOrder:
    scenario_id: str
    defaulted: bool
    score: int
    probability_of_default: float
    risk_minor: int


@dataclass(frozen=True)
class Candidate:
    budget_yuan: int
    minimum_score: int
    deposit_free: int
    loss_minor: int
    waived_minor: int


def read_orders(path: Path) -> list[TrainingOrder]:
    with path.open(newline="") as file:
        return [
            TrainingOrder(
                row["scenario_id"],
                row["defaulted"] == "1",
                int(row["score"]),
                float(row["probability_of_default"]),
                int(row["risk_minor"]),
            )
            for row in csv.DictReader(file)
            if row["round"] == "1" and row["probability_of_default"]
        ]


def evaluate(policy: ScenarioPolicy, orders: Sequence[TrainingOrder]) -> Candidate:
    deposit_free = loss_minor = waived_minor = 0
    for order in orders:
        capacity = capacity_for(order.score, YUAN).capacity_minor
        made = decide(
            risk_minor=order.risk_minor,
            policy=policy,
            score=ScoreView(order.score, order.probability_of_default, (), ""),
            capacity_minor=capacity,
            remaining_capacity_minor=capacity,
            currency_code="CNY",
            unit_minor=YUAN,
        )
        deposit_free += made.outcome is WaiverOutcome.FULL
        waived_minor += made.waived_minor
        loss_minor += made.waived_minor if order.defaulted else 0
    return Candidate(
        policy.expected_loss_budget_minor // YUAN,
        policy.minimum_score,
        deposit_free,
        loss_minor,
        waived_minor,
    )


def flat_loss_minor(orders: Sequence[TrainingOrder]) -> tuple[int, int]:
    approved = [order for order in orders if order.score >= FLAT_THRESHOLD]
    return len(approved), sum(order.risk_minor for order in approved if order.defaulted)


def choose(candidates: dict[str, list[Candidate]], loss_limit_minor: int) -> dict[str, Candidate]:
    def best_at(price: float) -> dict[str, Candidate]:
        return {
            scenario: max(
                options, key=lambda c: (c.deposit_free - price * c.loss_minor, -c.loss_minor)
            )
            for scenario, options in candidates.items()
        }

    low, high = 0.0, 1.0
    while sum(c.loss_minor for c in best_at(high).values()) > loss_limit_minor:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        if sum(c.loss_minor for c in best_at(middle).values()) > loss_limit_minor:
            low = middle
        else:
            high = middle
    return best_at(high)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Choose budgets on training data.")
    parser.add_argument("orders_csv", type=Path)
    parser.add_argument(
        "--loss-share",
        type=float,
        default=LOSS_SHARE_DEFAULT,
        help="the loss allowed, as a share of the flat rule's on the same orders",
    )
    arguments = parser.parse_args(argv)
    orders = read_orders(arguments.orders_csv)
    by_scenario: dict[str, list[TrainingOrder]] = defaultdict(list)
    for order in orders:
        by_scenario[order.scenario_id].append(order)
    seeds = {policy.scenario_id: policy for policy in read_seed_file(SEED_POLICIES_FILE, YUAN)}
    candidates = {
        scenario: [
            evaluate(
                replace(
                    seeds[scenario],
                    expected_loss_budget_minor=budget * YUAN,
                    minimum_score=minimum_score,
                ),
                scenario_orders,
            )
            for budget in BUDGETS_YUAN
            for minimum_score in MINIMUM_SCORES
        ]
        for scenario, scenario_orders in by_scenario.items()
    }
    flat_deposit_free, flat_loss = flat_loss_minor(orders)
    chosen = choose(candidates, round(flat_loss * arguments.loss_share))
    print(
        f"{len(orders)} training orders; the flat {FLAT_THRESHOLD} rule: {flat_deposit_free}"
        f" deposit-free, loss {flat_loss / YUAN:,.0f} yuan"
    )
    for scenario, candidate in sorted(chosen.items()):
        print(
            f"{scenario:<12} expected_loss_budget = {candidate.budget_yuan:<4}"
            f" minimum_score = {candidate.minimum_score}   ({candidate.deposit_free} deposit-free,"
            f" loss {candidate.loss_minor / YUAN:,.0f} yuan)"
        )
    total_free = sum(c.deposit_free for c in chosen.values())
    total_loss = sum(c.loss_minor for c in chosen.values())
    print(
        f"total: {total_free} deposit-free ({total_free / max(flat_deposit_free, 1):.2f} x the flat"
        f" rule), loss {total_loss / YUAN:,.0f} yuan ({total_loss / max(flat_loss, 1):.2f} x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
