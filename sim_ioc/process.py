"""Run the CS800 IOC as a subprocess on loopback: for tests, ``cs800-demo`` and benchmarks.

:class:`SimIocProcess` starts ``python -m sim_ioc.cli sim-ioc ...`` (the IOC with simulated
controllers) with a random prefix and its own free Channel Access port, waits until a PV
answers, and stops it by PID at exit::

    with SimIocProcess(controllers=2, speed=500) as ioc:
        os.environ.update(ioc.env)           # before the first CA client context is created
        read(ioc.controller_prefix(0) + "TEMP", repeater=False)

:class:`IocProcess` is the general form (any ``sim_ioc.cli`` arguments, e.g. ``ioc`` for the
real-hardware IOC pointed at test sockets). Output goes to a log file, never to a pipe.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def _parent_death_hook() -> Any:
    """Return a ``preexec_fn`` that makes the child get SIGTERM when this process dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``), and only when called from the main thread: the
    signal follows the *thread* that forked the child, so an IOC started from a worker thread
    would be killed when that thread ends. Elsewhere ``None``: the IOC is then stopped by
    :meth:`IocProcess.stop` only. Without it, an IOC whose parent was killed (a timed-out test
    or demo) would be left running, since it lives in its own session.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not sys.platform.startswith("linux") or not in_main_thread:
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


#: Seconds allowed for the IOC to exit after SIGINT, then after SIGTERM, before SIGKILL.
STOP_GRACE = 5.0
#: Ports :func:`free_port` draws from first: below the kernel's ephemeral range (32768 up on
#: Linux) and below the private status ports of ``sim_ioc.status_server`` (20000 up).
FREE_PORT_RANGE = (10000, 20000)
#: Default timeout of one Channel Access read or write (seconds). Generous: on a loaded shared
#: machine a search answer can take more than the 1-2 s usual in interactive use.
CA_TIMEOUT = 5.0
#: Searches :func:`ca_read` and :func:`ca_write` make, each from a new client socket, before a
#: PV that nobody answered is reported (see :func:`_search_retried`).
CA_SEARCH_ATTEMPTS = 3
#: Module whose ``search`` function raises the timeouts that :func:`_search_retried` retries.
_SYNC_CLIENT = "caproto.sync.client"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """Return a port that is free on 127.0.0.1 for both UDP and TCP right now.

    Channel Access uses the same number for its UDP search and TCP circuit ports, so both are
    checked. Another process may still take it before it is used; callers bind soon after.

    The port is drawn at random from ``FREE_PORT_RANGE``, below the kernel's ephemeral range, so
    that no socket bound to port 0 (every CA client's search socket, every TCP connection) can be
    handed the same number between this check and the bind, and so that a CA client of another
    process still searching a stopped IOC's port is not answered by a recycled one. Falls back
    to a kernel-chosen port if that range is full or overlaps the ephemeral range.
    """
    from sim_ioc.status_server import ephemeral_port_range

    low, high = FREE_PORT_RANGE
    if ephemeral_port_range()[0] >= high:
        for _ in range(100):
            port = _bind_both(random.randrange(low, high), kind)
            if port:
                return port
    for _ in range(50):
        port = _bind_both(0, kind)
        if port:
            return port
    raise RuntimeError("no free port found on 127.0.0.1 after 50 tries")


def _bind_both(port: int, kind: int) -> int | None:
    """Bind ``port`` (0: any) with ``kind`` then the other protocol; the port if both worked."""
    with socket.socket(socket.AF_INET, kind) as first:
        try:
            first.bind(("127.0.0.1", port))
        except OSError:
            return None
        port = first.getsockname()[1]
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as second:
            try:
                second.bind(("127.0.0.1", port))
            except OSError:
                return None
    return port


