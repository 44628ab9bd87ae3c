"""Lloyd-Max codebooks for one coordinate of a uniformly random unit vector in ``R^d``.

The write path rotates a key to a unit vector ``u`` and quantizes every coordinate ``u_i`` with one
fixed scalar codebook of ``2**bits`` centroids. The codebook is the Lloyd-Max quantizer, the
quantizer with the least mean squared error, for the distribution of ``u_i``:

* ``"gaussian"``: the normal approximation ``N(0, 1/d)``.
* ``"beta"``: the exact marginal of the sphere, with density proportional to
  ``(1 - x**2) ** ((d - 3) / 2)`` on ``[-1, 1]``, which is ``Beta((d-1)/2, (d-1)/2)`` moved from
  ``[0, 1]`` to ``[-1, 1]``.

Both distributions have mean 0 and variance ``1/d``. The solver works in standardized units
``y = sqrt(d) * x`` (variance 1) and scales the result back to the unit-sphere scale. Both densities
are symmetric about 0, so the solver fits the ``2**(bits-1)`` positive centroids to the positive
half of the distribution and mirrors them. A codebook therefore has a boundary at exactly 0.0.

Every cell quantity comes from closed forms: the mass, first moment and second moment of the part
of the distribution above ``y``, differenced between a cell's two boundaries.
"""

import dataclasses
import functools
import math
import numbers

import numpy as np
from scipy import special

from .params import check_bits, check_d, check_distribution

LLOYD_TOLERANCE = 1e-14
"""Largest centroid change of the last Lloyd step, in standardized units (standard deviation 1)."""

MAX_LLOYD_ITERATIONS = 20_000
"""Lloyd steps allowed before the solver raises RuntimeError. 4 bits converges in about 800 steps."""


@dataclasses.dataclass(frozen=True)
class Codebook:
    """Symmetric scalar codebook for the coordinates of a rotated unit vector.

    Values are in the unit-sphere scale: a coordinate has standard deviation ``1/sqrt(d)``.

    Attributes:
        d: head dimension.
        bits: bits per coordinate.
        distribution: the coordinate distribution the codebook was fitted to, ``"gaussian"`` or
            ``"beta"``.
        centroids: ``2**bits`` floats in strictly ascending order, with
            ``centroids[j] == -centroids[-1 - j]``.
        boundaries: ``2**bits - 1`` floats, where ``boundaries[j]`` is exactly the float
            ``(centroids[j] + centroids[j + 1]) / 2``. The middle boundary is 0.0.
        mse: expected squared error per coordinate under ``distribution``.

    Raises:
        TypeError: a field has the wrong kind.
        ValueError: a field has the wrong value, or the fields break the rules above.
    """

    d: int
    bits: int
    distribution: str
    centroids: tuple
    boundaries: tuple
    mse: float

    def __post_init__(self):
        check_d(self.d)
        check_bits(self.bits)
        check_distribution(self.distribution)
        # The fields are coerced in place so that lists and numpy arrays are accepted.
        centroids = _as_float_tuple("centroids", self.centroids)
        boundaries = _as_float_tuple("boundaries", self.boundaries)
        object.__setattr__(self, "centroids", centroids)
        object.__setattr__(self, "boundaries", boundaries)
        object.__setattr__(self, "mse", _as_float("mse", self.mse))

        levels = 2**self.bits
        if len(centroids) != levels:
            raise ValueError(f"centroids must have 2**bits = {levels} entries, not {len(centroids)}")
        if len(boundaries) != levels - 1:
            raise ValueError(f"boundaries must have 2**bits - 1 = {levels - 1} entries, not {len(boundaries)}")
        for j in range(levels - 1):
            if not centroids[j] < centroids[j + 1]:
                raise ValueError(f"centroids must be strictly ascending, not {centroids!r}")
        for j in range(levels):
            if centroids[j] != -centroids[-1 - j]:
                raise ValueError(f"centroids must be symmetric about 0, not {centroids!r}")
        for j in range(levels - 1):
            midpoint = (centroids[j] + centroids[j + 1]) / 2
            if boundaries[j] != midpoint:
                raise ValueError(
                    f"boundaries[{j}] must be the midpoint {midpoint!r} of its centroids, not {boundaries[j]!r}"
                )
        if not (math.isfinite(self.mse) and self.mse >= 0.0):
            raise ValueError(f"mse must be a finite number >= 0, not {self.mse!r}")

    @property
    def positive_centroids(self):
        """The ``2**(bits-1)`` centroids above 0, ascending."""
        return self.centroids[2 ** (self.bits - 1):]

    @property
    def positive_boundaries(self):
        """The ``2**(bits-1) - 1`` boundaries above 0, ascending. The boundary 0.0 is excluded."""
        return self.boundaries[2 ** (self.bits - 1):]

    def to_dict(self):
        """Return the codebook as a JSON-ready dict with lists in place of tuples."""
        return {
            "d": self.d,
            "bits": self.bits,
            "distribution": self.distribution,
            "centroids": list(self.centroids),
            "boundaries": list(self.boundaries),
            "mse": self.mse,
        }


