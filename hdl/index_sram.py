"""Index SRAM: one row per slot with the key's codes, norm, block exponent and NaN flag."""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["row_write_layout", "DP16KD_MODES", "ECP5_GROUP_BLOCKS", "dp16kd_mode", "IndexSRAM"]


DP16KD_MODES = ((18, 1024, 4), (9, 2048, 3), (4, 4096, 2), (2, 8192, 1), (1, 16384, 0))
"""ECP5 DP16KD port configurations as ``(data bits, depth, address shift)``.

A port of ``data bits`` width reads address ``a`` on the pins ``AD13..AD0`` as ``a << shift``
(in the 18-bit mode ``AD1`` and ``AD0`` are byte enables), and uses the data pins from bit 0 up.
"""


def row_write_layout(config):
    """A row to store and its slot."""
    return data.StructLayout({"slot": unsigned(config.slot_width),
                              "row": unsigned(config.dp.row_width)})


def dp16kd_mode(context):
    """Return the widest DP16KD mode ``(data bits, depth, shift)`` deep enough for ``context`` rows.

    Returns ``None`` above 16384 rows, which would need several blocks per column.
    """
    for mode in DP16KD_MODES:
        if context <= mode[1]:
            return mode
    return None


ECP5_GROUP_BLOCKS = 4
"""DP16KD blocks that share one copy of the registered write enable and addresses."""


def _trellis_ff(m, name, value):
    """Return ``value`` registered by an ECP5 ``TRELLIS_FF`` instance, initialised to 0.

    An instance, unlike an Amaranth register, is not merged by Yosys with another register of
    the same input, so each call makes a copy of its own.
    """
    q = Signal(name=name)
    m.submodules[f"{name}_ff"] = Instance(
        "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
        p_REGSET="RESET", p_SRMODE="LSR_OVER_CE",
        i_CLK=ClockSignal("sync"), i_LSR=Const(0), i_CE=Const(1), i_DI=value, o_Q=q)
    return q


def _is_ecp5(platform):
    return getattr(platform, "family", None) == "ecp5"


