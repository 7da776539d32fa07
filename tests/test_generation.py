"""generate(), the KV cache, streaming, and the fast incremental decoder (TokenStream / stream_text)."""

import importlib.util
import itertools
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from transformers import TextIteratorStreamer
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from configuration_gpt2mini import PRESETS
from configuration_gpt2mini import SWITCHES as REGISTRY
from conftest import ROOT, UPDATES, copy_in_place, sharpen, tiny_model
from gpt2mini.generation.sampling import SamplingSettings, filter_logits
from gpt2mini.generation.step import DecodeStep
from gpt2mini.generation.stream import TokenStream, round_robin, stream_text
from gpt2mini.hub.repo import write_config_with_code
from gpt2mini.serving.pool import StreamPool, StreamServer
from modeling_gpt2mini import MLP


def prompt(n, seed=1, vocab=97):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, n), generator=g)


@pytest.mark.parametrize("ablation", [{}, {"use_attention": False}, {"ln_style": "post"}, {"use_residual": False}])
def test_greedy_with_cache_equals_without(ablation):
    m = sharpen(tiny_model(n_positions=128, **ablation))
    x = prompt(6)
    with_cache = m.generate(x, max_new_tokens=64, do_sample=False, use_cache=True)
    without = m.generate(x, max_new_tokens=64, do_sample=False, use_cache=False)
    assert with_cache.shape == (1, 70)
    assert torch.equal(with_cache, without)


def test_batched_left_padded_generation_equals_each_row(tok):
    m = sharpen(tiny_model(tok))
    texts = ["First Citizen:", "吾輩は", "Speak, speak.\nAll:"]
    batch = tok(texts, return_tensors="pt", padding=True)
    assert batch["attention_mask"][1, 0] == 0  # padded on the left
    out = m.generate(**batch, max_new_tokens=30, do_sample=False)
    for i, t in enumerate(texts):
        ids = tok(t, return_tensors="pt")["input_ids"]
        alone = m.generate(ids, max_new_tokens=30, do_sample=False)
        assert out[i, -30:].tolist() == alone[0, -30:].tolist()


def test_generate_past_the_context_is_a_clear_error():
    m = tiny_model()
    with pytest.raises(ValueError, match="exceeds the model's context"):
        m.generate(prompt(10), max_new_tokens=100, do_sample=False)


def test_text_iterator_streamer(tok):
    m = sharpen(tiny_model(tok))
    ids = tok("First", return_tensors="pt")["input_ids"]
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(input_ids=ids, max_new_tokens=40, do_sample=False, streamer=streamer)
    thread = threading.Thread(target=m.generate, kwargs=kwargs)
    thread.start()
    chunks = list(streamer)
    thread.join()
    full = m.generate(ids, max_new_tokens=40, do_sample=False)
    assert "".join(chunks) == tok.decode(full[0, ids.shape[1] :], skip_special_tokens=True)
    assert len(chunks) > 5


@pytest.mark.parametrize("penalty", [1.0, 1.5])
@pytest.mark.parametrize("ablation", [{}, {"use_attention": False}, {"use_position_embeddings": False}])
def test_token_stream_greedy_equals_generate(penalty, ablation):
    m = sharpen(tiny_model(**ablation))
    x = prompt(7)
    ref = m.generate(x, max_new_tokens=57, do_sample=False, repetition_penalty=penalty)[0, 7:].tolist()
    stream = TokenStream(m, x, temperature=0, repetition_penalty=penalty)
    assert stream.take(57)[0] == ref


def test_token_stream_batch_of_unequal_prompts_equals_each_row():
    m = sharpen(tiny_model())
    rows = [prompt(n, seed=n)[0].tolist() for n in (3, 11, 6)]
    together = TokenStream(m, rows, temperature=0).take(40)
    for row, got in zip(rows, together, strict=True):
        assert TokenStream(m, [row], temperature=0).take(40)[0] == got


def test_same_seed_same_tokens_other_seed_other_tokens():
    m = tiny_model()  # flat distributions: sampling differs visibly between seeds
    x = prompt(5)
    a = TokenStream(m, x, temperature=1.0, top_k=50, top_p=0.95, seed=123).take(100)
    b = TokenStream(m, x, temperature=1.0, top_k=50, top_p=0.95, seed=123).take(100)
    c = TokenStream(m, x, temperature=1.0, top_k=50, top_p=0.95, seed=124).take(100)
    assert a == b and a != c
    # a stream's randomness is its own: interleaving with another stream does not change it
    s1 = TokenStream(m, x, temperature=1.0, seed=7)
    s2 = TokenStream(m, x, temperature=1.0, seed=8)
    steps = [(i, int(t[0])) for i, t in _take(round_robin([iter(s1), iter(s2)]), 60)]
    assert [t for i, t in steps if i == 0] == TokenStream(m, x, temperature=1.0, seed=7).take(30)[0]


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_generation_past_the_context_slides_the_window():
    m = sharpen(tiny_model())  # context 64
    stream = TokenStream(m, prompt(10), temperature=0, window=40)
    out = stream.take(300)[0]
    assert len(out) == 300 and len(stream.history[0]) == 310
    assert 40 <= stream.cache.length <= 64
    # after any slide the cached state is exactly a fresh encoding of the last `cache.length` tokens
    fresh = m(torch.tensor([stream.history[0][-stream.cache.length :]])).logits[0, -1]
    torch.testing.assert_close(stream.logits[0], fresh, atol=1e-5, rtol=0)


