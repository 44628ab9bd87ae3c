import random

import pytest
import torch
from amaranth.hdl import Fragment, signed, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from lint_unit import lint_unit
from golden.bitexact import binary32_bits
from golden.numerics import FLOAT32_NAN, datapath
from hdl.float32 import ToBinary32

# Constructors that raise leave components that are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

TAG_LAYOUT = data.StructLayout({"slot": unsigned(14), "last": unsigned(1)})
RANDOM_CASES = 1500


def _exp_range(d, bits, input_format):
    """Return the exponent range of the score unit's conversion for one configuration."""
    dp = datapath(d, bits, input_format)
    exp_top = (1 << dp.exp_width) - 2
    return 2 - dp.score_exp_offset, 2 * exp_top - dp.score_exp_offset


# (d, bits) pairs whose product_width is 37 (the narrowest) and 49 (the widest).
CONFIGS = [
    pytest.param(37, *_exp_range(16, 1, fmt), id=f"z37-{fmt}") for fmt in ("fp16", "bf16")
] + [
    pytest.param(49, *_exp_range(256, 3, fmt), id=f"z49-{fmt}") for fmt in ("fp16", "bf16")
]


def test_config_widths_match_datapath():
    assert datapath(16, 1, "fp16").product_width == 37
    assert datapath(256, 3, "bf16").product_width == 49


