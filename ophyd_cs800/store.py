"""Where runs are kept: a local Tiled catalog in a directory, written by ``TiledWriter``.

``open_catalog(DIR)`` opens (creating on first use) a Tiled catalog kept entirely in ``DIR``:

* ``DIR/catalog.db`` -- the catalog (SQLite): runs, streams, metadata;
* ``DIR/tables.db`` -- the event tables (SQLite), where ``TiledWriter`` appends the readings;
* ``DIR/data/`` -- file storage for arrays.

It returns a Tiled client served in-process (no server to start, nothing listens on a port).
``open_catalog("http://host:8000")`` instead returns ``tiled.client.from_uri`` of a Tiled
server, the same kind of object. :func:`subscribe_store` subscribes a ``TiledWriter`` (package
``bluesky-tiled-plugins``) to a RunEngine, so every run lands in the catalog;
:func:`serve_command` is the ``tiled serve`` command that browses the same directory in Tiled's
web UI.

Tiled and ``bluesky-tiled-plugins`` are the ``[data]`` extra (``pip install
'ophyd-cs800[data]'``); without them the device, IOC and solenoid tools work as before and
these functions raise :class:`StoreUnavailableError` with that sentence.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: File names inside a store directory.
CATALOG_FILE = "catalog.db"
TABLES_FILE = "tables.db"
DATA_DIR = "data"

logger = logging.getLogger(__name__)

#: Events of one stream written to the store together (and the rest at the end of the run).
WRITE_BATCH = 50
#: Descriptors of stopped runs remembered to recognise events that come after the stop.
CLOSED_DESCRIPTORS_KEPT = 1000
#: Seconds the writer may take at interpreter exit to write what is still queued.
EXIT_FLUSH_S = 60.0

INSTALL_HINT = "pip install 'ophyd-cs800[data]' (from a checkout: pip install -e '.[data]')"


class StoreUnavailableError(ImportError):
    """The Tiled store needs the ``[data]`` extra, which is not installed."""


def _require_tiled(*, local: bool) -> None:
    """Raise :class:`StoreUnavailableError` (one sentence) when Tiled or its writer is missing.

    ``local``: also what a catalog served in this process needs (Tiled's catalog and app).
    """
    try:
        import bluesky_tiled_plugins  # noqa: F401
        import tiled.client  # noqa: F401

        if local:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import tiled.catalog  # noqa: F401
                import tiled.server.app  # noqa: F401
    except ImportError as exc:
        raise StoreUnavailableError(
            f"saving runs needs Tiled and bluesky-tiled-plugins ({exc.name or exc} is not "
            f"installed): {INSTALL_HINT}") from None


def default_data_dir() -> Path:
    """Return the per-user store directory.

    ``$XDG_DATA_HOME/ophyd-cs800/runs`` (``~/.local/share``).
    """
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "ophyd-cs800" / "runs"


def is_uri(where: str | os.PathLike[str]) -> bool:
    """Return True for an ``http://`` or ``https://`` address of a Tiled server."""
    return str(where).startswith(("http://", "https://"))


def _storage_uris(directory: Path) -> tuple[str, list[str]]:
    """Return the catalog URI and the writable storage (files, tables) of a store directory."""
    directory = directory.resolve()
    return (f"sqlite:///{directory / CATALOG_FILE}",
            [str(directory / DATA_DIR), f"sqlite:///{directory / TABLES_FILE}"])


def open_catalog(where: str | os.PathLike[str] | None = None, **from_uri_kwargs: Any) -> Any:
    """Return a Tiled client over the store ``where``.

    ``where`` is a directory (default :func:`default_data_dir`).

    A directory is created with its catalog on first use and served in this process. An
    ``http(s)://`` address is opened with ``tiled.client.from_uri(where, **from_uri_kwargs)``.

    Parameters
    ----------
    where : str or os.PathLike or None, optional
        A store directory (default :func:`default_data_dir`) or an ``http(s)://`` address.
    **from_uri_kwargs
        Passed to ``tiled.client.from_uri`` for an address (e.g. ``api_key``).

    Returns
    -------
    tiled.client.container.Container
        ``client[uid]`` is a run; ``client.values().last()`` the newest.

    Raises
    ------
    StoreUnavailableError
        (One sentence.) When Tiled or its writer is not installed.
    NotADirectoryError
        If ``where`` is a file.
    """
    remote = where is not None and is_uri(where)
    _require_tiled(local=not remote)
    if remote:
        from tiled.client import from_uri

        return from_uri(str(where), **from_uri_kwargs)
    directory = Path(where).expanduser() if where is not None else default_data_dir()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"the store {directory} is a file, not a directory: give a "
                                 "directory (created on first use) or an http(s):// address")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / DATA_DIR).mkdir(exist_ok=True)
    catalog_uri, storage = _storage_uris(directory)
    from tiled.catalog import from_uri as catalog_from_uri
    from tiled.client import Context, from_context
    from tiled.server.app import build_app

    logging.getLogger("tiled.server.app").setLevel(logging.WARNING)  # no "Tiled version ..."
    catalog = catalog_from_uri(catalog_uri, writable_storage=storage,
                               init_if_not_exists=not (directory / CATALOG_FILE).exists())
    with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2
        warnings.simplefilter("ignore")
        context = Context.from_app(build_app(catalog))
    return from_context(context)


