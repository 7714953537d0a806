"""The seed policy file: readable TOML (see `policies/seed.toml`) into scenario policies.

Amounts are whole currency units; spans a number and a unit ("30m", "2h", "7d"). A file that does
not fit raises `SeedFileError` naming the policy and the key, so the service does not start on it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from services.waiver.domain.policy import (
    ScenarioPolicy,
    ScoringUnavailableAction,
    ThinFileTreatment,
)

_SPAN = re.compile(r"(\d+)\s*([smhd])")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}


class SeedFileError(ValueError):
    """The seed file cannot be read as policies."""


def read_seed_file(path: Path, unit_minor: int) -> list[ScenarioPolicy]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SeedFileError(f"{path.name}: {error}") from error
    defaults = document.get("defaults", {})
    policies = []
    for index, entry in enumerate(document.get("policy", [])):
        values = {**defaults, **entry}
        where = f"{path.name}: policy {index} ({values.get('scenario_id', '?')})"
        try:
            policies.append(_policy(values, unit_minor))
        except (KeyError, ValueError, TypeError) as error:
            raise SeedFileError(f"{where}: {error!r}") from error
    return policies


def _policy(values: dict[str, Any], unit_minor: int) -> ScenarioPolicy:
    treatment = ThinFileTreatment(values["thin_file_treatment"])
    return ScenarioPolicy(
        merchant_id=str(values["merchant_id"]),
        scenario_id=str(values["scenario_id"]),
        minimum_score=int(values["minimum_score"]),
        max_waiver_minor=int(values["max_waiver"]) * unit_minor,
        expected_loss_budget_minor=int(values["expected_loss_budget"]) * unit_minor,
        max_service_duration_us=span_us(values["max_service_duration"]),
        grace_period_us=span_us(values["grace_period"]),
        breach_period_us=span_us(values["breach_period"]),
        payment_window_us=span_us(values["payment_window"]),
        thin_file_treatment=treatment,
        thin_file_max_waiver_minor=int(values.get("thin_file_max_waiver", 0)) * unit_minor,
        scoring_unavailable_action=ScoringUnavailableAction(values["scoring_unavailable_action"]),
    )


def span_us(text: str) -> int:
    match = _SPAN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a span such as 30m, 2h or 7d")
    return int(match.group(1)) * _UNIT_US[match.group(2)]
