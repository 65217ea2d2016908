"""Tokenizers: char-level (seed), raw bytes (random-weight presets), GPT-2 byte-level BPE."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import TokenizerError

# The 65 characters of Tiny Shakespeare, the analysed model's vocabulary.
EOS = "<|endoftext|>"
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str = SHAKESPEARE_CHARS):
        if len(set(chars)) != len(chars):
            raise TokenizerError("char vocabulary has duplicate characters; each must appear once")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        for ch in text:
            if ch not in self.stoi:
                raise TokenizerError(
                    f"character {ch!r} is not in the {len(self.chars)}-character vocabulary; "
                    "use letters, digits 3, space, newline and !$&',-.:;?"
                )
        return [self.stoi[ch] for ch in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, directory: Path) -> None:
        from .weights import write_json

        write_json({"kind": "char", "chars": self.chars}, directory / "char_vocab.json")


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255: a tokenizer for random-weight presets without vocab files."""
    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def save(self, directory: Path) -> None:
        pass  # nothing to store: the config's `tokenizer: byte` says it all


class BPETokenizer:
    """GPT-2 byte-level BPE from local files, via the `tokenizers` library."""
    kind = "bpe"

    def __init__(self, tok, source: Path):
        self._tok = tok
        self.source = source

    @classmethod
    def from_dir(cls, directory: Path) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        try:
            if (directory / "tokenizer.json").exists():
                return cls(Tokenizer.from_file(str(directory / "tokenizer.json")), directory)
            vocab, merges = directory / "vocab.json", directory / "merges.txt"
            tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        except Exception as exc:  # the library raises plain Exception subclasses
            raise TokenizerError(f"{directory}: cannot read tokenizer files ({exc}); "
                                 "provide tokenizer.json or vocab.json + merges.txt") from None
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if EOS in tok.get_vocab():  # GPT-2's one special token; tokenizer.json records it itself
            tok.add_special_tokens([EOS])
        return cls(tok, directory)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids))

    def save(self, directory: Path) -> None:
        from .weights import atomic_write_bytes

        atomic_write_bytes(directory / "tokenizer.json", self._tok.to_str().encode())


def has_bpe_files(directory: Path) -> bool:
    return (directory / "tokenizer.json").exists() or (
        (directory / "vocab.json").exists() and (directory / "merges.txt").exists())


def load_tokenizer(kind: str, directory: Path | None = None):
    if directory is not None and has_bpe_files(directory):
        return BPETokenizer.from_dir(directory)
    if directory is not None and (directory / "char_vocab.json").exists():
        try:
            data = json.loads((directory / "char_vocab.json").read_text())
            return CharTokenizer(data["chars"])
        except (ValueError, KeyError, TypeError):
            raise TokenizerError(f"{directory / 'char_vocab.json'}: malformed; expected "
                                 '{"kind": "char", "chars": "..."}') from None
    if kind == "char":
        return CharTokenizer()
    if kind in ("byte", "bpe"):
        return ByteTokenizer()
    raise TokenizerError(f"unknown tokenizer kind {kind!r}; use char, byte or bpe")
