"""The model as transformers sees it: shapes, loss, masks, outputs, saving and loading."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import sharpen, tiny_config, tiny_model
from modeling_gpt2mini import GPT2MiniForCausalLM


def test_shapes_and_parameter_count():
    m = tiny_model()
    x = torch.randint(0, 97, (3, 17))
    out = m(x)
    assert out.logits.shape == (3, 17, 97)
    # GPT-2's count: embeddings + per block (2 LN, c_attn, c_proj, c_fc, c_proj) + ln_f; lm_head tied
    C, L, V, P = 32, 2, 97, 64
    block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    assert m.num_parameters() == V * C + P * C + L * block + 2 * C


def test_default_model_is_about_0_8M_parameters():
    m = GPT2MiniForCausalLM(tiny_config(n_layer=4, n_embd=128, n_head=4, n_positions=256, vocab_size=323))
    assert 0.75e6 < m.num_parameters() < 0.9e6


def test_loss_at_init_is_near_log_vocab():
    m = tiny_model()
    x = torch.randint(0, 97, (4, 64))
    loss = m(x, labels=x).loss.item()
    assert abs(loss - math.log(97)) < 0.15


def test_labels_give_the_shifted_causal_loss_and_ignore_minus_100():
    m = tiny_model()
    x = torch.randint(0, 97, (2, 20))
    logits = m(x).logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 97), x[:, 1:].reshape(-1))
    assert torch.allclose(m(x, labels=x).loss, expected, atol=1e-6)
    labels = x.clone()
    labels[:, :10] = -100
    partial = torch.nn.functional.cross_entropy(logits[:, 9:-1].reshape(-1, 97), x[:, 10:].reshape(-1))
    assert torch.allclose(m(x, labels=labels).loss, partial, atol=1e-6)


def test_sdpa_and_eager_agree_and_attentions_are_returned():
    torch.manual_seed(0)
    sdpa = tiny_model()
    eager = tiny_model(attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    x = torch.randint(0, 97, (2, 30))
    a, b = sdpa(x), eager(x, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    assert len(b.attentions) == 2 and b.attentions[0].shape == (2, 2, 30, 30)
    assert len(b.hidden_states) == 3 and b.hidden_states[0].shape == (2, 30, 32)
    w = b.attentions[1]
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 30))
    assert torch.all(w.triu(diagonal=1) == 0)  # causal: no weight on the future
    # SDPA returns no weights itself; asking for them computes them explicitly and gives the same numbers
    c = sdpa(x, output_attentions=True)
    torch.testing.assert_close(c.attentions[1], w)


def test_left_padded_batch_equals_unpadded_rows():
    m = tiny_model()
    rows = [torch.randint(0, 97, (n,)) for n in (12, 5, 9)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    for impl in ("sdpa", "eager"):
        m.config._attn_implementation = impl
        batched = m(ids, attention_mask=mask).logits
        assert torch.isfinite(batched).all()
        for i, r in enumerate(rows):
            alone = m(r[None]).logits[0]
            torch.testing.assert_close(batched[i, width - len(r) :], alone, atol=1e-5, rtol=0)
    m.config._attn_implementation = "sdpa"


def test_sequence_longer_than_context_is_a_clear_error():
    m = tiny_model()
    with pytest.raises(ValueError, match="exceeds the model's context of 64"):
        m(torch.zeros(1, 65, dtype=torch.long))


def test_save_load_identical_logits_tied_weights_and_only_safetensors(tmp_path):
    m = sharpen(tiny_model())
    assert m.lm_head.weight is m.transformer.wte.weight
    m.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert {"config.json", "generation_config.json"} <= set(files)
    assert not [f for f in files if f.endswith(".py")]  # no code: the classes come from `import gpt2mini`
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in f.keys()  # stored once
    back = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(back) is GPT2MiniForCausalLM and not back.training
    assert back.lm_head.weight is back.transformer.wte.weight
    x = torch.randint(0, 97, (2, 40))
    assert torch.equal(back(x).logits, m(x).logits)
    # still tied after training steps
    back.train()
    opt = torch.optim.AdamW(back.parameters(), lr=1e-2)
    back(x, labels=x).loss.backward()
    opt.step()
    assert back.lm_head.weight is back.transformer.wte.weight


def test_untied_embeddings_stay_separate(tmp_path):
    m = tiny_model(tie_word_embeddings=False)
    assert m.lm_head.weight is not m.transformer.wte.weight
    assert not torch.equal(m.lm_head.weight, m.transformer.wte.weight)
    m.save_pretrained(tmp_path)
    back = GPT2MiniForCausalLM.from_pretrained(tmp_path)
    assert back.lm_head.weight is not back.transformer.wte.weight
    assert torch.equal(back.lm_head.weight, m.lm_head.weight)
    assert back.num_parameters() == m.num_parameters() == tiny_model().num_parameters() + 97 * 32


def test_return_dict_false_gives_a_tuple():
    m = tiny_model()
    x = torch.randint(0, 97, (1, 8))
    out = m(x, labels=x, return_dict=False)
    assert isinstance(out, tuple)
    assert torch.equal(out[1], m(x).logits)


# ---------------------------------------------------------------------------------------------------------------------
# Caches, attention implementations, gradient checkpointing: transformers' contract, held to the plain paths

PADDED = torch.tensor([[0, 0, 5, 6, 7, 8, 9], [3, 4, 5, 6, 7, 8, 9]])
PADDED_MASK = (torch.arange(7)[None] >= torch.tensor([[2], [0]])).long()


def special_ids(**kw):
    return sharpen(tiny_model(pad_token_id=0, eos_token_id=1, bos_token_id=1, **kw))


@pytest.mark.parametrize("switches", [{}, {"use_attention": False}, {"ln_style": "post"}])
def test_a_static_cache_generates_exactly_what_the_dynamic_cache_does(switches):
    m = special_ids(**switches)
    for ids, mask in ((PADDED[1:], PADDED_MASK[1:]), (PADDED, PADDED_MASK)):  # one prompt; a left-padded batch
        dynamic = m.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False)
        static = m.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False, cache_implementation="static")
        assert torch.equal(static, dynamic)


@pytest.mark.parametrize("switches", [{}, {"use_attention": False}])
def test_caches_filled_by_hand_give_the_logits_of_one_full_forward(switches):
    from transformers.cache_utils import DynamicCache, StaticCache

    m = special_ids(**switches)
    x = PADDED[1:]
    full = m(x, use_cache=False).logits[:, -1]
    for cache in (StaticCache(config=m.config, max_cache_len=20), DynamicCache(config=m.config)):
        m(x[:, :-3], cache=cache, use_cache=True)
        m(x[:, -3:-1], cache=cache, use_cache=True)  # two at once over a filled cache
        step = m(x[:, -1:], cache=cache, use_cache=True).logits[:, -1]
        torch.testing.assert_close(step, full, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_transformers_compiled_generation_runs_on_cpu():
    from transformers import CompileConfig

    m = special_ids()
    ids = PADDED[1:]
    compiled = CompileConfig(fullgraph=True, mode="default", dynamic=False)
    compiled._compile_all_devices = True  # transformers' switch for compiling generate off the GPU (its tests use it)
    out = m.generate(ids, max_new_tokens=12, do_sample=False, cache_implementation="static", compile_config=compiled)
    assert hasattr(m, "_compiled_call")  # generate really ran the torch.compile'd forward
    assert torch.equal(out, m.generate(ids, max_new_tokens=12, do_sample=False))


def test_a_cache_this_model_cannot_fill_is_refused_by_name():
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    m = tiny_model()
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    with pytest.raises(ValueError, match="cannot use a EncoderDecoderCache: it supports DynamicCache and StaticCache"):
        m(PADDED[1:], cache=cache, use_cache=True)


def test_set_attn_implementation_takes_effect_and_refuses_what_it_cannot_run():
    m = special_ids()
    with torch.no_grad():
        sdpa = m(PADDED, attention_mask=PADDED_MASK).logits
        m.set_attn_implementation("eager")
        assert m.config._attn_implementation == "eager"
        calls = []
        hook = m.transformer.h[0].attn.register_forward_hook(lambda _m, _a, out: calls.append(out[1]))
        eager = m(PADDED, attention_mask=PADDED_MASK).logits
        hook.remove()
    assert calls[0] is not None  # the eager path ran: it is the one that computes the weights
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=0)
    with pytest.raises((ValueError, ImportError)):
        m.set_attn_implementation("flash_attention_2")


def test_gradient_checkpointing_gives_the_same_gradients():
    def grads(checkpointing: bool):
        m = tiny_model(seed=3).train()
        if checkpointing:
            m.gradient_checkpointing_enable()
            assert m.is_gradient_checkpointing
        m(PADDED, attention_mask=PADDED_MASK, labels=PADDED).loss.backward()
        return {n: p.grad for n, p in m.named_parameters()}

    plain, checkpointed = grads(False), grads(True)
    for name, g in plain.items():
        torch.testing.assert_close(checkpointed[name], g, atol=1e-6, rtol=1e-5, msg=name)


def test_left_padding_counts_positions_from_the_first_real_token():
    # documented in docs/model.md: GPT2LMHeadModel counts the padding too, unless given position_ids (generate gives
    # them, so generations agree); here a padded row equals the same row unpadded without any position_ids
    m = special_ids()
    with torch.no_grad():
        padded = m(PADDED, attention_mask=PADDED_MASK).logits[0, 2:]
        alone = m(PADDED[:1, 2:]).logits[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", ["transformer-2017", "llama"])  # between them, every lineage switch
def test_the_lineage_works_through_both_caches_generate_and_a_saved_folder(preset, tmp_path):
    from transformers import AutoModelForCausalLM

    from configuration_gpt2mini import PRESETS

    m = special_ids(**PRESETS[preset])
    dynamic = m.generate(PADDED, attention_mask=PADDED_MASK, max_new_tokens=20, do_sample=False)
    static = m.generate(
        PADDED, attention_mask=PADDED_MASK, max_new_tokens=20, do_sample=False, cache_implementation="static"
    )
    assert torch.equal(static, dynamic)
    full = m(PADDED, attention_mask=PADDED_MASK, use_cache=False).logits
    m.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # the classes `import gpt2mini` registered
    assert type(loaded) is type(m)
    torch.testing.assert_close(loaded(PADDED, attention_mask=PADDED_MASK, use_cache=False).logits, full)
    with pytest.raises(ValueError, match="GPT-2 has no equivalent of"):
        m.to_gpt2()
