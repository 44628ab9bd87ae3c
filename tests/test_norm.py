# amaranth: UnusedElaboratable=no
import math
import os
import random

import pytest
import torch
from amaranth.back import verilog
from amaranth.sim import Simulator

from lint_unit import lint_unit, strip_verilog_comments
from golden.bitexact import isqrt, to_block_fixed
from hdl.config import MacroConfig
from hdl.layouts import Kind
from hdl.norm import NormUnit, norm_input_layout, norm_output_layout

SEED = 1234
MAX_ELEMENT = (1 << 13) - 1
CONTEXT = 64


def _config(d, lanes):
    return MacroConfig(d, 3, context=CONTEXT, write_lanes=lanes)


def _random_seed():
    """Return the seed of a random test: ``TEST_SEED`` if set, else a fresh one (printed)."""
    seed = int(os.environ.get("TEST_SEED", random.randrange(1 << 32)))
    print(f"seed {seed} (rerun with TEST_SEED={seed})")
    return seed


def _two_squares(n):
    """Return ``[c, e]`` with ``c**2 + e**2 == n`` and both at most 8191, or None."""
    for c in range(min(MAX_ELEMENT, math.isqrt(n)), -1, -1):
        rest = n - c * c
        if rest > c * c:
            return None
        e = math.isqrt(rest)
        if e * e == rest:
            return [c, e]
    return None


def _is_sum_of_three_squares(n):
    """Legendre's theorem: ``n`` is a sum of three squares unless it is ``4**k * (8 * m + 7)``."""
    while n and n % 4 == 0:
        n //= 4
    return n % 8 != 7


def _four_squares(n):
    """Return four integers in 0..8191 whose squares sum to ``n``."""
    for a in range(min(MAX_ELEMENT, math.isqrt(n)), -1, -1):
        rest = n - a * a
        if rest > 3 * MAX_ELEMENT ** 2:
            break
        if not _is_sum_of_three_squares(rest):
            continue
        for b in range(min(MAX_ELEMENT, math.isqrt(rest)), -1, -1):
            pair = _two_squares(rest - b * b)
            if pair is not None:
                return [a, b, *pair]
    raise AssertionError(f"no four squares found for {n}")


def _vectors_around_square(base, root, rng):
    """Return vectors whose sums of squares are ``root**2 - 1``, ``root**2`` and ``root**2 + 1``.

    Each vector is ``base`` (``d - 4`` elements) and four more elements that make up the
    difference, shuffled and with random signs. ``root**2 - 1`` must not be below the sum of
    squares of ``base``.
    """
    base_sum = sum(x * x for x in base)
    vectors = []
    for target in (root * root - 1, root * root, root * root + 1):
        if target < base_sum:
            raise AssertionError(f"target {target} is below the base sum {base_sum}")
        elements = list(base) + _four_squares(target - base_sum)
        rng.shuffle(elements)
        vector = [x if rng.random() < 0.5 else -x for x in elements]
        if sum(x * x for x in vector) != target:
            raise AssertionError(f"vector for {target} has the wrong sum of squares")
        vectors.append(vector)
    return vectors


def _realistic_vectors(dp, count, rng):
    """Return aligned keys of random FP16 vectors with varied scales, outliers and infinities."""
    generator = torch.Generator().manual_seed(rng.randrange(1 << 31))
    x = torch.randn(count, dp.d, generator=generator, dtype=torch.float64)
    scales = torch.tensor([10.0 ** rng.uniform(-6, 4) for _ in range(count)], dtype=torch.float64)
    x = x * scales.unsqueeze(-1)
    x[0, 3] *= 300.0
    x[1, :] = 0.0
    x[1, 5] = 6e-8
    x[2, 7] = math.inf
    block = to_block_fixed(x.to(torch.float16), dp)
    return [(block.a[k].tolist(), int(block.exp[k]), bool(block.nan[k])) for k in range(count)]


def _extreme_vectors(dp, rng):
    d = dp.d
    vectors = [[0] * d]
    for sign in (1, -1):
        single = [0] * d
        single[rng.randrange(d)] = sign * MAX_ELEMENT
        vectors.append(single)
        vectors.append([sign * MAX_ELEMENT] * d)
    vectors.append([MAX_ELEMENT if rng.random() < 0.5 else -MAX_ELEMENT for _ in range(d)])
    # Roots of perfect squares from 1 to just below the maximum sum of squares. Above
    # (d - 4) * 8191**2 the base of d - 4 elements at 8191 is the largest possible.
    zeros = [0] * (d - 4)
    full = [MAX_ELEMENT] * (d - 4)
    middle = [rng.randrange(MAX_ELEMENT + 1) for _ in range(d - 4)]
    for base, root in ((zeros, 1), (zeros, 2), (zeros, 3), (zeros, 4096), (zeros, MAX_ELEMENT),
                       (zeros, MAX_ELEMENT + 2),
                       (middle, math.isqrt(sum(x * x for x in middle)) + 1),
                       (full, math.isqrt((d - 4) * MAX_ELEMENT ** 2) + 1)):
        vectors += _vectors_around_square(base, root, rng)
    return vectors


def _command(kind, slot, a, exp=15, nan=False):
    return {
        "meta": {"kind": int(kind), "slot": slot % CONTEXT, "last": (slot * 7) % CONTEXT, "bad": slot % 2},
        "a": list(a),
        "exp": exp,
        "nan": int(nan),
    }


def _expected_norm(command):
    if command["meta"]["kind"] == Kind.QUERY:
        return 0
    a = torch.tensor(command["a"], dtype=torch.int64)
    return int(isqrt((a * a).sum()))


