"""The record names of the synApps C IOC's ``Oxford_CS800.db``, in one table, and its byte split.

:data:`C_IOC_RECORDS` lists the 86 records the C IOC serves for each controller at
``$(P)$(R)``: DISABLE and DEBUG, the 46 status records, the 17 command
records, the 20 byte-split helpers and ``command_port``. Both flavours of ``cs800-ioc`` serve
every one of them (and more: simulation, counters). Screens and tests import the table from
here. The status server's own record, ``$(P)CS:status_packet``, is in
:data:`C_IOC_STATUS_RECORDS`.

The helpers: each 16-bit command parameter X (RTEMP, RRATE, PTIME, CTEMP, ERATE) forward-links
two calcouts ``XCH``/``XCL`` that split ``X.RVAL`` into signed bytes, written to the ao records
``XH``/``XL`` which the stream protocol emits. :func:`split_word` computes those bytes.
"""

from __future__ import annotations

from sim_ioc.pvs import STATUS_PVS

#: Control and diagnostics records.
CONTROL_RECORDS: tuple[str, ...] = ("DISABLE", "DEBUG")
#: Command parameters (ao, bo) in the order of the .db, each with its raw scale (ESLO: one raw
#: unit in engineering units) used for ``.RVAL`` and the byte split.
PARAM_ESLO: dict[str, float] = {"RRATE": 1.0, "RTEMP": 0.01, "PTIME": 1.0, "CTEMP": 0.01,
                                "ERATE": 1.0}
#: Action records: processing one sends one 7-byte command.
ACTION_RECORDS: tuple[str, ...] = ("RESTART", "RAMP", "PLAT", "HOLD", "COOL", "END", "PURGE",
                                   "PAUSE", "RESUME", "STOP", "TURBOCMD")
#: Every command record: the actions, their parameters and TURBO.
COMMAND_RECORDS: tuple[str, ...] = (*ACTION_RECORDS, *PARAM_ESLO, "TURBO")
#: Parameters whose raw word is split into bytes by calcouts (all of :data:`PARAM_ESLO`).
SPLIT_PARAMS: tuple[str, ...] = tuple(PARAM_ESLO)
#: The 20 helper records: ``XH``, ``XL`` (ao) and ``XCH``, ``XCL`` (calcout) per parameter X.
HELPER_RECORDS: tuple[str, ...] = tuple(
    f"{x}{suffix}" for x in SPLIT_PARAMS for suffix in ("H", "L", "CH", "CL"))
#: The asyn record of the controller's command port (``CS800_CMD_$(CID)``); VAL is unused (0).
COMMAND_PORT_RECORD = "command_port"

#: The 86 records of ``Oxford_CS800.db`` for one controller (names after ``$(P)$(R)``).
C_IOC_RECORDS: tuple[str, ...] = (
    *CONTROL_RECORDS,
    *(pv.suffix for pv in STATUS_PVS),
    *COMMAND_RECORDS,
    *HELPER_RECORDS,
    COMMAND_PORT_RECORD,
)
#: The records of ``Oxford_CS800_status.db`` (names after ``$(P)$(R)``, R usually ``CS:``).
C_IOC_STATUS_RECORDS: tuple[str, ...] = ("status_packet",)

assert len(C_IOC_RECORDS) == 86 and len(set(C_IOC_RECORDS)) == 86, "the C IOC has 86 records"


def raw_word(param: str, value: float) -> int:
    """``.RVAL`` of parameter ``param`` holding ``value`` (engineering units).

    The ao's conversion ``round(value / ESLO)``, kept to 0..65535 as the 16-bit protocol field.
    """
    return min(max(round(value / PARAM_ESLO[param]), 0), 0xFFFF)


def _signed_byte(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def split_word(raw: int) -> tuple[int, int]:
    """Return the calcouts' signed (high, low) bytes of a 16-bit word, e.g. 36000 -> (-116, -96).

    The C IOC's CALC strings (``(A>>8>=C)?A>>8-C:A>>8``, ``(A%B>=C)?A%B-B:A%B``) give these
    bytes on common platforms; ``%r`` then emits them unchanged.
    """
    return _signed_byte((raw >> 8) & 0xFF), _signed_byte(raw & 0xFF)
