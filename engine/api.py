"""The engine's public API: load a model, get logits, generate, save."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRESETS, ModelConfig, preset
from .errors import ConfigError
from .flags import OptFlags
from .generate import DEFAULT_KEEP_FRACTION, generate, validate_ids
from .model import GPT
from .sampling import SamplingParams
from .tokenizer import load_tokenizer
from .weights import init_weights


class Model:
    """A GPT with one set of optimization flags. Weights are shared by `with_flags` copies."""

    def __init__(self, gpt: GPT, source: str):
        self._gpt = gpt
        self.source = source

    config = property(lambda self: self._gpt.cfg)
    flags = property(lambda self: self._gpt.flags)
    tokenizer = property(lambda self: self._gpt.tokenizer)
    kv_stats = property(lambda self: self._gpt.kv_stats)
    model_bytes = property(lambda self: self._gpt.model_bytes)
    kv_cache_bytes = property(lambda self: self._gpt.kv_cache_bytes)
    workspace_bytes = property(lambda self: self._gpt.ws.nbytes)

    @property
    def probe(self):
        return self._gpt.probe

    @probe.setter
    def probe(self, probe) -> None:
        self._gpt.probe = probe

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return self._gpt.weights

    def with_flags(self, flags) -> "Model":
        gpt = self._gpt
        return Model(GPT(gpt.cfg, gpt.weights, OptFlags.parse(flags), gpt.tokenizer), self.source)

    def logits(self, ids) -> np.ndarray:
        """float32 [T, vocab]: logits at every position of `ids` (a fresh forward from position 0)."""
        ids = validate_ids(ids, self.config.vocab_size, self.config.n_ctx)
        self._gpt.reset()
        return self._gpt.forward(ids, 0, last_only=False).copy()

    def generate(self, ids, max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0,
                 keep_fraction: float = DEFAULT_KEEP_FRACTION) -> list[int]:
        """New token ids after `ids` (the prompt is not repeated)."""
        params = SamplingParams(temperature, top_k, top_p)
        return generate(self._gpt, ids, max_new_tokens, params, seed=seed, keep_fraction=keep_fraction)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)


def load(path_or_preset: str | Path, flags="", seed: int = 0, config: ModelConfig | None = None) -> Model:
    """A preset name (random weights from `seed`), a model directory, or a .safetensors file.

    `config` overrides a preset's shape (e.g. a shorter context for tests).
    """
    flags = OptFlags.parse(flags)
    name = str(path_or_preset)
    path = Path(name)
    if name in PRESETS and not path.exists():
        cfg = config or preset(name)
        weights = init_weights(cfg, seed)
        tokenizer = load_tokenizer(cfg.tokenizer)
    elif path.exists():
        cfg, weights, tokenizer = load_checkpoint(path)
    else:
        raise ConfigError(f"unknown model {name!r}: not a preset ({', '.join(PRESETS)}) "
                          "and no such file or directory")
    return Model(GPT(cfg, weights, flags, tokenizer), name)


def from_config(cfg: ModelConfig, flags="", seed: int = 0) -> Model:
    """Random weights for an arbitrary shape."""
    return Model(GPT(cfg, init_weights(cfg, seed), OptFlags.parse(flags), load_tokenizer(cfg.tokenizer)),
                 "config")


def save(model: Model, path: str | Path) -> None:
    save_checkpoint(model.config, model.weights, model.tokenizer, Path(path))
