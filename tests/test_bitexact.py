"""Bit-exact model: conversion, scores, and the error bound of docs/numerics.md."""

import math
import random
import struct

import pytest
import torch

from golden import bitexact as bx
from golden import ideal
from golden.numerics import FLOAT32_NAN, MAG_BITS, datapath
from golden.signs import signs_from_seed


def _lsb(exp, dp):
    return torch.pow(2.0, (exp - dp.fmt.bias - MAG_BITS + 1).to(torch.float64))


def _values(x, dp):
    """Return the float64 values of FP16/BF16 vectors."""
    return x.to(torch.float64)


def check_against_ideal(keys, queries, dp, signs):
    """Check codes and scores of the bit-exact model against the bounds of the design doc."""
    cb = dp.codebook
    d = dp.d
    k = _values(keys, dp)
    q = _values(queries, dp)
    rows = bx.encode_keys(keys, dp, signs)
    table = bx.build_table(queries, dp, signs)
    scores = bx.score_floats(table, rows, dp).to(torch.float64)

    # Codes: differences only in adjacent cells, only within delta of their shared boundary.
    k_norm = k.norm(dim=-1)
    codes, _ = ideal.encode(k, cb, signs)
    nonzero = k_norm > 0
    u = ideal.rotate(k, signs) / torch.where(nonzero, k_norm, 1.0).unsqueeze(-1)
    mag_mask = dp.levels - 1
    differ = (codes != rows.codes) & nonzero.unsqueeze(-1)
    lsb_k = _lsb(rows.exp, dp)
    delta = ((2 * math.sqrt(d) + 1) * (1 + 2 ** -10) * lsb_k / torch.where(nonzero, k_norm, 1.0)
             + 2 ** -16 / math.sqrt(d))
    boundaries = torch.tensor((0.0,) + cb.positive_boundaries, dtype=torch.float64)
    for t, i in differ.nonzero().tolist():
        ideal_code, exact_code = codes[t, i].item(), rows.codes[t, i].item()
        ideal_value = ideal.code_values(torch.tensor(ideal_code), cb).item()
        exact_value = ideal.code_values(torch.tensor(exact_code), cb).item()
        values = sorted(cb.centroids)
        assert abs(values.index(ideal_value) - values.index(exact_value)) == 1, (t, i)
        low_mag = min(ideal_code & mag_mask, exact_code & mag_mask)
        if (ideal_code >> (dp.bits - 1)) != (exact_code >> (dp.bits - 1)):
            boundary = 0.0
        else:
            boundary = boundaries[low_mag + 1].item()
        assert abs(abs(u[t, i].item()) - boundary) <= delta[t].item(), (t, i)

    # Arithmetic: scores against ||k|| <Rq, c> with the bit-exact codes.
    c = ideal.code_values(rows.codes, cb)
    reference = (ideal.rotate(q, signs) @ c.T) * k_norm
    lsb_q = _lsb(table.exp, dp).unsqueeze(-1)
    lsb_k = lsb_k.unsqueeze(0)
    c_norm = c.norm(dim=-1).unsqueeze(0)
    q_norm = q.norm(dim=-1).unsqueeze(-1)
    kn = k_norm.unsqueeze(0)
    e_k = (math.sqrt(d) + 1) * lsb_k
    e_q = math.sqrt(d) * lsb_q * c_norm + (q_norm + math.sqrt(d) * lsb_q) * 2 ** -13
    v = (q_norm + math.sqrt(d) * lsb_q) * (c_norm + 2 ** -13)
    bound = e_k * (v + lsb_q / 2) + kn * (e_q + lsb_q / 2) + 2 ** -24 * (kn + e_k) * (v + lsb_q / 2)
    # Binary32 range: results beyond its largest value are infinite, and results below its
    # smallest normal lose up to half a subnormal step (2**-150) in absolute terms.
    float32_max = 3.4028234663852886e38
    overflow = torch.isinf(scores)
    assert torch.all(reference[overflow].abs() + bound[overflow] >= float32_max)
    assert torch.all(torch.sign(scores[overflow]) == torch.sign(reference[overflow]))
    assert torch.all(overflow | ((reference.abs() - bound) < float32_max))
    error = (scores - reference).abs()[~overflow]
    allowed = bound[~overflow] + 2.0 ** -150
    assert torch.all(error <= allowed), (error / allowed).max().item()
    return scores, rows