def test_prompt_longer_than_the_context_keeps_its_end():
    m = sharpen(tiny_model())
    long = prompt(200)
    stream = TokenStream(m, long, temperature=0)
    fresh = m(long[:, -64:]).logits[0, -1]
    torch.testing.assert_close(stream.logits[0], fresh, atol=1e-5, rtol=0)
    assert len(stream.take(100)[0]) == 100


def test_bad_sampling_parameters_are_rejected():
    m = tiny_model()
    for kw, msg in [
        (dict(temperature=-1), "temperature"),
        (dict(top_k=-3), "top_k"),
        (dict(top_p=0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(repetition_penalty=0), "repetition_penalty"),
        (dict(window=64), "window"),
    ]:
        with pytest.raises(ValueError, match=msg):
            TokenStream(m, prompt(3), **kw)
    with pytest.raises(ValueError, match="at least one token"):
        TokenStream(m, [[]])
    for kw, msg in [(dict(top_k=2.5), "top_k"), (dict(top_k=True), "top_k"), (dict(seed=2**64), "seed")]:
        with pytest.raises(ValueError, match=msg):
            TokenStream(m, prompt(3), **kw)
    import numpy as np

    TokenStream(m, prompt(3), top_k=np.int64(5), seed=np.int64(7)).take(2)  # NumPy integers are whole numbers


@pytest.mark.parametrize("temperature", [1e-40, 1e-300, 5e-324, 1e-8])
def test_any_temperature_above_zero_gives_a_distribution_and_tiny_ones_are_greedy(temperature, tok):
    m = sharpen(tiny_model(tok))
    logits = torch.randn(3, 97) * 5
    probs = filter_logits(logits, temperature).softmax(-1)
    assert torch.isfinite(probs).all() and torch.equal(probs.argmax(-1), logits.argmax(-1))
    assert torch.equal(probs.max(-1).values, torch.ones(3))  # all of it on the most likely token
    x = prompt(7, vocab=len(tok))
    greedy = TokenStream(m, x, temperature=0).take(30)
    assert TokenStream(m, x, temperature=temperature, top_k=40, top_p=0.9, seed=3).take(30) == greedy
    assert "\ufffd" not in "".join(stream_text(m, tok, "First", max_new_tokens=20, temperature=temperature))


def test_filters_match_transformers_warpers():
    torch.manual_seed(0)
    logits = torch.randn(4, 97) * 3
    ids = torch.randint(0, 97, (4, 20))
    for temperature, top_k, top_p in [(1.0, 0, 1.0), (0.7, 10, 1.0), (1.3, 0, 0.9), (0.5, 20, 0.8), (1.0, 1, 0.5)]:
        expected = TemperatureLogitsWarper(temperature)(ids, logits.clone()) if temperature != 1.0 else logits
        if top_k:
            expected = TopKLogitsWarper(top_k)(ids, expected)
        if top_p < 1.0:
            expected = TopPLogitsWarper(top_p)(ids, expected)
        ours = filter_logits(logits, temperature, top_k, top_p)
        assert torch.equal(ours.isinf(), expected.isinf())  # the same tokens removed
        torch.testing.assert_close(ours.softmax(-1), expected.softmax(-1), atol=1e-6, rtol=0)  # the same distribution
    seen = torch.zeros(4, 97, dtype=torch.bool).scatter_(1, ids, True)
    from gpt2mini.generation.sampling import apply_repetition_penalty

    torch.testing.assert_close(
        apply_repetition_penalty(logits, seen, 1.3), RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())
    )


def test_stream_text_streams_characters_including_multibyte(tok):
    m = sharpen(tiny_model(tok))
    pieces = list(stream_text(m, tok, "吾輩は", max_new_tokens=50, temperature=0))
    ids = tok.encode("吾輩は", add_special_tokens=False)
    ref = m.generate(torch.tensor([ids]), max_new_tokens=50, do_sample=False)[0, len(ids) :]
    assert "".join(pieces) == tok.decode(ref, skip_special_tokens=True)
    assert all(pieces)


def test_text_decoder_holds_back_split_utf8(tok):
    from gpt2mini.generation.stream import TextDecoder

    emoji = tok.encode("😀", add_special_tokens=False)
    assert len(emoji) == 4  # not in the vocabulary: four byte tokens
    dec = TextDecoder(tok)
    assert [dec.push(t) for t in emoji] == ["", "", "", "😀"]


def test_empty_prompt_starts_from_a_newline(tok):  # "" and None alike
    m = sharpen(tiny_model(tok))
    a = "".join(stream_text(m, tok, "", max_new_tokens=20, temperature=0))
    b = "".join(stream_text(m, tok, "\n", max_new_tokens=20, temperature=0))
    c = "".join(stream_text(m, tok, None, max_new_tokens=20, temperature=0))
    assert a == b == c and len(a) > 0