def _as_dict(payload):
    """Return a simulated output payload as plain Python values."""
    return {
        "meta": {name: getattr(payload.meta, name) for name in ("kind", "slot", "last", "bad")},
        "a": [payload.a[k] for k in range(len(payload.a))],
        "exp": payload.exp,
        "nan": payload.nan,
        "norm": payload.norm,
    }


def _run(dut, commands, rng=None, gap=0.0, stall=0.0):
    """Stream ``commands`` through ``dut``; return the outputs and the stability violations.

    With ``rng``, the producer idles before a command with probability ``gap`` and the
    consumer drops ``o.ready`` with probability ``stall``. A violation is a held output (valid
    and not ready) whose payload changed or whose valid fell in the next cycle.
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
            current = _as_dict(payload) if valid else None
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


def _check_outputs(commands, outputs):
    assert len(outputs) == len(commands)
    for k, (command, output) in enumerate(zip(commands, outputs)):
        assert output["meta"] == command["meta"], k
        assert output["a"] == command["a"], k
        assert output["exp"] == command["exp"], k
        assert output["nan"] == command["nan"], k
        assert output["norm"] == _expected_norm(command), (k, command["a"])


@pytest.mark.parametrize(("d", "lanes"), [(16, 1), (16, 4), (16, 16), (64, 1), (64, 64)])
def test_norm_matches_golden(d, lanes):
    config = _config(d, lanes)
    rng = random.Random(SEED)
    commands = [_command(Kind.WRITE, slot, a, exp, nan)
                for slot, (a, exp, nan) in enumerate(_realistic_vectors(config.dp, 12, rng))]
    commands += [_command(Kind.WRITE, slot, a, exp=rng.randrange(1, 31))
                 for slot, a in enumerate(_extreme_vectors(config.dp, rng))]
    outputs, violations = _run(NormUnit(config), commands)
    _check_outputs(commands, outputs)
    assert violations == []


def test_norm_extremes_cover_maximum():
    config = _config(16, 1)
    vectors = _extreme_vectors(config.dp, random.Random(SEED))
    sums = {sum(x * x for x in v) for v in vectors}
    assert 16 * MAX_ELEMENT ** 2 in sums
    assert 0 in sums
    assert max(sums).bit_length() == config.dp.square_sum_width


@pytest.mark.parametrize(("d", "lanes"), [(16, 1), (64, 64)])
def test_query_passes_with_zero_norm(d, lanes):
    config = _config(d, lanes)
    rng = random.Random(SEED)
    commands = [_command(Kind.QUERY, slot, a, exp, nan)
                for slot, (a, exp, nan) in enumerate(_realistic_vectors(config.dp, 6, rng))]
    commands.append(_command(Kind.QUERY, 9, [MAX_ELEMENT] * d))
    outputs, violations = _run(NormUnit(config), commands)
    _check_outputs(commands, outputs)
    assert all(output["norm"] == 0 for output in outputs)
    assert violations == []


@pytest.mark.parametrize(("d", "lanes"), [(16, 1), (16, 4), (64, 64)])
def test_norm_latency_cycles(d, lanes):
    config = _config(d, lanes)
    dut = NormUnit(config)
    # Square delay: magnitude register, 4 adder levels for 13-bit magnitudes, sum register.
    assert config.dp.x_width == 14
    expected_write = d // lanes + 6 + config.dp.norm_width + 1
    assert dut.square_delay == 6
    assert dut.latency_cycles == expected_write
    measured = {}

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for kind in (Kind.WRITE, Kind.QUERY):
            ctx.set(dut.i.p, _command(kind, 1, [5] * d))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            cycles = 0
            while True:
                cycles += 1
                _, _, valid = await ctx.tick().sample(dut.o.valid)
                if valid:
                    break
            measured[kind] = cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert measured[Kind.WRITE] == expected_write
    assert measured[Kind.QUERY] == 1


@pytest.mark.parametrize(("d", "lanes"), [(16, 1), (16, 16)])
def test_norm_backpressure_random(d, lanes):
    seed = _random_seed()
    rng = random.Random(seed)
    config = _config(d, lanes)
    vectors = _realistic_vectors(config.dp, 16, rng)
    vectors += [(a, rng.randrange(1, 31), False) for a in _extreme_vectors(config.dp, rng)]
    commands = [_command(rng.choice([Kind.WRITE, Kind.WRITE, Kind.QUERY]), slot, a, exp, nan)
                for slot, (a, exp, nan) in enumerate(vectors)]
    outputs, violations = _run(NormUnit(config), commands, rng=rng, gap=0.4, stall=0.5)
    _check_outputs(commands, outputs)
    assert violations == []


def test_norm_multipliers():
    for lanes in (1, 4, 16):
        dut = NormUnit(_config(16, lanes))
        assert dut.multipliers == lanes
        text = strip_verilog_comments(verilog.convert(dut, name="norm_unit"))
        assert "*" not in text
        assert text.count("module ") == 1 + lanes


def test_norm_layouts():
    config = _config(16, 1)
    dp = config.dp
    inputs = norm_input_layout(config)
    outputs = norm_output_layout(config)
    assert list(inputs.members) == ["meta", "a", "exp", "nan"]
    assert list(outputs.members) == ["meta", "a", "exp", "nan", "norm"]
    assert outputs.members["norm"].width == dp.norm_width
    assert inputs.members["exp"].width == dp.exp_width


def test_norm_rejects_non_config():
    with pytest.raises(TypeError, match=r"^config must be a MacroConfig, not 16$"):
        NormUnit(16)


@pytest.mark.parametrize(("d", "lanes"), [(16, 1), (64, 8)])
def test_norm_verilator_lint(tmp_path, d, lanes):
    assert lint_unit(NormUnit(_config(d, lanes)), f"norm_d{d}_w{lanes}", tmp_path) == []
