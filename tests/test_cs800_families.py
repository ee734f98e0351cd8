"""The CS800 move rules, once for each device family: ophyd and ophyd-async (mock mode).

Every test runs against the ophyd device (fake signals) and ``ophyd_cs800.aio.CS800``
(ophyd-async mock mode: ``set_mock_value`` / ``callback_on_mock_put``) behind the same
:class:`cs800_fakes.FakeController`, with the case tables of :mod:`cs800_fakes`. Both families
drive one rule set (``command_rules`` + ``move_status.JobTracker``): these tests hold them to
the same behaviour, sentences included. Family-specific behaviour (ophyd threads and
statuses; ophyd-async enums, watchers, naming) is tested in ``test_device_unit.py`` and
``test_aio_unit.py``.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time

import polling
import pytest
from cs800_fakes import (
    BAD_END_RATES,
    BAD_PLATEAU_MINUTES,
    BAD_RATES,
    BAD_TARGETS,
    COMMANDS,
    NOT_READY,
    SHUT_DOWN,
    WAIT,
    FakeController,
    LoopThread,
    make_aio,
    make_ophyd,
)

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
from ophyd_cs800.protocol import Phase, RunMode

pytest.importorskip("ophyd_async", reason="the [async] extra (Python >= 3.11)")

wait_until = functools.partial(polling.poll, timeout=WAIT)


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(params=["ophyd", "aio"])
def make(request, loop):
    """``make(**device_kwargs)`` builds a fake device of the family under test."""
    if request.param == "ophyd":
        return make_ophyd
    return functools.partial(make_aio, loop)


@pytest.fixture()
def dev(make):
    return make()


def controller(dev, **kwargs):
    return FakeController(dev.port, **kwargs)


@pytest.fixture()
def ctl(dev):
    return controller(dev)


def failure(status):
    """Wait for ``status`` to finish and return its exception (fails if it succeeded)."""
    with pytest.raises(Exception) as info:
        status.wait(WAIT)
    return info.value


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


def test_not_done_while_ramping_nor_before_phase_leaves_ramp(dev):
    ctl = controller(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])
    assert wait_until(dev.accepted)
    assert dev.moving
    ctl.set_state(temp=150.0)  # readback at target but the phase still says Ramp
    assert not wait_until(lambda: status.done, timeout=0.2)  # several polls: still not done
    ctl.arrive()
    status.wait(WAIT)
    assert status.success


def test_settle_time_is_honoured(make):
    dev = make(settle_time=0.4)
    ctl = controller(dev, instant=False)
    status = dev.set(150)
    assert wait_until(dev.accepted)
    ctl.arrive(temp=150.1)
    arrived = time.monotonic()
    status.wait(WAIT)
    assert status.success and time.monotonic() - arrived >= 0.4 - 0.05  # lower bound only


def test_move_to_current_temperature_finishes_without_new_monitors(dev):
    ctl = controller(dev, temp=150.0, instant=False)
    for name in COMMANDS:  # a real IOC posts nothing when nothing changes
        dev.port.on_put(f"cmd_{name.lower()}", lambda value: None)
    status = dev.set(150.0)
    status.wait(WAIT)
    assert status.success and ctl.sent == []


def test_start_from_ready_mode(dev):
    ctl = controller(dev, run_mode=RunMode.STARTUP_OK)
    dev.set(200).wait(WAIT)
    assert ctl.get("run_mode") == RunMode.RUN and ctl.names() == ["RAMP"]


def test_cool_writes_ctemp_and_cool(dev, ctl):
    dev.cool(100).wait(WAIT)
    assert ctl.names() == ["COOL"] and ctl.sent[0][1]["ctemp"] == 100.0
    with pytest.raises(CS800RangeError, match="as fast as possible"):
        dev.set(120, cool=True, rate=100)


def test_progress_is_reported_to_watchers(dev):
    ctl = controller(dev, instant=False)
    updates = []
    status = dev.set(200)
    status.watch(lambda **kw: updates.append(kw))
    assert wait_until(dev.accepted)
    for temp in (280.0, 250.0, 220.0):
        ctl.set_state(temp=temp)
        assert wait_until(lambda t=temp: updates and updates[-1]["current"] == t)
    ctl.arrive()
    status.wait(WAIT)
    currents = [u["current"] for u in updates if "current" in u]
    assert [c for c in currents if c in (280.0, 250.0, 220.0)] == [280.0, 250.0, 220.0]
    first = next(u for u in updates if u.get("current") == 280.0)
    assert first["initial"] == 300.0 and first["target"] == 200.0 and first["unit"] == "K"
    assert first["fraction"] == pytest.approx(0.8)


# -- set: refused before anything is sent ---------------------------------------------------------
@pytest.mark.parametrize("target", BAD_TARGETS)
def test_out_of_range_target_raises_before_sending(dev, ctl, target):
    with pytest.raises(CS800RangeError) as info:
        dev.set(target)
    assert "nothing was sent" in str(info.value) and isinstance(info.value, ValueError)
    assert ctl.sent == []
    if target == 500:
        assert "80.00 K to 400.00 K" in str(info.value)


def test_range_follows_device_limits_and_falls_back_when_invalid(dev, ctl):
    dev.port.put("max_temp", 500.0)  # a "Plus" unit
    assert wait_until(lambda: dev.limits == (80.0, 500.0))
    dev.set(450).wait(WAIT)
    dev.port.put_invalid("max_temp", 500.0)
    assert wait_until(lambda: dev.limits == (80.0, 400.0))
    dev.port.put("max_temp", 655.34)  # 0xFFFE as synApps decodes it
    assert wait_until(lambda: dev.limits == (80.0, 400.0))
    with pytest.raises(CS800RangeError, match="80.00 K to 400.00 K"):
        dev.set(600)


@pytest.mark.parametrize("rate", BAD_RATES)
def test_bad_rate_raises_before_sending(dev, ctl, rate):
    with pytest.raises(CS800RangeError, match="ramp rate"):
        dev.set(150, rate=rate)
    assert ctl.sent == []


def test_rate_zero_points_at_cool(dev, ctl):
    with pytest.raises(CS800RangeError, match="use cool") as info:
        dev.set(150, rate=0)
    assert "nothing was sent" in str(info.value) and ctl.sent == []


def test_target_equal_to_the_device_maximum_is_allowed(dev, ctl):
    dev.set(400.0000001).wait(WAIT)  # DEVICEMAXTEMP up to float noise
    assert ctl.sent[-1][1]["rtemp"] == 400.0
    with pytest.raises(CS800RangeError, match="target 400.01 K is out of range"):
        dev.set(400.006)  # rounds to 400.01 K on the wire: refused


def test_comms_disabled_raises(dev, ctl):
    dev.port.put("disable", 1)
    with pytest.raises(CS800CommsDisabledError, match="X:CS0:DISABLE is not 0") as info:
        dev.set(150)
    assert "disable.put(0)" in str(info.value) and ctl.sent == []


@pytest.mark.parametrize("mode", SHUT_DOWN)
def test_shut_down_controller_raises_restart_first(dev, ctl, mode):
    ctl.set_state(run_mode=mode)
    with pytest.raises(CS800ShutDownError, match="controller is shut down") as info:
        dev.set(150)
    assert "restart it first" in str(info.value) and ctl.sent == []


@pytest.mark.parametrize("mode", NOT_READY)
def test_starting_or_setup_controller_raises(dev, ctl, mode):
    ctl.set_state(run_mode=mode)
    with pytest.raises(CS800ShutDownError, match="needs Ready or Run"):
        dev.set(150)
    assert ctl.sent == []


def test_stale_controller_raises_before_sending(dev, ctl):
    dev.port.put_invalid("temperature", 300.0)
    with pytest.raises(CS800StaleError, match="not reporting") as info:
        dev.set(150)
    assert "X:CS0:TEMP" in str(info.value) and ctl.sent == []


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


def test_timeout_sends_hold_and_names_the_state(dev):
    ctl = controller(dev, instant=False)
    exc = failure(dev.set(150, timeout=0.3))
    assert isinstance(exc, CS800TimeoutError) and isinstance(exc, TimeoutError)
    assert "did not finish within 0 s" in str(exc) and "HOLD was sent" in str(exc)
    assert ctl.names() == ["RAMP", "HOLD"]


def test_default_timeout_from_distance_and_rate(dev, ctl):
    dev.dev.timeout_margin = 60
    dev.set_tunable("settle_time", 5.0)
    ctl.instant = False
    dev.set(120, rate=360)  # 180 K at 360 K/h: 1800 s * 1.1 + 60 + 5
    assert dev.runner.job.timeout == pytest.approx(1980 + 65)
    dev.dev.timeout = 42.0
    dev.set(130)
    assert dev.runner.job.timeout == 42.0
    dev.stop()


def test_stale_during_move_fails_clearly(dev):
    ctl = controller(dev, instant=False)
    status = dev.set(150)
    assert wait_until(dev.accepted)
    dev.port.put_invalid("temperature", 250.0)
    exc = failure(status)
    assert isinstance(exc, CS800StaleError)
    assert "stopped reporting" in str(exc) and "last reading" in str(exc)
    assert "HOLD" not in ctl.names()


def test_no_updates_for_too_long_fails_as_stale(make):
    dev = make(stale_after=0.3)
    controller(dev, instant=False)
    exc = failure(dev.set(150))
    assert isinstance(exc, CS800StaleError) and "no status update" in str(exc)


def test_shutdown_during_move_fails(dev):
    ctl = controller(dev, instant=False)
    status = dev.set(150)
    assert wait_until(dev.accepted)
    ctl.set_state(alarm="Low flow rate", run_mode=RunMode.SHUTDOWN_FAIL)
    exc = failure(status)
    assert isinstance(exc, CS800ShutDownError) and "Low flow rate" in str(exc)


def test_hold_from_elsewhere_interrupts_the_move(dev):
    ctl = controller(dev, instant=False)
    status = dev.set(150)
    assert wait_until(dev.accepted)
    ctl.set_state(phase=Phase.HOLD, setpoint=240.0, temp=240.0)
    exc = failure(status)
    assert isinstance(exc, CS800InterruptedError) and "240.00 K" in str(exc)


def test_write_failure_is_reported(dev, ctl):
    def broken(value):
        raise ConnectionError("virtual circuit disconnected")

    dev.port.on_put("cmd_ramp", broken)
    exc = failure(dev.set(150))
    assert isinstance(exc, CS800Error)
    assert "could not send the ramp" in str(exc) and "virtual circuit" in str(exc)


def test_ioc_clamping_rtemp_is_reported(dev, ctl):
    dev.port.on_put("rtemp", lambda value: dev.port.put("rtemp", min(value, 360.0)))
    exc = failure(dev.set(380))
    assert isinstance(exc, CS800RangeError) and "limited X:CS0:RTEMP to 360.00 K" in str(exc)
    assert ctl.sent == []


def test_new_move_supersedes_the_running_one(dev):
    ctl = controller(dev, instant=False)
    first = dev.set(150)
    first_runner = dev.runner
    second = dev.set(200)
    first.wait(WAIT)  # replaced by a newer command: over, not failed (like an ophyd motor)
    assert first.success and not second.done
    if dev.family == "ophyd":  # one poll thread per device, not per move
        first_runner.thread.join(WAIT)
        assert not first_runner.thread.is_alive()
    assert wait_until(lambda: ctl.get("target") == 200.0)  # the second RAMP went out
    ctl.arrive()
    second.wait(WAIT)
    assert second.success
    assert [params["rtemp"] for name, params in ctl.sent if name == "RAMP"][-1] == 200.0


def test_same_command_again_takes_over_and_both_finish(dev):
    ctl = controller(dev, instant=False)
    first = dev.set(150)
    second = dev.set(150)  # e.g. the RunEngine replaying the set after a pause
    assert wait_until(lambda: ctl.get("target") == 150.0)  # (sent again unless accepted)
    # The take-over sends its own RAMP when the first was not yet accepted; the fake controller
    # would start that ramp again after arrive(), so arrive only once the follower accepted.
    assert wait_until(dev.accepted)
    ctl.arrive()
    second.wait(WAIT)
    first.wait(WAIT)
    assert first.success and second.success


def test_same_command_again_shares_a_failure(dev):
    ctl = controller(dev, instant=False)
    first = dev.set(150)
    assert wait_until(dev.accepted)
    second = dev.set(150)
    assert ctl.names() == ["RAMP"]  # already acting on it: followed, not sent again
    dev.stop()
    assert isinstance(failure(second), CS800InterruptedError)
    assert isinstance(failure(first), CS800InterruptedError)


# -- stop -----------------------------------------------------------------------------------------
def test_stop_success_true_does_nothing(dev):
    ctl = controller(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])
    dev.stop(success=True)
    assert ctl.names() == ["RAMP"] and not status.done
    ctl.arrive()
    status.wait(WAIT)
    assert status.success


def test_stop_during_move_sends_hold_and_fails_the_move(dev):
    ctl = controller(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])
    dev.stop()
    exc = failure(status)
    assert isinstance(exc, CS800InterruptedError) and "HOLD was sent" in str(exc)
    assert ctl.names() == ["RAMP", "HOLD"]
    assert not dev.moving


def test_stop_when_idle_sends_nothing_but_stops_a_foreign_ramp(dev, ctl):
    wait_until(lambda: dev.stop() or True)
    assert ctl.sent == []
    ctl.set_state(phase=Phase.RAMP, target=100.0)  # ramp started from a screen
    stopped = dev.stop()
    if stopped is not None and hasattr(stopped, "wait"):
        stopped.wait(WAIT)
    assert wait_until(lambda: ctl.names() == ["HOLD"])


def test_stop_still_ends_the_move_when_hold_cannot_be_sent(dev):
    ctl = controller(dev, instant=False)
    status = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])

    def broken(value):
        raise ConnectionError("no circuit")

    dev.port.on_put("cmd_hold", broken)
    dev.stop()
    assert "sending HOLD failed: no circuit" in str(failure(status))


def slow_put(dev, attr, then):
    """Make writes of ``attr`` hang until the returned ``gate`` is set, then call
    ``then(value)``; ``entered`` is set when a write starts. (ophyd-async: an async mock
    callback, which must not block the event loop.)"""
    entered, gate = threading.Event(), threading.Event()

    def put(value):
        entered.set()
        assert gate.wait(WAIT)
        then(value)

    async def put_async(value):
        entered.set()
        while not gate.is_set():  # bounded: the test sets the gate within WAIT
            await asyncio.sleep(0.01)
        then(value)

    dev.port.on_put(attr, put_async if dev.family == "aio" else put)
    return entered, gate


def test_stop_while_the_command_is_being_written_holds_after_it_not_before(dev):
    """A slow RTEMP write in flight: stop() waits for it, so HOLD is the last command."""
    ctl = controller(dev, instant=False)
    entered, gate = slow_put(dev, "rtemp", lambda value: dev.port.put("rtemp", value))
    status = dev.set(150)
    assert entered.wait(WAIT)
    stopper = threading.Thread(target=dev.stop)
    stopper.start()
    assert not wait_until(lambda: "HOLD" in ctl.names(), timeout=0.3)  # waits for the write
    gate.set()
    stopper.join(WAIT)
    assert isinstance(failure(status), CS800InterruptedError)
    assert wait_until(lambda: ctl.names() == ["RAMP", "HOLD"])


def test_a_stopped_runner_never_resends(dev):
    """The controller ignores RAMP; stop() lands between re-sends: no RAMP after the HOLD."""
    ctl = controller(dev, instant=False)
    ctl.drop = 100
    status = dev.set(150)
    assert wait_until(lambda: ctl.names().count("RAMP") >= 2)
    runner = dev.runner
    dev.stop()
    assert isinstance(failure(status), CS800InterruptedError)
    if dev.family == "ophyd":
        runner.thread.join(WAIT)
        assert not runner.thread.is_alive()  # the poll thread ends with the job
    assert not wait_until(lambda: ctl.names()[-1] != "HOLD", timeout=0.3)


# -- other commands ------------------------------------------------------------------------------
def test_plateau_waits_for_the_plat_phase_to_end(dev, ctl):
    status = dev.plateau(5)
    assert wait_until(lambda: ctl.names() == ["PLAT"])
    assert ctl.sent[0][1]["ptime"] == 5
    assert wait_until(dev.accepted)
    assert not status.done
    ctl.set_state(phase=Phase.HOLD)
    status.wait(WAIT)
    assert status.success


@pytest.mark.parametrize("minutes", BAD_PLATEAU_MINUTES)
def test_plateau_range(dev, ctl, minutes):
    with pytest.raises(CS800RangeError, match="plateau duration"):
        dev.plateau(minutes)
    assert ctl.sent == []


def test_reissued_plateau_is_followed_not_restarted(dev, ctl):
    """RE.resume() replays the set: a running plateau must not be sent (restarted) again."""
    first = dev.plateau(5)
    assert wait_until(dev.accepted)
    second = dev.plateau(5)
    ctl.set_state(phase=Phase.HOLD)
    second.wait(WAIT)
    first.wait(WAIT)
    assert first.success and second.success and ctl.names() == ["PLAT"]


def test_hold_ends_a_move(dev):
    ctl = controller(dev, instant=False)
    move = dev.set(150)
    assert wait_until(lambda: ctl.names() == ["RAMP"])
    dev.hold().wait(WAIT)
    move.wait(WAIT)
    assert move.done and ctl.names() == ["RAMP", "HOLD"]
    assert ctl.get("phase") == Phase.HOLD and not dev.moving


def test_end_then_ramp_raises_shut_down_then_restart(dev, ctl):
    dev.end(rate=200).wait(WAIT)
    assert ctl.names() == ["END"] and ctl.sent[-1][1]["erate"] == 200
    assert ctl.get("run_mode") == RunMode.SHUTDOWN_OK
    with pytest.raises(CS800ShutDownError, match="controller is shut down"):
        dev.set(150)
    dev.end().wait(WAIT)  # already shut down: nothing sent
    assert ctl.names() == ["END"]
    dev.restart().wait(WAIT)
    assert ctl.get("run_mode") == RunMode.STARTUP_OK
    dev.restart().wait(WAIT)
    assert ctl.names() == ["END", "RESTART"]
    dev.set(150).wait(WAIT)


@pytest.mark.parametrize("rate", BAD_END_RATES)
def test_end_rate_range(dev, ctl, rate):
    with pytest.raises(CS800RangeError, match="end rate"):
        dev.end(rate)
    assert ctl.sent == []


def test_purge_and_shutdown_fail(dev, ctl):
    dev.purge().wait(WAIT)
    assert ctl.names() == ["PURGE"] and ctl.get("run_mode") == RunMode.SHUTDOWN_OK
    dev.purge().wait(WAIT)  # already shut down: nothing sent
    assert ctl.names() == ["PURGE"]
    ctl.set_state(run_mode=RunMode.RUN, phase=Phase.HOLD)
    ctl.instant = False
    status = dev.purge()
    assert wait_until(dev.accepted)
    ctl.set_state(run_mode=RunMode.SHUTDOWN_FAIL)
    assert "shut down with an error" in str(failure(status))


def test_restart_startup_fail_and_setup(dev, ctl):
    ctl.set_state(run_mode=RunMode.SHUTDOWN_FAIL)
    ctl.instant = False
    status = dev.restart()
    assert wait_until(dev.accepted)
    ctl.set_state(run_mode=RunMode.STARTUP_FAIL)
    assert "failed its start-up checks" in str(failure(status))
    ctl.set_state(run_mode=RunMode.SETUP)
    with pytest.raises(CS800ShutDownError, match="Setup mode"):
        dev.restart()


def test_explicit_timeouts_for_plateau_and_end(dev):
    ctl = controller(dev, instant=False)
    exc = failure(dev.plateau(1, timeout=0.2))  # accepted, but never leaves Plat
    assert isinstance(exc, CS800TimeoutError) and "plateau of 1 min" in str(exc)
    exc = failure(dev.end(timeout=0.2))
    assert isinstance(exc, CS800TimeoutError) and "end at 360 K/h" in str(exc)
    assert "HOLD" not in ctl.names()  # only a move holds on timeout


def paused_move(dev):
    """A move to 150 K under way, the controller holding at 250 K after a PAUSE."""
    ctl = controller(dev, instant=False)
    status = dev.set(150, timeout=30.0)
    assert wait_until(dev.accepted)
    ctl.set_state(setpoint=250.0, temp=250.0)
    dev.pause_program().wait(WAIT)
    return ctl, status


def test_pause_keeps_the_move_and_resume_continues(dev):
    ctl, status = paused_move(dev)
    assert dev.paused and ctl.get("phase") == Phase.HOLD
    # paused away from the target for longer than the interrupt grace (3 status periods)
    assert not wait_until(lambda: status.done, timeout=0.4)
    dev.resume_program().wait(WAIT)
    assert not dev.paused
    ctl.arrive()
    status.wait(WAIT)
    assert status.success and ctl.names() == ["RAMP", "PAUSE", "RESUME"]


def test_a_slow_resume_write_is_no_interruption(dev):
    """Until the RESUME put completes the controller still holds away from the target: the
    move stays paused then, instead of failing as interrupted (grace: 3 status periods)."""
    ctl, status = paused_move(dev)
    _, gate = slow_put(dev, "cmd_resume", lambda value: ctl._command("RESUME"))
    resumed = dev.resume_program()
    assert not wait_until(lambda: status.done, timeout=0.5), status.exception()
    assert dev.paused and not resumed.done
    gate.set()
    resumed.wait(WAIT)
    ctl.arrive()
    status.wait(WAIT)
    assert status.success and ctl.names() == ["RAMP", "PAUSE", "RESUME"]


def test_a_pause_requested_while_resume_is_written_stays_in_force(dev):
    ctl, status = paused_move(dev)
    _, gate = slow_put(dev, "cmd_resume", lambda value: ctl._command("RESUME"))
    resumed = dev.resume_program()
    paused_again = dev.pause_program()  # its PAUSE waits for the RESUME write (send lock)
    gate.set()
    resumed.wait(WAIT)
    paused_again.wait(WAIT)
    assert ctl.names() == ["RAMP", "PAUSE", "RESUME", "PAUSE"]
    assert dev.paused and not status.done  # the controller is paused: so is the move
    dev.port.on_put("cmd_resume", lambda value: ctl._command("RESUME"))
    dev.resume_program().wait(WAIT)
    ctl.arrive()
    status.wait(WAIT)
    assert status.success and not dev.paused


def test_pause_write_failure_is_a_sentence(dev, ctl):
    def broken(value):
        raise ConnectionError("put timed out")

    dev.port.on_put("cmd_pause", broken)
    exc = failure(dev.pause_program())
    assert str(exc) == "cs0: could not send pause: put timed out"
    assert not dev.paused  # the controller never paused: moves keep their timeout


def test_turbo_writes_turbo_pv(dev, ctl):
    dev.set_turbo(True).wait(WAIT)
    assert wait_until(lambda: dev.port.get("turbo") == 1)
    dev.set_turbo("Off").wait(WAIT)
    assert dev.port.get("turbo") == 0


def test_actions_call_device_methods(dev, ctl):
    dev.action("plateau", 3)
    assert wait_until(lambda: ctl.names() == ["PLAT"])
    dev.action("hold").wait(WAIT)
    assert ctl.names() == ["PLAT", "HOLD"]


def test_unreadable_disable_counts_as_disabled(dev, ctl):
    if dev.family == "aio":  # a mock bool cannot hold None: post a reading without a value
        dev.port.put_invalid("disable", None)
    else:
        dev.port.put("disable", None)
    with pytest.raises(CS800CommsDisabledError):
        dev.set(150)


def test_describe_state(dev, ctl):
    assert wait_until(lambda: dev.describe_state() ==
                      "cs0: TEMP 300.00 K, phase Hold, run mode Run, target 300.00 K")


def test_two_devices_move_independently(make):
    dev_a, dev_b = make(name="cs0"), make(name="cs1")
    ctl_a = controller(dev_a, instant=False)
    ctl_b = controller(dev_b, instant=False)
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
    assert dev_a.runner is None and dev_b.runner is None
    assert wait_until(lambda: not [t for t in threading.enumerate()
                                   if t.name.startswith("cs800-cs1-")])  # no thread left


def test_plan_may_start_commands_without_waiting_then_send_others(dev):
    """plateau (wait=False by default), ramp(wait=False), hold in ONE plan: no FailedStatus."""
    from bluesky import RunEngine

    from ophyd_cs800 import plans

    ctl = controller(dev, instant=False)
    engine = dev.loop.engine if dev.loop is not None else RunEngine({}, context_managers=[])

    def plan():
        yield from plans.plateau(dev.dev, 5)
        yield from plans.ramp(dev.dev, 150, wait=False, record=False)
        yield from plans.hold(dev.dev)

    engine(plan())
    assert ctl.names() == ["PLAT", "RAMP", "HOLD"]
    assert dev.active_job is None and not dev.moving
