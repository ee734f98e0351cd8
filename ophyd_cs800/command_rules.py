"""What each CS800 command checks, writes and waits for, for both device families.

The ophyd device (:mod:`ophyd_cs800.device`) and the ophyd-async device
(:mod:`ophyd_cs800.aio`) differ only in how they read and write PVs. Every decision lives
here and in :mod:`ophyd_cs800.move_status`: the checks made before anything is written (with
their sentences), the PV writes of each command (named by the component attribute both
families share: ``rrate``, ``rtemp``, ``cmd_ramp``, ...), the job that follows it, its
timeout, and what ``stop()`` does.

A family passes a ``writer``: ``writer(writes, checked)`` returns the job's ``send`` callable
(a plain function for ophyd, a coroutine function for ophyd-async) that writes
``(attribute, value)`` pairs in order, reading back the ``checked`` temperature parameter to
catch an IOC that clamped it. Temperatures are kelvin, rates K/h, times seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ophyd_cs800 import protocol as P
from ophyd_cs800.errors import (
    CS800CommsDisabledError,
    CS800Error,
    CS800InterruptedError,
    CS800RangeError,
    CS800ShutDownError,
    CS800StaleError,
)
from ophyd_cs800.limits import Range, check_in_ranges
from ophyd_cs800.logs import command_meaning
from ophyd_cs800.move_status import (
    SAME_TEMP_K,
    SHUT_DOWN_MODES,
    MoveJob,
    PhaseJob,
    RestartJob,
    ShutdownJob,
    Snapshot,
    run_mode_name,
    silence_error,
)
from ophyd_cs800.protocol import MOVING_PHASES, Phase, RunMode

#: Temperature End ramps to before it shuts down, kelvin.
END_TEMP_K = 300.0
#: Highest DEVICEMAXTEMP believed (the 500 K "Plus" model); above it the default range is used.
MAX_PLAUSIBLE_TEMP_K = 500.0
#: The fastest rate (Cool), K/h, used to size Cool timeouts.
FASTEST_RATE_K_PER_H = 360
#: Run modes in which the controller takes a ramp, cool, plateau or hold.
READY_OR_RUN = (RunMode.STARTUP_OK, RunMode.RUN)
#: Default purge and restart timeouts, seconds.
PURGE_TIMEOUT_S = 4 * 3600.0
RESTART_TIMEOUT_S = 120.0

Writes = tuple[tuple[str, Any], ...]
Writer = Callable[[Writes, "str | None"], Callable[[], Any]]
#: ``ioc_limits(attr)``: the IOC's own limits (CA control limits DRVL/DRVH) of the parameter
#: PV of that attribute (``"rtemp"``, ``"rrate"``, ...), or ``None`` if it has none.
IocLimits = Callable[[str], "Range | None"]


def no_ioc_limits(attr: str) -> Range | None:
    """Return an :data:`IocLimits` for an IOC whose parameters have no limits of their own."""
    return None


def limits_from(low: float | None, high: float | None) -> tuple[float, float]:
    """(low, high) target limits in K from DEVICEMINTEMP/DEVICEMAXTEMP, 80..400 if unknown.

    synApps decodes the "not available" word 0xFFFE as 655.34 K (and a disabled IOC leaves
    0): only a range a CryoStream can have (at most 500 K, "Plus") is believed.
    """
    if low is None or high is None or not 0 < low < high <= MAX_PLAUSIBLE_TEMP_K:
        return (P.DEFAULT_MIN_TEMP_K, P.DEFAULT_MAX_TEMP_K)
    return (low, high)


def check_commandable(name: str, what: str, *, disabled: int | None, snap: Snapshot,
                      modes: tuple[RunMode, ...] | None, disable_pv: str,
                      temp_pv: str) -> None:
    """Raise unless comms are enabled, the controller reports and the run mode fits.

    Comms enabled: ``disabled`` 0; reporting: not silent, TEMP valid.

    ``modes=None`` accepts any run mode. ``disabled`` is DISABLE's raw value (``None`` if
    unreadable, which counts as disabled).
    """
    if disabled != 0:
        raise CS800CommsDisabledError(
            f"{name}: communication with the controller is disabled "
            f"({disable_pv} is not 0), so the {what} was not sent: "
            f"enable it with {name}.disable.put(0) (the 'comms ON' button of the "
            "admin screen)."
        )
    stale = silence_error(snap, name, f"so the {what} was not sent")
    if stale is not None:
        raise stale
    if snap.temp_invalid:
        raise CS800StaleError(
            f"{name}: the controller is not reporting (TEMP {temp_pv} is disconnected or has "
            f"INVALID severity), so the {what} was not sent: check the controller's network "
            "link and the IOC."
        )
    if modes is not None and snap.run_mode not in modes:
        mode = run_mode_name(snap.run_mode)
        if snap.run_mode in SHUT_DOWN_MODES:
            raise CS800ShutDownError(
                f"{name}: controller is shut down (run mode {mode}, alarm "
                f"{snap.alarm!r}), so the {what} was not sent: restart it first "
                f"(RE(restart({name})) or {name}.restart())."
            )
        raise CS800ShutDownError(
            f"{name}: the controller cannot take the {what} in run mode {mode} "
            "(it needs Ready or Run); wait for start-up to finish, or leave Setup mode."
        )


def target_kelvin(name: str, value: Any, limits: tuple[float, float],
                  ioc: Range | None = None) -> float:
    """``value`` as a target in K at the wire resolution.

    Checked against the controller's ``limits`` and the IOC's own ``ioc`` range (RTEMP or CTEMP);
    CS800RangeError otherwise.
    """
    try:
        target = float(value)
    except (TypeError, ValueError):
        raise CS800RangeError(
            f"{name}: target {value!r} is not a temperature in kelvin; nothing was sent."
        ) from None
    if not math.isfinite(target):
        raise CS800RangeError(
            f"{name}: target {target} K is not a finite temperature; nothing was sent.")
    # Compared at the controller's resolution (0.01 K): a target equal to DEVICEMAXTEMP up
    # to float noise (400.0000001) is 400.00 K and allowed.
    target = P.ck_to_kelvin(P.kelvin_to_ck(target))
    check_in_ranges(name, "target", target, "K",
                    Range(limits[0], limits[1], "the controller's limit"), ioc,
                    resolution=0.01)
    return target


def check_param(name: str, what: str, value: float, unit: str, allowed: tuple[float, float],
                ioc: Range | None) -> None:
    """Check a rate or duration against the controller's range and the IOC's limits."""
    check_in_ranges(name, what, value, unit,
                    Range(allowed[0], allowed[1], "the controller's limit"), ioc, decimals=0)


def validated(name: str, build: Callable[[], P.Command]) -> P.Command:
    """Run a protocol command builder, turning its ValueError into a CS800RangeError."""
    try:
        return build()
    except ValueError as exc:
        raise CS800RangeError(f"{name}: {exc}; nothing was sent.") from None


def ramp_rate(name: str, rate: Any) -> float:
    """Return ``rate`` (K/h) as a float, or raise CS800RangeError (0 points at cool)."""
    try:
        rate_k_h = float(rate)
    except (TypeError, ValueError):
        raise CS800RangeError(f"{name}: ramp rate {rate!r} is not a number of K/h.") from None
    if rate_k_h == 0:
        raise CS800RangeError(
            f"{name}: ramp rate 0 K/h is not allowed (the IOC's RRATE starts at "
            "1 K/h); to go as fast as possible use cool (cool(cs, T) or "
            "set(T, cool=True)); nothing was sent.")
    if not 1 <= rate_k_h <= 360:
        raise CS800RangeError(
            f"{name}: ramp rate {rate_k_h:g} K/h is out of range: allowed 1 to "
            "360 K/h; nothing was sent.")
    return rate_k_h


def move_job(name: str, snap: Snapshot, new_position: Any, writer: Writer, *,
             limits: tuple[float, float], ioc_limits: IocLimits, rate: Any, default_rate: Any,
             cool: bool, tolerance: float, settle_time: float, timeout: float | None,
             timeout_margin: float) -> MoveJob:
    """Return the Ramp (or Cool) job to ``new_position`` K, checked (raises before any write).

    ``snap`` is the snapshot :func:`check_commandable` passed; ``timeout`` ``None`` computes
    ``1.1 * |dT| / rate + timeout_margin + settle_time``.
    """
    low, high = limits
    target = target_kelvin(name, new_position, limits, ioc_limits("ctemp" if cool else "rtemp"))
    if cool:
        if rate is not None:
            raise CS800RangeError(f"{name}: Cool runs as fast as possible; do not give a rate.")
        cmd = validated(name, lambda: P.cool(target, min_temp=low, max_temp=high))
        rate_k_h = FASTEST_RATE_K_PER_H
        what = f"cool to {target:.2f} K"
        send = writer((("ctemp", target), ("cmd_cool", 1)), "ctemp")
    else:
        rate_f = ramp_rate(name, default_rate if rate is None else rate)
        cmd = validated(name, lambda: P.ramp(rate_f, target, min_temp=low, max_temp=high))
        check_param(name, "ramp rate", rate_f, "K/h", (1, 360), ioc_limits("rrate"))
        rate_k_h = int(rate_f)
        what = f"ramp to {target:.2f} K at {rate_k_h} K/h"
        send = writer((("rrate", rate_k_h), ("rtemp", target), ("cmd_ramp", 1)), "rtemp")
    start = snap.temp if snap.temp is not None else target
    if timeout is None:
        timeout = 1.1 * abs(target - start) / rate_k_h * 3600 + timeout_margin + settle_time
    job = MoveJob(name, what, send, timeout, target=target, tolerance=tolerance,
                  settle_time=settle_time, interrupt_after=3 * snap.status_period)
    job.meaning = command_meaning(cmd)
    return job


def plateau_job(name: str, minutes: Any, writer: Writer, *, ioc_limits: IocLimits,
                timeout: float | None, timeout_margin: float) -> PhaseJob:
    """Plateau of ``minutes`` (1-1440): done when the Plat phase ends."""
    cmd = validated(name, lambda: P.plat(minutes))
    check_param(name, "plateau duration", cmd.param1, "min", (1, 1440), ioc_limits("ptime"))
    send = writer((("ptime", cmd.param1), ("cmd_plat", 1)), None)
    if timeout is None:
        timeout = cmd.param1 * 60 + timeout_margin
    job = PhaseJob(name, f"plateau of {cmd.param1} min", send, timeout,
                   phases=frozenset({Phase.PLAT}))
    job.meaning = command_meaning(cmd)
    return job


def hold_job(name: str, writer: Writer, *, timeout: float | None,
             timeout_margin: float) -> PhaseJob:
    """Hold: done when PHASE reads Hold in Run mode."""
    job = PhaseJob(name, "hold", writer((("cmd_hold", 1),), None), timeout or timeout_margin,
                   phases=frozenset({Phase.HOLD}), done_in_phase=True)
    job.meaning = command_meaning(P.hold())
    return job


def end_rate(name: str, rate: Any) -> int:
    """Return the End rate (whole K/h, 1-360) or raise CS800RangeError.

    Checked before anything else.
    """
    return validated(name, lambda: P.end(rate)).param1


def end_job(name: str, snap: Snapshot, rate_k_h: int, writer: Writer, *,
            ioc_limits: IocLimits, timeout: float | None,
            timeout_margin: float) -> ShutdownJob | None:
    """End at ``rate_k_h`` (from :func:`end_rate`); ``None`` when shut down already."""
    if snap.run_mode == RunMode.SHUTDOWN_OK:
        return None
    check_param(name, "end rate", rate_k_h, "K/h", (1, 360), ioc_limits("erate"))
    start = snap.temp if snap.temp is not None else END_TEMP_K
    send = writer((("erate", rate_k_h), ("cmd_end", 1)), None)
    if timeout is None:
        timeout = 1.1 * abs(END_TEMP_K - start) / rate_k_h * 3600 + timeout_margin
    job = ShutdownJob(name, f"end at {rate_k_h} K/h", send, timeout,
                      phases=frozenset({Phase.END}))
    job.meaning = command_meaning(P.end(rate_k_h))
    return job


def purge_job(name: str, snap: Snapshot, writer: Writer, *,
              timeout: float) -> ShutdownJob | None:
    """Purge: done at Shutdown OK; ``None`` when shut down already."""
    if snap.run_mode == RunMode.SHUTDOWN_OK:
        return None
    job = ShutdownJob(name, "purge", writer((("cmd_purge", 1),), None), timeout,
                      phases=frozenset({Phase.PURGE, Phase.SOAK}))
    job.meaning = command_meaning(P.purge())
    return job


def restart_job(name: str, snap: Snapshot, writer: Writer, *,
                timeout: float) -> RestartJob | None:
    """Restart: ``None`` when Ready or Run already; refused in Setup; waits in Startup."""
    if snap.run_mode in READY_OR_RUN:
        return None
    if snap.run_mode == RunMode.SETUP:
        raise CS800ShutDownError(
            f"{name}: the controller is in Setup mode; leave it on the controller's "
            "front panel before restarting.")
    writes: Writes = (("cmd_restart", 1),) if snap.run_mode in SHUT_DOWN_MODES else ()
    job = RestartJob(name, "restart", writer(writes, None), timeout)  # Startup: just wait
    if writes:
        job.meaning = command_meaning(P.restart())
    return job


def turbo_value(name: str, on: Any) -> int:
    """TURBO's value (1 on, 0 off) for ``on`` (bool, or "On"/"Off")."""
    value = 1 if (on in ("On", "on") or (not isinstance(on, str) and bool(on))) else 0
    validated(name, lambda: P.turbo(bool(value)))
    return value


