"""Tests of the transform, the sign vectors, the ideal model and the counts."""

import json
import math

import pytest
import torch

from golden import ideal
from golden.codebook import solve_codebook
from golden.counts import operation_counts
from golden.hadamard import fwht, rotate, unrotate
from golden.params import check_bits, check_context, check_d
from golden.signs import (load_signs, save_signs, signs_from_seed, signs_to_word, splitmix64)


def test_splitmix64_reference_values():
    # Published first outputs of SplitMix64 seeded with 0 and 1234567.
    assert splitmix64(0, 2) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]
    assert splitmix64(1234567, 1) == [6457827717110365317]


def test_signs_from_seed_uses_top_bit():
    outputs = splitmix64(7, 64)
    signs = signs_from_seed(64, 7)
    assert signs == [-1 if z >> 63 else 1 for z in outputs]
    assert 20 < signs.count(-1) < 44


def test_signs_differ_by_seed():
    assert signs_from_seed(128, 1) != signs_from_seed(128, 2)


def test_signs_file_roundtrip(tmp_path):
    signs = signs_from_seed(32, 9)
    path = tmp_path / "signs.json"
    save_signs(path, signs)
    assert load_signs(path, d=32) == signs


def test_signs_file_per_layer(tmp_path):
    path = tmp_path / "layers.json"
    layers = [{"layer": k, "signs": signs_from_seed(16, k + 1)} for k in range(3)]
    path.write_text(json.dumps({"d": 16, "layers": layers}))
    assert load_signs(path, layer=2) == signs_from_seed(16, 3)
    with pytest.raises(ValueError, match=r"^sign file .* has 3 layers; choose one of 0\.\.2$"):
        load_signs(path)
    with pytest.raises(ValueError, match=r"^layer 5 not in sign file"):
        load_signs(path, layer=5)


def test_signs_file_rejects_bad_entries(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"d": 16, "signs": [1] * 15 + [0]}))
    with pytest.raises(ValueError, match=r"^sign vector entries must be \+1 or -1, not 0$"):
        load_signs(path)
    with pytest.raises(ValueError, match=r"^sign vector must have 32 entries, not 16$"):
        load_signs(path, d=32)


def test_signs_to_word():
    assert signs_to_word([1, -1, -1, 1]) == 0b0110


@pytest.mark.parametrize("d", [16, 32, 64, 128, 256])
def test_fwht_matches_sylvester_matrix(d):
    h = torch.ones(1, 1, dtype=torch.int64)
    while h.shape[0] < d:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    x = torch.randint(-1000, 1000, (5, d), generator=torch.Generator().manual_seed(d))
    assert torch.equal(fwht(x), x @ h.T)


@pytest.mark.parametrize("d", [16, 128, 256])
def test_rotation_is_orthogonal(d):
    signs = signs_from_seed(d, 3)
    eye = torch.eye(d, dtype=torch.float64)
    r = rotate(eye, signs)
    assert torch.allclose(r @ r.T, eye, atol=1e-12)
    x = torch.randn(4, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(unrotate(rotate(x, signs), signs), x, atol=1e-12)


def test_rotation_preserves_inner_products():
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(8, 128, dtype=torch.float64, generator=gen)
    k = torch.randn(16, 128, dtype=torch.float64, generator=gen)
    signs = signs_from_seed(128, 11)
    assert torch.allclose(rotate(q, signs) @ rotate(k, signs).T, q @ k.T, atol=1e-10)


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ValueError, match=r"^transform length must be a power of two, not 12$"):
        fwht(torch.zeros(12))


# Relative RMS error of table-lookup scores against exact dot products for random Gaussian
# vectors at d = 128, as expected from the Lloyd-Max MSE of each bit width.
EXPECTED_SCORE_ERROR = {2: 0.33, 3: 0.18, 4: 0.094}


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_ideal_score_error_on_gaussian_vectors(bits):
    seed = 100 + bits
    print(f"seed {seed}")
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(2048, 128, dtype=torch.float64, generator=gen)
    queries = torch.randn(64, 128, dtype=torch.float64, generator=gen)
    cb = solve_codebook(128, bits)
    signs = signs_from_seed(128, 1)
    codes, norms = ideal.encode(keys, cb, signs)
    approx = ideal.score(queries, codes, norms, cb, signs)
    exact = ideal.exact_scores(queries, keys)
    rel = ((approx - exact).pow(2).mean() / exact.pow(2).mean()).sqrt().item()
    expected = EXPECTED_SCORE_ERROR[bits]
    assert expected * 0.9 <= rel <= expected * 1.1, rel


