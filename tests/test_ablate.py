"""experiments/ablate.py on a tiny budget (and the shared protocol it runs, gpt2mini.study): every artefact, reuse of
finished runs, the report, shipping, bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from configuration_gpt2mini import variant_label
from conftest import ROOT
from experiments import ablate
from gpt2mini.checkpoint import UsageError, load_model_folder
from gpt2mini.report.records import StudyResult, SweepPoint, TrialRow, VariantSummary
from gpt2mini.study.protocol import edge_trials, summarize_variant
from gpt2mini.study.tables import versus
from gpt2mini.study.trials import (
    ROW_VERSION,
    Trial,
    best_lr,
    cached_row,
    folder_state,
    in_parallel,
    recipe_of,
    trial_settings,
)
from gpt2mini.study.variants import LINEAGE, NAMED, VARIANTS, parse_list
from gpt2mini.training.settings import TrainSettings

TINY = [
    "--steps",
    "6",
    "--eval_interval",
    "3",
    "--eval_iters",
    "1",
    "--n_layer",
    "1",
    "--n_head",
    "2",
    "--n_embd",
    "16",
    "--block_size",
    "16",
    "--batch_size",
    "2",
    "--sample_chars",
    "12",
    "--warmup",
    "2",
]


LRS = ["--lrs", "2e-3,8e-3", "--seeds", "2", "--extend", "0"]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    data = root / "text.txt"
    data.write_text((ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:6000], encoding="utf-8")
    args = [
        "--data",
        str(data),
        "--out",
        str(root / "out"),
        "--report",
        str(root / "docs" / "ablations.md"),
        "--ship",
        str(root / "models"),
        *TINY,
        *LRS,
    ]
    assert ablate.main(args) == 0
    return root, args


def test_every_variant_at_every_lr_then_seeds_at_its_best(ablation):
    root, _ = ablation
    out = root / "out" / "text"
    result = json.loads((out / "results.json").read_text())
    assert list(result["variants"]) == list(VARIANTS) and result["lrs"] == [2e-3, 8e-3]
    keys = {t["key"] for t in result["trials"]}
    for name, v in result["variants"].items():
        sweep = {f"{name}/lr{lr:g}-seed1337" for lr in (2e-3, 8e-3)}
        repeat = f"{name}/lr{v['best_lr']:g}-seed1338"
        assert sweep | {repeat} <= keys, name
        assert v["best_lr"] == min(v["sweep"], key=lambda p: p["val_split"])["lr"]
        assert len(v["seed_losses"]) == 2 and v["min"] <= v["mean"] <= v["max"]
        assert isinstance(v["sample"], str) and len(v["sample"]) > 0
    follow_ups = [t for t in result["trials"] if t["changes"]]
    assert len(keys) == len(result["trials"]) == 3 * len(VARIANTS) + len(follow_ups)
    post_ln = result["variants"]["post_ln"]
    failed = sorted(p["lr"] for p in post_ln["sweep"] if p["lr"] not in post_ln["window"])[:2]
    for name in ("post_ln", "baseline"):  # the warm-up follow-up where post-LN failed, and the baseline beside it
        assert sorted(t["lr"] for t in follow_ups if t["variant"] == name) == failed
    assert len(follow_ups) == 2 * len(failed) and all(t["changes"] == {"warmup": 500} for t in follow_ups)
    assert all(t["recipe"]["warmup"] == 500 and t["key"].endswith("-warmup500") for t in follow_ups)
    for row in result["trials"]:
        folder = out / row["key"]
        assert (folder / "model.safetensors").exists() and (folder / "metrics.jsonl").exists()
        assert row["steps"] == 6 and row["val_split"] > 0 and row["tokens_per_s"] > 0
        assert row["recipe"]["lr"] == row["lr"] and row["recipe"]["seed"] == row["seed"]
        assert len(row["grad_norm_layers"]) == 3 and row["input_dependence"] >= 0  # embeddings, 1 block, head
    params = {n: v["parameters"] for n, v in result["variants"].items()}
    assert params["untied"] > params["baseline"] > params["mlp_off"]
    assert params["attention_off"] < params["baseline"]
    switches = {t["variant"]: t["switches"] for t in result["trials"]}
    assert switches["baseline"] == {} and switches["residual_off"] == {"use_residual": False}
    assert switches["post_ln"] == {"ln_style": "post"}
    for name in ("results.md", "samples.md", "lr_sweep.png", "loss_curves.png", "probes.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "results.md").read_text()
    assert all(variant_label(name) in table for name in VARIANTS)
    assert "*character frequencies only (unigram)*" in table and "*previous character only (bigram)*" in table
    for block in table.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        for line in rows:
            assert line.count("|") == rows[0].count("|"), line  # every row fills every column


def test_trials_share_seed_data_and_recipe_and_differ_by_switch_lr_and_seed(tmp_path):
    from dataclasses import asdict

    base = TrainSettings(steps=123, lr=2e-3, seed=9)
    reference = asdict(trial_settings(base, Trial("baseline", 2e-3, 9), tmp_path / "b"))
    for name, switches in VARIANTS.items():
        for lr, seed in ((2e-3, 9), (5e-4, 11)):
            s = asdict(trial_settings(base, Trial(name, lr, seed), tmp_path / name))
            changed = {k for k in s if s[k] != reference[k]}
            assert changed <= {"save", "switches", "lr", "seed"}, name
            assert s["switches"] == switches and len(switches) == (name != "baseline"), name
            assert (s["lr"], s["seed"]) == (lr, seed)


def row(variant, lr, seed, loss, diverged=None, changes=(), **fields) -> TrialRow:
    """A trial's row as `measure` writes one, with the fields a test gives."""
    head = dict(key=Trial(variant, lr, seed, changes).key, variant=variant, lr=lr, seed=seed, version=ROW_VERSION)
    head |= dict(changes=dict(changes), recipe={}, state=[6, 1.0], diverged=diverged, wall_s=1.0, threads=1)
    return TrialRow(**(head | dict(val_split=loss, parameters=10) | fields))


