"""A Bluesky flyer that runs a solenoid-cycle mode: :class:`SolenoidCycler`.

``kickoff`` starts a mode on a :class:`soldrv.runner.RealTimeRunner`; ``complete`` finishes
when the mode ends, the configured number of cycles or duration is done, or the cycler was
stopped; ``describe_collect``/``collect`` give one event per tick that changed an output,
holding every solenoid state (1 open, 0 closed, -1 unknown), every D/A value (-1 unknown),
the proxy ids triggered, the mode, the step within the cycle, the cycle count and the
elapsed logical time, stamped with the (epoch) time of the change.

Use it with ``bp.fly([cycler])`` inside a stage (``soldrv.plans.run_cycle`` does that), so that
the RunEngine's unstage puts the hardware in the safe state even when a plan fails. ``read()``
gives the current states, so the cycler can also be read as a detector in a step scan.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from soldrv.backends import (
    SimHardware,
    apply_safe_state,
    resolve_dtoa_address,
    resolve_solenoid,
)
from soldrv.machine import Action, ModeRequestError, SoldrvMachine, StepRecord, dtoa_channels
from soldrv.program import Program
from soldrv.runner import RealTimeRunner, load_program

__all__ = ["SolenoidCycler"]

_CONTROL_KEYS = ("mode", "step", "cycle", "proxies", "elapsed")


def _safe_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


class SolenoidCycler(Device):
    """Run one mode of a solenoid-cycle program as a Bluesky flyer.

    Args:
        program: a :class:`~soldrv.program.Program`, or the path of an ``.sft``/``.sol``.
        hardware: the backend (default: a new :class:`~soldrv.backends.SimHardware`).
        name: the ophyd name; data keys are ``{name}_{solenoid}``, ``{name}_da_{dtoa}``,
            ``{name}_mode``, ``{name}_step``, ``{name}_cycle``, ``{name}_proxies``,
            ``{name}_elapsed``.
        safe_solenoids: {solenoid name: 0/1} applied by stage, unstage and stop (default:
            every solenoid closed).
        safe_dtoa: {DtoA name or address: value} also applied then (default: none).
        speed: logical seconds per wall second of the runner (1.0 = real time).
        stream_name: the collect stream (default: ``name``).

    Configuration signals (read with ``read_configuration``): ``mode`` (the mode kickoff
    requests), ``cycles`` (complete after that many cycles, 0 = no limit), ``duration``
    (complete after that many seconds, 0 = no limit). With neither limit, ``complete`` stops
    the mode at once (use that with ``fly_during_wrapper``), unless the attribute
    ``stop_on_complete`` is False (then complete waits until the mode ends by itself).

    Bad input: an undefined mode gives a kickoff status that fails with
    :class:`~soldrv.machine.ModeRequestError`; an unknown safe-state name raises KeyError
    here; a program error or hardware failure while flying fails the complete status.
    """

    mode = Cpt(Signal, value=0, kind="config")
    cycles = Cpt(Signal, value=1, kind="config")
    duration = Cpt(Signal, value=0.0, kind="config")

    def __init__(
        self,
        program: Program | str | os.PathLike[str],
        hardware: Any = None,
        *,
        name: str,
        safe_solenoids: Mapping[str | int, int] | None = None,
        safe_dtoa: Mapping[str | int, int] | None = None,
        speed: float = 1.0,
        stream_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Create the cycler; see the class docstring."""
        super().__init__(name=name, **kwargs)
        if not isinstance(program, Program):
            program = load_program(program)
        self.program = program
        self.hardware = hardware if hardware is not None else SimHardware(program)
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = float(speed)
        n = len(program.solenoids)
        self.safe_solenoids: dict[int, int] = (
            {i: 0 for i in range(n)}
            if safe_solenoids is None
            else {resolve_solenoid(program, k): int(v) for k, v in safe_solenoids.items()}
        )
        self.safe_dtoa = dict(safe_dtoa or {})
        apply_safe_state(_Recorder(), program, self.safe_solenoids, self.safe_dtoa)  # validate
        self.stream_name = stream_name or name
        self.stop_on_complete = True
        self._channels = dtoa_channels(program)
        self._keys = self._make_keys()
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._runner: RealTimeRunner | None = None
        self._kickoff_status: DeviceStatus | None = None
        self._complete_status: DeviceStatus | None = None
        self._error: Exception | None = None
        self._t_start: float | None = None
        self._epoch_offset = time.time() - time.monotonic()
        self._states: list[int | None] = [None] * n
        self._dtoa: dict[int, int | None] = {a: None for a, _ in self._channels}
        self._last: dict[str, Any] = {"mode": -1, "step": 0, "cycle": 0, "elapsed": 0.0}

    # -- keys ---------------------------------------------------------------------------

    def _make_keys(self) -> dict[str, str]:
        p = self.program
        keys: dict[str, str] = {c: f"{self.name}_{c}" for c in _CONTROL_KEYS}
        for i in range(len(p.solenoids)):
            label = _safe_key(p.solenoid_label(i))
            key = f"{self.name}_{label}"
            if key in keys.values():
                key = f"{self.name}_sol_{label}"
            keys[f"sol{i}"] = key
        for addr, label in self._channels:
            keys[f"da{addr}"] = f"{self.name}_da_{_safe_key(label)}"
        return keys

    @property
    def solenoid_keys(self) -> list[str]:
        """Data keys of the solenoid states, in program order."""
        return [self._keys[f"sol{i}"] for i in range(len(self.program.solenoids))]

    @property
    def dtoa_keys(self) -> dict[int, str]:
        """Data key of each D/A channel, by address."""
        return {addr: self._keys[f"da{addr}"] for addr, _ in self._channels}

    def _describe_keys(self) -> dict[str, dict[str, Any]]:
        src = f"soldrv:{self.program.source[0] if self.program.source else 'program'}"
        out: dict[str, dict[str, Any]] = {}
        for key in self.solenoid_keys:
            out[key] = {"source": src, "dtype": "integer", "shape": [], "precision": 0}
        for addr, key in self.dtoa_keys.items():
            out[key] = {"source": f"{src}:0x{addr:04X}", "dtype": "integer", "shape": []}
        for c in ("mode", "step", "cycle"):
            out[self._keys[c]] = {"source": src, "dtype": "integer", "shape": []}
        out[self._keys["proxies"]] = {"source": src, "dtype": "string", "shape": []}
        out[self._keys["elapsed"]] = {"source": src, "dtype": "number", "shape": [], "units": "s"}
        return out

    def _data(self, proxies: tuple[int, ...] = ()) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for i, st in enumerate(self._states):
            d[self._keys[f"sol{i}"]] = -1 if st is None else st
        for addr, key in self.dtoa_keys.items():
            v = self._dtoa.get(addr)
            d[key] = -1 if v is None else v
        for c in ("mode", "step", "cycle", "elapsed"):
            d[self._keys[c]] = self._last[c]
        d[self._keys["proxies"]] = ",".join(map(str, proxies))
        return d

    # -- safe state --------------------------------------------------------------------------

    def apply_safe_state(self) -> None:
        """Halt the runner (if flying) and drive the hardware to the safe state."""
        self._halt("safe state")
        apply_safe_state(self.hardware, self.program, self.safe_solenoids, self.safe_dtoa)
        with self._lock:
            for i, v in self.safe_solenoids.items():
                self._states[i] = v
            for key, v in self.safe_dtoa.items():
                self._dtoa[resolve_dtoa_address(self.program, key)] = int(v)

    def _halt(self, reason: str) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.halt(reason, wait=5.0)
            runner.close()
        self._finish(None)

    # -- staging ---------------------------------------------------------------------------

    def stage(self) -> list[object]:
        """Stage: put the hardware in the safe state (a known start), then stage components."""
        staged = super().stage()
        self.apply_safe_state()
        return staged

    def unstage(self) -> list[object]:
        """Unstage: stop any running mode and put the hardware in the safe state."""
        self.apply_safe_state()
        return super().unstage()

    def stop(self, *, success: bool = False) -> None:
        """Stop the running mode and put the hardware in the safe state."""
        self.apply_safe_state()

    # -- flyer protocol ----------------------------------------------------------------------

    @property
    def flying(self) -> bool:
        """True while a kicked-off mode runs (until it ends, complete, stop or unstage)."""
        done = self._complete_status is None or self._complete_status.done
        return self._runner is not None and not done

    def kickoff(self) -> DeviceStatus:
        """Start the configured mode; the status is done once the mode runs.

        The status fails with ModeRequestError for an undefined mode, and with the error
        if the mode's first instructions fail. Kicking off while flying fails too.
        """
        st = DeviceStatus(self)
        if self.flying:
            st.set_exception(RuntimeError(f"{self.name} is already flying: complete it first"))
            return st
        old, self._runner = self._runner, None
        if old is not None:  # a finished flight's runner
            old.close()
        mode = self.mode.get()
        cycles = int(self.cycles.get() or 0)
        duration = float(self.duration.get() or 0.0)
        try:
            if cycles < 0 or duration < 0:
                raise ValueError(f"cycles ({cycles}) and duration ({duration} s) must be >= 0")
            runner = RealTimeRunner(
                self.program,
                self.hardware,
                on_action=self._on_action,
                on_step=self._on_step,
                on_error=self._on_error,
                on_idle=self._on_idle,
                speed=self.speed,
            )
            mode = runner.machine.check_request(mode)
        except (ModeRequestError, ValueError) as e:
            st.set_exception(e)
            return st
        with self._lock:
            self._events.clear()
            runner.machine.solenoids[:] = self._states
            runner.machine.dtoa.update(self._dtoa)
            self._error = None
            self._t_start = None
            self._kickoff_status = st
            self._complete_status = DeviceStatus(self)
        self._epoch_offset = time.time() - time.monotonic()
        runner.start()
        runner.set_limits(cycles or None, duration or None)
        runner.request_mode(mode)
        self._runner = runner  # flying: later requests queue behind the kickoff's
        return st

    def complete(self) -> DeviceStatus:
        """Return a status done when the mode ends, the limit is reached or it was stopped.

        Without a cycles or duration limit, this stops the mode now (unless
        :attr:`stop_on_complete` is False: then it waits for the mode to end by itself).
        Returns at once.
        """
        st = self._complete_status
        if st is None:
            st = DeviceStatus(self)
            st.set_finished()
            return st
        unlimited = not int(self.cycles.get() or 0) and not float(self.duration.get() or 0.0)
        if unlimited and self.stop_on_complete:
            threading.Thread(target=self._halt, args=("complete",), daemon=True).start()
        return st

    def request_mode(self, mode: int) -> None:
        """Request ``mode``: while flying, as soldrv (pending until the next ``^``, mode 0 at
        once); otherwise it becomes the mode of the next kickoff.

        Raises ModeRequestError for an undefined mode (nothing changes).
        """
        runner = self._runner
        if runner is not None and self.flying:
            runner.request_mode(mode)
            return
        self.mode.put(SoldrvMachine(self.program).check_request(mode))

    def describe_collect(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Return ``{stream_name: data keys}`` of the collected events."""
        return {self.stream_name: self._describe_keys()}

    def collect(self) -> Iterator[dict[str, Any]]:
        """Yield the events recorded since kickoff (or the last collect), oldest first."""
        with self._lock:
            events, self._events = self._events, []
        yield from events

    def describe(self) -> dict[str, dict[str, Any]]:
        """Describe the readable current state (same keys as collect)."""
        out = dict(super().describe())
        out.update(self._describe_keys())
        return out

    def read(self) -> dict[str, dict[str, Any]]:
        """Read the current output state (solenoids, D/A, mode, step) as of the last change."""
        out = dict(super().read())
        now = time.time()
        with self._lock:
            data = self._data()
        out.update({k: {"value": v, "timestamp": now} for k, v in data.items()})
        return out

    # -- runner callbacks (runner thread) --------------------------------------------------

    def _on_action(self, act: Action) -> None:
        if act.kind == "mode":
            with self._lock:
                self._last["mode"] = act.mode
                if self._t_start is None:
                    self._t_start = act.time
            st = self._kickoff_status
            if st is not None and not st.done:
                st.set_finished()

    def _on_step(self, rec: StepRecord) -> None:
        t = (rec.wall if rec.wall is not None else time.monotonic()) + self._epoch_offset
        with self._lock:
            self._states[:] = rec.solenoids
            self._dtoa.update(rec.dtoa)
            self._last.update(
                mode=-1 if rec.mode is None else rec.mode,
                step=rec.step,
                cycle=rec.cycle,
                elapsed=rec.time - (self._t_start or 0.0),
            )
            data = self._data(rec.proxies)
            self._events.append(
                {"time": t, "data": data, "timestamps": {k: t for k in data}, "filled": {}}
            )

    def _on_error(self, err: Exception) -> None:
        self._error = err

    def _on_idle(self) -> None:
        with self._lock:
            self._last["mode"] = -1
        runner = self._runner
        if runner is not None:
            runner.close_soon()  # the flight is over; the thread ends after its queue
        self._finish(self._error)

    def _finish(self, err: Exception | None) -> None:
        for st in (self._kickoff_status, self._complete_status):
            if st is not None and not st.done:
                if err is not None:
                    st.set_exception(err)
                else:
                    st.set_finished()


class _Recorder:
    """A throw-away hardware interface used to validate a safe state."""

    def strobe(self, commands: object) -> None:
        """Ignore."""

    def set_point(self, address: int, value: int) -> None:
        """Ignore."""
