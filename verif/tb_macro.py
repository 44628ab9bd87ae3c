"""cocotb tests of the AXELRAM macro, one per scenario in :mod:`verif.scenarios`.

This module runs inside the simulator; ``verif/test_macro.py`` builds the macro and starts it.
The configuration under test comes from ``AXELRAM_TB_CONFIG``; scenarios that do not apply to it
are reported as skipped.
"""

import functools

import cocotb

from .bench import Bench
from .configs import config_from_env
from .scenarios import SCENARIOS

CONFIG = config_from_env()


def make_test(name, scenario, applies):
    """Return a cocotb test that runs ``scenario`` on a fresh :class:`Bench` and drains it."""

    @functools.wraps(scenario)
    async def run(dut):
        tb = Bench(dut, CONFIG, test_name=name)
        try:
            await tb.start()
            await scenario(tb)
            await tb.drain()
            tb.finish()
        finally:
            tb.record_count()

    run.__name__ = run.__qualname__ = name
    run.__module__ = __name__
    return cocotb.test(skip=not applies(CONFIG))(run)


for _name, _scenario, _applies in SCENARIOS:
    globals()[_name] = make_test(_name, _scenario, _applies)
