"""Checkpoints: save/load round trips, seeded init, and a clear CheckpointError for every bad file."""
from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import engine
from engine import CheckpointError, ModelConfig
from engine.weights import expected_shapes, init_weights

# A tiny shape keeps the bad-checkpoint cases fast; every case starts from a good copy.
TINY = ModelConfig(vocab_size=65, n_ctx=16, n_embd=16, n_layer=2, n_head=2, tokenizer="char")
TEXT = "To be, or not to be: that is the question!\nWhether 'tis nobler"


def _assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float32, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name  # bit-identical


# ---- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["directory", "file"])
def test_round_trip_seed(tmp_path, seed_model, make_prompt, form):
    path = tmp_path / ("seed_ckpt" if form == "directory" else "seed.safetensors")
    engine.save(seed_model, path)
    loaded = engine.load(path, flags="kv,pool")
    assert loaded.config == seed_model.config
    _assert_same_weights(loaded.weights, seed_model.weights)
    prompt = make_prompt(65, 24, seed=3)
    np.testing.assert_array_equal(loaded.with_flags("").logits(prompt), seed_model.logits(prompt))
    assert loaded.generate(prompt, 30) == seed_model.with_flags("kv,pool").generate(prompt, 30)
    # the char tokenizer survives: same ids, same text
    assert loaded.tokenizer.kind == "char"
    assert loaded.encode(TEXT) == seed_model.encode(TEXT)
    assert loaded.decode(loaded.encode(TEXT)) == TEXT


def test_directory_layout_is_hf_style(tmp_path, seed_model):
    engine.save(seed_model, tmp_path / "d")
    names = {p.name for p in (tmp_path / "d").iterdir()}
    assert {"config.json", "model.safetensors", "char_vocab.json"} <= names
    assert not any(n.endswith(".tmp") for n in names)  # atomic writes leave nothing behind
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    assert (cfg["n_embd"], cfg["n_positions"], cfg["activation_function"]) == (128, 256, "gelu")
    assert set(load_file(str(tmp_path / "d" / "model.safetensors"))) == set(expected_shapes(seed_model.config))


def test_round_trip_byte_tokenizer_and_float16(tmp_path, small_model):
    """float16 tensors are accepted and widened to float32."""
    half = {k: v.astype(np.float16) for k, v in small_model.weights.items()}
    engine.save(small_model, tmp_path / "small")
    save_file(half, str(tmp_path / "small" / "model.safetensors"))
    loaded = engine.load(tmp_path / "small")
    assert loaded.tokenizer.kind == "byte" and loaded.config == small_model.config
    for name, arr in loaded.weights.items():
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, half[name].astype(np.float32))


def test_save_overwrites_in_place(tmp_path, seed_model):
    path = tmp_path / "m.safetensors"
    engine.save(engine.load("seed", seed=5), path)
    engine.save(seed_model, path)
    _assert_same_weights(engine.load(path).weights, seed_model.weights)


# ---- seeded init ----------------------------------------------------------------------------

def test_init_is_deterministic_per_seed():
    a, b, c = init_weights(TINY, 0), init_weights(TINY, 0), init_weights(TINY, 1)
    _assert_same_weights(a, b)
    assert set(a) == set(c)
    for name in a:
        assert not np.array_equal(a[name], c[name]), name
    assert set(a) == set(expected_shapes(TINY))
    assert all(a[k].shape == s for k, s in expected_shapes(TINY).items())


def test_load_preset_seed_argument(seed_model):
    again = engine.load("seed", seed=0)
    _assert_same_weights(again.weights, seed_model.weights)
    other = engine.load("seed", seed=1)
    prompt = list(range(10))
    assert np.abs(other.logits(prompt) - seed_model.logits(prompt)).max() > 0.1


def test_init_randomises_biases_and_layernorm():
    """Non-trivial biases / LN params, so bugs there change the output (see init_weights)."""
    w = init_weights(TINY, 0)
    for name, arr in w.items():
        assert np.isfinite(arr).all()
        assert arr.std() > 1e-3, name
    assert abs(w["ln_f.weight"].mean() - 1.0) < 0.2


