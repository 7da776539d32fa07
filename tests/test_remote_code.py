"""A saved folder is a complete Hugging Face model: a fresh process that cannot import this project loads it with
the Auto classes (remote code), gets identical logits, and runs the text-generation pipeline."""

import json
import os
import subprocess
import sys

import torch

from conftest import sharpen, tiny_model

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
try:
    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False)
    refused = False
except ValueError:
    refused = True
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
ids = torch.tensor([tok.encode("First Citizen:\n吾輩は", add_special_tokens=False)])
logits = model(ids).logits
torch.save(logits, sys.argv[2])  # a plain tensor, read back with weights_only=True
gen = pipeline("text-generation", model=model, tokenizer=tok)
greedy = gen("First", max_new_tokens=20, do_sample=False)[0]["generated_text"]
sampled = pipeline("text-generation", model=folder, trust_remote_code=True)(
    ["First", "吾輩は"], max_new_tokens=12, do_sample=True, batch_size=2)
print(json.dumps({"importable": importable, "class": type(model).__name__, "training": model.training,
                  "greedy": greedy, "sampled": [s[0]["generated_text"] for s in sampled], "refused": refused}))
"""


def test_fresh_process_loads_the_saved_folder(tmp_path, tok):
    folder = tmp_path / "model"
    model = sharpen(tiny_model(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(folder), str(tmp_path / "logits.pt")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["importable"] is False  # the project's files were not on the path
    assert result["class"] == "GPT2MiniForCausalLM" and result["training"] is False
    assert result["refused"] is True  # remote code needs the user's consent

    ids = torch.tensor([tok.encode("First Citizen:\n吾輩は", add_special_tokens=False)])
    theirs = torch.load(tmp_path / "logits.pt", weights_only=True)
    assert torch.equal(theirs, model(ids).logits)

    ref = model.generate(torch.tensor([tok.encode("First")]), max_new_tokens=20, do_sample=False)
    assert result["greedy"] == tok.decode(ref[0])
    assert result["sampled"][0].startswith("First") and result["sampled"][1].startswith("吾輩は")
    assert all(len(s) > len("吾輩は") for s in result["sampled"])
