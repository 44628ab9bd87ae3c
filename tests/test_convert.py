import random

import pytest
import torch
from amaranth.sim import Simulator

from lint_unit import lint_unit
from golden.bitexact import to_block_fixed
from hdl.config import MacroConfig
from hdl.convert import BlockConverter, input_layout, output_layout
from hdl.layouts import Kind, meta_layout

# Constructors that raise leave components that are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

FORMATS = ("fp16", "bf16")


class Elements:
    """Random 16-bit patterns of one input format, by category."""

    def __init__(self, rng, fmt):
        self.rng = rng
        self.man_bits = fmt.man_bits
        self.field_max = fmt.exp_max

    def pattern(self, sign, field, fraction):
        return (sign << 15) | (field << self.man_bits) | fraction

    def sign(self):
        return self.rng.getrandbits(1)

    def fraction(self):
        return self.rng.getrandbits(self.man_bits)

    def with_field(self, field):
        return self.pattern(self.sign(), field, self.fraction())

    def normal(self):
        return self.with_field(self.rng.randint(1, self.field_max - 1))

    def subnormal(self):
        return self.pattern(self.sign(), 0, self.rng.randint(1, (1 << self.man_bits) - 1))

    def zero(self):
        return self.pattern(self.sign(), 0, 0)

    def extreme(self):
        all_ones = (1 << self.man_bits) - 1
        choices = [
            self.pattern(self.sign(), self.field_max - 1, all_ones),  # largest finite
            self.pattern(self.sign(), self.field_max - 1, 0),
            self.pattern(self.sign(), 1, 0),                          # smallest normal
            self.pattern(self.sign(), 0, all_ones),                   # largest subnormal
            self.pattern(self.sign(), 0, 1),                          # smallest subnormal
        ]
        return self.rng.choice(choices)

    def infinity(self):
        return self.pattern(self.sign(), self.field_max, 0)

    def nan(self):
        quiet = 1 << (self.man_bits - 1)
        fraction = self.rng.choice([quiet, quiet | self.fraction(), self.rng.randint(1, quiet - 1)])
        return self.pattern(self.sign(), self.field_max, fraction)

    def mixed(self, nonfinite_probability):
        roll = self.rng.random()
        if roll < nonfinite_probability:
            return self.rng.choice([self.infinity, self.nan])()
        category = self.rng.choices([self.normal, self.subnormal, self.zero, self.extreme],
                                    weights=[60, 15, 15, 10])[0]
        return category()


def _vectors(rng, fmt, d, count):
    """Return ``count`` vectors covering the element categories and the shift boundaries."""
    elements = Elements(rng, fmt)
    kinds = ["mixed", "mixed_nonfinite", "narrow", "single", "span", "zeros", "nonfinite",
             "subnormals", "extremes"]
    vectors = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        if kind == "mixed":
            vector = [elements.mixed(0.0) for _ in range(d)]
        elif kind == "mixed_nonfinite":
            vector = [elements.mixed(0.03) for _ in range(d)]
        elif kind == "narrow":
            # Exponent fields within 15 of the maximum give every shift around the limit of 13.
            top = rng.randint(1, elements.field_max - 1)
            vector = [elements.with_field(max(0, top - rng.randint(0, 15))) for _ in range(d)]
        elif kind == "single":
            vector = [elements.zero() for _ in range(d)]
            vector[rng.randrange(d)] = rng.choice([elements.normal, elements.subnormal,
                                                   elements.extreme])()
        elif kind == "span":
            vector = [elements.with_field(rng.randint(0, elements.field_max - 1)) for _ in range(d)]
            vector[0] = elements.pattern(0, elements.field_max - 1, rng.getrandbits(fmt.man_bits))
            vector[1] = elements.pattern(1, 0, 1)
        elif kind == "zeros":
            vector = [elements.zero() for _ in range(d)]
        elif kind == "nonfinite":
            vector = [rng.choice([elements.infinity, elements.nan, elements.normal])()
                      for _ in range(d)]
        elif kind == "subnormals":
            vector = [rng.choice([elements.subnormal, elements.zero])() for _ in range(d)]
        else:
            vector = [elements.extreme() for _ in range(d)]
        rng.shuffle(vector)
        vectors.append(vector)
    return vectors


