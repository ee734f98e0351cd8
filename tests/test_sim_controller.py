"""SimulatedCS800 on a ManualClock: run modes, phases, timing, lag, faults, datagrams."""

import statistics
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_cs800 import protocol as P
from ophyd_cs800.protocol import Phase, RunMode
from sim_ioc.clock import ManualClock
from sim_ioc.controller import SimulatedCS800

NA = P.NOT_AVAILABLE


def make(start_temp_k=293.0, ready=True, **kw):
    clock = ManualClock()
    kw.setdefault("seed", 7)
    kw.setdefault("ambient_k", max(start_temp_k, 293.0))
    ctl = SimulatedCS800(411, clock, start_temp_k=start_temp_k, **kw)
    if ready:
        clock.advance(3.0)
        ctl.advance()
        assert ctl.run_mode is RunMode.STARTUP_OK
    return clock, ctl


def send(ctl, cmd):
    return ctl.handle_command(cmd.encode())


def status(ctl):
    return P.decode_status(ctl.status_datagram())


def run_until(clock, ctl, predicate, limit_s, step=1.0):
    """Step simulated time until predicate(status) holds; return (elapsed seconds, status)."""
    start = clock.now()
    while clock.now() - start < limit_s:
        clock.advance(step)
        pkt = status(ctl)
        if predicate(pkt):
            return clock.now() - start, pkt
    raise AssertionError(f"condition not met within {limit_s} simulated s: {ctl!r}")


def samples(clock, ctl, seconds, step=1.0):
    out = []
    for _ in range(int(seconds / step)):
        clock.advance(step)
        out.append(status(ctl))
    return out


def cold_hold(temp_k=100.0):
    """A controller holding at temp_k with the gas settled (started there)."""
    clock, ctl = make(start_temp_k=temp_k)
    assert send(ctl, P.cool(temp_k))
    clock.advance(600)
    return clock, ctl


# ------------------------------------------------------------------ start-up and Ready


def test_startup_then_ready_with_sentinels():
    clock, ctl = make(ready=False)
    pkt = status(ctl)
    assert pkt.run_mode is RunMode.STARTUP
    assert not send(ctl, P.cool(100))  # nothing is accepted during StartUp
    assert "STARTUP" in ctl.last_rejection
    clock.advance(2.9)
    assert status(ctl).run_mode is RunMode.STARTUP
    clock.advance(0.2)
    pkt = status(ctl)
    assert pkt.run_mode is RunMode.STARTUP_OK
    assert pkt.phase is Phase.HOLD
    for pid in (1052, 1055, 1056, 1059):
        assert pkt.get_raw(pid) == NA, pid
    assert pkt.temp == pytest.approx(293.0, abs=0.06)
    assert pkt.gas_flow == 0


# ------------------------------------------------------------------ ramp


def test_ramp_300_to_100_at_360_takes_33_3_minutes():
    clock, ctl = make(start_temp_k=300.0)
    assert send(ctl, P.ramp(360, 100))
    pkt = status(ctl)
    assert (pkt.run_mode, pkt.phase) == (RunMode.RUN, Phase.RAMP)
    assert pkt.ramp_rate == 360 and pkt.target_temp == 100.0
    assert pkt.remaining == 34  # ceil(33.33 min)
    clock.advance(600)
    pkt = status(ctl)
    assert pkt.setpoint == pytest.approx(240.0, abs=0.011)  # 60 K in 10 min
    assert pkt.remaining == 24
    elapsed, pkt = run_until(
        clock, ctl, lambda p: p.setpoint == 100.0 and p.phase is Phase.HOLD, 3600
    )
    total_min = (elapsed + 600) / 60
    assert total_min == pytest.approx(200 / 360 * 60, rel=0.01)
    assert pkt.ramp_rate == 0 and pkt.remaining == 0 and pkt.target_temp == 100.0