def solve_codebook(d, bits, distribution="gaussian"):
    """Solve the Lloyd-Max codebook of ``2**bits`` centroids for one unit-vector coordinate in ``R^d``.

    ``distribution`` is ``"gaussian"`` for ``N(0, 1/d)`` or ``"beta"`` for the exact marginal of the
    sphere. At the returned codebook every boundary is the midpoint of its neighbouring centroids,
    and every centroid is the conditional mean of its cell to within about 1e-14 (standardized
    units). The result is deterministic and cached, so repeated calls return the same object.

    Raises:
        TypeError: ``d`` or ``bits`` is not an integer.
        ValueError: ``d``, ``bits`` or ``distribution`` is not supported (see :mod:`golden.params`).
        RuntimeError: the Lloyd iteration did not converge within ``MAX_LLOYD_ITERATIONS`` steps.
    """
    # Validate before the cache lookup, because the cache treats 16.0 and True as equal to 16 and 1.
    check_d(d)
    check_bits(bits)
    check_distribution(distribution)
    return _solve_cached(d, bits, distribution)


@functools.lru_cache(maxsize=None)
def _solve_cached(d, bits, distribution):
    half = _StandardNormal() if distribution == "gaussian" else _StandardizedSphereMarginal(d)
    positive = _lloyd_positive_half(half, 2 ** (bits - 1), f"d={d}, bits={bits}, distribution={distribution!r}")
    mse = 2.0 * _half_squared_error(half, positive) / d

    scale = 1.0 / math.sqrt(d)
    positive = tuple(float(c) * scale for c in positive)
    centroids = tuple(-c for c in reversed(positive)) + positive
    boundaries = tuple((low + high) / 2 for low, high in zip(centroids, centroids[1:]))
    return Codebook(d, bits, distribution, centroids, boundaries, mse)


class _StandardNormal:
    """Tail quantities of ``N(0, 1)``: for ``y >= 0``, the mass and moments of the part above ``y``."""

    def tail_mass(self, y):
        return special.ndtr(-y)

    def tail_first_moment(self, y):
        return np.exp(-0.5 * y * y) / math.sqrt(2.0 * math.pi)

    def tail_second_moment(self, y):
        # Integration by parts: E[Y**2; Y > y] = P(Y > y) + y * phi(y).
        return special.ndtr(-y) + y * self.tail_first_moment(y)


class _StandardizedSphereMarginal:
    """Tail quantities of ``Y = sqrt(d) * X``, where ``X`` is one coordinate of a uniform unit vector.

    ``X`` has density ``(1 - x**2) ** (n - 1) / B(1/2, n)`` on ``[-1, 1]`` with ``n = (d - 1) / 2``.
    Substituting ``t = x**2`` turns the tail mass and second moment into regularized incomplete beta
    functions, and the first moment has the antiderivative ``-(1 - x**2) ** n / (2 n)``.
    """

    def __init__(self, d):
        self.d = d
        self.n = (d - 1) / 2
        self.first_moment_scale = math.sqrt(d) / ((d - 1) * special.beta(0.5, self.n))

    def tail_mass(self, y):
        return 0.5 * special.betaincc(0.5, self.n, y * y / self.d)

    def tail_first_moment(self, y):
        return self.first_moment_scale * np.exp(self.n * np.log1p(-y * y / self.d))

    def tail_second_moment(self, y):
        # E[X**2; X > x] is the upper incomplete beta of (3/2, n) at x**2 times B(3/2, n) / (2 B(1/2, n)).
        # That ratio of beta functions is 1/d, and Y**2 = d * X**2, so only the factor 1/2 remains.
        return 0.5 * special.betaincc(1.5, self.n, y * y / self.d)


def _cell_lower_edges(positive_centroids):
    """Return the lower edge of each positive cell: 0 and the midpoints of neighbouring centroids."""
    return np.concatenate(([0.0], (positive_centroids[:-1] + positive_centroids[1:]) / 2))


def _per_cell(tail_values):
    """Difference tail values at the lower edges into per-cell values (the top cell's tail ends at 0)."""
    return tail_values - np.append(tail_values[1:], 0.0)


def _lloyd_step(half, positive_centroids):
    """Return the conditional mean of each positive cell, the cells bounded by centroid midpoints."""
    lower = _cell_lower_edges(positive_centroids)
    mass = _per_cell(half.tail_mass(lower))
    first_moment = _per_cell(half.tail_first_moment(lower))
    return first_moment / mass


def _lloyd_positive_half(half, count, description):
    """Iterate Lloyd steps on the positive half until no centroid moves more than LLOYD_TOLERANCE."""
    # Start from the medians of equal-mass cells of the positive half-normal, close to both distributions.
    quantile_levels = (np.arange(count) + 0.5) / count
    centroids = -special.ndtri(0.5 * (1.0 - quantile_levels))

    change = math.inf
    for _ in range(MAX_LLOYD_ITERATIONS):
        updated = _lloyd_step(half, centroids)
        change = float(np.max(np.abs(updated - centroids)))
        centroids = updated
        if change <= LLOYD_TOLERANCE:
            return centroids
    raise RuntimeError(
        f"Lloyd iteration for {description} did not converge in {MAX_LLOYD_ITERATIONS} steps: "
        f"last centroid change {change:.3g} > {LLOYD_TOLERANCE:g}"
    )


def _half_squared_error(half, positive_centroids):
    """Return E[(Y - c)**2 ; Y > 0] for the quantizer with these positive centroids, in standardized units."""
    lower = _cell_lower_edges(positive_centroids)
    mass = _per_cell(half.tail_mass(lower))
    first_moment = _per_cell(half.tail_first_moment(lower))
    second_moment = _per_cell(half.tail_second_moment(lower))
    c = positive_centroids
    return float(np.sum(second_moment - 2.0 * c * first_moment + c * c * mass))


def _as_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {value!r}")
    return float(value)


def _as_float_tuple(name, values):
    try:
        items = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of real numbers, not {values!r}") from None
    return tuple(_as_float(f"{name}[{j}]", v) for j, v in enumerate(items))