# ---------------------------------------------------------------------------------------------------------------------
# DecodeStep: the fast single-token path TokenStream takes, held to the model's own forward

# every switch of the registry (ablations and lineage) and every preset: a new switch is tested here without a word
SWITCHES = [{}, *({s.field: s.value} for s in REGISTRY), *(p for p in PRESETS.values() if len(p) > 1)]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "baseline")
def test_decode_step_equals_the_model_for_every_switch(switches):
    """Left-padded rows of unequal length, past the context (two slides): tokens equal, logits equal to 1e-5."""
    m = sharpen(tiny_model(n_layer=3, **switches))
    rows = [prompt(n, seed=n)[0].tolist() for n in (5, 12, 1)]
    fast = TokenStream(m, rows, temperature=0, window=40)
    slow = TokenStream(m, rows, temperature=0, window=40, fast=False)
    assert fast.fast is not None and fast.fast.usable() and slow.fast is None
    for _ in range(150):  # context 64, window 40: the window slides several times
        assert torch.equal(fast.step(), slow.step())
        torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=0)


def test_decode_step_equals_a_fresh_forward_of_the_history():
    m = sharpen(tiny_model())
    stream = TokenStream(m, prompt(9), temperature=0)
    stream.take(30)
    fresh = m(torch.tensor(stream.history)).logits[:, -1]
    torch.testing.assert_close(stream.logits, fresh, atol=1e-5, rtol=0)


def test_decode_step_gives_way_to_hooks_and_training_mode():
    """Hooks (knockouts, probes) run only on the module path: the stream must take it while any hook is set."""
    from gpt2mini.probes import knockout

    m = tiny_model()
    with torch.no_grad():  # make every part count, so that a knockout changes the logits
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = prompt(6)

    def logits_after(stream, n=20):
        stream.take(n)
        return stream.logits

    intact = logits_after(TokenStream(m, x, temperature=0))
    with knockout(m, heads=[(0, 0), (1, 1)], mlp=[0]):
        stream = TokenStream(m, x, temperature=0)
        assert not stream.fast.usable()
        knocked = logits_after(stream)
        torch.testing.assert_close(knocked, logits_after(TokenStream(m, x, temperature=0, fast=False)))
    assert not torch.allclose(knocked, intact, atol=1e-3)
    assert stream.fast.usable()  # hooks removed on exit
    with knockout(m, residual=[1]):  # a switch, not a hook: the fast path reads it
        fast = TokenStream(m, x, temperature=0)
        assert fast.fast.usable()
        no_residual = logits_after(fast)
        torch.testing.assert_close(no_residual, logits_after(TokenStream(m, x, temperature=0, fast=False)))
    assert not torch.allclose(no_residual, intact, atol=1e-3)
    m.train()
    assert not TokenStream(m, x, temperature=0).fast.usable()


def test_the_scripted_step_equals_the_python_step():
    """decode_step runs compiled by TorchScript where torch has it; as plain Python it must compute the same."""
    from gpt2mini.generation.step import DecodeStep, compiled_decode_step, decode_step

    assert isinstance(compiled_decode_step(), torch.jit.ScriptFunction)  # this torch: the fast path is the compiled one
    for m in (
        sharpen(tiny_model(n_layer=3, **fields))
        for fields in (PRESETS["gpt2"], PRESETS["llama"], PRESETS["transformer-2017"])
    ):
        steps_equal(m, DecodeStep(m).parts, decode_step, compiled_decode_step())


def steps_equal(m, parts, *fns):
    from gpt2mini.generation.step import KVBuffer, OwnSlots

    for rows in (2, 1):  # one row is carried as a vector, several as a matrix
        outs = []
        for fn, own_slots in itertools.product(fns, (False, True)):
            cache = KVBuffer(m.config, rows, "cpu", torch.float32)
            tokens, positions, logits = torch.tensor([3, 7][:rows]), torch.zeros(rows, dtype=torch.long), []
            with torch.inference_mode():
                for _ in range(20):
                    own = None  # every row writes slot cache.length; then the same through each row's own slot
                    if own_slots:
                        heads = m.config.n_head * rows
                        own = OwnSlots(torch.arange(heads), torch.full((heads,), cache.length), cache.length)
                    out = fn(parts, [True] * 3, tokens, positions, cache.views, cache.length, own)
                    cache.length += 1
                    positions = positions + 1
                    tokens = out.argmax(-1)
                    logits.append(out)
            outs.append(torch.stack(logits))
        for out in outs[1:]:
            torch.testing.assert_close(outs[0], out, atol=1e-6, rtol=0)


