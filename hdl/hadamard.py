"""Hadamard engine: sign flip and fast Walsh-Hadamard transform, shared by keys and queries."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import aligned_vector_layout, meta_layout, pack, transformed_vector_layout


def hadamard_side_layout(config):
    """Fields that pass through the engine unchanged beside the vector."""
    dp = config.dp
    return data.StructLayout({
        "meta": meta_layout(config),
        "exp": unsigned(dp.exp_width),
        "nan": unsigned(1),
        "norm": unsigned(dp.norm_width),
    })


class HadamardEngine(wiring.Component):
    """Computes ``y = H_d diag(s) a`` exactly, in the constant-geometry form.

    One stage maps ``x`` to ``concat(x[0::2] + x[1::2], x[0::2] - x[1::2])``; ``log2(d)`` stages
    give the Sylvester-ordered transform (as ``golden.hadamard.fwht``). The engine owns
    ``transform_lanes`` butterflies (one adder and one subtractor each) and iterates the stage
    on a vector register, so a stage takes ``d / (2 * transform_lanes)`` cycles and no
    multiplier is used. All registers are ``y_width`` bits wide, the width after the last stage,
    so no intermediate value can overflow.

    Members
    -------
    i : In(stream)
        ``{side, a}``: the aligned vector and the fields passed through.
    o : Out(stream)
        ``{side, y}``: the transformed vector.
    signs : In(d)
        Sign word, bit ``i`` set where ``s_i = -1``; sampled when a vector is accepted.
    """

    def __init__(self, config):
        self._config = config
        self._lanes = config.transform_lanes
        side = hadamard_side_layout(config)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "side": side, "a": aligned_vector_layout(config)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "side": side, "y": transformed_vector_layout(config)}))),
            "signs": In(config.d),
        })

    @property
    def chunks_per_stage(self):
        return self._config.d // (2 * self._lanes)

    @property
    def latency_cycles(self):
        """Cycles from accepting a vector to presenting its result: ``log2(d) * d / (2 L)``."""
        return self._config.dp.log2_d * self.chunks_per_stage

    def elaborate(self, platform):
        m = Module()
        config = self._config
        d, lanes = config.d, self._lanes
        width = config.dp.y_width
        stages = config.dp.log2_d
        chunks = self.chunks_per_stage

        # Each vector is one signal, not d signals: in the emitted Verilog it is then a single
        # register that changes once per clock, which event-driven simulators (Icarus) process
        # far faster than d registers concatenated into the output payload.
        x = Signal(data.ArrayLayout(signed(width), d), reset_less=True)
        side = Signal.like(self.o.payload.side)
        stage = Signal(range(stages + 1))
        chunk = Signal(range(chunks))
        busy = Signal()
        done = Signal()

        m.d.comb += [
            self.i.ready.eq(~busy & ~done),
            self.o.valid.eq(done),
            self.o.payload.eq(pack(self.o.payload.shape(), side=side, y=x)),
        ]

        # While idle the vector register follows the input, so its load enable depends on
        # registers only. A transfer then starts the transform on the vector just loaded.
        with m.If(~busy & ~done):
            m.d.sync += side.eq(self.i.payload.side)
            for i in range(d):
                a = self.i.payload.a[i]
                m.d.sync += x[i].eq(Mux(self.signs[i], -a, a))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [busy.eq(1), stage.eq(0), chunk.eq(0)]

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += done.eq(0)

        half = d // 2
        if chunks == 1:
            # One stage per cycle: the whole vector is rewritten in place.
            with m.If(busy):
                for k in range(half):
                    m.d.sync += [x[k].eq(x[2 * k] + x[2 * k + 1]),
                                 x[k + half].eq(x[2 * k] - x[2 * k + 1])]
                m.d.sync += stage.eq(stage + 1)
                with m.If(stage == stages - 1):
                    m.d.sync += [busy.eq(0), done.eq(1)]
        else:
            # Each cycle takes the lowest 2L elements, shifts the vector down by 2L and shifts
            # the L sums and L differences into the top of two half-vector registers.
            lo = Signal(data.ArrayLayout(signed(width), half), reset_less=True)
            hi = Signal(data.ArrayLayout(signed(width), half), reset_less=True)
            sums = [x[2 * j] + x[2 * j + 1] for j in range(lanes)]
            diffs = [x[2 * j] - x[2 * j + 1] for j in range(lanes)]
            next_lo = [lo[k] for k in range(lanes, half)] + sums
            next_hi = [hi[k] for k in range(lanes, half)] + diffs
            with m.If(busy):
                m.d.sync += chunk.eq(chunk + 1)
                for k in range(half):
                    m.d.sync += [lo[k].eq(next_lo[k]), hi[k].eq(next_hi[k])]
                with m.If(chunk == chunks - 1):
                    m.d.sync += [chunk.eq(0), stage.eq(stage + 1)]
                    for k in range(half):
                        m.d.sync += [x[k].eq(next_lo[k]), x[k + half].eq(next_hi[k])]
                    with m.If(stage == stages - 1):
                        m.d.sync += [busy.eq(0), done.eq(1)]
                with m.Else():
                    for k in range(d - 2 * lanes):
                        m.d.sync += x[k].eq(x[k + 2 * lanes])
        return m
