"""The PyDM operator screens of a CS800 controller and of the simulated valve bank.

Built at run time from :mod:`sim_ioc.screens.tables` (the IOC's own PV tables), so they show
exactly the PVs the IOC serves. Every screen records the Channel Access addresses it uses in
:attr:`Screen.addresses` (the ``--check`` of ``cs800-screen`` waits for them).

Screens of one controller (``prefix`` is ``$(P)$(R)``, e.g. ``xxx:CS0:``), as the synApps
MEDM displays they replace:

* :class:`OverviewScreen`: temperature, set point, target, ramp rate, phase, run mode, time
  left, alarm, a 5-minute strip chart of TEMP and SETPOINT, and the program controls (ramp,
  plateau, cool, hold, pause, resume, turbo);
* :class:`SensorsScreen`: every temperature sensor, the heaters (%) and the flow;
* :class:`StatusScreen`: every status record with its units;
* :class:`AdminScreen`: comms on/off (DISABLE), DEBUG, end, purge, restart and stop, each of the
  last four behind a confirmation dialog.

:class:`ValveScreen` shows a valve bank: per valve its readback and Open/Close buttons, the
D/A channels, the command counter, the last command and the log.

:class:`ScreenWindow` holds them as tabs and, twice a second, repairs the connection states
PyDM's plugins lose in a race (:mod:`sim_ioc.screens.connection_repair`).

Needs the ``screens`` extra (PyDM and a Qt binding).
"""

from __future__ import annotations

