"""Walsh-Hadamard transforms, in floating point and in exact integers.

``H_d`` is the Sylvester Hadamard matrix of order ``d`` with entries +1/-1 (no scaling).
The orthogonal randomized transform of the algorithm is ``R = H_d diag(s) / sqrt(d)``.

The transform is computed in constant-geometry form: one stage maps ``x`` to
``concat(x[0::2] + x[1::2], x[0::2] - x[1::2])`` and ``log2(d)`` repetitions of that stage
equal ``H_d x``. The hardware iterates the same single stage, so both share this order.
"""

import torch


def fwht(x):
    """Apply ``H_d`` (unscaled) along the last dimension of ``x``; works for float and integer tensors."""
    d = x.shape[-1]
    if d < 1 or d & (d - 1):
        raise ValueError(f"transform length must be a power of two, not {d}")
    for _ in range(d.bit_length() - 1):
        even, odd = x[..., 0::2], x[..., 1::2]
        x = torch.cat([even + odd, even - odd], dim=-1)
    return x


def rotate(x, signs):
    """Apply the orthogonal randomized Hadamard transform ``R x = H diag(s) x / sqrt(d)``."""
    s = torch.as_tensor(signs, dtype=x.dtype, device=x.device)
    return fwht(x * s) / (x.shape[-1] ** 0.5)


def unrotate(y, signs):
    """Apply ``R^T``, the inverse of :func:`rotate`."""
    s = torch.as_tensor(signs, dtype=y.dtype, device=y.device)
    return fwht(y) / (y.shape[-1] ** 0.5) * s
