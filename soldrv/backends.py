"""Hardware backends for the soldrv runner: a simulator and ophyd signals.

Both implement the runner's hardware interface (:class:`soldrv.machine.Hardware`):
``strobe(commands)``, ``set_point(address, value)`` and ``proxy(proxy_id)``.

* :class:`SimHardware` keeps every solenoid's state, every D/A channel's value and a
  time-stamped log of what was done (no I/O).
* :class:`OphydHardware` maps solenoid names to ophyd signals (open -> 1, close -> 0, with an
  optional status readback signal), D/A names or addresses to signals, and proxy ids to
  callables. It works with any ophyd ``Signal``: ``EpicsSignal`` over Channel Access (e.g. the
  simulated valve bank ``sim_ioc.valves.ValveBank``) or soft signals.

Both understand the program's discrete commands through ``Program.command_owner``: a command
that is a solenoid's open or close command sets that solenoid; any other command number is
logged (SimHardware) or passed to ``unknown_command`` (OphydHardware).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from soldrv.machine import dtoa_channels
from soldrv.program import Program

#: Safe or wanted output states: solenoid (DtoA) name or index (address) -> value. Any of
#: these key types is accepted; a mapping's key type is invariant, hence the union.
OutputStates: TypeAlias = Mapping[str, int] | Mapping[int, int] | Mapping[str | int, int]

__all__ = [
    "LogEntry",
    "OphydHardware",
    "SimHardware",
    "apply_safe_state",
    "resolve_dtoa_address",
    "resolve_solenoid",
    "safe_state_commands",
    "valve_bank_pvs",
]


def resolve_solenoid(program: Program, key: str | int) -> int:
    """Return the solenoid index for ``key``: a name (case-insensitive), ``"sol<i>"`` or an int.

    Raises
    ------
    KeyError
        With a sentence listing the known names, when nothing matches.
    """
    n = len(program.solenoids)
    if isinstance(key, int) and not isinstance(key, bool):
        if 0 <= key < n:
            return key
        raise KeyError(f"solenoid index {key} is out of range (0..{n - 1})")
    text = str(key)
    for i, s in enumerate(program.solenoids):
        if s.name and s.name.lower() == text.lower():
            return i
    if text.lower().startswith("sol") and text[3:].isdigit() and int(text[3:]) < n:
        return int(text[3:])
    known = ", ".join(program.solenoid_label(i) for i in range(n)) or "none"
    raise KeyError(f"no solenoid {text!r} in the program; solenoids: {known}")


def resolve_dtoa_address(program: Program, key: str | int) -> int:
    """Return the D/A address for ``key``: a DtoA name (case-insensitive), ``"0x0E42"`` or int.

    Raises KeyError with a sentence listing the known DtoAs when a name is unknown.
    """
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    text = str(key)
    for d in program.dtoas:
        if d.name.lower() == text.lower():
            return d.address
    try:
        return int(text, 0)
    except ValueError:
        pass
    known = ", ".join(f"{d.name}@0x{d.address:04X}" for d in program.dtoas) or "none named"
    raise KeyError(f"no DtoA {text!r} in the program; DtoAs: {known}")


def valve_bank_pvs(
    program: Program, prefix: str
) -> tuple[dict[str | int, str], dict[str | int, str], dict[str | int, str]]:
    """PV names of a ``sim_ioc.valves.ValveBank`` for ``program``, in definition order.

    Solenoid i goes to ``{prefix}V{i+1}`` (status ``{prefix}V{i+1}_RBV``) and the k-th D/A
    channel (by first use of its address) to ``{prefix}DA{k+1}``. Returns (solenoids, status,
    dtoa) maps for :meth:`OphydHardware.from_pvs`.
    """
    sol: dict[str | int, str] = {i: f"{prefix}V{i + 1}" for i in range(len(program.solenoids))}
    sta: dict[str | int, str] = {
        i: f"{prefix}V{i + 1}_RBV" for i in range(len(program.solenoids))}
    da: dict[str | int, str] = {
        addr: f"{prefix}DA{k + 1}" for k, (addr, _) in enumerate(dtoa_channels(program))
    }
    return sol, sta, da


def safe_state_commands(program: Program, solenoids: OutputStates) -> list[int]:
    """Return the discrete commands that put ``solenoids`` ({name: 0/1}) in those states.

    Raises KeyError for an unknown name and ValueError for a state other than 0 or 1.
    """
    cmds = []
    for key, state in solenoids.items():
        if state not in (0, 1):
            raise ValueError(f"safe state of solenoid {key!r} must be 0 (closed) or 1 (open)")
        s = program.solenoids[resolve_solenoid(program, key)]
        cmds.append(s.open_cmd if state else s.close_cmd)
    return cmds


def apply_safe_state(
    hardware: Any,
    program: Program,
    solenoids: OutputStates | None = None,
    dtoa: OutputStates | None = None,
) -> None:
    """Drive ``hardware`` to a safe state through its strobe/set_point interface.

    ``solenoids`` maps names to 0/1; None means every solenoid closed. ``dtoa`` maps DtoA
    names or addresses to values (None: D/A channels are left alone).
    """
    if solenoids is None:
        solenoids = {i: 0 for i in range(len(program.solenoids))}
    cmds = safe_state_commands(program, solenoids)
    if cmds:
        hardware.strobe(cmds)
    for key, value in (dtoa or {}).items():
        hardware.set_point(resolve_dtoa_address(program, key), int(value))


@dataclass(frozen=True)
class LogEntry:
    """One SimHardware log line: ``time`` (s, from its clock), ``kind``, what was done.

    ``kind`` is ``"strobe"`` (``commands``), ``"set_point"`` (``address``, ``value``) or
    ``"proxy"`` (``proxy_id``).
    """

    time: float
    kind: str
    commands: tuple[int, ...] = ()
    address: int | None = None
    value: int | None = None
    proxy_id: int | None = None


class SimHardware:
    """A simulated valve bank: solenoid states, D/A values and a time-stamped log.

    Parameters
    ----------
    program : Program
        Gives the solenoids (open/close commands, names) and D/A channels.
    clock : Callable[[], float] | None, optional
        Time source for the log, seconds (default ``time.monotonic``); a runner
        replaces it with its own clock through :meth:`attach_clock` (the virtual clock
        of a dry run stamps virtual seconds).
    max_log : int, optional
        Entries kept in :attr:`log` (older ones are dropped), default 100000.

    Notes
    -----
    :attr:`states` maps solenoid label -> 1/0/None, :attr:`dtoa` address -> value/None,
    :attr:`unknown_commands` counts commands that belong to no solenoid. Thread-safe.
    """

    def __init__(
        self,
        program: Program,
        *,
        clock: Callable[[], float] | None = None,
        max_log: int = 100_000,
    ) -> None:
        """Create the simulator with every solenoid and D/A unknown (None)."""
        self.program = program
        self.clock: Callable[[], float] = clock or time.monotonic
        self._own_clock = clock is not None
        self.max_log = max_log
        self.states: dict[str, int | None] = {
            program.solenoid_label(i): None for i in range(len(program.solenoids))
        }
        self.dtoa: dict[int, int | None] = {a: None for a, _ in dtoa_channels(program)}
        self.proxies: list[int] = []
        self.unknown_commands = 0
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()

    def attach_clock(self, clock: Callable[[], float]) -> None:
        """Use ``clock`` for log times, unless a clock was given to the constructor."""
        if not self._own_clock:
            self.clock = clock

    def _append(self, entry: LogEntry) -> None:
        self.log.append(entry)
        if len(self.log) > self.max_log:
            del self.log[: len(self.log) - self.max_log]

    def strobe(self, commands: Sequence[int]) -> None:
        """Apply discrete commands: open/close the solenoids that own them."""
        with self._lock:
            for c in commands:
                owner = self.program.command_owner(c)
                if owner is None:
                    self.unknown_commands += 1
                else:
                    self.states[self.program.solenoid_label(owner[0])] = 1 if owner[1] else 0
            self._append(LogEntry(self.clock(), "strobe", commands=tuple(commands)))

    def set_point(self, address: int, value: int) -> None:
        """Set D/A ``address`` to ``value``."""
        with self._lock:
            self.dtoa[address] = value
            self._append(LogEntry(self.clock(), "set_point", address=address, value=value))

    def proxy(self, proxy_id: int) -> None:
        """Record a proxy trigger."""
        with self._lock:
            self.proxies.append(proxy_id)
            self._append(LogEntry(self.clock(), "proxy", proxy_id=proxy_id))


class OphydHardware:
    """Drive ophyd signals from the runner.

    Parameters
    ----------
    program : Program
        The program (solenoid commands and names, DtoA names).
    solenoids : Mapping[str | int, Any] | None, optional
        Solenoid name (or ``"sol<i>"``, or index) -> signal; an open command puts
        1, a close command puts 0. Solenoids not mapped are ignored.
    status : Mapping[str | int, Any] | None, optional
        Optional solenoid name -> readback signal (see :meth:`readback`).
    dtoa : Mapping[str | int, Any] | None, optional
        DtoA name, ``"0x..."`` string or int address -> signal receiving the value.
        Several DtoAs at one address are one channel. Unmapped addresses are ignored.
    proxies : Mapping[int, Callable[[], object]] | None, optional
        Proxy id -> callable with no arguments (a proxy "trigger").
    unknown_command : Callable[[int], object] | None, optional
        Called with a command number that belongs to no solenoid.
    put_timeout : float | None, optional
        Seconds to wait for each put's completion; None (default) puts without
        waiting (fire and forget, as a strobe is).

    Notes
    -----
    Raises KeyError for a name that is not in the program. Put errors propagate to the
    runner, which stops the mode with :class:`soldrv.machine.HardwareError`.
    """

    def __init__(
        self,
        program: Program,
        solenoids: Mapping[str | int, Any] | None = None,
        *,
        status: Mapping[str | int, Any] | None = None,
        dtoa: Mapping[str | int, Any] | None = None,
        proxies: Mapping[int, Callable[[], object]] | None = None,
        unknown_command: Callable[[int], object] | None = None,
        put_timeout: float | None = None,
    ) -> None:
        """Resolve every name against ``program``; see the class docstring."""
        self.program = program
        self.put_timeout = put_timeout
        self.unknown_command = unknown_command
        self.solenoid_signals: dict[int, Any] = {
            resolve_solenoid(program, k): sig for k, sig in (solenoids or {}).items()
        }
        self.status_signals: dict[int, Any] = {
            resolve_solenoid(program, k): sig for k, sig in (status or {}).items()
        }
        self.dtoa_signals: dict[int, Any] = {}
        for k, sig in (dtoa or {}).items():
            addr = resolve_dtoa_address(program, k)
            if addr in self.dtoa_signals and self.dtoa_signals[addr] is not sig:
                raise KeyError(
                    f"D/A address 0x{addr:04X} is mapped twice ({k!r}); DtoAs sharing an "
                    "address are one channel"
                )
            self.dtoa_signals[addr] = sig
        self.proxy_callables = dict(proxies or {})
        self.commanded: dict[int, int] = {}

    @classmethod
    def from_pvs(
        cls,
        program: Program,
        solenoids: Mapping[str | int, str],
        *,
        status: Mapping[str | int, str] | None = None,
        dtoa: Mapping[str | int, str] | None = None,
        connect_timeout: float = 5.0,
        **kwargs: Any,
    ) -> OphydHardware:
        """Build it from PV names: ``EpicsSignal`` per solenoid/D/A, ``EpicsSignalRO`` status.

        Waits up to ``connect_timeout`` s for every PV. Other arguments as the constructor.

        Raises
        ------
        TimeoutError
            Naming the PVs that did not connect.
        """
        from ophyd import EpicsSignal, EpicsSignalRO

        def mk(kind: type, pv: str, key: str | int) -> Any:
            return kind(pv, name=f"soldrv_{key}".replace(":", "_"))

        sol = {k: mk(EpicsSignal, pv, k) for k, pv in solenoids.items()}
        sta = {k: mk(EpicsSignalRO, pv, f"{k}_rbv") for k, pv in (status or {}).items()}
        da = {k: mk(EpicsSignal, pv, f"da_{k}") for k, pv in (dtoa or {}).items()}
        signals = [*sol.values(), *sta.values(), *da.values()]
        deadline = time.monotonic() + connect_timeout
        for sig in signals:
            try:
                sig.wait_for_connection(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                pass
        missing = [sig.pvname for sig in signals if not sig.connected]
        if missing:
            raise TimeoutError(
                f"{len(missing)} PV(s) did not connect within {connect_timeout} s: "
                + ", ".join(missing[:10])
            )
        return cls(program, sol, status=sta, dtoa=da, **kwargs)

    def _put(self, signal: Any, value: int) -> None:
        if self.put_timeout is None:
            signal.put(value)
        else:
            signal.set(value).wait(self.put_timeout)

    def strobe(self, commands: Sequence[int]) -> None:
        """Put 1 (open) or 0 (close) to the signal of each solenoid commanded."""
        for c in commands:
            owner = self.program.command_owner(c)
            if owner is None:
                if self.unknown_command is not None:
                    self.unknown_command(c)
                continue
            idx, is_open = owner
            sig = self.solenoid_signals.get(idx)
            if sig is not None:
                self._put(sig, 1 if is_open else 0)
            self.commanded[idx] = 1 if is_open else 0  # only once the put went out

    def set_point(self, address: int, value: int) -> None:
        """Put ``value`` to the signal mapped to D/A ``address`` (ignored if unmapped)."""
        sig = self.dtoa_signals.get(address)
        if sig is not None:
            self._put(sig, value)

    def proxy(self, proxy_id: int) -> None:
        """Call the callable registered for ``proxy_id`` (nothing if none, as soldrv does)."""
        fn = self.proxy_callables.get(proxy_id)
        if fn is not None:
            fn()

    def readback(self) -> dict[str, int]:
        """Read every status signal: {solenoid label: 0/1 as read}."""
        return {
            self.program.solenoid_label(i): int(sig.get()) for i, sig in self.status_signals.items()
        }

    def wait_readback(self, timeout: float) -> bool:
        """Wait until every status readback equals the last commanded state; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            ok = all(
                int(sig.get()) == self.commanded[i]
                for i, sig in self.status_signals.items()
                if i in self.commanded
            )
            if ok:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)  # polling a readback with a deadline, not synchronisation