@pytest.mark.parametrize("d, bits", [(16, 1), (16, 4), (64, 3), (128, 2), (128, 4), (256, 3)])
def test_random_gaussian_within_bound(d, bits):
    seed = d * 10 + bits
    print(f"seed {seed}")
    gen = torch.Generator().manual_seed(seed)
    dp = datapath(d, bits)
    signs = signs_from_seed(d, 1)
    keys = torch.randn(500, d, generator=gen).half()
    queries = torch.randn(20, d, generator=gen).half()
    check_against_ideal(keys, queries, dp, signs)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_scaled_vectors_within_bound(fmt):
    # Keys and queries across the whole exponent range of the format, norms differing 1000x.
    seed = 77
    print(f"seed {seed}")
    gen = torch.Generator().manual_seed(seed)
    dp = datapath(64, 3, fmt)
    dtype = torch.float16 if fmt == "fp16" else torch.bfloat16
    scales = torch.tensor([1e-3, 1.0, 1e3] if fmt == "fp16" else [1e-30, 1.0, 1e30])
    keys = (torch.randn(300, 64, generator=gen, dtype=torch.float64)
            * scales[torch.arange(300) % 3].unsqueeze(-1).to(torch.float64)).to(dtype)
    queries = (torch.randn(9, 64, generator=gen, dtype=torch.float64)
               * scales[torch.arange(9) % 3].unsqueeze(-1).to(torch.float64)).to(dtype)
    check_against_ideal(keys, queries, dp, signs_from_seed(64, 4))


def _adversarial_keys(d):
    fmax = 65504.0
    tiny = 2.0 ** -24
    keys = []
    keys.append([fmax] * d)                                   # largest magnitudes
    keys.append([tiny] * d)                                   # smallest subnormals
    keys.append([fmax if i % 2 else -fmax for i in range(d)])  # mixed signs
    one = [0.0] * d
    one[3] = 1.0
    keys.append(one)                                          # a single non-zero coordinate
    keys.append([0.0] * d)                                    # all-zero key
    keys.append([-0.0] * d)
    mixed = [fmax if i == 0 else tiny for i in range(d)]      # largest beside smallest
    keys.append(mixed)
    keys.append([(i - d / 2) * 0.01 for i in range(d)])
    keys.append([(i - d / 2) * 10.0 for i in range(d)])        # norm 1000x the previous one
    keys.append([6.1e-5 if i % 3 else -6.0e-5 for i in range(d)])  # around the normal limit
    return torch.tensor(keys, dtype=torch.float64).half()


@pytest.mark.parametrize("d, bits", [(16, 2), (128, 4)])
def test_adversarial_vectors_within_bound(d, bits):
    dp = datapath(d, bits)
    keys = _adversarial_keys(d)
    queries = keys.clone()
    scores, rows = check_against_ideal(keys, queries, dp, signs_from_seed(d, 1))
    zero = 4
    assert rows.norm[zero].item() == 0
    assert torch.all(rows.codes[zero] == 0)
    assert torch.all(scores[:, zero] == 0)


def test_largest_fp16_key_fills_thirteen_bits():
    dp = datapath(16, 2)
    block = bx.to_block_fixed(torch.full((1, 16), 65504.0).half(), dp)
    assert block.a.max().item() == 0b11111111111 << 2
    assert block.exp.item() == 30


def test_subnormal_vector_converts_exactly():
    dp = datapath(16, 2)
    x = torch.tensor([[2.0 ** -24 * k for k in range(16)]]).half()
    block = bx.to_block_fixed(x, dp)
    assert block.exp.item() == 1
    assert block.a.tolist()[0] == [k << 2 for k in range(16)]


def test_alignment_truncates_toward_zero():
    dp = datapath(16, 2)
    x = torch.zeros(1, 16)
    x[0, 0] = 1024.0          # exponent 25
    x[0, 1] = 2.0 ** -5       # 15 binades lower: shifted out entirely
    x[0, 2] = -3.0            # significand 1536, exponent field 16: shifted right by 9
    x[0, 3] = 255.875         # significand 2047, exponent field 22: 8188 >> 3 drops 0.5
    block = bx.to_block_fixed(x.half(), dp)
    assert block.a[0, 0].item() == 1 << 12
    assert block.a[0, 1].item() == 0
    assert block.a[0, 2].item() == -12
    assert block.a[0, 3].item() == 1023


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_inputs_score_nan(value):
    dp = datapath(16, 3)
    signs = signs_from_seed(16, 1)
    keys = torch.randn(3, 16, generator=torch.Generator().manual_seed(1)).half()
    keys[1, 5] = value
    queries = torch.randn(2, 16, generator=torch.Generator().manual_seed(2)).half()
    bits = bx.score_bits(bx.build_table(queries, dp, signs), bx.encode_keys(keys, dp, signs), dp)
    assert torch.all(bits[:, 1] == FLOAT32_NAN)
    assert torch.all(bits[:, 0] != FLOAT32_NAN)
    queries[0, 0] = value
    bits = bx.score_bits(bx.build_table(queries, dp, signs), bx.encode_keys(keys, dp, signs), dp)
    assert torch.all(bits[0] == FLOAT32_NAN)


