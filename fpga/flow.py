"""One FPGA build: wrap a component, synthesize, place and route, pack, and report.

:func:`run_build` runs Amaranth's Trellis build (Yosys, nextpnr-ecp5, ecppack) for one design
under test on one board and writes ``report.json`` and ``report.md`` into the output folder.
The Amaranth build products (``top.rpt`` Yosys log, ``top.tim`` nextpnr log, ``top.bit``
bitstream, ``nextpnr-report.json``) go into its ``build`` subfolder.
"""

import json
import logging
import os
import subprocess
import threading
import time

from .boards import Board
from .pll import find_pll_settings
from .report import (BRAM_BITS, find_overflows, find_timing_misses, parse_nextpnr_log,
                     parse_nextpnr_report, parse_yosys_log, render_markdown, resource_table)
from .synth_top import SynthTop
from .toolchain import (ABC9_ASSERTION, LUT_MAPPERS, ROUTERS, build_overrides, patched_environ,
                        tool_versions, toolchain_environment)


__all__ = ["STATUS_OK", "STATUS_TIMING_FAILED", "STATUS_DOES_NOT_FIT", "STATUS_TOOL_FAILED",
           "STATUS_CHECK_FAILED", "check_cells",
           "DESIGN_NAME", "NEXTPNR_REPORT", "run_build"]


logger = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_TIMING_FAILED = "timing failed"
STATUS_DOES_NOT_FIT = "does not fit"
STATUS_TOOL_FAILED = "tool failed"
STATUS_CHECK_FAILED = "check failed"
"""The build completed, but the netlist lacks cells the design must map to (see
:func:`check_cells`)."""

DESIGN_NAME = "top"
"""Name of the top module and prefix of the Amaranth build products."""

NEXTPNR_REPORT = "nextpnr-report.json"


def _read(path):
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as file:
        return file.read()


def _remove_products(build_dir):
    """Delete the products an earlier build left, so that none is read as this build's."""
    for suffix in (".rpt", ".tim", ".json", ".config", ".bit", ".svf"):
        path = os.path.join(build_dir, DESIGN_NAME + suffix)
        if os.path.exists(path):
            os.remove(path)
    path = os.path.join(build_dir, NEXTPNR_REPORT)
    if os.path.exists(path):
        os.remove(path)


# The build script's stages in order, each with the product it writes last and its tool.
_STAGES = ((".json", "yosys", "synthesis"), (".config", "nextpnr-ecp5", "place and route"),
           (".bit", "ecppack", "bitstream"))


def _current_stage(build_dir):
    """Return the first stage of :data:`_STAGES` whose product is missing (the last if none)."""
    for stage in _STAGES[:-1]:
        if not os.path.exists(os.path.join(build_dir, DESIGN_NAME + stage[0])):
            return stage
    return _STAGES[-1]


def _failed_stage(build_dir):
    """Name the tool that stopped the build script, from the products that exist."""
    return _current_stage(build_dir)[1]


def _running_stage(build_dir):
    """Name the stage running now, judged by the build products written so far."""
    _, tool, step = _current_stage(build_dir)
    return f"{step} ({tool})"


def _last_info(path):
    """Return the last ``Info:`` line of the nextpnr log at ``path``, or ``None``."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 4096))
            tail = file.read().decode(errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.startswith("Info:")]
    return " ".join(lines[-1].split()) if lines else None


class _Progress:
    """Log the running stage of a build when it changes and every ``interval_s`` seconds."""

    def __init__(self, build_dir, started, interval_s=60.0):
        self._build_dir = build_dir
        self._started = started
        self._interval_s = interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self._thread.join()

    def _watch(self):
        stage, reported = None, time.monotonic()
        while not self._done.wait(2.0):
            now = time.monotonic()
            current = _running_stage(self._build_dir)
            if current == stage and now - reported < self._interval_s:
                continue
            detail = ""
            if current.startswith("place"):
                info = _last_info(os.path.join(self._build_dir, f"{DESIGN_NAME}.tim"))
                detail = f": {info}" if info else ""
            logger.info("%s, %.0f s elapsed%s", current, now - self._started, detail)
            stage, reported = current, now


def _stopped_in_abc9(build_dir):
    """Return True when the build's Yosys log ends with the abc9 assertion of Yosys 0.70."""
    try:
        with open(os.path.join(build_dir, f"{DESIGN_NAME}.rpt")) as file:
            error = _last_error(file.read())
    except OSError:
        return False
    return error is not None and ABC9_ASSERTION in error


