"""Break GPT-2 mini on purpose, the same way for every variant, and compare what breaks, fairly: each variant at its
own best learning rate, over seeds.

    python ablate.py --quick                                # the whole protocol on a small model, in minutes
    python ablate.py --jobs 2                               # all variants on Tiny Shakespeare (hours on 2 cores)
    python ablate.py --corpus wagahai --variants baseline,residual_off,attention_off,post_ln
    python ablate.py --lrs 4e-3 --seeds 1                   # one run per variant at one learning rate
    python ablate.py --corpus shakespeare --jobs 2 --report docs/ablations.md --ship models   # what the repo ships
    python ablate.py --verify                               # re-derive the report's cheap figures with today's code

The protocol: every variant (the baseline and one per registry switch) trains at each learning rate of `--lrs` with
the same seed, data order, recipe and budget (train.py's defaults unless you pass others); where a variant's best
rate lies at an edge, up to `--extend` more rates beyond it; then `--seeds` runs in all at its best rate. Then the
explanations in FOLLOW_UPS are tested. Per corpus, `--out` (default runs/ablations/<corpus>/) gets:

    <variant>/lr<lr>-seed<seed>/   a train.py run folder per trial (model, tokenizer, metrics.jsonl, loss_curve.png)
    trials.json          each trial's measurements, written after every trial (what makes a sweep resumable)
    results.json         the variants at their best rates (mean, range, stability window) and every trial
    results.md           the same as tables
    lr_sweep.png         final validation loss against learning rate, every variant
    loss_curves.png      validation and training loss of each variant's best run
    probes.png           attention entropy, input dependence and gradient norm per part of each best run
    samples.md           a continuation of the same prompt with the same seed from each best run

A trial's measurements are reused while its folder holds what they were measured from; an interrupted trial resumes
(`--fresh` retrains). `--report` writes the markdown report of every corpus and keeps each corpus's results.json
beside it; `--ship DIR` copies the shipped variants' best runs into DIR/<corpus>/<variant> with fp16 weights (they
load as float32) and a training.json, plus DIR/<corpus>/sweep.json for the lab.
"""

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from configuration_gpt2mini import BASELINE, PRESETS, variant_label, variant_meaning, variants
from gpt2mini.checkpoint import (
    METRICS_FILE,
    STATE_FILE,
    UsageError,
    atomic_save,
    atomic_write_text,
    load_model_folder,
    read_metrics,
)
from gpt2mini.corpus import CORPORA, CorpusError, load_corpus, train_val_split
from gpt2mini.report.yardsticks import AT_LEVEL, at_unigram, level, reference_losses, yardstick
from gpt2mini.tokenizer import encode
from gpt2mini.training.evaluation import split_loss
from gpt2mini.training.loop import NonFiniteLoss, train
from gpt2mini.training.settings import TrainSettings, repeat_command

VARIANTS = variants()  # {name: the config fields it sets}: the baseline, then one variant per registry switch
# the lineage's presets in order of history, named as the variants with the same config where there is one (GPT-1 is
# the post-LN variant, GPT-2 the baseline: the same trials serve both)
LINEAGE = list(dict.fromkeys(next((n for n, v in VARIANTS.items() if v == f), p) for p, f in PRESETS.items()))
NAMED = VARIANTS | {n: PRESETS[n] for n in LINEAGE if n not in VARIANTS}  # everything --variants can name
SHIPPED = ("baseline", "residual_off", "attention_off", "post_ln")
LRS = (5e-4, 1e-3, 2e-3, 4e-3, 8e-3)  # the sweep: log-spaced by 2 around train.py's default 4e-3
SEEDS = 3  # runs at each variant's best learning rate (the base seed and the next ones)
EXTEND = 2  # at most this many learning rates beyond the sweep, where a variant's best lies at its edge
# Quoted from the blog post the project descends from (Tiny Shakespeare, training-batch loss, its own recipe).
BLOG = {"baseline_step100": 2.3, "residual_off_step100": 4.15, "baseline_step1000": 1.21, "vocab": 65}
# The recipe fields a reused run must match (device, progress and where things go may differ).
RECIPE_FIELDS = tuple(
    f.name for f in fields(TrainSettings) if f.name not in ("save", "load", "resume", "stop_at", "device", "progress")
)


