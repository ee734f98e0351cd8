"""ophyd-cs800: the Oxford Cryosystems CryoStream 800 for Bluesky.

Sub-modules:

* :mod:`ophyd_cs800.protocol` -- the pure UDP wire protocol (status datagrams, commands).
* :mod:`ophyd_cs800.device` -- the ophyd ``CS800`` positioner (kelvin) for the synApps PVs.
* :mod:`ophyd_cs800.plans` -- Bluesky plans: ``ramp``, ``cool``, ``plateau``, ``hold``, ...
"""

__version__ = "0.1.0"