@pytest.mark.parametrize("update", UPDATES.values(), ids=UPDATES.keys())
def test_the_fast_decoder_never_decodes_with_old_weights(update, tmp_path):
    m = sharpen(tiny_model())
    x = prompt(7)
    TokenStream(m, x, temperature=0).take(5)  # streamed before the update (the old cache lived across streams)
    m.train()
    update(m)
    m.eval()
    fast, slow = TokenStream(m, x, temperature=0), TokenStream(m, x, temperature=0, fast=False)
    fast.take(8), slow.take(8)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=0)
    # and a fresh model loaded from the updated weights decodes the same
    m.save_pretrained(tmp_path)
    fresh = type(m).from_pretrained(tmp_path, dtype=m.dtype).eval()
    again = TokenStream(fresh, x, temperature=0)
    again.take(8)
    torch.testing.assert_close(again.logits, fast.logits, atol=1e-5, rtol=0)
    assert again.history == fast.history


@pytest.mark.parametrize("update", UPDATES.values(), ids=UPDATES.keys())
def test_a_pool_kept_for_the_next_request_serves_the_model_as_it_is_then(update):
    """A server keeps an emptied pool (buffer, DecodeStep) for its model's next request: after each kind of change
    (the model registered again, as the rules ask of all but in-place updates: serving/registry.py) the next request
    equals the modules' own greedy decoding of the changed model."""
    m = sharpen(tiny_model())
    server, x = StreamServer(window=40), prompt(7)[0].tolist()
    server.register("m", m)
    greedy = SamplingSettings(temperature=0, max_new_tokens=12)
    modules = TokenStream(m, [x], temperature=0, fast=False).take(12)[0]
    assert [t for t, _, _ in server.stream("m", x, greedy)] == modules
    m.train()
    update(m)
    m.eval()
    server.register("m", m)
    want = TokenStream(m, [x], temperature=0, fast=False).take(12)[0]
    assert [t for t, _, _ in server.stream("m", x, greedy)] == want


def test_an_update_in_the_middle_of_a_stream_reaches_its_next_step():
    m = sharpen(tiny_model())
    stream = TokenStream(m, prompt(7), temperature=0)
    stream.take(3)
    copy_in_place(m)
    with torch.inference_mode():
        slot = stream.cache.length
        token, position = torch.tensor([stream.history[0][-1]]), stream.positions.clone()
        fast = stream.fast(token, position, stream.cache)
        stream.cache.length = slot  # the same slot again, through the modules
        slow = m(token[:, None], cache=stream.cache, use_cache=True, position_ids=position[:, None]).logits[:, -1]
    torch.testing.assert_close(fast, slow.float(), atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_fast_decoder_follows_the_model_to_another_device():
    m = sharpen(tiny_model())
    TokenStream(m, prompt(7), temperature=0).take(3)
    m.to("cuda")
    fast, slow = TokenStream(m, prompt(7), temperature=0), TokenStream(m, prompt(7), temperature=0, fast=False)
    fast.take(8), slow.take(8)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-4, rtol=0)


def test_decode_step_after_a_slide_with_a_row_still_shorter_than_the_window():
    """A padded row that is shorter than the window when the cache fills is re-encoded with its padding."""
    m = sharpen(tiny_model())  # context 64
    rows = [prompt(1, seed=1)[0].tolist(), prompt(60, seed=2)[0].tolist()]
    fast = TokenStream(m, rows, temperature=0, window=40)
    slow = TokenStream(m, rows, temperature=0, window=40, fast=False)
    for _ in range(30):  # the first slide comes after 4 steps, while row 0 holds 5 tokens
        assert torch.equal(fast.step(), slow.step())
        torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=0)


def test_with_rotary_positions_a_slide_keeps_the_cache_instead_of_re_encoding(monkeypatch):
    m = sharpen(tiny_model(n_layer=2, **PRESETS["llama"]))
    stream = TokenStream(m, prompt(10), temperature=0, window=40)
    encodes = []
    original = TokenStream._encode
    monkeypatch.setattr(TokenStream, "_encode", lambda self, rows: encodes.append(len(rows)) or original(self, rows))
    stream.take(200)  # context 64: several slides
    assert encodes == [] and stream.cache.length <= m.config.n_positions
    assert int(stream.positions[0]) == 10 + 200  # positions go on counting: only distances matter to RoPE
    learned = TokenStream(sharpen(tiny_model(n_layer=2)), prompt(10), temperature=0, window=40)
    monkeypatch.setattr(TokenStream, "_encode", lambda self, rows: encodes.append(len(rows)) or original(self, rows))
    learned.take(200)
    assert len(encodes) >= 3  # a learned position table re-encodes its window at every slide


# ---------------------------------------------------------------------------------------------------------------------
# What the step computes is read off the modules, and it computes only modules it recognises for what they are


def held_to_the_modules(m, x, n=20):
    """A stream of `m` that may take the fast step, checked against the modules' own: the fast stream."""
    fast, slow = TokenStream(m, x, temperature=0), TokenStream(m, x, temperature=0, fast=False)
    for _ in range(n):
        assert torch.equal(fast.step(), slow.step())
        torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=0)
    return fast


def exact_gelu(m):  # the config says tanh GELU; the module is what counts
    m.transformer.h[0].mlp.act = torch.nn.GELU()


