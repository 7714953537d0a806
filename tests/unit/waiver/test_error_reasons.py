"""The waiver's error reasons are exactly the names of the contract's ErrorReason enum."""

from __future__ import annotations

from sesame.waiver.v1 import error_reason_pb2

from services.waiver.domain import reasons


def reason_constants() -> set[str]:
    return {
        value for name, value in vars(reasons).items() if name.isupper() and isinstance(value, str)
    }


def test_every_reason_constant_is_an_enum_name_and_every_name_a_constant() -> None:
    names = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}

    assert reason_constants() == names


def test_a_constant_is_named_as_its_value() -> None:
    assert all(getattr(reasons, value) == value for value in reason_constants())
