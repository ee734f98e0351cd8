"""The package's one device logger, and what a command's bytes mean in a log line.

Every CS800 device logs on ``logging.getLogger("ophyd_cs800.device.<name>")`` (a child of
``ophyd_cs800.device``, so one handler or level on ``ophyd_cs800`` covers them all): each
command sent or re-sent with its meaning (``"RAMP 150.00 K at 360 K/h"``), acceptance, the end
of each command, alarm changes (WARNING from Oxford level 2, see :mod:`ophyd_cs800.alarms`),
and staleness. Pure: no ophyd, no Channel Access.
"""

from __future__ import annotations

import logging

from ophyd_cs800.protocol import Command, CommandId, ck_to_kelvin

#: Parent of every device logger.
DEVICE_LOGGER = "ophyd_cs800.device"


def device_logger(name: str) -> logging.Logger:
    """Return the logger of the device called ``name``: ``ophyd_cs800.device.<name>``."""
    return logging.getLogger(f"{DEVICE_LOGGER}.{name}")


def command_meaning(cmd: Command) -> str:
    """Return what a command datagram asks, in words.

    ``"RAMP 150.00 K at 360 K/h"``, ``"PLAT 5 min"``.
    """
    c, p1, p2 = cmd.command, cmd.param1, cmd.param2
    if c is CommandId.RAMP:
        return f"RAMP {ck_to_kelvin(p2):.2f} K at {p1} K/h"
    if c is CommandId.COOL:
        return f"COOL {ck_to_kelvin(p1):.2f} K (as fast as possible)"
    if c is CommandId.PLAT:
        return f"PLAT {p1} min"
    if c is CommandId.END:
        return f"END at {p1} K/h to 300 K, then shut down"
    if c is CommandId.TURBO:
        return f"TURBO {'on' if p1 else 'off'}"
    return c.name


__all__ = ["DEVICE_LOGGER", "command_meaning", "device_logger"]
