"""Run a workload: build the engine per flag set, warm up, repeat, collect probe data.

Order of work, chosen so numbers are comparable:
1. a cold instrumented run per flag set (first-use allocations, e.g. a pool sizing itself);
2. warmup runs;
3. `repeats` rounds; each round runs every flag set once timed (StepProbe, near-zero cost)
   and once instrumented (StageProbe), interleaved, so machine drift hits all sets alike
   and the probe's overhead is a ratio measured in the same process.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import engine
from engine import EngineError, OptFlags
from engine.probe import NULL_PROBE

from .errors import UserError
from .machine import peak_rss_mb
from .probes import GCCounter, ProbeData, StageProbe, StepProbe
from .workloads import Workload

Progress = Callable[[str], None]


@dataclass
class FlagSetRun:
    """Raw measurements of one flag set; metrics.py turns them into record metrics."""
    flags: str
    tokens: list[int] = field(default_factory=list)
    tokens_stable: bool = True
    cold: ProbeData | None = None
    timed_wall_s: list[float] = field(default_factory=list)
    timed_cpu_s: list[float] = field(default_factory=list)  # generating thread's CPU time
    timed_steps: list[ProbeData] = field(default_factory=list)
    instrumented_wall_s: list[float] = field(default_factory=list)
    instrumented: list[ProbeData] = field(default_factory=list)
    gc_collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    gc_tokens: int = 0
    kv_computed: int = 0
    kv_reused: int = 0
    model_bytes: int = 0
    kv_cache_bytes: int = 0
    workspace_bytes: int = 0
    peak_rss_mb: float = 0.0


@dataclass
class WorkloadRun:
    workload: Workload
    prompt_ids: list[int]
    flag_sets: list[str]
    runs: dict[str, FlagSetRun]
    started: float
    elapsed_s: float


def normalize_flag_sets(specs) -> list[str]:
    """Parsed, de-duplicated, naive first (every comparison is against naive)."""
    try:
        names = [str(OptFlags.parse(s)) for s in specs]
    except EngineError as exc:
        raise UserError(str(exc)) from None
    return list(dict.fromkeys(["none", *names]))


def build_prompt(workload: Workload, model: engine.Model) -> list[int]:
    if workload.prompt is not None:
        try:
            return model.encode(workload.prompt)
        except EngineError as exc:
            raise UserError(f"{workload.source}: prompt: {exc}") from None
    # A synthetic prompt: deterministic ids spread over the vocabulary.
    vocab = min(model.config.vocab_size, getattr(model.tokenizer, "vocab_size", model.config.vocab_size))
    return [(3 + 7 * i) % vocab for i in range(workload.prompt_tokens)]


def load_model(workload: Workload) -> engine.Model:
    try:
        return engine.load(workload.model, seed=workload.seed)
    except EngineError as exc:
        raise UserError(f"{workload.source or workload.name}: model: {exc}") from None


def units_of_work(workload: Workload, n_sets: int) -> int:
    return n_sets * (1 + workload.warmup + 2 * workload.repeats)


class Runner:
    def __init__(self, workload: Workload, flag_sets, progress: Progress | None = None):
        self.workload = workload
        self.flag_sets = normalize_flag_sets(flag_sets)
        self.progress = progress or (lambda label: None)
        base = load_model(workload)
        self.models = {fs: base.with_flags(fs) for fs in self.flag_sets}
        self.prompt = build_prompt(workload, base)
        self._check_fits(base)

    def _check_fits(self, model: engine.Model) -> None:
        n_ctx = model.config.n_ctx
        if len(self.prompt) > n_ctx:
            raise UserError(f"{self.workload.source}: prompt has {len(self.prompt)} tokens but the model's "
                            f"context holds {n_ctx}; shorten the prompt")

    def _generate(self, model: engine.Model) -> list[int]:
        wl = self.workload
        try:
            return model.generate(self.prompt, wl.new_tokens, temperature=wl.temperature, top_k=wl.top_k,
                                  top_p=wl.top_p, seed=wl.seed, keep_fraction=wl.keep_fraction)
        except EngineError as exc:
            raise UserError(f"{wl.source or wl.name}: {exc}") from None

    def _timed(self, fs: str, run: FlagSetRun) -> None:
        model = self.models[fs]
        with StepProbe() as probe:
            model.probe = probe
            c0, t0 = time.thread_time(), time.perf_counter()
            tokens = self._generate(model)
            run.timed_wall_s.append(time.perf_counter() - t0)
            run.timed_cpu_s.append(time.thread_time() - c0)
        model.probe = NULL_PROBE
        run.timed_steps.append(probe.data)
        self._check_tokens(run, tokens)
        self.progress(f"{fs}: timed")

    def _instrumented(self, fs: str, run: FlagSetRun, cold: bool = False) -> None:
        model = self.models[fs]
        kv_before = (model.kv_stats.computed, model.kv_stats.reused)
        with GCCounter() as gcc, StageProbe() as probe:
            model.probe = probe
            t0 = time.perf_counter()
            tokens = self._generate(model)
            wall = time.perf_counter() - t0
        model.probe = NULL_PROBE
        if cold:
            run.cold = probe.data
            run.tokens = tokens
            run.model_bytes, run.kv_cache_bytes = model.model_bytes, model.kv_cache_bytes
            run.peak_rss_mb = peak_rss_mb()
        else:
            run.instrumented.append(probe.data)
            run.instrumented_wall_s.append(wall)
            run.gc_collections = [a + b for a, b in zip(run.gc_collections, gcc.collections)]
            run.gc_tokens += len(tokens)
            run.kv_computed += model.kv_stats.computed - kv_before[0]
            run.kv_reused += model.kv_stats.reused - kv_before[1]
        run.workspace_bytes = model.workspace_bytes
        self._check_tokens(run, tokens)
        self.progress(f"{fs}: {'cold' if cold else 'instrumented'}")

    @staticmethod
    def _check_tokens(run: FlagSetRun, tokens: list[int]) -> None:
        if run.tokens and tokens != run.tokens:
            run.tokens_stable = False

    def _rounds(self, n: int, step: Callable[[str], None]) -> None:
        """n rounds over all flag sets, alternating the order so drift within a round cancels."""
        for r in range(n):
            for fs in (self.flag_sets if r % 2 == 0 else self.flag_sets[::-1]):
                step(fs)

    def _cold_and_warmup(self, warmup: int) -> dict[str, FlagSetRun]:
        runs = {fs: FlagSetRun(fs) for fs in self.flag_sets}
        for fs in self.flag_sets:
            self._instrumented(fs, runs[fs], cold=True)
        for fs in self.flag_sets:
            for _ in range(warmup):
                self._generate(self.models[fs])
                self.progress(f"{fs}: warmup")
        return runs

    def _measure(self, runs: dict[str, FlagSetRun]) -> None:
        def timed_then_instrumented(fs: str) -> None:
            self._timed(fs, runs[fs])
            self._instrumented(fs, runs[fs])

        self._rounds(self.workload.repeats, timed_then_instrumented)

    def run(self, warmup: int | None = None) -> WorkloadRun:
        started, t0 = time.time(), time.perf_counter()
        runs = self._cold_and_warmup(self.workload.warmup if warmup is None else warmup)
        self._measure(runs)
        return WorkloadRun(self.workload, self.prompt, self.flag_sets, runs, started,
                           time.perf_counter() - t0)
