"""probes.py: inference-time knockouts each equal the surgery they claim, nothing leaks out of the `with` block; the
probe's attention entropy and residual norms are what they say, computed from the model's own outputs."""

import copy

import pytest
import torch

from configuration_gpt2mini import PRESETS
from conftest import tiny_model
from gpt2mini.generation.stream import TokenStream
from gpt2mini.probes import head_pattern, knockout, probe

IDS = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3]])


@pytest.fixture(params=["gpt2", "llama", "transformer-2017"])  # the lineage's presets: every switch of the lineage
def model(request):
    m = tiny_model(n_layer=2, n_head=2, n_embd=32, **PRESETS[request.param])
    with torch.no_grad():  # a random init has near-zero biases; make them count so the checks below bite
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def logits(m):
    with torch.no_grad():
        return m(IDS).logits


def test_no_knockout_equals_the_intact_model(model):
    before = logits(model)
    with knockout(model):
        assert torch.equal(logits(model), before)


def test_everything_is_restored_afterwards(model):
    before = logits(model)
    with knockout(model, heads=[(0, 0), (1, 1)], attention=[1], mlp=[0], residual=[0, 1]):
        assert not torch.allclose(logits(model), before)
    assert torch.equal(logits(model), before)
    assert all(b.use_residual for b in model.transformer.h)


def test_all_heads_in_all_layers_change_the_output(model):
    before = logits(model)
    with knockout(model, heads=[(layer, h) for layer in range(2) for h in range(2)]):
        after = logits(model)
    assert (after - before).abs().max() > 1e-3


def test_a_head_knockout_equals_zeroing_its_slice_of_the_output_projection(model):
    surgery = copy.deepcopy(model)
    hd = model.config.n_embd // model.config.n_head
    with torch.no_grad():
        surgery.transformer.h[1].attn.c_proj.weight[:, hd : 2 * hd] = 0  # layer 1, head 1 reads nothing
    with knockout(model, heads=[(1, 1)]):
        assert torch.allclose(logits(model), logits(surgery), atol=1e-6)


def test_layer_knockouts_equal_zeroing_the_sub_layer(model):
    surgery = copy.deepcopy(model)
    with torch.no_grad():
        for lin in (surgery.transformer.h[0].attn.c_proj, surgery.transformer.h[1].mlp.c_proj):
            lin.weight.zero_()
            if lin.bias is not None:  # Llama has none
                lin.bias.zero_()
    with knockout(model, attention=[0], mlp=[1]):
        assert torch.allclose(logits(model), logits(surgery), atol=1e-6)


def test_a_residual_knockout_equals_the_config_switch_for_that_layer(model):
    surgery = copy.deepcopy(model)
    surgery.transformer.h[0].use_residual = False
    with knockout(model, residual=[0]):
        assert torch.equal(logits(model), logits(surgery))


def test_the_fast_decoder_sees_the_knockout(model):
    def run():
        stream = TokenStream(model, IDS, temperature=0)
        return stream.take(8), stream.logits

    intact, intact_logits = run()
    with knockout(model, attention=[0, 1], mlp=[0, 1]):
        broken, broken_logits = run()
    assert broken != intact or not torch.allclose(broken_logits, intact_logits, atol=1e-4)
    tokens, logits = run()
    assert tokens == intact and torch.equal(logits, intact_logits)


@pytest.mark.parametrize("kw", [{"heads": [(2, 0)]}, {"heads": [(0, 5)]}, {"mlp": [-1]}, {"residual": [7]}])
def test_parts_the_model_does_not_have_are_refused(model, kw):
    with pytest.raises(ValueError, match="no "):
        with knockout(model, **kw):
            pass


