"""Lint the generated Verilog with Verilator and compile it with Icarus Verilog.

Verilator runs with ``-Wall`` and the waivers in ``verif/lint.vlt`` (docs/lint.md gives the
reason for each). Every other warning fails the test.
"""

import subprocess

import pytest

from hdl.config import MacroConfig
from verif.tools import (LINT_WAIVERS, SimulatorNotFound, find_iverilog, find_verilator,
                         generate_verilog, lint_verilog)

CONFIGS = {
    "d16_b1": dict(d=16, bits=1, context=64),
    "d16_b2": dict(d=16, bits=2, context=64),
    "d16_b3": dict(d=16, bits=3, context=64),
    "d16_b4": dict(d=16, bits=4, context=64),
    "d32_b3_lanes": dict(d=32, bits=3, context=64, beat_elems=8, read_lanes=8, write_lanes=4,
                         transform_lanes=4, table_lanes=2),
    "d16_b2_runtime_signs": dict(d=16, bits=2, context=64, runtime_signs=True),
    "d16_b2_bf16": dict(d=16, bits=2, context=64, input_format="bf16"),
    "d16_b2_context50": dict(d=16, bits=2, context=50),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def verilog(request, tmp_path_factory):
    """Path of the Verilog generated for one entry of ``CONFIGS``."""
    out_dir = tmp_path_factory.mktemp(request.param)
    return generate_verilog(MacroConfig(**CONFIGS[request.param]), out_dir)


def test_waivers_file_exists():
    assert LINT_WAIVERS.is_file()
    assert LINT_WAIVERS.read_text().startswith("`verilator_config")


def test_verilator_lint_clean(verilog):
    try:
        messages = lint_verilog(verilog)
    except SimulatorNotFound as error:
        pytest.skip(str(error))
    assert messages == []


def test_iverilog_compiles(verilog, tmp_path):
    try:
        binary = find_iverilog()
    except SimulatorNotFound as error:
        pytest.skip(str(error))
    result = subprocess.run(
        [str(binary), "-g2012", "-o", str(tmp_path / "macro.vvp"), str(verilog)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_waivers_keep_width_checks(tmp_path):
    """A width mismatch at an assignment still fails with the waivers in place."""
    # The file name matches the waivers' file pattern, so every waiver applies to it.
    source = tmp_path / "axelram_d4_b1.v"
    source.write_text(
        "module narrow(input wire [7:0] a, input wire [7:0] b, output wire [3:0] y,\n"
        "              output wire [9:0] z);\n"
        "  assign y = a + b;\n"
        "  assign z = a;\n"
        "endmodule\n")
    try:
        messages = lint_verilog(source)
    except SimulatorNotFound as error:
        pytest.skip(str(error))
    rules = {message.split(":")[0] for message in messages}
    assert rules == {"%Warning-WIDTHTRUNC", "%Warning-WIDTHEXPAND"}, messages


def _fake_verilator(directory, version):
    script = directory / "verilator"
    script.write_text(f"#!/bin/sh\necho 'Verilator {version} 2023-01-22 rev UNKNOWN'\n")
    script.chmod(0o755)
    return script


def test_old_verilator_on_path_is_refused(tmp_path, monkeypatch):
    """Without the Python package, a Verilator on PATH older than cocotb 2 supports is refused."""
    import sys

    _fake_verilator(tmp_path, "5.006")
    monkeypatch.setitem(sys.modules, "verilator", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulatorNotFound, match=r"is 5\.006, older than the 5\.036"):
        find_verilator()


def test_recent_verilator_on_path_is_used(tmp_path, monkeypatch):
    import sys

    script = _fake_verilator(tmp_path, "5.040")
    monkeypatch.setitem(sys.modules, "verilator", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_verilator() == (script, None)


@pytest.mark.parametrize("config", [MacroConfig(16, 2, context=8, runtime_signs=True),
                                    MacroConfig(16, 3, context=5)], ids=lambda c: c.name)
def test_uart_bridge_lint_clean(config, tmp_path):
    from amaranth.back import verilog as amaranth_verilog

    from fpga.uart_top import UARTBridge

    path = tmp_path / f"uart_bridge_{config.name}.v"
    bridge = UARTBridge(config, clk_hz=40_000_000, baud=10_000_000)
    path.write_text(amaranth_verilog.convert(bridge, name=config.name, emit_src=False))
    try:
        messages = lint_verilog(path)
    except SimulatorNotFound as error:
        pytest.skip(str(error))
    assert messages == []
