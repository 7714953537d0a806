"""The Kubernetes manifests of deploy/, rendered as an operator renders them, and run as local
processes the way a cluster would run them.

`render(overlay)` runs `kubectl kustomize deploy/overlays/<overlay>` (Debian's kubectl package;
a test without it is skipped outside CI and fails under CI=true) and parses every document.

`LocalPods` starts each Deployment's containers (command, args, env, ports) as processes on
this machine, standing in only for what a cluster itself provides:

* each pod's ports are mapped to free loopback ports, as a container runtime maps them, and so
  are the environment variables that set them (an env value equal to a declared containerPort);
* a Service's DNS name in an env value (`sesame-ledger:50051`) is what a cluster's DNS would
  resolve: the mapped port of the pod the Service selects, on its target port;
* a Secret's keys are given by the test (`secrets`), as an operator, cert-manager or
  CloudNativePG gives them, whether read into env or mounted as a volume (a file per key);
* the image's working directory is a fresh directory, volumes mounted under it are
  directories in it, and an env value naming a path under it names that directory's path; the
  image's PATH is this virtual environment's bin directory.

Anything else the manifests ask for that this cannot stand in for (a probe other than gRPC, a
ConfigMap or Secret that does not exist) fails the test rather than being skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.suite.launch import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPOSITORY_ROOT / "deploy"
OVERLAYS = ("local", "prod", "prod-external-database")
IMAGE_WORKING_DIRECTORY = "/app"
# Custom resources of operators Sesame relies on; the only kinds not validated against
# Kubernetes' own schemas.
CUSTOM_RESOURCE_KINDS = frozenset({("postgresql.cnpg.io/v1", "Cluster")})

Document = dict[str, Any]


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def tool_or_skip(name: str, path: Path | None = None) -> str:
    """The path of a command-line tool; skips the test (fails under CI) when it is missing."""
    found = str(path) if path is not None and path.exists() else shutil.which(name)
    if found is None:
        where = f" ({path})" if path is not None else ""
        message = f"{name}{where} is not installed: see .ci/run and `make deploy-tools`"
        if running_in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@cache
def rendered_text(overlay: str) -> str:
    kubectl = tool_or_skip("kubectl")
    completed = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def render(overlay: str) -> list[Document]:
    return [document for document in yaml.safe_load_all(rendered_text(overlay)) if document]


def of_kind(documents: list[Document], kind: str) -> list[Document]:
    return [document for document in documents if document["kind"] == kind]


def named(documents: list[Document], kind: str, name: str) -> Document:
    matches = [d for d in of_kind(documents, kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def pod_spec(workload: Document) -> Document:
    spec: Document = workload["spec"]["template"]["spec"]
    return spec


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions, or a Service's plain map)
    selects pods with these labels."""
    match_labels = selector.get(
        "matchLabels", selector if "matchExpressions" not in selector else {}
    )
    if not isinstance(match_labels, Mapping):
        match_labels = {}
    if any(
        labels.get(key) != value for key, value in match_labels.items() if isinstance(value, str)
    ):
        return False
    for expression in selector.get("matchExpressions", []) or []:
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def container_environment(
    documents: list[Document], container: Document, secrets: Mapping[tuple[str, str], str]
) -> dict[str, str]:
    """The environment a container starts with: envFrom ConfigMaps, then env (literal values,
    ConfigMap keys and Secret keys)."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = named(documents, "ConfigMap", source["configMapRef"]["name"])
        environment.update({key: str(value) for key, value in config_map["data"].items()})
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = str(variable["value"])
            continue
        reference = variable["valueFrom"]
        if "secretKeyRef" in reference:
            key = (reference["secretKeyRef"]["name"], reference["secretKeyRef"]["key"])
            assert key in secrets, f"{variable['name']} needs Secret {key[0]} key {key[1]}"
            environment[variable["name"]] = secrets[key]
        elif "configMapKeyRef" in reference:
            config_map = named(documents, "ConfigMap", reference["configMapKeyRef"]["name"])
            environment[variable["name"]] = str(
                config_map["data"][reference["configMapKeyRef"]["key"]]
            )
        else:
            raise AssertionError(f"unsupported env source for {variable['name']}: {reference}")
    return environment


def service_target(documents: list[Document], service_name: str, port: int) -> tuple[Document, int]:
    """The Deployment a Service sends its `port` to, and the container port it reaches."""
    service = named(documents, "Service", service_name)
    service_port = next(p for p in service["spec"]["ports"] if p["port"] == port)
    selected = [
        deployment
        for deployment in of_kind(documents, "Deployment")
        if selects(
            service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]
        )
    ]
    assert len(selected) == 1, f"Service {service_name} selects {len(selected)} Deployments"
    deployment = selected[0]
    target = service_port.get("targetPort", port)
    for container in pod_spec(deployment)["containers"]:
        for container_port in container.get("ports", []):
            if target in (container_port.get("name"), container_port["containerPort"]):
                return deployment, int(container_port["containerPort"])
    raise AssertionError(f"Service {service_name} port {port} reaches no container port")


_SERVICE_ADDRESS = re.compile(r"^(?:dns:///)?([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)$")


@dataclass
class LocalPod:
    """One Deployment's first container, running as a local process."""

    deployment: Document
    container: Document
    ports: dict[int, int]  # container port -> local port
    environment: dict[str, str]
    working_directory: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    probe_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        name: str = self.deployment["metadata"]["name"]
        return name

    def local_port(self, port: int | str) -> int:
        for container_port in self.container.get("ports", []):
            if port in (container_port.get("name"), container_port["containerPort"]):
                return self.ports[int(container_port["containerPort"])]
        raise AssertionError(f"{self.name} declares no port {port}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


class LocalPods:
    """Every Deployment of rendered manifests, run as local processes (see the module)."""

    def __init__(
        self,
        documents: list[Document],
        work_directory: Path,
        secrets: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.documents = documents
        self.pods: dict[str, LocalPod] = {}
        self._secrets = dict(secrets or {})
        for deployment in of_kind(documents, "Deployment"):
            containers = pod_spec(deployment)["containers"]
            assert len(containers) == 1, "one container per pod"
            container = containers[0]
            ports = {int(p["containerPort"]): free_port() for p in container.get("ports", [])}
            name = deployment["metadata"]["name"]
            working_directory = work_directory / name
            working_directory.mkdir(parents=True)
            self.pods[name] = LocalPod(deployment, container, ports, {}, working_directory)
        for pod in self.pods.values():
            pod.environment = self._environment(pod, pod.container)

    def _environment(self, pod: LocalPod, container: Document) -> dict[str, str]:
        declared = container_environment(self.documents, container, self._secrets)
        environment = {}
        for key, value in declared.items():
            if value.isdigit() and int(value) in pod.ports:
                value = str(pod.ports[int(value)])
            if value.startswith(IMAGE_WORKING_DIRECTORY + "/"):
                value = str(
                    pod.working_directory / value.removeprefix(IMAGE_WORKING_DIRECTORY + "/")
                )
            match = _SERVICE_ADDRESS.match(value)
            if match and any(
                s["metadata"]["name"] == match[1] for s in of_kind(self.documents, "Service")
            ):
                target, container_port = service_target(self.documents, match[1], int(match[2]))
                value = f"127.0.0.1:{self.pods[target['metadata']['name']].ports[container_port]}"
            environment[key] = value
        return environment

    def process_environment(self, environment: Mapping[str, str]) -> dict[str, str]:
        """What the image gives a process (PATH, unbuffered Python) plus the container's own."""
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SESAME_", "OTEL_", "PROMETHEUS_"))
        }
        base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        base["PYTHONUNBUFFERED"] = "1"
        return {**base, **environment}

    def command(self, container: Document) -> list[str]:
        command = [*container.get("command", []), *container.get("args", [])]
        assert command, f"container {container['name']} names no command (the image's is not used)"
        executable = shutil.which(command[0], path=str(Path(sys.executable).parent))
        assert executable is not None, f"{command[0]} is not in the image's PATH"
        return [executable, *command[1:]]

    def prepare_volumes(self, pod: LocalPod, container: Document) -> None:
        assert container.get("workingDir") == IMAGE_WORKING_DIRECTORY, "workingDir is the image's"
        for mount in container.get("volumeMounts", []):
            path = mount["mountPath"]
            if path == "/tmp":
                continue  # this machine's own
            assert path.startswith(IMAGE_WORKING_DIRECTORY + "/"), f"unsupported mount {path}"
            directory = pod.working_directory / path.removeprefix(IMAGE_WORKING_DIRECTORY + "/")
            directory.mkdir(parents=True, exist_ok=True)
            (volume,) = [
                v for v in pod_spec(pod.deployment)["volumes"] if v["name"] == mount["name"]
            ]
            if "secret" in volume:
                self._write_secret(volume["secret"]["secretName"], directory)

    def _write_secret(self, secret_name: str, directory: Path) -> None:
        """A Secret mounted as a volume: one file per key, as the kubelet writes them."""
        keys = {key: value for (name, key), value in self._secrets.items() if name == secret_name}
        assert keys, f"the test gives no keys of Secret {secret_name}"
        for key, value in keys.items():
            (directory / key).write_text(value)

    def run_to_completion(
        self, pod: LocalPod, container: Document, timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        """Runs an init container (or a Job's) the way the kubelet does: to its end."""
        self.prepare_volumes(pod, container)
        return subprocess.run(
            self.command(container),
            cwd=pod.working_directory,
            env=self.process_environment(self._environment(pod, container)),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(self) -> None:
        """Starts every pod at once, as a cluster does."""
        for pod in self.pods.values():
            self.prepare_volumes(pod, pod.container)
            pod.log_path = pod.working_directory / "container.log"
            with pod.log_path.open("wb") as log:
                pod.process = subprocess.Popen(
                    self.command(pod.container),
                    cwd=pod.working_directory,
                    env=self.process_environment(pod.environment),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def stop(self) -> dict[str, tuple[int | None, float]]:
        """SIGTERM to every pod, as the kubelet sends it; each one's exit code and how long it
        took, SIGKILL after its terminationGracePeriodSeconds."""
        stopped: dict[str, tuple[int | None, float]] = {}
        started_s = time.monotonic()
        for pod in self.pods.values():
            if pod.process is not None and pod.process.poll() is None:
                pod.process.send_signal(signal.SIGTERM)
        for pod in self.pods.values():
            if pod.process is None:
                continue
            grace_s = pod_spec(pod.deployment).get("terminationGracePeriodSeconds", 30)
            try:
                pod.process.wait(timeout=max(0.0, started_s + grace_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(pod.process.pid, signal.SIGKILL)
                pod.process.wait()
                stopped[pod.name] = (None, time.monotonic() - started_s)
                continue
            stopped[pod.name] = (pod.process.returncode, time.monotonic() - started_s)
        return stopped

    def kill_all(self) -> None:
        for pod in self.pods.values():
            if pod.process is not None and pod.process.poll() is None:
                os.killpg(pod.process.pid, signal.SIGKILL)
                pod.process.wait()

    def declared_probes(self, pod: LocalPod) -> Iterator[tuple[str, Document]]:
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in pod.container:
                yield kind, pod.container[kind]

    def wait_for_probes(self, timeout_s: float) -> None:
        """Waits until every probe every pod declares passes; records when each first did, in
        seconds from now (roughly, from the start). Fails at once on a probe it cannot run."""
        started_s = time.monotonic()
        pending = [
            (pod, kind, probe)
            for pod in self.pods.values()
            for kind, probe in self.declared_probes(pod)
        ]
        for _pod, kind, probe in pending:
            assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, (
                f"{kind}: only gRPC probes can be checked here"
            )
        while pending and time.monotonic() - started_s < timeout_s:
            still = []
            for pod, kind, probe in pending:
                assert pod.process is not None
                if pod.process.poll() is not None:
                    raise AssertionError(
                        f"{pod.name} exited ({pod.process.returncode}):\n{pod.output()}"
                    )
                if grpc_probe_passes(
                    pod.local_port(probe["grpc"]["port"]), probe["grpc"].get("service", "")
                ):
                    pod.probe_seconds[kind] = time.monotonic() - started_s
                else:
                    still.append((pod, kind, probe))
            pending = still
            time.sleep(0.2)
        assert not pending, (
            "probes never passed: "
            + ", ".join(f"{pod.name} {kind}" for pod, kind, _ in pending)
            + "\n"
            + "\n".join(pod.output()[-3000:] for pod, _, _ in pending)
        )


def grpc_probe_passes(port: int, service: str, timeout_s: float = 1.0) -> bool:
    """What the kubelet's gRPC probe asks: grpc.health.v1 Check for `service`, SERVING."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def probe_budget_s(probe: Document) -> float:
    """How long the kubelet lets a probe fail before acting on it."""
    return float(
        probe.get("initialDelaySeconds", 0)
        + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    )
