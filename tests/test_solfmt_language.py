"""Language details (spec §2) and the reference bugs (§3.6): compat copies them byte for byte,
the default fixes them and warns each time its output differs."""

from __future__ import annotations

import pytest

from soldrv.compiler import compile_text
from soldrv.errors import SolfmtError
from soldrv.grammar import parse, statements

SOL = "solenoid A 22 23 0\nsolenoid B 24 25 1\n"


def code(src: str, compat: bool = False, version: int = 3) -> bytes:
    return compile_text(src, "t.sol", compat=compat, version=version).program.code


def differs(src: str, version: int = 3) -> list[str]:
    res = compile_text(src, "t.sol", version=version)
    return [w.message for w in res.warnings if w.kind == "differs"]


# ------------------------------------------------------------------ §3.6 bugs


def test_init_drop():
    src = SOL + "mode 0 {\n Initialize A: O\n B: OOOO\n}\n"
    assert code(src, compat=True) == bytes.fromhex("00 16 04")  # B is never opened
    assert code(src) == bytes.fromhex("00 16 00 18 04")
    (msg,) = differs(src)
    assert "init-drop" in msg and "B opened" in msg


def test_init_drop_fix_does_not_resend_what_initialize_sent():
    same = SOL + "mode 0 {\n Initialize A: O\n A: OOOO\n}\n"
    assert code(same) == code(same, compat=True) == bytes.fromhex("00 16 04")
    assert differs(same) == []  # nothing was dropped, so nothing differs
    other = SOL + "mode 0 {\n Initialize A: O\n A: ____\n}\n"
    assert code(other, compat=True) == bytes.fromhex("00 16 04")  # A left open
    assert code(other) == bytes.fromhex("00 16 00 17 04")  # the pattern's closed state wins
    (msg,) = differs(other)
    assert "A closed" in msg


def test_group_shift_after_switch():
    src = SOL + "mode 0 {\n A: OO^O__\n}\n"
    # reference: the close fires at the '^' (t=2) instead of t=3; cycle length is kept
    assert code(src, compat=True) == bytes.fromhex(
        "02 00 40 00 16 05 02 07 00 17 05 03 03 03 00 04"
    )
    assert code(src) == bytes.fromhex("02 00 40 00 16 05 02 07 01 00 17 05 02 03 03 00 04")
    (msg,) = differs(src)
    assert "group-shift" in msg


def test_no_group_shift_when_another_name_changes_at_the_switch():
    src = SOL + "mode 0 {\n A: OO^O__\n B: OO^_OO\n}\n"
    assert code(src, compat=True) == code(src) and differs(src) == []


def test_leading_switch_shift():
    src = SOL + "mode 0 {\n A: ^O_\n}\n"
    # reference: '^' takes step 0 and the pattern starts at step 1 (cycle length 3)
    assert code(src, compat=True) == bytes.fromhex("02 00 40 01 07 00 16 01 00 17 01 03 03 00 04")
    # fixed: switch at the cycle start, pattern at steps 0..1
    assert code(src) == bytes.fromhex("02 00 40 07 00 16 01 00 17 01 03 03 00 04")
    (msg,) = differs(src)
    assert "leading '^'" in msg


def test_two_switches_without_change_hang_the_reference():
    src = SOL + "mode 0 {\n A: O^O^\n}\n"
    with pytest.raises(SolfmtError, match="loops forever"):
        code(src, compat=True)
    assert code(src) == bytes.fromhex("00 16 02 00 40 01 07 01 07 03 05 00 04")
    assert any("loops forever" in m for m in differs(src))


@pytest.mark.parametrize("version", [3, 4])
def test_select_only_mode(version):
    src = "mode 5 { select 0 }"
    assert code(src, compat=True, version=version) == (
        bytes.fromhex("04") if version == 3 else bytes.fromhex("06 00 04")
    )
    assert code(src, version=version) == bytes.fromhex("06 00 04")
    assert bool(differs(src, version)) == (version == 3)


