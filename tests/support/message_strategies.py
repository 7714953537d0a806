"""Hypothesis strategies for any protobuf message, derived from its descriptor alone.

`messages(descriptor)` draws messages of that type: every field may be missing; strings are
random or odd (empty, blank, control characters, right-to-left marks, zero-width and
non-Latin characters, far too long); integers random or at the edges of their type; enums any
32-bit number, known or not; floats include NaN and the infinities; repeated fields are short,
or, in the request itself (not in the messages within it), huge (thousands of copies of one
value); nested messages the same, a few levels deep.
Timestamps and Durations are nested messages like any other, so their seconds and nanos get
the same edges (protobuf's invalid ones included).

A field kind this module cannot generate raises `NoStrategy` when the strategy is built, so a
contract that grows such a field fails the fuzz suite's coverage test instead of going
unfuzzed.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

# Deeper than any request of the contracts nests its messages (a policy's Money, a report's
# statement's Money): past this, a message field stays unset.
NESTING_MAX = 4
# How many copies a huge repeated field holds: of a short scalar, or of a message.
HUGE_SCALAR_REPEATS = (1_001, 10_000, 100_001)
HUGE_MESSAGE_REPEATS = (1_001, 5_000)
ODD_TEXTS = (
    "",
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "\x7f",
    "é",
    "用户",
    "\u202eevil",
    "a\u200bb",
    "\ufeff",
    "🙂" * 3,
    "I\u0307",
    "x" * 129,
    "y" * 5_000,
    "' OR 1=1 --",
    "../../etc/passwd",
    "%s%n",
    "null",
    "-1",
    "9" * 40,
)
_INTEGER_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


class NoStrategy(Exception):
    """A field of a kind the strategies cannot generate."""


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type, each field missing or drawn from `field_values`."""
    message_class = GetMessageClass(descriptor)
    if depth >= NESTING_MAX:
        return st.just(message_class())
    fields = {
        field.name: st.one_of(st.none(), field_values(field, depth)) for field in descriptor.fields
    }
    return st.fixed_dictionaries(fields).map(lambda values: build(message_class, values))


def field_values(field: FieldDescriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of one field: a list for a repeated field, a dict for a map, else one value."""
    if field.type == FieldDescriptor.TYPE_GROUP:
        raise NoStrategy(f"{field.full_name}: groups are not generated")
    if _is_map(field):
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        return st.dictionaries(
            single_values(key_field, depth + 1), single_values(value_field, depth + 1), max_size=4
        )
    one = single_values(field, depth)
    if not field.is_repeated:
        return one
    if depth > 0:  # huge lists only at the top, or huge lists of huge lists would run out of memory
        return st.lists(one, max_size=4)
    if field.message_type is not None:
        copies, counts = one, HUGE_MESSAGE_REPEATS
    elif field.type == FieldDescriptor.TYPE_STRING:
        copies, counts = st.text(max_size=8), HUGE_SCALAR_REPEATS
    elif field.type == FieldDescriptor.TYPE_BYTES:
        copies, counts = st.binary(max_size=8), HUGE_SCALAR_REPEATS
    else:
        copies, counts = one, HUGE_SCALAR_REPEATS
    huge = st.tuples(copies, st.sampled_from(counts)).map(lambda pair: [pair[0]] * pair[1])
    return st.one_of(st.lists(one, max_size=4), huge)


def single_values(field: FieldDescriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """One value of the field's type (an element, for a repeated field)."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.text(max_size=40), st.sampled_from(ODD_TEXTS))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\xff" * 70_000))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if kind in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[kind]
        edges = sorted({low, low + 1, -1 if low < 0 else 0, 0, 1, high - 1, high})
        return st.one_of(st.sampled_from(edges), st.integers(low, high))
    raise NoStrategy(f"{field.full_name}: no strategy for field type {kind}")


def build(message_class: type[Message], values: dict[str, Any]) -> Message:
    """A message with the given field values (None: the field stays unset)."""
    message = message_class()
    for name, value in values.items():
        if value is None:
            continue
        field = message.DESCRIPTOR.fields_by_name[name]
        set_field(message, field, value)
    return message


def set_field(message: Message, field: FieldDescriptor, value: Any) -> None:
    """Sets one field to a value `field_values` drew (replacing what it held)."""
    message.ClearField(field.name)
    target = getattr(message, field.name)
    if _is_map(field):
        for key, item in value.items():
            if field.message_type.fields_by_name["value"].message_type is not None:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        target.extend(value)
    elif field.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _is_map(field: FieldDescriptor) -> bool:
    return bool(
        field.is_repeated
        and field.message_type is not None
        and field.message_type.GetOptions().map_entry
    )
