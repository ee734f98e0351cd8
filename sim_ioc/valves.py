"""A simulated solenoid valve bank served over Channel Access (caproto PVGroup).

``ValveBank(prefix, n_valves, n_dtoa=8)`` serves, for valves n = 1..n_valves and D/A
channels k = 1..n_dtoa:

| PV | type | what |
| --- | --- | --- |
| ``{prefix}V{n}`` | int, 0/1 | command: 1 opens valve n, 0 closes it (other values are refused) |
| ``{prefix}V{n}_RBV`` | int, read-only | status readback (follows after ``rbv_delay``) |
| ``{prefix}DA{k}`` | int, 0..65535 | D/A set point |
| ``{prefix}DA{k}_RBV`` | int, read-only | D/A readback |
| ``{prefix}STATES`` | int array[n_valves], read-only | every valve's readback state |
| ``{prefix}CHANGES`` | int, read-only | commands received since start (or RESET) |
| ``{prefix}LAST`` | string, read-only | the last command, e.g. ``V3=1`` |
| ``{prefix}LOG`` | char waveform, read-only | recent commands, one per line: ``<time> V3=1`` |
| ``{prefix}NVALVES``, ``{prefix}NDTOA`` | int, read-only | the bank's size |
| ``{prefix}RESET`` | int | writing 1 clears CHANGES, LAST and LOG (states are kept) |

``python -m sim_ioc.valves --prefix P --valves N`` serves a bank alone (the CS800 IOC mounts
one with ``cs800-sim-ioc --valves N``). It imports neither ophyd nor soldrv.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

__all__ = ["ValveBank", "main"]

LOG_CHARS = 4000
"""Size of the ``LOG`` waveform in characters (oldest lines are dropped)."""

_ATTR_RE = re.compile(r"^(v|da)(\d+)$")
_CLASSES: dict[tuple[int, int, int], type] = {}


def _bank_class(base: type, n_valves: int, n_dtoa: int) -> type:
    """Return (cached) the ValveBank subclass with the pvproperties of this size."""
    key = (id(base), n_valves, n_dtoa)
    if key in _CLASSES:
        return _CLASSES[key]
    attrs: dict[str, Any] = {}
    for n in range(1, n_valves + 1):
        attrs[f"v{n}"] = pvproperty(
            name=f"V{n}", value=0, dtype=int, doc=f"valve {n} command (1 open, 0 close)"
        )
        attrs[f"v{n}_rbv"] = pvproperty(
            name=f"V{n}_RBV", value=0, dtype=int, read_only=True, doc=f"valve {n} status"
        )
    for k in range(1, n_dtoa + 1):
        attrs[f"da{k}"] = pvproperty(
            name=f"DA{k}", value=0, dtype=int, doc=f"D/A channel {k} set point (0..65535)"
        )
        attrs[f"da{k}_rbv"] = pvproperty(
            name=f"DA{k}_RBV", value=0, dtype=int, read_only=True, doc=f"D/A {k} readback"
        )
    attrs["all_states"] = pvproperty(
        name="STATES",
        value=[0] * max(n_valves, 1),
        dtype=int,
        max_length=max(n_valves, 1),
        read_only=True,
        doc="every valve's readback state",
    )
    attrs["changes"] = pvproperty(name="CHANGES", value=0, dtype=int, read_only=True)
    attrs["last"] = pvproperty(
        name="LAST", value="", dtype=ChannelType.STRING, read_only=True, doc="last command"
    )
    attrs["log"] = pvproperty(
        name="LOG",
        value="",
        dtype=ChannelType.CHAR,
        max_length=LOG_CHARS,
        read_only=True,
        doc="recent commands, one per line",
    )
    attrs["nvalves"] = pvproperty(name="NVALVES", value=n_valves, dtype=int, read_only=True)
    attrs["ndtoa"] = pvproperty(name="NDTOA", value=n_dtoa, dtype=int, read_only=True)
    attrs["reset"] = pvproperty(name="RESET", value=0, dtype=int, doc="1 clears the log")
    attrs["_sized"] = True
    attrs["__module__"] = __name__
    cls = type(f"ValveBank{n_valves}x{n_dtoa}", (base,), attrs)
    _CLASSES[key] = cls
    return cls


class ValveBank(PVGroup):
    """A bank of ``n_valves`` solenoid valves and ``n_dtoa`` D/A channels (see module doc).

    Parameters
    ----------
    prefix : str
        PV prefix, e.g. ``"sim:VB:"``.
    n_valves : int
        Number of valves, 1..1024 (ValueError otherwise).
    n_dtoa : int, optional
        Number of D/A channels, 0..256 (ValueError otherwise).
    rbv_delay : float, optional
        Seconds between a command and its readback (default 0: at once).

    Notes
    -----
    A put of a value other than 0/1 to a valve, or outside 0..65535 to a D/A channel, is
    refused with an error the CA client sees; the bank keeps serving.
    """

    def __new__(cls, prefix: str, n_valves: int, n_dtoa: int = 8, **kwargs: Any) -> ValveBank:
        """Build the subclass holding this bank's PVs (cached per size)."""
        if not isinstance(n_valves, int) or not 1 <= n_valves <= 1024:
            raise ValueError(f"n_valves must be an integer 1..1024, got {n_valves!r}")
        if not isinstance(n_dtoa, int) or not 0 <= n_dtoa <= 256:
            raise ValueError(f"n_dtoa must be an integer 0..256, got {n_dtoa!r}")
        sub = cls if "_sized" in cls.__dict__ else _bank_class(cls, n_valves, n_dtoa)
        return super().__new__(sub)

    def __init__(
        self, prefix: str, n_valves: int, n_dtoa: int = 8, *, rbv_delay: float = 0.0, **kw: Any
    ) -> None:
        """Create the PVs; see the class docstring."""
        super().__init__(prefix, **kw)
        self.n_valves = n_valves
        self.n_dtoa = n_dtoa
        self.rbv_delay = float(rbv_delay)
        self.valve_states = [0] * n_valves
        self.log_lines: list[str] = []
        self.n_changes = 0

    async def group_write(self, instance: Any, value: Any) -> Any:
        """Handle a put to a valve, a D/A channel or RESET (pvproperties without putters)."""
        attr = instance.pvspec.attr
        m = _ATTR_RE.match(attr)
        if attr == "reset":
            if value:
                self.log_lines.clear()
                self.n_changes = 0
                await self.changes.write(0)
                await self.last.write("")
                await self.log.write("")
            return 0
        if m and m.group(1) == "v":
            n = int(m.group(2))
            if value not in (0, 1):
                raise ValueError(f"valve V{n} accepts 0 (close) or 1 (open), not {value}")
            await self._record(f"V{n}={value}")
            if self.rbv_delay > 0:
                asyncio.get_running_loop().call_later(
                    self.rbv_delay, lambda: asyncio.ensure_future(self._valve_rbv(n, value))
                )
            else:
                await self._valve_rbv(n, value)
            return value
        if m and m.group(1) == "da":
            k = int(m.group(2))
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"D/A channel DA{k} accepts 0..65535, not {value}")
            await self._record(f"DA{k}={value}")
            await getattr(self, f"da{k}_rbv").write(value)
            return value
        return value

    async def _valve_rbv(self, n: int, value: int) -> None:
        self.valve_states[n - 1] = value
        await getattr(self, f"v{n}_rbv").write(value)
        await self.all_states.write(list(self.valve_states))

    async def _record(self, text: str) -> None:
        self.n_changes += 1
        self.log_lines.append(f"{time.time():.6f} {text}")
        blob = "\n".join(self.log_lines)
        while len(blob) >= LOG_CHARS and self.log_lines:
            self.log_lines.pop(0)
            blob = "\n".join(self.log_lines)
        await self.changes.write(self.n_changes)
        await self.last.write(text)
        await self.log.write(blob)


def main(argv: list[str] | None = None) -> None:
    """Serve a valve bank alone: ``python -m sim_ioc.valves --prefix P --valves N``."""
    from caproto import get_server_address_list
    from caproto.server import run

    ap = argparse.ArgumentParser(description="Simulated solenoid valve bank (caproto IOC)")
    ap.add_argument("--prefix", default="sim:VB:", help="PV prefix (default sim:VB:)")
    ap.add_argument("--valves", type=int, default=8, help="number of valves (default 8)")
    ap.add_argument("--dtoa", type=int, default=8, help="number of D/A channels (default 8)")
    ap.add_argument("--rbv-delay", type=float, default=0.0, help="readback delay, seconds")
    args = ap.parse_args(argv)
    try:
        bank = ValveBank(
            prefix=args.prefix, n_valves=args.valves, n_dtoa=args.dtoa, rbv_delay=args.rbv_delay
        )
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{args.prefix}: simulated valve bank, {args.valves} valves, {args.dtoa} D/A", flush=True)
    run(
        bank.pvdb,
        module_name="sim_ioc.valves",
        interfaces=get_server_address_list(),
        log_pv_names=False,
    )


if __name__ == "__main__":
    main()