def stop_sends_hold(following: bool, snap: Snapshot) -> bool:
    """``stop()`` sends HOLD when the device follows a command or the controller ramps."""
    return following or (snap.run_mode == RunMode.RUN and snap.phase in MOVING_PHASES)


def stopped_error(name: str, what: str, snap: Snapshot,
                  hold_error: BaseException | None) -> CS800InterruptedError:
    """Return the failure of a job ended by ``stop()`` (``hold_error``: HOLD could not be sent)."""
    held = ("HOLD was sent, so the controller holds its current temperature."
            if hold_error is None else f"sending HOLD failed: {hold_error}")
    temp = snap.temp if snap.temp is not None else float("nan")
    return CS800InterruptedError(f"{name}: the {what} was stopped at {temp:.2f} K; {held}")


def describe_state(name: str, snap: Snapshot) -> str:
    """One line for people.

    ``cs0: TEMP 150.00 K, phase Hold, run mode Run, target 150.00 K``; a silent controller reads
    ``cs0: no status for 4.0 s (last TEMP 150.00 K)``.
    """
    if snap.silent:  # the phase and run mode are frozen: not shown
        return f"{name}: {snap.describe()}"
    target = "unknown" if snap.target is None else f"{snap.target:.2f} K"
    return f"{name}: {snap.describe()}, target {target}"


