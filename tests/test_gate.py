"""`smbench gate`: deterministic counts, steady-state allocations, correctness and timing ratios.

Every measurement runs the real CLI in a subprocess (a fresh process, as in CI, and the gate's
mallopt/BLAS pinning stays out of the pytest process). Regressions are injected into the engine
by a few lines of Python run before the CLI's main(). A small gate workload (seed model, 96-token
prompt, 48 new tokens) keeps each gate run to a few seconds; the decision logic and thresholds
are the default ones. The evaluation itself is tested in-process on copies of a real record.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smbench import gate as g
from smbench.errors import UserError
from smbench.gate_report import gate_markdown, gate_table
from smbench.workloads import REPO_PROFILES, load_workload

TINY = """[workload]
name = "gate-tiny"
model = "seed"
prompt_tokens = 96
new_tokens = 48
seed = 0
flag_sets = ["none", "pool", "kv", "pool,kv,fused"]
"""
TINY_REPEATS = 10
# Injected regressions: Python run in the gate's process before the CLI starts.
PATCHES = {
    # one more array per LayerNorm call on the unfused paths: allocations only
    "ln_copy": "import engine.ops as m\nf = m.layer_norm\nm.layer_norm = lambda x, *a: f(x.copy(), *a)",
    # fused attention gets a fresh copy of its score scratch: new allocations in pooled decoding
    "attend_copy": "import engine.fused as m\nf = m.attend\n"
                   "m.attend = lambda q, kt, v, s, sc, out: f(q, kt, v, s, sc.copy(), out)",
    # single-query fused attention computed three times (same result, nothing allocated): timing
    # only. It is ~1/5 of a pool,kv,fused decode step, so this costs that set ~40% of its speed.
    "attend_thrice": "import engine.fused as m\nf = m.attend\ndef g(*a):\n    f(*a)\n    f(*a)\n    f(*a)\n"
                     "m.attend = g",
    # fused attention output zeroed after the fact: wrong tokens, no allocation
    "attend_wrong": "import engine.fused as m\nf = m.attend\ndef g(*a):\n    f(*a)\n    a[5][:] = 0\nm.attend = g",
}


def smbench_gate(args: list[str], cwd: Path, patch: str = "", env: dict | None = None):
    code = f"{patch}\nimport sys\nfrom smbench.cli import main\nmain(sys.argv[1:], prog_name='smbench')"
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code, "gate", *args], cwd=cwd, capture_output=True,
                          text=True, env=full_env, timeout=600)


def failing_rows(markdown: str) -> list[tuple[str, str, str]]:
    """(check, flags, metric) of every failed row in a gate's markdown summary."""
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == len(g.Check.__dataclass_fields__) and "fail" in cells[6]:
            rows.append((cells[0], cells[1], cells[2]))
    return rows


class Gate:
    """A directory with the small workload and its baseline (recorded once per test module)."""

    def __init__(self, root: Path):
        self.root = root
        self.workload = root / "gate-tiny.toml"
        self.baseline = root / "baseline.json"
        self.runs = root / "runs"

    def run(self, *extra: str, patch: str = "", name: str = "summary", env: dict | None = None):
        summary = self.root / f"{name}.md"
        proc = smbench_gate(["--baseline", str(self.baseline), "--out", str(self.runs), "--summary", str(summary),
                             *extra], self.root, patch, env)
        md = summary.read_text() if summary.exists() else ""
        return proc, md


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Gate:
    gate = Gate(tmp_path_factory.mktemp("gate"))
    gate.workload.write_text(TINY)
    proc = smbench_gate(["--update-baseline", "-w", str(gate.workload), "--baseline", str(gate.baseline),
                         "--repeats", str(TINY_REPEATS), "--out", str(gate.runs)], gate.root)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return gate


@pytest.fixture(scope="module")
def recorded(tiny) -> tuple[dict, dict]:
    """The small baseline and the run record it was made from."""
    baseline = g.load_baseline(tiny.baseline)
    record = json.loads((tiny.runs / baseline["source_run_id"] / "record.json").read_text())
    return baseline, record


def result(record: dict, flags: str) -> dict:
    return next(r for r in record["results"] if r["flags"] == flags)


def verdicts(checks, **match) -> list[str]:
    return [c.verdict for c in checks if all(getattr(c, k) == v for k, v in match.items())]


def failed(checks) -> list[tuple[str, str, str]]:
    return [(c.section, c.flags, c.metric) for c in checks if c.verdict == "fail"]