# ---- bad checkpoints ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model():
    return engine.from_config(TINY, seed=0)


@pytest.fixture
def good_dir(tmp_path, tiny_model):
    d = tmp_path / "ckpt"
    engine.save(tiny_model, d)
    engine.load(d)  # sanity: the unmodified copy loads
    return d


def _tensors(d):
    return load_file(str(d / "model.safetensors"))


def _write_tensors(d, tensors):
    save_file(tensors, str(d / "model.safetensors"))


def _edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def _load_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        engine.load(path)
    msg = str(info.value)
    assert msg and "\n" not in msg, f"error message must be one line: {msg!r}"
    assert str(path) in msg or path.name in msg, msg
    return msg


def test_missing_tensor_named(good_dir):
    t = _tensors(good_dir)
    del t["h.1.mlp.c_fc.bias"]
    _write_tensors(good_dir, t)
    msg = _load_error(good_dir)
    assert "missing" in msg and "'h.1.mlp.c_fc.bias'" in msg


def test_extra_tensor_named(good_dir):
    t = _tensors(good_dir)
    t["h.0.attn.rotary.weight"] = np.zeros(4, np.float32)
    _write_tensors(good_dir, t)
    msg = _load_error(good_dir)
    assert "unexpected" in msg and "'h.0.attn.rotary.weight'" in msg


def test_misshaped_tensor_named(good_dir):
    t = _tensors(good_dir)
    t["h.0.attn.c_proj.weight"] = t["h.0.attn.c_proj.weight"].T[:8].copy()
    _write_tensors(good_dir, t)
    msg = _load_error(good_dir)
    assert "'h.0.attn.c_proj.weight'" in msg and "(8, 16)" in msg and "(16, 16)" in msg


def test_transposed_square_tensor_is_not_detectable_but_loads(good_dir):
    """Document the limit: a transposed [C, C] matrix has the right shape and loads fine."""
    t = _tensors(good_dir)
    t["h.0.attn.c_proj.weight"] = t["h.0.attn.c_proj.weight"].T.copy()
    _write_tensors(good_dir, t)
    engine.load(good_dir)


@pytest.mark.parametrize("dtype", [np.int32, np.float64, np.int8, np.uint8, np.bool_])
def test_wrong_dtype_named(good_dir, dtype):
    t = _tensors(good_dir)
    t["ln_f.weight"] = t["ln_f.weight"].astype(dtype)
    _write_tensors(good_dir, t)
    msg = _load_error(good_dir)
    assert "'ln_f.weight'" in msg and np.dtype(dtype).name in msg and "float32" in msg


@pytest.mark.parametrize("form", ["directory", "file"])
def test_truncated_file(good_dir, form):
    path = good_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    msg = _load_error(good_dir if form == "directory" else path)
    assert "truncated or corrupt" in msg


@pytest.mark.parametrize("form", ["directory", "file"])
@pytest.mark.parametrize("content", [
    b"",
    b"abc",
    np.random.default_rng(0).bytes(4096),
    struct.pack("<Q", 20) + b"this is not json!!!!" + b"\0" * 64,
    struct.pack("<Q", 2) + b"{}",  # valid but empty: no tensors at all
], ids=["empty", "3-bytes", "random", "bad-header-json", "no-tensors"])
def test_garbage_bytes(good_dir, form, content):
    path = good_dir / "model.safetensors"
    path.write_bytes(content)
    msg = _load_error(good_dir if form == "directory" else path)
    assert "safetensors" in msg or "missing tensor" in msg or "no config" in msg


def test_config_n_embd_disagrees_with_tensors(good_dir):
    _edit_config(good_dir, n_embd=32)
    msg = _load_error(good_dir)
    assert "shape" in msg and "'wte.weight'" in msg and "(65, 16)" in msg and "(65, 32)" in msg


def test_config_n_layer_too_large(good_dir):
    _edit_config(good_dir, n_layer=3)
    msg = _load_error(good_dir)
    assert "missing" in msg and "'h.2." in msg


