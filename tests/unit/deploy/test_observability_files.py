"""deploy/observability reads only metrics the services export: every metric an alert, the
scrape configuration or the dashboard names is one the code defines, so renaming a metric
without them fails here; and the alerts the operators need are there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import services.ledger.api.metrics
import services.score.app
import services.waiver.adapters.order_metrics
from services.common import call_observation

OBSERVABILITY = Path(__file__).resolve().parents[3] / "deploy" / "observability"
METRIC_NAME = re.compile(r"\bsesame_[a-z_]+\b")
# What a histogram or counter exports beyond its own name.
SUFFIXES = ("_bucket", "_sum", "_count", "_created", "_total")


def exported_metric_names() -> set[str]:
    assert call_observation and services.ledger.api.metrics and services.score.app
    assert services.waiver.adapters.order_metrics
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES)
    exported = {name for name in names if name.startswith("sesame_")}
    assert "sesame_grpc_server_handled_total" in exported
    return exported


def expressions() -> list[str]:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def test_every_metric_the_alerts_and_the_dashboard_read_is_exported() -> None:
    exported = exported_metric_names()
    used = {name for expression in expressions() for name in METRIC_NAME.findall(expression)}
    assert used, "the files read Sesame's metrics"
    assert used <= exported, sorted(used - exported)


def test_the_alerts_cover_errors_latency_the_ledger_chain_and_the_score_model() -> None:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {
        "SesameHighErrorRatio",
        "SesameHighLatencyP99",
        "SesameLedgerChainVerificationFailed",
        "SesameScoreModelNotLoaded",
    } <= set(alerts)
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]


def test_the_scrape_configuration_keeps_the_port_the_manifests_name_metrics() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yaml").read_text())
    (job,) = config["scrape_configs"]
    keeps = {rule["regex"] for rule in job["relabel_configs"] if rule.get("action") == "keep"}
    assert keeps == {"sesame", "metrics"}
    assert config["rule_files"] == ["alerts.yaml"]


def test_the_dashboard_shows_calls_errors_latency_decisions_loss_and_drift() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("calls", "error", "latency", "decisions", "lost", "drift"):
        assert topic in titles, topic
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
