"""soldrv: run a compiled solenoid-cycle program on a virtual clock or in real time.

The state machine itself is :class:`soldrv.machine.SoldrvMachine` (re-exported
here). This module adds the clocks that drive it:

* :class:`VirtualRunner` -- deterministic logical time, for tests and ``soldrv --dry-run``.
  Time only moves when you call :meth:`VirtualRunner.advance` or :meth:`VirtualRunner.run`;
  a request at time t is handled before a timer tick due at exactly t.
* :class:`RealTimeRunner` -- a thread that delivers tick k of a mode at the absolute deadline
  ``t0 + k * period`` after the mode's SET_TIME at ``t0`` (period count/16384 s, count 0
  means 4 s; ``timer="reference"`` uses the C driver's truncated period instead), so
  lateness never accumulates into drift. ``speed`` > 1 runs the program faster than real
  time (logical seconds per wall second), for demos and tests. Requests come from any thread.

Both take the program from :func:`load_program`, which reads an ``.sft`` or compiles a
``.sol`` (keeping solenoid and DtoA names). No ophyd or bluesky here.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

from soldrv.machine import (
    Action,
    Hardware,
    HardwareError,
    ModeRequestError,
    NullHardware,
    ProgramError,
    SoldrvMachine,
    StepRecord,
    dtoa_channels,
)
from soldrv.program import Program
from soldrv.sft import SftError, load_sft

__all__ = [
    "Action",
    "Hardware",
    "HardwareError",
    "ModeRequestError",
    "NullHardware",
    "ProgramError",
    "RealTimeRunner",
    "SftError",
    "SoldrvMachine",
    "StepRecord",
    "VirtualRunner",
    "dtoa_channels",
    "load_program",
]


def load_program(
    path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, compat: bool = False
) -> Program:
    """Return the :class:`Program` in ``path``: an ``.sft`` file, or ``.sol`` source(s).

    Parameters
    ----------
    path : str or os.PathLike, or an iterable of them
        A name without an extension gets ``.sft`` if that exists, else ``.sol``. Several
        ``.sol`` paths are compiled together (shared state, as ``solfmt a.sol b.sol``).
    compat : bool, optional
        Select the reference compiler's bugs for ``.sol`` input.

    Returns
    -------
    Program
        The loaded or compiled program.

    Raises
    ------
    OSError
        If a file cannot be read.
    SftError
        For a malformed ``.sft``.
    soldrv.errors.SolfmtError
        For a bad ``.sol`` (file:line:column).
    ValueError
        If no file name is given.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise ValueError("load_program needs at least one file name")
    resolved = []
    for p in paths:
        p = Path(p)
        if not p.suffix:
            p = p.with_suffix(".sft") if p.with_suffix(".sft").exists() else p.with_suffix(".sol")
        resolved.append(p)
    if len(resolved) == 1 and resolved[0].suffix.lower() == ".sft":
        if not resolved[0].exists():
            raise FileNotFoundError(f"Can't open {resolved[0]}: no such file")
        return load_sft(resolved[0])
    if any(p.suffix.lower() == ".sft" for p in resolved):
        raise ValueError("give one .sft file, or one or more .sol files, not a mixture")
    from soldrv.compiler import compile_files  # the compiler is only needed for .sol input

    program = compile_files(resolved, compat=compat).program
    program.source = [os.fspath(p) for p in resolved]
    return program


def _attach_clock(hardware: object, clock: Callable[[], float]) -> None:
    """Give the runner's clock to a backend that has ``attach_clock`` (e.g. SimHardware)."""
    attach = getattr(hardware, "attach_clock", None)
    if callable(attach):
        attach(clock)


