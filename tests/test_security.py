"""Security: no pickle and no code from data anywhere in the project's sources; `trust_remote_code` only on the
model repositories this project assembles; the lab takes no file path or repository id from the web; the Space needs
no secrets.

The source scan reads every Python file of the project (tracked or new, tests included; models/ holds none) with
`ast`, and also every string constant that is itself Python (the scripts that tests run in a fresh process), and
reports:

- `torch.load` without `weights_only=True` (a pickle: arbitrary code on load);
- an import of pickle, cPickle, dill, cloudpickle, joblib, shelve or marshal, or of multiprocessing's pickler
  (`multiprocessing.reduction`, whose `ForkingPickler` sends objects between processes); `allow_pickle=True`;
  `read_pickle`; `use_safetensors=False`; `yaml.load`/`yaml.unsafe_load`;
- a call of the builtins `eval` or `exec` (method calls such as `model.eval()` are not these);
- `trust_remote_code=` with any value but the constant False;
- `shell=True` and `os.system` (a shell would parse text).

What is allowed is listed in ALLOWED with the reason; each entry must still be needed, so the list stays true.
This file is not scanned: its self-test feeds the scanner the very patterns it forbids.
"""

import ast
import fnmatch
import os
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

from conftest import ROOT, serve, tiny_lab
from gpt2mini.hub.space import assemble_space, local_imports
from gpt2mini.lab import catalog
from gpt2mini.lab.catalog import HUB_FILES
from gpt2mini.lab.ui import build_demo

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}

# (file, kind): why it is safe. `trust_remote_code=True` runs the model code a repository carries. Model folders
# hold none (the classes `import gpt2mini` registers load them), so every case below loads a repository this
# project's publishing assembled, whose code files are this project's model files copied from its root, or shows
# that a folder's own copies are not run.
ALLOWED = {
    (
        "gpt2mini/hub/card.py",
        "trust_remote_code",
    ): "the model card's usage snippet, for the repository publish.py uploads: its "
    "code files are this project's modeling_gpt2mini.py and configuration_gpt2mini.py, copied from the repository "
    "root by gpt2mini/hub/repo.py",
    ("tests/test_remote_code.py", "trust_remote_code"): "loads the repository gpt2mini.hub.repo assembled from a "
    "folder the test saved, as a Hub user would (and checks that loading it without trust_remote_code is refused, "
    "and that the folder itself has no remote code to trust)",
    ("tests/test_publish.py", "trust_remote_code"): "loads the repository publish.py assembled from a train.py run "
    "of this project, as a Hub user would",
    ("tests/test_publish.py", "exec"): "runs the model card's snippet, text that publish.py generates from its own "
    "template, in a fresh process to prove it works as written",
    ("tests/test_checkpoint.py", "trust_remote_code"): "shows that, with the package imported, even "
    "trust_remote_code=True on a folder saved with the model's code (up to commit 17ae234) builds this project's "
    "registered class: the folder's copies, today's model files, are not run",
    ("tests/test_generation.py", "trust_remote_code"): "loads, in a fresh process, folders the test saved with the "
    "auto_map and model files gpt2mini.hub.repo adds (one copy edited by the test), to show that a model loaded as a "
    "Hub user loads it takes the fast decode step only when its code is this project's",
    (
        "gpt2mini/serving/process.py",
        "pickle",
    ): "the lab and its own decoding process, over a pipe only the two hold (made by the "
    "lab, handed to the child it spawns): the models and requests the lab itself holds, never bytes read from a "
    "file, an upload or the network",
}


def project_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / f for f in sorted(set(out)) if f != "tests/test_security.py" and (ROOT / f).exists()]


