"""ECP5 boards the FPGA flow can build for, and the pins its scan interface uses on each.

Every board is an ``amaranth_boards`` platform. The scan interface of
:class:`fpga.synth_top.SynthTop` needs ``1 + SCAN_LANES`` input pins (scan enable and the
serial inputs) and ``SCAN_LANES`` output pins, taken from a general-purpose connector so that
no on-board peripheral is driven.
"""

from dataclasses import dataclass

from amaranth.build import Attrs, Pins, Resource, Subsignal
from amaranth_boards.ecpix5 import ECPIX545Platform, ECPIX585Platform
from amaranth_boards.ulx3s import (ULX3S_12F_Platform, ULX3S_25F_Platform,
                                   ULX3S_45F_Platform, ULX3S_85F_Platform)


__all__ = ["SCAN_LANES", "Board", "BOARDS", "check_board"]


SCAN_LANES = 1
"""Serial lanes of the scan interface, in each direction.

One lane: with a two-bit ``scan_out`` port, Yosys 0.70 stopped inside abc9 on the d = 16 macro
with an internal assertion while it renamed the port's bits."""


@dataclass(frozen=True)
class Board:
    """An ECP5 board and the connector pins of its scan interface.

    ``connector`` is an ``amaranth_boards`` connector ``(name, number)``. ``scan_en_pin`` and
    the ``SCAN_LANES`` entries of ``scan_in_pins`` and ``scan_out_pins`` are pin names on that
    connector.
    """
    name: str
    platform_class: type
    connector: tuple
    scan_en_pin: str
    scan_in_pins: tuple
    scan_out_pins: tuple
    io_type: str = "LVCMOS33"

    @property
    def device(self):
        """Device name, such as ``"LFE5U-85F"``."""
        return self.platform_class.device

    @property
    def package(self):
        """Package code as ``amaranth`` spells it, such as ``"BG381"``."""
        return self.platform_class.package

    @property
    def speed(self):
        """Speed grade as a string (``"6"``, ``"7"`` or ``"8"``)."""
        return self.platform_class.speed

    def create_platform(self):
        """Return a new platform instance with the scan interface resource added."""
        platform = self.platform_class()
        platform.add_resources([self.scan_resource()])
        return platform

    def scan_resource(self):
        """Return the ``scan`` resource: ``en`` and ``si`` inputs, ``so`` outputs."""
        attrs = Attrs(IO_TYPE=self.io_type)
        return Resource(
            "scan", 0,
            Subsignal("en", Pins(self.scan_en_pin, dir="i", conn=self.connector), attrs),
            Subsignal("si", Pins(" ".join(self.scan_in_pins), dir="i", conn=self.connector), attrs),
            Subsignal("so", Pins(" ".join(self.scan_out_pins), dir="o", conn=self.connector), attrs),
        )


def _ulx3s(name, platform_class):
    # The first pins of the "gpio" header; the header carries no on-board peripheral.
    return Board(name, platform_class, ("gpio", 0),
                 scan_en_pin="0+", scan_in_pins=("1+",), scan_out_pins=("3+",))


def _ecpix5(name, platform_class):
    # PMOD 0; its pins 5, 6, 11 and 12 are power and ground.
    return Board(name, platform_class, ("pmod", 0),
                 scan_en_pin="1", scan_in_pins=("2",), scan_out_pins=("7",))


BOARDS = {board.name: board for board in (
    _ulx3s("ulx3s-12f", ULX3S_12F_Platform),
    _ulx3s("ulx3s-25f", ULX3S_25F_Platform),
    _ulx3s("ulx3s-45f", ULX3S_45F_Platform),
    _ulx3s("ulx3s-85f", ULX3S_85F_Platform),
    _ecpix5("ecpix5-45f", ECPIX545Platform),
    _ecpix5("ecpix5-85f", ECPIX585Platform),
)}
"""Supported boards by command-line name."""

for _board in BOARDS.values():
    if len(_board.scan_in_pins) != SCAN_LANES or len(_board.scan_out_pins) != SCAN_LANES:
        raise AssertionError(f"board {_board.name} must list {SCAN_LANES} scan pins per direction")


def check_board(name):
    """Return the :class:`Board` called ``name``; raise ``ValueError`` for an unknown name."""
    if not isinstance(name, str):
        raise TypeError(f"board must be a string, not {name!r}")
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {name!r}") from None
