"""Bounded polling for tests: wait for a condition with a deadline, never a bare sleep.

``poll`` returns the predicate's last value (falsy on timeout), for checks written as
``assert poll(...)`` and for "must not happen within T s" checks (``assert not poll(...)``).
``wait_for`` raises ``AssertionError`` naming what it waited for and the last value seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    *,
    interval: float = 0.01,
    tolerate: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call ``predicate`` until it returns a truthy value or ``timeout`` s pass.

    Returns the last value; an exception of a type in ``tolerate`` (e.g. a CA read timeout)
    counts as "not yet" and is the value returned if it was the last outcome.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except tolerate as exc:
            value = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for(
    predicate: Callable[[], Any],
    what: str = "condition",
    timeout: float = 10.0,
    *,
    interval: float = 0.01,
    tolerate: tuple[type[BaseException], ...] = (),
) -> Any:
    """Like :func:`poll`, but raise ``AssertionError`` naming ``what`` on timeout."""
    value = poll(predicate, timeout, interval=interval, tolerate=tolerate)
    if not value or isinstance(value, BaseException):
        raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
    return value
