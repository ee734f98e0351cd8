"""CS800 device without an IOC: ophyd fake signals plus a tiny controller model.

:class:`FakeController` plays the controller behind the fake PVs: it reacts to the ``.PROC``
writes (RAMP, COOL, PLAT, HOLD, END, PURGE, RESTART, PAUSE, RESUME) by updating TARGETTEMP,
PHASE, RUNMODE, SETPOINT and TEMP with ``sim_put``. Moves finish at once (``instant=True``) or
wait for the test to call :meth:`FakeController.arrive`. It records every command sent.
"""

from __future__ import annotations

import functools
import math
import threading
import time

import polling
import pytest
from ophyd.sim import make_fake_device

from ophyd_cs800.device import CS800, error_message
from ophyd_cs800.errors import (
    CS800CommsDisabledError,
    CS800Error,
    CS800InterruptedError,
    CS800NotAcceptedError,
    CS800RangeError,
    CS800ShutDownError,
    CS800StaleError,
    CS800TimeoutError,
)
from ophyd_cs800.move_status import MoveJob, Snapshot
from ophyd_cs800.protocol import Phase, RunMode

FakeCS800 = make_fake_device(CS800)
WAIT = 10.0  # generous bound for any status in these tests (they finish in well under 1 s)

COMMANDS = ("RAMP", "COOL", "PLAT", "HOLD", "END", "PURGE", "PAUSE", "RESUME", "RESTART")


class FakeController:
    """The controller behind a fake CS800 (see the module docstring)."""

    def __init__(self, dev, *, temp=300.0, run_mode=RunMode.RUN, instant=True):
        self.dev = dev
        self.instant = instant
        self.sent: list[tuple[str, dict]] = []
        self.drop = 0  # ignore this many commands (the controller never replies)
        self.lock = threading.Lock()
        for sig, value in ((dev.disable, 0), (dev.min_temp, 80.0), (dev.max_temp, 400.0),
                           (dev.controller_number, 411), (dev.firmware, 115),
                           (dev.alarm, "No errors or warnings")):
            sig.sim_put(value)
        self.set_state(temp=temp, setpoint=temp, target=temp, phase=Phase.HOLD,
                       run_mode=run_mode)
        for name in COMMANDS:
            sig = getattr(dev, f"cmd_{name.lower()}")
            sig.sim_set_putter(lambda value, _name=name: self._command(_name))

    def set_state(self, **values):
        names = {"temp": "temperature", "setpoint": "setpoint", "target": "target",
                 "phase": "phase", "run_mode": "run_mode", "alarm": "alarm"}
        for key, value in values.items():
            getattr(self.dev, names[key]).sim_put(int(value) if key in ("phase", "run_mode")
                                                  else value)

    def params(self):
        return {name: getattr(self.dev, name).get()
                for name in ("rrate", "rtemp", "ctemp", "ptime", "erate")}

    def names(self):
        return [name for name, _ in self.sent]

    def _command(self, name):
        with self.lock:
            self.sent.append((name, self.params()))
            if self.drop > 0:
                self.drop -= 1
                return
        getattr(self, f"_on_{name.lower()}")()

    def _start(self, target, phase):
        if self.dev.run_mode.get() not in (RunMode.STARTUP_OK, RunMode.RUN):
            return
        self.set_state(run_mode=RunMode.RUN, target=target, phase=phase)
        if self.instant:
            self.arrive()

    def arrive(self, temp=None):
        target = self.dev.target.get()
        self.set_state(setpoint=target, phase=Phase.HOLD, temp=target if temp is None else temp)

    def _on_ramp(self):
        self._start(self.dev.rtemp.get(), Phase.RAMP)

    def _on_cool(self):
        self._start(self.dev.ctemp.get(), Phase.COOL)

    def _on_plat(self):
        self.set_state(run_mode=RunMode.RUN, phase=Phase.PLAT)

    def _on_hold(self):
        self.set_state(run_mode=RunMode.RUN, phase=Phase.HOLD)

    def _on_end(self):
        self.set_state(phase=Phase.END)
        if self.instant:
            self.set_state(temp=300.0, run_mode=RunMode.SHUTDOWN_OK, alarm="End complete")

    def _on_purge(self):
        self.set_state(phase=Phase.PURGE)
        if self.instant:
            self.set_state(temp=300.0, run_mode=RunMode.SHUTDOWN_OK, alarm="Purge complete")

    def _on_restart(self):
        self.set_state(run_mode=RunMode.STARTUP)
        if self.instant:
            self.set_state(run_mode=RunMode.STARTUP_OK)

    def _on_pause(self):
        self.set_state(phase=Phase.HOLD)

    def _on_resume(self):
        self.set_state(phase=Phase.RAMP)


