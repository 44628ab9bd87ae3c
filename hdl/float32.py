"""Conversion of a scaled integer ``z * 2**exp`` to an IEEE 754 binary32 pattern."""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.numerics import FLOAT32_NAN, bits_for_signed, bits_for_unsigned

__all__ = ["ToBinary32"]

MIN_Z_WIDTH, MAX_Z_WIDTH = 2, 53
"""Range of ``z_width``, because ``golden.bitexact.binary32_bits`` is exact for ``|z| < 2**53``."""

MIN_EXP, MAX_EXP = -900, 900
"""Range of the exponent bounds, the domain of ``golden.bitexact.binary32_bits``."""

_BIAS = 127
_MAN_BITS = 23
_EXP_FIELD_MAX = 255
_FRACTION_MASK = (1 << _MAN_BITS) - 1

# Leading and trailing zeros are counted in groups of this many bits, then combined from the
# first and the last non-zero group.
_LZC_GROUP = 8

# The normalization frame is z_width + _HEADROOM bits wide with |z| in its low bits. A normal
# result is shifted left by lz + _HEADROOM, which puts its leading one at the top. The top
# _HEADROOM bits are then the 24 significand bits and the guard bit, and the bits below them
# only count for the sticky bit.
_HEADROOM = _MAN_BITS + 2


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, not {value!r}")


