"""Serve simulated CS800 controllers over real UDP (asyncio): status out, commands in.

:class:`SimulatorServer` gives every :class:`~sim_ioc.controller.SimulatedCS800` its own command
socket (a real controller has its own IP; on loopback each gets its own port) and a status loop
that sends one status datagram per *simulated* second to ``status_to``, with the wall-clock rate
capped (``max_rate_hz`` per controller) so a 1000x simulation does not flood the host. Status
datagrams leave from the controller's command socket, so their source address is the address to
send commands to. With ``id_to`` set, every controller also announces itself there once per
*wall* second with its identification datagram (name and MAC, port 30303 on real hardware),
from the same socket. Nothing here blocks: the server embeds in any running asyncio loop (the
caproto IOC runs it in its own) and :mod:`sim_ioc.sim_cli` runs it standalone.

Example::

    clock = ScaledClock(speed=100)
    server = SimulatorServer([SimulatedCS800(411, clock)], status_to=("127.0.0.1", 30304))
    await server.start()
    print(server.command_ports)        # {411: 40123}
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
from collections.abc import Mapping, Sequence

from sim_ioc.controller import SimulatedCS800

log = logging.getLogger(__name__)

#: Simulated seconds between two status datagrams of one controller (the real unit: 1 s).
STATUS_PERIOD_S = 1.0
#: Default wall-clock cap on status datagrams per second per controller: one the synApps C IOC
#: (10 decodes per second per status port) keeps up with; a real controller sends 1 per second.
DEFAULT_MAX_RATE_HZ = 5.0
#: Wall-clock seconds between two identification datagrams of one controller (an announcement:
#: not scaled by the simulation speed).
ID_PERIOD_S = 1.0
#: Longest wall-clock sleep of a status loop, seconds (bounds the reaction to speed changes).
_MAX_WALL_WAIT_S = 0.25


def _check_address(address: tuple[str, int], what: str) -> tuple[str, int]:
    """Return ``(host, port)`` or raise ``ValueError`` with the expected form."""
    try:
        host, port = address
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a (host, port) pair, got {address!r}") from None
    if not isinstance(host, str) or not host or not isinstance(port, int) or not (
        1 <= port <= 65535
    ):
        raise ValueError(f"{what} must be (host str, port 1..65535), got {address!r}")
    return host, port


def _send(transport: asyncio.DatagramTransport, data: bytes, to: tuple[str, int], cid: int,
          what: str) -> bool:
    """Send one datagram of controller ``cid``.

    On ``OSError`` (e.g. an unresolvable host) log a warning naming ``what`` and return False, so
    the server keeps running.
    """
    try:
        transport.sendto(data, to)
    except OSError as exc:
        log.warning("controller %d: cannot send %s to %s: %s", cid, what, to, exc)
        return False
    return True


class _CommandProtocol(asyncio.DatagramProtocol):
    """Feeds every datagram on one controller's command socket to that controller."""

    def __init__(self, server: SimulatorServer, controller: SimulatedCS800) -> None:
        self._server = server
        self._controller = controller

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        ctl = self._controller
        if ctl.should_drop():
            self._server.commands_dropped[ctl.cid] += 1
            return
        try:
            accepted = ctl.handle_command(data)
        except Exception:  # the model never raises; a bug there must not stop the server
            log.exception("controller %d failed on a command from %s", ctl.cid, addr)
            return
        if not accepted:
            log.debug("controller %d ignored %s from %s: %s", ctl.cid, data.hex(" "), addr,
                      ctl.last_rejection)

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a status destination nobody listens on: harmless.
        log.debug("UDP error on a simulator socket: %s", exc)


