"""``cs800-demo`` end to end: a subprocess that starts its own sim IOC and ramps to 150 K."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DEMO_TIMEOUT = 120.0  # the demo takes about 20 s; generous for a loaded 2-core machine


def demo_command() -> list[str]:
    script = Path(sys.executable).with_name("cs800-demo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ophyd_cs800.demo"]


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def private_env(tmp_path, **extra):
    """The environment with the per-user data directory (the default store) under tmp_path."""
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg-data"), **extra}


def run_command(tmp_path, command, env=None):
    """Run ``command`` in its own session, output to a file; kill the group on timeout."""
    out_path = tmp_path / "command.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=env or private_env(tmp_path))
        try:
            rc = proc.wait(timeout=DEMO_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and the IOC it started
            proc.wait(10)
            pytest.fail(f"{command} did not finish in {DEMO_TIMEOUT} s:\n"
                        f"{out_path.read_text(errors='replace')[-3000:]}")
    return rc, out_path.read_text(errors="replace")


def run_demo(tmp_path, *args, env=None):
    return run_command(tmp_path, [*demo_command(), *args], env=env)


def test_demo_rejects_bad_arguments_without_starting_anything(tmp_path):
    rc, text = run_demo(tmp_path, "--target", "500")
    assert rc == 2 and "--target must be 80-400 K, got 500" in text
    assert "starting the simulated IOC" not in text


def test_demo_table_falls_back_to_livetable_without_matplotlib(monkeypatch):
    from bluesky.callbacks.core import LiveTable

    from ophyd_cs800 import demo

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as in an environment without matplotlib
    monkeypatch.delitem(sys.modules, "bluesky.callbacks.best_effort", raising=False)
    table, kind = demo._table_callback()
    assert kind == "LiveTable" and isinstance(table, LiveTable)


def test_example_temperature_series_runs_against_a_sim(tmp_path):
    rc, text = run_command(tmp_path, [sys.executable, str(EXAMPLES / "temperature_series.py"),
                                      "--temps", "280", "270", "--speed", "500",
                                      "--settle", "0.3"])
    assert rc == 0, text[-3000:]
    rows = re.findall(r"\|\s+\d+ \| [\d:.]+ \|\s+(\d+\.\d\d) \|\s+1\.000 \|", text)
    assert [round(float(t)) for t in rows] == [280, 270], text[-3000:]


def test_example_plot_ramp_writes_a_png_from_the_store(tmp_path):
    pytest.importorskip("matplotlib")
    rc, text = run_command(tmp_path, [sys.executable, str(EXAMPLES / "plot_ramp.py"),
                                      "--target", "270", "--speed", "500", "--data", "runs",
                                      "--out", "ramp.png"])
    assert rc == 0, text[-3000:]
    png = tmp_path / "ramp.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    match = re.search(r"(\d+) TEMP points, (\d+) SETPOINT points, 0 alarm\(s\) marked; ended "
                      r"at (\d+\.\d\d) K", text)
    assert match and int(match.group(1)) >= 5, text[-3000:]
    assert abs(float(match.group(3)) - 270) <= 0.2
    assert (tmp_path / "runs" / "catalog.db").is_file()


def test_ipython_startup_file_stores_runs_and_leaves_no_det_for_hardware(tmp_path):
    startup = EXAMPLES / "ipython_startup_cs800.py"
    script = (f"exec(compile(open({str(startup)!r}).read(), 'startup', 'exec'))\n"
              "RE(ramp(cs0, 285))\n"
              "print('RUNS', len(db), 'DET', 'det' in globals(), 'LABELS', cs0._ophyd_labels_)\n")
    env = private_env(tmp_path, CS800_DATA=str(tmp_path / "runs"), CS800_SIM_SPEED="300")
    rc, text = run_command(tmp_path, [sys.executable, "-c", script], env=env)
    assert rc == 0, text[-3000:]
    assert f"runs are stored in the Tiled catalog at {tmp_path / 'runs'}" in text
    assert "RUNS 1 DET True LABELS {'cryostreams'}" in text, text[-3000:]
    assert re.search(r"CS800: <CS800 cs0: TEMP \d+\.\d\d K, phase \w+, run mode [\w ]+, .*"
                     r"last status \d+\.\d s ago", text), text[-3000:]


def test_demo_ctrl_c_stops_the_ioc_it_started(tmp_path):
    out_path = tmp_path / "demo.out"
    ioc_pid = None
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen([*demo_command(), "--speed", "20"], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=private_env(tmp_path))
            try:
                text = ""
                deadline = time.monotonic() + DEMO_TIMEOUT
                while "RE(ramp(cs0" not in text and time.monotonic() < deadline:
                    assert proc.poll() is None, out_path.read_text(errors="replace")
                    time.sleep(0.1)
                    text = out_path.read_text(errors="replace")
                ioc_pid = int(re.search(r"IOC pid (\d+)", text).group(1))
                os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole group
                rc = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        text = out_path.read_text(errors="replace")
        assert rc == 130, text[-3000:]
        assert "interrupted; stopping the IOC" in text
        assert "cs0 ended at" not in text
        deadline = time.monotonic() + 20
        while Path(f"/proc/{ioc_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{ioc_pid}").exists(), "the demo left its IOC running"
    finally:
        # the IOC runs in its own session, out of reach of killpg on the demo: if the demo
        # failed to stop it, stop it here by its PID so a failed test leaks no process
        if ioc_pid is not None and Path(f"/proc/{ioc_pid}").exists():
            os.kill(ioc_pid, signal.SIGKILL)
