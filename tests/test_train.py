"""train.py: a short run learns and saves a loadable folder; resume is exact; saves are atomic; the blog's command
line works; distributed training equals single-process training; bad input gets one clear line and exit code 2."""

import ast
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train as T
from conftest import ROOT, SAMPLE_TEXT, wait_for_line
from gpt2mini import checkpoint as C
from gpt2mini.cli import build_parser
from gpt2mini.corpus import load_corpus, train_val_split
from gpt2mini.tokenizer import encode
from gpt2mini.training import loop
from gpt2mini.training.batches import Batches
from gpt2mini.training.devices import Dist
from gpt2mini.training.evaluation import lm_loss, split_loss
from gpt2mini.training.loop import NonFiniteLoss, train
from gpt2mini.training.optim import lr_at, make_optimizer
from gpt2mini.training.settings import (
    ARCHITECTURE,
    TrainSettings,
    default_save_dir,
    repeat_command,
    resume_settings,
    switches_from_flags,
)

TINY = dict(
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    batch_size=8,
    eval_iters=2,
    sample_chars=20,
    progress=False,
    warmup=5,
    lr=1e-2,
    min_lr_ratio=0.1,
)


TINY_ARGS = "--n_layer 1 --n_head 2 --n_embd 16 --block_size 16 --batch_size 2 --no_progress".split()


def run_train(tmp_path, name="run", **kw):
    settings = TrainSettings(**(TINY | {"save": str(tmp_path / name)} | kw))
    return train(settings)


def metrics(folder):
    return [json.loads(line) for line in (Path(folder) / C.METRICS_FILE).read_text().splitlines()]


def test_short_run_lowers_the_loss_and_writes_a_loadable_folder(tmp_path):
    result = run_train(tmp_path, steps=60, eval_interval=10, log_interval=5)
    folder = Path(result["folder"])
    evals = [m for m in metrics(folder) if "val_loss" in m]
    assert [m["step"] for m in evals] == [0, 10, 20, 30, 40, 50, 60]
    assert abs(evals[0]["val_loss"] - 5.78) < 0.1  # ln(323) at initialisation
    assert evals[-1]["val_loss"] < 3.45  # learnt at least the character frequencies (unigram entropy: about 3.3)
    for m in evals:
        assert len(m["attn_entropy"]) == 2 and len(m["resid_norm"]) == 2
    logged = [m for m in metrics(folder) if "loss" in m]
    assert {"step", "loss", "lr", "grad_norm", "grad_norm_layers", "tokens_per_s", "elapsed_s"} <= set(logged[0])
    for m in logged:  # embeddings, 2 blocks, head; clipping comes after, so they add up to the logged total
        assert len(m["grad_norm_layers"]) == 4
        assert sum(g * g for g in m["grad_norm_layers"]) ** 0.5 == pytest.approx(m["grad_norm"], rel=1e-3)
    assert all(0 <= m["input_dependence"] for m in evals)
    assert len(logged) == 12
    files = {p.name for p in folder.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.jsonl",
        "loss_curve.png",
        C.STATE_FILE,
        C.OPTIMIZER_FILE,
    } <= files
    assert not [f for f in files if f.endswith(".py")]  # a model folder holds no code
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)  # the classes `import gpt2mini` registered
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.config.n_positions == 32 and len(tok) == model.config.vocab_size == 323
    # the folder's weights are the final ones: its loss on the fixed validation batches is the logged one
    val = train_val_split(load_corpus("shakespeare"))[1]
    ids = encode(tok, val)
    assert abs(split_loss(model, ids, 32) - evals[-1]["val_loss"]) < 0.15
    assert not list(tmp_path.glob(".run.*"))  # no leftovers of the atomic swap


