"""GPT2MiniConfig: the blog's defaults, validation that names the field, JSON round trip, Auto registration."""

import json

import pytest
from transformers import AutoConfig

from configuration_gpt2mini import GPT2MiniConfig
from gpt2mini.cli import build_parser
from gpt2mini.lab.catalog import ORDER


def test_defaults_are_the_blogs_model():
    c = GPT2MiniConfig()
    assert (c.n_layer, c.n_head, c.n_embd, c.n_positions) == (4, 4, 128, 256)
    assert c.tie_word_embeddings is True
    assert c.ln_style == "pre" and c.use_residual and c.use_attention and c.use_mlp and c.use_position_embeddings
    assert c.ablations == {}
    assert c.inner_dim == 512
    # generic names map onto GPT-2's
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.max_position_embeddings) == (128, 4, 4, 256)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_embd=130, n_head=4), "n_embd"),
        (dict(ln_style="middle"), "ln_style"),
        (dict(n_layer=0), "n_layer"),
        (dict(n_head=-2), "n_head"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(n_positions=0), "n_positions"),
        (dict(n_embd=2.5), "n_embd"),
        (dict(n_inner=0), "n_inner"),
        (dict(attn_pdrop=1.0), "attn_pdrop"),
        (dict(resid_pdrop=-0.1), "resid_pdrop"),
        (dict(layer_norm_epsilon=0), "layer_norm_epsilon"),
        (dict(use_residual="no"), "use_residual"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GPT2MiniConfig(**kwargs)


def test_json_round_trip(tmp_path):
    c = GPT2MiniConfig(n_layer=3, ln_style="post", use_residual=False, tie_word_embeddings=False, vocab_size=99)
    c.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "gpt2mini"
    assert "auto_map" not in saved  # no code goes with a saved config (publishing adds both to its repository)
    back = GPT2MiniConfig.from_pretrained(tmp_path)
    assert back.to_dict() == c.to_dict()
    assert back.ablations == {"use_residual": False, "ln_style": "post", "tie_word_embeddings": False}


def test_invalid_config_file_is_rejected(tmp_path):
    GPT2MiniConfig().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["n_head"] = 3
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="n_embd"):
        GPT2MiniConfig.from_pretrained(tmp_path)


def test_auto_config_registration(tmp_path):
    import gpt2mini  # noqa: F401  (registers the Auto classes)

    assert isinstance(AutoConfig.for_model("gpt2mini"), GPT2MiniConfig)
    GPT2MiniConfig(n_layer=2).save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is GPT2MiniConfig and loaded.n_layer == 2
    gpt2mini.register_auto_classes()  # a second registration is no error
    assert type(AutoConfig.from_pretrained(tmp_path)) is GPT2MiniConfig


def test_an_auto_map_is_kept_only_with_the_code_it_names(tmp_path, monkeypatch):
    old = {"AutoConfig": "configuration_gpt2mini.GPT2MiniConfig"}  # as a folder saved up to commit 17ae234 has it
    assert not hasattr(GPT2MiniConfig.from_dict(GPT2MiniConfig().to_dict() | {"auto_map": old}), "auto_map")
    # registered for an Auto class (as transformers does when it runs this file as remote code), the class keeps it,
    # and save_pretrained writes the code beside it: transformers' convention for sharing custom code
    monkeypatch.setattr(GPT2MiniConfig, "_auto_class", "AutoConfig")
    assert GPT2MiniConfig.from_dict(GPT2MiniConfig().to_dict() | {"auto_map": old}).auto_map == old
    GPT2MiniConfig().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == old
    assert (tmp_path / "configuration_gpt2mini.py").exists()


