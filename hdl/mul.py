"""General multiplication as a pipelined array of partial products, without DSP blocks.

Yosys 0.70 maps a product to an ECP5 DSP block (MULT18X18D) with the block's internal
pipeline registers unused, so the whole multiplication lies between two fabric registers and
limits the clock frequency. The norm squares and the score's norm product are therefore built
from logic: one partial product per bit of the unsigned operand, summed in a balanced adder
tree with a register after every ``levels_per_stage`` levels.
"""

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .constmul import _check_levels_per_stage

__all__ = ["mul_shape", "mul_latency", "PipelinedMul"]


def _check_width(width):
    if isinstance(width, bool) or not isinstance(width, int):
        raise TypeError(f"multiplier width must be a positive integer, not {width!r}")
    if width < 1:
        raise ValueError(f"multiplier width must be a positive integer, not {width!r}")
    return width


def mul_shape(shape, width):
    """Return the shape of ``a * b`` for ``a`` of ``shape`` and ``b`` of ``unsigned(width)``."""
    shape = Shape.cast(shape)
    _check_width(width)
    if shape.signed:
        return signed(shape.width + width)
    return unsigned(shape.width + width)


def mul_latency(width, levels_per_stage=1):
    """Return the clocks of :class:`PipelinedMul`: ``max(1, ceil(ceil_log2(width) / levels))``."""
    _check_width(width)
    _check_levels_per_stage(levels_per_stage)
    return max(1, -(-ceil_log2(width) // levels_per_stage))


class PipelinedMul(wiring.Component):
    """Pipelined product of ``a`` (signed or unsigned) and an unsigned ``b`` of ``width`` bits.

    Partial product ``k`` is ``a << k`` where bit ``k`` of ``b`` is set and 0 elsewhere. The
    ``width`` partial products are summed in a balanced tree of ``ceil_log2(width)`` adder
    levels, with a register after every ``levels_per_stage`` levels and on ``o``. The pipeline
    advances on every clock and has no handshake, so a caller carries its valid bit and tag in
    a shift register of :attr:`latency` stages beside it.

    Parameters
    ----------
    shape : shape-like
        Shape of ``a``.
    width : int
        Width of the unsigned operand ``b``; its bits are the partial-product selects.
    levels_per_stage : int
        Adder levels between two registers, at least 1.

    Members
    -------
    a : In(shape)
    b : In(width)
    o : Out(mul_shape(shape, width))
        ``a * b`` of the cycle :attr:`latency` clocks earlier, exact.
    """

    def __init__(self, shape, width, *, levels_per_stage=1):
        shape = Shape.cast(shape)
        self._width = _check_width(width)
        self._levels_per_stage = _check_levels_per_stage(levels_per_stage)
        super().__init__({"a": In(shape), "b": In(width), "o": Out(mul_shape(shape, width))})

    @property
    def latency(self):
        """Clocks from ``a`` and ``b`` to ``o``, :func:`mul_latency`."""
        return mul_latency(self._width, self._levels_per_stage)

    def elaborate(self, platform):
        m = Module()
        out_shape = self.o.shape()

        level = [Mux(self.b[k], self.a, 0) << k for k in range(self._width)]
        depth = 0
        while len(level) > 1:
            paired = [level[k] + level[k + 1] for k in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                paired.append(level[-1])
            level = paired
            depth += 1
            if depth % self._levels_per_stage == 0 and len(level) > 1:
                registered = []
                for k, expression in enumerate(level):
                    # Each partial sum fits the product's shape, so it is kept at that width.
                    partial = Signal(out_shape, name=f"level{depth}_{k}", reset_less=True)
                    m.d.sync += partial.eq(expression)
                    registered.append(partial)
                level = registered

        (root,) = level
        m.d.sync += self.o.eq(root)
        return m
