"""Both CS800 device families without an IOC, behind one synchronous test interface.

* Case tables shared by ``test_device_unit.py`` (ophyd) and ``test_cs800_families.py``
  (ophyd and ophyd-async, one parametrized suite).
* :class:`FakeController` plays the controller behind the device's PVs: it reacts to the
  ``.PROC`` writes (RAMP, COOL, PLAT, HOLD, END, PURGE, RESTART, PAUSE, RESUME) by updating
  TARGETTEMP, PHASE, RUNMODE, SETPOINT and TEMP, and records every command with the
  parameters written before it. Moves finish at once (``instant=True``) or when the test
  calls :meth:`FakeController.arrive`.
* A *port* is how the controller reaches one family's fake PVs: ophyd fake signals
  (``sim_put`` / ``sim_set_putter``) or ophyd-async mock mode (``set_mock_value`` /
  ``callback_on_mock_put``, run in the device's event loop).
* A *driver* calls the device from the test thread: directly for ophyd; for ophyd-async in
  the event loop of a background thread, wrapping each ``AsyncStatus`` so that tests call
  ``status.wait(timeout)``, ``status.done``, ``status.success`` for both families.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections.abc import Callable
from typing import Any

from ophyd.sim import make_fake_device

from ophyd_cs800.device import CS800
from ophyd_cs800.protocol import PHASE_STRINGS, RUN_MODE_STRINGS, Phase, RunMode

WAIT = 10.0  # generous bound for any status in these tests (they finish in well under 1 s)
STATUS_PERIOD = 0.05  # s: the fake devices' status period (polls every 12.5 ms)
COMMANDS = ("RAMP", "COOL", "PLAT", "HOLD", "END", "PURGE", "PAUSE", "RESUME", "RESTART")
PARAMS = ("rrate", "rtemp", "ctemp", "ptime", "erate")
WRITTEN = (*PARAMS, "turbo")  # PVs whose written value the controller keeps

# -- case tables (both families) -----------------------------------------------------------------
#: Targets refused before anything is written (range 80..400 K, not numbers).
BAD_TARGETS = [79.99, 400.01, 500, -5, math.nan, "hot"]
#: Ramp rates refused before anything is written (K/h).
BAD_RATES = [0, 361, 12.5, "fast"]
#: Run modes in which a move raises "controller is shut down ... restart it first".
SHUT_DOWN = [RunMode.SHUTDOWN_OK, RunMode.SHUTDOWN_FAIL, RunMode.STARTUP_FAIL]
#: Run modes in which a move raises "needs Ready or Run".
NOT_READY = [RunMode.STARTUP, RunMode.SETUP]
#: Plateau durations refused (minutes).
BAD_PLATEAU_MINUTES = [0, 1441, 2.5]
#: End rates refused (K/h).
BAD_END_RATES = [0, 361, 1.5]

FakeCS800 = make_fake_device(CS800)


class OphydPort:
    """The fake PVs of an ophyd ``make_fake_device(CS800)``."""

    family = "ophyd"

    def __init__(self, dev: Any):
        self.dev = dev

    def put(self, attr: str, value: Any) -> None:
        getattr(self.dev, attr).sim_put(value)

    def put_invalid(self, attr: str, value: Any) -> None:
        getattr(self.dev, attr).sim_put(value, metadata={"severity": 3})

    def get(self, attr: str) -> Any:
        return getattr(self.dev, attr).get()

    def on_put(self, attr: str, callback: Callable[[Any], None]) -> None:
        """``callback(value)`` replaces the write of ``attr`` (store with :meth:`put`)."""
        getattr(self.dev, attr).sim_set_putter(callback)


class AioPort:
    """The mock-mode signals of an ``ophyd_cs800.aio.CS800``, touched in its event loop
    (``loop``: the loop's thread; ``None``: the caller runs in the loop already)."""

    family = "aio"

    def __init__(self, dev: Any, loop: LoopThread | None):
        self.dev = dev
        self.loop = loop
        self.values: dict[str, Any] = {}
        self._stored: dict[str, Any] = {}  # what a put callback stored (the readback)

    def _mock_value(self, attr: str, value: Any) -> Any:
        from ophyd_cs800 import aio

        if attr == "phase":
            return aio.Phase(PHASE_STRINGS[int(value)])
        if attr == "run_mode":
            return aio.RunMode(RUN_MODE_STRINGS[int(value)])
        if attr in ("disable", "turbo"):
            return bool(value)
        return value

    def put(self, attr: str, value: Any) -> None:
        from ophyd_async.core import set_mock_value

        self.values[attr] = value
        self._stored[attr] = value
        self._call(lambda: set_mock_value(getattr(self.dev, attr), self._mock_value(attr, value)))

    def _call(self, function: Callable[[], Any]) -> Any:
        return function() if self.loop is None else self.loop.call(function)

    def put_invalid(self, attr: str, value: Any) -> None:
        """A monitor with INVALID severity (ophyd-async reports it as -1)."""
        from ophyd_async.core._mock_signal_utils import _get_mock_signal_backend

        self.values[attr] = value

        def post() -> None:
            soft = _get_mock_signal_backend(getattr(self.dev, attr)).soft_backend
            soft.reading = {"value": value, "timestamp": 0.0, "alarm_severity": -1}
            if soft.callback:
                soft.callback(soft.reading)

        self._call(post)

    def get(self, attr: str) -> Any:
        value = self.values.get(attr)
        return bool(value) if attr == "turbo" and value is not None else value

    def on_put(self, attr: str, callback: Callable[[Any], Any]) -> None:
        """``callback(value)`` (sync or async) handles the write; what it stores with
        :meth:`put` is the readback (a clamp), else the written value."""
        from ophyd_async.core import callback_on_mock_put

        async def put(value: Any) -> Any:
            self._stored.pop(attr, None)
            result = callback(value)
            if inspect.isawaitable(result):
                await result
            return self._stored.pop(attr, None)

        self._call(lambda: callback_on_mock_put(getattr(self.dev, attr), put))


class FakeController:
    """The controller behind a fake CS800 of either family (see the module docstring)."""

    def __init__(self, port: Any, *, temp=300.0, run_mode=RunMode.RUN, instant=True):
        if not hasattr(port, "family"):  # an ophyd fake device
            port = OphydPort(port)
        self.port = port
        self.instant = instant
        self.sent: list[tuple[str, dict]] = []
        self.drop = 0  # ignore this many commands (the controller never replies)
        self.lock = threading.RLock()  # a handler's puts may call back into _command
        for attr, value in (("disable", 0), ("min_temp", 80.0), ("max_temp", 400.0),
                            ("controller_number", 411), ("firmware", 115),
                            ("alarm", "No errors or warnings")):
            port.put(attr, value)
        self.set_state(temp=temp, setpoint=temp, target=temp, phase=Phase.HOLD,
                       run_mode=run_mode)
        for attr in WRITTEN:
            port.on_put(attr, lambda value, _attr=attr: port.put(_attr, value))
        for name in COMMANDS:
            port.on_put(f"cmd_{name.lower()}", lambda value, _name=name: self._command(_name))

    def set_state(self, **values):
        names = {"temp": "temperature", "setpoint": "setpoint", "target": "target",
                 "phase": "phase", "run_mode": "run_mode", "alarm": "alarm"}
        for key, value in values.items():
            self.port.put(names[key], int(value) if key in ("phase", "run_mode") else value)

    def get(self, attr):
        return self.port.get(attr)

    def params(self):
        return {name: self.port.get(name) for name in PARAMS}

    def names(self):
        return [name for name, _ in self.sent]

    def _command(self, name):
        # recorded once handled: a test that sees the command in ``sent`` sees its effect too
        # (arrive() right after it took the old target, 1 in a few hundred runs under load)
        with self.lock:
            params = self.params()
            if self.drop > 0:
                self.drop -= 1
            else:
                getattr(self, f"_on_{name.lower()}")()
            self.sent.append((name, params))

    def _start(self, target, phase):
        if self.get("run_mode") not in (RunMode.STARTUP_OK, RunMode.RUN):
            return
        self.set_state(run_mode=RunMode.RUN, target=target, phase=phase)
        if self.instant:
            self.arrive()

    def arrive(self, temp=None):
        target = self.get("target")
        self.set_state(setpoint=target, phase=Phase.HOLD, temp=target if temp is None else temp)

    def _on_ramp(self):
        self._start(self.get("rtemp"), Phase.RAMP)

    def _on_cool(self):
        self._start(self.get("ctemp"), Phase.COOL)

    def _on_plat(self):
        self.set_state(run_mode=RunMode.RUN, phase=Phase.PLAT)

    def _on_hold(self):
        self.set_state(run_mode=RunMode.RUN, phase=Phase.HOLD)

    def _on_end(self):
        self.set_state(phase=Phase.END)
        if self.instant:
            self.set_state(temp=300.0, run_mode=RunMode.SHUTDOWN_OK, alarm="End complete")

    def _on_purge(self):
        self.set_state(phase=Phase.PURGE)
        if self.instant:
            self.set_state(temp=300.0, run_mode=RunMode.SHUTDOWN_OK, alarm="Purge complete")

    def _on_restart(self):
        self.set_state(run_mode=RunMode.STARTUP)
        if self.instant:
            self.set_state(run_mode=RunMode.STARTUP_OK)

    def _on_pause(self):
        self.set_state(phase=Phase.HOLD)

    def _on_resume(self):
        self.set_state(phase=Phase.RAMP)


class LoopThread:
    """A RunEngine and its asyncio event loop on their daemon thread (the loop ophyd-async
    devices live in), stopped by :meth:`close`."""

    def __init__(self) -> None:
        from bluesky import RunEngine

        self.loop = asyncio.new_event_loop()
        self.engine = RunEngine({}, loop=self.loop, context_managers=[])
        self.thread = self.engine._th  # the thread the RunEngine started for its loop

    def run(self, coro: Any, timeout: float = WAIT) -> Any:
        """Run ``coro`` in the loop and return its result (raise its exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, function: Callable[[], Any]) -> Any:
        """Call ``function()`` in the loop (directly when already there) and return its result."""
        if threading.current_thread() is self.thread:
            return function()

        async def call() -> Any:
            return function()

        return self.run(call())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


class SyncStatus:
    """An ophyd-async status seen from the test thread with ophyd's status interface."""

    def __init__(self, status: Any, loop: LoopThread):
        self.status = status
        self.loop = loop

    @property
    def done(self) -> bool:
        return self.status.done

    @property
    def success(self) -> bool:
        return self.status.success

    def exception(self) -> BaseException | None:
        return self.status.exception() if self.status.done else None

    def watch(self, watcher: Callable[..., None]) -> None:
        self.loop.call(lambda: self.status.watch(watcher))

    def wait(self, timeout: float = WAIT) -> None:
        async def wait() -> None:
            await asyncio.wait_for(asyncio.shield(self.status.task), timeout)

        self.loop.run(wait(), timeout + 1.0)


def _settable(loop: LoopThread, sig: Any, value: Any) -> None:
    SyncStatus(loop.call(lambda: sig.set(value)), loop).wait()


class Driver:
    """Calls one device of either family from the test thread (see the module docstring)."""

    def __init__(self, dev: Any, port: OphydPort | AioPort | None,
                 loop: LoopThread | None = None):
        self.dev = dev
        self.port = port  # None: a real IOC behind the device
        self.loop = loop
        self.family = "ophyd" if loop is None else "aio"

    def __getattr__(self, method: str) -> Callable[..., Any]:
        target = getattr(self.dev, method)
        if not callable(target):
            return target
        if self.loop is None:
            return target
        loop = self.loop

        def call(*args: Any, **kwargs: Any) -> Any:
            result = loop.call(lambda: target(*args, **kwargs))
            return SyncStatus(result, loop) if hasattr(result, "task") else result

        return call

    def action(self, name: str, value: Any = 1) -> Any:
        """``cs.actions.<name>.set(value)``, the way the plans send commands."""
        sig = getattr(self.dev.actions, name)
        if self.loop is None:
            return sig.set(value)
        loop = self.loop
        return SyncStatus(loop.call(lambda: sig.set(value)), loop)

    @property
    def runner(self) -> Any:
        return self.dev._runner

    def accepted(self) -> bool:
        runner = self.dev._runner
        return runner is not None and runner.accepted

    def set_tunable(self, name: str, value: float) -> None:
        """Set ``tolerance``/``settle_time``/``ramp_rate`` (a configuration signal)."""
        sig = getattr(self.dev, name)
        if self.loop is None:
            sig.put(value)
        else:
            _settable(self.loop, sig, value)


def make_ophyd(*, settle_time=0.0, name="cs0", **kwargs) -> Driver:
    kwargs.setdefault("stale_after", None)  # driven by hand: staleness has its own tests
    dev = FakeCS800("X:CS0:", name=name, settle_time=settle_time,
                    status_period=STATUS_PERIOD, **kwargs)
    return Driver(dev, OphydPort(dev))


def make_aio(loop: LoopThread, *, settle_time=0.0, name="cs0", **kwargs) -> Driver:
    kwargs.setdefault("stale_after", None)  # driven by hand: staleness has its own tests
    from ophyd_async.core import init_devices

    from ophyd_cs800 import aio

    async def build() -> Any:
        async with init_devices(mock=True, set_name=False):
            dev = aio.CS800("X:CS0:", name=name, settle_time=settle_time,
                            status_period=STATUS_PERIOD, **kwargs)
        return dev

    dev = loop.run(build())
    return Driver(dev, AioPort(dev, loop), loop)
