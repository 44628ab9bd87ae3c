"""Command collector: takes key writes and queries from their streams, one command at a time."""

from amaranth.hdl import C, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.signs import signs_to_word

from .layouts import (Kind, error_layout, meta_layout, pack, query_beat_layout,
                      raw_vector_layout, write_beat_layout)


def command_layout(config):
    """A whole command: its metadata and its ``d``-element vector."""
    return data.StructLayout({"meta": meta_layout(config), "vec": raw_vector_layout(config)})


class CommandCollector(wiring.Component):
    """Assembles vectors from ``d / beat_elems`` beats and orders the commands.

    Commands run in the order of their first beats. Once a command's first beat is accepted,
    only that stream is accepted until the command's last beat. When both streams offer a first
    beat in the same cycle, the stream not served last goes first.

    A write whose slot is outside ``0..context-1`` is consumed and dropped and sets
    ``error.bad_slot``; a query whose first or last slot is outside that range is forwarded
    with ``meta.bad`` set and sets ``error.bad_range``.

    With runtime signs, a waiting sign beat stops new commands from starting; it is accepted
    once ``drained`` reports that no command is in flight, and applies to every later command.

    Members
    -------
    write, query : In(stream)
        Key-write and query beats.
    sign_load : In(stream), runtime-sign macros only
        A new sign word (bit ``i`` set where ``s_i = -1``).
    o : Out(stream)
        Whole commands.
    signs : Out(d)
        The sign word in force.
    drained : In(1)
        High when no command is in flight downstream.
    error : Out(error_layout)
    """

    def __init__(self, config):
        self._config = config
        members = {
            "write": In(stream.Signature(write_beat_layout(config))),
            "query": In(stream.Signature(query_beat_layout(config))),
            "o": Out(stream.Signature(command_layout(config))),
            "signs": Out(config.d),
            "drained": In(1),
            "error": Out(error_layout()),
        }
        if config.runtime_signs:
            members["sign_load"] = In(stream.Signature(config.d))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self._config
        d, per_beat, beats = config.d, config.beat_elems, config.beats
        context = config.context

        # Payload registers have no reset: the state machine decides when they count, and
        # leaving them out keeps the reset net's fan-out small.
        vec = Signal(raw_vector_layout(config), reset_less=True)
        meta = Signal(meta_layout(config), reset_less=True)
        drop = Signal()
        beat = Signal(range(beats))
        served_query = Signal()
        sign_word = Signal(d, init=signs_to_word(config.signs))
        m.d.comb += [
            self.o.payload.eq(pack(self.o.payload.shape(), meta=meta, vec=vec)),
            self.signs.eq(sign_word),
        ]

        def store(data_bits, index):
            for j in range(per_beat):
                element = data_bits[16 * j:16 * (j + 1)]
                if isinstance(index, int):
                    m.d.sync += vec[index * per_beat + j].eq(element)
                else:
                    with m.Switch(index):
                        for k in range(beats):
                            with m.Case(k):
                                m.d.sync += vec[k * per_beat + j].eq(element)

        def finish(bad_write=None):
            if beats > 1:
                m.d.sync += beat.eq(1)
            elif bad_write is None:
                m.next = "FULL"
            else:
                with m.If(~bad_write):
                    m.next = "FULL"

        write, query = self.write.payload, self.query.payload

        def out_of_range(slot):
            # A slot field too narrow to hold `context` is never out of range, and comparing it
            # with `context` would compare values of different widths.
            if context >= 1 << len(slot):
                return C(0, 1)
            return slot >= context

        bad_slot = Signal()
        bad_range = Signal()
        m.d.comb += [
            bad_slot.eq(out_of_range(write.slot)),
            bad_range.eq(out_of_range(query.first) | out_of_range(query.last)),
        ]

        sign_waiting = Signal()
        if config.runtime_signs:
            m.d.comb += sign_waiting.eq(self.sign_load.valid)

        with m.FSM():
            with m.State("IDLE"):
                pick_write = Signal()
                pick_query = Signal()
                m.d.comb += [
                    pick_write.eq(~sign_waiting & self.write.valid &
                                  (~self.query.valid | served_query)),
                    pick_query.eq(~sign_waiting & self.query.valid & ~pick_write),
                ]
                if config.runtime_signs:
                    m.d.comb += self.sign_load.ready.eq(self.drained)
                    with m.If(self.sign_load.valid & self.drained):
                        m.d.sync += sign_word.eq(self.sign_load.payload)
                m.d.comb += [self.write.ready.eq(pick_write), self.query.ready.eq(pick_query)]
                with m.If(pick_write):
                    m.d.sync += [
                        meta.kind.eq(Kind.WRITE), meta.slot.eq(write.slot), meta.last.eq(0),
                        meta.bad.eq(0), drop.eq(bad_slot), served_query.eq(0),
                    ]
                    with m.If(bad_slot):
                        m.d.sync += self.error.bad_slot.eq(1)
                    store(write.data, 0)
                    finish(bad_slot)
                    if beats > 1:
                        m.next = "WRITE"
                with m.If(pick_query):
                    m.d.sync += [
                        meta.kind.eq(Kind.QUERY), meta.slot.eq(query.first),
                        meta.last.eq(query.last), meta.bad.eq(bad_range), drop.eq(0),
                        served_query.eq(1),
                    ]
                    with m.If(bad_range):
                        m.d.sync += self.error.bad_range.eq(1)
                    store(query.data, 0)
                    finish()
                    if beats > 1:
                        m.next = "QUERY"
            if beats > 1:
                for name, port in (("WRITE", self.write), ("QUERY", self.query)):
                    with m.State(name):
                        m.d.comb += port.ready.eq(1)
                        with m.If(port.valid):
                            store(port.payload.data, beat)
                            m.d.sync += beat.eq(beat + 1)
                            with m.If(beat == beats - 1):
                                m.d.sync += beat.eq(0)
                                with m.If(drop):
                                    m.next = "IDLE"
                                with m.Else():
                                    m.next = "FULL"
            with m.State("FULL"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
