"""Amaranth-simulator harness for the whole macro, checked against the bit-exact model."""

import random

import torch

from amaranth.sim import Simulator

from golden import bitexact
from hdl.macro import build_macro


def pack_elements(values):
    """Pack 16-bit patterns, element 0 in the low bits."""
    word = 0
    for j, v in enumerate(values):
        word |= (int(v) & 0xFFFF) << (16 * j)
    return word


class MacroModel:
    """Expected behaviour of the macro: rows per slot and scores per query."""

    def __init__(self, config):
        self.config = config
        self.dp = config.dp
        self.signs = list(config.signs)
        self.rows = bitexact.unpack_rows([0] * config.context, self.dp)

    def write(self, slot, key_bits):
        if slot >= self.config.context:
            return
        row = bitexact.encode_keys(torch.tensor([key_bits]), self.dp, self.signs)
        for name in ("codes", "norm", "exp", "nan"):
            getattr(self.rows, name)[slot] = getattr(row, name)[0]
        self.rows._selector = None

    def query(self, first, last, query_bits):
        context = self.config.context
        if first >= context or last >= context:
            return [(first, 0x7FC00000, 1)]
        count = (last - first) % context + 1
        slots = [(first + k) % context for k in range(count)]
        table = bitexact.build_table(torch.tensor([query_bits]), self.dp, self.signs)
        bits = bitexact.score_bits(table, self.rows, self.dp)[0].tolist()
        return [(s, bits[s], int(k == count - 1)) for k, s in enumerate(slots)]


def run_macro(config, commands, *, seed=0, ready_probability=1.0, gap_probability=0.0,
              max_cycles=200000, reset_at=None):
    """Drive ``commands`` through the macro and return the score beats and cycle stamps.

    ``commands`` is a list of ``("write", slot, bits)``, ``("query", first, last, bits)`` and
    ``("wait", cycles)``.
    Returns ``(beats, stamps)``: beats as ``(slot, value, last)`` and a dictionary of cycle
    numbers (``query_done`` per query: the cycle its last beat was accepted).
    """
    dut = build_macro(config)
    rng = random.Random(seed)
    per_beat = config.beat_elems
    beats = []
    stamps = {"query_done": [], "score_cycles": []}
    cycle = [0]

    async def driver(ctx):
        for command in commands:
            kind = command[0]
            if kind == "wait":
                await ctx.tick().repeat(command[1])
                continue
            port = dut.write if kind == "write" else dut.query
            vector = command[-1]
            for k in range(config.beats):
                while rng.random() < gap_probability:
                    await ctx.tick()
                chunk = vector[k * per_beat:(k + 1) * per_beat]
                if kind == "write":
                    ctx.set(port.payload.slot, command[1])
                else:
                    ctx.set(port.payload.first, command[1])
                    ctx.set(port.payload.last, command[2])
                ctx.set(port.payload.data, pack_elements(chunk))
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
            if kind == "query":
                stamps["query_done"].append(cycle[0])

    async def monitor(ctx):
        while True:
            ready = rng.random() < ready_probability
            ctx.set(dut.score.ready, ready)
            _, _, valid, slot, value, last = await ctx.tick().sample(
                dut.score.valid, dut.score.payload.slot, dut.score.payload.value,
                dut.score.payload.last)
            cycle[0] += 1
            if valid and ready:
                beats.append((slot, value, last))
                stamps["score_cycles"].append(cycle[0])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(monitor, background=True)
    expected_beats = sum(_beats_for(config, c) for c in commands)

    async def stopper(ctx):
        while len(beats) < expected_beats and cycle[0] < max_cycles:
            await ctx.tick()
    sim.add_testbench(stopper)
    sim.run()
    return beats, stamps


def _beats_for(config, command):
    if command[0] != "query":
        return 0
    first, last = command[1], command[2]
    if first >= config.context or last >= config.context:
        return 1
    return (last - first) % config.context + 1


def expected_beats(config, commands):
    """Return the beats the model predicts for ``commands``."""
    model = MacroModel(config)
    out = []
    for command in commands:
        if command[0] == "write":
            model.write(command[1], command[2])
        elif command[0] == "query":
            out += model.query(command[1], command[2], command[3])
    return out


def random_vector(rng, d, scale=1.0):
    values = torch.tensor([rng.gauss(0.0, scale) for _ in range(d)]).half()
    return values.view(torch.int16).to(torch.int64).tolist()
