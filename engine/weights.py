"""Model weights: seeded init and safetensors I/O in the Hugging Face GPT-2 tensor layout.

Tensors live in a flat dict keyed by HF names without the `transformer.` prefix
(`wte.weight`, `h.0.attn.c_attn.weight`, ...). Linear weights use HF's Conv1D
layout [in, out], so `x @ w + b` is the layer. The LM head is tied to `wte`.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .errors import CheckpointError

Weights = dict[str, np.ndarray]

PREFIX = "transformer."
# Buffers older HF checkpoints carry (causal mask); they hold no learned state.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
ACCEPTED_DTYPES = (np.float32, np.float16)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    c = cfg.n_embd
    shapes: dict[str, tuple[int, ...]] = {
        "wte.weight": (cfg.vocab_size, c),
        "wpe.weight": (cfg.n_ctx, c),
        "ln_f.weight": (c,),
        "ln_f.bias": (c,),
    }
    for i in range(cfg.n_layer):
        h = f"h.{i}."
        shapes.update({
            h + "ln_1.weight": (c,), h + "ln_1.bias": (c,),
            h + "attn.c_attn.weight": (c, 3 * c), h + "attn.c_attn.bias": (3 * c,),
            h + "attn.c_proj.weight": (c, c), h + "attn.c_proj.bias": (c,),
            h + "ln_2.weight": (c,), h + "ln_2.bias": (c,),
            h + "mlp.c_fc.weight": (c, 4 * c), h + "mlp.c_fc.bias": (4 * c,),
            h + "mlp.c_proj.weight": (4 * c, c), h + "mlp.c_proj.bias": (c,),
        })
    return shapes


def init_weights(cfg: ModelConfig, seed: int = 0) -> Weights:
    """Seeded random weights: same seed, bit-identical arrays.

    Not GPT-2's training init: biases and LayerNorm parameters are randomised (HF
    zero-inits them) so a bias or LayerNorm bug changes the output instead of hiding
    behind zeros, and matrices use std = 2.5/sqrt(fan_in) so every block moves the
    residual stream. With GPT-2's 0.02 the tied head mostly echoes the current
    token and greedy decoding repeats one character, which would make token-parity
    tests blind to cache and position bugs.
    """
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, shape in expected_shapes(cfg).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            arr = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            arr = 0.02 * rng.standard_normal(shape)
        elif name in ("wte.weight", "wpe.weight"):
            arr = 0.1 * rng.standard_normal(shape)
        else:
            arr = 2.5 / np.sqrt(shape[0]) * rng.standard_normal(shape)
        out[name] = arr.astype(np.float32)
    return out


def validate(weights: Weights, cfg: ModelConfig, source: str) -> Weights:
    """Check names, shapes and dtypes against the config; return float32 arrays."""
    expected = expected_shapes(cfg)
    missing = [k for k in expected if k not in weights]
    if missing:
        raise CheckpointError(f"{source}: missing tensor {missing[0]!r} ({len(missing)} missing); "
                              "the file is not a complete GPT-2 checkpoint for this config")
    extra = [k for k in weights if k not in expected]
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor {extra[0]!r}; "
                              "the checkpoint does not match the GPT-2 layout or its config")
    clean: Weights = {}
    for name, shape in expected.items():
        arr = weights[name]
        if arr.dtype.type not in ACCEPTED_DTYPES:
            raise CheckpointError(f"{source}: tensor {name!r} has dtype {arr.dtype}; expected float32 or float16")
        if tuple(arr.shape) != shape:
            raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(arr.shape)}, config expects "
                                  f"{shape}; the config.json does not match the tensors")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise CheckpointError(f"{source}: tensor {name!r} contains NaN or inf; the checkpoint is corrupt")
        clean[name] = arr
    return clean


def normalize_names(tensors: Weights, source: str) -> Weights:
    """Strip the `transformer.` prefix, drop mask buffers and a tied `lm_head.weight`."""
    out: Weights = {}
    lm_head = None
    for name, arr in tensors.items():
        if name == "lm_head.weight":
            lm_head = arr
            continue
        short = name[len(PREFIX):] if name.startswith(PREFIX) else name
        if short.endswith(IGNORED_SUFFIXES):
            continue
        if short in out:
            raise CheckpointError(f"{source}: tensor {short!r} appears twice (with and without prefix)")
        out[short] = arr
    if lm_head is not None and "wte.weight" in out:
        if lm_head.shape != out["wte.weight"].shape or not np.array_equal(lm_head, out["wte.weight"]):
            raise CheckpointError(f"{source}: tensor 'lm_head.weight' differs from 'wte.weight'; "
                                  "only tied-embedding GPT-2 checkpoints are supported")
    return out


def read_safetensors(path: Path) -> Weights:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file ({detail}); "
                              "the file is truncated or corrupt, re-export it") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_safetensors(weights: Weights, path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in weights.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def write_json(obj, path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
