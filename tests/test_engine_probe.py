"""The probe protocol: stage edges, layer indices, step brackets, and the no-op default."""
from __future__ import annotations

import pytest

import engine
from engine.probe import FUSED_STAGES, NO_LAYER, NULL_PROBE, STAGES, NullProbe

PROMPT = [5, 40, 41, 1, 53, 56, 50, 42, 1, 46]  # 10 tokens of the char vocabulary
N_NEW = 6
N_LAYER = 2  # the seed preset

# The stage sequence of one forward, written out from the model's structure.
UNFUSED_BLOCK = ("ln_1", "attn.qkv", "attn.scores", "attn.softmax", "attn.context", "attn.proj",
                 "residual", "ln_2", "mlp.fc", "mlp.gelu", "mlp.proj", "residual")
FUSED_BLOCK = ("attn.qkv", "attn.core", "attn.proj", "residual+ln_2", "mlp.fc", "mlp.gelu", "mlp.proj")
# A fused forward over several tokens (prefill, or every step without kv) keeps the score
# matrix: BLAS over T queries beats the single-query kernel's scalar loop.
FUSED_ATTENTION_MANY = ("attn.scores", "attn.softmax", "attn.context")


def fused_block(n_new):
    if n_new == 1:
        return FUSED_BLOCK
    return FUSED_BLOCK[:1] + FUSED_ATTENTION_MANY + FUSED_BLOCK[2:]


def unfused_forward(n_layer):
    seq = [("embed", NO_LAYER)]
    for i in range(n_layer):
        seq += [(s, i) for s in UNFUSED_BLOCK]
    return seq + [("ln_f", NO_LAYER), ("lm_head", NO_LAYER)]


def fused_forward(n_layer, n_new=1):
    seq = [("embed", NO_LAYER), ("ln_1", 0)]
    for i in range(n_layer):
        seq += [(s, i) for s in fused_block(n_new)]
        seq.append(("residual+ln_1", i + 1) if i + 1 < n_layer else ("residual+ln_f", NO_LAYER))
    return seq + [("lm_head", NO_LAYER)]


class Recorder:
    """Records every call in order; checks the brackets are well nested as it goes."""

    def __init__(self):
        self.events = []
        self.in_step = False

    def step_begin(self, n_new, n_total):
        assert not self.in_step, "step_begin inside a step"
        self.in_step = True
        self.events.append(("begin", n_new, n_total))

    def stage_end(self, stage, layer):
        assert isinstance(stage, str) and isinstance(layer, int)
        self.events.append(("stage", stage, layer))

    def step_end(self):
        assert self.in_step, "step_end without step_begin"
        self.in_step = False
        self.events.append(("end",))

    def steps(self):
        """[(n_new, n_total, [(stage, layer), ...])] per step."""
        out = []
        for ev in self.events:
            if ev[0] == "begin":
                out.append((ev[1], ev[2], []))
            elif ev[0] == "stage":
                assert out, "stage edge before the first step_begin"
                out[-1][2].append(ev[1:])
        return out


@pytest.fixture(scope="module", params=[str(f) for f in engine.all_flag_sets()])
def recorded(request, seed_model):
    model = seed_model.with_flags(request.param)
    rec = Recorder()
    model.probe = rec
    tokens = model.generate(PROMPT, N_NEW)
    return model, rec, tokens


def test_default_probe_is_the_null_probe(seed_model):
    assert seed_model.probe is NULL_PROBE and isinstance(NULL_PROBE, NullProbe)
    fresh = engine.load("seed", flags="kv,pool,fused")
    assert fresh.probe is NULL_PROBE
    fresh.probe = Recorder()
    assert fresh.with_flags("kv").probe is NULL_PROBE  # a probe is not inherited by copies
    # the null probe accepts the whole protocol and does nothing
    assert NULL_PROBE.step_begin(1, 1) is None and NULL_PROBE.stage_end("embed", -1) is None
    assert NULL_PROBE.step_end() is None


def test_stage_names_are_documented():
    assert len(set(STAGES)) == len(STAGES) == 15
    assert not set(STAGES) & set(FUSED_STAGES)
    assert set(UNFUSED_BLOCK) | {"embed", "ln_f", "lm_head", "sample"} == set(STAGES)
    assert (set(FUSED_BLOCK) - set(STAGES)) | {"residual+ln_1", "residual+ln_f"} == set(FUSED_STAGES)


def test_one_step_per_token(recorded):
    model, rec, tokens = recorded
    assert len(tokens) == N_NEW
    assert [e[0] for e in rec.events].count("begin") == N_NEW
    assert [e[0] for e in rec.events].count("end") == N_NEW
    assert rec.events[0][0] == "begin" and rec.events[-1] == ("end",) and not rec.in_step


def test_n_new_and_n_total(recorded):
    model, rec, _ = recorded
    steps = rec.steps()
    assert [s[1] for s in steps] == [len(PROMPT) + i for i in range(N_NEW)]
    if model.flags.kv:
        assert [s[0] for s in steps] == [len(PROMPT)] + [1] * (N_NEW - 1)
    else:
        assert [s[0] for s in steps] == [s[1] for s in steps]  # the whole window every step


def test_stage_sequence_per_step(recorded):
    model, rec, _ = recorded
    for n_new, n_total, stages in rec.steps():
        forward = fused_forward(N_LAYER, n_new) if model.flags.fused else unfused_forward(N_LAYER)
        assert stages == forward + [("sample", NO_LAYER)]


def test_stage_names_and_layers(recorded):
    model, rec, _ = recorded
    seen = [e[1:] for e in rec.events if e[0] == "stage"]
    names = {s for s, _ in seen}
    allowed = set(STAGES) | set(FUSED_STAGES)
    assert names <= allowed
    if model.flags.fused:
        assert set(FUSED_STAGES) - ({"attn.core"} if not model.flags.kv else set()) <= names
        assert not names & {"residual", "ln_2", "ln_f"}
        assert ("attn.core" in names) == model.flags.kv  # only kv decode steps have one new token
    else:
        assert names == set(STAGES)
        assert not names & set(FUSED_STAGES)
    layers = {layer for _, layer in seen}
    assert layers == set(range(N_LAYER)) | {NO_LAYER}
    for stage, layer in seen:
        if stage in ("embed", "ln_f", "lm_head", "sample", "residual+ln_f"):
            assert layer == NO_LAYER, stage
        else:
            assert 0 <= layer < N_LAYER, stage


def test_probe_does_not_change_results(recorded, seed_model):
    model, _, tokens = recorded
    assert seed_model.with_flags(model.flags).generate(PROMPT, N_NEW) == tokens


def test_logits_reports_stages_without_steps(seed_model):
    model = seed_model.with_flags("pool")
    model.probe = rec = Recorder()
    model.logits(PROMPT)
    assert [e[1:] for e in rec.events] == unfused_forward(N_LAYER)


def test_deeper_model_layer_indices():
    cfg = engine.ModelConfig(vocab_size=65, n_ctx=16, n_embd=16, n_layer=5, n_head=2)
    for flags, forward in (("kv", unfused_forward), ("kv,fused", fused_forward)):
        model = engine.from_config(cfg, flags=flags)
        model.probe = rec = Recorder()
        model.generate([1, 2, 3], 2)
        for n_new, _, stages in rec.steps():
            expected = forward(5, n_new) if forward is fused_forward else forward(5)
            assert stages == expected + [("sample", NO_LAYER)]
