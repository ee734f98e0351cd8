"""``cs800-discover``: find the CS800 controllers on this subnet, for beamline setup.

Every CS800 broadcasts a status datagram to UDP 30304 and an identification datagram (NetBIOS
name and MAC address) to UDP 30303, once per second each.
:func:`discover` listens on both ports for a few seconds and returns one :class:`Found`
per controller: its IP address (the datagrams' source), controller number (id 1028), MAC,
name, firmware (id 1004), run mode, phase and gas temperature. :func:`main` prints them as a
table followed by the ``cs800-ioc`` command line that serves them::

    $ cs800-discover
    IP             CTRL  MAC                NAME  FW   RUN MODE  PHASE  TEMP       STATUS  ID
    192.168.0.113  369   00-00-0C-01-01-71  -     115  Run       Hold   100.00 K        3   3
    192.168.0.144  411   00-00-0C-01-01-9B  -     115  Run       Ramp   187.42 K        3   3

    cs800-ioc --prefix xxx: --controller CS0:369@192.168.0.113 --controller CS1:411@192.168.0.144

Both sockets are bound with ``SO_REUSEADDR``, ``SO_REUSEPORT`` and ``SO_BROADCAST``, so the tool
runs beside an IOC that listens on 30304: broadcast datagrams reach every socket on the port.
(Datagrams sent by *unicast* to a port that several sockets share are split between them by
Linux: use the tool with broadcasting controllers.) A malformed datagram is counted and ignored;
nothing a datagram holds can stop the listening or raise out of it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import select
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ophyd_cs800 import protocol as P
from ophyd_cs800.version import add_version_option
from sim_ioc.cli_args import bounded_positive, port
from sim_ioc.status_server import open_shared_socket

#: Default listening time, seconds: three datagrams of each kind from every controller.
DEFAULT_DURATION_S = 3.0
#: Longest listening time the command line accepts, seconds.
MAX_DURATION_S = 3600.0
#: Datagrams read from one socket in one pass before the deadline is checked again.
_BATCH = 256
#: Largest UDP payload.
_MAX_DATAGRAM = 65535


@dataclass(frozen=True)
class Found:
    """One controller heard by :func:`discover`.

    Attributes
    ----------
    ip : str
        Source IP address of its datagrams (where its commands go, UDP 30305).
    port : int
        Source port of its status datagrams (of its identification datagrams if no status
        was heard). A simulator sends from its command port; a real unit's is not documented.
    controller : int | None
        Controller number from its status datagrams (id 1028), or ``None``.
    controller_from_mac : int | None
        The last two MAC bytes, a *hint* at the controller number
        (:func:`ophyd_cs800.protocol.controller_number_from_mac`), or ``None``.
    mac : str | None
        MAC address (``00-00-0C-01-01-AB``) from the identification datagram, else from
        status ids 1311..1313, or ``None``.
    name : str | None
        NetBIOS name from the identification datagram, or ``None``.
    firmware : int | None
        Control firmware version (id 1004), or ``None``.
    run_mode : str | None
        Run mode as text (``"Run"``, ``"Startup OK"`` ...; id 1053), or ``None``.
    phase : str | None
        Phase as text (``"Ramp"``, ``"Hold"`` ...; id 1054), only in run mode Run.
    temp_k : float | None
        Gas temperature at the sample in kelvin (id 1051), or ``None``.
    status_bytes : int | None
        Length of its last status datagram (928, or 1236 for firmware 153).
    status_datagrams : int
        Good status datagrams heard.
    id_datagrams : int
        Good identification datagrams heard.
    """

    ip: str
    port: int
    controller: int | None
    controller_from_mac: int | None
    mac: str | None
    name: str | None
    firmware: int | None
    run_mode: str | None
    phase: str | None
    temp_k: float | None
    status_bytes: int | None
    status_datagrams: int
    id_datagrams: int

    @property
    def controller_guess(self) -> int | None:
        """The controller number, from the status datagram or else guessed from the MAC."""
        return self.controller if self.controller is not None else self.controller_from_mac

    def to_dict(self) -> dict[str, object]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@dataclass
class _StatusSource:
    """The latest good status datagram of one controller."""

    ip: str
    port: int
    packet: P.StatusPacket
    size: int
    count: int = 1


@dataclass
class _IdSource:
    """The latest good identification datagram from one source address."""

    ip: str
    port: int
    ident: P.Identification
    count: int = 1


def _enum_text(raw: int | None, strings: Sequence[str]) -> str | None:
    """``strings[raw]``, ``"unknown (N)"`` for a value outside the table, None for 0xFFFE/absent."""
    if raw is None or raw == P.NOT_AVAILABLE:
        return None
    return strings[raw] if raw < len(strings) else f"unknown ({raw})"


def _status_mac(packet: P.StatusPacket) -> str | None:
    """Return the MAC carried in ids 1311..1313, or None if absent or "not available" (0xFFFE)."""
    words = [packet.get_raw(pid) for pid in (1311, 1312, 1313)]
    if any(w is None or w == P.NOT_AVAILABLE for w in words):
        return None
    return P.mac_from_words(*words)  # type: ignore[arg-type]


class Discovery:
    """Collects status and identification datagrams into :class:`Found` records. Never raises.

    Feed it with :meth:`status_datagram` and :meth:`identification_datagram` (``addr`` is the
    source ``(ip, port)``); read the result with :meth:`found`. Status datagrams are kept per
    source IP and controller number, so several simulated controllers behind one IP stay apart.

    Attributes
    ----------
    malformed : Counter[str]
        Count of rejected datagrams by kind and reason (``"status checksum"``,
        ``"identification"`` ...).
    malformed_from : Counter[str]
        Count of rejected datagrams by source IP.
    last_malformed : str
        What was wrong with the last rejected datagram (a sentence), or ``""``.
    """

    def __init__(self) -> None:
        """Start with nothing heard."""
        self._status: dict[tuple[str, int | None, int], _StatusSource] = {}
        self._ids: dict[tuple[str, int], _IdSource] = {}
        self.malformed: Counter[str] = Counter()
        self.malformed_from: Counter[str] = Counter()
        self.last_malformed = ""

    @property
    def malformed_total(self) -> int:
        """Every rejected datagram, of either kind."""
        return sum(self.malformed.values())

    def _reject(self, kind: str, addr: tuple[str, int], exc: Exception) -> None:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        label = kind if reason == kind else f"{kind} {reason}"
        self.malformed[label] += 1
        self.malformed_from[addr[0]] += 1
        self.last_malformed = f"{kind} datagram from {addr[0]}:{addr[1]}: {exc}"

    def status_datagram(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Take one datagram that arrived on the status port; True if it decoded."""
        try:
            packet = P.decode_status(data)
        except Exception as exc:  # noqa: BLE001  (ProtocolError, or a codec bug: count it)
            self._reject("status", addr, exc)
            return False
        ip, port = addr[0], addr[1]
        cid = packet.cid
        key = (ip, cid, port if cid is None else 0)
        old = self._status.get(key)
        count = old.count + 1 if old else 1
        self._status[key] = _StatusSource(ip, port, packet, len(data), count)
        return True

    def identification_datagram(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Take one datagram that arrived on the identification port; True if it decoded."""
        try:
            ident = P.decode_identification(data)
        except Exception as exc:  # noqa: BLE001
            self._reject("identification", addr, exc)
            return False
        key = (addr[0], addr[1])
        old = self._ids.get(key)
        self._ids[key] = _IdSource(addr[0], addr[1], ident, old.count + 1 if old else 1)
        return True

    def _match_ids(self) -> dict[tuple[str, int | None, int], _IdSource]:
        """Pair identification sources with controllers.

        Same MAC, else same source address, else the only controller and the only identification
        source of an IP address.
        """
        matched: dict[tuple[str, int | None, int], _IdSource] = {}
        free = dict(self._ids)
        per_ip = Counter(src.ip for src in self._status.values())
        rules = (
            lambda st, idk, ids: ids.ident.mac == _status_mac(st.packet),
            lambda st, idk, ids: idk == (st.ip, st.port),
            lambda st, idk, ids: per_ip[st.ip] == 1
            and sum(1 for k in free if k[0] == st.ip) == 1,
        )
        for rule in rules:
            for key, st in self._status.items():
                if key in matched:
                    continue
                hit = next((k for k, ids in free.items() if k[0] == st.ip and rule(st, k, ids)),
                           None)
                if hit is not None:
                    matched[key] = free.pop(hit)
        return matched

    def found(self) -> list[Found]:
        """Every controller heard, sorted by IP address (numerically), controller, port.

        A source heard only on the identification port is listed too, with ``controller`` None.
        """
        matched = self._match_ids()
        out: list[Found] = []
        for key, st in self._status.items():
            pkt = st.packet
            ids = matched.get(key)
            mac = ids.ident.mac if ids else _status_mac(pkt)
            run_mode = pkt.get_raw(1053)
            out.append(Found(
                ip=st.ip, port=st.port, controller=pkt.cid,
                controller_from_mac=None if mac is None else P.controller_number_from_mac(mac),
                mac=mac, name=ids.ident.name if ids else None, firmware=pkt.firmware,
                run_mode=_enum_text(run_mode, P.RUN_MODE_STRINGS),
                phase=_enum_text(pkt.get_raw(1054), P.PHASE_STRINGS)
                if run_mode == P.RunMode.RUN else None,
                temp_k=pkt.temp, status_bytes=st.size, status_datagrams=st.count,
                id_datagrams=ids.count if ids else 0,
            ))
        used = {id(ids) for ids in matched.values()}
        for ids in self._ids.values():
            if id(ids) not in used:
                out.append(Found(
                    ip=ids.ip, port=ids.port, controller=None,
                    controller_from_mac=P.controller_number_from_mac(ids.ident.mac),
                    mac=ids.ident.mac, name=ids.ident.name, firmware=None, run_mode=None,
                    phase=None, temp_k=None, status_bytes=None, status_datagrams=0,
                    id_datagrams=ids.count,
                ))
        out.sort(key=lambda f: (ipaddress.ip_address(f.ip), f.controller_guess or 0, f.port))
        return out


class Listener:
    """The two shared UDP sockets of a discovery (status and identification), bound at once.

    Parameters
    ----------
    listen : str, optional
        Local IPv4 address to bind (``"0.0.0.0"`` receives broadcasts).
    status_port : int, optional
        Status port (30304 on real hardware); 0 picks a free port.
    id_port : int, optional
        Identification port (30303 on real hardware); 0 picks a free port.

    Notes
    -----
    Port 0 is never left to the kernel (see :func:`sim_ioc.status_server.open_status_socket`):
    a random free port outside the ephemeral range is taken. A port that cannot be bound raises
    ``OSError`` whose message names the socket and address; nothing stays bound.
    """

    def __init__(self, listen: str = "0.0.0.0", status_port: int = P.STATUS_PORT,
                 id_port: int = P.ID_PORT) -> None:
        """Bind both sockets."""
        self.listen = listen
        self._status = open_shared_socket(listen, status_port, "status")
        try:
            self._id = open_shared_socket(listen, id_port, "identification")
        except OSError:
            self._status.close()
            raise

    @property
    def status_port(self) -> int:
        """The bound status port."""
        return self._status.getsockname()[1]

    @property
    def id_port(self) -> int:
        """The bound identification port."""
        return self._id.getsockname()[1]

    def run(self, duration: float, collector: Discovery | None = None) -> Discovery:
        """Listen for ``duration`` seconds (wall clock), feeding ``collector`` (new if None).

        Returns the collector. Socket errors are ignored (the next datagram is read); a
        ``KeyboardInterrupt`` propagates, leaving what was heard so far in ``collector``.
        """
        collector = collector if collector is not None else Discovery()
        handlers = {
            self._status: collector.status_datagram,
            self._id: collector.identification_datagram,
        }
        deadline = time.monotonic() + max(0.0, duration)
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select(list(handlers), [], [], min(left, 0.5))
            for sock in readable:
                for _ in range(_BATCH):
                    try:
                        data, addr = sock.recvfrom(_MAX_DATAGRAM)
                    except BlockingIOError:
                        break
                    except OSError:  # e.g. a queued ICMP error: keep listening
                        continue
                    handlers[sock](data, addr)
        return collector

    def close(self) -> None:
        """Close both sockets (safe to call twice)."""
        self._status.close()
        self._id.close()

    def __enter__(self) -> Listener:
        """Use as a context manager: closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close both sockets."""
        self.close()


def discover(
    *,
    listen: str = "0.0.0.0",
    status_port: int = P.STATUS_PORT,
    id_port: int = P.ID_PORT,
    duration: float = DEFAULT_DURATION_S,
    collector: Discovery | None = None,
) -> list[Found]:
    """Listen ``duration`` seconds on ``listen`` for CS800 datagrams; return who was heard.

    A malformed datagram never raises.

    Parameters
    ----------
    listen : str, optional
        Local IPv4 address to bind (``"0.0.0.0"`` receives broadcasts).
    status_port, id_port : int, optional
        The status and identification ports to bind (0: free ports, see :class:`Listener`).
    duration : float, optional
        Seconds to listen.
    collector : Discovery or None, optional
        Pass one to read the counts of malformed datagrams afterwards.

    Returns
    -------
    list[Found]
        One :class:`Found` per controller, sorted by IP address.

    Raises
    ------
    OSError
        Naming the address, if a port cannot be bound.
    """
    with Listener(listen, status_port, id_port) as listener:
        return listener.run(duration, collector).found()


# -------------------------------------------------------------------------------- output
def ioc_command(found: Sequence[Found], prefix: str = "xxx:") -> str:
    """Return the ``cs800-ioc`` command line serving ``found``.

    ``CS0:``, ``CS1:`` ... in that order.

    The command port is left at its default (30305) unless several controllers share one IP
    address (simulators): then each gets its source port, where a simulator takes commands. A
    controller number only guessed from the MAC is used as is; none at all gives 0 ("the first
    controller heard").
    """
    per_ip = Counter(f.ip for f in found)
    args = []
    for i, f in enumerate(found):
        host = f"{f.ip}:{f.port}" if per_ip[f.ip] > 1 else f.ip
        args.append(f"--controller CS{i}:{f.controller_guess or 0}@{host}")
    return " ".join(["cs800-ioc", f"--prefix {prefix}", *args])


def format_table(found: Sequence[Found]) -> str:
    """``found`` as an aligned text table.

    ``-`` for unknown values, ``427?`` for a controller number guessed from the MAC.
    """
    header = ("IP", "CTRL", "MAC", "NAME", "FW", "RUN MODE", "PHASE", "TEMP", "STATUS", "ID")
    rows = [header]
    for f in found:
        ctrl = (str(f.controller) if f.controller is not None
                else f"{f.controller_from_mac}?" if f.controller_from_mac is not None else "-")
        rows.append((
            f.ip, ctrl, f.mac or "-", f.name or "-",
            "-" if f.firmware is None else str(f.firmware), f.run_mode or "-", f.phase or "-",
            "-" if f.temp_k is None else f"{f.temp_k:.2f} K",
            str(f.status_datagrams), str(f.id_datagrams),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {7, 8, 9}
    return "\n".join(
        "  ".join(c.rjust(w) if i in right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
        for r in rows
    )


def _malformed_summary(collector: Discovery) -> str:
    """One line counting the rejected datagrams by kind and reason, with the last problem."""
    parts = ", ".join(f"{label}: {n}" for label, n in sorted(collector.malformed.items()))
    return (f"ignored {collector.malformed_total} malformed datagram(s) ({parts}); last: "
            f"{collector.last_malformed}")


# -------------------------------------------------------------------------------- command line
def _ipv4(text: str) -> str:
    """Parse the ``--listen`` address (argparse type)."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an IPv4 address such as 0.0.0.0 or 192.168.0.10, got {text!r}") from None


_duration = bounded_positive("time", MAX_DURATION_S, "a number of seconds")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``cs800-discover`` argument parser."""
    p = argparse.ArgumentParser(
        prog="cs800-discover",
        description="Listen for CryoStream 800 status (UDP 30304) and identification (UDP 30303) "
        "broadcasts; list the controllers heard and print the cs800-ioc command line for them.",
    )
    p.add_argument("--listen", type=_ipv4, default="0.0.0.0", metavar="ADDR",
                   help="local IPv4 address to listen on (default 0.0.0.0: receives broadcasts)")
    p.add_argument("--status-port", type=port, default=P.STATUS_PORT, metavar="N",
                   help=f"status port (default {P.STATUS_PORT}; 0 = a free port)")
    p.add_argument("--id-port", type=port, default=P.ID_PORT, metavar="N",
                   help=f"identification port (default {P.ID_PORT}; 0 = a free port)")
    p.add_argument("--time", type=_duration, default=DEFAULT_DURATION_S, metavar="S",
                   help=f"seconds to listen (default {DEFAULT_DURATION_S:g})")
    p.add_argument("--prefix", default="xxx:",
                   help="IOC prefix used in the printed cs800-ioc line (default xxx:)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of the controllers instead of the table")
    return add_version_option(p)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cs800-discover``; returns the exit status.

    0: at least one controller heard (table and ``cs800-ioc`` line, or ``--json``, on stdout).
    1: none heard (one sentence on stderr; ``[]`` on stdout with ``--json``), or a port that
    cannot be bound. 2: bad arguments. Ctrl-C ends the listening early and reports what was
    heard. Progress and the counts of malformed datagrams go to stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.status_port and args.status_port == args.id_port:
        parser.error(f"--status-port and --id-port must differ (both {args.status_port})")
    try:
        listener = Listener(args.listen, args.status_port, args.id_port)
    except OSError as exc:
        print(f"cs800-discover: {exc.strerror or exc}", file=sys.stderr)
        return 1
    collector = Discovery()
    with listener:
        status_port, id_port = listener.status_port, listener.id_port
        print(f"cs800-discover: listening {args.time:g} s on {args.listen}, UDP "
              f"{status_port} (status) and {id_port} (identification)",
              file=sys.stderr, flush=True)
        try:
            listener.run(args.time, collector)
        except KeyboardInterrupt:
            print("cs800-discover: interrupted; reporting what was heard", file=sys.stderr)
    found = collector.found()
    if collector.malformed_total:
        print(f"cs800-discover: {_malformed_summary(collector)}", file=sys.stderr)
    if args.json:
        print(json.dumps([f.to_dict() for f in found], indent=2))
    if not found:
        print(f"cs800-discover: no CS800 heard on UDP {status_port}/{id_port} in "
              f"{args.time:g} s on {args.listen}; is this host on the controllers' subnet, and "
              f"does the firewall let UDP {id_port} and {status_port} in?", file=sys.stderr)
        return 1
    if not args.json:
        print(format_table(found))
        print()
        print(ioc_command(found, args.prefix))
    if any(f.controller is None for f in found):
        where = ("\"controller\": null, \"controller_from_mac\" is" if args.json
                 else "a controller number marked '?' is")
        print(f"cs800-discover: {where} guessed from the MAC address (no status datagram "
              "heard): check it on the front panel", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
