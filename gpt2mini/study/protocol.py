"""The protocol on a corpus, the same for every variant: each at every learning rate of the sweep with the base seed;
where its best lies at an edge, up to `extend` more rates beyond it; at its best, more seeds; then the follow-ups
that test an explanation. Its result (records.StudyResult) is written with its tables, samples and figures.
"""

import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch

from configuration_gpt2mini import BASELINE, variant_label
from gpt2mini.checkpoint import STATE_FILE, UsageError, atomic_write_text, load_model_folder
from gpt2mini.corpus import CORPORA, CorpusError, load_corpus, train_val_split
from gpt2mini.report.records import StudyResult, SweepPoint, TrialRow, VariantSummary, write_record
from gpt2mini.report.yardsticks import level, reference_losses
from gpt2mini.study.plots import plot_curves, plot_sweep
from gpt2mini.study.tables import results_table, samples_md, sweep_table
from gpt2mini.study.trials import Trial, best_lr, recipe_of, run_trials
from gpt2mini.training.settings import TrainSettings

LRS = (5e-4, 1e-3, 2e-3, 4e-3, 8e-3)  # the sweep: log-spaced by 2 around train.py's default 4e-3
SEEDS = 3  # runs at each variant's best learning rate (the base seed and the next ones)
EXTEND = 2  # at most this many learning rates beyond the sweep, where a variant's best lies at its edge
# The whole protocol on a small model in a few minutes on a laptop (a study's --quick, flags given with it still win).
# Its numbers show the machinery, not the architecture: the model is too small and too short-trained.
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
}


def parse_lrs(text: str) -> tuple[float, ...]:
    """--lrs: comma-separated learning rates, each finite and above 0, sorted."""
    try:
        lrs = tuple(sorted({float(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise UsageError(f"--lrs takes comma-separated numbers, got {text!r}") from None
    if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
        raise UsageError(f"--lrs must be finite learning rates above 0, got {text!r}")
    return lrs


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


class FollowUp(NamedTuple):
    """An explanation worth testing before a report repeats it: a variant, a change to the recipe, the question."""

    variant: str
    changes: tuple  # (setting, value) pairs, as Trial.changes
    question: str


def follow_up_trials(summaries: dict[str, VariantSummary], seed: int, follow_ups: tuple) -> list[Trial]:
    """Each follow-up at the learning rates where its variant failed (did not end below the bigram level), at most
    the two lowest of them (the ones nearest to where it trains); and the baseline with the same change at the same
    rates, so that what the change does to the variant is compared with what it does to GPT-2 itself."""
    trials = []
    for variant, changes, _ in follow_ups:
        v = summaries.get(variant)
        if v is None:
            continue
        failed = sorted(p.lr for p in v.sweep if p.lr not in v.window)[:2]
        for name in dict.fromkeys((variant, BASELINE)):
            trials += [Trial(name, lr, seed, changes) for lr in failed]
    return trials


def edge_trials(rows: dict[str, TrialRow], swept: dict[str, list], seed: int) -> list[Trial]:
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


def summarize_variant(
    name: str, rows: dict[str, TrialRow], lrs, best: float | None, seed: int, seeds: int, reference: dict
) -> VariantSummary:
    """A variant across the protocol: its sweep, its best learning rate with the spread over seeds there, and its
    stability window (the learning rates at which it ends below the bigram level by more than yardsticks.AT_LEVEL, the
    margin within which the report calls a loss "about the bigram level")."""
    sweep = [rows[Trial(name, lr, seed).key] for lr in lrs]
    at_best = [rows[Trial(name, best, seed + k).key] for k in range(seeds)] if best is not None else []
    losses = [r.val_split for r in at_best if r.val_split is not None]
    mean = sum(losses) / len(losses) if losses else None
    std = (sum((x - mean) ** 2 for x in losses) / (len(losses) - 1)) ** 0.5 if len(losses) > 1 else None
    window = [r.lr for r in sweep if r.val_split is not None and level(r.val_split, reference) == "below_bigram"]
    return VariantSummary(
        variant=name,
        label=variant_label(name),
        best_lr=best,
        at_edge=best is not None and len(lrs) > 1 and best in (min(lrs), max(lrs)),
        best_key=Trial(name, best, seed).key if best is not None else None,
        sweep=[SweepPoint(r.lr, r.val_split, r.diverged) for r in sweep],
        seed_losses=losses,
        mean=round(mean, 4) if mean is not None else None,
        std=round(std, 4) if std is not None else None,
        min=min(losses) if losses else None,
        max=max(losses) if losses else None,
        window=window,
        parameters=next((r.parameters for r in sweep if r.parameters is not None), None),
    )


def sample_from(folder: Path, prompt: str, sample_chars: int, device) -> str:
    """A continuation of `prompt` by the run in `folder`: the same sampling settings and seed for every study."""
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
    follow_ups: tuple = (),
    command: str | None = None,
    results: Path | None = None,
) -> StudyResult:
    """The protocol on a shipped corpus (or the text file `data`): every variant at every learning rate with the
    base seed (and, where its best lies at an edge, up to `extend` more rates beyond it, each 2x further); then, at
    each variant's best learning rate, `seeds` - 1 more seeds; then each of `follow_ups` (FollowUp). The trials live
    in `out` (a trial of the same variant, rate, seed and recipe is trained once, whichever experiment asks for it);
    the comparisons are written to `results` (default: `out`)."""
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
    summaries = {n: summarize_variant(n, rows, swept[n], best[n], base.seed, seeds, reference) for n in names}
    checks = follow_up_trials(summaries, base.seed, follow_ups)
    rows |= run_trials(base, checks, out, val_text, fresh, jobs, label)
    device = pick_eval_device(base.device)
    for v in summaries.values():
        if v.best_key and (out / v.best_key / STATE_FILE).exists():
            v.sample = sample_from(out / v.best_key, prompt, sample_chars, device)
    result = StudyResult(
        corpus=label,
        prompt=prompt,
        hardware=hardware(base.device),
        wall_s=round(time.perf_counter() - t0, 1),
        jobs=jobs,
        lrs=list(lrs),
        seeds=seeds,
        extend=extend,
        base_seed=base.seed,
        steps=base.steps,
        recipe=recipe_of(base),
        command=command,
        reference=reference,
        variants=summaries,
        trials=list(rows.values()),
    )
    write_results(results or out, result, out)
    return result


def write_results(folder: Path, result: StudyResult, trials: Path) -> None:
    """One experiment's comparisons: results.json (everything measured), the tables, the samples and the plots (drawn
    from the trial folders in `trials` too)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder / "results.json", result)
    atomic_write_text(folder / "results.md", results_table(result) + "\n\n" + sweep_table(result) + "\n")
    atomic_write_text(folder / "samples.md", samples_md(result))
    plot_sweep(folder, result)
    plot_curves(folder, result, trials)


def exit_status(work: Callable[[], int]) -> int:
    """A study program's exit status: `work`'s own; 2 with one line for a user's mistake (a bad flag value, a corpus
    that cannot be read); 130 on Ctrl-C, saying how to go on (every study reuses the trials it finished)."""
    try:
        return work()
    except (UsageError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
