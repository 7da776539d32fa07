"""Hub publishing, tested without the Hub: the assembled model repository loads in a fresh process (from its folder
and, placed in the Hub cache layout with HF_HUB_OFFLINE=1, by repo id) with identical logits, and the model card's
snippet runs as written; the card's metadata parses; the upload path sends exactly the --dry-run list to a local
stand-in for the Hub API; the Space builds and serves from its own folder; loading errors are one clear line.

The card's snippet is run verbatim: it names the repo id, and the fresh process resolves that id from a Hub cache
that holds the assembled folder (no text is substituted)."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard, SpaceCard, constants

import publish
import train as T
from configuration_gpt2mini import GPT2MiniConfig, switch_fields, variant_label
from conftest import ROOT, as_saved_with_code
from gpt2mini import checkpoint as C
from gpt2mini.corpus import CORPORA
from gpt2mini.hub.card import broken_variant, switch_cell, switches_changed
from gpt2mini.hub.provenance import public_domain_reason, training_text
from gpt2mini.hub.repo import AUTO_CLASSES, assemble_model, repo_files
from gpt2mini.hub.space import SPACE_COLORS, TORCH_CPU_INDEX, assemble_space, model_folders
from gpt2mini.hub.upload import upload
from gpt2mini.lab.catalog import load_entry
from gpt2mini.training.loop import train
from gpt2mini.training.loop import training_text as trained_text
from gpt2mini.training.settings import TrainSettings

# huggingface_hub's LFS upload hands httpx a file object: a deprecation notice in the HTTP client, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes")

REPO = "someone/gpt2mini-tiny"
RUN = dict(
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    batch_size=4,
    eval_iters=2,
    sample_chars=10,
    progress=False,
    warmup=2,
    steps=20,
    eval_interval=20,
)
EXPECTED = {
    "README.md",
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "configuration_gpt2mini.py",
    "modeling_gpt2mini.py",
    "metrics.jsonl",
    "loss_curve.png",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A folder written by train.py (with trainer_state.json and optimizer.safetensors)."""
    folder = tmp_path_factory.mktemp("publish") / "run"
    train(TrainSettings(**RUN, save=str(folder)))
    return folder


@pytest.fixture(scope="module")
def repo(run):
    return assemble_model(run, run.parent / "repo", REPO)


def place_in_hub_cache(folder: Path, cache: Path, repo_id: str, kind: str = "models") -> Path:
    """The Hub cache layout: <kind>--owner--name/refs/main naming a snapshot folder that holds the files."""
    root = cache / f"{kind}--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    shutil.copytree(folder, root / "snapshots" / revision)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)
    return root / "snapshots" / revision


def card_snippet(readme: str) -> str:
    """The card's Python blocks, as one script: the usage snippet, then (for GPT-2 mini) the LoRA one on its model."""
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    return "\n".join(blocks)


# ---------------------------------------------------------------------------------------------------------------------
# The model repository


AUTO_MAP = {
    "AutoConfig": "configuration_gpt2mini.GPT2MiniConfig",
    "AutoModelForCausalLM": "modeling_gpt2mini.GPT2MiniForCausalLM",
}


def test_the_repository_has_what_from_pretrained_needs_and_no_resume_state(run, repo):
    assert set(repo_files(repo)) == EXPECTED
    assert (run / C.STATE_FILE).exists() and (run / C.OPTIMIZER_FILE).exists()  # left behind on purpose
    for name in EXPECTED - {"README.md", "config.json", *C.CODE_FILES}:
        assert (repo / name).read_bytes() == (run / name).read_bytes(), name
    for name in C.CODE_FILES:  # the model folder has no code: the repository's comes from the repository root
        assert not (run / name).exists() and (repo / name).read_bytes() == (ROOT / name).read_bytes(), name
    config, source = (json.loads((folder / "config.json").read_text()) for folder in (repo, run))
    assert "auto_map" not in source and config == source | {"auto_map": AUTO_MAP}
    assert set(AUTO_CLASSES) == set(AUTO_MAP)
    assert not list(repo.parent.glob(".repo.partial-*"))


