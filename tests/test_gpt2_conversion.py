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


# ---------------------------------------------------------------------------------------------------------------------
# And back: to_gpt2()


@pytest.mark.parametrize("switches", [{}, {"tie_word_embeddings": False}])
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_to_gpt2_gives_a_gpt2_with_the_same_logits_and_greedy_text(switches, impl):
    from conftest import sharpen, tiny_model

    m = sharpen(tiny_model(pad_token_id=0, eos_token_id=1, bos_token_id=1, **switches))
    m.config._attn_implementation = impl
    g = m.to_gpt2()
    assert type(g) is GPT2LMHeadModel and g.config.model_type == "gpt2" and not g.training
    assert g.num_parameters() == m.num_parameters() and g.config._attn_implementation == impl
    x = torch.randint(0, 97, (3, 64))
    with torch.no_grad():
        torch.testing.assert_close(g(x).logits, m(x).logits, atol=2e-5, rtol=0)
    prompt = x[:, :5]
    assert torch.equal(g.generate(prompt, max_new_tokens=59, do_sample=False), m.generate(prompt, max_new_tokens=59))
    back = GPT2MiniForCausalLM.from_gpt2(g)  # and round again
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, m(x).logits, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    "switches, named",
    [
        ({"use_residual": False}, "use_residual=False"),
        ({"use_attention": False}, "use_attention=False"),
        ({"use_mlp": False}, "use_mlp=False"),
        ({"ln_style": "post"}, "ln_style='post'"),
        ({"ln_style": "none"}, "ln_style='none'"),
        ({"use_position_embeddings": False}, "use_position_embeddings=False"),
    ],
)
def test_to_gpt2_refuses_what_gpt2_cannot_express_naming_the_switch(switches, named):
    from conftest import tiny_model

    with pytest.raises(ValueError, match=f"GPT-2 has no equivalent of {named}"):
        tiny_model(**switches).to_gpt2()


FRESH = r"""
import json, sys
import torch
try:
    import modeling_gpt2mini  # noqa: F401
    importable = True
except ImportError:
    importable = False
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

folder = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(folder)  # no trust_remote_code: plain GPT-2
tok = AutoTokenizer.from_pretrained(folder)
ids = torch.tensor([tok.encode("First Citizen:", add_special_tokens=False)])
torch.save(model(ids).logits, sys.argv[2])
text = pipeline("text-generation", model=folder)("First", max_new_tokens=20, do_sample=False)[0]["generated_text"]
print(json.dumps({"importable": importable, "class": type(model).__name__, "text": text}))
"""


def test_a_folder_saved_from_to_gpt2_loads_as_gpt2_in_a_fresh_process(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from conftest import SAMPLE_TEXT, sharpen, tiny_model
    from gpt2mini.tokenizer import build_tokenizer

    tok = build_tokenizer(SAMPLE_TEXT)
    m = sharpen(tiny_model(tok))
    folder = tmp_path / "gpt2"
    m.to_gpt2().save_pretrained(folder)
    tok.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and "auto_map" not in config
    assert not list(folder.glob("*.py"))  # no code travels with it
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    run = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "logits.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["class"] == "GPT2LMHeadModel" and not out["importable"]
    ids = torch.tensor([tok.encode("First Citizen:", add_special_tokens=False)])
    with torch.no_grad():
        theirs = torch.load(tmp_path / "logits.pt", weights_only=True)
        torch.testing.assert_close(theirs, m(ids).logits, atol=2e-5, rtol=0)
    ours = m.generate(torch.tensor([tok.encode("First", add_special_tokens=False)]), max_new_tokens=20)
    assert out["text"] == tok.decode(ours[0], skip_special_tokens=True)
