"""Each ablation switch changes the computation the way its name says, and a tiny model can learn."""

import pytest
import torch
from torch import nn

from conftest import tiny_model
from gpt2mini.generation.stream import TokenStream
from modeling_gpt2mini import GPT2MiniForCausalLM


def perturbed_prefix(x, upto):
    y = x.clone()
    y[:, :upto] = (y[:, :upto] + 17) % 97
    return y


def test_attention_off_makes_each_position_blind_to_earlier_characters():
    x = torch.randint(0, 97, (2, 40))
    y = perturbed_prefix(x, 30)  # change every character before position 30
    blind = tiny_model(use_attention=False)
    assert blind.transformer.h[0].attn is None
    torch.testing.assert_close(blind(x).logits[:, 30:], blind(y).logits[:, 30:], atol=0, rtol=0)
    seeing = tiny_model()
    assert not torch.allclose(seeing(x).logits[:, 30:], seeing(y).logits[:, 30:], atol=1e-3)


def zero_(*modules):
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.zero_()


def test_attention_off_and_mlp_off_equal_zeroed_sublayers_in_the_baseline():
    base = tiny_model()
    x = torch.randint(0, 97, (2, 30))
    for switch, sub in (("use_attention", "attn"), ("use_mlp", "mlp")):
        ablated = tiny_model(**{switch: False})
        ablated.load_state_dict(base.state_dict(), strict=False)
        reference = tiny_model()
        reference.load_state_dict(base.state_dict())
        zero_(*(getattr(block, sub).c_proj for block in reference.transformer.h))
        torch.testing.assert_close(ablated(x).logits, reference(x).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(ablated(x).logits, base(x).logits, atol=1e-3)
        assert all(getattr(b, sub) is None for b in ablated.transformer.h)


def test_residual_off_removes_the_identity_path():
    """With every sub-layer's output projection zeroed, a residual block is the identity; without residuals it
    outputs zeros."""
    x = torch.randn(2, 10, 32)
    for residual, expected in ((True, x), (False, torch.zeros_like(x))):
        block = tiny_model(use_residual=residual).transformer.h[0]
        zero_(block.attn.c_proj, block.mlp.c_proj)
        out, _ = block(x, None, True)
        torch.testing.assert_close(out, expected)


def layer_norms(model):
    return sum(isinstance(m, nn.LayerNorm) for m in model.modules())


def test_layer_norm_placement():
    x = torch.randint(0, 97, (2, 20))
    pre, post, none = (tiny_model(ln_style=s) for s in ("pre", "post", "none"))
    assert (layer_norms(pre), layer_norms(post), layer_norms(none)) == (5, 4, 0)
    # post-LN: every block's output is normalised (mean 0, std 1 per position); pre-LN: only the final one is
    hs_post = post(x, output_hidden_states=True).hidden_states
    for h in hs_post[1:]:
        torch.testing.assert_close(h.mean(-1), torch.zeros(2, 20), atol=1e-5, rtol=0)
        torch.testing.assert_close(h.std(-1, unbiased=False), torch.ones(2, 20), atol=1e-3, rtol=0)
    hs_pre = pre(x, output_hidden_states=True).hidden_states
    assert not torch.allclose(hs_pre[1].std(-1, unbiased=False), torch.ones(2, 20), atol=0.1)
    # no LayerNorm: the residual stream is never rescaled, so scaling the embeddings scales the first block's input
    none_big = tiny_model(ln_style="none")
    with torch.no_grad():
        none_big.transformer.wte.weight.mul_(10)
    assert none_big(x).logits.abs().max() > 5 * none(x).logits.abs().max()


def test_no_position_embeddings_make_a_repeated_character_look_the_same_everywhere():
    x = torch.full((1, 30), 5)
    nopos = tiny_model(use_position_embeddings=False)
    assert nopos.transformer.wpe is None
    logits = nopos(x).logits[0]
    torch.testing.assert_close(logits, logits[:1].expand_as(logits), atol=1e-5, rtol=0)
    withpos = tiny_model()(x).logits[0]
    assert not torch.allclose(withpos, withpos[:1].expand_as(withpos), atol=1e-3)


def test_every_switch_changes_the_logits():
    base = tiny_model()
    x = torch.randint(0, 97, (2, 24))
    ref = base(x).logits
    for switch in (
        dict(use_residual=False),
        dict(use_attention=False),
        dict(use_mlp=False),
        dict(ln_style="post"),
        dict(ln_style="none"),
        dict(use_position_embeddings=False),
        dict(tie_word_embeddings=False),
    ):
        m = tiny_model(**switch)
        m.load_state_dict(base.state_dict(), strict=False)
        if not switch.get("tie_word_embeddings", True):
            with torch.no_grad():
                m.lm_head.weight.normal_(0, 0.02)
        assert not torch.allclose(m(x).logits, ref, atol=1e-4), switch
        assert m.config.ablations == switch


@pytest.mark.parametrize("ablation", [{}, {"ln_style": "post"}])
def test_a_tiny_model_overfits_a_200_character_string(ablation):
    text = (
        "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer the slings and "
        "arrows of outrageous fortune, or to take arms against a sea of troubles and by opposing end them. Yes."
    )[:200]
    chars = sorted(set(text))
    ids = torch.tensor([[chars.index(c) for c in text]])
    torch.manual_seed(0)
    from conftest import tiny_config

    model = GPT2MiniForCausalLM(tiny_config(vocab_size=len(chars), n_positions=256, **ablation))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(300):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert model(ids, labels=ids).loss.item() < 0.05
    # greedy decoding from the first 10 characters reproduces the rest
    out = TokenStream(model, ids[:, :10], temperature=0).take(190)[0]
    assert "".join(chars[i] for i in out) == text[10:]
