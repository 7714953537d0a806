"""What the health service is told: each service's status and the overall one, changes only."""

from __future__ import annotations

from grpc_health.v1 import health_pb2

from services.common.runtime import OVERALL_HEALTH, health_changes

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_at_first_every_service_and_the_overall_status_are_reported() -> None:
    changes = health_changes({"a": True, "b": False}, {})

    assert changes == {"a": SERVING, "b": NOT_SERVING, OVERALL_HEALTH: NOT_SERVING}


def test_only_what_changed_is_reported_again() -> None:
    reported = {"a": SERVING, "b": NOT_SERVING, OVERALL_HEALTH: NOT_SERVING}

    assert health_changes({"a": True, "b": True}, reported) == {
        "b": SERVING,
        OVERALL_HEALTH: SERVING,
    }
    assert health_changes({"a": True, "b": False}, reported) == {}
