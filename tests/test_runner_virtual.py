"""soldrv runner semantics on the virtual clock: tutorial cycle, corpus files, mode switches."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from soldrv.compiler import compile_text
from soldrv.program import UNDEFINED_MODE, Program, SetPoint, Solenoid
from soldrv.runner import (
    HardwareError,
    ModeRequestError,
    ProgramError,
    SftError,
    VirtualRunner,
    load_program,
)
from soldrv.sft import load_sft

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "sol_examples"
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"solenoid corpus not found at {CORPUS}"
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TUTORIAL = (EXAMPLES / "solenoid_tutorial.sol").read_text()
TUTORIAL_PATTERNS = {"A": "OOOOOO________OO", "B": "_____OOO________"}
TUTORIAL_CMDS = {"A": (22, 23), "B": (24, 25)}


def outputs(actions, program=None):
    """(time, kind, payload) of the output actions."""
    out = []
    for a in actions:
        if a.kind == "strobe":
            out.append((a.time, "strobe", a.commands))
        elif a.kind == "set_point":
            out.append((a.time, "set_point", (a.address, a.value)))
        elif a.kind == "proxy":
            out.append((a.time, "proxy", a.proxy_id))
    return out


def expected_from_patterns(patterns, cmds, cycles, period):
    """What the tutorial's pattern text implies: a command for every state change."""
    length = len(next(iter(patterns.values())))
    last = {name: None for name in patterns}
    events = []
    for k in range(cycles * length):
        group = []
        for name, pat in patterns.items():
            state = pat[k % length]
            if state != last[name]:
                group.append(cmds[name][0] if state == "O" else cmds[name][1])
                last[name] = state
        if group:
            events.append((k * period, sorted(group)))
    return events


def test_tutorial_cycle_matches_the_pattern_text_across_wraps():
    prog = compile_text(TUTORIAL, "tutorial.sol").program
    vr = VirtualRunner(prog)
    acts = vr.run([(0.0, 0)], duration=3 * 4.0)
    got = [(t, sorted(c)) for t, kind, c in outputs(acts) if kind == "strobe"]
    assert got == expected_from_patterns(TUTORIAL_PATTERNS, TUTORIAL_CMDS, 3, 0.25)
    # tick numbers count from the mode's SET_TIME, steps restart at each GOTO wrap
    strobes = [a for a in acts if a.kind == "strobe"]
    assert [(a.tick, a.step, a.cycle) for a in strobes[:6]] == [
        (0, 0, 0), (5, 5, 0), (6, 6, 0), (8, 8, 0), (14, 14, 0), (21, 5, 1)
    ]
    assert [a.time for a in acts if a.kind == "goto"] == [4.0, 8.0]
    # the initialization (first strobe) is not re-run at the wrap
    assert sum(1 for a in acts if a.kind == "set_time") == 1


def test_nothing_runs_before_a_request_and_mode0_is_not_automatic():
    prog = compile_text(TUTORIAL).program
    vr = VirtualRunner(prog)
    assert vr.run(duration=10.0) == []
    assert vr.machine.mode is None


def test_sft_and_sol_of_the_tutorial_run_identically(tmp_path):
    from soldrv.sft import save_sft

    prog = compile_text(TUTORIAL, "tutorial.sol").program
    sol = tmp_path / "tut.sol"
    sol.write_text(TUTORIAL)
    save_sft(prog, tmp_path / "tut.sft", 4)
    a = outputs(VirtualRunner(load_program(sol)).run([(0, 0)], duration=9))
    b = outputs(VirtualRunner(load_program(tmp_path / "tut.sft")).run([(0, 0)], duration=9))
    assert a == b and a
    assert load_program(sol).solenoids[0].name == "A"  # names kept from the .sol


# --- expectations from the compiler's verbose description of each mode ---------------------

_LINE = re.compile(
    r"^\s+(?P<what>Solenoid (?P<sol>\S+) (?P<oc>opened|closed)"
    r"|DtoA (?P<dtoa>\S+) to set point (?P<sp>\S)"
    r"|Proxy (?P<pxy>\S+) to state (?P<ps>\S))(?: at t=(?P<t>\d+))?$"
)


