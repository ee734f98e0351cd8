"""Closed-form thermal building blocks of the simulator: exact for any step length."""

import math
import random

import pytest

from sim_ioc.physics import Ar1Noise, lag_linear, relax, time_to_within


def test_relax_is_exact_and_composes():
    one = relax(300.0, 100.0, 20.0, 60.0)
    assert one == pytest.approx(100.0 + 200.0 * math.exp(-3.0))
    two = relax(relax(300.0, 100.0, 20.0, 25.0), 100.0, 20.0, 35.0)
    assert two == pytest.approx(one, abs=1e-9)


def test_lag_linear_matches_fine_euler_and_trails_by_slope_tau():
    x, s, v, tau = 300.0, 300.0, -0.1, 20.0
    fine = x
    dt = 0.001
    for i in range(60_000):  # 60 s of explicit Euler
        fine += dt * ((s + v * i * dt) - fine) / tau
    assert lag_linear(x, s, v, tau, 60.0) == pytest.approx(fine, abs=1e-3)
    steady = lag_linear(x, s, v, tau, 1000.0)
    assert steady - (s + v * 1000.0) == pytest.approx(-v * tau, abs=1e-9)  # 2 K behind


def test_time_to_within():
    t = time_to_within(110.0, 100.0, 20.0, 0.1)
    assert relax(110.0, 100.0, 20.0, t) == pytest.approx(100.1)
    assert time_to_within(100.05, 100.0, 20.0, 0.1) == 0.0


@pytest.mark.parametrize("call", [lambda: relax(1, 0, 0, 1), lambda: lag_linear(1, 0, 0, -1, 1),
                                  lambda: time_to_within(1, 0, 1, 0),
                                  lambda: Ar1Noise(random.Random(1), 1, 0, 1)])
def test_bad_parameters_raise(call):
    with pytest.raises(ValueError):
        call()


def test_ar1_noise_is_seeded_clipped_and_correlated():
    a, b = (Ar1Noise(random.Random(4), 0.02, 4.0, 0.05) for _ in range(2))
    va = [a.step(1.0) for _ in range(2000)]
    assert va == [b.step(1.0) for _ in range(2000)]
    assert max(abs(v) for v in va) <= 0.05
    assert 0.012 < (sum(v * v for v in va) / len(va)) ** 0.5 < 0.025
    lag1 = sum(x * y for x, y in zip(va[:-1], va[1:], strict=True)) / sum(v * v for v in va)
    assert lag1 == pytest.approx(math.exp(-1 / 4.0), abs=0.08)
    assert a.step(0.0) == a.value  # no time, no change