class IndexSRAM(wiring.Component):
    """``context`` rows of ``row_width`` bits with one write port and one read port.

    Both ports are registered on their way in: a write accepted in one cycle reaches the
    memory at the end of the next, and a read takes three cycles (input register, the
    memory's own address register, output register), on every target, so the score unit has
    the same timing everywhere. The input registers cut the paths from the control logic that
    decides a write, and from the score unit's slot counter, to the memory's pins, which on
    an FPGA are spread over the device.

    Without a platform, or on one that is not ECP5, the memory is an
    :class:`amaranth.lib.memory.Memory` followed by a fabric register, which FPGA tools map to
    block RAM and flip-flops. On ECP5 (up to 16384 rows) the index SRAM instantiates DP16KD
    blocks itself, one column of the row per block, with the block's internal output register
    enabled (``REGMODE_B = "OUTREG"``). Yosys 0.70 never enables that register when it maps a
    memory, and without it the block's clock-to-output time (5.83 ns at speed grade 6 in
    nextpnr 0.11.1) takes most of the clock period. Each group of :data:`ECP5_GROUP_BLOCKS`
    blocks gets its own copy of the write enable, the write address and the read address,
    so that no register drives a pin of every block. The copies are ``TRELLIS_FF`` instances,
    which Yosys does not merge. Rows start as zero, which reads as a zero
    key (score +0.0).

    Members
    -------
    w : In(stream)
        ``{slot, row}``; accepted while ``hold`` is low.
    hold : In(1)
        Delays writes while a scan reads the memory.
    read_addr : In(slot_width)
    read_data : Out(row_width)
        The row at ``read_addr`` of :attr:`latency_cycles` cycles earlier.
    """

    latency_cycles = 3
    """Cycles from ``read_addr`` to ``read_data``."""

    write_delay_cycles = 1
    """Cycles from accepting a write to the clock edge that stores it."""

    def __init__(self, config):
        self._config = config
        super().__init__({
            "w": In(stream.Signature(row_write_layout(config))),
            "hold": In(1),
            "read_addr": In(config.slot_width),
            "read_data": Out(config.dp.row_width),
        })

    def dp16kd_blocks(self):
        """Return the DP16KD blocks the ECP5 form uses, or 0 when it falls back to a Memory."""
        mode = dp16kd_mode(self._config.context)
        if mode is None:
            return 0
        return -(-self._config.dp.row_width // mode[0])

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.w.ready.eq(~self.hold)
        write_en = Signal()
        m.d.comb += write_en.eq(self.w.valid & ~self.hold)
        if _is_ecp5(platform) and dp16kd_mode(self._config.context) is not None:
            self._elaborate_dp16kd(m, write_en)
        else:
            self._elaborate_memory(m, write_en)
        return m

    def _elaborate_memory(self, m, write_en):
        config = self._config
        m.submodules.memory = mem = memory.Memory(
            shape=unsigned(config.dp.row_width), depth=config.context, init=[])
        write = mem.write_port()
        read = mem.read_port()
        en = Signal(name="write_en")
        # The data registers need no reset: the write enable decides whether they count.
        slot = Signal(config.slot_width, name="write_slot", reset_less=True)
        row = Signal(config.dp.row_width, name="write_row", reset_less=True)
        addr = Signal(config.slot_width, name="read_slot", reset_less=True)
        m.d.sync += [en.eq(write_en), slot.eq(self.w.payload.slot), row.eq(self.w.payload.row),
                     addr.eq(self.read_addr)]
        m.d.comb += [
            write.addr.eq(slot),
            write.data.eq(row),
            write.en.eq(en),
            read.addr.eq(addr),
        ]
        m.d.sync += self.read_data.eq(read.data)

    def _elaborate_dp16kd(self, m, write_en):
        config = self._config
        width, _, shift = dp16kd_mode(config.context)
        row_width = config.dp.row_width
        write_addr = Signal(14, name="dp16kd_write_addr")
        read_addr = Signal(14, name="dp16kd_read_addr")
        m.d.comb += [write_addr.eq(self.w.payload.slot << shift),
                     read_addr.eq(self.read_addr << shift)]
        if width == 18:
            # AD1 and AD0 are the byte enables of the 18-bit mode: write both bytes.
            m.d.comb += write_addr[:2].eq(0b11)

        outputs = []
        for column in range(self.dp16kd_blocks()):
            low = column * width
            bits = min(width, row_width - low)
            if column % ECP5_GROUP_BLOCKS == 0:
                group = column // ECP5_GROUP_BLOCKS
                group_write_en = _trellis_ff(m, f"write_en_g{group}", write_en)
                group_write_addr = Cat(*(_trellis_ff(m, f"write_addr_g{group}_{pin}", bit)
                                         for pin, bit in enumerate(write_addr)))
                group_read_addr = Cat(*(_trellis_ff(m, f"read_addr_g{group}_{pin}", bit)
                                        for pin, bit in enumerate(read_addr)))
            written = Signal(18, name=f"dp16kd{column}_di", reset_less=True)
            read = Signal(18, name=f"dp16kd{column}_do")
            m.d.sync += written.eq(self.w.payload.row[low:low + bits])
            ports = {
                "p_DATA_WIDTH_A": width, "p_DATA_WIDTH_B": width,
                "p_REGMODE_A": "NOREG", "p_REGMODE_B": "OUTREG",
                "p_RESETMODE": "SYNC", "p_ASYNC_RESET_RELEASE": "SYNC",
                "p_CSDECODE_A": "0b000", "p_CSDECODE_B": "0b000",
                "p_WRITEMODE_A": "NORMAL", "p_WRITEMODE_B": "NORMAL",
                "p_GSR": "DISABLED",
                "i_CLKA": ClockSignal("sync"), "i_CEA": Const(1), "i_OCEA": Const(1),
                "i_WEA": group_write_en, "i_RSTA": Const(0),
                "i_CLKB": ClockSignal("sync"), "i_CEB": Const(1), "i_OCEB": Const(1),
                "i_WEB": Const(0), "i_RSTB": Const(0),
            }
            for pin in range(3):
                ports[f"i_CSA{pin}"] = Const(0)
                ports[f"i_CSB{pin}"] = Const(0)
            for pin in range(14):
                ports[f"i_ADA{pin}"] = group_write_addr[pin]
                ports[f"i_ADB{pin}"] = group_read_addr[pin]
            for pin in range(18):
                ports[f"i_DIA{pin}"] = written[pin]
                ports[f"i_DIB{pin}"] = Const(0)
                ports[f"o_DOA{pin}"] = Signal(name=f"dp16kd{column}_doa{pin}")
                ports[f"o_DOB{pin}"] = read[pin]
            m.submodules[f"dp16kd{column}"] = Instance("DP16KD", **ports)
            outputs.append(read[:bits])
        m.d.comb += self.read_data.eq(Cat(*outputs))
