"""Synthesis top: a narrow scan interface around a design under test, on an ECP5 board.

A design's stream ports are far wider than a board's pins, so the design under test (DUT)
sits inside :class:`ScanWrapper`. Every input port bit of the DUT is driven by one stage of a
serial shift register, and every output port bit is registered and folded into a serial
signature register. Because every DUT input is controllable from a pin and every DUT output
reaches a pin, synthesis keeps the whole design, and its register-to-register timing paths
are the ones it would have in a larger system.

The wrapper adds one flip-flop per input bit and two per output bit, and at most one LUT
between a DUT port and a wrapper flip-flop, so its own paths are short. The scan interface is
a measurement harness: ``scan_out`` is a signature of the DUT outputs, not a readout.
"""

from amaranth import Cat, Const, Elaboratable, Module, Signal, Value
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from .boards import SCAN_LANES
from .pll import BoardPLL, add_sync_domain


__all__ = ["flatten_ports", "ScanWrapper", "SynthTop"]


def flatten_ports(component):
    """List the port bits of ``component`` as ``(inputs, outputs)``.

    Each list contains ``(path, value)`` pairs in signature order, where ``path`` is the
    member path joined with ``.`` and ``value`` is the port cast to a :class:`Value`. Members
    that are constants (such as ``valid`` of an ``always_valid`` stream) are not ports and are
    left out.
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"design under test must be an amaranth wiring.Component, "
                        f"not {component!r}")
    inputs, outputs = [], []
    for path, member, value in component.signature.flatten(component):
        value = Value.cast(value)
        if isinstance(value, Const) or len(value) == 0:
            continue
        name = ".".join(str(item) for item in path)
        if member.flow == wiring.In:
            inputs.append((name, value))
        else:
            outputs.append((name, value))
    return inputs, outputs


class ScanWrapper(wiring.Component):
    """Connect every port bit of a DUT to a few serial pins.

    While ``scan_en`` is high, the input shift register moves ``lanes`` bits per cycle from
    ``scan_in`` towards the DUT input ports. Every cycle, the DUT outputs are registered, and
    the signature register shifts by ``lanes`` bits while XOR-ing in the registered outputs.
    The last ``lanes`` bits of the signature register drive ``scan_out``. Input bit ``i`` of the concatenated DUT inputs
    (in :func:`flatten_ports` order) is stage ``i`` of the shift register.

    The DUT must use only the ``sync`` clock domain, which the wrapper also uses.

    Parameters
    ----------
    dut : :class:`amaranth.lib.wiring.Component`
        Design under test.
    lanes : :class:`int`
        Serial lanes in each direction.

    Members
    -------
    scan_en : ``In(1)``
        Shift enable of the input shift register.
    scan_in : ``In(lanes)``
        Serial input, one bit per lane.
    scan_out : ``Out(lanes)``
        Signature output, one bit per lane.
    """
    def __init__(self, dut, *, lanes=SCAN_LANES):
        if isinstance(lanes, bool) or not isinstance(lanes, int):
            raise TypeError(f"lanes must be an integer, not {lanes!r}")
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, not {lanes!r}")
        self.dut = dut
        self.lanes = lanes
        self.inputs, self.outputs = flatten_ports(dut)
        super().__init__({
            "scan_en": In(1),
            "scan_in": In(lanes),
            "scan_out": Out(lanes),
        })

    @property
    def input_width(self):
        """Total DUT input bits, which is also the input shift register length."""
        return sum(len(value) for _, value in self.inputs)

    @property
    def output_width(self):
        """Total DUT output bits."""
        return sum(len(value) for _, value in self.outputs)

    def port_map(self):
        """Return the DUT ports as a list of ``{"path", "direction", "width", "offset"}``.

        ``offset`` is the first bit of the port in the concatenated inputs or outputs.
        """
        entries = []
        for direction, ports in (("in", self.inputs), ("out", self.outputs)):
            offset = 0
            for path, value in ports:
                entries.append({"path": path, "direction": direction,
                                "width": len(value), "offset": offset})
                offset += len(value)
        return entries

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        lanes = self.lanes

        if self.inputs:
            # One register per DUT input port keeps each port a separate, named port of the
            # DUT in the netlist. Together the registers form one shift register.
            # No reset: a board's reset would otherwise drive every scan register.
            stages = [Signal(len(value), name=f"scan_{path.replace('.', '__')}", reset_less=True)
                      for path, value in self.inputs]
            shift_reg = Cat(*stages)
            with m.If(self.scan_en):
                m.d.sync += shift_reg.eq(Cat(self.scan_in, shift_reg)[:len(shift_reg)])
            for (_, value), stage in zip(self.inputs, stages):
                m.d.comb += value.eq(stage)

        if self.outputs:
            dut_outputs = Cat(*(value for _, value in self.outputs))
            captured = Signal(len(dut_outputs), reset_less=True)
            m.d.sync += captured.eq(dut_outputs)
            # At least `lanes` stages, so that every lane of `scan_out` has a driver.
            signature = Signal(max(len(captured), lanes), reset_less=True)
            shifted = Cat(Const(0, lanes), signature)[:len(signature)]
            m.d.sync += signature.eq(shifted ^ captured)
            m.d.comb += self.scan_out.eq(signature[-lanes:])

        return m


class SynthTop(Elaboratable):
    """Board top: PLL, ``sync`` clock domain, scan pins and a :class:`ScanWrapper` around a DUT.

    The ``sync`` domain runs at the PLL output frequency. It is held in reset until the PLL
    locks, and while the board reset (if the board has one) is asserted, and the reset is
    released synchronously to the PLL clock.

    Parameters
    ----------
    dut : :class:`amaranth.lib.wiring.Component`
        Design under test, clocked by the ``sync`` domain.
    pll_settings : :class:`fpga.pll.PLLSettings`
        PLL dividers for the board clock.

    The platform must carry the ``scan`` resource of :meth:`fpga.boards.Board.scan_resource`.
    """
    def __init__(self, dut, pll_settings):
        self.wrapper = ScanWrapper(dut)
        self.pll = BoardPLL(pll_settings)

    def elaborate(self, platform):
        m = Module()
        add_sync_domain(m, self.pll)
        m.submodules.wrapper = wrapper = self.wrapper

        scan = platform.request("scan", 0, dir="-")
        m.submodules.scan_en_buf = scan_en = io.Buffer("i", scan.en)
        m.submodules.scan_in_buf = scan_in = io.Buffer("i", scan.si)
        m.submodules.scan_out_buf = scan_out = io.Buffer("o", scan.so)
        m.d.comb += [
            wrapper.scan_en.eq(scan_en.i),
            wrapper.scan_in.eq(scan_in.i),
            scan_out.o.eq(wrapper.scan_out),
        ]
        return m
