"""Helpers for the CS800 examples.

Connect to a CryoStream (or start a simulated one), and keep the runs in a Tiled store.

``open_cs800(prefix)`` yields a connected :class:`ophyd_cs800.CS800`. With ``prefix=None`` it
first starts ``cs800-sim-ioc`` (one simulated controller, sped up) on free loopback ports and
points this process's Channel Access client at it -- which must happen before any ophyd
signal is created, so call this before making other EPICS devices. The simulated IOC is
stopped when the ``with`` block ends (also on errors and Ctrl-C).

``add_store(RE, data)`` subscribes a ``TiledWriter`` on the Tiled catalog in the directory
``data`` (default: the per-user data directory) and prints where the runs go.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def open_cs800(prefix: str | None = None, *, name: str = "cs0", speed: float = 100.0,
               settle_time: float = 1.0) -> Iterator:
    """Yield a connected CS800 at ``prefix`` (``None``: on a new simulated IOC)."""
    ioc = None
    status_period = 1.0
    if prefix is None:
        from sim_ioc.process import SimIocProcess

        ioc = SimIocProcess(controllers=1, speed=speed)
        ioc.start()
        os.environ.update(ioc.env)
        prefix = ioc.controller_prefix(0)
        status_period = 0.25  # the sim sends several status updates per wall second
        print(f"started a simulated CS800 IOC (speed x{speed:g}), controller at {prefix}")
    try:
        from ophyd_cs800 import CS800

        cs = CS800(prefix, name=name, settle_time=settle_time, status_period=status_period)
        cs.wait_for_connection(timeout=20)
        deadline = time.monotonic() + 20  # a fresh (simulated) controller starts up first
        while cs.run_mode.get() not in (2, 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield cs
    finally:
        if ioc is not None:
            ioc.stop()


def add_store(RE: Any, data: str | None = None) -> Any:  # noqa: N803
    """Store ``RE``'s runs in the Tiled catalog at ``data``; the Store, or None without Tiled."""
    from ophyd_cs800 import store

    try:
        stored = store.subscribe_store(RE, data)
    except store.StoreUnavailableError as exc:
        print(f"runs are not stored: {exc}")
        return None
    print(f"runs are stored in the Tiled catalog at {stored.where}")
    return stored


def sim_md(prefix: str | None, speed: float) -> dict[str, Any]:
    """Run metadata saying how fast the simulated controller ran (empty for real hardware)."""
    return {} if prefix is not None else {"sim_speed": speed}