def _metas(rng, config, count):
    slot_max = (1 << config.slot_width) - 1
    return [{"kind": rng.choice(list(Kind)).value, "slot": rng.randint(0, slot_max),
             "last": rng.randint(0, slot_max), "bad": rng.getrandbits(1)} for _ in range(count)]


def _pack(layout, values):
    """Return the bits of a flat ``{field: int}`` dictionary laid out as a ``StructLayout``."""
    bits = 0
    for name, value in values.items():
        field = layout[name]
        bits |= (value & ((1 << field.width) - 1)) << field.offset
    return bits


def _unpack(layout, bits):
    """Return the fields of a ``StructLayout`` value as unsigned integers."""
    return {name: (bits >> field.offset) & ((1 << field.width) - 1) for name, field in layout}


def _pack_input(config, meta, vector):
    """Return the bits of one :attr:`BlockConverter.i` payload."""
    layout = input_layout(config)
    vec_bits = sum(element << (16 * lane) for lane, element in enumerate(vector))
    meta_bits = _pack(meta_layout(config), meta)
    return (meta_bits << layout["meta"].offset) | (vec_bits << layout["vec"].offset)


def _unpack_output(config, bits):
    """Return ``(meta, a, exp, nan)`` of one :attr:`BlockConverter.o` payload."""
    layout = output_layout(config)
    fields = _unpack(layout, bits)
    meta = _unpack(meta_layout(config), fields["meta"])
    x_width = config.dp.x_width
    a_bits = bits >> layout["a"].offset
    a = []
    for lane in range(config.d):
        value = (a_bits >> (x_width * lane)) & ((1 << x_width) - 1)
        a.append(value - (1 << x_width) if value >> (x_width - 1) else value)
    return meta, a, fields["exp"], fields["nan"]


def _simulate(dut, metas, vectors, *, seed, valid_probability=1.0, ready_probability=1.0):
    """Stream the vectors through ``dut`` and return the transfers on both sides.

    The producer idles before each vector with probability ``1 - valid_probability`` and the
    consumer asserts ``o.ready`` with ``ready_probability``. Returns ``(input_cycles, outputs)``
    with one ``(cycle, payload bits)`` per output transfer. Also checks that a stalled output keeps
    its payload until the transfer.
    """
    producer_rng = random.Random(seed)
    consumer_rng = random.Random(seed + 1)
    input_cycles, outputs = [], []
    cycle_limit = 20 * len(vectors) + 100

    async def producer(ctx):
        cycle = 0
        for meta, vector in zip(metas, vectors):
            while producer_rng.random() >= valid_probability:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.as_value(), _pack_input(dut.config, meta, vector))
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    input_cycles.append(cycle - 1)
                    break
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        cycle = 0
        stalled = None
        while len(outputs) < len(vectors):
            assert cycle < cycle_limit, f"only {len(outputs)} of {len(vectors)} outputs arrived"
            ctx.set(dut.o.ready, consumer_rng.random() < ready_probability)
            _, _, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready,
                                                                  dut.o.payload.as_value())
            if stalled is not None:
                assert valid, f"o.valid dropped without a transfer in cycle {cycle}"
                assert payload == stalled, f"o.payload changed without a transfer in cycle {cycle}"
            if valid and ready:
                outputs.append((cycle, payload))
                stalled = None
            elif valid:
                stalled = payload
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return input_cycles, outputs


def _assert_matches_golden(config, metas, vectors, outputs):
    golden = to_block_fixed(torch.tensor(vectors, dtype=torch.int64), config.dp)
    expected_a = golden.a.tolist()
    expected_exp = golden.exp.tolist()
    expected_nan = golden.nan.tolist()
    assert len(outputs) == len(vectors)
    for k, (_, payload) in enumerate(outputs):
        meta, a, exp, nan = _unpack_output(config, payload)
        context = f"vector {k}: {[hex(v) for v in vectors[k]]}"
        assert meta == metas[k], context
        assert exp == expected_exp[k], context
        assert nan == expected_nan[k], context
        assert a == expected_a[k], context


