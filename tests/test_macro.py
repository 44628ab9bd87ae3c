"""Whole-macro tests in the Amaranth simulator, against the bit-exact golden model.

The generated Verilog is checked under Icarus and Verilator by the cocotb regression in
``verif/``; these tests cover the Amaranth design itself and its cycle counts.
"""

import random

import pytest

from hdl.config import MacroConfig
from hdl.macro import build_macro

from macro_harness import expected_beats, random_vector, run_macro


def _fill_and_query(config, rng, queries=2):
    commands = [("write", s, random_vector(rng, config.d)) for s in range(config.context)]
    for _ in range(queries):
        first = rng.randrange(config.context)
        last = rng.randrange(config.context)
        commands.append(("query", first, last, random_vector(rng, config.d)))
    return commands


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_fill_then_score(bits):
    seed = 40 + bits
    print(f"seed {seed}")
    config = MacroConfig(16, bits, 12)
    commands = _fill_and_query(config, random.Random(seed))
    beats, _ = run_macro(config, commands, seed=seed)
    assert beats == expected_beats(config, commands)


def test_interleaved_overwrites_backpressure_and_gaps():
    seed = 7
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = MacroConfig(16, 3, 8)
    commands = []
    for _ in range(30):
        if rng.random() < 0.6:
            commands.append(("write", rng.randrange(8), random_vector(rng, 16, rng.choice([1e-3, 1, 100]))))
        else:
            commands.append(("query", rng.randrange(8), rng.randrange(8), random_vector(rng, 16)))
    beats, _ = run_macro(config, commands, seed=seed, ready_probability=0.4, gap_probability=0.5)
    assert beats == expected_beats(config, commands)


def test_folded_lanes_and_multi_beat_vectors():
    seed = 11
    print(f"seed {seed}")
    config = MacroConfig(32, 4, 10, beat_elems=8, transform_lanes=4, write_lanes=4,
                         table_lanes=2, read_lanes=8)
    commands = _fill_and_query(config, random.Random(seed), queries=3)
    beats, _ = run_macro(config, commands, seed=seed, ready_probability=0.7, gap_probability=0.3)
    assert beats == expected_beats(config, commands)


def test_out_of_range_slots_are_flagged():
    seed = 5
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = MacroConfig(16, 2, 6)
    commands = [("write", s, random_vector(rng, 16)) for s in range(8)]     # slots 6, 7 invalid
    commands += [("query", 0, 5, random_vector(rng, 16)), ("query", 7, 2, random_vector(rng, 16)),
                 ("query", 4, 1, random_vector(rng, 16))]
    beats, _ = run_macro(config, commands, seed=seed)
    expected = expected_beats(config, commands)
    assert beats == expected
    assert expected[6] == (7, 0x7FC00000, 1)


def test_non_finite_inputs_score_nan():
    seed = 3
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = MacroConfig(16, 4, 4)
    inf_key = random_vector(rng, 16)
    inf_key[5] = 0x7C00                 # +infinity
    nan_query = random_vector(rng, 16)
    nan_query[0] = 0x7E00               # NaN
    commands = [("write", 0, random_vector(rng, 16)), ("write", 1, inf_key),
                ("write", 2, [0] * 16), ("write", 3, [0x0001] * 16),
                ("query", 0, 3, random_vector(rng, 16)), ("query", 0, 3, nan_query)]
    beats, _ = run_macro(config, commands, seed=seed)
    expected = expected_beats(config, commands)
    assert beats == expected
    assert [b[1] for b in beats[4:]] == [0x7FC00000] * 4
    assert beats[1][1] == 0x7FC00000
    assert beats[2][1] == 0


@pytest.mark.parametrize("kwargs", [
    dict(d=16, bits=2, context=32),
    dict(d=16, bits=4, context=24, read_lanes=4),
    dict(d=32, bits=3, context=16, table_lanes=2, transform_lanes=4),
])
def test_query_cycle_count(kwargs):
    # A full-range query on an idle macro with an unstalled score stream takes
    # table_build + pipeline_latency + T * d / read_lanes cycles: one key per clock by default.
    seed = 1
    config = MacroConfig(**kwargs)
    rng = random.Random(seed)
    commands = [("write", s, random_vector(rng, config.d)) for s in range(config.context)]
    commands += [("wait", 400 + 40 * config.context),
                 ("query", 0, config.context - 1, random_vector(rng, config.d))]
    beats, stamps = run_macro(config, commands, seed=seed)
    assert beats == expected_beats(config, commands)
    macro = build_macro(config)
    table_cycles = macro.units()["table"].latency_cycles
    per_key = config.d // config.read_lanes
    taken = stamps["score_cycles"][-1] - stamps["query_done"][0] + 1
    assert taken == table_cycles + macro.pipeline_latency_cycles + config.context * per_key
    gaps = {b - a for a, b in zip(stamps["score_cycles"], stamps["score_cycles"][1:])}
    assert gaps == {per_key}