def test_gas_lags_setpoint_then_settles_within_0_1_k():
    clock, ctl = make(start_temp_k=300.0)
    send(ctl, P.ramp(360, 100))
    clock.advance(900)
    pkt = status(ctl)
    lag = pkt.temp - pkt.setpoint  # cooling: the gas trails above the set point
    assert 1.0 < lag < 3.0, lag  # rate x tau = 0.1 K/s x 20 s
    assert pkt.error == pytest.approx(pkt.setpoint - pkt.temp, abs=0.011)
    assert pkt.error < 0
    run_until(clock, ctl, lambda p: p.phase is Phase.HOLD, 3600)
    clock.advance(180)
    temps = [p.temp for p in samples(clock, ctl, 300)]
    assert all(abs(t - 100.0) <= 0.1 for t in temps), (min(temps), max(temps))
    assert statistics.pstdev(temps) > 0.005  # real noise, not a constant
    assert max(temps) - min(temps) <= 0.11


def test_ramp_rate_zero_means_fastest_and_ramp_up_works():
    clock, ctl = cold_hold(100.0)
    assert send(ctl, P.ramp(0, 130))
    pkt = status(ctl)
    assert pkt.ramp_rate == 360 and pkt.phase is Phase.RAMP
    elapsed, _ = run_until(clock, ctl, lambda p: p.phase is Phase.HOLD, 3600)
    assert elapsed == pytest.approx(300, abs=1.5)  # 30 K at 360 K/h


def test_cool_goes_at_fastest_rate_reported_as_ramp_rate():
    clock, ctl = make()
    assert send(ctl, P.cool(257))
    pkt = status(ctl)
    assert (pkt.run_mode, pkt.phase, pkt.ramp_rate) == (RunMode.RUN, Phase.COOL, 360)
    assert pkt.target_temp == 257.0
    elapsed, pkt = run_until(clock, ctl, lambda p: p.phase is Phase.HOLD, 3600)
    assert elapsed == pytest.approx(360, abs=1.5)  # 36 K at 0.1 K/s
    assert pkt.setpoint == 257.0 and pkt.ramp_rate == 0


def test_hold_mid_ramp_freezes_the_setpoint():
    clock, ctl = make(start_temp_k=300.0)
    send(ctl, P.ramp(360, 100))
    clock.advance(300)
    assert send(ctl, P.hold())
    pkt = status(ctl)
    assert pkt.phase is Phase.HOLD and pkt.ramp_rate == 0
    assert pkt.setpoint == pytest.approx(270.0, abs=0.011)
    assert pkt.target_temp == pkt.setpoint
    clock.advance(300)
    assert status(ctl).setpoint == pkt.setpoint


def test_plat_counts_remaining_down_then_holds():
    clock, ctl = cold_hold(150.0)
    assert send(ctl, P.plat(2))
    pkt = status(ctl)
    assert (pkt.phase, pkt.remaining, pkt.ramp_rate) == (Phase.PLAT, 2, 0)
    assert pkt.target_temp == pytest.approx(150.0, abs=0.011)
    clock.advance(61)
    assert status(ctl).remaining == 1
    clock.advance(58)
    assert status(ctl).phase is Phase.PLAT
    clock.advance(1.5)
    pkt = status(ctl)
    assert pkt.phase is Phase.HOLD and pkt.remaining == 0


# ------------------------------------------------------------------ pause / resume


