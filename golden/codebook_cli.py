"""``python -m golden codebook``: print the Lloyd-Max codebook for ``(d, bits)`` as JSON.

The output is one JSON object (indent 2) with the keys ``d``, ``bits``, ``distribution``,
``centroids``, ``boundaries`` and ``mse``, as :meth:`golden.codebook.Codebook.to_dict` returns them.
An invalid option value exits with status 2 and a message that names the value and the allowed range.
"""

import argparse
import json

from .codebook import solve_codebook
from .params import DISTRIBUTIONS, MAX_BITS, MIN_BITS, SUPPORTED_D, check_bits, check_d, check_distribution


def _argument_type(check, integer):
    """Make an argparse ``type`` that parses the text and validates it with ``check``.

    Validation errors become ArgumentTypeError, so argparse reports them and exits with status 2.
    Text that is not an integer goes to ``check`` unchanged, which rejects it by kind.
    """

    def parse(text):
        value = text
        if integer:
            try:
                value = int(text)
            except ValueError:
                pass
        try:
            return check(value)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_arguments(parser):
    """Add the options of the ``codebook`` command to ``parser``."""
    parser.add_argument(
        "--d",
        required=True,
        type=_argument_type(check_d, integer=True),
        help=f"head dimension, one of {', '.join(str(v) for v in SUPPORTED_D)}",
    )
    parser.add_argument(
        "--bits",
        required=True,
        type=_argument_type(check_bits, integer=True),
        help=f"bits per coordinate, {MIN_BITS}..{MAX_BITS}",
    )
    parser.add_argument(
        "--distribution",
        default="gaussian",
        type=_argument_type(check_distribution, integer=False),
        help=(
            f"coordinate distribution the codebook is fitted to, one of {', '.join(DISTRIBUTIONS)}: "
            "the normal approximation N(0, 1/d) or the exact marginal of the unit sphere "
            "(default: gaussian)"
        ),
    )


def run(args):
    """Print the codebook selected by ``args`` as JSON and return exit status 0."""
    codebook = solve_codebook(args.d, args.bits, args.distribution)
    print(json.dumps(codebook.to_dict(), indent=2))
    return 0