def clamp_error(name: str, pvname: str, written: float, echo: float) -> CS800RangeError | None:
    """Return the error when the IOC clamped a written temperature parameter, else ``None``."""
    if abs(echo - written) <= SAME_TEMP_K:
        return None
    return CS800RangeError(
        f"{name}: the IOC limited {pvname} to {echo:.2f} K when {written:.2f} K was written "
        "(its drive limits DRVL/DRVH do not allow it); widen the record's limits in the IOC."
    )


def send_failure(name: str, what: str, exc: BaseException) -> CS800Error:
    """Return the failure of a one-shot command write (pause, resume, turbo)."""
    return CS800Error(f"{name}: could not send {what}: {exc}")


__all__ = [
    "END_TEMP_K",
    "FASTEST_RATE_K_PER_H",
    "MAX_PLAUSIBLE_TEMP_K",
    "PURGE_TIMEOUT_S",
    "READY_OR_RUN",
    "RESTART_TIMEOUT_S",
    "IocLimits",
    "check_commandable",
    "check_param",
    "clamp_error",
    "describe_state",
    "end_job",
    "end_rate",
    "hold_job",
    "limits_from",
    "no_ioc_limits",
    "move_job",
    "plateau_job",
    "purge_job",
    "ramp_rate",
    "restart_job",
    "send_failure",
    "stop_sends_hold",
    "stopped_error",
    "target_kelvin",
    "turbo_value",
    "validated",
]
