"""OptFlags parsing, flag-set enumeration, ModelConfig validation and presets."""
from __future__ import annotations

import pytest

import engine
from engine import ConfigError, EngineError, FlagError, ModelConfig, OptFlags, all_flag_sets

FLAG_NAMES = ("pool", "kv", "fused", "fastgelu")


# ---- OptFlags.parse ----------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("kv,pool", {"kv", "pool"}),
    ("pool,kv", {"kv", "pool"}),
    ("kv", {"kv"}),
    ("", set()),
    ("none", set()),
    ("naive", set()),
    ("NONE", set()),
    (None, set()),
    ("  kv ,  pool  ", {"kv", "pool"}),
    ("KV,Pool", {"kv", "pool"}),
    ("kv+pool", {"kv", "pool"}),
    ("kv + fused+FASTGELU", {"kv", "fused", "fastgelu"}),
    ("kv,,pool,", {"kv", "pool"}),
    ("kv,kv", {"kv"}),
    ("pool,kv,fused,fastgelu", set(FLAG_NAMES)),
])
def test_parse(spec, expected):
    flags = OptFlags.parse(spec)
    assert isinstance(flags, OptFlags)
    assert set(flags.names) == expected
    for name in FLAG_NAMES:
        assert getattr(flags, name) is (name in expected)


def test_parse_passes_optflags_through():
    flags = OptFlags(kv=True, fused=True)
    assert OptFlags.parse(flags) is flags


def test_str_round_trips_and_naive_is_none():
    assert str(OptFlags()) == "none"
    for flags in all_flag_sets():
        assert OptFlags.parse(str(flags)) == flags


def test_is_exact_only_without_fastgelu():
    for flags in all_flag_sets():
        assert flags.is_exact is (not flags.fastgelu)


@pytest.mark.parametrize("spec, bad", [("kvv", "kvv"), ("kv,turbo", "turbo"), ("pool;kv", "pool;kv"),
                                       ("int4", "int4")])
def test_unknown_flag_error_names_it_and_lists_valid_flags(spec, bad):
    with pytest.raises(FlagError) as info:
        OptFlags.parse(spec)
    msg = str(info.value)
    assert repr(bad) in msg
    for name in FLAG_NAMES:
        assert name in msg
    assert "\n" not in msg
    assert isinstance(info.value, EngineError)


def test_engine_load_rejects_unknown_flag():
    with pytest.raises(FlagError, match="fastgelu"):
        engine.load("seed", flags="kv,warp")


# ---- all_flag_sets ---------------------------------------------------------------------------

def test_all_flag_sets_is_the_full_powerset_naive_first():
    sets = all_flag_sets()
    assert len(sets) == 16
    assert len(set(sets)) == 16
    assert sets[0] == OptFlags()
    assert sets[-1] == OptFlags(pool=True, kv=True, fused=True, fastgelu=True)
    assert {frozenset(s.names) for s in sets} == {
        frozenset(n for i, n in enumerate(FLAG_NAMES) if mask >> i & 1) for mask in range(16)}
    # ordered by number of flags (the combinations(r) order)
    sizes = [len(s.names) for s in sets]
    assert sizes == sorted(sizes)


def test_all_flag_sets_of_a_subset():
    sets = all_flag_sets(("kv", "pool"))
    assert len(sets) == 4 and sets[0] == OptFlags()
    assert {frozenset(s.names) for s in sets} == {frozenset(), frozenset({"kv"}), frozenset({"pool"}),
                                                  frozenset({"kv", "pool"})}


def test_exact_flags_and_help_are_consistent():
    assert set(engine.EXACT_FLAGS) == {"pool", "kv", "fused"}
    assert set(engine.FLAG_HELP) == set(FLAG_NAMES)


# ---- ModelConfig validation -----------------------------------------------------------------

GOOD = dict(vocab_size=65, n_ctx=32, n_embd=16, n_layer=1, n_head=2)


def test_good_config_and_derived_sizes():
    cfg = ModelConfig(**GOOD)
    assert cfg.head_dim == 8
    assert cfg.with_(n_ctx=64).n_ctx == 64 and cfg.n_ctx == 32
    # n_params agrees with the tensors the engine actually creates
    model = engine.from_config(cfg)
    assert cfg.n_params == sum(a.size for a in model.weights.values())


def test_n_embd_not_divisible_by_n_head():
    with pytest.raises(ConfigError) as info:
        ModelConfig(**{**GOOD, "n_embd": 130, "n_head": 4})
    msg = str(info.value)
    assert "n_embd=130" in msg and "n_head=4" in msg and "divisible" in msg


@pytest.mark.parametrize("field", ["vocab_size", "n_ctx", "n_embd", "n_layer", "n_head"])
@pytest.mark.parametrize("value", [0, -1, True, False, 2.0, "4", None])
def test_sizes_must_be_positive_ints(field, value):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**{**GOOD, field: value})
    msg = str(info.value)
    assert field in msg and repr(value) in msg and "positive integer" in msg


@pytest.mark.parametrize("activation", ["relu", "GELU", "", "gelu_fast"])
def test_bad_activation_lists_supported(activation):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**GOOD, activation=activation)
    msg = str(info.value)
    assert repr(activation) in msg and "gelu" in msg and "gelu_new" in msg


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan")])
def test_bad_layer_norm_epsilon(eps):
    with pytest.raises(ConfigError, match="layer_norm_epsilon"):
        ModelConfig(**GOOD, layer_norm_epsilon=eps)


def test_with_revalidates():
    with pytest.raises(ConfigError, match="n_head"):
        engine.preset("seed").with_(n_head=3)


# ---- presets ---------------------------------------------------------------------------

def test_presets_are_valid_configs():
    assert {"seed", "small", "gpt2"} <= set(engine.PRESETS)
    for name, cfg in engine.PRESETS.items():
        assert engine.preset(name) is cfg
    seed = engine.preset("seed")
    assert (seed.vocab_size, seed.n_embd, seed.n_layer, seed.n_head) == (65, 128, 2, 4)


def test_unknown_preset_lists_valid_presets():
    with pytest.raises(ConfigError) as info:
        engine.preset("tiny")
    msg = str(info.value)
    assert "'tiny'" in msg
    for name in engine.PRESETS:
        assert name in msg


def test_load_unknown_name_is_a_config_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError) as info:
        engine.load(str(missing))
    msg = str(info.value)
    assert "no-such-model" in msg and "seed" in msg and "\n" not in msg


def test_load_preset_with_config_override():
    cfg = engine.preset("seed").with_(n_ctx=32)
    model = engine.load("seed", config=cfg)
    assert model.config == cfg
    assert model.weights["wpe.weight"].shape == (32, 128)
    assert str(model.flags) == "none"