def test_mode_256():
    src = SOL + "mode 256 {\n A: O_\n}\nmode 1 {\n A: O_\n}\n"
    prog = compile_text(src, compat=True).program
    assert prog.mode_indices == [0xFFFF, 0]  # accepted, then silently never compiled
    with pytest.raises(SolfmtError, match="Mode number out of range") as ei:
        code(src)
    assert (ei.value.line, ei.value.column) == (3, 6)


def test_multi_strobe_order_is_line_order_not_sorted():
    src = "solenoid A 29 1 0\nsolenoid B 5 2 0\nsolenoid C 17 3 0\n"
    src += "mode 0 {\n A: O_\n B: O_\n C: O_\n}\n"
    prog = compile_text(src, version=4).program
    assert prog.strings == ["M29,5,17\n", "M1,2,3\n"]
    assert code(src, version=3)[3:8] == bytes.fromhex("0a 03 1d 05 11")


def test_byte_truncation():
    src = "solenoid A 300 2 0\nmode 0 {\n A: O_\n}\nmode 1 { select 258 }\n"
    assert code(src, compat=True)[3:5] == bytes.fromhex("00 2c")  # 300 & 0xFF
    assert code(src, compat=True).endswith(bytes.fromhex("04 04"))  # v3: select-only lost
    with pytest.raises(SolfmtError, match="does not fit in a byte"):
        code(src)
    with pytest.raises(SolfmtError, match="string cache"):
        code(src, compat=True, version=4)
    with pytest.raises(SolfmtError, match="Mode code value out of range"):
        code(src, version=4)
    prog = compile_text(src.replace("select 258", "select 2"), version=4).program
    assert prog.strings[0] == "D300\n"


# ------------------------------------------------------------------ §3.2 resolution


@pytest.mark.parametrize(
    ("res", "count", "iters", "warned"),
    [
        ("1/1", 16384, 1, False),
        ("1/3", 5461, 1, True),
        ("1/10", 1638, 1, True),
        ("4/1", 0, 1, False),
        ("5/1", 40960, 2, False),
        ("60/1", 61440, 16, False),
    ],
)
def test_resolution_to_timer_count(res, count, iters, warned):
    res_obj = compile_text(f"resolution = {res}\n" + SOL + "mode 0 {\n A: O__\n}\n", "r.sol")
    prog = res_obj.program
    assert (prog.modes[0].timer_count, prog.modes[0].iterations) == (count, iters)
    assert prog.code[:3] == bytes((2, count & 0xFF, count >> 8))
    # after SET_TIME and STROBES: the wait of one step, multiplied by the iterations
    if iters > 1:
        assert prog.code[5:7] == bytes((5, iters))
    else:
        assert prog.code[5] == 1
    irr = [w for w in res_obj.warnings if "irrational" in w.message]
    assert bool(irr) == warned
    if warned:
        assert f"Actual resolution will be {count}/16384" in irr[0].message


def test_long_resolution_waits_are_split_at_255():
    src = "resolution = 60/1\n" + SOL + "mode 0 {\n A: O" + "_" * 20 + "\n}\n"
    c = code(src)
    # close after 1 step (16 ticks), then 20 more steps: 320 ticks = WAITS 255 + WAITS 65
    assert c[3:9] == bytes.fromhex("00 16 05 10 00 17")
    assert c[9:] == bytes.fromhex("05 ff 05 41 03 03 00 04")


# ------------------------------------------------------------------ §2 language


def test_case_insensitive_keywords_and_names_and_comments():
    a = "SOLENOID Air1 1 2 3 ; comment\nMode 0 {\n  AIR1: O_ ; O\n}\n"
    b = "solenoid air1 1 2 3\nmode 0 {\n  Air1: O_O\n}\n"
    assert code(a, compat=True) == code(b, compat=True)  # ';' on a pattern line is not a comment


