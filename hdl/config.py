"""Configuration of one AXELRAM macro: the generator's parameters, validated in one place."""

from dataclasses import dataclass, field
from functools import cached_property

from amaranth.utils import ceil_log2

from golden.numerics import datapath
from golden.params import check_bits, check_context, check_d, check_distribution, check_input_format
from golden.signs import check_signs, signs_from_seed

DEFAULT_SIGN_SEED = 1
"""Seed of the sign vector compiled in when none is given (and the reset value of runtime signs)."""


def _check_lanes(name, value, d, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < 1 or value > high or value & (value - 1):
        raise ValueError(f"{name} must be a power of two in 1..{high} (d = {d}), not {value!r}")
    return value


@dataclass(frozen=True)
class MacroConfig:
    """Parameters of one macro.

    Lane counts fold the datapath in time; each must be a power of two:

    * ``beat_elems``: input elements per stream beat (``d / beat_elems`` beats per vector).
    * ``transform_lanes``: butterflies per cycle in the Hadamard engine (at most ``d / 2``).
    * ``write_lanes``: coordinates per cycle in the norm's squares and in the quantizer.
    * ``table_lanes``: coordinates per cycle when the score unit builds its table.
    * ``read_lanes``: coordinates per cycle in the score unit; ``d`` scores one key per clock.
    """
    d: int
    bits: int
    context: int = 4096
    input_format: str = "fp16"
    distribution: str = "gaussian"
    signs: tuple = field(default=None, repr=False)
    sign_source: str = f"seed {DEFAULT_SIGN_SEED}"
    runtime_signs: bool = False
    beat_elems: int = None
    transform_lanes: int = None
    write_lanes: int = 1
    table_lanes: int = 8
    read_lanes: int = None

    def __post_init__(self):
        check_d(self.d)
        check_bits(self.bits)
        check_context(self.context)
        check_input_format(self.input_format)
        check_distribution(self.distribution)
        d = self.d
        defaults = {"beat_elems": d, "transform_lanes": d // 2, "read_lanes": d}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        _check_lanes("beat_elems", self.beat_elems, d, d)
        _check_lanes("transform_lanes", self.transform_lanes, d, d // 2)
        _check_lanes("write_lanes", self.write_lanes, d, d)
        _check_lanes("table_lanes", self.table_lanes, d, d)
        _check_lanes("read_lanes", self.read_lanes, d, d)
        if not isinstance(self.runtime_signs, bool):
            raise TypeError(f"runtime_signs must be a bool, not {self.runtime_signs!r}")
        signs = signs_from_seed(d, DEFAULT_SIGN_SEED) if self.signs is None else self.signs
        object.__setattr__(self, "signs", tuple(check_signs(signs, d)))

    @cached_property
    def dp(self):
        """The fixed-point :class:`golden.numerics.Datapath` of this macro."""
        return datapath(self.d, self.bits, self.input_format, self.distribution)

    @property
    def name(self):
        return f"axelram_d{self.d}_b{self.bits}"

    @property
    def slot_width(self):
        return max(1, ceil_log2(self.context))

    @property
    def beats(self):
        """Stream beats per input vector."""
        return self.d // self.beat_elems


def check_config(config):
    """Return ``config``; raise :class:`TypeError` unless it is a :class:`MacroConfig`."""
    if not isinstance(config, MacroConfig):
        raise TypeError(f"config must be a MacroConfig, not {config!r}")
    return config
