"""Throughput of the bit-exact model: ``python -m golden.benchmark [--d 128 --bits 4]``.

Encodes ``--keys`` random FP16 keys, builds the tables of ``--queries`` queries and scores
every pair, repeated ``--repeats`` times. Prints key-query pairs per second for the scoring
alone and for table build plus scoring (a query's table is built once for all its keys).
"""

import argparse
import platform
import time

import torch

from . import bitexact
from .numerics import datapath
from .params import check_bits, check_d, int_option
from .signs import signs_from_seed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m golden.benchmark", description=__doc__)
    parser.add_argument("--d", type=int, default=128, help="head dimension (default 128)")
    parser.add_argument("--bits", type=int, default=4, help="codebook bits (default 4)")
    parser.add_argument("--keys", type=int_option("--keys", 1, 1 << 20), default=4096,
                        help="stored keys, 1..1048576 (default 4096)")
    parser.add_argument("--queries", type=int_option("--queries", 1, 1 << 16), default=256,
                        help="queries per batch, 1..65536 (default 256)")
    parser.add_argument("--repeats", type=int_option("--repeats", 1, 1000), default=5,
                        help="timed repetitions, 1..1000 (default 5)")
    args = parser.parse_args(argv)
    try:
        check_d(args.d)
        check_bits(args.bits)
    except ValueError as exc:
        parser.error(str(exc))
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

    score_s = table_s = 0.0
    for _ in range(args.repeats):
        started = time.perf_counter()
        table = bitexact.build_table(queries, dp, signs)
        built = time.perf_counter()
        bitexact.score_bits(table, rows, dp)
        table_s += built - started
        score_s += time.perf_counter() - built
    score_s /= args.repeats
    table_s /= args.repeats
    pairs = args.keys * args.queries
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"d={args.d} bits={args.bits}: encoded {args.keys} keys in {encode_s:.3f} s "
          f"({args.keys / encode_s:,.0f} keys/s)")
    print(f"built {args.queries} query tables in {table_s:.3f} s")
    print(f"scored {pairs:,} key-query pairs in {score_s:.3f} s: {pairs / score_s:,.0f} pairs/s")
    total_s = table_s + score_s
    print(f"tables and scores: {total_s:.3f} s, {pairs / total_s:,.0f} pairs/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