def loopback_ca_env(port: int, *extra_ports: int) -> dict[str, str]:
    """Return the EPICS environment for a CA server on 127.0.0.1:``port`` and its clients.

    Parameters
    ----------
    port : int
        The CA server port (UDP search and TCP circuit).
    *extra_ports : int
        More loopback CA servers the clients search too.

    Returns
    -------
    dict[str, str]
        ``EPICS_CA_*`` and ``EPICS_CAS_*`` variables: clients search ``127.0.0.1:port`` (and
        ``127.0.0.1:p`` for each of ``extra_ports``); the server binds 127.0.0.1 only and sends
        beacons to loopback only.
    """
    addr_list = " ".join(f"127.0.0.1:{p}" for p in (port, *extra_ports))
    return {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": addr_list,
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    }


def random_prefix(stem: str = "cs800") -> str:
    """Return a unique record-name prefix, e.g. ``cs800a1b2c3d4:``."""
    return f"{stem}{uuid.uuid4().hex[:8]}:"


class IocProcess:
    """A ``python -m sim_ioc.cli ARGS`` subprocess serving CA on its own loopback port.

    Parameters
    ----------
    args : Sequence[str]
        Arguments after ``python -m sim_ioc.cli`` (the prefix is added from ``prefix``;
        ``cs800-ioc`` gets ``--no-autosave`` unless ``--autosave DIR`` is given).
    prefix : str | None, optional
        Record-name prefix (default: a random one).
    ready_pv : str, optional
        PV (without the prefix) that must answer before :meth:`start` returns.
    ca_port : int | None, optional
        CA server port (default: a free one).
    log_path : str | os.PathLike[str] | None, optional
        File for the IOC's stdout and stderr (default: a new temporary file, deleted
        by :meth:`stop` when the IOC exited cleanly).
    startup_timeout : float, optional
        Seconds to wait for ``ready_pv``; ``RuntimeError`` (with the end of
        the log) if it does not answer in time or the process exits.
    flavor : str | None, optional
        ``"fixed"`` or ``"synapps"`` (adds ``--flavor``); None: the IOC's default
        (fixed). Kept in :attr:`flavor`.
    """

    def __init__(self, args: Sequence[str], *, prefix: str | None = None,
                 ready_pv: str = "CS:PORT", ca_port: int | None = None,
                 log_path: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 30.0, flavor: str | None = None) -> None:
        """Prepare the process (nothing runs until :meth:`start`)."""
        self.prefix = prefix or random_prefix()
        self.ca_port = ca_port or free_port()
        self.args = list(args)
        if self.args[:1] == ["ioc"] and not {"--autosave", "--no-autosave"} & set(self.args):
            self.args.append("--no-autosave")  # a test IOC never writes the user's autosave
        self.flavor = flavor or "fixed"
        if flavor is not None:
            self.args += ["--flavor", flavor]
        self.ready_pv = ready_pv
        self.startup_timeout = startup_timeout
        self.env: dict[str, str] = loopback_ca_env(self.ca_port)
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="cs800-ioc-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """PID of the IOC process (None before start)."""
        return None if self._proc is None else self._proc.pid

    @property
    def command(self) -> list[str]:
        """The command line that starts the IOC."""
        return [sys.executable, "-m", "sim_ioc.cli", *self.args, "--prefix", self.prefix]

    def use_ca_port(self, port: int) -> None:
        """Serve Channel Access on ``port`` instead of the one chosen (before :meth:`start`)."""
        if self._proc is not None:
            raise RuntimeError("the IOC process is already started")
        self.ca_port = port
        self.env = loopback_ca_env(port)

    def controller_prefix(self, i: int = 0) -> str:
        """Prefix of controller group ``i``: ``f"{prefix}CS{i}:"``."""
        return f"{self.prefix}CS{i}:"

    def log_text(self, tail: int = 4000) -> str:
        """Return the last ``tail`` characters of the IOC's log."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def read(self, pv: str, *, timeout: float = CA_TIMEOUT, **kwargs: Any):
        """``caproto.sync.client.read`` of ``pv`` against this IOC (its env, no repeater)."""
        return ca_read(pv, self.env, timeout=timeout, **kwargs)

    def write(self, pv: str, value: Any, *, timeout: float = CA_TIMEOUT, **kwargs: Any):
        """``caproto.sync.client.write`` of ``pv`` (with put completion) against this IOC."""
        return ca_write(pv, value, self.env, timeout=timeout, **kwargs)

    def start(self) -> IocProcess:
        """Start the IOC and wait until :attr:`ready_pv` answers (bounded).

        Returns
        -------
        IocProcess
            This process, started.

        Raises
        ------
        RuntimeError
            If it is already started, exits during startup, or ``ready_pv`` does not answer
            within ``startup_timeout`` s (the message holds the end of the log).
        """
        if self._proc is not None:
            raise RuntimeError("the IOC process is already started")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True,
                                          preexec_fn=_parent_death_hook())
        deadline = time.monotonic() + self.startup_timeout
        pv = self.prefix + self.ready_pv
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"the IOC exited during startup; log {self.log_path}:\n"
                                   f"{self.log_text()}")
            try:  # one search per pass: the loop itself retries, bounded by the deadline
                self.read(pv, timeout=1.0, search_attempts=1)
                return self
            except Exception as exc:  # noqa: BLE001 (not up yet)
                last_error = exc
        self._own_log = False  # keep the log for the post-mortem
        self.stop()
        raise RuntimeError(f"{pv} did not answer within {self.startup_timeout:g} s "
                           f"({last_error}); log {self.log_path}:\n{self.log_text()}")

    def stop(self) -> int | None:
        """Stop the IOC by PID: SIGINT, then SIGTERM, then SIGKILL (each bounded).

        Safe to call twice.

        Returns
        -------
        int or None
            The exit status (None if it was not running).
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                continue
        status = proc.wait(timeout=STOP_GRACE)
        if status == 0 and self._own_log:
            self.log_path.unlink(missing_ok=True)
        return status

    def __enter__(self) -> IocProcess:
        """Start on entry."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on exit."""
        self.stop()


