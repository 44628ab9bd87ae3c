"""Payload layouts of the streams inside and at the boundary of the macro."""

import enum

from amaranth.hdl import signed, unsigned
from amaranth.lib import data


class Kind(enum.IntEnum):
    """What a command in the write/query pipeline is."""
    WRITE = 0
    QUERY = 1


def meta_layout(config):
    """Command metadata carried unchanged through the pipeline.

    ``slot`` is the write slot or the query's first slot, ``last`` the query's last slot, and
    ``bad`` marks a slot or range outside ``0..context-1``.
    """
    return data.StructLayout({
        "kind": unsigned(1),
        "slot": unsigned(config.slot_width),
        "last": unsigned(config.slot_width),
        "bad": unsigned(1),
    })


def raw_vector_layout(config):
    """``d`` input elements as 16-bit patterns (FP16 or BF16)."""
    return data.ArrayLayout(unsigned(16), config.d)


def aligned_vector_layout(config):
    """``d`` aligned elements in block floating point."""
    return data.ArrayLayout(signed(config.dp.x_width), config.d)


def transformed_vector_layout(config):
    """``d`` transformed coordinates ``y = H diag(s) a``."""
    return data.ArrayLayout(signed(config.dp.y_width), config.d)


def write_beat_layout(config):
    """One beat of the key-write stream: the slot and ``beat_elems`` elements."""
    return data.StructLayout({
        "slot": unsigned(config.slot_width),
        "data": unsigned(16 * config.beat_elems),
    })


def query_beat_layout(config):
    """One beat of the query stream: the inclusive slot range and ``beat_elems`` elements."""
    return data.StructLayout({
        "first": unsigned(config.slot_width),
        "last": unsigned(config.slot_width),
        "data": unsigned(16 * config.beat_elems),
    })


def error_layout():
    """Sticky error flags of the macro, cleared by reset."""
    return data.StructLayout({"bad_slot": unsigned(1), "bad_range": unsigned(1)})