def test_probe_measures_each_layers_attention_entropy_and_residual_norm(model):
    model.train()
    with torch.no_grad():
        out = model(IDS, output_attentions=True, output_hidden_states=True, use_cache=False)
    found = probe(model, IDS)
    assert model.training  # the probe runs in eval mode and puts the mode back
    for layer, weights in enumerate(out.attentions):
        entropy = -(weights * (weights + 1e-12).log()).sum(-1).mean()
        assert found["attn_entropy"][layer] == pytest.approx(entropy.item(), rel=1e-5)
    # a block's output is the next block's input: hidden_states[i + 1] (the last one before ln_f)
    assert found["resid_norm"][0] == pytest.approx(out.hidden_states[1].norm(dim=-1).mean().item(), rel=1e-5)
    uniform = probe(tiny_model(n_layer=2, use_attention=False), IDS)
    assert uniform["attn_entropy"] == [None, None] and len(uniform["resid_norm"]) == 2


def test_input_dependence_is_zero_when_every_position_predicts_the_same_and_kl_otherwise():
    from gpt2mini.probes import input_dependence

    same = torch.randn(1, 1, 7).expand(3, 5, 7)
    assert input_dependence(same) == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(2, 4, 7)
    p = torch.softmax(logits.flatten(0, 1), -1)
    mean = p.mean(0)
    kl = (p * (p.log() - mean.log())).sum(-1).mean()
    assert input_dependence(logits) == pytest.approx(kl.item(), rel=1e-5)
    two = torch.tensor([[[9.0, -9.0], [-9.0, 9.0]]])  # two positions, certain of opposite things: about ln 2
    assert input_dependence(two) == pytest.approx(0.6931, abs=1e-3)
    assert "input_dependence" in probe(tiny_model(n_layer=2), IDS)


def test_grad_norms_split_the_total_into_embeddings_each_block_and_the_head():
    from gpt2mini.probes import grad_norms

    for untied in (False, True):
        m = tiny_model(n_layer=2, tie_word_embeddings=not untied)
        m(IDS, labels=IDS).loss.backward()
        parts = grad_norms(m)
        assert len(parts) == 4 and all(g > 0 for g in parts[:3])
        total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in m.parameters() if p.grad is not None]))
        assert sum(g**2 for g in parts) ** 0.5 == pytest.approx(total.item(), rel=1e-5)
        block0 = sum(p.grad.pow(2).sum() for n, p in m.named_parameters() if n.startswith("transformer.h.0."))
        assert parts[1] == pytest.approx(block0.sqrt().item(), rel=1e-5)


def test_head_patterns_name_what_a_head_mostly_reads():
    t = 16
    causal = torch.tril(torch.ones(t, t))
    uniform = causal / causal.sum(-1, keepdim=True)
    previous = torch.eye(t).roll(-1, dims=1).tril()  # row q reads q - 1
    previous[0, 0] = 1.0
    newline = torch.zeros(t, dtype=torch.bool)
    newline[[4, 9, 15]] = True
    assert head_pattern(previous, newline) == "the previous character"
    assert head_pattern(torch.eye(t), newline) == "its own character"
    first = torch.zeros(t, t)
    first[:, 0] = 1.0
    assert head_pattern(first, newline) == "the first position"
    on_newlines = causal * newline.float() + 1e-3 * causal  # rows before the first newline read only themselves
    on_newlines = on_newlines / on_newlines.sum(-1, keepdim=True)
    assert head_pattern(on_newlines[-3:], newline) == "the newlines"  # the last 3 rows only
    assert head_pattern(uniform, newline) is None and head_pattern(uniform[-2:], newline) is None  # spread out
    assert head_pattern(previous[-3:], torch.zeros(t, dtype=torch.bool)) == "the previous character"


def test_on_a_short_prompt_spread_attention_is_no_pattern():
    for t in range(1, 9):  # even attention over a few positions gives each a large share by chance
        causal = torch.tril(torch.ones(t, t))
        assert head_pattern(causal / causal.sum(-1, keepdim=True), torch.zeros(t, dtype=torch.bool)) is None
