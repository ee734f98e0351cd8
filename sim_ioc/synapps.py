"""What the synApps C IOC does with status datagrams, for the ``synapps`` flavour.

* :func:`extract_c_ioc`: the SNL program's decoding: for each status record,
  the raw word of its parameter id times the record's ESLO, unsigned, NO_ALARM. 0xFFFE is a
  number (655.34 K, 65534, 6553.4 l/min). Only the first 229 id/value pairs are searched (the
  last pair of a 928-byte datagram, VACSENSOR, is never found). A record
  whose id is absent keeps its value. ALARMI is MAJOR/HIGH for any non-zero code and ALARM
  holds the SNL's text (shifted by one from code 34 on, as the C IOC does).
* :class:`ScanLimitedReceiver`: the asyn record ``status_packet`` (SCAN .1 s, TMOT 1 s, NRRD
  928): one datagram is decoded per 0.1 s scan, at most 10 per second per status port; the
  backlog waits in a bounded queue (:data:`BACKLOG_DEPTH`, about 9 s, the oldest dropped, like
  the socket buffer); each read, or each 1 s read timeout, processes ``status_packet``.

Pure asyncio and protocol code: no caproto here (the IOC writes the PVs).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from caproto import AlarmSeverity, AlarmStatus

from ophyd_cs800 import protocol as P
from sim_ioc.pvs import STATUS_PVS, Reading

log = logging.getLogger(__name__)

#: Scan period of the ``status_packet`` asyn record (s): one datagram read per scan.
SCAN_PERIOD = 0.1
#: Read timeout of the asyn record (TMOT, s): no datagram within it gives NORD 0, READ/MAJOR.
READ_TIMEOUT = 1.0
#: Bytes the asyn record reads of each datagram (NRRD).
NRRD = 928
#: Datagrams waiting to be read (about 9 s at 10 decodes/s); beyond it the oldest are dropped.
BACKLOG_DEPTH = 90
#: id/value pairs the SNL searches (index 0..229 of an array filled from index 1: the 230th
#: pair, at byte 920, is never found).
SNL_PAIRS = 229

#: The SNL's ALARM texts by code (``Oxford_CS800.st``); later codes read :data:`UNKNOWN_ALARM`.
SNL_ALARM_TEXTS: tuple[str, ...] = (
    "No error", "Stop Pressed", "Stop Command", "End Complete", "Purge Complete",
    "Temp Warning", "Pressure Warning", "Check Vacuum", "Self-check Fail", "Flow Rate Fail",
    "Temp Control Error", "Gas Type Error", "Temp Reading Error", "Suct Temp Error",
    "Sensor Fail", "Brownout", "Sink Overheat", "PSU Overheat", "Power Loss",
    "Coldhead Too Cold", "Coldhead Timeout", "Cryodrive Not Found", "Cryodrive Error",
    "No Nitrogen", "No Helium", "Vac Gauge Fail", "Vac Reading Error", "RS232 Error",
    "Coldhead Temp Warning", "Coldhead Temp Error", "Do Not Open Cryostate",
    "Do Not Open Cryostat", "Unplug Xtal Sensor", "Cryostat Open", "High Temp Warning",
    "High Temp Error", "Cryodrive T Sensor Fault", "Cryodrive P Sensor Fault",
    "Cryodrive Low T Trip", "Cryodrive High T Trip", "Cryodrive Low P Trip",
    "Cryodrive High T Warning", "Cryodrive Low P Warning", "Connect Gas Supply",
    "Autofill Fault", "Autofill About To Fill", "Autofill Filling", "Collar Temp Error",
    "Coldhead Error", "Turbo Flow", "He Selected", "Cryodrive Not Ready", "Regen Required",
    "Regen Complete", "Connect Vacuum", "Disconnect Vacuum",
)
UNKNOWN_ALARM = "not recognized"

#: ESLO of the C IOC's ai records (one raw unit in the record's units); others are raw (1).
_ESLO_001 = ("DEVICEMINTEMP", "DEVICEMAXTEMP", "SETPOINT", "TEMP", "ERROR", "TARGETTEMP",
             "EVAPTEMP", "SUCTTEMP", "COLDHEADTEMP", "SHIELDTEMP", "NOZZLETEMP", "COLLARTEMP",
             "SUCTSETTEMP", "NOZZLESETTEMP", "SAMHOLDTEMP", "CRYOSTATTEMP", "VACGAUGE",
             "SAMHOLDPRES", "ELAPSED", "SAMPLEHEAT")
C_IOC_ESLO: dict[str, float] = {**dict.fromkeys(_ESLO_001, 0.01), "GASFLOW": 0.1}
#: The C IOC's display precision of each ai (PREC).
C_IOC_PREC: dict[str, int] = {**dict.fromkeys(_ESLO_001, 2), "GASFLOW": 1}

_OK = (AlarmSeverity.NO_ALARM, AlarmStatus.NO_ALARM)


def alarm_text(code: int) -> str:
    """Return the C IOC's ALARM text of alarm ``code``."""
    return SNL_ALARM_TEXTS[code] if 0 <= code < len(SNL_ALARM_TEXTS) else UNKNOWN_ALARM


