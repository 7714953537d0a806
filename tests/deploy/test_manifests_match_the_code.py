"""The manifests say what the code does: a change to either that the other does not follow
fails here.

Every SESAME_* variable a container gets is a setting of its service and loads; the ports, probe
service names and health checks are the servers'; the grace periods cover the services' own;
the score's workers are sized by its CPU limit; prod balances per call and migrates before the
services start; and every call one service makes to another (its *_ADDRESS settings) is allowed
by the network policies, as is the metrics scrape.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from services.common.settings import ServerSettings, load_settings
from services.common.workers import worker_count
from services.ledger.api.servicer import SERVICE_NAME as LEDGER_SERVICE
from services.ledger.settings import LedgerSettings
from services.score.api.servicer import SERVICE_NAME as SCORE_SERVICE
from services.score.settings import ScoreSettings
from services.waiver.api.servicer import SERVICE_NAME as WAIVER_SERVICE
from services.waiver.settings import WaiverSettings
from tests.support.manifests import (
    OVERLAYS,
    Document,
    container_environment,
    named,
    of_kind,
    pod_spec,
    render,
    selects,
    service_target,
)

SERVICES: dict[str, tuple[type[ServerSettings], str]] = {
    "sesame-ledger": (LedgerSettings, LEDGER_SERVICE),
    "sesame-score": (ScoreSettings, SCORE_SERVICE),
    "sesame-waiver": (WaiverSettings, WAIVER_SERVICE),
}
# What a Secret the services read holds, for loading the settings it feeds.
SECRETS = {
    ("sesame-ledger-db-app", "uri"): "postgresql://ledger:secret@sesame-ledger-db-rw:5432/ledger",
    ("sesame-waiver-db-app", "uri"): "postgresql://waiver:secret@sesame-waiver-db-rw:5432/waiver",
}
# The kubelet's SIGKILL must come later than the service's own grace period by at least this.
SHUTDOWN_MARGIN_S = 10


def containers_of(documents: list[Document]) -> list[tuple[str, Document, dict[str, str]]]:
    found = []
    for deployment in of_kind(documents, "Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        environment = container_environment(documents, container, SECRETS)
        found.append((deployment["metadata"]["name"], container, environment))
    return found


def settings_of(name: str, environment: dict[str, str]) -> ServerSettings:
    settings_class, _ = SERVICES[name]
    return load_settings(settings_class, environment)


def port_named(container: Document, name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_sesame_variable_is_a_setting_of_its_service_and_loads(overlay: str) -> None:
    documents = render(overlay)
    for name, _container, environment in containers_of(documents):
        settings_class, _ = SERVICES[name]
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        fields = {f"{prefix}{field}".upper() for field in settings_class.model_fields}
        sesame_variables = {key for key in environment if key.startswith("SESAME_")}
        assert sesame_variables <= fields, (name, sesame_variables - fields)
        settings_of(name, environment)  # raises SettingsError naming a bad value


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probes_are_the_servers(overlay: str) -> None:
    for name, container, environment in containers_of(render(overlay)):
        settings = settings_of(name, environment)
        _, grpc_service = SERVICES[name]
        assert container["command"] == ["python", "-m", f"services.{name.removeprefix('sesame-')}"]
        assert settings.host == "0.0.0.0"
        assert port_named(container, "grpc") == settings.port
        assert port_named(container, "metrics") == settings.metrics_port
        # With TLS the kubelet's probes, which cannot speak it, ask the plaintext health port.
        probe_port = settings.health_port if settings.tls_files else settings.port
        if settings.tls_files:
            assert port_named(container, "health") == settings.health_port
        readiness = container["readinessProbe"]["grpc"]
        assert (readiness["port"], readiness["service"]) == (probe_port, grpc_service)
        liveness = container["livenessProbe"]["grpc"]
        assert liveness["port"] == probe_port
        assert liveness.get("service", "") == ""  # the server's overall health
        # Readiness reacts faster than liveness: a pod leaves the endpoints long before it
        # would be restarted.
        assert (
            container["readinessProbe"]["periodSeconds"]
            * container["readinessProbe"]["failureThreshold"]
            < container["livenessProbe"]["periodSeconds"]
            * container["livenessProbe"]["failureThreshold"]
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_score_service_warms_up_behind_a_startup_probe(overlay: str) -> None:
    for name, container, environment in containers_of(render(overlay)):
        if name == "sesame-score":
            settings = settings_of(name, environment)
            probe_port = settings.health_port if settings.tls_files else settings.port
            startup = container["startupProbe"]
            assert startup["grpc"] == {"port": probe_port, "service": SCORE_SERVICE}
        else:
            assert "startupProbe" not in container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_killed_only_after_the_services_own_grace_period(overlay: str) -> None:
    documents = render(overlay)
    for deployment in of_kind(documents, "Deployment"):
        name = deployment["metadata"]["name"]
        (container,) = pod_spec(deployment)["containers"]
        settings = settings_of(name, container_environment(documents, container, SECRETS))
        termination_s = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert termination_s >= settings.grace_period_s + SHUTDOWN_MARGIN_S, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_score_workers_are_sized_by_the_cpu_limit(overlay: str) -> None:
    documents = render(overlay)
    deployment = named(documents, "Deployment", "sesame-score")
    (container,) = pod_spec(deployment)["containers"]
    settings = load_settings(ScoreSettings, container_environment(documents, container, SECRETS))
    assert settings.workers == 0, "0 sizes the workers from the cgroup quota the CPU limit sets"
    limit = container["resources"]["limits"]["cpu"]
    quota = float(limit[:-1]) / 1000 if str(limit).endswith("m") else float(limit)
    workers = worker_count(settings.workers, quota=quota, cpus=64)
    assert workers == max(1, math.floor(quota)) >= 1
    # Each worker holds its own model: the memory limit must leave room for every one.
    memory = container["resources"]["limits"]["memory"]
    assert memory.endswith(("Mi", "Gi"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened_and_bounded(overlay: str) -> None:
    documents = render(overlay)
    workloads = of_kind(documents, "Deployment") + of_kind(documents, "Job")
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert {"requests", "limits"} <= set(container["resources"])


def test_prod_services_are_headless_and_clients_balance_per_call() -> None:
    from services.common.channels import ROUND_ROBIN_SERVICE_CONFIG

    for overlay in ("prod", "prod-external-database"):
        documents = render(overlay)
        for service in of_kind(documents, "Service"):
            assert service["spec"]["clusterIP"] == "None", service["metadata"]["name"]
        for name, _container, environment in containers_of(documents):
            settings = settings_of(name, environment)
            # Servers age connections out, so clients resolve the name again and find new
            # replicas.
            assert settings.max_connection_age_s > 0, name
    assert "round_robin" in ROUND_ROBIN_SERVICE_CONFIG


def test_prod_migrates_before_the_ledger_and_the_waiver_start() -> None:
    for overlay in ("prod", "prod-external-database"):
        documents = render(overlay)
        jobs = {job["metadata"]["name"]: job for job in of_kind(documents, "Job")}
        for service, admin in (
            ("ledger", "sesame-ledger-admin"),
            ("waiver", "sesame-waiver-admin"),
        ):
            deployment = named(documents, "Deployment", f"sesame-{service}")
            (container,) = pod_spec(deployment)["containers"]
            environment = container_environment(documents, container, SECRETS)
            assert environment[f"SESAME_{service.upper()}_CREATE_SCHEMA"] == "false"
            (wait,) = pod_spec(deployment)["initContainers"]
            assert wait["command"][:2] == [admin, "wait-for-schema"]
            (migrate,) = pod_spec(jobs[f"sesame-{service}-migrate"])["containers"]
            assert migrate["command"] == [admin, "migrate"]
            # All three read the same database.
            url_variable = f"SESAME_{service.upper()}_DATABASE_URL"
            urls = {
                container_environment(documents, each, SECRETS)[url_variable]
                for each in (container, wait, migrate)
            }
            assert urls == {SECRETS[(f"sesame-{service}-db-app", "uri")]}
            # The pods and the Job may reach PostgreSQL through the deny-by-default policies.
            for workload in (deployment, jobs[f"sesame-{service}-migrate"]):
                labels = workload["spec"]["template"]["metadata"]["labels"]
                assert any(
                    any(port.get("port") == 5432 for port in rule.get("ports", []))
                    for policy in _policies_for(documents, labels, "egress")
                    for rule in policy["spec"].get("egress", [])
                ), workload["metadata"]["name"]


def _policies_for(documents: list[Document], labels: dict[str, str], direction: str) -> list[Any]:
    policy_type = {"ingress": "Ingress", "egress": "Egress"}[direction]
    return [
        policy
        for policy in of_kind(documents, "NetworkPolicy")
        if policy_type in policy["spec"]["policyTypes"]
        and selects(policy["spec"]["podSelector"], labels)
    ]


def _rule_allows(rule: Document, peer_labels: dict[str, str], port: int, port_name: str) -> bool:
    peers = rule.get("to", rule.get("from", []))
    peer_ok = any(
        (
            "podSelector" in peer
            and "namespaceSelector" not in peer
            and selects(peer["podSelector"], peer_labels)
        )
        or (peer.get("namespaceSelector") == {} and "podSelector" not in peer)
        or ("ipBlock" in peer)
        for peer in peers
    )
    port_ok = any(p.get("port") in (port, port_name) for p in rule.get("ports", []))
    return peer_ok and port_ok


def allowed(
    documents: list[Document], source: Document, target: Document, port: int, port_name: str
) -> bool:
    source_labels = source["spec"]["template"]["metadata"]["labels"]
    target_labels = target["spec"]["template"]["metadata"]["labels"]
    egress = any(
        _rule_allows(rule, target_labels, port, port_name)
        for policy in _policies_for(documents, source_labels, "egress")
        for rule in policy["spec"].get("egress", [])
    )
    ingress = any(
        _rule_allows(rule, source_labels, port, port_name)
        for policy in _policies_for(documents, target_labels, "ingress")
        for rule in policy["spec"].get("ingress", [])
    )
    return egress and ingress


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policies_allow_every_call_the_services_make_and_deny_by_default(
    overlay: str,
) -> None:
    documents = render(overlay)
    calls = set()
    for name, _container, environment in containers_of(documents):
        source = named(documents, "Deployment", name)
        for key, value in environment.items():
            if key.endswith("_ADDRESS"):
                host, port = value.rsplit(":", 1)
                target, container_port = service_target(documents, host, int(port))
                assert allowed(documents, source, target, container_port, "grpc"), (name, key)
                calls.add((name, target["metadata"]["name"]))
    assert calls == {
        ("sesame-score", "sesame-ledger"),
        ("sesame-waiver", "sesame-ledger"),
        ("sesame-waiver", "sesame-score"),
    }
    # Deny by default: one policy selects every Sesame pod with no rule at all.
    deny = named(documents, "NetworkPolicy", "sesame-deny-all")["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny
    for deployment in of_kind(documents, "Deployment"):
        assert selects(deny["podSelector"], deployment["spec"]["template"]["metadata"]["labels"])
        # No call the code does not make: the ledger calls nobody.
    ledger = named(documents, "Deployment", "sesame-ledger")
    for other in ("sesame-score", "sesame-waiver"):
        assert not allowed(documents, ledger, named(documents, "Deployment", other), 50052, "grpc")
        assert not allowed(documents, ledger, named(documents, "Deployment", other), 50053, "grpc")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_metrics_port_is_open_to_the_monitoring_namespace_only(overlay: str) -> None:
    documents = render(overlay)
    scrape = named(documents, "NetworkPolicy", "sesame-allow-metrics-scrape")["spec"]
    (rule,) = scrape["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "metrics"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    for deployment in of_kind(documents, "Deployment"):
        assert selects(scrape["podSelector"], deployment["spec"]["template"]["metadata"]["labels"])
        (container,) = pod_spec(deployment)["containers"]
        assert "metrics" in {port["name"] for port in container["ports"]}
