"""Command line of the FPGA flow (``python -m fpga``).

Exit status: 0 when every build fits and meets timing, 1 when a build does not fit, misses
timing, a tool fails or the macro cannot be imported, 2 for an invalid option.
"""

import argparse
import logging
import math
import os
import sys

from golden.params import (MAX_BITS, MAX_CONTEXT, MIN_BITS, MIN_CONTEXT, SUPPORTED_D,
                           check_bits, check_context, check_d, int_option)

from .boards import BOARDS, check_board
from .pll import MAX_OUTPUT_HZ, MIN_OUTPUT_HZ, find_pll_settings
from .protocol import DEFAULT_BAUD
from .toolchain import LUT_MAPPERS, ROUTERS, ToolMissing


__all__ = ["DEFAULT_BOARD", "DEFAULT_CONTEXT", "DEFAULT_FREQ_MHZ", "MIN_FREQ_MHZ",
           "MAX_FREQ_MHZ", "build_parser", "main"]


logger = logging.getLogger(__name__)

DEFAULT_BOARD = "ulx3s-85f"
DEFAULT_CONTEXT = 4096
DEFAULT_FREQ_MHZ = 100.0
UART_FREQ_MHZ = 75.0
"""Default clock of ``--top uart``: three times the ULX3S's 25 MHz oscillator, and exactly 25 bit
periods of the default 3 Mbaud."""
MIN_FREQ_MHZ, MAX_FREQ_MHZ = MIN_OUTPUT_HZ / 1e6, MAX_OUTPUT_HZ / 1e6
MAX_SEED = 2**31 - 1


def _integer(name, text):
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be an integer, not {text!r}") from None


def _checked(name, check):
    """Return an argparse type that parses an integer and validates it with ``check``."""
    def parse(text):
        value = _integer(name, text)
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = name
    return parse


def _frequency(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"freq must be a number in MHz, not {text!r}") from None
    if not math.isfinite(value) or not MIN_FREQ_MHZ <= value <= MAX_FREQ_MHZ:
        raise argparse.ArgumentTypeError(
            f"freq must be in {MIN_FREQ_MHZ:g}..{MAX_FREQ_MHZ:g} MHz "
            f"(the ECP5 PLL output range), not {text}")
    return value