class SimulatorServer:
    """UDP front end for one or more simulated controllers sharing an asyncio loop.

    Parameters
    ----------
    controllers : Sequence[SimulatedCS800]
        The controllers to serve (at least one; controller numbers unique).
    status_to : tuple[str, int], optional
        ``(host, port)`` the status datagrams go to; may be changed at run time
        through :attr:`status_to`.
    command_host : str, optional
        Local address the command sockets bind to.
    command_port : int, optional
        Command port of the first controller; 0 picks free ports. Without
        ``command_ports``, controller ``i`` binds ``command_port + i`` (or a free port).
    command_ports : Mapping[int, int] | None, optional
        Explicit ``{cid: port}`` (0 = free port) for some or all controllers;
        overrides ``command_port`` for those.
    broadcast : bool, optional
        Set ``SO_BROADCAST`` so ``status_to`` may be a broadcast address.
    max_rate_hz : float, optional
        Wall-clock cap on status datagrams per second per controller (> 0).
    id_to : tuple[str, int] | None, optional
        ``(host, port)`` the identification datagrams go to, once per wall second per
        controller (:data:`ID_PERIOD_S`); ``None`` (default): none are sent.

    Notes
    -----
    Bad arguments raise ``ValueError``; a port that cannot be bound makes :meth:`start` raise
    ``OSError`` naming the controller and port (nothing stays bound).
    """

    def __init__(
        self,
        controllers: Sequence[SimulatedCS800],
        *,
        status_to: tuple[str, int] = ("127.0.0.1", 30304),
        command_host: str = "127.0.0.1",
        command_port: int = 0,
        command_ports: Mapping[int, int] | None = None,
        broadcast: bool = False,
        max_rate_hz: float = DEFAULT_MAX_RATE_HZ,
        id_to: tuple[str, int] | None = None,
    ) -> None:
        """Prepare the server (nothing is bound until :meth:`start`)."""
        self.controllers = list(controllers)
        if not self.controllers:
            raise ValueError("SimulatorServer needs at least one controller")
        cids = [c.cid for c in self.controllers]
        if len(set(cids)) != len(cids):
            raise ValueError(f"controller numbers must be unique, got {cids}")
        if not math.isfinite(max_rate_hz) or max_rate_hz <= 0:
            raise ValueError(f"max_rate_hz must be a positive number, got {max_rate_hz!r}")
        if not 0 <= command_port <= 65535:
            raise ValueError(f"command_port must be 0..65535, got {command_port!r}")
        extra = set(command_ports or {}) - set(cids)
        if extra:
            raise ValueError(f"command_ports names unknown controllers {sorted(extra)}")
        self._requested: dict[int, int] = {}
        for i, cid in enumerate(cids):
            port = (command_ports or {}).get(cid, command_port + i if command_port else 0)
            if not 0 <= port <= 65535:
                raise ValueError(f"command port for controller {cid} must be 0..65535: {port}")
            self._requested[cid] = port
        self._status_to = _check_address(status_to, "status_to")
        self.id_to = None if id_to is None else _check_address(id_to, "id_to")
        self.command_host = command_host
        self.broadcast = bool(broadcast)
        self.max_rate_hz = float(max_rate_hz)
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._ports: dict[int, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: Per-controller counters: status datagrams sent / lost to drop_fraction, commands lost.
        self.status_sent: dict[int, int] = dict.fromkeys(cids, 0)
        self.status_dropped: dict[int, int] = dict.fromkeys(cids, 0)
        self.commands_dropped: dict[int, int] = dict.fromkeys(cids, 0)
        #: Per-controller count of identification datagrams sent (only with ``id_to``).
        self.id_sent: dict[int, int] = dict.fromkeys(cids, 0)

    # ---------------------------------------------------------------- properties
    @property
    def status_to(self) -> tuple[str, int]:
        """Destination ``(host, port)`` of the status datagrams; settable while running."""
        return self._status_to

    @status_to.setter
    def status_to(self, address: tuple[str, int]) -> None:
        self._status_to = _check_address(address, "status_to")

    @property
    def command_ports(self) -> dict[int, int]:
        """``{cid: port}`` actually bound (the requested ports before :meth:`start`)."""
        return dict(self._ports) if self._ports else dict(self._requested)

    @property
    def command_port(self) -> int:
        """The first controller's command port (bound port once started)."""
        return self.command_ports[self.controllers[0].cid]

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return bool(self._transports)

    # ---------------------------------------------------------------- life cycle
    async def start(self) -> None:
        """Bind every command socket and start the status loops in the running loop.

        Raises ``RuntimeError`` if already running, ``OSError`` if a port cannot be bound.
        """
        if self._transports:
            raise RuntimeError("SimulatorServer is already running")
        loop = asyncio.get_running_loop()
        try:
            for ctl in self.controllers:
                sock = self._bind(ctl.cid)
                transport, _ = await loop.create_datagram_endpoint(
                    functools.partial(_CommandProtocol, self, ctl), sock=sock
                )
                self._transports[ctl.cid] = transport
                self._ports[ctl.cid] = sock.getsockname()[1]
        except BaseException:
            await self.stop()
            raise
        self._tasks = [
            loop.create_task(self._status_loop(ctl), name=f"cs800-status-{ctl.cid}")
            for ctl in self.controllers
        ]
        if self.id_to is not None:
            self._tasks += [
                loop.create_task(self._id_loop(ctl), name=f"cs800-id-{ctl.cid}")
                for ctl in self.controllers
            ]

    def _bind(self, cid: int) -> socket.socket:
        port = self._requested[cid]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind((self.command_host, port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"cannot bind the command port {self.command_host}:{port} of controller "
                f"{cid}: {exc.strerror}",
            ) from exc
        return sock

    async def stop(self) -> None:
        """Stop the status loops and close every socket. Safe to call more than once."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        transports, self._transports = self._transports, {}
        for transport in transports.values():
            transport.close()
        self._ports = {}

    async def __aenter__(self) -> SimulatorServer:
        """Start on entry of ``async with``."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop on exit of ``async with``."""
        await self.stop()

    # ---------------------------------------------------------------- status loop
    def send_status(self, ctl: SimulatedCS800) -> bool:
        """Advance ``ctl`` and send one status datagram now; return True if one was sent.

        Nothing is sent when the controller is not broadcasting, when the datagram is lost to
        its ``drop_fraction``, or when the server is not running.
        """
        transport = self._transports.get(ctl.cid)
        ctl.advance()
        if transport is None or not ctl.broadcasting:
            return False
        if ctl.should_drop():
            self.status_dropped[ctl.cid] += 1
            return False
        if not _send(transport, ctl.status_datagram(), self._status_to, ctl.cid, "status"):
            return False
        self.status_sent[ctl.cid] += 1
        return True

    async def _status_loop(self, ctl: SimulatedCS800) -> None:
        """One datagram per simulated second, at most ``max_rate_hz`` per wall second."""
        loop = asyncio.get_running_loop()
        clock = ctl.clock
        next_sim = clock.now()
        last_wall = -math.inf
        while True:
            min_gap = 1.0 / self.max_rate_hz
            sim_now = clock.now()
            wall_now = loop.time()
            if sim_now >= next_sim and wall_now - last_wall >= min_gap:
                try:
                    self.send_status(ctl)
                except Exception:  # never let one bad datagram end the loop
                    log.exception("controller %d: status datagram failed", ctl.cid)
                last_wall = wall_now
                next_sim = max(next_sim + STATUS_PERIOD_S, sim_now)
            speed = getattr(clock, "speed", None)
            wait = (next_sim - clock.now()) / speed if speed else min_gap
            wait = max(wait, last_wall + min_gap - loop.time())
            await asyncio.sleep(min(max(wait, 0.0), _MAX_WALL_WAIT_S))

    # ---------------------------------------------------------------- identification loop
    def send_identification(self, ctl: SimulatedCS800) -> bool:
        """Send ``ctl``'s identification datagram to :attr:`id_to` now; True if it was sent.

        Nothing is sent without ``id_to`` or when the server is not running. Not affected by
        :attr:`~sim_ioc.controller.SimulatedCS800.broadcasting` (that switches the status off).
        """
        transport = self._transports.get(ctl.cid)
        if transport is None or self.id_to is None:
            return False
        if not _send(transport, ctl.identification_datagram(), self.id_to, ctl.cid,
                     "identification"):
            return False
        self.id_sent[ctl.cid] += 1
        return True

    async def _id_loop(self, ctl: SimulatedCS800) -> None:
        """One identification datagram at once, then one per wall second (:data:`ID_PERIOD_S`)."""
        loop = asyncio.get_running_loop()
        next_wall = loop.time()
        while True:
            try:
                self.send_identification(ctl)
            except Exception:  # never let one datagram end the loop
                log.exception("controller %d: identification datagram failed", ctl.cid)
            next_wall = max(next_wall + ID_PERIOD_S, loop.time())
            await asyncio.sleep(next_wall - loop.time())