def test_status_bits_and_status_bytes():
    src = "solenoid A 1 2 17\nsolenoid B 3 4 31\nsolenoid C 5 6 9\n"
    prog = compile_text(src).program
    assert [(s.status_addr, s.status_mask) for s in prog.solenoids] == [
        (0x411, 0x0200),
        (0x413, 0x8000),
        (0x40A, 0x0002),
    ]
    prog = compile_text(src + "status_bytes { 0x10 020 }").program
    assert [s.status_addr for s in prog.solenoids] == [0x411, 0x413, 0x10]


def test_set_point_names_are_raw_characters_last_definition_wins():
    src = "dtoa D 0x0 { 0:5 a:6 a:7 ;:8 }\nmode 0 {\n D: 0a;\n}\n"
    prog = compile_text(src).program
    assert [p.value for p in prog.set_points] == [5, 6, 7, 8]
    assert prog.dtoas[0].points == [("0", 0), ("a", 1), ("a", 2), (";", 3)]
    assert [i.operands for i in prog.mode_instructions(0) if i.name == "DTOA"] == [(0,), (2,), (3,)]


def test_initialize_reads_one_character_then_tokens_again():
    ok = SOL + "mode 0 {\n Initialize A: O ; comment\n Initialize B:_\n}\n"
    assert code(ok) == bytes.fromhex("0a 02 16 19 04")
    with pytest.raises(SolfmtError, match="Unexpected token in read_mode"):
        code(SOL + "mode 0 {\n Initialize A: O_\n}\n")


def test_closing_brace_on_a_pattern_line_is_fill():
    with pytest.raises(SolfmtError, match="Unexpected token in read_mode") as ei:
        code(SOL + "mode 0 {\n A: O_ }\n")
    assert (ei.value.line, ei.value.column) == (5, 1)  # EOF inside the mode


def test_routine_is_inlined_at_each_use_with_current_characters():
    src = SOL + "routine R {\n ; a comment\n A: O_\n}\nopen = 'X'\nmode 0 {\n R\n R\n B: __XX\n}\n"
    # the routine body is parsed at each use, after open = 'X': A's 'O' is fill there
    with pytest.raises(SolfmtError, match="ambiguous cycle lengths"):
        code(src)
    src2 = src.replace("A: O_", "A: X_")
    prog = compile_text(src2).program
    assert prog.modes[0].cycle_steps == 4


def test_names_must_be_defined_before_use():
    with pytest.raises(SolfmtError, match="Unexpected token in read_mode"):
        code("mode 0 {\n A: O_\n}\nsolenoid A 1 2 3\n")


def test_numbers_hex_with_blank_octal_and_char():
    prog = compile_text("solenoid A 0x 1F 017 0\nCommand_Set = '\\J'").program
    assert (prog.solenoids[0].open_cmd, prog.solenoids[0].close_cmd) == (31, 15)
    assert prog.command_set == "J"


def test_long_identifiers_are_cut_at_80_characters():
    name = "N" * 80
    with pytest.raises(SolfmtError, match="Solenoid Open Command Missing"):
        compile_text(f"solenoid {name}X 1 2 3")  # 'X' becomes the next token


def test_several_sources_share_state():
    from soldrv.compiler import Compiler

    comp = Compiler(version=4, compat=True)
    comp.read_source("Proxy P { a:1 b:2 }\n", "p.sol")
    comp.read_source("mode 0 {\n P: ab^\n}\n", "m.sol")
    res = comp.finish()
    assert res.program.proxy_ids == [1, 2] and res.program.source == ["p.sol", "m.sol"]


def test_names_and_descriptions_are_kept_on_the_program():
    res = compile_text(SOL + "dtoa D 0x40 { z:0 }\nmode 3 {\n A: O_\n Initialize D: z\n}\n")
    prog = res.program
    assert [s.name for s in prog.solenoids] == ["A", "B"]
    assert prog.set_points[0].dtoa == "D" and prog.set_points[0].char == "z"
    desc = prog.modes[3].description
    assert desc.startswith("Mode 3 is defined with length 2 at resolution 1/1")
    assert "DtoA D to set point z" in desc and "Solenoid A opened at t=0" in desc


