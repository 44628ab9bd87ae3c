"""Query table: the builder that computes it and the memories that hold it."""

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.numerics import CENTROID_FRAC_BITS

from .constmul import ConstMul, const_mul_depth
from .hadamard import hadamard_side_layout
from .layouts import pack, transformed_vector_layout


def table_write_layout(config):
    """Return the layout of one builder write: entry ``level`` of the coordinates of ``chunk``.

    Lane ``j`` of ``data`` belongs to coordinate ``chunk * table_lanes + j``.
    """
    dp = config.dp
    lanes = config.table_lanes
    return data.StructLayout({
        "chunk": unsigned(ceil_log2(config.d // lanes)),
        "level": unsigned(dp.mag_code_bits),
        "data": data.ArrayLayout(signed(dp.table_width), lanes),
    })


def table_address_layout(config):
    """Return the layout of the read addresses: the magnitude bits of each coordinate's code."""
    return data.ArrayLayout(unsigned(config.dp.mag_code_bits), config.d)


def table_data_layout(config):
    """Return the layout of the read data: one table entry per coordinate."""
    return data.ArrayLayout(signed(config.dp.table_width), config.d)


def scan_command_layout(config):
    """What the score unit needs besides the table to score one query."""
    return data.StructLayout({
        "first": unsigned(config.slot_width),
        "last": unsigned(config.slot_width),
        "bad": unsigned(1),
        "exp": unsigned(config.dp.exp_width),
        "nan": unsigned(1),
    })


def check_table(table, config):
    """Return ``table`` as ``d`` lists of ``levels`` integers that fit ``table_width`` bits."""
    dp = config.dp
    rows = [list(row) for row in table]
    if len(rows) != config.d or any(len(row) != dp.levels for row in rows):
        raise ValueError(f"table must have {config.d} rows of {dp.levels} entries")
    low, high = -(1 << (dp.table_width - 1)), (1 << (dp.table_width - 1)) - 1
    for i, row in enumerate(rows):
        for level, entry in enumerate(row):
            if isinstance(entry, bool) or not isinstance(entry, int) or not low <= entry <= high:
                raise ValueError(f"table entry [{i}][{level}] must be an integer in "
                                 f"{low}..{high}, not {entry!r}")
    return rows


class TableMemory(wiring.Component):
    """The table ``P[i][m]``: one memory of ``levels`` entries for each coordinate ``i``.

    Each memory has one write port and one asynchronous read port, so the score unit reads all
    ``d`` coordinates in the same cycle, each at the address its code selects. With at most
    eight entries (``bits <= 4``) a memory fits the 16-word distributed RAM of an FPGA slice
    (``TRELLIS_DPR16X4`` on ECP5, four bits each), and reading it costs no multiplexer. In
    registers, with an 8-to-1 multiplexer per bit, the table took about four LUTs and eight
    flip-flops per entry bit.

    Members
    -------
    w : In(stream), always ready
        A :func:`table_write_layout` write: memory ``chunk * table_lanes + j`` takes
        ``data[j]`` at address ``level``.
    read_addr : In(table_address_layout)
    read_data : Out(table_data_layout)
        Entry ``read_addr[i]`` of memory ``i``, in the same cycle.

    Parameters
    ----------
    init : ``d`` sequences of ``levels`` integers, or ``None``
        Initial contents (zero when ``None``), for simulations that start with a table.
    """

    def __init__(self, config, *, init=None):
        self._config = config
        self._init = None if init is None else check_table(init, config)
        super().__init__({
            "w": In(stream.Signature(table_write_layout(config), always_ready=True)),
            "read_addr": In(table_address_layout(config)),
            "read_data": Out(table_data_layout(config)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        dp = config.dp
        lanes = config.table_lanes
        outputs = []
        for i in range(config.d):
            init = [] if self._init is None else self._init[i]
            mem = memory.Memory(shape=signed(dp.table_width), depth=dp.levels, init=init)
            m.submodules[f"mem{i}"] = mem
            write = mem.write_port()
            read = mem.read_port(domain="comb")
            m.d.comb += [
                write.addr.eq(self.w.payload.level),
                write.data.eq(self.w.payload.data[i % lanes]),
                write.en.eq(self.w.valid & (self.w.payload.chunk == i // lanes)),
                read.addr.eq(self.read_addr[i]),
            ]
            outputs.append(read.data)
        # One assignment drives the whole port (see layouts.pack).
        m.d.comb += self.read_data.eq(Cat(*outputs))
        return m


class TableBuilder(wiring.Component):
    """Builds ``P[i][m] = (y_i * K_m + 2**11) >> 12`` for every coordinate and positive centroid.

    The centroids are design-time constants and the codebook is symmetric, so each entry is a
    constant multiplication by one of the ``levels = 2**(bits-1)`` positive centroid constants
    ``K_m`` (shift-and-add, see :mod:`hdl.constmul`); the sign of a code is applied when the
    entry is read. ``table_lanes`` coordinates enter the multipliers together and stay for
    ``levels`` cycles, during which the builder writes one entry of each per cycle into
    :class:`TableMemory`, whose memories take one write per cycle. A build therefore takes
    ``d / table_lanes * levels`` cycles plus the multiplier pipeline.

    The table changes only while a build runs, and a build starts only while ``in_use`` is low,
    so the score unit reads a stable table during its scan.

    Members
    -------
    i : In(stream)
        A transformed query ``{side, y}`` from the Hadamard engine.
    o : Out(stream)
        ``{first, last, bad, exp, nan}``: the scan command, valid once the table is complete.
    w : Out(stream), always ready
        Writes into the :class:`TableMemory`.
    in_use : In(1)
        High while the score unit reads the table.
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "side": hadamard_side_layout(config), "y": transformed_vector_layout(config)}))),
            "o": Out(stream.Signature(scan_command_layout(config))),
            "w": Out(stream.Signature(table_write_layout(config), always_ready=True)),
            "in_use": In(1),
        })

    @property
    def product_latency(self):
        """Clocks from a coordinate entering the multipliers to its table entries."""
        # The deepest multiplier (one register per adder level) sets the pace; one more
        # register rounds and shifts.
        return max(max(1, const_mul_depth(k)) for k in self._config.dp.centroid_constants) + 1

    @property
    def write_cycles(self):
        """Cycles of writes per table: ``d / table_lanes * levels``."""
        config = self._config
        return config.d // config.table_lanes * config.dp.levels

    @property
    def latency_cycles(self):
        """Cycles from accepting a query to presenting its scan command.

        The sum of :attr:`write_cycles`, :attr:`product_latency` and one for the write register.
        """
        return self.write_cycles + self.product_latency + 1

    def elaborate(self, platform):
        m = Module()
        config = self._config
        dp = config.dp
        d, lanes, levels = config.d, config.table_lanes, dp.levels
        chunks = d // lanes
        width = dp.table_width

        y = [Signal(signed(dp.y_width), name=f"y{i}", reset_less=True) for i in range(d)]
        command = Signal(scan_command_layout(config), reset_less=True)
        feeding = Signal()
        chunk = Signal(range(chunks))
        level = Signal(range(levels))
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
            m.d.sync += [building.eq(1), feeding.eq(1), chunk.eq(0), level.eq(0)]

        # Each chunk of coordinates stays at the multipliers for `levels` cycles, one per entry.
        last_step = Signal()
        m.d.comb += last_step.eq((chunk == chunks - 1) & (level == levels - 1))
        with m.If(feeding):
            m.d.sync += level.eq(level + 1)
            with m.If(level == levels - 1):
                m.d.sync += [level.eq(0), chunk.eq(chunk + 1)]
                for i in range(d - lanes):
                    m.d.sync += y[i].eq(y[i + lanes])
            with m.If(last_step):
                m.d.sync += feeding.eq(0)

        # A token {valid, chunk, level, last} travels beside the coordinates through the
        # multiplier pipeline and names the entry to write when the products arrive.
        token_layout = data.StructLayout({"valid": 1, "chunk": range(chunks),
                                          "level": range(levels), "last": 1})
        latency = self.product_latency
        tokens = [Signal(token_layout, name=f"token{k}") for k in range(latency)]
        m.d.sync += [tokens[0].valid.eq(feeding), tokens[0].chunk.eq(chunk),
                     tokens[0].level.eq(level), tokens[0].last.eq(feeding & last_step)]
        for k in range(1, latency):
            m.d.sync += tokens[k].eq(tokens[k - 1])
        token = tokens[-1]

        half = 1 << (CENTROID_FRAC_BITS - 1)
        selected = []
        for lane in range(lanes):
            row = []
            for index, k in enumerate(dp.centroid_constants):
                mul = ConstMul(signed(dp.y_width), k)
                m.submodules[f"mul_{lane}_{index}"] = mul
                m.d.comb += mul.i.eq(y[lane])
                if mul.latency != max(1, const_mul_depth(k)):
                    raise AssertionError(f"unexpected latency of the product by {k}")
                product = mul.o
                for stage in range(latency - 1 - mul.latency):
                    delayed = Signal.like(product, name=f"delay_{lane}_{index}_{stage}")
                    m.d.sync += delayed.eq(product)
                    product = delayed
                entry = Signal(signed(width), name=f"entry_{lane}_{index}", reset_less=True)
                m.d.sync += entry.eq((product + half) >> CENTROID_FRAC_BITS)
                row.append(entry)
            choice = Signal(signed(width), name=f"choice_{lane}")
            if levels == 1:
                m.d.comb += choice.eq(row[0])
            else:
                with m.Switch(token.level):
                    for index, entry in enumerate(row):
                        with m.Case(index):
                            m.d.comb += choice.eq(entry)
            selected.append(choice)

        # The write register: one entry per lane and cycle into the table memory.
        written_last = Signal()
        m.d.sync += [
            self.w.valid.eq(token.valid),
            self.w.payload.eq(pack(self.w.payload.shape(), chunk=token.chunk, level=token.level,
                                   data=Cat(*selected))),
            written_last.eq(token.valid & token.last),
        ]
        with m.If(written_last):
            m.d.sync += [building.eq(0), done.eq(1)]

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += done.eq(0)
        return m
