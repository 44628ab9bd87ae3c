"""Index SRAM: one row per slot with the key's codes, norm, block exponent and NaN flag."""

from amaranth.hdl import Module
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.hdl import unsigned


def row_write_layout(config):
    """A row to store and its slot."""
    return data.StructLayout({"slot": unsigned(config.slot_width),
                              "row": unsigned(config.dp.row_width)})


class IndexSRAM(wiring.Component):
    """``context`` rows of ``row_width`` bits in one :class:`amaranth.lib.memory.Memory`.

    One synchronous write port and one synchronous read port, so FPGA tools map it to block
    RAM (DP16KD on ECP5). Rows start as zero, which reads as a zero key (score +0.0).

    Members
    -------
    w : In(stream)
        ``{slot, row}``; accepted while ``hold`` is low.
    hold : In(1)
        Delays writes while a scan reads the memory.
    read_addr : In(slot_width)
    read_data : Out(row_width)
        The row at ``read_addr`` of the previous cycle.
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "w": In(stream.Signature(row_write_layout(config))),
            "hold": In(1),
            "read_addr": In(config.slot_width),
            "read_data": Out(config.dp.row_width),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        m.submodules.memory = mem = memory.Memory(
            shape=unsigned(config.dp.row_width), depth=config.context, init=[])
        write = mem.write_port()
        read = mem.read_port()
        m.d.comb += [
            self.w.ready.eq(~self.hold),
            write.addr.eq(self.w.payload.slot),
            write.data.eq(self.w.payload.row),
            write.en.eq(self.w.valid & ~self.hold),
            read.addr.eq(self.read_addr),
            self.read_data.eq(read.data),
        ]
        return m
