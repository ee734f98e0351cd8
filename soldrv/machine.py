"""The soldrv state machine, independent of any clock.

:class:`SoldrvMachine` executes the mode code of a :class:`~soldrv.program.Program` exactly as
the reference soldrv does, with a few fixes:

* it starts in NO_MODE; a request for mode 0 acts at once (it abandons the current wait), a
  request for another mode acts at once in NO_MODE and otherwise waits for the next MSWOK
  (a later request replaces a pending one; reaching SELECT drops it);
* SELECT switches mode at once, END_MODE stops the timer and returns to NO_MODE, GOTO loops
  without re-running the initialization or SET_TIME (the timer keeps running);
* WAIT blocks for one timer tick, WAITS n for n ticks (``WAITS 0`` for one tick, as the C
  driver does: it counts the tick down before it tests for zero);
* the timer period of SET_TIME c is c/16384 s (``timer="exact"``, the default) or, with
  ``timer="reference"``, that period with its sub-second part cut down to a multiple of
  1/1024 s as the C driver computes it (at a 1/10 s resolution the reference
  delivers 3011 ticks by 300 s, the exact timer 3000);
* STROBES / MULT_STROBES, DTOA and PROXY go to the hardware interface
  (``strobe(commands)``, ``set_point(address, value)``, ``proxy(proxy_id)``).

Fixes over the reference: a mode index of 0xFFFF is an undefined mode; an unknown opcode, an
operand out of range (set-point, proxy or string index, GOTO target) or a WAIT with
no timer running raises :class:`ProgramError` (an :class:`~soldrv.sft.SftError`) instead of
spinning; a request for an undefined mode raises :class:`ModeRequestError` and changes
nothing. A request for mode 0 when mode 0 is undefined is accepted and halts (NO_MODE).

The machine has no notion of wall time. A driver (:mod:`soldrv.runner`) tells it the logical
time of every call (seconds since the runner started) and delivers timer ticks at
``t0 + k * period`` where ``t0`` is the time SET_TIME ran; :meth:`SoldrvMachine.next_tick_time`
says when the next tick is due. Everything the machine does is reported as :class:`Action`
records (to ``on_action``) and, after each burst of execution that changed an output, as a
:class:`StepRecord` (to ``on_step``) holding the full output state.

This module imports neither ophyd nor bluesky.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from soldrv.program import (
    SOL_DTOA,
    SOL_END_MODE,
    SOL_GOTO,
    SOL_MSWOK,
    SOL_MULT_STROBES,
    SOL_PROXY,
    SOL_SELECT,
    SOL_SET_TIME,
    SOL_STROBES,
    SOL_WAIT,
    SOL_WAITS,
    CodeError,
    Instruction,
    Program,
    timer_period_seconds,
)
from soldrv.sft import SftError

__all__ = [
    "Action",
    "Hardware",
    "HardwareError",
    "ModeRequestError",
    "NullHardware",
    "ProgramError",
    "SoldrvMachine",
    "StepRecord",
    "TIMERS",
    "check_timer",
    "dtoa_channels",
]

TIMERS = ("exact", "reference")
"""Timer periods a machine can use: ``"exact"`` count/16384 s (default), ``"reference"`` the
C driver's (sub-second part cut down to a multiple of 1/1024 s)."""


def check_timer(timer: str) -> str:
    """Return ``timer`` if it is one of :data:`TIMERS`; ValueError with a sentence otherwise."""
    if timer not in TIMERS:
        raise ValueError(f"timer must be 'exact' or 'reference', got {timer!r}")
    return timer

MAX_OPS_WITHOUT_WAIT = 100_000
"""Instructions executed without blocking before the machine declares an endless loop."""


class ProgramError(SftError):
    """Mode code that cannot be executed: unknown opcode, operand out of range, endless loop.

    The reference soldrv would spin forever on these; this runner stops the mode (NO_MODE)
    and raises this error with a sentence naming the mode, the offset and what was wrong.
    """


class HardwareError(RuntimeError):
    """A hardware call (strobe, set point, proxy) raised; the mode was stopped (NO_MODE)."""


