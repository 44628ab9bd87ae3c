"""Table builder: the per-query products of the transformed query and the centroids."""

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.numerics import CENTROID_FRAC_BITS

from .constmul import ConstMul, const_mul_depth
from .hadamard import hadamard_side_layout
from .layouts import transformed_vector_layout


def table_layout(config):
    """``d`` rows of ``2**(bits-1)`` signed entries ``P[i][m]``."""
    dp = config.dp
    return data.ArrayLayout(data.ArrayLayout(signed(dp.table_width), dp.levels), config.d)


def scan_command_layout(config):
    """What the score unit needs besides the table to score one query."""
    return data.StructLayout({
        "first": unsigned(config.slot_width),
        "last": unsigned(config.slot_width),
        "bad": unsigned(1),
        "exp": unsigned(config.dp.exp_width),
        "nan": unsigned(1),
    })


class TableBuilder(wiring.Component):
    """Builds ``P[i][m] = (y_i * K_m + 2**11) >> 12`` for every coordinate and positive centroid.

    The centroids are design-time constants and the codebook is symmetric, so each entry is a
    constant multiplication by one of the ``2**(bits-1)`` positive centroid constants ``K_m``
    (shift-and-add, see :mod:`hdl.constmul`); the sign of a code is applied when the entry is
    read. ``table_lanes`` coordinates enter the multipliers per cycle, so the table takes
    ``d / table_lanes`` cycles plus the multiplier pipeline.

    The table is a shift register; it changes only while a build runs, and a build starts only
    while ``in_use`` is low, so the score unit reads a stable table during its scan.

    Members
    -------
    i : In(stream)
        A transformed query ``{side, y}`` from the Hadamard engine.
    o : Out(stream)
        ``{first, last, bad, exp, nan}``: the scan command, valid once the table is complete.
    table : Out(table_layout)
        The table of the last query built.
    in_use : In(1)
        High while the score unit reads the table.
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "side": hadamard_side_layout(config), "y": transformed_vector_layout(config)}))),
            "o": Out(stream.Signature(scan_command_layout(config))),
            "table": Out(table_layout(config)),
            "in_use": In(1),
        })

    @property
    def product_latency(self):
        """Clocks from a coordinate entering the multipliers to its table entries."""
        # The deepest multiplier (one register per adder level) sets the pace; one more
        # register rounds and shifts.
        return max(max(1, const_mul_depth(k)) for k in self._config.dp.centroid_constants) + 1

    @property
    def latency_cycles(self):
        """Cycles from accepting a query to presenting its scan command."""
        return self._config.d // self._config.table_lanes + self.product_latency

    def elaborate(self, platform):
        m = Module()
        config = self._config
        dp = config.dp
        d, lanes, levels = config.d, config.table_lanes, dp.levels
        chunks = d // lanes
        width = dp.table_width

        y = [Signal(signed(dp.y_width), name=f"y{i}", reset_less=True) for i in range(d)]
        command = Signal(scan_command_layout(config))
        feeding = Signal()
        fed = Signal(range(chunks + 1))
        received = Signal(range(chunks + 1))
        building = Signal()
        done = Signal()

        m.d.comb += [
            self.i.ready.eq(~building & ~done & ~self.in_use),
            self.o.valid.eq(done),
            self.o.payload.eq(command),
        ]

        # While idle the command and the vector follow the input, so their load enable
        # depends on registers only. A transfer then starts the build on what was just loaded.
        with m.If(~building & ~done):
            side = self.i.payload.side
            m.d.sync += [
                command.first.eq(side.meta.slot),
                command.last.eq(side.meta.last),
                command.bad.eq(side.meta.bad),
                command.exp.eq(side.exp),
                command.nan.eq(side.nan),
            ]
            for i in range(d):
                m.d.sync += y[i].eq(self.i.payload.y[i])
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [building.eq(1), feeding.eq(1), fed.eq(0), received.eq(0)]

        with m.If(feeding):
            m.d.sync += fed.eq(fed + 1)
            for i in range(d - lanes):
                m.d.sync += y[i].eq(y[i + lanes])
            with m.If(fed == chunks - 1):
                m.d.sync += feeding.eq(0)

        # A valid bit travels beside the coordinates through the multiplier pipeline.
        latency = self.product_latency
        valid = [Signal(name=f"valid{k}") for k in range(latency)]
        m.d.sync += valid[0].eq(feeding)
        for k in range(1, latency):
            m.d.sync += valid[k].eq(valid[k - 1])

        half = 1 << (CENTROID_FRAC_BITS - 1)
        entries = []
        for lane in range(lanes):
            row = []
            for level, k in enumerate(dp.centroid_constants):
                mul = ConstMul(signed(dp.y_width), k)
                m.submodules[f"mul_{lane}_{level}"] = mul
                m.d.comb += mul.i.eq(y[lane])
                if mul.latency != max(1, const_mul_depth(k)):
                    raise AssertionError(f"unexpected latency of the product by {k}")
                product = mul.o
                for stage in range(latency - 1 - mul.latency):
                    delayed = Signal.like(product, name=f"delay_{lane}_{level}_{stage}")
                    m.d.sync += delayed.eq(product)
                    product = delayed
                entry = Signal(signed(width), name=f"entry_{lane}_{level}", reset_less=True)
                m.d.sync += entry.eq((product + half) >> CENTROID_FRAC_BITS)
                row.append(entry)
            entries.append(row)

        # One plain signal contains the whole table, sliced by bit positions. Slicing the wide
        # port view entry by entry makes elaboration slow at large d. Separate entry signals
        # concatenated into the port make Icarus slow, because every entry that changes
        # re-sends the whole table.
        row_width = levels * width
        regs = Signal(d * row_width, reset_less=True)
        m.d.comb += self.table.eq(regs)
        with m.If(valid[-1]):
            m.d.sync += received.eq(received + 1)
            # Rows move down by `lanes` and the new rows enter at the top.
            m.d.sync += regs.eq(Cat(regs[lanes * row_width:],
                                    *(entry for row in entries for entry in row)))
            with m.If(received == chunks - 1):
                m.d.sync += [building.eq(0), done.eq(1)]

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += done.eq(0)
        return m
