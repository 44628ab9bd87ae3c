# amaranth: UnusedElaboratable=no
import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from lint_unit import lint_unit, strip_verilog_comments
from golden.numerics import datapath
from hdl.constmul import (ConstMul, const_mul, const_mul_adders, const_mul_depth,
                          const_mul_latency, const_mul_shape, csd_digits)

SEED = 20260405

# Every boundary and centroid constant that the supported configurations compile in.
DATAPATH_CONSTANTS = sorted({
    constant
    for d in (16, 64, 256)
    for bits in (2, 3, 4)
    for constant in datapath(d, bits).boundary_constants + datapath(d, bits).centroid_constants
})


def _test_constants():
    rng = random.Random(SEED)
    constants = {0, 1, 3, 5, 11, 85, 157339, (1 << 20) - 1}
    constants |= {1 << k for k in range(25)}
    constants |= {(1 << k) - 1 for k in range(1, 25)}
    constants |= {(1 << k) + 1 for k in range(1, 25)}
    constants |= {rng.randrange(1 << 20) for _ in range(300)}
    constants |= set(DATAPATH_CONSTANTS)
    return sorted(constants)


def _min_signed_digit_weight(limit):
    """Return the fewest non-zero signed binary digits of each of ``0..limit-1``.

    The lowest digit of an even number is 0. An odd ``n`` ends in +1 or -1, which leaves
    ``(n - 1) / 2`` or ``(n + 1) / 2`` for the higher digits; both are below ``n`` except at 1.
    """
    weight = [0] * limit
    for n in range(1, limit):
        if n % 2 == 0:
            weight[n] = weight[n // 2]
        else:
            weight[n] = 1 + min(weight[(n - 1) // 2], weight[(n + 1) // 2])
    return weight


def _shape_range(shape):
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _extreme_inputs(shape, rng):
    low, high = _shape_range(shape)
    values = {low, high, 0, min(1, high), max(-1, low), low + 1, high - 1}
    values |= {rng.randint(low, high) for _ in range(8)}
    return sorted(v for v in values if low <= v <= high)


class _ProductBench(wiring.Component):
    """Combinational products of one input per (shape, constant) case."""

    def __init__(self, cases):
        self._cases = cases
        members = {}
        for k, (shape, constant) in enumerate(cases):
            members[f"a{k}"] = In(shape)
            members[f"p{k}"] = Out(const_mul_shape(shape, constant))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for k, (_, constant) in enumerate(self._cases):
            m.d.comb += getattr(self, f"p{k}").eq(const_mul(getattr(self, f"a{k}"), constant))
        return m


PRODUCT_SHAPES = [unsigned(1), unsigned(8), unsigned(17), signed(1), signed(2), signed(14), signed(22)]
PRODUCT_CONSTANTS = [0, 1, 2, 3, 7, 11, 85, (1 << 20) - 1, (1 << 20) + 1, 157339, 16923, 741355]


def test_csd_digits_reconstruct_constant():
    for constant in _test_constants():
        digits = csd_digits(constant)
        assert sum(sign << shift for shift, sign in digits) == constant, constant


def test_csd_digits_non_adjacent():
    for constant in _test_constants():
        shifts = [shift for shift, _ in csd_digits(constant)]
        assert shifts == sorted(shifts), constant
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:])), (constant, shifts)


def test_csd_digits_signs():
    for constant in _test_constants():
        digits = csd_digits(constant)
        assert all(sign in (1, -1) for _, sign in digits), constant
        if digits:
            assert digits[-1][1] == 1, constant


def test_csd_digits_minimal_weight():
    weight = _min_signed_digit_weight(4096)
    for constant in range(4096):
        assert len(csd_digits(constant)) == weight[constant], constant


def test_csd_digits_small_cases():
    assert csd_digits(0) == []
    assert csd_digits(1) == [(0, 1)]
    assert csd_digits(8) == [(3, 1)]
    assert csd_digits(7) == [(0, -1), (3, 1)]
    assert csd_digits(11) == [(0, -1), (2, -1), (4, 1)]


def test_const_mul_adders_by_hand():
    assert const_mul_adders(0) == 0
    assert const_mul_adders(1) == 0
    assert const_mul_adders(1 << 17) == 0
    assert const_mul_adders(3) == 1
    assert const_mul_adders((1 << 20) - 1) == 1
    assert const_mul_adders(5) == 1
    assert const_mul_adders(11) == 2
    assert const_mul_adders(85) == 3


def test_const_mul_depth_by_hand():
    assert const_mul_depth(0) == 0
    assert const_mul_depth(4) == 0
    assert const_mul_depth(5) == 1
    assert const_mul_depth(11) == 2
    assert const_mul_depth(85) == 2
    assert const_mul_depth(0b1010101010101) == 3


def test_const_mul_latency_by_hand():
    assert const_mul_latency(0, 1) == 1
    assert const_mul_latency(4, 3) == 1
    assert const_mul_latency(85, 1) == 2
    assert const_mul_latency(0b1010101010101, 2) == 2
    assert const_mul_latency(0b1010101010101, 4) == 1
    assert const_mul_latency(157339, 3) == 2