def test_pause_freezes_and_resume_continues():
    clock, ctl = make(start_temp_k=300.0)
    send(ctl, P.ramp(360, 200))  # 1000 s
    clock.advance(400)
    assert send(ctl, P.pause())
    pkt = status(ctl)
    assert pkt.suspended and pkt.get_raw(1071) == 1
    assert pkt.phase is Phase.HOLD and pkt.ramp_rate == 0
    assert pkt.target_temp == 200.0
    frozen_sp, frozen_rem = pkt.setpoint, pkt.remaining
    assert frozen_sp == pytest.approx(260.0, abs=0.011)
    clock.advance(500)
    pkt = status(ctl)
    assert (pkt.setpoint, pkt.remaining) == (frozen_sp, frozen_rem)
    assert pkt.temp == pytest.approx(frozen_sp, abs=0.1)  # gas holds at the frozen set point
    assert not send(ctl, P.pause())  # already paused
    assert send(ctl, P.resume())
    pkt = status(ctl)
    assert not pkt.suspended and pkt.phase is Phase.RAMP and pkt.ramp_rate == 360
    elapsed, _ = run_until(clock, ctl, lambda p: p.phase is Phase.HOLD, 3600)
    assert elapsed == pytest.approx(600, abs=1.5)  # the remaining 60 K
    assert not send(ctl, P.resume())  # not paused
    assert "not suspended" in ctl.last_rejection


# ------------------------------------------------------------------ shutdowns and restart


def test_stop_then_restart():
    clock, ctl = cold_hold(100.0)
    assert send(ctl, P.stop())
    pkt = status(ctl)
    assert pkt.run_mode is RunMode.SHUTDOWN_OK
    assert pkt.alarm.code == 2 and pkt.alarm.text == "Stop command"
    assert pkt.gas_flow == 0 and pkt.get_raw(1055) == NA and pkt.get_raw(1056) == NA
    clock.advance(600)
    assert status(ctl).temp > 150  # no gas: warms toward the room
    assert not send(ctl, P.ramp(360, 150))  # not valid while shut down
    assert "SHUTDOWN_OK" in ctl.last_rejection
    assert not send(ctl, P.stop())
    assert send(ctl, P.restart())
    pkt = status(ctl)
    assert pkt.run_mode is RunMode.STARTUP and pkt.alarm.code == 0
    elapsed, pkt = run_until(clock, ctl, lambda p: p.run_mode is RunMode.STARTUP_OK, 60, 0.5)
    assert elapsed == pytest.approx(3.0, abs=0.6)
    assert send(ctl, P.cool(150))


def test_end_ramps_to_300_then_shuts_down_with_alarm_3():
    clock, ctl = cold_hold(100.0)
    assert send(ctl, P.end(360))
    pkt = status(ctl)
    assert (pkt.phase, pkt.ramp_rate, pkt.target_temp) == (Phase.END, 360, 300.0)
    elapsed, pkt = run_until(clock, ctl, lambda p: p.run_mode is not RunMode.RUN, 7200)
    assert elapsed / 60 == pytest.approx(200 / 360 * 60, rel=0.01)
    assert pkt.run_mode is RunMode.SHUTDOWN_OK and pkt.alarm.code == 3
    assert pkt.get_raw(1080) == 3  # last shutdown code


def test_purge_warms_up_then_shuts_down_with_alarm_4():
    clock, ctl = cold_hold(100.0)
    evap_cold = status(ctl).value(1057)
    assert evap_cold < 90
    assert send(ctl, P.purge())
    assert status(ctl).phase is Phase.PURGE
    elapsed, pkt = run_until(clock, ctl, lambda p: p.run_mode is not RunMode.RUN, 7200)
    assert 2000 < elapsed < 2200  # 200 K at 360 K/h, then the gas settles within 0.5 K
    assert pkt.run_mode is RunMode.SHUTDOWN_OK and pkt.alarm.code == 4
    assert pkt.temp == pytest.approx(300.0, abs=0.6)
    assert pkt.value(1057) > 250  # the evaporator warmed up too


