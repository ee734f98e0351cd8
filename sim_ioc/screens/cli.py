"""``cs800-screen``: open the PyDM operator screens, check their channels, or photograph them.

::

    cs800-screen xxx:CS0:                      # the screens of one controller ($(P)$(R))
    cs800-screen xxx:CS0: xxx:CS1: --valves xxx:VB:
    cs800-screen --check xxx:CS0: --valves xxx:VB: --timeout 20
    cs800-screen --screenshots docs/images xxx:CS0: --valves xxx:VB:

``--check`` builds every screen without a display (``QT_QPA_PLATFORM=offscreen``), waits up
to ``--timeout`` seconds for all their Channel Access channels, prints ``N of M channels
connected`` and exits 0 only if all are (1 otherwise, naming the missing ones on stderr).
A channel whose connection PyDM lost in a race (see :mod:`sim_ioc.screens.connection_repair`)
counts once the window has repaired it, as a user would see it; the repairs are named on stderr.
``--screenshots DIR`` also waits for the channels, lets the strip chart fill for
``--settle`` seconds and writes one PNG per screen into DIR.

PyDM reaches the IOC with its ``ca`` plugin: pyepics by default, caproto with
``PYDM_EPICS_LIB=caproto``; both follow the usual ``EPICS_CA_*`` variables.
Needs the ``screens`` extra; without it, says so in one sentence and exits 2.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ophyd_cs800.version import add_version_option
from sim_ioc.cli_args import bounded_positive

#: Default seconds ``--check`` waits for the channels.
DEFAULT_TIMEOUT = 15.0
#: Default seconds the screenshots wait for the strip chart to fill.
DEFAULT_SETTLE = 8.0
#: Window size of the screenshots (pixels).
SCREENSHOT_SIZE = (1000, 760)
INSTALL_HINT = "pip install 'ophyd-cs800[screens]'"


def _prefix(text: str) -> str:
    if not text.endswith(":") or len(text) < 2:
        raise argparse.ArgumentTypeError(
            f"a prefix ends with ':' (the controller's $(P)$(R), e.g. xxx:CS0:), got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``cs800-screen``."""
    parser = argparse.ArgumentParser(
        prog="cs800-screen",
        description="PyDM operator screens of CS800 controllers (and a simulated valve bank).")
    parser.add_argument("prefixes", nargs="+", type=_prefix, metavar="PREFIX",
                        help="a controller's $(P)$(R), e.g. xxx:CS0: (as printed by cs800-ioc)")
    parser.add_argument("--valves", type=_prefix, metavar="PREFIX",
                        help="also show the valve bank at PREFIX, e.g. sim:VB:")
    parser.add_argument("--check", action="store_true",
                        help="no window: wait for every channel, print how many connected, "
                        "exit non-zero if any did not")
    parser.add_argument("--timeout", type=bounded_positive("timeout", 3600), metavar="S",
                        default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the channels (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--screenshots", type=Path, metavar="DIR",
                        help="no window: write a PNG of each screen into DIR")
    parser.add_argument("--settle", type=bounded_positive("settle", 600), metavar="S",
                        default=DEFAULT_SETTLE,
                        help="seconds the strip chart fills before screenshots "
                        f"(default {DEFAULT_SETTLE:g})")
    return add_version_option(parser)


def _valve_size(prefix: str, timeout: float) -> tuple[int, int]:
    """Read ``NVALVES`` and ``NDTOA`` of the bank at ``prefix`` (caproto, bounded)."""
    from caproto.sync.client import read

    try:
        return tuple(int(read(f"{prefix}{n}", timeout=timeout, repeater=False).data[0])
                     for n in ("NVALVES", "NDTOA"))  # type: ignore[return-value]
    except Exception as exc:  # noqa: BLE001 (CA timeout, bad reply)
        raise SystemExit(f"cs800-screen: the valve bank {prefix} did not answer "
                         f"({prefix}NVALVES: {exc or type(exc).__name__})") from None


def _connected(address: str) -> bool:
    from sim_ioc.screens.connection_repair import plugin_connection

    connection = plugin_connection(address)
    return bool(connection is not None and connection.connected)


def wait_connected(app, addresses: Sequence[str], timeout: float) -> list[str]:
    """Process Qt events until every address is connected or ``timeout`` s pass.

    Returns the addresses still not connected (empty: all are).
    """
    deadline = time.monotonic() + timeout
    missing = list(addresses)
    while True:
        app.processEvents()
        missing = [a for a in missing if not _connected(a)]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.02)


