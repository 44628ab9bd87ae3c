"""Conversion of FP16/BF16 input vectors to block floating point."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.numerics import MAG_BITS, bits_for_unsigned

from .config import check_config
from .layouts import aligned_vector_layout, meta_layout, pack, raw_vector_layout

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

    The converter works on one vector at a time and reads it straight from ``i.payload``, which
    the stream contract keeps stable from the first cycle of ``i.valid`` until the transfer. So
    no stage keeps a copy of the raw vector: these registered stages run freely on it, ``d``
    lanes wide, and only the small exponent tree and the per-lane results are registered.

    * ``ceil(log2(d) / max_levels_per_stage)`` stages of the maximum-exponent tree, fed with
      each element's decoded effective exponent and nonfinite flag;
    * shift: ``exp - e_i`` for every element, reduced to 4 bits and a flag for 16 or more;
    * align: the right shift of the decoded significand;
    * output: two's complement of the negative elements, with ``meta``, ``exp`` and ``nan``.

    :attr:`latency` cycles after ``i.valid`` rises the aligned vector is ready; the converter
    then takes the input (``i.ready`` high for one cycle) in the same clock edge that loads the
    output register, provided that register is empty, and ``o.valid`` rises in the next cycle.
    The output register keeps its vector until ``o.ready``; ``i.ready`` depends on registers
    only. A vector therefore takes :attr:`latency` cycles, and without back-pressure the
    converter takes one vector every :attr:`latency` cycles. Writes spend far longer in the
    norm unit and queries in the score unit, so this rate never limits the macro.

    Pipelining the raw vector instead, as a converter taking one vector per cycle must, costs
    ``17 * d`` flip-flops per tree stage: about 20,000 at ``d = 128``.

    Parameters
    ----------
    config : :class:`~hdl.config.MacroConfig`
        Macro configuration. ``d`` sets the lanes and ``input_format`` the element format.
    max_levels_per_stage : :class:`int`
        Two-input maximum levels of the exponent tree between two registers, at least 1.
        More levels save one register stage and one cycle of latency per tree stage left out,
        but lower Fmax: one level is a comparison and a multiplexer.

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
        """Cycles from the rise of ``i.valid`` to the rise of ``o.valid``, with the output empty.

        ``tree_stages + 3``: the tree, the shift and align stages, and the output register. The
        input transfer happens in the last of these cycles.
        """
        return self.tree_stages + 3

    def elaborate(self, platform):
        m = Module()
        dp = self._config.dp
        fmt = dp.fmt
        d = dp.d
        exp_width = dp.exp_width
        sig_width = fmt.man_bits + 1
        shift_width = bits_for_unsigned(MAG_BITS)

        def lane_register(name, value, shape):
            # Datapath registers run freely and have no reset: the step counter decides when
            # their content counts.
            reg = Signal(shape, name=name, reset_less=True)
            m.d.sync += reg.eq(value)
            return reg

        # Decode, combinationally from the held input. Infinities and NaNs enter the tree as
        # effective exponent 1 and significand 0.
        signs, exps, significands, nonfinite_flags = [], [], [], []
        for lane in range(d):
            raw = self.i.payload.vec[lane]
            field = raw[fmt.man_bits:fmt.man_bits + fmt.exp_bits]
            fraction = raw[:fmt.man_bits]
            nonfinite = field.all()
            has_implicit_one = field.any()
            # AND and OR gates rather than multiplexers with constants, so that synthesis
            # builds plain logic.
            signs.append(raw[15])
            exps.append(Cat(field[0] | ~has_implicit_one,
                            field[1:] & (~nonfinite).replicate(exp_width - 1)))
            significands.append(Cat(fraction, has_implicit_one)
                                & (~nonfinite).replicate(sig_width))
            nonfinite_flags.append(nonfinite)

        # Maximum exponent and NaN flag, reduced pairwise and registered every few levels.
        partial_max, partial_nan = exps, nonfinite_flags
        for tree_stage in range(self.tree_stages):
            for _ in range(self._max_levels_per_stage):
                if len(partial_max) == 1:
                    break
                pairs = range(0, len(partial_max), 2)
                partial_max = [Mux(partial_max[j] > partial_max[j + 1],
                                   partial_max[j], partial_max[j + 1]) for j in pairs]
                partial_nan = [partial_nan[j] | partial_nan[j + 1] for j in pairs]
            partial_max = [lane_register(f"tree{tree_stage}_max_{j}", value, exp_width)
                           for j, value in enumerate(partial_max)]
            partial_nan = [lane_register(f"tree{tree_stage}_nan_{j}", value, 1)
                           for j, value in enumerate(partial_nan)]
        (block_exp,), (block_nan,) = partial_max, partial_nan

        # Shift amounts. The block exponent is the maximum, so exp - e_i is never negative. A
        # distance of 16 or more only needs to be flagged, because any shift of 13 or more gives
        # 0 and the align stage clears those lanes.
        shifts, cleared = [], []
        for lane in range(d):
            distance = Signal(exp_width, name=f"shift_distance_{lane}")
            m.d.comb += distance.eq(block_exp - exps[lane])
            shifts.append(lane_register(f"shift_amount_{lane}", distance[:shift_width],
                                        shift_width))
            cleared.append(lane_register(f"shift_clear_{lane}", distance[shift_width:].any(), 1))

        # Align. A shift of 13 to 15 empties the 13-bit magnitude, and larger ones are cleared.
        magnitudes = []
        for lane in range(d):
            shifted = Cat(Const(0, dp.guard_bits), significands[lane]) >> shifts[lane]
            magnitudes.append(lane_register(f"align_magnitude_{lane}",
                                            shifted & (~cleared[lane]).replicate(MAG_BITS),
                                            MAG_BITS))

        # Step counter: the number of cycles the current input has been valid, up to the
        # cycle in which the aligned vector is ready.
        last_step = self.latency - 1
        step = Signal(range(last_step + 1))
        full = Signal()
        finished = step == last_step
        take = self.i.valid & finished & ~full
        m.d.comb += self.i.ready.eq(finished & ~full)
        with m.If(~self.i.valid | take):
            m.d.sync += step.eq(0)
        with m.Elif(~finished):
            m.d.sync += step.eq(step + 1)

        # Output register. The sign is applied as ones' complement plus one, so that the carry
        # chain comes last.
        out = Signal(output_layout(self._config), name="out", reset_less=True)
        aligned = []
        for lane in range(d):
            sign = signs[lane]
            flipped = Cat(magnitudes[lane], Const(0, 1)) ^ sign.replicate(dp.x_width)
            aligned.append(flipped + sign)
        with m.If(take):
            m.d.sync += [
                out.eq(pack(output_layout(self._config), meta=self.i.payload.meta,
                            a=Cat(*(value[:dp.x_width] for value in aligned)),
                            exp=block_exp, nan=block_nan)),
                full.eq(1),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += full.eq(0)
        m.d.comb += [
            self.o.valid.eq(full),
            self.o.payload.eq(out),
        ]

        return m