def test_level_4_alarm_shuts_down_to_shutdown_fail_with_snapshot():
    clock, ctl = cold_hold(100.0)
    ctl.inject_alarm(5)  # Temp warning: level 2, keeps running
    pkt = status(ctl)
    assert pkt.run_mode is RunMode.RUN and pkt.alarm.code == 5
    ctl.clear_alarm()
    assert status(ctl).alarm.code == 0
    ctl.inject_alarm(9)  # Low flow rate: level 4
    pkt = status(ctl)
    assert pkt.run_mode is RunMode.SHUTDOWN_FAIL and pkt.alarm.code == 9
    assert pkt.get_raw(1082) == 9
    assert pkt.get_raw(1084) == pytest.approx(10000, abs=6)  # sample temp at the error
    assert pkt.gas_flow == 0
    assert send(ctl, P.restart())
    clock.advance(3.5)
    assert status(ctl).run_mode is RunMode.STARTUP_OK
    ctl.inject_alarm(46, shutdown=True)  # a level-1 alarm forced to shut down
    assert status(ctl).run_mode is RunMode.SHUTDOWN_FAIL
    with pytest.raises(ValueError, match="alarm code"):
        ctl.inject_alarm(-1)


def test_sensor_fail_reads_sentinel_and_fails_startup():
    clock, ctl = cold_hold(100.0)
    ctl.set_sensor_fail(True)
    pkt = status(ctl)
    assert pkt.temp is None and pkt.value(1057) is None and pkt.value(1058) is None
    assert pkt.get_raw(1052) == NA
    assert pkt.setpoint == 100.0  # the set point is not a sensor
    send(ctl, P.stop())
    send(ctl, P.restart())
    clock.advance(5)
    pkt = status(ctl)
    assert pkt.run_mode is RunMode.STARTUP_FAIL and pkt.alarm.code == 14
    ctl.set_sensor_fail(False)
    assert send(ctl, P.restart())
    clock.advance(5)
    assert status(ctl).run_mode is RunMode.STARTUP_OK


# ------------------------------------------------------------------ turbo, flow interrupt


def test_turbo_changes_flow_and_turbomode():
    clock, ctl = cold_hold(100.0)
    pkt = status(ctl)
    assert pkt.get_raw(1100) == 500 and pkt.gas_flow == 5.0 and pkt.get_raw(1060) == NA
    assert 30 <= pkt.value(1101) <= 42
    assert send(ctl, P.turbo(True))
    clock.advance(1)
    pkt = status(ctl)
    assert pkt.get_raw(1068) == 1 and pkt.turbo_mode is P.TurboMode.ON
    assert pkt.get_raw(1100) == 1000 and pkt.gas_flow == 10.0
    assert pkt.value(1101) > 60
    assert send(ctl, P.turbo(False))
    pkt = status(ctl)
    assert pkt.get_raw(1068) == 0 and pkt.gas_flow == 5.0


def test_turbo_is_limited_to_normal_flow_above_310_k():
    clock, ctl = make(start_temp_k=350.0)
    send(ctl, P.hold())
    send(ctl, P.turbo(True))
    clock.advance(10)
    pkt = status(ctl)
    assert pkt.get_raw(1068) == 1 and pkt.gas_flow == 5.0


def test_flow_interrupt_warms_the_sample_briefly():
    clock, ctl = cold_hold(100.0)
    assert not send(ctl, P.interrupt_flow())  # no interrupt time set yet
    assert send(ctl, P.set_flow_interrupt_time(100))  # 10 s
    assert send(ctl, P.interrupt_flow())
    clock.advance(5)
    pkt = status(ctl)
    assert pkt.gas_flow == 0 and pkt.temp > 150
    clock.advance(6)
    assert status(ctl).gas_flow == 5.0
    clock.advance(300)
    assert status(ctl).temp == pytest.approx(100.0, abs=0.1)


# ------------------------------------------------------------------ invalid commands

