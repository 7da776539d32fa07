"""ablate.py on a tiny budget: every artefact, reuse of finished runs, the report, shipping, bad input."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import ablate  # noqa: E402
from configuration_gpt2mini import variant_label
from conftest import ROOT

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
    ]
    assert ablate.main(args) == 0
    return root, args


def test_every_variant_and_artefact(ablation):
    root, _ = ablation
    out = root / "out" / "text"
    result = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in result["rows"]] == list(ablate.VARIANTS)
    for row in result["rows"]:
        folder = out / row["variant"]
        assert (folder / "model.safetensors").exists() and (folder / "metrics.jsonl").exists()
        assert row["steps"] == 6 and row["val_split"] > 0 and row["tokens_per_s"] > 0
        assert row["val_end"] is not None and row["val_100"] is None  # the table's step 100 was never reached
        assert isinstance(row["sample"], str) and len(row["sample"]) > 0
    params = {r["variant"]: r["parameters"] for r in result["rows"]}
    assert params["untied"] > params["baseline"] > params["mlp_off"]
    assert params["attention_off"] < params["baseline"]
    switches = {r["variant"]: r["switches"] for r in result["rows"]}
    assert switches["baseline"] == {}
    assert switches["residual_off"] == {"use_residual": False}
    assert switches["post_ln"] == {"ln_style": "post"}
    for name in ("results.md", "samples.md", "loss_curves.png", "attention.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "results.md").read_text()
    assert all(variant_label(name) in table for name in ablate.VARIANTS)
    ref = result["reference"]
    assert ref["bigram"] < ref["unigram"]  # English letters depend on the one before
    assert "*character frequencies only (unigram)*" in table and "*previous character only (bigram)*" in table
    for line in table.splitlines():
        if line.startswith("|") and "---" not in line:
            assert line.count("|") == table.splitlines()[0].count("|"), line  # every row fills every column


def test_variants_share_seed_data_and_recipe_and_differ_by_one_switch(tmp_path):
    from dataclasses import asdict

    base = ablate.TrainSettings(steps=123, lr=2e-3, seed=9)
    reference = asdict(ablate.variant_settings(base, "baseline", tmp_path / "baseline"))
    for name, switches in ablate.VARIANTS.items():
        s = asdict(ablate.variant_settings(base, name, tmp_path / name))
        changed = {k for k in s if s[k] != reference[k]}
        assert changed <= {"save", "switches"}, name
        assert s["switches"] == switches and len(switches) == (name != "baseline"), name


def test_reference_losses_and_their_wording():
    text = "abababababababab" * 50 + "cacacacacacacaca" * 50
    ref = ablate.reference_losses(text[:1200], text[1200:])
    assert ref["bigram"] < ref["unigram"]
    assert "unigram level" in ablate.yardstick(ref["unigram"] + 0.01, ref)
    assert "bigram level" in ablate.yardstick(ref["bigram"], ref)
    assert "worse than character frequencies" in ablate.yardstick(ref["unigram"] + 1, ref)
    assert "uses more than the current character" in ablate.yardstick(ref["bigram"] - 0.5, ref)


def test_report_links_its_figures_and_states_the_command(ablation):
    root, args = ablation
    report = (root / "docs" / "ablations.md").read_text()
    assert "python ablate.py" in report and "--data" in report
    assert "Hardware:" in report and "Wall time:" in report
    for line in report.splitlines():
        if line.startswith("!["):
            target = line[line.index("(") + 1 : line.index(")")]
            assert (root / "docs" / target).exists(), target
    assert report.count("**") >= 2 * len(ablate.VARIANTS)


def test_shipped_folders_are_small_fp16_and_load_as_float32(ablation):
    from transformers import AutoModelForCausalLM

    root, _ = ablation
    for name in ablate.SHIPPED:
        folder = root / "models" / "text" / name
        assert not (folder / "optimizer.safetensors").exists()
        assert {t.dtype for t in load_file(folder / "model.safetensors").values()} == {torch.float16}
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
        assert next(model.parameters()).dtype == torch.float32
        original = ablate.load_model_folder(root / "out" / "text" / name)[0]
        assert torch.allclose(model.transformer.wte.weight, original.transformer.wte.weight, atol=1e-3)


def test_second_run_reuses_finished_variants(ablation, capsys):
    root, args = ablation
    assert ablate.main([*args[:4], "--variants", "baseline,attention_off", *TINY]) == 0
    result = json.loads((root / "out" / "text" / "results.json").read_text())
    assert result["trained_now"] == []
    assert "reusing the finished run" in capsys.readouterr().err


def test_changed_recipe_retrains(tmp_path):
    data = tmp_path / "t.txt"
    data.write_text((ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:4000], encoding="utf-8")
    base = ["--data", str(data), "--out", str(tmp_path / "out"), "--variants", "baseline", *TINY]
    assert ablate.main(base) == 0
    assert ablate.main([*base, "--lr", "1e-3"]) == 0
    result = json.loads((tmp_path / "out" / "t" / "results.json").read_text())
    assert result["trained_now"] == ["baseline"] and result["recipe"]["lr"] == 1e-3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "baseline,wings_off"], "unknown variant wings_off"),
        (["--corpus", "klingon"], "unknown corpus klingon"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--jobs", "0"], "--jobs must be a positive integer"),
        (["--data", "/nonexistent/file.txt"], "/nonexistent/file.txt"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "ablate.py"), "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_variant_folder_that_is_not_a_checkpoint_is_refused_and_kept(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text((ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:6000], encoding="utf-8")
    mine = tmp_path / "out" / "text" / "baseline"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    args = ["--data", str(data), "--out", str(tmp_path / "out"), "--variants", "baseline", *TINY]
    assert ablate.main(args) == 2
    assert "already holds files that are not a GPT-2 mini checkpoint (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "mine"
