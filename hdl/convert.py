"""Conversion of FP16/BF16 input vectors to block floating point."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.numerics import MAG_BITS, bits_for_unsigned

from .config import MacroConfig
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
    * shift: ``min(exp - e_i, 13)`` for every element;
    * align: the right shift and the sign.

    So ``latency = 3 + ceil(log2(d) / max_levels_per_stage)`` cycles pass from an input
    transfer to the output transfer of the same vector when the output is not stalled. A stage
    register loads whenever it is empty or the next stage takes its content, so no cycle is
    lost to a stall that has cleared, and ``i.ready`` depends combinationally on ``o.ready``
    through every stage.

    Parameters
    ----------
    config : :class:`~hdl.config.MacroConfig`
        Macro configuration. ``d`` sets the lanes and ``input_format`` the element format.
    max_levels_per_stage : :class:`int`
        Two-input maximum levels of the exponent tree between two registers, at least 1.
        Fewer levels raise Fmax and add latency.

    Members
    -------
    i : :py:`In(stream.Signature(input_layout(config)))`
        Input vectors: ``meta`` and ``vec``, ``d`` raw 16-bit patterns.
    o : :py:`Out(stream.Signature(output_layout(config)))`
        Converted vectors: ``meta``, ``a`` (``d`` signed elements of ``dp.x_width`` bits),
        ``exp`` (``dp.exp_width`` bits) and ``nan``.
    """

    def __init__(self, config, *, max_levels_per_stage=2):
        if not isinstance(config, MacroConfig):
            raise TypeError(f"config must be a MacroConfig, not {config!r}")
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
        return 3 + self.tree_stages

    def elaborate(self, platform):
        m = Module()
        dp = self._config.dp
        fmt = dp.fmt
        d = dp.d
        exp_width = dp.exp_width
        sig_width = fmt.man_bits + 1
        shift_width = bits_for_unsigned(MAG_BITS)

        # One valid flag per stage. A stage loads when it is empty or its successor takes from it.
        n_stages = self.latency
        valid = [Signal(name=f"valid_{k}") for k in range(n_stages)]
        load = [Signal(name=f"load_{k}") for k in range(n_stages)]
        for k in range(n_stages):
            ready_after = self.o.ready if k == n_stages - 1 else load[k + 1]
            m.d.comb += load[k].eq(~valid[k] | ready_after)
            valid_before = self.i.valid if k == 0 else valid[k - 1]
            with m.If(load[k]):
                m.d.sync += valid[k].eq(valid_before)
        m.d.comb += [
            self.i.ready.eq(load[0]),
            self.o.valid.eq(valid[-1]),
        ]

        def register(k, name, value, shape):
            reg = Signal(shape, name=name, reset_less=True)
            with m.If(load[k]):
                m.d.sync += reg.eq(value)
            return reg

        def register_lanes(k, name, values, shape):
            return [register(k, f"{name}_{j}", value, shape) for j, value in enumerate(values)]

        # Decode. Infinities and NaNs enter the tree as effective exponent 1 and significand 0.
        stage = 0
        meta = register(stage, "decode_meta", self.i.payload.meta, meta_layout(self._config))
        signs, exps, significands, nonfinite_flags = [], [], [], []
        for lane in range(d):
            raw = self.i.payload.vec[lane]
            field = raw[fmt.man_bits:fmt.man_bits + fmt.exp_bits]
            fraction = raw[:fmt.man_bits]
            nonfinite = field.all()
            has_implicit_one = field.any()
            signs.append(raw[15])
            exps.append(Mux(nonfinite | ~has_implicit_one, Const(1, exp_width), field))
            significands.append(Mux(nonfinite, Const(0, sig_width),
                                    Cat(fraction, has_implicit_one)))
            nonfinite_flags.append(nonfinite)
        signs = register_lanes(stage, "decode_sign", signs, 1)
        exps = register_lanes(stage, "decode_exp", exps, exp_width)
        significands = register_lanes(stage, "decode_significand", significands, sig_width)
        nonfinite_flags = register_lanes(stage, "decode_nonfinite", nonfinite_flags, 1)

        # Maximum exponent and NaN flag, reduced pairwise and registered every few levels.
        partial_max, partial_nan = exps, nonfinite_flags
        for tree_stage in range(self.tree_stages):
            stage += 1
            prefix = f"tree{tree_stage}"
            for _ in range(self._max_levels_per_stage):
                if len(partial_max) == 1:
                    break
                pairs = range(0, len(partial_max), 2)
                partial_max = [Mux(partial_max[j] > partial_max[j + 1],
                                   partial_max[j], partial_max[j + 1]) for j in pairs]
                partial_nan = [partial_nan[j] | partial_nan[j + 1] for j in pairs]
            partial_max = register_lanes(stage, f"{prefix}_max", partial_max, exp_width)
            partial_nan = register_lanes(stage, f"{prefix}_nan", partial_nan, 1)
            meta = register(stage, f"{prefix}_meta", meta, meta_layout(self._config))
            signs = register_lanes(stage, f"{prefix}_sign", signs, 1)
            exps = register_lanes(stage, f"{prefix}_exp", exps, exp_width)
            significands = register_lanes(stage, f"{prefix}_significand", significands, sig_width)
        (block_exp,), (block_nan,) = partial_max, partial_nan

        # Shift amounts. The block exponent is the maximum, so exp - e_i is never negative.
        stage += 1
        shifts = []
        for lane in range(d):
            distance = Signal(exp_width, name=f"shift_distance_{lane}")
            m.d.comb += distance.eq(block_exp - exps[lane])
            shifts.append(Mux(distance >= MAG_BITS, Const(MAG_BITS, shift_width),
                              distance[:shift_width]))
        shifts = register_lanes(stage, "shift_amount", shifts, shift_width)
        meta = register(stage, "shift_meta", meta, meta_layout(self._config))
        block_exp = register(stage, "shift_block_exp", block_exp, exp_width)
        block_nan = register(stage, "shift_nan", block_nan, 1)
        signs = register_lanes(stage, "shift_sign", signs, 1)
        significands = register_lanes(stage, "shift_significand", significands, sig_width)

        # Align and apply the sign. These registers are the output payload.
        stage += 1
        with m.If(load[stage]):
            m.d.sync += [
                self.o.payload.meta.eq(meta),
                self.o.payload.exp.eq(block_exp),
                self.o.payload.nan.eq(block_nan),
            ]
            for lane in range(d):
                magnitude = Cat(Const(0, dp.guard_bits), significands[lane]) >> shifts[lane]
                m.d.sync += self.o.payload.a[lane].eq(Mux(signs[lane], -magnitude, magnitude))

        return m