def test_ideal_score_equals_reconstructed_dot_product():
    gen = torch.Generator().manual_seed(8)
    keys = torch.randn(100, 64, dtype=torch.float64, generator=gen)
    queries = torch.randn(7, 64, dtype=torch.float64, generator=gen)
    cb = solve_codebook(64, 3)
    signs = signs_from_seed(64, 2)
    codes, norms = ideal.encode(keys, cb, signs)
    recon = ideal.reconstruct(codes, norms, cb, signs)
    assert torch.allclose(ideal.score(queries, codes, norms, cb, signs), queries @ recon.T,
                          atol=1e-9)


def test_ideal_zero_key_has_zero_codes_and_norm():
    cb = solve_codebook(16, 2)
    codes, norms = ideal.encode(torch.zeros(1, 16, dtype=torch.float64), cb, signs_from_seed(16, 1))
    assert norms.item() == 0
    assert codes.abs().sum().item() == 0


def test_ideal_codes_are_sign_magnitude():
    cb = solve_codebook(16, 3)
    u = torch.tensor([-0.9, -0.05, 0.0, 0.05, 0.9], dtype=torch.float64)
    codes = ideal.quantize_unit(u, cb).tolist()
    assert codes[2] == 0                      # zero: sign 0, lowest magnitude
    assert codes[3] == 0
    assert codes[1] == 0b100                  # small negative: sign 1, magnitude 0
    assert codes[4] == 0b011 and codes[0] == 0b111


def test_ideal_rejects_non_finite_keys():
    cb = solve_codebook(16, 2)
    keys = torch.zeros(2, 16, dtype=torch.float64)
    keys[1, 3] = math.inf
    with pytest.raises(ValueError, match=r"^keys contain NaN or infinite values"):
        ideal.encode(keys, cb, signs_from_seed(16, 1))


@pytest.mark.parametrize("check, value, message", [
    (check_d, 100, r"^d must be a power of two in \{16, 32, 64, 128, 256\}, not 100$"),
    (check_d, 512, r"^d must be a power of two in \{16, 32, 64, 128, 256\}, not 512$"),
    (check_bits, 0, r"^bits must be in 1\.\.4, not 0$"),
    (check_bits, 5, r"^bits must be in 1\.\.4, not 5$"),
    (check_context, 0, r"^context must be in 1\.\.65536, not 0$"),
    (check_context, 65537, r"^context must be in 1\.\.65536, not 65537$"),
])
def test_parameter_errors(check, value, message):
    with pytest.raises(ValueError, match=message):
        check(value)


def test_parameter_type_errors():
    with pytest.raises(TypeError, match=r"^d must be an integer, not 128\.0$"):
        check_d(128.0)
    with pytest.raises(TypeError, match=r"^bits must be an integer, not True$"):
        check_bits(True)


def test_counts_published_reduction():
    # d = 128, b = 3, T = 4096: 5,120 multiplications against 524,288 (102.4x).
    counts = operation_counts(128, 3, 4096, "published")
    assert counts["per_query"]["general_multiplications"] == 5120
    assert counts["multiplication_reduction"] == pytest.approx(102.4)
    assert counts["storage_bits_per_key"] == 400


def test_counts_axelram_read_path():
    counts = operation_counts(128, 4, 4096)
    per_query = counts["per_query"]
    assert per_query["general_multiplications"] == 4096       # one norm scaling per key
    assert per_query["constant_multiplications"] == 128 * 8    # symmetric table
    assert counts["per_key_write"]["comparisons"] == 128 * 7
    assert counts["per_key_write"]["square_roots"] == 1
    assert counts["storage_bits_per_key"] == 128 * 4 + 17 + 5 + 1


def test_counts_dot_product():
    counts = operation_counts(64, 2, 100, "dot")
    assert counts["per_query"]["general_multiplications"] == 6400
    assert counts["storage_bits_per_key"] == 1024


def test_counts_reject_unknown_architecture():
    with pytest.raises(ValueError, match=r"^architecture must be one of axelram, published, "
                                         r"dot, not 'gpu'$"):
        operation_counts(64, 2, 100, "gpu")