def make_device(*, settle_time=0.0, name="cs0", **kwargs):
    kwargs.setdefault("stale_after", None)  # driven by hand: staleness has its own tests
    dev = FakeCS800("X:CS0:", name=name, settle_time=settle_time, status_period=0.05, **kwargs)
    return dev


@pytest.fixture()
def dev():
    return make_device()


@pytest.fixture()
def ctl(dev):
    return FakeController(dev)


wait_until = functools.partial(polling.poll, timeout=WAIT)


def failure(status):
    """Wait for ``status`` to finish and return its exception (fails if it succeeded)."""
    with pytest.raises(Exception) as info:
        status.wait(WAIT)
    return info.value


# -- readings and configuration ---------------------------------------------------------------
def test_read_reports_temperature_under_device_name(dev, ctl):
    reading = dev.read()
    assert list(reading) == ["cs0", "cs0_setpoint", "cs0_target", "cs0_phase", "cs0_run_mode",
                             "cs0_phase_name", "cs0_run_mode_name", "cs0_alarm"]
    assert reading["cs0"]["value"] == 300.0
    assert dev.hints == {"fields": ["cs0"]}
    config = dev.read_configuration()
    assert set(config) == {"cs0_ramp_rate", "cs0_tolerance", "cs0_settle_time",
                           "cs0_controller_number", "cs0_firmware"}
    assert config["cs0_ramp_rate"]["value"] == 360
    assert config["cs0_controller_number"]["value"] == 411
    assert dev.egu == "K" and dev.position == 300.0


def test_housekeeping_is_omitted_and_no_stop_pv_exists(dev):
    assert dev.back_pressure.kind.name == "omitted"
    assert "back_pressure" not in dev.read_attrs
    pvs = [getattr(getattr(dev, attr), "pvname", "") for attr in dev.component_names]
    assert all(not pv.endswith(("STOP", "STOP.PROC")) for pv in pvs)
    assert not hasattr(dev, "cmd_stop")


def test_tunables_from_constructor():
    dev = make_device(tolerance=0.3, settle_time=2.0, ramp_rate=120, max_resends=4)
    assert (dev.tolerance.get(), dev.settle_time.get(), dev.ramp_rate.get()) == (0.3, 2.0, 120)
    assert dev.max_resends == 4 and dev.status_period == 0.05


# -- set: the happy paths --------------------------------------------------------------------
def test_set_writes_rate_target_then_ramp_and_finishes(dev, ctl):
    status = dev.set(150)
    status.wait(WAIT)
    assert status.success
    assert ctl.names() == ["RAMP"]
    assert ctl.sent[0][1]["rrate"] == 360 and ctl.sent[0][1]["rtemp"] == 150.0
    assert dev.position == 150.0 and not dev.moving


def test_set_with_rate_and_rounding_to_centikelvin(dev, ctl):
    dev.set(150.004, rate=120).wait(WAIT)
    assert ctl.sent[0][1]["rrate"] == 120 and ctl.sent[0][1]["rtemp"] == 150.0


def test_not_done_while_ramping_nor_before_phase_leaves_ramp():
    dev = make_device()
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    assert dev.moving
    ctl.set_state(temp=150.0)  # readback at target but the phase still says Ramp
    assert not status.done
    time.sleep(0.2)  # several poll intervals: must still not be done
    assert not status.done
    ctl.arrive()
    status.wait(WAIT)
    assert status.success


def test_settle_time_restarts_when_temperature_leaves_the_band():
    """Pure logic on synthetic snapshots (no wall clock): the settle clock restarts."""
    job = MoveJob("cs0", "ramp to 150.00 K", lambda: None, 100.0, target=150.0,
                  tolerance=0.2, settle_time=0.6, interrupt_after=1.0)

    def snap(now, temp, phase=Phase.HOLD):
        return Snapshot(now=now, temp=temp, temp_invalid=False, update_age=0.0,
                        setpoint=150.0, target=150.0, phase=int(phase),
                        run_mode=int(RunMode.RUN))

    assert not job.done(snap(0.0, 150.0, Phase.RAMP))  # in band, still ramping
    assert not job.done(snap(0.1, 150.1))  # in band since 0.1
    assert not job.done(snap(0.5, 150.2))  # at the band edge: inside
    assert not job.done(snap(0.6, 150.21))  # a noisy reading outside: restart
    assert not job.done(snap(0.7, 149.95))  # back inside since 0.7
    assert not job.done(snap(1.29, 150.0))
    assert job.done(snap(1.3, 150.05))  # 0.6 s after re-entering


