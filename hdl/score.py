"""Score unit: scans stored rows, looks up table entries, sums them and scales by the norm."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .float32 import ToBinary32
from .index_sram import IndexSRAM
from .mul import PipelinedMul, mul_latency
from .table import scan_command_layout, table_address_layout, table_data_layout


def score_layout(config):
    """One score beat: the slot, the binary32 score and the last-of-query flag."""
    return data.StructLayout({
        "slot": unsigned(config.slot_width),
        "value": unsigned(32),
        "last": unsigned(1),
    })


class ScoreUnit(wiring.Component):
    """Scores one query against a range of slots, ``read_lanes`` coordinates per cycle.

    Per row: ``d`` table reads (:class:`hdl.table.TableMemory`) at the magnitudes of the row's
    codes (the code's sign bit negates the entry, the codebook being symmetric), a pipelined
    adder tree, one general multiplication by
    the row's norm (:class:`hdl.mul.PipelinedMul`, built from logic) and the conversion to
    binary32. With ``read_lanes == d`` one row enters the pipeline per clock. The SRAM's output
    (registered in :class:`hdl.index_sram.IndexSRAM`), the table entry read and its negation
    each get a register of their own, so that no clock period holds more than one of these
    steps.

    Flow control is by credits: a row is read only while the output FIFO is guaranteed room
    for its score, so the pipeline never stalls and back-pressure on ``o`` loses nothing.

    Members
    -------
    start : In(stream)
        The scan command from the table builder.
    table_addr : Out(table_address_layout)
        The magnitude of each coordinate's code in the current row.
    table_data : In(table_data_layout)
        The table entries at ``table_addr``, in the same cycle; the table is stable while
        ``busy``.
    busy : Out(1)
        High while the scan still reads the index SRAM or the table.
    read_addr : Out(slot_width)
        Index SRAM read address; ``read_data`` carries that row
        :attr:`hdl.index_sram.IndexSRAM.latency_cycles` cycles later.
    read_data : In(row_width)
    o : Out(stream)
        Score beats ``{slot, value, last}``.
    """

    def __init__(self, config):
        self._config = config
        dp = config.dp
        super().__init__({
            "start": In(stream.Signature(scan_command_layout(config))),
            "table_addr": Out(table_address_layout(config)),
            "table_data": In(table_data_layout(config)),
            "busy": Out(1),
            "read_addr": Out(config.slot_width),
            "read_data": In(dp.row_width),
            "o": Out(stream.Signature(score_layout(config))),
        })

    def _float_unit(self):
        dp = self._config.dp
        exp_top = (1 << dp.exp_width) - 2
        return ToBinary32(dp.product_width, 2 - dp.score_exp_offset,
                          2 * exp_top - dp.score_exp_offset, self._tag_layout())

    def _tag_layout(self):
        return data.StructLayout({"slot": unsigned(self._config.slot_width), "last": unsigned(1)})

    @property
    def chunks(self):
        """Cycles per row: ``d / read_lanes``."""
        return self._config.d // self._config.read_lanes

    @property
    def tree_levels(self):
        return self._config.read_lanes.bit_length() - 1

    @property
    def latency_cycles(self):
        """Cycles from a row's read address to its score entering the output FIFO.

        Index SRAM (:attr:`hdl.index_sram.IndexSRAM.latency_cycles`) + table read (1) +
        negation (1) + adder tree (log2(read_lanes)) + accumulator (1 when folded) + norm
        product (:attr:`multiplier_latency`) + product register (1) + binary32 conversion.
        """
        folded = 1 if self.chunks > 1 else 0
        return (IndexSRAM.latency_cycles + 2 + self.tree_levels + folded
                + self.multiplier_latency + 1 + ToBinary32.latency)

    @property
    def multiplier_latency(self):
        """Clocks of the norm product, :func:`hdl.mul.mul_latency` of ``norm_width`` bits."""
        return mul_latency(self._config.dp.norm_width)

    @property
    def fifo_depth(self):
        """Output FIFO entries: enough credits to cover the pipeline at one row per clock."""
        return self.latency_cycles + 4

    def elaborate(self, platform):
        m = Module()
        config = self._config
        dp = config.dp
        lanes, bits = config.read_lanes, config.bits
        chunks = self.chunks
        context = config.context
        slot_w = config.slot_width
        fields = dp.row_fields()

        # Issue: walk the slot range, one read token per row and chunk, while credits last.
        active = Signal()
        cur = Signal(slot_w)
        remaining = Signal(range(context + 1))
        chunk = Signal(range(chunks))
        credits = Signal(range(self.fifo_depth + 1), init=self.fifo_depth)
        q_exp = Signal(dp.exp_width)
        q_nan = Signal()

        start = self.start.payload
        count = Signal(range(context + 1))
        with m.If(start.bad):
            m.d.comb += count.eq(1)
        with m.Elif(start.last >= start.first):
            m.d.comb += count.eq(start.last - start.first + 1)
        with m.Else():
            m.d.comb += count.eq(start.last + context - start.first + 1)

        token = Signal()
        m.d.comb += token.eq(active & ((chunk != 0) | (credits != 0)))
        with m.If(self.start.valid & self.start.ready):
            m.d.sync += [active.eq(1), cur.eq(start.first), remaining.eq(count), chunk.eq(0),
                         q_exp.eq(start.exp), q_nan.eq(start.nan | start.bad)]

        row_done = Signal()
        m.d.comb += row_done.eq(token & (chunk == chunks - 1))
        with m.If(token):
            m.d.sync += chunk.eq(Mux(chunk == chunks - 1, 0, chunk + 1))
        with m.If(row_done):
            m.d.sync += [cur.eq(Mux(cur == context - 1, 0, cur + 1)), remaining.eq(remaining - 1)]
            with m.If(remaining == 1):
                m.d.sync += active.eq(0)

        pop = Signal()
        take = Signal()
        m.d.comb += take.eq(token & (chunk == 0))
        m.d.sync += credits.eq(credits - take + pop)
        m.d.comb += self.read_addr.eq(cur)

        # Stages 1 to 3: the index SRAM registers the address, reads the row and registers it
        # (IndexSRAM), so the block RAM's clock-to-output delay and the table read fall in
        # different clock periods. The row's tag travels beside it.
        issue_layout = data.StructLayout({"valid": 1, "chunk": range(chunks), "slot": slot_w,
                                          "last": 1, "first_chunk": 1, "last_chunk": 1,
                                          "q_exp": dp.exp_width, "q_nan": 1})
        reads = [Signal(issue_layout, name=f"s_read{k}")
                 for k in range(IndexSRAM.latency_cycles)]
        m.d.sync += [
            reads[0].valid.eq(token), reads[0].chunk.eq(chunk), reads[0].slot.eq(cur),
            reads[0].q_exp.eq(q_exp), reads[0].q_nan.eq(q_nan),
            reads[0].last.eq(remaining == 1), reads[0].first_chunk.eq(chunk == 0),
            reads[0].last_chunk.eq(chunk == chunks - 1),
        ]
        for k in range(1, len(reads)):
            m.d.sync += reads[k].eq(reads[k - 1])
        s1 = reads[-1]
        row = self.read_data
        codes = row[fields["codes"][0]:fields["codes"][0] + fields["codes"][1]]

        # Stage 3: read each coordinate's table entry at its code's magnitude (and, when the
        # read path is folded, pick the coordinates of the current chunk). Stage 4: negate it
        # where the code's sign bit is set. Datapath registers here and below have no reset:
        # the reset-cleared valid flags decide which of their values count, and leaving them
        # out keeps the reset net's fan-out small.
        width = dp.table_width
        mag_bits = dp.mag_code_bits
        m.d.comb += self.table_addr.eq(Cat(*(codes[i * bits:i * bits + mag_bits]
                                             for i in range(config.d))))
        lookups = []
        for lane in range(lanes):
            sign = Signal(name=f"sign{lane}")
            entry = Signal(signed(width), name=f"entry{lane}")
            if chunks == 1:
                m.d.comb += [sign.eq(codes[(lane + 1) * bits - 1]),
                             entry.eq(self.table_data[lane])]
            else:
                with m.Switch(s1.chunk):
                    for c in range(chunks):
                        with m.Case(c):
                            i = c * lanes + lane
                            m.d.comb += [sign.eq(codes[(i + 1) * bits - 1]),
                                         entry.eq(self.table_data[i])]
            selected = Signal(signed(width), name=f"selected{lane}", reset_less=True)
            negate = Signal(name=f"negate{lane}", reset_less=True)
            m.d.sync += [selected.eq(entry), negate.eq(sign)]
            value = Signal(signed(width), name=f"lookup{lane}", reset_less=True)
            m.d.sync += value.eq(Mux(negate, -selected, selected))
            lookups.append(value)

        tag_layout = data.StructLayout({
            "valid": 1, "slot": slot_w, "last": 1, "first_chunk": 1, "last_chunk": 1,
            "norm": dp.norm_width, "exp": dp.exp_width, "nan": 1,
            "q_exp": dp.exp_width, "q_nan": 1})
        tag_select = Signal(tag_layout, name="tag_select")
        m.d.sync += [
            tag_select.valid.eq(s1.valid), tag_select.slot.eq(s1.slot),
            tag_select.last.eq(s1.last), tag_select.first_chunk.eq(s1.first_chunk),
            tag_select.last_chunk.eq(s1.last_chunk),
            tag_select.q_exp.eq(s1.q_exp), tag_select.q_nan.eq(s1.q_nan),
            tag_select.norm.eq(row[fields["norm"][0]:fields["norm"][0] + fields["norm"][1]]),
            tag_select.exp.eq(row[fields["exp"][0]:fields["exp"][0] + fields["exp"][1]]),
            tag_select.nan.eq(row[fields["nan"][0]]),
        ]
        tag = Signal(tag_layout, name="tag_lookup")
        m.d.sync += tag.eq(tag_select)

        # Adder tree, one registered level per cycle; each level widens by one bit.
        level, level_width = lookups, width
        for depth in range(self.tree_levels):
            level_width += 1
            pairs = []
            for k in range(0, len(level), 2):
                total = Signal(signed(level_width), name=f"tree{depth}_{k // 2}",
                               reset_less=True)
                m.d.sync += total.eq(level[k] + level[k + 1])
                pairs.append(total)
            level = pairs
            next_tag = Signal(tag_layout, name=f"tag_tree{depth}")
            m.d.sync += next_tag.eq(tag)
            tag = next_tag
        (partial,) = level

        # Folded read path: accumulate the chunk sums of one row.
        total = Signal(signed(dp.sum_width))
        if chunks == 1:
            m.d.comb += total.eq(partial)
        else:
            acc = Signal(signed(dp.sum_width), reset_less=True)
            with m.If(tag.valid):
                m.d.sync += acc.eq(Mux(tag.first_chunk, partial, acc + partial))
            next_tag = Signal(tag_layout, name="tag_acc")
            m.d.sync += next_tag.eq(tag)
            m.d.sync += next_tag.valid.eq(tag.valid & tag.last_chunk)
            m.d.comb += total.eq(acc)
            tag = next_tag

        # norm * sum, exact, in a pipelined array of partial products (no DSP block).
        mul = m.submodules.norm_product = PipelinedMul(signed(dp.sum_width), dp.norm_width)
        if mul.o.shape().width > dp.product_width:
            raise AssertionError(f"the {mul.o.shape().width}-bit norm product does not fit "
                                 f"product_width {dp.product_width}")
        m.d.comb += [mul.a.eq(total), mul.b.eq(tag.norm)]
        tag_mul = tag
        for stage in range(mul.latency):
            delayed = Signal(tag_layout, name=f"tag_mul{stage}")
            m.d.sync += delayed.eq(tag_mul)
            tag_mul = delayed

        product = Signal(signed(dp.product_width), reset_less=True)
        # The converter's exponent port spans exactly the reachable range: block exponents lie
        # in 1..2**exp_width - 2, so E_q + E_k - offset always fits it.
        to_float = m.submodules.to_float = self._float_unit()
        exponent = Signal.like(to_float.exp)
        nan = Signal()
        valid = Signal()
        out_tag = Signal(self._tag_layout())
        m.d.sync += [
            product.eq(mul.o),
            exponent.eq(tag_mul.q_exp + tag_mul.exp - dp.score_exp_offset),
            nan.eq(tag_mul.q_nan | tag_mul.nan),
            valid.eq(tag_mul.valid),
            out_tag.slot.eq(tag_mul.slot),
            out_tag.last.eq(tag_mul.last),
        ]

        m.d.comb += [
            to_float.i_valid.eq(valid), to_float.z.eq(product), to_float.exp.eq(exponent),
            to_float.nan.eq(nan), to_float.i_tag.eq(out_tag),
        ]

        fifo = m.submodules.fifo = SyncFIFOBuffered(width=score_layout(config).size,
                                                   depth=self.fifo_depth)
        beat = Signal(score_layout(config))
        m.d.comb += [
            beat.slot.eq(to_float.o_tag.slot),
            beat.value.eq(to_float.bits),
            beat.last.eq(to_float.o_tag.last),
            fifo.w_data.eq(beat),
            fifo.w_en.eq(to_float.o_valid),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
            pop.eq(fifo.r_rdy & self.o.ready),
        ]

        # The table and the SRAM are free once no token remains before the table read.
        reading = Cat(*(stage.valid for stage in reads)).any()
        m.d.comb += [
            self.busy.eq(active | reading),
            self.start.ready.eq(~active & ~reading),
        ]
        return m
