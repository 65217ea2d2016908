"""What a profiler worker runs: one workload's decode loop, built the way the runner builds it.

A ProfileJob crosses the process boundary as JSON (argv of the worker, or a literal in
scalene's generated driver). `prepare` loads the model, warms it up with the same
generation (first-use costs such as pool sizing or numba compilation stay out of the
profile) and returns the call to profile.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class ProfileJob:
    profiler: str
    workload: str  # a name in profiles/ or a .toml path
    flags: str
    tokens: int
    out_dir: str
    warmup: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ProfileJob":
        return cls(**json.loads(text))


@dataclass
class Prepared:
    decode: Callable[[], list[int]]  # the decode loop to profile; returns the new token ids
    prompt_ids: list[int]
    model: object  # the engine.Model, e.g. to attach a probe


def prepare(job: ProfileJob) -> Prepared:
    """Build the model for `job`, warm it up, and return the decode loop to profile."""
    from ..runner import build_prompt, load_model
    from ..workloads import load_workload

    wl = load_workload(job.workload).with_(new_tokens=job.tokens)
    base = load_model(wl)
    prompt = build_prompt(wl, base)
    model = base.with_flags(job.flags)

    def decode() -> list[int]:
        return model.generate(prompt, wl.new_tokens, temperature=wl.temperature, top_k=wl.top_k,
                              top_p=wl.top_p, seed=wl.seed, keep_fraction=wl.keep_fraction)

    for _ in range(job.warmup):
        decode()
    return Prepared(decode, prompt, model)
