"""What the health service is told: each service's status and the overall one, changes only."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2

from services.common.runtime import (
    OVERALL_HEALTH,
    HealthBook,
    ServiceRegistration,
    dependency_health_name,
    health_changes,
)

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


def registration(name: str, *, initially_serving: bool = True) -> ServiceRegistration:
    return ServiceRegistration(name, lambda server: None, initially_serving=initially_serving)


def test_the_book_hands_out_each_change_once() -> None:
    book = HealthBook([registration("a"), registration("b", initially_serving=False)])

    assert book.take_changes() == {"a": SERVING, "b": NOT_SERVING, OVERALL_HEALTH: NOT_SERVING}
    assert book.take_changes() == {}
    assert book.set_serving("b", True) == {"b": SERVING, OVERALL_HEALTH: SERVING}
    assert book.set_serving("b", True) == {}


def test_the_book_refuses_a_service_it_does_not_serve() -> None:
    book = HealthBook([registration("a")])

    with pytest.raises(KeyError):
        book.set_serving("typo", True)


def test_a_dependency_is_reported_under_its_own_name_and_never_changes_the_overall_status() -> None:
    book = HealthBook([registration("a")])
    book.take_changes()

    assert book.set_dependency_serving("b.Ledger", False) == {
        dependency_health_name("b.Ledger"): NOT_SERVING
    }
    assert book.set_dependency_serving("b.Ledger", False) == {}
    assert book.set_dependency_serving("b.Ledger", True) == {
        dependency_health_name("b.Ledger"): SERVING
    }
    assert dependency_health_name("b.Ledger") == "dependency:b.Ledger"


def test_a_service_not_serving_still_turns_the_overall_status_with_dependencies_known() -> None:
    book = HealthBook([registration("a")])
    book.set_dependency_serving("b.Ledger", True)

    assert book.set_serving("a", False) == {"a": NOT_SERVING, OVERALL_HEALTH: NOT_SERVING}
