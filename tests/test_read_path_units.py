# amaranth: UnusedElaboratable=no
"""Unit tests of the Hadamard engine, the table builder and the score unit (Amaranth simulator)."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from golden import bitexact
from golden.hadamard import fwht
from golden.signs import signs_to_word
from hdl.config import MacroConfig
from hdl.hadamard import HadamardEngine
from hdl.index_sram import IndexSRAM
from hdl.score import ScoreUnit
from amaranth.hdl import Module
from amaranth.lib import wiring

from hdl.table import TableBuilder, TableMemory


@pytest.mark.parametrize("d, lanes", [(16, 8), (16, 1), (16, 2), (64, 32), (64, 4)])
def test_hadamard_engine_matches_fwht(d, lanes):
    seed = d + lanes
    print(f"seed {seed}")
    config = MacroConfig(d, 2, 8, transform_lanes=lanes)
    dut = HadamardEngine(config)
    rng = random.Random(seed)
    limit = (1 << 13) - 1
    vectors = [[rng.randint(-limit, limit) for _ in range(d)] for _ in range(3)]
    vectors += [[limit] * d, [-limit] * d]           # the largest transform outputs
    results = []

    async def bench(ctx):
        ctx.set(dut.signs, signs_to_word(config.signs))
        for vector in vectors:
            for i, a in enumerate(vector):
                ctx.set(dut.i.payload.a[i], a)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 1)
            cycles = 0
            while not ctx.get(dut.o.valid):
                await ctx.tick()
                cycles += 1
            results.append(([ctx.get(dut.o.payload.y[i]) for i in range(d)], cycles))
            await ctx.tick()
            ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    signs = torch.tensor(config.signs)
    for vector, (got, cycles) in zip(vectors, results):
        assert got == fwht(torch.tensor(vector) * signs).tolist()
        assert cycles == dut.latency_cycles


class _BuilderWithMemory(wiring.Component):
    """A table builder writing into its table memory, as in the macro."""

    def __init__(self, config):
        self.builder = TableBuilder(config)
        self.memory = TableMemory(config)
        super().__init__({"i": wiring.In(self.builder.i.signature.flip()),
                          "o": wiring.Out(self.builder.o.signature),
                          "read_addr": wiring.In(self.memory.read_addr.shape()),
                          "read_data": wiring.Out(self.memory.read_data.shape())})

    def elaborate(self, platform):
        m = Module()
        m.submodules.builder = self.builder
        m.submodules.memory = self.memory
        wiring.connect(m, wiring.flipped(self.i), self.builder.i)
        wiring.connect(m, self.builder.o, wiring.flipped(self.o))
        wiring.connect(m, self.builder.w, self.memory.w)
        m.d.comb += [self.memory.read_addr.eq(self.read_addr),
                     self.read_data.eq(self.memory.read_data)]
        return m


@pytest.mark.parametrize("d, bits, lanes", [(16, 2, 8), (16, 4, 1), (16, 3, 16), (32, 1, 4)])
def test_table_builder_matches_golden(d, bits, lanes):
    seed = d * bits + lanes
    print(f"seed {seed}")
    config = MacroConfig(d, bits, 8, table_lanes=lanes)
    dut = _BuilderWithMemory(config)
    dp = config.dp
    rng = random.Random(seed)
    queries = [torch.tensor([[rng.gauss(0, 1) for _ in range(d)]]).half() for _ in range(2)]
    expected, got = [], []

    async def bench(ctx):
        for query in queries:
            block = bitexact.to_block_fixed(query, dp)
            y = fwht(block.a * torch.tensor(config.signs))[0].tolist()
            expected.append((bitexact.build_table(query, dp, config.signs).table[0].tolist(),
                             block.exp.item()))
            for i, v in enumerate(y):
                ctx.set(dut.i.payload.y[i], v)
            ctx.set(dut.i.payload.side.exp, block.exp.item())
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            cycles = 0
            while not ctx.get(dut.o.valid):
                await ctx.tick()
                cycles += 1
            # Every entry through the read ports, one level of all coordinates at a time.
            table = [[None] * dp.levels for _ in range(d)]
            for level in range(dp.levels):
                for i in range(d):
                    ctx.set(dut.read_addr[i], level)
                for i in range(d):
                    table[i][level] = ctx.get(dut.read_data[i])
            got.append((table, ctx.get(dut.o.payload.exp), cycles))
            ctx.set(dut.o.ready, 1)
            await ctx.tick()
            ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for (table, exp), (got_table, got_exp, cycles) in zip(expected, got):
        assert got_table == table
        assert got_exp == exp
        assert cycles == dut.builder.latency_cycles


def test_table_memory_rejects_a_bad_table():
    config = MacroConfig(16, 2, 8)
    with pytest.raises(ValueError, match="16 rows of 2 entries"):
        TableMemory(config, init=[[0, 0]] * 15)
    limit = 1 << (config.dp.table_width - 1)
    with pytest.raises(ValueError, match=rf"\[3\]\[1\] must be an integer in {-limit}\.\.{limit - 1}"):
        TableMemory(config, init=[[0, 0]] * 3 + [[0, limit]] + [[0, 0]] * 12)


class _ScoreWithTable(wiring.Component):
    """A score unit reading a table memory that starts with a given table."""

    def __init__(self, config, table):
        self.score = ScoreUnit(config)
        self.memory = TableMemory(config, init=table)
        super().__init__({"start": wiring.In(self.score.start.signature.flip()),
                          "read_addr": wiring.Out(self.score.read_addr.shape()),
                          "read_data": wiring.In(self.score.read_data.shape()),
                          "o": wiring.Out(self.score.o.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.score = self.score
        m.submodules.memory = self.memory
        wiring.connect(m, wiring.flipped(self.start), self.score.start)
        wiring.connect(m, self.score.o, wiring.flipped(self.o))
        m.d.comb += [self.memory.read_addr.eq(self.score.table_addr),
                     self.score.table_data.eq(self.memory.read_data),
                     self.read_addr.eq(self.score.read_addr),
                     self.score.read_data.eq(self.read_data)]
        return m


@pytest.mark.parametrize("d, bits, read_lanes, first, last", [
    (16, 2, 16, 0, 7), (16, 4, 4, 5, 2), (32, 3, 32, 3, 3), (16, 1, 8, 6, 1)])
def test_score_unit_matches_golden(d, bits, read_lanes, first, last):
    seed = d + bits + read_lanes
    print(f"seed {seed}")
    context = 8
    config = MacroConfig(d, bits, context, read_lanes=read_lanes)
    dp = config.dp
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(context, d, generator=gen).half()
    query = torch.randn(1, d, generator=gen).half()
    rows = bitexact.encode_keys(keys, dp, config.signs)
    words = bitexact.pack_rows(rows, dp)
    table = bitexact.build_table(query, dp, config.signs)
    dut = _ScoreWithTable(config, table.table[0].tolist())
    bits_all = bitexact.score_bits(table, rows, dp)[0].tolist()
    count = (last - first) % context + 1
    slots = [(first + k) % context for k in range(count)]
    expected = [(s, bits_all[s], int(k == count - 1)) for k, s in enumerate(slots)]
    got = []
    rng = random.Random(seed)

    async def memory(ctx):
        # The index SRAM's timing: the row of the address seen `latency_cycles` edges earlier.
        pending = [0] * (IndexSRAM.latency_cycles - 1)
        async for _, _, addr in ctx.tick().sample(dut.read_addr):
            ctx.set(dut.read_data, words[pending.pop(0)])
            pending.append(addr)

    async def bench(ctx):
        ctx.set(dut.start.payload.first, first)
        ctx.set(dut.start.payload.last, last)
        ctx.set(dut.start.payload.exp, table.exp[0].item())
        ctx.set(dut.start.valid, 1)
        await ctx.tick().until(dut.start.ready)
        ctx.set(dut.start.valid, 0)
        while len(got) < count:
            ready = rng.random() < 0.5            # back-pressure on the score stream
            ctx.set(dut.o.ready, ready)
            _, _, valid, slot, value, last_flag = await ctx.tick().sample(
                dut.o.valid, dut.o.payload.slot, dut.o.payload.value, dut.o.payload.last)
            if valid and ready:
                got.append((slot, value, last_flag))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(memory)
    sim.add_testbench(bench)
    sim.run()
    assert got == expected
