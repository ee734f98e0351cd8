"""A put the IOC refused reaches the user at once as an error, never as a timeout or success.

A Channel Access server refuses a put-with-notify by answering ``ECA_PUTFAIL``. caproto's
server sends an ``ErrorResponse`` carrying the refusal's sentence; EPICS rsrv and libca
deliver the status to the put callback. The clients in between lose it (caproto 1.3, ophyd
1.11, pyepics 3.5):

* caproto's threading client ignores an ``ErrorResponse`` for a pending write, so
  ``PV.write(wait=True)`` waits for its timeout and a write callback never runs; ophyd's
  caproto layer then says ``set()`` "timed out";
* caproto's ``pyepics_compat`` layer and pyepics call the put callback whatever the status,
  so ophyd's ``EpicsSignal.set()`` reports success and ``put(wait=True)`` returns normally.

:func:`install_put_error_fix` patches those few functions, each only if it is the function
this module was written for (otherwise that part is skipped and logged once). It changes
nothing for a put the server accepted. Once installed, a refused put raises
:class:`PutRefusedError` (``PV.write(wait=True)``, pyepics-style ``put(wait=True)``,
``EpicsSignal.put(..., wait=True)``), fails the ``Status`` of ``EpicsSignal.set()`` (put
completion), or is passed to a caproto write callback as the ``ErrorResponse`` (whose
``status`` is not ``ECA_NORMAL``). A put that does not wait (``put(v)``,
``put(v, use_complete=True)``) returns at once as before; a refusal nobody gets as an
exception or a failed status is logged at ERROR on this module's logger (as libca prints
one). The sentence is the server's; libca (the pyepics layer) passes only the status, so
there the error names the CA status without the server's text.

The :class:`ophyd_cs800.device.CS800` constructor installs it; any other program calls
:func:`install_put_error_fix` once. ``OPHYD_CS800_PUT_ERRORS=0`` in the environment turns it
off. Nothing here imports ``sim_ioc``; caproto, ophyd and pyepics are imported only when the
fix is installed (pyepics and ophyd only if the program already imported them).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

#: Environment variable: ``0``, ``off``, ``no`` or ``false`` turns the fix off.
ENV_SWITCH = "OPHYD_CS800_PUT_ERRORS"
#: Channel Access status codes (EPICS caerr.h).
ECA_NORMAL = 1
ECA_PUTFAIL = 160
#: CA command IDs (of the request an ``ErrorResponse`` echoes).
_WRITE, _WRITE_NOTIFY = 4, 19
#: caproto's server prefixes the sentence with the exception type.
_PYTHON_EXCEPTION = re.compile(r"^Python exception: \w+ ")
#: Attribute marking the functions this module installed.
_MARK = "_ophyd_cs800_put_errors"


class PutRefusedError(RuntimeError):
    """The IOC refused a put; ``str()`` is one sentence with the PV and the IOC's reason.

    Attributes: ``pvname``; ``reason`` (the server's sentence, or the CA status text);
    ``status`` (the CA status code, e.g. 160 for ``ECA_PUTFAIL``); ``response`` (caproto's
    ``ErrorResponse``, or None for pyepics).
    """

    def __init__(self, pvname: str, reason: str, status: int = ECA_PUTFAIL,
                 response: Any = None) -> None:
        """Build the exception.

        The message is ``"put refused by the IOC: <pv>: <reason>"`` (``<pv>: `` left out when the
        reason starts with it).
        """
        self.pvname = pvname
        self.reason = reason
        self.status = status
        self.response = response
        # The IOC's sentences name the PV already; say it once.
        said = reason if reason.startswith(pvname) else f"{pvname}: {reason}"
        super().__init__(f"put refused by the IOC: {said}")


def server_reason(error_message: bytes | bytearray | str) -> str:
    """Return the sentence of a CA ``ErrorResponse`` text.

    NULs and caproto's type prefix are removed.
    """
    if isinstance(error_message, (bytes, bytearray)):
        error_message = bytes(error_message).split(b"\0", 1)[0].decode("latin-1")
    text = _PYTHON_EXCEPTION.sub("", error_message.strip())
    return text or "no reason given"


class RefusalWatch:
    """Collects the refusal of the put(s) made while it is current, for one waiting party.

    The refusal (:meth:`refuse`, on a CA thread) and the party may meet in either order: an
    ophyd ``Status`` handed over by :meth:`attach` fails once with the first refusal; after
    :meth:`release` (nobody waits) a refusal is logged instead. A refusal someone gets as an
    exception or a failed status is not logged as well.
    """

    def __init__(self) -> None:
        """Start an empty watch."""
        self._lock = threading.Lock()
        self.error: PutRefusedError | None = None
        self._status: Any = None
        self._released = False

    def refuse(self, error: PutRefusedError) -> None:
        """Record ``error``; fail the attached status, or log it if released."""
        with self._lock:
            if self.error is not None:
                return
            self.error = error
            status, released = self._status, self._released
        if status is not None:
            _fail_status(status, error)
        elif released:
            _log(error)

    def attach(self, status: Any) -> None:
        """Fail ``status`` with the refusal, now if it came already, else when it comes."""
        with self._lock:
            self._status = status
            error = self.error
        if error is not None:
            _fail_status(status, error)

    def release(self) -> None:
        """Nobody will wait for the outcome: log the refusal (now or when it comes)."""
        with self._lock:
            self._released = True
            error = None if self._status is not None else self.error
        if error is not None:
            _log(error)


_current: contextvars.ContextVar[RefusalWatch | None] = contextvars.ContextVar(
    "ophyd_cs800_put_refusal_watch", default=None)


@contextlib.contextmanager
def watching() -> Iterator[RefusalWatch]:
    """Make puts started in this block report refusals to one watch (the outer one, if any)."""
    watch = _current.get()
    if watch is not None:
        yield watch
        return
    watch = RefusalWatch()
    token = _current.set(watch)
    try:
        yield watch
    finally:
        _current.reset(token)


def _fail_status(status: Any, error: PutRefusedError) -> None:
    """Fail an ophyd status with ``error`` (nothing if it is already done)."""
    if status.done:
        return
    try:
        status.set_exception(error)
    except Exception:  # InvalidState: finished meanwhile (timeout); nothing to do
        logger.debug("status %r finished before the refusal", status)


def _log(error: PutRefusedError) -> None:
    """Log a refusal nobody gets as an exception (as libca prints one)."""
    logger.error("%s", error)


# -- installation -----------------------------------------------------------------------------

_install_lock = threading.Lock()
_logged: set[str] = set()


def _log_once(key: str, level: int, message: str, *args: Any) -> None:
    """Log ``message`` the first time ``key`` is seen."""
    if key not in _logged:
        _logged.add(key)
        logger.log(level, message, *args)


def _enabled() -> bool:
    """Return False when :data:`ENV_SWITCH` says off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "off", "no", "false"}