def test_settle_time_is_honoured_by_the_device():
    dev = make_device(settle_time=0.4)
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    ctl.arrive(temp=150.1)
    arrived = time.monotonic()
    status.wait(WAIT)
    assert status.success and time.monotonic() - arrived >= 0.4 - 0.05  # lower bound only


def test_move_to_current_temperature_finishes_without_new_monitors():
    dev = make_device()
    ctl = FakeController(dev, temp=150.0)
    ctl.instant = False
    for name in COMMANDS:  # a real IOC posts nothing when nothing changes
        getattr(dev, f"cmd_{name.lower()}").sim_set_putter(lambda value: None)
    status = dev.set(150.0)
    status.wait(WAIT)
    assert status.success


def test_start_from_ready_mode(dev):
    ctl = FakeController(dev, run_mode=RunMode.STARTUP_OK)
    dev.set(200).wait(WAIT)
    assert dev.run_mode.get() == RunMode.RUN
    assert ctl.names() == ["RAMP"]


def test_cool_writes_ctemp_and_cool(dev, ctl):
    dev.cool(100).wait(WAIT)
    assert ctl.names() == ["COOL"] and ctl.sent[0][1]["ctemp"] == 100.0
    with pytest.raises(CS800RangeError, match="as fast as possible"):
        dev.set(120, cool=True, rate=100)


def test_move_and_moved_cb(dev, ctl):
    called = []
    status = dev.move(250, moved_cb=lambda obj: called.append(obj))
    assert status.done and status.success
    assert wait_until(lambda: called == [dev])


def test_progress_is_reported_to_watchers():
    dev = make_device()
    ctl = FakeController(dev, instant=False)
    updates = []
    status = dev.set(200)
    status.watch(lambda **kw: updates.append(kw))
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    for temp in (280.0, 250.0, 220.0):
        ctl.set_state(temp=temp)
    ctl.arrive()
    status.wait(WAIT)
    assert [u["current"] for u in updates[:3]] == [280.0, 250.0, 220.0]
    first = updates[0]
    assert first["initial"] == 300.0 and first["target"] == 200.0 and first["unit"] == "K"
    assert first["fraction"] == pytest.approx(0.8)
    assert first["time_elapsed"] >= 0


# -- set: refused before anything is sent ---------------------------------------------------------
@pytest.mark.parametrize("target", [79.99, 400.01, 500, -5, math.nan, "hot"])
def test_out_of_range_target_raises_before_sending(dev, ctl, target):
    with pytest.raises(CS800RangeError) as info:
        dev.set(target)
    assert "nothing was sent" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert ctl.sent == []
    if target == 500:
        assert "80.00 K to 400.00 K" in str(info.value)


def test_range_follows_device_limits_and_falls_back_when_invalid(dev, ctl):
    dev.max_temp.sim_put(500.0)  # a "Plus" unit
    assert dev.limits == (80.0, 500.0)
    dev.set(450).wait(WAIT)
    dev.max_temp.sim_put(math.nan)
    assert dev.limits == (80.0, 400.0)
    dev.max_temp.sim_put(500.0, metadata={"severity": 3})
    assert dev.limits == (80.0, 400.0)


@pytest.mark.parametrize("rate", [0, 361, 12.5, "fast"])
def test_bad_rate_raises_before_sending(dev, ctl, rate):
    with pytest.raises(CS800RangeError, match="ramp rate"):
        dev.set(150, rate=rate)
    assert ctl.sent == []


def test_comms_disabled_raises(dev, ctl):
    dev.disable.sim_put(1)
    with pytest.raises(CS800CommsDisabledError, match="disabled") as info:
        dev.set(150)
    assert "disable.put(0)" in str(info.value)
    assert ctl.sent == []


@pytest.mark.parametrize("mode", [RunMode.SHUTDOWN_OK, RunMode.SHUTDOWN_FAIL,
                                  RunMode.STARTUP_FAIL])