def described(program: Program, mode: int) -> tuple[Counter, int]:
    """Expected first-cycle outputs of ``mode`` from its description: Counter of (step, text)."""
    info = program.modes[mode]
    exp: Counter = Counter()
    for line in info.description.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        t = int(m.group("t")) if m.group("t") else 0
        exp[(t, _norm(m))] += 1
    return exp, info.cycle_steps or 0


def _norm(m: re.Match) -> str:
    if m.group("sol"):
        return f"sol {m.group('sol').lower()} {1 if m.group('oc') == 'opened' else 0}"
    if m.group("dtoa"):
        return f"dtoa {m.group('dtoa').lower()} {m.group('sp')}"
    return f"proxy {m.group('pxy').lower()} {m.group('ps')}"


def action_texts(program: Program, act) -> list[str]:
    """Describe an output action in the same normalized words."""
    if act.kind == "strobe":
        out = []
        for c in act.commands:
            idx, is_open = program.command_owner(c)
            out.append(f"sol {program.solenoids[idx].name.lower()} {1 if is_open else 0}")
        return out
    if act.kind == "set_point":
        sp = program.set_points[act.index]
        return [f"dtoa {sp.dtoa.lower()} {sp.char}"]
    for p in program.proxies:
        for ch, _pid, idx in p.points:
            if idx == act.index:
                return [f"proxy {p.name.lower()} {ch}"]
    raise AssertionError(f"proxy index {act.index} unknown")


CORPUS_SOL = [
    "arp-das__drivers_soldrv__clo.sol",
    "arp-das__drivers_soldrv__laser.sol",
    "arp-das__drivers_soldrv__acats.sol",
    "arp-hwv__TM__A@e81f155.sol",
    "arp-halogen__TM__Hal@ccae941.sol",
]


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_SOL)
def test_every_cycling_mode_does_what_its_description_says(name):
    prog = load_program(CORPUS / name)
    checked = 0
    for mode in prog.defined_modes():
        exp, length = described(prog, mode)
        info = prog.modes[mode]
        period = info.step_seconds or 1.0
        iters = info.iterations
        vr = VirtualRunner(prog)
        cycles = 1 if info.select is not None or not info.timer_count else 2
        dur = max(length, 1) * period * iters * cycles
        acts = vr.run([(0.0, mode)], duration=dur)
        first_mode = [a for a in acts if a.mode == mode and a.is_output]
        got: Counter = Counter()
        got2: Counter = Counter()
        for a in first_mode:
            step = round(a.time / (period * iters))
            target = got if a.cycle == 0 else got2
            for text in action_texts(prog, a):
                target[(step if a.cycle == 0 else step - length, text)] += 1
        assert got == exp, f"mode {mode}"
        if cycles == 2 and length:
            # the second cycle repeats the first without the initializations
            init_only = {k for k in exp if k[0] == 0} - set(got2)
            assert got2 == exp - Counter({k: exp[k] for k in init_only}), f"mode {mode}"
        checked += 1
    assert checked >= 1


# --- v3 / v4 reference binaries ----------------------------------------------------------------

REF_NAMES = [
    "arp-das__drivers_soldrv__clo",
    "arp-das__drivers_soldrv__laser",
    "arp-das__drivers_soldrv__acats",
    "arp-hwv__TM__A@e81f155",
    "arp-halogen__TM__Hal@dd0d7df",
    "arp-hoxotope__TM__laser@b93458c",
]


@needs_corpus
@pytest.mark.parametrize("name", REF_NAMES)
def test_v3_and_v4_reference_binaries_drive_the_same_outputs(name):
    v3 = load_sft(CORPUS / "ref_v3" / f"{name}.ref.sft")
    v4 = load_sft(CORPUS / "ref_v4" / f"{name}.ref.sft")
    assert v3.defined_modes() == v4.defined_modes()
    for mode in v3.defined_modes():
        if [i.name for i in v3.mode_instructions(mode)] == ["END_MODE"]:
            # spec 3.3: the v3 compiler drops the SELECT of a select-only mode (fixed in v4)
            assert [i.name for i in v4.mode_instructions(mode)] == ["SELECT", "END_MODE"]
            continue
        runs = []
        for prog in (v3, v4):
            vr = VirtualRunner(prog)
            runs.append(outputs(vr.run([(0.0, mode)], ticks=400)))
        assert runs[0] == runs[1], f"mode {mode}"