def describe_missing(window, missing: Sequence[str], shown: int = 5) -> str:
    """``missing`` addresses by screen prefix, e.g. ``x:CS0: 64 of 64 (CTRLNUM, VER, ...)``."""
    parts = []
    for prefix in dict.fromkeys(s.prefix for s in window.screens):
        used = [a for s in window.screens if s.prefix == prefix for a in s.addresses]
        used = list(dict.fromkeys(used))
        lost = [a.removeprefix(f"ca://{prefix}") for a in used if a in missing]
        if lost:
            more = ", ..." if len(lost) > shown else ""
            parts.append(f"{prefix} {len(lost)} of {len(used)} ({', '.join(lost[:shown])}{more})")
    return "; ".join(parts)


def _process_for(app, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def screenshot_name(window, index: int) -> str:
    """File name of screen ``index``'s PNG, e.g. ``cs800-overview.png``."""
    screen = window.screens[index]
    stem = re.sub(r"[^a-z0-9]+", "-", screen.name.lower()).strip("-")
    if len(window.prefixes) > 1 and screen.prefix in window.prefixes:
        stem = f"{re.sub(r'[^A-Za-z0-9]+', '-', screen.prefix).strip('-')}-{stem}"
    return f"cs800-{stem}.png"


def take_screenshots(app, window, directory: Path) -> list[Path]:
    """Show each tab in turn and save it as a PNG in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(window.count()):
        window.setCurrentIndex(index)
        _process_for(app, 0.5)
        path = directory / screenshot_name(window, index)
        if not window.grab().save(str(path), "PNG"):
            raise OSError(f"could not write {path}")
        written.append(path)
    return written


def _exec(app, window) -> int:
    """Run the Qt event loop until the windows close, SIGINT (Ctrl-C) or SIGTERM."""
    from qtpy.QtCore import QTimer

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: app.quit())
    ticker = QTimer()  # Python runs signal handlers only between bytecodes: wake it up
    ticker.timeout.connect(lambda: None)
    ticker.start(200)
    print(f"cs800-screen: {window.windowTitle()} (close the window or Ctrl-C to quit)",
          flush=True)
    return app.exec_()


def main(argv: Sequence[str] | None = None) -> int:
    """``cs800-screen``: see the module docstring."""
    args = build_parser().parse_args(argv)
    headless = args.check or args.screenshots is not None
    if headless:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from qtpy.QtWidgets import QApplication

        from sim_ioc.screens.displays import ScreenWindow
    except ImportError as exc:
        print(f"cs800-screen needs PyDM and a Qt binding, which are not installed ({exc}): "
              f"{INSTALL_HINT}", file=sys.stderr)
        return 2
    valves = None
    if args.valves:
        valves = (args.valves, *_valve_size(args.valves, min(args.timeout, 10.0)))
    app = QApplication.instance() or QApplication(["cs800-screen"])
    window = ScreenWindow(args.prefixes, valves)
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    if not headless:
        return _exec(app, window)
    addresses = window.addresses
    missing = wait_connected(app, addresses, args.timeout)
    print(f"{len(addresses) - len(missing)} of {len(addresses)} channels connected", flush=True)
    if window.repair.repaired:
        print(f"cs800-screen: re-sent the connection state PyDM had lost for "
              f"{', '.join(dict.fromkeys(window.repair.repaired))}", file=sys.stderr, flush=True)
    if missing:
        print(f"cs800-screen: not connected after {args.timeout:g} s: "
              f"{describe_missing(window, missing)}", file=sys.stderr)
    if args.screenshots is not None:
        _process_for(app, args.settle)
        for path in take_screenshots(app, window, args.screenshots):
            print(f"wrote {path}", flush=True)
    window.close()
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