class SimIocProcess(IocProcess):
    """``cs800-sim-ioc`` as a subprocess: the IOC with ``controllers`` simulated controllers.

    Parameters
    ----------
    prefix : str | None, optional
        Record-name prefix (default: random); controllers at ``{prefix}CS0:`` ...
    controllers : int, optional
        Number of simulated controllers (411, 412, ...).
    speed : float, optional
        Simulated seconds per wall second.
    valves : int, optional
        N > 0 also serves the simulated valve bank at ``{prefix}VB:``.
    stale_timeout : float | None, optional
        Seconds before silent controllers' PVs go INVALID (None: IOC default).
    max_rate_hz : float | None, optional
        Simulator datagrams per wall second per controller (None: the default, 5).
    flavor : str | None, optional
        ``"fixed"`` (None: the default) or ``"synapps"``.
    enable_comms : bool, optional
        Synapps flavour: set DISABLE to Enabled after start-up, as a beamline
        IOC whose autosave restored it (default True); False keeps the C IOC's boot state.
        ca_port, log_path, startup_timeout: as :class:`IocProcess`.
    extra_args : Sequence[str], optional
        More ``cs800-sim-ioc`` arguments.
    """

    def __init__(self, *, prefix: str | None = None, controllers: int = 1, speed: float = 100.0,
                 valves: int = 0, stale_timeout: float | None = None, ca_port: int | None = None,
                 extra_args: Sequence[str] = (), log_path: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 30.0, max_rate_hz: float | None = None,
                 flavor: str | None = None, enable_comms: bool = True) -> None:
        """Prepare the process; see the class docstring."""
        args = ["sim-ioc", "--controllers", str(controllers), "--speed", repr(float(speed))]
        if valves:
            args += ["--valves", str(valves)]
        if stale_timeout is not None:
            args += ["--stale-timeout", repr(float(stale_timeout))]
        if max_rate_hz is not None:
            args += ["--max-rate-hz", repr(float(max_rate_hz))]
        if flavor == "synapps" and enable_comms:
            args += ["--enable-comms"]
        args += list(extra_args)
        super().__init__(args, prefix=prefix, ready_pv="CS0:CTRLNUM", ca_port=ca_port,
                         log_path=log_path, startup_timeout=startup_timeout, flavor=flavor)
        self.controllers = controllers
        self.speed = speed
        self.valves = valves
        self.max_rate_hz = max_rate_hz

    def silence(self, i: int = 0, silent: bool = True) -> None:
        """Stop (``silent``) or resume the status datagrams of simulated controller ``i``.

        Writes ``SIM:BROADCAST`` (Off/On) with put completion: when it returns, the simulator
        sends no further datagram (one already queued in the IOC may still be decoded: up to
        ~9 s of backlog in the synapps flavour if the rate exceeded 10/s). Works in both
        flavours and whatever DISABLE reads.
        """
        self.write(self.controller_prefix(i) + "SIM:BROADCAST", "Off" if silent else "On")


