"""``python -m golden ppl``: perplexity of the packaged model with an AXELRAM-quantized KV cache.

Every key and value vector of every layer and KV head is replaced by its quantize-dequantize
image (:class:`golden.llm.attention.KVQuantizer`) before attention. The perplexity on the
evaluation part of the corpus (the first half of its documents) is compared with that of the
unquantized cache.

Sliding-window protocol: windows of ``--window`` tokens start every ``--stride`` tokens. Each
window scores only the tokens that no earlier window scored. So every token after the first is
scored exactly once, with at least ``window - stride`` tokens of context (fewer in the first
window). Each window is a fresh forward pass whose whole cache is quantized, as if the window had
been written to AXELRAM and read back.

Sign vectors: without ``--signs``, run ``s`` of ``--seeds N`` uses ``signs_from_seed(d, s)`` in
every layer, for ``s = 1 .. N``. With ``--signs``, each bit width runs once with the sign file
whose ``"bits"`` field matches it (a file without ``"bits"`` serves every width), and ``--seeds``
is rejected because the file fixes the vectors. Increases are reported as mean, sample standard
deviation (n - 1) and worst (largest) over the runs.
"""

import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import ideal
from ..codebook import solve_codebook
from ..params import DISTRIBUTIONS, INPUT_FORMATS, check_bits, int_option
from ..signs import signs_from_seed
from .attention import KVQuantizer, kv_hook
from .calibrate import load_sign_file
from .cli import add_common_arguments, load, run_reporting_errors
from .model import corpus_tokens
from .progress import progress

# Sized for `--bits 3 --seeds 3` (four passes of 7 windows) within 30 minutes on two CPU cores.
# NOTE: that is an estimate from CPU time, not a timed run: with --threads 1 a 1024-token window
# took about 20 CPU-seconds, quantized or not, and loading about 70, so about 11 minutes in all.
# On a machine shared with other jobs the wall time grows accordingly.
# The published protocol (window 2048, stride 512) feeds twice as many tokens per scored token.
DEFAULT_TOKENS = 4096
DEFAULT_WINDOW = 1024
DEFAULT_STRIDE = 512
DEFAULT_SEEDS = 10
DEFAULT_BITS = (2, 3, 4)
QUANTIZERS = ("ideal", "bitexact")