def hardware(device: str) -> str:
    """The machine in words: the GPU name on CUDA, else the CPU model and torch's thread count."""
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    if device == "mps" or (device == "auto" and torch.backends.mps.is_available()):
        return f"Apple MPS ({platform.machine()}, torch {torch.__version__})"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def parse_list(text: str, known, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return list(VARIANTS if known is NAMED else known)
    if items == ["lineage"] and known is NAMED:
        return list(LINEAGE)
    unknown = [t for t in items if t not in known]
    if unknown or not items:
        extra = ", all or lineage" if known is NAMED else " or all"
        raise UsageError(f"unknown {what} {', '.join(unknown) or repr(text)}; choose from {', '.join(known)}{extra}")
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------------------------------
# Trials: one variant at one learning rate and seed


@dataclass(frozen=True)
class Trial:
    """One training run of the protocol: a variant at a learning rate with a seed."""

    variant: str
    lr: float
    seed: int
    changes: tuple = ()  # (setting, value) pairs a follow-up changes in the recipe, e.g. (("warmup", 500),)

    @property
    def key(self) -> str:
        return f"{self.variant}/{self.name}"

    @property
    def name(self) -> str:
        return f"lr{self.lr:g}-seed{self.seed}" + "".join(f"-{k}{v}" for k, v in self.changes)

    def folder(self, out: Path) -> Path:
        return out / self.variant / self.name


def trial_settings(base: TrainSettings, trial: Trial, folder: Path) -> TrainSettings:
    """The base recipe with the trial's switch, learning rate and seed; nothing else differs between trials."""
    s = TrainSettings(**asdict(base))
    s.switches = dict(NAMED[trial.variant])
    s.lr, s.seed = trial.lr, trial.seed
    for key, value in trial.changes:
        setattr(s, key, value)
    s.save = str(folder)
    s.progress = False
    s.sample_chars = 0  # ablate.py samples once at the end, with one seed for all variants
    return s


def recipe_of(s: TrainSettings) -> dict:
    return {k: v for k, v in asdict(s).items() if k in RECIPE_FIELDS}


def recorded_recipe(recorded: dict) -> dict:
    """A recipe as a row or a folder recorded it, with each field added to TrainSettings since at its default: what
    the run used, since the default is what it did before the field existed (e.g. `tokenizer`: "char")."""
    return recipe_of(TrainSettings()) | {k: v for k, v in recorded.items() if k in RECIPE_FIELDS}


def saved_progress(folder: Path, s: TrainSettings) -> int | None:
    """The step a folder trained with these settings reached, or None if it holds something else."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    saved = recorded_recipe(state.get("settings", {}))
    same = all(saved.get(k) == v for k, v in recipe_of(s).items() if k != "steps")
    return state.get("step") if same and saved.get("steps") == s.steps else None


def folder_state(folder: Path) -> list | None:
    """What identifies the training a folder holds (its step and training time), or None if it holds none: a row
    measured from the folder is reused only while this is unchanged."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        return [state["step"], state["elapsed_s"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_trial(base: TrainSettings, trial: Trial, out: Path, val_text: str, fresh: bool, threads: int) -> dict:
    """Train (or resume) one trial and measure it; runs in a worker process when --jobs > 1."""
    torch.set_num_threads(threads)
    folder = trial.folder(out)
    s = trial_settings(base, trial, folder)
    done = None if fresh else saved_progress(folder, s)
    t0 = time.perf_counter()
    diverged = None
    if done is not None and done < s.steps:
        print(f"  {trial.key}: resuming at step {done}", file=sys.stderr)
        s.resume = str(folder)
    if done is None or done < s.steps:
        try:  # a folder of other settings is saved over (a save keeps what it did not write; see checkpoint.py)
            result = train(s)
        except NonFiniteLoss as e:
            diverged = str(e)
            print(f"  {trial.key}: {e}", file=sys.stderr)
            result = {}
        if result.get("interrupted"):
            raise KeyboardInterrupt
    run = {"diverged": diverged, "wall_s": round(time.perf_counter() - t0, 1), "threads": threads}
    return measure(trial, folder, s, val_text, run)


ROW_VERSION = 2  # bump when `measure` changes: cached rows are then measured again from the folders
EARLY_STEPS = (10, 20, 50, 100)  # the steps whose gradient norms per part a row keeps: where a collapse begins


def measure(trial: Trial, folder: Path, s: TrainSettings, val_text: str, run: dict) -> dict:
    """A trial's row: its loss over the whole validation split, its curves and, at the end, the probes that say
    how it failed (attention entropy, residual norm, input dependence, gradient norm per part)."""
    row = {"key": trial.key, "variant": trial.variant, "lr": trial.lr, "seed": trial.seed, "version": ROW_VERSION}
    row["changes"] = dict(trial.changes)
    row |= {"recipe": recipe_of(s), "state": folder_state(folder)} | run
    if row["state"] is None:  # diverged before its first save
        return row | {"val_split": None}
    state = json.loads((folder / STATE_FILE).read_text())
    metrics = read_metrics(folder)
    evals = [m for m in metrics if "val_loss" in m]
    logged = [m for m in metrics if "loss" in m]
    model, tokenizer = load_model_folder(folder, "cpu")
    model.eval()
    with torch.no_grad():
        val_split = split_loss(model, encode(tokenizer, val_text), model.config.n_positions)
    last = evals[-1] if evals else {}
    entropy = [e for e in last.get("attn_entropy", []) if e is not None]
    tail = [m["grad_norm_layers"] for m in logged[-10:] if "grad_norm_layers" in m]
    return row | {
        "val_split": None if row["diverged"] else round(val_split, 4),
        "val_split_saved": round(val_split, 4),
        "steps": state["step"],
        "parameters": model.num_parameters(),
        "context": model.config.n_positions,
        "switches": model.config.ablations,
        "tokens_per_s": round(state["step"] * state["tokens_per_step"] / state["elapsed_s"])
        if state.get("elapsed_s")
        else None,
        "val_curve": [[m["step"], round(m["val_loss"], 4)] for m in evals],
        "loss_curve": [[m["step"], m["loss"]] for m in logged],
        "batch_loss_100": next((m["loss"] for m in logged if m["step"] == 100), None),
        "attn_entropy": round(sum(entropy) / len(entropy), 4) if entropy else None,
        "attn_entropy_layers": last.get("attn_entropy"),
        "resid_norm_layers": last.get("resid_norm"),
        "input_dependence": max(0.0, last["input_dependence"]) if "input_dependence" in last else None,
        "grad_norm_layers": [round(sum(g) / len(g), 5) for g in zip(*tail, strict=True)] if tail else None,
        "grad_norm_early": {
            str(m["step"]): m["grad_norm_layers"]
            for m in logged
            if m["step"] in EARLY_STEPS and "grad_norm_layers" in m
        },
    }


def cached_row(cache: dict, trial: Trial, s: TrainSettings, folder: Path) -> dict | None:
    """The row measured earlier for this trial, if it was measured from exactly what the folder holds now (with an
    older `measure`: what only training knew, its wall time, thread count and divergence, kept for measuring anew)."""
    row = cache.get(trial.key)
    if not row or recorded_recipe(row.get("recipe") or {}) != recipe_of(s) or row.get("state") != folder_state(folder):
        return None
    return row if row.get("version") == ROW_VERSION else {k: row[k] for k in ("diverged", "wall_s", "threads")}


def run_trials(base, trials: list[Trial], out: Path, val_text: str, fresh: bool, jobs: int, label: str) -> dict:
    """Each trial's row, trained now or reused from out/trials.json; `jobs` trials train at once (processes of
    cpu_count / jobs threads each). The cache is written after every trial, so an interrupted sweep resumes."""
    cache_file = out / "trials.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    rows, pending, stale = {}, [], {}
    for t in trials:
        row = None if fresh else cached_row(cache, t, trial_settings(base, t, t.folder(out)), t.folder(out))
        if row is not None and "key" in row:
            rows[t.key] = row
        elif row is not None:  # trained as it should be, measured by an older `measure`: measured again
            stale[t.key] = row
        else:
            pending.append(t)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(
        f"[{label}] {len(trials)} trials: {len(rows)} measured before, {len(stale)} to measure again, "
        f"{len(pending)} to train",
        file=sys.stderr,
    )

    def keep(row: dict) -> None:
        rows[row["key"]] = cache[row["key"]] = row
        atomic_write_text(cache_file, json.dumps(cache, indent=1) + "\n")
        print(f"[{label}] {row['key']}: val {_f(row.get('val_split'))} ({row['wall_s']:.0f} s)", file=sys.stderr)

    for key, run in stale.items():
        t = next(t for t in trials if t.key == key)
        keep(measure(t, t.folder(out), trial_settings(base, t, t.folder(out)), val_text, run))
    if jobs == 1 or len(pending) <= 1:
        for t in pending:
            keep(run_trial(base, t, out, val_text, fresh, threads))
    else:
        in_parallel(lambda t: (run_trial, base, t, out, val_text, fresh, threads), pending, jobs, keep)
    return {t.key: rows[t.key] for t in trials}


# Explanations worth testing before the report repeats them: (variant, change to the recipe, the question it tests).
FOLLOW_UPS = (
    (
        "post_ln",
        (("warmup", 500),),
        "Post-LN is said to need a gentle warm-up (Xiong et al. 2020, 'On Layer Normalization in the Transformer "
        "Architecture'): does a 5x longer warm-up (500 steps instead of 100) let it train where it failed?",
    ),
)


def follow_up_trials(summaries: dict, seed: int, reference: dict) -> list[Trial]:
    """Each follow-up at the learning rates where its variant failed (did not end below the bigram level), at most
    the two lowest of them (the ones nearest to where it trains); and the baseline with the same change at the same
    rates, so that what the change does to the variant is compared with what it does to GPT-2 itself."""
    trials = []
    for variant, changes, _ in FOLLOW_UPS:
        v = summaries.get(variant)
        if v is None:
            continue
        failed = sorted(p["lr"] for p in v["sweep"] if p["lr"] not in v["window"])[:2]
        for name in dict.fromkeys((variant, BASELINE)):
            trials += [Trial(name, lr, seed, changes) for lr in failed]
    return trials


def edge_trials(rows: dict, swept: dict[str, list], seed: int) -> list[Trial]:
    """For each variant whose best learning rate is the lowest or highest it has tried, the next one beyond (half or
    twice it); `swept` gains it. A variant that never trained (all at the same level) looks below its lowest."""
    beyond = []
    for name, lrs in swept.items():
        best = best_lr([rows[Trial(name, lr, seed).key] for lr in lrs])
        if best is None or min(lrs) < best < max(lrs):
            continue
        lr = best / 2 if best == min(lrs) else best * 2
        lrs.append(lr)
        lrs.sort()
        beyond.append(Trial(name, lr, seed))
    return beyond


def in_parallel(call, items: list, jobs: int, keep) -> None:
    """Run call(item) = (function, *args) for each item in `jobs` spawned processes, handing each result to `keep`
    as it arrives. A new item starts only when a process is free, so after a failure or Ctrl-C (which the running
    trials answer by saving) nothing else starts: the error is raised once the running ones have stopped."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    todo, running = list(items), set()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        while todo or running:
            while todo and len(running) < jobs:
                fn, *args = call(todo.pop(0))
                running.add(ex.submit(fn, *args))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                keep(f.result())


def best_lr(rows: list[dict]) -> float | None:
    """The learning rate at which a variant's base-seed trial ended lowest (diverged trials never win)."""
    done = [r for r in rows if r.get("val_split") is not None]
    return min(done, key=lambda r: (r["val_split"], r["lr"]))["lr"] if done else None


def run_corpus(
    corpus: str | None,
    names: list[str],
    base: TrainSettings,
    out: Path,
    *,
    data: str | None = None,
    prompt: str | None = None,
    sample_chars: int = 200,
    fresh: bool = False,
    jobs: int = 1,
    lrs: tuple = LRS,
    seeds: int = SEEDS,
    extend: int = EXTEND,
    follow_ups: bool = True,
    command: str | None = None,
    results: Path | None = None,
) -> dict:
    """The protocol on a shipped corpus (or the text file `data`): every variant at every learning rate with the
    base seed (and, where its best lies at an edge, up to `extend` more rates beyond it, each 2x further); then, at
    each variant's best learning rate, `seeds` - 1 more seeds. The trials live in `out` (a trial of the same variant,
    rate, seed and recipe is trained once, whichever experiment asks for it); the comparisons are written to
    `results` (default: `out`)."""
    text = load_corpus(data) if data else load_corpus(corpus)
    prompt = prompt if prompt is not None else (CORPORA[corpus].sample_prompt if not data else "\n")
    base = TrainSettings(**asdict(base))
    if data:
        base.data = data
    else:
        base.corpus = corpus
    out.mkdir(parents=True, exist_ok=True)
    label = corpus or Path(data).stem
    train_text, val_text = train_val_split(text, base.val_fraction)
    t0 = time.perf_counter()
    swept = {n: list(lrs) for n in names}
    rows = run_trials(base, [Trial(n, lr, base.seed) for n in names for lr in lrs], out, val_text, fresh, jobs, label)
    for _ in range(extend):  # a best learning rate at the edge of the sweep may not be the best: look beyond it
        beyond = edge_trials(rows, swept, base.seed)
        if not beyond:
            break
        rows |= run_trials(base, beyond, out, val_text, fresh, jobs, label)
    best = {n: best_lr([rows[Trial(n, lr, base.seed).key] for lr in swept[n]]) for n in names}
    repeats = [Trial(n, best[n], base.seed + k) for n in names if best[n] is not None for k in range(1, seeds)]
    rows |= run_trials(base, repeats, out, val_text, fresh, jobs, label)
    reference = reference_losses(train_text, val_text)
    summaries = {n: summarize(n, rows, swept[n], best[n], base.seed, seeds, reference) for n in names}
    checks = follow_up_trials(summaries, base.seed, reference) if follow_ups else []
    rows |= run_trials(base, checks, out, val_text, fresh, jobs, label)
    device = pick_eval_device(base.device)
    for v in summaries.values():
        if v["best_key"] and (out / v["best_key"] / STATE_FILE).exists():
            v["sample"] = sample_from(out / v["best_key"], prompt, sample_chars, device)
    result = {
        "corpus": label,
        "prompt": prompt,
        "hardware": hardware(base.device),
        "wall_s": round(time.perf_counter() - t0, 1),
        "jobs": jobs,
        "lrs": list(lrs),
        "seeds": seeds,
        "extend": extend,
        "base_seed": base.seed,
        "steps": base.steps,
        "recipe": recipe_of(base),
        "command": command,
        "reference": reference,
        "variants": summaries,
        "trials": list(rows.values()),
    }
    write_results(results or out, result, out)
    return result


def write_results(folder: Path, result: dict, trials: Path) -> None:
    """One experiment's comparisons: results.json (everything measured), the tables, the samples and the plots (drawn
    from the trial folders in `trials` too)."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(folder / "results.md", results_table(result) + "\n\n" + sweep_table(result) + "\n")
    atomic_write_text(folder / "samples.md", samples_md(result))
    plot_sweep(folder, result)
    plot_curves(folder, result, trials)


def summarize(name: str, rows: dict, lrs, best: float | None, seed: int, seeds: int, reference: dict) -> dict:
    """A variant across the protocol: its sweep, its best learning rate with the spread over seeds there, and its
    stability window (the learning rates at which it ends below the bigram level by more than yardsticks.AT_LEVEL, the
    margin within which the report calls a loss "about the bigram level")."""
    sweep = [rows[Trial(name, lr, seed).key] for lr in lrs]
    at_best = [rows[Trial(name, best, seed + k).key] for k in range(seeds)] if best is not None else []
    losses = [r["val_split"] for r in at_best if r.get("val_split") is not None]
    mean = sum(losses) / len(losses) if losses else None
    std = (sum((x - mean) ** 2 for x in losses) / (len(losses) - 1)) ** 0.5 if len(losses) > 1 else None
    window = [
        r["lr"] for r in sweep if r.get("val_split") is not None and level(r["val_split"], reference) == "below_bigram"
    ]
    return {
        "variant": name,
        "label": variant_label(name),
        "best_lr": best,
        "at_edge": best is not None and len(lrs) > 1 and best in (min(lrs), max(lrs)),
        "best_key": Trial(name, best, seed).key if best is not None else None,
        "sweep": [{"lr": r["lr"], "val_split": r.get("val_split"), "diverged": r.get("diverged")} for r in sweep],
        "seed_losses": losses,
        "mean": round(mean, 4) if mean is not None else None,
        "std": round(std, 4) if std is not None else None,
        "min": min(losses) if losses else None,
        "max": max(losses) if losses else None,
        "window": window,
        "parameters": next((r["parameters"] for r in sweep if "parameters" in r), None),
    }


def sample_from(folder: Path, prompt: str, sample_chars: int, device) -> str:
    from gpt2mini.generation.stream import stream_text

    model, tokenizer = load_model_folder(folder, device)
    model.eval()
    return "".join(
        stream_text(model, tokenizer, prompt, max_new_tokens=sample_chars, temperature=0.8, top_k=40, seed=0)
    )


def pick_eval_device(device: str) -> torch.device:
    """Where the samples are drawn: CUDA when training used it, else the CPU."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if cuda else "cpu")


# ---------------------------------------------------------------------------------------------------------------------
# Tables, figures, report


def _f(x, digits=3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _lrs(lrs) -> str:
    return ", ".join(f"{lr:g}" for lr in lrs) if lrs else "none"


def versus(v: dict, base: dict) -> str:
    """A variant against the baseline at their best learning rates: a difference smaller than the spread over
    seeds (the two ranges overlap) is a tie."""
    if v["mean"] is None or base["mean"] is None:
        return "–"
    if v["variant"] == base["variant"]:
        return "reference"
    gap = v["mean"] - base["mean"]
    if (
        len(v["seed_losses"]) > 1
        and len(base["seed_losses"]) > 1
        and v["min"] <= base["max"]
        and base["min"] <= v["max"]
    ):
        return f"{gap:+.3f}: a tie (the seed ranges overlap)"
    return f"{gap:+.3f}: " + ("worse" if gap > 0 else "better")


def results_table(result: dict) -> str:
    """Each variant at its own best learning rate, with the spread over seeds and its stability window."""
    head = [
        "variant",
        "parameters",
        "best lr",
        "val loss (mean)",
        "seeds: min – max",
        "against the baseline",
        "clearly below the bigram level at lr",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    vs = result["variants"]
    base = vs.get(BASELINE)
    for v in vs.values():
        if v["best_lr"] is None:
            lines.append(f"| {v['label']} | – | – | diverged at every learning rate | – | – | none |")
            continue
        edge = " (edge of the sweep)" if v["at_edge"] else ""
        spread = f"{_f(v['min'])} – {_f(v['max'])} (n={len(v['seed_losses'])})"
        against = versus(v, base) if base else "–"
        params = f"{v['parameters']:,}" if v.get("parameters") else "–"
        cells = [v["label"], params, f"{v['best_lr']:g}{edge}", _f(v["mean"]), spread, against, _lrs(v["window"])]
        lines.append("| " + " | ".join(cells) + " |")
    ref = result["reference"]
    for key, label in (
        ("unigram", "*character frequencies only (unigram)*"),
        ("bigram", "*previous character only (bigram)*"),
    ):
        lines.append("| " + " | ".join([label, "–", "–", f"{ref[key]:.3f}", "–", "–", "–"]) + " |")
    return (
        "\n".join(lines)
        + "\n\n"
        + (
            "Validation loss is cross-entropy in nats per character over every window of the held-out split, after "
            f"{result['recipe']['steps']} steps. Best lr: the learning rate of the sweep ({_lrs(result['lrs'])}, and "
            f"up to {result.get('extend', 0)} more beyond its edge where a variant's best lay there) at which "
            f"the seed-{result['base_seed']} run ended lowest; there the variant ran with {result['seeds']} seeds "
            "(mean and range). A difference from the baseline smaller than the spread (overlapping ranges) is a tie. "
            "The last rows are no network at all, only counts from the training text (`yardsticks.reference_losses`)."
        )
    )


def sweep_table(result: dict) -> str:
    """Every variant at every learning rate it was tried at (base seed): the numbers behind the sweep plot; – where
    a variant was not tried (the sweep looks beyond its edge only for variants whose best lies there)."""
    lrs = sorted({p["lr"] for v in result["variants"].values() for p in v["sweep"]})
    lines = ["| variant | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|" + "---|" * (len(lrs) + 1)]
    for v in result["variants"].values():
        points = {p["lr"]: p for p in v["sweep"]}
        cells = []
        for lr in lrs:
            point = points.get(lr)
            if point is None:
                cells.append("–")
            elif point["val_split"] is None:
                cells.append("diverged")
            else:
                mark = "**" if lr == v["best_lr"] else ""
                cells.append(f"{mark}{point['val_split']:.3f}{mark}")
        lines.append(f"| {v['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evidence_table(result: dict, lr: float | None = None) -> str:
    """What the probes measured at the end of each variant's run (at its best lr, or at `lr`): how it failed."""
    rows = {r["key"]: r for r in result["trials"]}
    head = [
        "variant",
        "lr",
        "val loss",
        "attention entropy",
        "input dependence",
        "residual norm (last block)",
        "gradient norm, last 100 steps: embeddings (with the tied output) / first block / last block",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in result["variants"].values():
        at = lr if lr is not None else v["best_lr"]
        r = rows.get(Trial(v["variant"], at, result["base_seed"]).key) if at is not None else None
        if not r or r.get("state") is None:
            continue
        g = r.get("grad_norm_layers") or []
        grads = f"{g[0]:.3f} / {g[1]:.3f} / {g[-2]:.3f}" if len(g) >= 3 else "–"
        norm = r["resid_norm_layers"][-1] if r.get("resid_norm_layers") else None
        val = "diverged" if r.get("diverged") else _f(r["val_split"])
        cells = [
            v["label"],
            f"{at:g}",
            val,
            _f(r.get("attn_entropy"), 2),
            _f(r.get("input_dependence"), 3),
            _f(norm, 1),
            grads,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def samples_md(result: dict) -> str:
    parts = [f"# Samples: {result['corpus']}\n", f"Prompt {result['prompt']!r}, temperature 0.8, top-k 40, seed 0.\n"]
    for v in result["variants"].values():
        if "sample" in v:
            parts.append(f"## {v['label']} (lr {v['best_lr']:g})\n\n```text\n{result['prompt']}{v['sample']}\n```\n")
    return "\n".join(parts)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(plt) -> dict:
    return {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(NAMED)}


def plot_sweep(out: Path, result: dict) -> None:
    """lr_sweep.png: the figure the lab shows too (figures.lr_sweep_figure)."""
    from gpt2mini.report.figures import lr_sweep_figure

    lr_sweep_figure(result, list(NAMED)).savefig(out / "lr_sweep.png")


def plot_curves(out: Path, result: dict, trials: Path) -> None:
    """loss_curves.png and probes.png of each variant's best run: validation loss, attention entropy, input
    dependence and gradient norm over training."""
    plt = _pyplot()
    colors = _colors(plt)
    rows = {r["key"]: r for r in result["trials"]}
    best = {n: rows[v["best_key"]] for n, v in result["variants"].items() if v["best_key"]}
    fig, (ax_val, ax_batch) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for name, r in best.items():
        label, c = f"{result['variants'][name]['label']} (lr {r['lr']:g})", colors[name]
        ax_val.plot(*zip(*r["val_curve"], strict=True), "o-", ms=2.5, color=c, label=label)
        ax_batch.plot(*zip(*r["loss_curve"], strict=True), lw=0.8, color=c, label=label)
    for ax, title in ((ax_val, "validation loss (fixed batches)"), (ax_batch, "training batch loss")):
        for key, style in (("unigram", ":"), ("bigram", "--")):
            ax.axhline(result["reference"][key], color="grey", ls=style, lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("nats / character")
        ax.set_title(f"{result['corpus']}: {title}, each variant at its best learning rate", fontsize=10)
        ax.grid(alpha=0.3)
    ax_val.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png")
    plt.close(fig)
    plot_probes(out, result, best, plt, colors, trials)


GRAD_FLOOR = 1e-4  # where the probes plot draws a gradient norm of (about) zero


def plot_probes(out: Path, result: dict, best: dict, plt, colors: dict, trials: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), dpi=100)
    for name, r in best.items():
        evals = [m for m in read_metrics(trials / r["key"]) if "attn_entropy" in m]
        label, c = f"{result['variants'][name]['label']} (lr {r['lr']:g})", colors[name]
        ent = [(m["step"], [e for e in m["attn_entropy"] if e is not None]) for m in evals]
        ent = [(s, sum(e) / len(e)) for s, e in ent if e]
        if ent:
            axes[0].plot(*zip(*ent, strict=True), "o-", ms=2.5, color=c, label=label)
        dep = [(m["step"], m["input_dependence"]) for m in evals if "input_dependence" in m]
        if dep:
            axes[1].plot(*zip(*dep, strict=True), "o-", ms=2.5, color=c, label=label)
        if r.get("grad_norm_layers"):
            g = [max(x, GRAD_FLOOR) for x in r["grad_norm_layers"]]  # a zero would fall off the log scale
            axes[2].plot(range(len(g)), g, "o-", ms=3, color=c, label=label)
    n = len(next(iter(best.values()))["grad_norm_layers"] or []) if best else 0
    parts = ["embeddings", *(f"block {i}" for i in range(n - 2)), "final LN,\nuntied head"]
    axes[2].set_xticks(range(n), parts[:n], fontsize=8)
    axes[2].set_yscale("log")
    axes[2].set_ylim(bottom=GRAD_FLOOR / 2)
    titles = (
        "attention entropy (nats, mean over layers and heads)",
        "input dependence (nats; 0: every position predicts the same)",
        f"gradient norm per part, last 100 steps ({GRAD_FLOOR:g}: 0)",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(f"{result['corpus']}: {title}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "probes.png")
    plt.close(fig)


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


def ship_record(row: dict) -> dict:
    """What a shipped run's training.json says of it: the trial, its learning rate, seed, loss and step, its settings
    and the train.py command that repeats it."""
    record = {"trial": row["key"], "lr": row["lr"], "seed": row["seed"], "val_split": row["val_split"]}
    return record | {
        "step": row["steps"],
        "settings": row["recipe"],
        "command": repeat_command(TrainSettings(**row["recipe"])),
    }


def tied_keys(model) -> set[str]:
    """The state-dict keys of tensors that share their storage with an earlier key (the tied output head)."""
    seen, tied = set(), set()
    for key, tensor in model.state_dict().items():
        if tensor.untyped_storage().data_ptr() in seen:
            tied.add(key)
        seen.add(tensor.untyped_storage().data_ptr())
    return tied


def ship_best(result: dict, out: Path, dest: Path, names=SHIPPED) -> list[dict]:
    """Ship each named variant's best run (base seed) into dest/<variant>, with what it was trained with
    (training.json: the trial, its settings and the train.py command that repeats it, which publish.py's model card
    reads), and add the sweep's summary of every variant of `result` to dest/sweep.json (for the lab)."""
    shipped = []
    for name in names:
        v = result["variants"].get(name)
        if not v or not v["best_key"] or not (out / v["best_key"] / STATE_FILE).exists():
            continue
        row = next(r for r in result["trials"] if r["key"] == v["best_key"])
        shipped.append(ship(out / v["best_key"], dest / name, ship_record(row)))
    write_sweep_summary(dest / "sweep.json", result)
    return shipped


# what makes two sweeps comparable (a summary written before a key existed is another protocol)
SWEEP_PROTOCOL = ("corpus", "recipe", "lrs", "seeds", "extend", "base_seed", "steps", "reference")


def write_sweep_summary(path: Path, result: dict) -> None:
    """The sweep's summary for the lab: each variant's sweep and its best, with the command that measured it. The
    variants of an earlier summary stay if it was measured under the same protocol (the ablations and the lineage are
    two commands on the same trials); under another they are dropped, as what they were compared with is gone."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    summary = {k: result[k] for k in SWEEP_PROTOCOL}
    same = all(k in earlier and earlier[k] == summary[k] for k in SWEEP_PROTOCOL)
    variants = earlier.get("variants", {}) if same else {}
    for n, v in result["variants"].items():
        variants[n] = {k: v[k] for k in SWEEP_KEYS} | {"command": result["command"]}
    summary["variants"] = dict(sorted(variants.items(), key=lambda item: list(NAMED).index(item[0])))
    atomic_write_text(path, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")


SWEEP_KEYS = ("label", "best_lr", "at_edge", "sweep", "seed_losses", "mean", "std", "min", "max", "window")


def recipe_line(recipe: dict, context) -> str:
    """The recipe every trial shares (only the peak learning rate and the seed vary)."""
    default = asdict(TrainSettings())
    keys = ("steps", "batch_size", "min_lr_ratio", "warmup", "weight_decay", "short_context", "short_fraction")
    same = all(recipe.get(k) == default[k] for k in keys)
    return (
        f"{recipe['steps']} steps, batch {recipe['batch_size']} x {context} characters"
        + (
            f" (the first {recipe['short_fraction']:.0%} of the steps as the same tokens in windows of "
            f"{recipe['short_context']} at random positions)"
            if recipe.get("short_context") and recipe["short_context"] < context
            else ""
        )
        + f", AdamW at the trial's peak learning rate (warmup {recipe['warmup']}, cosine to "
        f"{recipe['min_lr_ratio']:g} x the peak), weight decay {recipe['weight_decay']:g}, gradient clipping at "
        f"{recipe['grad_clip']:g}, dropout {recipe['dropout']:g}"
        + (" (train.py's default recipe)" if same else " (not train.py's default recipe)")
        + f"; evaluation every {recipe['eval_interval']} steps on {recipe['eval_iters']} fixed batches per split"
    )


def trial_row(result: dict, variant: str, lr: float | None) -> dict | None:
    if lr is None:
        return None
    key = Trial(variant, lr, result["base_seed"]).key
    return next((r for r in result["trials"] if r["key"] == key), None)


def at_step(curve: list, step: int) -> float | None:
    return next((value for s, value in curve or [] if s == step), None)


def sensitivity(v: dict, result: dict) -> str:
    """Does it train at all, and over which learning rates: the stability window in words."""
    n, window = len(v["sweep"]), v["window"]
    diverged = [p["lr"] for p in v["sweep"] if p["diverged"]]
    said = (
        f"it ends clearly below the bigram level at {len(window)} of the {n} learning rates ({_lrs(window)})"
        if window
        else f"at none of the {n} learning rates does it end clearly below the bigram level"
    )
    if diverged:
        said += f"; it diverged at {_lrs(diverged)}"
    return said


def collapse_evidence(v: dict, result: dict) -> str | None:
    """Where a variant ended at the unigram level: how much its predictions depend on the input there, against the
    baseline at the same learning rates, and how the gradient into its first block went in the first 100 steps."""
    flat = [p["lr"] for p in v["sweep"] if at_unigram(p["val_split"], result["reference"])]
    mine = [trial_row(result, v["variant"], lr) or {} for lr in flat]
    base = [trial_row(result, BASELINE, lr) or {} for lr in flat]
    deps = [r["input_dependence"] for r in mine if r.get("input_dependence") is not None]
    if not flat or not deps or v["variant"] == BASELINE:
        return None
    text = (
        f"At {_lrs(flat)} it ended at the unigram level, with an input dependence of {_span(deps, 3)} nats"
        + (f" (the baseline at those rates: {_span(bd, 3)})" if (bd := _values(base, "input_dependence")) else "")
        + ": every position predicts about the same distribution, whatever it reads."
    )
    lr = TrainSettings().lr if TrainSettings().lr in flat else flat[0]
    g, bg = (trial_row(result, n, lr) or {} for n in (v["variant"], BASELINE))
    early, base_early = g.get("grad_norm_early") or {}, bg.get("grad_norm_early") or {}
    steps = [s for s in map(str, EARLY_STEPS) if s in early and s in base_early and len(early[s]) > 2]
    if steps:
        text += (
            f" The gradient norm of its first block at lr {lr:g}, against the baseline's: "
            + ", ".join(f"{early[s][1]:.3f} vs {base_early[s][1]:.3f} at step {s}" for s in steps)
            + "."
        )
    return text


def _values(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def _span(values: list[float], digits: int) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if round(low, digits) == round(high, digits) else f"{low:.{digits}f}–{high:.{digits}f}"


def meaning(v: dict, result: dict) -> str:
    """One variant in words: what the switch removes, then what the protocol measured."""
    said = variant_meaning(v["variant"])
    what = f"**{v['label']}**: {said[0].upper() + said[1:]}."
    if v["best_lr"] is None:
        return f"- {what} Measured: it diverged at every learning rate of the sweep ({_lrs(result['lrs'])})."
    base = result["variants"].get(BASELINE)
    parts = [sensitivity(v, result)]
    best = f"at its best learning rate, {v['best_lr']:g}"
    if v["at_edge"]:
        best += " (the edge of the sweep: its optimum may lie beyond)"
    best += (
        f", validation loss {v['mean']:.3f} (range {v['min']:.3f} – {v['max']:.3f} over {len(v['seed_losses'])} seeds)"
    )
    if base and v["variant"] != BASELINE:
        best += f", {versus(v, base)} against the baseline"
    parts.append(best)
    level = yardstick(v["mean"], result["reference"])
    if level:
        parts.append(level)
    text = f"- {what} Measured: " + "; ".join(parts) + "."
    evidence = collapse_evidence(v, result)
    return text + (f" {evidence}" if evidence else "")


def follow_up_section(result: dict) -> list[str]:
    """The explanations tested (FOLLOW_UPS): the variant where it failed, and the baseline at the same learning rates,
    each with and without the change (seed-1337 runs, one each)."""
    lines = []
    for variant, changes, question in FOLLOW_UPS:
        change = dict(changes)
        tried = {(t["variant"], t["lr"]): t for t in result["trials"] if t.get("changes") == change}
        lrs = sorted({lr for v, lr in tried if v == variant})
        if not lrs:
            continue
        what = ", ".join(f"{k} {v}" for k, v in change.items())
        a, b = variant_label(variant), variant_label(BASELINE)
        lines += [
            f"**{a}**: {question} The baseline ran with the same change at the same learning rates (seed "
            f"{result['base_seed']}, one run each; validation loss over the whole split).",
            "",
            f"| lr | {a}, the recipe | {a}, {what} | {b}, the recipe | {b}, {what} |",
            "|---|---|---|---|---|",
        ]
        for lr in lrs:
            cells = [trial_row(result, variant, lr), tried.get((variant, lr))]
            cells += [trial_row(result, BASELINE, lr), tried.get((BASELINE, lr))]
            lines.append(f"| {lr:g} | " + " | ".join(_level(r, result["reference"]) for r in cells) + " |")
        lines += ["", follow_up_verdict(result, variant, tried, lrs, what), ""]
    return ["### Testing an explanation", "", *lines] if lines else []


def _level(row: dict | None, ref: dict) -> str:
    if not row:
        return "–"
    loss = row.get("val_split")
    if loss is None:
        return "diverged"
    return f"{loss:.3f}" + (" (unigram level)" if at_unigram(loss, ref) else "")


def follow_up_verdict(result: dict, variant: str, tried: dict, lrs: list, what: str) -> str:
    """What the follow-up measured, in one sentence: did the change make the variant train where it failed, and
    how its best with the change compares with its best under the recipe."""
    v, bigram = result["variants"][variant], result["reference"]["bigram"]
    rows = [tried[(variant, lr)] for lr in lrs if tried[(variant, lr)].get("val_split") is not None]
    trains = [r for r in rows if r["val_split"] < bigram]
    if not trains:
        return f"With {what}, {variant_label(variant)} still does not train at {_lrs(lrs)}."
    best = min(trains, key=lambda r: r["val_split"])
    text = f"With {what}, {variant_label(variant)} trains at {_lrs([r['lr'] for r in trains])}"
    if v["mean"] is not None:
        relation = "below" if best["val_split"] < v["min"] else "within or above"
        text += (
            f"; its best there, {best['val_split']:.3f} at lr {best['lr']:g}, is {relation} the range of its best "
            f"under the recipe ({v['min']:.3f} – {v['max']:.3f})"
        )
    twin = tried.get((BASELINE, best["lr"]))
    if variant != BASELINE and twin and twin.get("val_split") is not None:
        side = "below" if best["val_split"] < twin["val_split"] else "above"
        text += (
            f", and {side} the baseline's with the same change at that rate ({twin['val_split']:.3f}; one seed each)"
        )
    return text + "."


def blog_section(result: dict) -> list[str]:
    """The blog's printed losses against this protocol's runs (both variants at train.py's default lr 4e-3, the
    recipe the blog's comparison used one learning rate for, and at their best)."""
    ref = result["reference"]
    default_lr = TrainSettings().lr
    b, ro = trial_row(result, BASELINE, default_lr) or {}, trial_row(result, "residual_off", default_lr) or {}
    ro_best = trial_row(result, "residual_off", result["variants"].get("residual_off", {}).get("best_lr")) or {}
    lines = [
        "## Against the blog's figures",
        "",
        "The blog post this project descends from printed single training-batch losses on Tiny Shakespeare from its "
        f"own model and recipe (Apple MPS). Here, the training-batch loss at the same step, at lr {default_lr:g} "
        "(train.py's default, one rate for both, as the blog did):",
        "",
        "| | blog | here |",
        "|---|---|---|",
        f"| baseline, step 100 | {BLOG['baseline_step100']} | {_f(b.get('batch_loss_100'))} |",
        f"| residual off, step 100 | {BLOG['residual_off_step100']} | {_f(ro.get('batch_loss_100'))} |",
        f"| baseline, step 1000 | {BLOG['baseline_step1000']} | {_f(at_step(b.get('loss_curve'), 1000))} "
        f"(validation {_f(at_step(b.get('val_curve'), 1000))}) |",
        "",
        "Why they differ:",
        "",
        "- Step 100 is early: where a model stands then depends on the learning rate, warmup and batch size, which "
        "differ between the blog's recipe and ours; and one batch is a noisy measure.",
    ]
    uniform = math.log(BLOG["vocab"])
    lines.append(
        f"- The blog's residual-off {BLOG['residual_off_step100']} is within "
        f"{abs(uniform - BLOG['residual_off_step100']):.2f} of ln {BLOG['vocab']} = {uniform:.3f}, the loss of uniform "
        "guessing over its characters: that model had not moved by step 100."
    )
    lines.append(
        "- The blog's step-1000 loss is far below this project's baseline at step 1000 and below what nanoGPT's "
        "documented CPU recipe reaches on held-out text (1.88). Its printout shows a 65-character vocabulary (Tiny "
        "Shakespeare's) next to a Japanese sample that such a vocabulary cannot produce, so the printed run and the "
        "samples come from different setups; and a training-batch loss is not a held-out loss."
    )
    v = result["variants"].get("residual_off")
    if v and ro_best.get("val_split") is not None:
        lrs = _lrs([p["lr"] for p in v["sweep"]])
        if not v["window"]:
            lines.append(
                "- Its lesson on residual connections holds under the fair protocol: residual off does not end below "
                f"the bigram level at any learning rate of the sweep ({lrs}); at its best, lr {ro_best['lr']:g}, it "
                f"ends at {ro_best['val_split']:.3f} ({yardstick(ro_best['val_split'], ref)}). So, within the range "
                "swept, it is not the learning rate that stops it."
            )
        else:
            lines.append(
                f"- Its lesson on residual connections, measured fairly: residual off trains at {_lrs(v['window'])} "
                f"(of {lrs}); at its best, lr {ro_best['lr']:g}, it ends at {ro_best['val_split']:.3f} "
                f"({yardstick(ro_best['val_split'], ref)})."
            )
    return lines + [""]


def write_report(path: Path, results: list[dict], total_wall: float, images: Path) -> None:
    """docs/ablations.md: every number comes from `results` (what the runs measured) or is quoted from the blog;
    each corpus's results.json is copied beside it as the record `--verify` checks."""
    images.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(images, path.parent)
    r0 = results[0]
    hours = {r["corpus"]: sum(t.get("wall_s", 0) for t in r["trials"]) / 3600 for r in results}
    trained = sum(hours.values()) * 3600
    per_corpus = f" ({', '.join(f'{c} {h:.1f} h' for c, h in hours.items())})" if len(hours) > 1 else ""
    threads = sorted({t.get("threads") for r in results for t in r["trials"] if t.get("threads")})
    lines = [
        "# Ablations: break GPT-2 mini and watch what breaks, each variant at its own best learning rate",
        "",
        "Written by `ablate.py`; every figure below was measured by the command that wrote this page:",
        "",
        "```bash",
        r0.get("command") or "python ablate.py",
        "```",
        "",
        f"- Hardware: {'; '.join(sorted({r['hardware'] for r in results}))}; {r0['jobs']} trials at once, "
        f"{', '.join(map(str, threads)) or '?'} thread(s) each (on the CPU a trial's result is deterministic for a "
        "given thread count; another count rounds differently and ends a little elsewhere).",
        f"- Wall time: the trials took {trained / 3600:.1f} h of training added up{per_corpus}, {r0['jobs']} at a time "
        f"(each timed when it was trained, on a machine that was not always idle); the last run of the command took "
        f"{total_wall / 60:.1f} min, reusing what earlier runs measured.",
        f"- Protocol: every variant trains at each learning rate of the sweep ({_lrs(r0['lrs'])}) with seed "
        f"{r0['base_seed']}; where its best lies at an edge of the sweep, at up to {r0.get('extend', 0)} more beyond "
        "it (each 2x "
        "further); at the one where it ends lowest (its best), it trains again with "
        f"{r0['seeds'] - 1} more seed(s). Tables give the mean and range over those {r0['seeds']} seeds; a difference "
        "smaller than the spread (overlapping ranges) is called a tie. The stability window is the set of learning "
        f"rates at which a variant ends below the bigram level by more than {AT_LEVEL} nats (closer, it is called "
        "about the bigram level), i.e. uses more than the current character.",
        f"- Recipe, the same for every trial: {recipe_line(r0['recipe'], r0['trials'][0].get('context', '?'))}.",
        "- Each variant differs from the baseline by one switch (`python train.py --help` lists them); the data order "
        "is the same for all of them. One trial alone: e.g. `python train.py --disable_residual 1 --lr 1e-3`.",
        "- The probes (train.py logs them at every evaluation): attention entropy, residual-stream norm per layer, "
        "input dependence (the mean KL divergence of each position's prediction from their mean: 0 when the model "
        "predicts the same distribution whatever it reads) and the gradient norm of each part (before clipping).",
        "",
    ]
    for r in results:
        lines += corpus_section(r, Path(r["out"]), images, rel)
    shakespeare = next((r for r in results if r["corpus"] == "shakespeare"), None)
    if shakespeare:
        lines += blog_section(shakespeare)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines))


def corpus_section(r: dict, out: Path, images: Path, rel: str) -> list[str]:
    corpus = r["corpus"]
    for fig in ("lr_sweep.png", "loss_curves.png", "probes.png"):
        if (out / fig).exists():
            shutil.copy2(out / fig, images / f"{corpus}_{fig}")
    atomic_write_text(images / f"{corpus}_results.json", json.dumps(r, indent=1, ensure_ascii=False) + "\n")
    default_lr = TrainSettings().lr
    lines = [
        f"## {corpus}",
        "",
        "### Each variant at its own best learning rate",
        "",
        results_table(r),
        "",
        f"![loss against learning rate]({rel}/{corpus}_lr_sweep.png)",
        "",
        "### The sweep (seed " + str(r["base_seed"]) + "; bold: the best learning rate)",
        "",
        sweep_table(r),
        "",
        "### How each variant ends: the probes",
        "",
        "At its best learning rate:",
        "",
        evidence_table(r),
        "",
    ]
    if default_lr in r["lrs"]:
        lines += [
            f"At lr {default_lr:g}, train.py's default (one rate for all):",
            "",
            evidence_table(r, default_lr),
            "",
        ]
    lines += [
        f"![loss curves]({rel}/{corpus}_loss_curves.png)",
        "",
        f"![probes]({rel}/{corpus}_probes.png)",
        "",
        "### What each result means",
        "",
        *(meaning(v, r) for v in r["variants"].values()),
        "",
        *follow_up_section(r),
        "### Samples",
        "",
        f"Each variant at its best learning rate (seed {r['base_seed']}); prompt {r['prompt']!r}, temperature 0.8, "
        "top-k 40, seed 0.",
        "",
    ]
    written = {}
    for v in r["variants"].values():
        if "sample" not in v:
            continue
        lines += [f"**{v['label']}** (lr {v['best_lr']:g})", ""]
        if v["sample"] in written:
            lines += [
                f"The same text as **{written[v['sample']]}**, character for character: with the same seed, two "
                "models that learned the same distribution write the same characters.",
                "",
            ]
        written.setdefault(v["sample"], v["label"])
        lines += ["```text", r["prompt"] + v["sample"], "```", ""]
    return lines


# ---------------------------------------------------------------------------------------------------------------------
# Verify: re-derive a cheap subset of the published figures


VERIFY_STEPS = 50
VERIFY_TOLERANCE = 2e-3  # nats: another CPU can round differently; a changed recipe moves step 50 by far more
SHIPPED_TOLERANCE = 2e-3  # nats: the shipped weights are the trained ones rounded to fp16


def verify(images: Path, models: Path, steps: int = VERIFY_STEPS) -> list[str]:
    """Re-derive, with the current code, the cheap part of what the report published: each corpus's yardsticks, the
    first `steps` steps of its baseline's best trial (same seed and thread count), and each shipped model's loss.
    Returns one line per figure checked, starting with 'ok' or 'DRIFT'."""
    records = sorted(images.glob("*_results.json"))
    if not records:
        raise UsageError(f"no *_results.json in {images}: write a report first (--report)")
    lines = []
    for record in records:
        r = json.loads(record.read_text())
        if r["corpus"] not in CORPORA:
            lines.append(f"skip {r['corpus']}: not a shipped corpus")
            continue
        train_text, val_text = train_val_split(load_corpus(r["corpus"]), r["recipe"]["val_fraction"])
        ref = reference_losses(train_text, val_text)
        for key in ("unigram", "bigram"):
            lines.append(check(f"{r['corpus']} {key} level", r["reference"][key], ref[key], 0.0))
        row = trial_row(r, BASELINE, r["variants"][BASELINE]["best_lr"])
        lines.append(check(f"{r['corpus']} {row['key']} loss at step {steps}", *replay(row, steps), VERIFY_TOLERANCE))
        for folder in sorted(p.parent for p in (models / r["corpus"]).glob("*/training.json")):
            shipped = json.loads((folder / "training.json").read_text())
            model, tokenizer = load_model_folder(folder)
            with torch.no_grad():
                loss = split_loss(model, encode(tokenizer, val_text), model.config.n_positions)
            lines.append(check(f"{folder} validation loss", shipped["val_split"], round(loss, 4), SHIPPED_TOLERANCE))
    return lines


def check(what: str, published: float | None, now: float | None, tolerance: float) -> str:
    ok = published is not None and now is not None and abs(published - now) <= tolerance
    return f"{'ok' if ok else 'DRIFT'}  {what}: published {published}, now {now}"


def replay(row: dict, steps: int) -> tuple[float | None, float | None]:
    """The batch loss at `steps` of a trial as published, and as the current code trains it again (same recipe,
    seed and thread count, in a temporary folder)."""
    import tempfile

    published = at_step(row["loss_curve"], steps)
    s = TrainSettings(**row["recipe"])
    s.progress, s.stop_at, s.log_interval = False, steps, 10
    threads = torch.get_num_threads()
    torch.set_num_threads(row.get("threads") or threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            s.save = str(Path(tmp) / "replay")
            with contextlib.redirect_stdout(sys.stderr):
                train(s)
            now = at_step([[m["step"], m["loss"]] for m in read_metrics(s.save) if "loss" in m], steps)
    finally:
        torch.set_num_threads(threads)
    return published, now


# ---------------------------------------------------------------------------------------------------------------------
# Command line


# --quick: the whole protocol on a small model in a few minutes on a laptop, into its own folder (flags given with it
# still win). Its numbers show the machinery, not the architecture: the model is too small and too short-trained.
QUICK = {
    "steps": 150,
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 32,
    "block_size": 64,
    "batch_size": 8,
    "eval_interval": 50,
    "eval_iters": 4,
    "lrs": "2e-3,8e-3",
    "seeds": 2,
    "extend": 1,
    "sample_chars": 100,
    "out": "runs/ablations-quick",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with QUICK's values as the defaults under --quick."""
    p = build_parser()
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)
    return p.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train GPT-2 mini variants with one switch each flipped, each at its own best learning rate and "
        "over seeds, under the same recipe, and compare them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--corpus", default="shakespeare", help=f"comma-separated shipped corpora: {', '.join(CORPORA)}")
    p.add_argument("--data", metavar="FILE", help="ablate on this UTF-8 text file instead of --corpus")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the whole protocol on a small model in minutes, into runs/ablations-quick (to see it work; its "
        "numbers say nothing about the architecture)",
    )
    p.add_argument(
        "--variants",
        default="all",
        help=f"comma-separated: {', '.join(NAMED)}; or all (the ablations) or lineage ({', '.join(LINEAGE)}: GPT-2, "
        "GPT-1, the 2017 Transformer's and Llama's recipes, configuration_gpt2mini.PRESETS)",
    )
    p.add_argument("--out", default="runs/ablations", help="folder for the runs and comparisons (one per corpus)")
    d = TrainSettings()
    for name, kind, hint in (
        ("steps", int, "optimizer steps per variant"),
        ("batch_size", int, "sequences per step"),
        ("min_lr_ratio", float, "final learning rate as a fraction of each trial's peak"),
        ("warmup", int, "warmup steps"),
        ("seed", int, "seed for every variant"),
        ("eval_iters", int, "fixed batches per evaluation"),
    ):
        p.add_argument(f"--{name}", type=kind, default=getattr(d, name), help=hint)
    p.add_argument("--eval_interval", type=int, default=d.eval_interval, help="evaluate every N steps")
    p.add_argument(
        "--lrs",
        default=",".join(f"{lr:g}" for lr in LRS),
        help="comma-separated peak learning rates of the sweep (one value: no sweep)",
    )
    p.add_argument(
        "--seeds", type=int, default=SEEDS, help="runs at each variant's best learning rate (seed, seed+1, ...)"
    )
    p.add_argument(
        "--extend",
        type=int,
        default=EXTEND,
        help="where a variant's best lr is the lowest or highest tried, try up to this many more beyond it (2x apart)",
    )
    for name in ("n_layer", "n_head", "n_embd", "block_size"):
        p.add_argument(f"--{name}", type=int, help="model size (default: the GPT2MiniConfig default)")
    p.add_argument("--prompt", help="prompt for the samples (default: the corpus's, e.g. 'ROMEO:')")
    p.add_argument("--sample_chars", type=int, default=200, help="characters per sample")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument(
        "--jobs", type=int, default=1, help="variants trained at once (separate processes; >1 pays off on a GPU)"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-derive the report's cheap figures with the current code (yardsticks, the first steps of each "
        "baseline, the shipped models' losses) and fail if they drifted; trains nothing else",
    )
    p.add_argument("--fresh", action="store_true", help="retrain variants even if a finished run is there")
    p.add_argument(
        "--report", metavar="FILE", help="also write a markdown report of every corpus (e.g. docs/ablations.md)"
    )
    p.add_argument(
        "--ship", metavar="DIR", help=f"copy {', '.join(SHIPPED)} of each corpus into DIR/<corpus>/ with fp16 weights"
    )
    return p


def parse_lrs(text: str) -> tuple[float, ...]:
    try:
        lrs = tuple(sorted({float(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise UsageError(f"--lrs takes comma-separated numbers, got {text!r}") from None
    if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
        raise UsageError(f"--lrs must be finite learning rates above 0, got {text!r}")
    return lrs


def run_verify(args) -> int:
    """--verify: the checks of `verify`, one line each; exit 1 if any drifted."""
    report = Path(args.report or "docs/ablations.md")
    lines = verify(report.parent / report.stem, Path(args.ship or "models"))
    print("\n".join(lines))
    drift = [line for line in lines if line.startswith("DRIFT")]
    print(f"{len(drift)} of {len(lines)} figures drifted" if drift else f"all {len(lines)} figures reproduced")
    return 1 if drift else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "ablate.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        if args.verify:
            return run_verify(args)
        names = parse_list(args.variants, NAMED, "variant")
        corpora = [Path(args.data).stem] if args.data else parse_list(args.corpus, CORPORA, "corpus")
        base = TrainSettings(
            **{
                k: getattr(args, k)
                for k in (
                    "steps",
                    "batch_size",
                    "min_lr_ratio",
                    "warmup",
                    "seed",
                    "eval_iters",
                    "eval_interval",
                    "n_layer",
                    "n_head",
                    "n_embd",
                    "block_size",
                    "device",
                )
            }
        )
        base.check()
        lrs = parse_lrs(args.lrs)
        if args.jobs < 1:
            raise UsageError(f"--jobs must be a positive integer, got {args.jobs}")
        if args.seeds < 1:
            raise UsageError(f"--seeds must be a positive integer, got {args.seeds}")
        if args.extend < 0:
            raise UsageError(f"--extend must be 0 or more, got {args.extend}")
        if args.sample_chars < 0:
            raise UsageError(f"--sample_chars must not be negative, got {args.sample_chars}")
        if args.data:
            load_corpus(args.data)  # fail on a bad file before anything is written
        t0 = time.perf_counter()
        results = []
        for corpus in corpora:
            out = Path(args.out) / corpus
            r = run_corpus(
                None if args.data else corpus,
                names,
                base,
                out,
                data=args.data,
                prompt=args.prompt,
                sample_chars=args.sample_chars,
                fresh=args.fresh,
                jobs=args.jobs,
                lrs=lrs,
                seeds=args.seeds,
                extend=args.extend,
                command=command,
            )
            r["out"] = str(out)
            results.append(r)
            print(
                f"\n{r['corpus']} ({r['hardware']}, {r['wall_s']:.0f} s)\n{results_table(r)}\nwritten to {out}/",
                file=sys.stderr,
            )
            if args.ship:
                for info in ship_best(r, out, Path(args.ship) / r["corpus"]):
                    print(f"shipped {info['folder']} ({info['bytes'] / 1e6:.1f} MB)", file=sys.stderr)
        if args.report:
            report = Path(args.report)
            write_report(report, results, time.perf_counter() - t0, report.parent / report.stem)
            print(f"report: {report}", file=sys.stderr)
    except (UsageError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