# ---- the baseline file --------------------------------------------------------------------------
def test_baseline_records_commit_machine_settings_and_explained_thresholds(recorded):
    baseline, record = recorded
    assert baseline["schema"] == g.SCHEMA and baseline["git"]["commit"] and baseline["machine"]["cpu"]
    assert baseline["measure"]["repeats"] == TINY_REPEATS and baseline["measure"]["blas_threads"] == 1
    assert baseline["measure"]["explanation"]
    for name, t in baseline["thresholds"].items():
        assert len(t["explanation"]) > 80, name
    assert set(baseline["flag_sets"]) == {"none", "pool", "kv", "pool,kv,fused"}
    assert baseline["workload"]["definition"]["new_tokens"] == 48
    pkf = baseline["flag_sets"]["pool,kv,fused"]
    assert pkf["steady_decode_max_bytes"] == 8 and pkf["steady_decode_max_calls"] == 1  # argmax's 0-d int64
    assert len(pkf["speedup"]["samples"]) == TINY_REPEATS and pkf["speedup"]["median"] > 5


def test_committed_baseline_is_valid_and_matches_the_default_workload():
    path = REPO_PROFILES / g.BASELINE_FILE
    baseline = g.load_baseline(path)
    workload = g.resolve_workload(None, baseline)
    assert workload.name == "seed"
    g.check_workload(baseline, workload, path)  # seed.toml changed? re-record the baseline
    assert baseline["flag_sets"]["pool,kv,fused"]["steady_decode_max_bytes"] <= \
        baseline["thresholds"]["steady_decode"]["bytes_per_step"]


def test_write_is_atomic_and_round_trips(recorded, tmp_path):
    baseline, _ = recorded
    path = tmp_path / "b.json"
    g.write_baseline(baseline, path)
    assert g.load_baseline(path) == baseline
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]  # no temp file left behind


@pytest.mark.parametrize("content,words", [
    (None, ["no baseline file"]),
    ("{not json", ["not valid JSON", "corrupt"]),
    ('{"schema": "smbench.run"}', ["not an smbench baseline"]),
    ('{"schema": "smbench.baseline", "schema_version": 99}', ["schema version 99"]),
])
def test_unusable_baseline_is_a_one_line_input_error_naming_the_file_and_the_fix(tmp_path, content, words):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as exc:
        g.load_baseline(path)
    msg = str(exc.value)
    assert str(path) in msg and "smbench gate --update-baseline" in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_malformed_thresholds_are_an_input_error(recorded, tmp_path):
    baseline = copy.deepcopy(recorded[0])
    baseline["thresholds"]["speedup"]["rel_tolerance"] = "ten percent"
    path = tmp_path / "b.json"
    g.write_baseline(baseline, path)
    with pytest.raises(UserError, match="speedup.rel_tolerance"):
        g.load_baseline(path)


def test_changed_workload_definition_is_an_input_error(recorded, tmp_path):
    baseline = recorded[0]
    (tmp_path / "w.toml").write_text(TINY.replace("new_tokens = 48", "new_tokens = 40"))
    with pytest.raises(UserError, match=r"new_tokens: 48 -> 40.*--update-baseline"):
        g.check_workload(baseline, load_workload(str(tmp_path / "w.toml")), Path("b.json"))


# ---- evaluation on copies of a real record ----------------------------------------------------
def test_the_baseline_record_passes_its_own_baseline(recorded):
    baseline, record = recorded
    checks = g.evaluate(baseline, record)
    assert failed(checks) == [] and g.verdict(checks) == "pass"
    sections = {c.section for c in checks}
    assert sections == {"machine", "correctness", "alloc", "op_counts", "gc", "steady_decode", "speedup"}


def test_another_machine_is_a_warning(recorded):
    baseline, record = copy.deepcopy(recorded)
    record["machine"]["cpu"] = "Some Other CPU"
    checks = g.evaluate(baseline, record)
    assert verdicts(checks, section="machine") == ["warn"] and g.verdict(checks) == "pass"


@pytest.mark.parametrize("factor,verdict", [(1.005, "pass"), (1.02, "fail"), (0.95, "fail")])
def test_allocation_changes_beyond_one_percent_fail_in_both_directions(recorded, factor, verdict):
    baseline, record = copy.deepcopy(recorded)
    result(record, "kv")["metrics"]["alloc_bytes_per_token"] *= factor
    checks = g.evaluate(baseline, record)
    assert verdicts(checks, flags="kv", metric="alloc_bytes_per_token") == [verdict]
    detail = next(c.detail for c in checks if c.flags == "kv" and c.metric == "alloc_bytes_per_token")
    if factor < 1:
        assert "stale" in detail  # a drop means: re-record the baseline
    elif factor > 1.01:
        assert detail.startswith("regression")


