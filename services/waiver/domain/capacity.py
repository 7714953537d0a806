"""A user's waiver capacity (the total of open waived deposits the user may hold) from the score.

One table: each band of the score (and the thin file, which has none) allows a capacity in whole
units of the waiver's currency. The waiver sets it in the ledger when a user's band changes; the
ledger enforces it on every hold, so concurrent orders of one user never together exceed it. A
lower band lowers the capacity for new orders; holds already placed stay valid.

| score     | capacity (whole units) |
|-----------|------------------------|
| thin file | 200                    |
| 350-449   | 200                    |
| 450-499   | 500                    |
| 500-549   | 1,000                  |
| 550-599   | 3,000                  |
| 600-649   | 6,000                  |
| 650-699   | 10,000                 |
| 700-949   | 20,000                 |
| 950       | 20,000                 |
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

THIN_FILE_BAND = "thin"


@dataclass(frozen=True)
class CapacityBand:
    name: str
    score_min: int  # inclusive
    capacity_units: int


# Highest first; the first band whose minimum the score reaches applies.
CAPACITY_BANDS: tuple[CapacityBand, ...] = (
    CapacityBand("700+", 700, 20_000),
    CapacityBand("650-699", 650, 10_000),
    CapacityBand("600-649", 600, 6_000),
    CapacityBand("550-599", 550, 3_000),
    CapacityBand("500-549", 500, 1_000),
    CapacityBand("450-499", 450, 500),
    CapacityBand("350-449", 350, 200),
)
THIN_FILE_CAPACITY_UNITS = 200


@dataclass(frozen=True)
class Capacity:
    """The band a user is in and the capacity it allows, in minor units."""

    band: str
    capacity_minor: int


def capacity_for(score: int | None, unit_minor: int) -> Capacity:
    """The capacity of a score (None: a thin file), in minor units of `unit_minor` per unit."""
    if score is None:
        return Capacity(THIN_FILE_BAND, THIN_FILE_CAPACITY_UNITS * unit_minor)
    for band in CAPACITY_BANDS:
        if score >= band.score_min:
            return Capacity(band.name, band.capacity_units * unit_minor)
    raise ValueError(f"a score is 350 to 950, got {score}")


def capacity_request_id(user_id: str, model_version: str, band: str, change_number: int) -> str:
    """The ledger request id of one capacity change: derived from the user, the model version
    and the band, and numbered per user, so a change is journaled once however often it is
    retried, and a later return to an earlier band is a change of its own."""
    digest = hashlib.sha256(f"{user_id}\x00{model_version}".encode()).hexdigest()[:32]
    return f"waiver-capacity:{digest}:{band}:{change_number}"
