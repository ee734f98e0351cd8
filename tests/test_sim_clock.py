"""The simulator's injected clocks: ScaledClock (speed factor) and ManualClock (tests)."""

import math

import pytest

from sim_ioc.clock import Clock, ManualClock, ScaledClock


class FakeWall:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_scaled_clock_runs_speed_times_faster():
    wall = FakeWall()
    clock = ScaledClock(1000.0, wall=wall)
    assert clock.now() == 0.0
    wall.t += 2.0
    assert clock.now() == pytest.approx(2000.0)
    assert clock.wall_seconds_until(3000.0) == pytest.approx(1.0)
    assert clock.wall_seconds_until(10.0) == 0.0


def test_scaled_clock_speed_change_keeps_time_continuous():
    wall = FakeWall()
    clock = ScaledClock(10.0, start=5.0, wall=wall)
    wall.t += 1.0
    assert clock.now() == pytest.approx(15.0)
    clock.speed = 1000.0
    assert clock.now() == pytest.approx(15.0)
    wall.t += 0.5
    assert clock.now() == pytest.approx(515.0)
    assert clock.speed == 1000.0


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, 1e9, "fast"])
def test_scaled_clock_rejects_bad_speed(bad):
    with pytest.raises(ValueError, match="clock speed"):
        ScaledClock(bad)
    clock = ScaledClock(2.0)
    with pytest.raises(ValueError, match="clock speed"):
        clock.speed = bad
    assert clock.speed == 2.0


def test_scaled_clock_real_wall_is_monotonic():
    clock = ScaledClock(1000.0)
    readings = [clock.now() for _ in range(100)]
    assert readings == sorted(readings)


def test_manual_clock_moves_only_when_told():
    clock = ManualClock(start=10.0)
    assert isinstance(clock, Clock) and isinstance(ScaledClock(), Clock)
    assert clock.now() == 10.0
    assert clock.advance(2.5) == 12.5
    assert clock.now() == 12.5
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite step"):
            clock.advance(bad)
    assert clock.now() == 12.5
