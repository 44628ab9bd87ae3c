"""The fixed-point contract shared by the bit-exact model and the RTL.

Every width, constant and rounding rule of the datapath is derived here, once, from
``(d, bits, input format, codebook)``. ``golden.bitexact`` implements the arithmetic with these
numbers and ``hdl`` builds the circuit from the same :class:`Datapath`. ``docs/numerics.md``
explains the choices and the error bound.
"""

import math
from dataclasses import dataclass
from functools import cached_property

from .codebook import solve_codebook
from .params import check_bits, check_d, check_distribution, check_input_format


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-style binary input format."""
    name: str
    exp_bits: int
    man_bits: int
    bias: int

    @property
    def width(self):
        return 1 + self.exp_bits + self.man_bits

    @property
    def exp_max(self):
        """Exponent field of infinities and NaNs."""
        return (1 << self.exp_bits) - 1


FORMATS = {
    "fp16": FloatFormat("fp16", exp_bits=5, man_bits=10, bias=15),
    "bf16": FloatFormat("bf16", exp_bits=8, man_bits=7, bias=127),
}

MAG_BITS = 13
"""Magnitude bits of an aligned input element (block floating point); the signed width is 14."""

BOUNDARY_FRAC_BITS = 16
"""Fractional bits of the quantizer's boundary constants ``round(sqrt(d) * boundary * 2**16)``."""

CENTROID_FRAC_BITS = 12
"""Fractional bits of the table's centroid constants ``round(sqrt(d) * centroid * 2**12)``."""

FLOAT32_NAN = 0x7FC00000
"""The quiet NaN every score with a non-finite input becomes."""

for _fmt in FORMATS.values():
    if _fmt.width != 16:
        raise AssertionError(f"input format {_fmt.name} is {_fmt.width} bits wide, expected 16")
    if _fmt.man_bits + 1 > MAG_BITS:
        raise AssertionError(f"input format {_fmt.name} has more significand bits than MAG_BITS")


def bits_for_unsigned(value):
    """Return the bits an unsigned register needs to hold ``0..value``."""
    return max(1, int(value).bit_length())


def bits_for_signed(low, high):
    """Return the bits a two's complement register needs to hold ``low..high``."""
    return max(bits_for_unsigned(max(high, 0)), bits_for_unsigned(max(-low - 1, 0))) + 1


