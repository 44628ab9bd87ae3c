"""The AXELRAM macro: key writes in, queries in, scores out.

Data flow, one file per step::

    write/query beats -> collect -> convert -> norm -> hadamard -+-> quantize -> index_sram
                                                                 +-> table -> score -> scores

The table builder writes each query's table into the table memory, which the score unit reads;
both are in ``hdl/table.py``.

Keys and queries share the converter and the Hadamard engine. Commands pass through them in
order; a query waits until every earlier write is stored, and a write is stored only when no
query is building its table or scanning, so a query sees exactly the writes accepted before it.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .collect import CommandCollector
from .convert import BlockConverter
from .hadamard import HadamardEngine
from .index_sram import IndexSRAM
from .layouts import Kind, error_layout, pack, query_beat_layout, write_beat_layout
from .norm import NormUnit
from .quantize import Quantizer
from .score import ScoreUnit, score_layout
from .table import TableBuilder, TableMemory


class AxelramMacro(wiring.Component):
    """One AXELRAM macro for a :class:`hdl.config.MacroConfig`.

    Members
    -------
    write : In(stream)
        Key-write beats ``{slot, data}``; ``data`` holds ``beat_elems`` 16-bit elements.
    query : In(stream)
        Query beats ``{first, last, data}``; scores slots ``first..last``, wrapping modulo
        ``context`` when ``last < first``.
    score : Out(stream)
        ``{slot, value, last}``: one binary32 score per slot, ``last`` on the query's final one.
    signs : In(stream), runtime-sign macros only
        A new sign word, bit ``i`` set where ``s_i = -1``.
    error : Out(error_layout)
        Sticky ``bad_slot`` and ``bad_range`` flags.
    """

    def __init__(self, config):
        self._config = config
        members = {
            "write": In(stream.Signature(write_beat_layout(config))),
            "query": In(stream.Signature(query_beat_layout(config))),
            "score": Out(stream.Signature(score_layout(config))),
            "error": Out(error_layout()),
        }
        if config.runtime_signs:
            members["signs"] = In(stream.Signature(config.d))
        super().__init__(members)
        self._units = {
            "collect": CommandCollector(config),
            "convert": BlockConverter(config),
            "norm": NormUnit(config),
            "hadamard": HadamardEngine(config),
            "quantize": Quantizer(config),
            "index_sram": IndexSRAM(config),
            "table": TableBuilder(config),
            "table_memory": TableMemory(config),
            "score": ScoreUnit(config),
        }

    @property
    def config(self):
        return self._config

    def units(self):
        """Return the pipeline's units by name; their properties give the latency figures."""
        return dict(self._units)

    HANDOFF_CYCLES = 8
    """Registers a query passes besides the units' own latencies: the collector's output, the
    norm unit's pass-through, the hand-offs into the Hadamard engine, the table builder and the
    score unit, and the two stages of the output FIFO."""

    @property
    def pipeline_latency_cycles(self):
        """Query pipeline latency without the table build, in cycles.

        A query of ``n`` slots takes ``table_build + pipeline_latency + n * d / read_lanes``
        cycles from its last input beat to its last score beat (both included), when the macro
        was idle and the score stream is not stalled.
        """
        units = self.units()
        return (units["convert"].latency + units["hadamard"].latency_cycles
                + units["score"].latency_cycles + self.HANDOFF_CYCLES)

    def elaborate(self, platform):
        m = Module()
        config = self._config

        for name, unit in self._units.items():
            m.submodules[name] = unit
        collect, convert, norm = self._units["collect"], self._units["convert"], self._units["norm"]
        hadamard, quantize = self._units["hadamard"], self._units["quantize"]
        sram, table, score = self._units["index_sram"], self._units["table"], self._units["score"]
        table_memory = self._units["table_memory"]

        wiring.connect(m, wiring.flipped(self.write), collect.write)
        wiring.connect(m, wiring.flipped(self.query), collect.query)
        if config.runtime_signs:
            wiring.connect(m, wiring.flipped(self.signs), collect.sign_load)
        m.d.comb += self.error.eq(collect.error)

        # Every wide payload is driven by one assignment (see layouts.pack).
        # collect -> convert
        collected = collect.o.payload
        m.d.comb += [
            convert.i.valid.eq(collect.o.valid),
            collect.o.ready.eq(convert.i.ready),
            convert.i.payload.eq(pack(convert.i.payload.shape(), meta=collected.meta,
                                      vec=collected.vec)),
        ]

        # convert -> norm
        converted = convert.o.payload
        m.d.comb += [
            norm.i.valid.eq(convert.o.valid),
            convert.o.ready.eq(norm.i.ready),
            norm.i.payload.eq(pack(norm.i.payload.shape(), meta=converted.meta, a=converted.a,
                                   exp=converted.exp, nan=converted.nan)),
        ]

        # norm -> hadamard
        normed = norm.o.payload
        hadamard_side = pack(hadamard.i.payload.side.shape(), meta=normed.meta, exp=normed.exp,
                             nan=normed.nan, norm=normed.norm)
        m.d.comb += [
            hadamard.i.valid.eq(norm.o.valid),
            norm.o.ready.eq(hadamard.i.ready),
            hadamard.i.payload.eq(pack(hadamard.i.payload.shape(), side=hadamard_side,
                                       a=normed.a)),
            hadamard.signs.eq(collect.signs),
        ]

        # Commands between the collector and the Hadamard engine's output use the sign word.
        in_flight = Signal(range(16))
        entered = collect.o.valid & collect.o.ready
        left = hadamard.o.valid & hadamard.o.ready
        m.d.sync += in_flight.eq(in_flight + entered - left)
        m.d.comb += collect.drained.eq(in_flight == 0)

        # hadamard -> quantize (keys) or table (queries)
        side = hadamard.o.payload.side
        is_query = side.meta.kind == Kind.QUERY
        writes_pending = Signal(range(4))
        query_go = Signal()
        m.d.comb += query_go.eq(writes_pending == 0)
        m.d.comb += [
            quantize.i.valid.eq(hadamard.o.valid & ~is_query),
            quantize.i.payload.eq(pack(quantize.i.payload.shape(), meta=side.meta, exp=side.exp,
                                       nan=side.nan, norm=side.norm,
                                       y=hadamard.o.payload.y)),
            table.i.valid.eq(hadamard.o.valid & is_query & query_go),
            table.i.payload.eq(pack(table.i.payload.shape(), side=side,
                                    y=hadamard.o.payload.y)),
        ]
        with m.If(is_query):
            m.d.comb += hadamard.o.ready.eq(table.i.ready & query_go)
        with m.Else():
            m.d.comb += hadamard.o.ready.eq(quantize.i.ready)

        # quantize -> index SRAM, held while a query builds its table or scans.
        reading = Signal()
        m.d.comb += reading.eq(~table.i.ready)
        m.d.comb += [
            sram.w.valid.eq(quantize.o.valid),
            quantize.o.ready.eq(sram.w.ready),
            sram.w.payload.eq(pack(sram.w.payload.shape(), slot=quantize.o.payload.meta.slot,
                                   row=quantize.o.payload.row)),
            sram.hold.eq(reading),
        ]
        issued = quantize.i.valid & quantize.i.ready
        stored = sram.w.valid & sram.w.ready
        m.d.sync += writes_pending.eq(writes_pending + issued - stored)

        # table -> score -> scores
        wiring.connect(m, table.o, score.start)
        wiring.connect(m, table.w, table_memory.w)
        m.d.comb += [
            table_memory.read_addr.eq(score.table_addr),
            score.table_data.eq(table_memory.read_data),
            table.in_use.eq(score.busy),
            sram.read_addr.eq(score.read_addr),
            score.read_data.eq(sram.read_data),
        ]
        wiring.connect(m, score.o, wiring.flipped(self.score))
        return m


def build_macro(config):
    """Return the :class:`AxelramMacro` for ``config``."""
    return AxelramMacro(config)
