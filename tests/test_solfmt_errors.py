"""Every reference error message of spec §2: `file:line:column: message`, the offending
line, exit status 1 through the command line, and never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from soldrv.cli import main_soldump, main_solfmt
from soldrv.compiler import compile_text
from soldrv.errors import SolfmtError, render_line

S = "solenoid A 1 2 3\n"
D = "dtoa D 0x10 { a:1 b:2 }\n"
P = "Proxy X { a:1 b:2 }\n"

# (source, reference message, line, column of the token where the reference stops)
ERRORS = [
    pytest.param("\r\nsolenoid A 1 2 3", "Unknown Character", 1, 1, id="e00"),
    pytest.param("solenoid A 1 2 #", "Unknown Character", 1, 16, id="e01"),
    pytest.param("solenoid A 0xg 2 3", "Hex Number Syntax Error", 1, 12, id="e02"),
    pytest.param("solenoid A 08 2 3", "Octal Number Syntax Error", 1, 12, id="e03"),
    pytest.param("solenoid A 1 99999999999 2", "Decimal Number Syntax Error", 1, 14, id="e03b"),
    pytest.param("open = 'ab'", "Character Constant Requires Two Apostrophes", 1, 8, id="e04"),
    pytest.param("Command_Set 'A'", "Command_Set Statement Requires '='", 1, 13, id="e05"),
    pytest.param("Command_Set = 'K'", "Command_Set Value Out of Range", 1, 15, id="e06"),
    pytest.param("solenoid A 1 2 32", "Solenoid Status Bit Out of Range", 1, 16, id="e07"),
    pytest.param(S + "solenoid a 1 2 3", "Attempted Redefinition of Solenoid", 2, 10, id="e08"),
    pytest.param("solenoid mode 1 2 3", "Solenoid Name Error", 1, 10, id="e09"),
    pytest.param("solenoid A x", "Solenoid Open Command Missing", 1, 12, id="e10"),
    pytest.param("solenoid A 1 }", "Solenoid Close Command Missing", 1, 14, id="e11"),
    pytest.param("solenoid A 1 2\nmode", "Solenoid Status Bit Definition Missing", 2, 1, id="e12"),
    pytest.param(
        "".join(f"solenoid S{i} 1 2 3\n" for i in range(33)),
        "Too Many Solenoids Defined",
        33,
        1,
        id="e13",
    ),
    pytest.param("open 'x'", "Open/Close Statement Syntax Error", 1, 6, id="e14"),
    pytest.param("resolution 1/2", "Expected '=' after 'resolution'", 1, 12, id="e15"),
    pytest.param("resolution = x", "Expected <number> after 'resolution ='", 1, 14, id="e16"),
    pytest.param("resolution = 1 2", "Need Slash in resolution", 1, 16, id="e17"),
    pytest.param("resolution = 1 / }", "Need Number after slash", 1, 18, id="e18"),
    pytest.param("status_bytes 1 2", "Expected '{' after 'status_bytes'", 1, 14, id="e19"),
    pytest.param("status_bytes { 1 2 3 4 5 }", "Maximum of 4 status addresses", 1, 24, id="e20"),
    pytest.param("status_bytes { 1 x }", "Expected '}' after status addresses", 1, 18, id="e21"),
    pytest.param(
        "".join(f"dtoa D{i} 1 {{}}\n" for i in range(65)), "Too Many DtoAs Defined", 65, 1, id="e22"
    ),
    pytest.param(D + "dtoa d 1 {}", "Attempted Redefinition of DtoA", 2, 6, id="e23"),
    pytest.param(S + "dtoa A 1 {}", "DtoA Name Error", 2, 6, id="e24"),
    pytest.param("dtoa D {}", "DtoA Addresss Missing", 1, 8, id="e25"),
    pytest.param("dtoa D 1 a:1", "DtoA Set Point Definition needs '{'", 1, 10, id="e26"),
    pytest.param(
        "dtoa D 1 { a:1 ; low\n b:2 }", "DtoA Set Point Definition needs ':'", 1, 18, id="e27"
    ),
    pytest.param("dtoa D 1 { a:x }", "DtoA Set Point Value Missing", 1, 14, id="e28"),
    pytest.param(
        "dtoa D 1 { " + " ".join(f"{chr(48 + i % 40)}:{i}" for i in range(65)) + " }",
        "DtoA Set Point Definition needs '}'",
        1,
        322,
        id="e29",
    ),
    pytest.param(P + "Proxy x {}", "Attempted Redefinition of Proxy", 2, 7, id="e30"),
    pytest.param("Proxy mode {}", "Proxy Name Error", 1, 7, id="e31"),
    pytest.param("Proxy X a:1", "Proxy Definition needs '{'", 1, 9, id="e32"),
    pytest.param("Proxy X { a 1 }", "Proxy Definition needs ':'", 1, 13, id="e33"),
    pytest.param("Proxy X { a: }", "Proxy Value Missing", 1, 14, id="e34"),
    pytest.param("Proxy X { a:256 }", "Invalid proxy ID 256", 1, 13, id="e35"),
    pytest.param(
        "Proxy X { " + " ".join(f"{chr(48 + i)}:{i}" for i in range(41)) + " }",
        "Proxy Definition needs '}'",
        1,
        201,
        id="e36",
    ),
    pytest.param(
        "".join(
            f"Proxy X{j} {{ " + " ".join(f"{chr(48 + i)}:{j * 30 + i}" for i in range(30)) + " }\n"
            for j in range(4)
        ),
        "Too many proxy points",
        4,
        64,
        id="e37",
    ),
    pytest.param(
        "".join(f"Proxy X{j} {{}}\n" for j in range(257)),
        "Too Many proxies Defined",
        257,
        1,
        id="e38",
    ),
    pytest.param("routine 5 {", "Routine expected name", 1, 9, id="e39"),
    pytest.param(S + "routine R A: O", "Routine expected {", 2, 11, id="e40"),
    pytest.param(
        "".join(f"routine R{j} {{ }}\n" for j in range(11)), "Too many routines", 11, 9, id="e41"
    ),
    pytest.param(
        S + "routine R {\n Initialize 5: O\n}",
        "Illegal token following Initialize",
        3,
        13,
        id="e42",
    ),
    pytest.param(
        S + "routine R {\n A: O\n select 1\n}", "Illegal token inside routine", 4, 2, id="e43"
    ),
    pytest.param(
        S + "routine R {\n Initialize A: O R\n}\nmode 0 { R }",
        "Nested routines are not supported",
        3,
        18,
        id="e44",
    ),
    pytest.param(
        S + "routine R {\n Initialize A: O select 1\n}\nmode 0 { R }",
        "Select within routine is illegal",
        3,
        18,
        id="e45",
    ),
    pytest.param("mode x {", "Mode requires number", 1, 6, id="e46"),
    pytest.param("mode 257 {", "Mode number out of range", 1, 6, id="e47"),
    pytest.param(
        S + "mode 1 { A: O\n}\nmode 1 {", "Attempted Redefinition of mode 1", 4, 6, id="e48"
    ),
    pytest.param("mode 1 A", "Mode requires Left Brace", 1, 8, id="e49"),
    pytest.param(
        S + "mode 1 {\n Initialize 5",
        "Initialize requires solenoid, DtoA or Proxy name",
        3,
        13,
        id="e50",
    ),
    pytest.param(
        S + "mode 1 {\n Initialize A O", "Initialize <name>: - ':' needed", 3, 15, id="e51"
    ),
    pytest.param(
        S + "mode 1 {\n Initialize A: xx\n}",
        "Initialize <name>:<valving char> - No <valving char>",
        3,
        18,
        id="e52",
    ),
    pytest.param(
        S + "mode 1 {\n Initialize A: ^O\n}",
        "Initialize <name>:<valving char> - No <valving char>",
        3,
        16,
        id="e52b",
    ),
    pytest.param(S + "mode 1 {\n A O_\n}", "<name>: - Missing the ':'", 3, 4, id="e53"),
    pytest.param(S + "mode 1 {\n B: O_\n}", "Unexpected token in read_mode", 3, 2, id="e54"),
    pytest.param(S + "mode 1 {\n select x }", "Select expects mode number", 3, 9, id="e55"),
    pytest.param(
        S + "mode 1 {\n select 2 A: O\n}", "Select must be last command in mode", 3, 11, id="e56"
    ),
    pytest.param(
        S + D + "mode 1 {\n A: OO_\n D: ab\n}",
        "Mode 1 has ambiguous cycle lengths (dtoa D)",
        6,
        1,
        id="e57",
    ),
    pytest.param(
        S + "solenoid B 3 4 5\nmode 1 {\n A: OO_\n B: ab_\n}",
        "Mode 1 has ambiguous cycle lengths (sol. B)",
        6,
        1,
        id="e58",
    ),
    pytest.param(
        S + P + "mode 1 {\n A: OO_\n X: ab\n}",
        "Mode 1 has ambiguous cycle lengths (proxy X)",
        6,
        1,
        id="e59",
    ),
    pytest.param(
        S + "resolution = 3999/1\nmode 1 {\n A: O_\n}",  # the search starts at 1000
        "Solfmt - Can't deal with long resolution",
        5,
        1,
        id="e60",
    ),
    pytest.param("initialize A: O", "Syntax Error in read_cmd", 1, 1, id="e61"),
]


@pytest.mark.parametrize(("src", "message", "line", "column"), ERRORS)
@pytest.mark.parametrize("compat", [False, True])
def test_error_message_and_place(src, message, line, column, compat):
    with pytest.raises(SolfmtError) as ei:
        compile_text(src, "t.sol", compat=compat, version=3)
    err = ei.value
    assert (err.message, err.line, err.column) == (message, line, column)
    text = str(err)
    head, shown, caret = text.split("\n")[:3]
    assert head == f"t.sol:{line}:{column}: {message}"
    src_line = src.split("\n")[line - 1]
    at = caret.index("^")
    if column <= len(src_line) and src_line[column - 1].isprintable():
        assert shown[at] == src_line[column - 1]  # the caret is under the offending character
    if len(src_line) <= 100:
        assert shown.strip() == src_line.replace("\r", "\\r").strip()
        assert at == column - 1 + 4
    else:  # long lines are cut to a window around the place
        assert shown.startswith("    ...") and len(shown) <= 4 + 3 + 100 + 3


def test_v4_allows_64_solenoids_v3_only_32():
    src = "".join(f"solenoid S{i} {2 * i} {2 * i + 1} 0\n" for i in range(64))
    assert len(compile_text(src, version=4).program.solenoids) == 64
    with pytest.raises(SolfmtError, match="Too Many Solenoids Defined"):
        compile_text(src, version=3)
    with pytest.raises(SolfmtError, match="Too Many Solenoids Defined"):
        compile_text(src + "solenoid X 1 2 3", version=4)


def test_division_by_zero_resolution_is_an_error_not_a_crash():
    with pytest.raises(SolfmtError) as ei:
        compile_text("resolution = 1/0\nsolenoid A 1 2 3\nmode 0 {\n A: O_\n}\n")
    assert "denominator is 0" in ei.value.message and ei.value.line == 5


def test_code_generation_limits():
    many = "solenoid A 1 2 3\nresolution = 1/1\n" + "".join(
        f"mode {m} {{\n A: " + "O_" * 300 + "\n}\n" for m in range(10)
    )
    with pytest.raises(SolfmtError, match="Mode Code Table exceeded"):
        compile_text(many)
    with pytest.raises(SolfmtError, match="Mode code value out of range"):
        compile_text("mode 0 { select 300 }", version=4)
    sols = "".join(f"solenoid S{i} {1000 + i} 2 0\n" for i in range(60))
    pats = "".join(f" S{i}: O_\n" for i in range(60))
    inits = "".join(f" Initialize S{i}: O\n" for i in range(33)) * 2
    with pytest.raises(SolfmtError, match="MAX_SW"):
        compile_text(sols + "mode 0 {\n" + inits + "}\n", version=4)
    with pytest.raises(SolfmtError, match="DCCC command string overflow"):
        compile_text(sols + "mode 0 {\n" + pats + "}\n", version=4)


@pytest.mark.parametrize(
    ("last_cmd", "message"),
    [
        (None, None),  # 49 x "1xxx": 'M' + 245 characters + LF fits the 250-byte buffer
        (999, "DCCC command string overflow #2"),  # the number fits, the LF and NUL do not
        (1999, "DCCC command string overflow"),  # the number itself does not fit
    ],
)
def test_dccc_buffer_limit_is_the_reference_one(last_cmd, message):
    cmds = [1000 + i for i in range(49)] + ([last_cmd] if last_cmd else [])
    sols = "".join(f"solenoid S{i} {c} 2 0\n" for i, c in enumerate(cmds))
    inits = "".join(f" Initialize S{i}: O\n" for i in range(len(cmds)))
    src = sols + "mode 0 {\n" + inits + "}\n"
    if message is None:
        assert len(compile_text(src, version=4).program.strings[0]) == 246
        return
    with pytest.raises(SolfmtError) as ei:
        compile_text(src, version=4)
    assert ei.value.message == message


def test_v4_string_table_holds_at_most_256_strings():
    sols = "".join(f"solenoid S{i} {2 * i} {2 * i + 1} 0\n" for i in range(64))
    pairs = [(a, b) for a in range(64) for b in range(a + 1, 64)][:129]
    modes = "".join(
        f"mode {m} {{\n S{a}: O_\n S{b}: O_\n}}\n" for m, (a, b) in enumerate(pairs[:128])
    )
    prog = compile_text(sols + modes, version=4).program
    assert len(prog.strings) == 256  # two multi-strobe strings per mode
    a, b = pairs[128]
    with pytest.raises(SolfmtError, match="string table overflow") as ei:
        compile_text(sols + modes + f"mode 200 {{\n S{a}: O_\n S{b}: O_\n}}\n", version=4)
    assert ei.value.line == 64 + 4 * 128 + 4  # the '}' of mode 200


def test_reused_proxy_id_is_a_warning():
    res = compile_text("Proxy X { a:3 b:4 }\nProxy Y { c:4 }\n", "p.sol")
    assert [str(w) for w in res.warnings] == ["p.sol:2:13: warning: Reuse of Proxy ID 4"]
    assert res.program.proxy_ids == [3, 4]
    assert res.program.proxies[1].points == [("c", 4, 1)]


def _solfmt(args, cwd, **kw):
    exe = shutil.which("solfmt", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-c",
                             "from soldrv.cli import main_solfmt as m; raise SystemExit(m())"]
    if "stdout" not in kw:
        kw["capture_output"] = True
    return subprocess.run(cmd + args, cwd=cwd, text=True, timeout=60, **kw)


@pytest.mark.integration
def test_cli_reports_errors_without_traceback(tmp_path):
    (tmp_path / "bad.sol").write_text(
        "solenoid A 1 2 3\nmode 0 {\n  A: O_\n  B: _O\n}\n", encoding="ascii"
    )
    (tmp_path / "crlf.sol").write_bytes(b"solenoid A 1 2 3\r\n")
    proc = _solfmt(["bad.sol", "crlf.sol"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[:3] == [
        "bad.sol:4:3: Unexpected token in read_mode",
        "      B: _O",
        "      ^",
    ]
    assert "Traceback" not in proc.stderr and not (tmp_path / "bad.sft").exists()
    proc = _solfmt(["crlf.sol"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("crlf.sol:1:17: Unknown Character")


# ------------------------------------------------------------------ how errors are shown


def test_error_excerpt_is_printable_and_the_caret_stays_under_the_place():
    shown, at = render_line("\tA\tB", 4)  # column 4 = the 'B' after a TAB stop
    assert shown == "        A       B" and shown[at] == "B"
    shown, at = render_line("x\x00\x1b[2J\x85y", 8)
    assert shown == "x\\x00\\x1b[2J\\x85y" and shown[at] == "y"  # no raw control codes
    shown, at = render_line("a" * 300 + "X" + "b" * 300, 301)
    assert shown.startswith("...") and shown.endswith("...") and shown[at] == "X"
    assert len(shown) <= 106
    shown, at = render_line("\x01" * 300 + "X", 301)  # never cut inside an escape
    assert shown[at] == "X" and shown.startswith("...\\x01")  # whole escapes only


def test_binary_garbage_is_one_located_error():
    with pytest.raises(SolfmtError) as ei:
        compile_text("solenoid A 1 2 3\n\x00\x9f\xff\x07binary", "g.sol")
    err = ei.value
    assert (err.message, err.line, err.column) == ("Unknown Character", 2, 1)
    shown = str(err).split("\n")[1]
    assert shown == "    \\x00\\x9f\xff\\x07binary"


def test_crlf_gets_the_reference_message_and_a_hint():
    with pytest.raises(SolfmtError) as ei:
        compile_text("solenoid A 1 2 3\r\nmode 0 {\r\n A: O_\r\n}\r\n", "dos.sol")
    err = ei.value
    assert (err.message, err.line, err.column) == ("Unknown Character", 1, 17)
    assert "dos2unix" in err.hint and str(err).endswith("note: " + err.hint)


def test_byte_order_mark_gets_a_hint():
    with pytest.raises(SolfmtError) as ei:
        compile_text("\xef\xbb\xbfsolenoid A 1 2 3\n", "bom.sol")  # as read (Latin-1)
    assert (ei.value.message, ei.value.line, ei.value.column) == ("Unknown Character", 1, 1)
    assert "byte-order mark" in ei.value.hint


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("9" * 5000, "Decimal Number Syntax Error"),
        ("0x" + "f" * 5000, "Hex Number Syntax Error"),
        ("0" + "7" * 5000, "Octal Number Syntax Error"),
        ("2147483648", "Decimal Number Syntax Error"),
    ],
)
def test_huge_numbers_are_located_errors_not_crashes(number, message):
    with pytest.raises(SolfmtError) as ei:
        compile_text(f"solenoid A 1 2 {number}\n", "n.sol")
    assert (ei.value.message, ei.value.line, ei.value.column) == (message, 1, 16)
    assert "2147483647" in ei.value.hint
    # leading zeros do not count: 0x00...01 is 1
    prog = compile_text("solenoid A 0x" + "0" * 100 + "1 2 3\n").program
    assert prog.solenoids[0].open_cmd == 1


def test_error_inside_a_routine_names_the_call_site():
    src = S + "routine R {\n A: O_\n A: O\n}\nmode 4 {\n  R\n}\n"
    with pytest.raises(SolfmtError) as ei:
        compile_text(src.replace(" A: O\n}", " A: O\n B: O\n}"), "r.sol")
    assert ei.value.message == "Illegal token inside routine"  # pre-scan: no call site yet
    src2 = S + "routine R {\n Initialize A: O X\n}\nmode 4 {\n  R\n}\n"
    with pytest.raises(SolfmtError) as ei:
        compile_text(src2, "r.sol")
    err = ei.value
    assert (err.message, err.line, err.column) == ("Unexpected token in read_mode", 3, 18)
    assert err.hint == "in routine R, called by mode 4 at r.sol:6:3"


def test_values_that_do_not_fit_a_word_are_located_errors_unless_compat():
    src = "solenoid A 70000 2 3\ndtoa D 0x10 { a:65536 }\nmode 0 {\n A: O_\n D: aa\n}\n"
    with pytest.raises(SolfmtError) as ei:
        compile_text(src, "w.sol")
    assert (ei.value.line, ei.value.column) == (1, 12)
    assert ei.value.message.startswith("Solenoid open command 70000 does not fit")
    with pytest.raises(SolfmtError) as ei:
        compile_text(src.replace("70000", "7"), "w.sol")
    assert (ei.value.line, ei.value.column) == (2, 17)
    with pytest.raises(SolfmtError) as ei:
        compile_text("status_bytes { 0x10000 }", "w.sol")
    assert (ei.value.line, ei.value.column) == (1, 16)
    prog = compile_text(src.replace("A: O_", "A: _O"), compat=True, version=3).program
    assert prog.solenoids[0].open_cmd == 70000 & 0xFFFF  # the reference keeps the low word
    assert prog.set_points[0].value == 0
    assert bytes((0, 70000 & 0xFF)) in prog.code  # and the low byte in the v3 code


def test_v3_byte_overflow_points_at_the_pattern_character():
    with pytest.raises(SolfmtError) as ei:
        compile_text("solenoid A 300 2 0\nmode 0 {\n A: _O\n}\n", "b.sol", version=3)
    assert (ei.value.line, ei.value.column) == (3, 6)  # the 'O' that sends command 300


@pytest.mark.parametrize("res", ["0/1", "1/20000"])
def test_resolution_below_one_timer_count(res):
    src = f"resolution = {res}\n" + S + "mode 0 {\n A: O_\n}\n"
    with pytest.raises(SolfmtError) as ei:
        compile_text(src, "z.sol")
    assert "shorter than one timer count" in ei.value.message and ei.value.line == 5
    prog = compile_text(src, compat=True).program  # the reference: SET_TIME 0 = 4 s steps
    assert prog.code[:3] == bytes((2, 0, 0))


def test_too_many_solenoids_in_v3_suggests_format_4():
    src = "".join(f"solenoid S{i} 1 2 3\n" for i in range(33))
    with pytest.raises(SolfmtError) as ei:
        compile_text(src, version=3)
    assert "--format 4" in ei.value.hint


# ------------------------------------------------------------------ the command line


def _run(main, args, capsys):
    status = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def test_cli_never_overwrites_an_input_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    src = S + "mode 0 {\n A: O_\n}\n"
    (tmp_path / "c.sol").write_text(src)
    for args in (["c.sol", "-oc.sol"], ["c", "-oc.sol"], ["c.sol", f"-o{tmp_path}/c.sol"]):
        status, out, err = _run(main_solfmt, args, capsys)
        assert status == 1 and "refusing to overwrite" in err and out == ""
        assert (tmp_path / "c.sol").read_text() == src


def test_cli_failure_leaves_the_previous_output_and_no_temporary_file(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.sol").write_text(S + "mode 0 {\n A: O_\n}\n")
    assert _run(main_solfmt, ["c.sol"], capsys)[0] == 0
    good = (tmp_path / "c.sft").read_bytes()
    (tmp_path / "c.sol").write_text(S + "mode 0 {\n A: O_\n B: O\n}\n")
    status, out, err = _run(main_solfmt, ["c.sol"], capsys)
    assert status == 1 and err.startswith("c.sol:4:2: Unexpected token in read_mode")
    assert (tmp_path / "c.sft").read_bytes() == good
    (tmp_path / "c.sol").write_text(S)
    status, out, err = _run(main_solfmt, ["c.sol", "-onodir/x"], capsys)
    assert status == 1 and err.startswith('solfmt: Cannot open output file "nodir/x.sft"')
    (tmp_path / "out.sft").mkdir()
    status, out, err = _run(main_solfmt, ["c.sol", "-oout.sft"], capsys)
    assert status == 1 and "Is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sft", "c.sol", "out.sft"]


def test_cli_keeps_the_mode_of_an_existing_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.sol").write_text(S)
    (tmp_path / "c.sft").write_bytes(b"old")
    (tmp_path / "c.sft").chmod(0o640)
    assert _run(main_solfmt, ["c.sol"], capsys)[0] == 0
    assert (tmp_path / "c.sft").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "c.sft").read_bytes()[:3] == b"\x00\x04A"  # --format 4 by default


def test_cli_odd_inputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.sol").mkdir()
    status, out, err = _run(main_solfmt, ["d"], capsys)
    assert status == 1 and err.strip() == "solfmt: Cannot open file d.sol: Is a directory"
    status, out, err = _run(main_solfmt, ["missing.sol"], capsys)
    assert status == 1 and "Cannot open file missing.sol: No such file" in err
    status, out, err = _run(main_solfmt, ["-", "x.sol"], capsys)
    assert status == 1 and err.startswith("solfmt: -: Undefined Switch")
    (tmp_path / "empty.sol").write_bytes(b"")
    status, out, err = _run(main_solfmt, ["empty"], capsys)
    assert (status, out, err) == (0, "Output written to file empty.sft\n", "")
    # version, command set 'A', no solenoids, set points, proxies, modes, code; v4: an
    # empty string table (its byte count and string count)
    assert (tmp_path / "empty.sft").read_bytes() == bytes.fromhex("0004 41" + "0000" * 7)
    (tmp_path / "bin.sol").write_bytes(bytes(range(256)))
    status, out, err = _run(main_solfmt, ["bin.sol"], capsys)
    assert status == 1 and err.startswith("bin.sol:1:1: Unknown Character\n    \\x00\\x01")
    assert not (tmp_path / "bin.sft").exists()


def test_cli_verbose_layout_is_the_reference_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.sol").write_text(
        S + "dtoa D 0x10 { a:10 b:11 }\nmode 0 {\n Initialize D: a\n A: O_^\n}\n"
        "mode 2 { select 0 }\n"
    )
    status, out, err = _run(main_solfmt, ["-v", "v.sol", "--format", "3"], capsys)
    assert status == 0
    assert out == (
        "Solenoids defined are:\n"
        "  A    open: 1  close: 2  status:  3\n"
        "DtoAs defined are:\n"
        "  D\n"
        "    a    addr: 10  value: a\n"
        "    b    addr: 10  value: b\n"
        "Proxies defined are:\n"
        "\n"
        "Mode 0 is defined with length 2 at resolution 1/1\n"
        "\n"
        "  Initializations:\n"
        "    DtoA D to set point a\n"
        "\n"
        "  Cycle:\n"
        "    Solenoid A opened at t=0\n"
        "    Solenoid A closed at t=1\n"
        "    Mode switch OK at t=2\n"
        "\n"
        "\n"
        "Mode 2 is defined with length 0 at resolution 1/1\n"
        "    Select mode 0 at t=0\n"
        "\n"
        "Output written to file v.sft\n"
    )
    assert "select-only mode gets SELECT 0" in err  # v3 default: the 2022 fix, warned


@pytest.mark.integration
def test_cli_survives_a_closed_stdout_and_an_ascii_terminal(tmp_path):
    (tmp_path / "p.sol").write_bytes(
        b"dtoa D 0x10 { \xe9:1 b:2 }\nmode 0 {\n D: \xe9b\n}\n"  # a Latin-1 set-point name
    )
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before solfmt writes
    try:
        proc = _solfmt(["-v", "p.sol", "--format", "4"], tmp_path, stdout=write_end,
                       stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert proc.returncode == 1 and proc.stderr == ""
    assert (tmp_path / "p.sft").read_bytes()[:2] == b"\x00\x04"  # written before printing
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    proc = _solfmt(["-v", "p.sol"], tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "    \\xe9    addr: 10  value: 1" in proc.stdout


def test_soldump_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.sol").write_text(S + "mode 1 { select 0 }\n")
    status, out, err = _run(main_soldump, ["c.sol"], capsys)
    assert status == 0 and out.startswith("version 0x0400  cmd_set 'A'\n")  # the default
    status, out, err = _run(main_soldump, ["c.sol", "--format", "3"], capsys)
    assert status == 0 and out.startswith("version 0x0300  cmd_set 'A'\n")
    assert "select-only mode gets SELECT 0" in err  # warnings of the compilation are shown
    for args, msg in [
        (["c.sol", "-ofoo"], "soldump: -ofoo: Undefined Switch"),
        (["a.sft", "b.sft"], "soldump: exactly one file expected"),
        ([], "soldump: exactly one file expected"),
        (["nothere"], "soldump: cannot read nothere.sft: No such file or directory"),
        (["."], "soldump: cannot read .: Is a directory"),
    ]:
        status, out, err = _run(main_soldump, args, capsys)
        assert status == 1 and err.startswith(msg) and out == "", args
    (tmp_path / "3").write_bytes(b"\x00\x03A" + b"\x00\x00" * 5)  # a file named like a format
    status, out, err = _run(main_soldump, ["3"], capsys)
    assert status == 0 and "mode_indices (0)" in out


def test_warnings_before_a_fatal_error_are_kept_and_printed(tmp_path, monkeypatch, capsys):
    src = "Proxy X { a:3 }\nProxy Y { b:3 }\nmode 0 {\n Z: a\n}\n"
    with pytest.raises(SolfmtError) as ei:
        compile_text(src, "pw.sol")
    assert [str(w) for w in ei.value.warnings] == ["pw.sol:2:13: warning: Reuse of Proxy ID 3"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pw.sol").write_text(src)
    status, out, err = _run(main_solfmt, ["pw.sol"], capsys)
    assert status == 1 and err.splitlines()[:2] == [
        "pw.sol:2:13: warning: Reuse of Proxy ID 3",
        "pw.sol:4:2: Unexpected token in read_mode",
    ]


def test_cli_writes_format_4_by_default_and_3_on_request(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.sol").write_text(S + "mode 1 {\n A: O_\n}\n")
    assert _run(main_solfmt, ["f.sol"], capsys)[0] == 0
    v4 = (tmp_path / "f.sft").read_bytes()  # ends with the v4 string table
    assert v4[:2] == b"\x00\x04" and v4.endswith(b"D1\n\x00D2\n\x00\x02\x00\x00\x00\x04\x00")
    assert _run(main_solfmt, ["f.sol", "--format", "3"], capsys)[0] == 0
    assert (tmp_path / "f.sft").read_bytes()[:2] == b"\x00\x03"
    status, out, _ = _run(main_solfmt, ["--help"], capsys)
    assert status == 0 and "--format 4, the QNX6 .sft, is the default" in out