def biased_head(m):
    m.lm_head.bias = torch.nn.Parameter(torch.randn(m.config.vocab_size))


def plain_norm(m):  # no weight, no bias, another eps
    m.transformer.h[1].ln_2 = torch.nn.LayerNorm(m.config.n_embd, eps=0.1, elementwise_affine=False)


@pytest.mark.parametrize("change", [exact_gelu, biased_head, plain_norm], ids=lambda f: f.__name__)
def test_the_step_computes_the_modules_the_model_holds(change):
    m = sharpen(tiny_model())
    stream = TokenStream(m, prompt(6), temperature=0)  # made before the change: it must look again
    change(m)
    assert stream.fast.usable()
    held_to_the_modules(m, prompt(6))


def wider_eps(m):  # a norm's setting edited in place: the same module, another computation
    m.transformer.h[0].ln_1.eps = 5.0


def scaled_embeddings(m):  # a switch of the config, which the forward reads
    m.config.scale_embeddings = True


def post_ln_flags(m):  # a block's switches
    m.transformer.h[1].pre_ln, m.transformer.h[1].post_ln = False, True


def approximate_gelu_off(m):  # the activation module's own setting
    m.transformer.h[0].mlp.act.approximate = "none"


@pytest.mark.parametrize(
    "change", [wider_eps, scaled_embeddings, post_ln_flags, approximate_gelu_off], ids=lambda f: f.__name__
)
def test_a_setting_changed_in_place_reaches_the_next_step(change):
    """What the step read of the model besides its tensors (`looked_at`) is compared at every step: a stream that
    has stepped goes on from the model as it is, held to the modules, and the change changed the logits (GELU's
    approximation by about 1e-5 only)."""
    m = sharpen(tiny_model())
    stream = TokenStream(m, prompt(6), temperature=0)
    stream.step()
    change(m)
    assert stream.fast.usable()  # looked at again, and still computable
    changed = held_to_the_modules(m, prompt(6))
    assert not torch.equal(changed.logits, held_to_the_modules(sharpen(tiny_model()), prompt(6)).logits)


def test_what_the_step_cannot_follow_sends_the_stream_to_the_modules():
    """One submodule in training mode (its dropout), a module given its own forward, a class patched, a class that
    names the project's module without being in it: each is stepped as its modules."""
    m = sharpen(tiny_model(attn_pdrop=0.5))
    step = DecodeStep(m)
    assert step.usable()
    m.transformer.h[0].attn.train()
    assert not step.usable()
    m.eval()
    assert step.usable()
    mlp = m.transformer.h[0].mlp
    mlp.forward = lambda x: torch.zeros_like(x)
    assert not step.usable()
    del mlp.forward
    assert step.usable()
    original = MLP.forward
    try:
        MLP.forward = lambda self, x: torch.zeros_like(x)
        assert not DecodeStep(m).usable()
    finally:
        MLP.forward = original
    assert DecodeStep(m).usable()
    spoof = type("MLP", (MLP,), {"forward": lambda self, x: torch.zeros_like(x), "__module__": MLP.__module__})
    spoof.__qualname__ = "MLP"
    mlp.__class__ = spoof
    assert not DecodeStep(m).usable()


class Quantized(torch.nn.Linear):  # a subclass of a module the step knows may compute anything
    def forward(self, x):
        return super().forward(x).round()


def subclassed_linear(m):
    old = m.transformer.h[0].attn.c_attn
    m.transformer.h[0].attn.c_attn = Quantized(old.in_features, old.out_features)


def linear_as_a_norm(m):  # a known kind, where the step does not compute it
    m.transformer.h[0].ln_1 = torch.nn.Linear(m.config.n_embd, m.config.n_embd)


def renormalised_embedding(m):
    wte = torch.nn.Embedding(m.config.vocab_size, m.config.n_embd, max_norm=1.0)
    m.transformer.wte = wte


def tanh_activation(m):
    m.transformer.h[1].mlp.act = torch.nn.Tanh()


def block_of_another_module(m):  # the project's name and code, defined by another module: not vouched for
    from modeling_gpt2mini import Block as ProjectBlock

    block = type("Block", (ProjectBlock,), {"__module__": __name__, "__qualname__": "Block"})(m.config, 0)
    block.load_state_dict(m.transformer.h[0].state_dict())
    m.transformer.h[0] = block.eval()


REFUSED = [subclassed_linear, linear_as_a_norm, renormalised_embedding, tanh_activation, block_of_another_module]


@pytest.mark.parametrize("change", REFUSED, ids=lambda f: f.__name__)
def test_a_module_the_step_does_not_compute_sends_the_stream_to_the_modules(change):
    m = sharpen(tiny_model())
    stream = TokenStream(m, prompt(6), temperature=0)
    assert stream.fast.usable()
    change(m)
    assert not stream.fast.usable()
    with pytest.raises(RuntimeError, match="cannot compute"):  # never a step with what it saw before
        stream.fast(torch.tensor([1]), torch.tensor([stream.cache.length]), stream.cache)
    assert not held_to_the_modules(m, prompt(6)).fast.usable()