def test_shut_down_controller_raises_restart_first(dev, ctl, mode):
    ctl.set_state(run_mode=mode)
    with pytest.raises(CS800ShutDownError, match="controller is shut down") as info:
        dev.set(150)
    assert "restart it first" in str(info.value)
    assert ctl.sent == []


@pytest.mark.parametrize("mode", [RunMode.STARTUP, RunMode.SETUP])
def test_starting_or_setup_controller_raises(dev, ctl, mode):
    ctl.set_state(run_mode=mode)
    with pytest.raises(CS800ShutDownError, match="needs Ready or Run"):
        dev.set(150)
    assert ctl.sent == []


def test_stale_controller_raises_before_sending(dev, ctl):
    dev.temperature.sim_put(300.0, metadata={"severity": 3})
    with pytest.raises(CS800StaleError, match="not reporting"):
        dev.set(150)
    assert ctl.sent == []


def test_disconnected_pv_raises_clear_error(dev, ctl, monkeypatch):
    def never(timeout=None):
        raise TimeoutError("not connected")

    dev.command_connection_timeout = 0.1
    dev.run_mode._metadata["connected"] = False
    monkeypatch.setattr(dev.run_mode, "wait_for_connection", never)
    with pytest.raises(CS800StaleError, match="cannot reach X:CS0:RUNMODE"):
        dev.set(150)
    assert ctl.sent == []


# -- set: failures found while following the move ------------------------------------------------
def test_resends_when_the_command_is_ignored(dev, ctl):
    ctl.drop = 1
    status = dev.set(150)
    status.wait(WAIT)
    assert status.success and ctl.names() == ["RAMP", "RAMP"]


def test_not_accepted_after_bounded_resends(dev, ctl):
    ctl.drop = 100
    exc = failure(dev.set(150))
    assert isinstance(exc, CS800NotAcceptedError)
    assert "did not accept the ramp to 150.00 K at 360 K/h after 3 attempts" in str(exc)
    assert ctl.names() == ["RAMP"] * 3


def test_timeout_sends_hold_and_names_the_state():
    dev = make_device()
    ctl = FakeController(dev, instant=False)
    exc = failure(dev.set(150, timeout=0.3))
    assert isinstance(exc, CS800TimeoutError) and isinstance(exc, TimeoutError)
    assert "did not finish within 0 s" in str(exc) and "HOLD was sent" in str(exc)
    assert ctl.names() == ["RAMP", "HOLD"]


def test_default_timeout_from_distance_and_rate(dev, ctl):
    dev.timeout_margin = 60
    dev.settle_time.put(5.0)
    ctl.instant = False
    dev.set(120, rate=360)  # 180 K at 360 K/h: 1800 s * 1.1 + 60 + 5
    assert dev._runner.job.timeout == pytest.approx(1980 + 65)
    dev.timeout = 42.0
    dev.set(130)
    assert dev._runner.job.timeout == 42.0
    dev.stop()


def test_stale_during_move_fails_clearly():
    dev = make_device()
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    dev.temperature.sim_put(250.0, metadata={"severity": 3})
    exc = failure(status)
    assert isinstance(exc, CS800StaleError)
    assert "stopped reporting" in str(exc) and "250.00 K" in str(exc)
    assert "HOLD" not in ctl.names()


def test_no_updates_for_too_long_fails_as_stale():
    dev = make_device(stale_after=0.3)
    FakeController(dev, instant=False)
    exc = failure(dev.set(150))
    assert isinstance(exc, CS800StaleError) and "no status update" in str(exc)


def test_shutdown_during_move_fails(dev):
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    ctl.set_state(run_mode=RunMode.SHUTDOWN_FAIL, alarm="Low flow rate")
    exc = failure(status)
    assert isinstance(exc, CS800ShutDownError) and "Low flow rate" in str(exc)


def test_hold_from_elsewhere_interrupts_the_move(dev):
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    ctl.set_state(phase=Phase.HOLD, setpoint=240.0, temp=240.0)
    exc = failure(status)
    assert isinstance(exc, CS800InterruptedError) and "240.00 K" in str(exc)


def test_write_failure_is_reported(dev, ctl):
    def broken(value):
        raise ConnectionError("virtual circuit disconnected")

    dev.cmd_ramp.sim_set_putter(broken)
    exc = failure(dev.set(150))
    assert isinstance(exc, CS800Error)
    assert "could not send the ramp" in str(exc) and "virtual circuit" in str(exc)


