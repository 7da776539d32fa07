"""Break GPT-2 mini on purpose, the same way for every variant, and compare what breaks, fairly: each variant at its
own best learning rate, over seeds.

    python -m experiments.ablate --quick                    # the whole protocol on a small model, in minutes
    python -m experiments.ablate --jobs 2                   # all variants on Tiny Shakespeare (hours on 2 cores)
    python -m experiments.ablate --corpus wagahai --variants baseline,residual_off,attention_off,post_ln
    python -m experiments.ablate --lrs 4e-3 --seeds 1       # one run per variant at one learning rate
    python -m experiments.ablate --corpus shakespeare --jobs 2 --report docs/ablations.md --ship models   # what ships
    python -m experiments.ablate --verify                   # re-derive the report's cheap figures with today's code

The protocol (gpt2mini.study.protocol): every variant (the baseline and one per registry switch) trains at each
learning rate of `--lrs` with the same seed, data order, recipe and budget (train.py's defaults unless you pass
others); where a variant's best rate lies at an edge, up to `--extend` more rates beyond it; then `--seeds` runs in all
at its best rate. Then the explanations in FOLLOW_UPS are tested. Per corpus, `--out` (default
runs/ablations/<corpus>/) gets:

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

What only this program does: the report's prose (what each result means, the follow-ups, the blog's figures) and
--verify. What the studies share is gpt2mini.study; the records they write are gpt2mini.report.records.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from configuration_gpt2mini import BASELINE, variant_label, variant_meaning
from gpt2mini.checkpoint import UsageError, atomic_write_text, load_model_folder, read_metrics
from gpt2mini.corpus import CORPORA, load_corpus, train_val_split
from gpt2mini.report.records import (
    StudyResult,
    TrialRow,
    VariantSummary,
    command_line,
    current_command,
    read_record,
    write_record,
)
from gpt2mini.report.yardsticks import AT_LEVEL, at_unigram, reference_losses, yardstick
from gpt2mini.study import protocol
from gpt2mini.study.protocol import EXTEND, LRS, SEEDS, FollowUp, exit_status, parse_lrs, run_corpus
from gpt2mini.study.ship import ship_best
from gpt2mini.study.tables import number, rates, recipe_line, results_table, sweep_table, versus
from gpt2mini.study.trials import EARLY_STEPS, Trial
from gpt2mini.study.variants import LINEAGE, NAMED, parse_list
from gpt2mini.tokenizer import encode
from gpt2mini.training.evaluation import split_loss
from gpt2mini.training.loop import train
from gpt2mini.training.settings import TrainSettings

SHIPPED = ("baseline", "residual_off", "attention_off", "post_ln")
# Quoted from the blog post the project descends from (Tiny Shakespeare, training-batch loss, its own recipe).
BLOG = {"baseline_step100": 2.3, "residual_off_step100": 4.15, "baseline_step1000": 1.21, "vocab": 65}
# Explanations worth testing before the report repeats them (run_corpus trains them; the report's section says what
# they found).
FOLLOW_UPS = (
    FollowUp(
        "post_ln",
        (("warmup", 500),),
        "Post-LN is said to need a gentle warm-up (Xiong et al. 2020, 'On Layer Normalization in the Transformer "
        "Architecture'): does a 5x longer warm-up (500 steps instead of 100) let it train where it failed?",
    ),
)


# ---------------------------------------------------------------------------------------------------------------------
# The report: what each result means, in words, from what the runs measured


def trial_row(result: StudyResult, variant: str, lr: float | None) -> TrialRow | None:
    """The variant's base-seed trial at `lr` (under the recipe), or None where it did not run."""
    return None if lr is None else result.trial(Trial(variant, lr, result.base_seed).key)


def at_step(curve: list | None, step: int) -> float | None:
    return next((value for s, value in curve or [] if s == step), None)


def evidence_table(result: StudyResult, lr: float | None = None) -> str:
    """What the probes measured at the end of each variant's run (at its best lr, or at `lr`): how it failed."""
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
    for v in result.variants.values():
        at = lr if lr is not None else v.best_lr
        r = trial_row(result, v.variant, at)
        if not r or r.state is None:
            continue
        g = r.grad_norm_layers or []
        grads = f"{g[0]:.3f} / {g[1]:.3f} / {g[-2]:.3f}" if len(g) >= 3 else "–"
        norm = r.resid_norm_layers[-1] if r.resid_norm_layers else None
        val = "diverged" if r.diverged else number(r.val_split)
        cells = [v.label, f"{at:g}", val, number(r.attn_entropy, 2), number(r.input_dependence, 3), number(norm, 1)]
        lines.append("| " + " | ".join([*cells, grads]) + " |")
    return "\n".join(lines)