def test_a_changed_stage_row_fails_and_is_named(recorded):
    baseline, record = copy.deepcopy(recorded)
    row = next(s for s in result(record, "pool")["stages"] if s["phase"] == "decode" and s["stage"] == "mlp.fc")
    row["alloc_bytes"] += 4096
    row["calls"] += 1
    got = failed(g.evaluate(baseline, record))
    key = f"decode/mlp.fc/{row['layer']}"
    assert ("alloc", "pool", f"{key} alloc_bytes") in got and ("op_counts", "pool", f"{key} calls") in got
    assert ("alloc", "pool", "per stage (bytes, allocs, calls)") in got


def test_gc_tolerates_one_collection_per_run_and_not_two(recorded):
    baseline, record = copy.deepcopy(recorded)
    n = record["workload"]["new_tokens"]
    m = result(record, "kv")["metrics"]
    base = m["gc_per_100_tokens"]
    m["gc_per_100_tokens"] = base + 100.0 / n  # +1 collection per run
    assert verdicts(g.evaluate(baseline, record), flags="kv", section="gc") == ["pass"]
    m["gc_per_100_tokens"] = base + 200.0 / n
    assert verdicts(g.evaluate(baseline, record), flags="kv", section="gc") == ["fail"]


def test_kv_hit_rate_is_an_exact_op_count(recorded):
    baseline, record = copy.deepcopy(recorded)
    result(record, "kv")["metrics"]["kv_hit_rate"] -= 0.01
    assert ("op_counts", "kv", "kv_hit_rate") in failed(g.evaluate(baseline, record))


def test_pooled_decoding_may_allocate_only_argmax_bytes(recorded):
    baseline, record = copy.deepcopy(recorded)
    record["gate"]["steady_decode"]["pool,kv,fused"]["max_bytes"] = 16
    record["gate"]["steady_decode"]["pool"]["max_calls"] += 1
    got = failed(g.evaluate(baseline, record))
    assert ("steady_decode", "pool,kv,fused", "decode step bytes (max)") in got
    assert ("steady_decode", "pool", "decode step allocs (max)") in got


def test_wrong_tokens_fail_and_their_speedup_does_not_count(recorded):
    baseline, record = copy.deepcopy(recorded)
    r = result(record, "kv")
    r["tokens"][5] += 1
    r["vs_naive"]["tokens_match"] = False
    checks = g.evaluate(baseline, record)
    assert verdicts(checks, flags="kv", metric="tokens == naive's") == ["fail"]
    speedup = next(c for c in checks if c.flags == "kv" and c.section == "speedup")
    assert speedup.verdict == "fail" and "does not count" in speedup.detail


def test_naive_tokens_differing_from_the_baseline_only_warn(recorded):
    baseline, record = copy.deepcopy(recorded)
    baseline["flag_sets"]["none"]["tokens"][0] += 1
    checks = g.evaluate(baseline, record)
    assert verdicts(checks, flags="none", metric="tokens == baseline's") == ["warn"]
    assert g.verdict(checks) == "pass"


@pytest.mark.parametrize("slowdown,verdict", [(1.30, "fail"), (1.05, "pass"), (0.5, "pass")])
def test_speedup_is_gated_one_sided_with_the_baselines_tolerance(recorded, slowdown, verdict):
    baseline, record = copy.deepcopy(recorded)
    record["gate"]["cpu_s"]["pool,kv,fused"] = [t * slowdown for t in record["gate"]["cpu_s"]["pool,kv,fused"]]
    assert verdicts(g.evaluate(baseline, record), flags="pool,kv,fused", section="speedup") == [verdict]
    baseline["thresholds"]["speedup"]["rel_tolerance"] = 0.5  # thresholds come from the file
    assert verdicts(g.evaluate(baseline, record), flags="pool,kv,fused", section="speedup") == ["pass"]


def test_one_outlier_round_does_not_fail_the_speedup(recorded):
    baseline, record = copy.deepcopy(recorded)
    record["gate"]["cpu_s"]["kv"][3] *= 5  # one round hit by a noisy neighbour
    assert verdicts(g.evaluate(baseline, record), flags="kv", section="speedup") == ["pass"]


def test_renderers_name_metric_baseline_now_tolerance_verdict(recorded):
    baseline, record = copy.deepcopy(recorded)
    result(record, "kv")["metrics"]["alloc_bytes_per_token"] *= 2
    checks = g.evaluate(baseline, record)
    md = gate_markdown(checks, baseline, record, Path("b.json"), g.verdict(checks), 1.0)
    assert md.startswith("## smbench gate: REGRESSION")
    assert "| check | flags | metric | baseline | now | tolerance | verdict | detail |" in md
    assert ("alloc", "kv", "alloc_bytes_per_token") in failing_rows(md)
    assert "Thresholds and why" in md
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(gate_table(checks, baseline, record, Path("b.json")))
    assert "alloc_bytes_per_token" in console.export_text()


