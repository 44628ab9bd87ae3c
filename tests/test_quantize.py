# amaranth: UnusedElaboratable=no
import collections
import os
import random

import pytest
import torch
from amaranth.back import verilog
from amaranth.sim import Simulator

from lint_unit import lint_unit, strip_verilog_comments
from golden.bitexact import KeyRows, encode_keys, isqrt, pack_rows, to_block_fixed
from golden.hadamard import fwht
from golden.numerics import BOUNDARY_FRAC_BITS
from hdl.config import MacroConfig
from hdl.layouts import Kind
from hdl.quantize import Quantizer, quantizer_input_layout, quantizer_output_layout

SEED = 4321
CONTEXT = 64
FP16_MAX = 65504.0

CONFIGS = [(d, bits, lanes) for d in (16, 64) for bits in (1, 2, 3, 4) for lanes in (1, d)]


def _config(d, bits, lanes):
    return MacroConfig(d, bits, context=CONTEXT, write_lanes=lanes)


def _random_seed():
    """Return the seed of a random test: ``TEST_SEED`` if set, else a fresh one (printed)."""
    seed = int(os.environ.get("TEST_SEED", random.randrange(1 << 32)))
    print(f"seed {seed} (rerun with TEST_SEED={seed})")
    return seed


def _hadamard_rows(d):
    return fwht(torch.eye(d, dtype=torch.float64))


def _keys(config, count, rng):
    """Return FP16 keys: random ones at varied scales, and ones with extreme coordinates.

    The extreme keys put ``+/-d * 8188`` into one coordinate of ``y`` (8188 is the largest
    aligned FP16 element) or spread the maximum over all coordinates.
    """
    d = config.d
    generator = torch.Generator().manual_seed(rng.randrange(1 << 31))
    x = torch.randn(count, d, generator=generator, dtype=torch.float64)
    scales = torch.tensor([10.0 ** rng.uniform(-6, 4) for _ in range(count)], dtype=torch.float64)
    x = x * scales.unsqueeze(-1)
    x[0, 2] *= 1000.0
    x[1, :] = 0.0
    x[2, 5] = float("inf")
    x[3, :] = 6e-8

    signs = torch.tensor(config.signs, dtype=torch.float64)
    rows = _hadamard_rows(d)
    extremes = [FP16_MAX * signs, -FP16_MAX * signs]
    for k in rng.sample(range(d), 3):
        # H is symmetric, so H (s * s * h_k) = H h_k = d * e_k.
        extremes.append(FP16_MAX * signs * rows[k])
        extremes.append(-FP16_MAX * signs * rows[k])
    extremes.append(torch.full((d,), FP16_MAX, dtype=torch.float64))
    return torch.cat([x, torch.stack(extremes)]).to(torch.float16)


def _commands_from_keys(config, keys, kinds):
    """Return quantizer inputs computed with the golden model's code paths, and the golden rows."""
    dp = config.dp
    block = to_block_fixed(keys, dp)
    y = fwht(block.a * torch.tensor(config.signs, dtype=torch.int64))
    norm = isqrt((block.a * block.a).sum(dim=-1))
    rows = pack_rows(encode_keys(keys, dp, config.signs), dp)
    commands = []
    for k in range(keys.shape[0]):
        commands.append({
            "meta": {"kind": int(kinds[k]), "slot": k % CONTEXT, "last": (3 * k) % CONTEXT, "bad": k % 2},
            "y": y[k].tolist(),
            "exp": int(block.exp[k]),
            "nan": int(block.nan[k]),
            "norm": int(norm[k]),
        })
    return commands, rows


def _run(dut, commands, rng=None, gap=0.0, stall=0.0):
    """Stream ``commands`` through ``dut``; return ``(meta, row)`` outputs and stability violations.

    With ``rng``, the producer idles before a command with probability ``gap`` and the
    consumer drops ``o.ready`` with probability ``stall``. A violation is a stalled output
    (valid and not ready) whose payload changed or whose valid fell in the next cycle.
    """
    outputs = []
    violations = []
    max_cycles = 200 * len(commands) + 1000

    async def producer(ctx):
        for command in commands:
            while rng is not None and rng.random() < gap:
                await ctx.tick()
            ctx.set(dut.i.p, command)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        stalled = None
        for _ in range(max_cycles):
            ready = rng is None or rng.random() >= stall
            ctx.set(dut.o.ready, int(ready))
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.p)
            current = None
            if valid:
                meta = {name: getattr(payload.meta, name) for name in ("kind", "slot", "last", "bad")}
                current = (meta, payload.row)
            if stalled is not None and current != stalled:
                violations.append((stalled, current))
            stalled = current if valid and not ready else None
            if valid and ready:
                outputs.append(current)
                if len(outputs) == len(commands):
                    return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return outputs, violations


