"""Waiting for what another process does (a daemon, a server, the kernel): one helper.

Tests never sleep for a fixed time to let something happen; they poll for it with
:func:`wait_until`, which fails the test, saying what did not happen, if it does not
happen in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_SECONDS = 0.05


def wait_until(predicate: Callable[[], object], timeout: float, message: str) -> None:
    """Return once ``predicate()`` is true; AssertionError(``message``) after ``timeout`` s.

    ``predicate`` is called at least once, and once more after the deadline has
    passed, so a slow machine never fails a check that came true just in time.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            if predicate():
                return
            raise AssertionError(f"{message} (waited {timeout:g} s)")
        time.sleep(POLL_SECONDS)
