"""Symbolic execution of compiled mode code: what a mode does at which timer tick.

:func:`trace_mode` runs one mode's code without hardware or clock and returns the events with
their tick numbers; :func:`solenoid_states` turns that into the open/closed state of every
solenoid per step. Used by the tests that spell out the timing of the design document's
examples and of generated programs. No mode switching is simulated: the trace follows
one mode until END_MODE, SELECT or the tick limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from soldrv.program import Program


@dataclass(frozen=True)
class TraceEvent:
    """One action of a mode at timer tick ``tick`` (0 = the SET_TIME tick / mode entry).

    ``op`` is ``"strobes"`` (``value`` = command numbers), ``"dtoa"`` (set-point index),
    ``"proxy"`` (proxy index), ``"set_time"`` (count), ``"mswok"``, ``"select"`` (mode) or
    ``"end"``.
    """

    tick: int
    op: str
    value: tuple[int, ...] = ()


def trace_mode(program: Program, mode: int, max_ticks: int = 1000,
               max_instructions: int = 100_000) -> list[TraceEvent]:
    """Execute ``mode`` symbolically for at most ``max_ticks`` timer ticks.

    Raises
    ------
    KeyError
        For an undefined mode.
    soldrv.program.CodeError
        For undecodable code.
    RuntimeError
        When ``max_instructions`` run without reaching the tick limit (a cycle without waits).
    """
    ip = program.mode_offset(mode)
    tick = 0
    out: list[TraceEvent] = []
    for _ in range(max_instructions):
        ins = program.decode(ip)
        name = ins.name
        ip = ins.next_offset
        if name in ("STROBES", "MULT_STROBES"):
            out.append(TraceEvent(tick, "strobes", tuple(program.strobe_commands(ins))))
        elif name in ("DTOA", "PROXY", "SET_TIME", "MSWOK"):
            out.append(TraceEvent(tick, name.lower(), ins.operands))
        elif name in ("WAIT", "WAITS"):
            tick += max(1, ins.operands[0]) if ins.operands else 1  # WAITS 0: one tick
            if tick >= max_ticks:
                return out
        elif name == "GOTO":
            ip = ins.operands[0]
        elif name == "SELECT":
            out.append(TraceEvent(tick, "select", ins.operands))
            return out
        elif name == "END_MODE":
            out.append(TraceEvent(tick, "end"))
            return out
    raise RuntimeError(f"mode {mode} ran {max_instructions} instructions without a wait")


def solenoid_states(program: Program, events: list[TraceEvent], n_ticks: int,
                    initial: dict[int, bool] | None = None) -> list[dict[int, bool]]:
    """Return the open/closed state per solenoid index for each tick.

    For ticks 0..n_ticks-1, the open (True) / closed (False) state per solenoid index after all
    the events of that tick. Solenoids never commanded
    are absent unless in ``initial``. Commands that belong to no solenoid are ignored.
    """
    state = dict(initial or {})
    out = []
    k = 0
    for t in range(n_ticks):
        while k < len(events) and events[k].tick <= t:
            ev = events[k]
            if ev.op == "strobes":
                for cmd in ev.value:
                    owner = program.command_owner(cmd)
                    if owner is not None:
                        state[owner[0]] = owner[1]
            k += 1
        out.append(dict(state))
    return out