def initial_reading(suffix: str, enum_strings: tuple[str, ...]) -> Reading:
    """Return what a C IOC status record reads before any datagram (PINI, VAL 0; ALARM "unset")."""
    if suffix == "ALARM":
        return ("unset", *_OK)
    return ((enum_strings[0] if enum_strings else 0.0), *_OK)


def extract_c_ioc(packet: P.StatusPacket,
                  enum_strings: dict[str, tuple[str, ...]]) -> dict[str, Reading]:
    """``{suffix: (value, severity, status)}`` for the records the C IOC updates from ``packet``.

    Records whose id is not among the first :data:`SNL_PAIRS` pairs are left out (the IOC
    keeps their value). ``enum_strings`` gives the mbbi strings by suffix; a raw value with no
    string (e.g. PHASE 11, Regen) is left out too, with its record keeping its value (the
    C IOC's mbbi then has no string to show).
    """
    words: dict[int, int] = {}
    for index, (pid, word) in enumerate(packet.raw.items()):
        if index >= SNL_PAIRS:
            break
        words.setdefault(pid, word)
    out: dict[str, Reading] = {}
    for pv in STATUS_PVS:
        raw = words.get(pv.pid)
        if raw is None:
            continue
        suffix = pv.suffix
        if suffix in enum_strings:
            strings = enum_strings[suffix]
            if raw < len(strings):
                out[suffix] = (strings[raw], *_OK)
        elif suffix == "ALARM":
            out[suffix] = (alarm_text(raw), *_OK)
        elif suffix == "ALARMI":  # HIGH 1, HSV MAJOR
            out[suffix] = (float(raw), *((AlarmSeverity.MAJOR_ALARM, AlarmStatus.HIGH) if raw
                                         else _OK))
        else:
            eslo = C_IOC_ESLO.get(suffix, 1.0)
            out[suffix] = (round(raw * eslo, 6), *_OK)
    return out


class DatagramSink(Protocol):
    """What :class:`ScanLimitedReceiver` hands datagrams to (a protocol or a status reader)."""

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Take one datagram from ``addr``."""


#: Called at each scan: the bytes read (at most NRRD), or None on a read timeout.
OnRead = Callable[[bytes | None], Awaitable[None]]


class ScanLimitedReceiver(asyncio.DatagramProtocol):
    """A status-socket protocol that hands datagrams to ``inner`` one per scan (0.1 s).

    Datagrams wait in a queue of :data:`BACKLOG_DEPTH` (the oldest dropped beyond it, counted
    in :attr:`dropped`). :meth:`scan` (a task the IOC runs) reads one per scan, passes it to
    ``inner.datagram_received`` (checks, counters, routing) and reports it to ``on_read``; with
    nothing within :data:`READ_TIMEOUT` it reports None.
    """

    def __init__(self, inner: DatagramSink, on_read: OnRead, *,
                 depth: int = BACKLOG_DEPTH, scan_period: float = SCAN_PERIOD,
                 read_timeout: float = READ_TIMEOUT) -> None:
        """Queue up to ``depth`` datagrams for ``inner``; report each scan to ``on_read``."""
        self.inner = inner
        self.on_read = on_read
        self.backlog: deque[tuple[bytes, tuple[str, int]]] = deque(maxlen=depth)
        self.scan_period = scan_period
        self.read_timeout = read_timeout
        self.dropped = 0
        self._arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Pass the transport on to ``inner``."""
        made = getattr(self.inner, "connection_made", None)
        if made is not None:
            made(transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Queue one datagram (called by the event loop)."""
        if len(self.backlog) == self.backlog.maxlen:
            self.dropped += 1
        self.backlog.append((data, addr))
        self._arrived.set()

    def error_received(self, exc: Exception) -> None:
        """Pass socket errors on to ``inner``."""
        received = getattr(self.inner, "error_received", None)
        if received is not None:
            received(exc)

    async def _read(self) -> tuple[bytes, tuple[str, int]] | None:
        """One asyn read: the oldest queued datagram, waiting up to the read timeout."""
        if not self.backlog:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), self.read_timeout)
            except asyncio.TimeoutError:
                return None
        return self.backlog.popleft() if self.backlog else None

    async def scan(self) -> None:
        """Read and hand on one datagram per scan period, forever (cancel to stop)."""
        loop = asyncio.get_running_loop()
        epoch = loop.time()
        while True:
            item = await self._read()
            try:
                if item is None:
                    await self.on_read(None)
                else:
                    data, addr = item
                    await self.on_read(data[:NRRD])
                    self.inner.datagram_received(data, addr)
            except Exception:  # a PV update must never stop the scan  # noqa: BLE001
                log.exception("status_packet scan failed")
            # The next scan tick: at most one read per period, however long this one waited.
            period = self.scan_period
            await asyncio.sleep(period - (loop.time() - epoch) % period)
