"""The tests' one waiting helper: it returns when the condition holds and fails, saying
what did not happen, when it never does."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import wait_until


def test_returns_once_the_condition_holds() -> None:
    calls = itertools.count(1)
    wait_until(lambda: next(calls) >= 3, 30, "never true")
    assert next(calls) == 4  # asked exactly three times


def test_fails_with_the_message_when_it_never_holds() -> None:
    calls = itertools.count(1)
    with pytest.raises(AssertionError, match=r"^the pod never ran \(waited 0.1 s\)$"):
        wait_until(lambda: next(calls) < 0, 0.1, "the pod never ran")
    assert next(calls) >= 3  # the first try, and the last one after the deadline