def copy_of_the_model_file(folder, name, edit=None):
    """modeling_gpt2mini.py as another module (`name`), as remote code is imported: verbatim, or with `edit`."""
    source = (ROOT / "modeling_gpt2mini.py").read_text(encoding="utf-8")
    path = folder / f"{name}.py"
    path.write_text(edit(source) if edit else source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


RESIDUAL = "x = x + h if self.use_residual else h"


def doubled_attention(source):  # a changed constant in Block.forward: the attention's output counts twice
    assert RESIDUAL in source
    return source.replace(RESIDUAL, RESIDUAL.replace("x + h", "x + 2 * h"), 1)


def test_a_copy_of_the_model_file_is_recognised_and_an_edited_one_is_not(tmp_path):
    m = sharpen(tiny_model())
    copy = copy_of_the_model_file(tmp_path, "copied_modeling_gpt2mini")
    edited = copy_of_the_model_file(tmp_path, "edited_modeling_gpt2mini", doubled_attention)
    models = {}
    for name, module in (("copy", copy), ("edited", edited)):
        models[name] = module.GPT2MiniForCausalLM(m.config).eval()
        models[name].load_state_dict(m.state_dict())
        assert type(models[name].transformer.h[0]).__module__ == module.__name__
    assert held_to_the_modules(models["copy"], prompt(6)).fast.usable()
    edited_stream = held_to_the_modules(models["edited"], prompt(6))
    assert not edited_stream.fast.usable()  # stepped as its modules, which compute something else than ours
    assert not torch.allclose(edited_stream.logits, held_to_the_modules(m, prompt(6)).logits, atol=1e-3)


FRESH_REMOTE = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)
models = {name: AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
          for name, folder in (("copy", sys.argv[1]), ("edited", sys.argv[2]))}
project = ("gpt2mini", "modeling_gpt2mini", "configuration_gpt2mini")
before = sorted(n for n in sys.modules if n.split(".")[0] in project)
from gpt2mini.generation.step import DecodeStep
from gpt2mini.generation.stream import TokenStream

out = {"imported before": before}
for name, model in models.items():
    fast = TokenStream(model, [[1, 2, 3, 4, 5]], temperature=0)
    slow = TokenStream(model, [[1, 2, 3, 4, 5]], temperature=0, fast=False)
    out[name] = {"module": type(model).__module__, "usable": DecodeStep(model).usable(), "fast": fast.take(40),
                 "slow": slow.take(40), "took fast": fast.fast.usable(), "logits": fast.logits.tolist()}
print(json.dumps(out))
"""


def remote_code_folder(m, folder, edit=None):
    """A model folder as a Hub user gets it: the weights, and the config's auto_map and this project's two model
    files as publishing adds them (gpt2mini.hub.repo), the modeling file then edited by `edit`."""
    m.save_pretrained(folder)
    write_config_with_code(folder, folder)
    if edit:
        (folder / "modeling_gpt2mini.py").write_text(edit((folder / "modeling_gpt2mini.py").read_text()))
    return folder


def test_a_model_loaded_as_remote_code_before_the_project_takes_the_fast_step(tmp_path):
    """`from_pretrained(folder, trust_remote_code=True)` in a fresh process, before any project module is imported:
    the folder's own copy of the classes. This project's code takes the fast step (it is ours); an edited copy is
    stepped as its modules."""
    m = sharpen(tiny_model())
    copy = remote_code_folder(m, tmp_path / "copy")
    edited = remote_code_folder(m, tmp_path / "edited", doubled_attention)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-c", FRESH_REMOTE, str(copy), str(edited)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["imported before"] == []
    for name in ("copy", "edited"):
        assert out[name]["module"].startswith("transformers_modules.")  # the folder's classes, not the project's
        assert out[name]["fast"] == out[name]["slow"]
    assert out["copy"]["usable"] and out["copy"]["took fast"]
    assert not out["edited"]["usable"] and not out["edited"]["took fast"]
    ours = held_to_the_modules(m, [[1, 2, 3, 4, 5]], 40)  # the project's classes, here
    assert [ours.history[0][5:]] == out["copy"]["fast"]
    assert not torch.allclose(torch.tensor(out["edited"]["logits"]), ours.logits, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# StreamPool and StreamServer: many requests' streams of one model in one batched step, each held to a TokenStream

MIXED = [  # (prompt length, settings, joins at step): greedy, filtered, penalised; one prompt past the context
    (5, SamplingSettings(temperature=0, max_new_tokens=150), 0),
    (12, SamplingSettings(temperature=0.9, top_k=20, seed=3, max_new_tokens=120), 7),
    (70, SamplingSettings(temperature=1.2, top_p=0.9, repetition_penalty=1.3, seed=4, max_new_tokens=100), 30),
    (1, SamplingSettings(temperature=0.7, seed=5, max_new_tokens=40), 31),
]


def pooled(pool, specs, steps=220):
    """Run `specs` through `pool`, each joining at its step; every row's tokens, and its logits after each step."""
    rows, tokens, logits = {}, {}, {}
    for t in range(steps):
        for k, (n, settings, at) in enumerate(specs):
            if at == t:
                rows[k] = pool.join(prompt(n, seed=k)[0].tolist(), settings)
                tokens[k], logits[k] = [], []
        for row, token, _ in pool.step():
            k = next(k for k, r in rows.items() if r is row)
            tokens[k].append(token)
            logits[k].append(row.logits.clone() if row.left else None)  # a row that has left has no next logits
    return tokens, logits