def sensitivity(v: VariantSummary, result: StudyResult) -> str:
    """Does it train at all, and over which learning rates: the stability window in words."""
    n, window = len(v.sweep), v.window
    diverged = [p.lr for p in v.sweep if p.diverged]
    said = (
        f"it ends clearly below the bigram level at {len(window)} of the {n} learning rates ({rates(window)})"
        if window
        else f"at none of the {n} learning rates does it end clearly below the bigram level"
    )
    if diverged:
        said += f"; it diverged at {rates(diverged)}"
    return said


def collapse_evidence(v: VariantSummary, result: StudyResult) -> str | None:
    """Where a variant ended at the unigram level: how much its predictions depend on the input there, against the
    baseline at the same learning rates, and how the gradient into its first block went in the first 100 steps."""
    flat = [p.lr for p in v.sweep if at_unigram(p.val_split, result.reference)]
    mine = [r for lr in flat if (r := trial_row(result, v.variant, lr))]
    base = [r for lr in flat if (r := trial_row(result, BASELINE, lr))]
    deps = dependences(mine)
    if not flat or not deps or v.variant == BASELINE:
        return None
    text = (
        f"At {rates(flat)} it ended at the unigram level, with an input dependence of {_span(deps, 3)} nats"
        + (f" (the baseline at those rates: {_span(bd, 3)})" if (bd := dependences(base)) else "")
        + ": every position predicts about the same distribution, whatever it reads."
    )
    lr = TrainSettings().lr if TrainSettings().lr in flat else flat[0]
    g, bg = (trial_row(result, n, lr) for n in (v.variant, BASELINE))
    early = (g.grad_norm_early if g else None) or {}
    base_early = (bg.grad_norm_early if bg else None) or {}
    steps = [s for s in map(str, EARLY_STEPS) if s in early and s in base_early and len(early[s]) > 2]
    if steps:
        text += (
            f" The gradient norm of its first block at lr {lr:g}, against the baseline's: "
            + ", ".join(f"{early[s][1]:.3f} vs {base_early[s][1]:.3f} at step {s}" for s in steps)
            + "."
        )
    return text


def dependences(rows: list[TrialRow]) -> list[float]:
    """The input dependences the rows measured."""
    return [r.input_dependence for r in rows if r.input_dependence is not None]


def _span(values: list[float], digits: int) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if round(low, digits) == round(high, digits) else f"{low:.{digits}f}–{high:.{digits}f}"


def meaning(v: VariantSummary, result: StudyResult) -> str:
    """One variant in words: what the switch removes, then what the protocol measured."""
    said = variant_meaning(v.variant)
    what = f"**{v.label}**: {said[0].upper() + said[1:]}."
    if v.best_lr is None:
        return f"- {what} Measured: it diverged at every learning rate of the sweep ({rates(result.lrs)})."
    base = result.variants.get(BASELINE)
    parts = [sensitivity(v, result)]
    best = f"at its best learning rate, {v.best_lr:g}"
    if v.at_edge:
        best += " (the edge of the sweep: its optimum may lie beyond)"
    best += f", validation loss {v.mean:.3f} (range {v.min:.3f} – {v.max:.3f} over {len(v.seed_losses)} seeds)"
    if base and v.variant != BASELINE:
        best += f", {versus(v, base)} against the baseline"
    parts.append(best)
    level = yardstick(v.mean, result.reference)
    if level:
        parts.append(level)
    text = f"- {what} Measured: " + "; ".join(parts) + "."
    evidence = collapse_evidence(v, result)
    return text + (f" {evidence}" if evidence else "")


def follow_up_section(result: StudyResult) -> list[str]:
    """The explanations tested (FOLLOW_UPS): the variant where it failed, and the baseline at the same learning rates,
    each with and without the change (seed-1337 runs, one each)."""
    lines = []
    for variant, changes, question in FOLLOW_UPS:
        change = dict(changes)
        tried = {(t.variant, t.lr): t for t in result.trials if t.changes == change}
        lrs = sorted({lr for v, lr in tried if v == variant})
        if not lrs:
            continue
        what = ", ".join(f"{k} {v}" for k, v in change.items())
        a, b = variant_label(variant), variant_label(BASELINE)
        lines += [
            f"**{a}**: {question} The baseline ran with the same change at the same learning rates (seed "
            f"{result.base_seed}, one run each; validation loss over the whole split).",
            "",
            f"| lr | {a}, the recipe | {a}, {what} | {b}, the recipe | {b}, {what} |",
            "|---|---|---|---|---|",
        ]
        for lr in lrs:
            cells = [trial_row(result, variant, lr), tried.get((variant, lr))]
            cells += [trial_row(result, BASELINE, lr), tried.get((BASELINE, lr))]
            lines.append(f"| {lr:g} | " + " | ".join(_level(r, result.reference) for r in cells) + " |")
        lines += ["", follow_up_verdict(result, variant, tried, lrs, what), ""]
    return ["### Testing an explanation", "", *lines] if lines else []


