"""The Tiled store: ``cs800-demo --data DIR`` ramps to 150 K and leaves a run that
``open_catalog(DIR)``, ``tiled serve`` on DIR and ``examples/plot_run.py`` give back; without
Tiled everything else still works."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from polling import wait_for
from test_demo import private_env, run_demo

from ophyd_cs800 import store
from sim_ioc.process import free_port

pytestmark = pytest.mark.integration

MONITOR_STREAMS = {"cs0_monitor", "cs0_setpoint_monitor", "cs0_phase_name_monitor",
                   "cs0_run_mode_name_monitor", "cs0_alarm_monitor", "cs0_alarm_code_monitor"}


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """A store directory holding the run of one ``cs800-demo --data DIR``, and its output."""
    tmp = tmp_path_factory.mktemp("demo")
    directory = tmp / "runs"
    rc, text = run_demo(tmp, "--data", str(directory), "--speed", "300")
    assert rc == 0, text[-3000:]
    return directory, text


def test_demo_ramps_to_150_and_says_where_it_ended(demo_store):
    _, text = demo_store
    match = re.search(r"cs0 ended at (\d+\.\d\d) K \(target 150\.00 K", text)
    assert match, text[-3000:]
    assert abs(float(match.group(1)) - 150.0) <= 0.2
    assert "RE(ramp(cs0, 150" in text
    assert "|         2 |" in text  # the live table's second row: the reading at the end
    assert "\r" not in text  # no progress bar when stdout is no terminal


def test_demo_run_reads_back_with_open_catalog(demo_store):
    directory, text = demo_store
    assert (directory / "catalog.db").is_file() and (directory / "tables.db").is_file()
    match = re.search(r"read back from the store at (\S+): run (\w{8}) has 2 events, last cs0 "
                      r"(\d+\.\d\d) K", text)
    assert match and match.group(1) == str(directory), text[-3000:]
    client = store.open_catalog(directory)
    assert len(client) == 1
    run = client.values().last()
    assert run.metadata["start"]["uid"].startswith(match.group(2))
    assert run.metadata["start"]["plan_name"] == "ramp"
    assert run.metadata["stop"]["exit_status"] == "success"
    assert set(run) == {"primary", *MONITOR_STREAMS}
    temps = run["primary"]["cs0"].read()
    assert len(temps) == 2 and abs(temps[-1] - 150.0) <= 0.2
    assert float(match.group(3)) == pytest.approx(temps[-1], abs=0.005)
    assert list(run["primary"]["cs0_phase_name"].read())[-1] == "Hold"
    assert run["primary"]["cs0_phase"].read()[-1] == 3  # the int stays available
    monitored = run["cs0_monitor"]["cs0"].read()
    assert len(monitored) > 10 and monitored.max() > 250 and monitored.min() < 151
    assert "Ramp" in list(run["cs0_phase_name_monitor"]["cs0_phase_name"].read())
    assert len(run["cs0_setpoint_monitor"]["cs0_setpoint"].read()) > 10


def test_tiled_serve_gives_the_run_over_http(demo_store, tmp_path):
    directory, _ = demo_store
    port = free_port(socket.SOCK_STREAM)
    command = store.serve_command(directory, port=port)
    tiled = Path(sys.executable).with_name("tiled")
    command[0] = str(tiled) if tiled.exists() else command[0]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        client = wait_for(lambda: store.open_catalog(url), f"tiled serve on {url}", timeout=60,
                          interval=0.2, tolerate=(Exception,))
        run = client.values().last()
        temps = run["primary"]["cs0"].read()
        assert abs(temps[-1] - 150.0) <= 0.2
        assert set(run) >= {"primary", "cs0_monitor"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_plot_run_draws_the_stored_run(demo_store, tmp_path):
    pytest.importorskip("matplotlib")
    directory, text = demo_store
    uid = re.search(r"run (\w{8}) has", text).group(1)
    examples = Path(__file__).resolve().parents[1] / "examples"
    result = subprocess.run([sys.executable, str(examples / "plot_run.py"), uid, "--data",
                             str(directory), "--out", str(tmp_path / "run.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"\d{2,} TEMP points, \d{2,} SETPOINT points, 0 alarm\(s\) marked; ended "
                     r"at 1(49|50)\.\d\d K", result.stdout), result.stdout
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_file_as_the_store_gets_a_sentence_and_is_left_alone(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(NotADirectoryError, match=r"the store .*notes.txt is a file, not a "
                       r"directory: give a directory \(created on first use\) or an http"):
        store.open_catalog(path)
    rc, text = run_demo(tmp_path, "--data", str(path))
    assert rc == 2 and f"--data must be a directory (created on first use) or an http(s):// " \
        f"Tiled server, got the file {path}" in text
    assert "starting the simulated IOC" not in text
    assert path.read_text() == "keep me"


BLOCK_TILED = textwrap.dedent("""
    import sys

    class _NoTiled:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tiled", "bluesky_tiled_plugins"):
                raise ImportError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoTiled())
