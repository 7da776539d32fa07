"""The models shipped in models/ are what their names say: they load the Hugging Face way as float32 (through the
classes `gpt2mini` registers: a model folder holds no code, so a model edit re-ships nothing), carry the switches
their names claim, are small, and rank as they should on held-out text."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from configuration_gpt2mini import variants
from conftest import ROOT
from experiments import (
    ablate,
    lineage,
)
from gpt2mini.corpus import load_corpus, train_val_split
from gpt2mini.report.records import SWEEP_KEYS
from gpt2mini.study.variants import LINEAGE, NAMED
from gpt2mini.tokenizer import encode
from gpt2mini.training.settings import TrainSettings

MODELS = ROOT / "models"
CORPORA = ("shakespeare", "wagahai")
SHIPPED = (*ablate.SHIPPED, *lineage.SHIPPED)  # the ablations' variants and the lineage's presets


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_every_promised_model_is_there_and_the_folder_is_small():
    for corpus in CORPORA:
        for name in SHIPPED:
            assert (MODELS / corpus / name / "model.safetensors").exists(), f"models/{corpus}/{name} is missing"
    assert folder_bytes(MODELS) < 30e6


@pytest.fixture(scope="module", params=CORPORA)
def shipped(request):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = request.param
    models = {
        name: AutoModelForCausalLM.from_pretrained(MODELS / corpus / name).eval()  # the registered classes
        for name in SHIPPED
    }
    tokenizer = AutoTokenizer.from_pretrained(MODELS / corpus / "baseline")
    return corpus, models, tokenizer


def test_loads_as_float32_from_fp16_files(shipped):
    corpus, models, _ = shipped
    for name, model in models.items():
        stored = load_file(MODELS / corpus / name / "model.safetensors")
        assert {t.dtype for t in stored.values()} == {torch.float16}
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert not (MODELS / corpus / name / "optimizer.safetensors").exists()


def test_switches_match_the_names(shipped):
    corpus, models, _ = shipped
    for name, model in models.items():
        expected = NAMED[name]
        assert model.config.ablations == expected, name
        assert model.config.n_positions == 256 and model.config.n_layer == 4 and model.config.n_embd == 128
        state = json.loads((MODELS / corpus / name / "metrics.jsonl").read_text().splitlines()[-1])
        assert state["step"] == TrainSettings().steps  # trained with the default recipe's budget


@torch.no_grad()
def test_baseline_beats_residual_off_and_attention_off_on_held_out_text(shipped):
    corpus, models, tokenizer = shipped
    _, val_text = train_val_split(load_corpus(corpus))
    ids = encode(tokenizer, val_text)
    windows = torch.stack([ids[i : i + 257] for i in range(len(ids) - 257 - 16 * 1000, len(ids) - 257, 1000)]).long()
    losses = {}
    for name, model in models.items():
        logits = model(windows[:, :-1]).logits
        losses[name] = torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()).item()
    assert losses["baseline"] < losses["residual_off"], losses
    assert losses["baseline"] < losses["attention_off"], losses
    for name in ("baseline", *lineage.SHIPPED):
        assert losses[name] < (2.5 if corpus == "shakespeare" else 5.0), losses


RECORDS = sorted((ROOT / "docs" / "ablations").glob("*_results.json"))


def test_the_report_keeps_a_record_of_each_swept_corpus():
    for corpus in CORPORA:
        assert (ROOT / "docs" / "ablations" / f"{corpus}_results.json").exists(), corpus
        assert f"\n## {corpus}\n" in (ROOT / "docs" / "ablations.md").read_text(), corpus


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.stem)
def test_shipped_models_are_each_variants_best_run_and_the_lab_gets_the_sweep(record):
    r = json.loads(record.read_text())
    corpus = r["corpus"]
    for name in ablate.SHIPPED:
        v = r["variants"][name]
        training = json.loads((MODELS / corpus / name / "training.json").read_text())
        assert training["trial"] == v["best_key"] and training["lr"] == v["best_lr"], name
        assert training["seed"] == r["base_seed"]
    sweep = json.loads((MODELS / corpus / "sweep.json").read_text())
    for n, v in r["variants"].items():
        assert {k: sweep["variants"][n][k] for k in SWEEP_KEYS} == {k: v[k] for k in SWEEP_KEYS}
    assert len(r["lrs"]) >= 5 and r["seeds"] >= 3 and list(r["variants"]) == list(variants())


@pytest.mark.parametrize("corpus", CORPORA)
def test_shipped_presets_are_the_lineages_best_runs(corpus):
    r = json.loads((ROOT / "docs" / "lineage" / f"{corpus}_results.json").read_text())["lineage"]
    sweep = json.loads((MODELS / corpus / "sweep.json").read_text())
    for name in lineage.SHIPPED:
        v = r["variants"][name]
        training = json.loads((MODELS / corpus / name / "training.json").read_text())
        assert training["trial"] == v["best_key"] and training["lr"] == v["best_lr"], name
        assert {k: sweep["variants"][name][k] for k in SWEEP_KEYS} == {k: v[k] for k in SWEEP_KEYS}
    assert len(r["lrs"]) >= 5 and r["seeds"] >= 3 and list(r["variants"]) == LINEAGE


def test_the_published_figures_reproduce_with_todays_code():
    lines = ablate.verify(ROOT / "docs" / "ablations", MODELS)
    assert lines and not [line for line in lines if not line.startswith("ok")], "\n".join(lines)


SCALING = MODELS / "shakespeare" / "scaling"


@torch.no_grad()
def test_the_scaling_sizes_are_what_the_grid_trained_and_reported():
    from experiments import scaling
    from gpt2mini.checkpoint import load_model_folder
    from gpt2mini.training.evaluation import split_loss

    summary = json.loads((SCALING / "scaling.json").read_text())
    reported = json.loads((ROOT / "docs" / "scaling" / "shakespeare_results.json").read_text())
    assert summary["shipped"] == list(scaling.SHIP)
    val_text = train_val_split(load_corpus("shakespeare"))[1]
    for name in summary["shipped"]:
        point = next(p for p in reported["sizes"] if p["name"] == name)
        model, tokenizer = load_model_folder(SCALING / name)
        assert (model.config.n_layer, model.config.n_embd) == tuple(int(v) for v in name.split("x"))
        record = json.loads((SCALING / name / "training.json").read_text())
        assert record["lr"] == point["best_lr"] and record["val_split"] == point["seed_losses"][0]
        loss = split_loss(model.eval(), encode(tokenizer, val_text), model.config.n_positions)
        assert loss == pytest.approx(record["val_split"], abs=ablate.SHIPPED_TOLERANCE)  # fp16 rounding only
