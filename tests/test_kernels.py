"""`smbench kernels`: the engine's real ops timed against limits measured in the same run."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import smbench.kernels as kernels
from smbench.cli import main
from smbench.record import validate_record
from smbench.store import Store

ISSUE_KERNELS = ("add", "relu", "gelu_exact", "gelu_tanh", "gelu_fast", "softmax", "layernorm",
                 "matmul.attn_qkv", "matmul.mlp_fc", "matmul.lm_head", "matmul.", "dot")


@pytest.fixture(scope="module")
def quick_record() -> dict:
    return kernels.run_kernels(quick=True)


def test_record_is_a_kernels_run_record(quick_record):
    rec = validate_record(quick_record, "quick")
    assert rec["kind"] == "kernels"
    assert {g["flags"] for g in rec["results"]} == {"none", "pool", "fused", "blas"}
    assert sum(len(g["kernels"]) for g in rec["results"]) == len(rec["kernels"])
    names = {r["kernel"] for r in rec["kernels"]}
    for name in ISSUE_KERNELS:
        assert any(n.startswith(name) for n in names), name


def test_limits_measured_and_fractions_follow_from_them(quick_record):
    lim = quick_record["limits"]
    assert lim["bandwidth_gb_s"] == max(lim["bandwidth_samples_gb_s"]) > 0
    assert lim["sgemm_gflops"] == max(lim["sgemm_samples_gflops"]) > 0
    # the bandwidth buffer stays far larger than cache even in --quick
    assert lim["stream_buffer_bytes"] >= 2 * max(lim["caches"].values(), default=0)
    for r in quick_record["kernels"]:
        med = r["time_s"]["median"]
        assert r["time_s"]["min"] <= med <= r["time_s"]["max"]
        assert r["gb_per_s"] == pytest.approx(r["bytes"] / med / 1e9)
        roof = max(r["bytes"] / (lim["bandwidth_gb_s"] * 1e9), r["flops"] / (lim["sgemm_gflops"] * 1e9))
        assert r["fraction_of_limit"] == pytest.approx(roof / med)
        assert r["rating"] == kernels.rating(r["fraction_of_limit"], r["bound"])
        if r["variant"] == "none":
            assert r["speedup_vs_naive"] == pytest.approx(1.0)


def test_ratings_come_from_the_fraction():
    assert kernels.rating(0.75) == "at limit"
    assert kernels.rating(0.4) == "good"
    assert kernels.rating(0.15) == "fair"
    assert kernels.rating(0.01) == "poor"
    assert kernels.rating(1.5) == "in cache"
    assert kernels.rating(1.01, "compute") == "at limit"


def test_kernels_call_the_engine_ops(monkeypatch):
    calls = {"ops": 0, "fused": 0}
    real_ln, real_fused = kernels.ops.layer_norm, kernels.fused.layer_norm

    def ln(*a, **k):
        calls["ops"] += 1
        return real_ln(*a, **k)

    def fused_ln(*a, **k):
        calls["fused"] += 1
        return real_fused(*a, **k)

    monkeypatch.setattr(kernels.ops, "layer_norm", ln)
    monkeypatch.setattr(kernels.fused, "layer_norm", fused_ln)
    rec = kernels.run_kernels(quick=True, only="layernorm")
    assert {r["variant"] for r in rec["kernels"]} == {"none", "pool", "fused"}
    assert calls["ops"] > 0 and calls["fused"] > 0


def test_in_place_kernels_get_their_input_back_before_each_sample():
    resets = []
    kernels.time_calls(lambda: None, repeats=4, sample_s=0.0, reset=lambda: resets.append(1))
    assert len(resets) == 5  # warm-up + every sample


def test_cli_prints_a_table_and_stores_the_record(tmp_path):
    result = CliRunner().invoke(main, ["kernels", "--quick", "--only", "dot", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "limits: bandwidth" in result.output and "dot" in result.output and "record:" in result.output
    store = Store(tmp_path)
    rows = store.history()
    assert [r.kind for r in rows] == ["kernels"]
    assert store.load(rows[0].run_id)["kernels"][0]["kernel"] == "dot"


def test_cli_unknown_model_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["kernels", "--quick", "--model", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown model preset" in result.output
