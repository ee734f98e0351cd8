"""A simulated Oxford Cryosystems CryoStream 800 controller: a behaviour model, not a noise source.

:class:`SimulatedCS800` follows a synthesis of public sources (Oxford's command and parameter
tables, captured datagrams, the EPICS support):

* run modes: StartUp -> Ready (after :attr:`SimulatedCS800.startup_seconds`); a Ramp, Cool, Plat,
  Hold, End or Purge in Ready or Run puts it in Run; Stop -> ShutdownOK with alarm 2; End ramps to
  300 K at its rate, then ShutdownOK with alarm 3; Purge warms to 300 K at 360 K/h, then
  ShutdownOK with alarm 4; a level-4 alarm -> ShutdownFail; Restart from StartUpFail,
  ShutdownOK or ShutdownFail -> StartUp -> Ready.
* temperatures: the set point (1050) moves toward the target (1056) at the ramp rate (1055); the
  gas temperature (1051) follows with a first-order lag (20 s, 12 s in turbo) and about
  +/-0.05 K of band-limited noise from a seeded generator; ERROR (1052) = set point - gas
  temperature, signed, in centi-kelvin. Without gas flow the gas warms toward room temperature
  (``ambient_k``). Cool, and Ramp at rate 0, run at 360 K/h (reported as the ramp rate), in
  either direction.
* Pause (Suspend) freezes the programme: the phase reads Hold, the ramp rate 0, the target and
  the remaining time keep their values and Suspended (1071) reads 1; Resume continues it.
* every command that is malformed, out of range or not valid in the current state is ignored
  silently and counted in Missed (1073); valid ones count in Received (1072).

Time comes from an injected :class:`sim_ioc.clock.Clock`; :meth:`SimulatedCS800.advance` brings
the model up to ``clock.now()`` in sub-steps of at most :data:`MAX_STEP_S`, each integrated in
closed form, with every event (end of ramp, end of plateau, end of start-up ...) landing at its
exact time. Thread-safe: every public method that changes or reads the model takes the
instance lock.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable

from ophyd_cs800 import protocol as P
from ophyd_cs800.protocol import CommandId, Phase, RunMode
from sim_ioc.clock import Clock
from sim_ioc.physics import Ar1Noise, lag_linear, relax, time_to_within

#: Longest integration sub-step in simulated seconds.
MAX_STEP_S = 1.0
#: Default duration of the StartUp self-checks, simulated seconds.
STARTUP_SECONDS = 3.0
#: The fastest rate (Cool, Purge, Ramp at rate 0), K/h.
FASTEST_RATE_K_PER_H = 360
#: Temperature End ramps to and Purge warms to, kelvin.
END_TEMP_K = 300.0
#: Purge completes when the gas is this close to :data:`END_TEMP_K`, kelvin.
PURGE_TOLERANCE_K = 0.5
#: Gas temperature time constants, seconds: normal flow, turbo flow, no flow, flow interrupted.
GAS_TAU_S = 20.0
GAS_TAU_TURBO_S = 12.0
GAS_TAU_IDLE_S = 120.0
GAS_TAU_INTERRUPT_S = 6.0
#: Evaporator: temperature when cold (kelvin) and time constants (seconds).
EVAP_COLD_K = 79.2
EVAP_TAU_RUN_S = 240.0
EVAP_TAU_IDLE_S = 900.0
#: Mean suction temperature when running, kelvin (observed 287-298 K).
SUCT_MEAN_K = 292.5
#: Gas flow (id 1100, cl/min): normal and turbo; turbo is limited to normal above 310 K.
FLOW_NORMAL_CL_MIN = 500
FLOW_TURBO_CL_MIN = 1000
TURBO_LIMIT_K = 310.0
#: Back pressure (id 1101, mbar) and valve opening (id 1103, %) at normal and turbo flow.
BACK_PRESSURE_MBAR = (36, 71)
VALVE_OPENING_PCT = (54, 92)
LAYOUTS = ("928", "long")
#: Ids a Set-parameter command (252) may write: Ethernet settings, default cool temp, units,
#: front-panel preferences. Anything else is ignored as on a real unit.
WRITABLE_IDS = frozenset({*range(1300, 1311), 1032, 1033, *range(1602, 1607)})

_NA = P.NOT_AVAILABLE
_MOVING = (Phase.RAMP, Phase.COOL, Phase.END, Phase.PURGE)
_ACTIVE_MODES = (RunMode.STARTUP_OK, RunMode.RUN)  # accept programme commands
_STOPPABLE_MODES = (RunMode.STARTUP_FAIL, RunMode.STARTUP_OK, RunMode.RUN, RunMode.SETUP)
_RESTARTABLE_MODES = (RunMode.STARTUP_FAIL, RunMode.SHUTDOWN_OK, RunMode.SHUTDOWN_FAIL)
_EPS = 1e-9


def _ck(t_k: float) -> int:
    """Kelvin -> raw centi-kelvin word, kept clear of the 0xFFFE sentinel."""
    return min(max(P.kelvin_to_ck(t_k), 0), _NA - 1)


def _pct(value: float) -> int:
    """Return a heater/valve percentage as a whole number 0..100."""
    return int(min(100, max(0, round(value))))


class SimulatedCS800:
    """One simulated CS800 controller.

    Parameters
    ----------
    cid : int
        Controller number (status id 1028), 1..65533.
    clock : Clock
        The time source (simulated seconds); share one between controllers.
    firmware : int, optional
        Control firmware version reported in id 1004 (115 at APS, 153 at LBL).
    layout : str, optional
        ``"928"`` (the 230 standard ids) or ``"long"`` (the 1236-byte firmware-153
        datagram: :data:`ophyd_cs800.protocol.LONG_IDS` and 196 trailing bytes).
    seed : int | None, optional
        Seed of the noise and datagram-drop generators (``None``: not reproducible).
    start_temp_k : float, optional
        Gas and evaporator temperature at power-up, kelvin.
        min_temp_k, max_temp_k: device limits (ids 1002/1003); Ramp and Cool targets outside
        them are ignored.
    startup_seconds : float, optional
        Simulated duration of StartUp before Ready (added keyword).
    ambient_k : float, optional
        Room temperature, kelvin: without gas flow (StartUp, Ready, shut down, flow
        interrupted) the gas and the evaporator relax toward it (added keyword).
    mac : str | None, optional
        MAC address (dashes or colons), sent in status ids 1311..1313 and in the
        identification datagram; default :func:`ophyd_cs800.protocol.mac_for_controller`
        (``00-00-0C-01-HH-LL``, the controller number in the last two bytes).
    name : str | None, optional
        NetBIOS name for the identification datagram (at most 15 printable ASCII
        characters), or ``None`` for none (all 0xFF, as on the real APS unit).

    Notes
    -----
    Bad arguments raise ``ValueError`` with the allowed range. The controller starts in StartUp.

    Fault injection (all may be changed at run time, e.g. from IOC PVs):
        :attr:`broadcasting` (False: the UDP server sends no status), :attr:`drop_fraction`
        (fraction of datagrams the UDP server loses, both directions, seeded),
        :attr:`layout`, :meth:`inject_alarm`, :meth:`clear_alarm`, :meth:`set_sensor_fail`.
    """

    def __init__(
        self,
        cid: int,
        clock: Clock,
        *,
        firmware: int = 115,
        layout: str = "928",
        seed: int | None = None,
        start_temp_k: float = 293.0,
        min_temp_k: float = 80.0,
        max_temp_k: float = 400.0,
        startup_seconds: float = STARTUP_SECONDS,
        ambient_k: float = 293.0,
        mac: str | None = None,
        name: str | None = None,
    ) -> None:
        """Create the controller in StartUp at ``clock.now()``; see the class docstring."""
        if not isinstance(cid, int) or not 1 <= cid <= _NA - 1:
            raise ValueError(f"controller number must be an integer 1..{_NA - 1}, got {cid!r}")
        if not isinstance(firmware, int) or not 0 <= firmware <= _NA - 1:
            raise ValueError(f"firmware must be an integer 0..{_NA - 1}, got {firmware!r}")
        if not 0.0 < min_temp_k < max_temp_k <= 600.0:
            raise ValueError(
                f"need 0 < min_temp_k < max_temp_k <= 600 K, got {min_temp_k!r}, {max_temp_k!r}"
            )
        for what, value in (("start_temp_k", start_temp_k), ("ambient_k", ambient_k)):
            if not 1.0 <= value <= 600.0:
                raise ValueError(f"{what} must be 1..600 K, got {value!r}")
        if not 0.0 <= startup_seconds <= 3600.0:
            raise ValueError(f"startup_seconds must be 0..3600 s, got {startup_seconds!r}")
        self._mac = P.mac_for_controller(cid) if mac is None else P.normalise_mac(mac)
        self._identification = P.encode_identification(self._mac, name)  # checks the name
        self._name = name or None
        self._lock = threading.RLock()
        self._cid = cid
        self._clock = clock
        self._firmware = firmware
        self._layout = "928"
        self.layout = layout
        self.min_temp_k = float(min_temp_k)
        self.max_temp_k = float(max_temp_k)
        self.ambient_k = float(ambient_k)
        self.startup_seconds = float(startup_seconds)
        self._rng = random.Random(seed)
        self._drop_rng = random.Random(None if seed is None else seed + 0x5EED)
        self._gas_noise = Ar1Noise(self._rng, 0.02, 4.0, 0.05)
        self._evap_noise = Ar1Noise(self._rng, 0.06, 20.0, 0.12)
        self._suct_noise = Ar1Noise(self._rng, 2.5, 90.0, 5.5)
        self._press_noise = Ar1Noise(self._rng, 1.2, 10.0, 3.0)
        self._heat_noise = Ar1Noise(self._rng, 0.5, 15.0, 1.5)
        self._trailer = b"\x00\x00" + random.Random(cid).randbytes(P.LONG_TRAILER_LEN - 2)
        #: False: the UDP server sends no status datagrams for this controller.
        self.broadcasting = True
        self._drop_fraction = 0.0
        #: Why the last ignored command was ignored (a sentence), or None.
        self.last_rejection: str | None = None
        self._received = 0
        self._missed = 0
        self._sensor_fail = False
        self._alarm = 0
        self._written: dict[int, int] = {}
        self._shutdown_info: dict[int, int] = {}
        # dynamic state
        self._t_last = clock.now()
        self._noise_t = self._t_last
        self._mode = RunMode.STARTUP
        self._startup_left = self.startup_seconds
        self._phase = Phase.HOLD
        self._suspended = False
        self._turbo = False
        self._sp = self._t = self._target = float(start_temp_k)
        self._evap = float(start_temp_k)
        self._rate = 0  # reported K/h
        self._speed = 0.0  # set point speed, K/s
        self._plat_left = 0.0
        self._elapsed = 0.0
        self._run_time = 0.0
        self._interrupt_time = 0.0
        self._interrupt_left = 0.0
        self._static = self._static_values()
        self._handlers: dict[CommandId, Callable[[P.Command], str | None]] = {
            CommandId.RESTART: self._cmd_restart,
            CommandId.RAMP: self._cmd_ramp,
            CommandId.PLAT: self._cmd_plat,
            CommandId.HOLD: self._cmd_hold,
            CommandId.COOL: self._cmd_cool,
            CommandId.END: self._cmd_end,
            CommandId.PURGE: self._cmd_purge,
            CommandId.PAUSE: self._cmd_pause,
            CommandId.RESUME: self._cmd_resume,
            CommandId.STOP: self._cmd_stop,
            CommandId.TURBO: self._cmd_turbo,
            CommandId.SET_FLOW_INTERRUPT_TIME: self._cmd_set_interrupt,
            CommandId.INTERRUPT_FLOW: self._cmd_interrupt,
            CommandId.SET_PARAMETER: self._cmd_set_parameter,
        }
        self._advance_locked()

    # ---------------------------------------------------------------- read-only state
    @property
    def cid(self) -> int:
        """Controller number (status id 1028)."""
        return self._cid

    @property
    def mac(self) -> str:
        """MAC address, upper-case hex pairs with dashes (status ids 1311..1313)."""
        return self._mac

    @property
    def name(self) -> str | None:
        """NetBIOS name sent in the identification datagram, or ``None``."""
        return self._name

    def identification_datagram(self) -> bytes:
        """Return the 34-byte identification datagram (UDP port 30303 on a real unit).

        Name and MAC.
        """
        return self._identification

    @property
    def clock(self) -> Clock:
        """The injected clock."""
        return self._clock

    @property
    def firmware(self) -> int:
        """Firmware version reported in id 1004."""
        return self._firmware

    @property
    def run_mode(self) -> RunMode:
        """Current run mode (after the last :meth:`advance`)."""
        return self._mode

    @property
    def phase(self) -> Phase:
        """Phase as reported in id 1054 (Hold outside Run and while suspended)."""
        if self._mode is not RunMode.RUN or self._suspended:
            return Phase.HOLD
        return self._phase

    @property
    def suspended(self) -> bool:
        """True while paused (id 1071)."""
        return self._suspended

    @property
    def turbo(self) -> bool:
        """True when turbo flow is requested (id 1068 = 1)."""
        return self._turbo

    @property
    def alarm_code(self) -> int:
        """Current alarm code (id 1065)."""
        return self._alarm

    @property
    def setpoint_k(self) -> float:
        """Current (ramping) set point in kelvin, unrounded."""
        return self._sp

    @property
    def temp_k(self) -> float:
        """True gas temperature in kelvin, without measurement noise."""
        return self._t

    @property
    def target_k(self) -> float | None:
        """Target of the current phase in kelvin; None outside Run (0xFFFE on the wire)."""
        return self._target if self._mode is RunMode.RUN else None

    @property
    def received(self) -> int:
        """Commands accepted since power-up (id 1072 shows it modulo 65536)."""
        return self._received

    @property
    def missed(self) -> int:
        """Datagrams ignored since power-up (id 1073 shows it modulo 65536)."""
        return self._missed

    @property
    def sensor_fail(self) -> bool:
        """True while the temperature sensors read 0xFFFE (see :meth:`set_sensor_fail`)."""
        return self._sensor_fail

    # ---------------------------------------------------------------- fault injection
    @property
    def layout(self) -> str:
        """Status datagram layout: ``"928"`` or ``"long"``; ``ValueError`` for anything else."""
        return self._layout

    @layout.setter
    def layout(self, value: str) -> None:
        if value not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {value!r}")
        self._layout = value

    @property
    def drop_fraction(self) -> float:
        """Fraction 0..1 of datagrams the UDP server loses (``ValueError`` outside 0..1)."""
        return self._drop_fraction

    @drop_fraction.setter
    def drop_fraction(self, value: float) -> None:
        fraction = float(value)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"drop_fraction must be between 0 and 1, got {value!r}")
        self._drop_fraction = fraction

    def should_drop(self) -> bool:
        """Draw once from the seeded drop generator: True with probability ``drop_fraction``."""
        with self._lock:
            return self._drop_fraction > 0.0 and self._drop_rng.random() < self._drop_fraction

    def inject_alarm(self, code: int, shutdown: bool = False) -> None:
        """Raise alarm ``code`` (0..65533) now.

        A level-4 alarm (see :func:`ophyd_cs800.protocol.alarm_for`), or any alarm with
        ``shutdown=True``, shuts the controller down to ShutdownFail (gas off, error snapshot in
        ids 1082-1092). Other alarms only show in id 1065 until :meth:`clear_alarm` or Restart.
        Code 0 clears. ``ValueError`` for a code outside 0..65533.
        """
        if not isinstance(code, int) or not 0 <= code <= _NA - 1:
            raise ValueError(f"alarm code must be an integer 0..{_NA - 1}, got {code!r}")
        with self._lock:
            self._advance_locked()
            if code and (shutdown or P.alarm_for(code).level >= 4):
                if self._mode not in (RunMode.SHUTDOWN_OK, RunMode.SHUTDOWN_FAIL):
                    self._shutdown(RunMode.SHUTDOWN_FAIL, code)
                else:
                    self._alarm = code
            else:
                self._alarm = code

    def clear_alarm(self) -> None:
        """Clear the alarm code (id 1065 reads 0); the run mode is unchanged."""
        with self._lock:
            self._alarm = 0

    def set_sensor_fail(self, on: bool) -> None:
        """Make the gas, evaporator and suction sensors (and ERROR) read 0xFFFE, or heal them.

        The model keeps running underneath. A Restart while the sensors fail ends in StartUpFail
        with alarm 14 (Sensor fail).
        """
        with self._lock:
            self._sensor_fail = bool(on)

    # ---------------------------------------------------------------- commands
    def handle_command(self, datagram: bytes) -> bool:
        """Apply one command datagram (7 bytes); return True if it was accepted.

        Ignored, as on the real controller, and counted in Missed (1073): a wrong length, a bad
        checksum, an unknown id, a parameter out of range, or a command that does not fit the
        current state. :attr:`last_rejection` then says why. Never raises.
        """
        with self._lock:
            self._advance_locked()
            try:
                cmd = P.decode_command(datagram)
                P.validate_command(cmd, min_temp=self.min_temp_k, max_temp=self.max_temp_k)
            except (ValueError, TypeError) as exc:
                return self._reject(str(exc))
            handler = self._handlers.get(cmd.command)
            reason = (
                handler(cmd)
                if handler
                else f"{cmd.command.name} needs hardware this controller does not have"
            )
            if reason is not None:
                return self._reject(reason)
            self._received += 1
            self.last_rejection = None
            return True

    def _reject(self, reason: str) -> bool:
        self._missed += 1
        self.last_rejection = reason
        return False

    def _require(self, name: str, modes: tuple[RunMode, ...]) -> str | None:
        if self._mode in modes:
            return None
        allowed = ", ".join(m.name for m in modes)
        return f"{name} is not valid in run mode {self._mode.name} (only in {allowed})"

    def _start_programme(
        self,
        phase: Phase,
        target_k: float | None,
        rate_k_per_h: int = 0,
        *,
        plat_seconds: float = 0.0,
    ) -> None:
        """Start (or override) the programme; ``target_k`` None means "the current set point".

        From Ready the set point starts at the gas temperature. Ramping phases move the set
        point at ``rate_k_per_h``.
        """
        if self._mode is not RunMode.RUN:
            self._mode = RunMode.RUN
            self._sp = self._t
        self._phase = phase
        self._suspended = False
        self._target = self._sp if target_k is None else target_k
        self._rate = rate_k_per_h
        self._speed = rate_k_per_h / 3600.0
        self._plat_left = plat_seconds
        self._elapsed = 0.0
        self._handle_events()

    def _cmd_restart(self, cmd: P.Command) -> str | None:
        reason = self._require("Restart", _RESTARTABLE_MODES)
        if reason is None:
            self._mode = RunMode.STARTUP
            self._startup_left = self.startup_seconds
            self._alarm = 0
            self._turbo = False
            self._suspended = False
            self._phase = Phase.HOLD
            self._interrupt_left = 0.0
            self._handle_events()
        return reason

    def _cmd_ramp(self, cmd: P.Command) -> str | None:
        reason = self._require("Ramp", _ACTIVE_MODES)
        if reason is None:
            rate = cmd.param1 or FASTEST_RATE_K_PER_H
            self._start_programme(Phase.RAMP, P.ck_to_kelvin(cmd.param2), rate)
        return reason

    def _cmd_cool(self, cmd: P.Command) -> str | None:
        reason = self._require("Cool", _ACTIVE_MODES)
        if reason is None:
            self._start_programme(Phase.COOL, P.ck_to_kelvin(cmd.param1), FASTEST_RATE_K_PER_H)
        return reason

    def _cmd_plat(self, cmd: P.Command) -> str | None:
        reason = self._require("Plat", _ACTIVE_MODES)
        if reason is None:
            self._start_programme(Phase.PLAT, None, plat_seconds=cmd.param1 * 60.0)
        return reason

    def _cmd_hold(self, cmd: P.Command) -> str | None:
        reason = self._require("Hold", _ACTIVE_MODES)
        if reason is None:
            self._start_programme(Phase.HOLD, None)
        return reason

    def _cmd_end(self, cmd: P.Command) -> str | None:
        reason = self._require("End", _ACTIVE_MODES)
        if reason is None:
            self._start_programme(Phase.END, END_TEMP_K, cmd.param1)
        return reason

    def _cmd_purge(self, cmd: P.Command) -> str | None:
        reason = self._require("Purge", _ACTIVE_MODES)
        if reason is None:
            self._start_programme(Phase.PURGE, END_TEMP_K, FASTEST_RATE_K_PER_H)
        return reason

    def _cmd_pause(self, cmd: P.Command) -> str | None:
        reason = self._require("Pause", (RunMode.RUN,))
        if reason is None and self._suspended:
            reason = "Pause is not valid: the programme is already suspended"
        if reason is None:
            self._suspended = True
        return reason

    def _cmd_resume(self, cmd: P.Command) -> str | None:
        reason = self._require("Resume", (RunMode.RUN,))
        if reason is None and not self._suspended:
            reason = "Resume is not valid: the programme is not suspended"
        if reason is None:
            self._suspended = False
            self._handle_events()
        return reason

    def _cmd_stop(self, cmd: P.Command) -> str | None:
        reason = self._require("Stop", _STOPPABLE_MODES)
        if reason is None:
            self._shutdown(RunMode.SHUTDOWN_OK, 2)
        return reason

    def _cmd_turbo(self, cmd: P.Command) -> str | None:
        reason = self._require("Turbo", _ACTIVE_MODES)
        if reason is None:
            self._turbo = bool(cmd.param1)
        return reason

    def _cmd_set_interrupt(self, cmd: P.Command) -> str | None:
        reason = self._require("Set flow interrupt time", _ACTIVE_MODES)
        if reason is None:
            self._interrupt_time = cmd.param1 / 10.0
        return reason

    def _cmd_interrupt(self, cmd: P.Command) -> str | None:
        reason = self._require("Interrupt flow", (RunMode.RUN,))
        if reason is None and self._interrupt_time <= 0.0:
            reason = "Interrupt flow is not valid before a flow interrupt time is set (120)"
        if reason is None:
            self._interrupt_left = self._interrupt_time
        return reason

    def _cmd_set_parameter(self, cmd: P.Command) -> str | None:
        if cmd.param1 not in WRITABLE_IDS:
            return f"parameter {cmd.param1} is not writable"
        self._written[cmd.param1] = cmd.param2
        return None

    def _shutdown(self, mode: RunMode, alarm: int) -> None:
        if mode is RunMode.SHUTDOWN_FAIL:
            snap = self._dynamic_values()
            self._shutdown_info.update(
                {
                    1082: alarm,
                    1083: int(self._run_time // 60),
                    **{
                        dst: snap[src]
                        for dst, src in (
                            (1084, 1051), (1085, 1050), (1086, 1057), (1087, 1058),
                            (1088, 1061), (1089, 1062), (1090, 1063), (1091, 1100),
                            (1092, 1101),
                        )
                    },
                }
            )
        self._shutdown_info[1080] = alarm
        self._shutdown_info[1081] = int(self._run_time // 60)
        self._mode = mode
        self._alarm = alarm
        self._phase = Phase.HOLD
        self._suspended = False
        self._speed = 0.0
        self._rate = 0
        self._interrupt_left = 0.0

    # ---------------------------------------------------------------- time evolution
    def advance(self) -> None:
        """Bring the model up to ``clock.now()`` (a clock that went backwards is ignored)."""
        with self._lock:
            self._advance_locked()

    def _advance_locked(self) -> None:
        now = self._clock.now()
        remaining = now - self._t_last
        self._handle_events()
        # Every event resolves when reached, so steps are > 0; the cap is a safety net only.
        for _ in range(int(remaining / MAX_STEP_S) + 100_000):
            if remaining <= _EPS:
                break
            step = min(remaining, MAX_STEP_S, self._time_to_event())
            self._integrate(step)
            self._handle_events()
            remaining -= step
        if now > self._t_last:
            self._t_last = now

    def _sp_velocity(self) -> float:
        """Signed set-point velocity in K/s."""
        if self._mode is not RunMode.RUN or self._suspended or self._phase not in _MOVING:
            return 0.0
        gap = self._target - self._sp
        if abs(gap) <= _EPS:
            return 0.0
        return math.copysign(self._speed, gap)

    def _flowing(self) -> bool:
        return self._mode is RunMode.RUN and self._interrupt_left <= 0.0

    def _gas_tau(self) -> float:
        if self._flowing():
            return GAS_TAU_TURBO_S if self._turbo else GAS_TAU_S
        return GAS_TAU_INTERRUPT_S if self._mode is RunMode.RUN else GAS_TAU_IDLE_S

    def _time_to_event(self) -> float:
        t = math.inf
        if self._mode is RunMode.STARTUP:
            t = self._startup_left
        elif self._mode is RunMode.RUN:
            if self._interrupt_left > 0.0:
                t = self._interrupt_left
            if not self._suspended:
                v = self._sp_velocity()
                if v:
                    t = min(t, abs(self._target - self._sp) / abs(v))
                elif self._phase is Phase.PLAT:
                    t = min(t, self._plat_left)
                elif self._phase is Phase.PURGE and self._flowing():
                    gap = time_to_within(self._t, self._target, self._gas_tau(), PURGE_TOLERANCE_K)
                    t = min(t, gap)
        return max(t, _EPS)

    def _integrate(self, h: float) -> None:
        v = self._sp_velocity()
        sp0 = self._sp
        tau = self._gas_tau()
        if self._flowing():
            self._t = lag_linear(self._t, sp0, v, tau, h)
        else:
            self._t = relax(self._t, self.ambient_k, tau, h)
        if v:
            self._sp = sp0 + v * h
            if (self._target - self._sp) * v <= _EPS * abs(v):
                self._sp = self._target  # reached: the step was cut at this event
        if self._mode is not RunMode.RUN:
            self._sp = self._t
        if self._mode is RunMode.RUN:
            evap_target = self.ambient_k if self._phase is Phase.PURGE else EVAP_COLD_K
            self._evap = relax(self._evap, evap_target, EVAP_TAU_RUN_S, h)
            if not self._suspended:
                self._elapsed += h
                if self._phase is Phase.PLAT:
                    self._plat_left = max(0.0, self._plat_left - h)
            self._interrupt_left = max(0.0, self._interrupt_left - h)
        else:
            self._evap = relax(self._evap, self.ambient_k, EVAP_TAU_IDLE_S, h)
        if self._mode in _ACTIVE_MODES:
            self._run_time += h
        if self._mode is RunMode.STARTUP:
            self._startup_left = max(0.0, self._startup_left - h)

    def _handle_events(self) -> None:
        if self._mode is RunMode.STARTUP and self._startup_left <= _EPS:
            if self._sensor_fail:
                self._mode, self._alarm = RunMode.STARTUP_FAIL, 14
            else:
                self._mode = RunMode.STARTUP_OK
            self._phase = Phase.HOLD
        if self._mode is not RunMode.RUN or self._suspended:
            return
        phase = self._phase
        reached = phase in _MOVING and abs(self._target - self._sp) <= _EPS
        if reached:
            self._sp = self._target
        if reached and phase in (Phase.RAMP, Phase.COOL):
            self._phase, self._rate, self._speed = Phase.HOLD, 0, 0.0
        elif reached and phase is Phase.END:
            self._shutdown(RunMode.SHUTDOWN_OK, 3)
        elif (
            reached
            and phase is Phase.PURGE
            and abs(self._t - self._target) <= PURGE_TOLERANCE_K + 1e-6
        ):
            self._shutdown(RunMode.SHUTDOWN_OK, 4)
        elif phase is Phase.PLAT and self._plat_left <= _EPS:
            self._phase, self._target = Phase.HOLD, self._sp

    # ---------------------------------------------------------------- status
    def _remaining_min(self) -> int:
        if self._phase is Phase.PLAT:
            return math.ceil(self._plat_left / 60.0 - _EPS)
        if self._phase in _MOVING and self._speed > 0.0:
            seconds = abs(self._target - self._sp) / self._speed
            return math.ceil(seconds / 60.0 - _EPS)
        return 0

    def _dynamic_values(self) -> dict[int, int]:
        """Return the raw words that change with the state (temperatures, modes, housekeeping)."""
        now = self._t_last
        dt = now - self._noise_t
        self._noise_t = now
        for noise in (
            self._gas_noise, self._evap_noise, self._suct_noise, self._press_noise,
            self._heat_noise,
        ):
            noise.step(dt)
        running = self._mode is RunMode.RUN
        flowing = self._flowing()
        turbo_flow = self._turbo and self._t <= TURBO_LIMIT_K
        t_ck = _ck(self._t + self._gas_noise.value)
        evap = self._evap + self._evap_noise.value
        suct = SUCT_MEAN_K + self._suct_noise.value if running else self.ambient_k
        sp_ck = _ck(self._sp) if running else t_ck
        gas_heat = avg_gas_heat = evap_heat = suct_heat = 0
        if flowing:
            flow_factor = 2.0 if turbo_flow else 1.0
            base = 0.28 * max(0.0, self._sp - self._evap) * flow_factor
            avg_gas_heat = _pct(base)
            gas_heat = _pct(base + 1.5 * (self._sp - self._t) + self._heat_noise.value)
            evap_heat = 100 if self._phase is Phase.PURGE else _pct(55 + self._heat_noise.value)
            suct_heat = _pct(4.0 * (SUCT_MEAN_K - 0.5 - suct))
        idx = 1 if turbo_flow else 0
        values = {
            1050: sp_ck,
            1051: t_ck,
            1052: (sp_ck - t_ck) & 0xFFFF if running else _NA,
            1053: int(self._mode),
            1054: int(self.phase),
            1055: (0 if self._suspended else self._rate) if running else _NA,
            1056: _ck(self._target) if running else _NA,
            1057: _ck(evap),
            1058: _ck(suct),
            1059: self._remaining_min() if running else _NA,
            1061: gas_heat,
            1062: evap_heat,
            1063: suct_heat,
            1065: self._alarm,
            1066: min(int(self._run_time // 60), _NA - 1),
            1067: 32 if running else 0,
            1068: int(self._turbo),
            1069: avg_gas_heat,
            1070: suct_heat,
            1071: int(self._suspended),
            1072: self._received & 0xFFFF,
            1073: self._missed & 0xFFFF,
            1100: (FLOW_TURBO_CL_MIN if turbo_flow else FLOW_NORMAL_CL_MIN) if flowing else 0,
            1101: max(0, round(BACK_PRESSURE_MBAR[idx] + self._press_noise.value))
            if flowing
            else 0,
            1103: _pct(VALVE_OPENING_PCT[idx] + self._press_noise.value) if flowing else 0,
            1031: 1200 + int(self._run_time // 3600),
            1040: min(int(20000 + self._t * 40), _NA - 1),
            1041: min(int(20000 + self._evap * 40), _NA - 1),
            1042: min(int(20000 + suct * 40), _NA - 1),
            1044: gas_heat * 10,
            1045: evap_heat * 10,
            1046: suct_heat * 10,
            2034: int(self._elapsed // 60) if running else 0,
        }
        if self._sensor_fail:
            for pid in (1040, 1041, 1042, 1051, 1052, 1057, 1058):
                values[pid] = _NA
        return values

    def _static_values(self) -> dict[int, int]:
        """Raw words that do not follow the thermal state (identity, settings, not fitted)."""
        v: dict[int, int] = dict.fromkeys(P.LONG_IDS, _NA)
        v.update(
            {
                1000: 1,  # Cryostream
                1001: int(P.HardwareBits.SERIES_800),  # subtype 4
                1002: _ck(self.min_temp_k),
                1003: _ck(self.max_temp_k),
                1004: self._firmware,
                1005: 0,
                1006: 0,
                **dict.fromkeys(range(1010, 1020), 1),  # self-checks passed
                1020: 10000, 1021: 2350, 1022: 10000, 1023: 2350, 1024: 10000, 1025: 2350,
                1026: 10000, 1027: 0, 1028: self._cid, 1030: 2512, 1032: 10000, 1033: 0,
                1035: 1001, 1036: 1002, 1037: 1003, 1043: 25000,
                1060: _NA, 1064: _NA,  # legacy flow and line pressure: 0xFFFE on real 800s
                1102: 1450, 1104: 12, 1105: (self._cid * 7) & 0xFFFF, 1107: 1, 1108: 1,
                1300: 0, 1301: 0x7F00, 1302: 0x0001, 1303: 0xFFFF, 1304: 0xFF00,
                1305: 0x7F00, 1306: 0x0001, 1307: 0x7F00, 1308: 0x0001, 1309: 0, 1310: 0,
                **dict(zip((1311, 1312, 1313), P.mac_to_words(self._mac), strict=True)),
                1314: 104,
                1600: 5000 + self._cid % 1000, 1601: 120, 1602: 30, 1603: 0, 1604: 10000,
                1605: 360, 1606: 0, 1700: 17,
                2033: 0, 2037: 0, 2038: 0, 2039: 0, 2040: 0, 2042: 0,
                1080: 0, 1081: 0, 1034: 0,
            }
        )
        return v

    def raw_values(self) -> dict[int, int]:
        """Advance, then return every id of the current layout with its raw 16-bit word.

        The dict is in packet order (:data:`~ophyd_cs800.protocol.STANDARD_IDS` for ``"928"``,
        :data:`~ophyd_cs800.protocol.LONG_IDS` for ``"long"``). Values outside Run follow the
        real unit: ramp rate, target, remaining and error read 0xFFFE.
        """
        with self._lock:
            self._advance_locked()
            merged = {**self._static, **self._shutdown_info, **self._written}
            merged.update(self._dynamic_values())
            merged[1034] = merged[1080]
            ids = P.STANDARD_IDS if self._layout == "928" else P.LONG_IDS
            return {pid: merged[pid] for pid in ids}

    def status_datagram(self) -> bytes:
        """Advance, then encode the status datagram (928 bytes, or 1236 for ``"long"``)."""
        with self._lock:
            raw = self.raw_values()
            trailer = self._trailer if self._layout == "long" else b""
            return P.encode_status(raw, trailer)

    def __repr__(self) -> str:
        """Summarise the controller state."""
        return (
            f"SimulatedCS800(cid={self._cid}, mode={self._mode.name}, phase={self.phase.name}, "
            f"setpoint={self._sp:.2f} K, temp={self._t:.2f} K)"
        )