def scan(source: str) -> list[tuple[int, str, str]]:
    """(line, kind, what) for each forbidden pattern in Python source, including Python inside string constants."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in PICKLE_MODULES or name == "multiprocessing.reduction":
                    found.append((node.lineno, "pickle", f"import {name}"))
            if isinstance(node, ast.ImportFrom) and node.module == "multiprocessing":
                if any(a.name == "reduction" for a in node.names):
                    found.append((node.lineno, "pickle", "from multiprocessing import reduction"))
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "torch"
                and any(a.name == "load" for a in node.names)
            ):
                found.append((node.lineno, "torch.load", "from torch import load"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            if name == "load" and owner == "torch":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    found.append((node.lineno, "torch.load", "torch.load without weights_only=True"))
            if isinstance(func, ast.Name) and name in ("eval", "exec"):
                found.append((node.lineno, name, f"{name}(...)"))
            if name in ("read_pickle", "unsafe_load") or (name == "load" and owner == "yaml"):
                found.append((node.lineno, "pickle", f"{owner}.{name}"))
            if name == "system" and owner == "os":
                found.append((node.lineno, "shell", "os.system"))
            for key, bad in (("allow_pickle", True), ("use_safetensors", False), ("shell", True)):
                value = keywords.get(key)
                if isinstance(value, ast.Constant) and value.value is bad:
                    found.append((node.lineno, "shell" if key == "shell" else "pickle", f"{key}={bad}"))
            if "trust_remote_code" in keywords:
                value = keywords["trust_remote_code"]
                if not (isinstance(value, ast.Constant) and value.value is False):
                    found.append((node.lineno, "trust_remote_code", ast.unparse(value)))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and ("(" in node.value or "import" in node.value)
        ):
            script = textwrap.dedent(node.value)
            try:
                inner = ast.parse(script)
            except (SyntaxError, ValueError):
                continue  # prose
            if any(
                isinstance(n, ast.Call | ast.Import | ast.ImportFrom) for n in ast.walk(inner)
            ):  # code, run elsewhere
                found += [(node.lineno + line - 1, kind, what) for line, kind, what in scan(script)]
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = {
        "import torch\ntorch.load(f)": "torch.load",
        "import torch\ntorch.load(f, weights_only=False)": "torch.load",
        "from torch import load": "torch.load",
        "import pickle": "pickle",
        "from multiprocessing import reduction": "pickle",
        "from multiprocessing.reduction import ForkingPickler": "pickle",
        "from dill import loads": "pickle",
        "import numpy as np\nnp.load(f, allow_pickle=True)": "pickle",
        "pd.read_pickle(f)": "pickle",
        "M.from_pretrained(p, use_safetensors=False)": "pickle",
        "eval(text)": "eval",
        "exec(compile(text, 'x', 'exec'))": "exec",
        "M.from_pretrained(p, trust_remote_code=True)": "trust_remote_code",
        "M.from_pretrained(p, trust_remote_code=flag)": "trust_remote_code",
        "subprocess.run(cmd, shell=True)": "shell",
        "script = '''\nimport pickle\n'''": "pickle",  # Python inside a string: a script run elsewhere
    }
    for source, kind in bad.items():
        assert [k for _, k, _ in scan(source)] == [kind], source
    good = [
        "torch.load(f, weights_only=True)",
        "model.eval()",
        "M.from_pretrained(p, trust_remote_code=False)",
        "text = 'no pickle here (none at all)'",
        "safetensors.torch.load_file(f)",
    ]
    for source in good:
        assert scan(source) == [], source


def test_no_pickle_no_eval_and_trust_remote_code_only_on_our_own_folders():
    found, used = [], set()
    files = project_files()
    assert {"train.py", "app.py", "publish.py", "modeling_gpt2mini.py"} <= {f.name for f in files}
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for line, kind, what in scan(path.read_text(encoding="utf-8")):
            if (rel, kind) in ALLOWED:
                used.add((rel, kind))
            else:
                found.append(f"{rel}:{line}: {what}")
    assert found == [], "\n".join(found)
    assert used == set(ALLOWED), f"no longer needed: {set(ALLOWED) - used}"


def test_the_project_never_runs_code_it_downloads():
    # the lab's --model fetches only these files from a Hub repository: never code, never a pickle
    for name in ("modeling_gpt2mini.py", "configuration_gpt2mini.py", "pytorch_model.bin", "model.pt", "x.pkl"):
        assert not any(fnmatch.fnmatch(name, pattern) for pattern in HUB_FILES), name
    # and every loader builds the model from this project's class (tests/test_checkpoint.py: a folder's own code
    # files are never run), so trust_remote_code is never needed and never passed outside the tests above
    source = (ROOT / "gpt2mini" / "checkpoint.py").read_text()
    assert "GPT2MiniForCausalLM.from_pretrained(" in source and "AutoModelForCausalLM" not in source


# ---------------------------------------------------------------------------------------------------------------------
# The lab takes no file path or repository id from the web

# dataset: gr.Examples' row index; radio: the language
INPUTS = {"dropdown", "checkboxgroup", "textbox", "slider", "number", "dataset", "radio"}
FILE_COMPONENTS = {
    "file",
    "uploadbutton",
    "image",
    "audio",
    "video",
    "model3d",
    "gallery",
    "imageeditor",
    "multimodaltextbox",
    "fileexplorer",
    "downloadbutton",
    "simpleimage",
}


def test_every_event_takes_only_choices_text_and_numbers():
    demo = build_demo(tiny_lab(n_positions=64))
    config = demo.get_config_file()
    components = {c["id"]: c for c in config["components"]}
    assert not {c["type"] for c in components.values()} & FILE_COMPONENTS
    seen = set()
    for event in config["dependencies"]:
        for i in event["inputs"]:
            component = components[i]
            seen.add(component["type"])
            assert component["type"] in INPUTS, (event["api_name"], component["type"])
            if component["type"] == "dropdown":  # a dropdown that accepted any typed value would be a text box
                assert component["props"]["allow_custom_value"] is False, event["api_name"]
    assert seen == INPUTS


PATHS = [
    "/etc/passwd",
    "../models/shakespeare/baseline",
    str(ROOT / "models" / "shakespeare" / "baseline"),
    "openai-community/gpt2",
]


@pytest.fixture(scope="module")
def served(monkeypatch_module):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"a loader was called from the web: {args}")

    for name in ("load_entry", "load_lab", "fetch_from_hub", "load_model_folder"):
        monkeypatch_module.setattr(catalog, name, refuse)
    import huggingface_hub

    monkeypatch_module.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch_module.setattr(huggingface_hub, "hf_hub_download", refuse)
    demo = build_demo(tiny_lab(n_positions=64))
    with serve(demo) as url:
        yield Client(url, verbose=False), url, calls


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_paths_and_repo_ids_sent_to_every_endpoint_load_nothing(served):
    client, _, calls = served
    s = (0.8, 40, 0.95, 5, 1.0, 0)
    for path in PATHS:
        requests = {
            "/choose_corpus": (path,),
            "/side_by_side": (path, [path], path, *s),
            "/generate": (path, path, path, *s),
            "/next_character": (path, [path], path, 0.8, 40, 0.95),
            "/step": (path, [path], path, 0.8, 40, 0.95, 0),
            "/attention": (path, path, path),
            "/knockout": (path, [path], [path], [path], [path], path, *s),
        }
        for api_name, args in requests.items():
            with pytest.raises(Exception) as caught:
                client.predict(*args, api_name=api_name)
            assert "not in the list of choices" in str(caught.value) or "no model" in str(caught.value), (
                api_name,
                str(caught.value),
            )
        # the right group, a path where a model or a knockout part is named
        for api_name, args in {
            "/side_by_side": ("shakespeare", [path], "x", *s),
            "/generate": ("shakespeare", path, "x", *s),
            "/attention": ("shakespeare", path, "x"),
            "/knockout": ("shakespeare", [path], [], [], [], "x", *s),
        }.items():
            with pytest.raises(Exception, match="not in the list of choices|no model|written like"):
                client.predict(*args, api_name=api_name)
        # as a prompt, a path is only text to continue
        text, _ = client.predict("shakespeare", "baseline", path, *s, api_name="/generate")
        assert text.startswith(path[-64:])
    assert calls == []


def test_gradio_serves_no_project_or_system_file(served):
    _, url, _ = served
    for target in (ROOT / "app.py", ROOT / "models" / "shakespeare" / "baseline" / "config.json", Path("/etc/passwd")):
        for route in ("gradio_api/file=", "file="):
            try:
                with urllib.request.urlopen(f"{url.rstrip('/')}/{route}{target}", timeout=10) as response:
                    body = response.read()
                    status = response.status
            except urllib.error.HTTPError as e:
                status, body = e.code, b""
            assert status in (403, 404), (route, target, status)
            assert target.read_bytes()[:40] not in body


# ---------------------------------------------------------------------------------------------------------------------
# The Space runs without secrets

SECRET_NAMES = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|CREDENTIAL", re.IGNORECASE)


def test_the_space_code_reads_no_secrets_and_holds_none(tmp_path):

    modules = local_imports(ROOT / "app.py")
    assert {"app.py", "gpt2mini/__init__.py", "gpt2mini/checkpoint.py", "modeling_gpt2mini.py"} <= set(modules)
    # the lab reads run folders through gpt2mini/checkpoint.py, never the training loop
    assert "train.py" not in modules and not any(m.startswith("gpt2mini/training/") for m in modules)
    # the uploader (which does use a token) is not part of the Space
    assert "publish.py" not in modules and not any(m.startswith("gpt2mini/hub/") for m in modules)
    for name in modules:
        source = (ROOT / name).read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isupper():
                assert not SECRET_NAMES.search(node.value), (name, node.value)  # os.environ["HF_TOKEN"] and kin
        assert "get_token" not in source and "HfFolder" not in source and "login(" not in source, name
    space = assemble_space(tmp_path / "space", "you/gpt2mini-lab")
    token = re.compile(rb"hf_[A-Za-z0-9]{30,}")
    for f in space.rglob("*"):
        if f.is_file():
            assert not token.search(f.read_bytes()), f


def test_the_space_starts_and_answers_with_no_token_anywhere(tmp_path):
    """app.py, as the Space runs it, in a process whose environment has no token or secret and whose home and HF
    cache are empty: it launches on 127.0.0.1 and answers."""
    env = {k: v for k, v in os.environ.items() if not SECRET_NAMES.search(k) and k != "PYTHONPATH"}
    env.update(
        HOME=str(tmp_path),
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(free_port()),
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--models", str(ROOT / "models")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
        client = wait_for_server(url, proc)
        text, _ = client.predict("shakespeare", "baseline", "ROMEO:", 0, 0, 1, 10, 1, 0, api_name="/generate")
        assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, proc, timeout: float = 120) -> Client:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            return Client(url, verbose=False)
        except Exception:
            time.sleep(0.5)
    raise AssertionError(f"the app did not answer at {url} within {timeout} s")
