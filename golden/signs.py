"""Sign vectors of the randomized Hadamard transform.

A sign vector ``s`` in ``{-1, +1}^d`` is made from an integer seed by SplitMix64, a generator
fixed by its arithmetic, so any language reproduces it from this description:

* ``state`` is an unsigned 64-bit integer, initialised to ``seed``; all arithmetic is modulo 2**64.
* For ``i = 0 .. d-1``: ``state += 0x9E3779B97F4A7C15``; ``z = state``;
  ``z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9``; ``z = (z ^ (z >> 27)) * 0x94D049BB133111EB``;
  ``z ^= z >> 31``; ``s[i] = -1`` if bit 63 of ``z`` is set, else ``+1``.

In hardware a sign is one bit, 1 for -1, stored at bit ``i`` of the sign word.

A sign file is JSON. It holds either one vector, ``{"d": D, "signs": [+1, -1, ...]}``, or one per
layer as written by calibration, ``{"d": D, "layers": [{"layer": 0, "signs": [...]}, ...]}``. Per-head calibration
adds a ``"heads"`` list of vectors, one per KV head, to each layer entry; :func:`load_signs`
reads the layer-wide ``"signs"``.
"""

import json
from pathlib import Path

from .params import check_d

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

MAX_SEED = _MASK64
"""Largest seed (seeds are unsigned 64-bit integers)."""


def splitmix64(seed, count):
    """Return the first ``count`` outputs of SplitMix64 started at ``seed``."""
    state = seed & _MASK64
    out = []
    for _ in range(count):
        state = (state + _GAMMA) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
        z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
        out.append(z ^ (z >> 31))
    return out


def signs_from_seed(d, seed):
    """Return the sign vector of length ``d`` for ``seed`` as a list of +1/-1 integers."""
    check_d(d)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, not {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, not {seed!r}")
    return [-1 if z >> 63 else 1 for z in splitmix64(seed, d)]


def check_signs(signs, d=None):
    """Validate a sign vector and return it as a list of +1/-1 integers."""
    signs = [int(s) for s in signs]
    if d is None:
        check_d(len(signs))
    elif len(signs) != d:
        raise ValueError(f"sign vector must have {d} entries, not {len(signs)}")
    bad = [s for s in signs if s not in (-1, 1)]
    if bad:
        raise ValueError(f"sign vector entries must be +1 or -1, not {bad[0]!r}")
    return signs


def signs_to_word(signs):
    """Pack a sign vector into an integer whose bit ``i`` is 1 where ``signs[i]`` is -1."""
    return sum(1 << i for i, s in enumerate(signs) if s < 0)


def load_signs(path, d=None, layer=None):
    """Load a sign vector from a JSON sign file.

    For a per-layer file, ``layer`` selects the vector (required when the file has more than one).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read sign file {str(path)!r}: {exc}") from exc
    if "signs" in data:
        return check_signs(data["signs"], d)
    if "layers" not in data:
        raise ValueError(f"sign file {str(path)!r} has neither 'signs' nor 'layers'")
    layers = {int(entry["layer"]): entry["signs"] for entry in data["layers"]}
    if layer is None:
        if len(layers) != 1:
            raise ValueError(f"sign file {str(path)!r} has {len(layers)} layers; choose one of "
                             f"{min(layers)}..{max(layers)}")
        layer = next(iter(layers))
    if layer not in layers:
        raise ValueError(f"layer {layer!r} not in sign file {str(path)!r} "
                         f"(layers {min(layers)}..{max(layers)})")
    return check_signs(layers[layer], d)


def save_signs(path, signs):
    """Write one sign vector as a JSON sign file."""
    signs = check_signs(signs)
    Path(path).write_text(json.dumps({"d": len(signs), "signs": signs}) + "\n")
