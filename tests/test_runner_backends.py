"""Hardware backends of the runner: SimHardware, OphydHardware on soft signals, safe states."""

from __future__ import annotations

import pytest
from ophyd import Signal
from test_runner_virtual import TUTORIAL

from soldrv.backends import (
    OphydHardware,
    SimHardware,
    apply_safe_state,
    resolve_dtoa_address,
    resolve_solenoid,
    valve_bank_pvs,
)
from soldrv.compiler import compile_text
from soldrv.runner import HardwareError, VirtualRunner

MIXED = """\
solenoid A 22 23 14
solenoid B 24 25 15
DtoA C 0x0E10 { L:50 M:1000 H:4000 }
DtoA C2 0x0E10 { Z:0 }
DtoA E 0x0E20 { X:5 }
Proxy D { L:3 H:7 }
resolution = 1/2
mode 1 {
  A: O_^
  C: LH^
  E: XX^
  D: LH^
}
"""


@pytest.fixture(scope="module")
def prog():
    return compile_text(MIXED, "mixed.sol").program


def test_sim_hardware_states_values_and_virtual_time_log(prog):
    hw = SimHardware(prog)
    vr = VirtualRunner(prog, hw)
    vr.run([(0.0, 1)], duration=2.0)
    assert hw.states == {"A": 0, "B": None}  # B is never commanded
    assert hw.dtoa == {0x0E10: 4000, 0x0E20: 5}
    assert hw.proxies == [3, 7, 3, 7]
    # E is constant (moved to the initialization), then proxy, DtoA, solenoid (spec 2.4 order)
    assert [(e.time, e.kind, e.address or e.proxy_id or e.commands) for e in hw.log[:4]] == [
        (0.0, "set_point", 0x0E20), (0.0, "proxy", 3), (0.0, "set_point", 0x0E10),
        (0.0, "strobe", (22,)),
    ]
    assert hw.log[-1].time == 1.5  # the runner's virtual clock stamps the log
    hw.strobe([99])
    assert hw.unknown_commands == 1


def test_ophyd_hardware_on_soft_signals(prog):
    a, b, c, e = (Signal(name=n, value=-1) for n in "abce")
    fired = []
    hw = OphydHardware(
        prog, {"a": a, "sol1": b}, status={"A": a}, dtoa={"C2": c, 0x0E20: e},
        proxies={7: lambda: fired.append(7)}, unknown_command=fired.append,
    )
    VirtualRunner(prog, hw).run([(0.0, 1)], duration=1.0)
    assert (a.get(), b.get(), c.get(), e.get()) == (0, -1, 4000, 5)
    assert fired == [7]
    assert hw.readback() == {"A": 0}
    assert hw.wait_readback(1.0)
    hw.strobe([99])
    assert fired == [7, 99]
    with pytest.raises(KeyError, match="mapped twice"):
        OphydHardware(prog, {}, dtoa={"C": Signal(name="x"), "C2": Signal(name="y")})
    with pytest.raises(KeyError, match="no solenoid 'Q' in the program; solenoids: A, B"):
        OphydHardware(prog, {"Q": a})


def test_a_failing_hardware_call_stops_the_mode(prog):
    class Broken(Signal):
        def put(self, value, **kw):
            raise ConnectionError("PV disconnected")

    hw = OphydHardware(prog, {"A": Broken(name="a")})
    vr = VirtualRunner(prog, hw)
    with pytest.raises(HardwareError, match="hardware call failed: ConnectionError: PV disconn"):
        vr.run([(0.0, 1)], duration=1.0)
    assert vr.machine.mode is None


def test_name_resolution_and_safe_state(prog):
    assert resolve_solenoid(prog, "b") == 1 and resolve_solenoid(prog, "sol0") == 0
    assert resolve_solenoid(prog, 1) == 1
    with pytest.raises(KeyError, match="out of range"):
        resolve_solenoid(prog, 5)
    assert resolve_dtoa_address(prog, "c2") == 0x0E10
    assert resolve_dtoa_address(prog, "0x0E20") == 0x0E20
    with pytest.raises(KeyError, match="no DtoA 'nope' in the program; DtoAs: C@0x0E10, C2@"):
        resolve_dtoa_address(prog, "nope")
    hw = SimHardware(prog)
    apply_safe_state(hw, prog, None, {"E": 9})
    assert hw.states == {"A": 0, "B": 0} and hw.dtoa[0x0E20] == 9
    sol, sta, da = valve_bank_pvs(prog, "P:")
    assert sol == {0: "P:V1", 1: "P:V2"} and sta[1] == "P:V2_RBV"
    assert da == {0x0E10: "P:DA1", 0x0E20: "P:DA2"}


def test_sft_programs_have_no_names_but_still_run(tmp_path):
    from soldrv.sft import read_sft, write_sft

    p = read_sft(write_sft(compile_text(TUTORIAL).program, 4))
    hw = SimHardware(p)
    VirtualRunner(p, hw).run([(0.0, 0)], duration=1.0)
    assert hw.states == {"sol0": 1, "sol1": 0}