def _check_rows(commands, rows, outputs):
    assert len(outputs) == len(commands)
    for k, (command, row, (meta, output_row)) in enumerate(zip(commands, rows, outputs)):
        assert meta == command["meta"], k
        assert output_row == row, (k, hex(output_row), hex(row))


@pytest.mark.parametrize(("d", "bits", "lanes"), CONFIGS)
def test_quantizer_matches_golden(d, bits, lanes):
    config = _config(d, bits, lanes)
    keys = _keys(config, 10, random.Random(SEED))
    commands, rows = _commands_from_keys(config, keys, [Kind.WRITE] * keys.shape[0])
    outputs, violations = _run(Quantizer(config), commands)
    _check_rows(commands, rows, outputs)
    assert violations == []


@pytest.mark.parametrize(("d", "bits", "lanes", "levels"), [(16, 4, 1, 1), (64, 4, 64, None), (16, 3, 16, 1)])
def test_quantizer_threshold_stages(d, bits, lanes, levels):
    config = _config(d, bits, lanes)
    keys = _keys(config, 10, random.Random(SEED))
    commands, rows = _commands_from_keys(config, keys, [Kind.WRITE] * keys.shape[0])
    outputs, violations = _run(Quantizer(config, threshold_levels_per_stage=levels), commands)
    _check_rows(commands, rows, outputs)
    assert violations == []


def test_quantizer_keys_reach_extremes():
    config = _config(16, 3, 16)
    keys = _keys(config, 10, random.Random(SEED))
    commands, _ = _commands_from_keys(config, keys, [Kind.WRITE] * keys.shape[0])
    largest = max(max(abs(v) for v in command["y"]) for command in commands)
    assert largest == 16 * 8188
    assert any(command["nan"] for command in commands)
    assert any(command["norm"] == 0 for command in commands)


def _expected_row(config, command):
    """Return the row of one command by the rule ``mag = #{j : (|y| << 16) > norm * Gamma_j}``."""
    dp = config.dp
    codes = []
    for value in command["y"]:
        level = sum((abs(value) << BOUNDARY_FRAC_BITS) > command["norm"] * gamma
                    for gamma in dp.boundary_constants)
        codes.append((int(value < 0) << (dp.bits - 1)) | level)
    rows = KeyRows(codes=torch.tensor([codes]), norm=torch.tensor([command["norm"]]),
                   exp=torch.tensor([command["exp"]]), nan=torch.tensor([bool(command["nan"])]))
    return pack_rows(rows, dp)[0]


