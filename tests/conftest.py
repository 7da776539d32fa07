"""Shared fixtures: tiny models and a tokenizer built in-process. No network, nothing downloaded."""

import contextlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

from configuration_gpt2mini import GPT2MiniConfig  # noqa: E402
from gpt2mini.lab.catalog import Entry, Lab  # noqa: E402
from gpt2mini.lab.ui import launch_options  # noqa: E402
from gpt2mini.tokenizer import build_tokenizer, config_for  # noqa: E402
from modeling_gpt2mini import GPT2MiniForCausalLM  # noqa: E402

SAMPLE_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    "吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。\n"
)


def tiny_config(tokenizer=None, **overrides) -> GPT2MiniConfig:
    """2 layers, 32 dims, 2 heads, context 64: the size every model test uses unless it says otherwise."""
    kw = dict(n_layer=2, n_embd=32, n_head=2, n_positions=64) | overrides
    return config_for(tokenizer, **kw) if tokenizer is not None else GPT2MiniConfig(**({"vocab_size": 97} | kw))


def tiny_model(tokenizer=None, seed: int = 0, **overrides) -> GPT2MiniForCausalLM:
    """A randomly initialised tiny model in eval mode, the same for the same seed."""
    torch.manual_seed(seed)
    return GPT2MiniForCausalLM(tiny_config(tokenizer, **overrides)).eval()


def sharpen(model: GPT2MiniForCausalLM, scale: float = 8.0) -> GPT2MiniForCausalLM:
    """Scale the embeddings up so that a random model has peaked next-token distributions.

    Greedy-decoding comparisons on a freshly initialised model (logits all near zero) would hinge on float noise;
    with sharp distributions they test the code, not the rounding.
    """
    with torch.no_grad():
        model.transformer.wte.weight.mul_(scale)
    return model


def _batch():
    return torch.randint(0, 97, (1, 9), generator=torch.Generator().manual_seed(1))


def adamw(fused: bool | None = None, foreach: bool | None = None):
    def update(m):
        opt = torch.optim.AdamW(m.parameters(), lr=0.05, fused=fused, foreach=foreach)
        m(_batch(), labels=_batch()).loss.backward()
        opt.step()

    return update


def sgd(m):
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    m(_batch(), labels=_batch()).loss.backward()
    opt.step()


def copy_in_place(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p * 1.5 + 0.01)


def assign_data(m):
    with torch.no_grad():
        for p in m.parameters():
            p.data = p.data * 1.5 + 0.01


def load_other(m):
    m.load_state_dict(sharpen(tiny_model(seed=7)).state_dict())


def replace_a_parameter(m):
    fc = m.transformer.h[0].mlp.c_fc
    fc.weight = torch.nn.Parameter(fc.weight.detach() * -2.0)


def to_double(m):
    m.to(torch.float64)


def replace_a_module(m):
    old = m.transformer.h[0].mlp.c_fc
    new = torch.nn.Linear(old.in_features, old.out_features, bias=old.bias is not None)
    with torch.no_grad():
        new.weight.copy_(old.weight * -2.0)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    m.transformer.h[0].mlp.c_fc = new


# Every way a weight can change under a model that has streamed before: no derived copy may outlive it.
UPDATES = {
    "AdamW fused": adamw(fused=True),  # torch 2.13 on CPU: updates without bumping the version counter
    "AdamW foreach": adamw(foreach=True),
    "AdamW for-loop": adamw(foreach=False),
    "SGD": sgd,
    "load_state_dict": load_other,
    "copy_ under no_grad": copy_in_place,
    "param.data = ...": assign_data,
    "a replaced Parameter": replace_a_parameter,
    ".to(dtype)": to_double,
    "a replaced module": replace_a_module,
}


@pytest.fixture(scope="session")
def tok():
    return build_tokenizer(SAMPLE_TEXT)


@pytest.fixture()
def model(tok):
    return sharpen(tiny_model(tok))


# config.json's auto_map as save_pretrained wrote it up to commit 17ae234
AUTO_MAP_BEFORE = {
    "AutoConfig": "configuration_gpt2mini.GPT2MiniConfig",
    "AutoModelForCausalLM": "modeling_gpt2mini.GPT2MiniForCausalLM",
}


def as_saved_with_code(folder: Path) -> Path:
    """Give a saved folder the layout saves had up to commit 17ae234: the two model files beside the weights (here
    today's files; this project's loaders never run a folder's copies) and `auto_map` in config.json, written as
    transformers writes it."""
    import shutil

    for name in ("configuration_gpt2mini.py", "modeling_gpt2mini.py"):
        shutil.copyfile(ROOT / name, folder / name)
    config = json.loads((folder / "config.json").read_text()) | {"auto_map": AUTO_MAP_BEFORE}
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def wait_for_line(proc, needle: str, timeout: float = 120) -> list[str]:
    """Read a child process's stderr (text mode) line by line until a line contains `needle`; return the lines read.

    Fails the test after `timeout` seconds or when the stream ends first. The rest of the stream stays unread, for
    `proc.communicate()` later."""
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if needle in line:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    start = time.monotonic()
    if not done.wait(timeout) or not lines or needle not in lines[-1]:
        proc.kill()
        raise AssertionError(
            f"no line with {needle!r} after {time.monotonic() - start:.0f} s; stderr so far:\n{''.join(lines)[-3000:]}"
        )
    return lines


def tiny_lab(n_positions: int = 256):
    """The lab (catalog.Lab) with three tiny random variants on the Tiny Shakespeare vocabulary: fast to build and to
    run, shaped like the shipped models (the knockout passage is the end of Tiny Shakespeare)."""
    from gpt2mini.corpus import load_corpus

    tok = build_tokenizer(load_corpus("shakespeare"))
    variants = {"baseline": {}, "residual_off": {"use_residual": False}, "attention_off": {"use_attention": False}}
    group = {
        name: Entry(name, tiny_model(tok, seed=i, n_positions=n_positions, **kw), tok)
        for i, (name, kw) in enumerate(variants.items())
    }
    lab = Lab({"shakespeare": group})
    lab.passages["shakespeare"] = load_corpus("shakespeare")[-3000:]
    return lab


@contextlib.contextmanager
def serve(demo):
    """Launch a Blocks on a free port of 127.0.0.1 in this process; yield its URL; close it afterwards."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(demo)
    )
    try:
        yield url
    finally:
        demo.close()


def raw_join(url: str, fn: int | str, data: list, session: str | None = None) -> tuple[int, dict]:
    """POST /gradio_api/queue/join as gradio_client does (fn: an index, or an API name looked up in /config); the
    update stream is not opened. Returns (HTTP status, the JSON answer)."""
    if isinstance(fn, str):
        with urllib.request.urlopen(f"{url.rstrip('/')}/config", timeout=30) as response:
            fn = next(d["id"] for d in json.loads(response.read())["dependencies"] if d.get("api_name") == fn)
    body = json.dumps({"data": data, "fn_index": fn, "session_hash": session or uuid.uuid4().hex}).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/gradio_api/queue/join", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
