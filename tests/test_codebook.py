import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

from golden.codebook import Codebook, solve_codebook
from golden.params import DISTRIBUTIONS, MAX_BITS, MIN_BITS, SUPPORTED_D

REPO_ROOT = Path(__file__).resolve().parents[1]

ALL_BITS = range(MIN_BITS, MAX_BITS + 1)
ALL_CASES = [(d, bits, dist) for dist in DISTRIBUTIONS for d in SUPPORTED_D for bits in ALL_BITS]

# Published Lloyd-Max quantizer of the standard normal: positive centroids and MSE, rounded to
# the digits shown.
NORMAL_TABLE = {
    1: ((0.7979,), 0.3634),
    2: ((0.4528, 1.5104), 0.1175),
    3: ((0.2451, 0.7560, 1.3439, 2.1519), 0.03455),
    4: ((0.1284, 0.3880, 0.6567, 0.9423, 1.2562, 1.6180, 2.0690, 2.7326), 0.00950),
}


def _density(d, distribution):
    """Return the (unnormalized) density of one unit-vector coordinate and its support."""
    if distribution == "gaussian":
        return (lambda x: math.exp(-0.5 * d * x * x)), (-math.inf, math.inf)
    exponent = (d - 3) / 2
    return (lambda x: (1.0 - x * x) ** exponent), (-1.0, 1.0)


def _integrate(f, low, high):
    value, _ = integrate.quad(f, low, high, epsabs=0.0, epsrel=1e-12, limit=200)
    return value


def _cells(codebook, support):
    edges = (support[0], *codebook.boundaries, support[1])
    return list(zip(edges[:-1], edges[1:]))


def _quadrature_mse(codebook, d, distribution):
    """Return the codebook's mean squared error under the (d, distribution) density, by quadrature."""
    f, support = _density(d, distribution)
    total_mass = _integrate(f, *support)
    error = 0.0
    for (low, high), c in zip(_cells(codebook, support), codebook.centroids):
        error += _integrate(lambda x: (x - c) ** 2 * f(x), low, high)
    return error / total_mass


@pytest.mark.parametrize(("d", "bits", "distribution"), ALL_CASES)
def test_boundaries_are_midpoints(d, bits, distribution):
    cb = solve_codebook(d, bits, distribution)
    assert len(cb.centroids) == 2**bits
    assert len(cb.boundaries) == 2**bits - 1
    for j, boundary in enumerate(cb.boundaries):
        assert boundary == (cb.centroids[j] + cb.centroids[j + 1]) / 2, j


@pytest.mark.parametrize(("d", "bits", "distribution"), ALL_CASES)
def test_centroids_are_cell_means(d, bits, distribution):
    cb = solve_codebook(d, bits, distribution)
    f, support = _density(d, distribution)
    for j, ((low, high), c) in enumerate(zip(_cells(cb, support), cb.centroids)):
        mass = _integrate(f, low, high)
        mean = _integrate(lambda x: x * f(x), low, high) / mass
        # Compared in standardized units (standard deviation 1), which is stricter than the raw scale.
        assert abs(c - mean) * math.sqrt(d) <= 1e-10, (j, c, mean)


@pytest.mark.parametrize(("d", "bits", "distribution"), ALL_CASES)
def test_codebook_symmetric(d, bits, distribution):
    cb = solve_codebook(d, bits, distribution)
    half = 2 ** (bits - 1)
    for j in range(2**bits):
        assert cb.centroids[j] == -cb.centroids[-1 - j]
    assert cb.boundaries[half - 1] == 0.0
    assert all(b < cb.boundaries[j + 1] for j, b in enumerate(cb.boundaries[:-1]))
    assert cb.positive_centroids == tuple(c for c in cb.centroids if c > 0)
    assert len(cb.positive_centroids) == half
    assert cb.positive_boundaries == tuple(b for b in cb.boundaries if b > 0)
    assert len(cb.positive_boundaries) == half - 1


@pytest.mark.parametrize("d", SUPPORTED_D)
@pytest.mark.parametrize("bits", ALL_BITS)
def test_gaussian_matches_normal_table(d, bits):
    cb = solve_codebook(d, bits, "gaussian")
    table_centroids, table_mse = NORMAL_TABLE[bits]
    standardized = [c * math.sqrt(d) for c in cb.positive_centroids]
    # One unit in the 4th decimal, because the published 0.6567 is 0.656759 truncated, not rounded.
    assert standardized == pytest.approx(table_centroids, abs=1.0001e-4)
    # Half a unit in the last published digit of the MSE.
    last_digit = 1e-4 if table_mse > 0.1 else 1e-5
    assert cb.mse * d == pytest.approx(table_mse, abs=0.5 * last_digit)


