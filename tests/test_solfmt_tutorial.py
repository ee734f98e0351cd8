"""The tutorial of "Solenoid Cycle Definitions v3.0" compiled, with the mode codes spelled out
for the timing the document describes (resolution 1/4 s: one character = 0.25 s)."""

from __future__ import annotations

import pytest

from soldrv.compiler import compile_text
from soldrv.errors import SolfmtError
from soldrv.program import VERSION_4
from soldrv.sft import read_sft, write_sft
from soldrv.trace import solenoid_states, trace_mode

HEADER = """
        solenoid A 22 23 14
        solenoid B 24 25 15
        resolution = 1/4
"""
MODE0 = """
        mode 0 {
          A: OOOO:OO__:____:__OO
          B: ____:_OOO:____:____
        }
"""
MODE0_LONG = """
        mode 0 {
          A: OOOO:OO__:____:__OO
          B: ____:_OOO:____:____

          A: OOOO:OO__:___O:_O_O
          B: ____:_OOO:OOO_:O_O_
        }
"""


def states_text(program, mode: int, n: int) -> tuple[str, str]:
    events = trace_mode(program, mode, max_ticks=n + 1)
    st = solenoid_states(program, events, n)
    return tuple("".join("O" if s[k] else "_" for s in st) for k in (0, 1))


def test_first_tutorial_mode_codes():
    prog = compile_text(HEADER + MODE0).program
    # A and B begin and end in the same state: their first commands move to the init
    # (one multi-strobe), the cycle then re-sends only real changes.
    assert prog.code == bytes.fromhex(
        "0a 02 16 19"  # MULT_STROBES 2: A open (22), B close (25)      -- mode entry
        "02 00 10"  # SET_TIME 4096 = 1/4 s
        "05 05 00 18"  # 5 steps (1.25 s) later: B opens (24)
        "01 00 17"  # 1 step later (1.5 s): A closes (23)
        "05 02 00 19"  # 2 steps later (2.0 s): B closes after 3/4 s open
        "05 06 00 16"  # 6 steps later (3.5 s): A reopens after 2 s closed
        "05 02 03 07 00"  # to the end of the 4 s cycle, then GOTO the step-0 codes
        "04"
    )
    assert prog.mode_indices == [0]
    info = prog.modes[0]
    assert (info.timer_count, info.iterations, info.cycle_steps) == (4096, 1, 16)
    assert info.step_seconds == 0.25
    # status bits 14 and 15 -> second status address 0x40A, masks 0x40 and 0x80
    assert [(s.status_addr, s.status_mask) for s in prog.solenoids] == [
        (0x40A, 0x40),
        (0x40A, 0x80),
    ]


def test_first_tutorial_timing_matches_the_text():
    prog = compile_text(HEADER + MODE0).program
    a, b = states_text(prog, 0, 32)
    assert a == "OOOOOO________OO" * 2
    assert b == "_____OOO________" * 2


def test_continuation_lines_extend_the_cycle():
    prog = compile_text(HEADER + MODE0_LONG).program
    assert prog.modes[0].cycle_steps == 32
    a, b = states_text(prog, 0, 64)
    assert a == ("OOOOOO________OO" + "OOOOOO_____O_O_O") * 2
    assert b == ("_____OOO________" + "_____OOOOOO_O_O_") * 2
    events = [(e.tick, e.value) for e in trace_mode(prog, 0, 38) if e.op == "strobes"]
    assert events == [
        (0, (22, 25)),  # init: A open, B closed
        (5, (24,)),
        (6, (23,)),
        (8, (25,)),
        (14, (22,)),  # first line pair
        (21, (24,)),
        (22, (23,)),  # second pair: B opens, A closes
        (27, (22, 25)),
        (28, (23, 24)),
        (29, (22, 25)),
        (30, (23, 24)),
        (31, (22, 25)),
        (32 + 5, (24,)),  # second cycle: A was left open, so nothing at 32
    ]


def test_open_and_close_characters_can_be_changed():
    src = HEADER + "open = '1'\nclose = '0'\n" + MODE0.replace("O", "1").replace("_", "0")
    assert compile_text(src).program.code == compile_text(HEADER + MODE0).program.code


DTOA = """
        DtoA C 0x0E10 { L:50 M:1000 H:4000 }
        mode 1 {
          C: LLLL:LLMM:MHHM:MMLL
          C: LLLL:LLMM:HMML:MLML
        }
"""


def test_dtoa_set_points_mode_codes():
    prog = compile_text(HEADER + DTOA).program
    assert [(p.address, p.value) for p in prog.set_points] == [
        (0x0E10, 50),
        (0x0E10, 1000),
        (0x0E10, 4000),
    ]
    assert prog.mode_indices == [0xFFFF, 0]
    assert prog.code == bytes.fromhex(
        "08 00"  # init: C to L (begins and ends on L)
        "02 00 10"  # SET_TIME 1/4 s
        "05 06 08 01  05 03 08 02  05 02 08 01  05 03 08 00"  # M@6 H@9 M@11 L@14
        "05 08 08 01  05 02 08 02  01 08 01  05 02 08 00"  # M@22 H@24 M@25 L@27
        "01 08 01  01 08 00  01 08 01  01 08 00"  # M@28 L@29 M@30 L@31
        "01 03 05 00 04"  # last step, GOTO offset 5
    )


def test_the_document_address_0E10_is_not_a_number_for_the_real_lexer():
    """`0E10` reads as 0 followed by the name E10 (hex needs 0x), as in the reference."""
    with pytest.raises(SolfmtError) as ei:
        compile_text("DtoA C 0E10 { L:50 M:1000 H:4000 }")
    assert ei.value.message == "DtoA Set Point Definition needs '{'"
    assert ei.value.column == 9


PROXY = """
        Proxy D { L:3 M:4 H:7 }
        mode 2 {
          D: LLMMHH^
        }
"""


@pytest.mark.parametrize("version", [3, 4])
def test_proxy_states_trigger_their_proxy_index(version):
    prog = compile_text(HEADER + PROXY, version=version).program
    assert prog.proxy_ids == [3, 4, 7]
    assert prog.code == bytes.fromhex(
        "02 00 10  09 00 05 02 09 01 05 02 09 02 05 02 07 03 03 00 04"
    )
    assert read_sft(write_sft(prog)).proxy_ids == [3, 4, 7]


def test_initialize_select_and_dc_component():
    src = (
        HEADER
        + """
        mode 2 {
          initialize A:O
          B: OO__
          select 0
        }
        mode 3 {
          initialize A:O
        }
    """
    )
    prog = compile_text(src + MODE0, version=4).program
    assert prog.version == VERSION_4
    m2 = prog.mode_instructions(2)
    assert [(i.name, i.operands) for i in m2] == [
        ("STROBES", (prog.strings.index("D22\n"),)),  # initialize A:O, once on entry
        ("SET_TIME", (4096,)),
        ("STROBES", (prog.strings.index("D24\n"),)),  # one-shot: B is not optimized
        ("WAITS", (2,)),
        ("STROBES", (prog.strings.index("D25\n"),)),
        ("WAITS", (2,)),
        ("SELECT", (0,)),
        ("END_MODE", ()),
    ]
    m3 = prog.mode_instructions(3)
    assert [(i.name, i.operands) for i in m3] == [
        ("STROBES", (prog.strings.index("D22\n"),)),
        ("END_MODE", ()),
    ]
    assert prog.modes[2].select == 0 and prog.modes[3].timer_count is None
