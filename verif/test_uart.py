"""Simulation of the UART board demo under Icarus Verilog and Verilator.

Each test builds :class:`fpga.uart_top.UARTBridge` (the macro, the UART and the framing logic;
everything of the board top except the PLL and the pin buffers) for one configuration and runs
the cocotb tests of :mod:`verif.tb_uart`, in which the host client :class:`fpga.host.Board`
talks to it through a UART model. Builds are cached in ``sim_build/`` like the macro's.

``verif.tools.build`` names the simulated top module after the macro configuration
(``axelram_d16_b2``), so here that module is the bridge and the macro sits inside it.
"""

import functools
import json
from pathlib import Path

import pytest
from amaranth.back import verilog

from hdl.config import MacroConfig
from verif import tools
from verif.configs import config_to_env
from verif.scenarios import REAL_KV_ENV
from verif.tb_uart import UART_ENV
from verif.bench import EFFORT_ENV
from verif.test_macro import (REAL_KV_FILE, SIM_EFFORT, base_effort, require_pass, run_seed,
                              selected_simulators)

TEST_MODULE = "verif.tb_uart"

SIM_BRIDGE = dict(clk_hz=40e6, baud=10e6, frame_timeout_s=10e-6, buffer_bytes=100,
                  scores_per_frame=3)
"""Bridge parameters in simulation: a divisor of 4 (a 100 ns bit) and a frame timeout of 10 byte
times. A WRITE_KEY frame takes two keys and a SCORES reply up to 3 scores, so that batching
splits writes and queries over several frames."""

MAIN_CASE = MacroConfig(d=16, bits=2, context=8, runtime_signs=True)
"""Every test runs on this configuration, under both simulators."""

SIGNS_CASE = MacroConfig(d=16, bits=3, context=5)
"""Compile-time signs (LOAD_SIGNS is rejected) and a context that leaves slot numbers 5..7 of the
3-bit slot field unused. Only the tests whose outcome depends on that run here, and under
Verilator only in the slow run, because its compile costs minutes and the logic is the same."""

SIGNS_CASE_TESTS = ["identify", "rejected_commands"]


def cases():
    params = []
    for sim in selected_simulators():
        params.append(pytest.param(sim, MAIN_CASE, None, id=f"{sim}-d16_b2_t8_rs"))
        marks = [pytest.mark.slow] if sim == "verilator" else []
        params.append(pytest.param(sim, SIGNS_CASE, SIGNS_CASE_TESTS, marks=marks,
                                   id=f"{sim}-d16_b3_t5"))
    return params


def write_bridge_verilog(config, out_dir, *, bridge):
    """Write the bridge's Verilog for ``config`` into ``out_dir`` and return its path."""
    from fpga.uart_top import UARTBridge

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    component = UARTBridge(config, **bridge)
    path = out_dir / f"uart_bridge_{config.name}.v"
    path.write_text(verilog.convert(component, name=config.name, emit_src=False))
    return path


_generators = {}


def bridge_generator(bridge):
    """Return one generator function per parameter set, so ``tools.build`` caches each apart."""
    key = json.dumps(bridge, sort_keys=True)
    if key not in _generators:
        _generators[key] = functools.partial(write_bridge_verilog, bridge=bridge)
    return _generators[key]


@pytest.mark.parametrize("sim, config, testcases", cases())
def test_uart(sim, config, testcases):
    try:
        tools.find_simulator(sim)
    except tools.SimulatorNotFound as exc:
        pytest.fail(f"{exc} (or select the other simulator with SIM=...)", pytrace=False)
    seed = run_seed()
    print(f"{sim} uart: COCOTB_RANDOM_SEED={seed}")
    build = tools.build(config, sim, variant="uart", generator=bridge_generator(SIM_BRIDGE),
                        waves=tools.waves_requested())
    env = config_to_env(config)
    env[UART_ENV] = json.dumps(SIM_BRIDGE)
    # Icarus runs each scenario once; Verilator adds random-range queries.
    env[EFFORT_ENV] = str(base_effort() * SIM_EFFORT[sim])
    if REAL_KV_FILE.is_file():
        env[REAL_KV_ENV] = str(REAL_KV_FILE)
    outcome = tools.run_tests(build, TEST_MODULE, testcases=testcases, seed=seed, extra_env=env,
                              test_name="uart")
    if build.waves:
        print(f"waveform: {outcome.results_xml.parent / 'waves.fst'}")
    require_pass(outcome, seed, sim, f"uart {config.name} t{config.context}")
