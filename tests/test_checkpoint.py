"""gpt2mini/checkpoint.py, the run folders: damaged model folders give one line naming the file, wherever a folder is
loaded (train.py, the lab, publish.py); a failed save keeps the previous folder; a training process SIGKILLed in the
middle of a save leaves the previous checkpoint loadable and resumable; a reader never breaks a save in progress.
(Ctrl-C: tests/test_train.py.) A folder saved when model folders still held the model's code loads everywhere, and a
save into it leaves no code behind."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import app
import publish
import train as T
from conftest import AUTO_MAP_BEFORE, ROOT, SAMPLE_TEXT, as_saved_with_code, tiny_model, wait_for_line
from gpt2mini import checkpoint as C
from gpt2mini.lab.catalog import load_entry
from gpt2mini.tokenizer import build_tokenizer
from gpt2mini.training.loop import train
from gpt2mini.training.settings import TrainSettings, resume_settings

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, eval_iters=1, sample_chars=0, progress=False)
CHILD_ARGS = "--n_layer 1 --n_head 2 --n_embd 16 --block_size 16 --batch_size 2 --eval_iters 1 --sample_chars 0"
CHILD_ARGS = CHILD_ARGS.split() + ["--no_progress"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A folder as save_pretrained writes it (no trainer_state.json, like the shipped models and Hub repos)."""
    folder = tmp_path_factory.mktemp("faults") / "saved"
    tok = build_tokenizer(SAMPLE_TEXT)
    tiny_model(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A folder train.py saved (with trainer_state.json and its checksums)."""
    folder = tmp_path_factory.mktemp("faults") / "run"
    train(TrainSettings(**(TINY | {"save": str(folder), "steps": 2, "eval_interval": 2})))
    return folder


def truncate(fraction):
    def damage(folder):
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: int(len(data) * fraction)])

    return damage


def garble_header(folder):
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[20:40] = b"\xff" * 20  # inside the JSON header
    (folder / "model.safetensors").write_bytes(bytes(data))


def flip_a_weight_byte(folder):
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-50] ^= 0x01  # a bit inside the last tensor: still a valid file holding a finite number
    (folder / "model.safetensors").write_bytes(bytes(data))


def flip_optimizer_byte(folder):
    data = bytearray((folder / C.OPTIMIZER_FILE).read_bytes())
    data[-50] ^= 0x01
    (folder / C.OPTIMIZER_FILE).write_bytes(bytes(data))


def edit_tensors(change):
    def damage(folder):
        tensors = load_file(folder / "model.safetensors")
        change(tensors)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})

    return damage


def edit_config(**values):
    def damage(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | values))

    return damage


def write(name, text):
    return lambda folder: (folder / name).write_text(text)


def drop_tensor(tensors):
    del tensors["transformer.wpe.weight"]


def reshape_tensor(tensors):
    tensors["transformer.wpe.weight"] = torch.zeros(3, 3)


def poison_tensor(tensors):
    tensors["transformer.h.0.mlp.c_fc.bias"][3] = float("nan")


def other_tokenizer(folder):
    build_tokenizer("abc").save_pretrained(folder)


def truncate_tokenizer(folder):
    data = (folder / "tokenizer.json").read_bytes()
    (folder / "tokenizer.json").write_bytes(data[: len(data) // 2])


DAMAGE = {  # what is done to a good folder: (the file the message must name, what it must say)
    "weights truncated to half": (truncate(0.5), "model.safetensors", "damaged or truncated"),
    "weights truncated to 0 bytes": (truncate(0), "model.safetensors", "damaged or truncated"),
    "weights header garbled": (garble_header, "model.safetensors", "damaged or truncated"),
    "a tensor missing": (edit_tensors(drop_tensor), "model.safetensors", "missing from the file: transformer.wpe"),
    "a tensor of the wrong shape": (edit_tensors(reshape_tensor), "model.safetensors", "wpe.weight is (3, 3)"),
    "a NaN weight": (edit_tensors(poison_tensor), "model.safetensors", "c_fc.bias holds NaN"),
    "config not JSON": (write("config.json", '{"model_type": "gpt2mini",'), "config.json", "not valid JSON"),
    "config a list": (write("config.json", "[1, 2]"), "config.json", "does not hold a JSON object"),
    "config n_head": (edit_config(n_head=3), "config.json", "n_embd (32) must be divisible by n_head (3)"),
    "config n_embd": (edit_config(n_embd=-32), "config.json", "n_embd must be a positive integer"),
    "config vocab_size": (edit_config(vocab_size="lots"), "config.json", "vocab_size must be a positive integer"),
    "config ln_style": (edit_config(ln_style="sideways"), "config.json", "ln_style must be one of"),
    "config dropout": (edit_config(attn_pdrop=1.5), "config.json", "attn_pdrop must be a probability"),
    "config more layers": (edit_config(n_layer=3), "config.json", "n_layer 3, but transformer.h.1 is its last layer"),
    "config fewer layers": (edit_config(n_layer=1), "config.json", "n_layer 1, but transformer.h.1 is its last layer"),
    "config context": (edit_config(n_positions=32), "config.json", "n_positions 32, but transformer.wpe.weight is"),
    "config eos": (edit_config(eos_token_id=3), "config.json", "eos_token_id"),
    "tokenizer of another corpus": (other_tokenizer, "tokenizer.json", "261 tokens but the model's vocabulary is"),
    "tokenizer truncated": (truncate_tokenizer, "tokenizer.json", "not valid JSON"),
    "tokenizer_config not JSON": (write("tokenizer_config.json", "{"), "tokenizer_config.json", "not valid JSON"),
    "generation_config not JSON": (write("generation_config.json", "nul"), "generation_config.json", "not valid JSON"),
}


def damaged_copy(source: Path, tmp_path: Path, damage) -> Path:
    folder = tmp_path / "damaged"
    shutil.copytree(source, folder)
    damage(folder)
    return folder


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_folder_is_one_line_naming_the_file(case, saved, tmp_path):
    damage, filename, phrase = DAMAGE[case]
    folder = damaged_copy(saved, tmp_path, damage)
    with pytest.raises(C.UsageError) as caught:
        C.load_model_folder(folder)
    message = str(caught.value)
    assert str(folder / filename) in message or (message.startswith(f"{folder}: ") and filename in message), message
    assert phrase in message and "\n" not in message


def test_a_flipped_byte_is_caught_by_the_checksum_train_py_recorded(run_folder, saved, tmp_path):
    # safetensors has no checksum: the same damage in a folder without trainer_state.json loads (and is wrong)
    plain = damaged_copy(saved, tmp_path / "plain", flip_a_weight_byte)
    C.load_model_folder(plain)
    folder = damaged_copy(run_folder, tmp_path / "run", flip_a_weight_byte)
    with pytest.raises(C.UsageError, match=r"model\.safetensors is damaged: its SHA-256 differs"):
        C.load_model_folder(folder)
    state = json.loads((run_folder / C.STATE_FILE).read_text())
    assert set(state["sha256"]) == {"model.safetensors", C.OPTIMIZER_FILE}
    C.load_model_folder(run_folder)  # the undamaged folder verifies


@pytest.mark.parametrize("case", ["weights truncated to half", "config n_head", "tokenizer of another corpus"])
def test_every_command_that_loads_a_folder_says_the_same_line(case, saved, tmp_path, capsys):
    damage, filename, phrase = DAMAGE[case]
    folder = damaged_copy(saved, tmp_path, damage)
    commands = {
        "train.py --load": lambda: T.main(["--load", str(folder), "--generate", "--no_progress"]),
        "train.py --evaluate": lambda: T.main(["--load", str(folder), "--evaluate"]),
        "app.py --model": lambda: app.main(
            ["--models", str(tmp_path / "none"), "--model", str(folder), "--threads", str(torch.get_num_threads())]
        ),
        "publish.py": lambda: publish.main([str(folder), "--repo-id", "you/name", "--dry-run"]),
    }
    for name, command in commands.items():
        assert command() == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and filename in err and phrase in err, (name, err)
        assert "\n" not in err and "Traceback" not in err, (name, err)


def test_damaged_resume_state_is_one_line_naming_the_file(run_folder, tmp_path, capsys):
    cases = [
        (C.OPTIMIZER_FILE, lambda f: (f / C.OPTIMIZER_FILE).write_bytes(b"\x00" * 12), "damaged or truncated"),
        (C.OPTIMIZER_FILE, flip_optimizer_byte, "SHA-256 differs"),
        (C.STATE_FILE, lambda f: (f / C.STATE_FILE).write_text('{"step": 2'), "not valid JSON"),
        (C.STATE_FILE, lambda f: (f / C.STATE_FILE).write_text('{"step": "two"}'), "no valid 'step'"),
        (C.METRICS_FILE, lambda f: (f / C.METRICS_FILE).write_text('{"step": 0}\n{"step": 1, "lo'), "line 2"),
    ]
    for i, (filename, damage, phrase) in enumerate(cases):
        folder = damaged_copy(run_folder, tmp_path / str(i), damage)
        assert T.main(["--resume", str(folder), "--steps", "4", "--no_progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert filename in err and phrase in err and "\n" not in err, err
    # the optimizer file swapped for another run's (a different model): named, before any step is taken
    other = tmp_path / "other"
    train(TrainSettings(**(TINY | {"save": str(other), "steps": 2, "eval_interval": 2, "n_embd": 16})))
    capsys.readouterr()
    folder = damaged_copy(run_folder, tmp_path / "swapped", lambda f: None)
    shutil.copy(other / C.OPTIMIZER_FILE, folder / C.OPTIMIZER_FILE)
    state = json.loads((folder / C.STATE_FILE).read_text())
    del state["sha256"]  # as if written by hand: the shapes are what catches it
    (folder / C.STATE_FILE).write_text(json.dumps(state))
    assert T.main(["--resume", str(folder), "--steps", "4", "--no_progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{C.OPTIMIZER_FILE} does not fit the model" in err and "\n" not in err, err


def test_the_lab_never_runs_code_from_a_model_folder(saved, tmp_path):
    folder = damaged_copy(saved, tmp_path, lambda f: None)
    marker = tmp_path / "ran"
    evil = f"open({str(marker)!r}, 'w').write('the folder ran its own code')\n"
    for name in ("modeling_gpt2mini.py", "configuration_gpt2mini.py"):
        (folder / name).write_text(evil)
    edit_config(auto_map={"AutoModelForCausalLM": "modeling_gpt2mini.Evil", "AutoConfig": "modeling_gpt2mini.X"})(
        folder
    )
    model, _ = C.load_model_folder(folder)
    entry = load_entry("mine", str(folder))
    assert not marker.exists()
    assert type(model).__module__ == type(entry.model).__module__ == "modeling_gpt2mini"  # this project's file
    assert Path(sys.modules["modeling_gpt2mini"].__file__).resolve() == ROOT / "modeling_gpt2mini.py"


# ---------------------------------------------------------------------------------------------------------------------
# Folders saved with the model's code (up to commit 17ae234)


def test_a_save_writes_no_code_and_no_auto_map(run_folder, saved):
    for folder in (run_folder, saved):  # save_run, and save_pretrained as the studies ship with it
        assert not list(folder.glob("*.py")), folder
        assert "auto_map" not in json.loads((folder / "config.json").read_text()), folder


def test_a_folder_saved_with_code_loads_through_the_registered_classes(saved, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = as_saved_with_code(damaged_copy(saved, tmp_path, lambda f: None))
    assert json.loads((folder / "config.json").read_text())["auto_map"] == AUTO_MAP_BEFORE
    model, tok = C.load_model_folder(folder)
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()  # no trust_remote_code: the package registered it
    # with the package imported, transformers prefers the registered classes even when told to trust the folder's
    # copies: they are not transformers' own, so they count as explicit local code (configuration_auto.py,
    # auto_factory.py: `explicit_local_code`)
    trusted = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    for loaded in (model, hf, trusted):
        assert type(loaded) is type(model) and type(loaded).__module__ == "modeling_gpt2mini"
        assert not hasattr(loaded.config, "auto_map")  # dropped with the copies it names: a save writes none
    ids = torch.tensor([tok.encode("First Citizen:", add_special_tokens=False)])
    assert torch.equal(hf(ids).logits, model(ids).logits) and torch.equal(trusted(ids).logits, model(ids).logits)
    entry = load_entry("old", str(folder))  # the lab
    assert type(entry.model) is type(model) and torch.equal(entry.model(ids).logits, model(ids).logits)
    model.save_pretrained(tmp_path / "resaved")  # as experiments.ablate ships a model load_model_folder read
    resaved = sorted(p.name for p in (tmp_path / "resaved").iterdir())
    assert resaved == ["config.json", "generation_config.json", C.MODEL_FILE]
    assert "auto_map" not in json.loads((tmp_path / "resaved" / "config.json").read_text())


def test_resuming_a_run_saved_with_code_leaves_no_code_and_keeps_the_users_files(run_folder, tmp_path, capsys):
    folder = as_saved_with_code(damaged_copy(run_folder, tmp_path, lambda f: None))
    (folder / "my notes.txt").write_text("keep me")
    assert T.main(["--resume", str(folder), "--steps", "4", "--no_progress"]) == 0, capsys.readouterr().err
    assert json.loads((folder / C.STATE_FILE).read_text())["step"] == 4
    assert not list(folder.glob("*.py"))  # written by the earlier save, not the user's: not carried forward
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    assert (folder / "my notes.txt").read_text() == "keep me"  # the user's file moved into the new folder
    C.load_model_folder(folder)


# ---------------------------------------------------------------------------------------------------------------------
# Atomic saves


def test_a_failed_save_keeps_the_previous_folder(tmp_path, monkeypatch):
    train(TrainSettings(**(TINY | {"save": str(tmp_path / "run"), "steps": 4, "eval_interval": 4})))
    folder = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def explode(*args, **kwargs):
        raise OSError("disk full (simulated, half-way through the save)")

    monkeypatch.setattr(C, "plot_losses", explode)  # called after the weights are written into the new folder
    with pytest.raises(C.SaveError, match="simulated"):
        train(resume_settings(folder, steps=8, progress=False))
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after == before
    assert not debris(tmp_path)


def test_a_save_killed_between_the_two_renames_is_recovered(tmp_path):
    train(TrainSettings(**(TINY | {"save": str(tmp_path / "run"), "steps": 2, "eval_interval": 2})))
    folder = tmp_path / "run"
    child = subprocess.Popen(["true"])
    child.wait()
    dead = child.pid  # a process that has ended: its save was interrupted
    moved = tmp_path / f".run.old-{dead}"
    os.replace(folder, moved)  # what a SIGKILL right after moving the old folder aside leaves
    (tmp_path / f".run.partial-{dead}").mkdir()
    model, tok = C.load_model_folder(folder)
    assert folder.is_dir() and not moved.exists() and not (tmp_path / f".run.partial-{dead}").exists()
    assert model.config.n_layer == 2


# ---------------------------------------------------------------------------------------------------------------------
# Killing a real training process in the middle of a save

CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
from gpt2mini import checkpoint
from gpt2mini.training import loop
import train

# pause at chosen points of the save number PAUSE_AT_SAVE: say so on stderr, then wait for a go-file (or a kill)
phases = os.environ["PAUSE_PHASES"].split(",")
at_save, go = int(os.environ["PAUSE_AT_SAVE"]), os.environ["PAUSE_GO"]
saves = [0]

def pause(phase):
    if saves[0] == at_save and phase in phases:
        print(f"PAUSED {{phase}}", file=sys.stderr, flush=True)
        deadline = time.time() + 300
        while not os.path.exists(go + "-" + phase) and time.time() < deadline:
            time.sleep(0.02)

real_save, real_plot = loop.save_run, checkpoint.plot_losses

def save_run(*args, **kwargs):
    saves[0] += 1
    return real_save(*args, **kwargs)

def plot_losses(*args, **kwargs):  # called inside write(tmp): the new folder is half-written
    pause("write")
    return real_plot(*args, **kwargs)

class Os:  # gpt2mini/checkpoint.py's view of the os module: pauses around atomic_save's two renames
    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        os.replace(src, dst)
        if ".old-" in str(dst):
            pause("between")  # the previous folder is moved aside, the new one not yet in place
        elif ".partial-" in str(src):
            pause("after")  # the new folder is in place, the previous one not yet deleted

loop.save_run, checkpoint.plot_losses, checkpoint.os = save_run, plot_losses, Os()
sys.exit(train.main(sys.argv[1:]))
"""


def start_child(tmp_path, folder, phases, steps=100, extra=()):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        PAUSE_PHASES=",".join(phases),
        PAUSE_AT_SAVE="2",
        PAUSE_GO=str(tmp_path / "go"),
    )
    args = [*CHILD_ARGS, "--steps", str(steps), "--eval_interval", "2", "--save", str(folder), *extra]
    return subprocess.Popen([sys.executable, str(script), *args], env=env, stderr=subprocess.PIPE, text=True)


