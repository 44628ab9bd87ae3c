"""Parsing of Yosys and nextpnr-ecp5 output, and the report.json / report.md of one build.

The inputs are the three products of Amaranth's Trellis build: the Yosys log (``top.rpt``),
the nextpnr log (``top.tim``) and the nextpnr JSON report (``--report``). nextpnr writes its
JSON report only after routing, so a build that fails in placement is reported from the log.
The formats were checked against Yosys 0.70 and nextpnr-0.11.1 (YoWASP builds).
"""

import json
import re


__all__ = ["RESOURCES", "BRAM_BITS", "parse_yosys_log", "parse_nextpnr_log",
           "parse_nextpnr_report", "summarize_path", "resource_table", "find_overflows",
           "find_timing_misses", "render_markdown"]


RESOURCES = (
    ("LUT4", "TRELLIS_COMB"),
    ("flip-flops", "TRELLIS_FF"),
    ("block RAM (DP16KD)", "DP16KD"),
    ("DSP multipliers (MULT18X18D)", "MULT18X18D"),
    ("DSP ALUs (ALU54B)", "ALU54B"),
    ("distributed RAM write ports (TRELLIS_RAMW)", "TRELLIS_RAMW"),
    ("PLLs (EHXPLLL)", "EHXPLLL"),
    ("I/O pins", "TRELLIS_IO"),
    ("global clocks (DCCA)", "DCCA"),
)
"""Resources shown in reports: ``(label, nextpnr bel type)``. ``TRELLIS_COMB`` is one LUT4
site, used for logic, for half of a ``CCU2C`` carry cell or for distributed RAM."""

BRAM_BITS = 18 * 1024
"""Bits of one DP16KD block RAM, parity bits included."""

_STAT_LABELS = {"wires", "ports", "cells", "submodules", "processes", "memories"}

_FMAX_RE = re.compile(
    r"Max frequency for clock\s+'(?P<clock>[^']+)':\s+(?P<achieved>[\d.]+) MHz"
    r"\s+\((?P<result>PASS|FAIL) at (?P<constraint>[\d.]+) MHz\)")
_UTIL_RE = re.compile(r"^Info:\s+(?P<bel>\w+):\s+(?P<used>\d+)/\s*(?P<available>\d+)\s+\d+%")
_PREPACK_RE = re.compile(
    r"^Info:\s+(?P<label>Total LUT4s|logic LUTs|carry LUTs|RAM LUTs|RAMW LUTs|Total DFFs):"
    r"\s+(?P<used>\d+)/\s*(?P<available>\d+)")
_NO_BELS_RE = re.compile(r"no BELs remaining to implement cell type '(?P<bel>\w+)'")


def parse_yosys_log(text):
    """Return ``{"cells": {type: count}, "time_s": float or None}`` from a Yosys log.

    The cell counts come from the last ``stat`` output in the log, which ``synth_ecp5`` prints
    after technology mapping. Both the table layout of Yosys 0.5x and newer and the older
    ``Number of cells`` layout are read.
    """
    cells = {}
    start = text.rfind("Printing statistics")
    if start >= 0:
        lines = text[start:].splitlines()
        # The cell types follow the last cell total, one per line, up to a blank line.
        total_index = None
        for index, line in enumerate(lines):
            if re.match(r"^\s+\d+\s+cells\s*$", line) or re.match(r"^\s+Number of cells:", line):
                total_index = index
        if total_index is not None:
            for line in lines[total_index + 1:]:
                if not line.strip():
                    break
                match = (re.match(r"^\s+(\d+)\s+(\S+)\s*$", line) or
                         re.match(r"^\s+(\S+)\s+(\d+)\s*$", line))
                if match is None:
                    continue
                first, second = match.groups()
                count, cell = (first, second) if first.isdigit() else (second, first)
                if cell in _STAT_LABELS or cell.startswith("$scopeinfo"):
                    continue
                cells[cell] = int(count)

    time_s = None
    match = re.search(r"End of script\..*?time:\s*([\d.]+)s", text)
    if match:
        time_s = float(match.group(1))
    return {"cells": cells, "time_s": time_s}