def _params(func: Any) -> list[str]:
    """Parameter names of ``func`` (through ``functools.wraps``)."""
    try:
        return list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return []


def _names(func: Any) -> set[str]:
    """Global and attribute names the code of ``func`` uses (unwrapped)."""
    code = getattr(inspect.unwrap(func), "__code__", None)
    return set(code.co_names) if code is not None else set()


#: One replacement: (owner, attribute, test of the original, factory of the replacement).
Patch = tuple[Any, str, Callable[[Any], bool], Callable[[Any], Callable[..., Any]]]


def _patch_all(part: str, patches: list[Patch]) -> bool:
    """Replace each ``owner.attr`` by ``make(original)``.

    All of them, only if every original is what its test accepts (or already replaced); else none,
    logged once.

    Idempotent; returns True when the part is in place.
    """
    pending = []
    for owner, attr, expected, make in patches:
        where = f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', owner)}"
        original = getattr(owner, attr, None)
        if getattr(original, _MARK, False):
            continue
        if original is None or not expected(original):
            _log_once(part, logging.WARNING, "put-refusal fix not installed for %s: %s.%s is "
                      "not the function it was written for (a refused put may look like a "
                      "timeout or a success)", part, where, attr)
            return False
        pending.append((owner, attr, make, original))
    for owner, attr, make, original in pending:
        replacement = make(original)
        setattr(replacement, _MARK, True)
        setattr(owner, attr, replacement)
    return True


def install_put_error_fix() -> dict[str, bool]:
    """Install the fix (idempotent, thread-safe); returns which parts are in place.

    Parts: ``caproto`` (the threading client and its pyepics API, ophyd's caproto layer: all
    or nothing, since delivering the error to the one without the other would turn a refusal
    into a success), ``ophyd`` (``EpicsSignal.set`` status; only if ophyd is imported),
    ``pyepics`` (only if pyepics is imported). Returns ``{}`` when :data:`ENV_SWITCH` is off.
    """
    if not _enabled():
        _log_once("off", logging.INFO, "put-refusal fix off (%s)", ENV_SWITCH)
        return {}
    with _install_lock:
        done = {"caproto": _install_caproto()}
        if "ophyd" in sys.modules:
            done["ophyd"] = _install_ophyd()
        if "epics" in sys.modules:
            done["pyepics"] = _install_pyepics()
        return done


