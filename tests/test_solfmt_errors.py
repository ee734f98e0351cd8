"""Every reference error message of spec §2: `file:line:column: message`, the offending
line, exit status 1 through the command line, and never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from soldrv.compiler import compile_text
from soldrv.errors import SolfmtError

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
        S + "resolution = 70000/1\nmode 1 {\n A: O_\n}",
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
    head, shown, caret = text.split("\n")
    assert head == f"t.sol:{line}:{column}: {message}"
    assert shown.strip() == src.split("\n")[line - 1].replace("\r", "\\r").strip()
    assert caret.index("^") == column - 1 + 4


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


def test_reused_proxy_id_is_a_warning():
    res = compile_text("Proxy X { a:3 b:4 }\nProxy Y { c:4 }\n", "p.sol")
    assert [str(w) for w in res.warnings] == ["p.sol:2:13: warning: Reuse of Proxy ID 4"]
    assert res.program.proxy_ids == [3, 4]
    assert res.program.proxies[1].points == [("c", 4, 1)]


def _solfmt(args, cwd):
    exe = shutil.which("solfmt", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "soldrv.cli"]
    return subprocess.run(cmd + args, cwd=cwd, capture_output=True, text=True, timeout=60)


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
