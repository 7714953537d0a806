"""The access policy file: the README's table is the file, and its rules read as they say."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from sesame.score.v1 import score_service_pb2
from sesame.waiver.v1 import waiver_service_pb2

from services.common.access import AccessPolicy, CallerRule, RateLimiter
from services.common.identity import Identity, parse_identity

README = Path(__file__).resolve().parents[3] / "README.md"
MERCHANT = Identity("merchant", "sesame-demo")


def readme_policy_table() -> dict[str, list[str]]:
    section = README.read_text(encoding="utf-8").split("## Who may call what", 1)[1]
    table = section.split("| method | callers |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        method, callers = (cell.strip() for cell in line.strip("|").split("|"))
        rows[method.strip("`")] = re.findall(r"`([^`]+)`", callers)
    return rows


def test_the_readme_table_is_the_policy_file() -> None:
    expected = {
        (method.split(".v1.")[-1] if method.startswith("sesame.") else method): callers
        for method, callers in _raw_methods().items()
    }
    assert readme_policy_table() == expected
    assert set(AccessPolicy.load().methods) == set(_raw_methods())


def _raw_methods() -> dict[str, list[str]]:
    text = resources.files("services.common").joinpath("access_policy.toml").read_text()
    methods: dict[str, list[str]] = tomllib.loads(text)["methods"]
    return methods


def test_an_own_field_rule_admits_only_the_owner() -> None:
    rule = CallerRule.parse("merchant/{merchant_id}")
    own = waiver_service_pb2.GetOrderRequest(merchant_id="sesame-demo")
    other = waiver_service_pb2.GetOrderRequest(merchant_id="another")
    assert rule.admits(MERCHANT, own)
    assert not rule.admits(MERCHANT, other)
    assert not rule.admits(Identity("user", "sesame-demo"), own)


def test_a_repeated_field_rule_needs_every_value_to_be_the_callers() -> None:
    rule = CallerRule.parse("user/{user_ids}")
    user = Identity("user", "u-7")
    assert rule.admits(user, score_service_pb2.BatchGetScoresRequest(user_ids=["u-7"]))
    assert not rule.admits(user, score_service_pb2.BatchGetScoresRequest(user_ids=["u-7", "u-8"]))
    assert not rule.admits(user, score_service_pb2.BatchGetScoresRequest())


def test_a_nested_field_rule_reads_the_nested_field() -> None:
    rule = CallerRule.parse("merchant/{policy.merchant_id}")
    request = waiver_service_pb2.PutScenarioPolicyRequest()
    request.policy.merchant_id = "sesame-demo"
    assert rule.admits(MERCHANT, request)
    request.policy.merchant_id = "another"
    assert not rule.admits(MERCHANT, request)


def test_a_rule_needing_a_field_admits_no_stream_of_requests() -> None:
    rule = CallerRule.parse("merchant/{merchant_id}")
    assert not rule.admits(MERCHANT, iter([waiver_service_pb2.GetOrderRequest()]))


@pytest.mark.parametrize("text", ["merchant", "/x", "merchant/"])
def test_a_malformed_rule_is_refused_when_the_policy_loads(text: str) -> None:
    with pytest.raises(ValueError):
        CallerRule.parse(text)


def test_identities_name_a_known_kind() -> None:
    assert parse_identity("operator/alice") == Identity("operator", "alice")
    assert parse_identity("admin/alice") is None
    assert parse_identity("merchant") is None


def test_a_rate_limit_refills_at_its_rate() -> None:
    limiter = RateLimiter(
        {
            "merchant": AccessPolicy.parse(
                "[rate_limits]\nmerchant = { per_second = 2, burst = 2 }\n"
            ).rate_limits["merchant"]
        }
    )
    assert limiter.retry_after_s(MERCHANT, now_s=0.0) == 0
    assert limiter.retry_after_s(MERCHANT, now_s=0.0) == 0
    assert limiter.retry_after_s(MERCHANT, now_s=0.0) == pytest.approx(0.5)
    assert limiter.retry_after_s(MERCHANT, now_s=0.5) == 0
    assert limiter.retry_after_s(Identity("service", "waiver"), now_s=0.5) == 0
