"""Integer norm of a key: ``isqrt(sum(a_i**2))`` over its aligned elements.

This is the first step of the key write path after alignment. The norm is stored in the key's
row, and the quantizer scales its boundary constants by it.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.utils import ceil_log2
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import check_config
from .layouts import Kind, aligned_vector_layout, meta_layout, pack
from .mul import PipelinedMul, mul_latency

__all__ = ["norm_input_layout", "norm_output_layout", "NormUnit"]


def norm_input_layout(config):
    """Payload of :class:`NormUnit`'s input: an aligned vector and its command."""
    dp = check_config(config).dp
    return data.StructLayout({
        "meta": meta_layout(config),
        "a": aligned_vector_layout(config),
        "exp": unsigned(dp.exp_width),
        "nan": unsigned(1),
    })


def norm_output_layout(config):
    """Payload of :class:`NormUnit`'s output: the input fields and the integer norm."""
    dp = check_config(config).dp
    fields = dict(norm_input_layout(config).members)
    fields["norm"] = unsigned(dp.norm_width)
    return data.StructLayout(fields)


def _sum_tree(values):
    """Return the sum of ``values`` as a balanced tree of adders (full width, nothing lost)."""
    while len(values) > 1:
        paired = [values[k] + values[k + 1] for k in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            paired.append(values[-1])
        values = paired
    return values[0]


class NormUnit(wiring.Component):
    """Computes the integer norm ``isqrt(sum(a_i**2))`` of each written key.

    The result equals the norm of ``golden.bitexact.encode_keys`` for every input with
    ``|a_i| <= 2**13 - 1``, which the aligner guarantees. ``a_i == -2**13`` is outside that
    contract and may overflow the sum of squares.

    A write takes three phases. First, ``write_lanes`` squares per cycle are added into an
    accumulator for ``d / write_lanes`` cycles, after a pipeline delay of
    :attr:`square_delay`. The squares are general multiplications, built as ``write_lanes``
    pipelined logic multipliers (:class:`hdl.mul.PipelinedMul`). Second, a restoring square root
    produces one bit of the root per cycle for ``norm_width`` cycles. It shifts the radicand out
    of the accumulator two bits at a time and needs a single subtractor. Third, the result waits
    in the output register until ``o.ready``.

    A query needs no norm: it passes in one cycle with ``norm`` set to 0.

    The unit processes one command at a time, and ``i.ready`` is high only while it is idle. From
    the cycle a command is accepted to the first cycle of ``o.valid`` there are
    :attr:`latency_cycles` cycles for a write and 1 for a query. The next command can be
    accepted in the cycle after the output transfer.

    Parameters
    ----------
    config : MacroConfig
        The macro. ``d``, ``write_lanes`` and the widths of ``config.dp`` are used.

    Members
    -------
    i : In(stream.Signature(norm_input_layout(config)))
        Aligned vectors with their command, block exponent and NaN flag.
    o : Out(stream.Signature(norm_output_layout(config)))
        The same fields, unchanged, and ``norm`` of ``dp.norm_width`` bits.
    """

    def __init__(self, config):
        self._config = check_config(config)
        dp = config.dp
        if 2 * dp.norm_width < dp.square_sum_width:
            raise AssertionError(f"norm_width {dp.norm_width} cannot hold the root of "
                                 f"{dp.square_sum_width}-bit sums of squares")
        super().__init__({
            "i": In(stream.Signature(norm_input_layout(config))),
            "o": Out(stream.Signature(norm_output_layout(config))),
        })

    @property
    def config(self):
        return self._config

    @property
    def square_cycles(self):
        """Cycles of the squaring phase, ``d / write_lanes``."""
        return self._config.d // self._config.write_lanes

    @property
    def square_delay(self):
        """Clocks from an element to its square in the accumulator.

        Magnitude register (1), squarer (:func:`hdl.mul.mul_latency` of ``x_width - 1`` bits)
        and the registered sum of the lanes' squares (1).
        """
        return mul_latency(self._config.dp.x_width - 1) + 2

    @property
    def root_cycles(self):
        """Cycles of the square root, one per result bit: ``dp.norm_width``."""
        return self._config.dp.norm_width

    @property
    def latency_cycles(self):
        """Cycles from accepting a write to ``o.valid``.

        ``d / write_lanes + square_delay + norm_width + 1``.
        """
        return self.square_cycles + self.square_delay + self.root_cycles + 1

    @property
    def multipliers(self):
        """General multipliers (squarers, in logic), ``write_lanes``."""
        return self._config.write_lanes

    def elaborate(self, platform):
        m = Module()

        config = self._config
        dp = config.dp
        lanes = config.write_lanes
        root_bits = dp.norm_width

        # Payload registers have no reset: the state machine decides when they count, and
        # leaving them out keeps the reset net's fan-out small.
        meta = Signal(meta_layout(config), reset_less=True)
        a = Signal(aligned_vector_layout(config), reset_less=True)
        exp = Signal(dp.exp_width, reset_less=True)
        nan = Signal(reset_less=True)
        # The accumulator first sums the squares, then shifts the radicand out from its top
        # two bits at a time while the root is formed.
        acc = Signal(2 * root_bits)
        root = Signal(root_bits)
        # Before the last root step the remainder is at most 2 * root < 2**root_bits, so
        # root_bits bits suffice. The last remainder may need one more bit, but nothing reads it.
        rem = Signal(root_bits)
        square_steps = self.square_cycles + self.square_delay
        count = Signal(range(max(square_steps, root_bits)))

        m.d.comb += [
            self.o.p.eq(pack(self.o.p.shape(), meta=meta, a=a, exp=exp, nan=nan, norm=root)),
        ]

        # Squares of the lanes' elements, pipelined: the magnitudes are registered, squared in
        # logic (hdl.mul) and the lanes' squares summed into a register. |a_i| <= 2**13 - 1
        # fits x_width - 1 unsigned bits, and its square 2 * (x_width - 1) bits.
        mag_width = dp.x_width - 1
        squares = []
        for lane in range(lanes):
            magnitude = Signal(mag_width, name=f"magnitude{lane}")
            element = a[lane]
            m.d.sync += magnitude.eq(Mux(element < 0, -element, element))
            squarer = PipelinedMul(unsigned(mag_width), mag_width)
            m.submodules[f"square{lane}"] = squarer
            m.d.comb += [squarer.a.eq(magnitude), squarer.b.eq(magnitude)]
            squares.append(squarer.o)
        square_sum = Signal(2 * mag_width + ceil_log2(lanes))
        m.d.sync += square_sum.eq(_sum_tree(squares))
        acc_next = (acc + square_sum)[:len(acc)]

        # ``feed`` marks the cycles whose elements are squared; ``arrived`` is the same mark
        # square_delay clocks later, when their sum reaches the accumulator.
        feed = Signal()
        marks = Signal(self.square_delay)
        m.d.sync += marks.eq(Cat(feed, marks[:-1]))
        arrived = marks[-1]

        # Each step brings down the next two bits of the radicand and tries to subtract
        # 4 * root + 1, which is (2 * root + 1)**2 - (2 * root)**2.
        rem_shifted = Cat(acc[-2:], rem)
        trial = Cat(Const(1, 2), root)
        diff = rem_shifted - trial
        fits = ~diff[-1]

        # Rotating the vector by the lane count presents the next elements to the squarers
        # without a multiplexer, and after d / write_lanes steps it is back in its input order.
        element_bits = dp.x_width
        a_bits = a.as_value()
        a_rotated = Cat(a_bits[lanes * element_bits:], a_bits[:lanes * element_bits])

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                # The registers follow the input while idle, so their load enable is the state
                # alone, not the input's valid: a shorter path to thousands of flip-flops.
                m.d.sync += [
                    meta.eq(self.i.p.meta),
                    a.eq(self.i.p.a),
                    exp.eq(self.i.p.exp),
                    nan.eq(self.i.p.nan),
                    acc.eq(0),
                    rem.eq(0),
                    root.eq(0),
                    count.eq(square_steps - 1),
                ]
                with m.If(self.i.valid):
                    with m.If(self.i.p.meta.kind == Kind.WRITE):
                        m.next = "SQUARE"
                    with m.Else():
                        m.next = "DONE"

            with m.State("SQUARE"):
                m.d.sync += count.eq(count - 1)
                with m.If(count >= self.square_delay):
                    m.d.comb += feed.eq(1)
                    m.d.sync += a.eq(a_rotated)
                with m.If(arrived):
                    m.d.sync += acc.eq(acc_next)
                with m.If(count == 0):
                    m.d.sync += count.eq(root_bits - 1)
                    m.next = "ROOT"

            with m.State("ROOT"):
                m.d.sync += [
                    acc.eq(acc << 2),
                    count.eq(count - 1),
                ]
                with m.If(fits):
                    m.d.sync += [
                        rem.eq(diff[:root_bits]),
                        root.eq(Cat(Const(1, 1), root)),
                    ]
                with m.Else():
                    m.d.sync += [
                        rem.eq(rem_shifted[:root_bits]),
                        root.eq(Cat(Const(0, 1), root)),
                    ]
                with m.If(count == 0):
                    m.next = "DONE"

            with m.State("DONE"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"

        return m
