"""soldrv's exit status and error sentences: program errors, Ctrl-C in a dry run, file errors,
``--safe`` names checked by a dry run, the safe state after a failure in real time."""

from __future__ import annotations

import signal
import subprocess

import polling
import pytest
from test_soldrv_cli import TUT, run_main, soldrv_cmd

from soldrv.program import Program, SetPoint, Solenoid
from soldrv.sft import save_sft


def broken_sft(tmp_path):
    """Mode 0: DTOA 9 (out of range); mode 1: open, WAIT, close, WAIT, GOTO (1 s ticks)."""
    prog = Program(
        version=0x0300, solenoids=[Solenoid(1, 2, 0x408, 1)], set_points=[SetPoint(0x10, 7)],
        mode_indices=[0, 3],
        code=bytes([8, 9, 4, 2, 0, 0x40, 0, 1, 1, 0, 2, 1, 3, 6, 0, 4]),
    )
    path = tmp_path / "broken.sft"
    save_sft(prog, path, 3)
    return path


def test_a_program_error_in_real_time_exits_1_after_the_safe_state(tmp_path):
    rc, out, err = run_main([str(broken_sft(tmp_path)), "--mode", "0", "--duration", "0.2",
                             "--speed", "10"])
    assert rc == 1
    lines = err.splitlines()
    assert lines[0].startswith("soldrv: mode 0, offset 0: DTOA 9 is out of range")
    assert lines[1] == "soldrv: the hardware was put in the safe state"
    assert lines[-1] == ("soldrv: the run did not end as asked: 1 mode(s) stopped on a failure "
                         "(exit status 1)")
    assert out.splitlines()[-1] == "safe state: sol0=0"


def test_a_clean_run_still_exits_0(tmp_path):
    rc, _, err = run_main([str(broken_sft(tmp_path)), "--dry-run", "--duration", "3",
                           "--mode", "1"])
    assert (rc, err) == (0, "")


def test_dry_run_checks_safe_names():
    rc, out, err = run_main([str(TUT), "--dry-run", "--ticks", "3", "--safe", "Z=1"])
    assert (rc, out) == (2, "")
    assert err == "soldrv: error: --safe Z=1: no solenoid 'Z' in the program; solenoids: A, B\n"


def test_file_errors_name_the_file_in_a_sentence(tmp_path):
    (tmp_path / "d.sft").mkdir()
    rc, _, err = run_main([str(tmp_path / "d.sft"), "--dry-run", "--ticks", "3"])
    assert rc == 2
    assert err == f"soldrv: error: cannot read {tmp_path / 'd.sft'}: is a directory\n"
    rc, _, err = run_main([str(tmp_path / "none.sft"), "--dry-run", "--ticks", "3"])
    assert rc == 2 and err == f"soldrv: error: Can't open {tmp_path / 'none.sft'}: no such file\n"
    rc, _, err = run_main([str(TUT), "--pv-map", str(tmp_path), "--mode", "0"])
    assert rc == 2
    assert err == f"soldrv: error: cannot read the name map {tmp_path}: is a directory\n"


def _ignore_and_block_sigint() -> None:
    """In the child before exec: SIGINT ignored and blocked, as a parent may leave it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _signal_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return " ".join(line.strip() for line in f if line.startswith(("SigBlk", "SigIgn")))
    except OSError as exc:
        return str(exc)


@pytest.mark.integration
@pytest.mark.parametrize("sig, inherited", [
    (signal.SIGINT, "default"),
    (signal.SIGINT, "ignored and blocked"),  # e.g. a background job of a script
    (signal.SIGTERM, "default"),
])
def test_ctrl_c_on_a_dry_run_prints_one_line_and_exits_130(tmp_path, sig, inherited):
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as f, open(err, "w") as e:
        proc = subprocess.Popen(
            [*soldrv_cmd(), str(TUT), "--dry-run", "--ticks", "100000000", "--mode", "0"],
            stdin=subprocess.DEVNULL, stdout=f, stderr=e,
            preexec_fn=_ignore_and_block_sigint if inherited != "default" else None,
        )
        try:
            polling.wait_for(lambda: out.stat().st_size > 10_000, "the dry run to print", 30)
            state = _signal_state(proc.pid)
            proc.send_signal(sig)
            try:
                rc = proc.wait(30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"soldrv did not end within 30 s of {sig.name} ({state})")
            assert rc == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert err.read_text() == "soldrv: interrupted\n"
