"""The safe state of a solenoid program's outputs, put at once after a failure and retried.

:class:`SafeState` is what the ``soldrv`` command and the :class:`soldrv.flyer.SolenoidCycler`
both use when a mode stops on a hardware failure (or a program error): the safe state is
written at once; if that fails too (the valve bank is unreachable), a background thread named
``soldrv-safe`` tries again every ``retry_period`` seconds until a write succeeds, the retry is
cancelled (a new mode or flight, the safe state written by other means) or the owner closes.

"Holds" means every write of the safe state returned without an error (for a Channel Access
backend: the puts went out on a connected channel). How soon a bank that comes back is seen
depends on the backend: ophyd waits up to its connection timeout in each put, and caproto's
client searches for lost channels with a back-off of up to
``CAPROTO_CLIENT_MAX_RETRY_SEARCHES_INTERVAL_SEC`` (5 s by default).

No ophyd or bluesky here (the hardware is anything with ``strobe``/``set_point``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from soldrv.backends import (
    OutputStates,
    apply_safe_state,
    resolve_dtoa_address,
    resolve_solenoid,
)
from soldrv.program import Program

__all__ = ["DEFAULT_RETRY_PERIOD", "SafeState"]

DEFAULT_RETRY_PERIOD = 0.2
"""Seconds between two attempts to write the safe state while it does not hold."""


class _Validator:
    """Hardware that accepts everything: used to validate a safe state without I/O."""

    def strobe(self, commands: object) -> None:
        """Ignore."""

    def set_point(self, address: int, value: int) -> None:
        """Ignore."""


class SafeState:
    """Write the safe state of ``program``'s outputs to ``hardware``, retrying after failures.

    Parameters
    ----------
    hardware : Any
        The backend (``strobe(commands)``, ``set_point(address, value)``).
    program : Program
        Gives the solenoid commands and DtoA addresses.
    solenoids : OutputStates | None, optional
        {solenoid name, ``"sol<i>"`` or index: 0 closed / 1 open}; None means every
        solenoid closed. Solenoids not named are left alone.
    dtoa : OutputStates | None, optional
        {DtoA name or address: value} also written (default: none).
    retry_period : float, optional
        Seconds between attempts while retrying (> 0).
    on_held : Callable[[], None] | None, optional
        Called (in the thread that wrote it) after each successful write.

    Notes
    -----
    Raises KeyError (unknown name) or ValueError (a state other than 0/1, a bad period) here,
    so a bad safe state is refused before anything runs. Thread-safe.
    """

    def __init__(
        self,
        hardware: Any,
        program: Program,
        solenoids: OutputStates | None = None,
        dtoa: OutputStates | None = None,
        *,
        retry_period: float = DEFAULT_RETRY_PERIOD,
        on_held: Callable[[], None] | None = None,
    ) -> None:
        """Resolve and validate the safe state; see the class docstring."""
        if not retry_period > 0:
            raise ValueError(f"retry_period must be > 0 s, got {retry_period}")
        self.hardware = hardware
        self.program = program
        self.solenoids: dict[int, int] = (
            {i: 0 for i in range(len(program.solenoids))}
            if solenoids is None
            else {resolve_solenoid(program, k): int(v) for k, v in solenoids.items()}
        )
        self.dtoa: dict[int, int] = {
            resolve_dtoa_address(program, k): int(v) for k, v in (dtoa or {}).items()
        }
        apply_safe_state(_Validator(), program, self.solenoids, self.dtoa)  # refuse bad states now
        self.retry_period = float(retry_period)
        self.on_held = on_held
        self.attempts = 0
        """Writes attempted so far (successful or not)."""
        self.last_error: Exception | None = None
        """The error of the last failed attempt; None after a success."""
        self._lock = threading.Lock()  # one write at a time
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def apply(self) -> None:
        """Write the safe state once; the hardware's exception propagates if a write fails."""
        with self._lock:
            self.attempts += 1
            try:
                apply_safe_state(self.hardware, self.program, self.solenoids, self.dtoa)
            except Exception as e:
                self.last_error = e
                raise
            self.last_error = None
        if self.on_held is not None:
            self.on_held()

    @property
    def retrying(self) -> bool:
        """True while the background thread keeps trying to write the safe state."""
        t = self._thread
        return t is not None and t.is_alive()

    def put_after_failure(self) -> str:
        """Write the safe state now; if that fails, keep retrying in the background.

        Returns a clause for the failure's sentence: that the safe state was written, or that
        writing it failed (with the error) and is being retried until it holds.
        """
        self.cancel()
        try:
            self.apply()
        except Exception as e:  # noqa: BLE001 - reported in the returned clause, then retried
            self._start_retrying()
            return (
                f"putting the safe state failed too ({type(e).__name__}: {e}); it is retried "
                f"every {self.retry_period:g} s until it holds"
            )
        return "the hardware was put in the safe state"

    def _start_retrying(self) -> None:
        self._cancel = threading.Event()
        self._thread = threading.Thread(
            target=self._retry, args=(self._cancel,), name="soldrv-safe", daemon=True
        )
        self._thread.start()

    def _retry(self, cancel: threading.Event) -> None:
        while not cancel.wait(self.retry_period):
            try:
                self.apply()
            except Exception:  # noqa: BLE001 - kept in last_error; try again
                continue
            return

    def cancel(self, timeout: float = 10.0) -> bool:
        """Stop retrying; wait up to ``timeout`` s for an attempt in progress to end.

        Returns True when no retry thread runs any more. Idempotent.
        """
        self._cancel.set()
        t = self._thread
        if t is None or t is threading.current_thread():
            return True
        t.join(timeout)
        return not t.is_alive()
