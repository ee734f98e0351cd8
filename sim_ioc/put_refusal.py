"""Refused Channel Access puts: one clear sentence to the client, one rate-limited log line.

A put handler (``verify_value``, a putter, or caproto's own value conversion) refuses a value by
raising. caproto's server then answers the client with an ``ECA_PUTFAIL`` error response whose
text is ``"Python exception: <type> <message>"``, and logs the refusal with a full traceback
(about 1.2 kB per put). This module keeps the answer and fixes the rest, for every put handler
of the IOC:

* :class:`RefusalSentenceMixin` (mixed into every channel class of the IOC's groups through
  :class:`sim_ioc.lazy_records.LazyFieldsMixin`) turns caproto's bare conversion errors (a
  string an enum PV does not have, text to a number) into a sentence naming the PV, the value
  and what is accepted.
* :class:`PutRefusalLog`, a filter on caproto's ``caproto.circ`` logger, replaces the traceback
  of each refused put by one line through :class:`sim_ioc.log_limit.RateLimitedLog` (the first
  at once, then a summary per interval) and counts every refusal (``refused``).
"""

from __future__ import annotations

import logging
from typing import Any

from caproto import CaprotoConversionError, ChannelType

from sim_ioc.log_limit import RateLimitedLog

#: caproto's message for a write that raised (server/common.py).
CAPROTO_WRITE_FAILURE = "Invalid write request"
#: The logger caproto's server circuits log refused writes to.
CAPROTO_CIRCUIT_LOGGER = "caproto.circ"


def _shown(data: Any) -> str:
    """Return the value a client put, as text (one element unwrapped, strings decoded)."""
    try:  # lists, tuples, numpy arrays of one element
        if not isinstance(data, (str, bytes)) and len(data) == 1:
            data = data[0]
    except TypeError:
        pass
    if hasattr(data, "item"):  # numpy scalars (np.bytes_, np.float64, ...)
        data = data.item()
    if isinstance(data, bytes):
        data = data.split(b"\0", 1)[0].decode("latin-1")
    return repr(data)


def enum_sentence(name: str, strings: list[str] | tuple[str, ...], data: Any) -> str:
    """Return the sentence for a value that is none of an enum PV's strings or indexes."""
    choices = ", ".join(repr(s) for s in strings)
    return (f"{name} accepts only {choices} (or index 0..{len(strings) - 1}), got "
            f"{_shown(data)}; nothing was changed")


def conversion_sentence(channel: Any, data: Any) -> str:
    """Return the sentence for a value caproto could not convert for ``channel``."""
    name = str(getattr(channel, "pvname", None) or getattr(channel, "name", "this PV"))
    strings = list(getattr(channel, "enum_strings", None) or [])
    if channel.data_type == ChannelType.ENUM and strings:
        return enum_sentence(name, strings, data)
    kind = {ChannelType.STRING: "text", ChannelType.CHAR: "text"}.get(channel.data_type,
                                                                      "a number")
    return f"{name} needs {kind}, got {_shown(data)}; nothing was changed"


def _is_conversion_error(exc: BaseException) -> bool:
    """Return True for caproto's conversion errors and the numpy ones it lets through.

    The numpy ones: text to a number, "could not convert string to float".
    """
    return isinstance(exc, CaprotoConversionError) or str(exc).startswith("could not convert")


class RefusalSentenceMixin:
    """Mixin for caproto channel classes: conversion failures become a sentence."""

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        """Caproto's ``write_from_dbr``.

        A value it cannot convert raises ``ValueError`` with a sentence naming the PV, the value and
        what is accepted.
        """
        try:
            return await super().write_from_dbr(data, data_type, metadata, flags=flags)
        except (CaprotoConversionError, ValueError) as exc:
            if not _is_conversion_error(exc):
                raise
            raise ValueError(conversion_sentence(self, data)) from None


class PutRefusalLog(logging.Filter):
    """Filter for ``caproto.circ``: a refused put becomes one rate-limited line, no traceback.

    Install with :meth:`install`, remove with :meth:`uninstall`. ``refused`` counts every
    refused put seen (the volume; the log keeps only a summary).
    """

    def __init__(self, rate_log: RateLimitedLog) -> None:
        """Write the lines through ``rate_log``."""
        super().__init__()
        self.rate_log = rate_log
        self.refused = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass every record except caproto's refused-write records, which are re-logged."""
        if not str(record.msg).startswith(CAPROTO_WRITE_FAILURE):
            return True
        self.refused += 1
        exc = record.exc_info[1] if record.exc_info else None
        args = record.args if isinstance(record.args, tuple) else ()
        client = f"{args[0]}@{args[1]}" if len(args) >= 2 else "a client"
        reason = str(exc) if exc is not None and str(exc) else type(exc).__name__
        self.rate_log.note("refused puts", f"put refused (from {client}): {reason}",
                           detail=client)
        return False

    def install(self) -> None:
        """Start filtering caproto's circuit logger."""
        logging.getLogger(CAPROTO_CIRCUIT_LOGGER).addFilter(self)

    def uninstall(self) -> None:
        """Stop filtering (safe to call twice)."""
        logging.getLogger(CAPROTO_CIRCUIT_LOGGER).removeFilter(self)