class VirtualRunner:
    """Run a program on a deterministic virtual clock (logical seconds, starting at 0).

    Parameters
    ----------
    program : Program
        What to run.
    hardware : Hardware | None, optional
        Where outputs go (default: nowhere, the records tell what happened).
        on_action / on_step: callbacks as in :class:`SoldrvMachine`.
    record : bool, optional
        Keep every :class:`Action` in :attr:`actions` and every :class:`StepRecord`
        in :attr:`steps` (default True).
    timer : str, optional
        ``"exact"`` (default: count/16384 s per tick) or ``"reference"`` (the C
        driver's period, sub-second part cut to a multiple of 1/1024 s), see
        :class:`SoldrvMachine`.

    Notes
    -----
    Errors: :meth:`request_mode` raises :class:`ModeRequestError` for an undefined mode;
    :class:`ProgramError`/:class:`HardwareError` propagate from the tick that hit them (the
    machine is then in NO_MODE and the runner can be used again).
    """

    def __init__(
        self,
        program: Program,
        hardware: Hardware | None = None,
        *,
        on_action: Callable[[Action], None] | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        record: bool = True,
        timer: str = "exact",
    ) -> None:
        """Create the runner at time 0 in NO_MODE; see the class docstring."""
        self.actions: list[Action] = []
        self.steps: list[StepRecord] = []
        self._user_action = on_action
        self._user_step = on_step
        self._record = record
        self.machine = SoldrvMachine(
            program, hardware, on_action=self._on_action, on_step=self._on_step, timer=timer
        )
        self.now = 0.0
        self.ticks_delivered = 0
        _attach_clock(hardware, lambda: self.now)

    def _on_action(self, act: Action) -> None:
        if self._record:
            self.actions.append(act)
        if self._user_action is not None:
            self._user_action(act)

    def _on_step(self, rec: StepRecord) -> None:
        if self._record:
            self.steps.append(rec)
        if self._user_step is not None:
            self._user_step(rec)

    @property
    def program(self) -> Program:
        """The program being run."""
        return self.machine.program

    def request_mode(self, mode: int) -> None:
        """Request ``mode`` at the current virtual time (see SoldrvMachine.request_mode)."""
        self.machine.request_mode(mode, self.now)

    def halt(self, reason: str = "halted") -> None:
        """Stop the running mode now (NO_MODE)."""
        self.machine.halt(self.now, reason)

    def deliver_ticks(self, until: float, max_ticks: int | None = None) -> bool:
        """Deliver ticks due strictly before ``until`` s; True if stopped by ``max_ticks``.

        The time is left at the last tick delivered (use :meth:`advance` to move it on).
        """
        m = self.machine
        while True:
            if max_ticks is not None and self.ticks_delivered >= max_ticks:
                return True
            t = m.next_tick_time()
            if t is None or t >= until:
                return False
            self.now = t
            self.ticks_delivered += 1
            m.tick(t)

    def advance(self, until: float, max_ticks: int | None = None) -> None:
        """Deliver every timer tick due strictly before ``until`` s, then set the time to it.

        With ``max_ticks``, stop after that many ticks in total (:attr:`ticks_delivered`);
        the time is then the last tick's. ``until`` before the current time is a ValueError.
        """
        if until < self.now:
            raise ValueError(f"cannot go back in time from {self.now} s to {until} s")
        if not self.deliver_ticks(until, max_ticks):
            self.now = until

    def run(
        self,
        requests: Iterable[tuple[float, int]] = (),
        *,
        duration: float | None = None,
        ticks: int | None = None,
    ) -> list[Action]:
        """Handle timed ``requests`` ((time s, mode), in any order) and run to the limit.

        The run ends at ``duration`` seconds (ticks due at or after it are not delivered)
        or after ``ticks`` timer ticks in total, whichever comes first; at least one of them
        is required. Returns the actions of this call. ModeRequestError for a bad request.
        """
        if duration is None and ticks is None:
            raise ValueError("a virtual run needs a limit: duration (s) or ticks")
        start = len(self.actions)
        end = float("inf") if duration is None else duration
        for at, mode in sorted(requests, key=lambda r: r[0]):
            if at >= end:
                break
            if self.deliver_ticks(max(at, self.now), ticks):
                return self.actions[start:]
            self.now = max(at, self.now)
            self.request_mode(mode)
        if not self.deliver_ticks(end, ticks) and duration is not None:
            self.now = max(duration, self.now)
        return self.actions[start:]