class ModeRequestError(ValueError):
    """A mode request that was refused (undefined mode, not an integer); nothing changed."""


class Hardware(Protocol):
    """What soldrv drives: strobed commands, D/A set points and proxies.

    * ``strobe(commands)``: send the discrete command numbers of one STROBES / MULT_STROBES
      (several at once means simultaneously);
    * ``set_point(address, value)``: write ``value`` to the D/A (subbus) ``address``
      (address 0 is the software status word);
    * ``proxy(proxy_id)``: trigger the proxy registered for id ``proxy_id`` (0..255).

    Implementations: :class:`NullHardware`, :class:`soldrv.backends.SimHardware`,
    :class:`soldrv.backends.OphydHardware`. A hardware call that raises stops the mode.
    """

    def strobe(self, commands: Sequence[int]) -> None:
        """Send discrete commands (see class docstring)."""
        ...

    def set_point(self, address: int, value: int) -> None:
        """Write a D/A value (see class docstring)."""
        ...

    def proxy(self, proxy_id: int) -> None:
        """Trigger a proxy (see class docstring)."""
        ...


class NullHardware:
    """A hardware interface that does nothing (for dry runs: the records say what happened)."""

    def strobe(self, commands: Sequence[int]) -> None:
        """Ignore a strobe."""

    def set_point(self, address: int, value: int) -> None:
        """Ignore a set point."""

    def proxy(self, proxy_id: int) -> None:
        """Ignore a proxy trigger."""


@dataclass(frozen=True)
class Action:
    """One thing the machine did, at logical ``time`` (seconds since the runner started).

    ``kind`` is one of:

    * hardware: ``"strobe"`` (``commands``), ``"set_point"`` (``index``, ``address``,
      ``value``), ``"proxy"`` (``index``, ``proxy_id``);
    * control: ``"mode"`` (a mode started; ``detail`` says why: request, interrupt, mswok,
      select), ``"set_time"`` (``count``), ``"goto"`` (a cycle wrapped), ``"select"``,
      ``"end_mode"``, ``"pending"`` (a request waits for MSWOK), ``"halt"`` (stopped by the
      driver: ``detail`` says why), ``"warning"``, ``"error"``.

    ``mode`` is the mode running when it happened (None in NO_MODE), ``tick`` the number of
    timer ticks since that mode's SET_TIME (0 before it), ``step`` the step within the current
    cycle, ``cycle`` the number of completed cycles of that mode run, ``offset`` the byte offset
    of the instruction (None for actions not tied to one). ``wall`` is the wall-clock time
    (driver's clock, seconds) when it was executed, ``deadline`` the wall-clock time it was due
    (real-time driver only; None otherwise).
    """

    time: float
    kind: str
    mode: int | None
    tick: int = 0
    step: int = 0
    cycle: int = 0
    offset: int | None = None
    commands: tuple[int, ...] = ()
    index: int | None = None
    address: int | None = None
    value: int | None = None
    proxy_id: int | None = None
    count: int | None = None
    detail: str = ""
    wall: float | None = None
    deadline: float | None = None

    @property
    def is_output(self) -> bool:
        """True for actions that drive hardware (strobe, set_point, proxy)."""
        return self.kind in ("strobe", "set_point", "proxy")

    def describe(self, program: Program | None = None) -> str:
        """One human-readable line for this action (solenoid names taken from ``program``)."""
        if self.kind == "strobe":
            parts = []
            for c in self.commands:
                owner = program.command_owner(c) if program is not None else None
                if program is None or owner is None:
                    parts.append(f"cmd {c}")
                else:
                    name = program.solenoid_label(owner[0])
                    parts.append(f"{'open' if owner[1] else 'close'} {name} ({c})")
            return "STROBES " + ", ".join(parts)
        if self.kind == "set_point":
            label = ""
            if program is not None and self.index is not None:
                sp = program.set_points[self.index]
                if sp.dtoa:
                    label = f" {sp.dtoa}:{sp.char}"
            return f"DTOA [{self.index}]{label} 0x{self.address:04X} <- {self.value}"
        if self.kind == "proxy":
            return f"PROXY [{self.index}] id {self.proxy_id}"
        if self.kind == "set_time":
            detail = self.detail or f"{timer_period_seconds(self.count or 0):g} s/tick"
            return f"SET_TIME {self.count} ({detail})"
        text = self.kind.upper()
        return f"{text} {self.detail}".rstrip()