def summary(variant, **fields) -> VariantSummary:
    """A variant's summary with the fields a test gives (the rest: nothing measured)."""
    empty = dict(label=variant_label(variant), best_lr=None, at_edge=False, best_key=None, sweep=[], seed_losses=[])
    empty |= dict(mean=None, std=None, min=None, max=None, window=[], parameters=None)
    return VariantSummary(variant, **(empty | fields))


def study(**fields) -> StudyResult:
    """A protocol's result with the fields a test gives."""
    empty = dict(corpus="x", prompt="", hardware="", wall_s=0.0, jobs=1, lrs=[], seeds=1, extend=0, base_seed=1)
    empty |= dict(steps=6, recipe={}, command=None, reference={}, variants={}, trials=[])
    return StudyResult(**(empty | fields))


def test_best_lr_spread_window_and_ties():
    rows = [
        row("post_ln", 1e-3, 1, 2.05),
        row("post_ln", 2e-3, 1, 3.35),
        row("post_ln", 4e-3, 1, None, "nan"),
        row("post_ln", 1e-3, 2, 2.10),
        row("post_ln", 1e-3, 3, 2.00),
    ]
    assert best_lr(rows[:3]) == 1e-3
    assert best_lr([rows[2]]) is None  # diverged everywhere: no best
    by_key = {r.key: r for r in rows}
    ref = {"unigram": 3.35, "bigram": 2.49}
    v = summarize_variant("post_ln", by_key, (1e-3, 2e-3, 4e-3), 1e-3, 1, 3, ref)
    assert v.window == [1e-3] and v.at_edge  # 1e-3 is the sweep's lowest
    near = {**by_key, rows[1].key: row("post_ln", 2e-3, 1, 2.47)}  # within 0.05 of bigram: "about" it, not below
    assert summarize_variant("post_ln", near, (1e-3, 2e-3, 4e-3), 1e-3, 1, 3, ref).window == [1e-3]
    assert (v.mean, v.min, v.max) == (2.05, 2.0, 2.1) and v.std == pytest.approx(0.05)
    base = summary("baseline", mean=2.08, min=2.06, max=2.1, seed_losses=[2.06, 2.08, 2.1])
    assert "tie" in versus(v, base)
    far = summary("baseline", mean=1.5, min=1.49, max=1.51, seed_losses=[2.06, 2.08, 2.1])
    assert versus(v, far).startswith("+0.550: worse")
    text = ablate.sensitivity(v, {"lrs": [1e-3, 2e-3, 4e-3]})
    assert "1 of the 3 learning rates (0.001)" in text and "diverged at 0.004" in text


