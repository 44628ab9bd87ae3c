"""Payload layouts of the streams inside and at the boundary of the macro."""

import enum

from amaranth.hdl import Cat, Const, Shape, Value, signed, unsigned
from amaranth.lib import data


def pack(layout, **fields):
    """Return one value that contains ``fields`` at their places in the struct ``layout``.

    Driving a wide payload with one assignment of this value, instead of one assignment per
    field, makes the Verilog assign the whole payload at once. Icarus Verilog turns per-field
    assignments of a wire into a multi-driver concatenation, and then every reader of the wire
    converts the whole wire whenever one field changes: at d = 128 that made the simulation
    about 100 times slower.

    Each field value is truncated or extended (by its own signedness) to the field's width, as
    ``eq`` would. Every field of ``layout`` must be given, and no other.
    """
    missing = [name for name, _ in layout if name not in fields]
    unknown = sorted(set(fields) - {name for name, _ in layout})
    if missing or unknown:
        raise ValueError(f"pack: missing fields {missing}, unknown fields {unknown}")
    parts = []
    for name, field in sorted(layout, key=lambda item: item[1].offset):
        value = Value.cast(fields[name])
        width = Shape.cast(field.shape).width
        if len(value) < width:
            fill = (value[-1].replicate(width - len(value)) if value.shape().signed
                    else Const(0, width - len(value)))
            value = Cat(value, fill)
        parts.append(value[:width])
    return Cat(*parts)


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
