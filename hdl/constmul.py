"""Multiplication by a design-time constant with shifts, additions and subtractions only.

The constant is written in canonical signed digit form (the non-adjacent form, NAF): every
non-negative integer is ``sum(sign * 2**shift)`` with signs of +1 or -1 and no two non-zero digits
in neighbouring positions. The NAF has the fewest non-zero digits of any signed-digit form, at
most ``ceil((bit_length + 1) / 2)``, so a product needs one adder or subtractor per digit after
the first and no multiplier. The partial products are summed in a balanced tree, whose depth is
``ceil(log2(digits))`` adders.

Two forms are provided. :func:`const_mul` returns a combinational expression. :class:`ConstMul`
is the same tree with a register after every ``levels_per_stage`` adder levels, for a constant
with so many digits that the tree would limit the clock frequency.
"""

from amaranth.hdl import Module, Shape, Signal, Value, ValueCastable, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.numerics import bits_for_unsigned

__all__ = ["csd_digits", "const_mul", "const_mul_adders", "const_mul_depth",
           "const_mul_latency", "const_mul_shape", "ConstMul"]


def _check_constant(constant):
    if isinstance(constant, bool) or not isinstance(constant, int):
        raise TypeError(f"constant must be a non-negative integer, not {constant!r}")
    if constant < 0:
        raise ValueError(f"constant must be a non-negative integer, not {constant!r}")
    return constant


def _check_value(value):
    if isinstance(value, ValueCastable) or not isinstance(value, Value):
        raise TypeError(f"value must be an Amaranth Value (signed or unsigned), not {value!r}")
    return value


def csd_digits(constant):
    """Return the canonical signed digits of ``constant`` as a list of ``(shift, sign)``.

    The list is ordered by ascending ``shift``, ``sign`` is +1 or -1, and
    ``sum(sign << shift) == constant``. No two shifts in the list differ by one. Zero has no
    digits, and a power of two has exactly one.
    """
    _check_constant(constant)
    digits = []
    shift = 0
    rest = constant
    while rest:
        if rest & 1:
            # Choosing the digit so that ``rest - digit`` is a multiple of 4 forces the next
            # digit to zero, which is what makes the form non-adjacent.
            sign = 2 - (rest & 3)
            digits.append((shift, sign))
            rest -= sign
        rest >>= 1
        shift += 1
    return digits


def const_mul_adders(constant):
    """Return the adders and subtractors that a product by ``constant`` uses.

    This is ``len(csd_digits(constant)) - 1``: 0 for zero and for powers of two.
    """
    return max(0, len(csd_digits(constant)) - 1)


def const_mul_depth(constant):
    """Return the adder levels of the balanced tree, ``ceil(log2(len(csd_digits(constant))))``."""
    digits = len(csd_digits(constant))
    return ceil_log2(digits) if digits else 0


def _check_levels_per_stage(levels_per_stage):
    if isinstance(levels_per_stage, bool) or not isinstance(levels_per_stage, int):
        raise TypeError(f"levels_per_stage must be a positive integer, not {levels_per_stage!r}")
    if levels_per_stage < 1:
        raise ValueError(f"levels_per_stage must be a positive integer, not {levels_per_stage!r}")
    return levels_per_stage


