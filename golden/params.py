"""Validation of the design parameters shared by the golden model, the RTL and the generator.

Every entry point calls these checks, so an invalid value fails with the same message whether it
comes from Python, ``python -m golden`` or ``python -m gen``.
"""

import argparse

SUPPORTED_D = (16, 32, 64, 128, 256)
"""Head dimensions the design supports (powers of two)."""

MIN_BITS, MAX_BITS = 1, 4
"""Range of codebook bits per coordinate."""

MIN_CONTEXT, MAX_CONTEXT = 1, 65536
"""Range of stored keys (slots) per macro."""

DISTRIBUTIONS = ("gaussian", "beta")
"""Coordinate distributions the codebook can be fitted to."""

INPUT_FORMATS = ("fp16", "bf16")
"""Input vector formats."""


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")


def check_d(d):
    """Raise unless ``d`` is a supported head dimension."""
    _check_int("d", d)
    if d not in SUPPORTED_D:
        allowed = ", ".join(str(v) for v in SUPPORTED_D)
        raise ValueError(f"d must be a power of two in {{{allowed}}}, not {d!r}")
    return d


def check_bits(bits):
    """Raise unless ``bits`` is in ``MIN_BITS..MAX_BITS``."""
    _check_int("bits", bits)
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in {MIN_BITS}..{MAX_BITS}, not {bits!r}")
    return bits


def check_context(context):
    """Raise unless ``context`` (the number of slots T) is in ``MIN_CONTEXT..MAX_CONTEXT``."""
    _check_int("context", context)
    if not MIN_CONTEXT <= context <= MAX_CONTEXT:
        raise ValueError(f"context must be in {MIN_CONTEXT}..{MAX_CONTEXT}, not {context!r}")
    return context


def check_distribution(distribution):
    """Raise unless ``distribution`` names a supported codebook distribution."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, not {distribution!r}")
    return distribution


def check_input_format(fmt):
    """Raise unless ``fmt`` names a supported input format."""
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"input format must be one of {', '.join(INPUT_FORMATS)}, not {fmt!r}")
    return fmt


def int_option(name, low, high=None):
    """Return an ``argparse`` type for an integer option ``name`` in ``low..high``.

    ``high=None`` leaves the value unbounded above. Bad text or values fail with a message that
    names the option, the allowed range and the value given.
    """
    allowed = f"in {low}..{high}" if high is not None else f"at least {low}"

    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, not {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {value}")
        return value
    parse.__name__ = name
    return parse
