"""Enumerations of the CryoStream 800 status packet: run mode, phase, alarms, turbo, hardware bits.

The alarm table is Oxford's ``Cryostream.xml``
``LIST_OF_ALARMS`` (codes 0-62), which the DLS and bliss tables agree with; the synApps SNL table
is shifted by one from code 34 on, and is deliberately *not* used here. Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag


class RunMode(IntEnum):
    """Run mode of the controller (status id 1053)."""

    STARTUP = 0
    STARTUP_FAIL = 1
    STARTUP_OK = 2  # "Ready": checks passed, waiting for a command
    RUN = 3  # gas is flowing
    SETUP = 4
    SHUTDOWN_OK = 5
    SHUTDOWN_FAIL = 6


#: The synApps ``Oxford_CS800.db`` RUNMODE mbbi strings, indexed by :class:`RunMode` value.
RUN_MODE_STRINGS: tuple[str, ...] = (
    "Startup",
    "Startup Fail",
    "Startup OK",
    "Run",
    "Setup",
    "Shutdown OK",
    "Shutdown Fail",
)


class Phase(IntEnum):
    """Phase of the current programme step (status id 1054); meaningful in :attr:`RunMode.RUN`."""

    RAMP = 0
    COOL = 1
    PLAT = 2
    HOLD = 3
    END = 4
    PURGE = 5
    DELETE = 6
    LOAD = 7
    SAVE = 8
    SOAK = 9
    WAIT = 10
    REGEN = 11
    REGEN_2 = 12


#: PHASE mbbi strings: the 11 synApps strings (0-10) plus the two Regen phases of newer firmware.
PHASE_STRINGS: tuple[str, ...] = (
    "Ramp",
    "Cool",
    "Plat",
    "Hold",
    "End",
    "Purge",
    "Delete Phase",
    "Load Program",
    "Save Program",
    "Soak",
    "Wait",
    "Regen",
    "Regen 2",
)

#: Phases during which the controller is still moving toward its target (bliss ``is_ramping``).
MOVING_PHASES: frozenset[Phase] = frozenset({Phase.RAMP, Phase.COOL, Phase.WAIT})


class TurboMode(IntEnum):
    """Turbo mode (status id 1068). 1 and 3 mean turbo flow (10 l/min) is on."""

    OFF = 0
    ON = 1
    AUTO = 2
    ON_AUTO = 3


#: TURBOMODE strings (DLS mbbi), indexed by :class:`TurboMode` value.
TURBO_MODE_STRINGS: tuple[str, ...] = ("Off", "On", "Auto", "On (auto)")


class HardwareBits(IntFlag):
    """Hardware bit field (status id 1001 on the 800, legacy HardwareType byte)."""

    PLUS = 1  # 500 K maximum
    CRYOSHUTTER = 2
    SERIES_800 = 4
    AUTOFILL = 8


@dataclass(frozen=True)
class Alarm:
    """One alarm code (status id 1065).

    Attributes
    ----------
    code : int
        The raw alarm code.
    level : int
        0 none, 1 information, 2 warning, 3 serious warning, 4 error (shuts down).
    text : str
        Oxford's display text (``Cryostream.xml``).
    description : str
        A longer description (DLS ``alarmlookup.c`` / bliss), or ``""``.
    """

    code: int
    level: int
    text: str
    description: str = ""


_ALARM_ROWS: tuple[tuple[int, int, str, str], ...] = (
    (0, 0, "No errors or warnings", "No alarm"),
    (1, 1, "Stop pressed", "Stop button has been pressed"),
    (2, 1, "Stop command", "Stop command received"),
    (3, 1, "End complete", "End phase complete"),
    (4, 1, "Purge complete", "Purge phase complete"),
    (5, 2, "Temp warning", "Temperature error > 5 K"),
    (6, 2, "Pressure warning", "Back pressure > 0.5 bar"),
    (7, 2, "Check vacuum", "Evaporator reduction at maximum"),
    (8, 4, "Self-check fail", "Self-check failed"),
    (9, 4, "Low flow rate", "Gas flow < 2 l/min"),
    (10, 4, "Temp control error", "Temperature error > 25 K"),
    (11, 4, "Gas type error", "Sensor detects wrong gas type"),
    (12, 4, "Temp reading error", "Unphysical temperature reported"),
    (13, 4, "Suct temp error", "Suct temperature out of range"),
    (14, 4, "Sensor fail", "Invalid ADC reading"),
    (15, 3, "Brownout", "Degradation of power supply"),
    (16, 4, "Sink overheat", "Heat sink overheating"),
    (17, 4, "PSU overheat", "Power supply overheating"),
    (18, 4, "Power loss", "Power failure"),
    (19, 4, "Coldhead too cold", "Refrigerator stage too cold"),
    (20, 4, "Coldhead time out", "Refrigerator stage failed to reach base in time"),
    (21, 2, "Cryodrive not found", "Cryodrive not responding"),
    (22, 4, "Cryodrive error", "Cryodrive reports an error"),
    (23, 4, "No nitrogen", "No nitrogen available"),
    (24, 4, "No helium", "No helium available"),
    (25, 2, "Vac gauge fail", "Vacuum gauge not responding"),
    (26, 2, "Vac reading error", "Vacuum out of range"),
    (27, 2, "RS232 error", "RS232 communication error"),
    (28, 2, "Coldhead temp warning", "Coldhead temp > 315 K"),
    (29, 4, "Coldhead temp error", "Coldhead temp > 325 K"),
    (30, 2, "Do not open cryostat", "Wait for End to complete"),
    (31, 3, "Do not open cryostat", "Do not open the cryostat"),
    (32, 2, "Disconnect sample sensor", "Unplug / disconnect Xtal sensor"),
    (33, 2, "Cryostat open", "Cryostat is open"),
    (34, 4, "Cryostat open timeout", "Cryostat open for more than 10 min"),
    (35, 2, "High temp warning", "Sample temp > 320 K"),
    (36, 4, "High temp error", "Sample temp > 325 K"),
    (37, 3, "Cryodrive T sensor fault", ""),
    (38, 3, "Cryodrive P sensor fault", ""),
    (39, 3, "Cryodrive low T trip", ""),
    (40, 3, "Cryodrive high T trip", ""),
    (41, 3, "Cryodrive low P trip", ""),
    (42, 2, "Cryodrive high T warning", ""),
    (43, 2, "Cryodrive low P warning", ""),
    (44, 2, "Connect gas supply", ""),
    (45, 3, "Autofill fault", ""),
    (46, 1, "Autofill about to fill", ""),
    (47, 2, "Autofill filling", ""),
    (48, 4, "Collar temp error", ""),
    (49, 4, "Coldhead error", ""),
    (50, 1, "Turbo flow", ""),
    (51, 1, "He selected", ""),
    (52, 2, "Cryodrive not ready", ""),
    (53, 2, "Regen required", ""),
    (54, 1, "Regen complete", ""),
    (55, 2, "Connect vacuum", ""),
    (56, 2, "Disconnect vacuum", ""),
    (57, 2, "Connect sample sensor", ""),
    (58, 4, "Relay board error", ""),
    (59, 1, "Dry air maintenance", ""),
    (60, 2, "Service required", ""),
    (61, 2, "Low shield flow", ""),
    (62, 1, "Shield on", ""),
)

#: Every known alarm code (0-62) with Oxford's level and text.
ALARMS: dict[int, Alarm] = {row[0]: Alarm(*row) for row in _ALARM_ROWS}


def alarm_for(code: int) -> Alarm:
    """Return the :class:`Alarm` for a raw alarm code.

    A code outside the known table (0-62) gives an ``Alarm`` with level 4 and the text
    ``"Unknown alarm <code>"``, so an unexpected firmware value is shown, never hidden.
    """
    try:
        return ALARMS[code]
    except KeyError:
        return Alarm(code, 4, f"Unknown alarm {code}", "code not in the Oxford alarm table")