from pydm.widgets import (
    PyDMByteIndicator,
    PyDMEnumComboBox,
    PyDMLabel,
    PyDMLineEdit,
    PyDMPushButton,
    PyDMTimePlot,
)
from pydm.widgets.display_format import DisplayFormat
from qtpy.QtCore import QTimer
from qtpy.QtGui import QColor, QFont
from qtpy.QtWidgets import (
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from sim_ioc.screens import tables as T
from sim_ioc.screens.connection_repair import TICK_PERIOD, ConnectionRepair, plugin_connections

#: Title of every CS800 screen (as the MEDM displays: "Oxford CryoStream 800: $(CS)").
TITLE = "Oxford CryoStream 800: {prefix}"


def _bold(widget: QWidget, point_size: int) -> QWidget:
    """Give ``widget`` a bold font of ``point_size`` points; return it."""
    font = QFont(widget.font())
    font.setPointSize(point_size)
    font.setBold(True)
    widget.setFont(font)
    return widget


class Screen(QWidget):
    """A screen showing PVs of one prefix; :attr:`addresses` lists every channel it uses."""

    #: Tab text.
    name = "screen"

    def __init__(self, prefix: str, parent: QWidget | None = None) -> None:
        """Create an empty screen for ``prefix``; subclasses add the widgets."""
        super().__init__(parent)
        self.prefix = prefix
        self.addresses: list[str] = []
        self.setObjectName(type(self).__name__)

    # ------------------------------------------------------------------ widget helpers
    def channel(self, suffix: str) -> str:
        """Return the CA address of ``prefix + suffix`` (recorded in :attr:`addresses`)."""
        address = f"ca://{self.prefix}{suffix}"
        if address not in self.addresses:
            self.addresses.append(address)
        return address

    def value(self, suffix: str, *, units: bool = True, size: int = 0) -> PyDMLabel:
        """Return a read-only label of ``suffix`` (with its units, alarm-coloured)."""
        label = PyDMLabel(self, init_channel=self.channel(suffix))
        label.showUnits = units
        label.alarmSensitiveContent = True
        label.alarmSensitiveBorder = True
        return _bold(label, size) if size else label

    def entry(self, suffix: str) -> PyDMLineEdit:
        """Return an input field writing ``suffix`` (Enter puts the value)."""
        edit = PyDMLineEdit(self, init_channel=self.channel(suffix))
        edit.showUnits = True
        edit.setMaximumWidth(140)
        return edit

    def button(self, suffix: str, text: str, value: int = 1, question: str = "") -> PyDMPushButton:
        """Return a button putting ``value`` to ``suffix``.

        With ``question``, only once confirmed.
        """
        button = PyDMPushButton(self, label=text, pressValue=value,
                                init_channel=self.channel(suffix))
        if question:
            button.showConfirmDialog = True
            button.confirmMessage = question
        button.setObjectName(f"{suffix}_{text}".replace(" ", "_"))
        return button

    def choice(self, suffix: str) -> PyDMEnumComboBox:
        """Return a drop-down of the states of the enum PV ``suffix``."""
        return PyDMEnumComboBox(self, init_channel=self.channel(suffix))


class _ControllerScreen(Screen):
    """A CS800 screen: the title line (controller number, firmware, comms), then content."""

    def __init__(self, prefix: str, parent: QWidget | None = None) -> None:
        """Build the title line; subclasses fill :attr:`body`."""
        super().__init__(prefix, parent)
        outer = QVBoxLayout(self)
        head = QHBoxLayout()
        head.addWidget(_bold(QLabel(TITLE.format(prefix=prefix), self), 13))
        head.addStretch(1)
        for suffix, text in (("CTRLNUM", "ID"), ("VER", "firmware"), ("DISABLE", "comms")):
            head.addWidget(QLabel(text, self))
            head.addWidget(self.value(T.pv(suffix).suffix, units=False))
        outer.addLayout(head)
        line = QFrame(self)
        line.setFrameShape(QFrame.HLine)
        outer.addWidget(line)
        self.body = QVBoxLayout()
        outer.addLayout(self.body, 1)

    def form(self, title: str, rows: list[T.PVInfo], columns: int = 1) -> QGroupBox:
        """Return a box of "description: value" rows, in ``columns`` column pairs."""
        box = QGroupBox(title, self)
        grid = QGridLayout(box)
        per_column = -(-len(rows) // columns)
        for i, info in enumerate(rows):
            column, row = divmod(i, per_column)
            name = QLabel(info.suffix, box)
            name.setToolTip(info.doc)
            grid.addWidget(name, row, 2 * column)
            grid.addWidget(self.value(info.suffix), row, 2 * column + 1)
        return box


class OverviewScreen(_ControllerScreen):
    """Temperature, set point, target, phase, run mode, alarm, strip chart, program controls."""

    name = "Overview"

    def __init__(self, prefix: str, parent: QWidget | None = None) -> None:
        """Build the overview of the controller at ``prefix``."""
        super().__init__(prefix, parent)
        top = QHBoxLayout()
        temp_box = QGroupBox("Sample temperature", self)
        temp_layout = QVBoxLayout(temp_box)
        temp_layout.addWidget(self.value(T.pv("TEMP").suffix, size=28))
        top.addWidget(temp_box)
        rows = [T.pv(s) for s in T.OVERVIEW if s != "TEMP"]
        top.addWidget(self.form("State", rows), 1)
        self.body.addLayout(top)
        plot = PyDMTimePlot(self)
        plot.setTimeSpan(T.STRIP_CHART_SPAN_S)
        plot.setShowLegend(True)
        plot.setMinimumHeight(220)
        for suffix, color in zip(T.STRIP_CHART, ("#1f77b4", "#d62728"), strict=True):
            plot.addYChannel(y_channel=self.channel(T.pv(suffix).suffix), name=suffix,
                             color=QColor(color), lineWidth=2)
        self.plot = plot
        self.body.addWidget(plot, 1)
        self.body.addWidget(self._program())

    def _program(self) -> QGroupBox:
        box = QGroupBox("Program (put the parameters, then press the action)", self)
        grid = QGridLayout(box)
        for row, (action, text, params) in enumerate(T.PROGRAM):
            grid.addWidget(self.button(T.pv(action).suffix, text), row // 3 * 2, row % 3 * 2)
            cell = QHBoxLayout()
            for param in params:
                cell.addWidget(QLabel(param, box))
                cell.addWidget(self.entry(T.pv(param).suffix))
            cell.addStretch(1)
            grid.addLayout(cell, row // 3 * 2 + 1, row % 3 * 2, 1, 2)
        turbo = QHBoxLayout()
        turbo.addWidget(QLabel("Turbo (sent at once)", box))
        turbo.addWidget(self.choice(T.pv("TURBO").suffix))
        turbo.addStretch(1)
        grid.addLayout(turbo, 4, 0, 1, 6)
        return box


class SensorsScreen(_ControllerScreen):
    """Temperature sensors, heaters and flow (``Oxford_CS800_sensors``)."""

    name = "Sensors and heaters"

    def __init__(self, prefix: str, parent: QWidget | None = None) -> None:
        """Build the sensors screen of the controller at ``prefix``."""
        super().__init__(prefix, parent)
        temps, heaters, flow = T.sensors()
        row = QHBoxLayout()
        row.addWidget(self.form("Temperatures", temps, columns=2), 2)
        # Plain labels, not bars: PyDM's scale indicator fails on NaN (a heater the firmware
        # does not report reads NaN with INVALID severity here).
        row.addWidget(self.form("Heaters", heaters), 1)
        self.body.addLayout(row)
        self.body.addWidget(self.form("Flow", flow, columns=3))
        self.body.addStretch(1)


class StatusScreen(_ControllerScreen):
    """Every status record (``Oxford_CS800_status_full``)."""

    name = "Full status"

    def __init__(self, prefix: str, parent: QWidget | None = None) -> None:
        """Build the full-status screen of the controller at ``prefix``."""
        super().__init__(prefix, parent)
        self.body.addWidget(self.form("Status records", T.full_status(), columns=3))
        self.body.addStretch(1)


class AdminScreen(_ControllerScreen):
    """Comms on/off, DEBUG, end, purge, restart, stop (``Oxford_CS800_admin``).

    Every action here but "Comms ON" asks for a confirmation before it writes.
    """

    name = "Admin"

    def __init__(self, prefix: str, parent: QWidget | None = None) -> None:
        """Build the admin screen of the controller at ``prefix``."""
        super().__init__(prefix, parent)
        warning = QLabel("CAUTION: these controls can turn the controller off or restart it.",
                         self)
        warning.setStyleSheet("color: #b00000; font-weight: bold")
        self.body.addWidget(warning)
        comms = QGroupBox("Communication", self)
        grid = QGridLayout(comms)
        disable = T.pv("DISABLE")
        grid.addWidget(self.button(disable.suffix, "Comms ON", 0), 0, 0)
        grid.addWidget(self.button(disable.suffix, "Comms OFF", 1,
                                   "Turn comms OFF? The IOC then ignores this controller's "
                                   "status and sends it no command."), 0, 1)
        grid.addWidget(self.value(disable.suffix, units=False), 0, 2)
        grid.addWidget(QLabel("Log level (DEBUG)", comms), 1, 0)
        grid.addWidget(self.choice(T.pv("DEBUG").suffix), 1, 1)
        self.body.addWidget(comms)
        actions = QGroupBox("Controller", self)
        grid = QGridLayout(actions)
        for row, (action, text, params, question) in enumerate(T.ADMIN):
            grid.addWidget(self.button(T.pv(action).suffix, text, 1, question), row, 0)
            for col, param in enumerate(params):
                grid.addWidget(QLabel(param, actions), row, 1 + 2 * col)
                grid.addWidget(self.entry(T.pv(param).suffix), row, 2 + 2 * col)
        self.body.addWidget(actions)
        self.body.addWidget(self.form("State", [T.pv(s) for s in ("PHASE", "RUNMODE", "ALARM",
                                                                   "ALARMI")]))
        self.body.addStretch(1)


class ValveScreen(Screen):
    """A valve bank of ``n_valves`` valves and ``n_dtoa`` D/A channels at ``prefix``."""

    name = "Valve bank"

    def __init__(self, prefix: str, n_valves: int, n_dtoa: int,
                 parent: QWidget | None = None) -> None:
        """Build the valve-bank screen (PV names from :func:`tables.valve_table`)."""
        super().__init__(prefix, parent)
        table = T.valve_table(n_valves, n_dtoa)
        outer = QVBoxLayout(self)
        outer.addWidget(_bold(QLabel(f"Solenoid valve bank: {prefix} ({n_valves} valves, "
                                     f"{n_dtoa} D/A)", self), 13))
        valves = QGroupBox("Valves (readback; Open puts 1, Close puts 0)", self)
        grid = QGridLayout(valves)
        per_column = 16
        for n in range(1, n_valves + 1):
            column, row = divmod(n - 1, per_column)
            command, readback = table[f"V{n}"].suffix, table[f"V{n}_RBV"].suffix
            grid.addWidget(QLabel(f"V{n}", valves), row, 4 * column)
            led = PyDMByteIndicator(valves, init_channel=self.channel(readback))
            led.showLabels = False
            led.numBits = 1
            grid.addWidget(led, row, 4 * column + 1)
            grid.addWidget(self.button(command, "Open", 1), row, 4 * column + 2)
            grid.addWidget(self.button(command, "Close", 0), row, 4 * column + 3)
        outer.addWidget(valves)
        dtoa = QGroupBox("D/A channels (set point, readback)", self)
        grid = QGridLayout(dtoa)
        for k in range(1, n_dtoa + 1):
            column, row = divmod(k - 1, 4)
            grid.addWidget(QLabel(f"DA{k}", dtoa), row, 3 * column)
            grid.addWidget(self.entry(table[f"DA{k}"].suffix), row, 3 * column + 1)
            grid.addWidget(self.value(table[f"DA{k}_RBV"].suffix), row, 3 * column + 2)
        outer.addWidget(dtoa)
        info = QGroupBox("Commands", self)
        grid = QGridLayout(info)
        for row, suffix in enumerate(("CHANGES", "LAST")):
            grid.addWidget(QLabel(suffix, info), row, 0)
            grid.addWidget(self.value(table[suffix].suffix), row, 1)
        grid.addWidget(self.button(table["RESET"].suffix, "Reset log", 1), 0, 2)
        log = self.value(table["LOG"].suffix, units=False)
        log.displayFormat = DisplayFormat.String
        log.setWordWrap(True)
        log.setMinimumHeight(80)
        grid.addWidget(log, 2, 0, 1, 3)
        outer.addWidget(info)
        outer.addStretch(1)


#: The screens of one controller, in tab order.
CONTROLLER_SCREENS: tuple[type[_ControllerScreen], ...] = (OverviewScreen, SensorsScreen,
                                                           StatusScreen, AdminScreen)


class ScreenWindow(QTabWidget):
    """One window: the screens of each controller prefix, then the valve bank (if any)."""

    def __init__(self, prefixes: list[str], valves: tuple[str, int, int] | None = None) -> None:
        """``valves`` is ``(prefix, n_valves, n_dtoa)`` or None."""
        super().__init__()
        self.prefixes = list(prefixes)
        self.screens: list[Screen] = []
        for prefix in prefixes:
            for cls in CONTROLLER_SCREENS:
                screen = cls(prefix)
                tab = cls.name if len(prefixes) == 1 else f"{prefix} {cls.name}"
                self._add(screen, tab)
        if valves is not None:
            self._add(ValveScreen(*valves), ValveScreen.name)
        self.setWindowTitle("CS800: " + " ".join(prefixes) + (f" + {valves[0]}" if valves
                                                                 else ""))
        #: Re-sends connection states PyDM lost (ticks while the Qt event loop runs).
        self.repair = ConnectionRepair(plugin_connections(self.addresses))
        self._repair_timer = QTimer(self)
        self._repair_timer.timeout.connect(self._repair_tick)
        self._repair_timer.start(int(TICK_PERIOD * 1000))

    def _repair_tick(self) -> None:
        self.repair.tick()

    def _add(self, screen: Screen, tab: str) -> None:
        self.screens.append(screen)
        self.addTab(screen, tab)

    @property
    def addresses(self) -> list[str]:
        """Every CA address of every screen, each once."""
        return list(dict.fromkeys(a for s in self.screens for a in s.addresses))
