"""The `smbench` command line: error paths are one line and exit 2; run --json, compare, history work.

Most cases go through click's CliRunner (fast, in-process); a few run the real `smbench`
entry point in a subprocess so stdout/stderr and the exit code are exactly what a shell sees.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from smbench.cli import main
from smbench.record import validate_record
from smbench.store import RECORD_FILE, Store

SMBENCH = [sys.executable, "-m", "smbench.cli"]
MALFORMED = "[workload\nname = 'broken'\n"


def assert_one_line_error(exit_code: int, stdout: str, stderr: str, *words: str) -> str:
    assert exit_code == 2, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def invoke(args: list[str]):
    result = CliRunner().invoke(main, args)
    # a UserError ends in sys.exit(2); anything else would be an unhandled exception
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    return result


@pytest.fixture()
def malformed(tmp_path):
    path = tmp_path / "malformed.toml"
    path.write_text(MALFORMED)
    return path


def error_cases(tmp_path, malformed):
    return {
        "unknown flag": (["run", "--flags", "kv,bogus", "--out", str(tmp_path)], ["unknown flag 'bogus'"]),
        "unknown flag set": (["run", "--flag-sets", "kv;pool,nope", "--out", str(tmp_path)], ["'nope'"]),
        "unknown workload": (["run", "-w", "no-such-workload", "--out", str(tmp_path)],
                             ["unknown workload 'no-such-workload'"]),
        "malformed workload": (["run", "-w", str(malformed), "--out", str(tmp_path)],
                               [str(malformed), "malformed TOML"]),
        "missing workload file": (["run", "-w", str(tmp_path / "nope.toml"), "--out", str(tmp_path)],
                                  ["nope.toml", "not found"]),
        "bad record path": (["compare", str(tmp_path / "nope" / RECORD_FILE), "x", "--out", str(tmp_path)],
                            ["no such record file"]),
        "run id not found": (["compare", "20990101T000000-abcdef", "x", "--out", str(tmp_path)],
                             ["no run '20990101T000000-abcdef'"]),
        "history bad flag": (["history", "--flags", "kv,bogus", "--out", str(tmp_path)], ["bogus"]),
    }


CASES = ["unknown flag", "unknown flag set", "unknown workload", "malformed workload", "missing workload file",
         "bad record path", "run id not found", "history bad flag"]


@pytest.mark.parametrize("case", CASES)
def test_error_paths_in_process(tmp_path, malformed, case):
    args, words = error_cases(tmp_path, malformed)[case]
    result = invoke(args)
    assert_one_line_error(result.exit_code, result.stdout, result.stderr, *words)
    assert not list(tmp_path.glob(f"*/{RECORD_FILE}")), "a failed run saved a record"


@pytest.mark.parametrize("case", ["unknown flag", "malformed workload", "bad record path", "run id not found"])
def test_error_paths_in_a_real_process(tmp_path, malformed, case):
    args, words = error_cases(tmp_path, malformed)[case]
    out = subprocess.run(SMBENCH + args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert_one_line_error(out.returncode, out.stdout, out.stderr, *words)


def test_compare_a_corrupt_record_file_is_one_line(tmp_path):
    bad = tmp_path / "record.json"
    bad.write_text("{garbage")
    result = invoke(["compare", str(bad), str(bad), "--out", str(tmp_path)])
    assert_one_line_error(result.exit_code, result.stdout, result.stderr, str(bad), "not valid JSON")


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    """`smbench run --json` in a real process: stdout must be the record and nothing else."""
    out_dir = tmp_path_factory.mktemp("runs")
    args = ["run", "--json", "--tokens", "8", "--repeats", "1", "--warmup", "0", "--out", str(out_dir)]
    proc = subprocess.run(SMBENCH + args, capture_output=True, text=True, timeout=120, cwd=out_dir)
    assert proc.returncode == 0, proc.stderr
    return out_dir, proc


def test_run_json_prints_a_valid_record(json_run):
    out_dir, proc = json_run

    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    record = json.loads(proc.stdout, parse_constant=reject)
    validate_record(record, "<stdout>")
    assert record["workload"]["name"] == "seed" and record["workload"]["new_tokens"] == 8
    assert record["workload"]["repeats"] == 1 and record["workload"]["warmup"] == 0
    assert [r["flags"] for r in record["results"]] == ["none", "pool", "kv", "fused", "pool,kv,fused"]
    assert all(len(r["tokens"]) == 8 and r["vs_naive"]["tokens_match"] for r in record["results"])
    saved = out_dir / record["run_id"] / RECORD_FILE
    assert json.loads(saved.read_text()) == record
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr


def _second_record(out_dir) -> tuple[str, str]:
    """A copy of the --json run under another id, so compare has two records to read."""
    (path,) = out_dir.glob(f"*/{RECORD_FILE}")
    a = json.loads(path.read_text())
    b = copy.deepcopy(a)
    b["run_id"] = a["run_id"][:-6] + "bbbbbb"
    Store(out_dir).save(b)
    return a["run_id"], b["run_id"]


def test_compare_cli_prints_the_table(json_run):
    out_dir, _ = json_run
    a, b = _second_record(out_dir)
    result = invoke(["compare", a, b, "--out", str(out_dir)])
    assert result.exit_code == 0, result.stderr
    assert f"A={a}" in result.stdout and f"B={b}" in result.stdout
    for text in ("tokens_per_s", "alloc_bytes_per_token", "pool,kv,fused", "verdict"):
        assert text in result.stdout
    as_json = invoke(["compare", a, str(out_dir / b / RECORD_FILE), "--out", str(out_dir), "--json"])
    rows = json.loads(as_json.stdout)
    assert rows and all(r["verdict"] == "same" for r in rows if r["metric"].startswith("alloc_"))


def test_history_cli_lists_runs_and_warns_on_garbage(json_run):
    out_dir, _ = json_run
    garbage = out_dir / "20000101T000000-garbag"
    garbage.mkdir(exist_ok=True)
    (garbage / RECORD_FILE).write_text("garbage")
    result = invoke(["history", "--out", str(out_dir)])
    assert result.exit_code == 0
    assert "seed" in result.stdout and "runs in" in result.stdout
    assert "warning:" in result.stderr and "20000101T000000-garbag" in result.stderr
    assert (garbage / RECORD_FILE).read_text() == "garbage"
