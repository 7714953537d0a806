"""The score's error reasons are exactly the names of the contract's ErrorReason enum."""

from __future__ import annotations

from sesame.score.v1 import error_reason_pb2

from services.score.adapters import ledger_client
from services.score.domain import error_reasons


def reason_constants() -> set[str]:
    return {
        value
        for name, value in vars(error_reasons).items()
        if name.isupper() and isinstance(value, str)
    }


def test_every_reason_constant_is_an_enum_name_and_every_name_a_constant() -> None:
    names = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}

    assert reason_constants() == names


def test_a_constant_is_named_as_its_value() -> None:
    assert all(getattr(error_reasons, value) == value for value in reason_constants())


def test_the_ledger_client_reports_the_contracts_reason() -> None:
    assert ledger_client.LEDGER_UNAVAILABLE == error_reasons.LEDGER_UNAVAILABLE