def _hard_cases(rng, width, exp_min, exp_max):
    """Return (z, exp) pairs on the rounding, binade, overflow and underflow boundaries."""
    z_max = (1 << (width - 1)) - 1
    z_min = -(1 << (width - 1))
    cases = []

    def add(z, exp):
        if z_min <= z <= z_max and exp_min <= exp <= exp_max:
            cases.append((z, exp))

    def add_both_signs(z, exp):
        add(z, exp)
        add(-z, exp)

    def random_exp():
        return rng.randint(exp_min, exp_max)

    for _ in range(100):
        # Exact ties between two neighbours, with an even and an odd lower neighbour, and one
        # unit either side of the tie.
        spare = rng.randint(0, width - 26)
        significand = rng.getrandbits(23) | (1 << 23)
        tie = ((significand << 1) | 1) << spare
        exp = random_exp()
        for delta in (0, -1, 1):
            add_both_signs(tie + delta, exp)
        # A significand of 24 ones rounds up into the next binade when the guard bit is set.
        spare = rng.randint(1, width - 25)
        ones = ((1 << 24) - 1) << spare
        add_both_signs(ones + (1 << (spare - 1)), random_exp())
        add_both_signs(ones + (1 << (spare - 1)) - 1, random_exp())
        # Exact powers of two and the largest magnitudes.
        add_both_signs(1 << rng.randint(0, width - 2), random_exp())
        add(z_max, random_exp())
        add(z_min, random_exp())

    for exp in range(exp_min, exp_max + 1, max(1, (exp_max - exp_min) // 40)):
        add(z_max, exp)
        add(z_min, exp)
        add_both_signs(1, exp)

    bit_lengths = {1, 2, 3, 23, 24, 25, 26, width - 2, width - 1}
    bit_lengths.update(rng.sample(range(1, width), 8))
    for bit_length in sorted(bit_lengths):
        # value = z * 2**exp with z of bit_length bits has the unbiased exponent
        # exp + bit_length - 1.
        for unbiased in (127, 128, -126, -127, -149, -150, -151):
            exp = unbiased - (bit_length - 1)
            top = 1 << (bit_length - 1)
            add_both_signs(top, exp)
            add_both_signs((top << 1) - 1, exp)
            if bit_length > 1:
                add_both_signs(top + 1, exp)
                add_both_signs(top | (top >> 1), exp)
                add_both_signs(top | rng.getrandbits(bit_length - 1), exp)
    return cases


def _random_cases(rng, width, exp_min, exp_max, count):
    """Return (z, exp) pairs with random bit lengths and exponents across the whole range."""
    cases = []
    for _ in range(count):
        bit_length = rng.randint(0, width - 1)
        z = rng.getrandbits(bit_length) if bit_length else 0
        if rng.random() < 0.5:
            z = -z
        cases.append((z, rng.randint(exp_min, exp_max)))
    return cases


def _expected(cases, nans):
    z = torch.tensor([c[0] for c in cases], dtype=torch.int64)
    exp = torch.tensor([c[1] for c in cases], dtype=torch.int64)
    bits = binary32_bits(z, exp).tolist()
    return [FLOAT32_NAN if nan else b for b, nan in zip(bits, nans)]


def _simulate(dut, cases, nans, *, rng, gap_probability):
    """Drive the cases into ``dut`` with random idle cycles and collect the results.

    Idle cycles carry random data with ``i_valid`` low. Returns ``(outputs, input_cycles)``:
    one ``(cycle, bits, slot, last)`` per cycle in which ``o_valid`` was high, and the cycle of
    each input.
    """
    outputs, input_cycles = [], []
    total = len(cases)
    slot_mask = (1 << TAG_LAYOUT["slot"].width) - 1
    last_shift = TAG_LAYOUT["last"].offset

    async def testbench(ctx):
        cycle = 0
        index = 0
        last_input = None
        while index < total or cycle <= last_input + dut.latency:
            if index < total and rng.random() >= gap_probability:
                z, exp = cases[index]
                ctx.set(dut.i_valid, 1)
                ctx.set(dut.z, z)
                ctx.set(dut.exp, exp)
                ctx.set(dut.nan, nans[index])
                ctx.set(dut.i_tag.as_value(), index | (int(index == total - 1) << last_shift))
                input_cycles.append(cycle)
                last_input = cycle
                index += 1
            else:
                ctx.set(dut.i_valid, 0)
                ctx.set(dut.z, rng.randint(-1, 1) * rng.getrandbits(dut.z_width - 1))
                ctx.set(dut.nan, rng.getrandbits(1))
            _, _, valid, bits, tag = await ctx.tick().sample(dut.o_valid, dut.bits,
                                                             dut.o_tag.as_value())
            if valid:
                outputs.append((cycle, bits, tag & slot_mask, tag >> last_shift))
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return outputs, input_cycles


def _check_against_golden(width, exp_min, exp_max, cases, seed):
    rng = random.Random(seed)
    nans = [rng.random() < 0.02 for _ in cases]
    dut = ToBinary32(width, exp_min, exp_max, TAG_LAYOUT)
    outputs, input_cycles = _simulate(dut, cases, nans, rng=rng, gap_probability=0.1)
    expected = _expected(cases, nans)

    assert len(outputs) == len(cases)
    assert [cycle for cycle, *_ in outputs] == [c + dut.latency for c in input_cycles]
    assert [slot for _, _, slot, _ in outputs] == list(range(len(cases)))
    assert [last for *_, last in outputs] == [0] * (len(cases) - 1) + [1]
    mismatches = [(cases[k], hex(bits), hex(expected[k]))
                  for k, (_, bits, _, _) in enumerate(outputs) if bits != expected[k]]
    assert mismatches == []
    return expected


@pytest.mark.parametrize(("width", "exp_min", "exp_max"), CONFIGS)
def test_hard_cases_match_golden(width, exp_min, exp_max):
    seed = 1000 + width + exp_min
    print(f"seed {seed}")
    cases = _hard_cases(random.Random(seed), width, exp_min, exp_max)
    expected = _check_against_golden(width, exp_min, exp_max, cases, seed)

    # The cases must reach the boundaries their exponent range allows.
    assert len(cases) > 1000
    magnitudes = [b & 0x7FFFFFFF for b in expected if b != FLOAT32_NAN]
    if exp_max + width - 1 >= 128:
        assert 0x7F800000 in magnitudes
        assert 0x7F7FFFFF in magnitudes
    if exp_min <= -150:
        assert 0 in [b & 0x7FFFFFFF for (z, _), b in zip(cases, expected) if z != 0]
        assert 1 in magnitudes
        assert 0x00800000 in magnitudes
        assert any(0 < b < 0x00800000 for b in magnitudes)


@pytest.mark.parametrize(("width", "exp_min", "exp_max"), CONFIGS)
def test_random_cases_match_golden(width, exp_min, exp_max):
    seed = 2000 + width + exp_min
    print(f"seed {seed}")
    cases = _random_cases(random.Random(seed), width, exp_min, exp_max, RANDOM_CASES)
    _check_against_golden(width, exp_min, exp_max, cases, seed)


def test_small_width_matches_golden():
    seed = 3000
    print(f"seed {seed}")
    rng = random.Random(seed)
    cases = [(z, exp) for z in range(-2, 2) for exp in range(-160, 141, 3)]
    cases += _random_cases(rng, 2, -160, 140, 200)
    _check_against_golden(2, -160, 140, cases, seed)


def test_full_exponent_range_matches_golden():
    seed = 4000
    print(f"seed {seed}")
    rng = random.Random(seed)
    cases = _hard_cases(rng, 53, -900, 900)[::4] + _random_cases(rng, 53, -900, 900, 300)
    _check_against_golden(53, -900, 900, cases, seed)


def test_negative_underflow_is_negative_zero():
    cases = [(-1, -160), (-3, -152), (1, -160), (0, -160), (0, 100)]
    expected = _check_against_golden(8, -160, 100, cases, seed=5000)
    assert expected == [0x80000000, 0x80000000, 0, 0, 0]


@pytest.mark.parametrize(("args", "error", "message"), [
    (("49", -10, 10), TypeError, r"^z_width must be an integer, not '49'$"),
    ((True, -10, 10), TypeError, r"^z_width must be an integer, not True$"),
    ((1, -10, 10), ValueError, r"^z_width must be in 2\.\.53, not 1$"),
    ((54, -10, 10), ValueError, r"^z_width must be in 2\.\.53, not 54$"),
    ((49, -10.0, 10), TypeError, r"^exp_min must be an integer, not -10\.0$"),
    ((49, -901, 10), ValueError, r"^exp_min must be in -900\.\.900, not -901$"),
    ((49, -10, 901), ValueError, r"^exp_max must be in -900\.\.900, not 901$"),
    ((49, 10, -10), ValueError, r"^exp_min must not exceed exp_max, not 10 > -10$"),
    ((49, -10, 10, "tag"), TypeError, r"^tag_shape must be a shape-like object, not 'tag'$"),
])
def test_invalid_arguments_raise(args, error, message):
    with pytest.raises(error, match=message):
        ToBinary32(*args)


def test_ports_have_expected_shapes():
    dut = ToBinary32(49, -284, 222, TAG_LAYOUT)
    Fragment.get(dut, None)
    assert dut.z.shape() == signed(49)
    assert dut.exp.shape() == signed(10)
    assert dut.bits.shape() == unsigned(32)
    assert dut.i_tag.shape() == TAG_LAYOUT
    assert dut.o_tag.shape() == TAG_LAYOUT


@pytest.mark.parametrize(("width", "exp_min", "exp_max"), [(49, -284, 222), (2, -60, -2)])
def test_verilog_passes_verilator_lint(tmp_path, width, exp_min, exp_max):
    dut = ToBinary32(width, exp_min, exp_max, TAG_LAYOUT)
    assert lint_unit(dut, "to_binary32", tmp_path) == []