BAD_DATAGRAMS = {
    "bad checksum": P.hold().encode()[:6] + b"\x00",
    "too short": P.hold().encode()[:6],
    "too long": P.hold().encode() + b"\x00",
    "empty": b"",
    "unknown id 99": struct.pack(">HHH", 99, 0, 0) + bytes([99]),
    "firmware update 66": struct.pack(">HHH", 66, 8834, 1) + bytes([(66 + 0x22 + 0x82 + 1) & 0xFF]),
    "ramp rate 361": P.Command(P.CommandId.RAMP, 361, 10000).encode(),
    "ramp target below min": P.Command(P.CommandId.RAMP, 100, 7999).encode(),
    "ramp target above max": P.Command(P.CommandId.RAMP, 100, 40001).encode(),
    "cool target above max": P.Command(P.CommandId.COOL, 45000).encode(),
    "plat 0 min": P.Command(P.CommandId.PLAT, 0).encode(),
    "plat 1441 min": P.Command(P.CommandId.PLAT, 1441).encode(),
    "end rate 0": P.Command(P.CommandId.END, 0).encode(),
    "turbo 2": P.Command(P.CommandId.TURBO, 2).encode(),
    "resume when not paused": P.resume().encode(),
    "restart while running": P.restart().encode(),
    "autofill not fitted": P.set_autofill_mode(1).encode(),
    "regen not fitted": P.regen().encode(),
    "read-only parameter": P.set_parameter(1028, 5).encode(),
}


@pytest.mark.parametrize("name", list(BAD_DATAGRAMS))
def test_invalid_commands_are_ignored_and_counted(name):
    clock, ctl = cold_hold(150.0)
    before = status(ctl)
    received, missed = ctl.received, ctl.missed
    assert ctl.handle_command(BAD_DATAGRAMS[name]) is False
    assert ctl.last_rejection
    after = status(ctl)
    assert (ctl.received, ctl.missed) == (received, missed + 1)
    assert after.get_raw(1072) == received and after.get_raw(1073) == missed + 1
    for pid in (1050, 1053, 1054, 1055, 1056, 1068, 1071):
        assert after.get_raw(pid) == before.get_raw(pid), pid


def test_ramp_while_shut_down_is_ignored_and_bad_types_never_raise():
    clock, ctl = make()
    send(ctl, P.stop())
    assert not send(ctl, P.ramp(100, 200))
    assert ctl.handle_command("not bytes") is False  # type: ignore[arg-type]
    assert ctl.missed == 2 and ctl.received == 1


def test_valid_commands_count_in_received():
    clock, ctl = make()
    for cmd in (P.cool(200), P.turbo(True), P.pause(), P.resume(), P.set_parameter(1604, 12000)):
        assert send(ctl, cmd), ctl.last_rejection
    pkt = status(ctl)
    assert pkt.get_raw(1072) == 5 and pkt.get_raw(1073) == 0
    assert pkt.get_raw(1604) == 12000


def test_device_limits_follow_the_constructor():
    clock, ctl = make(max_temp_k=500.0)
    assert send(ctl, P.ramp(360, 450, max_temp=500))
    pkt = status(ctl)
    assert pkt.get_raw(1003) == 50000 and pkt.target_temp == 450.0


# ------------------------------------------------------------------ datagrams


def test_928_layout_has_exactly_the_230_ids_in_order():
    clock, ctl = cold_hold(100.0)
    data = ctl.status_datagram()
    assert len(data) == 928
    pkt = P.decode_status(data)
    assert tuple(pkt.raw) == P.STANDARD_IDS and len(pkt.raw) == 230
    assert pkt.trailing == b""
    assert list(ctl.raw_values()) == list(P.STANDARD_IDS)


def test_long_layout_decodes_with_trailer():
    clock, ctl = make(firmware=153, layout="long")
    data = ctl.status_datagram()
    assert len(data) == 1236 and data[2:4] == b"\x04\xcc"
    pkt = P.decode_status(data)
    assert tuple(pkt.raw) == P.LONG_IDS and len(pkt.trailing) == 196
    assert pkt.firmware == 153 and pkt.cid == 411
    ctl.layout = "928"
    assert len(ctl.status_datagram()) == 928
    with pytest.raises(ValueError, match="layout"):
        ctl.layout = "1236"


