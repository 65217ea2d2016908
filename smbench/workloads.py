"""Workloads: profiles/*.toml files naming a model, a prompt, token counts and flag sets."""
from __future__ import annotations

import operator
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from engine import FlagError, OptFlags

from .errors import UserError

REPO_PROFILES = Path(__file__).resolve().parent.parent / "profiles"
DEFAULT_WORKLOAD = "seed"
DEFAULT_FLAG_SETS = ("none", "pool", "kv", "fused", "pool,kv,fused")

_COMPARATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_TARGET_RE = re.compile(r"^\s*(>=|<=|>|<)\s*([-+0-9.eE_]+)\s*$")

# key -> (type(s), required)
_WORKLOAD_KEYS = {
    "name": (str, True), "description": (str, False), "model": (str, True),
    "prompt": (str, False), "prompt_tokens": (int, False), "new_tokens": (int, True),
    "warmup": (int, False), "repeats": (int, False), "seed": (int, False),
    "flag_sets": (list, False), "keep_fraction": (float, False), "blas_threads": (int, False),
}
_SAMPLING_KEYS = {"temperature": (float, False), "top_k": (int, False), "top_p": (float, False)}
# Numeric per-flag-set metrics a [targets] entry may name (see metrics.flag_set_metrics).
TARGET_METRICS = (
    "tokens_per_s", "decode_tokens_per_s", "ttft_ms", "ms_per_token", "ms_per_token_slope_us_per_position",
    "alloc_bytes_per_token", "alloc_calls_per_token", "alloc_bytes_per_decode_step",
    "alloc_bytes_per_session", "alloc_calls_per_session", "prefill_alloc_bytes", "cold_alloc_bytes",
    "cold_alloc_calls", "gc_per_100_tokens", "kv_hit_rate", "model_mb", "kv_cache_mb",
    "kv_cache_pct_of_model", "workspace_mb", "peak_rss_mb", "probe_overhead",
)


@dataclass(frozen=True)
class Target:
    metric: str
    op: str
    value: float

    def met(self, actual: float) -> bool:
        return _COMPARATORS[self.op](actual, self.value)

    def gap(self, actual: float) -> float:
        """Signed distance to the target in the metric's units (>= 0 means met)."""
        return actual - self.value if self.op in (">=", ">") else self.value - actual

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass(frozen=True)
class Workload:
    name: str
    model: str
    new_tokens: int
    description: str = ""
    prompt: str | None = None
    prompt_tokens: int | None = None
    warmup: int = 1
    repeats: int = 5
    seed: int = 0
    flag_sets: tuple[str, ...] = DEFAULT_FLAG_SETS
    keep_fraction: float = 0.5
    blas_threads: int = 1  # see smbench/environment.py for why runs pin it
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    targets: tuple[Target, ...] = ()
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_record(self) -> dict:
        """The workload as a run record stores it (targets as plain dicts)."""
        data = self.to_dict()
        data["targets"] = [{"metric": t.metric, "op": t.op, "value": t.value} for t in self.targets]
        return data

    def with_(self, **changes) -> "Workload":
        data = {**self.__dict__, **{k: v for k, v in changes.items() if v is not None}}
        return Workload(**data)


def _check_type(path: str, section: str, key: str, value, expected) -> None:
    ok = isinstance(value, expected) and not isinstance(value, bool)
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise UserError(f"{path}: [{section}] {key} must be {expected.__name__}, got {value!r}")


def _check_section(path: str, section: str, data: dict, spec: dict) -> None:
    for key in data:
        if key not in spec:
            raise UserError(f"{path}: unknown key [{section}] {key!r}; valid keys: {', '.join(spec)}")
    for key, (typ, required) in spec.items():
        if key not in data:
            if required:
                raise UserError(f"{path}: missing required key [{section}] {key!r}")
            continue
        _check_type(path, section, key, data[key], typ)


def _parse_targets(path: str, data: dict) -> tuple[Target, ...]:
    targets = []
    for metric, spec in data.items():
        if metric not in TARGET_METRICS:
            raise UserError(f"{path}: unknown metric [targets] {metric!r}; valid metrics: {', '.join(TARGET_METRICS)}")
        match = _TARGET_RE.match(spec) if isinstance(spec, str) else None
        if not match:
            raise UserError(f"{path}: [targets] {metric} = {spec!r} is not a target; "
                            "write it like \">= 10000\" or \"<= 1024\"")
        targets.append(Target(metric, match.group(1), float(match.group(2))))
    return tuple(targets)


def _parse_flag_sets(path: str, values: list) -> tuple[str, ...]:
    out = []
    for spec in values:
        if not isinstance(spec, str):
            raise UserError(f"{path}: [workload] flag_sets entries must be strings like \"kv,pool\", got {spec!r}")
        try:
            out.append(str(OptFlags.parse(spec)))
        except FlagError as exc:
            raise UserError(f"{path}: [workload] flag_sets: {exc}") from None
    return tuple(dict.fromkeys(out))


def parse_workload(text: str, path: str) -> Workload:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: malformed TOML ({exc}); fix the syntax") from None
    for section in doc:
        if section not in ("workload", "sampling", "targets"):
            raise UserError(f"{path}: unknown section [{section}]; valid sections: workload, sampling, targets")
    if not isinstance(doc.get("workload"), dict):
        raise UserError(f"{path}: missing [workload] section")
    wl, sampling = doc["workload"], doc.get("sampling", {})
    _check_section(path, "workload", wl, _WORKLOAD_KEYS)
    _check_section(path, "sampling", sampling, _SAMPLING_KEYS)
    if ("prompt" in wl) == ("prompt_tokens" in wl):
        raise UserError(f"{path}: [workload] needs exactly one of 'prompt' (text) or 'prompt_tokens' (a count)")
    for key in ("new_tokens", "repeats", "prompt_tokens", "blas_threads"):
        if key in wl and wl[key] < 1:
            raise UserError(f"{path}: [workload] {key} must be >= 1, got {wl[key]}")
    if wl.get("warmup", 0) < 0:
        raise UserError(f"{path}: [workload] warmup must be >= 0, got {wl['warmup']}")
    model = wl["model"]
    if "/" in model or model.endswith(".safetensors"):  # a checkpoint path, relative to the file
        model = str((Path(path).parent / model).resolve())
    fields_ = {k: v for k, v in wl.items() if k not in ("flag_sets", "model")}
    if "flag_sets" in wl:
        fields_["flag_sets"] = _parse_flag_sets(path, wl["flag_sets"])
    return Workload(model=model, targets=_parse_targets(path, doc.get("targets", {})),
                    source=path, **fields_, **sampling)


def resolve_workload_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if not candidate.is_file():
            raise UserError(f"workload file {name_or_path!r} not found; give a .toml path or a name from profiles/")
        return candidate
    for folder in (Path.cwd() / "profiles", REPO_PROFILES):
        path = folder / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = sorted(p.stem for p in REPO_PROFILES.glob("*.toml"))
    raise UserError(f"unknown workload {name_or_path!r}; known workloads: {', '.join(known) or 'none'} "
                    "(or give a .toml path)")


def load_workload(name_or_path: str | None = None) -> Workload:
    path = resolve_workload_path(name_or_path or DEFAULT_WORKLOAD)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read workload ({exc})") from None
    return parse_workload(text, str(path))


def list_workloads() -> list[Path]:
    return sorted(REPO_PROFILES.glob("*.toml"))
