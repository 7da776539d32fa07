"""A trial: one variant at one learning rate and seed, trained under the shared recipe and measured the same way for
every variant; the cache of measured trials (trials.json) that makes a sweep resumable; trials in parallel.

A trial's row is reused while its folder holds what it was measured from (the same recipe, the same step and
training time); a row measured by an older `measure` (another ROW_VERSION) is measured again from its folder, keeping
what only training knew (records.TrainingRun).
"""

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from gpt2mini.checkpoint import STATE_FILE, load_model_folder, read_metrics
from gpt2mini.report.records import TrainingRun, TrialRow, read_trials, write_trials
from gpt2mini.study.tables import number
from gpt2mini.study.variants import NAMED
from gpt2mini.tokenizer import encode
from gpt2mini.training.evaluation import split_loss
from gpt2mini.training.loop import NonFiniteLoss, train
from gpt2mini.training.settings import TrainSettings

# The recipe fields a reused run must match (device, progress and where things go may differ).
RECIPE_FIELDS = tuple(
    f.name for f in fields(TrainSettings) if f.name not in ("save", "load", "resume", "stop_at", "device", "progress")
)
TRIALS_FILE = "trials.json"  # in a study's folder: every trial's row by key, written after each trial
ROW_VERSION = 2  # bump when `measure` changes: cached rows are then measured again from the folders
EARLY_STEPS = (10, 20, 50, 100)  # the steps whose gradient norms per part a row keeps: where a collapse begins


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
    s.sample_chars = 0  # a study samples once at the end, with one seed for all variants
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


def run_trial(base: TrainSettings, trial: Trial, out: Path, val_text: str, fresh: bool, threads: int) -> TrialRow:
    """Train (or resume) one trial and measure it; runs in a worker process when jobs > 1."""
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
    run = TrainingRun(diverged=diverged, wall_s=round(time.perf_counter() - t0, 1), threads=threads)
    return measure(trial, folder, s, val_text, run)


def measure(trial: Trial, folder: Path, s: TrainSettings, val_text: str, run: TrainingRun) -> TrialRow:
    """A trial's row: its loss over the whole validation split, its curves and, at the end, the probes that say
    how it failed (attention entropy, residual norm, input dependence, gradient norm per part)."""
    head = TrialRow(
        key=trial.key,
        variant=trial.variant,
        lr=trial.lr,
        seed=trial.seed,
        version=ROW_VERSION,
        changes=dict(trial.changes),
        recipe=recipe_of(s),
        state=folder_state(folder),
        diverged=run.diverged,
        wall_s=run.wall_s,
        threads=run.threads,
        val_split=None,
    )
    if head.state is None:  # diverged before its first save
        return head
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
    head.val_split = None if run.diverged else round(val_split, 4)
    head.val_split_saved = round(val_split, 4)
    head.steps = state["step"]
    head.parameters = model.num_parameters()
    head.context = model.config.n_positions
    head.switches = model.config.ablations
    elapsed = state.get("elapsed_s")
    head.tokens_per_s = round(state["step"] * state["tokens_per_step"] / elapsed) if elapsed else None
    head.val_curve = [[m["step"], round(m["val_loss"], 4)] for m in evals]
    head.loss_curve = [[m["step"], m["loss"]] for m in logged]
    head.batch_loss_100 = next((m["loss"] for m in logged if m["step"] == 100), None)
    head.attn_entropy = round(sum(entropy) / len(entropy), 4) if entropy else None
    head.attn_entropy_layers = last.get("attn_entropy")
    head.resid_norm_layers = last.get("resid_norm")
    head.input_dependence = max(0.0, last["input_dependence"]) if "input_dependence" in last else None
    head.grad_norm_layers = [round(sum(g) / len(g), 5) for g in zip(*tail, strict=True)] if tail else None
    head.grad_norm_early = {
        str(m["step"]): m["grad_norm_layers"] for m in logged if m["step"] in EARLY_STEPS and "grad_norm_layers" in m
    }
    return head


def cached_row(cache: dict, trial: Trial, s: TrainSettings, folder: Path) -> TrialRow | TrainingRun | None:
    """The row measured earlier for this trial, if it was measured from exactly what the folder holds now (with an
    older `measure`: what only training knew, its wall time, thread count and divergence, kept for measuring anew).
    `cache` holds the rows as trials.json does (records.read_trials)."""
    row = cache.get(trial.key)
    if not row or recorded_recipe(row.get("recipe") or {}) != recipe_of(s) or row.get("state") != folder_state(folder):
        return None
    return TrialRow.from_json(row) if row.get("version") == ROW_VERSION else TrainingRun.of_row(row)


def run_trials(base, trials: list[Trial], out: Path, val_text: str, fresh: bool, jobs: int, label: str) -> dict:
    """Each trial's row ({key: TrialRow}), trained now or reused from out/trials.json; `jobs` trials train at once
    (processes of cpu_count / jobs threads each). The cache is written after every trial, so an interrupted sweep
    resumes."""
    cache_file = out / TRIALS_FILE
    cache = read_trials(cache_file)
    rows, pending, stale = {}, [], {}
    for t in trials:
        row = None if fresh else cached_row(cache, t, trial_settings(base, t, t.folder(out)), t.folder(out))
        if isinstance(row, TrialRow):
            rows[t.key] = row
        elif isinstance(row, TrainingRun):  # trained as it should be, measured by an older `measure`: measured again
            stale[t.key] = row
        else:
            pending.append(t)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(
        f"[{label}] {len(trials)} trials: {len(rows)} measured before, {len(stale)} to measure again, "
        f"{len(pending)} to train",
        file=sys.stderr,
    )

    def keep(row: TrialRow) -> None:
        rows[row.key] = row
        cache[row.key] = row.to_json()
        write_trials(cache_file, cache)
        print(f"[{label}] {row.key}: val {number(row.val_split)} ({row.wall_s:.0f} s)", file=sys.stderr)

    for key, run in stale.items():
        t = next(t for t in trials if t.key == key)
        keep(measure(t, t.folder(out), trial_settings(base, t, t.folder(out)), val_text, run))
    if jobs == 1 or len(pending) <= 1:
        for t in pending:
            keep(run_trial(base, t, out, val_text, fresh, threads))
    else:
        in_parallel(lambda t: (run_trial, base, t, out, val_text, fresh, threads), pending, jobs, keep)
    return {t.key: rows[t.key] for t in trials}


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


def best_lr(rows: list[TrialRow]) -> float | None:
    """The learning rate at which a variant's base-seed trial ended lowest (diverged trials never win)."""
    done = [r for r in rows if r.val_split is not None]
    return min(done, key=lambda r: (r.val_split, r.lr)).lr if done else None