def test_every_datagram_decodes_through_a_whole_programme():
    clock, ctl = make(start_temp_k=300.0)
    cmds = {0: P.cool(120), 1500: P.turbo(True), 2200: P.plat(3), 2500: P.pause(),
            2600: P.resume(), 2900: P.end(360)}
    for t in range(0, 6000, 20):
        if t in cmds:
            assert send(ctl, cmds[t]), (t, ctl.last_rejection)
        ctl.layout = "long" if t % 40 else "928"
        pkt = P.decode_status(ctl.status_datagram())
        assert pkt.cid == 411
        clock.advance(20)
    assert ctl.run_mode is RunMode.SHUTDOWN_OK and ctl.alarm_code == 3


def test_housekeeping_looks_like_a_real_cold_800():
    clock, ctl = cold_hold(100.0)
    clock.advance(1800)
    pkt = status(ctl)
    expect = {1000: 1, 1001: 4, 1002: 8000, 1003: 40000, 1004: 115, 1028: 411,
              1060: NA, 1064: NA, 1203: NA, 2010: NA, 2030: NA, 1313: 411}
    for pid, raw in expect.items():
        assert pkt.get_raw(pid) == raw, pid
    assert 78.5 < pkt.value(1057) < 80.0  # evaporator
    assert 286 < pkt.value(1058) < 299  # suction
    assert 3 <= pkt.value(1061) <= 9  # gas heat %
    assert 50 <= pkt.value(1062) <= 60  # evap heat %
    assert 30 <= pkt.value(1101) <= 42  # back pressure mbar
    assert pkt.value(1066) == 40  # run time: 2403 s since Ready
    assert len(P.STANDARD_IDS) == 230


def test_same_seed_same_datagrams_and_long_steps_are_exact():
    runs = []
    for step in (1.0, 7.0, 3000.0):
        clock, ctl = make(start_temp_k=300.0, seed=3)
        send(ctl, P.ramp(360, 150))
        for _ in range(int(3000 / step)):
            clock.advance(step)
            ctl.advance()
        runs.append((ctl.setpoint_k, ctl.temp_k, ctl.phase))
    assert runs[0][2] is Phase.HOLD
    for other in runs[1:]:
        assert other[0] == runs[0][0] and other[2] == runs[0][2]
        assert other[1] == pytest.approx(runs[0][1], abs=1e-6)
    a = make(seed=11)
    b = make(seed=11)
    c = make(seed=12)
    for clock, _ctl in (a, b, c):
        clock.advance(30)
    assert a[1].status_datagram() == b[1].status_datagram() != c[1].status_datagram()


def test_bad_constructor_arguments_and_drop_fraction():
    clock = ManualClock()
    for kwargs, match in (({"cid": 0}, "controller number"), ({"cid": 70000}, "controller"),
                          ({"cid": 1, "layout": "x"}, "layout"),
                          ({"cid": 1, "min_temp_k": 400.0}, "min_temp_k"),
                          ({"cid": 1, "firmware": -1}, "firmware")):
        cid = kwargs.pop("cid")
        with pytest.raises(ValueError, match=match):
            SimulatedCS800(cid, clock, **kwargs)
    ctl = SimulatedCS800(5, clock, seed=1)
    with pytest.raises(ValueError, match="drop_fraction"):
        ctl.drop_fraction = 1.5
    assert not any(ctl.should_drop() for _ in range(100))
    ctl.drop_fraction = 0.3
    drops = sum(ctl.should_drop() for _ in range(2000))
    assert 450 < drops < 750


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=12))
def test_any_bytes_are_accepted_or_ignored_never_raise(data):
    clock, ctl = _FUZZ
    received, missed = ctl.received, ctl.missed
    accepted = ctl.handle_command(data)
    assert isinstance(accepted, bool)
    assert (ctl.received, ctl.missed) == (received + accepted, missed + (not accepted))
    if len(data) != 7:
        assert not accepted and "7 bytes" in ctl.last_rejection
    clock.advance(5)
    P.decode_status(ctl.status_datagram())  # still encodes a valid datagram


_FUZZ = make()