def test_report_links_its_figures_states_the_command_and_keeps_the_record(ablation):
    root, args = ablation
    report = (root / "docs" / "ablations.md").read_text()
    assert "python -m experiments.ablate" in report and "--data" in report and "--lrs" in report
    assert "Hardware:" in report and "Wall time:" in report and "thread(s) each" in report
    for line in report.splitlines():
        if line.startswith("!["):
            target = line[line.index("(") + 1 : line.index(")")]
            assert (root / "docs" / target).exists(), target
    assert report.count("**") >= 2 * len(VARIANTS)
    assert "### Testing an explanation" in report
    assert "| lr | post-LN, the recipe | post-LN, warmup 500 | baseline, the recipe | baseline, warmup 500 |" in report
    record = json.loads((root / "docs" / "ablations" / "text_results.json").read_text())
    assert record["variants"].keys() == VARIANTS.keys()


def test_shipped_folders_are_the_best_runs_small_fp16_and_load_as_float32(ablation):
    from transformers import AutoModelForCausalLM

    root, _ = ablation
    result = json.loads((root / "out" / "text" / "results.json").read_text())
    sweep = json.loads((root / "models" / "text" / "sweep.json").read_text())
    assert sweep["variants"].keys() == result["variants"].keys()
    for name in ablate.SHIPPED:
        folder = root / "models" / "text" / name
        v = result["variants"][name]
        assert json.loads((folder / "training.json").read_text())["lr"] == v["best_lr"]
        assert not (folder / "optimizer.safetensors").exists()
        assert {t.dtype for t in load_file(folder / "model.safetensors").values()} == {torch.float16}
        model = AutoModelForCausalLM.from_pretrained(folder)  # no code in the folder: the registered classes
        assert next(model.parameters()).dtype == torch.float32
        original = load_model_folder(root / "out" / "text" / v["best_key"])[0]
        assert torch.allclose(model.transformer.wte.weight, original.transformer.wte.weight, atol=1e-3)
        assert "lm_head.weight" not in load_file(folder / "model.safetensors")  # the tied head is saved once
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
        assert load_model_folder(folder)[0].config.tie_word_embeddings


def test_second_run_reuses_what_it_measured_and_remeasures_a_changed_folder(ablation, capsys):
    root, args = ablation
    assert ablate.main([*args[:4], "--variants", "baseline,attention_off", *TINY, *LRS]) == 0
    err = capsys.readouterr().err
    assert "4 trials: 4 measured before, 0 to measure again, 0 to train" in err
    assert "2 trials: 2 measured before, 0 to measure again, 0 to train" in err
    # the folder changes under the cache (retrained by hand, say): its row is measured again, not reused
    state_file = root / "out" / "text" / "baseline" / "lr0.002-seed1337" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["elapsed_s"] += 1.0
    state_file.write_text(json.dumps(state))
    assert ablate.main([*args[:4], "--variants", "baseline", *TINY, *LRS]) == 0
    assert "2 trials: 1 measured before, 0 to measure again, 1 to train" in capsys.readouterr().err
    # rows measured by an older `measure` are measured again from their folders, keeping what only training knew
    cache_file = root / "out" / "text" / "trials.json"
    cache = json.loads(cache_file.read_text())
    cache["baseline/lr0.008-seed1337"] |= {"version": 0, "wall_s": 123.0, "val_split": None}
    cache_file.write_text(json.dumps(cache))
    assert ablate.main([*args[:4], "--variants", "baseline", *TINY, *LRS]) == 0
    assert "2 trials: 1 measured before, 1 to measure again, 0 to train" in capsys.readouterr().err
    again = json.loads(cache_file.read_text())["baseline/lr0.008-seed1337"]
    assert again["version"] == ROW_VERSION and again["wall_s"] == 123.0 and again["val_split"] > 0


def baseline_only(data, out, lr: str) -> list[str]:
    """The arguments of a tiny run of the baseline alone at one learning rate."""
    return ["--data", str(data), "--out", str(out), "--variants", "baseline", *TINY, "--lrs", lr, "--extend", "0"]