# -- caproto's threading client ---------------------------------------------------------------

def _install_caproto() -> bool:
    """Deliver a write's ``ErrorResponse`` to its waiter; ``PV.write`` raises on it."""
    import caproto as ca
    from caproto.threading import client

    def expected_process(func: Any) -> bool:
        names = _names(func)
        # caproto's own handling of ErrorResponse would make this patch unnecessary.
        return {"ioids", "WriteNotifyResponse"} <= names and "ErrorResponse" not in names

    def make_process(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def _process_command(self: Any, command: Any) -> Any:
            result = original(self, command)
            if isinstance(command, ca.ErrorResponse):
                _deliver_error(self, command, ca)
            return result
        return _process_command

    def expected_write(func: Any) -> bool:
        return {"wait", "callback", "timeout", "notify"} <= set(_params(func))

    def make_write(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def write(self: Any, data: Any, *args: Any, callback: Any = None, **kwargs: Any) -> Any:
            watch = _current.get()
            if callback is not None:  # a waiting write raises: its callback need not log
                callback = _write_callback(self.name, callback, watch, ca,
                                           quiet=bool(kwargs.get("wait", True)))
            response = original(self, data, *args, callback=callback, **kwargs)
            if isinstance(response, ca.ErrorResponse):
                error = _error_of(self.name, response)
                if watch is not None:
                    watch.refuse(error)
                raise error
            return response
        return write

    return _patch_all("caproto", [
        (client.VirtualCircuitManager, "_process_command", expected_process, make_process),
        (client.PV, "write", expected_write, make_write),
        _compat_patch(),
    ])


def _error_of(pvname: str, response: Any) -> PutRefusedError:
    """Return the exception for a caproto ``ErrorResponse``."""
    status = int(response.header.parameter2)
    return PutRefusedError(pvname, server_reason(response.error_message), status, response)


def _write_callback(pvname: str, callback: Callable[[Any], Any], watch: RefusalWatch | None,
                    ca: Any, *, quiet: bool) -> Callable[[Any], Any]:
    """Wrap ``callback`` for caproto's ``PV.write``.

    A refusal goes to ``watch`` and not to ``callback`` (callers there take any callback as
    success); without a watch ``callback`` gets the ``ErrorResponse`` and the refusal is logged
    unless ``quiet``.
    """
    def on_response(response: Any) -> Any:
        if isinstance(response, ca.ErrorResponse):
            error = _error_of(pvname, response)
            if watch is not None:
                watch.refuse(error)
                return None
            if not quiet:
                _log(error)
        return callback(response)
    return on_response


def _deliver_error(manager: Any, command: Any, ca: Any) -> None:
    """Give a write's ``ErrorResponse`` to the ``PV.write`` waiting on it.

    As caproto does with the ``WriteNotifyResponse`` of an accepted put (same ioid bookkeeping).
    """
    request = command.original_request
    pv = manager.pvs.get(command.cid)
    pvname = pv.name if pv is not None else f"channel {command.cid}"
    if request.command == _WRITE:  # a put without notify: nobody waits; never silent
        _log(_error_of(pvname, command))
        return
    if request.command != _WRITE_NOTIFY:
        return
    ioid_info = manager.ioids.get(request.parameter2)
    if ioid_info is None or not isinstance(ioid_info.get("request"), ca.WriteNotifyRequest):
        _log(_error_of(pvname, command))  # late (after its timeout) or unknown
        return
    manager.ioids.pop(request.parameter2, None)
    deadline = ioid_info.get("deadline")
    if deadline is not None and time.monotonic() > deadline:  # the write timed out already
        _log(_error_of(pvname, command))
        return
    ioid_info["response"] = command
    event = ioid_info.get("event")
    callback = ioid_info.get("callback")
    if event is not None:
        event.set()
    if callback is not None:
        try:
            manager.user_callback_executor.submit(callback, command)
        except RuntimeError:  # shutting down
            logger.debug("refusal of %s dropped at shutdown", pvname)


def _compat_patch() -> Patch:
    """Caproto's pyepics-compatible ``PV.put`` (ophyd's caproto layer) runs inside :func:`watching`.

    A refused put does not run the completion callback (nor set ``put_complete``).
    """
    from caproto.threading import pyepics_compat

    def expected(func: Any) -> bool:
        return _params(func)[:7] == ["self", "value", "wait", "timeout", "use_complete",
                                     "callback", "callback_data"]

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def put(self: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            outer = _current.get()
            with watching() as watch:
                result = original(self, value, *args, **kwargs)
            if outer is None:  # this put's own watch: a waiting put raised already
                watch.release()
            return result
        return put

    return (pyepics_compat.PV, "put", expected, make)


# -- ophyd ------------------------------------------------------------------------------------

def _install_ophyd() -> bool:
    """``EpicsSignal.set`` with put completion: a refusal fails the returned status."""
    from ophyd import signal

    def expected(func: Any) -> bool:
        return (_params(func)[:2] == ["self", "value"]
                and {"_put_complete", "put"} <= _names(func))

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def set(self: Any, value: Any, **kwargs: Any) -> Any:  # noqa: A001 (ophyd's name)
            with watching() as watch:
                status = original(self, value, **kwargs)
            watch.attach(status)
            return status
        return set

    return _patch_all("ophyd", [(signal.EpicsSignal, "set", expected, make)])


# -- pyepics ----------------------------------------------------------------------------------

_put_status = threading.local()


def _install_pyepics() -> bool:
    """Pyepics' ``ca.put``.

    A put callback with a failed status does not run the user's callback; ``put(wait=True)`` raises;
    the status reaches the watch.
    """
    from epics import ca

    def expected_event(func: Any) -> bool:
        return _params(func)[:1] == ["args"] and hasattr(ca, "_CB_PUTWAIT")

    def make_event(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def _onPutEvent(args: Any, **kwds: Any) -> Any:  # noqa: N802 (pyepics' name)
            _put_status.value = int(args.status)
            try:
                return original(args, **kwds)
            finally:
                _put_status.value = ECA_NORMAL
        return _onPutEvent

    def expected_put(func: Any) -> bool:
        return (_params(func)[:6] == ["chid", "value", "wait", "timeout", "callback",
                                      "callback_data"]
                and {"ca_array_put_callback", "_CB_PUTWAIT"} <= _names(func))

    def make_put(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def put(chid: Any, value: Any, wait: bool = False, timeout: float = 30,
                callback: Any = None, callback_data: Any = None, **kwargs: Any) -> Any:
            if not (wait or callable(callback)):
                return original(chid, value, wait=wait, timeout=timeout, **kwargs)
            outcome = _PyepicsPut(ca.name(chid), callback, _current.get(), bool(wait))
            result = original(chid, value, wait=wait, timeout=timeout, callback=outcome,
                              callback_data=callback_data, **kwargs)
            if wait and result is not None and result > 0:
                outcome.settled.wait(timeout=1.0)  # completion seen; its callback is running
                if outcome.error is not None:
                    raise outcome.error
            return result
        return put

    if not _patch_all("pyepics", [(ca, "_onPutEvent", expected_event, make_event),
                                  (ca, "put", expected_put, make_put)]):
        return False
    if not getattr(ca._CB_PUTWAIT, _MARK, False):  # ca.put reads this global at each call
        callback = ca.dbr.make_callback(ca._onPutEvent, ca.dbr.event_handler_args)
        setattr(callback, _MARK, True)
        ca._CB_PUTWAIT = callback
    return True


class _PyepicsPut:
    """The put callback given to pyepics' ``ca.put`` in place of the user's."""

    def __init__(self, pvname: str, callback: Any, watch: RefusalWatch | None,
                 wait: bool) -> None:
        """Call ``callback`` on success.

        On refusal, tell ``watch``, or leave the error for the waiting ``put`` to raise (``wait``),
        or log it.
        """
        self.pvname = pvname
        self.wait = wait
        self.callback = callback
        self.watch = watch
        self.error: PutRefusedError | None = None
        self.settled = threading.Event()

    def __call__(self, pvname: str | None = None, **kwargs: Any) -> None:
        """Pyepics' put-completion call (on a CA thread, inside ``_onPutEvent``)."""
        status = getattr(_put_status, "value", ECA_NORMAL)
        try:
            if status == ECA_NORMAL:
                if callable(self.callback):
                    self.callback(pvname=pvname, **kwargs)
                return
            from epics import ca

            self.error = PutRefusedError(self.pvname, f"{ca.message(status)} (CA status "
                                         f"{status}; libca does not pass on the IOC's reason)",
                                         status)
            if self.watch is not None:
                self.watch.refuse(self.error)
            elif not self.wait:
                _log(self.error)
        finally:
            self.settled.set()
