"""deploy/ghz: a ghz config for every call of the three services, each a valid ghz config whose
data renders into the call's request, every write with a request id of its own; and the bundled
generator's report has the shape of ghz's (tests/fixtures/ghz_report.schema.json)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema
import pytest
from google.protobuf import descriptor_pool

from tests.benchmarks.ghz_load import (
    CONTRACT_MODULES,
    PREPARE_TAG,
    PREPARERS,
    LoadProfile,
    ghz_report,
    histogram,
    iterate_profiles,
    latency_distribution,
    request_messages,
    resolve_method,
)
from tests.benchmarks.loadgen import LoadResult

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures" / "ghz_report.schema.json").read_text()
)
SERVICES = (
    "sesame.ledger.v1.LedgerService",
    "sesame.score.v1.ScoreService",
    "sesame.waiver.v1.WaiverService",
)
# A watch never ends by itself: each call would last until its deadline, which measures nothing.
WITHOUT_PROFILE = {"sesame.ledger.v1.LedgerService.WatchEntries"}
PROFILES = list(iterate_profiles())


def all_calls() -> set[str]:
    for module in CONTRACT_MODULES:
        __import__(module)
    pool = descriptor_pool.Default()
    return {
        f"{service}.{method.name}"
        for service in SERVICES
        for method in pool.FindServiceByName(service).methods
    }


def test_every_call_of_the_three_services_has_one_profile() -> None:
    calls = [LoadProfile.read(path).call for path in PROFILES]
    assert len(calls) == len(set(calls))
    assert set(calls) == all_calls() - WITHOUT_PROFILE


@pytest.mark.parametrize("path", PROFILES, ids=lambda path: path.stem)
def test_each_profile_is_a_ghz_config_the_bundled_generator_runs(path: Path) -> None:
    profile = LoadProfile.read(path)
    assert profile.refusals() == []
    assert profile.raw["insecure"] is True
    assert "host" not in profile.raw, "the target is given on the command line"
    if PREPARE_TAG in profile.tags:
        assert profile.tags[PREPARE_TAG] in PREPARERS
    if profile.total:
        assert profile.qps > 0 and "duration" not in profile.raw


@pytest.mark.parametrize("path", PROFILES, ids=lambda path: path.stem)
def test_each_profile_renders_into_its_request_and_each_write_has_its_own_id(path: Path) -> None:
    profile = LoadProfile.read(path)
    method = resolve_method(profile.call)
    chooser = random.Random(1)
    first = request_messages(method, profile.data, 0, "g0c0", chooser)
    second = request_messages(method, profile.data, 1, "g0c1", chooser)
    assert first and all(type(message) is method.request_class for message in first)
    if "request_id" in method.request_class.DESCRIPTOR.fields_by_name:
        first_ids = {message.request_id for message in first}  # type: ignore[attr-defined]
        second_ids = {message.request_id for message in second}  # type: ignore[attr-defined]
        assert "" not in first_ids
        assert first_ids.isdisjoint(second_ids)


def test_latency_distribution_ranks_as_ghz_does() -> None:
    latencies_s = [index / 1000 for index in range(1, 101)]  # 1 ms to 100 ms
    distribution = latency_distribution(latencies_s)
    assert [entry["percentage"] for entry in distribution] == [10, 25, 50, 75, 90, 95, 99]
    # ghz: rank = p% of n; a whole rank steps back one (0-based), so p50 of 100 is the 50th.
    assert [entry["latency"] for entry in distribution] == [
        10_000_000,
        25_000_000,
        50_000_000,
        75_000_000,
        90_000_000,
        95_000_000,
        99_000_000,
    ]
    buckets = histogram(latencies_s)
    assert len(buckets) == 11
    assert sum(bucket["count"] for bucket in buckets) == 100


def test_the_bundled_report_has_ghz_report_shape() -> None:
    profile = LoadProfile.read(
        next(path for path in PROFILES if "get-account-summary" in path.name)
    )
    result = LoadResult(
        operations=3,
        units=3,
        errors=1,
        error_kinds={"FAILED_PRECONDITION/INSUFFICIENT_CAPACITY": 1},
        error_examples=[],
        duration_s=2.0,
        concurrency=2,
        processes=1,
        addresses=["127.0.0.1:1"],
        latencies_s=[0.001, 0.002, 0.004],
        step_latencies_s={},
        client_cpu_s=0.1,
        load_wall_s=2.0,
    )
    report = ghz_report(profile, "127.0.0.1:1", result)
    jsonschema.validate(report, SCHEMA)
    assert report["count"] == 4
    assert report["statusCodeDistribution"] == {"OK": 3, "FailedPrecondition": 1}
    assert report["total"] == 2_000_000_000
    assert report["rps"] == 2.0
    assert (report["fastest"], report["slowest"]) == (1_000_000, 4_000_000)


def test_the_schema_rejects_what_ghz_would_never_write() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"count": 1}, SCHEMA)
    profile = LoadProfile.read(PROFILES[0])
    result = LoadResult(1, 1, 0, {}, [], 1.0, 1, 1, ["x"], [0.001], {}, 0.0, 1.0)
    report = ghz_report(profile, "x", result)
    report["total"] = 1.5  # seconds, not Go's integer nanoseconds
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)
