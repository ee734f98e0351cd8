"""How a CS800 command is followed to completion: snapshots, jobs and the job runner.

The CryoStream never acknowledges a command, so every command the device sends (ramp, cool,
plateau, hold, end, purge, restart) is a *job*: it is sent, then *accepted* when the status
PVs show the controller acting on it (re-sent a bounded number of times otherwise), then
*done* when the status PVs show it finished. A :class:`JobRunner` follows one job on a small
thread that wakes every ``poll_interval`` seconds and looks at a :class:`Snapshot` of the
cached (monitored) PV values, so a quiet readback can never hang a move. The runner also
fails the job on a stale controller, on a shutdown and on timeout.

This module knows nothing about PV names: the device supplies a ``snapshot`` callable and
the jobs' ``send`` callables. Times are ``time.monotonic()`` seconds, temperatures kelvin.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ophyd.status import StatusBase

from ophyd_cs800.errors import (
    CS800Error,
    CS800InterruptedError,
    CS800NotAcceptedError,
    CS800ShutDownError,
    CS800StaleError,
    CS800TimeoutError,
)
from ophyd_cs800.protocol import MOVING_PHASES, PHASE_STRINGS, RUN_MODE_STRINGS, RunMode

#: Two temperatures closer than this are "the same" controller value (the wire resolution is
#: 0.01 K, so a commanded 150.004 K reads back as 150.00 K).
SAME_TEMP_K = 0.006

#: Status periods of silence after which a controller counts as silent ...
STALE_PERIODS = 3.0
#: ... plus this margin (s) for the jitter of delivery (a status period is 1 s on hardware).
STALE_MARGIN_S = 0.5
#: ``stale_after`` value meaning "from the status period": :data:`STALE_PERIODS` periods plus
#: :data:`STALE_MARGIN_S`.
AUTO = "auto"

#: Run modes in which the controller no longer runs a programme.
SHUT_DOWN_MODES = frozenset({RunMode.SHUTDOWN_OK, RunMode.SHUTDOWN_FAIL, RunMode.STARTUP_FAIL})


@dataclass(frozen=True)
class Snapshot:
    """The controller state as the device's monitors show it at one instant (no CA traffic).

    Attributes
    ----------
    now : float
        ``time.monotonic()`` when the snapshot was taken.
    temp : float | None
        Sample gas temperature TEMP in K (``None`` if unknown).
    temp_invalid : bool
        TEMP is disconnected or has INVALID alarm severity (stale controller).
    update_age : float
        Seconds since any status PV last posted a monitor.
    setpoint : float | None
        The ramping gas set point SETPOINT in K (``None`` if unknown).
    target : float | None
        The programme's final target TARGETTEMP in K (``None`` if unknown).
    phase : int | None
        PHASE as an int (:class:`~ophyd_cs800.protocol.Phase` value) or ``None``.
    run_mode : int | None
        RUNMODE as an int (:class:`~ophyd_cs800.protocol.RunMode` value) or ``None``.
    alarm : str
        The ALARM text ("" if unknown).
    status_period : float
        The status period to plan with, s: learned from the arrival of status
        (:class:`ophyd_cs800.heartbeat.StatusClock`), never below the device's
        ``status_period``.
    stale_limit : float | None
        Seconds of silence (``update_age``) after which the controller counts as
        silent (``None``: never); see :func:`stale_limit`.
    """

    now: float
    temp: float | None
    temp_invalid: bool
    update_age: float
    setpoint: float | None
    target: float | None
    phase: int | None
    run_mode: int | None
    alarm: str = ""
    status_period: float = 1.0
    stale_limit: float | None = None

    @property
    def silent(self) -> bool:
        """True when no status arrived for longer than :attr:`stale_limit`."""
        return self.stale_limit is not None and self.update_age > self.stale_limit

    def describe(self) -> str:
        """Return a short human description, e.g. ``TEMP 212.31 K, phase Ramp, run mode Run``.

        A silent controller reads ``no status for 4 s (last TEMP 150.00 K)``: its phase and run
        mode are frozen, not current, so they are not shown.
        """
        if self.silent:
            return f"no status for {self.update_age:.1f} s (last TEMP {_fmt_k(self.temp)})"
        parts = [f"TEMP {_fmt_k(self.temp)}", f"phase {phase_name(self.phase)}",
                 f"run mode {run_mode_name(self.run_mode)}"]
        if self.alarm and self.alarm.lower() not in ("no errors or warnings", "no error", "unset"):
            parts.append(f"alarm {self.alarm!r}")
        return ", ".join(parts)


def stale_limit(stale_after: float | str | None, status_period: float) -> float | None:
    """Seconds of silence after which the controller counts as silent.

    ``stale_after`` is :data:`AUTO` (``STALE_PERIODS * status_period + STALE_MARGIN_S``: a
    running move fails within 3 status periods + 1 s of the last datagram), a number of
    seconds, or ``None`` (never: only INVALID severity on TEMP, as the fixed IOC sets, counts).
    """
    if stale_after is None:
        return None
    if stale_after == AUTO:
        return STALE_PERIODS * status_period + STALE_MARGIN_S
    return float(stale_after)


def silence_error(snap: Snapshot, device: str, doing: str) -> CS800StaleError | None:
    """Return the error for a controller silent for longer than ``snap.stale_limit``, else ``None``.

    ``doing`` ends the sentence's first part: ``"during the ramp to 150.00 K at 360 K/h"`` or
    ``"so the move was not sent"``.
    """
    if not snap.silent:
        return None
    return CS800StaleError(
        f"{device}: no status update from the controller for {snap.update_age:.1f} s "
        f"(more than {snap.stale_limit:.1f} s, about {STALE_PERIODS:g} status periods of "
        f"{snap.status_period:.2f} s) {doing} (last TEMP {_fmt_k(snap.temp)}); check the "
        "controller's power and network link and the IOC (its DISABLE and status port)."
    )


def _fmt_k(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f} K"


def phase_name(phase: int | None) -> str:
    """Return the synApps PHASE string for an int phase (``"unknown"`` for ``None`` or junk)."""
    if phase is None or not 0 <= phase < len(PHASE_STRINGS):
        return "unknown" if phase is None else f"unknown ({phase})"
    return PHASE_STRINGS[phase]


def run_mode_name(mode: int | None) -> str:
    """Return the synApps RUNMODE string for an int run mode (``"unknown"`` for junk)."""
    if mode is None or not 0 <= mode < len(RUN_MODE_STRINGS):
        return "unknown" if mode is None else f"unknown ({mode})"
    return RUN_MODE_STRINGS[mode]


def close(a: float | None, b: float, tol: float) -> bool:
    """Return True when ``a`` is known and ``|a - b| <= tol`` (kelvin)."""
    return a is not None and math.isfinite(a) and abs(a - b) <= tol


class Job:
    """One controller command followed to completion (subclasses fill in the predicates).

    Attributes
    ----------
    device : str
        The device name, used in messages.
    what : str
        What was asked, e.g. ``"ramp to 150.00 K at 360 K/h"``.
    send : Callable[[], None]
        Callable that writes the PVs of the command once (raises on a CA failure).
    timeout : float
        Seconds from the first send until the job fails with a timeout.
    confirm_periods : float
        Status periods to wait for acceptance before a re-send.
    meaning : str
        What the command's bytes mean, for the log (``"RAMP 150.00 K at 360 K/h"``);
        set by the device, ``what`` is used when empty.
    """

    confirm_periods: float = 3.0
    meaning: str = ""

    def __init__(self, device: str, what: str, send: Callable[[], None], timeout: float):
        self.device = device
        self.what = what
        self.send = send
        self.timeout = float(timeout)

    def accepted(self, snap: Snapshot) -> bool:
        """Return True when the status shows the controller acting on the command."""
        raise NotImplementedError

    def done(self, snap: Snapshot) -> bool:
        """Return True when the command has finished (only asked once accepted)."""
        raise NotImplementedError

    def failure(self, snap: Snapshot, *, paused: bool) -> CS800Error | None:
        """Return an error when the accepted command can no longer finish, else ``None``.

        The default fails when the controller shuts down (or fails its start-up checks).
        """
        if snap.run_mode in SHUT_DOWN_MODES:
            return CS800ShutDownError(
                f"{self.device}: the controller shut down during the {self.what} "
                f"({snap.describe()}): restart it first (RE(restart({self.device})))."
            )
        return None


class MoveJob(Job):
    """A Ramp or Cool to ``target`` K: done when out of Ramp/Cool/Wait and settled in tolerance.

    ``tolerance`` (K) and ``settle_time`` (s of wall clock inside the band) decide "done";
    ``interrupt_after`` (s) is how long the controller may sit out of Ramp/Cool/Wait with its
    set point away from the target before the move counts as interrupted (HOLD or PLAT sent
    from somewhere else).
    """

    def __init__(
        self,
        device: str,
        what: str,
        send: Callable[[], None],
        timeout: float,
        *,
        target: float,
        tolerance: float,
        settle_time: float,
        interrupt_after: float,
    ):
        super().__init__(device, what, send, timeout)
        self.target = float(target)
        self.tolerance = float(tolerance)
        self.settle_time = float(settle_time)
        self.interrupt_after = float(interrupt_after)
        self._band_since: float | None = None
        self._off_since: float | None = None

    def accepted(self, snap: Snapshot) -> bool:
        """Tell whether accepted.

        When TARGETTEMP shows the target, the mode is Run, and it moves or is there.
        """
        if not close(snap.target, self.target, SAME_TEMP_K) or snap.run_mode != RunMode.RUN:
            return False
        return (
            snap.phase in MOVING_PHASES
            or close(snap.setpoint, self.target, SAME_TEMP_K)
            or close(snap.temp, self.target, self.tolerance)
        )

    def _settled_in_band(self, snap: Snapshot) -> bool:
        in_band = snap.phase not in MOVING_PHASES and close(snap.temp, self.target, self.tolerance)
        if not in_band:
            self._band_since = None
            return False
        if self._band_since is None:
            self._band_since = snap.now
        return snap.now - self._band_since >= self.settle_time

    def done(self, snap: Snapshot) -> bool:
        """Done when PHASE left Ramp/Cool/Wait and |TEMP - target| <= tolerance for settle_time."""
        return self._settled_in_band(snap)

    def failure(self, snap: Snapshot, *, paused: bool) -> CS800Error | None:
        """Shutdown (base class), or interrupted for ``interrupt_after`` s.

        Interrupted means either *replaced*: TARGETTEMP shows another target (another client,
        e.g. a second RunEngine, sent its own RAMP or COOL), or *left*: the controller sits out
        of Ramp/Cool/Wait with its set point away from the target (a HOLD, PLAT or PAUSE from
        elsewhere). The message says which was seen, never a guess.
        """
        err = super().failure(snap, paused=paused)
        if err is not None:
            return err
        replaced = snap.target is not None and not close(snap.target, self.target, 0.05)
        left = (
            snap.phase is not None
            and snap.phase not in MOVING_PHASES
            and snap.setpoint is not None
            and not close(snap.setpoint, self.target, 0.05)
            and not close(snap.temp, self.target, self.tolerance)
        )
        if paused or not (replaced or left):
            self._off_since = None
            return None
        if self._off_since is None:
            self._off_since = snap.now
        if snap.now - self._off_since < self.interrupt_after:
            return None
        if replaced:
            return CS800InterruptedError(
                f"{self.device}: another command replaced this one: the {self.what} was "
                f"interrupted, the controller now goes to {_fmt_k(snap.target)} "
                f"({snap.describe()}); another client or RunEngine commands this controller."
            )
        return CS800InterruptedError(
            f"{self.device}: the {self.what} was interrupted: the controller left the "
            f"programme for phase {phase_name(snap.phase)} at set point "
            f"{_fmt_k(snap.setpoint)} ({snap.describe()}), a command this device did not send "
            "(HOLD, PLAT or PAUSE from another client or the front panel)."
        )


class PhaseJob(Job):
    """A command that is accepted when PHASE enters ``phases`` and done when it leaves them.

    Used for Plat (``{Plat}``). With ``done_in_phase=True`` the job is done as soon as it is
    accepted (Hold).
    """

    def __init__(
        self,
        device: str,
        what: str,
        send: Callable[[], None],
        timeout: float,
        *,
        phases: frozenset[int],
        done_in_phase: bool = False,
    ):
        super().__init__(device, what, send, timeout)
        self.phases = phases
        self.done_in_phase = done_in_phase

    def accepted(self, snap: Snapshot) -> bool:
        """Tell whether accepted: when the run mode is Run and PHASE is one of ``phases``."""
        return snap.run_mode == RunMode.RUN and snap.phase in self.phases

    def done(self, snap: Snapshot) -> bool:
        """Done when PHASE has left ``phases`` (or at once with ``done_in_phase``)."""
        return self.done_in_phase or snap.phase not in self.phases


class ShutdownJob(PhaseJob):
    """End or Purge: accepted when PHASE enters ``phases``, done at Shutdown OK.

    Accepted also when the unit is shut down already; done when the run mode is Shutdown OK;
    Shutdown Fail is an error.
    """

    def accepted(self, snap: Snapshot) -> bool:
        """Tell whether accepted: when PHASE is one of ``phases`` or the controller is shut down."""
        return snap.phase in self.phases or snap.run_mode in SHUT_DOWN_MODES

    def done(self, snap: Snapshot) -> bool:
        """Done when the run mode is Shutdown OK."""
        return snap.run_mode == RunMode.SHUTDOWN_OK

    def failure(self, snap: Snapshot, *, paused: bool) -> CS800Error | None:
        """Shutdown Fail (a fault) or Startup Fail end the job with an error."""
        if snap.run_mode in (RunMode.SHUTDOWN_FAIL, RunMode.STARTUP_FAIL):
            return CS800ShutDownError(
                f"{self.device}: the controller shut down with an error during the {self.what} "
                f"({snap.describe()})."
            )
        return None


class RestartJob(Job):
    """Restart: accepted when the run mode leaves Shutdown, done in Ready (Startup OK) or Run."""

    confirm_periods = 6.0  # BCSB waits about 4 s after Restart before it expects Ready

    def accepted(self, snap: Snapshot) -> bool:
        """Tell whether accepted.

        Once the run mode is no longer Shutdown OK / Shutdown Fail / Startup Fail.
        """
        return snap.run_mode is not None and snap.run_mode not in SHUT_DOWN_MODES

    def done(self, snap: Snapshot) -> bool:
        """Done in Ready (Startup OK) or Run."""
        return snap.run_mode in (RunMode.STARTUP_OK, RunMode.RUN)

    def failure(self, snap: Snapshot, *, paused: bool) -> CS800Error | None:
        """Startup Fail after acceptance: the start-up checks failed."""
        if snap.run_mode == RunMode.STARTUP_FAIL:
            return CS800ShutDownError(
                f"{self.device}: the controller failed its start-up checks after Restart "
                f"({snap.describe()}): see the alarm and the controller's display."
            )
        return None


#: The confirmation window is at least this many times the slowest recent acceptance ...
LAG_FACTOR = 2.0
#: ... but never longer than this (s) on that account.
MAX_LAG_WINDOW_S = 60.0


class ResponseTimes:
    """Seconds from the first send of a command to its acceptance, for one device's last few.

    An IOC that lags behind the controller (the synApps C IOC decodes at most 10 datagrams a
    second and queues the rest) shows acceptance seconds late; the confirmation window then
    grows to :data:`LAG_FACTOR` times the slowest recent acceptance, instead of re-sending.
    Thread safe.
    """

    def __init__(self, keep: int = 5) -> None:
        """Remember the last ``keep`` acceptance times."""
        self._times: deque[float] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, seconds: float) -> None:
        """Remember one acceptance that took ``seconds`` from the first send."""
        with self._lock:
            self._times.append(max(0.0, float(seconds)))

    def window_floor(self) -> float:
        """Return the shortest confirmation window the recent acceptances allow (s, 0 if none)."""
        with self._lock:
            slowest = max(self._times, default=0.0)
        return min(LAG_FACTOR * slowest, MAX_LAG_WINDOW_S)


def confirm_window(job: Job, snap: Snapshot, sends: int, responses: ResponseTimes) -> float:
    """Seconds to wait for acceptance after send number ``sends`` (1 for the first).

    ``confirm_periods`` status periods (learned, see :attr:`Snapshot.status_period`), doubled
    at each re-send (a lagging IOC gets time instead of the same command again), and never
    shorter than :meth:`ResponseTimes.window_floor`.
    """
    base = job.confirm_periods * snap.status_period * 2 ** max(0, sends - 1)
    return max(base, responses.window_floor())


class Step:
    """What a :class:`JobTracker` decided at one look: the driver of the job acts on it.

    Attributes
    ----------
    kind : str
        ``"wait"`` (look again later), ``"send"`` (send the command again; ``why`` says
        why, for the log), ``"done"`` (finish the status successfully), ``"fail"`` (fail it
        with ``error``) or ``"timeout"`` (send HOLD if the job holds on timeout, then fail
        it with :meth:`JobTracker.timeout_error`).
    error : CS800Error | None
        The failure for ``"fail"``, else ``None``.
    why : str
        The reason of a re-send.
    """

    __slots__ = ("kind", "error", "why")

    def __init__(self, kind: str, error: CS800Error | None = None, why: str = ""):
        self.kind = kind
        self.error = error
        self.why = why

    def __repr__(self) -> str:
        """Show the step as ``Step(kind, error, why)``."""
        return f"Step({self.kind!r}, {self.error!r}, {self.why!r})"


WAIT = Step("wait")
DONE = Step("done")
TIMEOUT = Step("timeout")


class JobTracker:
    """Every decision about one running :class:`Job`, with no thread, task or status.

    Both device families drive it the same way: :meth:`note_send` around each send (the
    first before :meth:`begin`, unless the job was taken over already accepted), :meth:`begin`
    after the first send, then :meth:`step` at every look (every ``poll_interval`` s, and
    sooner when a monitor posts) with a fresh :class:`Snapshot`; the driver sends, finishes or
    fails as the returned :class:`Step` says, and calls :meth:`note_end` when the job ends.
    Times are ``time.monotonic()`` seconds from the driver's clock.

    Parameters: see :class:`JobRunner`.
    """

    def __init__(
        self,
        job: Job,
        *,
        status_period: float = 1.0,
        max_resends: int = 2,
        responses: ResponseTimes | None = None,
        log: logging.Logger | None = None,
        already_accepted: bool = False,
    ):
        self.job = job
        self.status_period = float(status_period)
        self.max_resends = int(max_resends)
        self.responses = responses if responses is not None else ResponseTimes()
        self.log = log if log is not None else logging.getLogger("ophyd_cs800.device")
        self.accepted = bool(already_accepted)
        self.sends = 0
        self._start = 0.0
        self._last = 0.0
        self._last_send = 0.0
        self._paused_total = 0.0
        self._invalid_since: float | None = None

    def note_send(self, why: str = "") -> None:
        """Count (and log) one send of the command, just before it is written."""
        self.sends += 1
        job = self.job
        if self.sends == 1:
            self.log.info("%s: sending %s (%s)", job.device, job.meaning or job.what, job.what)
        else:
            self.log.info("%s: re-sending %s (attempt %d: %s)", job.device,
                          job.meaning or job.what, self.sends, why)

    def note_end(self, exc: BaseException | None) -> None:
        """Log how the job ended."""
        if exc is None:
            self.log.info("%s: %s finished", self.job.device, self.job.what)
        else:
            self.log.warning("%s", exc)

    def begin(self, now: float) -> None:
        """Start the clocks (timeout, confirmation window) at ``now``, after the first send."""
        self._start = self._last = self._last_send = now

    def step(self, snap: Snapshot, now: float, *, paused: bool) -> Step:
        """Look at ``snap`` at ``now``: wait, re-send, finish, fail or time out."""
        job = self.job
        if paused:
            self._paused_total += now - self._last
        self._last = now
        exc = self._check_stale(snap, now)
        self._invalid_since = (self._invalid_since or now) if snap.temp_invalid else None
        if exc is None and not self.accepted:
            window = confirm_window(job, snap, self.sends, self.responses)
            if job.accepted(snap):
                self.accepted = True
                self.responses.record(now - self._start)
                self.log.info("%s: the controller accepted the %s after %.2f s",
                              job.device, job.what, now - self._start)
            elif now >= self._last_send + window and not paused:
                if self.sends > self.max_resends:
                    exc = CS800NotAcceptedError(
                        f"{job.device}: the controller did not accept the {job.what} after "
                        f"{self.sends} attempts over {now - self._start:.1f} s "
                        f"({snap.describe()}, TARGETTEMP {_fmt_k(snap.target)}); check that "
                        "the controller number and IP address of the IOC are right."
                    )
                else:
                    self._last_send = now
                    return Step("send", why=f"not accepted within {window:.2f} s")
        if exc is None and self.accepted:
            exc = job.failure(snap, paused=paused)
            if exc is None and job.done(snap):
                return DONE
        if exc is None and now - self._start - self._paused_total > job.timeout:
            return TIMEOUT
        return WAIT if exc is None else Step("fail", exc)

    def send_error(self, exc: BaseException) -> CS800Error:
        """Return the failure of a send that raised ``exc`` (a CS800Error is already a sentence)."""
        if isinstance(exc, CS800Error):
            return exc
        return CS800Error(f"{self.job.device}: could not send the {self.job.what}: {exc}")

    def timeout_error(self, snap: Snapshot, hold_error: BaseException | None,
                      *, held: bool) -> CS800TimeoutError:
        """Return the timeout failure; ``held``: HOLD was tried (``hold_error``: how it failed)."""
        job = self.job
        note = ""
        if held:
            note = (" HOLD was sent, so the controller stays where it is." if hold_error is None
                    else f" (sending HOLD failed too: {hold_error})")
        return CS800TimeoutError(
            f"{job.device}: the {job.what} did not finish within {job.timeout:.0f} s "
            f"({snap.describe()}).{note} Pass a longer timeout= for slower moves."
        )

    def _check_stale(self, snap: Snapshot, now: float) -> CS800Error | None:
        invalid_since = self._invalid_since
        if snap.temp_invalid and invalid_since is not None:
            if now - invalid_since >= self.status_period:
                return CS800StaleError(
                    f"{self.job.device}: the controller stopped reporting during the "
                    f"{self.job.what}: TEMP is disconnected or has INVALID severity "
                    f"(last reading {_fmt_k(snap.temp)}); check the controller's network "
                    "link and the IOC."
                )
        return silence_error(snap, self.job.device, f"during the {self.job.what}")


class FollowedJob:
    """What the runners of both device families share.

    The job, its :class:`JobTracker`, and whether it is over (finished, failed, cancelled or handed
    over).
    """

    def __init__(self, job: Job, tracker: JobTracker):
        self.job = job
        self.tracker = tracker
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the job is over."""
        return self._closed

    @property
    def sends(self) -> int:
        """How many times the command was sent."""
        return self.tracker.sends

    @property
    def accepted(self) -> bool:
        """True once the controller was seen acting on the command."""
        return self.tracker.accepted


