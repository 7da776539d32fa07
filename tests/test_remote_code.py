"""A model folder holds no code; the repository that publishing assembles from it does (the two model files and an
`auto_map`). In a fresh process that cannot import this project, the assembled repository loads with the Auto
classes and `trust_remote_code=True` (identical logits, `generate`, the text-generation pipeline) and is refused
without it; the folder itself is refused with transformers' message about an unknown model type until
`import gpt2mini` registers the classes, and then loads without `trust_remote_code`."""

import json
import os
import subprocess
import sys

import torch

from conftest import ROOT, sharpen, tiny_model
from gpt2mini.hub.repo import assemble_model

TEXT = "First Citizen:\n吾輩は"

FRESH_REPO = r"""
import json, sys
import torch
try:
    import modeling_gpt2mini  # noqa: F401
    importable = True
except ImportError:
    importable = False
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

repo, text = sys.argv[1], sys.argv[3]
try:
    AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=False)
    refused = False
except ValueError:
    refused = True
model = AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True)
tok = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
torch.save(model(ids).logits, sys.argv[2])  # a plain tensor, read back with weights_only=True
generated = tok.decode(model.generate(torch.tensor([tok.encode("First")]), max_new_tokens=20, do_sample=False)[0])
gen = pipeline("text-generation", model=model, tokenizer=tok)
greedy = gen("First", max_new_tokens=20, do_sample=False)[0]["generated_text"]
sampled = pipeline("text-generation", model=repo, trust_remote_code=True)(
    ["First", "吾輩は"], max_new_tokens=12, do_sample=True, batch_size=2)
print(json.dumps({"importable": importable, "class": type(model).__name__, "module": type(model).__module__,
                  "training": model.training, "generated": generated, "greedy": greedy,
                  "sampled": [s[0]["generated_text"] for s in sampled], "refused": refused}))
"""


FRESH_FOLDER = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

folder, root, out, text = sys.argv[1:]
said = {}
for trust in (False, True):  # a folder with no auto_map has no remote code to trust
    try:
        AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=trust)
        said[str(trust)] = None
    except ValueError as e:
        said[str(trust)] = " ".join(str(e).split())
tok = AutoTokenizer.from_pretrained(folder)  # the tokenizer needs no model code
sys.path.insert(0, root)
import gpt2mini  # noqa: E402,F401  registers the classes
model = AutoModelForCausalLM.from_pretrained(folder)
torch.save(model(torch.tensor([tok.encode(text, add_special_tokens=False)])).logits, out)
greedy = pipeline("text-generation", model=folder)("First", max_new_tokens=20, do_sample=False)[0]["generated_text"]
print(json.dumps({"said": said, "module": type(model).__module__, "greedy": greedy}))
"""


def fresh(tmp_path, script: str, *args: str) -> dict:
    """Run `script` in a new Python process outside the project (no PYTHONPATH, another folder, offline)."""
    work = tmp_path / "elsewhere"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def saved_folder(tmp_path, tok):
    folder = tmp_path / "model"
    model = sharpen(tiny_model(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    assert not list(folder.glob("*.py")) and "auto_map" not in json.loads((folder / "config.json").read_text())
    return model, folder


def test_a_fresh_process_loads_the_assembled_repository_with_remote_code(tmp_path, tok):
    model, folder = saved_folder(tmp_path, tok)
    repo = assemble_model(folder, tmp_path / "repo", "someone/gpt2mini-tiny")
    result = fresh(tmp_path, FRESH_REPO, str(repo), str(tmp_path / "logits.pt"), TEXT)
    assert result["importable"] is False  # the project's files were not on the path
    assert result["class"] == "GPT2MiniForCausalLM" and result["training"] is False
    assert result["module"].startswith("transformers_modules.")  # the repository's own copy of the model file ran
    assert result["refused"] is True  # remote code needs the user's consent

    ids = torch.tensor([tok.encode(TEXT, add_special_tokens=False)])
    theirs = torch.load(tmp_path / "logits.pt", weights_only=True)
    assert torch.equal(theirs, model(ids).logits)

    ref = tok.decode(model.generate(torch.tensor([tok.encode("First")]), max_new_tokens=20, do_sample=False)[0])
    assert result["generated"] == result["greedy"] == ref
    assert result["sampled"][0].startswith("First") and result["sampled"][1].startswith("吾輩は")
    assert all(len(s) > len("吾輩は") for s in result["sampled"])


def test_a_model_folder_needs_the_package_and_nothing_else(tmp_path, tok):
    model, folder = saved_folder(tmp_path, tok)
    result = fresh(tmp_path, FRESH_FOLDER, str(folder), str(ROOT), str(tmp_path / "logits.pt"), TEXT)
    for trust in ("False", "True"):  # transformers' own message: it knows no model type gpt2mini
        assert "model type `gpt2mini` but Transformers does not recognize this architecture" in result["said"][trust]
    assert result["module"] == "modeling_gpt2mini"  # after `import gpt2mini`: this project's class
    ids = torch.tensor([tok.encode(TEXT, add_special_tokens=False)])
    assert torch.equal(torch.load(tmp_path / "logits.pt", weights_only=True), model(ids).logits)
    ref = model.generate(torch.tensor([tok.encode("First")]), max_new_tokens=20, do_sample=False)
    assert result["greedy"] == tok.decode(ref[0])
