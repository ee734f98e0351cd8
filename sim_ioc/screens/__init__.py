"""Operator screens of the CS800 IOC and the simulated valve bank (PyDM), and ``cs800-screen``.

:mod:`sim_ioc.screens.tables` (pure data, no Qt) says which PVs each screen shows, taken from
the IOC's own PV tables; :mod:`sim_ioc.screens.displays` builds the PyDM screens (needs the
``screens`` extra); :mod:`sim_ioc.screens.cli` is the ``cs800-screen`` command.
"""
