"""Loading and saving checkpoints: HF GPT-2 model directories and single safetensors files."""
from __future__ import annotations

import json
from pathlib import Path

from .config import ModelConfig
from .errors import CheckpointError, ConfigError
from .tokenizer import has_bpe_files, load_tokenizer
from .weights import Weights, normalize_names, read_safetensors, validate, write_json, write_safetensors

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_KEY = "smbench_config"
HF_KEYS = {"vocab_size": "vocab_size", "n_positions": "n_ctx", "n_embd": "n_embd",
           "n_layer": "n_layer", "n_head": "n_head"}


def config_from_hf(data: dict, source: str) -> ModelConfig:
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: expected a JSON object with GPT-2 config keys")
    if "n_positions" not in data and "n_ctx" in data:
        data = {**data, "n_positions": data["n_ctx"]}
    missing = [k for k in HF_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{source}: missing key {missing[0]!r}; a GPT-2 config.json needs "
                              f"{', '.join(HF_KEYS)}")
    n_inner = data.get("n_inner")
    if n_inner not in (None, 4 * data["n_embd"]):
        raise CheckpointError(f"{source}: n_inner={n_inner} is not 4*n_embd; only the standard MLP width is supported")
    try:
        return ModelConfig(
            **{ours: data[hf] for hf, ours in HF_KEYS.items()},
            layer_norm_epsilon=float(data.get("layer_norm_epsilon", 1e-5)),
            activation=data.get("activation_function", "gelu_new"),
            tokenizer=data.get("smbench_tokenizer", "bpe"),
        )
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def config_to_hf(cfg: ModelConfig) -> dict:
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size, "n_positions": cfg.n_ctx, "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
        "layer_norm_epsilon": cfg.layer_norm_epsilon, "activation_function": cfg.activation,
        "tie_word_embeddings": True, "smbench_tokenizer": cfg.tokenizer,
    }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); fix or regenerate the file") from None


def _config_for_file(path: Path) -> ModelConfig:
    """A lone .safetensors file: config from its metadata, else a config.json beside it."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]}); "
                              "the file is truncated or corrupt, re-export it") from None
    if METADATA_KEY in meta:
        try:
            return config_from_hf(json.loads(meta[METADATA_KEY]), f"{path} metadata")
        except ValueError:
            raise CheckpointError(f"{path}: metadata {METADATA_KEY!r} is not valid JSON") from None
    sibling = path.parent / CONFIG_FILE
    if sibling.exists():
        return config_from_hf(_read_json(sibling), str(sibling))
    raise CheckpointError(f"{path}: no config (n_head cannot be read from tensor shapes); "
                          f"put a GPT-2 {CONFIG_FILE} next to it")


def load_checkpoint(path: Path):
    """Return (config, validated weights, tokenizer) from a directory or a .safetensors file."""
    if path.is_dir():
        cfg_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
        if not cfg_path.exists():
            raise CheckpointError(f"{path}: no {CONFIG_FILE}; a model directory needs {CONFIG_FILE} + {WEIGHTS_FILE}")
        if not weights_path.exists():
            raise CheckpointError(f"{path}: no {WEIGHTS_FILE}; a model directory needs {CONFIG_FILE} + {WEIGHTS_FILE}")
        cfg = config_from_hf(_read_json(cfg_path), str(cfg_path))
        tok_dir = path
    else:
        cfg = _config_for_file(path)
        # An HF-style file beside its config.json: use the BPE files beside it too.
        weights_path = path
        tok_dir = path.parent if cfg.tokenizer == "bpe" and has_bpe_files(path.parent) else None
    weights = validate(normalize_names(read_safetensors(weights_path), str(weights_path)), cfg, str(weights_path))
    tokenizer = load_tokenizer(cfg.tokenizer, tok_dir)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model only "
                              f"{cfg.vocab_size}; the tokenizer files belong to another model")
    return cfg, weights, tokenizer


def save_checkpoint(cfg: ModelConfig, weights: Weights, tokenizer, path: Path) -> None:
    """Directory form (config.json + model.safetensors + tokenizer) unless path ends in .safetensors."""
    if path.suffix == ".safetensors":
        write_safetensors(weights, path, metadata={METADATA_KEY: json.dumps(config_to_hf(cfg))})
        return
    path.mkdir(parents=True, exist_ok=True)
    write_safetensors(weights, path / WEIGHTS_FILE, metadata={"format": "np"})
    write_json(config_to_hf(cfg), path / CONFIG_FILE)
    if tokenizer is not None:
        tokenizer.save(path)