@dataclass
class StepRecord:
    """The output state after one burst of execution that changed something.

    ``time`` is the logical time (seconds since the runner started), ``wall`` the driver's
    wall-clock time when the burst finished (None on the virtual clock), ``mode``/``step``/
    ``cycle`` as in :class:`Action`. ``solenoids`` holds every solenoid's state (1 open, 0
    closed, None not yet commanded), in program order; ``dtoa`` every D/A channel's last value
    by address (None if never written); ``proxies`` the proxy ids triggered in this burst and
    ``actions`` the output actions of the burst.
    """

    time: float
    mode: int | None
    step: int
    cycle: int
    solenoids: tuple[int | None, ...]
    dtoa: dict[int, int | None]
    proxies: tuple[int, ...] = ()
    actions: list[Action] = field(default_factory=list)
    wall: float | None = None


def dtoa_channels(program: Program) -> list[tuple[int, str]]:
    """Return the D/A channels of ``program`` as (address, label), in first-use order.

    Several DtoAs may share an address (one physical channel); the label is the first DtoA
    name defined at that address, or ``"0x0E42"`` when the program carries no names (an .sft).
    """
    names: dict[int, list[str]] = {}
    for sp in program.set_points:
        lst = names.setdefault(sp.address, [])
        if sp.dtoa and sp.dtoa not in lst:
            lst.append(sp.dtoa)
    return [(addr, n[0] if n else f"0x{addr:04X}") for addr, n in names.items()]