def alone(m, specs, k, window=40):
    n, settings, _ = specs[k]
    stream = TokenStream(m, prompt(n, seed=k), window=window, **settings.stream_options())
    tokens, logits = [], []
    for _ in range(settings.max_new_tokens):
        tokens.append(int(stream.step()[0]))
        logits.append(stream.logits.clone())
    return tokens, logits


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "baseline")
def test_every_pooled_row_equals_its_own_token_stream_for_every_switch(switches):
    """Rows joining at different steps, each with its own settings and seed, past the context (slides while others
    do not): each row's tokens equal those of a TokenStream of its own, and its logits to 1e-5."""
    m = sharpen(tiny_model(n_layer=3, **switches))
    pool = StreamPool(m, window=40)
    tokens, logits = pooled(pool, MIXED)
    for k, (_, settings, _) in enumerate(MIXED):
        want, want_logits = alone(m, MIXED, k)
        assert tokens[k] == want and len(want) == settings.max_new_tokens
        for got, ref in zip(logits[k][:-1], want_logits, strict=False):
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    assert pool.rows == [] and pool.cache is not None  # every row has left; the buffer is kept for the next
    pool.free()
    assert pool.cache is None and len(pool.logits) == 0


def test_same_seed_same_text_whoever_else_is_served():
    m = sharpen(tiny_model())
    settings = SamplingSettings(temperature=1.0, top_k=30, seed=11, max_new_tokens=150)
    by_itself, _ = pooled(StreamPool(m), [(9, settings, 0)])
    crowd = [(9, settings, 0)] + [(3 + i, SamplingSettings(temperature=1.3, seed=i), i) for i in range(1, 8)]
    crowded, _ = pooled(StreamPool(m), crowd)
    assert crowded[0] == by_itself[0]
    assert len({tuple(t) for t in crowded.values()}) == len(crowd)  # the others wrote other texts


def test_a_pool_with_hooks_steps_the_modules_and_follows_updates():
    """Hooks make DecodeStep step aside: each row goes through the model's forward, and still equals its stream.
    A weight updated between steps reaches the next one (the step after it equals a fresh forward)."""
    m = sharpen(tiny_model())
    handle = m.transformer.h[0].register_forward_hook(lambda *a: None)
    pool = StreamPool(m, window=40)
    tokens, _ = pooled(pool, MIXED[:2])
    assert not pool.fast.usable()
    assert tokens[0] == alone(m, MIXED, 0)[0] and tokens[1] == alone(m, MIXED, 1)[0]
    handle.remove()
    row = pool.join([1, 2, 3], SamplingSettings(temperature=0, max_new_tokens=5))
    pool.step()
    with torch.no_grad():
        m.transformer.ln_f.weight.mul_(-2)  # after the blocks: the cache stays what it was, every logit changes
    pool.step()
    fresh = m(torch.tensor([row.history])).logits[:, -1]
    torch.testing.assert_close(row.logits, fresh, atol=1e-5, rtol=0)


def test_a_row_that_leaves_early_frees_its_place_and_the_buffer_grows_and_shrinks():
    m = sharpen(tiny_model())
    pool = StreamPool(m)
    long = SamplingSettings(temperature=0, max_new_tokens=100)
    rows = [pool.join(prompt(4, seed=i)[0].tolist(), long) for i in range(5)]
    assert pool.cache.qkv[0].shape[0] == 8  # 1, 2, 4, then 8 rows
    for _ in range(10):
        pool.step()
    pool.leave(rows[1])  # the last row moves into its place
    assert [r.index for r in pool.rows] == [0, 1, 2, 3] and rows[4].index == 1
    for _ in range(90):
        pool.step()
    for i in (0, 2, 3, 4):
        assert rows[i].history[4:] == TokenStream(m, [rows[i].history[:4]], temperature=0).take(100)[0]
    assert pool.rows == [] and pool.cache.qkv[0].shape[0] == 8  # kept for the rows that come next
    again = pool.join(prompt(4, seed=9)[0].tolist(), SamplingSettings(temperature=0, max_new_tokens=20))
    pool.reserve(11)  # room for more joins at once: doubled until it holds them
    assert pool.cache.qkv[0].shape[0] == 16 and again.index == 0
    with pytest.raises(RuntimeError, match="1 rows keeps its buffer"):
        pool.free()
    for _ in range(20):
        pool.step()
    assert again.history[4:] == TokenStream(m, [again.history[:4]], temperature=0).take(20)[0]
    pool.free()
    assert pool.cache is None


