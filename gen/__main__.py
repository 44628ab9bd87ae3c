"""Command line of the generator: ``python -m gen --d 128 --bits 4``."""

import argparse
import logging
import shlex
import sys

from golden.params import DISTRIBUTIONS, INPUT_FORMATS, MAX_BITS, MAX_CONTEXT, MIN_BITS, MIN_CONTEXT
from golden.signs import load_signs, signs_from_seed, MAX_SEED
from hdl.config import MacroConfig

from .generate import generate


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m gen",
        description="Generate the Verilog and JSON manifest of one AXELRAM macro.")
    parser.add_argument("--d", type=int, required=True,
                        help="head dimension: 16, 32, 64, 128 or 256")
    parser.add_argument("--bits", type=int, required=True,
                        help=f"codebook bits per coordinate, {MIN_BITS}..{MAX_BITS}")
    parser.add_argument("--context", type=int, default=4096,
                        help=f"stored keys (slots), {MIN_CONTEXT}..{MAX_CONTEXT} (default 4096)")
    parser.add_argument("--signs", default="1",
                        help="sign vector: a seed (0..2**64-1), a JSON sign file, or 'runtime' "
                             "for a writable sign register (default: seed 1)")
    parser.add_argument("--layer", type=int, default=None,
                        help="layer to take from a per-layer sign file")
    parser.add_argument("--distribution", choices=DISTRIBUTIONS, default="gaussian",
                        help="coordinate distribution the codebook is fitted to")
    parser.add_argument("--input", choices=INPUT_FORMATS, default="fp16", dest="input_format",
                        help="format of key and query elements")
    parser.add_argument("--beat-elems", type=int, default=None,
                        help="vector elements per stream beat (power of two, default d)")
    parser.add_argument("--transform-lanes", type=int, default=None,
                        help="butterflies per cycle in the Hadamard engine (default d/2)")
    parser.add_argument("--write-lanes", type=int, default=1,
                        help="coordinates per cycle in the norm and quantizer (default 1)")
    parser.add_argument("--table-lanes", type=int, default=8,
                        help="coordinates per cycle when building a query's table (default 8)")
    parser.add_argument("--read-lanes", type=int, default=None,
                        help="coordinates per cycle in the score unit (default d: one key "
                             "per clock)")
    parser.add_argument("--out", default="build", help="output folder (default build)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return parser


def _signs(args):
    """Return ``(signs, description, runtime)`` for the --signs option."""
    if args.signs == "runtime":
        return None, "runtime", True
    try:
        seed = int(args.signs, 0)
    except ValueError:
        signs = load_signs(args.signs, d=args.d, layer=args.layer)
        where = f" layer {args.layer}" if args.layer is not None else ""
        return tuple(signs), f"file {args.signs}{where}", False
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"sign seed must be in 0..{MAX_SEED}, not {seed}")
    return tuple(signs_from_seed(args.d, seed)), f"seed {seed}", False


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        signs, source, runtime = _signs(args)
        config = MacroConfig(
            d=args.d, bits=args.bits, context=args.context, input_format=args.input_format,
            distribution=args.distribution, signs=signs, sign_source=source,
            runtime_signs=runtime, beat_elems=args.beat_elems,
            transform_lanes=args.transform_lanes, write_lanes=args.write_lanes,
            table_lanes=args.table_lanes, read_lanes=args.read_lanes)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    command = "python -m gen " + shlex.join(sys.argv[1:] if argv is None else argv)
    verilog_path, manifest_path = generate(config, args.out, command=command)
    if not args.quiet:
        print(verilog_path)
        print(manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
