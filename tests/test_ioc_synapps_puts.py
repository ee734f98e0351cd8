"""Issue 10 items 3 and 4 in both flavours, over Channel Access against subprocess IOCs.

* Enum puts outside their strings (TURBO=-1, DISABLE=-3, DEBUG=7, as integers of either CA
  type, or an unknown string) are refused with a sentence naming the choices; no command is
  sent; the PV keeps its value and stays readable.
* Limit fields (.HOPR .LOPR .DRVH .DRVL) cannot be written: the sentence says the limits are
  the IOC's, the limits are unchanged, and what the IOC accepts afterwards is unchanged
  (refused outside in the fixed flavour, clamped in the synapps flavour).
"""

from __future__ import annotations

import pytest
from caproto import ChannelType, ErrorResponseReceived


@pytest.fixture
def ioc(either_flavor_ioc):
    """The session IOC (fixed flavour), then a synapps-flavour one (tests/conftest.py)."""
    return either_flavor_ioc


def _refusal(ioc, pv: str, value, data_type=None) -> str:
    with pytest.raises(ErrorResponseReceived) as info:
        ioc.write(pv, value, data_type=data_type)
    return bytes(info.value.args[0].error_message).rstrip(b"\0").decode()


def _sent(ioc, command: str) -> int:
    return ioc.log_text(10_000_000).count(f"sent {command} ")


@pytest.mark.parametrize("name, value, data_type, choices", [
    ("TURBO", -1, ChannelType.LONG, "accepts 0 (Off), 1 (On)"),
    ("TURBO", -1, ChannelType.ENUM, "accepts 0 (Off), 1 (On)"),
    ("TURBO", 2, ChannelType.LONG, "accepts 0 (Off), 1 (On)"),
    ("TURBO", "Maybe", None, "accepts 0 (Off), 1 (On)"),
    ("DISABLE", -3, ChannelType.LONG, "accepts 0 (Enabled), 1 (Disabled)"),
    ("DEBUG", 7, ChannelType.LONG, "accepts 0 ("),
])
def test_an_enum_put_outside_its_strings_is_refused(ioc, name, value, data_type, choices):
    pv = ioc.controller_prefix(0) + name
    before = ioc.read(pv).data
    turbo_sent = _sent(ioc, "TURBO")
    message = _refusal(ioc, pv, value, data_type)
    assert f"{pv} {choices}" in message and "nothing was sent" in message
    assert list(ioc.read(pv).data) == list(before)       # readable, unchanged
    assert _sent(ioc, "TURBO") == turbo_sent              # no command went out


def test_a_valid_enum_put_by_index_still_works(ioc):
    pv = ioc.controller_prefix(0) + "DEBUG"
    before = ioc.read(pv, data_type=ChannelType.LONG).data[0]
    try:
        ioc.write(pv, 3, data_type=ChannelType.LONG)
        assert ioc.read(pv, data_type=ChannelType.LONG).data[0] == 3
    finally:
        ioc.write(pv, int(before), data_type=ChannelType.LONG)


_LIMIT_WRITES = {"HOPR": 1000.0, "LOPR": -5.0, "DRVH": 999.0, "DRVL": -1.0}


@pytest.mark.parametrize("name, field", [
    *((name, field) for name in ("RTEMP", "CTEMP", "RRATE", "PTIME", "ERATE")
      for field in _LIMIT_WRITES),
    ("TEMP", "HOPR"), ("TEMP", "LOPR"),    # an ai has no DRVH/DRVL
])
def test_limit_fields_cannot_be_written(ioc, name, field):
    value = _LIMIT_WRITES[field]
    pv = ioc.controller_prefix(0) + name
    before = ioc.read(pv, data_type=ChannelType.CTRL_DOUBLE).metadata
    limits = (before.lower_ctrl_limit, before.upper_ctrl_limit)
    message = _refusal(ioc, f"{pv}.{field}", value, ChannelType.DOUBLE)
    assert f"{pv}.{field} cannot be written: the limits of {pv} are fixed by the IOC" in message
    after = ioc.read(pv, data_type=ChannelType.CTRL_DOUBLE).metadata
    assert (after.lower_ctrl_limit, after.upper_ctrl_limit) == limits
    assert ioc.read(f"{pv}.{field}").data[0] != value


def test_what_rtemp_accepts_is_unchanged_after_a_limit_write(ioc):
    pv = ioc.controller_prefix(0) + "RTEMP"
    high = ioc.read(pv, data_type=ChannelType.CTRL_DOUBLE).metadata.upper_ctrl_limit
    _refusal(ioc, pv + ".HOPR", 1000.0, ChannelType.DOUBLE)
    before = ioc.read(pv).data[0]
    if ioc.flavor == "fixed":
        message = _refusal(ioc, pv, 999.0)
        assert "out of range" in message and "nothing was sent" in message
        assert ioc.read(pv).data[0] == before
    else:
        try:
            ioc.write(pv, 999.0)
            assert ioc.read(pv).data[0] == pytest.approx(high)    # clamped to DRVH 360
        finally:
            ioc.write(pv, before)
