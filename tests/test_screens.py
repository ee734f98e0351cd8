"""The PyDM operator screens and ``cs800-screen`` (sim_ioc.screens).

The table tests need no Qt. The others run ``cs800-screen`` (or a small script building a
screen) as a subprocess without a display (``QT_QPA_PLATFORM=offscreen``) against a
``cs800-sim-ioc`` subprocess, and skip only when PyDM is not installed (the ``screens`` extra).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from sim_ioc.process import SimIocProcess
from sim_ioc.pvs import STATUS_PVS
from sim_ioc.records import C_IOC_RECORDS
from sim_ioc.screens import tables as T
from sim_ioc.screens.cli import build_parser
from tests.polling import poll

needs_pydm = pytest.mark.skipif(importlib.util.find_spec("pydm") is None,
                                reason="PyDM is not installed (pip install -e '.[screens]')")
RUN_TIMEOUT = 120


def _run(args, env, timeout=RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env={**os.environ, **env,
                                                        "QT_QPA_PLATFORM": "offscreen"},
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _screen(args, env, timeout=RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return _run(["-m", "sim_ioc.screens.cli", *args], env, timeout)


# ---------------------------------------------------------------------- tables (no Qt)


def test_every_screen_pv_is_served_by_the_ioc():
    table = T.controller_table()
    used = T.controller_suffixes()
    assert set(used) <= set(table)
    # the full status shows every status record; the overview and admin the synApps controls
    assert {pv.suffix for pv in STATUS_PVS} <= set(used)
    for name in ("TEMP", "SETPOINT", "TARGETTEMP", "PHASE", "RUNMODE", "ALARM", "DISABLE",
                 "RAMP", "RRATE", "RTEMP", "PLAT", "PTIME", "COOL", "CTEMP", "HOLD", "PAUSE",
                 "RESUME", "END", "ERATE", "PURGE", "RESTART", "STOP", "TURBO"):
        assert name in used, name


def test_the_cs800_screens_use_only_records_of_the_synapps_c_ioc():
    # so they work against the C IOC too, not only against ours
    assert set(T.controller_suffixes()) <= set(C_IOC_RECORDS)


def test_a_pv_the_ioc_does_not_serve_is_refused_by_name():
    with pytest.raises(KeyError, match="the IOC serves no controller PV 'TEMPERATURE'"):
        T.pv("TEMPERATURE")


def test_stop_and_the_other_admin_actions_carry_a_question():
    questions = {action: question for action, _text, _params, question in T.ADMIN}
    assert set(questions) == {"END", "PURGE", "RESTART", "STOP"}
    assert all("?" in q for q in questions.values())
    assert "STOP" not in {action for action, _text, _params in T.PROGRAM}


def test_valve_table_follows_the_bank_size():
    table = T.valve_table(3, 2)
    assert {"V1", "V3_RBV", "DA2", "DA2_RBV", "LOG", "CHANGES", "LAST", "RESET"} <= set(table)
    assert "V4" not in table and "DA3" not in table
    assert table["V1"].writable and not table["V1_RBV"].writable


def test_bad_prefix_is_one_sentence(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["xxx"])
    assert info.value.code == 2
    assert "a prefix ends with ':' (the controller's $(P)$(R), e.g. xxx:CS0:), got 'xxx'" in \
        capsys.readouterr().err


def test_console_script_declared():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert eps.get("cs800-screen") == "sim_ioc.screens.cli:main"


# ---------------------------------------------------------------------- PyDM, headless


def _counts(stdout: str) -> tuple[int, int]:
    match = re.search(r"^(\d+) of (\d+) channels connected$", stdout, re.M)
    assert match, stdout
    return int(match[1]), int(match[2])


def _check_all(ioc, epics_lib: str) -> None:
    result = _screen(["--check", "--timeout", "30", ioc.controller_prefix(0),
                      ioc.controller_prefix(1), "--valves", f"{ioc.prefix}VB:"],
                     {**ioc.env, "PYDM_EPICS_LIB": epics_lib})
    assert result.returncode == 0, result.stdout + result.stderr
    connected, total = _counts(result.stdout)
    # every controller PV of the screens, twice, plus the valve bank's (V, V_RBV, DA, DA_RBV,
    # CHANGES, LAST, RESET, LOG)
    assert total == 2 * len(T.controller_suffixes()) + 2 * ioc.valves + 2 * 8 + 4
    assert connected == total


@needs_pydm
@pytest.mark.integration
@pytest.mark.parametrize("epics_lib", ["pyepics", "caproto"])
def test_check_connects_every_channel(cs800_sim_ioc, epics_lib):
    """PyDM's ca plugin through pyepics (its default) and through caproto."""
    _check_all(cs800_sim_ioc, epics_lib)


@needs_pydm
@pytest.mark.integration
def test_check_connects_every_channel_of_the_synapps_flavour(ioc_factory):
    ioc = ioc_factory(SimIocProcess(controllers=2, valves=4, speed=100.0, flavor="synapps"))
    _check_all(ioc, "pyepics")


