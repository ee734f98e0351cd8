"""The package version, and the ``--version`` option every command of the package has.

One helper for all entry points (``cs800-*``, ``solfmt``, ``soldump``, ``soldrv``): the
version comes from the installed distribution's metadata (:mod:`importlib.metadata`), so it
is the one ``pip`` shows. Nothing here imports ophyd, bluesky or caproto, and
:mod:`importlib.metadata` is imported only when a version is asked for, so a command's start
time does not grow.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

#: Name of the distribution on PyPI (``pip install ophyd-cs800``).
DISTRIBUTION = "ophyd-cs800"


def package_version() -> str:
    """Return the installed version of ``ophyd-cs800`` (e.g. ``"0.1.0"``).

    Falls back to ``ophyd_cs800.__version__`` when the package runs from a source tree that
    was never installed (no distribution metadata).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        from ophyd_cs800 import __version__

        return __version__


def version_line(prog: str) -> str:
    """Return what ``PROG --version`` prints: ``"PROG (ophyd-cs800) 0.1.0"``."""
    return f"{prog} ({DISTRIBUTION}) {package_version()}"


class _VersionAction(argparse.Action):
    """argparse action: print :func:`version_line` for the parser's ``prog`` and exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0,
                         help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_line(parser.prog))
        parser.exit()


def add_version_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--version`` (print the package version, exit 0) to ``parser``; return it."""
    parser.add_argument("--version", action=_VersionAction,
                        help="print the ophyd-cs800 version and exit")
    return parser


def print_version_if_asked(prog: str, argv: Sequence[str]) -> bool:
    """For hand-written command lines: print the version line if ``--version`` is in ``argv``.

    Returns True when it printed (the caller then exits with status 0).
    """
    if "--version" not in argv:
        return False
    print(version_line(prog))
    return True