def _board(text):
    try:
        check_board(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _check_baud(value):
    if value < 1:
        raise ValueError(f"baud must be a positive integer, not {value}")
    return value


def build_parser():
    """Return the argument parser of ``python -m fpga``."""
    parser = argparse.ArgumentParser(
        prog="python -m fpga",
        description="Synthesize, place and route the AXELRAM macro or the FP16 baseline score "
                    "unit for an ECP5 board with Yosys and nextpnr (YoWASP builds), and write "
                    "report.json and report.md.")

    parser.add_argument("--board", type=_board, default=DEFAULT_BOARD,
                        help=f"target board: {', '.join(BOARDS)} (default: %(default)s)")
    parser.add_argument("--d", type=_checked("d", check_d), required=True,
                        help=f"head dimension, one of {', '.join(map(str, SUPPORTED_D))}")
    parser.add_argument("--bits", type=_checked("bits", check_bits), required=True,
                        help=f"codebook bits per coordinate of the macro, {MIN_BITS}..{MAX_BITS} "
                             "(the baseline stores FP16 and ignores it)")
    parser.add_argument("--context", type=_checked("context", check_context),
                        default=DEFAULT_CONTEXT,
                        help=f"stored keys T, {MIN_CONTEXT}..{MAX_CONTEXT} (default: %(default)s)")
    parser.add_argument("--freq", type=_frequency, default=None,
                        help=f"clock constraint in MHz, {MIN_FREQ_MHZ:g}..{MAX_FREQ_MHZ:g}; "
                             f"the PLL makes the nearest frequency it can (default: "
                             f"{DEFAULT_FREQ_MHZ:g}, or {UART_FREQ_MHZ:g} for --top uart)")
    parser.add_argument("--baud", type=_checked("baud", _check_baud), default=DEFAULT_BAUD,
                        help="UART baud rate of --top uart, in bit/s; the clock must be at least "
                             "4 times it and within 2%% of a multiple of it "
                             "(default: %(default)s)")

    parser.add_argument("--out", default=None,
                        help="output folder (default: build/fpga/<board>-d<d>-b<bits>-t<T>-<top>)")
    parser.add_argument("--seed", type=int_option("seed", 0, MAX_SEED), default=1,
                        help="nextpnr placement seed (default: %(default)s)")
    parser.add_argument("--router", choices=ROUTERS, default="router1",
                        help="nextpnr router; router2 is often faster on large designs "
                             "(default: %(default)s)")
    parser.add_argument("--lut-mapper", choices=LUT_MAPPERS, default="auto",
                        help="Yosys LUT mapper: abc9, abc (the older mapper), or auto, which "
                             "builds again with abc when Yosys stops inside abc9 with a known "
                             "assertion (default: %(default)s)")

    group = parser.add_mutually_exclusive_group()
    group.add_argument("--top", choices=("macro", "baseline", "uart"), default="macro",
                       help="design to build: the macro or the baseline behind scan pins, or "
                            "the macro behind the board's USB UART (default: %(default)s)")
    group.add_argument("--compare", action="store_true",
                       help="build the macro and the baseline with the same d and context and "
                            "write compare.json and compare.md")
    return parser


class MacroUnavailable(Exception):
    """The macro generator cannot be imported or rejects the configuration."""


def _create_macro(d, bits, context):
    """Return ``(component, design)`` for the AXELRAM macro, imported only when needed."""
    try:
        from hdl.config import MacroConfig
        from hdl.macro import build_macro
    except ImportError as exc:
        raise MacroUnavailable(
            f"--top macro needs hdl.macro.build_macro and hdl.config.MacroConfig, which "
            f"cannot be imported ({exc}); build the baseline with --top baseline") from exc
    try:
        config = MacroConfig(d=d, bits=bits, context=context)
        component = build_macro(config)
    except (TypeError, ValueError) as exc:
        raise MacroUnavailable(f"the macro rejects d={d}, bits={bits}, "
                               f"context={context}: {exc}") from exc
    design = {"top": "macro", "component": type(component).__qualname__,
              "d": d, "bits": bits, "context": context,
              "keys_per_cycle": _macro_keys_per_cycle(component, config),
              # A stand-in component (in tests) has no units to count.
              "expected_cells": (macro_expected_cells(component)
                                 if hasattr(component, "units") else [])}
    return component, design


MAX_MACRO_DSP = 4
"""DSP blocks the whole macro may use. The macro builds its multiplications from logic and
uses none."""


def macro_expected_cells(component):
    """Cells the macro must map to on ECP5, for :func:`fpga.flow.check_cells`.

    The index SRAM instantiates its DP16KD blocks, one per column of the row. The query table
    is ``d`` memories of ``levels`` entries, each of which fits one ``TRELLIS_DPR16X4``
    (16 words of 4 bits) per 4 bits of an entry. The norm product and the table are built
    from logic, so the macro needs no DSP block.
    """
    config = component.config
    dp = config.dp
    units = component.units()
    blocks = units["index_sram"].dp16kd_blocks()
    expected = []
    if blocks:
        expected.append({"cell": "DP16KD", "min": blocks,
                         "what": f"index SRAM, {config.context} rows of {dp.row_width} bits"})
    if dp.levels <= 16:
        expected.append({"cell": "TRELLIS_DPR16X4", "min": config.d * -(-dp.table_width // 4),
                         "what": f"query table, {config.d} memories of {dp.levels} x "
                                 f"{dp.table_width} bits"})
    expected.append({"cell": "MULT18X18D", "max": MAX_MACRO_DSP, "what": "DSP blocks"})
    return expected


def _macro_keys_per_cycle(component, config):
    """Keys the macro scores per clock in steady state, or None when unknown.

    A ``keys_per_cycle`` attribute of the component wins. Otherwise the score unit reads
    ``read_lanes`` coordinates per clock, so a key takes ``d / read_lanes`` clocks.
    """
    keys_per_cycle = getattr(component, "keys_per_cycle", None)
    if keys_per_cycle is not None:
        return keys_per_cycle
    read_lanes = getattr(config, "read_lanes", None)
    if isinstance(read_lanes, int) and read_lanes > 0:
        return read_lanes / config.d
    return None


def _create_uart(args):
    """Return ``(component, design, make_top)`` for the UART board demo (``--top uart``).

    The bridge's baud divisor depends on the clock, so the PLL setting that the build will use
    is computed here from the same board clock and ``--freq``.
    """
    try:
        from hdl.config import MacroConfig
        from .uart_top import UARTBoardTop, UARTBridge
    except ImportError as exc:
        raise MacroUnavailable(f"--top uart needs the macro generator, which cannot be "
                               f"imported ({exc})") from exc
    clock_hz = check_board(args.board).create_platform().default_clk_frequency
    pll = find_pll_settings(clock_hz, args.freq * 1e6)
    try:
        config = MacroConfig(d=args.d, bits=args.bits, context=args.context)
        bridge = UARTBridge(config, clk_hz=pll.output_hz, baud=args.baud)
    except (TypeError, ValueError) as exc:
        raise MacroUnavailable(f"the UART demo rejects d={args.d}, bits={args.bits}, "
                               f"context={args.context}, baud={args.baud}: {exc}") from exc
    design = {"top": "uart", "component": "UARTBridge",
              "d": args.d, "bits": args.bits, "context": args.context,
              "keys_per_cycle": bridge.keys_per_cycle,
              "baud": args.baud, "baud_actual": bridge.actual_baud,
              "baud_divisor": bridge.divisor, "buffer_bytes": bridge.buffer_bytes,
              "scores_per_frame": bridge.scores_per_frame,
              # The macro's memories; the bridge itself adds a DSP block and a frame buffer.
              "expected_cells": [entry for entry in macro_expected_cells(bridge.macro)
                                 if entry["cell"] != "MULT18X18D"]}
    return bridge, design, UARTBoardTop


def _create_baseline(d, bits, context):
    from .baseline import BaselineScoreUnit
    component = BaselineScoreUnit(d, context)
    design = {"top": "baseline", "component": "BaselineScoreUnit",
              "d": d, "bits": bits, "context": context,
              "keys_per_cycle": component.keys_per_cycle,
              "latency_cycles": component.latency}
    return component, design


def _summary(report):
    parts = []
    for bel in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D"):
        entry = report["resources"].get(bel)
        if entry is not None:
            parts.append(f"{bel} {entry['used']}/{entry['available']}")
    fmax = report["derived"].get("fmax_mhz")
    if fmax is not None:
        parts.append(f"Fmax {fmax:.2f} MHz (PLL {report['clock']['pll_mhz']:.2f} MHz)")
    return (f"{report['design']['top']} on {report['board']['name']}: {report['status']}"
            + (f"; {', '.join(parts)}" if parts else ""))


def _build(component, design, args, out_dir, make_top=None):
    from .flow import run_build
    extra = {} if make_top is None else {"make_top": make_top}
    report = run_build(component, board=check_board(args.board), freq_mhz=args.freq,
                       out_dir=out_dir, design=design, seed=args.seed,
                       router=args.router, lut_mapper=args.lut_mapper, **extra)
    print(_summary(report))
    print(f"report: {os.path.join(out_dir, 'report.md')}")
    return report


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Invalid options exit through ``argparse`` with status 2.
    """
    args = build_parser().parse_args(argv)
    if args.freq is None:
        args.freq = UART_FREQ_MHZ if args.top == "uart" else DEFAULT_FREQ_MHZ
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    label = "compare" if args.compare else args.top
    out_dir = args.out or os.path.join(
        "build", "fpga", f"{args.board}-d{args.d}-b{args.bits}-t{args.context}-{label}")

    try:
        if args.compare or args.top == "macro":
            macro_component, macro_design = _create_macro(args.d, args.bits, args.context)
        if args.top == "uart":
            uart_component, uart_design, uart_top = _create_uart(args)
    except MacroUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    try:
        if not args.compare:
            if args.top == "macro":
                report = _build(macro_component, macro_design, args, out_dir)
            elif args.top == "uart":
                report = _build(uart_component, uart_design, args, out_dir, make_top=uart_top)
            else:
                report = _build(*_create_baseline(args.d, args.bits, args.context), args,
                                out_dir)
            return 0 if report["status"] == "ok" else 1

        macro = _build(macro_component, macro_design, args, os.path.join(out_dir, "macro"))
        baseline = _build(*_create_baseline(args.d, args.bits, args.context), args,
                          os.path.join(out_dir, "baseline"))
    except ToolMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    from .compare import write_comparison
    write_comparison(out_dir, macro, baseline)
    print(f"comparison: {os.path.join(out_dir, 'compare.md')}")
    return 0 if macro["status"] == baseline["status"] == "ok" else 1
