"""IPython startup file for an ophyd-async beamline profile with an Oxford CryoStream 800.

Needs the ``[async]`` extra (``pip install "ophyd-cs800[async]"``, Python >= 3.11). Copy to
``~/.ipython/profile_bluesky/startup/50-cs800.py`` (or ``ipython -i`` this file), set
``CS800_PREFIX`` to your controller's PV prefix (``$(P)$(R)``, e.g. ``17bmCryo:CS0:``), and
start ``ipython --profile=bluesky``. Without ``CS800_PREFIX`` a simulated controller is started
on loopback (speed-up ``CS800_SIM_SPEED``, default 100) and stopped when IPython exits.

The EPICS environment must be set before the first Channel Access call: libca (used by
ophyd-async through aioca) reads ``EPICS_CA_ADDR_LIST`` once per process.

Then, at the prompt (the same plans as with the ophyd device)::

    RE(ramp(cs0, 150))                 # returns when the sample is at 150 K
    RE(bps.mv(cs0, 200))               # the same move without a run of its own
    RE(cool(cs0, 100)); RE(plateau(cs0, 10, wait=True)); RE(hold(cs0))
    RE(temperature_series([det], cs0, [250, 200, 150]))
    cs0.describe_state()
    await cs0.locate()                 # {'setpoint': ..., 'readback': ...}
"""

import atexit
import os

if os.environ.get("CS800_PREFIX") is None:  # start a simulated controller for trying things
    from sim_ioc.process import SimIocProcess

    _sim_ioc = SimIocProcess(controllers=1, speed=float(os.environ.get("CS800_SIM_SPEED", 100)))
    _sim_ioc.start()
    os.environ.update(_sim_ioc.env)  # before the first Channel Access call
    CS800_PREFIX = _sim_ioc.controller_prefix(0)
    STATUS_PERIOD = 0.25
    print(f"CS800: simulated controller at {CS800_PREFIX} (IOC pid {_sim_ioc.pid})")
    atexit.register(_sim_ioc.stop)
else:
    CS800_PREFIX = os.environ["CS800_PREFIX"]
    STATUS_PERIOD = 1.0

from bluesky import RunEngine  # noqa: E402
from bluesky import plan_stubs as bps  # noqa: E402, F401  (for the IPython namespace)
from bluesky.utils import ProgressBarManager  # noqa: E402
from ophyd.sim import det  # noqa: E402, F401  (a simulated detector to try plans with)
from ophyd_async.core import init_devices  # noqa: E402

from ophyd_cs800 import plans  # noqa: E402
from ophyd_cs800.aio import CS800  # noqa: E402

globals().update({name: getattr(plans, name) for name in plans.__all__})  # ramp, cool, ...

if "RE" not in globals():  # made first: ophyd-async devices live in the RunEngine's loop
    RE = RunEngine({})
    RE.waiting_hook = ProgressBarManager()  # the set() status reports progress to it
    try:
        from bluesky.callbacks.best_effort import BestEffortCallback

        bec = BestEffortCallback()
        RE.subscribe(bec)
    except ImportError:  # BestEffortCallback needs matplotlib
        print("CS800: matplotlib is not installed; no BestEffortCallback")

try:  # `await ...` at the prompt runs in the RunEngine's loop
    from bluesky.run_engine import autoawait_in_bluesky_event_loop

    autoawait_in_bluesky_event_loop()
except (AssertionError, ImportError):  # not inside IPython
    pass

with init_devices(timeout=10):  # connects, and names the device "cs0" after the variable
    cs0 = CS800(CS800_PREFIX, tolerance=0.2, settle_time=5.0, ramp_rate=360,
                status_period=STATUS_PERIOD)
print(f"CS800: {cs0.describe_state()}")