def debris(parent: Path) -> list[Path]:
    """What a save left beside the folder: a partial new folder or the old one moved aside. (A killed run's lock file,
    `.run.lock`, is not debris: the kernel released its lock, and the next run on the folder reuses and removes it.)"""
    return list(parent.glob(".run.partial-*")) + list(parent.glob(".run.old-*"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def step_of(folder: Path) -> int:
    return json.loads((folder / C.STATE_FILE).read_text())["step"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "phase, survivor",
    [
        ("write", "previous"),  # the new folder half-written beside the old one
        ("between", "previous"),  # the old folder moved aside, the new one not yet in place: no folder at all
        ("after", "new"),  # the new folder in place, the old one not yet deleted
    ],
)
def test_sigkill_during_a_save_leaves_a_loadable_resumable_checkpoint(phase, survivor, tmp_path):
    folder = tmp_path / "run"
    proc = start_child(tmp_path, folder, [phase])
    wait_for_line(proc, f"PAUSED {phase}")
    aside = list(tmp_path.glob(".run.old-*"))
    expected = snapshot(aside[0] if phase == "between" else folder)  # what must be there after the kill
    assert step_of(folder if phase != "between" else aside[0]) == (4 if survivor == "new" else 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert debris(tmp_path)  # the kill left debris of the save behind

    model, tok = C.load_model_folder(folder)  # every loader recovers first
    assert snapshot(folder) == expected  # byte for byte the checkpoint that was complete
    assert not debris(tmp_path)
    step = step_of(folder)
    result = train(resume_settings(folder, steps=step + 2, progress=False))
    assert result["step"] == step + 2


@pytest.mark.slow
def test_sigkill_at_random_moments_always_leaves_a_loadable_checkpoint(tmp_path):
    """Train with a save after every step (most of the time goes into saving) and kill at random moments."""
    folder, rng, steps = tmp_path / "run", random.Random(8), []
    fresh = [*CHILD_ARGS, "--steps", "100000", "--eval_interval", "1", "--log_interval", "1", "--save", str(folder)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for _ in range(3):
        args = ["--resume", str(folder), "--no_progress"] if (folder / C.STATE_FILE).exists() else fresh
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args], env=env, stderr=subprocess.PIPE, text=True
        )
        wait_for_line(proc, "Ctrl-C saves a checkpoint")
        deadline = time.monotonic() + 120  # on a busy machine the first save can take a while: kill only after it
        while not (folder / C.STATE_FILE).exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.3, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if not folder.exists() and not list(tmp_path.glob(".run.old-*")):
            assert not steps  # killed before the first save was complete: nothing to keep yet
            C.recover_interrupted_save(folder)
            continue
        model, tok = C.load_model_folder(folder)  # checksums verified too
        assert not debris(tmp_path)
        steps.append(step_of(folder))
        assert steps == sorted(steps)  # never back to an older checkpoint
        assert len(C.read_metrics(folder)) > 0
    assert steps and steps[-1] > 0
    result = train(resume_settings(folder, steps=steps[-1] + 1, progress=False))
    assert result["step"] == steps[-1] + 1


@pytest.mark.slow
def test_loading_a_folder_while_train_py_saves_it_does_not_break_the_save(tmp_path):
    """A reader (the lab, --generate, publish) may look while a save is half done: it must not 'recover' a live
    process's folders, which would make that save fail or lose it."""
    folder = tmp_path / "run"
    proc = start_child(tmp_path, folder, ["write", "between"], steps=4)
    wait_for_line(proc, "PAUSED write")
    C.load_model_folder(folder)  # the previous checkpoint, while the new one is being written beside it
    assert list(tmp_path.glob(".run.partial-*"))  # left alone: its owner is alive
    (tmp_path / "go-write").touch()
    wait_for_line(proc, "PAUSED between")
    with pytest.raises(C.UsageError, match="no model folder"):  # the moment with no folder: an error, no damage
        C.load_model_folder(folder)
    assert list(tmp_path.glob(".run.old-*")) and list(tmp_path.glob(".run.partial-*"))  # both left alone
    (tmp_path / "go-between").touch()
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0, err[-3000:]
    assert step_of(folder) == 4 and not debris(tmp_path)
    C.load_model_folder(folder)


# ---------------------------------------------------------------------------------------------------------------------
# Nothing lost: a save never deletes what it did not write; what it cannot do is refused before training


def train_py(*args, tiny=True, cwd=None, timeout=300, **popen):
    """train.py in a real process (with the tiny model's flags unless it resumes)."""
    cmd = [sys.executable, str(ROOT / "train.py"), *(CHILD_ARGS if tiny else ["--no_progress"]), *args]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **popen)


def tree(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def test_save_refuses_a_folder_that_is_not_a_checkpoint_and_touches_nothing(tmp_path):
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "thesis.txt").write_text("thesis")
    (notes / "sub" / "data.csv").write_text("1,2")
    before, around = tree(notes), sorted(p.name for p in tmp_path.iterdir())
    out = train_py("--steps", "1", "--save", str(notes))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: {notes} already holds files that are not a GPT-2 mini checkpoint (sub, thesis.txt): nothing was "
        "written; save into a new or empty folder"
    ]
    assert tree(notes) == before and sorted(p.name for p in tmp_path.iterdir()) == around