@needs_corpus
def test_hfems_golden_60s_steps_are_multiples_of_a_minute():
    prog = load_sft(CORPUS / "hfems__TM__HFEMS@f8ae9d6.sft")
    cycling = [m for m in prog.defined_modes() if prog.modes[m].timer_count]
    assert cycling
    for mode in cycling:
        count = prog.modes[mode].timer_count
        vr = VirtualRunner(prog)
        acts = vr.run([(0.0, mode)], ticks=2000)
        outs = [a for a in acts if a.is_output and a.mode == mode]
        assert outs
        if count == 61440:  # 60 s resolution, 16 iterations of 3.75 s
            assert all(a.time % 60.0 == 0.0 for a in outs), mode


# --- mode switching ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hwv_a():
    if not CORPUS.is_dir():
        pytest.skip(f"solenoid corpus not found at {CORPUS}")
    return load_program(CORPUS / "arp-hwv__TM__A@e81f155.sol")


def test_request_waits_for_the_switch_character(hwv_a):
    vr = VirtualRunner(hwv_a)
    acts = vr.run([(0.0, 1), (10.0, 4)], duration=40.0)
    pending = [a for a in acts if a.kind == "pending"]
    assert [(a.time, a.mode) for a in pending] == [(10.0, 1)]
    modes = [(a.time, a.mode, a.detail) for a in acts if a.kind == "mode"]
    assert modes == [(0.0, 1, "mode 1 (request)"), (30.0, 4, "mode 4 (mswok)")]
    # mode 4 = "Chop: OO:__^" with S4 (0=Z, 40=_, 41=O): new time 0 is the ^ tick at 30 s
    assert [o for o in outputs(acts) if o[0] >= 30.0] == [
        (30.0, "set_point", (0, 41)),
        (30.0, "strobe", (51,)),
        (32.0, "set_point", (0, 40)),
        (32.0, "strobe", (50,)),
        (34.0, "set_point", (0, 41)),
        (34.0, "strobe", (51,)),
        (36.0, "set_point", (0, 40)),
        (36.0, "strobe", (50,)),
        (38.0, "set_point", (0, 41)),
        (38.0, "strobe", (51,)),
    ]


def test_mode0_interrupts_at_once_and_later_requests_replace_pending(hwv_a):
    vr = VirtualRunner(hwv_a)
    acts = vr.run([(0.0, 1), (3.0, 2), (4.0, 3), (5.5, 0)], duration=60.0)
    assert [a.detail for a in acts if a.kind == "pending"] == [
        "mode 2 pending until the next ^ (MSWOK)",
        "mode 3 pending until the next ^ (MSWOK)",
    ]
    assert [(a.time, a.mode) for a in acts if a.kind == "mode"] == [(0.0, 1), (5.5, 0)]
    # mode 0: initialize Chop:_ and S1:Z, then END_MODE; the pending mode 3 is dropped
    assert outputs(acts)[-2:] == [(5.5, "set_point", (0, 0)), (5.5, "strobe", (50,))]
    assert [a.time for a in acts if a.kind == "end_mode"] == [5.5]
    assert vr.machine.mode is None and vr.machine.pending is None


def test_request_in_no_mode_acts_at_once(hwv_a):
    vr = VirtualRunner(hwv_a)
    vr.run([(7.25, 3)], duration=8.0)
    assert vr.actions[0].kind == "mode" and vr.actions[0].time == 7.25
    assert vr.machine.t0 == 7.25  # SET_TIME restarts the timer at the request


def test_select_only_mode_switches_to_its_successor(hwv_a):
    vr = VirtualRunner(hwv_a)
    acts = vr.run([(1.0, 5)], duration=2.0)
    assert [(a.kind, a.mode) for a in acts if a.kind in ("mode", "select", "end_mode")] == [
        ("mode", 5), ("select", 5), ("mode", 0), ("end_mode", 0)
    ]


