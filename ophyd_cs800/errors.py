"""Exceptions raised by the ophyd ``CS800`` device and its plans.

Every exception carries a full sentence that names the device, what went wrong and what to do.
They all derive from :class:`CS800Error` (a ``RuntimeError``), so one ``except CS800Error``
catches every device failure; the range error is also a ``ValueError`` (and an ophyd
``LimitError``) and the timeout is also a ``TimeoutError``.
"""

from __future__ import annotations

from ophyd.utils.errors import LimitError


class CS800Error(RuntimeError):
    """Base class of every CS800 device failure (the message is a user-facing sentence)."""


class CS800RangeError(CS800Error, LimitError):
    """A target, rate or duration lies outside what the controller accepts (nothing was sent)."""


class CS800ShutDownError(CS800Error):
    """The controller is shut down (or starting up / in setup) and cannot take the command."""


class CS800CommsDisabledError(CS800Error):
    """Communication with the controller is disabled in the IOC (``DISABLE`` = 1)."""


class CS800NotAcceptedError(CS800Error):
    """The controller did not act on a command after the allowed number of re-sends."""


class CS800StaleError(CS800Error):
    """The controller stopped reporting: ``TEMP`` has INVALID severity, or no update arrived."""


class CS800InterruptedError(CS800Error):
    """A move ended before reaching its target: HOLD was sent, or the programme was overridden."""


class CS800TimeoutError(CS800Error, TimeoutError):
    """A move or command did not finish within its timeout."""
