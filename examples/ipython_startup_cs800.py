"""IPython startup file for a beamline profile with an Oxford CryoStream 800.

Copy to ``~/.ipython/profile_bluesky/startup/50-cs800.py`` (or ``ipython -i`` this file), set
``CS800_PREFIX`` to your controller's PV prefix (``$(P)$(R)``, e.g. ``17bmCryo:CS0:``), and
start ``ipython --profile=bluesky``. Without ``CS800_PREFIX`` a simulated controller is started
on loopback (speed-up ``CS800_SIM_SPEED``, default 100) and stopped when IPython exits, and the
simulated detector ``det`` (``ophyd.sim``) is there to try plans with; against real hardware it
is not (use your own detectors).

Runs are kept in a Tiled store: the directory ``CS800_DATA`` (default: the per-user data
directory, printed), or a Tiled server ``CS800_DATA=http://host:8000``; ``db`` is its client
(``db.values().last()`` is the newest run). Without the ``[data]`` extra nothing is stored
(a sentence says so).

Then, at the prompt::

    RE(ramp(cs0, 150))                 # returns when the sample is at 150 K
    RE(ramp(cs0, 250, rate=120))       # 120 K/h
    RE(cool(cs0, 100))                 # as fast as possible
    RE(plateau(cs0, 10, wait=True))    # hold 10 minutes
    RE(temperature_series([det], cs0, [250, 200, 150]))
    RE(hold(cs0)); RE(end(cs0)); RE(restart(cs0))
    cs0                                # temperature, target, phase, run mode, alarm, age
"""

import atexit
import os
import sys

SIMULATED = os.environ.get("CS800_PREFIX") is None
if SIMULATED:  # start a simulated controller for trying things
    from sim_ioc.process import SimIocProcess

    SIM_SPEED = float(os.environ.get("CS800_SIM_SPEED", 100))
    _sim_ioc = SimIocProcess(controllers=1, speed=SIM_SPEED)
    _sim_ioc.start()
    os.environ.update(_sim_ioc.env)  # before any EPICS signal is created
    CS800_PREFIX = _sim_ioc.controller_prefix(0)
    STATUS_PERIOD = 0.25
    print(f"CS800: simulated controller at {CS800_PREFIX} (IOC pid {_sim_ioc.pid})")
else:
    CS800_PREFIX = os.environ["CS800_PREFIX"]
    STATUS_PERIOD = 1.0

from bluesky import RunEngine  # noqa: E402
from bluesky.utils import ProgressBarManager  # noqa: E402

from ophyd_cs800 import CS800, store  # noqa: E402
from ophyd_cs800.plans import (  # noqa: E402, F401  (for the IPython namespace)
    cool,
    end,
    hold,
    pause,
    plateau,
    purge,
    ramp,
    ramp_and_record,
    restart,
    resume,
    temperature_series,
    turbo,
)
from ophyd_cs800.suspenders import SuspendOnAlarm, SuspendOnShutdown  # noqa: E402, F401

if SIMULATED:
    from ophyd.sim import det  # noqa: F401  (a simulated detector to try plans with)

if "RE" not in globals():  # an earlier startup file of the profile may have made one
    RE = RunEngine({})
    if sys.stdout.isatty():  # no progress-bar redraws in a log file
        RE.waiting_hook = ProgressBarManager()
    try:
        from bluesky.callbacks.best_effort import BestEffortCallback

        bec = BestEffortCallback()
        RE.subscribe(bec)
    except ImportError:  # BestEffortCallback needs matplotlib
        print("CS800: matplotlib is not installed; no BestEffortCallback")
    if SIMULATED:
        RE.md["sim_speed"] = SIM_SPEED  # plots of stored runs show simulated time

if "db" not in globals():  # keep the runs
    try:
        _store = store.subscribe_store(RE, os.environ.get("CS800_DATA"))
        db = _store.client
        print(f"CS800: runs are stored in the Tiled catalog at {_store.where}")
    except store.StoreUnavailableError as _exc:
        print(f"CS800: runs are not stored: {_exc}")

cs0 = CS800(CS800_PREFIX, name="cs0", tolerance=0.2, settle_time=5.0, ramp_rate=360,
            status_period=STATUS_PERIOD)
cs0.wait_for_connection(timeout=10)
print(f"CS800: {cs0!r}")

if SIMULATED:

    def _stop_sim() -> None:
        cs0.destroy()  # close the channels first: no callbacks while the IOC goes away
        _sim_ioc.stop()

    atexit.register(_stop_sim)