def _level(row: TrialRow | None, ref: dict) -> str:
    if not row:
        return "–"
    if row.val_split is None:
        return "diverged"
    return f"{row.val_split:.3f}" + (" (unigram level)" if at_unigram(row.val_split, ref) else "")


def follow_up_verdict(result: StudyResult, variant: str, tried: dict, lrs: list, what: str) -> str:
    """What the follow-up measured, in one sentence: did the change make the variant train where it failed, and
    how its best with the change compares with its best under the recipe."""
    v, bigram = result.variants[variant], result.reference["bigram"]
    rows = [tried[(variant, lr)] for lr in lrs if tried[(variant, lr)].val_split is not None]
    trains = [r for r in rows if r.val_split < bigram]
    if not trains:
        return f"With {what}, {variant_label(variant)} still does not train at {rates(lrs)}."
    best = min(trains, key=lambda r: r.val_split)
    text = f"With {what}, {variant_label(variant)} trains at {rates([r.lr for r in trains])}"
    if v.mean is not None:
        relation = "below" if best.val_split < v.min else "within or above"
        text += (
            f"; its best there, {best.val_split:.3f} at lr {best.lr:g}, is {relation} the range of its best "
            f"under the recipe ({v.min:.3f} – {v.max:.3f})"
        )
    twin = tried.get((BASELINE, best.lr))
    if variant != BASELINE and twin and twin.val_split is not None:
        side = "below" if best.val_split < twin.val_split else "above"
        text += f", and {side} the baseline's with the same change at that rate ({twin.val_split:.3f}; one seed each)"
    return text + "."


def blog_section(result: StudyResult) -> list[str]:
    """The blog's printed losses against this protocol's runs (both variants at train.py's default lr 4e-3, the
    recipe the blog's comparison used one learning rate for, and at their best)."""
    default_lr = TrainSettings().lr
    b, ro = (trial_row(result, n, default_lr) for n in (BASELINE, "residual_off"))
    lines = [
        "## Against the blog's figures",
        "",
        "The blog post this project descends from printed single training-batch losses on Tiny Shakespeare from its "
        f"own model and recipe (Apple MPS). Here, the training-batch loss at the same step, at lr {default_lr:g} "
        "(train.py's default, one rate for both, as the blog did):",
        "",
        "| | blog | here |",
        "|---|---|---|",
        f"| baseline, step 100 | {BLOG['baseline_step100']} | {number(b.batch_loss_100 if b else None)} |",
        f"| residual off, step 100 | {BLOG['residual_off_step100']} | {number(ro.batch_loss_100 if ro else None)} |",
        f"| baseline, step 1000 | {BLOG['baseline_step1000']} | {number(at_step(b and b.loss_curve, 1000))} "
        f"(validation {number(at_step(b and b.val_curve, 1000))}) |",
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
    return lines + residual_lesson(result) + [""]


def residual_lesson(result: StudyResult) -> list[str]:
    """The blog's lesson on residual connections, against residual off's sweep (nothing without one)."""
    v = result.variants.get("residual_off")
    best = trial_row(result, "residual_off", v.best_lr) if v else None
    if not best or best.val_split is None:
        return []
    lrs, ref = rates([p.lr for p in v.sweep]), result.reference
    if not v.window:
        return [
            "- Its lesson on residual connections holds under the fair protocol: residual off does not end below "
            f"the bigram level at any learning rate of the sweep ({lrs}); at its best, lr {best.lr:g}, it "
            f"ends at {best.val_split:.3f} ({yardstick(best.val_split, ref)}). So, within the range "
            "swept, it is not the learning rate that stops it."
        ]
    return [
        f"- Its lesson on residual connections, measured fairly: residual off trains at {rates(v.window)} "
        f"(of {lrs}); at its best, lr {best.lr:g}, it ends at {best.val_split:.3f} "
        f"({yardstick(best.val_split, ref)})."
    ]


def write_report(path: Path, results: list[StudyResult], total_wall: float, images: Path) -> None:
    """docs/ablations.md: every number comes from `results` (what the runs measured) or is quoted from the blog;
    each corpus's results.json is copied beside it as the record `--verify` checks."""
    images.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(images, path.parent)
    lines = report_header(results, total_wall)
    for r in results:
        lines += corpus_section(r, Path(r.out), images, rel)
    shakespeare = next((r for r in results if r.corpus == "shakespeare"), None)
    if shakespeare:
        lines += blog_section(shakespeare)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines))