def sliding_windows(n_tokens, window, stride):
    """Return the windows ``(begin, end, first)`` over ``n_tokens`` tokens.

    A window feeds tokens ``begin .. end-1`` and scores the predictions of tokens ``first .. end-1``.
    """
    for name, value in (("token count", n_tokens), ("window", window), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, not {value!r}")
    if n_tokens < 2:
        raise ValueError(f"token count must be at least 2, not {n_tokens!r}")
    if window < 2:
        raise ValueError(f"window must be at least 2 tokens, not {window!r}")
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be in 1..{window} (the window), not {stride!r}")

    spans = []
    begin = 0
    scored_up_to = 1
    while True:
        end = min(begin + window, n_tokens)
        spans.append((begin, end, scored_up_to))
        if end == n_tokens:
            return spans
        scored_up_to = end
        begin += stride


def window_nll(loaded, ids, span, hook=None):
    """Return the summed negative log-likelihood (nats) and the count of the tokens one window scores."""
    begin, end, first = span
    with torch.inference_mode():
        # Logits of positions first-1 .. end-2 predict tokens first .. end-1; the last one is unused.
        if hook is None:
            out = loaded.model(ids[begin:end].unsqueeze(0), use_cache=False, logits_to_keep=end - first + 1)
        else:
            with kv_hook(hook):
                out = loaded.model(ids[begin:end].unsqueeze(0), use_cache=False, logits_to_keep=end - first + 1)
        logits = out.logits[0, :-1].to(torch.float64)
        nll = F.cross_entropy(logits, ids[first:end], reduction="sum")
    return nll.item(), end - first


def perplexity(loaded, ids, window, stride, hook=None, bar=None):
    """Return the perplexity of token ids ``ids`` (1-D) under the sliding-window protocol."""
    total, count = 0.0, 0
    for span in sliding_windows(len(ids), window, stride):
        nll, n = window_nll(loaded, ids, span, hook)
        total += nll
        count += n
        if bar is not None:
            bar.update(1)
    return math.exp(total / count)


def summarize(baseline, ppls):
    """Return mean, sample standard deviation and worst of the perplexity increases over ``baseline``."""
    increases = [p - baseline for p in ppls]
    return {
        "mean_ppl": statistics.fmean(ppls),
        "mean_increase": statistics.fmean(increases),
        "std_increase": statistics.stdev(increases) if len(increases) > 1 else 0.0,
        "worst_increase": max(increases),
    }


def _quantize_dequantize(name, input_format):
    if name == "ideal":
        return ideal.quantize_dequantize
    try:
        from .. import bitexact
    except ModuleNotFoundError as exc:
        raise ValueError(f"--model bitexact needs golden.bitexact, which failed to import: {exc}") from exc

    def quantize_dequantize(x, codebook, signs):
        return bitexact.quantize_dequantize(x, codebook, signs, fmt=input_format)

    return quantize_dequantize


def _sign_plans(args, loaded):
    """Return, per bit width, the runs as ``(label, seed or None, per-layer signs)``."""
    d = loaded.head_dim
    if not args.signs:
        seeds = range(1, (args.seeds or DEFAULT_SEEDS) + 1)
        return {bits: [(f"seed {s}", s, [signs_from_seed(d, s)] * loaded.layers) for s in seeds]
                for bits in args.bits}

    files = [(path, *load_sign_file(path, loaded.layers, d, loaded.kv_heads)) for path in args.signs]
    plans = {}
    for bits in args.bits:
        matching = [(path, signs) for path, signs, file_bits in files if file_bits in (bits, None)]
        if not matching:
            raise ValueError(f"no sign file for {bits} bits among {', '.join(args.signs)}; "
                             f"calibrate with --bits {bits} or drop {bits} from --bits")
        if len(matching) > 1:
            raise ValueError(f"sign files {', '.join(p for p, _ in matching)} all apply to {bits} bits; pass one")
        path, signs = matching[0]
        plans[bits] = [(f"file {path}", None, signs)]
    return plans


def measure(loaded, ids, plans, codebooks, quantize_dequantize, window, stride,
            show_progress=True, on_result=None):
    """Measure the baseline and every planned run; return ``{"baseline_ppl": ..., "results": [...]}``.

    Runs go round-robin over the bit widths (first run of each width, then the second, ...), so
    partial results cover every width. ``on_result(result)`` is called after each run with the
    results so far, for partial output.
    """
    start = time.monotonic()
    n_windows = len(sliding_windows(len(ids), window, stride))
    n_runs = 1 + sum(len(runs) for runs in plans.values())
    bar = progress(n_runs * n_windows, "perplexity", enabled=show_progress)
    result = {"baseline_ppl": None, "results": [{"bits": bits, "runs": []} for bits in plans]}
    try:
        bar.set_postfix_str("baseline")
        result["baseline_ppl"] = perplexity(loaded, ids, window, stride, None, bar)
        result["baseline_seconds"] = round(time.monotonic() - start, 1)
        if on_result is not None:
            on_result(result)
        for index in range(max(len(runs) for runs in plans.values())):
            for entry in result["results"]:
                bits = entry["bits"]
                if index >= len(plans[bits]):
                    continue
                label, seed, signs = plans[bits][index]
                bar.set_postfix_str(f"{bits} bits, {label}")
                run_start = time.monotonic()
                hook = KVQuantizer(codebooks[bits], signs, quantize_dequantize)
                ppl = perplexity(loaded, ids, window, stride, hook, bar)
                entry["runs"].append({"signs": label, "seed": seed, "ppl": ppl,
                                      "increase": ppl - result["baseline_ppl"],
                                      "seconds": round(time.monotonic() - run_start, 1)})
                entry.update(summarize(result["baseline_ppl"], [r["ppl"] for r in entry["runs"]]))
                if on_result is not None:
                    on_result(result)
    finally:
        bar.close()
    return result


def to_markdown(report):
    """Return the report as a Markdown paragraph and table."""
    lines = [
        f"Perplexity of {report['model']} with a quantized KV cache (keys and values, {report['quantizer']} "
        f"model, {report['distribution']} codebook, d = {report['d']}). Corpus {report['corpus']!r}, "
        f"evaluation part, {report['tokens']} tokens, window {report['window']}, stride {report['stride']}. "
        f"Unquantized cache: PPL {report['baseline_ppl']:.3f}.",
        "",
        "| bits | sign vectors | runs | mean PPL | increase, mean ± std | worst increase |",
        "|---|---|---|---|---|---|",
    ]
    for entry in report["results"]:
        if not entry["runs"]:
            continue
        seeds = [r["seed"] for r in entry["runs"]]
        if None in seeds:
            signs = entry["runs"][0]["signs"]
        else:
            signs = f"seeds {min(seeds)}..{max(seeds)}" if len(seeds) > 1 else f"seed {seeds[0]}"
        lines.append(f"| {entry['bits']} | {signs} | {len(entry['runs'])} | {entry['mean_ppl']:.3f} | "
                     f"{entry['mean_increase']:+.3f} ± {entry['std_increase']:.3f} | "
                     f"{entry['worst_increase']:+.3f} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser):
    parser.add_argument("--bits", type=int, nargs="+", default=list(DEFAULT_BITS),
                        help="codebook bit widths to measure (default 2 3 4)")
    parser.add_argument("--seeds", type=int_option("--seeds", 1), default=None,
                        help=f"runs per bit width, run s using signs_from_seed(d, s) in every layer "
                             f"(default {DEFAULT_SEEDS}; not allowed with --signs)")
    parser.add_argument("--signs", nargs="+", metavar="FILE",
                        help="sign files from 'calibrate', one per bit width (matched by their 'bits' field)")
    parser.add_argument("--model", choices=QUANTIZERS, default="ideal",
                        help="quantizer: the floating-point ideal model or the hardware's bit-exact "
                             "integer model (default ideal)")
    parser.add_argument("--input-format", choices=INPUT_FORMATS, default="fp16",
                        help="cache format the bit-exact model rounds inputs to (default fp16)")
    parser.add_argument("--distribution", choices=DISTRIBUTIONS, default="gaussian",
                        help="distribution the codebook is fitted to (default gaussian)")
    parser.add_argument("--tokens", type=int_option("--tokens", 1), default=DEFAULT_TOKENS,
                        help=f"evaluation tokens from the start of the evaluation part (default {DEFAULT_TOKENS})")
    parser.add_argument("--window", type=int_option("--window", 1), default=DEFAULT_WINDOW,
                        help=f"tokens per forward pass (default {DEFAULT_WINDOW})")
    parser.add_argument("--stride", type=int_option("--stride", 1), default=DEFAULT_STRIDE,
                        help=f"tokens between window starts (default {DEFAULT_STRIDE})")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON (rewritten after each run)")
    parser.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown table")
    add_common_arguments(parser)


def run(args):
    if args.signs and args.seeds is not None:
        print("error: --seeds and --signs exclude each other, because a sign file fixes the sign vectors",
              file=sys.stderr)
        return 2
    return run_reporting_errors(_run, args)


def _run(args):
    for bits in args.bits:
        check_bits(bits)
    args.bits = list(dict.fromkeys(args.bits))
    sliding_windows(args.tokens, args.window, args.stride)
    # Checked before the model loads, which takes a while; the contents are checked after it.
    for path in args.signs or ():
        if not Path(path).is_file():
            raise ValueError(f"sign file {path!r} not found; write one with 'python -m golden calibrate'")
    start = time.monotonic()

    loaded = load(args)
    quantize_dequantize = _quantize_dequantize(args.model, args.input_format)
    codebooks = {bits: solve_codebook(loaded.head_dim, bits, args.distribution) for bits in args.bits}
    plans = _sign_plans(args, loaded)
    ids = corpus_tokens(loaded.tokenizer, args.tokens, args.corpus, "evaluation")

    report = {
        "model": loaded.path.name,
        "quantizer": args.model,
        "input_format": args.input_format if args.model == "bitexact" else None,
        "distribution": args.distribution,
        "d": loaded.head_dim,
        "corpus": str(args.corpus),
        "part": "evaluation",
        "tokens": args.tokens,
        "window": args.window,
        "stride": args.stride,
        "threads": torch.get_num_threads(),
        "complete": False,
    }

    def write_json(result):
        report.update(result)
        report["seconds"] = round(time.monotonic() - start, 1)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n")

    result = measure(loaded, ids, plans, codebooks, quantize_dequantize, args.window, args.stride,
                     show_progress=not args.no_progress, on_result=write_json)
    report["complete"] = True
    write_json(result)
    markdown = to_markdown(report)
    if args.markdown:
        Path(args.markdown).write_text(markdown)
    print(markdown, end="")
    print(f"{report['seconds']:.0f} s", file=sys.stderr)
    return 0
