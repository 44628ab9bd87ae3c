"""Regression of the generated macro Verilog under Icarus Verilog and Verilator.

Each test builds one configuration for one simulator (builds are cached in ``sim_build/``) and
runs the cocotb tests of :mod:`verif.tb_macro` in it. See ``docs/verification.md`` for the
options (``SIM``, ``WAVES``, ``COCOTB_RANDOM_SEED``, ``AXELRAM_TB_EFFORT``).
"""

import os
import random
from pathlib import Path

import pytest

from verif import tools
from verif.bench import EFFORT_ENV
from verif.configs import DEFAULT_CASES, REAL_KV_CASE, SLOW_CASES, config_to_env
from verif.scenarios import REAL_KV_ENV

TEST_MODULE = "verif.tb_macro"

SIM_EFFORT = {"icarus": 0.1, "verilator": 1.0}
"""Workload per simulator, relative to ``AXELRAM_TB_EFFORT``: Icarus runs this design about ten
times slower than Verilator, so it checks every scenario on a smaller workload."""

REAL_KV_FILE = Path(__file__).resolve().parent / "fixtures" / "real_kv_d64.npz"


def selected_simulators():
    """Return the simulators named by ``SIM`` (comma-separated), or all of them."""
    text = os.environ.get("SIM", "").strip()
    if not text:
        return list(tools.SIMULATORS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        tools.check_simulator_name(name)
    return names


def run_seed():
    """Return ``COCOTB_RANDOM_SEED`` if set, otherwise a fresh random seed."""
    text = os.environ.get("COCOTB_RANDOM_SEED")
    if text:
        return int(text)
    return random.SystemRandom().randrange(1 << 32)


def base_effort():
    text = os.environ.get(EFFORT_ENV, "1")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{EFFORT_ENV} must be a positive number, not {text!r}") from None


def run_regression(sim, config, run_name, *, testcases=None, variant=None, patch=None,
                   extra_env=None, effort=None):
    """Build ``config`` for ``sim`` and run the cocotb tests; return the outcome and seed."""
    try:
        tools.find_simulator(sim)
    except tools.SimulatorNotFound as exc:
        pytest.fail(f"{exc} (or select the other simulator with SIM=...)", pytrace=False)
    seed = run_seed()
    print(f"{sim} {run_name}: COCOTB_RANDOM_SEED={seed}")
    build = tools.build(config, sim, variant=variant, patch=patch, waves=tools.waves_requested())
    env = config_to_env(config)
    env[EFFORT_ENV] = str((base_effort() if effort is None else effort) * SIM_EFFORT[sim])
    env.update(extra_env or {})
    outcome = tools.run_tests(build, TEST_MODULE, testcases=testcases, seed=seed,
                              extra_env=env, test_name=run_name)
    if build.waves:
        print(f"waveform: {outcome.results_xml.parent / build.waves_file}")
    return outcome, seed


def require_pass(outcome, seed, sim, name):
    """Fail with every cocotb failure message, the seed and the log path, if any test failed."""
    log = outcome.results_xml.parent / "sim.log"
    if outcome.failed:
        lines = [f"{len(outcome.failed)} cocotb test(s) failed on {sim} for {name}; reproduce "
                 f"with COCOTB_RANDOM_SEED={seed}; log {log}"]
        for test, message in outcome.failed.items():
            first = message.strip().splitlines()[:12]
            lines.append(f"--- {test}:\n" + "\n".join(first))
        pytest.fail("\n".join(lines), pytrace=False)
    assert outcome.passed, f"no cocotb test ran on {sim} for {name}; log {log}"


CASES = [pytest.param(case, id=case.id) for case in DEFAULT_CASES] + [
    pytest.param(case, id=case.id, marks=pytest.mark.slow) for case in SLOW_CASES]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("sim", selected_simulators())
def test_macro(sim, case):
    outcome, seed = run_regression(sim, case.config, "regression")
    require_pass(outcome, seed, sim, case.id)


def flip_score_index_bit(config, bit=0):
    """Return a Verilog patch that flips bit ``bit`` of every row the score unit reads.

    Bit 0 is the low bit of coordinate 0's index, so nearly every score of a written slot
    changes. The patch edits the score unit's ``read_data`` connection in the top module.
    """
    instance = f"\\{config.name}.score  score ("

    def patch(text):
        start = text.find(instance)
        if start < 0:
            raise ValueError(f"score unit instance {instance!r} not found in the Verilog")
        end = text.find(");", start)
        block = text[start:end]
        marker = ".read_data("
        at = block.find(marker)
        if at < 0:
            raise ValueError("score unit instance has no read_data connection")
        close = block.find(")", at)
        signal = block[at + len(marker):close]
        # The constant has the row's width, so that Verilator's width check accepts the XOR.
        faulty = f"{marker}{signal} ^ {config.dp.row_width}'d{1 << bit}"
        return text[:start] + block[:at] + faulty + block[close:] + text[end:]

    return patch


FAULT_CASE = DEFAULT_CASES[0]


@pytest.mark.parametrize("sim", [pytest.param(sim, marks=pytest.mark.slow)
                                 if sim == "verilator" else sim
                                 for sim in selected_simulators()])
def test_fault_is_caught(sim):
    """A macro with one flipped index bit in the score path must fail with a mismatch report."""
    config = FAULT_CASE.config
    outcome, seed = run_regression(sim, config, "fault", testcases=["fill_then_score"],
                                   variant="fault_index_bit", patch=flip_score_index_bit(config),
                                   effort=0.2 / SIM_EFFORT[sim])
    assert "fill_then_score" in outcome.failed, (
        f"the regression passed a macro with a flipped index bit (seed {seed})")
    message = outcome.failed["fill_then_score"]
    assert "score mismatch" in message, message
    assert "query #" in message, message
    assert "COCOTB_RANDOM_SEED=" in message, message


@pytest.mark.parametrize("sim", [pytest.param(sim, marks=pytest.mark.slow)
                                 if sim == "icarus" else sim
                                 for sim in selected_simulators()])
def test_real_kv_vectors(sim):
    """Replay captured LLM keys and queries (head dimension 64) through the macro."""
    path = Path(os.environ.get(REAL_KV_ENV) or REAL_KV_FILE)
    if not path.is_file():
        pytest.skip(f"{path} not found: it holds captured LLM keys and queries (float16 arrays "
                    f"'keys' and 'queries', shape (n, 64)); set {REAL_KV_ENV} to use another file")
    outcome, seed = run_regression(sim, REAL_KV_CASE.config, "real_kv",
                                   testcases=["real_vectors"],
                                   extra_env={REAL_KV_ENV: str(path.resolve())})
    require_pass(outcome, seed, sim, REAL_KV_CASE.id)
