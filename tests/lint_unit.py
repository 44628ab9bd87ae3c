"""Verilator lint of one Amaranth unit, with the waivers the whole macro uses."""

import re

import pytest
from amaranth.back import verilog

from verif.tools import SimulatorNotFound, lint_verilog


def lint_unit(dut, name, directory):
    """Convert ``dut`` to Verilog as ``axelram_<name>.v`` and return Verilator's -Wall messages.

    The file name puts it under the waivers of ``verif/lint.vlt``; the test is skipped when
    Verilator is not installed.
    """
    path = directory / f"axelram_{name}.v"
    path.write_text(verilog.convert(dut, name=name, emit_src=False))
    try:
        return lint_verilog(path)
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))


def strip_verilog_comments(text):
    """Return Verilog without attributes, comments and ``@*``, so any ``*`` left is a product."""
    text = text.replace("@*", "@")
    text = re.sub(r"\(\*.*?\*\)", "", text, flags=re.DOTALL)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)