def test_changed_recipe_retrains(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text((ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:4000], encoding="utf-8")
    base = baseline_only(data, tmp_path / "out", "1e-3")
    assert ablate.main([*base, "--seeds", "1"]) == 0
    capsys.readouterr()
    assert ablate.main([*base, "--seeds", "1", "--min_lr_ratio", "0.5"]) == 0
    assert "1 trials: 0 measured before, 0 to measure again, 1 to train" in capsys.readouterr().err
    result = json.loads((tmp_path / "out" / "t" / "results.json").read_text())
    assert result["recipe"]["min_lr_ratio"] == 0.5 and result["trials"][0]["recipe"]["min_lr_ratio"] == 0.5


def test_verify_reproduces_the_record_and_names_what_drifted(tmp_path, capsys):
    tiny = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "16", "--batch_size", "2"]
    common = ["--report", str(tmp_path / "docs" / "ablations.md"), "--ship", str(tmp_path / "models")]
    args = [
        "--out",
        str(tmp_path / "out"),
        "--variants",
        "baseline",
        "--steps",
        "60",
        "--eval_iters",
        "1",
        "--sample_chars",
        "5",
        "--lrs",
        "4e-3",
        "--seeds",
        "1",
        "--extend",
        "0",
        *tiny,
        *common,
    ]
    assert ablate.main(args) == 0
    assert ablate.main(["--verify", *common]) == 0
    out = capsys.readouterr().out
    assert "ok  shakespeare baseline/lr0.004-seed1337 loss at step 50" in out and "all 4 figures reproduced" in out
    record_file = tmp_path / "docs" / "ablations" / "shakespeare_results.json"
    record = json.loads(record_file.read_text())
    row = next(t for t in record["trials"] if t["key"] == "baseline/lr0.004-seed1337")
    row["loss_curve"] = [[s, v + 0.01 if s == 50 else v] for s, v in row["loss_curve"]]  # as if the recipe drifted
    record_file.write_text(json.dumps(record))
    assert ablate.main(["--verify", *common]) == 1
    out = capsys.readouterr().out
    assert "DRIFT  shakespeare baseline/lr0.004-seed1337 loss at step 50" in out and "1 of 4 figures drifted" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "baseline,wings_off"], "unknown variant wings_off"),
        (["--corpus", "klingon"], "unknown corpus klingon"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--jobs", "0"], "--jobs must be a positive integer"),
        (["--seeds", "0"], "--seeds must be a positive integer"),
        (["--lrs", "1e-3,fast"], "--lrs takes comma-separated numbers"),
        (["--lrs", "0,1e-3"], "--lrs must be finite learning rates above 0"),
        (["--data", "/nonexistent/file.txt"], "/nonexistent/file.txt"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.ablate", "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_variant_folder_that_is_not_a_checkpoint_is_refused_and_kept(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text((ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:6000], encoding="utf-8")
    mine = tmp_path / "out" / "text" / "baseline" / "lr0.004-seed1337"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    args = baseline_only(data, tmp_path / "out", "4e-3")
    assert ablate.main(args) == 2
    assert "already holds files that are not a GPT-2 mini checkpoint (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "mine"


def test_in_parallel_starts_nothing_new_after_a_failure(tmp_path):
    import math
    import time
    from pathlib import Path

    def call(item):
        kind, arg = item
        return {"sleep": (time.sleep, arg), "fail": (math.sqrt, arg), "touch": (Path.touch, arg)}[kind]

    kept = []
    items = [("sleep", 0.5), ("fail", -1), ("touch", tmp_path / "a"), ("touch", tmp_path / "b")]
    with pytest.raises(ValueError, match="math domain error"):
        in_parallel(call, items, 2, kept.append)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # queued, never started
    in_parallel(call, items[2:], 2, kept.append)
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists() and kept == [None, None]


def test_a_best_lr_at_the_edge_is_looked_beyond():
    rows = {r.key: r for r in [row("baseline", lr, 1, v) for lr, v in ((1e-3, 2.3), (2e-3, 2.1), (4e-3, 2.0))]}
    rows |= {r.key: r for r in [row("mlp_off", lr, 1, v) for lr, v in ((1e-3, 2.3), (2e-3, 2.1), (4e-3, 2.2))]}
    rows |= {r.key: r for r in [row("residual_off", lr, 1, 3.35) for lr in (1e-3, 2e-3, 4e-3)]}
    swept = {"baseline": [1e-3, 2e-3, 4e-3], "mlp_off": [1e-3, 2e-3, 4e-3], "residual_off": [1e-3, 2e-3, 4e-3]}
    beyond = edge_trials(rows, swept, 1)
    assert beyond == [Trial("baseline", 8e-3, 1), Trial("residual_off", 5e-4, 1)]  # flat: look lower
    assert swept["baseline"] == [1e-3, 2e-3, 4e-3, 8e-3] and swept["mlp_off"] == [1e-3, 2e-3, 4e-3]


def test_a_collapse_is_described_by_what_was_measured():
    early = {"10": [1.0, 1.8, 0.5], "50": [1.0, 0.002, 0.1]}
    base_early = {"10": [1.0, 1.0, 0.5], "50": [1.0, 0.5, 0.1]}
    trials = [
        row("residual_off", 4e-3, 1, 3.344, input_dependence=0.0004, grad_norm_early=early),
        row("baseline", 4e-3, 1, 1.85, input_dependence=1.6, grad_norm_early=base_early),
    ]
    result = study(trials=trials, base_seed=1, reference={"unigram": 3.347, "bigram": 2.486})
    v = summary("residual_off", sweep=[SweepPoint(4e-3, 3.344, None)])
    text = ablate.collapse_evidence(v, result)
    assert "At 0.004 it ended at the unigram level, with an input dependence of 0.000 nats" in text
    assert "(the baseline at those rates: 1.600)" in text
    assert "1.800 vs 1.000 at step 10, 0.002 vs 0.500 at step 50" in text
    assert ablate.collapse_evidence(summary("baseline", sweep=v.sweep), result) is None
    trained = summary("mlp_off", sweep=[SweepPoint(4e-3, 2.2, None)])
    assert ablate.collapse_evidence(trained, result) is None  # it did not collapse: nothing to explain


def test_quick_mode_is_small_goes_to_its_own_folder_and_flags_still_win():
    quick = ablate.parse_args(["--quick"])
    assert (quick.steps, quick.n_embd, quick.lrs, quick.seeds) == (150, 32, "2e-3,8e-3", 2)
    assert quick.out == "runs/ablations-quick"
    assert ablate.parse_args(["--quick", "--steps", "10"]).steps == 10
    plain = ablate.parse_args([])
    assert plain.steps == TrainSettings().steps and plain.out == "runs/ablations" and plain.n_embd is None


def test_a_follow_up_says_whether_the_change_lets_the_variant_train_and_how_that_compares():
    ref = {"unigram": 3.347, "bigram": 2.486}
    trials = [
        row("post_ln", 4e-3, 1, 3.346),
        row("post_ln", 4e-3, 1, 1.878, changes=(("warmup", 500),)),
        row("baseline", 4e-3, 1, 1.835),
        row("baseline", 4e-3, 1, 1.80, changes=(("warmup", 500),)),
    ]
    variants = {"post_ln": summary("post_ln", mean=2.13, min=2.09, max=2.17)}
    result = study(trials=trials, base_seed=1, reference=ref, variants=variants)
    lines = "\n".join(ablate.follow_up_section(result))
    assert "| 0.004 | 3.346 (unigram level) | 1.878 | 1.835 | 1.800 |" in lines
    assert "With warmup 500, post-LN trains at 0.004; its best there, 1.878 at lr 0.004, is below the range" in lines
    assert "and above the baseline's with the same change at that rate (1.800; one seed each)." in lines
    trials[1].val_split = 3.35
    assert "still does not train at 0.004" in "\n".join(ablate.follow_up_section(result))


def test_the_lineage_is_named_by_its_presets_and_reuses_the_variants_with_the_same_config(tmp_path):
    from configuration_gpt2mini import PRESETS

    assert LINEAGE == [
        "transformer-2017",
        "post_ln",
        "baseline",
        "llama",
    ]  # GPT-1 is post-LN, GPT-2 the baseline
    assert parse_list("lineage", NAMED, "variant") == LINEAGE
    assert parse_list("all", NAMED, "variant") == list(VARIANTS)  # all: the ablations
    s = trial_settings(TrainSettings(), Trial("llama", 1e-3, 1337), tmp_path / "llama")
    assert s.switches == PRESETS["llama"] and s.lr == 1e-3
    with pytest.raises(UsageError, match="unknown variant gpt3; .* llama, all or lineage"):
        parse_list("gpt3", NAMED, "variant")


def test_a_trial_recorded_before_a_settings_field_existed_is_still_reused(tmp_path):
    # `tokenizer` came after these rows were written: the run used its default, "char", so the row still holds
    base = TrainSettings(corpus="shakespeare")
    t = Trial("baseline", 2e-3, 1337)
    s = trial_settings(base, t, t.folder(tmp_path))
    old = {k: v for k, v in recipe_of(s).items() if k not in ("tokenizer", "vocab_size")}
    recorded = row("baseline", 2e-3, 1337, None, recipe=old, state=folder_state(t.folder(tmp_path)), parameters=None)
    cache = {t.key: recorded.to_json()}  # as trials.json holds it
    assert cached_row(cache, t, s, t.folder(tmp_path)) == recorded
    cache[t.key]["recipe"] = old | {"tokenizer": "bpe"}  # recorded, and different: trained again
    assert cached_row(cache, t, s, t.folder(tmp_path)) is None