class ToBinary32(wiring.Component):
    """Round ``z * 2**exp`` to the nearest IEEE 754 binary32 value, ties to even.

    The result is bit-exact with :func:`golden.bitexact.binary32_bits`: magnitudes that round
    to ``2**128`` or more become infinities, results below ``2**-126`` are subnormal or a zero
    with the sign of ``z``, and ``z == 0`` gives +0. When ``nan`` is set the result is
    ``0x7FC00000``. The tag travels alongside unchanged.

    The unit is a fixed-latency pipeline without back-pressure: ``o_valid``, ``bits`` and
    ``o_tag`` show the result of the input that ``i_valid`` marked ``latency`` cycles earlier.
    It takes one input per cycle. Every stage is registered:

    1. ones' complement of a negative ``z``, and the exponents that the later stages compare
       against;
    2. absolute value of ``z``;
    3. leading- and trailing-zero counts within each group of 8 bits;
    4. leading- and trailing-zero counts of ``|z|``, from the first and last non-zero group;
    5. biased exponent, whether the result is normal, and the normalization shift for either
       case, limited so that a tiny result keeps its subnormal bits;
    6. normalization shift amount, the sticky bit of the bits that drop out, exponent field and
       overflow;
    7. normalization shift by a multiple of 8, and the fields of a NaN, zero or infinity in
       place of the shifted ones;
    8. remaining shift of 0..7 bits, the rounding decision, and the packed exponent and
       fraction fields;
    9. rounding increment.

    Parameters
    ----------
    z_width : :class:`int`
        Width of the two's complement ``z``, 2..53.
    exp_min, exp_max : :class:`int`
        Range of ``exp``, each in -900..900 and ``exp_min <= exp_max``. Results for an ``exp``
        outside this range are undefined.
    tag_shape : :ref:`shape-like <lang-shapelike>`
        Shape of ``i_tag`` and ``o_tag``.

    Members
    -------
    i_valid : :py:`In(1)`
        Whether ``z``, ``exp``, ``nan`` and ``i_tag`` hold an input this cycle.
    z : :py:`In(signed(z_width))`
        Significand.
    exp : :py:`In(signed(n))`
        Exponent, with ``n`` the smallest width that fits ``exp_min..exp_max``.
    nan : :py:`In(1)`
        Forces the result to ``0x7FC00000``.
    i_tag : :py:`In(tag_shape)`
        Tag of the input, such as the slot number and a last flag.
    o_valid : :py:`Out(1)`
        Whether ``bits`` and ``o_tag`` hold a result this cycle.
    bits : :py:`Out(unsigned(32))`
        The binary32 pattern.
    o_tag : :py:`Out(tag_shape)`
        ``i_tag`` of the input this result belongs to.
    """

    latency = 9
    """Cycles from an input marked by ``i_valid`` to its result marked by ``o_valid``."""

    def __init__(self, z_width, exp_min, exp_max, tag_shape=unsigned(1)):
        _check_int("z_width", z_width, MIN_Z_WIDTH, MAX_Z_WIDTH)
        _check_int("exp_min", exp_min, MIN_EXP, MAX_EXP)
        _check_int("exp_max", exp_max, MIN_EXP, MAX_EXP)
        if exp_min > exp_max:
            raise ValueError(f"exp_min must not exceed exp_max, not {exp_min!r} > {exp_max!r}")
        try:
            Shape.cast(tag_shape)
        except TypeError as error:
            raise TypeError(f"tag_shape must be a shape-like object, not {tag_shape!r}") from error
        self._z_width = z_width
        self._exp_min = exp_min
        self._exp_max = exp_max
        self._tag_shape = tag_shape
        exp_shape = signed(bits_for_signed(exp_min, exp_max))
        super().__init__({
            "i_valid": In(1),
            "z": In(signed(z_width)),
            "exp": In(exp_shape),
            "nan": In(1),
            "i_tag": In(tag_shape),
            "o_valid": Out(1),
            "bits": Out(unsigned(32)),
            "o_tag": Out(tag_shape),
        })

    @property
    def z_width(self):
        return self._z_width

    @property
    def exp_range(self):
        """``(exp_min, exp_max)``."""
        return self._exp_min, self._exp_max

    def elaborate(self, platform):
        m = Module()
        width = self._z_width
        frame_width = width + _HEADROOM
        shift_width = bits_for_unsigned(frame_width - 1)
        groups = -(-width // _LZC_GROUP)
        lzc_width = bits_for_unsigned(groups * _LZC_GROUP)
        pad = groups * _LZC_GROUP - width
        # One signed shape for the exponent registers, so that comparisons and subtractions
        # between them see operands of equal width. It fits exp + width+150, the biased
        # exponent exp + 127 - lz and 0..255.
        exponent_shape = signed(bits_for_signed(min(self._exp_min + _BIAS, 0),
                                       max(self._exp_max + width + _BIAS - 2 + _HEADROOM,
                                           frame_width, _EXP_FIELD_MAX)))

        def register(name, value, shape=None):
            reg = Signal(shape if shape is not None else value.shape(), name=name, reset_less=True)
            m.d.sync += reg.eq(value)
            return reg

        def carry(prefix, **values):
            return {key: register(f"{prefix}_{key}", value) for key, value in values.items()}

        def wire(name, value, shape):
            sig = Signal(shape, name=name)
            m.d.comb += sig.eq(value)
            return sig

        valid = self.i_valid
        for k in range(self.latency):
            valid_next = Signal(name=f"valid_{k}")
            m.d.sync += valid_next.eq(valid)
            valid = valid_next
        m.d.comb += self.o_valid.eq(valid)

        # 1. Ones' complement of a negative z. Adding the sign bit in the next stage gives |z|.
        #    When the leading one of |z| is bit width-1-lz, the value is
        #    1.f * 2**(exp + width-1-lz) and its biased exponent is exp_top - lz, where
        #    exp_top = exp + width+126. The result is normal when lz < exp_top. Otherwise it is
        #    subnormal, and a left shift of exp + width+150 puts the bit of weight 2**-149 at the
        #    bottom of the 24 kept bits.
        z = self.z
        exp = self.exp
        sign = z[-1]
        s0 = carry("complement",
                   ones=(z ^ sign.replicate(width)).as_unsigned(),
                   sign=sign, nan=self.nan, tag=self.i_tag,
                   exp_top=wire("exp_top", exp + (width + _BIAS - 1), exponent_shape),
                   subnormal_shift=wire("subnormal_shift",
                                        exp + (width + _BIAS - 2 + _HEADROOM), exponent_shape))

        # 2. Absolute value. A subnormal shift below zero acts as zero (see step 5).
        clamped_shift = Mux(s0["subnormal_shift"][-1], Const(0, exponent_shape),
                            s0["subnormal_shift"])
        s1 = carry("abs",
                   mag=wire("mag", s0["ones"] + s0["sign"], unsigned(width)),
                   sign=s0["sign"], nan=s0["nan"], tag=s0["tag"],
                   exp_top=s0["exp_top"], subnormal_shift=clamped_shift)

        # 3. Leading and trailing zeros within each group of 8, counting groups from the most
        #    significant end. The groups cover |z| with zeros appended below it.
        padded = Cat(Const(0, pad), s1["mag"])
        nonzero, local_lz, local_tz, nonzero_above, nonzero_below = [], [], [], [], []
        for g in range(groups):
            chunk = padded[(groups - 1 - g) * _LZC_GROUP:(groups - g) * _LZC_GROUP]
            leading = Const(0, 3)
            for bit in range(_LZC_GROUP):
                leading = Mux(chunk[bit], Const(_LZC_GROUP - 1 - bit, 3), leading)
            trailing = Const(0, 3)
            for bit in reversed(range(_LZC_GROUP)):
                trailing = Mux(chunk[bit], Const(bit, 3), trailing)
            nonzero.append(register(f"lzc_nonzero_{g}", chunk.any()))
            local_lz.append(register(f"lzc_leading_{g}", leading))
            local_tz.append(register(f"lzc_trailing_{g}", trailing))
            low, high = (groups - 1 - g) * _LZC_GROUP, (groups - g) * _LZC_GROUP
            nonzero_above.append(register(f"lzc_nonzero_above_{g}", padded[high:].any()))
            nonzero_below.append(register(f"lzc_nonzero_below_{g}", padded[:low].any()))
        s2 = carry("lzc", mag=s1["mag"], sign=s1["sign"], nan=s1["nan"], tag=s1["tag"],
                   exp_top=s1["exp_top"], subnormal_shift=s1["subnormal_shift"])

        # 4. Leading zeros of |z|, 8 * (index of the first non-zero group) + its local count, and
        #    trailing zeros of the padded |z| from the last non-zero group.
        #    Whether any bit lies above or below each group was registered with the groups, so
        #    the first and last non-zero groups are found without a priority chain.
        lz = Const(0, lzc_width)
        tz = Const(0, lzc_width)
        for g in range(groups):
            first = nonzero[g] & ~nonzero_above[g]
            last = nonzero[g] & ~nonzero_below[g]
            lz = lz | (Cat(local_lz[g], Const(g, lzc_width - 3)) & first.replicate(lzc_width))
            tz = tz | (Cat(local_tz[g], Const(groups - 1 - g, lzc_width - 3))
                       & last.replicate(lzc_width))
        s3 = carry("lz", lz=wire("lz", lz, exponent_shape), tz=wire("tz", tz, exponent_shape),
                   zero=~Cat(*nonzero).any(),
                   mag=s2["mag"], sign=s2["sign"], nan=s2["nan"], tag=s2["tag"],
                   exp_top=s2["exp_top"], subnormal_shift=s2["subnormal_shift"])

        # 5. Exponent arithmetic. A normal result shifts its leading one to the top of the frame.
        #    A subnormal one shifts less, so that the bit of weight 2**-149 lands at the bottom
        #    of the kept 24 bits. A negative subnormal shift only occurs when
        #    |z| * 2**exp < 2**-150, and a shift of zero leaves the kept bits and the guard bit
        #    clear, which rounds to zero. The subnormal shift is below frame_width whenever it
        #    is chosen, so truncating it loses nothing.
        #
        #    The bits of |z| below index width - shift drop out below the guard bit and only
        #    count for the sticky bit. With tz counted in the padded |z|, one of them is set
        #    exactly when tz + shift < width + pad. So tz + lz and tz + subnormal shift are
        #    prepared here, and the constant part of the normal shift moves to the comparison.
        # lz < exp_top is the sign of a difference one bit wider than its operands, which is
        # the end of a carry chain with no comparison logic after it.
        s4 = carry("exponent",
                   normal=(s3["lz"] - s3["exp_top"])[-1],
                   biased_exp=wire("biased_exp", s3["exp_top"] - s3["lz"], exponent_shape),
                   normal_shift=wire("normal_shift", s3["lz"] + _HEADROOM, unsigned(shift_width)),
                   subnormal_shift=s3["subnormal_shift"][:shift_width],
                   normal_tz_shift=wire("normal_tz_shift", s3["tz"] + s3["lz"], exponent_shape),
                   subnormal_tz_shift=wire("subnormal_tz_shift", s3["tz"] + s3["subnormal_shift"],
                                           exponent_shape),
                   zero=s3["zero"], mag=s3["mag"], sign=s3["sign"], nan=s3["nan"],
                   tag=s3["tag"])

        # 6. Shift amount, sticky bit, exponent field and overflow. Both parts of the shift, the
        #    multiple of 8 and the rest, are decoded to one-hot, so that each shift is an AND-OR
        #    of its cases.
        steps = (frame_width - 1) // 8 + 1
        shift = wire("shift", Mux(s4["normal"], s4["normal_shift"], s4["subnormal_shift"]),
                     unsigned(shift_width))
        sticky = Mux(s4["normal"], s4["normal_tz_shift"] < width + pad - _HEADROOM,
                     s4["subnormal_tz_shift"] < width + pad)
        # Comparing with 0 is written as a reduction, because Amaranth writes x == 0 as a
        # logical NOT of a vector, which Verilator flags as a width mismatch.
        coarse_select = Cat(~shift[3:].any(), *(shift[3:] == step for step in range(1, steps)))
        fine_select = Cat(~shift[:3].any(), *(shift[:3] == step for step in range(1, 8)))
        s5 = carry("amount",
                   coarse_select=coarse_select, fine_select=fine_select, sticky=sticky,
                   field=Mux(s4["normal"], s4["biased_exp"][:8], Const(0, 8)),
                   overflow=s4["biased_exp"] >= _EXP_FIELD_MAX,
                   zero=s4["zero"], mag=s4["mag"], sign=s4["sign"], nan=s4["nan"],
                   tag=s4["tag"])

        # 7. Shift by the multiple of 8. Only the 31 frame bits that can end up as guard or
        #    fraction bits after the remaining shift of 0..7 are kept, because the top one would
        #    be the implicit bit. Zeros below the frame fill in where the frame is shorter.
        below = 32
        extended = Cat(Const(0, below), s5["mag"], Const(0, _HEADROOM))
        coarse = Const(0, 31)
        for step in range(steps):
            top = below + frame_width - 1 - 8 * step
            coarse = coarse | (extended[top - 31:top] & s5["coarse_select"][step].replicate(31))
        # A NaN, a zero or an infinity replaces the fraction bits, the exponent field and the
        # shift here, with the guard and sticky bits clear, so that the later stages need no
        # special case.
        special = s5["nan"] | s5["zero"] | s5["overflow"]
        special_top = Cat(Const(0, 8), Mux(s5["nan"], Const(FLOAT32_NAN & _FRACTION_MASK, 23),
                                                  Const(0, 23)))
        special_field = Mux(s5["zero"] & ~s5["nan"], Const(0, 8), Const(_EXP_FIELD_MAX, 8))
        s6 = carry("coarse",
                   top=Mux(special, special_top, coarse),
                   fine_select=Mux(special, Const(1, 8), s5["fine_select"]),
                   field=Mux(special, special_field, s5["field"]),
                   sticky=s5["sticky"] & ~special, sign=s5["sign"] & ~s5["nan"], tag=s5["tag"])

        # 8. Remaining shift of 0..7 bits, giving 23 fraction bits and the guard bit, and the
        #    rounding decision, to nearest with ties to even. A normal result's exponent field
        #    is the biased exponent and a subnormal's is 0, so the field goes straight above the
        #    fraction.
        fine = Const(0, _MAN_BITS + 1)
        for step in range(8):
            fine = fine | (s6["top"][7 - step:31 - step] & s6["fine_select"][step].replicate(24))
        fine = wire("fine", fine, unsigned(_MAN_BITS + 1))
        guard, lsb = fine[0], fine[1]
        s7 = carry("fine", packed=Cat(fine[1:], s6["field"]),
                   round_up=guard & (lsb | s6["sticky"]), sign=s6["sign"], tag=s6["tag"])

        # 9. Round. A carry out of the fraction increments the exponent field, which gives the
        #    next binade or, from field 254, the infinity pattern.
        rounded = wire("rounded", s7["packed"] + s7["round_up"], unsigned(31))
        m.d.sync += [
            self.bits.eq(Cat(rounded, s7["sign"])),
            self.o_tag.eq(s7["tag"]),
        ]

        return m