_LOSE_ONE_STATE = textwrap.dedent("""
    import json, sys, time
    from qtpy.QtWidgets import QApplication
    from pydm.data_plugins import plugin_for_address
    from pydm.widgets import PyDMLabel
    from sim_ioc.screens.cli import wait_connected
    from sim_ioc.screens.displays import ScreenWindow
    app = QApplication([])
    window = ScreenWindow([sys.argv[1]])
    address = "ca://" + sys.argv[1] + "TEMP"
    missing = wait_connected(app, window.addresses, 30)
    connection = plugin_for_address(address).connections[address.removeprefix("ca://")]
    label = next(w for w in window.findChildren(PyDMLabel) if w.channel == address)
    connection.send_connection_state(False)  # what PyDM's add_listener does when it loses the race
    app.processEvents()
    told = [connection.connected, label._connected]
    deadline = time.monotonic() + 10
    while not (connection.connected and label._connected) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    print(json.dumps({"missing": missing, "told": told, "pv": bool(connection.pv.connected),
                      "after": [connection.connected, label._connected],
                      "repaired": window.repair.repaired, "address": address}))
""")


@needs_pydm
@pytest.mark.integration
@pytest.mark.parametrize("epics_lib", ["pyepics", "caproto"])
def test_a_connection_state_pydm_lost_is_repaired_in_the_window(cs800_sim_ioc, epics_lib):
    """PyDM's plugin says "disconnected" while its client PV is connected (its add_listener
    race, seen in CI): the window sends the truth again within two ticks, widgets follow."""
    result = _run(["-c", _LOSE_ONE_STATE, cs800_sim_ioc.controller_prefix(0)],
                  {**cs800_sim_ioc.env, "PYDM_EPICS_LIB": epics_lib})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["missing"] == []
    assert out["told"] == [False, False] and out["pv"] is True  # the lost state, as in the race
    assert out["after"] == [True, True]
    assert out["repaired"] == [out["address"]]


@needs_pydm
@pytest.mark.integration
def test_check_fails_and_names_what_did_not_connect(cs800_sim_ioc):
    ioc = cs800_sim_ioc
    result = _screen(["--check", "--timeout", "2", ioc.controller_prefix(0), "nobody:CS0:"],
                     ioc.env)
    assert result.returncode == 1
    connected, total = _counts(result.stdout)
    assert connected <= total // 2  # (all of the live half, unless the machine is very slow)
    n = len(T.controller_suffixes())
    assert f"nobody:CS0: {n} of {n} (CTRLNUM, VER, DISABLE, TEMP, SETPOINT, ...)" in \
        result.stderr
    # (Qt may warn first, e.g. about XDG_RUNTIME_DIR)
    assert result.stderr.strip().splitlines()[-1].startswith(
        "cs800-screen: not connected after 2 s: ")


@needs_pydm
def test_buttons_that_stop_or_restart_ask_first():
    script = textwrap.dedent("""
        import json
        from qtpy.QtWidgets import QApplication
        from pydm.widgets import PyDMPushButton
        from sim_ioc.screens.displays import AdminScreen, OverviewScreen
        app = QApplication([])
        out = {}
        screens = [cls("nowhere:CS0:") for cls in (AdminScreen, OverviewScreen)]
        for screen in screens:
            for b in screen.findChildren(PyDMPushButton):
                out[b.objectName()] = [b.showConfirmDialog, b.confirmMessage]
        print(json.dumps(out))
    """)
    result = _run(["-c", script], {"EPICS_CA_ADDR_LIST": "127.0.0.1:9",
                                   "EPICS_CA_AUTO_ADDR_LIST": "NO"})
    assert result.returncode == 0, result.stderr
    buttons = json.loads(result.stdout.strip().splitlines()[-1])
    assert buttons["STOP_Stop"][0] is True
    assert buttons["STOP_Stop"][1].startswith("Stop the CryoStream?")
    for name in ("END_End", "PURGE_Purge", "RESTART_Restart", "DISABLE_Comms_OFF"):
        assert buttons[name][0] is True, name
    assert buttons["DISABLE_Comms_ON"][0] is False
    assert buttons["RAMP_Ramp"][0] is False  # program controls act at once, as in MEDM


def test_without_pydm_the_command_says_what_to_install():
    # PyDM and Qt made unimportable in a subprocess: the tables and the command still import
    script = textwrap.dedent("""
        import sys
        for name in ("pydm", "qtpy", "PyQt5"):
            sys.modules[name] = None
        import sim_ioc.screens.tables, sim_ioc.ioc, sim_ioc.cli
        from sim_ioc.screens.cli import main
        sys.exit(main(["--check", "xxx:CS0:"]))
    """)
    result = _run(["-c", script], {})
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert message.startswith("cs800-screen needs PyDM and a Qt binding, which are not "
                              "installed (")
    assert message.endswith("): pip install 'ophyd-cs800[screens]'")
    assert "\n" not in message


_NOWHERE = {"EPICS_CA_ADDR_LIST": "127.0.0.1:9", "EPICS_CA_AUTO_ADDR_LIST": "NO"}


@needs_pydm
def test_a_valve_bank_that_does_not_answer_is_one_sentence():
    result = _screen(["--check", "--timeout", "1", "nobody:CS0:", "--valves", "nobody:VB:"],
                     _NOWHERE)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "cs800-screen: the valve bank nobody:VB: did not answer (nobody:VB:NVALVES: ")


@needs_pydm
def test_the_window_closes_on_sigint():
    proc = subprocess.Popen([sys.executable, "-m", "sim_ioc.screens.cli", "nobody:CS0:"],
                            env={**os.environ, **_NOWHERE, "QT_QPA_PLATFORM": "offscreen"},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "cs800-screen did not start within 60 s"
        assert proc.stdout.readline().decode() == (
            "cs800-screen: CS800: nobody:CS0: (close the window or Ctrl-C to quit)\n")
        assert not poll(lambda: proc.poll() is not None, 0.5), proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