def ca_read(pv: str, env: Mapping[str, str], *, timeout: float = CA_TIMEOUT,
            search_attempts: int = CA_SEARCH_ATTEMPTS, **kwargs: Any):
    """``caproto.sync.client.read(pv, repeater=False)`` with ``env`` in force during the call.

    caproto's sync client reads ``EPICS_CA_ADDR_LIST`` from ``os.environ`` at every search, so
    the environment is swapped in for the call and restored after it (not thread-safe with
    other code changing ``os.environ`` at the same moment). A search that times out is tried
    again from a new socket, ``search_attempts`` times in all (:func:`_search_retried`), so a PV
    nobody serves takes up to that many ``timeout`` s to report.
    """
    from caproto.sync.client import read

    with _environ(env):
        return _search_retried(lambda: read(pv, timeout=timeout, repeater=False, **kwargs),
                               search_attempts)


def ca_write(pv: str, value: Any, env: Mapping[str, str], *, timeout: float = CA_TIMEOUT,
             notify: bool = True, search_attempts: int = CA_SEARCH_ATTEMPTS, **kwargs: Any):
    """``caproto.sync.client.write(pv, value, notify=True)`` with ``env`` in force.

    A put the IOC refuses raises ``caproto.ErrorResponseReceived`` carrying the IOC's message.
    Search timeouts are retried as in :func:`ca_read` (nothing has been written then).
    """
    from caproto.sync.client import write

    with _environ(env):
        return _search_retried(
            lambda: write(pv, value, timeout=timeout, notify=notify, repeater=False, **kwargs),
            search_attempts)


def _search_retried(call: Callable[[], Any], attempts: int = CA_SEARCH_ATTEMPTS) -> Any:
    """Run a caproto sync ``call``; if its CA *search* timed out, run it again (``attempts``).

    Each caproto sync call searches from a new UDP socket with ``SO_REUSEADDR`` bound to port
    0, and Linux may give such a socket a port another ``SO_REUSEADDR`` socket already holds
    (another client's, a beacon socket): the search reply is then delivered to that socket and
    this search times out however long it waits. A new call gets a new port. Only a timeout
    raised inside the search is retried: nothing has been written at that point. Any other
    error, and the last search timeout, propagate; the last one names the attempts.
    """
    from caproto import CaprotoTimeoutError

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except CaprotoTimeoutError as exc:
            if not _raised_in_search(exc):
                raise
            if attempt == attempts:
                raise CaprotoTimeoutError(
                    f"{exc} ({attempts} searches, each from a new client socket)") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _raised_in_search(exc: BaseException) -> bool:
    """Return True if ``exc`` was raised inside ``caproto.sync.client.search``."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "search" and tb.tb_frame.f_globals.get("__name__") == _SYNC_CLIENT:
            return True
        tb = tb.tb_next
    return False



class _environ:
    """Context manager: set variables in ``os.environ``, restore the previous values after.

    While it lasts, another client of this process that reads ``EPICS_CA_ADDR_LIST`` at each
    search (caproto's threading client, under ophyd) searches only ``env``'s addresses; it
    searches again later, so that costs it a retry, not a connection.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