@pytest.mark.parametrize(("d", "bits", "distribution"), ALL_CASES)
def test_mse_matches_quadrature(d, bits, distribution):
    cb = solve_codebook(d, bits, distribution)
    assert cb.mse == pytest.approx(_quadrature_mse(cb, d, distribution), rel=1e-9)


MONTE_CARLO_CASES = [(16, 2, "beta"), (16, 4, "beta"), (128, 3, "gaussian"), (128, 3, "beta"), (256, 1, "gaussian")]


@pytest.mark.parametrize(("d", "bits", "distribution"), MONTE_CARLO_CASES)
def test_mse_matches_monte_carlo(d, bits, distribution):
    seed = 20261204 + 1000 * d + bits
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    if distribution == "gaussian":
        samples = rng.standard_normal(2_000_000) / math.sqrt(d)
    else:
        vectors = rng.standard_normal((2_000_000 // d, d))
        samples = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).ravel()
    cb = solve_codebook(d, bits, distribution)
    reconstructed = np.asarray(cb.centroids)[np.searchsorted(cb.boundaries, samples)]
    estimate = float(np.mean((samples - reconstructed) ** 2))
    print(f"mse={cb.mse:.6g} monte_carlo={estimate:.6g}")
    assert estimate == pytest.approx(cb.mse, rel=0.02)


@pytest.mark.parametrize("d", [16, 32])
@pytest.mark.parametrize("bits", ALL_BITS)
def test_beta_beats_gaussian_on_sphere(d, bits):
    # The beta codebook is MSE-optimal for the sphere marginal, so the normal one must do worse there.
    beta = solve_codebook(d, bits, "beta")
    gaussian = solve_codebook(d, bits, "gaussian")
    gaussian_on_sphere = _quadrature_mse(gaussian, d, "beta")
    assert beta.mse < gaussian_on_sphere


@pytest.mark.parametrize("d", SUPPORTED_D)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_mse_decreases_with_bits(d, distribution):
    errors = [solve_codebook(d, bits, distribution).mse for bits in ALL_BITS]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    # Even one bit must beat the all-zero reconstruction, whose error is the variance 1/d.
    assert errors[0] < 1.0 / d


@pytest.mark.parametrize("bits", ALL_BITS)
def test_beta_approaches_gaussian(bits):
    differences = []
    for d in SUPPORTED_D:
        beta = solve_codebook(d, bits, "beta")
        gaussian = solve_codebook(d, bits, "gaussian")
        standardized = [abs(b - g) * math.sqrt(d) for b, g in zip(beta.centroids, gaussian.centroids)]
        differences.append(max(standardized))
    assert all(later < earlier for earlier, later in zip(differences, differences[1:])), differences
    assert differences[-1] < 0.03


def test_solve_codebook_cached():
    first = solve_codebook(128, 3)
    assert solve_codebook(d=128, bits=3, distribution="gaussian") is first
    assert solve_codebook(128, 3, "beta") is not first


def test_codebook_dict_round_trip():
    cb = solve_codebook(64, 2, "beta")
    data = json.loads(json.dumps(cb.to_dict()))
    assert set(data) == {"d", "bits", "distribution", "centroids", "boundaries", "mse"}
    assert Codebook(**data) == cb


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"d": 100, "bits": 3}, ValueError, r"^d must be a power of two in \{16, 32, 64, 128, 256\}, not 100$"),
        ({"d": 512, "bits": 3}, ValueError, r"^d must be a power of two in \{16, 32, 64, 128, 256\}, not 512$"),
        ({"d": 128.0, "bits": 3}, TypeError, r"^d must be an integer, not 128\.0$"),
        ({"d": "128", "bits": 3}, TypeError, r"^d must be an integer, not '128'$"),
        ({"d": 128, "bits": 0}, ValueError, r"^bits must be in 1\.\.4, not 0$"),
        ({"d": 128, "bits": 5}, ValueError, r"^bits must be in 1\.\.4, not 5$"),
        ({"d": 128, "bits": True}, TypeError, r"^bits must be an integer, not True$"),
        ({"d": 128, "bits": 3.0}, TypeError, r"^bits must be an integer, not 3\.0$"),
        ({"d": 128, "bits": 3, "distribution": "foo"}, ValueError,
         r"^distribution must be one of gaussian, beta, not 'foo'$"),
        ({"d": 128, "bits": 3, "distribution": ["beta"]}, ValueError,
         r"^distribution must be one of gaussian, beta, not \['beta'\]$"),
    ],
)
def test_solve_codebook_rejects(kwargs, error, message):
    with pytest.raises(error, match=message):
        solve_codebook(**kwargs)


