"""Turns the domain's frozen dataclasses into plain JSON values and back, strictly.

Plain values are what canonical JSON can hold: dicts with string keys, lists, strings, integers,
booleans and None; never floats. Decoding is strict (no missing or unknown keys, no ints for
bools) because it reads the journal during verification, where anything unexpected is a finding.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from enum import Enum
from functools import cache
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

Plain = None | bool | int | str | list["Plain"] | dict[str, "Plain"]
T = TypeVar("T")


class DecodeError(ValueError):
    """A plain value does not have the shape of the type it was decoded as."""


_SCALARS = frozenset({int, str, bool, type(None)})


def to_plain(value: object) -> Plain:
    """The plain form of a dataclass, enum, tuple or scalar; raises TypeError on anything else
    (a float above all), so what it returns is always fit for canonical JSON."""
    value_type: Any = type(value)
    if value_type in _SCALARS:
        return value  # type: ignore[return-value]
    if isinstance(value, Enum):
        enum_value: str = value.value
        return enum_value
    field_names = _dataclass_field_names(value_type)
    if field_names is not None:
        return {name: to_plain(getattr(value, name)) for name in field_names}
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    raise TypeError(f"{value_type.__name__} has no plain form")


@cache
def _dataclass_field_names(value_type: Any) -> tuple[str, ...] | None:
    if not dataclasses.is_dataclass(value_type):
        return None
    return tuple(field.name for field in dataclasses.fields(value_type))


def from_plain(target: type[T], value: Plain) -> T:
    """Decodes `value` as `target` (a dataclass); raises DecodeError when it does not fit."""
    decode: Decoder = _decoder(target)  # type: ignore[arg-type]
    decoded: T = decode(value)
    return decoded


Decoder = Callable[[Plain], Any]


@cache
def _decoder(target: Any) -> Decoder:
    """A decoder for `target`, built once per type: verification decodes every journal entry."""
    origin = get_origin(target)
    if origin is typing.Union or origin is types.UnionType:
        return _optional_decoder(target)
    if origin is tuple:
        return _tuple_decoder(target)
    if isinstance(target, type) and dataclasses.is_dataclass(target):
        return _dataclass_decoder(target)
    if isinstance(target, type) and issubclass(target, Enum):
        return _enum_decoder(target)
    if target in (bool, int, str):
        return _scalar_decoder(target)
    raise TypeError(f"cannot decode into {target!r}")


def _scalar_decoder(target: type) -> Decoder:
    def decode(value: Plain) -> Any:
        # type() rather than isinstance(): True is an int to Python but not to the journal.
        if type(value) is not target:
            raise DecodeError(f"expected {target.__name__}, got {type(value).__name__}")
        return value

    return decode


def _enum_decoder(target: type[Enum]) -> Decoder:
    def decode(value: Plain) -> Any:
        try:
            return target(value)
        except ValueError:
            raise DecodeError(f"{value!r} is not a {target.__name__}") from None

    return decode


def _optional_decoder(target: Any) -> Decoder:
    members = [member for member in get_args(target) if member is not type(None)]
    if len(members) != 1:
        raise TypeError("only `X | None` unions are supported")
    decode_member = _decoder(members[0])

    def decode(value: Plain) -> Any:
        return None if value is None else decode_member(value)

    return decode


def _tuple_decoder(target: Any) -> Decoder:
    item_type, ellipsis = get_args(target)
    assert ellipsis is Ellipsis, "only homogeneous tuples are supported"
    decode_item = _decoder(item_type)

    def decode(value: Plain) -> Any:
        if not isinstance(value, list):
            raise DecodeError("expected a list")
        decoded = []
        for index, item in enumerate(value):
            try:
                decoded.append(decode_item(item))
            except DecodeError as error:
                raise DecodeError(f"[{index}]: {error}") from None
        return tuple(decoded)

    return decode


def _dataclass_decoder(target: type) -> Decoder:
    hints = get_type_hints(target)
    fields = [(field.name, _decoder(hints[field.name])) for field in dataclasses.fields(target)]
    names = frozenset(name for name, _ in fields)

    def decode(value: Plain) -> Any:
        if not isinstance(value, dict):
            raise DecodeError(f"{target.__name__}: expected an object")
        if value.keys() != names:
            missing = sorted(names - value.keys())
            unknown = sorted(value.keys() - names)
            raise DecodeError(f"{target.__name__}: missing keys {missing}, unknown keys {unknown}")
        arguments = {}
        for name, decode_field in fields:
            try:
                arguments[name] = decode_field(value[name])
            except DecodeError as error:
                raise DecodeError(f"{target.__name__}.{name}: {error}") from None
        return target(**arguments)

    return decode


def with_defaults(target: Any, value: Plain) -> Plain:
    """`value` with the keys it lacks of `target`'s fields that have defaults filled in, at any
    depth. Stored answers are decoded through it: an answer stored before a field with a
    default was added (the consent of an account summary, say) still decodes, as it would have
    been answered then. The journal is never read through it: an entry lacking a key is a
    finding."""
    origin = get_origin(target)
    if origin is typing.Union or origin is types.UnionType:
        members = [member for member in get_args(target) if member is not type(None)]
        return value if value is None or len(members) != 1 else with_defaults(members[0], value)
    if origin is tuple and isinstance(value, list):
        item_type = get_args(target)[0]
        return [with_defaults(item_type, item) for item in value]
    if not (isinstance(target, type) and dataclasses.is_dataclass(target)):
        return value
    if not isinstance(value, dict):
        return value
    hints = get_type_hints(target)
    filled: dict[str, Plain] = {}
    for field in dataclasses.fields(target):
        if field.name in value:
            filled[field.name] = with_defaults(hints[field.name], value[field.name])
        elif field.default is not dataclasses.MISSING:
            filled[field.name] = to_plain(field.default)
    filled.update({key: item for key, item in value.items() if key not in filled})
    return filled
