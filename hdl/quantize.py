"""Quantization of a transformed key into the row that the index SRAM stores.

This is the last step of the key write path: it follows the transform and the norm.
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.numerics import BOUNDARY_FRAC_BITS

from .config import check_config
from .constmul import ConstMul, const_mul_adders, const_mul_depth, const_mul_latency
from .layouts import meta_layout, pack, transformed_vector_layout

__all__ = ["quantizer_input_layout", "quantizer_output_layout", "Quantizer"]


def quantizer_input_layout(config):
    """Payload of :class:`Quantizer`'s input: a transformed vector, its norm and its command."""
    dp = check_config(config).dp
    return data.StructLayout({
        "meta": meta_layout(config),
        "y": transformed_vector_layout(config),
        "exp": unsigned(dp.exp_width),
        "nan": unsigned(1),
        "norm": unsigned(dp.norm_width),
    })


def quantizer_output_layout(config):
    """Payload of :class:`Quantizer`'s output: the command and the packed row."""
    dp = check_config(config).dp
    return data.StructLayout({
        "meta": meta_layout(config),
        "row": unsigned(dp.row_width),
    })


def _count_ones(bits):
    """Return the number of set ``bits`` as a balanced tree of adders."""
    while len(bits) > 1:
        paired = [bits[k] + bits[k + 1] for k in range(0, len(bits) - 1, 2)]
        if len(bits) % 2:
            paired.append(bits[-1])
        bits = paired
    return bits[0]


