"""Canonical JSON is unambiguous: one value, one encoding; different values, different bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from services.ledger.domain.canonical import (
    NotCanonicalError,
    canonical_entry,
    canonical_json,
    parse_canonical_json,
    plain_canonical_json,
    request_hash,
)

plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def test_keys_are_sorted_without_spaces_and_text_is_ascii():
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"\\u00e9"],"b":1}'


@settings(deadline=None)
@given(plain_values)
def test_one_value_has_one_encoding_which_parses_back_to_it(value):
    encoded = canonical_json(value)

    assert parse_canonical_json(encoded) == value
    assert canonical_json(json.loads(encoded)) == encoded
    assert encoded.isascii()


@settings(deadline=None)
@given(plain_values, plain_values)
def test_different_values_never_share_an_encoding(first, second):
    # JSON does not tell 1 from True apart in Python equality, but the encodings do differ; the
    # order in which a mapping's keys were inserted is no part of its value.
    same_value = first == second and json.dumps(first, sort_keys=True) == json.dumps(
        second, sort_keys=True
    )
    assert (canonical_json(first) == canonical_json(second)) == same_value


def test_ambiguous_looking_values_encode_differently():
    values = [1, True, "1", "true", None, "null", [1], {"1": 1}, 10, "1,", [], {}, ""]
    encodings = [canonical_json(value) for value in values]
    assert len(set(encodings)) == len(values)


@pytest.mark.parametrize("value", [1.5, {"a": 0.1}, [float("nan")], {1: "a"}, {"a": b"x"}])
def test_what_canonical_json_cannot_hold_is_refused(value):
    with pytest.raises(NotCanonicalError):
        canonical_json(value)


@pytest.mark.parametrize("text", ['{"b":1,"a":2}', '{"a": 1}', "[1.0]", "not json"])
def test_text_that_is_not_canonical_is_refused_when_parsed(text):
    with pytest.raises(NotCanonicalError):
        parse_canonical_json(text)


@settings(deadline=None)
@given(
    user_id=st.text(max_size=10),
    user_sequence=st.integers(min_value=1),
    payload=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5)),
    request_id=st.text(max_size=10),
    recorded_at_us=st.integers(),
)
def test_the_canonical_entry_is_the_canonical_json_of_the_whole_entry(
    user_id, user_sequence, payload, request_id, recorded_at_us
):
    spliced = canonical_entry(
        user_id=user_id,
        user_sequence=user_sequence,
        entry_type="HOLD_PLACED",
        payload_json=canonical_json(payload),
        request_id=request_id,
        request_hash="ab" * 32,
        recorded_at_us=recorded_at_us,
    )

    whole = plain_canonical_json(
        {
            "schema_version": 1,
            "user_id": user_id,
            "user_sequence": user_sequence,
            "type": "HOLD_PLACED",
            "payload": payload,
            "request_id": request_id,
            "request_hash": "ab" * 32,
            "recorded_at_us": recorded_at_us,
        }
    )
    assert spliced == whole.encode("ascii")


def test_the_request_hash_covers_the_method_and_every_field():
    command = {"user_id": "u", "amount": {"currency_code": "CNY", "amount_minor": 1}}
    changed = {"user_id": "u", "amount": {"currency_code": "CNY", "amount_minor": 2}}

    assert request_hash("PlaceHold", command) == request_hash("PlaceHold", dict(command))
    assert request_hash("PlaceHold", command) != request_hash("PlaceHold", changed)
    assert request_hash("PlaceHold", command) != request_hash("CreateObligation", command)
