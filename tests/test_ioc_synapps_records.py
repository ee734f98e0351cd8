"""The 86 records of the synApps C IOC, read over Channel Access from both flavours.

One synapps-flavour IOC (subprocess) for the module, and the session IOC (fixed flavour). Every
name of :data:`sim_ioc.records.C_IOC_RECORDS` must connect and read on both; the helpers hold
the C IOC's signed bytes; ``.PROC`` of a record never processed reads 0.
"""

from __future__ import annotations

import pytest
from caproto import ChannelType
from caproto.threading.client import Context

from sim_ioc.records import C_IOC_RECORDS, HELPER_RECORDS, split_word


def test_the_table_holds_the_86_records_of_the_c_ioc():
    assert len(C_IOC_RECORDS) == 86
    for name in ("DISABLE", "DEBUG", "TEMP", "ALARM", "RTEMPH", "RTEMPL", "RRATECH", "ERATECL",
                 "PTIMEH", "CTEMPL", "TURBOCMD", "command_port"):
        assert name in C_IOC_RECORDS
    assert len(HELPER_RECORDS) == 20


def test_split_word_gives_the_calcouts_signed_bytes():
    assert split_word(10000) == (39, 16)        # RTEMP 100 K
    assert split_word(36000) == (-116, -96)     # RTEMP 360 K
    assert split_word(32767) == (127, -1)       # CTEMP 327.67 K
    assert split_word(360) == (1, 104)          # RRATE 360 K/h


def test_every_record_of_the_c_ioc_reads_on_both_flavours(either_flavor_ioc):
    prefix = either_flavor_ioc.controller_prefix(0)
    ctx = Context()
    try:
        pvs = ctx.get_pvs(*(prefix + name for name in C_IOC_RECORDS), timeout=10.0)
        values = {name: pv.read(timeout=10.0).data for name, pv in zip(C_IOC_RECORDS, pvs,
                                                                        strict=True)}
    finally:
        ctx.disconnect()
    assert len(values) == 86
    assert all(len(data) >= 1 for data in values.values())
    assert values["command_port"][0] == 0
    # The helpers hold the bytes of their parameter's raw word (RTEMP ESLO 0.01).
    rtemp = float(either_flavor_ioc.read(prefix + "RTEMP").data[0])
    high, low = split_word(round(rtemp * 100))
    assert (values["RTEMPH"][0], values["RTEMPL"][0]) == (high, low)
    assert (values["RTEMPCH"][0], values["RTEMPCL"][0]) == (high, low)


@pytest.mark.parametrize("record", ["STOP", "RTEMPH", "ERATECL", "command_port", "TEMP"])
def test_proc_of_a_record_never_processed_reads_zero(either_flavor_ioc, record):
    # STOP: no test processes it on the session IOC (the device never sends Stop).
    reading = either_flavor_ioc.read(either_flavor_ioc.controller_prefix(0) + record + ".PROC")
    assert list(reading.data) == [0]


def test_a_put_to_a_parameter_processes_its_helpers(synapps_sim_ioc):
    prefix = synapps_sim_ioc.controller_prefix(0)
    try:
        synapps_sim_ioc.write(prefix + "RTEMP", 250.0)
        assert synapps_sim_ioc.read(prefix + "RTEMPH").data[0] == split_word(25000)[0]
        assert synapps_sim_ioc.read(prefix + "RTEMPCL").data[0] == split_word(25000)[1]
        synapps_sim_ioc.write(prefix + "PTIME", 300)
        assert (synapps_sim_ioc.read(prefix + "PTIMEH").data[0],
                synapps_sim_ioc.read(prefix + "PTIMEL").data[0]) == (1, 44)
    finally:
        synapps_sim_ioc.write(prefix + "RTEMP", 100.0)
        synapps_sim_ioc.write(prefix + "PTIME", 1)


def test_helpers_are_computed_only(synapps_sim_ioc):
    from caproto import ErrorResponseReceived

    prefix = synapps_sim_ioc.controller_prefix(0)
    with pytest.raises(ErrorResponseReceived):
        synapps_sim_ioc.write(prefix + "RTEMPH", 5, data_type=ChannelType.DOUBLE)
    assert synapps_sim_ioc.read(prefix + "RTEMPH").data[0] == split_word(10000)[0]