class JobRunner(FollowedJob):
    """Follows one :class:`Job` on a daemon thread and finishes its ophyd status.

    Parameters
    ----------
    job : Job
        What to follow.
    status : StatusBase
        The ophyd status to finish (``set_finished`` / ``set_exception``).
    snapshot : Callable[[], Snapshot]
        Callable returning the current :class:`Snapshot`.
    status_period : float, optional
        The device's status period floor, s (1.0 on real hardware): sets the
        poll interval; the windows use each snapshot's learned ``status_period``.
    max_resends : int, optional
        Re-sends allowed when the command is not accepted in time (the window
        doubles at each, see :func:`confirm_window`).
    poll_interval : float | None, optional
        Seconds between checks (default ``min(0.25, status_period / 4)``).
    paused : Callable[[], bool], optional
        Callable, True while the programme is paused (time does not count then).
    on_timeout : Callable[[], None] | None, optional
        Called (on the runner thread) before a timeout error is set, e.g. HOLD.
    on_finish : Callable[[JobRunner], None] | None, optional
        Called with the runner after the status is finished, either way.
    clock : Callable[[], float], optional
        Monotonic clock (injectable for tests).
    send_lock : AbstractContextManager[object] | None, optional
        Lock held around every send, shared by all commands of one device, so a
        re-send can never interleave its parameter writes with another command's or land
        after a HOLD sent by ``stop()`` (a closed runner sends nothing once it holds it).
    responses : ResponseTimes | None, optional
        The device's :class:`ResponseTimes` (acceptance times feed it and widen the
        confirmation window); a private one if not given.
    log : logging.Logger | None, optional
        The device's logger: sends, re-sends, acceptance and the end are logged on it.
    already_accepted : bool, optional
        The controller is already acting on this very command (the same
        command issued again takes over a running job): follow it without sending.
    """

    def __init__(
        self,
        job: Job,
        status: StatusBase,
        snapshot: Callable[[], Snapshot],
        *,
        status_period: float = 1.0,
        max_resends: int = 2,
        poll_interval: float | None = None,
        paused: Callable[[], bool] = lambda: False,
        on_timeout: Callable[[], None] | None = None,
        on_finish: Callable[[JobRunner], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        send_lock: AbstractContextManager[object] | None = None,
        responses: ResponseTimes | None = None,
        log: logging.Logger | None = None,
        already_accepted: bool = False,
    ):
        self.send_lock = send_lock if send_lock is not None else threading.RLock()
        self.status = status
        self._snapshot = snapshot
        self.status_period = float(status_period)
        self.max_resends = int(max_resends)
        self.poll_interval = (
            float(poll_interval) if poll_interval is not None else min(0.25, status_period / 4)
        )
        self._paused = paused
        self._on_timeout = on_timeout
        self._on_finish = on_finish
        self._clock = clock
        self._wake = threading.Event()
        self._lock = threading.Lock()
        super().__init__(job, JobTracker(job, status_period=self.status_period,
                                         max_resends=self.max_resends, responses=responses,
                                         log=log, already_accepted=already_accepted))
        self.responses = self.tracker.responses
        self.log = self.tracker.log
        self.thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> JobRunner:
        """Start following the job on a daemon thread; returns ``self``."""
        self.thread = threading.Thread(
            target=self.run, name=f"cs800-{self.job.device}-job", daemon=True
        )
        self.thread.start()
        return self

    def cancel(self, exc: BaseException | None) -> bool:
        """End the job now: fail the status with ``exc`` (or finish it if ``None``).

        Returns False if the job had already finished. Safe from any thread.
        """
        done = self._finish(exc)
        self._wake.set()
        return done

    def hand_over(self, successor: StatusBase) -> bool:
        """Stop following the job and finish this status the way ``successor`` finishes.

        Used when the same command is issued again (e.g. the RunEngine replays a ``set`` after
        a pause): both statuses end together. Returns False if the job had already finished.
        """
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        self._wake.set()

        def follow(done: StatusBase) -> None:
            exc = done.exception()
            if exc is None:
                self.status.set_finished()
            else:
                self.status.set_exception(exc)

        successor.add_callback(follow)
        return True

    def _finish(self, exc: BaseException | None) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        self.tracker.note_end(exc)
        if exc is None:
            self.status.set_finished()
        else:
            self.status.set_exception(exc)
        if self._on_finish is not None:
            self._on_finish(self)
        return True

    # -- the loop ----------------------------------------------------------------------------
    def _send(self, why: str = "") -> bool:
        """Send the job once under the device's send lock; False if closed or it failed."""
        with self.send_lock:
            if self._closed:  # cancelled, superseded or stopped meanwhile: send nothing
                return False
            self.tracker.note_send(why)
            try:
                self.job.send()
            except Exception as exc:
                error = self.tracker.send_error(exc)
            else:
                return True
        self._finish(error)
        return False

    def run(self) -> None:
        """Send the job and follow it until it is done, fails or is cancelled (bounded)."""
        tracker = self.tracker
        if not tracker.accepted and not self._send():
            return
        tracker.begin(self._clock())
        while not self._closed:
            now, paused = self._clock(), self._paused()
            snap = self._snapshot()
            step = tracker.step(snap, now, paused=paused)
            if step.kind == "send":
                if not self._send(step.why):
                    return
            elif step is DONE:
                self._finish(None)
                return
            elif step is TIMEOUT:
                hold_error: BaseException | None = None
                if self._on_timeout is not None:
                    try:
                        self._on_timeout()
                    except Exception as err:  # report, but the timeout is the error
                        hold_error = err
                self._finish(tracker.timeout_error(snap, hold_error,
                                                   held=self._on_timeout is not None))
                return
            elif step.error is not None:
                self._finish(step.error)
                return
            self._wake.wait(self.poll_interval)


def supersede(old: Any, job: Job, successor: Any) -> bool:
    """Tell whether a new ``job`` of a device replaces the runner ``old``.

    ``old`` is a :class:`JobRunner` or the ophyd-async runner. Returns True when the new one starts
    already accepted.

    The same command again (e.g. replayed by the RunEngine after a pause) takes over: ``old``
    finishes the way ``successor`` does, and is not sent again if the controller already acts
    on it (a re-sent PLAT would restart the plateau). A different command ends ``old``
    successfully: it was replaced, as an ophyd motor's status is when a new move is sent, so a
    plan may start a ramp or plateau without waiting and later send another command without
    the RunEngine raising FailedStatus.
    """
    if old is None or old.closed:
        return False
    if old.job.what == job.what:
        taken_over = bool(old.accepted)
        old.hand_over(successor)
        return taken_over
    old.tracker.log.info("%s: the %s was superseded by the %s", job.device, old.job.what,
                         job.what)
    old.cancel(None)
    return False


__all__ = [
    "AUTO",
    "LAG_FACTOR",
    "SAME_TEMP_K",
    "STALE_MARGIN_S",
    "STALE_PERIODS",
    "SHUT_DOWN_MODES",
    "FollowedJob",
    "Job",
    "JobRunner",
    "JobTracker",
    "MoveJob",
    "PhaseJob",
    "RestartJob",
    "ShutdownJob",
    "ResponseTimes",
    "Snapshot",
    "Step",
    "close",
    "confirm_window",
    "silence_error",
    "stale_limit",
    "phase_name",
    "run_mode_name",
    "supersede",
]