def test_solve_codebook_validates_before_cache():
    # 16.0 == 16 and True == 1 as cache keys, so a cached (16, 1) must not let these through.
    solve_codebook(16, 1)
    with pytest.raises(TypeError, match=r"^d must be an integer, not 16\.0$"):
        solve_codebook(16.0, 1)
    with pytest.raises(TypeError, match=r"^bits must be an integer, not True$"):
        solve_codebook(16, True)


def _fields(cb, **changes):
    fields = cb.to_dict()
    fields.update(changes)
    return fields


def test_codebook_rejects_inconsistent_fields():
    cb = solve_codebook(16, 2)
    c = list(cb.centroids)
    b = list(cb.boundaries)
    with pytest.raises(ValueError, match=r"^centroids must have 2\*\*bits = 4 entries, not 3$"):
        Codebook(**_fields(cb, centroids=c[:3]))
    with pytest.raises(ValueError, match=r"^boundaries must have 2\*\*bits - 1 = 3 entries, not 2$"):
        Codebook(**_fields(cb, boundaries=b[:2]))
    with pytest.raises(ValueError, match=r"^centroids must be strictly ascending, not "):
        Codebook(**_fields(cb, centroids=[c[1], c[0], c[3], c[2]]))
    with pytest.raises(ValueError, match=r"^centroids must be symmetric about 0, not "):
        Codebook(**_fields(cb, centroids=[c[0], c[1], c[2], c[3] + 0.01]))
    with pytest.raises(ValueError, match=r"^boundaries\[2\] must be the midpoint .+ of its centroids, not 0\.5$"):
        Codebook(**_fields(cb, boundaries=[b[0], b[1], 0.5]))
    with pytest.raises(ValueError, match=r"^mse must be a finite number >= 0, not -1\.0$"):
        Codebook(**_fields(cb, mse=-1.0))
    with pytest.raises(TypeError, match=r"^centroids\[1\] must be a real number, not 'x'$"):
        Codebook(**_fields(cb, centroids=[c[0], "x", c[2], c[3]]))
    with pytest.raises(TypeError, match=r"^bits must be an integer, not 2\.0$"):
        Codebook(**_fields(cb, bits=2.0))


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "golden", "codebook", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_json():
    result = _run_cli("--d", "128", "--bits", "3")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"d", "bits", "distribution", "centroids", "boundaries", "mse"}
    assert (data["d"], data["bits"], data["distribution"]) == (128, 3, "gaussian")
    standardized = [c * math.sqrt(128) for c in data["centroids"][4:]]
    assert standardized == pytest.approx(NORMAL_TABLE[3][0], abs=1e-4)
    assert data["mse"] * 128 == pytest.approx(NORMAL_TABLE[3][1], abs=5e-6)
    assert len(data["boundaries"]) == 7
    assert result.stdout.startswith('{\n  "d": 128,')


def test_cli_beta_distribution():
    result = _run_cli("--d", "16", "--bits", "2", "--distribution", "beta")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["distribution"] == "beta"
    assert data == solve_codebook(16, 2, "beta").to_dict()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--d", "100", "--bits", "3"],
         r"argument --d: d must be a power of two in \{16, 32, 64, 128, 256\}, not 100\n"),
        (["--d", "512", "--bits", "3"],
         r"argument --d: d must be a power of two in \{16, 32, 64, 128, 256\}, not 512\n"),
        (["--d", "128.0", "--bits", "3"], r"argument --d: d must be an integer, not '128\.0'\n"),
        (["--d", "128", "--bits", "0"], r"argument --bits: bits must be in 1\.\.4, not 0\n"),
        (["--d", "128", "--bits", "5"], r"argument --bits: bits must be in 1\.\.4, not 5\n"),
        (["--d", "128", "--bits", "3", "--distribution", "foo"],
         r"argument --distribution: distribution must be one of gaussian, beta, not 'foo'\n"),
    ],
)
def test_cli_rejects_invalid_value(args, message):
    result = _run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert re.search(message, result.stderr), result.stderr
