"""Workload files: the shipped profiles load, and every mistake is one clear line naming file and key."""
from __future__ import annotations

import pytest

from smbench.errors import UserError
from smbench.workloads import TARGET_METRICS, list_workloads, load_workload, parse_workload

GOOD = """\
[workload]
name = "t"
model = "seed"
prompt = "We are"
new_tokens = 8
"""


def write(tmp_path, text: str, name: str = "w.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text: str) -> tuple[str, str]:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_workload(str(path))
    message = str(info.value)
    assert "\n" not in message, message
    assert info.value.exit_code == 2
    return message, str(path)


def test_shipped_profiles_load():
    names = {p.stem for p in list_workloads()}
    assert {"seed", "small", "gpt2"} <= names
    for name in names:
        wl = load_workload(name)
        assert wl.new_tokens >= 1 and wl.repeats >= 1
        assert wl.flag_sets and all(isinstance(f, str) for f in wl.flag_sets)
    seed = load_workload()  # the default workload
    assert seed.name == "seed" and seed.prompt and seed.temperature == 0.0
    assert {t.metric for t in seed.targets} <= set(TARGET_METRICS)


def test_minimal_workload_defaults(tmp_path):
    wl = load_workload(str(write(tmp_path, GOOD)))
    assert (wl.name, wl.model, wl.prompt, wl.new_tokens) == ("t", "seed", "We are", 8)
    assert wl.repeats == 5 and wl.warmup == 1 and wl.flag_sets[0] == "none"
    assert wl.source.endswith("w.toml")


def test_flag_sets_are_canonicalized_and_deduplicated(tmp_path):
    wl = load_workload(str(write(tmp_path, GOOD + 'flag_sets = ["kv,pool", "pool,kv", "none"]\n')))
    assert wl.flag_sets == ("pool,kv", "none")


@pytest.mark.parametrize("extra, words", [
    ('bogus = 1\n', ["unknown key", "'bogus'", "[workload]"]),
    ('new_token = 8\n', ["unknown key", "'new_token'"]),
    ('[sampling]\ntemprature = 0.5\n', ["unknown key", "[sampling]", "'temprature'"]),
    ('[targets]\ntokens_per_sec = ">= 10"\n', ["unknown metric", "'tokens_per_sec'"]),
    ('[extra]\nx = 1\n', ["unknown section", "[extra]"]),
])
def test_unknown_keys(tmp_path, extra, words):
    message, path = error_of(tmp_path, GOOD + extra)
    assert message.startswith(path)
    for w in words:
        assert w in message, message


@pytest.mark.parametrize("replace, add, words", [
    ('new_tokens = 8', 'new_tokens = "8"', ["new_tokens", "must be int", "'8'"]),
    ('new_tokens = 8', 'new_tokens = 8.5', ["new_tokens", "must be int"]),
    ('new_tokens = 8', 'new_tokens = true', ["new_tokens", "must be int"]),
    ('name = "t"', 'name = 3', ["name", "must be str"]),
    ('new_tokens = 8', 'new_tokens = 8\nflag_sets = "kv"', ["flag_sets", "must be list"]),
    ('new_tokens = 8', 'new_tokens = 8\nflag_sets = [1]', ["flag_sets", "1"]),
    ('new_tokens = 8', 'new_tokens = 8\nflag_sets = ["kv,bogus"]', ["flag_sets", "bogus"]),
    ('new_tokens = 8', 'new_tokens = 8\n[sampling]\ntemperature = "hot"', ["temperature", "must be float"]),
    ('new_tokens = 8', 'new_tokens = 8\n[targets]\ntokens_per_s = 10', ["tokens_per_s", "not a target"]),
    ('new_tokens = 8', 'new_tokens = 8\n[targets]\ntokens_per_s = "about 10"', ["tokens_per_s"]),
    ('new_tokens = 8', 'new_tokens = 0', ["new_tokens", ">= 1"]),
    ('new_tokens = 8', 'new_tokens = 8\nrepeats = 0', ["repeats", ">= 1"]),
    ('new_tokens = 8', 'new_tokens = 8\nwarmup = -1', ["warmup", ">= 0"]),
])
def test_wrong_types_and_values(tmp_path, replace, add, words):
    message, path = error_of(tmp_path, GOOD.replace(replace, add))
    assert message.startswith(path), message
    for w in words:
        assert w in message, message


@pytest.mark.parametrize("text, words", [
    (GOOD.replace('new_tokens = 8\n', ''), ["missing required key", "'new_tokens'"]),
    (GOOD.replace('model = "seed"\n', ''), ["missing required key", "'model'"]),
    (GOOD.replace('prompt = "We are"\n', ''), ["prompt", "prompt_tokens"]),
    (GOOD + 'prompt_tokens = 4\n', ["exactly one of", "prompt_tokens"]),
    ('[sampling]\ntemperature = 0.0\n', ["missing [workload] section"]),
])
def test_missing_keys(tmp_path, text, words):
    message, path = error_of(tmp_path, text)
    assert message.startswith(path)
    for w in words:
        assert w in message, message


@pytest.mark.parametrize("text", [
    "[workload\nname = 't'\n",
    GOOD + "new_tokens = 9\n",  # duplicate key
    GOOD + "prompt = 'unterminated\n",
])
def test_malformed_toml(tmp_path, text):
    message, path = error_of(tmp_path, text)
    assert message.startswith(path) and "malformed TOML" in message


def test_missing_file_and_unknown_name(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(UserError, match=r"nope\.toml.*not found"):
        load_workload(str(missing))
    with pytest.raises(UserError, match=r"unknown workload 'no-such-workload'.*seed"):
        load_workload("no-such-workload")


def test_unreadable_file_is_a_user_error(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="binary.toml"):
        load_workload(str(path))


def test_checkpoint_model_path_is_relative_to_the_workload_file(tmp_path):
    wl = parse_workload(GOOD.replace('model = "seed"', 'model = "models/tiny.safetensors"'),
                        str(tmp_path / "w.toml"))
    assert wl.model == str((tmp_path / "models" / "tiny.safetensors").resolve())


def test_target_metric_names_exist_in_run_metrics():
    """TARGET_METRICS (workloads.py) lists names that metrics.flag_set_metrics produces."""
    from smbench.metrics import flag_set_metrics
    from smbench.probes import ProbeData, StepRow
    from smbench.runner import FlagSetRun

    data = ProbeData(steps=[StepRow(3, 3, 1000, 0, 0), StepRow(1, 4, 1000, 0, 0),
                            StepRow(1, 5, 1000, 0, 0), StepRow(1, 6, 1000, 0, 0)])
    run = FlagSetRun("none", cold=data, timed_wall_s=[0.01], timed_steps=[data],
                     instrumented_wall_s=[0.01], instrumented=[data], model_bytes=1)
    metrics = flag_set_metrics(run, 4)
    assert set(TARGET_METRICS) <= set(metrics)
