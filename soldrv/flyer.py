"""A Bluesky flyer that runs a solenoid-cycle mode: :class:`SolenoidCycler`.

``kickoff`` starts a mode on a :class:`soldrv.runner.RealTimeRunner`; ``complete`` finishes
when the mode ends, the configured number of cycles or duration is done, or the cycler was
stopped; ``describe_collect``/``collect`` give one event per tick that changed an output,
holding every solenoid state (1 open, 0 closed, -1 unknown), every D/A value (-1 unknown),
the proxy ids triggered, the mode, the step within the cycle, the cycle count and the
elapsed logical time, stamped with the (epoch) time of the change: the event's ``time`` and
every per-key timestamp are the moment the outputs changed (bluesky would stamp collected
events with the time of the collect; :mod:`soldrv.event_times` makes it keep ours).

Events can be collected while the cycle runs: ``soldrv.plans.run_cycle`` (and
``soldrv.plans.fly_streaming``) collect each tick batch as it is recorded (``wait_for_events``
says when), at most once every ``period`` seconds, so subscribers and the store see each
change within about that period. ``bp.fly([cycler])`` works too (all events at the end, with
their true times).

Fly it inside a stage (``soldrv.plans.run_cycle`` does that), so that the RunEngine's unstage
puts the hardware in the safe state even when a plan fails. ``read()``
gives the current states, so the cycler can also be read as a detector in a step scan.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus
from ophyd.utils import InvalidState

from soldrv import event_times
from soldrv.backends import OutputStates, SimHardware
from soldrv.machine import (
    Action,
    HardwareError,
    ModeRequestError,
    ProgramError,
    SoldrvMachine,
    StepRecord,
    check_timer,
    dtoa_channels,
)
from soldrv.program import Program
from soldrv.runner import RealTimeRunner, load_program
from soldrv.safe_state import DEFAULT_RETRY_PERIOD, SafeState

__all__ = ["SolenoidCycler"]

_CONTROL_KEYS = ("mode", "step", "cycle", "proxies", "elapsed")


def _safe_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


class SolenoidCycler(Device):
    """Run one mode of a solenoid-cycle program as a Bluesky flyer.

    Parameters
    ----------
    program : Program | str | os.PathLike[str]
        A :class:`~soldrv.program.Program`, or the path of an ``.sft``/``.sol``.
    hardware : Any, optional
        The backend (default: a new :class:`~soldrv.backends.SimHardware`).
    name : str
        The ophyd name; data keys are ``{name}_{solenoid}``, ``{name}_da_{dtoa}``,
        ``{name}_mode``, ``{name}_step``, ``{name}_cycle``, ``{name}_proxies``,
        ``{name}_elapsed``.
    safe_solenoids : OutputStates | None, optional
        {solenoid name: 0/1} applied by stage, unstage and stop (default:
        every solenoid closed).
    safe_dtoa : OutputStates | None, optional
        {DtoA name or address: value} also applied then (default: none).
    speed : float, optional
        Logical seconds per wall second of the runner (1.0 = real time).
    stream_name : str | None, optional
        The collect stream (default: ``name``).
    timer : str, optional
        ``"exact"`` (default: count/16384 s per tick) or ``"reference"`` (the C
        driver's period, sub-second part cut to a multiple of 1/1024 s).
    safe_retry_period : float, optional
        Seconds between attempts to write the safe state after a failure,
        while it does not hold (see :class:`soldrv.safe_state.SafeState`).

    Notes
    -----
    Configuration signals (read with ``read_configuration``): ``mode`` (the mode kickoff
    requests), ``cycles`` (complete after that many cycles, 0 = no limit), ``duration``
    (complete after that many seconds, 0 = no limit). With neither limit, ``complete`` stops
    the mode at once (use that with ``fly_during_wrapper``), unless the attribute
    ``stop_on_complete`` is False (then complete waits until the mode ends by itself).

    Bad input: an undefined mode gives a kickoff status that fails with
    :class:`~soldrv.machine.ModeRequestError`; an unknown safe-state name raises KeyError
    here; a program error or hardware failure while flying puts the safe state at once and
    fails the complete status with a sentence saying what failed and whether the safe state
    could be written. If it could not, it is retried in the background (thread
    ``soldrv-safe``) every ``safe_retry_period`` s until it holds, the next kickoff, stage,
    stop or unstage.

    Threads: each kickoff starts one runner thread (named ``soldrv``) that ends when the
    flight ends; ``stop()``, ``unstage()`` and ``stage()`` wait until it made its last
    hardware call before they write the safe state. While a RunEngine is paused the cycle
    keeps running (it is hardware-timed); abort or stop the RunEngine to unstage it.
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
        safe_solenoids: OutputStates | None = None,
        safe_dtoa: OutputStates | None = None,
        speed: float = 1.0,
        stream_name: str | None = None,
        timer: str = "exact",
        safe_retry_period: float = DEFAULT_RETRY_PERIOD,
        **kwargs: Any,
    ) -> None:
        """Create the cycler; see the class docstring."""
        super().__init__(name=name, **kwargs)
        self.timer = check_timer(timer)
        event_times.install()
        if not isinstance(program, Program):
            program = load_program(program)
        self.program = program
        self.hardware = hardware if hardware is not None else SimHardware(program)
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = float(speed)
        n = len(program.solenoids)
        self.safe_state = SafeState(
            self.hardware, program, safe_solenoids, safe_dtoa,
            retry_period=safe_retry_period, on_held=self._note_safe_state,
        )
        self.stream_name = stream_name or name
        self.stop_on_complete = True
        self._channels = dtoa_channels(program)
        self._keys = self._make_keys()
        self._lock = threading.Lock()  # the recorded state and events (short holds)
        self._flight_lock = threading.RLock()  # kickoff, halt and safe state, one at a time
        self._events: list[dict[str, Any]] = []
        self._fresh = threading.Event()  # set: events wait to be collected, or a flight ended
        self._flight: _Flight | None = None
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

    @property
    def safe_solenoids(self) -> dict[int, int]:
        """The safe state of the solenoids: {solenoid index: 0 closed / 1 open}."""
        return self.safe_state.solenoids

    @property
    def safe_dtoa(self) -> dict[int, int]:
        """The D/A values of the safe state: {address: value}."""
        return self.safe_state.dtoa

    def apply_safe_state(self) -> None:
        """Halt the runner (if flying) and drive the hardware to the safe state.

        The runner thread has made its last hardware call before the safe state is written,
        so a tick can never undo it; a retry still running after a failure is stopped first.
        A hardware call that raises here propagates.
        """
        with self._flight_lock:
            self.safe_state.cancel()
            self._halt("safe state")
            self.safe_state.apply()

    def _note_safe_state(self) -> None:
        """Note that the safe state was written (by us or by a retry).

        Record it as the output state.
        """
        with self._lock:
            for i, v in self.safe_solenoids.items():
                self._states[i] = v
            self._dtoa.update(self.safe_dtoa)

    def _halt(self, reason: str, flight: _Flight | None = None) -> None:
        """Stop the current flight (only ``flight`` if given) and finish its statuses."""
        with self._flight_lock:
            f = self._flight
            if f is None or (flight is not None and f is not flight):
                return
            f.runner.halt(reason, wait=5.0)
            f.runner.close(5.0)
            f.finish(None)

    # -- staging ---------------------------------------------------------------------------

    def stage(self) -> list[object]:
        """Stage: put the hardware in the safe state (a known start), then stage components."""
        staged = super().stage()
        self.apply_safe_state()
        return staged

    def unstage(self) -> list[object]:
        """Unstage: stop any running mode and put the hardware in the safe state.

        The device is unstaged even when writing the safe state raises (the error then
        propagates), so it can be staged again once the hardware is back.
        """
        try:
            self.apply_safe_state()
        finally:
            unstaged = super().unstage()
        return unstaged

    def stop(self, *, success: bool = False) -> None:
        """Stop the running mode and put the hardware in the safe state. Idempotent."""
        self.apply_safe_state()

    # -- flyer protocol ----------------------------------------------------------------------

    @property
    def flying(self) -> bool:
        """True while a kicked-off mode runs (until it ends, complete, stop or unstage)."""
        f = self._flight
        return f is not None and not f.complete_status.done

    def kickoff(self) -> DeviceStatus:
        """Start the configured mode; the status is done once the mode runs.

        The status fails with ModeRequestError for an undefined mode, and with the error
        if the mode's first instructions fail. Kicking off while flying fails too and leaves
        the flight running (the statuses of this device never call ``stop()`` on failure:
        the cycler puts the safe state itself after an error).
        """
        st = DeviceStatus(self, call_stop_on_failure=False)
        with self._flight_lock:
            if self.flying:
                st.set_exception(
                    RuntimeError(f"{self.name} is already flying: complete it first")
                )
                return st
            old = self._flight
            if old is not None:  # a finished flight's runner (its thread is ending)
                old.runner.close(5.0)
            self.safe_state.cancel()  # a retry after a failed flight must not hit this one
            try:
                mode = self.mode.get()
                cycles = int(self.cycles.get() or 0)
                duration = float(self.duration.get() or 0.0)
                if cycles < 0 or duration < 0:
                    raise ValueError(
                        f"cycles ({cycles}) and duration ({duration} s) must be >= 0"
                    )
                mode = SoldrvMachine(self.program).check_request(mode)
                if not self.program.is_defined(mode):  # mode 0 is accepted by soldrv
                    raise ModeRequestError(
                        f"mode {mode} is not defined in this program; defined modes: "
                        + (", ".join(map(str, self.program.defined_modes())) or "none")
                    )
            except (ModeRequestError, ValueError) as e:
                st.set_exception(e)
                return st
            done = DeviceStatus(self, call_stop_on_failure=False)
            flight = _Flight(self, st, done, cycles, duration)
            flight.runner = RealTimeRunner(
                self.program,
                self.hardware,
                on_action=flight.on_action,
                on_step=flight.on_step,
                on_error=flight.on_error,
                on_idle=flight.on_idle,
                speed=self.speed,
                timer=self.timer,
            )
            with self._lock:
                self._events.clear()
                self._fresh.clear()
                flight.runner.machine.solenoids[:] = self._states
                flight.runner.machine.dtoa.update(self._dtoa)
                self._last.update(mode=-1, step=0, cycle=0, elapsed=0.0)
            self._epoch_offset = time.time() - time.monotonic()
            self._flight = flight  # before the thread starts: its callbacks find their flight
            flight.runner.start()
            flight.runner.set_limits(cycles or None, duration or None, wait=None)
            flight.runner.request_mode(mode)
        return st

    def complete(self) -> DeviceStatus:
        """Return a status done when the mode ends, the limit is reached or it was stopped.

        Without a cycles or duration limit, this stops the mode now (unless
        :attr:`stop_on_complete` was False at kickoff: then it waits for the mode to end by
        itself). Returns at once; it fails if the flight stopped on a program or hardware
        error (the hardware is then already in the safe state).
        """
        f = self._flight
        if f is None:
            st = DeviceStatus(self, call_stop_on_failure=False)
            st.set_finished()
            return st
        if f.unlimited and f.stop_on_complete and not f.complete_status.done:
            threading.Thread(
                target=self._halt, args=("complete", f), name="soldrv-complete", daemon=True
            ).start()
        return f.complete_status

    def request_mode(self, mode: int) -> None:
        """Request ``mode``.

        While flying, as soldrv (pending until the next ``^``, mode 0 at once); otherwise it becomes
        the mode of the next kickoff.

        Raises
        ------
        soldrv.machine.ModeRequestError
            For an undefined mode (nothing changes).
        """
        f = self._flight
        if f is not None and self.flying:
            try:
                f.runner.request_mode(mode)
                return
            except RuntimeError:  # the flight ended meanwhile: configure the next one
                pass
        self.mode.put(SoldrvMachine(self.program).check_request(mode))

    keeps_event_times = True
    """Collected events carry their own ``time`` (honoured through :mod:`soldrv.event_times`)."""

    def describe_collect(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Return ``{stream_name: data keys}`` of the collected events."""
        return {self.stream_name: self._describe_keys()}

    def collect(self) -> Iterator[dict[str, Any]]:
        """Yield the events recorded since kickoff (or the last collect), oldest first."""
        with self._lock:
            events, self._events = self._events, []
            self._fresh.clear()
        yield from events

    def wait_for_events(self, timeout: float) -> bool:
        """Block up to ``timeout`` s until events wait to be collected or a flight ended.

        Returns False on timeout. :func:`soldrv.plans.fly_streaming` uses it to collect each
        tick batch as it is recorded.
        """
        return self._fresh.wait(timeout)

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


class _Flight:
    """One kickoff: its runner, statuses and error. Runner callbacks land here (runner thread).

    Callbacks of a flight that is no longer the cycler's current one change nothing shared.
    """

    def __init__(
        self,
        cycler: SolenoidCycler,
        kickoff_status: DeviceStatus,
        complete_status: DeviceStatus,
        cycles: int,
        duration: float,
    ) -> None:
        self.cycler = cycler
        self.kickoff_status = kickoff_status
        self.complete_status = complete_status
        self.unlimited = not cycles and not duration
        self.stop_on_complete = cycler.stop_on_complete
        self.runner: RealTimeRunner = None  # type: ignore[assignment]  # set by kickoff
        self.error: Exception | None = None
        self.t_start: float | None = None

    @property
    def current(self) -> bool:
        return self.cycler._flight is self

    def on_action(self, act: Action) -> None:
        if act.kind != "mode" or not self.current:
            return
        cyc = self.cycler
        with cyc._lock:
            cyc._last["mode"] = act.mode
            if self.t_start is None:
                self.t_start = act.time
        if not self.kickoff_status.done:
            self.kickoff_status.set_finished()

    def on_step(self, rec: StepRecord) -> None:
        if not self.current:
            return
        cyc = self.cycler
        t = (rec.wall if rec.wall is not None else time.monotonic()) + cyc._epoch_offset
        with cyc._lock:
            cyc._states[:] = rec.solenoids
            cyc._dtoa.update(rec.dtoa)
            cyc._last.update(
                mode=-1 if rec.mode is None else rec.mode,
                step=rec.step,
                cycle=rec.cycle,
                elapsed=rec.time - (self.t_start or 0.0),
            )
            data = cyc._data(rec.proxies)
            cyc._events.append(
                {"time": t, "data": data, "timestamps": {k: t for k in data}, "filled": {}}
            )
            cyc._fresh.set()

    def on_error(self, err: Exception) -> None:
        self.error = err

    def on_idle(self) -> None:
        """Handle the end of the mode (END_MODE, limit, halt or error).

        End the thread, finish statuses.

        After an error the hardware is put in the safe state at once (the runner thread made
        its last call), and the statuses fail with a sentence saying so.
        """
        self.runner.close_soon()
        err = self.error
        if self.current:
            with self.cycler._lock:
                self.cycler._last["mode"] = -1
            if err is not None:
                err = self._safe_after(err)
        self.finish(err)

    def _safe_after(self, err: Exception) -> Exception:
        note = self.cycler.safe_state.put_after_failure()
        if isinstance(err, (HardwareError, ProgramError)):
            new: Exception = type(err)(f"{err}; {note}")
        else:
            new = HardwareError(f"the flight stopped on {type(err).__name__}: {err}; {note}")
        new.__cause__ = err
        return new

    def finish(self, err: Exception | None) -> None:
        for st in (self.kickoff_status, self.complete_status):
            if not st.done:
                try:
                    if err is not None:
                        st.set_exception(err)
                    else:
                        st.set_finished()
                except InvalidState:  # finished by another thread meanwhile
                    pass
        if self.current:
            self.cycler._fresh.set()  # wake a streaming plan: the flight ended

