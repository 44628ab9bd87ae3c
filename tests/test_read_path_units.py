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
from hdl.score import ScoreUnit
from hdl.table import TableBuilder


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


@pytest.mark.parametrize("d, bits, lanes", [(16, 2, 8), (16, 4, 1), (16, 3, 16), (32, 1, 4)])
def test_table_builder_matches_golden(d, bits, lanes):
    seed = d * bits + lanes
    print(f"seed {seed}")
    config = MacroConfig(d, bits, 8, table_lanes=lanes)
    dut = TableBuilder(config)
    dp = config.dp
    rng = random.Random(seed)
    query = torch.tensor([[rng.gauss(0, 1) for _ in range(d)]]).half()
    block = bitexact.to_block_fixed(query, dp)
    y = fwht(block.a * torch.tensor(config.signs))[0].tolist()
    expected = bitexact.build_table(query, dp, config.signs).table[0].tolist()
    got = []

    async def bench(ctx):
        for i, v in enumerate(y):
            ctx.set(dut.i.payload.y[i], v)
        ctx.set(dut.i.payload.side.exp, block.exp.item())
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        await ctx.tick().until(dut.o.valid)
        got.append([[ctx.get(dut.table[i][m]) for m in range(dp.levels)] for i in range(d)])
        got.append(ctx.get(dut.o.payload.exp))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got[0] == expected
    assert got[1] == block.exp.item()


@pytest.mark.parametrize("d, bits, read_lanes, first, last", [
    (16, 2, 16, 0, 7), (16, 4, 4, 5, 2), (32, 3, 32, 3, 3), (16, 1, 8, 6, 1)])
def test_score_unit_matches_golden(d, bits, read_lanes, first, last):
    seed = d + bits + read_lanes
    print(f"seed {seed}")
    context = 8
    config = MacroConfig(d, bits, context, read_lanes=read_lanes)
    dut = ScoreUnit(config)
    dp = config.dp
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(context, d, generator=gen).half()
    query = torch.randn(1, d, generator=gen).half()
    rows = bitexact.encode_keys(keys, dp, config.signs)
    words = bitexact.pack_rows(rows, dp)
    table = bitexact.build_table(query, dp, config.signs)
    bits_all = bitexact.score_bits(table, rows, dp)[0].tolist()
    count = (last - first) % context + 1
    slots = [(first + k) % context for k in range(count)]
    expected = [(s, bits_all[s], int(k == count - 1)) for k, s in enumerate(slots)]
    got = []
    rng = random.Random(seed)

    async def memory(ctx):
        # The index SRAM's timing: the row of the address seen two clock edges earlier.
        pending = 0
        async for _, _, addr in ctx.tick().sample(dut.read_addr):
            ctx.set(dut.read_data, words[pending])
            pending = addr

    async def bench(ctx):
        for i in range(d):
            for m in range(dp.levels):
                ctx.set(dut.table[i][m], table.table[0, i, m].item())
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