def test_whole_file_grammar_gives_a_syntax_tree():
    tree = parse(SOL + "Proxy X { a:1 }\nmode 0 {\n A: O_\n X: aa\n}\n")
    assert [k for k, _ in statements(tree)] == ["solenoid", "solenoid", "proxy", "mode"]
    with pytest.raises(SolfmtError) as ei:
        parse("solenoid A 1 2 3\nmodes 0 { }\n", "g.sol")
    assert ei.value.line == 2 and str(ei.value).startswith("g.sol:2:")


@pytest.mark.parametrize(
    "src",
    [
        SOL + "mode 3 { Initialize A: O }\n",  # tokens resume after the value character
        SOL + "mode 3 {\n Initialize A: O ; comment\n B: O_\n}\n",
        SOL + "routine R {\n Initialize A junk\n A no colon\n}\n",  # pre-scan skips lines
        SOL + "dtoa D 0 { ;:1 }\nmode 0 {\n D: ; ;\n}\n",  # ';' raw: no comment
        SOL + "mode 0 {\n A: O_ } still the pattern\n}\n",
        "Command_Set = '\\J' open = 'x' close='y' resolution = 0x 1F / 017 status_bytes { }",
    ],
)
def test_grammar_accepts_what_the_compiler_accepts(src):
    compile_text(src)
    parse(src)


@pytest.mark.parametrize(
    ("src", "line", "col", "message"),
    [
        ("solenoid A 1 2\n", 2, 1, "expected a number (decimal, 0-octal or 0x-hex), found "
                                   "end of file"),
        ("dtoa D 1 { a 1 }", 1, 14, "expected ':', found '1'"),
        ("resolution = 1 2", 1, 16, "expected '/', found '2'"),
        (SOL + "mode 0 {\n A: O_ }\n", 5, 1, "expected '}', found end of file"),
        ("open = x", 1, 8, "expected a character constant such as 'O', found 'x'"),
        ("\x00\x01", 1, 1, "expected a statement (solenoid, DtoA, Proxy, open, close, "
                             "resolution, status_bytes, Command_Set, routine or mode), found"),
    ],
)
def test_grammar_rejects_with_a_located_sentence(src, line, col, message):
    with pytest.raises(SolfmtError) as ei:
        parse(src, "g.sol")
    err = ei.value
    assert (err.line, err.column) == (line, col)
    assert err.message.startswith("Syntax error: " + message)


def test_routine_from_an_earlier_file_is_read_from_that_file(tmp_path):
    from soldrv.compiler import compile_files

    (tmp_path / "defs.sol").write_text(SOL + "routine R {\n A: O_\n B: _O\n}\n")
    (tmp_path / "modes.sol").write_text("; another file\nmode 0 {\n R\n R\n}\n")
    prog = compile_files([tmp_path / "defs.sol", tmp_path / "modes.sol"]).program
    assert prog.modes[0].cycle_steps == 4
    assert prog.source == [str(tmp_path / "defs.sol"), str(tmp_path / "modes.sol")]


def test_difference_warnings_point_at_the_source():
    src = SOL + "routine R {\n A: OO^O__\n}\nmode 0 {\n R\n}\n"
    res = compile_text(src, "w.sol")
    (w,) = [w for w in res.warnings if w.kind == "differs"]
    assert (w.filename, w.line, w.column) == ("w.sol", 4, 9)  # the "_" of step 3, in R
    assert str(w).startswith("w.sol:4:9: warning: mode 0: changes at step 3")


def test_cr_is_harmless_in_patterns_comments_and_set_point_lists():
    plain = SOL + "dtoa D 0 { a:1\n b:2 }\nmode 0 { ; comment\n A: O_\n D: ab\n}\n"
    with_cr = SOL + "dtoa D 0 { a:1\r\n b:2 }\nmode 0 { ; comment\r\n A: O_\r\n D: ab\r\n}\n"
    assert code(with_cr, compat=True) == code(plain, compat=True)
    with pytest.raises(SolfmtError, match="Unknown Character"):
        code(with_cr.replace("}\n", "}\r\n"))  # but not where tokens are read