@pytest.mark.parametrize("constant", [1.5, True, "3", None])
def test_csd_digits_rejects_non_integer(constant):
    with pytest.raises(TypeError, match=r"^constant must be a non-negative integer, not "):
        csd_digits(constant)


def test_csd_digits_rejects_negative():
    with pytest.raises(ValueError, match=r"^constant must be a non-negative integer, not -3$"):
        csd_digits(-3)


def test_const_mul_rejects_non_value():
    with pytest.raises(TypeError, match=r"^value must be an Amaranth Value"):
        const_mul(5, 3)


def test_const_mul_rejects_negative_constant():
    with pytest.raises(ValueError, match=r"^constant must be a non-negative integer, not -1$"):
        const_mul(Signal(4), -1)


def test_const_mul_pipeline_rejects_bad_levels():
    with pytest.raises(ValueError, match=r"^levels_per_stage must be a positive integer, not 0$"):
        ConstMul(unsigned(4), 3, levels_per_stage=0)
    with pytest.raises(TypeError, match=r"^levels_per_stage must be a positive integer, not 1.0$"):
        ConstMul(unsigned(4), 3, levels_per_stage=1.0)


def test_const_mul_shape_is_narrowest():
    for shape in PRODUCT_SHAPES:
        for constant in PRODUCT_CONSTANTS:
            result = const_mul_shape(shape, constant)
            low, high = _shape_range(shape)
            products = (low * constant, high * constant)
            result_low, result_high = _shape_range(result)
            assert result.signed == shape.signed, (shape, constant)
            assert result_low <= min(products), (shape, constant)
            assert max(products) <= result_high, (shape, constant)
            if result.width > 1:
                narrower = signed(result.width - 1) if result.signed else unsigned(result.width - 1)
                narrow_low, narrow_high = _shape_range(narrower)
                fits_narrower = narrow_low <= min(products) and max(products) <= narrow_high
                assert not fits_narrower, (shape, constant)


def test_const_mul_matches_python():
    cases = [(shape, constant) for shape in PRODUCT_SHAPES for constant in PRODUCT_CONSTANTS]
    dut = _ProductBench(cases)
    for k, (shape, constant) in enumerate(cases):
        assert getattr(dut, f"p{k}").shape() == const_mul_shape(shape, constant)
        assert const_mul(Signal(shape), constant).shape() == const_mul_shape(shape, constant)
    rng = random.Random(SEED)
    inputs = [_extreme_inputs(shape, rng) for shape, _ in cases]
    mismatches = []

    async def testbench(ctx):
        for k, (_, constant) in enumerate(cases):
            for value in inputs[k]:
                ctx.set(getattr(dut, f"a{k}"), value)
                product = ctx.get(getattr(dut, f"p{k}"))
                if product != value * constant:
                    mismatches.append((cases[k], value, product))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    assert mismatches == []


@pytest.mark.parametrize("levels_per_stage", [1, 2, 3])
@pytest.mark.parametrize(("shape", "constant"), [
    (signed(14), 157339),
    (unsigned(17), 741355),
    (signed(22), 0b1010101010101),
    (unsigned(8), 64),
    (signed(8), 0),
])
def test_const_mul_pipeline_matches_python(shape, constant, levels_per_stage):
    dut = ConstMul(shape, constant, levels_per_stage=levels_per_stage)
    assert dut.latency == const_mul_latency(constant, levels_per_stage)
    rng = random.Random(SEED)
    low, high = _shape_range(shape)
    inputs = [low, high, 0, high - 1, low + 1] + [rng.randint(low, high) for _ in range(20)]
    outputs = []

    async def testbench(ctx):
        for value in inputs + [0] * dut.latency:
            ctx.set(dut.i, value)
            await ctx.tick()
            outputs.append(ctx.get(dut.o))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    # The output after tick t belongs to the input of tick t + 1 - latency.
    received = outputs[dut.latency - 1:dut.latency - 1 + len(inputs)]
    assert received == [value * constant for value in inputs]


class _Multiplier(wiring.Component):
    a: In(signed(14))
    b: In(unsigned(17))
    p: Out(signed(31))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.a * self.b)
        return m


def test_multiplier_check_detects_star():
    text = strip_verilog_comments(verilog.convert(_Multiplier(), name="multiplier"))
    assert "*" in text


def test_const_mul_verilog_has_no_multiplier():
    cases = [(signed(14), c) for c in DATAPATH_CONSTANTS] + [(unsigned(17), c) for c in DATAPATH_CONSTANTS]
    text = strip_verilog_comments(verilog.convert(_ProductBench(cases), name="const_products"))
    assert "*" not in text
    pipelined = verilog.convert(ConstMul(unsigned(17), 157339, levels_per_stage=2), name="const_mul")
    assert "*" not in strip_verilog_comments(pipelined)


def test_const_mul_verilator_lint(tmp_path):
    cases = [(signed(14), 157339), (unsigned(17), 741355), (unsigned(8), 64)]
    designs = {
        "const_products": _ProductBench(cases),
        "const_mul_pipe": ConstMul(signed(14), 157339, levels_per_stage=2),
    }
    for top, dut in designs.items():
        assert lint_unit(dut, top, tmp_path) == [], top
