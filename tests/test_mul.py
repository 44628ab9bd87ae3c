"""Pipelined logic multiplier: exact products at the stated latency, no `*` in the Verilog."""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hdl.mul import PipelinedMul, mul_latency, mul_shape
from lint_unit import lint_unit, strip_verilog_comments


def _extremes(shape):
    low = -(1 << (shape.width - 1)) if shape.signed else 0
    high = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    return low, high


@pytest.mark.parametrize(("shape", "width", "levels"), [
    (signed(30), 17, 1), (unsigned(14), 14, 1), (signed(5), 1, 1), (signed(23), 17, 2),
    (unsigned(3), 5, 3),
])
def test_products_exact(shape, width, levels):
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    dut = PipelinedMul(shape, width, levels_per_stage=levels)
    assert dut.o.shape() == mul_shape(shape, width)
    low, high = _extremes(shape)
    cases = [(a, b) for a in (low, high, 0, -1 if shape.signed else 1) for b in (0, 1, (1 << width) - 1)]
    cases += [(rng.randint(low, high), rng.randrange(1 << width)) for _ in range(200)]
    latency = dut.latency
    assert latency == mul_latency(width, levels)

    async def bench(ctx):
        results = []
        for cycle in range(len(cases) + latency):
            if cycle < len(cases):
                ctx.set(dut.a, cases[cycle][0])
                ctx.set(dut.b, cases[cycle][1])
            await ctx.tick()
            if cycle + 1 >= latency:
                results.append(ctx.get(dut.o))
        for (a, b), got in zip(cases, results):
            assert got == a * b, f"{a} * {b}: got {got} (seed {seed})"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_latency_formula():
    assert mul_latency(17) == 5
    assert mul_latency(17, 2) == 3
    assert mul_latency(14) == 4
    assert mul_latency(1) == 1
    assert mul_latency(2, 4) == 1


@pytest.mark.parametrize(("args", "error", "message"), [
    ((signed(8), 0), ValueError, r"^multiplier width must be a positive integer, not 0$"),
    ((signed(8), 2.0), TypeError, r"^multiplier width must be a positive integer, not 2\.0$"),
])
def test_bad_width_rejected(args, error, message):
    with pytest.raises(error, match=message):
        PipelinedMul(*args)


def test_bad_levels_rejected():
    with pytest.raises(ValueError, match=r"^levels_per_stage must be a positive integer, not 0$"):
        PipelinedMul(signed(8), 4, levels_per_stage=0)


def test_verilog_has_no_multiplier(tmp_path):
    text = verilog.convert(PipelinedMul(signed(30), 17), name="mul", emit_src=False)
    assert "*" not in strip_verilog_comments(text)
    assert lint_unit(PipelinedMul(signed(30), 17), "mul_s30_u17", tmp_path) == []
