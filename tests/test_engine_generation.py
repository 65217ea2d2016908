"""The decode loop: sliding window, KV statistics, seeded sampling, input validation."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import InputError, TokenizerError

EXACT_SETS = [f for f in engine.all_flag_sets() if f.is_exact]
N_CTX = 32          # short context so the window slides several times
N_SLIDE_NEW = 100
PROMPT_LEN = 16


@pytest.fixture(scope="module")
def short_ctx() -> engine.Model:
    """`seed` with a 32-token context (wpe has 32 rows), naive flags."""
    return engine.load("seed", config=engine.preset("seed").with_(n_ctx=N_CTX), seed=0)


@pytest.fixture(scope="module")
def prompt(make_prompt) -> list[int]:
    return make_prompt(65, PROMPT_LEN, seed=2)


def sliding_oracle(model: engine.Model, prompt: list[int], n_new: int, keep_fraction: float):
    """Greedy decoding written independently of engine/generate.py.

    The context holds at most n_ctx tokens. Before a step that would need more, the
    window is cut to its last int(n_ctx * keep_fraction) tokens, which then sit at
    positions 0.. again. Each step is a fresh full forward (`logits`) over the window.
    Returns (tokens, window lengths seen at each step).
    """
    n_ctx = model.config.n_ctx
    keep = int(n_ctx * keep_fraction)
    window, tokens, lengths = list(prompt), [], []
    for _ in range(n_new):
        if len(window) > n_ctx:
            window = window[-keep:]
        lengths.append(len(window))
        token = int(model.logits(window)[-1].argmax())
        window.append(token)
        tokens.append(token)
    return tokens, lengths


@pytest.fixture(scope="module", params=[0.5, 0.25], ids=lambda f: f"keep{f}")
def slide_case(request, short_ctx, prompt):
    kf = request.param
    tokens, lengths = sliding_oracle(short_ctx, prompt, N_SLIDE_NEW, kf)
    return kf, tokens, lengths


# ---- sliding window ----------------------------------------------------------------------

def test_oracle_really_slides(slide_case):
    kf, tokens, lengths = slide_case
    keep = int(N_CTX * kf)
    slides = sum(1 for a, b in zip(lengths, lengths[1:]) if b < a)
    assert slides >= 3
    assert max(lengths) == N_CTX and min(lengths[PROMPT_LEN:]) >= keep
    assert len(set(tokens)) >= 10


@pytest.mark.parametrize("flags", EXACT_SETS, ids=str)
def test_sliding_window_matches_oracle(short_ctx, prompt, slide_case, flags):
    kf, want, _ = slide_case
    got = short_ctx.with_flags(flags).generate(prompt, N_SLIDE_NEW, keep_fraction=kf)
    assert got == want, f"{flags} keep={kf}: first mismatch at " \
        f"{next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}"


def test_sliding_window_steps_seen_by_probe(short_ctx, prompt):
    """With kv, the step after a slide re-prefills exactly the kept tokens."""
    class Steps:
        def __init__(self):
            self.begins = []

        def step_begin(self, n_new, n_total):
            self.begins.append((n_new, n_total))

        def stage_end(self, stage, layer):
            pass

        def step_end(self):
            pass

    m = short_ctx.with_flags("kv,pool")
    m.probe = probe = Steps()
    m.generate(prompt, 60, keep_fraction=0.25)
    keep = 8
    totals = [t for _, t in probe.begins]
    first_slide = N_CTX - PROMPT_LEN + 1
    assert totals[:first_slide] == list(range(PROMPT_LEN, N_CTX + 1))
    assert totals[first_slide:first_slide + N_CTX - keep + 2] == list(range(keep, N_CTX + 1)) + [keep]
    for i, (n_new, n_total) in enumerate(probe.begins):
        prefill = i == 0 or n_total < totals[i - 1]
        assert n_new == (n_total if prefill else 1), f"step {i}"


def test_kv_cache_is_preallocated_to_context(short_ctx):
    cfg = short_ctx.config
    m = short_ctx.with_flags("kv")
    assert m.kv_cache_bytes == 2 * cfg.n_layer * cfg.n_ctx * cfg.n_embd * 4
    assert short_ctx.kv_cache_bytes == 0


@pytest.mark.parametrize("kf", [0.0, 1.0, -0.5, 1.5])
def test_bad_keep_fraction(short_ctx, prompt, kf):
    with pytest.raises(InputError, match="keep fraction"):
        short_ctx.generate(prompt, 5, keep_fraction=kf)


# ---- KV statistics --------------------------------------------------------------------------

def test_kv_hit_rate(seed_model, prompt):
    kv = seed_model.with_flags("kv,pool,fused")
    n = 150
    kv.generate(prompt, n)
    # computed: the prompt once, then one row per step; reused: everything before it
    assert kv.kv_stats.computed == PROMPT_LEN + n - 1
    assert kv.kv_stats.reused == sum(range(PROMPT_LEN, PROMPT_LEN + n - 1))
    assert kv.kv_stats.hit_rate > 0.9
    naive = seed_model.with_flags("pool,fused")  # no kv: every step recomputes the window
    n = 20
    naive.generate(prompt, n)
    assert naive.kv_stats.reused == 0 and naive.kv_stats.hit_rate == 0.0
    assert naive.kv_stats.computed == sum(range(PROMPT_LEN, PROMPT_LEN + n))


def test_kv_hit_rate_empty_model_is_zero(seed_model):
    assert seed_model.with_flags("kv").kv_stats.hit_rate == 0.0


# ---- sampling -----------------------------------------------------------------------------

SAMPLING = [dict(temperature=0.8), dict(temperature=1.0, top_k=5), dict(temperature=1.2, top_p=0.9),
            dict(temperature=0.7, top_k=20, top_p=0.8)]


@pytest.mark.parametrize("params", SAMPLING, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_sampling_is_seeded(seed_model, prompt, params):
    m = seed_model.with_flags("kv,pool")
    a = m.generate(prompt, 60, seed=7, **params)
    assert a == m.generate(prompt, 60, seed=7, **params)
    assert a != m.generate(prompt, 60, seed=8, **params)
    assert a != m.generate(prompt, 60, **{**params, "temperature": 0.0})  # really samples
    assert all(0 <= t < 65 for t in a)


def test_top_k_1_and_tiny_top_p_are_greedy(seed_model, prompt):
    m = seed_model.with_flags("kv")
    greedy = m.generate(prompt, 60)
    assert m.generate(prompt, 60, temperature=1.5, top_k=1, seed=3) == greedy
    assert m.generate(prompt, 60, temperature=1.5, top_p=1e-9, seed=3) == greedy


def test_top_k_restricts_to_k_most_likely():
    """Unit test of sample(): with top_k=3 only the 3 largest logits are ever drawn."""
    from engine.sampling import SamplingParams, sample

    logits = np.array([0.0, 3.0, 1.0, 2.9, 2.8, -1.0, 2.7], np.float32)
    rng = np.random.default_rng(0)
    drawn = {sample(logits, SamplingParams(2.0, top_k=3), rng) for _ in range(500)}
    assert drawn == {1, 3, 4}
    drawn = {sample(logits, SamplingParams(5.0, top_p=0.5), rng) for _ in range(500)}
    probs = np.exp(logits / 5.0) / np.exp(logits / 5.0).sum()
    nucleus, mass = set(), 0.0  # most likely first, until the mass reaches top_p
    for i in sorted(range(len(probs)), key=lambda i: -probs[i]):
        if mass >= 0.5:
            break
        nucleus.add(i)
        mass += probs[i]
    assert drawn == nucleus and 1 < len(nucleus) < len(logits)
    drawn = {sample(logits, SamplingParams(1e6), rng) for _ in range(2000)}
    assert drawn == set(range(len(logits)))  # very hot: everything is reachable


def test_sampled_tokens_identical_across_exact_flag_sets(seed_model, prompt):
    ref = seed_model.generate(prompt, 60, temperature=0.8, seed=11)
    assert len(set(ref)) >= 10
    for flags in EXACT_SETS:
        assert seed_model.with_flags(flags).generate(prompt, 60, temperature=0.8, seed=11) == ref, str(flags)


def test_sampled_tokens_identical_across_fastgelu_flag_sets(seed_model, prompt):
    fg_sets = [f for f in engine.all_flag_sets() if not f.is_exact]
    ref = seed_model.with_flags("fastgelu").generate(prompt, 60, temperature=0.8, seed=11)
    for flags in fg_sets:
        assert seed_model.with_flags(flags).generate(prompt, 60, temperature=0.8, seed=11) == ref, str(flags)


@pytest.mark.parametrize("params, field", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature="hot"), "temperature"),
    (dict(temperature=1.0, top_k=0), "top_k"),
    (dict(temperature=1.0, top_k=-3), "top_k"),
    (dict(temperature=1.0, top_k=2.5), "top_k"),
    (dict(temperature=1.0, top_p=0.0), "top_p"),
    (dict(temperature=1.0, top_p=1.5), "top_p"),
    (dict(temperature=1.0, top_p=-0.2), "top_p"),
])
def test_bad_sampling_params(seed_model, prompt, params, field):
    with pytest.raises(InputError) as info:
        seed_model.generate(prompt, 3, **params)
    msg = str(info.value)
    assert field in msg and "\n" not in msg


def test_top_p_one_is_allowed(seed_model, prompt):
    m = seed_model.with_flags("kv")
    assert m.generate(prompt, 20, temperature=1.0, top_p=1.0, seed=1) == \
        m.generate(prompt, 20, temperature=1.0, seed=1)


# ---- input validation ----------------------------------------------------------------------

def test_prompt_longer_than_context(short_ctx):
    for call in (lambda ids: short_ctx.generate(ids, 1), short_ctx.logits):
        with pytest.raises(InputError) as info:
            call([1] * (N_CTX + 1))
        msg = str(info.value)
        assert str(N_CTX + 1) in msg and str(N_CTX) in msg and "\n" not in msg
    assert len(short_ctx.logits([1] * N_CTX)) == N_CTX  # exactly n_ctx is fine


@pytest.mark.parametrize("flags", ["", "kv,pool,fused"])
def test_empty_prompt(seed_model, flags):
    m = seed_model.with_flags(flags)
    for call in (lambda ids: m.generate(ids, 1), m.logits):
        with pytest.raises(InputError, match="empty"):
            call([])


@pytest.mark.parametrize("bad", [65, 1000, -1])
def test_token_out_of_vocab(seed_model, bad):
    for call in (lambda ids: seed_model.generate(ids, 1), seed_model.logits):
        with pytest.raises(InputError) as info:
            call([1, 2, bad, 3])
        msg = str(info.value)
        assert str(bad) in msg and "64" in msg and "vocab" in msg


def test_numpy_ids_are_accepted(seed_model, prompt):
    m = seed_model.with_flags("kv")
    assert m.generate(np.asarray(prompt, np.int64), 10) == m.generate(prompt, 10)
    np.testing.assert_array_equal(m.logits(np.asarray(prompt, np.int32)), m.logits(prompt))


@pytest.mark.parametrize("n", [-1, 2.0, "3"])
def test_bad_max_new_tokens(seed_model, prompt, n):
    with pytest.raises(InputError, match="max_new_tokens"):
        seed_model.generate(prompt, n)


def test_zero_new_tokens(seed_model, prompt):
    assert seed_model.with_flags("kv").generate(prompt, 0) == []


def test_prompt_not_mutated(seed_model, prompt):
    ids = list(prompt)
    seed_model.with_flags("kv,pool").generate(ids, 5)
    assert ids == prompt


# ---- tokenizers -----------------------------------------------------------------------------

def test_char_tokenizer_round_trip(seed_model):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n3 & $ ; ? !"
    ids = seed_model.encode(text)
    assert len(ids) == len(text) and all(0 <= i < 65 for i in ids)
    assert seed_model.decode(ids) == text
    assert seed_model.tokenizer.vocab_size == 65


@pytest.mark.parametrize("text, bad", [("Hello, world 7", "7"), ("caf\u00e9", "\u00e9"), ("tab\there", "\t"),
                                       ("emoji \U0001F600", "\U0001F600")])
def test_char_tokenizer_unknown_character(seed_model, text, bad):
    with pytest.raises(TokenizerError) as info:
        seed_model.encode(text)
    msg = str(info.value)
    assert repr(bad) in msg and "65" in msg and "\n" not in msg


def test_byte_tokenizer_for_small(small_model):
    text = "caf\u00e9 \U0001F600"
    ids = small_model.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert small_model.decode(ids) == text
