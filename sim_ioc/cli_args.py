"""argparse value types shared by the command lines of ``sim_ioc`` (cs800-ioc, cs800-sim, ...).

Each raises ``argparse.ArgumentTypeError`` with a sentence naming what is allowed, which
argparse prints as the one-line error of exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def port(text: str) -> int:
    """Return a UDP/TCP port number 0..65535 (0 = a free port)."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535 (0 = a free port), got {text!r}")
    return int(text)


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` with PORT 1..65535, as a ``(host, port)`` tuple."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with PORT 1..65535, got {text!r}")
    return host, int(port_text)


def bounded_positive(what: str, maximum: float = math.inf,
                     noun: str = "a number") -> Callable[[str], float]:
    """Return a type for a finite number > 0 and <= ``maximum``.

    The error names ``what`` and the range, e.g. ``speed must be a number > 0 and <= 100000, got
    'x'``.
    """
    limit = "" if math.isinf(maximum) else f" and <= {maximum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0.0 < value <= maximum and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be {noun} > 0{limit}, got {text!r}")
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names the type in some messages
    return parse
