"""Throughput of the bit-exact model: ``python -m golden.benchmark [--d 128 --bits 4]``.

Encodes ``--keys`` random FP16 keys, builds tables for ``--queries`` queries and times the
scoring of every pair, repeated ``--repeats`` times; prints key-query pairs per second.
"""

import argparse
import platform
import time

import torch

from . import bitexact
from .numerics import datapath
from .signs import signs_from_seed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m golden.benchmark", description=__doc__)
    parser.add_argument("--d", type=int, default=128, help="head dimension (default 128)")
    parser.add_argument("--bits", type=int, default=4, help="codebook bits (default 4)")
    parser.add_argument("--keys", type=int, default=4096, help="stored keys (default 4096)")
    parser.add_argument("--queries", type=int, default=256, help="queries per batch (default 256)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (default 5)")
    args = parser.parse_args(argv)
    dp = datapath(args.d, args.bits)
    signs = signs_from_seed(args.d, 1)
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(args.keys, args.d, generator=gen).half()
    queries = torch.randn(args.queries, args.d, generator=gen).half()

    started = time.perf_counter()
    rows = bitexact.encode_keys(keys, dp, signs)
    encode_s = time.perf_counter() - started
    table = bitexact.build_table(queries, dp, signs)
    bitexact.score_bits(table, rows, dp)            # warm-up

    started = time.perf_counter()
    for _ in range(args.repeats):
        bitexact.score_bits(table, rows, dp)
    score_s = (time.perf_counter() - started) / args.repeats
    pairs = args.keys * args.queries
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"d={args.d} bits={args.bits}: encoded {args.keys} keys in {encode_s:.3f} s "
          f"({args.keys / encode_s:,.0f} keys/s)")
    print(f"scored {pairs:,} key-query pairs in {score_s:.3f} s: {pairs / score_s:,.0f} pairs/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
