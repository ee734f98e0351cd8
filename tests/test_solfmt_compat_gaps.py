"""The three compat gaps that fuzzing against the reference C compilers found (issue 13.5),
with the C source as the authority: long resolutions, scanf("%x") hex numbers, and a routine
called from the next input file. Each checks --compat bytes and what the default mode does."""

from __future__ import annotations

import pytest

from soldrv.compiler import compile_files, compile_text
from soldrv.errors import SolfmtError

S = "solenoid A 22 23 0\n"


def mode1(resolution: str, compat: bool) -> tuple[bytes, int, int | None, list]:
    res = compile_text(S + f"resolution = {resolution}\nmode 1 {{\n A: O_\n}}\n", "r.sol",
                       compat=compat, version=4)
    info = res.program.modes[1]
    return res.program.code, info.iterations, info.timer_count, res.warnings


# ------------------------------------------------------------------ long resolution


@pytest.mark.parametrize("compat", [True, False])
def test_long_resolution_keeps_the_start_iteration_count(compat):
    code, iters, count, warnings = mode1("10000/1", compat)
    assert (iters, count) == (2501, 0xFFE5)  # 163840000 // 2501 = 65509
    # SET_TIME 0xFFE5, OPEN, then 2501 ticks as 9 x WAITS 255 + WAITS 206, CLOSE, ...
    assert code[:3] == bytes.fromhex("02 e5 ff")
    waits = bytes.fromhex("05 ff") * 9 + bytes.fromhex("05 ce")
    assert code[5:5 + len(waits)] == waits
    inexact = [w for w in warnings if w.kind == "inexact"]
    if compat:
        assert warnings == []
    else:
        (w,) = inexact
        assert "each step is 2501 x 65509/16384 s = 9999.88 s" in w.message
        assert (w.filename, w.line, w.column) == ("r.sol", 5, 1)


def test_long_resolution_from_4000_compiles_and_3999_does_not():
    _, iters, count, _ = mode1("4000/1", True)
    assert (iters, count) == (1001, 65470)  # 65536000 // 1001
    _, iters, count, _ = mode1("70000/1", True)
    assert iters == 17501
    for compat in (True, False):
        # 3999/1: the search starts at exactly 1000, the C test (ti == 1000) fails
        with pytest.raises(SolfmtError, match="Can't deal with long resolution"):
            mode1("3999/1", compat)
        # count 65537 is prime: the search runs from 2 to 1000 without a divisor
        with pytest.raises(SolfmtError, match="Can't deal with long resolution"):
            mode1("65537/16384", compat)


def test_exact_long_resolution_is_unchanged():
    assert mode1("5/1", True)[1:3] == (2, 40960)
    assert mode1("5/1", False)[3] == []


# ------------------------------------------------------------------ scanf("%x")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0x0x12", 0x12),  # scanf takes a second prefix
        ("0X0xff", 0xFF),
        ("0x 0x1f", 0x1F),  # blanks, then the prefix
        ("0x+7", 7),  # and a sign
        ("0x0x", 0),  # the prefix's '0' alone is the number (glibc)
        ("0x0xg", None),  # ... and 'g' starts the next token
    ],
)
@pytest.mark.parametrize("compat", [True, False])
def test_hex_prefix_and_plus_sign_read_as_scanf(text, value, compat):
    src = f"solenoid A {text} 2 3\nmode 1 {{\n A: O_\n}}\n"
    if value is None:
        with pytest.raises(SolfmtError, match="Solenoid Close Command Missing"):
            compile_text(src, compat=compat)
        return
    prog = compile_text(src, compat=compat, version=3).program
    assert prog.solenoids[0].open_cmd == value


