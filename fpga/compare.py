"""Side-by-side comparison of the AXELRAM macro and the baseline score unit builds."""

import json
import os


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


def render_compare_markdown(comparison):
    """Return compare.md text for a dictionary of :func:`compare_reports`."""
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
    lines += ["", "Full reports: macro/report.md and baseline/report.md.", ""]
    return "\n".join(lines)


def write_comparison(out_dir, macro, baseline):
    """Write compare.json and compare.md into ``out_dir`` and return the comparison."""
    comparison = compare_reports(macro, baseline)
    with open(os.path.join(out_dir, "compare.json"), "w") as file:
        json.dump(comparison, file, indent=2)
        file.write("\n")
    with open(os.path.join(out_dir, "compare.md"), "w") as file:
        file.write(render_compare_markdown(comparison))
    return comparison
