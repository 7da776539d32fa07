"""Scaling laws in miniature: validation loss against parameters, data and compute, measured, fitted and plotted.

    python -m experiments.scaling --jobs 2                # the grid on Tiny Shakespeare; writes docs/scaling.md
    python -m experiments.scaling --jobs 2 --ship models  # also ships small sizes (models/<corpus>/scaling/)
    python -m experiments.scaling --quick                 # a tiny grid in about a minute (to see it work; tests run it)
    python -m experiments.scaling --device cuda --compile --jobs 4 --sizes cpu,gpu   # on a GPU: 3 larger sizes too

Two grids, each run at a learning rate of its own:
- Model size: GPT-2 mini at several sizes, width = 32 x depth (heads of 32 dimensions, so depth, width and heads grow
  together), all trained on the same number of tokens. Each size sweeps the learning rate around a rule (the baseline's
  best rate, scaled by 128 / width) and keeps its best; a best at the edge of the sweep is looked beyond.
- Data: one size of the grid (3 x 96) on the first 1/16 ... all of the training split, at the rate that size found
  best, for the same number of steps: less text is seen more often, and the model starts to memorize it.

Validation loss is experiments.ablate's: cross-entropy over every window of the whole held-out split. FLOPs are counted
per run (GPT2MiniForCausalLM.flops_per_token: 6 per multiplying weight per token plus the attention, 12 L T C). The
fits (loss = E + A / N^alpha, and the same in D), their bootstrap uncertainties, the compute-optimal frontier and the
comparison with the published laws are computed from the runs by this command; trials are cached and resumed like
experiments.ablate's (gpt2mini.study.trials), and the summary is a records.ScalingSummary.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from configuration_gpt2mini import BASELINE, GPT2MiniConfig
from gpt2mini.checkpoint import UsageError, atomic_write_text
from gpt2mini.corpus import CORPORA, load_corpus, train_val_split
from gpt2mini.report.figures import si
from gpt2mini.report.records import (
    DataPoint,
    FrontierPoint,
    LrRule,
    PowerFit,
    ScalingFits,
    ScalingSummary,
    SizeExponent,
    SizePoint,
    SizeSweepPoint,
    TrialRow,
    command_line,
    current_command,
    write_record,
)
from gpt2mini.study.protocol import exit_status, hardware, pick_eval_device, sample_from
from gpt2mini.study.ship import ship, ship_record
from gpt2mini.study.tables import number
from gpt2mini.study.trials import Trial, best_lr, recipe_of, run_trials
from gpt2mini.tokenizer import build_tokenizer
from gpt2mini.training.settings import TrainSettings
from modeling_gpt2mini import GPT2MiniForCausalLM

HEAD_DIM = 32  # every size's attention heads are this wide: heads = width / 32
SIZES = ((1, 32), (2, 64), (3, 96), (4, 128), (6, 192), (7, 224))  # (layers, width): width = 32 x layers
GPU_SIZES = ((8, 256), (10, 320), (12, 384))  # further along the same line, for `--sizes cpu,gpu` on a GPU
DATA_SIZE = (3, 96)  # the data grid's model: one of the grid's, small enough to memorize a share of the text
FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1)  # shares of the training split the data grid trains on
LR_ANCHOR = 4e-3  # experiments.ablate's best learning rate for the baseline (width 128) on Tiny Shakespeare
LR_FACTORS = (0.5, 1, 2)  # each size's sweep, around LR_ANCHOR * 128 / width
EXTEND = 2  # learning rates tried beyond the edge of a size's sweep, where its best lies there
SEEDS = 1  # runs at each size's best learning rate (more seeds: the spread over seeds in the tables)
RECIPE = {"steps": 1500, "short_context": 0, "eval_interval": 100, "batch_size": 4}  # full windows from the start:
# every step costs the same, and the validation curve is comparable across the run (the frontier is drawn from it)


def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def size_fields(size: tuple[int, int]) -> dict:
    layers, width = size
    return {"n_layer": layers, "n_head": max(1, width // HEAD_DIM), "n_embd": width}


def rule_lr(size: tuple[int, int]) -> float:
    """The centre of a size's learning-rate sweep: the baseline's best rate, scaled by 128 / width (Adam's update to
    a wider matrix moves its outputs more, so wider models need smaller rates)."""
    return float(f"{LR_ANCHOR * 128 / size[1]:.3g}")


def trial_of(size: tuple[int, int], lr: float, seed: int, fraction: float = 1.0) -> Trial:
    """A grid point as one of experiments.ablate's trials: the baseline with the size (and share of the data) as
    changes."""
    changes = tuple(size_fields(size).items()) + ((("train_fraction", fraction),) if fraction < 1 else ())
    return Trial(BASELINE, float(f"{lr:.3g}"), seed, changes)


def model_of(size: tuple[int, int], vocab: int, context: int) -> GPT2MiniForCausalLM:
    """A fresh model of a grid size (for counting; its weights do not matter)."""
    return GPT2MiniForCausalLM(GPT2MiniConfig(vocab_size=vocab, n_positions=context, **size_fields(size)))


def non_embedding(size: tuple[int, int], vocab: int, context: int) -> int:
    """Parameters without the token and position embeddings (Kaplan et al.'s N)."""
    model = model_of(size, vocab, context)
    t = model.transformer
    return model.num_parameters() - t.wte.weight.numel() - t.wpe.weight.numel()


def flops_per_token(size: tuple[int, int], vocab: int, context: int) -> int:
    return model_of(size, vocab, context).flops_per_token(context)


# ---------------------------------------------------------------------------------------------------------------------
# The grid: which trials the plan needs, given what has run


class Plan:
    """The trials the two grids need. Which ones depends on results (a best rate at an edge asks for one beyond it;
    the data grid and the extra seeds wait for a size's best), so the grid runs in rounds until nothing is missing."""

    def __init__(self, args, base: TrainSettings):
        self.args, self.seed = args, base.seed
        self.sizes = list(args.sizes)
        self.swept = {s: [float(f"{rule_lr(s) * f:.3g}") for f in args.lr_factors] for s in self.sizes}

    def needed(self, rows: dict) -> list[Trial]:
        best = {s: self.settled_best(s, rows) for s in self.sizes}  # first: it may extend a sweep
        trials = [trial_of(s, lr, self.seed) for s in self.sizes for lr in self.swept[s]]
        for s in (s for s in self.sizes if best[s] is not None):
            trials += [trial_of(s, best[s], self.seed + k) for k in range(1, self.args.seeds)]
            if s == self.args.data_size:
                trials += [trial_of(s, best[s], self.seed, f) for f in self.args.fractions if f < 1]
        return list(dict.fromkeys(trials))

    def settled_best(self, size, rows: dict) -> float | None:
        """A size's best learning rate, once its sweep is done and the best is not at an edge it may still look
        beyond (extending the sweep as a side effect); None while trials are missing."""
        lrs = self.swept[size]
        done = [rows.get(trial_of(size, lr, self.seed).key) for lr in lrs]
        if any(r is None for r in done):
            return None
        best = best_lr(done)
        if best is None:  # every rate diverged
            return None
        beyond = len(lrs) - len(self.args.lr_factors)
        if best in (min(lrs), max(lrs)) and beyond < self.args.extend and len(lrs) > 1:
            lrs.append(float(f"{best * (0.5 if best == min(lrs) else 2):.3g}"))
            return None
        return best


def cost(trial: Trial, vocab: int, base: TrainSettings) -> int:
    size = (dict(trial.changes)["n_layer"], dict(trial.changes)["n_embd"])
    return flops_per_token(size, vocab, context_of(base))


def run_grid(base: TrainSettings, args, out: Path, text: str) -> tuple[Plan, dict]:
    """Train every trial the plan needs (the dearest first, so that `--jobs` processes finish together)."""
    val_text = train_val_split(text, base.val_fraction)[1]
    vocab = len(build_tokenizer(text))
    plan, rows = Plan(args, base), {}
    while missing := [t for t in plan.needed(rows) if t.key not in rows]:
        missing.sort(key=lambda t: -cost(t, vocab, base))
        rows |= run_trials(base, missing, out, val_text, args.fresh, args.jobs, "scaling")
    return plan, rows


# ---------------------------------------------------------------------------------------------------------------------
# What the runs measured


def training_time(row: TrialRow) -> float | None:
    """Seconds a trial trained, all its sessions together (its checkpoint's; the row's wall_s is one session)."""
    return round(row.state[1]) if row.state else None


def context_of(base: TrainSettings) -> int:
    return base.block_size or GPT2MiniConfig().n_positions


def tokens_per_step(base: TrainSettings) -> int:
    return base.batch_size * base.grad_accum * context_of(base)


def size_point(size, plan: Plan, rows: dict[str, TrialRow], base: TrainSettings, vocab: int) -> SizePoint:
    """One size: its sweep, its best rate, the loss there (over seeds), its compute and its validation curve."""
    lrs = sorted(plan.swept[size])
    swept = [rows[trial_of(size, lr, base.seed).key] for lr in lrs]
    best = best_lr(swept)
    runs = [rows[trial_of(size, best, base.seed + k).key] for k in range(plan.args.seeds)] if best else []
    losses = [r.val_split for r in runs if r.val_split is not None]
    fpt, first = flops_per_token(size, vocab, context_of(base)), runs[0] if runs else None
    return SizePoint(
        name=size_name(size),
        **size_fields(size),
        non_embedding=non_embedding(size, vocab, context_of(base)),
        parameters=first.parameters if first else None,
        flops_per_token=fpt,
        sweep=[SizeSweepPoint(r.lr, r.val_split) for r in swept],
        best_lr=best,
        at_edge=best is not None and len(lrs) > 1 and best in (lrs[0], lrs[-1]),
        seed_losses=losses,
        loss=round(sum(losses) / len(losses), 4) if losses else None,
        min=min(losses, default=None),
        max=max(losses, default=None),
        tokens=base.steps * tokens_per_step(base),
        flops=base.steps * tokens_per_step(base) * fpt,
        wall_s=training_time(first) if first else None,
        key=first.key if first else None,
        curve=[[step, step * tokens_per_step(base) * fpt, v] for step, v in (first.val_curve if first else []) if step],
    )


def data_point(size, fraction: float, lr: float, rows: dict, base: TrainSettings, out: Path, chars: int) -> DataPoint:
    """One share of the data: the loss at the end (whole split), the lowest point of the validation curve (what
    stopping early would keep, on the fixed evaluation batches) and the training loss at the end (the gap is
    memorization)."""
    from gpt2mini.checkpoint import read_metrics

    trial = trial_of(size, lr, base.seed, fraction)
    row = rows[trial.key]
    evals = [m for m in read_metrics(trial.folder(out)) if "val_loss" in m]
    low = min(evals, key=lambda m: m["val_loss"]) if evals else {}
    chars = round(chars * fraction)
    return DataPoint(
        fraction=fraction,
        chars=chars,
        epochs=round(base.steps * tokens_per_step(base) / chars, 2),
        loss=row.val_split,
        early=round(low["val_loss"], 4) if low else None,
        early_step=low.get("step"),
        train_loss=round(evals[-1]["train_loss"], 4) if evals else None,
        val_estimate=round(evals[-1]["val_loss"], 4) if evals else None,
        curve=[[m["step"], round(m["val_loss"], 4), round(m["train_loss"], 4)] for m in evals],
        key=row.key,
        wall_s=training_time(row),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Fits


ALPHAS = np.geomspace(1e-3, 3.0, 3000)  # the exponents a fit tries: a 0.3% grid, fine beside any uncertainty here
BOOTSTRAP = 2000  # resamplings of the residuals behind each interval
INTERVAL = (16, 84)  # percentiles: a 68% interval, one standard deviation's worth


def fit_curve(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float] | None:
    """Least squares for y = E + A * (x / x[0])^-alpha with E >= 0 and A >= 0: for each alpha of ALPHAS the best E and
    A are a straight-line fit in z = (x / x[0])^-alpha; the alpha with the smallest squared error wins.
    Returns (E, A, alpha, rss), A per x[0] (A * x[0]^alpha in x's own units); None where no curve of this shape
    falls with x (every alpha wants A <= 0)."""
    z = (x[None, :] / x[0]) ** -ALPHAS[:, None]  # (alphas, points)
    zm, ym = z.mean(1, keepdims=True), y.mean()
    a = ((z - zm) * (y - ym)).sum(1) / np.maximum(((z - zm) ** 2).sum(1), 1e-300)
    e = ym - a * zm[:, 0]
    through_zero = (z * y).sum(1) / (z * z).sum(1)  # where E would fall below 0: E = 0
    a, e = np.where(e < 0, through_zero, a), np.maximum(e, 0)
    rss = ((e[:, None] + a[:, None] * z - y) ** 2).sum(1)
    rss[a <= 0] = np.inf
    i = int(np.argmin(rss))
    return (float(e[i]), float(a[i]), float(ALPHAS[i]), float(rss[i])) if math.isfinite(rss[i]) else None


def fit_power(x, y, seed: int = 0) -> PowerFit:
    """The fit of fit_curve with 68% intervals from a residual bootstrap: the residuals, centred and scaled by
    sqrt(n / (n - 3)) (a fit of 3 numbers leaves them smaller than the noise), resampled onto the fitted curve and
    refitted BOOTSTRAP times. PowerFit(error=why) with fewer than 4 points (3 would fit exactly) or where the loss
    does not fall."""
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    if len(x) < 4:
        return PowerFit(error=f"{len(x)} points: a fit of 3 numbers needs at least 4")
    found = fit_curve(x, y)
    if found is None:
        return PowerFit(error="the loss does not fall as it grows: no power law of this shape fits")
    e, a, alpha, rss = found
    fitted = e + a * (x / x[0]) ** -alpha
    residuals = (y - fitted - (y - fitted).mean()) * math.sqrt(len(x) / (len(x) - 3))
    rng = np.random.default_rng(seed)
    refits = [fit_curve(x, fitted + rng.choice(residuals, len(x))) for _ in range(BOOTSTRAP)]
    boot = np.array([r[:3] for r in refits if r is not None])
    lo, hi = np.percentile(boot, INTERVAL, axis=0)
    return PowerFit(
        E=round(e, 4),
        A=a * x[0] ** alpha,
        alpha=round(alpha, 4),
        x0=float(x[0]),
        A_at_x0=round(a, 4),
        E_interval=[round(lo[0], 4), round(hi[0], 4)],
        alpha_interval=[round(lo[2], 4), round(hi[2], 4)],
        rms=round(math.sqrt(rss / len(x)), 4),
        points=len(x),
        flat_refits=BOOTSTRAP - len(boot),  # resamplings in which the loss no longer fell (left out)
        at_bound=bool(alpha in (ALPHAS[0], ALPHAS[-1]) or e == 0),
    )


# ---------------------------------------------------------------------------------------------------------------------
# The compute-optimal frontier


def loss_at(curve: list, flops: float) -> float | None:
    """A size's validation loss at a compute budget, read off its curve (log-log between evaluations), or None
    outside the part of the budget axis its run covered."""
    c = np.log([p[1] for p in curve])
    if not curve or not c[0] <= math.log(flops) <= c[-1]:
        return None
    return float(np.exp(np.interp(math.log(flops), c, np.log([p[2] for p in curve]))))


def best_within(curve: list, flops: float) -> tuple[float, float] | None:
    """The lowest loss a size's run reached with at most `flops` of compute, and the compute it took: a run may stop
    early, so its evaluations before the budget count, and its curve read at the budget itself; None before its
    first evaluation."""
    here = [(p[2], p[1]) for p in curve if p[1] <= flops]
    at = loss_at(curve, flops)
    here += [(at, flops)] if at is not None else []
    return min(here) if here else None


def frontier(points: list[SizePoint], budgets: int = 25) -> list[FrontierPoint]:
    """At each of `budgets` compute budgets (log-spaced over what the runs cover), the lowest validation loss any
    size reached with at most that compute (the envelope of the training curves, as Kaplan et al. and Hoffmann et
    al.'s approach 1 draw it), the size that reached it and the tokens per parameter it had seen by then."""
    runs = [p for p in points if p.curve]
    if not runs:
        return []
    low, high = min(p.curve[0][1] for p in runs), max(p.curve[-1][1] for p in runs)
    out = []
    for flops in np.geomspace(low, high, budgets):
        here = [(best_within(p.curve, flops), p) for p in runs]
        here = [(found, p) for found, p in here if found is not None]
        (loss, spent), best = min(here, key=lambda h: h[0][0])
        tokens = spent / best.flops_per_token
        out.append(
            FrontierPoint(
                flops=float(flops),
                loss=round(loss, 4),
                size=best.name,
                non_embedding=best.non_embedding,
                spent=float(spent),
                tokens=round(tokens),
                tokens_per_parameter=float(f"{tokens / best.non_embedding:.3g}"),
                competitors=len(here),
            )
        )
    return out


def optimal_size_exponent(front: list[FrontierPoint]) -> SizeExponent:
    """The slope of log N_opt against log C over the frontier's distinct (compute, size) points where more than one
    size competes. The grid's sizes are discrete, so this is the slope of a staircase: rough, and with no interval
    (resampling a staircase measures its steps, not an uncertainty)."""
    pts = list(dict.fromkeys((math.log(f.spent), math.log(f.non_embedding)) for f in front if f.competitors > 1))
    if len(pts) < 3 or len({n for _, n in pts}) < 2:
        return SizeExponent(error="fewer than two sizes are ever best: no slope to fit")
    c, n = np.array(pts).T
    return SizeExponent(a=round(float(np.polyfit(c, n, 1)[0]), 3), points=len(pts))


# ---------------------------------------------------------------------------------------------------------------------
# The summary: everything the report, the figure and the lab show


# The published laws, for comparison. Kaplan et al. 2020 (arXiv:2001.08361): L(N) = (N_c / N)^0.076 for models trained
# to convergence, L(D) = (D_c / D)^0.095 with early stopping, N_opt ~ C^0.73. Hoffmann et al. 2022 (arXiv:2203.15556):
# L(N, D) = 1.69 + 406.4 / N^0.34 + 410.7 / D^0.28, N_opt ~ C^0.50 (approach 1), about 20 tokens per parameter.
PUBLISHED = {
    "Kaplan et al. 2020": {"alpha": 0.076, "beta": 0.095, "a": 0.73, "tokens_per_parameter": None, "E": None},
    "Hoffmann et al. 2022": {"alpha": 0.34, "beta": 0.28, "a": 0.50, "tokens_per_parameter": 20, "E": 1.69},
}


def summarize(plan: Plan, rows: dict[str, TrialRow], base: TrainSettings, out: Path, text: str) -> ScalingSummary:
    vocab, args = len(build_tokenizer(text)), plan.args
    sizes = [size_point(s, plan, rows, base, vocab) for s in plan.sizes]
    data_lr = next(p.best_lr for p in sizes if p.name == size_name(args.data_size))
    train_chars = len(train_val_split(text, base.val_fraction)[0])
    data = (
        []
        if data_lr is None
        else [data_point(args.data_size, f, data_lr, rows, base, out, train_chars) for f in sorted(args.fractions)]
    )
    done = [p for p in sizes if p.loss is not None]
    early = [d for d in data if d.early is not None and d.loss is not None]  # not diverged
    front = frontier(done)
    return ScalingSummary(
        corpus=base.corpus,
        hardware=hardware(base.device),
        recipe=recipe_of(base),
        vocab=vocab,
        context=context_of(base),
        tokens_per_step=tokens_per_step(base),
        train_chars=train_chars,
        lr_rule=LrRule(anchor=LR_ANCHOR, width=128, factors=list(args.lr_factors), extend=args.extend),
        seeds=args.seeds,
        data_size=size_name(args.data_size),
        data_lr=data_lr,
        trials=len(rows),
        train_wall_s=round(sum(training_time(r) or 0 for r in rows.values())),
        threads=sorted({r.threads for r in rows.values() if r.threads}),
        sizes=sizes,
        data=data,
        fits=ScalingFits(
            N=fit_power([p.non_embedding for p in done], [p.loss for p in done]),
            D=fit_power([d.chars for d in early], [d.early for d in early]),
            a=optimal_size_exponent(front),
        ),
        frontier=front,
        published=PUBLISHED,
    )


# ---------------------------------------------------------------------------------------------------------------------
# The report


def _interval(fit: PowerFit, key: str) -> str:
    """A fitted number in bold with its 68% interval: `key` is "alpha" or "E"."""
    lo, hi = getattr(fit, f"{key}_interval")
    return f"**{getattr(fit, key):.3f}** (68% interval {lo:.3f} – {hi:.3f})"


def size_table(summary: ScalingSummary) -> str:
    lines = [
        "| size (layers x width) | heads | non-embedding N | all parameters | FLOPs per token | learning rates tried "
        "(val loss) | best | val loss | training FLOPs | training time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in summary.sizes:
        tried = ", ".join(
            ("**" if x.lr == p.best_lr else "")
            + f"{x.lr:g} ({number(x.val_split)})"
            + ("**" if x.lr == p.best_lr else "")
            for x in p.sweep
        )
        spread = f" ({number(p.min)} – {number(p.max)})" if len(p.seed_losses) > 1 else ""
        edge = " (edge)" if p.at_edge else ""
        lines.append(
            f"| {p.name} | {p.n_head} | {p.non_embedding:,} | {p.parameters or 0:,} | "
            f"{si(p.flops_per_token)} | {tried} | {number(p.best_lr, 4)}{edge} | {number(p.loss)}{spread} | "
            f"{si(p.flops)} | {p.wall_s or 0:.0f} s |"
        )
    return "\n".join(lines)


def batches(summary: ScalingSummary) -> str:
    """'20 fixed batches': what the periodic validation estimates are measured on."""
    return f"{summary.recipe['eval_iters']} fixed batches"


def data_table(summary: ScalingSummary) -> str:
    lines = [
        "| share of the training split | characters D | epochs in the run | val loss at the end (whole split) | "
        f"val loss at the end ({batches(summary)}) | at its lowest (same batches; step) | rise | "
        "training loss at the end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in summary.data:
        rise = rise_of(d)
        lines.append(
            f"| {d.fraction:g} | {d.chars:,} | {d.epochs:g} | {number(d.loss)} | {number(d.val_estimate)} | "
            f"{number(d.early)} ({d.early_step}) | {'+' if rise and rise > 0 else ''}{number(rise)} | "
            f"{number(d.train_loss)} |"
        )
    return "\n".join(lines)


def frontier_table(summary: ScalingSummary, every: int = 3) -> str:
    lines = [
        "| compute budget C (FLOPs) | sizes with a curve there | lowest val loss with at most C | reached by | its N | "
        "tokens seen | tokens per parameter |",
        "|---|---|---|---|---|---|---|",
    ]
    front = summary.frontier
    for f in front[::every] + ([front[-1]] if front and (len(front) - 1) % every else []):
        lines.append(
            f"| {si(f.flops)} | {f.competitors} | {f.loss:.3f} | {f.size} | {si(f.non_embedding)} | "
            f"{si(f.tokens)} | {f.tokens_per_parameter:g} |"
        )
    return "\n".join(lines)


def shares(data: list[DataPoint]) -> str:
    return ", ".join(f"{d.fraction:g}" for d in data)


OVERFIT = 0.02  # nats: a run that saw its data more than once and ended this far above its lowest has overfitted


def rise_of(d: DataPoint) -> float | None:
    """How far a run's validation loss ended above its lowest point (the same fixed batches both)."""
    return None if d.val_estimate is None or d.early is None else round(d.val_estimate - d.early, 4)


def memorized(d: DataPoint) -> bool:
    """A share the model memorized: seen more than once, its validation loss ended more than OVERFIT above its lowest
    point while its training loss ended below where it was at that point."""
    low = next((c for c in d.curve if c[0] == d.early_step), None)
    falling = low is not None and d.train_loss is not None and d.train_loss < low[2]
    return d.epochs > 1 and (rise_of(d) or 0) > OVERFIT and falling


def gap(d: DataPoint) -> float | None:
    """Validation minus training loss at the end of a run, both on their fixed batches: what it learned of its own
    text and not of held-out text."""
    return None if d.val_estimate is None or d.train_loss is None else d.val_estimate - d.train_loss


def overfit_line(summary: ScalingSummary) -> str:
    """What the data grid shows about memorization: the gap between validation and training loss, share by share,
    and whether any validation loss rose again."""
    data = [d for d in summary.data if gap(d) is not None]
    if len(data) < 2:
        return ""
    small, full = data[0], data[-1]
    line = (
        f"The less text, the more of what the model learned was its own text: at the end, validation loss stood "
        f"{gap(full):.3f} nats above training loss on {full.fraction:g} of the split ({full.epochs:g} epochs) "
        f"and {gap(small):.3f} on {small.fraction:g} ({small.epochs:g} epochs), both on {batches(summary)}. "
    )
    over = [d for d in data if memorized(d)]
    if over:
        return line + (
            f"On {shares(over)} the validation loss ended more than {OVERFIT} nats above its lowest point while the "
            "training loss went on falling: the model had started to memorize. Stopping early would have kept the "
            "lowest point; the fit in D uses those."
        )
    return line + (
        f"No run's validation loss rose more than {OVERFIT} nats above its lowest point with its training loss still "
        "falling: at this size and budget, memorizing did not yet make held-out text worse."
    )


def comparison_table(summary: ScalingSummary) -> str:
    fits = summary.fits
    front = summary.frontier
    optimum = [f.tokens_per_parameter for f in front if f.competitors > 1]

    def ours(fit: PowerFit, key: str) -> str:
        return "–" if fit.error else _interval(fit, key)

    tpp = f"{min(optimum):g} – {max(optimum):g}" if optimum else "–"
    a = fits.a
    a_text = "–" if a.error else f"**{a.a:.2f}** (the slope of a staircase: see below)"
    k, h = PUBLISHED["Kaplan et al. 2020"], PUBLISHED["Hoffmann et al. 2022"]
    return "\n".join(
        [
            "| quantity | here | Kaplan et al. 2020 | Hoffmann et al. 2022 |",
            "|---|---|---|---|",
            f"| exponent of N (α) | {ours(fits.N, 'alpha')} | {k['alpha']} | {h['alpha']} |",
            f"| exponent of D (β) | {ours(fits.D, 'alpha')} | {k['beta']} | {h['beta']} |",
            f"| optimal size grows as C^a | {a_text} | {k['a']} | {h['a']} |",
            f"| tokens per parameter at the optimum | {tpp} (characters) | (falls as C grows) | about "
            f"{h['tokens_per_parameter']} (BPE tokens) |",
        ]
    )


def caveats(summary: ScalingSummary) -> list[str]:
    """What the comparison with the published laws can and cannot say, with this grid's own numbers."""
    sizes = [p.non_embedding for p in summary.sizes]
    return [
        "Characters, not BPE tokens: a loss in nats per character is not the published nats per token, so the "
        "losses and E do not compare; a character carries less than a BPE token (about a quarter of one in English "
        "text), so the tokens per parameter here count characters and are not on Hoffmann et al.'s scale.",
        f"Tiny models on one small corpus: {si(min(sizes))} to {si(max(sizes))} non-embedding parameters on "
        f"{summary.train_chars:,} characters, against Kaplan et al.'s 768 to 1.5 billion and Hoffmann et al.'s 70 "
        f"million to 16 billion on billions of tokens of web text; {summary.seeds} seed(s) per point.",
        "Kaplan et al.'s exponents come from laws with no floor, L = (N_c / N)^α; the α here is fitted together with a "
        "floor E, as Hoffmann et al.'s are. The same points give a different exponent with and without E.",
        "L(N) here is at a fixed budget of tokens for every size, not at convergence as in Kaplan et al.: the larger "
        "sizes are further from what they could reach, which flattens the curve (a smaller α) towards its large end.",
        f"L(D) is measured at one small size ({summary.data_size}) and a fixed number of steps, at the lowest of "
        f"the periodic estimates on {batches(summary)} (the lowest of noisy estimates is biased low), not over the "
        "whole split: its E does not compare with L(N)'s.",
        "The frontier reads the sizes' training curves at intermediate steps, before their learning rates had "
        "decayed: those points are worse than runs planned for that length would be (Hoffmann et al., section 3.1), "
        "which favours a small model's finished run over a larger model's unfinished one; the optimal sizes are, if "
        f"anything, underestimated. The curves are the estimates on {batches(summary)}, the tables' final losses the "
        "whole split. Where only one size has a curve, it is the lowest by default.",
        "The exponent of the optimal size is the slope of a staircase (few, discrete sizes): rough, and given with no "
        "interval.",
    ]


def threads_of(summary: ScalingSummary) -> str:
    return " or ".join(map(str, summary.threads)) or "unrecorded"


def design_lines(summary: ScalingSummary) -> list[str]:
    r, lr = summary.recipe, summary.lr_rule
    return [
        f"- Corpus: {summary.corpus}, {summary.train_chars:,} training characters (the held-out split: the "
        f"last {r['val_fraction']:.0%}), a vocabulary of {summary.vocab} tokens, context "
        f"{summary.context}.",
        f"- Sizes: width = 32 x depth, heads of {HEAD_DIM} dimensions (depth, width and heads grow together). "
        "N counts the parameters without the token and position embeddings (Kaplan et al.'s convention).",
        f"- Every run: {r['steps']} steps of {r['batch_size']} full windows ({summary.tokens_per_step:,} tokens a "
        f"step, {r['steps'] * summary.tokens_per_step:,} in all), warmup {r['warmup']}, cosine decay to "
        f"{r['min_lr_ratio']:g} x the peak, AdamW (weight decay {r['weight_decay']:g}), seed {r['seed']}; validation "
        f"on {batches(summary)} every {r['eval_interval']} steps, and over the whole held-out split at the end.",
        f"- Learning rates: each size sweeps {', '.join(f'{f:g}' for f in lr.factors)} x the rule "
        f"{lr.anchor:g} x {lr.width} / width (the baseline's best rate in docs/ablations.md, scaled like "
        f"Adam's update), and up to {lr.extend} more beyond an edge where its best lay there; tables give each "
        f"size at its best ({summary.seeds} seed(s) there).",
        f"- Data: size {summary.data_size} at its best rate ({number(summary.data_lr, 4)}) on the first "
        f"{shares(summary.data)} of the training split, the same number of steps.",
        f"- Repeating a run: each trial is a train.py command (the shipped sizes' training.json holds theirs). It "
        f"reproduces a loss exactly only with the thread count the grid used ({threads_of(summary)} per run, e.g. "
        "`OMP_NUM_THREADS=1`): another count sums in another order, and the run drifts to a slightly different end.",
        "- FLOPs: 6 per multiplying weight per token (forward and backward) plus 12 L T C for attention "
        "(GPT2MiniForCausalLM.flops_per_token), times the tokens trained on.",
    ]


def report_lines(summary: ScalingSummary, images: str) -> list[str]:
    """The report, from the summary alone (tests/test_scaling.py writes it again from the committed results)."""
    fits = summary.fits
    lines = [
        "# Scaling laws in miniature: loss against parameters, data and compute",
        "",
        "Written by the command below from its own runs: every measured number here is computed by it (the published "
        "values are quoted from the papers, `experiments.scaling.PUBLISHED`). "
        "Reproduce (resumable; the finished trials in runs/scaling/ are reused):",
        "",
        f"    {current_command(summary.command)}",
        "",
        f"{summary.trials} training runs, {summary.train_wall_s:,} s of training in all (each run's own "
        f"training time, added up over its sessions; --jobs ran that many at once) on {summary.hardware}; the "
        f"command that wrote this report ran for {summary.wall_s:.0f} s (training what was missing, then the "
        f"report), {summary.date}.",
        "",
        f"![loss against size]({images}/{summary.corpus}_size.png) "
        f"![loss against data]({images}/{summary.corpus}_data.png) "
        f"![loss against compute]({images}/{summary.corpus}_compute.png)",
        "",
        "## The grid",
        "",
        *design_lines(summary),
        "",
        "## Loss against model size",
        "",
        size_table(summary),
        "",
    ]
    lines += [size_trend(summary), ""]
    lines += fit_lines(fits.N, "N", "α", "non-embedding parameters")
    lines += ["", "## Loss against data", "", data_table(summary), "", overfit_line(summary), ""]
    lines += fit_lines(fits.D, "D", "β", "training characters, at the lowest validation loss of each run")
    lines += [
        "",
        "## The compute-optimal frontier",
        "",
        "The lowest validation loss any size reached with at most each compute budget (a run may stop early: its "
        "curve read at the budget, or an earlier evaluation if that was lower), the size that reached it and the "
        "tokens per parameter it had seen by then:",
        "",
        frontier_table(summary),
        "",
        "## Compared with the published laws",
        "",
        comparison_table(summary),
        "",
        "What this comparison can and cannot say:",
        "",
        *[f"- {c}" for c in caveats(summary)],
        "",
    ]
    return lines + sample_lines(summary)


def size_trend(summary: ScalingSummary) -> str:
    """What the sizes' losses show, size by size: where a larger size ended lower and where it did not."""
    done = [p for p in summary.sizes if p.loss is not None]
    if len(done) < 2:
        return ""
    pairs = list(zip(done, done[1:], strict=False))
    flat = [(a, b) for a, b in pairs if b.loss >= a.loss]
    first, last = done[0], done[-1]
    head = (
        f"From {first.name} to {last.name} ({si(first.non_embedding)} to {si(last.non_embedding)} "
        f"parameters) the validation loss went from {first.loss:.3f} to {last.loss:.3f}. "
    )
    if not flat:
        head += "Each larger size ended lower than the one before it."
    else:
        head += (
            "A larger size did not end lower than the one before it at: "
            + ", ".join(f"{b.name} ({b.loss:.3f}, against {a.name}'s {a.loss:.3f})" for a, b in flat)
            + "."
        )
    if summary.seeds == 1:
        head += (
            " One seed per size: the spread over seeds is not measured here, and a small difference between "
            "neighbouring sizes may be within it."
        )
    return head


def fit_lines(fit: PowerFit, symbol: str, exponent: str, what: str) -> list[str]:
    if fit.error:
        return [f"No fit of L({symbol}): {fit.error}."]
    bound = " The fit sits at a bound (E = 0 or the exponent's limit): read it with care." if fit.at_bound else ""
    return [
        f"Fit, L({symbol}) = E + A / {symbol}^{exponent} over {fit.points} points ({symbol}: {what}; least "
        f"squares; intervals from {BOOTSTRAP} residual bootstrap refits): {exponent} = {_interval(fit, 'alpha')}, "
        f"E = {_interval(fit, 'E')} nats, A = {fit.A:.3g}; root-mean-square residual {fit.rms:.4f} nats." + bound
    ]


def sample_lines(summary: ScalingSummary) -> list[str]:
    shown = [p for p in summary.sizes if p.sample]
    if not shown:
        return []
    lines = [
        "## Samples",
        "",
        f"Each size at its best learning rate, from {summary.prompt!r} (temperature 0.8, top-k 40, seed 0):",
        "",
    ]
    for p in shown:
        lines += [
            f"**{p.name}** ({si(p.non_embedding)} parameters, val loss {number(p.loss)}):",
            "",
            "```",
            p.prompt_and_sample,
            "```",
            "",
        ]
    return lines


def write_outputs(summary: ScalingSummary, report: Path) -> Path:
    """The report, its three figures (in <report's folder>/scaling/) and the summary as JSON next to them."""
    from gpt2mini.report.figures import scaling_compute_figure, scaling_data_figure, scaling_size_figure

    images = report.parent / "scaling"
    images.mkdir(parents=True, exist_ok=True)
    name = summary.corpus
    for kind, draw in (
        ("size", scaling_size_figure),
        ("data", scaling_data_figure),
        ("compute", scaling_compute_figure),
    ):
        draw(summary).savefig(images / f"{name}_{kind}.png")
    write_record(images / f"{name}_results.json", summary)
    atomic_write_text(report, "\n".join(report_lines(summary, "scaling")) + "\n")
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Samples and the shipped sizes


SAMPLE_CHARS = 200
SHIP = ("1x32", "2x64", "3x96", "4x128")  # small enough to ship beside the other models (tests/test_shipped_models.py)


def add_samples(summary: ScalingSummary, out: Path, device: str) -> None:
    """A sample from each size's best run, the same prompt and seed for all."""
    prompt = CORPORA[summary.corpus].sample_prompt
    summary.prompt = prompt
    eval_device = pick_eval_device(device)
    for p in summary.sizes:
        if p.key and (out / p.key).is_dir():
            p.sample = sample_from(out / p.key, prompt, SAMPLE_CHARS, eval_device)
            p.prompt_and_sample = prompt + p.sample


def ship_sizes(summary: ScalingSummary, rows: dict[str, TrialRow], out: Path, dest: Path, names=SHIP) -> list[dict]:
    """Copy the named sizes' best runs into dest/<name> (fp16, with training.json as experiments.ablate ships) and the
    summary into dest/scaling.json, which the lab's Scaling tab reads: without the published laws, with the sizes
    shipped."""
    shipped = []
    for p in summary.sizes:
        if p.name not in names or not p.key:
            continue
        shipped.append(ship(out / p.key, dest / p.name, ship_record(rows[p.key])) | {"size": p.name})
    dest.mkdir(parents=True, exist_ok=True)
    write_record(dest / "scaling.json", replace(summary, published=None, shipped=[s["size"] for s in shipped]))
    return shipped


# ---------------------------------------------------------------------------------------------------------------------
# Command line

MODULE = "experiments.scaling"

QUICK = {
    "sizes": "1x16,1x24,2x32,2x48",
    "data_size": "2x32",
    "fractions": "0.125,0.25,0.5,1",
    "lr_factors": "1",
    "steps": 150,
    "warmup": 15,
    "block_size": 64,
    "batch_size": 4,
    "eval_interval": 25,
    "eval_iters": 2,
    "out": "runs/scaling-quick",
    "report": "runs/scaling-quick/scaling.md",
    "ship_sizes": "1x16,2x32",
}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'cpu', 'gpu' (the preset lines) or LAYERSxWIDTH items, comma-separated, e.g. 'cpu,8x256'."""
    sizes = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        if item in ("cpu", "gpu"):
            sizes += SIZES if item == "cpu" else GPU_SIZES
            continue
        try:
            layers, width = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise UsageError(f"--sizes: {item!r} is not LAYERSxWIDTH (e.g. 4x128), cpu or gpu") from None
        if layers < 1 or width < 1:
            raise UsageError(f"--sizes: {item!r} needs at least 1 layer and a width of at least 1")
        sizes.append((layers, width))
    if len(set(sizes)) < 1:
        raise UsageError("--sizes names no size")
    return sorted(set(sizes), key=lambda s: (s[1] * s[1] * s[0], s))


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--{name} takes comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise UsageError(f"--{name} takes positive numbers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Train GPT-2 mini at several sizes and on several shares of its data, fit the scaling laws and "
        "write the report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--corpus", default="shakespeare", help=f"shipped corpus: {', '.join(CORPORA)}")
    p.add_argument("--quick", action="store_true", help="a tiny grid in about a minute (to see it work)")
    p.add_argument("--sizes", default="cpu", help="LAYERSxWIDTH sizes, or cpu (6 sizes, 12k-4.2M) and gpu (3 more)")
    p.add_argument("--data_size", default=size_name(DATA_SIZE), help="the data grid's size (LAYERSxWIDTH)")
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS), help="shares of the training split")
    p.add_argument("--lr_factors", default=",".join(f"{f:g}" for f in LR_FACTORS), help="each size's sweep x the rule")
    p.add_argument("--extend", type=int, default=EXTEND, help="learning rates tried beyond an edge of a size's sweep")
    p.add_argument("--seeds", type=int, default=SEEDS, help="runs at each size's best learning rate")
    d = TrainSettings()
    recipe = {
        "steps": "optimizer steps of every run",
        "warmup": "warmup steps",
        "batch_size": "full windows per step",
        "block_size": "context in characters (None: the model's 256)",
        "eval_interval": "evaluate every N steps (the points of the validation curves)",
        "eval_iters": "fixed batches per evaluation",
        "seed": "the seed of every run",
    }
    for name, hint in recipe.items():
        p.add_argument(f"--{name}", type=int, default=RECIPE.get(name, getattr(d, name)), help=hint)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--compile", action="store_true", help="torch.compile each run (on a GPU)")
    p.add_argument("--jobs", type=int, default=1, help="trials trained at once (separate processes)")
    p.add_argument("--fresh", action="store_true", help="train again even where a finished run is there")
    p.add_argument("--out", default="runs/scaling", help="folder for the runs (one per corpus)")
    p.add_argument("--report", default="docs/scaling.md", help="the report to write (its figures go next to it)")
    p.add_argument("--ship", metavar="DIR", help="copy --ship_sizes into DIR/<corpus>/scaling/ (fp16), for the lab")
    p.add_argument("--ship_sizes", default=",".join(SHIP), help="the sizes --ship copies (LAYERSxWIDTH)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser()
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)
    args = p.parse_args(argv)
    args.sizes = parse_sizes(args.sizes)
    args.data_size = parse_sizes(args.data_size)[0]
    args.ship_sizes = parse_sizes(args.ship_sizes)
    args.fractions = parse_floats(args.fractions, "fractions")
    args.lr_factors = tuple(sorted(parse_floats(args.lr_factors, "lr_factors")))
    if any(f > 1 for f in args.fractions):
        raise UsageError(f"--fractions are shares of the training split, at most 1; got {max(args.fractions):g}")
    if args.data_size not in args.sizes:
        args.sizes = sorted([*args.sizes, args.data_size], key=lambda s: (s[1] * s[1] * s[0], s))
    if args.ship and not set(args.ship_sizes) <= set(args.sizes):
        missing = ", ".join(size_name(x) for x in args.ship_sizes if x not in args.sizes)
        raise UsageError(f"--ship_sizes {missing}: not in the grid's --sizes")
    if args.corpus not in CORPORA:
        raise UsageError(f"--corpus must be one of {', '.join(CORPORA)}, got {args.corpus!r}")
    for name in ("jobs", "seeds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.extend < 0:
        raise UsageError(f"--extend must be 0 or more, got {args.extend}")
    return args


def base_settings(args) -> TrainSettings:
    fields = {
        k: getattr(args, k) for k in ("steps", "warmup", "batch_size", "block_size", "eval_interval", "eval_iters")
    }
    base = replace(TrainSettings(), corpus=args.corpus, seed=args.seed, device=args.device, compile=args.compile)
    base = replace(base, short_context=0, **fields)
    base.check()
    for size in args.sizes:
        replace(base, **size_fields(size)).check()
    return base


def main(argv: list[str] | None = None) -> int:
    command = command_line(MODULE, sys.argv[1:] if argv is None else argv)

    def work() -> int:
        args = parse_args(argv)
        base = base_settings(args)
        text = load_corpus(args.corpus)
        t0, out = time.perf_counter(), Path(args.out) / args.corpus
        plan, rows = run_grid(base, args, out, text)
        summary = summarize(plan, rows, base, out, text)
        add_samples(summary, out, args.device)
        summary.command, summary.wall_s = command, round(time.perf_counter() - t0)
        summary.date = time.strftime("%Y-%m-%d")
        report = write_outputs(summary, Path(args.report))
        if args.ship:
            dest = Path(args.ship) / args.corpus / "scaling"
            for info in ship_sizes(summary, rows, out, dest, [size_name(x) for x in args.ship_sizes]):
                print(f"shipped {info['folder']} ({info['bytes'] / 1e6:.2f} MB)", file=sys.stderr)
        print(f"report: {report}", file=sys.stderr)
        return 0

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
