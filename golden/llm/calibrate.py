"""``python -m golden calibrate``: choose each layer's sign vector on the model's own keys.

For every layer, keys of ``--samples`` sequences of ``--length`` tokens from the calibration part
of the corpus (the second half of its documents, disjoint from the perplexity text) are captured
after RoPE and scaled to unit norm. Each candidate sign vector ``signs_from_seed(d, s)`` for
``s = 1 .. --candidates`` rotates them, quantizes them to the codebook and reconstructs them; its
error is the mean over keys of ``||u - u_hat||**2`` in the rotated domain. The candidate with the
lowest error wins, the lowest seed on a tie. With ``--per-head`` each KV head also gets its own
winner.

The output is a per-layer sign file (see :mod:`golden.signs`) with extra fields per layer
entry: ``"seed"`` and ``"mse"`` of the winner, ``"default_mse"`` of seed 1 and, with
``--per-head``, ``"heads"`` (one sign vector per KV head, in head order) and ``"head_seeds"``.
``"signs"`` is always the layer-wide winner, the vector a single sign ROM per layer stores. The
top level records ``"bits"``, ``"distribution"`` and how the keys were drawn.
"""

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import ideal
from ..codebook import solve_codebook
from ..params import DISTRIBUTIONS, check_bits, int_option
from ..signs import MAX_SEED, check_signs, load_signs, signs_from_seed
from .attention import capture_kv
from .cli import add_common_arguments, load, run_reporting_errors
from .model import corpus_sequences
from .progress import progress

DEFAULT_CANDIDATES = 200
DEFAULT_SAMPLES = 8
DEFAULT_LENGTH = 512


@dataclass(frozen=True)
class Selection:
    """Outcome of one calibration: the winning seed, its error and every candidate's error by seed."""

    seed: int
    error: float
    errors: dict


def rotated_errors(units, codebook, signs):
    """Return ``||u - u_hat||**2`` per row of ``units`` ``(N, d)`` for one sign vector, ``(N,)``.

    ``u`` is the rotated row and ``u_hat`` the centroid of each of its coordinates.
    """
    u = ideal.rotate(units, signs)
    u_hat = ideal.code_values(ideal.quantize_unit(u, codebook), codebook, dtype=u.dtype)
    return ((u - u_hat) ** 2).sum(dim=-1)


