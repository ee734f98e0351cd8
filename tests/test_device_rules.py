"""The shared rules behind the CS800 device, without an IOC (pure logic).

The heartbeat and learned status period (:mod:`ophyd_cs800.heartbeat`), the two ranges and
the "not available" readings (:mod:`ophyd_cs800.limits`), the alarm path
(:mod:`ophyd_cs800.alarms`), the log's command meanings (:mod:`ophyd_cs800.logs`), and the
staleness, confirmation-window and interruption rules of :mod:`ophyd_cs800.move_status`.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ophyd_cs800 import protocol as P
from ophyd_cs800.alarms import AlarmWatch
from ophyd_cs800.errors import CS800InterruptedError, CS800RangeError, CS800StaleError
from ophyd_cs800.heartbeat import Heartbeat, StatusClock, packet_controller
from ophyd_cs800.limits import Range, available, check_in_ranges, ioc_range
from ophyd_cs800.logs import command_meaning, device_logger
from ophyd_cs800.move_status import (
    AUTO,
    MoveJob,
    ResponseTimes,
    Snapshot,
    confirm_window,
    silence_error,
    stale_limit,
)
from ophyd_cs800.protocol import Phase, RunMode


def snap(**kw):
    values = dict(now=100.0, temp=150.0, temp_invalid=False, update_age=0.1, setpoint=150.0,
                  target=150.0, phase=Phase.RAMP, run_mode=RunMode.RUN, alarm="",
                  status_period=1.0, stale_limit=3.5)
    values.update(kw)
    return Snapshot(**values)


# -- heartbeat ------------------------------------------------------------------------------------
def test_learned_period_is_the_median_and_ignores_a_late_datagram():
    clock = StatusClock(0.0)
    assert clock.learned_period is None
    for t in (1.0, 2.0, 3.0, 4.0, 9.0, 10.0, 11.0):  # one 5 s gap among 1 s intervals
        clock.beat(t)
    assert clock.learned_period == pytest.approx(1.0)
    assert clock.age(12.5) == pytest.approx(1.5)
    assert clock.period(0.25) == pytest.approx(1.0)
    assert clock.period(2.0) == 2.0  # the device's status_period is a floor


def test_monitor_beats_of_one_datagram_count_once():
    clock = StatusClock(0.0)
    for base in (1.0, 1.2, 1.4, 1.6):
        for offset in (0.0, 0.002, 0.011):  # TEMP, SETPOINT, SUCTTEMP of one datagram
            clock.beat(base + offset)
    assert clock.learned_period == pytest.approx(0.2)


def test_heartbeat_prefers_the_packets_period_and_the_freshest_age():
    beat = Heartbeat(0.0)
    for t in (0.5, 0.6, 0.7, 0.8):
        beat.monitors.beat(t)
    assert beat.learned_period == pytest.approx(0.1)
    for t in (1.0, 1.5, 2.0, 2.5):
        beat.packets.beat(t)
    assert beat.learned_period == pytest.approx(0.5)
    beat.monitors.beat(2.9)
    assert beat.age(3.0) == pytest.approx(0.1)


def test_packet_controller_reads_the_controller_number_of_a_datagram():
    datagram = P.encode_status({1000: 1, 1028: 411, 1051: 15000})
    assert packet_controller(datagram) == 411
    padded = np.frombuffer(datagram + bytes(100), dtype=np.int8)  # a signed CA char waveform
    assert packet_controller(padded) == 411
    assert packet_controller(b"junk") is None
    assert packet_controller(np.zeros(928, dtype=np.uint8)) is None


# -- ranges and sentinels -------------------------------------------------------------------------
CONTROLLER = Range(80.0, 400.0, "the controller's limit")
SYNAPPS_RTEMP = Range(1.0, 360.0, "the IOC's RTEMP limit")


def test_the_ioc_limit_binds_and_both_are_named():
    with pytest.raises(CS800RangeError) as info:
        check_in_ranges("cs0", "target", 370.0, "K", CONTROLLER, SYNAPPS_RTEMP)
    assert str(info.value) == (
        "cs0: target 370.00 K is out of range: above the IOC's RTEMP limit 360.00 K (the "
        "controller's limit allows 80.00..400.00 K); allowed 80.00 K to 360.00 K; nothing was "
        "sent.")


def test_the_controller_limit_binds_below():
    with pytest.raises(CS800RangeError, match="below the controller's limit 80.00 K .the IOC's "
                       "RTEMP limit allows 1.00..360.00 K."):
        check_in_ranges("cs0", "target", 50.0, "K", CONTROLLER, SYNAPPS_RTEMP)


def test_the_tighter_limit_binds_when_both_are_exceeded():
    with pytest.raises(CS800RangeError, match="above the IOC's RTEMP limit 360.00 K"):
        check_in_ranges("cs0", "target", 450.0, "K", CONTROLLER, SYNAPPS_RTEMP)
    check_in_ranges("cs0", "target", 360.004, "K", CONTROLLER, SYNAPPS_RTEMP, resolution=0.01)


def test_rates_use_whole_numbers_in_the_sentence():
    with pytest.raises(CS800RangeError, match="ramp rate 0 K/h is out of range: below the "
                       "IOC's RRATE limit 1 K/h"):
        check_in_ranges("cs0", "ramp rate", 0, "K/h", Range(0, 360, "the controller's limit"),
                        Range(1, 360, "the IOC's RRATE limit"), decimals=0)


@pytest.mark.parametrize("low, high", [(0, 0), (None, 360.0), (float("nan"), 1.0),
                                       (1.0, 655.34), (5.0, 5.0)])
def test_no_usable_ioc_limits_mean_none(low, high):
    assert ioc_range(low, high, "RTEMP") is None


@pytest.mark.parametrize("reading", [655.34, 65534, 6553.4, float("nan"), float("inf"), None,
                                     "n/a"])
def test_not_available_readings_are_none(reading):
    assert available(reading) is None


@pytest.mark.parametrize("reading", [655.33, 65533, 0.0, 150.0, 6553.5])
def test_real_readings_stay(reading):
    assert available(reading) == pytest.approx(reading)


# -- alarms and log lines -------------------------------------------------------------------------
def test_alarm_changes_are_logged_by_level_and_passed_to_callbacks(caplog):
    watch = AlarmWatch("cs0", device_logger("cs0"))
    seen = []
    unsubscribe = watch.subscribe(seen.append)
    with caplog.at_level(logging.INFO, logger="ophyd_cs800.device.cs0"):
        assert watch.update(0) is not None  # first seen: quiet, but reported
        watch.update(0)  # no change: nothing
        watch.update(5)  # Oxford level 2: a warning
        watch.update(3)  # level 1: information (End complete)
        unsubscribe()
        watch.update(0)
    assert [c.new.code for c in seen] == [0, 5, 3]
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in records] == ["WARNING", "INFO", "INFO"]
    assert records[0][1].startswith("cs0: alarm 5 ") and "(level 2)" in records[0][1]
    assert seen[1].old.code == 0 and seen[1].level == 2


def test_a_broken_alarm_callback_does_not_stop_the_others(caplog):
    watch = AlarmWatch("cs0", device_logger("cs0"))
    seen = []
    watch.subscribe(lambda change: 1 / 0)
    watch.subscribe(seen.append)
    watch.update(5)
    assert len(seen) == 1 and "alarm callback" in caplog.text


@pytest.mark.parametrize("cmd, meaning", [
    (P.ramp(360, 150), "RAMP 150.00 K at 360 K/h"),
    (P.cool(100.5), "COOL 100.50 K (as fast as possible)"),
    (P.plat(5), "PLAT 5 min"),
    (P.end(120), "END at 120 K/h to 300 K, then shut down"),
    (P.turbo(True), "TURBO on"),
    (P.hold(), "HOLD"),
])
def test_command_meanings(cmd, meaning):
    assert command_meaning(cmd) == meaning


# -- staleness, confirmation window, interruption -------------------------------------------------
def test_stale_limit_is_three_periods_and_a_half_second_by_default():
    assert stale_limit(AUTO, 1.0) == pytest.approx(3.5)
    assert stale_limit(AUTO, 0.25) == pytest.approx(1.25)
    assert stale_limit(30, 1.0) == 30.0
    assert stale_limit(None, 1.0) is None


def test_a_silent_snapshot_describes_the_silence_not_the_frozen_phase():
    quiet = snap(update_age=4.2)
    assert quiet.silent
    assert quiet.describe() == "no status for 4.2 s (last TEMP 150.00 K)"
    err = silence_error(quiet, "cs0", "so the move was not sent")
    assert isinstance(err, CS800StaleError)
    assert str(err).startswith("cs0: no status update from the controller for 4.2 s")
    assert "so the move was not sent" in str(err)
    assert silence_error(snap(update_age=3.4), "cs0", "x") is None
    assert not snap(update_age=99.0, stale_limit=None).silent


def test_confirmation_window_grows_with_resends_and_with_a_lagging_ioc():
    job = MoveJob("cs0", "ramp", lambda: None, 60, target=150, tolerance=0.2, settle_time=0,
                  interrupt_after=1)
    responses = ResponseTimes()
    assert confirm_window(job, snap(status_period=1.0), 1, responses) == pytest.approx(3.0)
    assert confirm_window(job, snap(status_period=1.0), 2, responses) == pytest.approx(6.0)
    assert confirm_window(job, snap(status_period=2.0), 1, responses) == pytest.approx(6.0)
    responses.record(9.0)  # an IOC that delivers status 9 s late
    assert confirm_window(job, snap(status_period=1.0), 1, responses) == pytest.approx(18.0)


def test_another_command_replacing_the_move_is_named():
    job = MoveJob("cs0", "ramp to 150.00 K at 360 K/h", lambda: None, 60, target=150,
                  tolerance=0.2, settle_time=0, interrupt_after=0.5)
    other = dict(target=250.0, setpoint=200.0, temp=200.0)
    assert job.failure(snap(now=10.0, **other), paused=False) is None
    err = job.failure(snap(now=10.6, **other), paused=False)
    assert isinstance(err, CS800InterruptedError)
    assert "another command replaced this one" in str(err) and "250.00 K" in str(err)
    assert "HOLD" not in str(err)


def test_leaving_the_programme_names_the_phase_seen():
    job = MoveJob("cs0", "ramp to 150.00 K at 360 K/h", lambda: None, 60, target=150,
                  tolerance=0.2, settle_time=0, interrupt_after=0.5)
    held = dict(phase=Phase.PLAT, setpoint=200.0, temp=200.0)
    assert job.failure(snap(now=10.0, **held), paused=False) is None
    err = job.failure(snap(now=10.6, **held), paused=False)
    assert "left the programme for phase Plat at set point 200.00 K" in str(err)


def test_only_new_alarm_free_datagrams_of_this_controller_beat():
    beat = Heartbeat(0.0)
    mine = P.encode_status({1028: 411, 1051: 15000})
    assert beat.on_packet(mine, 0, 411, 1.0)
    assert not beat.on_packet(mine, 0, 411, 1.1)  # the same datagram posted again
    assert not beat.on_packet(P.encode_status({1028: 412, 1051: 1}), 0, 411, 1.2)
    assert not beat.on_packet(P.encode_status({1028: 411, 1051: 2}), 2, 411, 1.3)  # timeout
    assert not beat.on_packet(P.encode_status({1028: 411, 1051: 3}), 0, None, 1.4)
    assert beat.on_packet(P.encode_status({1028: 411, 1051: 4}), None, 411, 1.5)
    assert beat.packets.last == 1.5
    beat.on_monitor(3, 2.0)  # turned INVALID: no datagram
    beat.on_monitor(0, 1.8)
    assert beat.monitors.last == 1.8 and beat.age(2.0) == pytest.approx(0.2)
