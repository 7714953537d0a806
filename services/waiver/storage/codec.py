"""Orders, changes and policies as JSON documents, and back.

A generic mapping of the domain's frozen dataclasses: enums by value, tuples as lists, nested
dataclasses as objects, and a ledger effect (a union of dataclasses) tagged with its class name.
Decoding follows the dataclasses' type hints, so a document that does not fit raises.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from functools import cache
from typing import Any, TypeVar

from services.waiver.domain import lifecycle
from services.waiver.domain.order import Order
from services.waiver.domain.policy import ScenarioPolicy
from services.waiver.service.ports import PendingChange

T = TypeVar("T")
_TAG = "kind"
_EFFECTS = {cls.__name__: cls for cls in typing.get_args(lifecycle.LedgerEffect)}


def dumps(value: object) -> str:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str, kind: type[T]) -> T:
    decoded: T = _decode(json.loads(text), kind)
    return decoded


def order_json(order: Order) -> str:
    return dumps(order)


def order_from_json(text: str) -> Order:
    return loads(text, Order)


def pending_json(pending: PendingChange) -> str:
    return dumps(pending)


def pending_from_json(text: str) -> PendingChange:
    return loads(text, PendingChange)


def policy_json(policy: ScenarioPolicy) -> str:
    return dumps(policy)


def policy_from_json(text: str) -> ScenarioPolicy:
    return loads(text, ScenarioPolicy)


def _plain(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        plain = {
            field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
        if type(value).__name__ in _EFFECTS:
            plain[_TAG] = type(value).__name__
        return plain
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def _decode(plain: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        arguments = typing.get_args(kind)
        if plain is None and type(None) in arguments:
            return None
        if isinstance(plain, dict) and _TAG in plain:
            return _decode(plain, _EFFECTS[plain[_TAG]])
        (only,) = [argument for argument in arguments if argument is not type(None)]
        return _decode(plain, only)
    if origin is tuple:
        (item_kind, _ellipsis) = typing.get_args(kind)
        return tuple(_decode(item, item_kind) for item in plain)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(plain)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        values = {
            field.name: _decode(plain[field.name], hints[field.name])
            for field in dataclasses.fields(kind)
            if field.name in plain
        }
        return kind(**values)
    if kind in (int, str, bool) and not isinstance(plain, kind):
        raise ValueError(f"expected {kind.__name__}, got {plain!r}")
    return plain


@cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)