class Quantizer(wiring.Component):
    """Quantizes a transformed key into its SRAM row.

    The row equals ``golden.bitexact.pack_rows(encode_keys(...))`` when ``y``, ``norm``, ``exp``
    and ``nan`` are those of the golden model. Coordinate ``i`` gets the code
    ``(sign_i << (bits - 1)) | mag_i``, where ``sign_i = y_i < 0`` and ``mag_i`` counts the
    positive boundaries ``j`` with ``(|y_i| << BOUNDARY_FRAC_BITS) > norm * Gamma_j``. For
    ``bits == 1`` there are no boundaries and the code is the sign alone. The codes sit at bits
    ``[i * bits, (i + 1) * bits)`` of the row, and ``norm``, ``exp`` and ``nan`` at the fields of
    ``dp.row_fields()``.

    The codebook is symmetric, so comparing ``|y_i|`` with the ``2**(bits-1) - 1`` positive
    boundaries replaces comparing ``y_i`` with all ``2**bits - 1`` boundaries. That halves the
    comparators, rounded down. ``|y_i|`` costs no adder: a comparator takes the one's
    complement of a negative ``y_i`` and makes up the missing 1 with the sign bit.

    The thresholds ``t_j = norm * Gamma_j`` are constant multiplications by shifts and adders
    (:class:`~hdl.constmul.ConstMul`). They are computed once per key, in
    :attr:`threshold_cycles` cycles of their own, and registered. The comparators read only
    ``floor(t_j / 2**16)``. For an integer ``|y_i|``, ``|y_i| * 2**16 > t_j`` is true exactly
    when ``|y_i| > floor(t_j / 2**16)``, so they need no fractional bits.

    A register follows every ``threshold_levels_per_stage`` adder levels of a product tree. The
    largest 4-bit constant has 9 canonical signed digits, so its tree has 4 levels. In ECP5
    builds of d = 64, bits = 4, write_lanes = 1 (LFE5U-25F, nextpnr-ecp5 through
    ``fpga.flow.run_build``), the unit reached 95 MHz with whole trees in one cycle, where a
    tree was the longest path, and 130 MHz with the default of 2 levels per stage.

    ``write_lanes`` coordinates are compared per cycle, for ``d / write_lanes`` cycles. The unit
    processes one key at a time: ``i.ready`` is high only while it is idle, and the row stays in
    the output register until ``o.ready``. From the cycle a key is accepted to the first cycle
    of ``o.valid`` there are :attr:`latency_cycles` cycles. The next key can be accepted in the
    cycle after the output transfer. Queries are quantized like writes, and ``meta`` passes
    through unchanged.

    Parameters
    ----------
    config : MacroConfig
        The macro. ``d``, ``bits``, ``write_lanes`` and ``config.dp`` are used.
    threshold_levels_per_stage : int or None
        Adder levels of a threshold product between two registers, at least 1. None puts each
        whole product into one cycle. Fewer levels raise Fmax and add latency.

    Members
    -------
    i : In(stream.Signature(quantizer_input_layout(config)))
        Transformed vectors ``y = H diag(s) a`` with the norm, block exponent and NaN flag.
    o : Out(stream.Signature(quantizer_output_layout(config)))
        The command and the packed row of ``dp.row_width`` bits.
    """

    def __init__(self, config, *, threshold_levels_per_stage=2):
        self._config = check_config(config)
        levels = threshold_levels_per_stage
        if levels is not None:
            if isinstance(levels, bool) or not isinstance(levels, int):
                raise TypeError(f"threshold_levels_per_stage must be a positive integer or None, "
                                f"not {levels!r}")
            if levels < 1:
                raise ValueError(f"threshold_levels_per_stage must be a positive integer or None, "
                                 f"not {levels!r}")
        self._threshold_levels_per_stage = levels
        super().__init__({
            "i": In(stream.Signature(quantizer_input_layout(config))),
            "o": Out(stream.Signature(quantizer_output_layout(config))),
        })

    @property
    def config(self):
        return self._config

    @property
    def compare_cycles(self):
        """Cycles of the comparison phase, ``d / write_lanes``."""
        return self._config.d // self._config.write_lanes

    def _threshold_levels(self, gamma):
        """Return the adder levels per stage of the product by ``gamma``."""
        if self._threshold_levels_per_stage is None:
            return max(1, const_mul_depth(gamma))
        return self._threshold_levels_per_stage

    @property
    def threshold_cycles(self):
        """Cycles of the threshold phase: the largest :attr:`ConstMul.latency`, 0 for one bit."""
        return max((const_mul_latency(gamma, self._threshold_levels(gamma))
                    for gamma in self._config.dp.boundary_constants), default=0)

    @property
    def latency_cycles(self):
        """Cycles from accepting a key to ``o.valid``, ``threshold_cycles + d / write_lanes + 1``.

        With the default of 2 levels per stage, ``threshold_cycles`` is 2 for every supported
        codebook with ``bits > 1``, and 0 for ``bits == 1``, which has no thresholds.
        """
        return self.threshold_cycles + self.compare_cycles + 1

    @property
    def comparators_per_coordinate(self):
        """Magnitude comparators per coordinate, ``2**(bits-1) - 1``."""
        return len(self._config.dp.boundary_constants)

    @property
    def comparators(self):
        """Magnitude comparators instantiated, ``write_lanes * (2**(bits-1) - 1)``."""
        return self._config.write_lanes * self.comparators_per_coordinate

    @property
    def threshold_adders(self):
        """Adders and subtractors of the constant multiplications ``norm * Gamma_j``."""
        return sum(const_mul_adders(gamma) for gamma in self._config.dp.boundary_constants)

    def elaborate(self, platform):
        m = Module()

        config = self._config
        dp = config.dp
        lanes = config.write_lanes
        gammas = dp.boundary_constants

        # Payload registers have no reset: the state machine decides when they count, and
        # leaving them out keeps the reset net's fan-out small.
        meta = Signal(meta_layout(config), reset_less=True)
        y = Signal(transformed_vector_layout(config), reset_less=True)
        exp = Signal(dp.exp_width, reset_less=True)
        nan = Signal(reset_less=True)
        norm = Signal(dp.norm_width, reset_less=True)
        codes = Signal(dp.code_width, reset_less=True)
        # Cycles left in the threshold or comparison phase after the current one; not needed
        # when each phase takes a single cycle.
        phase_cycles = max(self.threshold_cycles, self.compare_cycles)
        count = Signal(range(phase_cycles)) if phase_cycles > 1 else None

        # The multipliers run freely. Their input, the norm register, changes only when a key
        # is accepted, so their outputs are valid threshold_cycles cycles later.
        thresholds = []
        for j, gamma in enumerate(gammas):
            mul = ConstMul(unsigned(dp.norm_width), gamma, levels_per_stage=self._threshold_levels(gamma))
            m.submodules[f"threshold_{j}"] = mul
            m.d.comb += mul.i.eq(norm)
            thresholds.append(mul.o[BOUNDARY_FRAC_BITS:])

        fields = {"codes": codes, "norm": norm, "exp": exp, "nan": nan}
        row = []
        for name, (lsb, width) in sorted(dp.row_fields().items(), key=lambda item: item[1][0]):
            if lsb != len(Cat(*row)):
                raise AssertionError(f"row field {name} does not follow the previous field")
            row.append(fields[name][:width])
        m.d.comb += self.o.p.eq(pack(self.o.p.shape(), meta=meta, row=Cat(*row)))

        lane_codes = []
        for lane in range(lanes):
            coordinate = y[lane]
            sign = coordinate[-1]
            if gammas:
                # |y| - sign by XOR alone: y for y >= 0, and ~y = -y - 1 for y < 0. Then
                # |y| > t is 2 * (|y| - sign) + sign > 2 * t + 1 - sign, one carry chain per
                # comparator with no adder for |y| in front of it.
                below_magnitude = coordinate.as_unsigned()[:-1] ^ sign.replicate(dp.y_width - 1)
                magnitude_key = Cat(sign, below_magnitude)
                above = [magnitude_key > Cat(~sign, threshold) for threshold in thresholds]
                level = _count_ones(above)
                lane_codes.append(Cat(level[:dp.mag_code_bits], sign))
            else:
                lane_codes.append(sign)

        # The vector shifts down by write_lanes coordinates per cycle, so lane l always reads
        # element l. The codes enter at the top and reach bit 0 after d / write_lanes cycles.
        y_bits = y.as_value()
        y_next = y_bits[lanes * dp.y_width:]
        codes_next = Cat(codes[lanes * dp.bits:], *lane_codes)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                # The registers follow the input while idle, so their load enable is the state
                # alone, not the input's valid: a shorter path to thousands of flip-flops.
                m.d.sync += [
                    meta.eq(self.i.p.meta),
                    y.eq(self.i.p.y),
                    exp.eq(self.i.p.exp),
                    nan.eq(self.i.p.nan),
                    norm.eq(self.i.p.norm),
                ]
                with m.If(self.i.valid):
                    if gammas:
                        self._start_phase(m, count, self.threshold_cycles)
                        m.next = "THRESHOLD"
                    else:
                        self._start_phase(m, count, self.compare_cycles)
                        m.next = "COMPARE"

            if gammas:
                with m.State("THRESHOLD"):
                    with self._phase_done(m, count):
                        self._start_phase(m, count, self.compare_cycles)
                        m.next = "COMPARE"

            with m.State("COMPARE"):
                m.d.sync += [
                    y.eq(y_next),
                    codes.eq(codes_next),
                ]
                with self._phase_done(m, count):
                    m.next = "DONE"

            with m.State("DONE"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"

        return m

    @staticmethod
    def _start_phase(m, count, cycles):
        if count is not None:
            m.d.sync += count.eq(cycles - 1)

    @staticmethod
    def _phase_done(m, count):
        """Count down one cycle of a phase; return the condition block of its last cycle."""
        if count is None:
            return m.If(1)
        m.d.sync += count.eq(count - 1)
        return m.If(count == 0)
