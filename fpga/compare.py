"""Side-by-side comparison of the AXELRAM macro and the baseline score unit builds.

``python -m fpga --compare`` builds both designs and writes the comparison. To compare two
builds made separately (for instance ``--top macro`` and ``--top baseline`` run one after the
other, or on two machines), run::

    python -m fpga.compare MACRO_DIR BASELINE_DIR [--out DIR]

where each folder contains the ``report.json`` of one build. The two builds must be of the same
board, ``d`` and context. Exit status 0 when both builds are ``ok``, 1 otherwise, 2 on bad
arguments or unreadable reports.
"""

import argparse
import json
import os
import sys


__all__ = ["COMPARED_FIGURES", "compare_reports", "render_compare_markdown",
           "write_comparison"]


COMPARED_FIGURES = (
    ("LUT4", "LUT4 sites (TRELLIS_COMB)"),
    ("TRELLIS_FF", "flip-flops"),
    ("MULT18X18D", "DSP multipliers"),
    ("DP16KD", "block RAMs"),
    ("bram_bits_per_key", "block RAM bits per key"),
    ("fmax_mhz", "Fmax (MHz)"),
    ("keys_per_second", "keys per second"),
)
"""Figures in the comparison: ``(key, label)``."""


def _figure(report, key):
    if key == "LUT4":
        key = "TRELLIS_COMB"
    if key in report["resources"]:
        return report["resources"][key]["used"]
    return report["derived"].get(key)


def compare_reports(macro, baseline):
    """Return the comparison dictionary of two reports of :func:`fpga.flow.run_build`.

    ``figures`` maps each key of ``COMPARED_FIGURES`` to ``{"label", "macro", "baseline",
    "ratio"}``, where ``ratio`` is ``macro / baseline``, or None when either value is missing
    or the baseline value is zero.
    """
    figures = {}
    for key, label in COMPARED_FIGURES:
        macro_value, baseline_value = _figure(macro, key), _figure(baseline, key)
        ratio = None
        if macro_value is not None and baseline_value:
            ratio = macro_value / baseline_value
        figures[key] = {"label": label, "macro": macro_value, "baseline": baseline_value,
                        "ratio": ratio}
    design = macro["design"]
    return {
        "board": macro["board"],
        "d": design["d"],
        "bits": design["bits"],
        "context": design["context"],
        "requested_mhz": macro["clock"]["requested_mhz"],
        "status": {"macro": macro["status"], "baseline": baseline["status"]},
        "problems": {"macro": macro["problems"], "baseline": baseline["problems"]},
        "figures": figures,
    }


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def render_compare_markdown(comparison, reports=("macro/report.md", "baseline/report.md")):
    """Return compare.md text for a dictionary of :func:`compare_reports`.

    ``reports`` gives the paths of the two full reports, relative to compare.md.
    """
    board = comparison["board"]
    lines = [
        f"# AXELRAM macro against the FP16 baseline on {board['name']}",
        "",
        f"d={comparison['d']}, bits={comparison['bits']} (macro only), "
        f"context={comparison['context']}, requested clock {comparison['requested_mhz']:g} MHz, "
        f"device {board['device']} speed grade {board['speed']}.",
        "",
        f"Build status: macro **{comparison['status']['macro']}**, "
        f"baseline **{comparison['status']['baseline']}**.",
        "",
    ]
    for side in ("macro", "baseline"):
        for problem in comparison["problems"][side]:
            lines.append(f"- {side}: {problem}")
    if any(comparison["problems"].values()):
        lines.append("")
    lines += ["| figure | macro | baseline | macro / baseline |", "|---|---:|---:|---:|"]
    for entry in comparison["figures"].values():
        lines.append(f"| {entry['label']} | {_format(entry['macro'])} | "
                     f"{_format(entry['baseline'])} | {_format(entry['ratio'])} |")
    lines += ["", f"Full reports: {reports[0]} and {reports[1]}.", ""]
    return "\n".join(lines)


def write_comparison(out_dir, macro, baseline, reports=("macro/report.md", "baseline/report.md")):
    """Write compare.json and compare.md into ``out_dir`` and return the comparison."""
    comparison = compare_reports(macro, baseline)
    with open(os.path.join(out_dir, "compare.json"), "w") as file:
        json.dump(comparison, file, indent=2)
        file.write("\n")
    with open(os.path.join(out_dir, "compare.md"), "w") as file:
        file.write(render_compare_markdown(comparison, reports))
    return comparison


class ReportError(ValueError):
    """A report folder is missing, unreadable or not the expected kind of build."""


def load_report(folder, top):
    """Return the ``report.json`` of the ``top`` build (``"macro"`` or ``"baseline"``) in ``folder``."""
    path = os.path.join(folder, "report.json")
    try:
        with open(path) as file:
            report = json.load(file)
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not JSON: {exc}") from None
    found = report.get("design", {}).get("top") if isinstance(report, dict) else None
    if found != top:
        raise ReportError(f"{path} is a report of {found!r}, expected {top!r}")
    return report


def _check_same_build(macro, baseline):
    fields = (("board", lambda report: report["board"]["name"]),
              ("d", lambda report: report["design"]["d"]),
              ("context", lambda report: report["design"]["context"]))
    for field, get in fields:
        if get(macro) != get(baseline):
            raise ReportError(f"the builds differ in {field}: macro {get(macro)!r}, "
                              f"baseline {get(baseline)!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m fpga.compare",
        description="Compare a macro build and a baseline build made by python -m fpga.")
    parser.add_argument("macro", help="folder with the macro build's report.json")
    parser.add_argument("baseline", help="folder with the baseline build's report.json")
    parser.add_argument("--out", default=None,
                        help="folder for compare.json and compare.md (default: the macro "
                             "folder's parent)")
    args = parser.parse_args(argv)
    try:
        macro = load_report(args.macro, "macro")
        baseline = load_report(args.baseline, "baseline")
        _check_same_build(macro, baseline)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out or os.path.dirname(os.path.abspath(args.macro))
    os.makedirs(out_dir, exist_ok=True)
    reports = tuple(os.path.relpath(os.path.join(folder, "report.md"), out_dir)
                    for folder in (args.macro, args.baseline))
    comparison = write_comparison(out_dir, macro, baseline, reports)
    print(f"comparison: {os.path.join(out_dir, 'compare.md')}")
    status = comparison["status"]
    return 0 if status["macro"] == status["baseline"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
