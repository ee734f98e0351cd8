"""The ophyd CS800 device without an IOC: what only the ophyd family has (threads, ophyd
statuses, components, fake-signal metadata, the runner's clock).

The behaviour both families share (the move rules, the commands, their refusals and
sentences) is tested once per family in ``test_cs800_families.py``, with the controller model
and case tables of ``cs800_fakes.py`` used here too.
"""

from __future__ import annotations

import functools
import threading
import time

import polling
import pytest
from cs800_fakes import WAIT, FakeController, FakeCS800

from ophyd_cs800.device import error_message
from ophyd_cs800.errors import (
    CS800RangeError,
    CS800StaleError,
)
from ophyd_cs800.move_status import MoveJob, Snapshot
from ophyd_cs800.protocol import Phase, RunMode


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



def test_move_and_moved_cb(dev, ctl):
    called = []
    status = dev.move(250, moved_cb=lambda obj: called.append(obj))
    assert status.done and status.success
    assert wait_until(lambda: called == [dev])



# -- set: refused before anything is sent ---------------------------------------------------------

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

# -- stop -----------------------------------------------------------------------------------------

# -- other commands ------------------------------------------------------------------------------

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



def test_destroy_ends_a_running_move():
    dev = make_device()
    FakeController(dev, instant=False)
    status = dev.set(150)
    dev.destroy()
    assert "destroyed" in str(failure(status))



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



def test_action_put_starts_the_command_without_waiting(dev, ctl):
    dev.actions.hold.put(1)
    assert wait_until(lambda: ctl.names() == ["HOLD"])



def test_not_available_max_temp_falls_back_to_default_range(dev, ctl):
    dev.max_temp.sim_put(655.34)  # 0xFFFE as synApps decodes it
    assert dev.limits == (80.0, 400.0)
    with pytest.raises(CS800RangeError, match="80.00 K to 400.00 K"):
        dev.set(600)
    dev.min_temp.sim_put(0.0)  # a DISABLEd synApps IOC never filled it in
    dev.max_temp.sim_put(0.0)
    assert dev.limits == (80.0, 400.0)



def test_actions_work_when_the_cs800_is_a_component_of_another_device():
    from ophyd import Component, Device

    class Endstation(Device):
        cryo = Component(FakeCS800, "CS0:", settle_time=0.0, status_period=0.05)

    station = Endstation("X:", name="es")
    ctl = FakeController(station.cryo)
    station.cryo.actions.hold.set(1).wait(WAIT)
    assert ctl.names() == ["HOLD"]
    assert station.cryo.read()["es_cryo"]["value"] == 300.0