def test_a_folder_saved_with_code_publishes_todays_model_files(run, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(run, folder)
    as_saved_with_code(folder)
    for name in C.CODE_FILES:  # copies of another day's model code: the repository must not take them
        (folder / name).write_text("raise RuntimeError('an old copy')\n")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoConfig": "elsewhere.Config"}}))
    out = assemble_model(folder, tmp_path / "repo", REPO)
    assert set(repo_files(out)) == EXPECTED
    for name in C.CODE_FILES:
        assert (out / name).read_bytes() == (ROOT / name).read_bytes(), name
    assert json.loads((out / "config.json").read_text())["auto_map"] == AUTO_MAP


@pytest.mark.parametrize("source", ["run", "models/shakespeare/residual_off", "models/wagahai/baseline"])
def test_model_card_metadata_and_body_come_from_the_folder(source, run, repo, tmp_path):
    folder = run if source == "run" else ROOT / source
    if source == "models/wagahai/baseline":  # a folder with only its training log (no training.json)
        folder = tmp_path / "log_only"
        shutil.copytree(ROOT / source, folder)
        (folder / "training.json").unlink(missing_ok=True)
    out = repo if source == "run" else assemble_model(folder, tmp_path / "repo", REPO)
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    language = "ja" if "wagahai" in source else "en"
    assert data["license"] == "mit" and data["language"] == [language]
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert {"gpt2mini", "character-level"} <= set(data["tags"])

    model, _ = C.load_model_folder(folder)
    cfg = model.config
    text = card.text
    assert f"| layers | {cfg.n_layer} | 12 |" in text and f"| embedding dimension | {cfg.n_embd} | 768 |" in text
    assert f"| parameters | {model.num_parameters():,} | 124M |" in text
    last = [m for m in C.read_metrics(folder) if "val_loss" in m][-1]
    assert f"Validation loss **{last['val_loss']:.3f}** nats per character" in text and f"step {last['step']:,}" in text
    assert "![training and validation loss against steps](loss_curve.png)" in text and (out / "loss_curve.png").exists()
    for switch in switch_fields():
        assert f"| `{switch}` |" in text
    if "residual_off" in source:
        assert "| `use_residual` | **`false`** | `true` |" in text and "deliberately broken" in text
        assert "ablation" in data["tags"]
    else:
        assert "deliberately broken" not in text
    if source == "run":  # a train.py folder records its settings: the recipe and the command that repeats it
        assert "20 optimizer steps" in text and "python train.py --n_layer 2 --n_head 2 --n_embd 32" in text
    elif source == "models/shakespeare/residual_off":  # experiments.ablate ships the trial's settings in training.json
        shipped = json.loads((folder / "training.json").read_text())
        assert f"To train it again with this project: `{shipped['command']}`" in text
        assert f"peak learning rate {shipped['lr']:g}" in text and "--disable_residual 1" in shipped["command"]
    else:  # a folder with only its training log
        assert "not the full settings" in text and f"{last['step']:,} optimizer steps" in text
    assert "## Limitations" in text and "## Training data" in text and "public domain" in text
    assert f'repo_id = "{REPO}"' in card_snippet(card.content)
    assert "{" not in text and "\n\n\n" not in text  # the template, filled


def test_the_card_names_switched_parts_and_rights_from_the_registry_and_provenance():
    cfg = GPT2MiniConfig(ln_style="none", use_residual=False)
    assert switch_cell(cfg, "ln_style", "pre-LN + final LayerNorm") == "**no LayerNorm**"  # its label
    assert switch_cell(cfg, "use_residual", "yes") == "**no**"
    assert switch_cell(cfg, "use_mlp", "yes") == "yes"
    assert broken_variant(cfg).startswith("**This is a deliberately broken variant** (`use_residual=false`, ")
    assert switches_changed(cfg) == "This model has 2 switches set away from GPT-2."
    llama = GPT2MiniConfig(norm_style="rmsnorm", position_style="rope", mlp_style="swiglu", use_bias=False)
    said = broken_variant(llama)  # another generation's design is not a broken part
    assert "broken" not in said and said.startswith("It takes designs from GPT-2's ancestors or descendants (")
    assert switch_cell(llama, "norm_style", "LayerNorm") == "**RMSNorm**"
    reasons = {name: public_domain_reason(spec) for name, spec in CORPORA.items()}  # data/PROVENANCE.md
    assert reasons["wagahai"].startswith("the work was first published in 1905–06 by an author who died in 1916 (")
    assert reasons["aozora"].startswith("the works were first published between 1905 and 1934 by authors who died by")
    assert "died in 1616" in reasons["shakespeare"] and "MIT-licensed" in reasons["shakespeare"]


FRESH = r"""
import json, sys
import torch
try:
    import train  # noqa: F401
    importable = True
except ImportError:
    importable = False
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

folder, repo_id, snippet, out = sys.argv[1:]
text = "First Citizen:\nBefore we proceed"
logits = {}
for key, source in (("folder", folder), ("repo_id", repo_id)):
    model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
    logits[key] = model(torch.tensor([tok.encode(text, add_special_tokens=False)])).logits
torch.save(logits, out)  # plain tensors, read back with weights_only=True
generator = pipeline("text-generation", model=folder, trust_remote_code=True)
greedy = generator("ROMEO:", max_new_tokens=16, do_sample=False)[0]["generated_text"]
print("--- snippet ---")
exec(compile(snippet, "README.md", "exec"), {})  # the model card's snippet, as written
print("--- end ---")
print(json.dumps({"importable": importable, "greedy": greedy, "class": type(model).__name__}))
"""


def test_a_fresh_process_loads_the_repository_from_its_folder_and_by_repo_id_offline(run, repo, tmp_path):
    cache = tmp_path / "hub"
    place_in_hub_cache(repo, cache, REPO)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    snippet = card_snippet((repo / "README.md").read_text())
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(repo), REPO, snippet, str(tmp_path / "logits.pt")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["importable"] is False and result["class"] == "GPT2MiniForCausalLM"

    model, tok = C.load_model_folder(run)  # the source, through this project's own class
    ids = torch.tensor([tok.encode("First Citizen:\nBefore we proceed", add_special_tokens=False)])
    theirs = torch.load(tmp_path / "logits.pt", weights_only=True)
    assert torch.equal(theirs["folder"], model(ids).logits) and torch.equal(theirs["repo_id"], model(ids).logits)
    ref = model.generate(torch.tensor([tok.encode("ROMEO:")]), max_new_tokens=16, do_sample=False)
    assert result["greedy"] == tok.decode(ref[0])
    printed = out.stdout.split("--- snippet ---\n")[1].split("--- end ---")[0]
    assert printed.startswith("ROMEO:") and len(printed.strip()) > len("ROMEO:")


# ---------------------------------------------------------------------------------------------------------------------
# Uploading, against a stand-in for the Hub API


class HubStandIn:
    """The Hub endpoints that huggingface_hub's create_repo / create_branch / create_commit call, on 127.0.0.1.

    With HF_HUB_DISABLE_XET=1, binary files take the LFS "basic" transfer (the real Hub uses Xet storage instead):
        POST /api/repos/create                                 create a repo
        POST /api/{type}s/{owner}/{name}/branch/{branch}       create a branch
        POST /api/validate-yaml                                README.md front matter check (accepted)
        POST /api/{type}s/{owner}/{name}/preupload/{rev}       "lfs" for binary samples (a NUL byte), else "regular"
        POST /[spaces/]{owner}/{name}.git/info/lfs/objects/batch   upload actions pointing at PUT /lfs/{oid}
        PUT  /lfs/{oid}                                        the file's bytes (sha256 checked)
        POST /api/{type}s/{owner}/{name}/commit/{rev}          NDJSON: base64 regular files, LFS files by oid
    """

    def __init__(self):
        self.repos, self.branches, self.commits, self.lfs, self.auth = [], [], [], {}, set()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def reply(self, payload: dict, status: int = 200) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                oid = self.path.rsplit("/", 1)[1]
                data = self.body()
                assert hashlib.sha256(data).hexdigest() == oid
                stand_in.lfs[oid] = data
                self.reply({})

            def do_POST(self):
                data = self.body()
                stand_in.auth.add(self.headers.get("Authorization"))
                base = f"http://127.0.0.1:{self.server.server_port}"
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    req = json.loads(data)
                    stand_in.repos.append(req)
                    prefix = "spaces/" if req.get("type") == "space" else ""
                    return self.reply({"url": f"{base}/{prefix}{req['organization']}/{req['name']}"})
                if path == "/api/validate-yaml":
                    return self.reply({"errors": [], "warnings": []})
                if m := re.fullmatch(r"/api/(\w+)s/([^/]+/[^/]+)/branch/(.+)", path):
                    stand_in.branches.append(m.groups())
                    return self.reply({})
                if m := re.fullmatch(r"/api/(\w+)s/([^/]+/[^/]+)/preupload/(.+)", path):
                    files = json.loads(data)["files"]
                    modes = ["lfs" if b"\0" in base64.b64decode(f["sample"]) else "regular" for f in files]
                    return self.reply(
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": None}
                                for f, mode in zip(files, modes, strict=True)
                            ]
                        }
                    )
                if path.endswith(".git/info/lfs/objects/batch"):
                    objects = json.loads(data)["objects"]
                    return self.reply(
                        {
                            "transfer": "basic",
                            "objects": [
                                {**o, "actions": {"upload": {"href": f"{base}/lfs/{o['oid']}"}}} for o in objects
                            ],
                        }
                    )
                if m := re.fullmatch(r"/api/(\w+)s/([^/]+/[^/]+)/commit/(.+)", path):
                    lines = [json.loads(line) for line in data.splitlines() if line.strip()]
                    commit = {"type": m[1], "repo": m[2], "revision": m[3], "files": {}, "modes": {}}
                    for item in lines:
                        value = item["value"]
                        if item["key"] == "header":
                            commit["summary"] = value["summary"]
                        elif item["key"] == "file":
                            commit["files"][value["path"]] = base64.b64decode(value["content"])
                            commit["modes"][value["path"]] = "regular"
                        elif item["key"] == "lfsFile":
                            commit["files"][value["path"]] = stand_in.lfs[value["oid"]]
                            commit["modes"][value["path"]] = "lfs"
                    stand_in.commits.append(commit)
                    oid = hashlib.sha1(data).hexdigest()
                    return self.reply({"commitUrl": f"{base}/{m[2]}/commit/{oid}", "commitOid": oid})
                self.reply({"error": f"the stand-in does not know {path}"}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hub():
    with HubStandIn() as stand_in:
        yield stand_in


@pytest.fixture()
def online(monkeypatch, hub):
    """This process talks to the stand-in: the Hub's endpoint, online, a token, and no Xet."""
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", "dummy-token")
    return hub


def test_dry_run_lists_exactly_what_the_upload_sends(run, online, tmp_path, capsys):
    args = [str(run), "--repo-id", REPO]
    assert publish.main([*args, "--dry-run"]) == 0
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert set(listed) == EXPECTED and len(listed) == len(EXPECTED)
    assert online.repos == [] and online.commits == []  # a dry run contacts nobody

    sent = tmp_path / "sent"
    assert publish.main([*args, "--private", "--revision", "dev", "-m", "first", "--out", str(sent)]) == 0
    out = capsys.readouterr()
    assert [line.split()[-1] for line in out.out.splitlines()] == listed
    created = {"name": "gpt2mini-tiny", "organization": "someone", "visibility": "private", "type": "model"}
    assert online.repos == [created]
    assert online.branches == [("model", REPO, "dev")]
    [commit] = online.commits
    assert (commit["repo"], commit["revision"], commit["summary"]) == (REPO, "dev", "first")
    assert set(commit["files"]) == set(listed)
    for name, data in commit["files"].items():
        assert data == (sent / name).read_bytes(), name
    assert commit["modes"]["model.safetensors"] == commit["modes"]["loss_curve.png"] == "lfs"
    assert commit["modes"]["README.md"] == commit["modes"]["config.json"] == "regular"
    assert online.auth == {"Bearer dummy-token"}
    assert f"{REPO}/commit/" in out.err.strip().splitlines()[-1]


def test_train_push_to_hub_sends_the_same_repository(online, tmp_path, capsys):
    folder = tmp_path / "pushed"
    args = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "16", "--batch_size", "2"]
    args += ["--steps", "4", "--eval_interval", "2", "--eval_iters", "1", "--sample_chars", "5", "--no_progress"]
    assert T.main(args + ["--save", str(folder), "--push-to-hub", REPO]) == 0
    [commit] = online.commits
    expected = assemble_model(folder, tmp_path / "expected", REPO)
    assert set(commit["files"]) == set(repo_files(expected)) == EXPECTED
    for name, data in commit["files"].items():
        assert data == (expected / name).read_bytes(), name
    assert (commit["repo"], commit["revision"]) == (REPO, "main")


