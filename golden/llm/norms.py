"""``python -m golden norms``: how uneven the model's key norms are across layers.

Keys are captured after RoPE on ``--samples`` sequences of ``--length`` tokens from the
calibration part of the corpus. For each layer the report gives the mean Euclidean norm of its
keys (over all tokens and KV heads), per KV head, and the largest key norm. The ratio of the
largest to the smallest layer mean predicts how much the choice of sign vector matters. The
published rule of thumb (Nishida, "AXELRAM", arXiv:2604.02638) is that below 2x the default
signs are safe and above 5x they should be calibrated.
"""

import json
import sys

import torch

from ..params import int_option
from .attention import capture_kv
from .cli import add_common_arguments, load, run_reporting_errors
from .model import corpus_sequences
from .progress import progress

SAFE_RATIO = 2.0
CALIBRATE_RATIO = 5.0
DEFAULT_SAMPLES = 4
DEFAULT_LENGTH = 512


def layer_norm_stats(keys):
    """Return the norm statistics of one layer's keys ``(batch, kv_heads, T, d)`` as a dict."""
    norms = keys.to(torch.float64).norm(dim=-1)
    return {
        "mean": norms.mean().item(),
        "head_means": norms.mean(dim=(0, 2)).tolist(),
        "max": norms.max().item(),
    }


def norm_ratio(stats):
    """Return ``(ratio, largest_layer, smallest_layer)`` of the per-layer mean key norms."""
    means = [s["mean"] for s in stats]
    largest = max(range(len(means)), key=means.__getitem__)
    smallest = min(range(len(means)), key=means.__getitem__)
    if means[smallest] <= 0:
        raise ValueError(f"layer {smallest} has mean key norm {means[smallest]}; the ratio is undefined")
    return means[largest] / means[smallest], largest, smallest


def advice(ratio):
    """Return the sign-vector advice for a max/min ratio of layer mean key norms."""
    if ratio < SAFE_RATIO:
        return f"below {SAFE_RATIO:g}x: the default sign vectors are safe"
    if ratio > CALIBRATE_RATIO:
        return f"above {CALIBRATE_RATIO:g}x: calibrate the sign vectors (python -m golden calibrate)"
    return (f"between {SAFE_RATIO:g}x and {CALIBRATE_RATIO:g}x: compare the default and calibrated "
            "sign vectors on perplexity")


def collect(loaded, sequences, show_progress=True):
    """Return per-layer norm statistics of the keys of ``sequences`` ``(samples, length)``."""
    bar = progress(len(sequences), "capturing keys", enabled=show_progress)
    per_layer = [[] for _ in range(loaded.layers)]
    for sequence in sequences:
        for layer, captured in enumerate(capture_kv(loaded, sequence.unsqueeze(0), kinds=("keys",))):
            per_layer[layer].append(captured.keys)
        bar.update(1)
    bar.close()
    return [layer_norm_stats(torch.cat(keys)) for keys in per_layer]


def format_table(stats):
    """Return the per-layer table and the ratio line as text."""
    heads = len(stats[0]["head_means"])
    header = "layer  mean norm  " + "  ".join(f"head {h:d}" for h in range(heads)) + "  max norm"
    lines = [header]
    for layer, s in enumerate(stats):
        cells = "  ".join(f"{m:6.2f}" for m in s["head_means"])
        lines.append(f"{layer:5d}  {s['mean']:9.2f}  {cells}  {s['max']:8.2f}")
    ratio, largest, smallest = norm_ratio(stats)
    lines.append(f"max/min of layer mean norms: {ratio:.2f}x (layer {largest} / layer {smallest}); {advice(ratio)}")
    return "\n".join(lines) + "\n"


def add_arguments(parser):
    parser.add_argument("--samples", type=int_option("--samples", 1), default=DEFAULT_SAMPLES,
                        help=f"sequences to capture keys from (default {DEFAULT_SAMPLES})")
    parser.add_argument("--length", type=int_option("--length", 1), default=DEFAULT_LENGTH,
                        help=f"tokens per sequence (default {DEFAULT_LENGTH})")
    parser.add_argument("--json", metavar="FILE", help="also write the statistics as JSON ('-' for standard output "
                                                       "in place of the table)")
    add_common_arguments(parser)


def run(args):
    return run_reporting_errors(_run, args)


def _run(args):
    loaded = load(args)
    sequences = corpus_sequences(loaded.tokenizer, args.samples, args.length, args.corpus, "calibration")
    stats = collect(loaded, sequences, show_progress=not args.no_progress)
    ratio, largest, smallest = norm_ratio(stats)
    report = {
        "model": loaded.path.name,
        "corpus": str(args.corpus),
        "part": "calibration",
        "samples": args.samples,
        "length": args.length,
        "layers": [{"layer": layer, **s} for layer, s in enumerate(stats)],
        "ratio": ratio,
        "largest_layer": largest,
        "smallest_layer": smallest,
        "advice": advice(ratio),
    }
    text = json.dumps(report, indent=1) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
        return 0
    if args.json:
        with open(args.json, "w") as out:
            out.write(text)
    sys.stdout.write(format_table(stats))
    return 0