def _edge_commands(config, rng):
    """Return commands whose coordinates sit on, just below and just above each threshold.

    Also returns the number of coordinates with ``|y| << 16`` exactly equal to a threshold.
    """
    dp = config.dp
    d = dp.d
    norm_max = (1 << dp.norm_width) - 1
    y_max = (1 << (dp.y_width - 1)) - 1
    cases = []
    exact = 0
    for gamma in dp.boundary_constants:
        trailing_zeros = (gamma & -gamma).bit_length() - 1
        step = 1 << max(0, BOUNDARY_FRAC_BITS - trailing_zeros)
        # norm 0 makes every threshold 0, so y = 0 lies exactly on it. That is the only exact
        # case when the smallest norm with an exact threshold, ``step``, exceeds the largest.
        norms = [0, 1, rng.randrange(1, norm_max + 1), norm_max]
        if step <= norm_max:
            norms += [step, (norm_max // step) * step]
        for norm in norms:
            threshold = norm * gamma
            floor = threshold >> BOUNDARY_FRAC_BITS
            for value in (floor, floor + 1, max(floor - 1, 0)):
                if value > y_max:
                    continue
                cases.append((norm, value))
                cases.append((norm, -value))
                if value << BOUNDARY_FRAC_BITS == threshold:
                    exact += 2
    # Full-scale coordinates against the smallest and the largest norm.
    for norm in (0, norm_max):
        for value in (-y_max - 1, y_max, 0, 1, -1):
            cases.append((norm, value))

    by_norm = collections.defaultdict(list)
    for norm, value in cases:
        by_norm[norm].append(value)
    commands = []
    for norm, values in sorted(by_norm.items()):
        for start in range(0, len(values), d):
            chunk = values[start:start + d]
            chunk += [rng.randrange(-y_max - 1, y_max + 1) for _ in range(d - len(chunk))]
            rng.shuffle(chunk)
            slot = len(commands)
            commands.append({
                "meta": {"kind": int(Kind.WRITE), "slot": slot % CONTEXT, "last": 0, "bad": 0},
                "y": chunk,
                "exp": rng.randrange(1 << dp.exp_width),
                "nan": rng.randrange(2),
                "norm": norm,
            })
    return commands, exact


@pytest.mark.parametrize(("d", "bits", "lanes"), [
    (16, 2, 16), (16, 3, 1), (16, 4, 16), (64, 2, 64), (64, 3, 64), (64, 4, 1),
])
def test_quantizer_threshold_edges(d, bits, lanes):
    config = _config(d, bits, lanes)
    commands, exact = _edge_commands(config, random.Random(SEED))
    assert exact > 0
    rows = [_expected_row(config, command) for command in commands]
    outputs, violations = _run(Quantizer(config), commands)
    _check_rows(commands, rows, outputs)
    assert violations == []


def test_expected_row_matches_golden():
    # The edge tests' reference rule must agree with the golden encoder on golden inputs.
    config = _config(16, 4, 16)
    keys = _keys(config, 10, random.Random(SEED))
    commands, rows = _commands_from_keys(config, keys, [Kind.WRITE] * keys.shape[0])
    assert [_expected_row(config, command) for command in commands] == rows


@pytest.mark.parametrize(("d", "bits", "lanes"), [(16, 3, 1), (64, 1, 64)])
def test_quantizer_backpressure_random(d, bits, lanes):
    seed = _random_seed()
    rng = random.Random(seed)
    config = _config(d, bits, lanes)
    keys = _keys(config, 16, rng)
    kinds = [rng.choice([Kind.WRITE, Kind.QUERY]) for _ in range(keys.shape[0])]
    commands, rows = _commands_from_keys(config, keys, kinds)
    outputs, violations = _run(Quantizer(config), commands, rng=rng, gap=0.4, stall=0.5)
    _check_rows(commands, rows, outputs)
    assert violations == []


# Threshold cycles by hand. The largest 4-bit constant, 157339, has 9 canonical signed digits,
# so its adder tree has 4 levels. The 2- and 3-bit trees have at most 3 levels.
@pytest.mark.parametrize(("d", "bits", "lanes", "levels", "threshold_cycles"), [
    (16, 1, 1, "default", 0), (16, 3, 4, "default", 2), (16, 4, 16, "default", 2),
    (64, 2, 8, "default", 2), (16, 3, 4, None, 1), (16, 4, 16, None, 1), (16, 4, 4, 1, 4),
    (16, 4, 1, 3, 2), (16, 1, 4, 1, 0),
])
def test_quantizer_latency_cycles(d, bits, lanes, levels, threshold_cycles):
    config = _config(d, bits, lanes)
    if levels == "default":
        dut = Quantizer(config)
    else:
        dut = Quantizer(config, threshold_levels_per_stage=levels)
    expected = threshold_cycles + d // lanes + 1
    assert dut.threshold_cycles == threshold_cycles
    assert dut.latency_cycles == expected
    measured = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.p, {"meta": {"kind": 0, "slot": 1, "last": 0, "bad": 0},
                          "y": [3] * d, "exp": 1, "nan": 0, "norm": 5})
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        cycles = 0
        while True:
            cycles += 1
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            if valid:
                break
        measured.append(cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert measured == [expected]


@pytest.mark.parametrize(("bits", "per_coordinate"), [(1, 0), (2, 1), (3, 3), (4, 7)])
def test_quantizer_comparator_counts(bits, per_coordinate):
    for lanes in (1, 4, 16):
        dut = Quantizer(_config(16, bits, lanes))
        assert dut.comparators_per_coordinate == per_coordinate
        assert dut.comparators == lanes * per_coordinate


def test_quantizer_has_no_multiplier():
    text = verilog.convert(Quantizer(_config(16, 4, 1)), name="quantizer")
    assert "*" not in strip_verilog_comments(text)


def test_quantizer_layouts():
    config = _config(16, 3, 1)
    dp = config.dp
    inputs = quantizer_input_layout(config)
    outputs = quantizer_output_layout(config)
    assert list(inputs.members) == ["meta", "y", "exp", "nan", "norm"]
    assert list(outputs.members) == ["meta", "row"]
    assert outputs.members["row"].width == dp.row_width
    assert inputs.members["norm"].width == dp.norm_width


def test_quantizer_rejects_non_config():
    with pytest.raises(TypeError, match=r"^config must be a MacroConfig, not None$"):
        Quantizer(None)


def test_quantizer_rejects_bad_levels():
    config = _config(16, 3, 1)
    with pytest.raises(ValueError, match=r"^threshold_levels_per_stage must be a positive "
                                         r"integer or None, not 0$"):
        Quantizer(config, threshold_levels_per_stage=0)
    with pytest.raises(TypeError, match=r"^threshold_levels_per_stage must be a positive "
                                        r"integer or None, not '2'$"):
        Quantizer(config, threshold_levels_per_stage="2")


@pytest.mark.parametrize(("d", "bits", "lanes", "levels"), [(16, 1, 16, None), (64, 4, 8, None),
                                                          (16, 3, 1, 1)])
def test_quantizer_verilator_lint(tmp_path, d, bits, lanes, levels):
    dut = Quantizer(_config(d, bits, lanes), threshold_levels_per_stage=levels)
    assert lint_unit(dut, f"quantizer_d{d}_b{bits}_w{lanes}", tmp_path) == []
