"""The ``soldrv`` command: dry runs, real-time runs, stdin requests, bad input."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_runner_virtual import CORPUS, EXAMPLES, needs_corpus

from sim_ioc.process import SimIocProcess, ca_read, ca_write
from soldrv.drv_cli import main, parse_request, read_name_map
from soldrv.runner import load_program

TUT = EXAMPLES / "solenoid_tutorial.sol"


def run_main(args, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    rc = main(args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def test_dry_run_prints_the_timeline():
    rc, out, err = run_main([str(TUT), "--dry-run", "--duration", "4.5", "--mode", "0"])
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["0.0000", "s", "mode", "0", "step", "0", "MODE", "mode", "0",
                                "(request)"]
    assert "STROBES open A (22), close B (25)" in lines[1]
    assert [ln.split()[0] for ln in lines[2:6]] == ["1.2500", "1.5000", "2.0000", "3.5000"]
    assert "STROBES open B (24)" in lines[2]
    assert lines[-1] == "end of dry run at 4.5000 s after 17 ticks"


@needs_corpus
def test_dry_run_reads_timed_requests_and_survives_bad_lines():
    sft = CORPUS / "ref_v4" / "arp-hwv__TM__A@e81f155.ref.sft"
    rc, out, err = run_main(
        [str(sft), "--dry-run", "--duration", "40"],
        stdin="S1\n@10 S4\nbogus\n@12 S9\n",
    )
    assert rc == 0
    assert "Invalid command 'bogus'" in err
    assert "request refused: mode 9 is not defined" in err
    modes = [ln for ln in out.splitlines() if " MODE " in ln]
    assert [ln.split()[0] for ln in modes] == ["0.0000", "30.0000"]
    assert "PENDING mode 4 pending until the next ^ (MSWOK)" in out


def test_bad_input_exits_2_with_a_sentence(tmp_path):
    rc, _, err = run_main([str(tmp_path / "nope.sft"), "--dry-run", "--ticks", "3"])
    assert rc == 2 and "Can't open" in err
    data = (tmp_path / "t.sft")
    from soldrv.sft import write_sft

    data.write_bytes(write_sft(load_program(TUT), 3)[:9])
    rc, _, err = run_main([str(data), "--dry-run", "--ticks", "3"])
    assert rc == 2 and "truncated .sft" in err
    bad = tmp_path / "bad.sol"
    bad.write_text("solenoid A 1 2 3\nmode 0 {\n  A: O\n  # no\n}\n")
    rc, _, err = run_main([str(bad), "--dry-run", "--ticks", "3"])
    assert rc == 2 and "bad.sol:4" in err
    rc, _, err = run_main([str(TUT), "--dry-run", "--ticks", "3", "--mode", "2"])
    assert rc == 2 and "--mode 2: mode 2 is not defined; defined modes: 0" in err
    rc, _, err = run_main([str(TUT), "--dry-run", "--mode", "0"])
    assert rc == 2 and "needs a limit" in err


def test_parse_request_and_name_map():
    assert parse_request("S3\n") == (None, 3)
    assert parse_request("@2.5 s12") == (2.5, 12)
    for bad in ("X3", "S", "S-1", "S1 S2"):
        with pytest.raises(ValueError, match="Invalid command"):
            parse_request(bad)
    prog = load_program(TUT)
    m = read_name_map("# map\nA  sim:V1\nB = sim:V2  # second\nA.rbv sim:V1_RBV\n", prog)
    assert m == {"solenoids": {0: "sim:V1", 1: "sim:V2"}, "status": {0: "sim:V1_RBV"},
                 "dtoa": {}}
    with pytest.raises(ValueError, match="line 1: 'Q' is neither a solenoid nor a DtoA .*"
                                         "solenoids: A, B"):
        read_name_map("Q sim:V9\n", prog)
    with pytest.raises(ValueError, match="line 2: expected 'KEY PV'"):
        read_name_map("A x\nB\n", prog)
    with pytest.raises(ValueError, match="line 3: 'a' is mapped twice \\(first on line 1\\)"):
        read_name_map("A x\nB y\na z\n", prog)
    with pytest.raises(ValueError, match="line 1: no DtoA of the program uses address 0x0E10"):
        read_name_map("0x0E10 sim:DA1\n", prog)


def test_real_time_run_in_process():
    rc, out, err = run_main([str(TUT), "--mode", "0", "--duration", "4.2", "--speed", "40"])
    assert rc == 0, err
    assert "STROBES open B (24)" in out and "STROBES open A (22)" in out
    assert "HALT runner closed" in out


def soldrv_cmd():
    exe = Path(sys.executable).with_name("soldrv")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "soldrv.drv_cli"]


@pytest.mark.integration
@needs_corpus
def test_console_script_reads_requests_from_stdin(tmp_path):
    sft = CORPUS / "ref_v4" / "arp-hwv__TM__A@e81f155.ref.sft"
    log = tmp_path / "out.txt"
    with open(log, "w") as f, open(tmp_path / "err.txt", "w") as e:
        proc = subprocess.Popen([*soldrv_cmd(), str(sft), "--speed", "20"],
                                stdin=subprocess.PIPE, stdout=f, stderr=e, text=True)
        try:
            proc.stdin.write("S9\nhello\nS4\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 20
            while "STROBES close sol0 (50)" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert proc.poll() is None  # still running after the refusals
            proc.stdin.write("S0\nQ\n")
            proc.stdin.flush()
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    err = (tmp_path / "err.txt").read_text()
    assert "mode 9 is not defined" in err and "Invalid command 'hello'" in err
    out = log.read_text()
    assert "MODE mode 4 (request)" in out and "MODE mode 0 (interrupt)" in out


@pytest.fixture(scope="module")
def valve_ioc(module_ioc_factory):
    """(IOC, bank prefix): a 2-valve bank for the console-script tests of this module."""
    ioc = module_ioc_factory(SimIocProcess(controllers=1, valves=2, speed=100.0))
    return ioc, ioc.prefix + "VB:"


def bank_log(ioc, prefix):
    raw = ca_read(prefix + "LOG", ioc.env).data
    text = bytes(raw).split(b"\0", 1)[0].decode()
    return [line.split(" ", 1)[1] for line in text.splitlines() if line]


@pytest.mark.integration
def test_console_script_drives_the_valve_bank_and_ends_safe(tmp_path, valve_ioc):
    ioc, prefix = valve_ioc
    ca_write(prefix + "RESET", 1, ioc.env)
    env = {**os.environ, **ioc.env}
    with open(tmp_path / "out.txt", "w") as f:
        rc = subprocess.run(
            [*soldrv_cmd(), str(TUT), "--valve-bank", prefix, "--mode", "0",
             "--duration", "4.1", "--speed", "20", "-q"],
            stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=60,
        ).returncode
    assert rc == 0, (tmp_path / "out.txt").read_text()
    # init (V1=1, V2=0), steps 5, 6, 8, 14 of one cycle, then the safe state at exit
    assert bank_log(ioc, prefix) == ["V1=1", "V2=0", "V2=1", "V1=0", "V2=0", "V1=1",
                                     "V1=0", "V2=0"]
    assert list(ca_read(prefix + "STATES", ioc.env).data) == [0, 0]


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_cycle_leaves_the_safe_state(tmp_path, valve_ioc, sig):
    ioc, prefix = valve_ioc
    ca_write(prefix + "RESET", 1, ioc.env)
    env = {**os.environ, **ioc.env}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as f, open(err, "w") as e:
        proc = subprocess.Popen(
            [*soldrv_cmd(), str(TUT), "--valve-bank", prefix, "--mode", "0", "--safe", "B=1"],
            stdin=subprocess.PIPE, stdout=f, stderr=e, env=env, text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while "STROBES open A" not in out.read_text():  # mode 0 runs: A is open
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
            proc.send_signal(sig)
            assert proc.wait(30) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdin.close()
    assert "soldrv: interrupted" in err.read_text()
    assert "safe state: A=0 B=1" in out.read_text()
    assert list(ca_read(prefix + "STATES", ioc.env).data) == [0, 1]
    assert bank_log(ioc, prefix)[-2:] == ["V1=0", "V2=1"]


def test_real_time_tick_limit_is_exact():
    # ticks 0..5 run (B opens at step 5); A's close at step 6 never does
    rc, out, err = run_main([str(TUT), "--mode", "0", "--ticks", "5", "--speed", "40"])
    assert rc == 0, err
    assert "STROBES open B (24)" in out and "close A (23)" not in out.split("safe state")[0]


def test_timed_requests_in_real_time_and_quitting_early():
    # @T on stdin is scheduled at T logical seconds; --at far ahead does not keep soldrv alive
    before = {t.name for t in threading.enumerate()}
    # 10 logical s at 8x: the request may act up to 9 logical s (1.1 s of wall time) late on a
    # loaded machine and still be seen before the end
    rc, out, err = run_main([str(TUT), "--speed", "8", "--duration", "10", "--at", "3600:0"],
                            stdin="@1 S0\n")
    assert rc == 0, err
    mode_line = next(ln for ln in out.splitlines() if " MODE " in ln)
    assert 1.0 <= float(mode_line.split()[0]) < 10.0  # never early; before the end
    assert out.splitlines()[-1] == "safe state: A=0 B=0"
    rc, out, err = run_main([str(TUT), "--at", "3600:0", "--no-safe"], stdin="Q\n")
    assert rc == 0 and out == "" and err == ""
    left = {t.name for t in threading.enumerate()} - before
    assert not left, left


def test_bad_map_files_exit_2_with_the_line(tmp_path):
    bad = tmp_path / "bad.map"
    bad.write_text("A sim:V1\nZZ sim:V9\n")
    rc, out, err = run_main([str(TUT), "--pv-map", str(bad), "--mode", "0"])
    assert rc == 2 and out == ""
    assert "soldrv: error: name map line 2: 'ZZ' is neither a solenoid nor a DtoA" in err
    bad.write_bytes(b"A \xff\xfe\n")
    rc, _, err = run_main([str(TUT), "--pv-map", str(bad), "--mode", "0"])
    assert rc == 2
    assert f"soldrv: error: cannot read the name map {bad}: it is not UTF-8 text (byte 0xff at " \
           "offset 2)" in err


def test_bad_arguments_are_refused(capsys):
    for bad in (["--duration", "-1"], ["--speed", "0"], ["--ticks", "0"], ["--at", "x:1"],
                ["--at", "-1:0"], ["--mode", "-2"], ["--safe", "A=2"]):
        with pytest.raises(SystemExit) as info:
            main([str(TUT), *bad], stdin=io.StringIO(""))
        assert info.value.code == 2, bad
    assert "--duration must be > 0" in capsys.readouterr().err
    rc, _, err = run_main([str(TUT), "--safe", "Z=1", "--mode", "0"])
    assert rc == 2 and "--safe Z=1: no solenoid 'Z'" in err
    rc, _, err = run_main([str(TUT), "--pv-map", "/nonexistent/map.txt"])
    assert rc == 2
    assert "soldrv: error: cannot read the name map /nonexistent/map.txt: no such file or " \
           "directory\n" == err


def test_dry_run_is_bounded(monkeypatch):
    import soldrv.drv_cli as drv

    monkeypatch.setattr(drv, "DRY_RUN_MAX_TICKS", 50)
    rc, out, err = run_main([str(TUT), "--dry-run", "--duration", "1e12", "--mode", "0", "-q"])
    assert rc == 0
    assert "dry run stopped after 50 ticks" in err
    assert out == "end of dry run at 12.5000 s after 50 ticks\n"
    # a request after the end of the run never acts (it used to act at the end time)
    rc, out, err = run_main([str(TUT), "--dry-run", "--duration", "2", "--at", "5:0"])
    assert (rc, out, err) == (0, "end of dry run at 2.0000 s after 0 ticks\n", "")


def test_program_error_is_printed_and_the_run_goes_on(tmp_path):
    from soldrv.program import Program, SetPoint, Solenoid
    from soldrv.sft import save_sft

    prog = Program(
        version=0x0300, solenoids=[Solenoid(1, 2, 0x408, 1)], set_points=[SetPoint(0x10, 7)],
        mode_indices=[0, 3],
        code=bytes([8, 9, 4, 2, 0, 0x40, 0, 1, 1, 0, 2, 1, 3, 6, 0, 4]),  # mode 0: DTOA 9 (bad)
    )
    save_sft(prog, tmp_path / "broken.sft", 3)
    rc, out, err = run_main([str(tmp_path / "broken.sft"), "--dry-run", "--duration", "3"],
                            stdin="S0\n@0.5 S1\n")
    assert rc == 1  # the run did not end as asked
    assert "mode 0, offset 0: DTOA 9 is out of range" in err
    assert "0.5000 s  mode   1 step    0  STROBES open sol0 (1)" in out
    assert "1.5000 s  mode   1 step    1  STROBES close sol0 (2)" in out
    assert "2.5000 s  mode   1 step    0  STROBES open sol0 (1)" in out  # after the GOTO