def subscribe_store(RE: Any, where: str | os.PathLike[str] | None = None) -> Store:  # noqa: N803
    """Subscribe a ``TiledWriter`` on the store ``where`` to ``RE``; returns the :class:`Store`.

    Documents are handled one at a time, in the order they were emitted, by a writer thread
    of their own (see :class:`QueuedWriter`); a stream's events are written every
    :data:`WRITE_BATCH` events and at the end of the run. ``store.flush()`` waits until
    everything emitted so far is handled (do that before reading a run just recorded); at
    interpreter exit the writer finishes its queue (at most :data:`EXIT_FLUSH_S` s) before
    the in-process Tiled app stops.
    """
    client = open_catalog(where)
    from bluesky_tiled_plugins import TiledWriter

    writer = QueuedWriter(TiledWriter(client, batch_size=WRITE_BATCH))
    RE.subscribe(writer)
    location = str(where) if where is not None else str(default_data_dir())
    return Store(client=client, writer=writer, where=location)


class QueuedWriter:
    """Passes ``(name, doc)`` to ``callback`` from one thread of its own, in emission order.

    Monitor streams emit their events from Channel Access callback threads, the RunEngine the
    others from its own. Writing there would hold those threads (and delay the device's own
    monitors) for as long as each write to the store takes, and ``TiledWriter`` is not
    thread-safe; so documents are queued and written by one daemon thread. A document the
    store refuses is logged (``ophyd_cs800.store`` logger, one sentence) and counted in
    :attr:`failures`; the writer goes on with the next.

    bluesky emits a monitor's event on the thread of the signal's callback, so one already
    being built when the run unsubscribes can come after the run's stop document (seen in
    about one run in a few hundred with 20 Hz monitors). ``TiledWriter`` has closed that run
    by then and would fail with a bare ``KeyError`` of the descriptor's uid; such an event is
    not passed on but counted in :attr:`late_events` and logged at INFO level in one sentence.
    """

    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.failures = 0
        #: Events that came after their run's stop document and were not written.
        self.late_events = 0
        self._runs: dict[str, tuple[str, str]] = {}  # open descriptor uid -> (run uid, stream)
        self._closed: OrderedDict[str, str] = OrderedDict()  # closed descriptor uid -> stream
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._thread = threading.Thread(target=self._drain, daemon=True, name="tiled-writer")
        self._thread.start()
        # Threading's exit hooks run last-registered first: this one before the hook that
        # stops the in-process Tiled app (registered when the catalog was opened).
        threading._register_atexit(self.flush, EXIT_FLUSH_S)  # type: ignore[attr-defined]

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Queue one document (returns at once)."""
        self._queue.put((name, doc))

    def _drain(self) -> None:
        while True:
            name, doc = self._queue.get()
            try:
                if self._is_late(name, doc):
                    continue
                self.callback(name, doc)
            except Exception as exc:
                self.failures += 1
                logger.error("the store did not take a %s document: %s: %s", name,
                             type(exc).__name__, exc)
            finally:
                self._queue.task_done()

    def _is_late(self, name: str, doc: dict[str, Any]) -> bool:
        """Track runs and descriptors; True for an event (page) of a run already stopped."""
        if name == "descriptor":
            self._runs[doc["uid"]] = (doc["run_start"], doc.get("name", "?"))
        elif name == "stop":
            for uid, (run, stream) in list(self._runs.items()):
                if run == doc["run_start"]:
                    del self._runs[uid]
                    self._closed[uid] = stream
            while len(self._closed) > CLOSED_DESCRIPTORS_KEPT:
                self._closed.popitem(last=False)
        elif name in ("event", "event_page") and doc.get("descriptor") in self._closed:
            self.late_events += 1
            logger.info("not stored: a %s event that came after its run's stop document "
                        "(bluesky emits monitor events from the signal's callback thread)",
                        self._closed[doc["descriptor"]])
            return True
        return False

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait up to ``timeout`` s until every document queued so far is written."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks


@dataclass
class Store:
    """A store subscribed to a RunEngine: the Tiled ``client``, its ``writer``, ``where``."""

    client: Any
    writer: QueuedWriter
    where: str

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every document emitted so far is in the store; False on timeout."""
        return self.writer.flush(timeout)

    def run(self, uid: str) -> Any:
        """Return the stored run ``uid`` (after :meth:`flush`)."""
        self.flush()
        return self.client[uid]


def serve_command(directory: str | os.PathLike[str], *, port: int = 8000,
                  host: str = "127.0.0.1", api_key: str | None = None) -> list[str]:
    """Return the ``tiled serve catalog`` command line serving the store ``directory`` (HTTP).

    Browse it at ``http://host:port/`` (Tiled's web UI) or open it with
    ``open_catalog("http://host:port", api_key=...)``. Without ``api_key`` the server is
    public (read-only use on a trusted host).
    """
    catalog_uri, storage = _storage_uris(Path(directory).expanduser())
    command = ["tiled", "serve", "catalog", catalog_uri]
    for item in storage:
        command += ["-w", item]
    command += ["--host", host, "--port", str(port)]
    command += ["--api-key", api_key] if api_key else ["--public"]
    return command


def read_run_summary(run: Any, key: str = "cs0") -> dict[str, Any]:
    """Summarise a stored run.

    The number of primary events, the last ``key`` reading and the streams of the run.
    """
    primary = run["primary"]
    values = primary[key].read()
    return {
        "uid": run.metadata["start"]["uid"],
        "events": len(values),
        "last": float(values[-1]) if len(values) else None,
        "streams": list(run),
        "exit_status": (run.metadata.get("stop") or {}).get("exit_status"),
        "reason": (run.metadata.get("stop") or {}).get("reason", ""),
    }


__all__ = [
    "CATALOG_FILE",
    "QueuedWriter",
    "Store",
    "StoreUnavailableError",
    "default_data_dir",
    "is_uri",
    "open_catalog",
    "read_run_summary",
    "serve_command",
    "subscribe_store",
]