def _check_seeds(seeds):
    seeds = list(seeds)
    if not seeds:
        raise ValueError("at least one candidate seed is needed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"candidate seeds must be integers, not {seed!r}")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"candidate seeds must be in 0..{MAX_SEED}, not {seed!r}")
    return seeds


def select_signs(keys, codebook, seeds, groups=None):
    """Return the :class:`Selection` of the candidate seed with the lowest rotated-domain error.

    ``keys`` ``(..., d)`` are scaled to unit norm first. With ``groups``, a sequence of index
    tensors into the flattened keys, one :class:`Selection` per group is returned instead (used
    for per-head calibration, where each group is one head's keys).
    """
    seeds = _check_seeds(seeds)
    d = keys.shape[-1]
    flat = keys.reshape(-1, d).to(torch.float64)
    norms = flat.norm(dim=-1)
    units = torch.where((norms > 0).unsqueeze(-1), flat / norms.clamp_min(1e-300).unsqueeze(-1), flat)
    masks = [torch.ones(len(flat), dtype=torch.bool)] if groups is None else [_group_mask(g, len(flat)) for g in groups]
    masks = [mask & (norms > 0) for mask in masks]
    for index, mask in enumerate(masks):
        if not mask.any():
            raise ValueError(f"key group {index} has no key of non-zero norm to calibrate on")

    errors = [{} for _ in masks]
    for seed in seeds:
        per_key = rotated_errors(units, codebook, signs_from_seed(d, seed))
        for group_errors, mask in zip(errors, masks):
            group_errors[seed] = per_key[mask].mean().item()

    selections = []
    for group_errors in errors:
        best = min(group_errors, key=lambda s: (group_errors[s], seeds.index(s)))
        selections.append(Selection(seed=best, error=group_errors[best], errors=group_errors))
    return selections[0] if groups is None else selections


def _group_mask(indices, size):
    mask = torch.zeros(size, dtype=torch.bool)
    mask[torch.as_tensor(indices, dtype=torch.long)] = True
    return mask


def head_groups(keys):
    """Return, for keys ``(batch, kv_heads, T, d)``, the flat row indices of each KV head."""
    batch, heads, tokens, _ = keys.shape
    index = torch.arange(batch * heads * tokens).reshape(batch, heads, tokens)
    return [index[:, h].reshape(-1) for h in range(heads)]


def load_sign_file(path, layers, d, kv_heads):
    """Read a sign file for a model of ``layers`` layers and return ``(signs, bits)``.

    ``signs`` has one entry per layer: a ``(d,)`` tensor, or ``(kv_heads, 1, d)`` when the layer
    entry has a ``"heads"`` list. A file with a single ``"signs"`` vector applies it to every layer.
    ``bits`` is the file's ``"bits"`` field, or None when it has none.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read sign file {str(path)!r}: {exc}") from exc
    bits = data.get("bits")
    if "layers" not in data:
        vector = torch.tensor(load_signs(path, d=d), dtype=torch.float64)
        return [vector] * layers, bits

    entries = {int(entry["layer"]): entry for entry in data["layers"]}
    signs = []
    for layer in range(layers):
        vector = load_signs(path, d=d, layer=layer)
        heads = entries[layer].get("heads")
        if heads is None:
            signs.append(torch.tensor(vector, dtype=torch.float64))
            continue
        if len(heads) != kv_heads:
            raise ValueError(f"layer {layer} of sign file {str(path)!r} has {len(heads)} head vectors; "
                             f"the model has {kv_heads} KV heads")
        rows = [check_signs(h, d) for h in heads]
        signs.append(torch.tensor(rows, dtype=torch.float64).unsqueeze(1))
    return signs, bits


def calibrate_layers(layer_keys, codebook, candidates, per_head=False, bar=None):
    """Calibrate every layer, given layer L's keys ``(batch, kv_heads, T, d)`` in ``layer_keys[L]``.

    Returns the list of layer entries of the sign file.
    """
    # Seed 1 is always a candidate, so every entry can report the default's error beside the winner's.
    seeds = list(range(1, candidates + 1))
    entries = []
    for layer, keys in enumerate(layer_keys):
        d = keys.shape[-1]
        whole = select_signs(keys, codebook, seeds)
        entry = {
            "layer": layer,
            "seed": whole.seed,
            "mse": whole.error,
            "default_mse": whole.errors[1],
            "signs": signs_from_seed(d, whole.seed),
        }
        if per_head:
            heads = select_signs(keys, codebook, seeds, groups=head_groups(keys))
            entry["head_seeds"] = [h.seed for h in heads]
            entry["head_mse"] = [h.error for h in heads]
            entry["heads"] = [signs_from_seed(d, h.seed) for h in heads]
        entries.append(entry)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"layer {layer}: seed {whole.seed}, mse {whole.error:.5f} "
                                f"(seed 1: {entry['default_mse']:.5f})")
    return entries


def add_arguments(parser):
    parser.add_argument("--bits", type=int, required=True, help="codebook bits per coordinate (1..4)")
    parser.add_argument("--candidates", type=int_option("--candidates", 1), default=DEFAULT_CANDIDATES,
                        help=f"candidate sign vectors, seeds 1..N (default {DEFAULT_CANDIDATES})")
    parser.add_argument("--samples", type=int_option("--samples", 1), default=DEFAULT_SAMPLES,
                        help=f"calibration sequences (default {DEFAULT_SAMPLES})")
    parser.add_argument("--length", type=int_option("--length", 1), default=DEFAULT_LENGTH,
                        help=f"tokens per calibration sequence (default {DEFAULT_LENGTH})")
    parser.add_argument("--per-head", action="store_true",
                        help="also choose one sign vector per KV head (stored as 'heads' in each layer entry)")
    parser.add_argument("--distribution", choices=DISTRIBUTIONS, default="gaussian",
                        help="distribution the codebook is fitted to (default gaussian)")
    parser.add_argument("--out", required=True, help="output sign file (JSON)")
    add_common_arguments(parser)


def run(args):
    return run_reporting_errors(_run, args)


def _run(args):
    check_bits(args.bits)
    start = time.monotonic()
    loaded = load(args)
    codebook = solve_codebook(loaded.head_dim, args.bits, args.distribution)
    sequences = corpus_sequences(loaded.tokenizer, args.samples, args.length, args.corpus, "calibration")

    # One sequence per forward pass keeps the peak memory of the capture small.
    bar = progress(args.samples, "capturing keys", enabled=not args.no_progress)
    captured = []
    for sequence in sequences:
        captured.append([layer.keys for layer in capture_kv(loaded, sequence.unsqueeze(0), kinds=("keys",))])
        bar.update(1)
    bar.close()
    layer_keys = [torch.cat([sample[layer] for sample in captured]) for layer in range(loaded.layers)]

    bar = progress(loaded.layers, f"calibrating ({args.candidates} candidates)", enabled=not args.no_progress)
    entries = calibrate_layers(layer_keys, codebook, args.candidates, args.per_head, bar)
    bar.close()

    result = {
        "d": loaded.head_dim,
        "bits": args.bits,
        "distribution": args.distribution,
        "candidates": args.candidates,
        "samples": args.samples,
        "length": args.length,
        "corpus": str(args.corpus),
        "part": "calibration",
        "model": loaded.path.name,
        "layers": entries,
    }
    Path(args.out).write_text(json.dumps(result) + "\n")
    improved = sum(entry["seed"] != 1 for entry in entries)
    print(f"wrote {args.out}: {loaded.layers} layers, {improved} of them with a seed other than 1, "
          f"{time.monotonic() - start:.0f} s", file=sys.stderr)
    for entry in entries:
        print(f"layer {entry['layer']:2d}: seed {entry['seed']:4d}  mse {entry['mse']:.5f}  "
              f"seed-1 mse {entry['default_mse']:.5f}")
    return 0
