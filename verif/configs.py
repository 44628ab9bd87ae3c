"""Macro configurations of the regression, and their transport into the simulator process.

The cocotb tests run inside the simulator, in another process; they receive the
:class:`hdl.config.MacroConfig` under test as JSON in the ``AXELRAM_TB_CONFIG`` environment
variable.
"""

import json
import os
from dataclasses import dataclass, field

from hdl.config import MacroConfig

CONFIG_ENV = "AXELRAM_TB_CONFIG"
"""Environment variable that carries the configuration into the simulator process."""

_FIELDS = (
    "d", "bits", "context", "input_format", "distribution", "signs", "sign_source",
    "runtime_signs", "beat_elems", "transform_lanes", "write_lanes", "table_lanes", "read_lanes",
)


def config_to_dict(config):
    """Return every constructor field of a :class:`MacroConfig` as JSON-compatible values."""
    if not isinstance(config, MacroConfig):
        raise TypeError(f"config must be a MacroConfig, not {config!r}")
    fields = {name: getattr(config, name) for name in _FIELDS}
    fields["signs"] = list(fields["signs"])
    return fields


def config_from_dict(fields):
    """Rebuild a :class:`MacroConfig` from :func:`config_to_dict` output."""
    fields = dict(fields)
    fields["signs"] = tuple(fields["signs"])
    return MacroConfig(**fields)


def config_to_env(config):
    """Return the environment entry that passes ``config`` to the cocotb tests."""
    return {CONFIG_ENV: json.dumps(config_to_dict(config))}


def config_from_env():
    """Return the configuration passed by :func:`config_to_env`; raise if it is missing."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set: run the cocotb tests through verif/test_macro.py")
    return config_from_dict(json.loads(text))


@dataclass(frozen=True)
class Case:
    """One configuration in the regression matrix.

    ``id`` names the pytest parameter; ``slow`` keeps it out of the default run.
    """
    id: str
    kwargs: dict = field(hash=False)
    slow: bool = False

    @property
    def config(self):
        return MacroConfig(**self.kwargs)


DEFAULT_CASES = (
    # Every b at d = 16, each once at a power-of-two context and once at a context that leaves
    # slot numbers unused (so out-of-range commands are reachable). Together the four also cover
    # multi-beat vectors, every datapath folded in time, run-time signs and BF16 inputs.
    Case("d16_b1_t64", dict(d=16, bits=1, context=64)),
    Case("d16_b2_t50_rs_bf16", dict(d=16, bits=2, context=50, runtime_signs=True,
                                    input_format="bf16", beat_elems=4, read_lanes=8)),
    Case("d16_b3_t64_folded", dict(d=16, bits=3, context=64, beat_elems=8, read_lanes=4,
                                   write_lanes=2, transform_lanes=2, table_lanes=4)),
    Case("d16_b4_t50_serial", dict(d=16, bits=4, context=50, beat_elems=1)),
)

SLOW_CASES = (
    Case("d16_b3_t1", dict(d=16, bits=3, context=1, read_lanes=2), slow=True),
    Case("d64_b3_t256", dict(d=64, bits=3, context=256), slow=True),
    Case("d128_b3_t200", dict(d=128, bits=3, context=200), slow=True),
    Case("d128_b4_t128", dict(d=128, bits=4, context=128), slow=True),
    Case("d256_b2_t100", dict(d=256, bits=2, context=100, beat_elems=64, read_lanes=64),
         slow=True),
)

REAL_KV_CASE = Case("d64_b3_t128", dict(d=64, bits=3, context=128))
"""Configuration that replays captured LLM keys and queries (head dimension 64)."""
