"""Conventional attention score unit: FP16 keys in block RAM, one FP16 dot product per clock.

This is the design AXELRAM is compared against on the FPGA, built the way a designer without
AXELRAM's codebook would build it. It stores every key as ``d`` FP16 values (``16 * d`` bits
per key). For each query it reads one key per clock and computes ``<q, k>`` with ``d``
multipliers and an adder tree.

Arithmetic. An FP16 value with sign ``s``, exponent field ``e`` and fraction ``f`` is
``(-1)^s * m * 2^(E - 25)`` with the integer significand ``m = 1024 * (e != 0) + f``
(11 bits) and ``E = max(e, 1)``. Each product is then exact as the 22-bit integer
``m_q * m_k`` with exponent ``E_q + E_k`` (one 11 x 11 multiplier, a DSP on ECP5). Products
with a zero operand get exponent 0 so that they never set the alignment. The ``d`` products
are summed by a binary tree in which each adder first aligns the operand with the smaller
exponent to the larger one by an arithmetic right shift, with ``GUARD_BITS`` extra fraction
bits kept at the leaves. The root sum is rounded once to binary32 (round to nearest, ties to
even). Every finite FP16 dot product of up to 256 terms is a normal binary32 number or zero,
so the unit needs no subnormal or overflow handling.

Error bound: each of the ``d - 1`` adders truncates (rounds toward minus infinity) by less
than one unit of ``2^(E_max - 50 - GUARD_BITS)``, where ``E_max`` is the largest exponent
``E_q + E_k`` of a non-zero product, so before the final rounding the sum is within
``(d - 1) * 2^(E_max - 50 - GUARD_BITS)`` of the exact dot product.

Inputs with exponent field 31 (infinities and NaNs) are not supported: they are treated as
finite numbers with ``E = 31``, so the score is meaningless but no other score is affected.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2, exact_log2

from golden.params import check_context, check_d


__all__ = ["GUARD_BITS", "FP16_BITS", "BaselineScoreUnit"]


FP16_BITS = 16
GUARD_BITS = 2
"""Fraction bits kept below each product's least significant bit in the adder tree."""

_PRODUCT_BITS = 22
_EXPONENT_SUM_BITS = 6
_FP32_MANTISSA_BITS = 23
_FP32_BIAS = 127
# A product m_q * m_k * 2^(E_q + E_k - 50) is a leaf value v * 2^(E - 50 - GUARD_BITS).
_LEAF_EXPONENT_OFFSET = 50 + GUARD_BITS


def _decode_fp16(bits):
    """Return ``(sign, significand, exponent, is_zero)`` expressions for FP16 ``bits``."""
    fraction, exponent_field, sign = bits[:10], bits[10:15], bits[15]
    is_normal = exponent_field != 0
    significand = Cat(fraction, is_normal)
    exponent = Mux(is_normal, exponent_field, 1)
    is_zero = ~is_normal & (fraction == 0)
    return sign, significand, exponent, is_zero


def _leading_one(value):
    """Return ``(any, index)`` expressions: whether ``value`` has a set bit, and the highest.

    A balanced tree of multiplexers, so the depth grows with ``log2(len(value))``.
    """
    if len(value) == 1:
        return value[0], Const(0, 1)
    half = 1 << (ceil_log2(len(value)) - 1)
    low_any, low_index = _leading_one(value[:half])
    high_any, high_index = _leading_one(value[half:])
    return low_any | high_any, Mux(high_any, high_index + half, low_index)


