"""Command line of the golden model: ``python -m golden COMMAND ...``."""

import argparse
import importlib
import sys

# Each command lives in its own module, which provides add_arguments(parser) and run(args).
COMMANDS = {
    "codebook": ("golden.codebook_cli", "print the Lloyd-Max codebook for (d, bits) as JSON"),
    "norms": ("golden.llm.norms", "report per-layer key norms of the packaged language model"),
    "calibrate": ("golden.llm.calibrate", "select sign vectors per layer on captured keys"),
    "ppl": ("golden.llm.ppl", "measure perplexity with a quantized KV cache"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m golden", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            sub.set_defaults(_missing=exc)
            continue
        module.add_arguments(sub)
        modules[name] = module
    args = parser.parse_args(argv)
    if args.command not in modules:
        parser.error(f"command {args.command!r} is unavailable: {args._missing}")
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