""")


def test_without_tiled_the_rest_works_and_the_store_says_why(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TILED)
    env = private_env(tmp_path, PYTHONPATH=str(tmp_path))
    check = textwrap.dedent("""
        import ophyd_cs800, ophyd_cs800.device, ophyd_cs800.plans, ophyd_cs800.suspenders
        import sim_ioc.ioc, soldrv.runner, soldrv.plans
        from ophyd_cs800 import store
        try:
            store.open_catalog("runs")
        except store.StoreUnavailableError as exc:
            print("SENTENCE:", exc)
        import tiled
    """)
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "SENTENCE: saving runs needs Tiled and bluesky-tiled-plugins (bluesky_tiled_plugins " \
           "is not installed): pip install 'ophyd-cs800[data]'" in result.stdout, result.stderr
    assert "No module named 'tiled'" in result.stderr  # the blocker really blocked it
    assert not (tmp_path / "runs").exists()
    rc, text = run_demo(tmp_path, "--target", "260", "--speed", "300", "--data",
                        str(tmp_path / "runs"), env=env)
    assert rc == 0, text[-3000:]
    assert "cs800-demo: the run is not stored: saving runs needs Tiled" in text
    assert re.search(r"cs0 ended at 2(59|60)\.\d\d K", text), text[-3000:]
    assert not (tmp_path / "runs").exists()


def test_a_monitor_event_after_the_stop_document_is_counted_not_an_error(tmp_path, caplog):
    """bluesky can emit a monitor event after its run's stop (the event is built on the
    signal's callback thread): the writer skips it with one INFO sentence, writes the rest,
    and the next run is stored whole."""
    pytest.importorskip("bluesky_tiled_plugins", reason="the [data] extra is not installed")
    import time

    from event_model import compose_run

    caplog.set_level("INFO", logger="ophyd_cs800.store")
    callbacks: list = []
    engine = type("FakeRE", (), {"subscribe": lambda self, cb: callbacks.append(cb)})()
    where = store.subscribe_store(engine, tmp_path / "runs")
    uids = []
    for _ in range(2):
        run = compose_run()
        desc = run.compose_descriptor(name="cs0_monitor", data_keys={
            "cs0": {"source": "PV:x", "dtype": "number", "shape": []}})
        docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
        docs += [("event", desc.compose_event(data={"cs0": t}, timestamps={"cs0": time.time()}))
                 for t in (150.0, 151.0)]
        late = desc.compose_event(data={"cs0": 152.0}, timestamps={"cs0": time.time()})
        docs += [("stop", run.compose_stop()), ("event", late)]
        for name, doc in docs:
            callbacks[0](name, doc)
        uids.append(run.start_doc["uid"])
    assert where.flush(60)
    assert where.writer.failures == 0
    assert where.writer.late_events == 2
    said = [r.getMessage() for r in caplog.records if r.name == "ophyd_cs800.store"]
    assert said == ["not stored: a cs0_monitor event that came after its run's stop document "
                    "(bluesky emits monitor events from the signal's callback thread)"] * 2
    for uid in uids:
        stored = where.run(uid)
        assert list(stored["cs0_monitor"].read()["cs0"].values) == [150.0, 151.0]
        assert stored.metadata["stop"]["exit_status"] == "success"