def test_ioc_clamping_rtemp_is_reported(dev, ctl):
    dev.rtemp.sim_set_putter(lambda value: dev.rtemp.sim_put(min(value, 360.0)))
    exc = failure(dev.set(380))
    assert isinstance(exc, CS800RangeError) and "limited X:CS0:RTEMP to 360.00 K" in str(exc)
    assert ctl.sent == []


def test_new_move_supersedes_the_running_one(dev):
    ctl = FakeController(dev, instant=False)
    first = dev.set(150)
    first_runner = dev._runner
    second = dev.set(200)
    first.wait(WAIT)  # replaced by a newer command: over, not failed (like an ophyd motor)
    assert first.success and not second.done
    first_runner.thread.join(WAIT)
    assert not first_runner.thread.is_alive()  # one poll thread per device, not per move
    ctl.arrive()
    second.wait(WAIT)
    assert second.success
    # the two commands' parameter writes never interleave: each RAMP carries its own target
    assert [params["rtemp"] for name, params in ctl.sent if name == "RAMP"][-1] == 200.0
    assert dev.target.get() == 200.0


def test_plan_may_start_commands_without_waiting_then_send_others(dev):
    """plateau (wait=False by default), ramp(wait=False), hold in ONE plan: no FailedStatus."""
    from bluesky import RunEngine

    from ophyd_cs800 import plans

    ctl = FakeController(dev, instant=False)
    engine = RunEngine({}, context_managers=[])

    def plan():
        yield from plans.plateau(dev, 5)
        yield from plans.ramp(dev, 150, wait=False, record=False)
        yield from plans.hold(dev)

    engine(plan())
    assert ctl.names() == ["PLAT", "RAMP", "HOLD"]
    assert dev.active_job is None and not dev.moving


def test_same_command_again_takes_over_and_both_finish(dev):
    ctl = FakeController(dev, instant=False)
    first = dev.set(150)
    second = dev.set(150)  # e.g. the RunEngine replaying the set after a pause
    ctl.arrive()
    second.wait(WAIT)
    first.wait(WAIT)
    assert first.success and second.success


def test_same_command_again_shares_a_failure(dev):
    ctl = FakeController(dev, instant=False)
    first = dev.set(150)
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    second = dev.set(150)
    assert ctl.names() == ["RAMP"]  # already acting on it: followed, not sent again
    dev.stop()
    assert isinstance(failure(second), CS800InterruptedError)
    assert isinstance(failure(first), CS800InterruptedError)


# -- stop -----------------------------------------------------------------------------------------
def test_stop_success_true_does_nothing(dev):
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])
    dev.stop(success=True)
    assert ctl.names() == ["RAMP"] and not status.done
    ctl.arrive()
    status.wait(WAIT)
    assert status.success


def test_stop_during_move_sends_hold_and_fails_the_move(dev):
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])
    dev.stop()
    exc = failure(status)
    assert isinstance(exc, CS800InterruptedError) and "HOLD was sent" in str(exc)
    assert ctl.names() == ["RAMP", "HOLD"]
    assert not dev.moving


def test_stop_when_idle_sends_nothing_but_stops_a_foreign_ramp(dev, ctl):
    dev.stop()
    assert ctl.sent == []
    ctl.set_state(phase=Phase.RAMP, target=100.0)  # ramp started from a screen
    dev.stop()
    assert ctl.names() == ["HOLD"]


# -- other commands ------------------------------------------------------------------------------
def test_plateau_waits_for_the_plat_phase_to_end(dev, ctl):
    status = dev.plateau(5)
    assert wait_until(lambda: ctl.names() == ["PLAT"])
    assert ctl.sent[0][1]["ptime"] == 5
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    assert not status.done
    ctl.set_state(phase=Phase.HOLD)
    status.wait(WAIT)
    assert status.success


@pytest.mark.parametrize("minutes", [0, 1441, 2.5])
def test_plateau_range(dev, ctl, minutes):
    with pytest.raises(CS800RangeError, match="plateau duration"):
        dev.plateau(minutes)
    assert ctl.sent == []


def test_hold_ends_a_move(dev):
    ctl = FakeController(dev, instant=False)
    move = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])
    dev.hold().wait(WAIT)
    move.wait(WAIT)
    assert move.done and ctl.names() == ["RAMP", "HOLD"]
    assert dev.phase.get() == Phase.HOLD and not dev.moving