def test_resume_continues_exactly(tmp_path):
    # stops inside the short-window phase (steps 1-18) and resumes across its end
    kw = dict(steps=24, eval_interval=6, log_interval=2, dropout=0.1, short_context=8, short_fraction=0.75)
    straight = run_train(tmp_path, "straight", **kw)
    first = run_train(tmp_path, "halves", stop_at=12, **kw)
    assert first["stopped"] and first["step"] == 12
    state = json.loads((tmp_path / "halves" / C.STATE_FILE).read_text())
    assert state["step"] == 12
    second = train(resume_settings(tmp_path / "halves", progress=False))
    assert second["step"] == straight["step"] == 24
    strip = [
        {k: v for k, v in m.items() if k not in ("tokens_per_s", "elapsed_s")} for m in metrics(tmp_path / "straight")
    ]
    resumed = [
        {k: v for k, v in m.items() if k not in ("tokens_per_s", "elapsed_s")} for m in metrics(tmp_path / "halves")
    ]
    assert resumed == strip  # same losses, learning rates and gradient norms at every logged step
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "halves" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_short_windows_keep_tokens_per_step_and_place_windows_inside_the_context():
    ids = torch.arange(1000, dtype=torch.int32)
    full = Batches(ids, ids, 32, 4, seed=0, dist=Dist(), device=torch.device("cpu"))
    x, y, pos = full.sample("train")
    assert x.shape == (4, 32) and pos is None
    x, y, pos = full.sample("train", window=8)
    assert x.shape == (16, 8) and pos.shape == (16, 8)  # 4 x 32 tokens either way
    assert torch.equal(y, x + 1)  # targets are the next characters
    assert torch.equal(pos - pos[:, :1], torch.arange(8).expand(16, 8))  # consecutive positions
    assert pos.min() >= 0 and pos.max() < 32
    assert len(set(pos[:, 0].tolist())) > 3  # placed at many offsets, so every position embedding trains
    # distributed: the ranks' slices make up the single-process batch with the same global size
    single = Batches(ids, ids, 32, 8, seed=3, dist=Dist(), device=torch.device("cpu")).sample("train", window=8)
    parts = [
        Batches(ids, ids, 32, 4, seed=3, dist=Dist(rank=r, world=2), device=torch.device("cpu")).sample(
            "train", window=8
        )
        for r in range(2)
    ]
    for i in range(3):
        assert torch.equal(torch.cat([p[i] for p in parts]), single[i])


