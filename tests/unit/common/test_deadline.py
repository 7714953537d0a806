"""An outbound call gets its own limit, or less when the caller's deadline is nearer."""

from __future__ import annotations

import pytest

from services.common.deadline import ANSWER_MARGIN_S, Deadline
from services.common.errors import Unavailable


def test_without_a_callers_deadline_the_calls_own_limit_applies():
    assert Deadline.none().timeout_s(2.0, reason="X_UNAVAILABLE") == 2.0


def test_a_nearer_callers_deadline_shortens_the_call_and_leaves_time_to_answer():
    timeout_s = Deadline.after(0.5).timeout_s(2.0, reason="X_UNAVAILABLE")

    assert 0 < timeout_s <= 0.5 - ANSWER_MARGIN_S


def test_a_farther_callers_deadline_leaves_the_calls_own_limit():
    assert Deadline.after(60).timeout_s(2.0, reason="X_UNAVAILABLE") == 2.0


def test_a_caller_out_of_time_gets_unavailable_with_the_reason_given():
    with pytest.raises(Unavailable) as refused:
        Deadline.after(0.01).timeout_s(2.0, reason="X_UNAVAILABLE")

    assert refused.value.reason == "X_UNAVAILABLE"
