"""Capture a small fixture of real keys and queries and report the hardware's accuracy on it.

``python -m golden.llm.fixture --out verif/fixtures/real_kv_d64.npz`` runs the packaged model
on the first ``--tokens`` tokens of the evaluation text and keeps, for each selected
``(layer, KV head)`` group, the post-RoPE keys of every token and the queries of the last
``--queries`` tokens of one query head that attends to that KV head. The arrays are FP16, as
an FP16 KV cache holds them. The file is small and reproducible from this command.

``--report`` prints the accuracy of the bit-exact scores (which the RTL reproduces bit for bit,
as the cocotb regression checks) against exact float64 dot products of the same FP16 vectors:
relative RMS error, correlation, and how often the top-1 and top-8 keys agree.
"""

import argparse
import json
import sys

import numpy as np
import torch

DEFAULT_GROUPS = ((0, 0), (15, 1), (29, 2))
DEFAULT_TOKENS = 128
DEFAULT_QUERIES = 8


def _parse_groups(text):
    groups = []
    for part in text.split(","):
        layer, _, head = part.partition(":")
        try:
            groups.append((int(layer), int(head)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"groups must be LAYER:KV_HEAD pairs separated by commas, not {text!r}") from None
    return tuple(groups)


def capture_fixture(groups, tokens, queries):
    """Return ``(keys, queries, meta)``: FP16 arrays ``(groups * tokens, d)`` and
    ``(groups * queries, d)`` and a description of where each group came from."""
    from .attention import capture_kv
    from .model import corpus_tokens, load_model

    loaded = load_model()
    for layer, head in groups:
        if not 0 <= layer < loaded.layers or not 0 <= head < loaded.kv_heads:
            raise ValueError(f"group {layer}:{head} is outside layers 0..{loaded.layers - 1} "
                             f"and KV heads 0..{loaded.kv_heads - 1}")
    if not 1 <= queries <= tokens:
        raise ValueError(f"queries must be in 1..{tokens}, not {queries}")
    ids = corpus_tokens(loaded.tokenizer, tokens)
    layers = capture_kv(loaded, ids, kinds=("keys", "queries"))
    per_kv = loaded.heads // loaded.kv_heads
    key_rows, query_rows, meta = [], [], []
    for layer, head in groups:
        captured = layers[layer]
        query_head = head * per_kv
        key_rows.append(captured.keys[0, head].to(torch.float16))
        query_rows.append(captured.queries[0, query_head, -queries:].to(torch.float16))
        meta.append({"layer": layer, "kv_head": head, "query_head": query_head,
                     "keys": tokens, "queries": queries})
    return (torch.cat(key_rows).numpy(), torch.cat(query_rows).numpy(),
            {"groups": meta, "tokens": tokens, "corpus_part": "evaluation"})


def accuracy(keys, queries, meta, bits, seed=1):
    """Return accuracy figures of the bit-exact scores per group and overall."""
    from golden import bitexact
    from golden.numerics import datapath
    from golden.signs import signs_from_seed

    d = keys.shape[1]
    dp = datapath(d, bits)
    signs = signs_from_seed(d, seed)
    results = []
    k_start = q_start = 0
    for group in meta["groups"]:
        k = torch.from_numpy(keys[k_start:k_start + group["keys"]])
        q = torch.from_numpy(queries[q_start:q_start + group["queries"]])
        k_start += group["keys"]
        q_start += group["queries"]
        hardware = bitexact.score_floats(bitexact.build_table(q, dp, signs),
                                         bitexact.encode_keys(k, dp, signs), dp).double()
        exact = q.double() @ k.double().T
        error = ((hardware - exact).pow(2).mean() / exact.pow(2).mean()).sqrt().item()
        corr = torch.corrcoef(torch.stack([hardware.flatten(), exact.flatten()]))[0, 1].item()
        top1 = (hardware.argmax(-1) == exact.argmax(-1)).double().mean().item()
        top8_hw = hardware.topk(8, dim=-1).indices
        top8_ex = exact.topk(8, dim=-1).indices
        overlap = [len(set(a.tolist()) & set(b.tolist())) / 8 for a, b in zip(top8_hw, top8_ex)]
        results.append({**group, "relative_rms_error": error, "correlation": corr,
                        "top1_agreement": top1, "top8_overlap": sum(overlap) / len(overlap)})
    return results


def format_report(results, bits):
    lines = ["| layer | KV head | bits | relative RMS error | correlation | top-1 agreement | "
             "top-8 overlap |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['layer']} | {r['kv_head']} | {bits} | {r['relative_rms_error']:.4f} | "
                     f"{r['correlation']:.4f} | {r['top1_agreement']:.3f} | "
                     f"{r['top8_overlap']:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m golden.llm.fixture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="verif/fixtures/real_kv_d64.npz",
                        help="fixture file to write or read (default %(default)s)")
    parser.add_argument("--groups", type=_parse_groups, default=DEFAULT_GROUPS,
                        help="LAYER:KV_HEAD pairs, comma-separated (default 0:0,15:1,29:2)")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS,
                        help="tokens (keys per group, default %(default)s)")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES,
                        help="queries per group, from the last tokens (default %(default)s)")
    parser.add_argument("--report", action="store_true",
                        help="read the fixture and print the accuracy of the bit-exact scores")
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4],
                        help="bit widths for --report (default 2 3 4)")
    args = parser.parse_args(argv)
    if args.report:
        with np.load(args.out) as data:
            keys, queries = data["keys"], data["queries"]
            meta = json.loads(str(data["meta"]))
        for bits in args.bits:
            print(format_report(accuracy(keys, queries, meta, bits), bits))
        return 0
    keys, queries, meta = capture_fixture(args.groups, args.tokens, args.queries)
    np.savez_compressed(args.out, keys=keys, queries=queries, meta=json.dumps(meta))
    print(f"wrote {args.out}: {keys.shape[0]} keys and {queries.shape[0]} queries of "
          f"dimension {keys.shape[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