def parse_nextpnr_log(text):
    """Return what a nextpnr-ecp5 log states about utilisation, frequency and errors.

    Keys of the result:

    * ``"prepack"`` maps the pre-packing LUT4/DFF lines (``"Total LUT4s"``, ``"logic LUTs"``,
      ``"carry LUTs"``, ``"RAM LUTs"``, ``"RAMW LUTs"``, ``"Total DFFs"``) to
      ``{"used", "available"}``.
    * ``"utilization"`` maps each bel type of the last ``Device utilisation`` table to
      ``{"used", "available"}``.
    * ``"fmax"`` maps each clock to the last ``{"achieved", "constraint", "passed"}`` reported
      for it, in MHz.
    * ``"errors"`` lists the ``ERROR:`` lines, and ``"unplaceable"`` the bel types that ran out
      during placement.
    """
    prepack, utilization, fmax, errors, unplaceable = {}, {}, {}, [], []
    in_table = False
    for line in text.splitlines():
        if line.startswith("Info: Device utilisation:"):
            utilization = {}
            in_table = True
            continue
        if in_table:
            match = _UTIL_RE.match(line)
            if match:
                utilization[match["bel"]] = {"used": int(match["used"]),
                                             "available": int(match["available"])}
                continue
            in_table = False
        match = _PREPACK_RE.match(line)
        if match:
            prepack[match["label"]] = {"used": int(match["used"]),
                                       "available": int(match["available"])}
        match = _FMAX_RE.search(line)
        if match:
            fmax[match["clock"]] = {"achieved": float(match["achieved"]),
                                    "constraint": float(match["constraint"]),
                                    "passed": match["result"] == "PASS"}
        if line.startswith("ERROR:"):
            errors.append(line[len("ERROR:"):].strip())
            match = _NO_BELS_RE.search(line)
            if match:
                unplaceable.append(match["bel"])
    return {"prepack": prepack, "utilization": utilization, "fmax": fmax,
            "errors": errors, "unplaceable": unplaceable}


def parse_nextpnr_report(text):
    """Return ``{"utilization", "fmax", "critical_paths"}`` from a nextpnr ``--report`` file.

    ``utilization`` maps bel types to ``{"used", "available"}``; ``fmax`` maps clocks to
    ``{"achieved", "constraint", "passed"}`` in MHz; ``critical_paths`` is the list of
    :func:`summarize_path` results.
    """
    report = json.loads(text)
    utilization = {bel: {"used": int(entry["used"]), "available": int(entry["available"])}
                   for bel, entry in report.get("utilization", {}).items()}
    fmax = {}
    for clock, entry in report.get("fmax", {}).items():
        achieved, constraint = float(entry["achieved"]), float(entry["constraint"])
        fmax[clock] = {"achieved": achieved, "constraint": constraint,
                       "passed": achieved >= constraint}
    paths = [summarize_path(path) for path in report.get("critical_paths", [])]
    return {"utilization": utilization, "fmax": fmax, "critical_paths": paths}


def summarize_path(path):
    """Summarize one entry of ``critical_paths`` of a nextpnr JSON report.

    Returns ``{"from", "to", "delay_ns", "logic_ns", "routing_ns", "clock_skew_ns",
    "logic_levels", "start_cell", "end_cell", "steps"}``. ``logic_ns`` counts clock-to-output,
    cell and setup delays. ``logic_levels`` counts the cells the path enters through the
    routing fabric, so that a carry chain counts as one level.
    """
    steps = path.get("path", [])
    delays = {"logic": 0.0, "routing": 0.0, "clk-skew": 0.0}
    levels = 0
    previous = None
    for step in steps:
        kind = step.get("type")
        delay = float(step.get("delay", 0.0))
        if kind == "routing":
            delays["routing"] += delay
        elif kind == "clk-skew":
            delays["clk-skew"] += delay
        else:
            delays["logic"] += delay
            # Inside a carry chain the hops between cells have no routing delay, so a whole
            # chain counts as one level.
            entered_through_fabric = (previous is None or previous.get("type") != "routing"
                                      or float(previous.get("delay", 0.0)) > 0)
            if kind == "logic" and entered_through_fabric:
                levels += 1
        previous = step
    cells = [step["from"]["cell"] for step in steps if step.get("type") != "clk-skew"]
    return {
        "from": path.get("from"),
        "to": path.get("to"),
        "delay_ns": round(sum(delays.values()), 3),
        "logic_ns": round(delays["logic"], 3),
        "routing_ns": round(delays["routing"], 3),
        "clock_skew_ns": round(delays["clk-skew"], 3),
        "logic_levels": levels,
        "start_cell": cells[0] if cells else None,
        "end_cell": steps[-1]["to"]["cell"] if steps else None,
        "steps": [{"type": step.get("type"), "delay_ns": round(float(step.get("delay", 0)), 3),
                   "from": step.get("from", {}).get("cell"), "to": step.get("to", {}).get("cell"),
                   "net": step.get("net")} for step in steps],
    }


def resource_table(utilization):
    """Return ``{bel: {"label", "used", "available", "share"}}`` for the bels of ``RESOURCES``.

    ``share`` is ``used / available`` (a fraction, not a percentage). Bel types missing from
    ``utilization`` are left out.
    """
    table = {}
    for label, bel in RESOURCES:
        if bel not in utilization:
            continue
        used, available = utilization[bel]["used"], utilization[bel]["available"]
        table[bel] = {"label": label, "used": used, "available": available,
                      "share": used / available if available else None}
    return table


def find_overflows(utilization, unplaceable=()):
    """Return one message per bel type that the design uses more of than the device has.

    ``unplaceable`` lists bel types that nextpnr reported as exhausted; one of them without a
    utilisation entry still yields a message.
    """
    messages = []
    for bel, entry in utilization.items():
        used, available = entry["used"], entry["available"]
        if used > available:
            messages.append(f"{bel}: {used} used, {available} available "
                            f"({used - available} over, {100 * used / available:.0f}% of the device)")
    for bel in unplaceable:
        if bel not in utilization or utilization[bel]["used"] <= utilization[bel]["available"]:
            messages.append(f"{bel}: nextpnr found no free {bel} site for a cell")
    return messages