class BaselineScoreUnit(wiring.Component):
    """Score unit with FP16 keys in block RAM and ``d`` multipliers.

    Keys are written through ``key`` (one row per beat, at ``payload.addr``). A beat on
    ``query`` loads the query and starts a scan of rows ``0 .. count - 1``; the unit then
    sends one beat per row on ``score``, in row order, with ``last`` set on the final row.
    It accepts the next query once the current scan has read every row and the last row has
    left the multipliers. Scans run at one key per clock while ``score`` accepts beats;
    backpressure on ``score`` pauses the reads without losing scores.

    A key write to a row during a scan of it may or may not be seen by that scan.

    Parameters
    ----------
    d : :class:`int`
        Head dimension, one of ``golden.params.SUPPORTED_D``.
    context : :class:`int`
        Number of key rows ``T``, in ``golden.params.MIN_CONTEXT .. MAX_CONTEXT``.

    Members
    -------
    key : ``In(stream.Signature(key_layout))``
        Key writes: ``addr`` (row, ``ceil_log2(context)`` bits) and ``key`` (``d`` FP16
        values, element ``i`` in bits ``16 * i .. 16 * i + 15``). Always ready.
    query : ``In(stream.Signature(query_layout))``
        Queries: ``query`` (``d`` FP16 values) and ``count`` (rows to score; values above
        ``context`` score all rows, 0 scores none).
    score : ``Out(stream.Signature(score_layout))``
        Scores: ``score`` (binary32 bits), ``index`` (row) and ``last``.
    """
    def __init__(self, d, context):
        check_d(d)
        check_context(context)
        self.d = d
        self.context = context
        addr_bits = ceil_log2(context)
        self.key_layout = data.StructLayout({
            "addr": unsigned(addr_bits),
            "key": data.ArrayLayout(unsigned(FP16_BITS), d),
        })
        self.query_layout = data.StructLayout({
            "query": data.ArrayLayout(unsigned(FP16_BITS), d),
            "count": unsigned(bits_for(context)),
        })
        self.score_layout = data.StructLayout({
            "score": unsigned(32),
            "index": unsigned(addr_bits),
            "last": unsigned(1),
        })
        super().__init__({
            "key": In(stream.Signature(self.key_layout)),
            "query": In(stream.Signature(self.query_layout)),
            "score": Out(stream.Signature(self.score_layout)),
        })

    @property
    def tree_levels(self):
        """Adder tree depth, ``log2(d)``."""
        return exact_log2(self.d)

    @property
    def root_width(self):
        """Width of the signed root sum: ``_PRODUCT_BITS + GUARD_BITS + 1 + log2(d)``."""
        return _PRODUCT_BITS + GUARD_BITS + 1 + self.tree_levels

    @property
    def latency(self):
        """Clocks from a row read to its score entering the output FIFO.

        Read, key register, decode, multiply and leaf stages (5), two stages per tree level,
        four for the binary32 rounding.
        """
        return 5 + 2 * self.tree_levels + 4

    @property
    def keys_per_cycle(self):
        """Keys scored per clock during a scan while ``score`` is ready (steady state)."""
        return 1

    @property
    def fifo_depth(self):
        """Depth of the output FIFO: enough to keep one read per clock in flight."""
        return self.latency + 4

    def elaborate(self, platform):
        m = Module()
        d = self.d

        # Key storage: one row of d FP16 values per key.
        m.submodules.keys = keys = Memory(shape=unsigned(FP16_BITS * d), depth=self.context,
                                          init=[])
        write_port = keys.write_port()
        read_port = keys.read_port()
        m.d.comb += [
            self.key.ready.eq(1),
            write_port.addr.eq(self.key.payload.addr),
            write_port.data.eq(self.key.payload.key.as_value()),
            write_port.en.eq(self.key.valid),
        ]

        # Output FIFO. `in_flight` counts rows read and not yet sent, and a read is only
        # issued while it is below the FIFO depth, so every row read has a FIFO entry.
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=len(self.score.payload.as_value()),
                                                    depth=self.fifo_depth)
        m.d.comb += [
            self.score.payload.eq(fifo.r_data),
            self.score.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.score.ready),
        ]
        in_flight = Signal(range(self.fifo_depth + 1))

        # Scan control.
        scanning = Signal()
        addr = Signal.like(self.key.payload.addr)
        remaining = Signal(range(self.context + 1))
        issue = Signal()
        m.d.comb += issue.eq(scanning & (in_flight < self.fifo_depth))
        m.d.comb += [
            read_port.addr.eq(addr),
            read_port.en.eq(issue),
        ]

        tag_layout = data.StructLayout({"valid": 1, "index": len(addr), "last": 1})
        tags = [Signal(tag_layout, name=f"tag{stage}") for stage in range(self.latency)]
        m.d.sync += tags[0].eq(0)
        with m.If(issue):
            m.d.sync += [
                tags[0].valid.eq(1),
                tags[0].index.eq(addr),
                tags[0].last.eq(remaining == 1),
                addr.eq(addr + 1),
                remaining.eq(remaining - 1),
            ]
            with m.If(remaining == 1):
                m.d.sync += scanning.eq(0)
        for stage in range(1, self.latency):
            m.d.sync += tags[stage].eq(tags[stage - 1])

        popped = self.score.valid & self.score.ready
        with m.If(issue & ~popped):
            m.d.sync += in_flight.eq(in_flight + 1)
        with m.Elif(~issue & popped):
            m.d.sync += in_flight.eq(in_flight - 1)

        # Query registers, decoded once per query. The multiplier stage reads them for the
        # rows tagged in stages 0 to 2, so a new query waits until those stages are empty.
        query_sign = [Signal(name=f"query_sign{i}") for i in range(d)]
        query_significand = [Signal(11, name=f"query_significand{i}") for i in range(d)]
        query_exponent = [Signal(5, name=f"query_exponent{i}") for i in range(d)]
        query_zero = [Signal(name=f"query_zero{i}") for i in range(d)]
        m.d.comb += self.query.ready.eq(~scanning & ~tags[0].valid & ~tags[1].valid
                                        & ~tags[2].valid)
        with m.If(self.query.valid & self.query.ready):
            count = self.query.payload.count
            clamped = Mux(count > self.context, self.context, count)
            m.d.sync += [
                addr.eq(0),
                remaining.eq(clamped),
                scanning.eq(clamped != 0),
            ]
            for i in range(d):
                sign, significand, exponent, is_zero = _decode_fp16(self.query.payload.query[i])
                m.d.sync += [
                    query_sign[i].eq(sign),
                    query_significand[i].eq(significand),
                    query_exponent[i].eq(exponent),
                    query_zero[i].eq(is_zero),
                ]

        # Stage 1: register the key row. The DP16KD clock-to-output delay is long (5.83 ns in
        # nextpnr-0.11.1's model of speed grade 6), so no logic follows it in the same cycle.
        key_row = Signal(FP16_BITS * d)
        m.d.sync += key_row.eq(read_port.data)

        # Stage 2: decode the key row.
        key_sign = [Signal(name=f"key_sign{i}") for i in range(d)]
        key_significand = [Signal(11, name=f"key_significand{i}") for i in range(d)]
        key_exponent = [Signal(5, name=f"key_exponent{i}") for i in range(d)]
        key_zero = [Signal(name=f"key_zero{i}") for i in range(d)]
        for i in range(d):
            sign, significand, exponent, is_zero = _decode_fp16(
                key_row[FP16_BITS * i:FP16_BITS * (i + 1)])
            m.d.sync += [
                key_sign[i].eq(sign),
                key_significand[i].eq(significand),
                key_exponent[i].eq(exponent),
                key_zero[i].eq(is_zero),
            ]

        # Stage 3: d exact products m_q * m_k with exponents E_q + E_k.
        product = [Signal(_PRODUCT_BITS, name=f"product{i}") for i in range(d)]
        product_sign = [Signal(name=f"product_sign{i}") for i in range(d)]
        product_exponent = [Signal(_EXPONENT_SUM_BITS, name=f"product_exponent{i}")
                            for i in range(d)]
        for i in range(d):
            is_zero = query_zero[i] | key_zero[i]
            m.d.sync += [
                product[i].eq(query_significand[i] * key_significand[i]),
                product_sign[i].eq(query_sign[i] ^ key_sign[i]),
                product_exponent[i].eq(Mux(is_zero, 0, query_exponent[i] + key_exponent[i])),
            ]

        # Stage 4: signed leaves with guard bits.
        values, exponents = [], []
        for i in range(d):
            value = Signal(signed(_PRODUCT_BITS + GUARD_BITS + 1), name=f"leaf{i}")
            exponent = Signal(_EXPONENT_SUM_BITS, name=f"leaf_exponent{i}")
            magnitude = Cat(Const(0, GUARD_BITS), product[i])
            m.d.sync += [
                value.eq(Mux(product_sign[i], -magnitude, magnitude)),
                exponent.eq(product_exponent[i]),
            ]
            values.append(value)
            exponents.append(exponent)

        # Stages 5 ..: adder tree, two stages per level.
        for level in range(self.tree_levels):
            values, exponents = self._tree_level(m, level, values, exponents)
        root, root_exponent = values[0], exponents[0]

        # Last four stages: round the root sum to binary32.
        score_bits = self._round_to_binary32(m, root, root_exponent)

        tag = tags[-1]
        m.d.comb += [
            fifo.w_data.eq(Cat(score_bits, tag.index, tag.last)),
            fifo.w_en.eq(tag.valid),
        ]
        return m

    def _tree_level(self, m, level, values, exponents):
        """Add neighbouring pairs, each aligned to the larger exponent; two stages."""
        next_values, next_exponents = [], []
        width = len(values[0])
        for pair in range(len(values) // 2):
            a, b = values[2 * pair], values[2 * pair + 1]
            a_exponent, b_exponent = exponents[2 * pair], exponents[2 * pair + 1]
            name = f"l{level}n{pair}"

            # First stage: order the operands and compute the alignment shift. Both
            # differences are computed at once and the sign of one selects, so the stage has
            # one carry chain.
            big = Signal(signed(width), name=f"{name}_big")
            small = Signal(signed(width), name=f"{name}_small")
            shift = Signal(_EXPONENT_SUM_BITS, name=f"{name}_shift")
            exponent = Signal(_EXPONENT_SUM_BITS, name=f"{name}_exponent")
            a_minus_b = Signal(signed(_EXPONENT_SUM_BITS + 1), name=f"{name}_a_minus_b")
            b_minus_a = Signal(signed(_EXPONENT_SUM_BITS + 1), name=f"{name}_b_minus_a")
            m.d.comb += [
                a_minus_b.eq(a_exponent - b_exponent),
                b_minus_a.eq(b_exponent - a_exponent),
            ]
            a_larger = ~a_minus_b[-1]
            m.d.sync += [
                big.eq(Mux(a_larger, a, b)),
                small.eq(Mux(a_larger, b, a)),
                shift.eq(Mux(a_larger, a_minus_b, b_minus_a)),
                exponent.eq(Mux(a_larger, a_exponent, b_exponent)),
            ]

            # Second stage: arithmetic right shift (truncation toward minus infinity; a shift
            # beyond the width leaves only sign bits) and add.
            total = Signal(signed(width + 1), name=f"{name}_sum")
            total_exponent = Signal(_EXPONENT_SUM_BITS, name=f"{name}_sum_exponent")
            m.d.sync += [
                total.eq(big + (small >> shift)),
                total_exponent.eq(exponent),
            ]
            next_values.append(total)
            next_exponents.append(total_exponent)
        return next_values, next_exponents

    def _round_to_binary32(self, m, root, root_exponent):
        """Return binary32 bits of ``root * 2^(root_exponent - _LEAF_EXPONENT_OFFSET)``."""
        width = len(root)

        # Stage A: sign and magnitude.
        sign = Signal()
        magnitude = Signal(width)
        exponent_a = Signal(_EXPONENT_SUM_BITS)
        m.d.sync += [
            sign.eq(root < 0),
            magnitude.eq(Mux(root < 0, -root, root)),
            exponent_a.eq(root_exponent),
        ]

        # Stage B: position of the leading one, and the left shift that normalizes.
        leading = Signal(range(width))
        normalize_shift = Signal(range(width))
        is_zero = Signal()
        magnitude_b = Signal(width)
        sign_b = Signal()
        exponent_b = Signal(_EXPONENT_SUM_BITS)
        _, position = _leading_one(magnitude)
        m.d.sync += [
            leading.eq(position),
            normalize_shift.eq(width - 1 - position),
            is_zero.eq(magnitude == 0),
            magnitude_b.eq(magnitude),
            sign_b.eq(sign),
            exponent_b.eq(exponent_a),
        ]

        # Stage C: normalize so that the leading one is the top bit.
        normalized = Signal(width)
        leading_c = Signal(range(width))
        is_zero_c = Signal()
        sign_c = Signal()
        exponent_c = Signal(_EXPONENT_SUM_BITS)
        m.d.sync += [
            normalized.eq(magnitude_b << normalize_shift),
            leading_c.eq(leading),
            is_zero_c.eq(is_zero),
            sign_c.eq(sign_b),
            exponent_c.eq(exponent_b),
        ]

        # Stage D: round to 24 significant bits, nearest with ties to even. A carry out of the
        # rounding increment makes the significand 2^24, which the exponent absorbs.
        kept = normalized[width - 1 - _FP32_MANTISSA_BITS:]
        guard = normalized[width - 2 - _FP32_MANTISSA_BITS]
        sticky = normalized[:width - 2 - _FP32_MANTISSA_BITS].any()
        round_up = guard & (sticky | kept[0])
        rounded = Signal(_FP32_MANTISSA_BITS + 2)
        m.d.comb += rounded.eq(kept + round_up)
        carry = rounded[_FP32_MANTISSA_BITS + 1]
        fraction = Mux(carry, 0, rounded[:_FP32_MANTISSA_BITS])
        biased = (leading_c + exponent_c + carry
                  + (_FP32_BIAS - _LEAF_EXPONENT_OFFSET))
        score_bits = Signal(32)
        with m.If(is_zero_c):
            m.d.sync += score_bits.eq(0)
        with m.Else():
            m.d.sync += score_bits.eq(Cat(fraction, biased[:8], sign_c))
        return score_bits
