"""Model shapes: ModelConfig and the named presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from .errors import ConfigError

ACTIVATIONS = ("gelu", "gelu_new")  # exact erf form, tanh form (HF names)
TOKENIZERS = ("char", "byte", "bpe")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_ctx: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float = 1e-5
    activation: str = "gelu"
    tokenizer: str = "char"  # char | byte | bpe

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_ctx", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"config n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                "pick n_head that divides n_embd"
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"config activation {self.activation!r} is not supported; use one of {', '.join(ACTIVATIONS)}"
            )
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"config tokenizer {self.tokenizer!r} is not known; use one of {', '.join(TOKENIZERS)}")
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ConfigError(f"config layer_norm_epsilon must be a number > 0, got {self.layer_norm_epsilon!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_params(self) -> int:
        c, v, p, n = self.n_embd, self.vocab_size, self.n_ctx, self.n_layer
        per_layer = 2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c)
        return v * c + p * c + n * per_layer + 2 * c

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "ModelConfig":
        return replace(self, **changes)


PRESETS: dict[str, ModelConfig] = {
    # The shape analysed in the SmallMind report: Tiny-Shakespeare char vocab, exact GELU.
    "seed": ModelConfig(vocab_size=65, n_ctx=256, n_embd=128, n_layer=2, n_head=4,
                        activation="gelu", tokenizer="char"),
    "small": ModelConfig(vocab_size=512, n_ctx=256, n_embd=256, n_layer=4, n_head=8,
                         activation="gelu", tokenizer="byte"),
    # GPT-2 124M shape; HF checkpoints declare the tanh GELU ("gelu_new").
    "gpt2": ModelConfig(vocab_size=50257, n_ctx=1024, n_embd=768, n_layer=12, n_head=12,
                        activation="gelu_new", tokenizer="byte"),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)} (or a checkpoint path)"
        ) from None
