"""Orders, changes and policies as JSON documents, and back.

A generic mapping of the domain's frozen dataclasses: enums by value, tuples as lists, nested
dataclasses as objects, and a ledger effect (a union of dataclasses) tagged with its class name.
Decoding follows the dataclasses' type hints, so a document that does not fit raises.

How each type is encoded and decoded is worked out once, from its fields and type hints, and kept
(`_encoder`, `_decoder`): every order step writes and reads these documents, so nothing about a
type is looked up again for each value.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from functools import cache, lru_cache
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
    hint: Any = kind
    decoded: T = _decoder(hint)(json.loads(text))
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


@lru_cache(maxsize=1024)
def policy_from_json(text: str) -> ScenarioPolicy:
    """Decoded once per distinct document: every order step reads its scenario's policy, which
    changes rarely, and a policy is frozen, so one decoded value serves every reader."""
    return loads(text, ScenarioPolicy)


def _plain(value: object) -> Any:
    kind = type(value)
    encode = _ENCODERS.get(kind)
    if encode is None:
        encode = _ENCODERS.setdefault(kind, _encoder(kind))
    return encode(value)


def _same(value: Any) -> Any:
    return value


def _enum_value(value: Any) -> Any:
    return value.value


def _list(value: Any) -> Any:
    return [_plain(item) for item in value]


# Each type's encoder, made on first use (see `_encoder`).
_ENCODERS: dict[type, Callable[[Any], Any]] = {}


def _encoder(kind: type) -> Callable[[Any], Any]:
    """How a value of type `kind` becomes plain data for JSON."""
    if issubclass(kind, enum.Enum):
        return _enum_value
    if dataclasses.is_dataclass(kind):
        names = tuple(field.name for field in dataclasses.fields(kind))
        tag = kind.__name__ if kind.__name__ in _EFFECTS else None

        def encode(value: Any) -> Any:
            plain = {name: _plain(getattr(value, name)) for name in names}
            if tag is not None:
                plain[_TAG] = tag
            return plain

        return encode
    if issubclass(kind, tuple | list):
        return _list
    return _same


@cache
def _decoder(kind: Any) -> Callable[[Any], Any]:
    """How plain data from JSON becomes a value of `kind` (a type or a type hint)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return _union_decoder(typing.get_args(kind))
    if origin is tuple:
        (item_kind, _ellipsis) = typing.get_args(kind)
        decode_item = _decoder(item_kind)
        return lambda plain: tuple(decode_item(item) for item in plain)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass_decoder(kind)
    if kind in (int, str, bool):

        def decode_scalar(plain: Any) -> Any:
            if not isinstance(plain, kind):
                raise ValueError(f"expected {kind.__name__}, got {plain!r}")
            return plain

        return decode_scalar
    return _same


def _union_decoder(arguments: tuple[Any, ...]) -> Callable[[Any], Any]:
    """None where the union allows it; a ledger effect by its tag; else its one other type."""
    optional = type(None) in arguments
    others = [argument for argument in arguments if argument is not type(None)]
    decode_only = _decoder(others[0]) if len(others) == 1 else None

    def decode(plain: Any) -> Any:
        if plain is None and optional:
            return None
        if isinstance(plain, dict) and _TAG in plain:
            return _decoder(_EFFECTS[plain[_TAG]])(plain)
        if decode_only is None:
            raise ValueError(f"an untagged value for a union of {len(others)} types: {plain!r}")
        return decode_only(plain)

    return decode


def _dataclass_decoder(kind: type) -> Callable[[Any], Any]:
    hints = typing.get_type_hints(kind)
    fields = tuple((field.name, _decoder(hints[field.name])) for field in dataclasses.fields(kind))

    def decode(plain: Any) -> Any:
        return kind(**{name: decode(plain[name]) for name, decode in fields if name in plain})

    return decode