def _binary32_reference(z, e):
    """Round z * 2**e to binary32 with Python integers only (round half to even)."""
    if z == 0:
        return 0
    sign = 0x80000000 if z < 0 else 0
    m = abs(z)
    top = m.bit_length() - 1 + e
    shift = m.bit_length() - 24 if top >= -126 else -149 - e
    if shift > 0:
        q, r = m >> shift, m & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
    else:
        q = m << -shift
    if top >= -126:
        if q == 1 << 24:
            q, top = q >> 1, top + 1
        if top > 127:
            return sign | 0x7F800000
        return sign | ((top + 127) << 23) | (q & 0x7FFFFF)
    return sign | q


def test_binary32_rounding_matches_integer_reference():
    seed = 2024
    print(f"seed {seed}")
    rng = random.Random(seed)
    zs, es = [], []
    for _ in range(20000):
        z = rng.randint(-(1 << 48), 1 << 48) >> rng.randint(0, 48)
        zs.append(z)
        es.append(rng.randint(-300, 140))
    # Exact ties: 25 significant bits ending in 1 sit halfway between two binary32 values.
    for k in range(200):
        z = (1 << 24) | (2 * rng.randrange(1 << 23) + 1)
        zs.append(z if k % 2 else -z)
        es.append(rng.choice([0, -150 - 24, -126 - 24]))
    got = bx.binary32_bits(torch.tensor(zs), torch.tensor(es)).tolist()
    expected = [_binary32_reference(z, e) for z, e in zip(zs, es)]
    assert got == expected


def test_binary32_agrees_with_struct_for_doubles():
    for value in [1.0, -2.5, 3.4e38, 1e-45, 1.5e-45, 2.0 ** -149 * 0.5, 2.0 ** -149 * 1.5]:
        mantissa, exponent = math.frexp(value)
        z = int(mantissa * 2 ** 53)
        bits = bx.binary32_bits(torch.tensor([z]), torch.tensor([exponent - 53])).item()
        assert bits == struct.unpack("<I", struct.pack("<f", value))[0]


def test_pack_unpack_roundtrip():
    dp = datapath(32, 3)
    keys = torch.randn(10, 32, generator=torch.Generator().manual_seed(3)).half()
    rows = bx.encode_keys(keys, dp, signs_from_seed(32, 1))
    words = bx.pack_rows(rows, dp)
    assert all(w < (1 << dp.row_width) for w in words)
    back = bx.unpack_rows(words, dp)
    assert torch.equal(back.codes, rows.codes)
    assert torch.equal(back.norm, rows.norm)
    assert torch.equal(back.exp, rows.exp)
    assert torch.equal(back.nan, rows.nan)


def test_isqrt_exact_near_squares():
    values = []
    for r in [0, 1, 2, 3, 1 << 20, (1 << 26) - 1, 94906265]:
        values += [r * r - 1, r * r, r * r + 1] if r else [0, 1]
    v = torch.tensor(values, dtype=torch.int64)
    assert bx.isqrt(v).tolist() == [math.isqrt(x) for x in values]


def test_bit_exact_quality_matches_ideal():
    # Relative RMS error against exact dot products, bit-exact within 1 % of the ideal's.
    seed = 9
    print(f"seed {seed}")
    gen = torch.Generator().manual_seed(seed)
    dp = datapath(128, 3)
    signs = signs_from_seed(128, 1)
    keys = torch.randn(2000, 128, generator=gen).half()
    queries = torch.randn(32, 128, generator=gen).half()
    exact = ideal.exact_scores(queries, keys)
    codes, norms = ideal.encode(keys.double(), dp.codebook, signs)
    ideal_scores = ideal.score(queries.double(), codes, norms, dp.codebook, signs)
    exact_scores = bx.score_floats(bx.build_table(queries, dp, signs),
                                   bx.encode_keys(keys, dp, signs), dp).double()

    def rel(a):
        return ((a - exact).pow(2).mean() / exact.pow(2).mean()).sqrt().item()

    assert abs(rel(exact_scores) - rel(ideal_scores)) <= 0.01 * rel(ideal_scores)


def test_inputs_of_wrong_dtype_are_rejected():
    dp = datapath(16, 2)
    with pytest.raises(TypeError, match=r"^inputs must be 16-bit patterns or fp16 tensors"):
        bx.to_block_fixed(torch.zeros(1, 16), dp)
    with pytest.raises(TypeError, match=r"does not match input format 'fp16'"):
        bx.to_block_fixed(torch.zeros(1, 16, dtype=torch.bfloat16), dp)
    with pytest.raises(ValueError, match=r"^vectors must have 16 elements, not 8$"):
        bx.to_block_fixed(torch.zeros(1, 8, dtype=torch.float16), dp)
