"""Lint the generated Verilog with Verilator and compile it with Icarus Verilog.

Verilator runs with ``-Wall`` and the waivers in ``verif/lint.vlt`` (docs/lint.md gives the
reason for each). Every other warning fails the test.
"""

import os
import subprocess

import pytest

from hdl.config import MacroConfig
from verif.tools import (REPO_ROOT, SimulatorNotFound, find_iverilog, find_verilator,
                         generate_verilog)

WAIVERS = REPO_ROOT / "verif" / "lint.vlt"

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
    assert WAIVERS.is_file()
    assert WAIVERS.read_text().startswith("`verilator_config")


def test_verilator_lint_clean(verilog):
    try:
        binary, root = find_verilator()
    except SimulatorNotFound as error:
        pytest.skip(str(error))
    env = dict(os.environ)
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
    # The waivers file comes first because Verilator applies its waivers only to files read later.
    result = subprocess.run(
        [str(binary), "--lint-only", "-Wall", str(WAIVERS), str(verilog)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "%Warning" not in result.stderr, result.stderr
    assert "%Error" not in result.stderr, result.stderr


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
    try:
        binary, root = find_verilator()
    except SimulatorNotFound as error:
        pytest.skip(str(error))
    env = dict(os.environ)
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
    # The file name matches the waivers' file pattern, so every waiver applies to it.
    source = tmp_path / "axelram_d4_b1.v"
    source.write_text(
        "module narrow(input wire [7:0] a, input wire [7:0] b, output wire [3:0] y,\n"
        "              output wire [9:0] z);\n"
        "  assign y = a + b;\n"
        "  assign z = a;\n"
        "endmodule\n")
    result = subprocess.run(
        [str(binary), "--lint-only", "-Wall", str(WAIVERS), str(source)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode != 0
    assert "%Warning-WIDTHTRUNC" in result.stderr, result.stderr
    assert "%Warning-WIDTHEXPAND" in result.stderr, result.stderr