def test_files_the_user_keeps_in_a_checkpoint_survive_every_save(tmp_path):
    folder = tmp_path / "run"
    assert train_py("--steps", "2", "--eval_interval", "2", "--save", str(folder)).returncode == 0
    (folder / "my notes.txt").write_text("keep me")
    (folder / "plots").mkdir()
    (folder / "plots" / "a.png").write_bytes(b"png")
    out = train_py("--resume", str(folder), "--steps", "6", "--eval_interval", "2", tiny=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert step_of(folder) == 6  # saved over twice more
    assert (folder / "my notes.txt").read_text() == "keep me" and (folder / "plots" / "a.png").read_bytes() == b"png"
    assert not debris(tmp_path)


def test_an_empty_folder_is_saved_into(tmp_path):
    (tmp_path / "empty").mkdir()
    assert train_py("--steps", "1", "--save", str(tmp_path / "empty")).returncode == 0
    assert (tmp_path / "empty" / "model.safetensors").exists()


def test_a_mount_point_is_refused_at_start_and_a_failed_rename_leaves_nothing_behind(tmp_path, monkeypatch):
    folder = tmp_path / "mnt"
    folder.mkdir()
    monkeypatch.setattr(C.os.path, "ismount", lambda p: Path(p) == folder)
    with pytest.raises(C.UsageError, match="is a mount point, which a save cannot replace: save into a folder inside"):
        C.check_save_target(folder, 1000)
    # and should a rename fail anyway (EBUSY, as for a mount point), the previous folder stays and no partial is left
    train(TrainSettings(**(TINY | {"save": str(tmp_path / "run"), "steps": 2, "eval_interval": 2})))
    before = tree(tmp_path / "run")
    real = os.replace

    def busy(src, dst):
        if Path(src) == tmp_path / "run":
            raise OSError(16, "Device or resource busy")
        return real(src, dst)

    monkeypatch.setattr(C.os, "replace", busy)
    with pytest.raises(C.SaveError, match="Device or resource busy"):
        train(resume_settings(tmp_path / "run", steps=4, progress=False))
    assert tree(tmp_path / "run") == before and not debris(tmp_path)


@pytest.mark.parametrize(
    "where, message",
    [("/proc/gpt2mini-run", "/proc cannot be written"), ("/sys/gpt2mini/run", "/sys cannot be written")],
)
def test_a_place_that_cannot_be_written_is_refused_before_training(where, message):
    out = train_py("--steps", "1", "--save", where)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr
    assert "training steps" not in out.stderr


def test_too_little_disk_for_one_checkpoint_is_refused_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(C.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 5000, 5000))
    assert T.main([*CHILD_ARGS, "--steps", "1", "--save", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one checkpoint needs about" in err[0] and "MB free" in err[0]
    assert list(tmp_path.iterdir()) == []


FULL_DISK = """
import errno, sys
sys.path.insert(0, {root!r})
import train
from gpt2mini import checkpoint

real = checkpoint.plot_losses
saves = [0]

def plot_losses(*args, **kwargs):  # inside the second save, after the weights are written: the disk fills up
    saves[0] += 1
    if saves[0] == 2:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(*args, **kwargs)

checkpoint.plot_losses = plot_losses
sys.exit(train.main(sys.argv[1:]))
"""


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    folder = tmp_path / "run"
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK.format(root=str(ROOT)))
    args = [*CHILD_ARGS, "--steps", "6", "--eval_interval", "2", "--save", str(folder)]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: cannot save {folder}: No space left on device; the last good checkpoint (step 2) is kept in {folder}"
    )
    assert "Traceback" not in out.stderr and step_of(folder) == 2 and not debris(tmp_path)
    C.load_model_folder(folder)  # and it loads


