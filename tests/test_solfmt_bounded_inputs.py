"""Bounded inputs (issue 10.8, compiler side): an oversized mode stops with its size error at
the step that outgrows the code table, and the commands read only regular files of bounded
size, so that /dev/zero, a FIFO or a huge file get one sentence at once."""

from __future__ import annotations

import os

import pytest
from test_solfmt_errors import _run, _solfmt

from soldrv.cli import main_soldump, main_solfmt
from soldrv.compiler import MODE_CODE_SIZE, compile_files, compile_text
from soldrv.errors import SolfmtError
from soldrv.input_files import MAX_SFT_BYTES, MAX_SOL_BYTES
from soldrv.sft import load_sft

S = "solenoid A 22 23 0\nsolenoid B 24 25 1\n"


def test_oversized_mode_stops_at_the_step_that_outgrows_the_code_table(tmp_path):
    # 4.8 MB: one pattern line of 2.4 million steps (this took minutes before stopping at '}')
    path = tmp_path / "big.sol"
    path.write_text(S + "mode 0 {\n A: " + "O_" * 1_200_000 + "\n B: " + "_O" * 1_200_000
                    + "\n}\n")
    assert path.stat().st_size > 4_800_000
    with pytest.raises(SolfmtError) as ei:
        compile_files([path], version=4)
    err = ei.value
    # step 10001 of A (column 5 is step 0): one byte per step cannot fit 10000 bytes
    assert (err.message, err.line, err.column) == ("Mode Code Table exceeded", 4, 5 + 10001)
    assert "more than 10000 time steps" in err.hint
    assert len(str(err)) < 600  # the 2.4 MB line is shown as a window around the place
    proc = _solfmt(["big.sol"], tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "big.sft").exists()
    assert proc.stderr.startswith("big.sol:4:10006: Mode Code Table exceeded\n")


def test_the_modes_before_count_against_the_table():
    first = "mode 0 {\n A: " + "O_" * 3000 + "\n}\n"  # changes at steps 1..5999 (and 0)
    src = S + first + "mode 1 {\n A: " + "O_" * 2500 + "\n}\n"
    with pytest.raises(SolfmtError) as ei:
        compile_text(src, "two.sol")
    err = ei.value
    # 10000 - 5999 = 4001 steps left for mode 1: its step 4002 (column 5 + 4002) fails
    assert (err.line, err.column) == (7, 5 + MODE_CODE_SIZE - 5999 + 1)
    assert "left by the modes before it" in err.hint


def test_a_mode_within_the_table_still_compiles_and_the_exact_limit_is_at_code_generation():
    assert compile_text(S + "mode 0 {\n A: " + "O_" * 500 + "\n}\n").program.code
    # 4000 steps pass the early check (one byte each) but need 3 bytes each: '}' reports it
    with pytest.raises(SolfmtError) as ei:
        compile_text(S + "mode 0 {\n A: " + "O_" * 2000 + "\n}\n", "c.sol")
    assert (ei.value.message, ei.value.line, ei.value.column) == ("Mode Code Table exceeded",
                                                                  5, 1)


def test_soldump_refuses_devices_with_a_sentence(capsys):
    status, out, err = _run(main_soldump, ["/dev/zero"], capsys)
    assert status == 1 and out == ""
    assert err == ("soldump: cannot read /dev/zero: not a regular file (a character device); "
                   "only regular files are read, so that a pipe or a device can neither block "
                   "nor flood the command\n")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "cycle.sol")
    # nobody ever writes to the FIFO: a reader would block until the 60 s subprocess timeout
    proc = _solfmt(["cycle.sol"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("solfmt: Cannot open file cycle.sol: not a regular file "
                                  "(a FIFO or pipe)")

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_soldump_refuses_a_fifo_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.mkfifo("cycle.sft")  # with no writer, a blocking open would never return
    status, _, err = _run(main_soldump, ["cycle.sft"], capsys)
    assert status == 1
    assert err.startswith("soldump: cannot read cycle.sft: not a regular file (a FIFO or pipe)")


def test_files_over_the_size_bound_are_refused_without_reading_them(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    with open("huge.sft", "wb") as f:
        f.truncate(MAX_SFT_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(OSError, match=f"larger than {MAX_SFT_BYTES} bytes"):
        load_sft("huge.sft")
    status, _, err = _run(main_soldump, ["huge.sft"], capsys)
    assert status == 1 and err == (f"soldump: cannot read huge.sft: larger than {MAX_SFT_BYTES} "
                                   "bytes, the limit for an .sft file\n")
    with open("huge.sol", "wb") as f:
        f.truncate(MAX_SOL_BYTES + 1)
    status, _, err = _run(main_solfmt, ["huge.sol"], capsys)
    assert status == 1 and err == (f"solfmt: Cannot open file huge.sol: larger than "
                                   f"{MAX_SOL_BYTES} bytes, the limit for a .sol source\n")
    # exactly at the bound is read (and then judged on its content)
    with open("edge.sft", "wb") as f:
        f.truncate(MAX_SFT_BYTES)
    status, _, err = _run(main_soldump, ["edge.sft"], capsys)
    assert status == 1 and "not an .sft file" in err


def test_a_directory_is_named_in_its_error(tmp_path):
    with pytest.raises(IsADirectoryError) as ei:
        load_sft(tmp_path)
    assert ei.value.filename == str(tmp_path)  # the path, not a file descriptor number