def const_mul_latency(constant, levels_per_stage):
    """Return the latency of :class:`ConstMul`, ``max(1, ceil(depth / levels_per_stage))``.

    ``depth`` is :func:`const_mul_depth` of ``constant``.
    """
    _check_levels_per_stage(levels_per_stage)
    return max(1, -(-const_mul_depth(constant) // levels_per_stage))


def const_mul_shape(shape, constant):
    """Return the narrowest shape that fits ``value * constant`` for every ``value`` of ``shape``.

    The shape is signed exactly when ``shape`` is. A product by zero has width 1.
    """
    shape = Shape.cast(shape)
    _check_constant(constant)
    if shape.signed:
        low = -(1 << (shape.width - 1)) * constant if shape.width else 0
        high = ((1 << (shape.width - 1)) - 1) * constant if shape.width else 0
        # ``golden.numerics.bits_for_signed`` never returns 1, but -1..0 fits signed(1).
        return signed(max(high.bit_length(), max(-low - 1, 0).bit_length()) + 1)
    return unsigned(bits_for_unsigned(((1 << shape.width) - 1) * constant))


def _combine(left, right):
    """Add two signed partial products ``(expression, negated)`` with one adder or subtractor."""
    (a, a_negated), (b, b_negated) = left, right
    if a_negated == b_negated:
        return a + b, a_negated
    if b_negated:
        return a - b, False
    return b - a, False


def _leaves(value, constant):
    """Return the partial products ``(value << shift, negated)``. A negated entry is subtracted."""
    return [(value << shift, sign < 0) for shift, sign in csd_digits(constant)]


def _add_level(level):
    """Return the next tree level: neighbours summed in pairs, an odd one out passed on."""
    paired = [_combine(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def _narrow(expression, shape):
    """Return ``expression`` cut to ``shape``, which is exact because the value fits ``shape``."""
    narrow = expression.as_unsigned()[:shape.width]
    return narrow.as_signed() if shape.signed else narrow


def const_mul(value, constant):
    """Return an expression equal to ``value * constant``, built from shifts and adders only.

    ``value`` is a signed or unsigned :class:`~amaranth.hdl.Value` and ``constant`` a
    non-negative integer. The expression never uses the ``*`` operator, so synthesis maps it to
    :func:`const_mul_adders` adders in a tree of :func:`const_mul_depth` levels and no
    multiplier. Its shape is :func:`const_mul_shape` of ``value``'s shape. Every intermediate
    sum is wide enough, so no bit of the product is lost.
    """
    _check_value(value)
    _check_constant(constant)
    shape = const_mul_shape(value.shape(), constant)
    if constant == 0:
        return _narrow(Value.cast(0), shape)
    level = _leaves(value, constant)
    while len(level) > 1:
        level = _add_level(level)
    (root, negated), = level
    if negated:
        raise AssertionError(f"the leading canonical digit of {constant} is negative")
    return _narrow(root, shape)


class ConstMul(wiring.Component):
    """Pipelined multiplier by a constant: :func:`const_mul` with registered adder levels.

    A register follows every ``levels_per_stage`` adder levels of the tree, and ``o`` is
    registered, so at most ``levels_per_stage`` adder levels lie between two registers. The
    pipeline advances on every clock of the ``sync`` domain and has no handshake; wrap it in
    :class:`~amaranth.hdl.EnableInserter` to stall it.

    Parameters
    ----------
    shape : shape-like
        Shape of the multiplicand.
    constant : int
        Non-negative multiplier.
    levels_per_stage : int
        Adder levels between two registers, at least 1.

    Members
    -------
    i : In(shape)
        Multiplicand.
    o : Out(const_mul_shape(shape, constant))
        ``i * constant`` of the cycle :attr:`latency` clocks earlier.
    """

    def __init__(self, shape, constant, *, levels_per_stage=1):
        shape = Shape.cast(shape)
        _check_constant(constant)
        _check_levels_per_stage(levels_per_stage)
        self._shape = shape
        self._constant = constant
        self._levels_per_stage = levels_per_stage
        super().__init__({"i": In(shape), "o": Out(const_mul_shape(shape, constant))})

    @property
    def constant(self):
        return self._constant

    @property
    def adders(self):
        """Adders and subtractors in the tree, :func:`const_mul_adders`."""
        return const_mul_adders(self._constant)

    @property
    def latency(self):
        """Clocks from ``i`` to ``o``: ``max(1, ceil(const_mul_depth / levels_per_stage))``."""
        return const_mul_latency(self._constant, self._levels_per_stage)

    def elaborate(self, platform):
        m = Module()

        if self._constant == 0:
            m.d.sync += self.o.eq(0)
            return m

        level = _leaves(self.i, self._constant)
        depth = 0
        while len(level) > 1:
            level = _add_level(level)
            depth += 1
            if depth % self._levels_per_stage == 0 and len(level) > 1:
                level = [self._register(m, expression, negated, f"level{depth}_{k}")
                         for k, (expression, negated) in enumerate(level)]

        (root, _), = level
        m.d.sync += self.o.eq(_narrow(root, self.o.shape()))
        return m

    @staticmethod
    def _register(m, expression, negated, name):
        partial = Signal(expression.shape(), name=name, reset_less=True)
        m.d.sync += partial.eq(expression)
        return partial, negated