@needs_corpus
def test_select_chain_of_clo_modes_7_and_8_and_pending_at_mid_cycle_caret():
    prog = load_program(CORPUS / "arp-das__drivers_soldrv__clo.sol")
    vr = VirtualRunner(prog)
    acts = vr.run([(0.0, 7)], duration=250.0)
    # mode 7 is 56 s long (^ at 32 and 56, then select 8); mode 8 is 40 s (select 7)
    assert [(a.time, a.mode) for a in acts if a.kind == "mode"] == [
        (0.0, 7), (56.0, 8), (96.0, 7), (152.0, 8), (192.0, 7), (248.0, 8)
    ]
    vr = VirtualRunner(prog)
    acts = vr.run([(0.0, 7), (10.0, 1)], duration=40.0)
    assert [(a.time, a.mode) for a in acts if a.kind == "mode"] == [(0.0, 7), (32.0, 1)]
    vr = VirtualRunner(prog)
    acts = vr.run([(0.0, 4)], duration=10.0)  # mode 4: 4 s, then select 0 (no cycle)
    assert [(a.time, a.mode) for a in acts if a.kind == "mode"] == [(0.0, 4), (4.0, 0)]
    assert acts[-1].kind == "end_mode" and acts[-1].time == 4.0


@needs_corpus
def test_proxy_ids_reach_the_hardware():
    prog = load_program(CORPUS / "arp-das__drivers_soldrv__laser.sol")
    vr = VirtualRunner(prog)
    acts = vr.run([(0.0, 2)], duration=16.0)  # mode 2: Etalon: ____:OOOO^  (O:3 _:4)
    assert [(t, pid) for t, kind, pid in outputs(acts) if kind == "proxy"] == [
        (0.0, 4), (4.0, 3), (8.0, 4), (12.0, 3)
    ]


# --- bad programs and refused requests ---------------------------------------------------------


def tiny(code: bytes, *, modes=(0,), set_points=1, proxies=()) -> Program:
    """A hand-made v3 program: one solenoid (open 1, close 2), mode 0 at offset 0."""
    return Program(
        version=0x0300,
        solenoids=[Solenoid(1, 2, 0x408, 1)],
        set_points=[SetPoint(0x10, 7)] * set_points,
        proxy_ids=list(proxies),
        mode_indices=list(modes),
        code=bytes(code),
    )


@pytest.mark.parametrize(
    "code, words",
    [
        (b"\x02\x00\x40\x0c", "unknown opcode 12"),
        (b"\x08\x05\x04", "DTOA 5 is out of range"),
        (b"\x09\x00\x04", "PROXY 0 is out of range"),
        (b"\x02\x00\x40\x03\x50\x00\x04", "GOTO 80 is outside"),
        (b"\x01\x04", "WAIT with no timer running"),
        (b"\x02\x00\x40\x03\x03\x00", "endless loop"),
        (b"\x02\x00", "needs 3 bytes"),
    ],
)
def test_bad_code_raises_sft_error_and_the_runner_survives(code, words):
    vr = VirtualRunner(tiny(code))
    vr.machine.max_ops = 1000
    with pytest.raises(ProgramError, match=words) as info:
        vr.run([(0.0, 0)], duration=3.0)
    assert isinstance(info.value, SftError)
    assert "mode 0" in str(info.value) and "NO_MODE" in str(info.value)
    assert vr.machine.mode is None
    assert vr.actions[-1].kind == "error"


def test_runner_keeps_working_after_a_program_error():
    # mode 0 is broken, mode 1 is fine: open at once, END_MODE
    prog = tiny(b"\x08\x05\x04" + b"\x00\x01\x04", modes=(0, 3))
    vr = VirtualRunner(prog)
    with pytest.raises(ProgramError):
        vr.request_mode(0)
    vr.request_mode(1)
    assert outputs(vr.actions)[-1] == (0.0, "strobe", (1,))


def test_undefined_mode_requests_are_refused_and_change_nothing():
    prog = tiny(b"\x02\x00\x40\x00\x01\x01\x00\x02\x01\x07\x03\x03\x00\x04",
                modes=(0, UNDEFINED_MODE, 0))
    vr = VirtualRunner(prog)
    vr.run([(0.0, 2)], duration=1.5)
    before = (vr.machine.mode, vr.machine.ip, vr.machine.pending, len(vr.actions))
    for bad in (1, 3, 300, -1, "x"):
        with pytest.raises(ModeRequestError, match="not"):
            vr.request_mode(bad)
    assert (vr.machine.mode, vr.machine.ip, vr.machine.pending, len(vr.actions)) == before
    vr.run(duration=3.0)  # still cycling
    assert vr.machine.mode == 2


