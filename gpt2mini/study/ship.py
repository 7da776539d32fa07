"""Shipping: a trained run as a small Hugging Face model folder (fp16 weights that load as float32, with the
training.json publish.py's model card reads), each named variant's best run, and the sweep's summary for the lab
(models/<corpus>/sweep.json)."""

import json
import shutil
from pathlib import Path

import torch

from gpt2mini.checkpoint import METRICS_FILE, STATE_FILE, atomic_save, load_model_folder
from gpt2mini.report.records import StudyResult, SweepSummary, TrialRow, read_record, write_record
from gpt2mini.study.variants import NAMED
from gpt2mini.training.settings import TrainSettings, repeat_command


def ship(folder: Path, dest: Path, record: dict) -> dict:
    """Copy a trained variant as a small Hugging Face model folder: fp16 weights, float32 on load, no optimizer; with
    `record` (its learning rate and seed) in training.json."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model, tokenizer = load_model_folder(folder)

    def write(tmp: Path) -> None:
        model.config.dtype = torch.float32  # from_pretrained's dtype="auto" then upcasts the fp16 weights
        # each tensor once: the tied head is the embedding (converted apart, it would be saved twice)
        half = {k: v.to(torch.float16) for k, v in model.state_dict().items() if k not in tied_keys(model)}
        model.save_pretrained(tmp, state_dict=half)
        tokenizer.save_pretrained(tmp)
        for name in (METRICS_FILE, "loss_curve.png"):
            if (folder / name).exists():
                shutil.copy2(folder / name, tmp / name)
        (tmp / "training.json").write_text(json.dumps(record, indent=1) + "\n")

    atomic_save(dest, write)
    return {"folder": str(dest), "bytes": sum(f.stat().st_size for f in dest.iterdir())}


def ship_record(row: TrialRow) -> dict:
    """What a shipped run's training.json says of it: the trial, its learning rate, seed, loss and step, its settings
    and the train.py command that repeats it."""
    return {
        "trial": row.key,
        "lr": row.lr,
        "seed": row.seed,
        "val_split": row.val_split,
        "step": row.steps,
        "settings": row.recipe,
        "command": repeat_command(TrainSettings(**row.recipe)),
    }


def tied_keys(model) -> set[str]:
    """The state-dict keys of tensors that share their storage with an earlier key (the tied output head)."""
    seen, tied = set(), set()
    for key, tensor in model.state_dict().items():
        if tensor.untyped_storage().data_ptr() in seen:
            tied.add(key)
        seen.add(tensor.untyped_storage().data_ptr())
    return tied


def ship_best(result: StudyResult, out: Path, dest: Path, names) -> list[dict]:
    """Ship each named variant's best run (base seed) into dest/<variant>, with what it was trained with
    (training.json: the trial, its settings and the train.py command that repeats it, which publish.py's model card
    reads), and add the sweep's summary of every variant of `result` to dest/sweep.json (for the lab)."""
    shipped = []
    for name in names:
        v = result.variants.get(name)
        if not v or not v.best_key or not (out / v.best_key / STATE_FILE).exists():
            continue
        shipped.append(ship(out / v.best_key, dest / name, ship_record(result.trial(v.best_key))))
    write_sweep_summary(dest / "sweep.json", result)
    return shipped


def write_sweep_summary(path: Path, result: StudyResult) -> None:
    """The sweep's summary for the lab: each variant's sweep and its best, with the command that measured it. The
    variants of an earlier summary stay if it was measured under the same protocol (the ablations and the lineage are
    two commands on the same trials); under another they are dropped, as what they were compared with is gone."""
    try:  # a file that is not a summary is refused (RecordError), not overwritten with the other study's lost
        earlier = read_record(path, SweepSummary)
    except FileNotFoundError:
        earlier = None
    summary = SweepSummary.of(result)
    if earlier is not None and earlier.same_protocol(summary):
        summary.variants = earlier.variants | summary.variants
    summary.variants = dict(sorted(summary.variants.items(), key=lambda item: list(NAMED).index(item[0])))
    write_record(path, summary)
