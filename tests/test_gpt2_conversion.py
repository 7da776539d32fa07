"""A transformers.GPT2LMHeadModel converts into GPT-2 mini with the same logits and the same greedy text."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from modeling_gpt2mini import GPT2MiniForCausalLM


def random_gpt2(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=97, n_positions=48, n_embd=48, n_layer=3, n_head=3, bos_token_id=None, eos_token_id=None)
    cfg.update(kw)
    g = GPT2LMHeadModel(GPT2Config(**cfg)).eval()
    with torch.no_grad():  # peaked distributions, so greedy decoding compares code rather than float noise
        g.transformer.wte.weight.mul_(8)
        for name, p in g.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return g


@pytest.mark.parametrize(
    "shape",
    [
        dict(),
        dict(n_embd=64, n_head=8, n_layer=2, n_positions=32, vocab_size=50),
        dict(n_embd=24, n_head=1, n_layer=5, n_inner=40),
        dict(tie_word_embeddings=False),
    ],
)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_logits_and_greedy_generations_match(shape, impl):
    g = random_gpt2(**shape, attn_implementation=impl)
    m = GPT2MiniForCausalLM.from_gpt2(g)
    assert m.config.n_layer == g.config.n_layer and m.config.tie_word_embeddings == g.config.tie_word_embeddings
    assert m.num_parameters() == g.num_parameters()
    x = torch.randint(0, g.config.vocab_size, (3, g.config.n_positions))
    with torch.no_grad():
        torch.testing.assert_close(m(x).logits, g(x).logits, atol=2e-5, rtol=0)
    prompt = x[:, :5]
    n = g.config.n_positions - 5
    ours = m.generate(prompt, max_new_tokens=n, do_sample=False, pad_token_id=0)
    theirs = g.generate(prompt, max_new_tokens=n, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_unsupported_gpt2_variants_are_refused():
    g = random_gpt2(activation_function="relu")
    with pytest.raises(ValueError, match="activation_function"):
        GPT2MiniForCausalLM.from_gpt2(g)