class SoldrvMachine:
    """The soldrv mode-code interpreter; see the module docstring for the semantics.

    Parameters
    ----------
    program : Program
        The compiled program to run.
    hardware : Hardware | None, optional
        Where outputs go (default :class:`NullHardware`).
    on_action : Callable[[Action], None] | None, optional
        Called with every :class:`Action`.
    on_step : Callable[[StepRecord], None] | None, optional
        Called with a :class:`StepRecord` after each burst that changed an output.
    max_ops : int, optional
        Instructions allowed without blocking before :class:`ProgramError`.
    timer : str, optional
        ``"exact"`` (default) or ``"reference"``: how SET_TIME's count becomes a tick
        period (see the module docstring); ValueError for anything else.

    Notes
    -----
    Not thread-safe: one driver thread owns it. All methods take ``now``, the logical time in
    seconds; it must never decrease.
    """

    def __init__(
        self,
        program: Program,
        hardware: Hardware | None = None,
        *,
        on_action: Callable[[Action], None] | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        max_ops: int = MAX_OPS_WITHOUT_WAIT,
        timer: str = "exact",
    ) -> None:
        """Create a machine in NO_MODE; see the class docstring for the arguments."""
        self.timer = check_timer(timer)
        self.program = program
        self.hardware: Hardware = hardware if hardware is not None else NullHardware()
        self.on_action = on_action
        self.on_step = on_step
        self.max_ops = max_ops
        self.mode: int | None = None
        self.ip = 0
        self.pending: int | None = None
        self.timer_count: int | None = None
        self.t0 = 0.0
        self.ticks = 0
        self.wait_left = 0
        self.cycle = 0
        self.cycle_start_tick = 0
        self.cycles_done = 0
        self.cycle_limit: int | None = None
        self.now = 0.0
        self.solenoids: list[int | None] = [None] * len(program.solenoids)
        self.dtoa: dict[int, int | None] = {addr: None for addr, _ in dtoa_channels(program)}
        self.halt_requested = False
        """Set from another thread to stop the mode before its next instruction (see
        :meth:`_run`); the driver clears it when it handles the halt or a new request."""
        self._burst: list[Action] = []
        self._wall: float | None = None
        self._deadline: float | None = None

    # -- queries -------------------------------------------------------------------------

    @property
    def period(self) -> float | None:
        """Seconds per timer tick of the running timer, None when the timer is stopped."""
        if self.timer_count is None:
            return None
        return timer_period_seconds(self.timer_count, runtime_truncation=self.timer == "reference")

    @property
    def waiting(self) -> bool:
        """True while blocked in WAIT/WAITS (a timer tick will resume execution)."""
        return self.mode is not None and self.wait_left > 0

    @property
    def step(self) -> int:
        """Step within the current cycle (timer ticks since SET_TIME or the last GOTO)."""
        return self.ticks - self.cycle_start_tick

    def next_tick_time(self) -> float | None:
        """Logical time of the next timer tick, or None if nothing waits for one."""
        if not self.waiting or self.period is None:
            return None
        return self.t0 + (self.ticks + 1) * self.period

    def check_request(self, mode: object) -> int:
        """Return ``mode`` as an int if a request for it would be accepted.

        Mode 0 is always accepted: when undefined it halts.

        Raises
        ------
        soldrv.machine.ModeRequestError
            With a sentence, for a non-integer or undefined mode.
        """
        if isinstance(mode, bool) or not isinstance(mode, int):
            try:
                mode = int(str(mode), 10)
            except ValueError:
                raise ModeRequestError(
                    f"mode request {mode!r} is not a mode number (a decimal integer)"
                ) from None
        if mode != 0 and not self.program.is_defined(mode):
            defined = ", ".join(map(str, self.program.defined_modes())) or "none"
            raise ModeRequestError(
                f"mode {mode} is not defined in this program; defined modes: {defined}"
            )
        return mode

    # -- inputs ----------------------------------------------------------------------------

    def request_mode(self, mode: int, now: float, wall: float | None = None) -> None:
        """Handle a mode request at logical time ``now`` (see the module docstring).

        Raises
        ------
        soldrv.machine.ModeRequestError
            For an undefined mode (nothing changes).
        ProgramError
            If the mode's code cannot be executed (the machine is then in NO_MODE).
        """
        mode = self.check_request(mode)
        self._enter(now, wall)
        if mode == 0 or self.mode is None:
            self._stop_timer()
            self._start_mode(mode, "interrupt" if self.mode is not None else "request")
            self._run()
        else:
            self.pending = mode
            self._emit("pending", detail=f"mode {mode} pending until the next ^ (MSWOK)")
        self._flush()

    def tick(self, now: float, wall: float | None = None, deadline: float | None = None) -> None:
        """Deliver one timer tick at logical time ``now`` (ignored when nothing waits).

        Raises
        ------
        ProgramError
            If the code that runs after the tick is bad.
        """
        if not self.waiting:
            return
        self._enter(now, wall, deadline)
        self.ticks += 1
        self.wait_left -= 1
        if self.wait_left == 0:
            self._run()
        self._flush()

    def halt(self, now: float, reason: str, wall: float | None = None) -> None:
        """Stop the running mode (timer stopped, pending request dropped): NO_MODE.

        ``reason`` is recorded in the ``"halt"`` action. Does nothing in NO_MODE.
        """
        if self.mode is None:
            return
        self._enter(now, wall)
        self._emit("halt", detail=reason)
        self.to_no_mode()
        self._flush()

    # -- execution ---------------------------------------------------------------------------

    def _enter(self, now: float, wall: float | None, deadline: float | None = None) -> None:
        self.now = max(self.now, now)
        self._wall = wall
        self._deadline = deadline

    def _emit(self, kind: str, ins: Instruction | None = None, **kw: object) -> Action:
        running = self.mode is not None and self.timer_count is not None
        act = Action(
            time=self.now,
            kind=kind,
            mode=self.mode,
            tick=self.ticks if running else 0,
            step=self.step if running else 0,
            cycle=self.cycle,
            offset=None if ins is None else ins.offset,
            wall=self._wall,
            deadline=self._deadline,
            **kw,  # type: ignore[arg-type]
        )
        if act.is_output:
            self._burst.append(act)
        if self.on_action is not None:
            self.on_action(act)
        return act

    def _flush(self) -> None:
        if not self._burst:
            return
        acts, self._burst = self._burst, []
        if self.on_step is None:
            return
        last = acts[-1]
        rec = StepRecord(
            time=last.time,
            mode=last.mode,
            step=last.step,
            cycle=last.cycle,
            solenoids=tuple(self.solenoids),
            dtoa=dict(self.dtoa),
            proxies=tuple(a.proxy_id for a in acts if a.kind == "proxy"),  # type: ignore[misc]
            actions=acts,
            wall=self._wall,
        )
        self.on_step(rec)

    def _stop_timer(self) -> None:
        self.timer_count = None
        self.wait_left = 0

    def to_no_mode(self, *, drop_burst: bool = False) -> None:
        """Go to NO_MODE at once: timer stopped, pending request dropped, no callbacks.

        ``drop_burst`` also forgets the outputs not yet reported in a :class:`StepRecord`;
        drivers use that to recover from an exception raised by one of their own callbacks.
        """
        self._stop_timer()
        self.mode = None
        self.pending = None
        if drop_burst:
            self._burst = []

    def _start_mode(self, mode: int, why: str) -> None:
        self.pending = None
        self.timer_count = None
        self.wait_left = 0
        self.ticks = 0
        self.cycle = 0
        self.cycle_start_tick = 0
        if not self.program.is_defined(mode):
            # only mode 0 gets here (requests are checked; SELECT checks first)
            self.mode = None
            self._emit("warning", detail=f"mode {mode} is not defined: NO_MODE")
            return
        self.mode = mode
        self.ip = self.program.mode_indices[mode]
        self._emit("mode", detail=f"mode {mode} ({why})")

    def _fail(self, message: str, hardware: bool = False) -> Exception:
        where = f"mode {self.mode}, offset {self.ip}"
        text = f"{where}: {message}; the mode was stopped (NO_MODE)"
        err: Exception = HardwareError(text) if hardware else ProgramError(text, self.ip)
        self._emit("error", detail=text)
        self.to_no_mode()
        self._flush()
        return err

    def _run(self) -> None:
        """Execute instructions until the machine blocks (WAIT/WAITS) or leaves the mode.

        Mode code only runs forward except at GOTO and SELECT, and nothing outside the
        machine changes while it runs, so reaching the same GOTO or SELECT twice without a
        WAIT in between is an endless loop: it is reported at once (before a second pass
        repeats its hardware calls). ``max_ops`` stays as a backstop.
        """
        ops = 0
        prog = self.program
        jumps: set[int] = set()
        while self.mode is not None and self.wait_left == 0:
            if self.halt_requested:  # a driver is stopping us (e.g. after a hung call)
                self._emit("halt", detail="halt requested")
                self.to_no_mode()
                break
            ops += 1
            if ops > self.max_ops:
                raise self._fail(
                    f"{self.max_ops} instructions ran without waiting for a timer tick "
                    "(an endless loop, e.g. GOTO or SELECT chains without WAIT)"
                )
            try:
                ins = prog.decode(self.ip)
            except CodeError as e:
                raise self._fail(f"cannot decode the mode code ({e})") from None
            op = ins.opcode
            nxt = ins.next_offset
            if op in (SOL_GOTO, SOL_SELECT):
                if ins.offset in jumps:
                    raise self._fail(
                        f"{ins.name} at offset {ins.offset} was reached again without waiting "
                        "for a timer tick (an endless loop: GOTO or SELECT chain without WAIT)"
                    )
                jumps.add(ins.offset)
            if op in (SOL_STROBES, SOL_MULT_STROBES):
                try:
                    cmds = prog.strobe_commands(ins)
                except ValueError as e:
                    raise self._fail(str(e)) from None
                owners = [o for o in map(prog.command_owner, cmds) if o is not None]
                self._emit("strobe", ins, commands=tuple(cmds))
                self._hw(self.hardware.strobe, list(cmds), owners=owners)
                for idx, is_open in owners:
                    self.solenoids[idx] = 1 if is_open else 0
                self.ip = nxt
            elif op in (SOL_WAIT, SOL_WAITS):
                n = 1 if op == SOL_WAIT else max(1, ins.operands[0])  # WAITS 0: one tick, as C
                if self.timer_count is None:
                    raise self._fail(f"{ins.name} with no timer running (no SET_TIME before it)")
                self.wait_left = n
                self.ip = nxt
            elif op == SOL_SET_TIME:
                self.timer_count = ins.operands[0]
                self.t0 = self.now
                self.ticks = 0
                self.cycle_start_tick = 0
                self._emit("set_time", ins, count=ins.operands[0],
                           detail=f"{self.period:g} s/tick, {self.timer} timer")
                self.ip = nxt
            elif op == SOL_GOTO:
                target = ins.operands[0]
                if target >= len(prog.code):
                    raise self._fail(f"GOTO {target} is outside the {len(prog.code)}-byte code")
                self.cycle += 1
                self.cycles_done += 1
                self.cycle_start_tick = self.ticks
                self._emit("goto", ins, detail=f"to {target}, cycle {self.cycle} done")
                self.ip = target
                self._check_cycle_limit()
            elif op == SOL_END_MODE:
                self._emit("end_mode", ins)
                self.to_no_mode()
            elif op == SOL_SELECT:
                target = ins.operands[0]
                self.cycle += 1
                self.cycles_done += 1
                self._emit("select", ins, detail=f"mode {target}")
                self._stop_timer()
                if self._check_cycle_limit():
                    break
                if prog.is_defined(target):
                    self._start_mode(target, "select")
                else:
                    if target != 0:
                        self._emit("warning", ins, detail=f"can't select undefined mode {target}")
                    self.to_no_mode()
            elif op == SOL_MSWOK:
                if self.pending is not None:
                    self._emit("mswok", ins, detail=f"switch to mode {self.pending}")
                    self._stop_timer()
                    self._start_mode(self.pending, "mswok")
                else:
                    self.ip = nxt
            elif op == SOL_DTOA:
                i = self._index(ins, len(prog.set_points), "set points")
                sp = prog.set_points[i]
                self._emit("set_point", ins, index=i, address=sp.address, value=sp.value)
                self._hw(self.hardware.set_point, sp.address, sp.value, address=sp.address)
                self.dtoa[sp.address] = sp.value
                self.ip = nxt
            elif op == SOL_PROXY:
                i = self._index(ins, len(prog.proxy_ids), "proxy ids")
                pid = prog.proxy_ids[i]
                self._emit("proxy", ins, index=i, proxy_id=pid)
                self._hw(self.hardware.proxy, pid)
                self.ip = nxt
            else:  # pragma: no cover - decode_instruction rejects unknown opcodes
                raise self._fail(f"unknown opcode {op}")

    def _index(self, ins: Instruction, size: int, what: str) -> int:
        """Return the table index operand of ``ins``; ProgramError if it is out of range."""
        i = ins.operands[0]
        if i >= size:
            raise self._fail(f"{ins.name} {i} is out of range: the program has {size} {what}")
        return i

    def _hw(
        self,
        call: Callable[..., None],
        *args: object,
        owners: Sequence[tuple[int, bool]] = (),
        address: int | None = None,
    ) -> None:
        """Make a hardware call.

        If it raises, the outputs it touched become unknown (None) and the mode stops with
        :class:`HardwareError`.
        """
        try:
            call(*args)
        except Exception as e:  # noqa: BLE001 - any backend failure stops the mode
            for idx, _ in owners:
                self.solenoids[idx] = None
            if address is not None:
                self.dtoa[address] = None
            raise self._fail(f"the hardware call failed: {type(e).__name__}: {e}", True) from e

    def _check_cycle_limit(self) -> bool:
        if self.cycle_limit is not None and self.cycles_done >= self.cycle_limit:
            self._emit("halt", detail=f"{self.cycles_done} cycle(s) done")
            self.to_no_mode()
            return True
        return False
