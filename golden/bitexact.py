"""Bit-exact integer model of the AXELRAM datapath.

This is the contract the RTL matches bit for bit; ``docs/numerics.md`` gives the reasoning
behind each step. All arithmetic is on ``torch.int64`` tensors, vectorized over any leading
dimensions. Inputs are raw 16-bit patterns (``torch.int16``/``int32``/``int64`` holding the
FP16 or BF16 bits) or ``torch.float16``/``torch.bfloat16`` tensors, which are reinterpreted.

Steps, per vector of ``d`` elements:

1. Block floating point: ``E = max_i max(e_i, 1)`` over the exponent fields, and each
   significand ``m_i << guard`` is shifted right by ``E - max(e_i, 1)`` (toward zero, a shift of
   13 or more gives 0) and signed. Any infinity or NaN sets the vector's NaN flag.
2. Transform: ``y = H_d (s * a)`` exactly (the unscaled +/-1 Hadamard matrix).
3. Keys: ``n = isqrt(sum a_i**2)``; ``mag_i = #{j : |y_i| * 2**16 > n * Gamma_j}``,
   ``sign_i = y_i < 0``, code ``(sign_i << (bits-1)) | mag_i``.
4. Queries: table ``P[i][m] = (y_i * K_m + 2**11) >> 12`` (floor shift, so round half up).
5. Score: ``S = sum_i +/-P[i][mag_i]``, ``Z = n * S``, and the binary32 nearest (ties to even)
   to ``Z * 2**(E_q + E_k - score_exp_offset)``; NaN if either vector had the NaN flag.
"""

from dataclasses import dataclass

import torch

from .hadamard import fwht
from .numerics import CENTROID_FRAC_BITS, BOUNDARY_FRAC_BITS, FLOAT32_NAN, MAG_BITS, datapath

__all__ = [
    "BlockVector", "KeyRows", "QueryTable", "to_block_fixed", "encode_keys", "build_table",
    "score_bits", "score_floats", "binary32_bits", "pack_rows", "unpack_rows",
    "quantize_dequantize", "isqrt",
]


def _raw_bits(x, fmt):
    """Return the 16-bit patterns of ``x`` as non-negative int64."""
    if x.dtype in (torch.float16, torch.bfloat16):
        expected = torch.float16 if fmt.name == "fp16" else torch.bfloat16
        if x.dtype != expected:
            raise TypeError(f"input dtype {x.dtype} does not match input format {fmt.name!r}")
        x = x.view(torch.int16)
    elif x.dtype.is_floating_point or x.dtype == torch.bool:
        raise TypeError(f"inputs must be 16-bit patterns or {fmt.name} tensors, not {x.dtype}")
    x = x.to(torch.int64)
    if ((x < -(1 << 15)) | (x >= (1 << 16))).any():
        raise ValueError("input bit patterns must fit in 16 bits")
    return x & 0xFFFF


@dataclass
class BlockVector:
    """Vectors in block floating point: ``value_i ~= a_i * 2**(exp - bias - 12)``."""
    a: torch.Tensor      # (..., d) int64, |a| <= 2**13 - 1
    exp: torch.Tensor    # (...) int64, block exponent in 1..exp_max-1
    nan: torch.Tensor    # (...) bool, any element was an infinity or a NaN


def to_block_fixed(x, dp):
    """Convert input vectors (last dimension ``d``) to :class:`BlockVector`."""
    fmt = dp.fmt
    raw = _raw_bits(x, fmt)
    if raw.shape[-1] != dp.d:
        raise ValueError(f"vectors must have {dp.d} elements, not {raw.shape[-1]}")
    sign = (raw >> 15) & 1
    field = (raw >> fmt.man_bits) & fmt.exp_max
    frac = raw & ((1 << fmt.man_bits) - 1)
    nonfinite = field == fmt.exp_max
    sig = torch.where(field == 0, frac, frac | (1 << fmt.man_bits))
    eff = torch.clamp(field, min=1)
    # Non-finite elements take no part in the block exponent; their vector becomes NaN anyway.
    eff = torch.where(nonfinite, torch.ones_like(eff), eff)
    sig = torch.where(nonfinite, torch.zeros_like(sig), sig)
    exp = eff.max(dim=-1).values
    shift = torch.clamp(exp.unsqueeze(-1) - eff, max=MAG_BITS)
    mag = (sig << dp.guard_bits) >> shift
    a = torch.where(sign.bool(), -mag, mag)
    return BlockVector(a=a, exp=exp, nan=nonfinite.any(dim=-1))


