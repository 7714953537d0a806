"""The reasons the ledger answers are exactly the names of the contract's ErrorReason enum, so
the code and the contract cannot drift apart."""

from __future__ import annotations

from types import ModuleType

from sesame.ledger.v1 import error_reason_pb2

from services.common import validation as shared_validation
from services.ledger.domain import reasons


def reason_constants(module: ModuleType) -> dict[str, str]:
    """The module's public upper-case string constants, by name."""
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }


def contract_reasons() -> set[str]:
    return set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}


def test_each_reason_constant_is_its_own_name():
    constants = reason_constants(reasons)

    assert {name: name for name in constants} == constants


def test_the_ledgers_reasons_are_exactly_the_contracts_error_reason_names():
    assert set(reason_constants(reasons).values()) == contract_reasons()


def test_every_reason_of_the_shared_checks_is_in_the_ledgers_contract():
    shared = {value for name, value in reason_constants(shared_validation).items() if name == value}

    assert shared
    assert shared <= contract_reasons()