def test_short_windows_reach_every_position_embedding(tok):
    from conftest import tiny_model

    model = tiny_model(tok, n_positions=32).train()
    ids = torch.tensor(tok(SAMPLE_TEXT * 20)["input_ids"], dtype=torch.int32)
    batches = Batches(ids, ids, 32, 4, seed=0, dist=Dist(), device=torch.device("cpu"))
    x, y, pos = batches.sample("train", window=8)
    lm_loss(model, x, y, pos).backward()
    reached = model.transformer.wpe.weight.grad.abs().sum(-1) > 0
    assert reached[8:].sum() > 10  # positions past the window's length train too
    model.zero_grad()
    lm_loss(model, x, y).backward()  # the same windows counted from 0 reach only the first 8
    assert (model.transformer.wpe.weight.grad.abs().sum(-1) > 0).nonzero().max() == 7


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = lr_at
    monkeypatch.setattr(loop, "lr_at", lambda step, s: float("inf") if step >= 6 else real(step, s))
    with pytest.raises(NonFiniteLoss, match=r"step 8.*last good checkpoint \(step 5\)"):
        run_train(tmp_path, steps=20, eval_interval=5, grad_clip=0.0)
    model, _ = C.load_model_folder(tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert json.loads((tmp_path / "run" / C.STATE_FILE).read_text())["step"] == 5


def test_lr_schedule_warms_up_then_decays_to_a_fraction_of_the_peak():
    for peak in (1e-3, 4e-3):
        s = TrainSettings(steps=100, warmup=10, lr=peak, min_lr_ratio=0.1)
        lrs = [lr_at(i, s) for i in range(100)]
        assert lrs[0] < lrs[5] < lrs[9] <= peak
        assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
        assert abs(lr_at(100, s) - peak / 10) < 1e-12  # the shape is the same at every peak
    low = TrainSettings(steps=100, warmup=10, lr=1e-3)
    high = TrainSettings(steps=100, warmup=10, lr=4e-3)
    assert all(abs(4 * lr_at(i, low) - lr_at(i, high)) < 1e-12 for i in range(101))


def test_a_run_saved_with_an_absolute_min_lr_resumes_with_the_same_schedule(tmp_path):
    run_train(tmp_path, steps=4, eval_interval=2, lr=2e-3)
    state_file = tmp_path / "run" / C.STATE_FILE
    state = json.loads(state_file.read_text())
    settings = state["settings"]
    del settings["min_lr_ratio"]
    settings["min_lr"] = 5e-4  # how older runs saved it
    state_file.write_text(json.dumps(state))
    s = resume_settings(tmp_path / "run", steps=8)
    assert s.min_lr_ratio == pytest.approx(0.25)


def test_weight_decay_only_on_matrices():
    from conftest import tiny_model

    opt = make_optimizer(tiny_model(), TrainSettings(), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_ablation_flags_reach_the_config(tmp_path, capsys):
    args = TINY_ARGS + "--steps 2 --eval_iters 1 --sample_chars 5".split()
    flags = [
        (["--disable_residual", "1"], {"use_residual": False}),
        (["--disable_attention", "1"], {"use_attention": False}),
        (["--disable_mlp", "1"], {"use_mlp": False}),
        (["--ln_style", "post"], {"ln_style": "post"}),
        (["--ln_style", "none"], {"ln_style": "none"}),
        (["--disable_position_embeddings", "1"], {"use_position_embeddings": False}),
        (["--untie_embeddings", "1"], {"tie_word_embeddings": False}),
    ]
    for extra, expected in flags:
        out = tmp_path / "_".join(extra).strip("-")
        assert T.main(args + extra + ["--save", str(out)]) == 0
        config = json.loads((out / "config.json").read_text())
        assert {k: config[k] for k in expected} == expected


def cli(*args, cwd=None, stdin=None, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd or ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "model_dir"
    train(TrainSettings(**(TINY | {"save": str(folder), "steps": 30, "eval_interval": 30})))
    return folder


def test_blog_command_line_generate_and_interactive(trained, tmp_path):
    out = cli("--load", str(trained), "--generate", "--prompt", "ROMEO:", "--max_tokens", "40", "--temperature", "0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ROMEO:") and len(out.stdout.rstrip("\n")) >= len("ROMEO:") + 30
    again = cli("--load", str(trained), "--generate", "--prompt", "ROMEO:", "--max_tokens", "40", "--temperature", "0")
    assert again.stdout == out.stdout
    chat = cli("--load", str(trained), "--interactive", "--max_tokens", "20", stdin="First\n吾輩\nquit\nnever read\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count(">>> ") == 3 and "First" in chat.stdout and "never saw" in chat.stdout
    assert "never read" not in chat.stdout  # quit ended the session


@pytest.mark.parametrize(
    "args, message",
    [
        (["--corpus", "klingon"], "unknown corpus 'klingon'"),
        (["--data", "missing.txt"], "corpus file not found: missing.txt"),
        (["--data", "sjis.txt"], "not UTF-8"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--steps", "-5"], "--steps must be a positive integer"),
        (["--load", "nowhere", "--generate"], "no model folder at nowhere"),
        (["--load", "notamodel", "--generate"], "not a GPT-2 mini model folder"),
        (["--resume", "notamodel"], "cannot resume from notamodel"),
        (["--generate"], "need --load"),
        (["--val_fraction", "0"], "--val_fraction must be between 0 and 1, both excluded, got 0.0"),
        (["--val_fraction", "nan"], "--val_fraction must be between 0 and 1, both excluded, got nan"),
        (["--beta2", "1.5"], "--beta2 must be at least 0 and below 1, got 1.5"),
        (["--lr", "nan"], "--lr must be a finite number above 0, got nan"),
        (["--grad_clip", "inf"], "--grad_clip must be a finite number, 0 or more (0: off), got inf"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sjis.txt").write_bytes("吾輩は猫である".encode("cp932") * 100)
    (tmp_path / "notamodel").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert T.main(args + ["--no_progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unseen_prompt_characters_and_a_broken_folder(trained, tmp_path, capsys):
    assert T.main(["--load", str(trained), "--generate", "--prompt", "吾輩は"]) == 2
    err = capsys.readouterr().err
    assert "never saw in training: '吾' '輩' 'は'" in err and "--allow_unseen" in err
    assert (
        T.main(["--load", str(trained), "--generate", "--prompt", "吾輩は", "--allow_unseen", "--max_tokens", "5"]) == 0
    )
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    assert T.main(["--load", str(broken), "--generate"]) == 2
    assert "cannot load" in capsys.readouterr().err
    mismatched = tmp_path / "mismatched"
    shutil.copytree(trained, mismatched)
    from gpt2mini.tokenizer import build_tokenizer

    build_tokenizer("abc").save_pretrained(mismatched)
    assert T.main(["--load", str(mismatched), "--generate"]) == 2
    assert "tokenizer.json has 261 tokens but the model's vocabulary is 323" in capsys.readouterr().err


def test_real_process_bad_input_has_no_traceback(tmp_path):
    out = cli("--steps", "0", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: --steps must be a positive integer, got 0"]
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path):
    args = TINY_ARGS + ["--steps", "100000", "--eval_interval", "100000", "--save", str(tmp_path / "run")]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], env=env, stderr=subprocess.PIPE, text=True)
    # train.py says so once its handler is installed (before the step-0 evaluation); Ctrl-C at once is the hardest
    # timing: it must still finish a step, save it and exit
    wait_for_line(proc, "Ctrl-C saves a checkpoint")
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "stopped at step" in err and "--resume" in err
    step = json.loads((tmp_path / "run" / C.STATE_FILE).read_text())["step"]
    assert step > 0
    result = train(resume_settings(tmp_path / "run", steps=step + 3, progress=False))
    assert result["step"] == step + 3


def test_distributed_step_equals_single_process_step(tmp_path):
    common = "--steps 1 --n_layer 2 --n_head 2 --n_embd 32 --block_size 32 --warmup 0 --no_progress".split()
    common += ["--eval_iters", "1", "--sample_chars", "0"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp = subprocess.run(
        [*torchrun, str(ROOT / "train.py"), *common, "--batch_size", "3", "--save", str(tmp_path / "ddp")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = cli(*common, "--batch_size", "6", "--save", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    a = load_file(tmp_path / "ddp" / "model.safetensors")
    b = load_file(tmp_path / "single" / "model.safetensors")
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-6, rtol=0)
    state = json.loads((tmp_path / "ddp" / C.STATE_FILE).read_text())
    assert state["world_size"] == 2 and state["tokens_per_step"] == 6 * 32


def test_switch_flags_make_the_config_and_the_folder_name():
    args = build_parser().parse_args(["--disable_residual", "1", "--ln_style", "post", "--untie_embeddings", "0"])
    switches = switches_from_flags(vars(args))
    assert switches == {"use_residual": False, "ln_style": "post"}
    s = TrainSettings(switches=switches)
    assert default_save_dir(s) == str(Path("runs") / "shakespeare-residual_off-post_ln")
    assert "--disable_residual 1" in repeat_command(s) and "--ln_style post" in repeat_command(s)
    with pytest.raises(C.UsageError, match="no switch sets use_residual"):
        TrainSettings(switches={"use_residual": "no"}).check()


def test_a_preset_sets_its_switches_and_a_flag_given_with_it_changes_one():
    def switches(*argv):
        return switches_from_flags(vars(build_parser().parse_args(list(argv))))

    llama = {"norm_style": "rmsnorm", "position_style": "rope", "mlp_style": "swiglu", "use_bias": False}
    assert switches("--preset", "llama") == llama
    assert switches("--preset", "llama", "--disable_bias", "0") == {k: v for k, v in llama.items() if k != "use_bias"}
    assert switches("--preset", "llama", "--norm_style", "layernorm")["position_style"] == "rope"
    assert "norm_style" not in switches("--preset", "llama", "--norm_style", "layernorm")
    assert default_save_dir(TrainSettings(switches=llama)) == str(Path("runs") / "shakespeare-llama")
    with pytest.raises(C.UsageError, match="these settings do not make a model: .*needs use_position_embeddings"):
        TrainSettings(switches=llama | {"use_position_embeddings": False}).check()
    assert "preset" in ARCHITECTURE  # so `--resume DIR --preset X` is refused like any architecture flag


def test_a_resumed_run_keeps_its_architecture_and_old_state_files_still_resume(tmp_path, capsys):
    run_train(tmp_path, steps=2, eval_interval=2, switches={"use_attention": False})
    folder = tmp_path / "run"
    assert T.main(["--resume", str(folder), "--steps", "4", "--disable_residual", "1", "--no_progress"]) == 2
    assert "keeps its architecture; drop --disable_residual" in capsys.readouterr().err
    # a folder saved when each switch had its own setting (disable_attention: 1) resumes with the same switches
    state = json.loads((folder / C.STATE_FILE).read_text())
    settings = state["settings"]
    del settings["switches"]
    settings |= {"disable_attention": 1, "disable_residual": 0, "ln_style": None}
    (folder / C.STATE_FILE).write_text(json.dumps(state))
    assert resume_settings(folder, steps=4).switches == {"use_attention": False}


def test_the_samples_printed_while_training_are_what_the_saved_checkpoint_writes(tmp_path, capsys):
    # the second sample is the one a decoder that kept copies of the first sample's weights got wrong (fused AdamW
    # on the CPU updates the weights without bumping their version counter)
    folder, prompt = tmp_path / "run", "ROMEO:"
    args = TINY_ARGS + ["--steps", "40", "--eval_interval", "20", "--eval_iters", "1", "--lr", "3e-2", "--warmup", "0"]
    assert T.main(args + ["--sample_chars", "40", "--sample_prompt", prompt, "--save", str(folder)]) == 0
    printed = [line.strip() for line in capsys.readouterr().err.splitlines() if line.startswith("  '")]
    assert len(printed) == 2
    again = ["--temperature", "0.8", "--top_k", "40", "--seed", "0", "--max_tokens", "40", "--allow_unseen"]
    assert T.main(["--load", str(folder), "--generate", "--prompt", prompt, *again]) == 0
    assert capsys.readouterr().out == ast.literal_eval(printed[-1]) + "\n"


def test_a_bpe_run_trains_resumes_and_reports_bits_per_character(tmp_path, capsys):
    kw = dict(tokenizer="bpe", vocab_size=300, steps=8, eval_interval=4)
    straight = run_train(tmp_path, "bpe", **kw)
    assert Path(straight["folder"]).name == "bpe"
    model, tok = C.load_model_folder(tmp_path / "bpe")
    assert len(tok) == model.config.vocab_size == 300
    half = run_train(tmp_path, "halves", stop_at=4, **kw)
    assert half["stopped"]
    train(resume_settings(tmp_path / "halves", progress=False))  # the same BPE is learned again: it resumes
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("bpe", "halves"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert T.main(["--load", str(tmp_path / "bpe"), "--evaluate"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # bits per character: the loss per token spread over the characters its tokens hold
    assert row["bits_per_char"] < row["val_loss"] / math.log(2)
    assert default_save_dir(TrainSettings(tokenizer="bpe")) == "runs/shakespeare-bpe2048"
