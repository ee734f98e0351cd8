"""ophyd-cs800: the Oxford Cryosystems CryoStream 800 for Bluesky.

Sub-modules:

* :mod:`ophyd_cs800.protocol` -- the pure UDP wire protocol (status datagrams, commands).
* :mod:`ophyd_cs800.device` -- the ophyd ``CS800`` positioner (kelvin) for the synApps PVs.
* :mod:`ophyd_cs800.plans` -- Bluesky plans: ``ramp``, ``cool``, ``plateau``, ``hold``, ...
* :mod:`ophyd_cs800.ca_put_errors` -- a put the IOC refuses raises at once
  (:func:`install_put_error_fix`, installed by the ``CS800`` constructor).
"""

__version__ = "0.1.0"

__all__ = ["CS800", "CS800Error", "PutRefusedError", "install_put_error_fix"]


def __getattr__(name: str):
    """Import the ophyd device lazily, so ``ophyd_cs800.protocol`` users never load ophyd."""
    if name == "CS800":
        from ophyd_cs800.device import CS800

        return CS800
    if name == "CS800Error":
        from ophyd_cs800.errors import CS800Error

        return CS800Error
    if name in ("PutRefusedError", "install_put_error_fix"):
        from ophyd_cs800 import ca_put_errors

        return getattr(ca_put_errors, name)
    raise AttributeError(f"module 'ophyd_cs800' has no attribute {name!r}")