def test_the_server_serves_threads_at_once_each_as_its_own_stream():
    m = sharpen(tiny_model())
    server = StreamServer(window=40, keep_s=0.5)
    server.register("m", m)
    specs = [(4 + i, SamplingSettings(temperature=0.8, seed=i, max_new_tokens=60 + 10 * i), 0) for i in range(6)]
    got = {}

    def read(k):
        n, settings, _ = specs[k]
        got[k] = [token for token, _, _ in server.stream("m", prompt(n, seed=k)[0].tolist(), settings)]

    threads = [threading.Thread(target=read, args=(k,)) for k in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(got[k] == alone(m, specs, k)[0] for k in range(len(specs)))
    deadline = time.monotonic() + 10
    while server.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.busy() == 0
    pool = server.pools[id(m)]  # kept keep_s seconds for the next requests, buffer and all
    assert got[0] == [t for t, _, _ in server.stream("m", prompt(4, seed=0)[0].tolist(), specs[0][1])]
    assert server.pools[id(m)] is pool
    server.unregister("m")
    while server.pools and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.pools == {}  # then dropped, with its model (unregistered): nothing left held


def test_a_reader_that_stops_takes_its_request_out():
    m = sharpen(tiny_model())
    server = StreamServer()
    server.register("m", m)
    stream = server.stream("m", [1, 2], SamplingSettings(temperature=0, max_new_tokens=100_000))
    next(stream)
    assert server.busy() == 1
    stream.close()
    deadline = time.monotonic() + 10
    while server.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.busy() == 0


def test_an_error_in_a_step_reaches_every_reader_of_that_model(monkeypatch):
    m = sharpen(tiny_model())
    server = StreamServer()
    server.register("m", m)
    with pytest.raises(ValueError, match="token ids must be from 0 to"):
        list(server.stream("m", [10_000], SamplingSettings(max_new_tokens=3)))  # refused where it is read
    streams = [server.stream("m", [1, 2], SamplingSettings(temperature=0, max_new_tokens=1000)) for _ in range(2)]
    for s in streams:
        next(s)

    def broken(*args, **kwargs):
        raise RuntimeError("the step broke")

    monkeypatch.setattr(StreamPool, "_advance", broken)
    for s in streams:
        with pytest.raises(RuntimeError, match="the step broke"):
            for _ in s:
                pass


def test_a_pooled_row_reports_how_likely_each_token_was():
    m = sharpen(tiny_model())
    pool = StreamPool(m)
    asks = pool.join([1, 2, 3], SamplingSettings(temperature=0.9, seed=1, max_new_tokens=20), top=3)
    quiet = pool.join([4, 5], SamplingSettings(temperature=0, max_new_tokens=20))
    for _ in range(20):
        before = {asks: asks.logits.clone(), quiet: quiet.logits.clone()}
        for row, token, likely in pool.step():
            if row is quiet:
                assert likely is None
                continue
            logp = torch.log_softmax(before[row][0], dim=-1)
            best = logp.topk(3)
            assert likely[0] == pytest.approx(float(logp[token]), abs=1e-6)
            assert likely[1] == best.indices.tolist() and likely[2] == pytest.approx(best.values.tolist(), abs=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_pool_on_cuda_serves_each_row_as_its_own_stream_would():
    """On a GPU: greedy rows equal their own TokenStreams token for token (sampled rows draw from CUDA generators,
    which a TokenStream on the same device draws alike)."""
    m = sharpen(tiny_model(n_layer=3)).to("cuda")
    pool = StreamPool(m, window=40)
    specs = [
        (n, SamplingSettings(temperature=t, seed=k, max_new_tokens=90), k)
        for k, (n, t) in enumerate([(5, 0), (12, 0), (70, 0.9), (3, 1.1)])
    ]
    tokens, _ = pooled(pool, specs)
    for k in range(len(specs)):
        n, settings, _ = specs[k]
        stream = TokenStream(m, prompt(n, seed=k).cuda(), window=40, **settings.stream_options())
        assert tokens[k] == stream.take(settings.max_new_tokens)[0]


def test_a_prompt_that_fails_to_go_in_leaves_nothing_behind(monkeypatch):
    m = sharpen(tiny_model())
    pool = StreamPool(m)
    kept = pool.join([1, 2], SamplingSettings(temperature=0, max_new_tokens=30))
    real = StreamPool._forward

    def broken(*args, **kwargs):
        raise RuntimeError("no room")

    monkeypatch.setattr(StreamPool, "_forward", broken)
    with pytest.raises(RuntimeError, match="no room"):
        pool.join([3, 4, 5], SamplingSettings(temperature=0, max_new_tokens=30))
    monkeypatch.setattr(StreamPool, "_forward", real)
    assert pool.rows == [kept] and kept.index == 0
    tokens = [t for _ in range(30) for r, t, _ in pool.step() if r is kept]
    assert tokens == TokenStream(m, [[1, 2]], temperature=0).take(30)[0]
    server = StreamServer()
    server.register("m", m)
    with pytest.raises(ValueError):
        list(server.stream("m", [10_000], SamplingSettings(max_new_tokens=3)))
    assert server.pools == {}  # a refused request leaves no pool holding its model