def test_end_then_ramp_raises_shut_down_then_restart(dev, ctl):
    dev.end(rate=200).wait(WAIT)
    assert ctl.sent[-1] == ("END", ctl.sent[-1][1]) and ctl.sent[-1][1]["erate"] == 200
    assert dev.run_mode.get() == RunMode.SHUTDOWN_OK
    with pytest.raises(CS800ShutDownError, match="controller is shut down"):
        dev.set(150)
    assert dev.end().done  # already shut down: nothing sent
    assert ctl.names() == ["END"]
    dev.restart().wait(WAIT)
    assert dev.run_mode.get() == RunMode.STARTUP_OK
    assert dev.restart().done and ctl.names() == ["END", "RESTART"]
    dev.set(150).wait(WAIT)


@pytest.mark.parametrize("rate", [0, 361, 1.5])
def test_end_rate_range(dev, ctl, rate):
    with pytest.raises(CS800RangeError, match="end rate"):
        dev.end(rate)


def test_purge_and_shutdown_fail(dev, ctl):
    dev.purge().wait(WAIT)
    assert ctl.names() == ["PURGE"] and dev.run_mode.get() == RunMode.SHUTDOWN_OK
    ctl.set_state(run_mode=RunMode.RUN, phase=Phase.HOLD)
    ctl.instant = False
    status = dev.purge()
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    ctl.set_state(run_mode=RunMode.SHUTDOWN_FAIL)
    assert "shut down with an error" in str(failure(status))


def test_restart_startup_fail_and_setup(dev, ctl):
    ctl.set_state(run_mode=RunMode.SHUTDOWN_FAIL)
    ctl.instant = False
    status = dev.restart()
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    ctl.set_state(run_mode=RunMode.STARTUP_FAIL)
    assert "failed its start-up checks" in str(failure(status))
    ctl.set_state(run_mode=RunMode.SETUP)
    with pytest.raises(CS800ShutDownError, match="Setup mode"):
        dev.restart()


class PausedMove:
    """A move to 150 K under way (controller at 250 K), its runner on a clock the test skews,
    then paused; ``slow_resume()`` makes the RESUME put wait for ``release``."""

    def __init__(self, timeout=5.0):
        self.dev = dev = make_device()
        self.ctl = FakeController(dev, instant=False)
        self.status = dev.set(150, timeout=timeout)
        assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
        self.skew, self.calls = 0.0, 0
        dev._runner._clock = self.clock
        self.ctl.set_state(setpoint=250.0, temp=250.0)
        dev.pause_program().wait(WAIT)
        self.release = threading.Event()

    def clock(self):  # the runner's clock; the test makes paused time pass instantly
        self.calls += 1
        return time.monotonic() + self.skew

    def runner_looks(self, times):
        """Wait until the runner has checked ``times`` more times (or the move ended)."""
        seen = self.calls
        return wait_until(lambda: self.calls > seen + times or self.status.done)

    def slow_resume(self):
        def put(value):  # a CA put that takes its time
            assert self.release.wait(WAIT)
            self.ctl._command("RESUME")

        self.dev.cmd_resume.sim_set_putter(put)

    def finish(self, names):
        self.dev.cmd_resume.sim_set_putter(lambda value: self.ctl._command("RESUME"))
        if self.dev.paused:
            self.dev.resume_program().wait(WAIT)
        assert not self.dev.paused
        self.ctl.arrive()
        self.status.wait(WAIT)
        assert self.status.success and self.ctl.names() == names


def test_pause_keeps_the_move_alive_and_resume_continues():
    move = PausedMove()
    assert move.dev.paused and move.dev.phase.get() == Phase.HOLD
    assert move.runner_looks(2)  # the runner saw "paused" ...
    move.skew = 60.0  # ... then a minute passes: longer than the timeout and interrupt grace
    assert move.runner_looks(3) and not move.status.done
    move.finish(["RAMP", "PAUSE", "RESUME"])


def test_a_slow_resume_write_is_no_interruption():
    """Until the RESUME put completes the controller still holds away from the target: the
    move stays paused then, instead of failing as interrupted."""
    move = PausedMove()
    move.slow_resume()
    resumed = move.dev.resume_program()
    move.skew = 60.0  # far longer than the interrupt grace, while the put hangs
    assert move.runner_looks(3)  # (or the move was given up: the bug)
    assert not move.status.done, move.status.exception()
    assert move.dev.paused and not resumed.done
    move.release.set()
    resumed.wait(WAIT)
    move.finish(["RAMP", "PAUSE", "RESUME"])