def _last_error(text):
    if not text:
        return None
    errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR:")]
    return errors[-1] if errors else None


def run_build(dut, *, board, freq_mhz, out_dir, design, seed=1, router="router1",
              lut_mapper="auto", make_top=None):
    """Build ``dut`` for ``board`` with a ``freq_mhz`` clock and write the reports.

    Parameters
    ----------
    dut : :class:`amaranth.lib.wiring.Component`
        Design under test, clocked by the ``sync`` domain.
    board : :class:`fpga.boards.Board`
        Target board.
    freq_mhz : :class:`float`
        Requested clock frequency. The PLL makes the nearest frequency it can, and nextpnr
        times the design against that frequency.
    out_dir : :class:`str`
        Output folder; created if missing.
    design : :class:`dict`
        Description of the design stored in the report: at least ``top``, ``d``, ``bits`` and
        ``context``; ``keys_per_cycle`` (keys scored per clock in steady state) when known;
        ``expected_cells``, a list of ``{"cell", "what", "min" and/or "max"}`` that
        :func:`check_cells` compares with the synthesized netlist.
    seed : :class:`int`
        nextpnr placement seed.
    router : :class:`str`
        nextpnr router, one of :data:`ROUTERS`.
    lut_mapper : :class:`str`
        Yosys LUT mapper, one of :data:`LUT_MAPPERS`. With ``"auto"`` the build runs with
        abc9 and, if Yosys stops with :data:`ABC9_ASSERTION`, runs again with abc; the report's
        ``lut_mapper`` names the mapper of the build it describes.
    make_top : callable or ``None``
        ``make_top(dut, pll_settings)`` returns the board top to build in place of
        :class:`fpga.synth_top.SynthTop`; the report then has no ``scan`` entry.

    Returns the report dictionary. Its ``status`` is ``"ok"``, ``"timing failed"``,
    ``"does not fit"`` or ``"tool failed"``, and ``problems`` lists readable reasons. Tool
    failures are reported, not raised.
    """
    if not isinstance(board, Board):
        raise TypeError(f"board must be a fpga.boards.Board, not {board!r}")
    if not isinstance(design, dict):
        raise TypeError(f"design must be a dict, not {design!r}")
    missing = [key for key in ("top", "d", "bits", "context") if key not in design]
    if missing:
        raise ValueError(f"design is missing {', '.join(missing)}: {design!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, not {seed!r}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    if lut_mapper not in LUT_MAPPERS:
        raise ValueError(f"LUT mapper must be one of {', '.join(LUT_MAPPERS)}, "
                         f"not {lut_mapper!r}")
    mappers = ["abc9", "abc"] if lut_mapper == "auto" else [lut_mapper]
    os.makedirs(out_dir, exist_ok=True)
    build_dir = os.path.join(out_dir, "build")
    platform = board.create_platform()
    pll = find_pll_settings(platform.default_clk_frequency, freq_mhz * 1e6)
    top = SynthTop(dut, pll) if make_top is None else make_top(dut, pll)
    env = toolchain_environment(platform, os.path.join(out_dir, "tools"))
    logger.info("building %s for %s at %.3f MHz in %s", design.get("top"), board.name,
                pll.output_hz / 1e6, build_dir)
    started = time.monotonic()
    with patched_environ(env):
        for attempt, mapper in enumerate(mappers):
            if attempt:
                # An Amaranth platform prepares one build only, so a new attempt needs a new
                # platform and a new top around the same design.
                platform = board.create_platform()
                top = SynthTop(dut, pll) if make_top is None else make_top(dut, pll)
            _remove_products(build_dir)
            error = None
            with _Progress(build_dir, started):
                try:
                    platform.build(top, name=DESIGN_NAME, build_dir=build_dir, do_build=True,
                                   nextpnr_opts=["--report", NEXTPNR_REPORT, "--timing-allow-fail",
                                                 "--seed", str(seed), "--router", router],
                                   **build_overrides(mapper))
                except subprocess.CalledProcessError as exc:
                    error = exc
            if error is None or mapper == mappers[-1] or not _stopped_in_abc9(build_dir):
                break
            logger.warning("Yosys stopped inside abc9 with its internal assertion %r; building "
                           "again with the abc LUT mapper", ABC9_ASSERTION)
        elapsed_s = time.monotonic() - started
        versions = tool_versions(env)
    logger.info("build finished in %.1f s%s", elapsed_s,
                "" if error is None else f" with exit status {error.returncode}")

    design = dict(design)
    if isinstance(top, SynthTop):
        design["scan"] = {"input_bits": top.wrapper.input_width,
                          "output_bits": top.wrapper.output_width,
                          "ports": top.wrapper.port_map()}
    report = {
        "design": design,
        "board": {"name": board.name, "device": board.device, "package": board.package,
                  "speed": board.speed},
        "clock": {"requested_mhz": freq_mhz,
                  "board_clock_mhz": platform.default_clk_frequency / 1e6,
                  "pll_mhz": pll.output_hz / 1e6,
                  "pll": {"clki_div": pll.clki_div, "clkfb_div": pll.clkfb_div,
                          "clkop_div": pll.clkop_div, "vco_mhz": pll.vco_hz / 1e6}},
        "seed": seed,
        "router": router,
        "lut_mapper": mapper,
        "tools": versions,
        "runtime_s": {"total": round(elapsed_s, 1)},
    }
    _fill_results(report, build_dir, error)

    with open(os.path.join(out_dir, "report.json"), "w") as file:
        json.dump(report, file, indent=2)
        file.write("\n")
    with open(os.path.join(out_dir, "report.md"), "w") as file:
        file.write(render_markdown(report))
    for problem in report["problems"]:
        logger.error("%s", problem)
    return report


def _fill_results(report, build_dir, error):
    """Parse the build products into ``report`` and set its status and problems."""
    yosys = parse_yosys_log(_read(os.path.join(build_dir, f"{DESIGN_NAME}.rpt")) or "")
    nextpnr_log = parse_nextpnr_log(_read(os.path.join(build_dir, f"{DESIGN_NAME}.tim")) or "")
    report_text = _read(os.path.join(build_dir, NEXTPNR_REPORT))
    nextpnr = parse_nextpnr_report(report_text) if report_text else None

    utilization = nextpnr["utilization"] if nextpnr else nextpnr_log["utilization"]
    fmax = nextpnr["fmax"] if nextpnr else nextpnr_log["fmax"]
    report["resources"] = resource_table(utilization)
    report["lut4_breakdown"] = nextpnr_log["prepack"]
    report["synthesis_cells"] = yosys["cells"]
    report["runtime_s"]["yosys"] = yosys["time_s"]

    clocks = []
    for clock, entry in fmax.items():
        clocks.append({"clock": clock, "achieved_mhz": entry["achieved"],
                       "constraint_mhz": entry["constraint"], "passed": entry["passed"]})
    timing = {"clocks": clocks, "critical_path": None, "critical_paths": []}
    if nextpnr:
        timing["critical_paths"] = nextpnr["critical_paths"]
        # The register-to-register path of the slowest clock; I/O paths have "<async>" ends.
        internal = [path for path in nextpnr["critical_paths"]
                    if path["from"] == path["to"] and "<async>" not in (path["from"] or "")]
        if internal:
            timing["critical_path"] = max(internal, key=lambda path: path["delay_ns"])
    report["timing"] = timing

    problems = []
    if error is None:
        misses = find_timing_misses(fmax)
        status = STATUS_TIMING_FAILED if misses else STATUS_OK
        problems += [f"misses timing: {message}" for message in misses]
        if not fmax:
            status = STATUS_TOOL_FAILED
            problems.append("nextpnr reported no clock frequency; check build/top.tim")
        # A pass against any other constraint than the PLL frequency would mean nothing.
        pll_mhz = report["clock"]["pll_mhz"]
        for clock, entry in fmax.items():
            if abs(entry["constraint"] - pll_mhz) > 0.01 * pll_mhz:
                status = STATUS_TOOL_FAILED
                problems.append(f"nextpnr timed clock {clock} against {entry['constraint']:.3f} "
                                f"MHz, not the PLL output of {pll_mhz:.3f} MHz; check the "
                                f"derived constraints in build/top.tim")
    else:
        stage = _failed_stage(build_dir)
        overflows = find_overflows(nextpnr_log["utilization"], nextpnr_log["unplaceable"])
        if stage == "nextpnr-ecp5" and overflows:
            status = STATUS_DOES_NOT_FIT
            problems += [f"does not fit on {report['board']['device']}: {message}"
                         for message in overflows]
        else:
            status = STATUS_TOOL_FAILED
            log_name = {"yosys": "top.rpt", "nextpnr-ecp5": "top.tim"}.get(stage)
            detail = None
            if log_name:
                detail = _last_error(_read(os.path.join(build_dir, log_name)))
            problems.append(f"{stage} failed with exit status {error.returncode}"
                            + (f": {detail}" if detail else "")
                            + (f" (see build/{log_name})" if log_name else ""))
    checks = check_cells(report["design"].get("expected_cells", ()), yosys["cells"])
    report["checks"] = checks
    if error is None:
        failed = [check for check in checks if not check["passed"]]
        if failed and status in (STATUS_OK, STATUS_TIMING_FAILED):
            status = STATUS_CHECK_FAILED
        problems += [f"design check failed: {check['what']}: {check['found']} {check['cell']} "
                     f"in the netlist, expected {_expected_text(check)}" for check in failed]
    report["status"] = status
    report["problems"] = problems
    report["derived"] = _derived_figures(report)


def _expected_text(check):
    bounds = []
    if check.get("min") is not None:
        bounds.append(f"at least {check['min']}")
    if check.get("max") is not None:
        bounds.append(f"at most {check['max']}")
    return " and ".join(bounds)


def check_cells(expected, cells):
    """Compare the synthesized cell counts ``cells`` with the design's ``expected`` cells.

    Each entry of ``expected`` names a ``cell`` type and ``what`` needs it, and gives a
    ``min`` or a ``max`` count or both. Returns one ``{cell, what, min, max, found, passed}``
    per entry.
    """
    checks = []
    for entry in expected:
        low, high = entry.get("min"), entry.get("max")
        if low is None and high is None:
            raise ValueError(f"expected cell entry needs min or max: {entry!r}")
        found = cells.get(entry["cell"], 0)
        passed = (low is None or found >= low) and (high is None or found <= high)
        checks.append({"cell": entry["cell"], "what": entry["what"], "min": low, "max": high,
                       "found": found, "passed": passed})
    return checks


def _derived_figures(report):
    """Block RAM bits per key and keys per second, from the resources and the clock."""
    design = report["design"]
    derived = {}
    dp16kd = report["resources"].get("DP16KD")
    if dp16kd is not None:
        derived["bram_bits_per_key"] = dp16kd["used"] * BRAM_BITS / design["context"]
    clocks = report["timing"]["clocks"]
    fmax_mhz = min((entry["achieved_mhz"] for entry in clocks), default=None)
    derived["fmax_mhz"] = fmax_mhz
    keys_per_cycle = design.get("keys_per_cycle")
    if fmax_mhz is not None and keys_per_cycle is not None:
        derived["keys_per_second"] = fmax_mhz * 1e6 * keys_per_cycle
    else:
        derived["keys_per_second"] = None
    return derived