def test_the_registry_of_switches_is_the_one_source():
    from configuration_gpt2mini import BASELINE, SWITCHES, choices, gpt2_value, switch_fields, variant_label, variants
    from gpt2mini.study.variants import VARIANTS

    names = [s.variant for s in SWITCHES]
    assert len(set(names)) == len(names) and BASELINE not in names
    for s in SWITCHES:
        assert s.value != gpt2_value(s.field) and s.value in choices(s.field)  # each switch changes something
        assert GPT2MiniConfig(**{s.field: s.value}).ablations == {s.field: s.value}
        assert s.label and s.meaning and variant_label(s.variant) == s.label
    # everything downstream is generated from it: train.py's flags, the studies' variants, the lab's order
    flags = {a.dest for a in build_parser()._actions}
    assert {s.flag for s in SWITCHES} <= flags
    ablations = [s.variant for s in SWITCHES if s.kind == "ablation"]
    assert list(VARIANTS) == [BASELINE, *ablations] == list(variants()) == list(ORDER)[: len(ablations) + 1]
    assert list(ORDER)[len(ablations) + 1 :] == ["transformer-2017", "llama"]
    assert list(variants(("ablation", "lineage"))) == [BASELINE, *names] and {s.kind for s in SWITCHES} == {
        "ablation",
        "lineage",
    }
    assert set(switch_fields()) == {s.field for s in SWITCHES}


def test_a_switch_field_takes_only_its_registered_values():
    with pytest.raises(ValueError, match="ln_style must be one of"):
        GPT2MiniConfig(ln_style="middle")
    with pytest.raises(ValueError, match="use_mlp must be true or false"):
        GPT2MiniConfig(use_mlp=1)  # 1 == True, but a config written by hand must say true


def test_presets_name_the_lineage_and_each_builds():
    from configuration_gpt2mini import PRESETS, preset, variant_of

    assert list(PRESETS) == ["transformer-2017", "gpt1", "gpt2", "llama"] and preset("gpt2") == {}
    for name, fields in PRESETS.items():
        config = GPT2MiniConfig(**fields)
        assert config.ablations == fields and variant_of(fields) in (name, "baseline", "post_ln"), name
    llama = GPT2MiniConfig(**preset("llama"))
    assert (llama.norm_style, llama.position_style, llama.mlp_style, llama.use_bias) == (
        "rmsnorm",
        "rope",
        "swiglu",
        False,
    )
    with pytest.raises(ValueError, match="no preset 'gpt3'; choose from transformer-2017, gpt1, gpt2, llama"):
        preset("gpt3")


def test_swiglu_is_as_wide_as_keeps_the_weights_of_the_gelu_mlp():
    gelu, swiglu = GPT2MiniConfig(), GPT2MiniConfig(mlp_style="swiglu")
    assert gelu.inner_dim == 512 and swiglu.inner_dim == 341  # 2 x 128 x 512 = 131,072 weights; 3 x 128 x 341 = 130,944
    assert GPT2MiniConfig(mlp_style="swiglu", n_inner=300).inner_dim == 300  # n_inner, when set, is the width


def test_positions_that_cannot_go_together_are_refused():
    with pytest.raises(ValueError, match="position_style='rope' needs use_position_embeddings=true"):
        GPT2MiniConfig(position_style="rope", use_position_embeddings=False)
    with pytest.raises(ValueError, match="RoPE rotates pairs of channels; the head width 5 is odd"):
        GPT2MiniConfig(position_style="rope", n_embd=20, n_head=4)


def test_switches_that_would_build_nothing_are_refused():
    with pytest.raises(ValueError, match="norm_style='rmsnorm' changes nothing: ln_style='none' has no norm"):
        GPT2MiniConfig(norm_style="rmsnorm", ln_style="none")
    with pytest.raises(ValueError, match="mlp_style='swiglu' changes nothing: use_mlp=false has no MLP"):
        GPT2MiniConfig(mlp_style="swiglu", use_mlp=False)
    llama = GPT2MiniConfig(norm_style="rmsnorm", use_residual=False)
    assert llama.broken == {"use_residual": False} and llama.lineage == {"norm_style": "rmsnorm"}