def test_a_pause_requested_while_resume_is_written_stays_in_force():
    move = PausedMove(timeout=30.0)
    move.slow_resume()
    resumed = move.dev.resume_program()
    paused_again = move.dev.pause_program()  # its PAUSE waits for the RESUME write (send lock)
    move.release.set()
    resumed.wait(WAIT)
    paused_again.wait(WAIT)
    assert move.ctl.names() == ["RAMP", "PAUSE", "RESUME", "PAUSE"]
    assert move.dev.paused and not move.status.done  # the controller is paused: so is the move
    move.finish(["RAMP", "PAUSE", "RESUME", "PAUSE", "RESUME"])


def test_turbo_writes_turbo_pv(dev, ctl):
    dev.set_turbo(True).wait(WAIT)
    assert dev.turbo.get() == 1
    dev.set_turbo("Off").wait(WAIT)
    assert dev.turbo.get() == 0


def test_actions_call_device_methods(dev, ctl):
    dev.actions.plateau.set(3)
    assert wait_until(lambda: ctl.names() == ["PLAT"])
    dev.actions.hold.set(1).wait(WAIT)
    assert ctl.names() == ["PLAT", "HOLD"]


def test_error_message_unwraps_causes():
    inner = CS800StaleError("cs0: the controller stopped reporting")
    try:
        try:
            raise inner
        except CS800StaleError as exc:
            raise RuntimeError("FailedStatus(...)") from exc
    except RuntimeError as outer:
        assert error_message(outer) == "cs0: the controller stopped reporting"
    assert error_message(ValueError("plain")) == "plain"


def test_describe_state(dev, ctl):
    text = dev.describe_state()
    assert text == "cs0: TEMP 300.00 K, phase Hold, run mode Run, target 300.00 K"


def test_destroy_ends_a_running_move():
    dev = make_device()
    FakeController(dev, instant=False)
    status = dev.set(150)
    dev.destroy()
    assert "destroyed" in str(failure(status))


def test_stop_still_ends_the_move_when_hold_cannot_be_sent(dev):
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])

    def broken(value):
        raise ConnectionError("no circuit")

    dev.cmd_hold.sim_set_putter(broken)
    dev.stop()
    assert "sending HOLD failed: no circuit" in str(failure(status))


def test_repr_and_summary_show_the_state_at_a_glance(dev, ctl, capsys):
    text = repr(dev)
    assert text.startswith("<CS800 cs0: TEMP 300.00 K, phase Hold, run mode Run, "
                           "target 300.00 K, last status "), text
    assert text.endswith(" s ago [X:CS0:]>") and "settle_time=0.0" not in text
    dev.summary()
    assert capsys.readouterr().out.strip() == dev.summary_text()
    assert dev._ophyd_labels_ == {"cryostreams"}


def test_purge_when_already_shut_down_sends_nothing(dev, ctl):
    ctl.set_state(run_mode=RunMode.SHUTDOWN_OK)
    assert dev.purge().done and ctl.sent == []


def test_explicit_timeouts_for_plateau_and_end(dev):
    ctl = FakeController(dev, instant=False)
    exc = failure(dev.plateau(1, timeout=0.2))  # accepted, but never leaves Plat
    assert isinstance(exc, CS800TimeoutError) and "plateau of 1 min" in str(exc)
    exc = failure(dev.end(timeout=0.2))
    assert isinstance(exc, CS800TimeoutError) and "end at 360 K/h" in str(exc)
    assert "HOLD" not in ctl.names()  # only a move holds on timeout


def test_pause_write_failure_is_a_sentence(dev, ctl):
    def broken(value):
        raise ConnectionError("put timed out")

    dev.cmd_pause.sim_set_putter(broken)
    exc = failure(dev.pause_program())
    assert str(exc) == "cs0: could not send pause: put timed out"
    assert not dev.paused  # the controller never paused: moves keep their timeout


def test_action_put_starts_the_command_without_waiting(dev, ctl):
    dev.actions.hold.put(1)
    assert wait_until(lambda: ctl.names() == ["HOLD"])


def test_unreadable_disable_counts_as_disabled(dev, ctl):
    dev.disable.sim_put(None)
    with pytest.raises(CS800CommsDisabledError):
        dev.set(150)


