"""UART receiver and transmitter, 8 data bits, no parity, 1 stop bit (8N1), LSB first.

Both run in the ``sync`` domain with a fixed clock divisor: one bit lasts ``divisor`` clock
cycles. :func:`baud_divisor` picks the divisor for a clock and a baud rate and rejects a pair
whose rounding error the other end of the line might not tolerate.
"""

from amaranth import C, Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


__all__ = ["MIN_DIVISOR", "MAX_BAUD_ERROR", "baud_divisor", "UARTReceiver", "UARTTransmitter"]


MIN_DIVISOR = 4
"""Smallest divisor: the receiver samples each bit in its middle, two cycles from each edge."""

MAX_BAUD_ERROR = 0.02
"""Largest relative error between the requested and the generated baud rate.

An 8N1 receiver that resynchronizes on each start bit samples the stop bit 9.5 bit periods
later, so the two ends may differ by a few percent in total. Each end gets two of them.
"""


def baud_divisor(clk_hz, baud):
    """Return the clock divisor that makes ``baud`` from a ``clk_hz`` clock.

    The divisor is ``round(clk_hz / baud)``. Raises ``ValueError`` if it is below
    :data:`MIN_DIVISOR` or if the baud rate it gives differs from ``baud`` by more than
    :data:`MAX_BAUD_ERROR`.
    """
    for name, value in (("clk_hz", clk_hz), ("baud", baud)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, not {value!r}")
        if not value > 0:
            raise ValueError(f"{name} must be positive, not {value!r}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud rate {baud:g} needs a clock of at least {MIN_DIVISOR} times "
                         f"the baud rate, not {clk_hz / 1e6:g} MHz")
    actual = clk_hz / divisor
    error = actual / baud - 1
    if abs(error) > MAX_BAUD_ERROR:
        raise ValueError(f"a {clk_hz / 1e6:g} MHz clock divided by {divisor} gives "
                         f"{actual:.0f} baud, {error:+.2%} from the requested {baud:g}; the "
                         f"error must be within {MAX_BAUD_ERROR:.0%}, so choose a clock that "
                         f"is closer to a multiple of the baud rate")
    return divisor


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"divisor must be an integer, not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR}, not {divisor}")
    return divisor


class UARTReceiver(wiring.Component):
    """8N1 receiver.

    The receiver detects the start bit's falling edge on the synchronized ``rx`` line, checks
    that the line is still low half a bit later, and then samples the 8 data bits and the stop
    bit one bit period apart. After the middle of the stop bit it waits for the next start bit,
    so it tolerates a transmitter that is slightly faster than itself.

    Parameters
    ----------
    divisor : :class:`int`
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : ``In(1)``
        Serial input, idle high; asynchronous (it passes a two-stage synchronizer).
    o : ``Out(stream.Signature(8, always_ready=True))``
        Received bytes; ``valid`` is high for one cycle per byte.
    frame_error : ``Out(1)``
        High for one cycle when a byte had its stop bit low; that byte is dropped.
    """
    def __init__(self, divisor):
        self.divisor = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8, always_ready=True)),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor

        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(divisor))
        bit_index = Signal(range(8))
        shift = Signal(8)
        m.d.comb += self.o.payload.eq(shift)
        m.d.sync += [self.o.valid.eq(0), self.frame_error.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    # The line went high again before mid-bit: a glitch, not a start bit.
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(divisor - 1), bit_index.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), timer.eq(divisor - 1),
                                 bit_index.eq(bit_index + 1)]
                    with m.If(bit_index == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.sync += self.o.valid.eq(1)
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter with a clear-to-send input.

    A byte is taken from ``i`` only while the line is idle and ``cts`` is high; a byte that
    has started is always sent completely. Bytes offered back to back leave without a gap.

    Parameters
    ----------
    divisor : :class:`int`
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes to send.
    cts : ``In(1)``
        Clear to send, synchronous to ``sync``; tie high to send without flow control.
    tx : ``Out(1)``
        Serial output, idle high, driven straight from a flip-flop.
    """
    def __init__(self, divisor):
        self.divisor = _check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "cts": In(1, init=1),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor

        # Bit 0 drives the line; ones shift in behind the stop bit, so the idle line is high.
        shift = Signal(10, init=(1 << 10) - 1)
        bits_left = Signal(range(11))
        timer = Signal(range(divisor))
        m.d.comb += [
            self.tx.eq(shift[0]),
            self.i.ready.eq((bits_left == 0) & self.cts),
        ]

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shift.eq(Cat(C(0, 1), self.i.payload, C(1, 1))), bits_left.eq(10),
                         timer.eq(divisor - 1)]
        with m.Elif(bits_left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shift.eq(Cat(shift[1:], C(1, 1))), bits_left.eq(bits_left - 1),
                             timer.eq(divisor - 1)]
        return m
