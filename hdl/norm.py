"""Integer norm of a key: ``isqrt(sum(a_i**2))`` over its aligned elements.

This is the first step of the key write path after alignment. The norm is stored in the key's
row, and the quantizer scales its boundary constants by it.
"""

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import MacroConfig
from .layouts import Kind, aligned_vector_layout, meta_layout

__all__ = ["norm_input_layout", "norm_output_layout", "NormUnit"]


def _check_config(config):
    if not isinstance(config, MacroConfig):
        raise TypeError(f"config must be a MacroConfig, not {config!r}")
    return config


def norm_input_layout(config):
    """Payload of :class:`NormUnit`'s input: an aligned vector and its command."""
    dp = _check_config(config).dp
    return data.StructLayout({
        "meta": meta_layout(config),
        "a": aligned_vector_layout(config),
        "exp": unsigned(dp.exp_width),
        "nan": unsigned(1),
    })


def norm_output_layout(config):
    """Payload of :class:`NormUnit`'s output: the input fields and the integer norm."""
    dp = _check_config(config).dp
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
    accumulator for ``d / write_lanes`` cycles. The squares are general multiplications, so
    synthesis maps them to ``write_lanes`` hardware multipliers. Second, a restoring square root
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
        self._config = _check_config(config)
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
    def root_cycles(self):
        """Cycles of the square root, one per result bit: ``dp.norm_width``."""
        return self._config.dp.norm_width

    @property
    def latency_cycles(self):
        """Cycles from accepting a write to ``o.valid``: ``d / write_lanes + norm_width + 1``."""
        return self.square_cycles + self.root_cycles + 1

    @property
    def multipliers(self):
        """Hardware multipliers (squarers), ``write_lanes``."""
        return self._config.write_lanes

    def elaborate(self, platform):
        m = Module()

        config = self._config
        dp = config.dp
        lanes = config.write_lanes
        root_bits = dp.norm_width

        meta = Signal(meta_layout(config))
        a = Signal(aligned_vector_layout(config))
        exp = Signal(dp.exp_width)
        nan = Signal()
        # The accumulator first sums the squares, then shifts the radicand out from its top
        # two bits at a time while the root is formed.
        acc = Signal(2 * root_bits)
        root = Signal(root_bits)
        # Before the last root step the remainder is at most 2 * root < 2**root_bits, so
        # root_bits bits suffice. The last remainder may need one more bit, but nothing reads it.
        rem = Signal(root_bits)
        count = Signal(range(max(self.square_cycles, root_bits)))

        m.d.comb += [
            self.o.p.meta.eq(meta),
            self.o.p.a.eq(a),
            self.o.p.exp.eq(exp),
            self.o.p.nan.eq(nan),
            self.o.p.norm.eq(root),
        ]

        # Squares of the lanes' elements. |a_i| <= 2**13 gives a_i**2 <= 2**26, which fits
        # 2 * x_width - 1 unsigned bits.
        square_width = 2 * dp.x_width - 1
        squares = [(a[lane] * a[lane]).as_unsigned()[:square_width] for lane in range(lanes)]
        acc_next = (acc + _sum_tree(squares))[:len(acc)]

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
                with m.If(self.i.valid):
                    m.d.sync += [
                        meta.eq(self.i.p.meta),
                        a.eq(self.i.p.a),
                        exp.eq(self.i.p.exp),
                        nan.eq(self.i.p.nan),
                        acc.eq(0),
                        rem.eq(0),
                        root.eq(0),
                        count.eq(self.square_cycles - 1),
                    ]
                    with m.If(self.i.p.meta.kind == Kind.WRITE):
                        m.next = "SQUARE"
                    with m.Else():
                        m.next = "DONE"

            with m.State("SQUARE"):
                m.d.sync += [
                    acc.eq(acc_next),
                    a.eq(a_rotated),
                    count.eq(count - 1),
                ]
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
