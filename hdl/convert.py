"""Conversion of FP16/BF16 input vectors to block floating point."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.numerics import MAG_BITS, bits_for_unsigned

from .config import check_config
from .layouts import aligned_vector_layout, meta_layout, raw_vector_layout

__all__ = ["BlockConverter"]


def input_layout(config):
    """Payload of :attr:`BlockConverter.i`: the command metadata and ``d`` raw 16-bit elements."""
    return data.StructLayout({"meta": meta_layout(config), "vec": raw_vector_layout(config)})


def output_layout(config):
    """Payload of :attr:`BlockConverter.o`: the aligned vector, its block exponent and NaN flag."""
    return data.StructLayout({
        "meta": meta_layout(config),
        "a": aligned_vector_layout(config),
        "exp": unsigned(config.dp.exp_width),
        "nan": unsigned(1),
    })


class BlockConverter(wiring.Component):
    """Convert one FP16 or BF16 vector per transfer to block floating point.

    The result is bit-exact with :func:`golden.bitexact.to_block_fixed`. Each element's effective
    exponent is its exponent field, or 1 for zeros and subnormals. The block exponent ``exp`` is
    the maximum effective exponent of the vector, and element ``i`` becomes
    ``a[i] = +/-((significand << guard_bits) >> (exp - e_i))``, where a right shift of 13 or
    more gives 0. Infinities and NaNs count as zero with effective exponent 1 and set ``nan``.
    ``meta`` passes through unchanged.

    The ``d`` lanes work in parallel, so the converter accepts one vector per cycle. Its
    pipeline has these registered stages:

    * decode: sign, effective exponent and significand of every element;
    * ``ceil(log2(d) / max_levels_per_stage)`` stages of the maximum-exponent tree;
    * shift: ``exp - e_i`` for every element, reduced to 4 bits and a flag for 16 or more;
    * align: the right shift;
    * sign: two's complement of the negative elements.

    So ``latency = 4 + ceil(log2(d) / max_levels_per_stage)`` cycles pass from an input
    transfer to the output transfer of the same vector when the output is not stalled.

    All stages advance together, enabled by a register: a stalled output moves the last
    stage's vector into a skid register, and the stages then hold, bubbles included, until the
    skid register is taken. Nothing is lost or repeated under back-pressure, and the stages
    resume in the cycle after the skid register is taken. ``i.ready`` is a register output, so it does
    not depend combinationally on ``o.ready``, but ``o.payload`` passes through a multiplexer.

    Parameters
    ----------
    config : :class:`~hdl.config.MacroConfig`
        Macro configuration. ``d`` sets the lanes and ``input_format`` the element format.
    max_levels_per_stage : :class:`int`
        Two-input maximum levels of the exponent tree between two registers, at least 1.
        More levels save ``d * 17`` lane registers per tree stage left out, but lower Fmax:
        one level is a comparison and a multiplexer.

    Members
    -------
    i : :py:`In(stream.Signature(input_layout(config)))`
        Input vectors: ``meta`` and ``vec``, ``d`` raw 16-bit patterns.
    o : :py:`Out(stream.Signature(output_layout(config)))`
        Converted vectors: ``meta``, ``a`` (``d`` signed elements of ``dp.x_width`` bits),
        ``exp`` (``dp.exp_width`` bits) and ``nan``.
    """

    def __init__(self, config, *, max_levels_per_stage=1):
        check_config(config)
        if isinstance(max_levels_per_stage, bool) or not isinstance(max_levels_per_stage, int):
            raise TypeError(f"max_levels_per_stage must be an integer, "
                            f"not {max_levels_per_stage!r}")
        if max_levels_per_stage < 1:
            raise ValueError(f"max_levels_per_stage must be at least 1, "
                             f"not {max_levels_per_stage!r}")
        self._config = config
        self._max_levels_per_stage = max_levels_per_stage
        super().__init__({
            "i": In(stream.Signature(input_layout(config))),
            "o": Out(stream.Signature(output_layout(config))),
        })

    @property
    def config(self):
        return self._config

    @property
    def tree_stages(self):
        """Pipeline stages of the maximum-exponent tree."""
        levels = self._config.dp.log2_d
        return -(-levels // self._max_levels_per_stage)

    @property
    def latency(self):
        """Cycles from an input transfer to the output transfer of the same vector, unstalled."""
        return 4 + self.tree_stages

    def elaborate(self, platform):
        m = Module()
        dp = self._config.dp
        fmt = dp.fmt
        d = dp.d
        exp_width = dp.exp_width
        sig_width = fmt.man_bits + 1
        shift_width = bits_for_unsigned(MAG_BITS)

        # The stages advance together, enabled by one register, because an enable computed from
        # o.ready would reach the thousands of lane registers through logic and a large fan-out.
        # The skid register catches the last stage's content when the stages advance while the
        # output is stalled, and the stages then wait until it is taken.
        n_stages = self.latency
        skid_full = Signal()
        advance = ~skid_full
        valid = [Signal(name=f"valid_{k}") for k in range(n_stages)]
        with m.If(advance):
            m.d.sync += valid[0].eq(self.i.valid)
            m.d.sync += [valid[k].eq(valid[k - 1]) for k in range(1, n_stages)]
        m.d.comb += self.i.ready.eq(advance)

        def register(name, value, shape):
            reg = Signal(shape, name=name, reset_less=True)
            with m.If(advance):
                m.d.sync += reg.eq(value)
            return reg

        def register_lanes(name, values, shape):
            return [register(f"{name}_{j}", value, shape) for j, value in enumerate(values)]

        # Decode. Infinities and NaNs enter the tree as effective exponent 1 and significand 0.
        meta = register("decode_meta", self.i.payload.meta, meta_layout(self._config))
        signs, exps, significands, nonfinite_flags = [], [], [], []
        for lane in range(d):
            raw = self.i.payload.vec[lane]
            field = raw[fmt.man_bits:fmt.man_bits + fmt.exp_bits]
            fraction = raw[:fmt.man_bits]
            nonfinite = field.all()
            has_implicit_one = field.any()
            # Written with AND and OR gates rather than multiplexers with constants, so that
            # synthesis does not turn them into synchronous set or reset inputs, which would
            # have to be gated with the enable.
            signs.append(raw[15])
            exps.append(Cat(field[0] | ~has_implicit_one,
                            field[1:] & (~nonfinite).replicate(exp_width - 1)))
            significands.append(Cat(fraction, has_implicit_one)
                                & (~nonfinite).replicate(sig_width))
            nonfinite_flags.append(nonfinite)
        signs = register_lanes("decode_sign", signs, 1)
        exps = register_lanes("decode_exp", exps, exp_width)
        significands = register_lanes("decode_significand", significands, sig_width)
        nonfinite_flags = register_lanes("decode_nonfinite", nonfinite_flags, 1)

        # Maximum exponent and NaN flag, reduced pairwise and registered every few levels.
        partial_max, partial_nan = exps, nonfinite_flags
        for tree_stage in range(self.tree_stages):
            prefix = f"tree{tree_stage}"
            for _ in range(self._max_levels_per_stage):
                if len(partial_max) == 1:
                    break
                pairs = range(0, len(partial_max), 2)
                partial_max = [Mux(partial_max[j] > partial_max[j + 1],
                                   partial_max[j], partial_max[j + 1]) for j in pairs]
                partial_nan = [partial_nan[j] | partial_nan[j + 1] for j in pairs]
            partial_max = register_lanes(f"{prefix}_max", partial_max, exp_width)
            partial_nan = register_lanes(f"{prefix}_nan", partial_nan, 1)
            meta = register(f"{prefix}_meta", meta, meta_layout(self._config))
            signs = register_lanes(f"{prefix}_sign", signs, 1)
            exps = register_lanes(f"{prefix}_exp", exps, exp_width)
            significands = register_lanes(f"{prefix}_significand", significands, sig_width)
        (block_exp,), (block_nan,) = partial_max, partial_nan

        # Shift amounts. The block exponent is the maximum, so exp - e_i is never negative. A
        # distance of 16 or more only needs to be flagged, because any shift of 13 or more gives
        # 0 and the align stage clears those lanes.
        distances = []
        for lane in range(d):
            distance = Signal(exp_width, name=f"shift_distance_{lane}")
            m.d.comb += distance.eq(block_exp - exps[lane])
            distances.append(distance)
        shifts = register_lanes("shift_amount", [v[:shift_width] for v in distances],
                                shift_width)
        cleared = register_lanes("shift_clear", [v[shift_width:].any() for v in distances], 1)
        meta = register("shift_meta", meta, meta_layout(self._config))
        block_exp = register("shift_block_exp", block_exp, exp_width)
        block_nan = register("shift_nan", block_nan, 1)
        signs = register_lanes("shift_sign", signs, 1)
        significands = register_lanes("shift_significand", significands, sig_width)

        # Align. A shift of 13 to 15 empties the 13-bit magnitude, and larger ones are cleared.
        magnitudes = []
        for lane in range(d):
            shifted = Cat(Const(0, dp.guard_bits), significands[lane]) >> shifts[lane]
            magnitudes.append(shifted & (~cleared[lane]).replicate(MAG_BITS))
        magnitudes = register_lanes("align_magnitude", magnitudes, MAG_BITS)
        meta = register("align_meta", meta, meta_layout(self._config))
        block_exp = register("align_block_exp", block_exp, exp_width)
        block_nan = register("align_nan", block_nan, 1)
        signs = register_lanes("align_sign", signs, 1)

        # Apply the sign as ones' complement plus one, so that the carry chain comes last.
        last = Signal(output_layout(self._config), name="last", reset_less=True)
        with m.If(advance):
            m.d.sync += [
                last.meta.eq(meta),
                last.exp.eq(block_exp),
                last.nan.eq(block_nan),
            ]
            for lane in range(d):
                sign = signs[lane]
                flipped = Cat(magnitudes[lane], Const(0, 1)) ^ sign.replicate(dp.x_width)
                m.d.sync += last.a[lane].eq(flipped + sign)

        # Output, from the skid register first because its vector is the older one.
        skid = Signal(output_layout(self._config), name="skid", reset_less=True)
        with m.If(skid_full):
            with m.If(self.o.ready):
                m.d.sync += skid_full.eq(0)
        with m.Elif(valid[-1] & ~self.o.ready):
            m.d.sync += [
                skid.eq(last),
                skid_full.eq(1),
            ]
        m.d.comb += [
            self.o.valid.eq(skid_full | valid[-1]),
            self.o.payload.eq(Mux(skid_full, skid, last)),
        ]

        return m