def test_negative_hex_wraps_like_a_c_int_in_compat():
    src = "solenoid A 0x-1 0x-0x5 3\nmode 1 {\n A: O_\n}\n"
    v3 = compile_text(src, compat=True, version=3).program
    # the int holds -1 / -5: a 16-bit table word keeps 0xFFFF / 0xFFFB, a v3 code byte 0xFF
    assert (v3.solenoids[0].open_cmd, v3.solenoids[0].close_cmd) == (0xFFFF, 0xFFFB)
    assert v3.code == bytes.fromhex("02 00 40 00 ff 01 00 fb 01 03 03 00 04")
    # a negative resolution: C division truncates toward zero (-16384/3 = -5461 = 0xeaab)
    neg = compile_text(S + "resolution = 0x-1/3\nmode 1 {\n A: O_\n}\n", compat=True).program
    assert neg.code[:3] == bytes.fromhex("02 ab ea")
    with pytest.raises(SolfmtError, match="Mode number out of range"):
        compile_text("mode 0x-1 { }", compat=True)


def test_negative_hex_is_an_error_by_default():
    with pytest.raises(SolfmtError) as ei:
        compile_text("solenoid A 0x-1 2 3\n", "n.sol")
    err = ei.value
    assert (err.message, err.line, err.column) == ("Hex Number Syntax Error", 1, 12)
    assert "0x-1" in err.hint and "0xFFFF" in err.hint
    for bad in ("0x-", "0x+", "0x- 1"):  # scanf needs a digit right after the sign
        with pytest.raises(SolfmtError, match="Hex Number Syntax Error"):
            compile_text(f"solenoid A {bad} 2 3\n", compat=True)


def test_signed_and_prefixed_hex_still_over_int_max_is_an_error():
    for text in ("0x0x80000000", "0x-80000000"):
        with pytest.raises(SolfmtError, match="Hex Number Syntax Error"):
            compile_text(f"solenoid A {text} 2 3\n", compat=True)


# ------------------------------------------------------------------ routine in an earlier file


def two_files(tmp_path, modes: str):
    (tmp_path / "defs.sol").write_text(S + "solenoid B 24 25 1\nroutine R {\n A: O_\n B: _O\n}\n")
    (tmp_path / "modes.sol").write_text(modes)
    return [tmp_path / "defs.sol", tmp_path / "modes.sol"]


def test_routine_from_an_earlier_file_fails_in_compat_as_in_c(tmp_path):
    # C seeks the current file (modes.sol, 26 bytes) to R's offset in defs.sol (past its end)
    paths = two_files(tmp_path, "mode 0 {\n R\n R\n}\n")
    with pytest.raises(SolfmtError) as ei:
        compile_files(paths, compat=True, version=4)
    err = ei.value
    assert err.message == "Unexpected token in read_mode"
    assert err.filename.endswith("modes.sol")
    assert "in routine R, called by mode 0 at" in err.hint


def test_routine_from_an_earlier_file_reads_the_current_file_at_its_offset(tmp_path):
    # R's body starts at offset 49 of defs.sol (after "routine R {"); in modes.sol that
    # offset is inside the comment after the call: C reads " A: _O" there, the mode's own
    # "}" ends the routine, and the rest of the comment line is skipped on return
    head = "mode 0 {\n R "
    modes = head + ";" * (49 - len(head)) + " A: _O\n}\n"
    paths = two_files(tmp_path, modes)
    assert paths[0].read_text().index("{") + 1 == 49
    prog = compile_files(paths, compat=True, version=4).program
    assert prog.modes[0].cycle_steps == 2
    assert prog.modes[0].description.count("Solenoid A") == 2  # closed at 0, opened at 1
    assert "Solenoid B" not in prog.modes[0].description


def test_routine_from_an_earlier_file_is_read_from_it_by_default_with_a_warning(tmp_path):
    paths = two_files(tmp_path, "; another file\nmode 0 {\n R\n R\n}\n")
    res = compile_files(paths, version=4)
    assert res.program.modes[0].cycle_steps == 4
    w, w2 = [w for w in res.warnings if w.kind == "differs"]  # one per call
    assert (w.line, w.column, w2.line) == (3, 2, 4) and w.filename.endswith("modes.sol")
    assert "routine R is defined in" in w.message and "re-reads its byte offset" in w.message