def test_stop_while_the_command_is_being_written_holds_after_it_not_before(dev):
    """A slow RTEMP write in flight: stop() waits for it, so HOLD is the last command."""
    ctl = FakeController(dev, instant=False)
    entered, gate = threading.Event(), threading.Event()

    def slow_rtemp(value):
        entered.set()
        gate.wait(WAIT)
        dev.rtemp.sim_put(value)

    dev.rtemp.sim_set_putter(slow_rtemp)
    status = dev.set(150)
    assert entered.wait(WAIT)
    stopper = threading.Thread(target=dev.stop)
    stopper.start()
    assert not wait_until(lambda: "HOLD" in ctl.names(), timeout=0.3)  # waits for the write
    gate.set()
    stopper.join(WAIT)
    assert isinstance(failure(status), CS800InterruptedError)
    assert ctl.names() == ["RAMP", "HOLD"]
    assert dev._runner is None or dev._runner.closed


def test_a_stopped_runner_never_resends():
    """The controller ignores RAMP; stop() lands between re-sends: no RAMP after the HOLD."""
    dev = make_device()
    ctl = FakeController(dev, instant=False)
    ctl.drop = 100
    status = dev.set(150)
    assert wait_until(lambda: ctl.names().count("RAMP") >= 2)
    runner = dev._runner
    dev.stop()
    assert isinstance(failure(status), CS800InterruptedError)
    runner.thread.join(WAIT)
    assert not runner.thread.is_alive()  # the poll thread ends with the job
    assert ctl.names()[-1] == "HOLD"


def test_two_devices_move_independently():
    dev_a, dev_b = make_device(name="cs0"), make_device(name="cs1")
    ctl_a = FakeController(dev_a, instant=False)
    ctl_b = FakeController(dev_b, instant=False)
    move_a, move_b = dev_a.set(150), dev_b.set(250)
    assert wait_until(lambda: ctl_a.names() == ["RAMP"] and ctl_b.names() == ["RAMP"])
    ctl_b.arrive()
    move_b.wait(WAIT)
    assert move_b.success and not move_a.done and dev_a.moving and not dev_b.moving
    dev_b.stop()  # idle device: sends nothing, leaves the other alone
    assert ctl_b.names() == ["RAMP"] and not move_a.done
    ctl_a.arrive()
    move_a.wait(WAIT)
    assert (dev_a.position, dev_b.position) == (150.0, 250.0)
    assert dev_a._runner is None and dev_b._runner is None
    assert wait_until(lambda: not [t for t in threading.enumerate()
                                   if t.name.startswith("cs800-cs1-")])  # no thread left


def test_target_equal_to_the_device_maximum_is_allowed(dev, ctl):
    dev.set(400.0000001).wait(WAIT)  # DEVICEMAXTEMP up to float noise
    assert ctl.sent[-1][1]["rtemp"] == 400.0
    with pytest.raises(CS800RangeError, match="target 400.01 K is out of range"):
        dev.set(400.006)  # rounds to 400.01 K on the wire: refused


def test_not_available_max_temp_falls_back_to_default_range(dev, ctl):
    dev.max_temp.sim_put(655.34)  # 0xFFFE as synApps decodes it
    assert dev.limits == (80.0, 400.0)
    with pytest.raises(CS800RangeError, match="80.00 K to 400.00 K"):
        dev.set(600)
    dev.min_temp.sim_put(0.0)  # a DISABLEd synApps IOC never filled it in
    dev.max_temp.sim_put(0.0)
    assert dev.limits == (80.0, 400.0)


def test_rate_zero_points_at_cool(dev, ctl):
    with pytest.raises(CS800RangeError, match="use cool") as info:
        dev.set(150, rate=0)
    assert "nothing was sent" in str(info.value) and ctl.sent == []


def test_reissued_plateau_is_followed_not_restarted(dev, ctl):
    """RE.resume() replays the set: a running plateau must not be sent (restarted) again."""
    first = dev.plateau(5)
    assert wait_until(lambda: dev._runner is not None and dev._runner.accepted)
    second = dev.plateau(5)
    ctl.set_state(phase=Phase.HOLD)
    second.wait(WAIT)
    first.wait(WAIT)
    assert first.success and second.success and ctl.names() == ["PLAT"]


def test_actions_work_when_the_cs800_is_a_component_of_another_device():
    from ophyd import Component, Device

    class Endstation(Device):
        cryo = Component(FakeCS800, "CS0:", settle_time=0.0, status_period=0.05)

    station = Endstation("X:", name="es")
    ctl = FakeController(station.cryo)
    station.cryo.actions.hold.set(1).wait(WAIT)
    assert ctl.names() == ["HOLD"]
    assert station.cryo.read()["es_cryo"]["value"] == 300.0