def isqrt(v):
    """Return ``floor(sqrt(v))`` of a non-negative int64 tensor, exactly."""
    r = torch.sqrt(v.to(torch.float64)).floor().to(torch.int64)
    # float64 sqrt may be off by one near perfect squares above 2**52; correct both ways.
    r = torch.where(r * r > v, r - 1, r)
    r = torch.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def _signed_transform(a, signs, dp):
    s = torch.as_tensor(signs, dtype=torch.int64, device=a.device)
    if s.shape[-1] != dp.d:
        raise ValueError(f"sign vector must have {dp.d} entries, not {s.shape[-1]}")
    return fwht(a * s)


@dataclass
class KeyRows:
    """Encoded keys as the index SRAM stores them."""
    codes: torch.Tensor  # (..., d) int64 sign-magnitude codes
    norm: torch.Tensor   # (...) int64, isqrt of the aligned key's squared norm
    exp: torch.Tensor    # (...) int64 block exponent
    nan: torch.Tensor    # (...) bool
    _selector: torch.Tensor = None

    def selector(self, dp):
        """Return the codes as a float64 ``(..., d * levels)`` matrix of 0 and +/-1, cached.

        Entry ``[t, i * levels + m]`` is the sign of code ``(t, i)`` where its magnitude is
        ``m``, so a table flattened to ``d * levels`` times this matrix gives the key's sum.
        """
        if self._selector is None:
            levels = dp.levels
            mag = self.codes & (levels - 1)
            sign = 1 - 2 * ((self.codes >> (dp.bits - 1)) & 1)
            selector = torch.zeros(*self.codes.shape, levels, dtype=torch.float64)
            selector.scatter_(-1, mag.unsqueeze(-1), sign.unsqueeze(-1).to(torch.float64))
            self._selector = selector.flatten(-2)
        return self._selector


def encode_keys(keys, dp, signs):
    """Encode keys (last dimension ``d``) into :class:`KeyRows`."""
    block = to_block_fixed(keys, dp)
    norm = isqrt((block.a * block.a).sum(dim=-1))
    y = _signed_transform(block.a, signs, dp)
    lhs = y.abs() << BOUNDARY_FRAC_BITS
    mag = torch.zeros_like(y)
    for gamma in dp.boundary_constants:
        mag += (lhs > (norm * gamma).unsqueeze(-1)).to(torch.int64)
    codes = ((y < 0).to(torch.int64) << (dp.bits - 1)) | mag
    return KeyRows(codes=codes, norm=norm, exp=block.exp, nan=block.nan)


@dataclass
class QueryTable:
    """Per-query lookup tables of the score unit."""
    table: torch.Tensor  # (..., d, levels) int64, entry P[i][m] for the positive centroid m
    exp: torch.Tensor    # (...) int64 block exponent of the query
    nan: torch.Tensor    # (...) bool


def build_table(queries, dp, signs):
    """Transform queries and build their tables ``P[i][m] = (y_i * K_m + 2**11) >> 12``."""
    block = to_block_fixed(queries, dp)
    y = _signed_transform(block.a, signs, dp)
    k = torch.tensor(dp.centroid_constants, dtype=torch.int64, device=y.device)
    half = 1 << (CENTROID_FRAC_BITS - 1)
    table = (y.unsqueeze(-1) * k + half) >> CENTROID_FRAC_BITS
    return QueryTable(table=table, exp=block.exp, nan=block.nan)


def binary32_bits(z, exp):
    """Return the binary32 patterns nearest (ties to even) to ``z * 2**exp`` (int64 tensors).

    Covers overflow to infinity, subnormal results and underflow to a signed zero; ``z == 0``
    gives +0. ``|z|`` must be below 2**53 and ``exp`` within -900..900: then ``z * 2**exp`` is
    exact in float64, and the IEEE conversion from float64 to float32 performs the one rounding.
    """
    z, exp = torch.broadcast_tensors(z.to(torch.int64), exp.to(torch.int64))
    if (z.abs() >= (1 << 53)).any() or (exp.abs() > 900).any():
        raise ValueError("binary32_bits needs |z| < 2**53 and |exp| <= 900")
    exact = torch.ldexp(z.to(torch.float64), exp.to(torch.float64))
    return exact.to(torch.float32).view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def _sums(table, rows, dp):
    """Return ``S[..q, ..t] = sum_i +/-P[q, i, mag[t, i]]`` for tables (Q.., d, L), rows (T.., d)."""
    # Entries and partial sums stay below 2**53, so float64 products and sums are exact.
    p = table.table.to(torch.float64).flatten(-2)
    o = rows.selector(dp)
    q_shape, t_shape = p.shape[:-1], o.shape[:-1]
    s = p.reshape(-1, p.shape[-1]) @ o.reshape(-1, o.shape[-1]).T
    return s.round().to(torch.int64).reshape(*q_shape, *t_shape)