def report_header(results: list[StudyResult], total_wall: float) -> list[str]:
    """The report's first lines: the command that wrote it (as it runs today), the machine, the time, the protocol."""
    r0 = results[0]
    hours = {r.corpus: sum(t.wall_s or 0 for t in r.trials) / 3600 for r in results}
    trained = sum(hours.values()) * 3600
    per_corpus = f" ({', '.join(f'{c} {h:.1f} h' for c, h in hours.items())})" if len(hours) > 1 else ""
    threads = sorted({t.threads for r in results for t in r.trials if t.threads})
    return [
        "# Ablations: break GPT-2 mini and watch what breaks, each variant at its own best learning rate",
        "",
        "Written by `python -m experiments.ablate`; every figure below was measured by the command that wrote this "
        "page:",
        "",
        "```bash",
        current_command(r0.command) or PROGRAM,
        "```",
        "",
        f"- Hardware: {'; '.join(sorted({r.hardware for r in results}))}; {r0.jobs} trials at once, "
        f"{', '.join(map(str, threads)) or '?'} thread(s) each (on the CPU a trial's result is deterministic for a "
        "given thread count; another count rounds differently and ends a little elsewhere).",
        f"- Wall time: the trials took {trained / 3600:.1f} h of training added up{per_corpus}, {r0.jobs} at a time "
        f"(each timed when it was trained, on a machine that was not always idle); the last run of the command took "
        f"{total_wall / 60:.1f} min, reusing what earlier runs measured.",
        f"- Protocol: every variant trains at each learning rate of the sweep ({rates(r0.lrs)}) with seed "
        f"{r0.base_seed}; where its best lies at an edge of the sweep, at up to {r0.extend} more beyond "
        "it (each 2x "
        "further); at the one where it ends lowest (its best), it trains again with "
        f"{r0.seeds - 1} more seed(s). Tables give the mean and range over those {r0.seeds} seeds; a difference "
        "smaller than the spread (overlapping ranges) is called a tie. The stability window is the set of learning "
        f"rates at which a variant ends below the bigram level by more than {AT_LEVEL} nats (closer, it is called "
        "about the bigram level), i.e. uses more than the current character.",
        f"- Recipe, the same for every trial: {recipe_line(r0.recipe, r0.trials[0].context or '?')}.",
        "- Each variant differs from the baseline by one switch (`python train.py --help` lists them); the data order "
        "is the same for all of them. One trial alone: e.g. `python train.py --disable_residual 1 --lr 1e-3`.",
        "- The probes (train.py logs them at every evaluation): attention entropy, residual-stream norm per layer, "
        "input dependence (the mean KL divergence of each position's prediction from their mean: 0 when the model "
        "predicts the same distribution whatever it reads) and the gradient norm of each part (before clipping).",
        "",
    ]


def corpus_section(r: StudyResult, out: Path, images: Path, rel: str) -> list[str]:
    corpus = r.corpus
    for fig in ("lr_sweep.png", "loss_curves.png", "probes.png"):
        if (out / fig).exists():
            shutil.copy2(out / fig, images / f"{corpus}_{fig}")
    write_record(images / f"{corpus}_results.json", r)
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
        "### The sweep (seed " + str(r.base_seed) + "; bold: the best learning rate)",
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
    if default_lr in r.lrs:
        lines += [f"At lr {default_lr:g}, train.py's default (one rate for all):", ""]
        lines += [evidence_table(r, default_lr), ""]
    lines += [
        f"![loss curves]({rel}/{corpus}_loss_curves.png)",
        "",
        f"![probes]({rel}/{corpus}_probes.png)",
        "",
        "### What each result means",
        "",
        *(meaning(v, r) for v in r.variants.values()),
        "",
        *follow_up_section(r),
        "### Samples",
        "",
        f"Each variant at its best learning rate (seed {r.base_seed}); prompt {r.prompt!r}, temperature 0.8, "
        "top-k 40, seed 0.",
        "",
    ]
    return lines + sample_lines(r)


