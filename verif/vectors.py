"""Input vectors for the regression, as tuples of raw 16-bit FP16 or BF16 bit patterns."""

import numpy as np
import torch

# Bit patterns of special values, per input format.
SPECIAL = {
    "fp16": {
        "max": 0x7BFF,             # 65504, the largest finite magnitude
        "min_normal": 0x0400,      # 2**-14
        "max_subnormal": 0x03FF,
        "min_subnormal": 0x0001,   # 2**-24
        "one": 0x3C00,
        "zero": 0x0000,
        "negative_zero": 0x8000,
        "infinity": 0x7C00,
        "negative_infinity": 0xFC00,
        "quiet_nan": 0x7E00,
        "signalling_nan": 0x7C01,
        "negative_nan": 0xFFFF,
    },
    "bf16": {
        "max": 0x7F7F,
        "min_normal": 0x0080,
        "max_subnormal": 0x007F,
        "min_subnormal": 0x0001,
        "one": 0x3F80,
        "zero": 0x0000,
        "negative_zero": 0x8000,
        "infinity": 0x7F80,
        "negative_infinity": 0xFF80,
        "quiet_nan": 0x7FC0,
        "signalling_nan": 0x7F81,
        "negative_nan": 0xFFFF,
    },
}

# Range of the power-of-two scale applied to Gaussian vectors: wide enough to move the block
# exponent across most of the format, narrow enough that FP16 rarely overflows.
_SCALE_EXPONENTS = {"fp16": (-16, 11), "bf16": (-100, 100)}


def to_bits(values, input_format):
    """Round float values to the input format and return their bit patterns (int64 array)."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float32))
    dtype = torch.float16 if input_format == "fp16" else torch.bfloat16
    return (t.to(dtype).view(torch.int16).to(torch.int64) & 0xFFFF).numpy()


def _numpy_rng(rng):
    return np.random.default_rng(rng.getrandbits(64))


def gaussian_vectors(rng, config, count, *, scale_exponent=None):
    """Return ``count`` Gaussian vectors, each scaled by a random power of two.

    ``rng`` is a ``random.Random``; ``scale_exponent`` fixes the power of two instead.
    """
    gen = _numpy_rng(rng)
    low, high = _SCALE_EXPONENTS[config.input_format]
    x = gen.standard_normal((count, config.d))
    if scale_exponent is None:
        exponents = gen.integers(low, high, size=(count, 1), endpoint=True)
    else:
        exponents = np.full((count, 1), scale_exponent)
    bits = to_bits(x * np.exp2(exponents.astype(np.float64)), config.input_format)
    return [tuple(int(v) for v in row) for row in bits]


def random_bit_vectors(rng, config, count):
    """Return ``count`` vectors of uniformly random 16-bit patterns (NaNs, infinities and all)."""
    return [tuple(rng.getrandbits(16) for _ in range(config.d)) for _ in range(count)]


def extreme_vectors(rng, config):
    """Return a list of ``(name, vector)`` pairs of boundary cases for the input format.

    Covers the largest and smallest magnitudes, subnormals, zeros of both signs, a single
    non-zero coordinate, infinities, NaNs, and vectors that mix huge and tiny elements (so
    that small elements shift out of the block floating-point range).
    """
    d = config.d
    s = SPECIAL[config.input_format]
    cases = [
        ("all zero", [s["zero"]] * d),
        ("all negative zero", [s["negative_zero"]] * d),
        ("mixed signed zeros", [s["zero"] if i % 2 else s["negative_zero"] for i in range(d)]),
        ("all max", [s["max"]] * d),
        ("all -max", [s["max"] | 0x8000] * d),
        ("alternating max", [s["max"] | (0x8000 if i % 2 else 0) for i in range(d)]),
        ("all min subnormal", [s["min_subnormal"]] * d),
        ("all max subnormal", [s["max_subnormal"]] * d),
        ("all min normal", [s["min_normal"]] * d),
        ("subnormals and min normal", [s["max_subnormal"] if i % 2 else s["min_normal"]
                                       for i in range(d)]),
        ("max with min subnormals", [s["max"]] + [s["min_subnormal"]] * (d - 1)),
        ("one with ulp-scale rest", [s["one"]] + [s["min_normal"] | 0x8000] * (d - 1)),
        ("single coordinate 0", [s["one"]] + [s["zero"]] * (d - 1)),
        ("single coordinate last", [s["zero"]] * (d - 1) + [s["max"] | 0x8000]),
        ("single subnormal", [s["zero"]] * (d // 2) + [s["min_subnormal"]]
         + [s["zero"]] * (d - d // 2 - 1)),
        ("one infinity", [s["one"]] * (d - 1) + [s["infinity"]]),
        ("negative infinity", [s["negative_infinity"]] + [s["zero"]] * (d - 1)),
        ("quiet NaN", [s["one"]] * (d // 2) + [s["quiet_nan"]] + [s["one"]] * (d - d // 2 - 1)),
        ("signalling NaN", [s["signalling_nan"]] + [s["max"]] * (d - 1)),
        ("negative NaN everywhere", [s["negative_nan"]] * d),
    ]
    position = rng.randrange(d)
    single = [s["zero"]] * d
    single[position] = rng.choice([s["one"], s["max"], s["min_subnormal"], s["min_normal"]])
    cases.append((f"single coordinate {position}", single))
    return [(name, tuple(v & 0xFFFF for v in vector)) for name, vector in cases]


def load_real_vectors(path, d):
    """Load captured keys and queries from an ``.npz`` file as lists of bit-pattern tuples.

    The file holds float16 arrays ``keys`` and ``queries`` of shape ``(n, d)``.
    """
    with np.load(path) as data:
        missing = {"keys", "queries"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)} (it has {data.files})")
        arrays = {}
        for name in ("keys", "queries"):
            array = data[name]
            if array.dtype != np.float16 or array.ndim != 2 or array.shape[1] != d:
                raise ValueError(f"{name} in {path} must be float16 of shape (n, {d}), not "
                                 f"{array.dtype} {array.shape}")
            arrays[name] = [tuple(int(v) for v in row) for row in array.view(np.uint16)]
    return arrays["keys"], arrays["queries"]