def test_config_n_layer_too_small(good_dir):
    _edit_config(good_dir, n_layer=1)
    msg = _load_error(good_dir)
    assert "unexpected" in msg and "'h.1." in msg


def test_config_vocab_disagrees(good_dir):
    _edit_config(good_dir, vocab_size=64)
    msg = _load_error(good_dir)
    assert "'wte.weight'" in msg


def test_config_invalid_shape_values(good_dir):
    _edit_config(good_dir, n_head=3)
    msg = _load_error(good_dir)
    assert "n_head=3" in msg and "config.json" in msg


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"gpt2"', "\xff\xfe"], ids=[
    "syntax", "empty", "list", "string", "not-utf8"])
def test_malformed_config_json(good_dir, text):
    path = good_dir / "config.json"
    path.write_bytes(text.encode("latin-1"))
    msg = _load_error(good_dir)
    assert "config.json" in msg


def test_config_json_missing_key(good_dir):
    cfg = json.loads((good_dir / "config.json").read_text())
    del cfg["n_head"]
    (good_dir / "config.json").write_text(json.dumps(cfg))
    msg = _load_error(good_dir)
    assert "'n_head'" in msg and "missing" in msg


def test_config_json_unsupported_activation_and_mlp_width(good_dir):
    _edit_config(good_dir, activation_function="relu")
    assert "'relu'" in _load_error(good_dir)
    _edit_config(good_dir, activation_function="gelu", n_inner=48)
    assert "n_inner" in _load_error(good_dir)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_directory_missing_file(good_dir, missing):
    (good_dir / missing).unlink()
    msg = _load_error(good_dir)
    assert f"no {missing}" in msg


def test_single_file_without_config(tmp_path, tiny_model):
    path = tmp_path / "bare.safetensors"
    save_file(dict(tiny_model.weights), str(path))  # no metadata, no config.json beside it
    msg = _load_error(path)
    assert "config" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_tensor_named(good_dir, bad):
    t = _tensors(good_dir)
    t["h.1.ln_2.bias"][3] = bad
    _write_tensors(good_dir, t)
    msg = _load_error(good_dir)
    assert "'h.1.ln_2.bias'" in msg and "NaN or inf" in msg


def test_lm_head_different_from_wte(good_dir):
    t = _tensors(good_dir)
    t["lm_head.weight"] = t["wte.weight"] + np.float32(1e-3)
    _write_tensors(good_dir, t)
    msg = _load_error(good_dir)
    assert "'lm_head.weight'" in msg and "'wte.weight'" in msg


def test_lm_head_different_shape(good_dir):
    t = _tensors(good_dir)
    t["lm_head.weight"] = t["wte.weight"][:10].copy()
    _write_tensors(good_dir, t)
    assert "'lm_head.weight'" in _load_error(good_dir)


def test_prefixed_and_unprefixed_duplicate(good_dir):
    t = _tensors(good_dir)
    t["transformer.ln_f.bias"] = t["ln_f.bias"]
    _write_tensors(good_dir, t)
    msg = _load_error(good_dir)
    assert "'ln_f.bias'" in msg and "twice" in msg


def test_tokenizer_bigger_than_vocab(good_dir):
    _edit_config(good_dir)  # unchanged config, but a char vocabulary of 66 characters
    (good_dir / "char_vocab.json").write_text(json.dumps(
        {"kind": "char", "chars": engine.tokenizer.SHAKESPEARE_CHARS + "7"}))
    msg = _load_error(good_dir)
    assert "66" in msg and "65" in msg


def test_malformed_char_vocab(good_dir):
    (good_dir / "char_vocab.json").write_text("{}")
    with pytest.raises(engine.TokenizerError, match="char_vocab.json"):
        engine.load(good_dir)


def test_good_dir_copy_is_intact(good_dir, tiny_model):
    """The fixture copy itself round-trips bit for bit (so the failures above are the edits)."""
    copy = good_dir.parent / "copy"
    shutil.copytree(good_dir, copy)
    _assert_same_weights(engine.load(copy).weights, tiny_model.weights)
