"""The package imports and declares its console scripts."""

import importlib
import importlib.metadata

import pytest


@pytest.mark.parametrize("name", ["ophyd_cs800", "sim_ioc", "soldrv"])
def test_packages_import(name):
    assert importlib.import_module(name).__doc__


def test_console_scripts_declared():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    for script in ("cs800-demo", "cs800-ioc", "cs800-sim", "cs800-sim-ioc", "cs800-discover",
                   "solfmt", "soldump",
                   "soldrv"):
        assert script in eps, script