@pytest.mark.parametrize("input_format", FORMATS)
@pytest.mark.parametrize("d", [16, 64])
def test_vectors_match_golden(d, input_format):
    seed = 100 + d + FORMATS.index(input_format)
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = MacroConfig(d, 2, input_format=input_format)
    count = 270 if d == 16 else 108
    vectors = _vectors(rng, config.dp.fmt, d, count)
    metas = _metas(rng, config, count)
    dut = BlockConverter(config)

    input_cycles, outputs = _simulate(dut, metas, vectors, seed=seed)

    _assert_matches_golden(config, metas, vectors, outputs)
    # Without stalls the converter takes a vector every `latency` cycles, in the last cycle
    # of each, and presents it in the next cycle.
    assert input_cycles == [(k + 1) * dut.latency - 1 for k in range(count)]
    assert [cycle for cycle, _ in outputs] == [c + 1 for c in input_cycles]


@pytest.mark.parametrize("input_format", FORMATS)
@pytest.mark.parametrize("max_levels_per_stage", [1, 3, 4])
def test_tree_split_matches_golden(input_format, max_levels_per_stage):
    seed = 200 + max_levels_per_stage
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = MacroConfig(16, 1, input_format=input_format)
    vectors = _vectors(rng, config.dp.fmt, 16, 45)
    metas = _metas(rng, config, 45)
    dut = BlockConverter(config, max_levels_per_stage=max_levels_per_stage)

    input_cycles, outputs = _simulate(dut, metas, vectors, seed=seed)

    _assert_matches_golden(config, metas, vectors, outputs)
    assert input_cycles == [(k + 1) * dut.latency - 1 for k in range(len(vectors))]
    assert [cycle for cycle, _ in outputs] == [c + 1 for c in input_cycles]


def test_latency_grows_with_tree_stages():
    config = MacroConfig(16, 1)
    latencies = [BlockConverter(config, max_levels_per_stage=levels).latency
                 for levels in (1, 2, 3, 4)]
    assert latencies == [7, 5, 5, 4]


@pytest.mark.parametrize("input_format", FORMATS)
@pytest.mark.parametrize(("valid_probability", "ready_probability"), [(0.7, 0.5), (1.0, 0.3),
                                                                      (0.3, 0.9)])
def test_back_pressure_keeps_order_and_count(input_format, valid_probability, ready_probability):
    seed = 300 + int(100 * valid_probability) + int(10 * ready_probability)
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = MacroConfig(16, 2, context=256, input_format=input_format)
    count = 200
    vectors = _vectors(rng, config.dp.fmt, 16, count)
    metas = _metas(rng, config, count)
    for index, meta in enumerate(metas):
        meta["slot"] = index % 256
    dut = BlockConverter(config)

    input_cycles, outputs = _simulate(dut, metas, vectors, seed=seed,
                                      valid_probability=valid_probability,
                                      ready_probability=ready_probability)

    assert len(input_cycles) == count
    slots = [_unpack_output(config, payload)[0]["slot"] for _, payload in outputs]
    assert slots == [index % 256 for index in range(count)]
    _assert_matches_golden(config, metas, vectors, outputs)


def test_back_pressure_at_d64():
    seed = 400
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = MacroConfig(64, 3, input_format="bf16")
    vectors = _vectors(rng, config.dp.fmt, 64, 63)
    metas = _metas(rng, config, 63)
    dut = BlockConverter(config)

    _, outputs = _simulate(dut, metas, vectors, seed=seed, valid_probability=0.6,
                           ready_probability=0.6)

    _assert_matches_golden(config, metas, vectors, outputs)


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), [
    ((16,), {}, TypeError, r"^config must be a MacroConfig, not 16$"),
    ((MacroConfig(16, 1),), {"max_levels_per_stage": 0}, ValueError,
     r"^max_levels_per_stage must be at least 1, not 0$"),
    ((MacroConfig(16, 1),), {"max_levels_per_stage": True}, TypeError,
     r"^max_levels_per_stage must be an integer, not True$"),
    ((MacroConfig(16, 1),), {"max_levels_per_stage": 2.0}, TypeError,
     r"^max_levels_per_stage must be an integer, not 2\.0$"),
])
def test_invalid_arguments_raise(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        BlockConverter(*args, **kwargs)


@pytest.mark.parametrize("input_format", FORMATS)
def test_verilog_passes_verilator_lint(tmp_path, input_format):
    dut = BlockConverter(MacroConfig(16, 2, input_format=input_format))
    assert lint_unit(dut, "block_converter", tmp_path) == []
