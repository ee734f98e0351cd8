"""caproto PV groups whose record fields (``.EGU``, ``.PROC``, ``.SEVR``, ...) are built on demand.

caproto builds every field of a ``pvproperty(record="ai")`` (about 80 channels per record)
when the group is created. With 50 controllers of 70 records each that costs ~10 s and ~450 MB
before the first datagram. :class:`LazyRecordGroup` keeps the record type (reported as ``.RTYP``
and used for the field set) but creates the field group the first time a client asks for one
field of that record (a CA search for ``PV.FIELD``). Behaviour of the fields themselves is
caproto's, unchanged: ``.PROC`` re-writes the current value (so the putter runs), ``.EGU``
and ``.PREC`` follow the PV's metadata, ``.SEVR``/``.STAT`` follow its alarm.
"""

from __future__ import annotations

from typing import Any

from caproto import AlarmStatus
from caproto.server import PVGroup
from caproto.server.server import get_record_class

from sim_ioc.put_refusal import RefusalSentenceMixin

#: Record fields filled from the parent's metadata when the field group is built.
_STATIC_FIELDS = (
    ("EGU", "units"),
    ("HOPR", "upper_disp_limit"),
    ("LOPR", "lower_disp_limit"),
    ("DRVH", "upper_ctrl_limit"),
    ("DRVL", "lower_ctrl_limit"),
)

#: Limit fields a client may read but not write: what the IOC accepts must not be widened
#: (or narrowed) over CA. The limits are the IOC's, per flavour.
LIMIT_FIELDS = ("HOPR", "LOPR", "DRVH", "DRVL")

#: EPICS base ``menuAlarmStat`` (caproto 1.3 ships only the first 16, up to SOFT).
EPICS_ALARM_STAT: tuple[str, ...] = tuple(AlarmStatus(i).name for i in range(len(AlarmStatus)))


class LazyFieldsMixin(RefusalSentenceMixin):
    """Mixin for caproto ``Pvproperty*`` data classes: create ``field_inst`` on first use.

    Also a :class:`~sim_ioc.put_refusal.RefusalSentenceMixin`: a put caproto cannot convert is
    refused with a sentence.
    """

    # provided by the caproto channel class this is mixed into
    name: str
    pvname: str

    def __init__(self, *args: Any, record: Any = None, **kwargs: Any) -> None:
        """Create the channel without its field group; remember the record type for later."""
        kwargs["record"] = None  # no field group now: _build_fields makes it on first use
        super().__init__(*args, **kwargs)
        self.record_type = record
        if record is not None:
            self.reported_record_type = record
        self._lazy_record = record

    def _build_fields(self) -> None:
        field_class = get_record_class(self._lazy_record)
        self.field_inst = field_class(prefix="", parent=self, name=f"{self.name}.fields")
        self.fields = self.field_inst.pvdb
        # caproto links .PREC and .DESC to the parent; copy the rest of the metadata once.
        self.sync_static_fields()
        # caproto updates .SEVR/.STAT only when the alarm changes later; start them in step
        # with the alarm the record already has (e.g. INVALID/UDF before the first datagram).
        alarm = getattr(self, "alarm", None)
        fields = self.field_inst
        stat = getattr(fields, "alarm_status", None)
        if stat is not None:  # caproto's menu stops at SOFT: .STAT could not show UDF
            stat._data["enum_strings"] = EPICS_ALARM_STAT
        for name in LIMIT_FIELDS:  # CA puts refused; the IOC's own writes (getters) still work
            if name in self.fields:
                self.fields[name].write_from_dbr = _limit_write_refuser(self.pvname, name)
        if "PROC" in self.fields:  # a record never processed reads 0 (caproto: an empty array)
            self.fields["PROC"]._data["value"] = 0
        for attr, prop in (("severity", "current_alarm_severity"), ("status", "alarm_status")):
            channel = getattr(fields, prop, None)
            if alarm is None or channel is None:
                continue
            strings = channel.enum_strings
            index = int(getattr(alarm, attr))
            if 0 <= index < len(strings):
                channel._data["value"] = strings[index]

    def sync_static_fields(self) -> None:
        """Copy EGU, HOPR/LOPR, DRVH/DRVL from the channel's metadata into built fields.

        Call after changing the channel's units or limits; nothing to do if the fields were
        never asked for (they are copied when built).
        """
        if self.field_inst is None:
            return
        for field, attr in _STATIC_FIELDS:
            if field in self.fields and hasattr(self, attr):
                self.fields[field]._data["value"] = getattr(self, attr)

    def get_field(self, field: str):
        """Return the channel of record field ``field`` (``""``/``"VAL"``: the PV itself).

        Raises ``KeyError`` for a field the record type does not have (the CA search then
        fails, as for an unknown PV).
        """
        if not field or field == "VAL":
            return self
        if self.field_inst is None and self._lazy_record is not None:
            self._build_fields()
        return self.fields[field]


def _limit_write_refuser(record: str, field: str):
    """Return a ``write_from_dbr`` for limit field ``field`` of ``record``.

    Every CA put is refused with a sentence (the record's limits are the IOC's).
    """

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise ValueError(f"{record}.{field} cannot be written: the limits of {record} are "
                         f"fixed by the IOC (read {field} to see them); nothing was changed")

    return refuse


def _lazy(cls: type) -> type:
    return type(f"Lazy{cls.__name__}", (LazyFieldsMixin, cls), {"__doc__": cls.__doc__})


class LazyRecordGroup(PVGroup):
    """A ``PVGroup`` whose ``pvproperty(record=...)`` channels build their fields on demand."""

    type_map = {key: _lazy(cls) for key, cls in PVGroup.type_map.items()}
    type_map_read_only = {key: _lazy(cls) for key, cls in PVGroup.type_map_read_only.items()}