def find_timing_misses(fmax):
    """Return one message per clock whose achieved frequency is below its constraint."""
    messages = []
    for clock, entry in fmax.items():
        achieved, constraint = entry["achieved"], entry["constraint"]
        if achieved < constraint:
            short_ns = 1e3 / achieved - 1e3 / constraint
            messages.append(
                f"clock {clock}: maximum frequency {achieved:.2f} MHz is below the "
                f"{constraint:.2f} MHz constraint ({constraint - achieved:.2f} MHz, "
                f"{short_ns:.3f} ns per cycle short)")
    return messages


def _format_share(share):
    return "-" if share is None else f"{100 * share:.1f}%"


def render_markdown(report):
    """Return report.md text for a report dictionary built by :mod:`fpga.flow`."""
    design, board, clock = report["design"], report["board"], report["clock"]
    lines = [
        f"# FPGA build: {design['top']} (d={design['d']}, bits={design['bits']}, "
        f"context={design['context']}) on {board['name']}",
        "",
        f"Status: **{report['status']}**",
        "",
    ]
    for problem in report["problems"]:
        lines.append(f"- {problem}")
    if report["problems"]:
        lines.append("")

    lines += [
        f"Device {board['device']} ({board['package']}, speed grade {board['speed']}). "
        f"Requested clock {clock['requested_mhz']:g} MHz; the PLL makes "
        f"{clock['pll_mhz']:.3f} MHz from the {clock['board_clock_mhz']:g} MHz board clock.",
        "",
        "## Resources",
        "",
        "| resource | used | available | share |",
        "|---|---:|---:|---:|",
    ]
    for entry in report["resources"].values():
        lines.append(f"| {entry['label']} | {entry['used']} | {entry['available']} | "
                     f"{_format_share(entry['share'])} |")
    prepack = report.get("lut4_breakdown", {})
    if prepack:
        parts = ", ".join(f"{label} {entry['used']}" for label, entry in prepack.items())
        lines += ["", f"Before packing (nextpnr): {parts}."]
    cells = report.get("synthesis_cells", {})
    if cells:
        parts = ", ".join(f"{cell} {count}" for cell, count in sorted(cells.items()))
        lines += ["", f"Cells after synthesis (Yosys): {parts}."]

    checks = report.get("checks", [])
    if checks:
        lines += ["", "## Design check", "",
                  "Cells the design must map to, counted in the synthesized netlist:", "",
                  "| what | cell | expected | found | result |", "|---|---|---|---:|---|"]
        for check in checks:
            bounds = []
            if check["min"] is not None:
                bounds.append(f">= {check['min']}")
            if check["max"] is not None:
                bounds.append(f"<= {check['max']}")
            result = "pass" if check["passed"] else "FAIL"
            lines.append(f"| {check['what']} | {check['cell']} | {', '.join(bounds)} | "
                         f"{check['found']} | {result} |")

    lines += ["", "## Timing", ""]
    if report["timing"]["clocks"]:
        lines += ["| clock | achieved (MHz) | constraint (MHz) | result |", "|---|---:|---:|---|"]
        for entry in report["timing"]["clocks"]:
            result = "pass" if entry["passed"] else "FAIL"
            lines.append(f"| {entry['clock']} | {entry['achieved_mhz']:.2f} | "
                         f"{entry['constraint_mhz']:.2f} | {result} |")
    else:
        lines.append("No clock was timed (the build stopped before timing analysis).")
    path = report["timing"].get("critical_path")
    if path:
        lines += [
            "",
            f"Critical path ({path['from']} to {path['to']}): {path['delay_ns']:.3f} ns, "
            f"{path['logic_ns']:.3f} ns in cells and {path['routing_ns']:.3f} ns in routing, "
            f"{path['logic_levels']} logic levels, from `{path['start_cell']}` to "
            f"`{path['end_cell']}`.",
        ]

    derived = report.get("derived", {})
    if derived:
        lines += ["", "## Derived figures", ""]
        for key, value in derived.items():
            lines.append(f"- {key}: {value if value is not None else 'unknown'}")

    lines += ["", "## Tools", ""]
    for tool, entry in report["tools"].items():
        detail = entry["version"] or "version unknown"
        if entry.get("package"):
            detail += f" ({entry['package']})"
        lines.append(f"- {tool}: {detail}")
    options = [f"{name} {report[key]}" for name, key in
               (("Yosys LUT mapper", "lut_mapper"), ("nextpnr router", "router"),
                ("placement seed", "seed")) if key in report]
    if options:
        lines += ["", "Options: " + ", ".join(options) + "."]
    runtime = report["runtime_s"]
    lines += ["", f"Build time {runtime['total']:.1f} s"
              + (f", of which Yosys {runtime['yosys']:.1f} s." if runtime.get("yosys") else "."),
              ""]
    return "\n".join(lines)
