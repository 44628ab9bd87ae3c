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
_INFINITY = 0x7F800000

# Leading zeros are counted in groups of this many bits, then the first non-zero group is chosen.
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

    1. absolute value of ``z``, and the exponents that the later stages compare against;
    2. leading-zero count within each group of 8 bits;
    3. leading-zero count of ``|z|``, from the first non-zero group;
    4. normalization shift amount, limited so that a tiny result keeps its subnormal bits, and
       the biased exponent;
    5. normalization shift by a multiple of 8, and the sticky bit of the bits that drop out;
    6. remaining shift of 0..7 bits, and the packed exponent and fraction fields;
    7. rounding, overflow to infinity, NaN and zero.

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
        Exponent, with ``n`` the smallest width that holds ``exp_min..exp_max``.
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

    latency = 7
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
        # One signed shape for the exponent registers, so that comparisons and subtractions
        # between them see operands of equal width. It holds exp + width+150, the biased
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

        # 1. Absolute value. When the leading one of |z| is bit width-1-lz, the value is
        #    1.f * 2**(exp + width-1-lz) and its biased exponent is exp_top - lz, where
        #    exp_top = exp + width+126. The result is normal when lz < exp_top. Otherwise it is
        #    subnormal, and a left shift of exp + width+150 puts the bit of weight 2**-149 at the
        #    bottom of the 24 kept bits.
        z = self.z
        exp = self.exp
        s1 = carry("abs",
                   mag=wire("mag", Mux(z[-1], -z, z), unsigned(width)),
                   sign=z[-1], nan=self.nan, tag=self.i_tag,
                   exp_top=wire("exp_top", exp + (width + _BIAS - 1), exponent_shape),
                   subnormal_shift=wire("subnormal_shift",
                                        exp + (width + _BIAS - 2 + _HEADROOM), exponent_shape))

        # 2. Leading zeros within each group of 8, counting groups from the most significant end.
        padded = Cat(Const(0, groups * _LZC_GROUP - width), s1["mag"])
        nonzero, local_lz = [], []
        for g in range(groups):
            chunk = padded[(groups - 1 - g) * _LZC_GROUP:(groups - g) * _LZC_GROUP]
            count = Const(0, 3)
            for bit in range(_LZC_GROUP):
                count = Mux(chunk[bit], Const(_LZC_GROUP - 1 - bit, 3), count)
            nonzero.append(register(f"lzc_nonzero_{g}", chunk.any()))
            local_lz.append(register(f"lzc_local_{g}", count))
        s2 = carry("lzc", mag=s1["mag"], sign=s1["sign"], nan=s1["nan"], tag=s1["tag"],
                   exp_top=s1["exp_top"], subnormal_shift=s1["subnormal_shift"])

        # 3. Leading zeros of |z|: 8 * (index of the first non-zero group) + its local count.
        lz = Const(0, lzc_width)
        for g in reversed(range(groups)):
            lz = Mux(nonzero[g], Cat(local_lz[g], Const(g, lzc_width - 3)), lz)
        s3 = carry("lz", lz=wire("lz", lz, exponent_shape), zero=~Cat(*nonzero).any(),
                   mag=s2["mag"], sign=s2["sign"], nan=s2["nan"], tag=s2["tag"],
                   exp_top=s2["exp_top"], subnormal_shift=s2["subnormal_shift"])

        # 4. Shift amount. A normal result shifts its leading one to the top of the frame; a
        #    subnormal one shifts less, so the bit of weight 2**-149 lands at the bottom of the
        #    kept 24 bits. A negative subnormal shift only occurs when |z| * 2**exp < 2**-150, and
        #    a shift of zero leaves the kept bits and the guard bit clear, which rounds to zero.
        #    The subnormal shift is below frame_width whenever it is chosen, so truncating it
        #    loses nothing.
        normal = s3["lz"] < s3["exp_top"]
        normal_shift = wire("normal_shift", s3["lz"] + _HEADROOM, unsigned(shift_width))
        subnormal_shift = Mux(s3["subnormal_shift"][-1], Const(0, shift_width),
                              s3["subnormal_shift"][:shift_width])
        # The bits of |z| that end below the guard bit are those with index i < width - shift.
        # For shift = 8c + f, all bits below width - 8c - 8 drop out whatever f is; their OR is
        # prepared here for every c, and the next 8 bits go to the fine stage.
        steps = (frame_width - 1) // 8 + 1
        low_sticky = Cat(*(s3["mag"][:max(0, width - 8 * step - 8)].any() for step in range(steps)))
        s4 = carry("amount",
                   shift=Mux(normal, normal_shift, subnormal_shift), normal=normal,
                   biased_exp=wire("biased_exp", s3["exp_top"] - s3["lz"], exponent_shape),
                   low_sticky=low_sticky,
                   zero=s3["zero"], mag=s3["mag"], sign=s3["sign"], nan=s3["nan"],
                   tag=s3["tag"])

        # 5. Shift by the multiple of 8. Only the 31 frame bits that can end up as guard or
        #    fraction bits after the remaining shift of 0..7 are kept; the top one would be the
        #    implicit bit. Zeros below the frame fill in where the frame is shorter.
        below = 32
        extended = Cat(Const(0, below), s4["mag"], Const(0, _HEADROOM))
        coarse = Signal(31, name="coarse")
        edge = Signal(8, name="edge")
        coarse_sticky = Signal(name="coarse_sticky")
        with m.Switch(s4["shift"][3:]):
            for step in range(steps):
                top = below + frame_width - 1 - 8 * step
                edge_low = below + width - 8 * step - 8
                # Shifts beyond the frame never occur; the last case covers them.
                with (m.Case(step) if step < steps - 1 else m.Default()):
                    m.d.comb += [
                        coarse.eq(extended[top - 31:top]),
                        edge.eq(extended[edge_low:edge_low + 8]),
                        coarse_sticky.eq(s4["low_sticky"][step]),
                    ]
        s5 = carry("coarse", top=coarse, fine=s4["shift"][:3], edge=edge,
                   coarse_sticky=coarse_sticky,
                   field=Mux(s4["normal"], s4["biased_exp"][:8], Const(0, 8)),
                   overflow=s4["biased_exp"] >= _EXP_FIELD_MAX,
                   zero=s4["zero"], sign=s4["sign"], nan=s4["nan"], tag=s4["tag"])

        # 6. Remaining shift of 0..7 bits, giving 23 fraction bits and the guard bit. A normal
        #    result's exponent field is the biased exponent and a subnormal's is 0, so the
        #    field goes straight above the fraction. The low 8 - f edge bits drop out.
        fine = Signal(_MAN_BITS + 1, name="fine")
        edge_sticky = Signal(name="edge_sticky")
        with m.Switch(s5["fine"]):
            for step in range(8):
                with m.Case(step):
                    m.d.comb += [
                        fine.eq(s5["top"][7 - step:31 - step]),
                        edge_sticky.eq(s5["edge"][:8 - step].any()),
                    ]
        s6 = carry("fine", packed=Cat(fine[1:], s5["field"]), guard=fine[0],
                   sticky=s5["coarse_sticky"] | edge_sticky,
                   overflow=s5["overflow"], zero=s5["zero"], sign=s5["sign"], nan=s5["nan"],
                   tag=s5["tag"])

        # 7. Round to nearest even. A carry out of the fraction increments the exponent field,
        #    which is the next binade or, from field 254, the infinity pattern.
        round_up = s6["guard"] & (s6["packed"][0] | s6["sticky"])
        rounded = wire("rounded", s6["packed"] + round_up, unsigned(31))
        bits = Mux(s6["nan"], Const(FLOAT32_NAN, 32),
                   Mux(s6["zero"], Const(0, 32),
                       Mux(s6["overflow"], Cat(Const(_INFINITY, 31), s6["sign"]),
                           Cat(rounded, s6["sign"]))))
        m.d.sync += [
            self.bits.eq(bits),
            self.o_tag.eq(s6["tag"]),
        ]

        return m