def test_select_of_an_undefined_mode_warns_and_stops():
    prog = tiny(b"\x06\x07\x04", modes=(0,))
    vr = VirtualRunner(prog)
    vr.run([(0.0, 0)], duration=1.0)
    assert [a.detail for a in vr.actions if a.kind == "warning"] == [
        "can't select undefined mode 7"
    ]
    assert vr.machine.mode is None


def test_mode0_request_when_mode0_is_undefined_halts():
    prog = tiny(b"\x02\x00\x40\x01\x03\x03\x00\x04", modes=(UNDEFINED_MODE, 0))
    vr = VirtualRunner(prog)
    vr.run([(0.0, 1), (2.5, 0)], duration=5.0)
    assert vr.machine.mode is None
    assert vr.actions[-1].kind == "warning" and vr.actions[-1].time == 2.5


def test_truncated_and_corrupt_sft_give_a_sentence(tmp_path):
    from soldrv.sft import write_sft

    good = write_sft(compile_text(TUTORIAL).program, 3)
    (tmp_path / "short.sft").write_bytes(good[:-3])
    with pytest.raises(SftError, match=r"short\.sft: truncated \.sft: .* needs \d+ byte"):
        load_program(tmp_path / "short.sft")
    (tmp_path / "junk.sft").write_bytes(b"\x07\x07" + good[2:])
    with pytest.raises(SftError, match="version word 0x0707"):
        load_program(tmp_path / "junk.sft")
    with pytest.raises(FileNotFoundError, match="Can't open"):
        load_program(tmp_path / "missing.sft")


def test_virtual_run_needs_a_limit():
    with pytest.raises(ValueError, match="limit"):
        VirtualRunner(compile_text(TUTORIAL).program).run([(0, 0)])


@needs_corpus
@pytest.mark.parametrize("name", REF_NAMES)
def test_runner_agrees_with_the_symbolic_trace_of_soldrv_trace(name):
    """Cross-check with the independent straight-line tracer of the solfmt helper."""
    trace = pytest.importorskip("soldrv.trace")
    prog = load_sft(CORPUS / "ref_v4" / f"{name}.ref.sft")
    compared = 0
    for mode in prog.defined_modes():
        want = [
            (e.tick, e.op, e.value) for e in trace.trace_mode(prog, mode, max_ticks=300)
            if e.op in ("strobes", "dtoa", "proxy")
        ]
        vr = VirtualRunner(prog)
        got = []
        for a in vr.run([(0.0, mode)], ticks=300):
            if a.mode != mode or not a.is_output:
                if a.kind == "mode" and a.mode != mode:
                    break  # the tracer follows one mode only
                continue
            kind = {"strobe": "strobes", "set_point": "dtoa", "proxy": "proxy"}[a.kind]
            value = a.commands if a.kind == "strobe" else (a.index,)
            got.append((a.tick, kind, value))
        n = min(len(got), len(want))
        assert bool(got) == bool(want), f"mode {mode}: one side drove nothing"
        assert got[:n] == want[:n], f"mode {mode}"
        compared += n
    assert compared > 0


# --- hand-assembled programs: timer changes, select chains, loops (spec 5.2) ---------------------


class CountingHardware:
    """Counts hardware calls; strobes carrying ``fail_on`` raise (a put that failed)."""

    def __init__(self, fail_on=None):
        self.strobes = []
        self.fail_on = fail_on

    def strobe(self, commands):
        if self.fail_on in commands:
            raise ConnectionError("put failed")
        self.strobes.append(tuple(commands))

    def set_point(self, address, value):
        pass

    def proxy(self, proxy_id):
        pass


def strobe_times(acts):
    return [(a.time, a.commands) for a in acts if a.kind == "strobe"]


def test_set_time_in_mid_mode_restarts_the_timer_there():
    # SET_TIME 1 s; open; WAIT; SET_TIME 0.5 s; close; WAIT; open; WAIT; END_MODE
    prog = tiny(b"\x02\x00\x40\x00\x01\x01\x02\x00\x20\x00\x02\x01\x00\x01\x01\x04")
    vr = VirtualRunner(prog)
    acts = vr.run([(0.0, 0)], duration=5.0)
    assert strobe_times(acts) == [(0.0, (1,)), (1.0, (2,)), (1.5, (1,))]
    assert [(a.time, a.tick) for a in acts if a.kind == "strobe"][-1] == (1.5, 1)
    assert [a.time for a in acts if a.kind == "end_mode"] == [2.0]