def test_a_failure_on_the_hub_side_is_one_line_and_exit_1(run, online, monkeypatch, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the Hub cannot be reached
        s.bind(("127.0.0.1", 0))
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
    assert publish.main([str(run), "--repo-id", REPO]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: the upload to {REPO} failed: ") and "Traceback" not in "".join(err)
    args = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "16", "--batch_size", "2"]
    args += ["--steps", "2", "--eval_interval", "2", "--eval_iters", "1", "--sample_chars", "5", "--no_progress"]
    assert T.main(args + ["--save", str(tmp_path / "kept"), "--push-to-hub", REPO]) == 1
    assert f"the model is saved in {tmp_path / 'kept'}" in capsys.readouterr().err
    assert (tmp_path / "kept" / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------------
# The model as plain GPT-2 (--as-gpt2)

EXPECTED_GPT2 = EXPECTED - {"configuration_gpt2mini.py", "modeling_gpt2mini.py"}

FRESH_GPT2 = r"""
import json, sys
import torch
try:
    import modeling_gpt2mini  # noqa: F401
    importable = True
except ImportError:
    importable = False
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

folder, repo_id, snippet, out = sys.argv[1:]
logits = {}
for key, source in (("folder", folder), ("repo_id", repo_id)):
    model = AutoModelForCausalLM.from_pretrained(source)  # no trust_remote_code
    tok = AutoTokenizer.from_pretrained(source)
    logits[key] = model(torch.tensor([tok.encode("First Citizen:", add_special_tokens=False)])).logits
torch.save(logits, out)
greedy = pipeline("text-generation", model=folder)("ROMEO:", max_new_tokens=16, do_sample=False)[0]["generated_text"]
print("--- snippet ---")
exec(compile(snippet, "README.md", "exec"), {})  # the model card's snippet, as written
print("--- end ---")
print(json.dumps({"importable": importable, "greedy": greedy, "class": type(model).__name__}))
"""


@pytest.fixture(scope="module")
def gpt2_repo(run):
    return assemble_model(run, run.parent / "gpt2_repo", REPO, plain_gpt2=True)


def test_as_gpt2_is_plain_gpt2_that_loads_without_remote_code_in_a_fresh_process(run, gpt2_repo, tmp_path):
    assert set(repo_files(gpt2_repo)) == EXPECTED_GPT2  # no Python at all
    config = json.loads((gpt2_repo / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert "auto_map" not in config
    assert (gpt2_repo / "tokenizer.json").read_bytes() == (run / "tokenizer.json").read_bytes()
    card = ModelCard.load(gpt2_repo / "README.md")
    assert "custom_code" not in card.data.tags and "## Plain GPT-2" in card.text
    assert "trust_remote_code" not in card_snippet(card.content)
    cache = tmp_path / "hub"
    place_in_hub_cache(gpt2_repo, cache, REPO)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    work = tmp_path / "elsewhere"
    work.mkdir()
    snippet = card_snippet(card.content)
    out = subprocess.run(
        [sys.executable, "-c", FRESH_GPT2, str(gpt2_repo), REPO, snippet, str(tmp_path / "logits.pt")],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["importable"] is False and result["class"] == "GPT2LMHeadModel"
    model, tok = C.load_model_folder(run)
    ids = torch.tensor([tok.encode("First Citizen:", add_special_tokens=False)])
    theirs = torch.load(tmp_path / "logits.pt", weights_only=True)
    with torch.no_grad():
        for key in ("folder", "repo_id"):
            torch.testing.assert_close(theirs[key], model(ids).logits, atol=2e-5, rtol=0)
    ref = model.generate(torch.tensor([tok.encode("ROMEO:")]), max_new_tokens=16, do_sample=False)
    assert result["greedy"] == tok.decode(ref[0])
    assert out.stdout.split("--- snippet ---\n")[1].startswith("ROMEO:")


def test_as_gpt2_dry_run_lists_exactly_what_the_upload_sends(run, online, tmp_path, capsys):
    args = [str(run), "--repo-id", REPO, "--as-gpt2"]
    assert publish.main([*args, "--dry-run"]) == 0
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert set(listed) == EXPECTED_GPT2 and online.commits == []
    sent = tmp_path / "sent"
    assert publish.main([*args, "--out", str(sent)]) == 0
    [commit] = online.commits
    assert set(commit["files"]) == set(listed)
    for name, data in commit["files"].items():
        assert data == (sent / name).read_bytes(), name


def test_as_gpt2_refuses_a_variant_gpt2_cannot_express_in_one_line(online, tmp_path, capsys):
    out = tmp_path / "out"
    folder = str(ROOT / "models" / "shakespeare" / "post_ln")
    assert publish.main([folder, "--repo-id", REPO, "--as-gpt2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: --as-gpt2: GPT-2 has no equivalent of ln_style='post': only the baseline architecture converts"
    )
    assert not out.exists() and online.repos == [] and online.commits == []


# ---------------------------------------------------------------------------------------------------------------------
# The Space


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    return assemble_space(tmp_path_factory.mktemp("space") / "lab", "someone/gpt2mini-lab")


def test_space_front_matter_requirements_and_files(space):
    import importlib.metadata

    from packaging.requirements import Requirement

    card = SpaceCard.load(space / "README.md").data.to_dict()
    assert card["sdk"] == "gradio" and card["sdk_version"] == importlib.metadata.version("gradio")
    assert card["app_file"] == "app.py" and (space / card["app_file"]).exists()
    assert card["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert card["colorFrom"] in SPACE_COLORS and card["colorTo"] in SPACE_COLORS
    assert card["license"] == "mit" and card["title"] and card["emoji"]
    assert 0 < len(card["short_description"]) <= 60  # the Hub's limit

    lines = [x for x in (space / "requirements.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert lines[0] == f"--extra-index-url {TORCH_CPU_INDEX}"
    pinned = {Requirement(x).name: Requirement(x) for x in lines[1:]}
    ours = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    ours = {Requirement(x).name: Requirement(x) for x in ours if x}
    assert set(pinned) == set(ours) - {"gradio"}  # the Space installs gradio from sdk_version
    for name, req in pinned.items():
        [spec] = req.specifier
        assert spec.operator == "==" and ours[name].specifier.contains(spec.version.split("+")[0]), name
    assert str(pinned["torch"].specifier).endswith("+cpu")

    body = SpaceCard.load(space / "README.md").text
    for folder in model_folders(ROOT / "models"):
        assert f"| {folder.parent.name} | {folder.name} | " in body
        assert folder.name == "baseline" or variant_label(folder.name) in body  # the registry's label
        assert CORPORA[folder.parent.name].description in body

    files = set(repo_files(space))
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "models").rglob("*") if p.is_file()}
    assert shipped <= files
    assert {"data/tinyshakespeare.txt", "data/wagahai_neko.txt", "data/PROVENANCE.md"} <= files
    assert not any(f.startswith("tests/") or f.endswith((C.STATE_FILE, C.OPTIMIZER_FILE)) for f in files)


SPACE_APP = r"""
import json, sys
from pathlib import Path
import app
from gpt2mini.lab.catalog import load_lab
from gpt2mini.lab.knockouts import run_knockout
from gpt2mini.lab.streaming import generate_one
from gpt2mini.lab.ui import build_demo

lab = load_lab()
demo = build_demo(lab)
text, _ = list(generate_one(lab, "shakespeare", "baseline", "ROMEO:", 0, 0, 1, 20, 1, 0))[-1]
summary, _, _ = list(run_knockout(lab, "wagahai", ["L1 H1"], [], [], [], "吾輩は", 0, 0, 1, 5, 1, 0))[-1]
here = Path.cwd().resolve()
files = [Path(m.__file__) for m in list(sys.modules.values()) if isinstance(getattr(m, "__file__", None), str)]
files = [f.resolve() for f in files if f.is_absolute()]
local = sorted(f.relative_to(here).as_posix() for f in files if f.is_relative_to(here))
print(json.dumps({"groups": {c: lab.variants(c) for c in lab.corpora()}, "text": text, "summary": summary,
                  "scaling": {c: list(g["entries"]) for c, g in lab.scaling.items()},
                  "local": local, "blocks": type(demo).__name__}))
"""


def test_the_space_builds_and_serves_from_its_own_folder(space, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    out = subprocess.run(
        [sys.executable, "-c", SPACE_APP], cwd=space, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    models = (ROOT / "models").iterdir()
    shipped = {c.name: sorted(v.name for v in c.iterdir() if (v / "config.json").exists()) for c in models}
    assert {c: sorted(v) for c, v in result["groups"].items()} == shipped
    assert result["blocks"] == "Blocks" and result["text"].startswith("ROMEO:") and len(result["text"]) > 10
    assert (
        result["scaling"]["shakespeare"]
        == json.loads((ROOT / "models/shakespeare/scaling/scaling.json").read_text())["shipped"]
    )
    assert "Validation loss on a fixed passage" in result["summary"]  # the corpus file the Knockout tab reads
    # exactly the project modules app.py needs: every shipped .py file was imported, none came from elsewhere
    code = [p.relative_to(space).as_posix() for p in space.rglob("*.py")]
    assert result["local"] == sorted(code)  # models/ holds no code


def test_the_space_uploads_through_the_same_code(space, online):
    url = upload(space, "someone/gpt2mini-lab", repo_type="space", token="dummy-token")
    assert online.repos[0]["type"] == "space" and online.repos[0]["sdk"] == "gradio"
    [commit] = online.commits
    assert commit["type"] == "space" and set(commit["files"]) == set(repo_files(space))
    for name in ("README.md", "app.py", "models/shakespeare/baseline/model.safetensors"):
        assert commit["files"][name] == (space / name).read_bytes()
    assert "gpt2mini-lab/commit/" in url


# ---------------------------------------------------------------------------------------------------------------------
# Mistakes and loading errors: one line, exit code 2, nothing written or sent


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_a_model", "is not a GPT-2 mini model folder"),
        ("no_tokenizer", "has no tokenizer.json"),
        ("no_weights", "has no model.safetensors"),
        ("bad_repo_id", "must be owner/name"),
        ("out_exists", "already exists"),
        ("offline", "HF_HUB_OFFLINE is set"),
        ("no_token", "not logged in"),
    ],
)
def test_publish_mistakes_are_one_line_and_exit_2(case, message, run, online, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "model"
    shutil.copytree(run, folder)
    repo_id = REPO
    if case == "not_a_model":
        folder = ROOT / "data"
    elif case == "no_tokenizer":
        (folder / "tokenizer.json").unlink()
    elif case == "no_weights":
        (folder / "model.safetensors").unlink()
    elif case == "bad_repo_id":
        repo_id = "gpt2mini-tiny"
    elif case == "out_exists":
        (tmp_path / "out").mkdir()
    elif case == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    elif case == "no_token":
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # nor a login cached on this machine
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert publish.main([str(folder), "--repo-id", repo_id, "--out", str(out)]) == 2  # an upload, were it not for ...
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no --out folder, no leftovers
    assert online.repos == [] and online.commits == []  # nothing reached the (listening) stand-in


def test_train_push_to_hub_is_checked_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert T.main(["--steps", "2", "--push-to-hub", "someone/x"]) == 2  # offline (conftest)
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    assert T.main(["--steps", "2", "--push-to-hub", "not a repo id"]) == 2
    assert "not a valid Hub repo id" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_the_lab_loads_a_repo_id_from_the_hub_cache_offline(repo, hub_cache):

    place_in_hub_cache(repo, hub_cache, REPO)
    entry = load_entry("mine", REPO)
    assert entry.model.config.model_type == "gpt2mini" and len(entry.tokenizer) == entry.model.config.vocab_size
    assert [m["step"] for m in entry.metrics if "val_loss" in m] == [0, 20]  # its training log came along


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_cached", "not in the Hugging Face cache while HF_HUB_OFFLINE is set"),
        ("gpt2", "is a 'gpt2' model, not a GPT-2 mini model"),
        ("no_tokenizer", "has no tokenizer.json"),
        ("invalid", "not a valid Hub repo id"),
    ],
)
def test_the_lab_says_why_a_repo_id_cannot_be_loaded(case, message, repo, hub_cache, tmp_path):

    repo_id = "someone/other" if case != "invalid" else "someone/a/b"
    if case in ("gpt2", "no_tokenizer"):
        copy = tmp_path / "copy"
        shutil.copytree(repo, copy)
        if case == "gpt2":
            (copy / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
        else:
            (copy / "tokenizer.json").unlink()
        place_in_hub_cache(copy, hub_cache, repo_id)
    with pytest.raises(C.UsageError) as e:
        load_entry("x", repo_id)
    assert message in str(e.value) and repo_id in str(e.value) and "\n" not in str(e.value)


def test_the_card_states_the_share_a_data_scaling_run_trained_on():
    full = training_text(None, {"corpus": "shakespeare"})
    part = training_text(None, {"corpus": "shakespeare", "train_fraction": 0.25})
    assert part.val == full.val and part.train == full.train[: round(len(full.train) * 0.25)]
    assert part.train == trained_text(full.text, TrainSettings(train_fraction=0.25))  # what train.py trained on
    assert f"{len(full.train) / len(full.text):.1%}" == "90.0%"