def score_bits(table, rows, dp):
    """Return the binary32 score patterns (int64) of every query against every stored row.

    ``table`` has leading shape ``Q..`` and ``rows`` leading shape ``T..``; the result has shape
    ``(*Q.., *T..)``.
    """
    s = _sums(table, rows, dp)
    nq, nt = table.exp.dim(), rows.exp.dim()
    q_exp = table.exp.reshape(*table.exp.shape, *([1] * nt))
    k_exp = rows.exp.reshape(*([1] * nq), *rows.exp.shape)
    norm = rows.norm.reshape(*([1] * nq), *rows.norm.shape)
    bits = binary32_bits(norm * s, q_exp + k_exp - dp.score_exp_offset)
    nan = table.nan.reshape(*table.nan.shape, *([1] * nt)) | rows.nan.reshape(*([1] * nq), *rows.nan.shape)
    return torch.where(nan, torch.full_like(bits, FLOAT32_NAN), bits)


def score_floats(table, rows, dp):
    """Return the scores of :func:`score_bits` as a float32 tensor."""
    return score_bits(table, rows, dp).to(torch.int32).view(torch.float32)


def pack_rows(rows, dp):
    """Return each stored row as a Python integer laid out as ``dp.row_fields()``."""
    fields = dp.row_fields()
    codes = rows.codes.reshape(-1, dp.d).tolist()
    norms = rows.norm.reshape(-1).tolist()
    exps = rows.exp.reshape(-1).tolist()
    nans = rows.nan.reshape(-1).tolist()
    packed = []
    for c, n, e, f in zip(codes, norms, exps, nans):
        word = sum(code << (i * dp.bits) for i, code in enumerate(c))
        word |= n << fields["norm"][0]
        word |= e << fields["exp"][0]
        word |= int(f) << fields["nan"][0]
        packed.append(word)
    return packed


def unpack_rows(words, dp):
    """Return :class:`KeyRows` from packed row integers (the inverse of :func:`pack_rows`)."""
    fields = dp.row_fields()

    def field(word, name):
        lsb, width = fields[name]
        return (word >> lsb) & ((1 << width) - 1)

    mask = (1 << dp.bits) - 1
    codes = [[(w >> (i * dp.bits)) & mask for i in range(dp.d)] for w in words]
    return KeyRows(
        codes=torch.tensor(codes, dtype=torch.int64).reshape(len(words), dp.d),
        norm=torch.tensor([field(w, "norm") for w in words], dtype=torch.int64),
        exp=torch.tensor([field(w, "exp") for w in words], dtype=torch.int64),
        nan=torch.tensor([bool(field(w, "nan")) for w in words], dtype=torch.bool),
    )


def quantize_dequantize(x, codebook, signs, fmt="fp16"):
    """Return the keys that the hardware's stored rows stand for, as a float tensor like ``x``.

    ``x`` is a float tensor ``(..., d)``; it is rounded to ``fmt`` first, as an LLM runtime
    holding an FP16 or BF16 cache would. Vectors with non-finite elements come back as NaN.
    """
    dp = datapath(codebook.d, codebook.bits, fmt, codebook.distribution)
    half = torch.float16 if fmt == "fp16" else torch.bfloat16
    rows = encode_keys(x.to(half), dp, signs)
    values = torch.tensor(codebook.positive_centroids, dtype=torch.float64)
    mag = rows.codes & (dp.levels - 1)
    sign = (rows.codes >> (dp.bits - 1)) & 1
    c = torch.where(sign.bool(), -values[mag], values[mag])
    s = torch.as_tensor(signs, dtype=torch.float64)
    unit = fwht(c) / (dp.d ** 0.5) * s
    scale = rows.norm.to(torch.float64) * torch.pow(2.0, (rows.exp - dp.fmt.bias - MAG_BITS + 1).to(torch.float64))
    out = unit * scale.unsqueeze(-1)
    out = torch.where(rows.nan.unsqueeze(-1), torch.full_like(out, float("nan")), out)
    return out.to(x.dtype)