def test_count_0_is_a_4_s_tick_and_the_first_tick_is_one_period_after_set_time():
    prog = tiny(b"\x02\x00\x00\x00\x01\x01\x00\x02\x04")
    acts = VirtualRunner(prog).run([(0.5, 0)], duration=10.0)
    assert strobe_times(acts) == [(0.5, (1,)), (4.5, (2,))]


# mode 0 @0: SET_TIME 1 s; open; WAIT; SELECT 1; END_MODE
# mode 1 @9: SET_TIME 0.25 s; close; WAIT; MSWOK; open; WAIT; GOTO 12; END_MODE
# mode 2 @23: open; END_MODE
SELECT_PROG = (
    b"\x02\x00\x40\x00\x01\x01\x06\x01\x04"
    b"\x02\x00\x10\x00\x02\x01\x07\x00\x01\x01\x03\x0c\x00\x04"
    b"\x00\x01\x04"
)


def test_select_drops_a_pending_request_and_switches_the_timer():
    vr = VirtualRunner(tiny(SELECT_PROG, modes=(0, 9, 23)))
    acts = vr.run([(0.0, 0), (0.5, 2)], duration=2.0)
    assert [a.kind for a in acts if a.time == 0.5] == ["pending"]
    # SELECT at the 1 s tick starts mode 1 there (its own 0.25 s timer); mode 2 never runs
    assert [(a.time, a.mode) for a in acts if a.kind == "mode"] == [(0.0, 0), (1.0, 1)]
    assert strobe_times(acts)[1:5] == [(1.0, (2,)), (1.25, (1,)), (1.5, (2,)), (1.75, (1,))]
    assert vr.machine.pending is None and vr.machine.mode == 1


def test_a_request_for_the_running_mode_restarts_it_at_the_next_caret():
    vr = VirtualRunner(tiny(SELECT_PROG, modes=(0, 9, 23)))
    acts = vr.run([(0.0, 1), (0.6, 1)], duration=1.0)
    # mode 1's MSWOK runs after each step-0 wait: at 0.25, 0.75; the request at 0.6 acts at 0.75
    assert [(a.time, a.detail) for a in acts if a.kind == "mode"] == [
        (0.0, "mode 1 (request)"), (0.75, "mode 1 (mswok)")
    ]
    assert sum(1 for a in acts if a.kind == "set_time") == 2  # a restart re-runs SET_TIME
    assert vr.machine.t0 == 0.75


def test_mode0_request_while_mode0_runs_restarts_it_at_once():
    prog = tiny(SELECT_PROG, modes=(0, 9, 23))
    acts = VirtualRunner(prog).run([(0.0, 0), (0.3, 0)], duration=0.9)
    assert [(a.time, a.detail) for a in acts if a.kind == "mode"] == [
        (0.0, "mode 0 (request)"), (0.3, "mode 0 (interrupt)")
    ]
    assert strobe_times(acts) == [(0.0, (1,)), (0.3, (1,))]


def test_an_endless_loop_is_caught_before_it_hammers_the_hardware():
    hw = CountingHardware()
    vr = VirtualRunner(tiny(b"\x02\x00\x40\x00\x01\x03\x03\x00"), hw)  # open; GOTO open
    with pytest.raises(ProgramError, match="GOTO at offset 5 was reached again without waiting"):
        vr.request_mode(0)
    assert hw.strobes == [(1,), (1,)]  # one pass around the loop, not max_ops of them
    vr = VirtualRunner(tiny(b"\x06\x01\x04\x06\x00\x04", modes=(0, 3)))  # 0 -> 1 -> 0 ...
    with pytest.raises(ProgramError, match="SELECT at offset 0 was reached again"):
        vr.request_mode(0)
    assert vr.machine.mode is None


def test_a_failed_strobe_leaves_its_solenoid_unknown():
    hw = CountingHardware(fail_on=2)
    vr = VirtualRunner(tiny(b"\x02\x00\x40\x00\x01\x01\x00\x02\x01\x04"), hw)
    with pytest.raises(HardwareError, match="offset 6: the hardware call failed"):
        vr.run([(0.0, 0)], duration=3.0)
    assert [s.solenoids for s in vr.steps] == [(1,), (None,)]
    assert vr.machine.solenoids == [None]
