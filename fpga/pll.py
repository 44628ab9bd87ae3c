"""ECP5 PLL (``EHXPLLL``) divider search and the board PLL built on it.

The synthesis top runs the design under test from a PLL so that the clock constraint that
nextpnr checks is the frequency the bitstream would really run at on the board.

The limits are those that Project Trellis's PLL calculator uses (``libtrellis/tools/ecppll.cpp``):
phase detector input 3.125 to 400 MHz, VCO 400 to 800 MHz, output 10 to 400 MHz,
``CLKI_DIV`` 1 to 128, ``CLKFB_DIV`` 1 to 80, ``CLKOP_DIV`` 1 to 128. With the feedback taken
from ``CLKOP``, ``f_out = f_in / CLKI_DIV * CLKFB_DIV`` and ``f_vco = f_out * CLKOP_DIV``.
"""

from dataclasses import dataclass

from amaranth import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer


__all__ = ["MIN_PFD_HZ", "MAX_PFD_HZ", "MIN_VCO_HZ", "MAX_VCO_HZ",
           "MIN_OUTPUT_HZ", "MAX_OUTPUT_HZ", "PLLSettings", "find_pll_settings",
           "BoardPLL", "add_sync_domain"]


MIN_PFD_HZ, MAX_PFD_HZ = 3.125e6, 400e6
MIN_VCO_HZ, MAX_VCO_HZ = 400e6, 800e6
MAX_CLKI_DIV, MAX_CLKFB_DIV, MAX_CLKOP_DIV = 128, 80, 128

MIN_OUTPUT_HZ, MAX_OUTPUT_HZ = 10e6, 400e6


@dataclass(frozen=True)
class PLLSettings:
    """Divider settings of one ``EHXPLLL`` and the frequencies they give, in Hz."""
    input_hz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def output_hz(self):
        """Frequency at ``CLKOP``."""
        return self.input_hz / self.clki_div * self.clkfb_div

    @property
    def vco_hz(self):
        """VCO frequency."""
        return self.output_hz * self.clkop_div


def find_pll_settings(input_hz, output_hz):
    """Find the divider settings whose output is closest to ``output_hz``.

    Among equally close settings, the one with the highest phase detector frequency and then
    the highest VCO frequency wins, because both lower the output jitter.

    Raises ``ValueError`` if ``output_hz`` is outside ``MIN_OUTPUT_HZ..MAX_OUTPUT_HZ`` or if no
    setting can lock to ``input_hz``.
    """
    for name, value in (("input_hz", input_hz), ("output_hz", output_hz)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, not {value!r}")
    if not MIN_OUTPUT_HZ <= output_hz <= MAX_OUTPUT_HZ:
        raise ValueError(f"PLL output frequency must be in {MIN_OUTPUT_HZ / 1e6:g}.."
                         f"{MAX_OUTPUT_HZ / 1e6:g} MHz, not {output_hz / 1e6:g} MHz")

    best, best_key = None, None
    for clki_div in range(1, MAX_CLKI_DIV + 1):
        pfd_hz = input_hz / clki_div
        if pfd_hz > MAX_PFD_HZ:
            continue
        if pfd_hz < MIN_PFD_HZ:
            break
        for clkfb_div in range(1, MAX_CLKFB_DIV + 1):
            candidate_hz = pfd_hz * clkfb_div
            if candidate_hz > MAX_OUTPUT_HZ:
                break
            # The highest output divider that keeps the VCO in range.
            clkop_div = min(MAX_CLKOP_DIV, int(MAX_VCO_HZ // candidate_hz))
            if clkop_div < 1 or candidate_hz * clkop_div < MIN_VCO_HZ:
                continue
            key = (abs(candidate_hz - output_hz), -pfd_hz, -candidate_hz * clkop_div)
            if best_key is None or key < best_key:
                best_key = key
                best = PLLSettings(input_hz, clki_div, clkfb_div, clkop_div)

    if best is None:
        raise ValueError(f"no ECP5 PLL setting reaches {output_hz / 1e6:g} MHz "
                         f"from a {input_hz / 1e6:g} MHz input")
    return best


class BoardPLL(Elaboratable):
    """One ``EHXPLLL`` driven by the board clock.

    Parameters
    ----------
    settings : :class:`PLLSettings`
        Dividers, found with :func:`find_pll_settings` for the board clock frequency.

    Attributes
    ----------
    clk : :class:`Signal`
        PLL output clock, at ``settings.output_hz``.
    locked : :class:`Signal`
        PLL lock indication (asynchronous).
    board_reset : :class:`Signal`
        The board reset input, or constant 0 on a board without one (asynchronous).
    """
    def __init__(self, settings):
        if not isinstance(settings, PLLSettings):
            raise TypeError(f"settings must be a PLLSettings, not {settings!r}")
        self.settings = settings
        self.clk = Signal()
        self.locked = Signal()
        self.board_reset = Signal()

    def elaborate(self, platform):
        m = Module()
        settings = self.settings

        clk_port = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_port)
        if platform.default_rst is not None:
            rst_port = platform.request(platform.default_rst, dir="-")
            m.submodules.rst_buf = rst_buf = io.Buffer("i", rst_port)
            m.d.comb += self.board_reset.eq(rst_buf.i)

        # No explicit constraint on the PLL output: nextpnr derives it from the board clock
        # constraint and the dividers, and an LPF constraint would need the net name that
        # remains after Yosys flattens the hierarchy, which Amaranth does not know.
        m.submodules.pll = Instance(
            "EHXPLLL",
            # NOTE: the loop filter settings are those ecppll emits for every divider setting.
            # No bitstream of this flow has been checked for PLL lock on a real board.
            a_FREQUENCY_PIN_CLKI=f"{settings.input_hz / 1e6:.6f}",
            a_FREQUENCY_PIN_CLKOP=f"{settings.output_hz / 1e6:.6f}",
            a_ICP_CURRENT="12",
            a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            p_CLKOP_ENABLE="ENABLED",
            p_CLKI_DIV=settings.clki_div,
            p_CLKFB_DIV=settings.clkfb_div,
            p_CLKOP_DIV=settings.clkop_div,
            # Half a period, as ecppll sets it. The phase against the board clock does not
            # matter here, because no path crosses between the two clocks.
            p_CLKOP_CPHASE=settings.clkop_div // 2,
            p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            i_CLKI=clk_buf.i,
            i_CLKFB=self.clk,
            i_RST=0,
            i_STDBY=0,
            i_PHASESEL0=0,
            i_PHASESEL1=0,
            i_PHASEDIR=0,
            i_PHASESTEP=0,
            i_PHASELOADREG=0,
            i_PLLWAKESYNC=0,
            i_ENCLKOP=0,
            o_CLKOP=self.clk,
            o_LOCK=self.locked,
        )
        return m


def add_sync_domain(m, pll):
    """Add ``pll`` to ``m`` and clock the ``sync`` domain from it.

    The domain stays in reset until the PLL locks and while the board reset is asserted, and
    leaves reset synchronously to the PLL clock.
    """
    m.submodules.pll = pll
    m.domains.sync = sync = ClockDomain("sync")
    m.d.comb += sync.clk.eq(pll.clk)
    m.submodules.reset_sync = ResetSynchronizer(~pll.locked | pll.board_reset, domain="sync")
