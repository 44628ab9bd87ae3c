"""Ideal (floating-point) model of AXELRAM: encode, score by table lookup, reconstruct.

Codes use the sign-magnitude layout that the hardware stores: for a codebook with ``2**bits``
centroids, code ``(sign << (bits - 1)) | mag`` stands for ``+/- positive_centroids[mag]``,
sign 1 meaning negative. A coordinate goes to the upper cell only when it is strictly greater
than the boundary, so a coordinate equal to a boundary (0 included) takes the lower magnitude
and sign 0.

Signs may be one vector of length ``d`` or any tensor broadcastable against the inputs (for
example one vector per attention head).
"""

import torch

from .hadamard import fwht


def _as_signs(signs, like):
    return torch.as_tensor(signs, dtype=like.dtype, device=like.device)


def _check_finite(x, what):
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite values; the ideal model needs finite inputs")


def rotate(x, signs):
    """Return ``R x = H diag(s) x / sqrt(d)`` along the last dimension."""
    return fwht(x * _as_signs(signs, x)) / (x.shape[-1] ** 0.5)


def quantize_unit(u, codebook):
    """Return the sign-magnitude codes of rotated unit-vector coordinates ``u``."""
    bounds = torch.tensor(codebook.positive_boundaries, dtype=u.dtype, device=u.device)
    mag = torch.bucketize(u.abs(), bounds, right=False)
    sign = (u < 0).to(torch.int64)
    return (sign << (codebook.bits - 1)) | mag


def code_values(codes, codebook, dtype=torch.float64):
    """Return the centroid value (unit-sphere scale) of each code."""
    positive = torch.tensor(codebook.positive_centroids, dtype=dtype, device=codes.device)
    mag = codes & ((1 << (codebook.bits - 1)) - 1)
    sign = (codes >> (codebook.bits - 1)) & 1
    return torch.where(sign.bool(), -positive[mag], positive[mag])


def encode(keys, codebook, signs):
    """Encode keys ``(..., d)`` into ``(codes, norms)``; an all-zero key gets norm 0 and codes 0."""
    _check_finite(keys, "keys")
    norms = keys.norm(dim=-1)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    u = rotate(keys, signs) / safe.unsqueeze(-1)
    codes = quantize_unit(u, codebook)
    codes = torch.where((norms > 0).unsqueeze(-1), codes, torch.zeros_like(codes))
    return codes, norms


def reconstruct(codes, norms, codebook, signs):
    """Return the keys that ``(codes, norms)`` stand for (quantize-dequantize), in the original basis."""
    c = code_values(codes, codebook, dtype=norms.dtype)
    d = c.shape[-1]
    return fwht(c) / (d ** 0.5) * _as_signs(signs, c) * norms.unsqueeze(-1)


def quantize_dequantize(x, codebook, signs):
    """Return ``x`` ``(..., d)`` after encoding and reconstruction, in the dtype of ``x``."""
    work = x.to(torch.float64)
    codes, norms = encode(work, codebook, signs)
    return reconstruct(codes, norms, codebook, signs).to(x.dtype)


def score(queries, codes, norms, codebook, signs):
    """Score queries ``(..., d)`` against stored keys ``(T, d)`` by the table-lookup path.

    Builds ``P[i][j] = (R q)_i * c_j`` once per query, then sums ``P[i][code_t[i]]`` over ``i`` and
    scales by the key's norm. Returns ``(..., T)``.
    """
    _check_finite(queries, "queries")
    q_r = rotate(queries.to(torch.float64), signs)
    c = code_values(codes, codebook)
    return (q_r @ c.transpose(-1, -2)) * norms.to(torch.float64)


def exact_scores(queries, keys):
    """Return the exact inner products ``<q, k>`` in float64, ``(..., T)``."""
    return queries.to(torch.float64) @ keys.to(torch.float64).transpose(-1, -2)