def test_a_second_process_saving_to_the_same_folder_is_refused(tmp_path):
    folder = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *CHILD_ARGS, "--steps", "100000", "--save", str(folder)],
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(first, "training steps")
        second = train_py("--steps", "2", "--save", str(folder))
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: {folder} is being trained into by process {first.pid}: wait for it, or save elsewhere"
        ]
    finally:
        first.kill()
        first.communicate(timeout=60)
    assert train_py("--steps", "2", "--save", str(folder)).returncode == 0  # the lock went with the process


def test_resuming_on_another_corpus_is_refused(tmp_path, capsys):
    folder = tmp_path / "run"
    assert T.main([*CHILD_ARGS, "--steps", "2", "--save", str(folder)]) == 0
    capsys.readouterr()
    assert T.main(["--resume", str(folder), "--steps", "4", "--corpus", "wagahai", "--no_progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {folder} was trained with another vocabulary than wagahai's (") and "\n" not in err
    assert "start a new run with --load" in err and step_of(folder) == 2


@pytest.mark.parametrize(
    "sizes, named",
    [
        ({"n_embd": 20000, "n_head": 4}, "n_embd 20,000, but transformer.wte.weight is"),
        ({"n_layer": 100000}, "n_layer 100,000, but transformer.h.1 is its last layer"),
        ({"vocab_size": 50_000_000}, "vocab_size 50,000,000, but transformer.wte.weight is"),
        ({"n_positions": 10**9}, "n_positions 1,000,000,000, but transformer.wpe.weight is"),
        ({"n_inner": 10**8}, "inner_dim 100,000,000, but transformer.h.0.mlp.c_fc.weight is"),
    ],
)
def test_huge_sizes_in_config_json_are_refused_before_anything_is_allocated(sizes, named, saved, tmp_path):
    import resource
    import time

    folder = tmp_path / "huge"
    shutil.copytree(saved, folder)
    edit_config(**sizes)(folder)
    rss, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    with pytest.raises(C.UsageError) as caught:
        C.load_model_folder(folder)
    assert "config.json does not match" in str(caught.value) and named in str(caught.value)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss  # KiB: the process's high-water mark
    assert time.monotonic() - start < 5 and grown < 200_000


def test_an_oversized_tokenizer_json_is_refused_unread(saved, tmp_path):
    import time

    folder = tmp_path / "big"
    shutil.copytree(saved, folder)
    with open(folder / "tokenizer.json", "ab") as f:
        f.truncate(49_000_000)  # 49 MB: a sparse file, cheap to make, slow to parse
    start = time.monotonic()
    with pytest.raises(C.UsageError, match=r"tokenizer\.json is 49\.0 MB, more than any GPT-2 mini tokenizer\.json"):
        C.load_model_folder(folder)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("preset", ["transformer-2017", "llama"])  # between them, every lineage switch
def test_a_lineage_folder_trains_saves_and_loads_with_its_checks(preset, tmp_path):
    from configuration_gpt2mini import PRESETS

    folder = tmp_path / preset
    train(TrainSettings(**(TINY | {"save": str(folder), "steps": 2, "eval_interval": 2}), switches=PRESETS[preset]))
    model, _ = C.load_model_folder(folder)
    assert model.config.ablations == PRESETS[preset]
    with pytest.raises(C.UsageError, match="inner_dim 100, but transformer.h.0.mlp.c_fc.weight is"):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"n_inner": 100}))
        C.load_model_folder(folder)
