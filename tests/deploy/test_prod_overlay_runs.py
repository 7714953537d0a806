"""The prod overlay's processes, run locally against PostgreSQL: the ledger's and the waiver's
`wait-for-schema` init containers hold their pods back until the migration Jobs have run, the
Jobs migrate, and then every Deployment's container starts (on the schema the Job made, with
SESAME_*_CREATE_SCHEMA=false) and passes every probe it declares. The Secrets CloudNativePG
would write are stood in for by fresh databases, in the libpq URL form it writes them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from services.common.certificates import ensure_local_certificates
from tests.support.manifests import LocalPods, grpc_probe_passes, named, pod_spec, render

pytestmark = pytest.mark.postgres

PROBES_TIMEOUT_S = 180.0
STEP_TIMEOUT_S = 120.0


def libpq_url(sqlalchemy_url: str) -> str:
    """postgresql://… as CloudNativePG's `uri` key holds it (no driver in the scheme)."""
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def tls_secrets(directory: Path) -> dict[tuple[str, str], str]:
    """Each service's Secret sesame-<service>-tls as cert-manager writes it, from a local CA."""
    paths = ensure_local_certificates(directory)
    secrets = {}
    for service in ("ledger", "score", "waiver"):
        files = paths[service]
        secrets[(f"sesame-{service}-tls", "tls.crt")] = files.certificate_file.read_text()
        secrets[(f"sesame-{service}-tls", "tls.key")] = files.private_key_file.read_text()
        secrets[(f"sesame-{service}-tls", "ca.crt")] = files.ca_file.read_text()
    return secrets


def test_the_prod_overlay_migrates_first_then_runs(
    postgres_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    documents = render("prod")
    secrets = {
        ("sesame-ledger-db-app", "uri"): libpq_url(postgres_database_factory()),
        ("sesame-waiver-db-app", "uri"): libpq_url(postgres_database_factory()),
        **tls_secrets(tmp_path / "certs"),
    }
    pods = LocalPods(documents, tmp_path, secrets)
    try:
        for service in ("ledger", "waiver"):
            pod = pods.pods[f"sesame-{service}"]
            (wait,) = pod_spec(pod.deployment)["initContainers"]
            # Before the Job: the init container keeps waiting (here cut short to a second).
            impatient = {**wait, "command": [*wait["command"], "--timeout-s", "1"]}
            waited = pods.run_to_completion(pod, impatient, STEP_TIMEOUT_S)
            assert waited.returncode == 4, waited.stdout + waited.stderr

            (migrate,) = pod_spec(named(documents, "Job", f"sesame-{service}-migrate"))[
                "containers"
            ]
            migrated = pods.run_to_completion(pod, migrate, STEP_TIMEOUT_S)
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr

            waited = pods.run_to_completion(pod, wait, STEP_TIMEOUT_S)
            assert waited.returncode == 0, waited.stdout + waited.stderr

        pods.start()
        pods.wait_for_probes(PROBES_TIMEOUT_S)
        for pod in pods.pods.values():
            # The probes' plaintext port answers health; the service's own port only TLS.
            assert not grpc_probe_passes(pod.local_port("grpc"), ""), pod.name
        stopped = pods.stop()
        assert {name: code for name, (code, _) in stopped.items()} == {
            "sesame-ledger": 0,
            "sesame-score": 0,
            "sesame-waiver": 0,
        }
    finally:
        pods.kill_all()
