"""Index SRAM: registered ports in both forms, and the ECP5 form built from DP16KD blocks."""

import random
import re
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hdl.config import MacroConfig
from hdl.index_sram import DP16KD_MODES, IndexSRAM, dp16kd_mode
from verif.tools import SimulatorNotFound, find_iverilog

MODELS = [Path(__file__).with_name("models") / name
          for name in ("dp16kd_model.v", "trellis_ff_model.v")]


class _ECP5:
    """Stands in for an amaranth-boards ECP5 platform: IndexSRAM reads only ``family``."""
    family = "ecp5"


def _stimulus(config, cycles, rng):
    """Random writes (some held) and reads; a write never targets the slot read that cycle."""
    steps = []
    for _ in range(cycles):
        read_addr = rng.randrange(config.context)
        slot = rng.randrange(config.context)
        write = rng.random() < 0.5 and slot != read_addr
        steps.append({"valid": int(write), "hold": int(rng.random() < 0.2), "slot": slot,
                      "row": rng.getrandbits(config.dp.row_width), "read_addr": read_addr})
    return steps


def _expected(config, steps):
    """Return ``read_data`` per cycle: the row at the address of three cycles before.

    The write and the read address are both registered first, so the memory receives each cycle's
    stimulus one cycle later and then reads and writes as a memory with a registered read
    port and an output register does.
    """
    assert IndexSRAM.latency_cycles == 3
    assert IndexSRAM.write_delay_cycles == 1
    rows = [0] * config.context
    write = None
    addr = latch = out = 0
    observed = []
    for step in steps:
        observed.append(out)
        out, latch = latch, rows[addr]
        if write is not None:
            rows[write[0]] = write[1]
        addr = step["read_addr"]
        write = (step["slot"], step["row"]) if step["valid"] and not step["hold"] else None
    return observed


def _payload(config, step):
    return step["slot"] | (step["row"] << config.slot_width)


@pytest.mark.parametrize("context", [64, 50, 1500])
def test_memory_form_reads_three_cycles_later(context):
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    config = MacroConfig(16, 2, context)
    dut = IndexSRAM(config)
    steps = _stimulus(config, 300, random.Random(seed))
    observed = []

    async def bench(ctx):
        for step in steps:
            ctx.set(dut.w.valid, step["valid"])
            ctx.set(dut.w.payload.as_value(), _payload(config, step))
            ctx.set(dut.hold, step["hold"])
            ctx.set(dut.read_addr, step["read_addr"])
            assert ctx.get(dut.w.ready) == (not step["hold"])
            observed.append(ctx.get(dut.read_data))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert observed == _expected(config, steps), f"seed {seed}"


@pytest.mark.parametrize(("context", "width"), [(64, 18), (1024, 18), (1025, 9), (4096, 4),
                                                (8192, 2), (16384, 1)])
def test_dp16kd_mode_choice(context, width):
    assert dp16kd_mode(context)[0] == width


def test_dp16kd_mode_none_above_16384():
    assert dp16kd_mode(16385) is None
    assert IndexSRAM(MacroConfig(16, 2, 16385)).dp16kd_blocks() == 0


def test_dp16kd_modes_fill_one_block():
    # Every mode addresses the same 16 Kib (18 Kib with the ninth bits) of one block.
    for width, depth, shift in DP16KD_MODES:
        assert depth << shift == 16384
        assert width * depth in (16384, 18432)


def test_ecp5_form_instantiates_dp16kd_with_output_register():
    config = MacroConfig(128, 4, 4096)
    dut = IndexSRAM(config)
    text = verilog.convert(dut, name="axelram_sram", platform=_ECP5(), emit_src=False)
    blocks = re.findall(r"DP16KD #\((.*?)\) \S+ \(", text, re.S)
    # 535-bit rows in the 4-bit, 4096-deep mode.
    assert dut.dp16kd_blocks() == 134
    assert len(blocks) == 134
    for parameters in blocks:
        assert ".REGMODE_B(\"OUTREG\")" in parameters
        assert ".DATA_WIDTH_A(32'd4)" in parameters
        assert ".DATA_WIDTH_B(32'd4)" in parameters


def test_generic_form_has_no_instances():
    text = verilog.convert(IndexSRAM(MacroConfig(16, 2, 64)), name="axelram_sram",
                           emit_src=False)
    assert "DP16KD" not in text


def _testbench(config, steps):
    width = config.dp.row_width
    lines = ["`timescale 1ns/1ps", "module tb;",
             "  reg clk = 0, rst = 0, hold = 0, w__valid = 0;",
             f"  reg [{config.slot_width - 1}:0] read_addr = 0;",
             f"  reg [{config.slot_width + width - 1}:0] w__payload = 0;",
             f"  wire [{width - 1}:0] read_data;", "  wire w__ready;",
             "  axelram_sram dut(.clk(clk), .rst(rst), .hold(hold), .w__valid(w__valid),",
             "    .w__payload(w__payload), .w__ready(w__ready), .read_addr(read_addr),",
             "    .read_data(read_data));",
             "  initial begin"]
    for step in steps:
        lines.append(f"    w__valid = {step['valid']}; hold = {step['hold']}; "
                     f"read_addr = {step['read_addr']}; "
                     f"w__payload = {config.slot_width + width}'h{_payload(config, step):x};")
        lines.append('    #1 $display("%h", read_data); #4 clk = 1; #5 clk = 0;')
    lines += ["    $finish;", "  end", "endmodule"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("context", [64, 1500, 4096])
def test_ecp5_form_reads_three_cycles_later(context, tmp_path):
    """The DP16KD wiring, simulated with a behavioural model of the block in Icarus Verilog."""
    try:
        iverilog = find_iverilog()
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    config = MacroConfig(16, 2, context)
    steps = _stimulus(config, 200, random.Random(seed))
    design = tmp_path / "axelram_sram.v"
    design.write_text(verilog.convert(IndexSRAM(config), name="axelram_sram", platform=_ECP5(),
                                      emit_src=False))
    bench = tmp_path / "tb.v"
    bench.write_text(_testbench(config, steps))
    binary = tmp_path / "tb.vvp"
    subprocess.run([str(iverilog), "-g2012", "-o", str(binary), str(bench), str(design),
                    *map(str, MODELS)], check=True, capture_output=True, text=True, timeout=300)
    vvp = Path(iverilog).with_name("vvp")
    result = subprocess.run([str(vvp), str(binary)], check=True, capture_output=True,
                            text=True, timeout=300)
    observed = [int(line, 16) for line in result.stdout.split() if re.fullmatch(r"[0-9a-f]+", line)]
    assert observed == _expected(config, steps), f"seed {seed}"