# ---- the command, in a fresh process ----------------------------------------------------------
def test_cli_missing_baseline_exits_2_with_one_line(tmp_path):
    proc = smbench_gate(["--baseline", str(tmp_path / "nope.json")], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.json" in lines[0] and "smbench gate --update-baseline" in lines[0]


def test_cli_corrupt_baseline_exits_2(tmp_path):
    (tmp_path / "b.json").write_text('{"schema": "smbench.baseline", "schema_')
    proc = smbench_gate(["--baseline", str(tmp_path / "b.json")], tmp_path)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_unchanged_tree_passes_and_writes_summaries(tiny):
    step_summary = tiny.root / "step_summary.md"
    step_summary.write_text("earlier step\n")
    proc, md = tiny.run(env={"GITHUB_STEP_SUMMARY": str(step_summary)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert md.startswith("## smbench gate: PASS") and failing_rows(md) == []
    assert step_summary.read_text() == "earlier step\n" + md  # appended, as GitHub expects
    assert "speedup vs naive (CPU)" in proc.stdout and "gate: pass" in proc.stdout


def test_cli_injected_allocation_regression_fails(tiny):
    proc, md = tiny.run("--repeats", "3", patch=PATCHES["ln_copy"], name="ln_copy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = failing_rows(md)
    for fs in ("none", "pool", "kv"):
        assert ("alloc", fs, "alloc_bytes_per_token") in rows
        assert any(r[1] == fs and "/ln_1/0 alloc_bytes" in r[2] for r in rows)
    assert ("steady_decode", "pool", "decode step bytes (max)") in rows
    assert not any(r[1] == "pool,kv,fused" for r in rows)  # its LayerNorms are fused kernels


def test_cli_injected_steady_state_allocation_fails(tiny):
    proc, md = tiny.run("--repeats", "3", patch=PATCHES["attend_copy"], name="attend_copy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = failing_rows(md)
    assert ("steady_decode", "pool,kv,fused", "decode step bytes (max)") in rows
    assert ("steady_decode", "pool,kv,fused", "decode step allocs (max)") in rows
    assert any(r[1] == "pool,kv,fused" and r[2].startswith("decode/attn.core/") for r in rows)


def test_cli_wrong_tokens_fail_the_gate_and_block_a_new_baseline(tiny):
    proc, md = tiny.run("--repeats", "3", patch=PATCHES["attend_wrong"], name="attend_wrong")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = failing_rows(md)
    assert ("correctness", "pool,kv,fused", "tokens == naive's") in rows
    assert ("speedup", "pool,kv,fused", "speedup vs naive (CPU)") in rows
    before = tiny.baseline.read_bytes()
    proc = smbench_gate(["--update-baseline", "--baseline", str(tiny.baseline), "--repeats", "2",
                         "--out", str(tiny.runs)], tiny.root, PATCHES["attend_wrong"])
    assert proc.returncode == 1 and "does not reproduce naive's tokens" in proc.stderr
    assert tiny.baseline.read_bytes() == before


def test_cli_injected_timing_only_regression_fails_on_speedup_alone(tiny):
    proc, md = tiny.run(patch=PATCHES["attend_thrice"], name="attend_thrice")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert failing_rows(md) == [("speedup", "pool,kv,fused", "speedup vs naive (CPU)")]


# ---- rates: false positives on an unchanged tree, detection of a timing-only regression --------
@pytest.mark.slow
def test_false_positive_and_detection_rates(tiny, capsys):
    runs, clean_fail, caught = 10, [], []
    for i in range(runs):
        proc, md = tiny.run(name=f"clean{i}")
        assert proc.returncode in (0, 1), proc.stderr
        if proc.returncode:
            clean_fail.append(failing_rows(md))
    for i in range(5):
        proc, md = tiny.run(patch=PATCHES["attend_thrice"], name=f"slow{i}")
        caught.append(("speedup", "pool,kv,fused", "speedup vs naive (CPU)") in failing_rows(md))
    with capsys.disabled():
        print(f"\ngate false positives: {len(clean_fail)}/{runs} unchanged runs; "
              f"timing-only regression (fused attention thrice) caught: {sum(caught)}/{len(caught)}")
    assert clean_fail == [], clean_fail
    assert all(caught), caught