class RealTimeRunner:
    """Run a program in real time in a background thread, on absolute tick deadlines.

    Parameters
    ----------
        program, hardware, on_action, on_step: as for :class:`VirtualRunner` (callbacks run
        in the runner thread; keep them short).
    on_error : Callable[[Exception], None] | None, optional
        Called (in the runner thread) with the exception when a mode stops on a
        :class:`ProgramError` or :class:`HardwareError`; the thread keeps running.
    on_idle : Callable[[], None] | None, optional
        Called (in the runner thread) each time the machine goes from a mode to
        NO_MODE (END_MODE, SELECT of an undefined mode, a limit, a halt or an error).
    speed : float, optional
        Logical seconds per wall second (1.0 = real time); must be > 0.
    clock : Callable[[], float], optional
        Wall-clock source in seconds (default ``time.monotonic``).
    max_ticks : int | None, optional
        Deliver at most this many timer ticks in total; the tick after them
        halts the mode instead (``"halt"`` action ``"<n> ticks done"``).
    timer : str, optional
        ``"exact"`` (default) or ``"reference"`` tick period, as for
        :class:`VirtualRunner`.

    Notes
    -----
    Logical time 0 is :meth:`start`. Tick k of a mode started at logical ``t0`` is due at
    wall time ``start + (t0 + k * period) / speed``. Actions carry ``wall`` (when they ran)
    and ``deadline`` (when they were due), so lateness is ``wall - deadline``.

    Thread-safe: :meth:`request_mode`, :meth:`halt`, :meth:`set_limits` and :meth:`close`
    may be called from any thread. Use as a context manager to start and close it.
    """

    def __init__(
        self,
        program: Program,
        hardware: Hardware | None = None,
        *,
        on_action: Callable[[Action], None] | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_ticks: int | None = None,
        timer: str = "exact",
    ) -> None:
        """Create the runner (not started); see the class docstring."""
        if not speed > 0:
            raise ValueError(f"speed must be > 0 (logical seconds per wall second), got {speed}")
        self.speed = float(speed)
        self.clock = clock
        self.on_error = on_error
        self.on_idle = on_idle
        self.machine = SoldrvMachine(
            program, hardware, on_action=on_action, on_step=on_step, timer=timer
        )
        self._cond = threading.Condition()
        self._queue: list[tuple[str, object, threading.Event | None]] = []
        self._first_request_at: float | None = None  # clock() when the oldest request came
        self._inflight = 0  # queue items taken by the thread and not yet handled
        self._closing = False
        self._thread: threading.Thread | None = None
        self._wall0 = 0.0
        self._until: float | None = None
        #: A duration limit posted while no mode runs: it counts from the start of the next mode.
        self._pending_duration: float | None = None
        self.ticks_delivered = 0
        self.max_ticks = max_ticks
        self.last_error: Exception | None = None
        _attach_clock(hardware, self.clock)

    # -- time --------------------------------------------------------------------------

    @property
    def program(self) -> Program:
        """The program being run."""
        return self.machine.program

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._thread is not None and self._thread.is_alive()

    def logical_now(self) -> float:
        """Return the current logical time in seconds since :meth:`start`."""
        return (self.clock() - self._wall0) * self.speed

    def wall_of(self, logical: float) -> float:
        """Wall-clock time (``clock`` seconds) at which logical time ``logical`` falls."""
        return self._wall0 + logical / self.speed

    # -- control -------------------------------------------------------------------------

    def start(self) -> RealTimeRunner:
        """Start the runner thread (logical time 0 is now); returns self.

        Idempotent while running; a closed runner cannot be started again (RuntimeError).
        """
        with self._cond:
            if self._closing:
                raise RuntimeError("the runner is closed: create and start a new one")
            if self._thread is None:
                self._wall0 = self.clock()
                self._thread = threading.Thread(target=self._loop, name="soldrv", daemon=True)
                self._thread.start()
        return self

    def __enter__(self) -> RealTimeRunner:
        """Start the runner."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Close the runner."""
        self.close()

    def _post(self, kind: str, arg: object, wait: float | None) -> bool:
        if self._thread is None:
            raise RuntimeError("the runner is not started: call start() first")
        if self._thread is threading.current_thread():
            wait = None  # from a callback: the thread handles it after the current call
        done = threading.Event() if wait is not None else None
        with self._cond:
            closing = self._closing
            if kind == "halt":  # also stops a burst that is running now, between instructions
                self.machine.halt_requested = True
            if not closing:
                self._queue.append((kind, arg, done))
                if kind == "request" and self._first_request_at is None:
                    self._first_request_at = self.clock()
                self._cond.notify_all()
        if closing:
            if kind != "halt":
                raise RuntimeError("the runner is closed: create and start a new one")
            # a closing runner halts by itself: wait until its thread has made its last call
            thread = self._thread
            if wait is not None and thread is not threading.current_thread():
                thread.join(wait)
            return not thread.is_alive()
        if done is None:
            return True
        return done.wait(wait)

    def request_mode(self, mode: int, wait: float | None = None) -> bool:
        """Request ``mode`` (handled in the runner thread as soldrv would, see the machine).

        Parameters
        ----------
        mode : int
            The mode number.
        wait : float or None, optional
            Seconds to block until the runner handled the request (None: do not wait).

        Returns
        -------
        bool
            False if ``wait`` ran out before the runner handled it.

        Raises
        ------
        soldrv.machine.ModeRequestError
            At once, in the caller's thread, for an undefined mode (nothing changes).
        """
        mode = self.machine.check_request(mode)
        return self._post("request", mode, wait)

    def halt(self, reason: str = "halted", wait: float | None = 5.0) -> bool:
        """Stop the running mode (NO_MODE) and wait up to ``wait`` s until it is stopped.

        Parameters
        ----------
        reason : str, optional
            Why the mode stopped, as recorded in the halt action.
        wait : float or None, optional
            Seconds to wait (None: do not wait).

        Returns
        -------
        bool
            False if the runner did not handle it in time. After a True return no further
            hardware call comes from this runner until the next request.
        """
        return self._post("halt", reason, wait)

    def set_limits(
        self, cycles: int | None = None, duration: float | None = None, wait: float | None = 5.0
    ) -> bool:
        """Stop after ``cycles`` more cycles (GOTO or SELECT) or ``duration`` more seconds.

        Reaching a limit halts the mode with a ``"halt"`` action. Limits apply to the running
        mode, or, posted while none runs, to the mode the next request starts (a duration then
        counts from that mode's start); they end with that mode, however it ends.

        Parameters
        ----------
        cycles : int or None, optional
            Cycles, >= 1 (None: no limit).
        duration : float or None, optional
            Seconds, > 0 (None: no limit).
        wait : float or None, optional
            Seconds to wait until the runner took them (None: do not wait).

        Returns
        -------
        bool
            False if the runner did not take them within ``wait`` s.

        Raises
        ------
        ValueError
            For ``cycles`` < 1 or ``duration`` <= 0.
        """
        if cycles is not None and cycles < 1:
            raise ValueError(f"cycles must be >= 1, got {cycles}")
        if duration is not None and not duration > 0:
            raise ValueError(f"duration must be > 0 s, got {duration}")
        return self._post("limits", (cycles, duration), wait)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no mode runs (NO_MODE, nothing queued); False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.machine.mode is not None or self._queue or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close_soon(self) -> None:
        """Ask the thread to end after what is queued, without waiting (callable from callbacks)."""
        with self._cond:
            self._closing = True
            self.machine.halt_requested = True
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> bool:
        """Halt the mode and stop the thread (joined within ``timeout`` s). Idempotent.

        Returns True when the thread has ended (False if it is still busy, e.g. in a hardware
        call that hangs; it ends after that call without making another). Called from the
        runner thread itself (a callback), it only asks the thread to end.
        """
        self.close_soon()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return thread is None
        thread.join(timeout)
        return not thread.is_alive()

    # -- thread ----------------------------------------------------------------------------

    def _guard(self, call: Callable[..., None], *args: object) -> None:
        """Run a machine call; any exception stops the mode and goes to ``on_error``.

        ProgramError and HardwareError already left the machine in NO_MODE. Anything else
        (a callback that raised, a bug) would otherwise kill the thread and leave the mode
        "running" with nobody ticking it: the mode is halted and the error reported.
        """
        try:
            call(*args)
        except (ProgramError, HardwareError) as e:
            self._report(e)
        except Exception as e:  # noqa: BLE001 - the runner thread must survive
            self.machine.to_no_mode(drop_burst=True)  # no callbacks here: they may be what raised
            self._report(e)

    def _report(self, err: Exception) -> None:
        self.last_error = err
        if self.on_error is not None:
            try:
                self.on_error(err)
            except Exception:  # noqa: BLE001 - nothing more can be done with it
                pass

    def _watch_idle(self, was_running: bool) -> None:
        if not (was_running and self.machine.mode is None):
            return
        # limits belong to the mode that ended (by them or otherwise): the next one starts free
        self._until = None
        self.machine.cycle_limit = None
        if self.on_idle is not None:
            try:
                self.on_idle()
            except Exception as e:  # noqa: BLE001 - the runner thread must survive
                self._report(e)

    def _handle(self, kind: str, arg: object) -> None:
        m = self.machine
        was_running = m.mode is not None
        now = self.logical_now()
        wall = self.clock()
        if kind == "request":
            with self._cond:  # a halt queued after this request keeps its flag
                if not any(k == "halt" for k, _, _ in self._queue) and not self._closing:
                    m.halt_requested = False
            self._guard(m.request_mode, arg, now, wall)
            if self._pending_duration is not None and m.mode is not None:
                self._until = now + self._pending_duration  # from the mode's start
                self._pending_duration = None
            was_running = True  # a request that ends in NO_MODE (mode 0 undefined) is "idle"
        elif kind == "halt":
            self._guard(m.halt, now, str(arg), wall)
            with self._cond:
                if not any(k == "halt" for k, _, _ in self._queue) and not self._closing:
                    m.halt_requested = False
        elif kind == "limits":
            cycles, duration = cast("tuple[int | None, float | None]", arg)
            m.cycle_limit = None if cycles is None else m.cycles_done + cycles
            if m.mode is None and duration is not None:  # counts from the next mode's start
                self._until, self._pending_duration = None, duration
            else:
                self._until = None if duration is None else now + duration
                self._pending_duration = None
        self._watch_idle(was_running)

    def _tick_due(self) -> float | None:
        """Logical time of the next tick if it must run before the queued requests.

        That is when its deadline passed before the oldest queued mode request arrived
        (so requests and ticks are handled in time order). A queued halt or limit change,
        or closing, goes first: a runner that fell behind must not catch up ticks then.
        """
        t = self.machine.next_tick_time()
        if t is None:
            return None
        until = self._until if self.machine.mode is not None else None
        if until is not None and until <= t:
            return None
        with self._cond:
            if self._closing or any(kind != "request" for kind, _, _ in self._queue):
                return None
            first = self._first_request_at
        if first is None or self.wall_of(t) > first:
            return None
        return t

    def _deliver(self, tick_at: float) -> None:
        deadline = self.wall_of(tick_at)
        was_running = self.machine.mode is not None
        if self.max_ticks is not None and self.ticks_delivered >= self.max_ticks:
            self._guard(self.machine.halt, tick_at, f"{self.max_ticks} ticks done", self.clock())
        else:
            self.ticks_delivered += 1
            self._guard(self.machine.tick, tick_at, self.clock(), deadline)
        self._watch_idle(was_running)

    def _loop(self) -> None:
        m = self.machine
        while True:
            # a tick that fell due before the requests now queued runs first (its time is
            # earlier), so a late request never shifts the timer of a mode started at a ^
            tick_at = self._tick_due()
            if tick_at is not None:
                self._deliver(tick_at)
                continue
            with self._cond:
                closing = self._closing
                queue, self._queue = self._queue, []
                self._first_request_at = None
                self._inflight = len(queue)
            for kind, arg, done in queue:  # requests made before close() are still handled
                self._handle(kind, arg)
                with self._cond:
                    self._inflight -= 1
                if done is not None:
                    done.set()
            if closing:
                break
            tick_at = m.next_tick_time()
            until = self._until if m.mode is not None else None
            target = tick_at
            if until is not None and (target is None or until <= target):
                target = until
            with self._cond:
                if self._closing or self._queue:
                    continue
                if target is None:
                    self._cond.notify_all()  # wake wait_idle()
                    self._cond.wait(0.5)
                    continue
                deadline = self.wall_of(target)
                left = deadline - self.clock()
                if left > 0:
                    self._cond.wait(left)
                    if self._closing or self._queue or self.clock() < deadline:
                        continue
            if until is not None and target == until:
                was_running = m.mode is not None
                self._guard(m.halt, until, f"duration done ({until:g} s)", self.clock())
                self._until = None
                self._watch_idle(was_running)
            else:
                assert tick_at is not None
                self._deliver(tick_at)
        was_running = m.mode is not None
        self._guard(m.halt, self.logical_now(), "runner closed", self.clock())
        self._watch_idle(was_running)
        with self._cond:
            self._cond.notify_all()