def sample_lines(r: StudyResult) -> list[str]:
    """Each variant's sample; one the same as an earlier variant's, character for character, says so."""
    lines, written = [], {}
    for v in r.variants.values():
        if v.sample is None:
            continue
        lines += [f"**{v.label}** (lr {v.best_lr:g})", ""]
        if v.sample in written:
            lines += [
                f"The same text as **{written[v.sample]}**, character for character: with the same seed, two "
                "models that learned the same distribution write the same characters.",
                "",
            ]
        written.setdefault(v.sample, v.label)
        lines += ["```text", r.prompt + v.sample, "```", ""]
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
        r = read_record(record, StudyResult)
        if r.corpus not in CORPORA:
            lines.append(f"skip {r.corpus}: not a shipped corpus")
            continue
        train_text, val_text = train_val_split(load_corpus(r.corpus), r.recipe["val_fraction"])
        ref = reference_losses(train_text, val_text)
        for key in ("unigram", "bigram"):
            lines.append(check(f"{r.corpus} {key} level", r.reference[key], ref[key], 0.0))
        row = trial_row(r, BASELINE, r.variants[BASELINE].best_lr)
        lines.append(check(f"{r.corpus} {row.key} loss at step {steps}", *replay(row, steps), VERIFY_TOLERANCE))
        for folder in sorted(p.parent for p in (models / r.corpus).glob("*/training.json")):
            shipped = json.loads((folder / "training.json").read_text())
            model, tokenizer = load_model_folder(folder)
            with torch.no_grad():
                loss = split_loss(model, encode(tokenizer, val_text), model.config.n_positions)
            lines.append(check(f"{folder} validation loss", shipped["val_split"], round(loss, 4), SHIPPED_TOLERANCE))
    return lines


def check(what: str, published: float | None, now: float | None, tolerance: float) -> str:
    ok = published is not None and now is not None and abs(published - now) <= tolerance
    return f"{'ok' if ok else 'DRIFT'}  {what}: published {published}, now {now}"


def replay(row: TrialRow, steps: int) -> tuple[float | None, float | None]:
    """The batch loss at `steps` of a trial as published, and as the current code trains it again (same recipe,
    seed and thread count, in a temporary folder)."""
    import tempfile

    published = at_step(row.loss_curve, steps)
    s = TrainSettings(**row.recipe)
    s.progress, s.stop_at, s.log_interval = False, steps, 10
    threads = torch.get_num_threads()
    torch.set_num_threads(row.threads or threads)
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

MODULE = "experiments.ablate"
PROGRAM = command_line(MODULE, [])
# --quick: the protocol's quick budget (gpt2mini.study.protocol.QUICK), into its own folder (flags given still win)
QUICK = protocol.QUICK | {"out": "runs/ablations-quick"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with QUICK's values as the defaults under --quick."""
    p = build_parser()
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)
    return p.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
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


def run_verify(args) -> int:
    """--verify: the checks of `verify`, one line each; exit 1 if any drifted."""
    report = Path(args.report or "docs/ablations.md")
    lines = verify(report.parent / report.stem, Path(args.ship or "models"))
    print("\n".join(lines))
    drift = [line for line in lines if line.startswith("DRIFT")]
    print(f"{len(drift)} of {len(lines)} figures drifted" if drift else f"all {len(lines)} figures reproduced")
    return 1 if drift else 0


RECIPE_FLAGS = (
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
)  # the flags that set the base recipe of every trial


def base_settings(args) -> TrainSettings:
    """The recipe every trial shares, from the flags; a UsageError for a bad flag before anything is written."""
    base = TrainSettings(**{k: getattr(args, k) for k in RECIPE_FLAGS})
    base.check()
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
    return base


def run(args, command: str) -> None:
    """The protocol on every corpus, each shipped (--ship) as it finishes; then the report (--report)."""
    names = parse_list(args.variants, NAMED, "variant")
    corpora = [Path(args.data).stem] if args.data else parse_list(args.corpus, CORPORA, "corpus")
    base, lrs = base_settings(args), parse_lrs(args.lrs)
    t0, results = time.perf_counter(), []
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
            follow_ups=FOLLOW_UPS,
            command=command,
        )
        r.out = str(out)
        results.append(r)
        print(f"\n{r.corpus} ({r.hardware}, {r.wall_s:.0f} s)\n{results_table(r)}\nwritten to {out}/", file=sys.stderr)
        if args.ship:
            for info in ship_best(r, out, Path(args.ship) / r.corpus, SHIPPED):
                print(f"shipped {info['folder']} ({info['bytes'] / 1e6:.1f} MB)", file=sys.stderr)
    if args.report:
        report = Path(args.report)
        write_report(report, results, time.perf_counter() - t0, report.parent / report.stem)
        print(f"report: {report}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    def work() -> int:
        args = parse_args(argv)
        if args.verify:
            return run_verify(args)
        run(args, command_line(MODULE, sys.argv[1:] if argv is None else argv))
        return 0

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
