"""Autosave of each controller's operator settings, as synApps' ``Oxford_CS800_settings.req``.

The fields saved are those of the synApps request file (:data:`SETTINGS_FIELDS`): DEBUG,
DISABLE, RRATE, RTEMP, PTIME, CTEMP and ERATE. Each controller group has its own file,
``DIR/<prefix with ':' as '_'>settings.json`` (e.g. ``xxx_CS0_settings.json``), holding the
group's full prefix and controller number beside the values::

    {"format": "ophyd-cs800 autosave", "version": 1, "prefix": "xxx:CS0:", "controller": 411,
     "saved": "2026-12-06T01:50:00+00:00",
     "fields": {"DEBUG": "Warning", "DISABLE": "Disabled", "RRATE": 123.0, ...}}

:class:`Autosave` restores the files before the IOC serves Channel Access (so no client can
send a command first; restoring writes parameters only and never sends a command), then looks
for changes every :data:`SAVE_PERIOD` seconds and once more when the IOC stops, and writes a
changed group's file atomically (temporary file in the same directory, ``fsync``, rename).

A file that is not valid JSON, not an autosave file, or belongs to another prefix or controller
is refused with one sentence on the log (WARNING), the group keeps its defaults, and the file
is renamed to ``<name>.refused`` so nothing is lost when the next save writes a new one. A
saved value the IOC refuses (e.g. outside the control limits) keeps that field's default, with
a sentence too.

Why not ``caproto.server.autosave``: its ``AutosaveHelper`` saves one file for a whole PVGroup
tree on a fixed period (30 s), rotates dated copies, restores in a server startup hook (while
the CA server already accepts puts), restores whatever PV names of a file match without
checking whose file it is, and logs tracebacks rather than a sentence. Each of those is what
this module must not do, so it has its own small writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The fields of synApps' ``Oxford_CS800_settings.req``, in its order.
SETTINGS_FIELDS: tuple[str, ...] = ("DEBUG", "DISABLE", "RRATE", "RTEMP", "PTIME", "CTEMP",
                                    "ERATE")
#: ``format`` key of every autosave file.
FILE_FORMAT = "ophyd-cs800 autosave"
FILE_VERSION = 1
#: Seconds between two looks for changed settings.
SAVE_PERIOD = 0.5
#: Largest autosave file read (bytes); a bigger one is refused.
MAX_FILE_BYTES = 65536

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class AutosaveError(ValueError):
    """An autosave file that cannot be used; the message is one sentence."""


def default_directory() -> Path:
    """``cs800-ioc``'s default autosave directory: ``$XDG_STATE_HOME/ophyd-cs800/autosave``.

    ``XDG_STATE_HOME`` defaults to ``~/.local/state``.
    """
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "ophyd-cs800" / "autosave"


def settings_path(directory: str | os.PathLike[str], prefix: str) -> Path:
    """Return the autosave file of the group at ``prefix``.

    E.g. ``xxx:CS0:`` -> ``xxx_CS0_settings.json``.
    """
    return Path(directory) / f"{_UNSAFE.sub('_', prefix)}settings.json"


def _json_value(value: Any) -> Any:
    """Return a channel value as JSON data.

    A number as a float (whatever its flavour's type), a string as itself.
    """
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def encode_settings(prefix: str, cid: int, values: Mapping[str, Any]) -> str:
    """Return the text of the autosave file of ``prefix`` holding ``values``.

    ``cid`` is the controller number.
    """
    return json.dumps({
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "prefix": prefix,
        "controller": cid,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fields": {name: _json_value(values[name]) for name in SETTINGS_FIELDS if name in values},
    }, indent=1) + "\n"


def decode_settings(text: str, prefix: str, cid: int, source: str = "the file") -> dict[str, Any]:
    """Check an autosave file's text and return its ``{field: value}``.

    ``prefix`` and ``cid`` are the group's; a file of another prefix, or of another controller
    number when both are known (non-zero), is refused. Raises :class:`AutosaveError` (one
    sentence naming ``source``) for anything but a well-formed file of this group. Fields
    other than :data:`SETTINGS_FIELDS` are ignored.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AutosaveError(f"{source} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise AutosaveError(f"{source} is not an {FILE_FORMAT} file")
    if data.get("version") != FILE_VERSION:
        raise AutosaveError(f"{source} has version {data.get('version')!r}; this IOC reads "
                            f"version {FILE_VERSION}")
    owner, owner_cid = data.get("prefix"), data.get("controller")
    if owner != prefix:
        raise AutosaveError(f"{source} belongs to {owner!r}, not {prefix!r}")
    if not isinstance(owner_cid, int) or (owner_cid and cid and owner_cid != cid):
        raise AutosaveError(f"{source} belongs to controller {owner_cid!r}, not {cid}")
    fields = data.get("fields")
    if not isinstance(fields, dict):
        raise AutosaveError(f"{source} has no 'fields' table")
    return {name: fields[name] for name in SETTINGS_FIELDS if name in fields}


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename.

    A reader (or a crash) sees the old file or the new one, never a part.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Autosave:
    """Restore and save the settings of controller groups (see the module docstring).

    Parameters
    ----------
    groups : Iterable[Any]
        The IOC's :class:`~sim_ioc.ioc.CS800ControllerGroup` objects (each has
        ``prefix``, ``config.cid`` and one channel attribute per field, lower case).
    directory : str | os.PathLike[str]
        Where the files live; created (with parents) by :meth:`restore`.
    period : float, optional
        Seconds between looks for changes (default :data:`SAVE_PERIOD`).
    """

    def __init__(self, groups: Iterable[Any], directory: str | os.PathLike[str], *,
                 period: float = SAVE_PERIOD) -> None:
        """Prepare; nothing is read or written until :meth:`restore`."""
        self.groups = list(groups)
        self.directory = Path(directory)
        self.period = period
        self._saved: dict[str, dict[str, Any]] = {}
        self._failing: set[str] = set()
        self._task: asyncio.Task | None = None
        self._restored = False

    @staticmethod
    def values(group: Any) -> dict[str, Any]:
        """Return the current ``{field: value}`` of ``group``."""
        return {name: _json_value(getattr(group, name.lower()).value) for name in SETTINGS_FIELDS}

    def path(self, group: Any) -> Path:
        """Return the autosave file of ``group``."""
        return settings_path(self.directory, group.prefix)

    async def restore(self) -> None:
        """Create the directory and restore every group from its file (if any).

        Every problem with a file or a value is logged and keeps the defaults.

        Raises
        ------
        OSError
            With a sentence naming the directory, only if the directory cannot be created.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"the autosave directory {self.directory} cannot be created: "
                          f"{exc.strerror or exc}") from None
        for group in self.groups:
            await self._restore_group(group)
            self._saved[group.prefix] = self.values(group)
        self._restored = True

    async def _restore_group(self, group: Any) -> None:
        path = self.path(group)
        if not path.exists():
            log.info("%s no autosave file %s yet; defaults in force", group.prefix, path)
            return
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise AutosaveError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
            text = path.read_text(encoding="utf-8", errors="strict")
            fields = decode_settings(text, group.prefix, group.config.cid, str(path))
        except (OSError, UnicodeDecodeError, AutosaveError) as exc:
            self._refuse(group, path, exc)
            return
        restored = []
        for name, value in fields.items():
            channel = getattr(group, name.lower())
            try:
                choices = getattr(channel, "enum_strings", None)
                if choices and value not in choices:
                    raise ValueError(f"not one of {', '.join(choices)}")
                await channel.write(value)
            except Exception as exc:  # noqa: BLE001 (verify_value's refusal, a bad type)
                log.warning("%s autosaved %s=%r refused (%s); its default %r is kept",
                            group.prefix, name, value, exc, _json_value(channel.value))
            else:
                restored.append(f"{name}={_json_value(channel.value)}")
        log.info("%s restored %s from %s", group.prefix, " ".join(restored) or "nothing", path)

    def _refuse(self, group: Any, path: Path, exc: BaseException) -> None:
        kept = path.with_name(path.name + ".refused")
        try:
            os.replace(path, kept)
            where = f"the file is renamed {kept.name}"
        except OSError:
            where = "the file could not be renamed"
        reason = str(exc) if isinstance(exc, AutosaveError) else f"{path} cannot be read ({exc})"
        log.warning("autosave of %s refused: %s; the defaults are kept and %s", group.prefix,
                    reason, where)

    def save_changed(self) -> int:
        """Write the file of every group whose settings changed since the last save.

        Returns the number of files written (none before :meth:`restore`). A write that fails
        is logged once (until it works again) and tried again next time.
        """
        written = 0
        if not self._restored:
            return written
        for group in self.groups:
            values = self.values(group)
            if self._saved.get(group.prefix) == values:
                continue
            path = self.path(group)
            try:
                write_atomically(path, encode_settings(group.prefix, group.config.cid, values))
            except OSError as exc:
                if group.prefix not in self._failing:
                    self._failing.add(group.prefix)
                    log.warning("autosave of %s to %s failed (%s); retrying every %g s",
                                group.prefix, path, exc, self.period)
                continue
            self._failing.discard(group.prefix)
            self._saved[group.prefix] = values
            written += 1
        return written

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                self.save_changed()
            except Exception:  # noqa: BLE001 (saving must never stop the IOC)
                log.exception("autosave failed")

    def start(self) -> None:
        """Start saving changes in the background (call after :meth:`restore`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the background task and save what changed since its last pass."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.save_changed()