@dataclass(frozen=True)
class Datapath:
    """Widths and constants of one macro configuration.

    Build it with :func:`datapath`; all widths are in bits, signed ones in two's complement.
    """
    d: int
    bits: int
    input_format: str
    distribution: str

    @cached_property
    def fmt(self):
        return FORMATS[self.input_format]

    @cached_property
    def codebook(self):
        return solve_codebook(self.d, self.bits, self.distribution)

    @property
    def log2_d(self):
        return self.d.bit_length() - 1

    @property
    def guard_bits(self):
        """Left shift from the input significand to the aligned magnitude."""
        return MAG_BITS - (self.fmt.man_bits + 1)

    @property
    def mag_bits(self):
        return MAG_BITS

    @property
    def x_width(self):
        """Signed width of an aligned input element; ``|a| <= 2**13 - 1``."""
        return MAG_BITS + 1

    @property
    def y_width(self):
        """Signed width of a transformed coordinate; ``|y| <= d * (2**13 - 1)``."""
        return self.x_width + self.log2_d

    @property
    def square_sum_width(self):
        """Unsigned width of ``sum(a_i**2) <= d * (2**13 - 1)**2``."""
        return bits_for_unsigned(self.d * ((1 << MAG_BITS) - 1) ** 2)

    @property
    def norm_width(self):
        """Unsigned width of the integer norm ``isqrt(sum(a_i**2))``."""
        return bits_for_unsigned(math.isqrt(self.d * ((1 << MAG_BITS) - 1) ** 2))

    @property
    def exp_width(self):
        """Width of a stored block exponent (the input format's exponent field)."""
        return self.fmt.exp_bits

    @property
    def mag_code_bits(self):
        """Bits of the magnitude part of a code (``bits - 1``; 0 for one-bit codebooks)."""
        return self.bits - 1

    @property
    def levels(self):
        """Distinct centroid magnitudes, ``2**(bits-1)``."""
        return 1 << (self.bits - 1)

    @cached_property
    def boundary_constants(self):
        """``Gamma_j = round(sqrt(d) * b_j * 2**16)`` for the positive boundaries, ascending."""
        scale = math.sqrt(self.d) * (1 << BOUNDARY_FRAC_BITS)
        return tuple(int(round(b * scale)) for b in self.codebook.positive_boundaries)

    @cached_property
    def centroid_constants(self):
        """``K_m = round(sqrt(d) * c_m * 2**12)`` for the positive centroids, ascending."""
        scale = math.sqrt(self.d) * (1 << CENTROID_FRAC_BITS)
        return tuple(int(round(c * scale)) for c in self.codebook.positive_centroids)

    @property
    def y_max(self):
        return self.d * ((1 << MAG_BITS) - 1)

    @cached_property
    def table_width(self):
        """Signed width of a table entry ``(y * K_m + 2**11) >> 12`` and of its negation."""
        k_max = max(self.centroid_constants)
        half = 1 << (CENTROID_FRAC_BITS - 1)
        high = (self.y_max * k_max + half) >> CENTROID_FRAC_BITS
        low = (-self.y_max * k_max + half) >> CENTROID_FRAC_BITS
        return bits_for_signed(min(low, -high), max(high, -low))

    @property
    def sum_width(self):
        """Signed width of the per-key sum of ``d`` table entries."""
        return self.table_width + self.log2_d

    @property
    def product_width(self):
        """Signed width of ``norm * sum``."""
        return self.norm_width + self.sum_width

    @property
    def code_width(self):
        """Bits of one stored row's index field, ``d * bits``."""
        return self.d * self.bits

    @property
    def row_width(self):
        """Bits of one stored row: indices, norm, block exponent and the NaN flag."""
        return self.code_width + self.norm_width + self.exp_width + 1

    @property
    def score_exp_offset(self):
        """Constant part of the score's exponent: ``score = Z * 2**(E_q + E_k - offset)``."""
        return 2 * (self.fmt.bias + MAG_BITS - 1) + self.log2_d

    def row_fields(self):
        """Return ``{name: (lsb, width)}`` of a stored row."""
        lsb = 0
        fields = {}
        for name, width in (("codes", self.code_width), ("norm", self.norm_width),
                            ("exp", self.exp_width), ("nan", 1)):
            fields[name] = (lsb, width)
            lsb += width
        return fields

    def to_dict(self):
        """Return the formats and constants as a JSON-ready dictionary (for the manifest)."""
        return {
            "input_format": {"name": self.fmt.name, "exp_bits": self.fmt.exp_bits,
                             "man_bits": self.fmt.man_bits, "bias": self.fmt.bias},
            "aligned_element": {"signed_width": self.x_width, "guard_bits": self.guard_bits},
            "transformed_width": self.y_width,
            "square_sum_width": self.square_sum_width,
            "norm_width": self.norm_width,
            "boundary_frac_bits": BOUNDARY_FRAC_BITS,
            "boundary_constants": list(self.boundary_constants),
            "centroid_frac_bits": CENTROID_FRAC_BITS,
            "centroid_constants": list(self.centroid_constants),
            "table_width": self.table_width,
            "sum_width": self.sum_width,
            "product_width": self.product_width,
            "score_exp_offset": self.score_exp_offset,
            "row_fields": {k: {"lsb": v[0], "width": v[1]} for k, v in self.row_fields().items()},
            "score_format": "IEEE 754 binary32, round to nearest even; NaN is 0x7FC00000",
        }


def datapath(d, bits, input_format="fp16", distribution="gaussian"):
    """Return the validated :class:`Datapath` for one configuration."""
    check_d(d)
    check_bits(bits)
    check_input_format(input_format)
    check_distribution(distribution)
    return Datapath(d, bits, input_format, distribution)
