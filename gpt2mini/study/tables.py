"""The tables and lines several study reports print: numbers, a variant against the baseline, each variant at its
best learning rate, the sweep, the samples, the shared recipe in words."""

from dataclasses import asdict

from configuration_gpt2mini import BASELINE
from gpt2mini.report.records import StudyResult, VariantSummary
from gpt2mini.training.settings import TrainSettings


def number(x, digits=3) -> str:
    """A loss (or any measured number) in a table: `digits` decimals, or a dash where it was not measured."""
    return "–" if x is None else f"{x:.{digits}f}"


def rates(lrs) -> str:
    """Learning rates in words: '0.001, 0.002', or 'none'."""
    return ", ".join(f"{lr:g}" for lr in lrs) if lrs else "none"


def versus(v: VariantSummary, base: VariantSummary) -> str:
    """A variant against the baseline at their best learning rates: a difference smaller than the spread over
    seeds (the two ranges overlap) is a tie."""
    if v.mean is None or base.mean is None:
        return "–"
    if v.variant == base.variant:
        return "reference"
    gap = v.mean - base.mean
    if len(v.seed_losses) > 1 and len(base.seed_losses) > 1 and v.min <= base.max and base.min <= v.max:
        return f"{gap:+.3f}: a tie (the seed ranges overlap)"
    return f"{gap:+.3f}: " + ("worse" if gap > 0 else "better")


RESULTS_HEAD = (
    "variant",
    "parameters",
    "best lr",
    "val loss (mean)",
    "seeds: min – max",
    "against the baseline",
    "clearly below the bigram level at lr",
)


def results_table(result: StudyResult) -> str:
    """Each variant at its own best learning rate, with the spread over seeds and its stability window."""
    lines = ["| " + " | ".join(RESULTS_HEAD) + " |", "|" + "---|" * len(RESULTS_HEAD)]
    base = result.variants.get(BASELINE)
    for v in result.variants.values():
        if v.best_lr is None:
            lines.append(f"| {v.label} | – | – | diverged at every learning rate | – | – | none |")
            continue
        edge = " (edge of the sweep)" if v.at_edge else ""
        spread = f"{number(v.min)} – {number(v.max)} (n={len(v.seed_losses)})"
        against = versus(v, base) if base else "–"
        params = f"{v.parameters:,}" if v.parameters else "–"
        cells = [v.label, params, f"{v.best_lr:g}{edge}", number(v.mean), spread, against, rates(v.window)]
        lines.append("| " + " | ".join(cells) + " |")
    for key, label in (
        ("unigram", "*character frequencies only (unigram)*"),
        ("bigram", "*previous character only (bigram)*"),
    ):
        lines.append("| " + " | ".join([label, "–", "–", f"{result.reference[key]:.3f}", "–", "–", "–"]) + " |")
    return (
        "\n".join(lines)
        + "\n\n"
        + (
            "Validation loss is cross-entropy in nats per character over every window of the held-out split, after "
            f"{result.recipe['steps']} steps. Best lr: the learning rate of the sweep ({rates(result.lrs)}, and "
            f"up to {result.extend} more beyond its edge where a variant's best lay there) at which "
            f"the seed-{result.base_seed} run ended lowest; there the variant ran with {result.seeds} seeds "
            "(mean and range). A difference from the baseline smaller than the spread (overlapping ranges) is a tie. "
            "The last rows are no network at all, only counts from the training text (`yardsticks.reference_losses`)."
        )
    )


def sweep_table(result: StudyResult) -> str:
    """Every variant at every learning rate it was tried at (base seed): the numbers behind the sweep plot; – where
    a variant was not tried (the sweep looks beyond its edge only for variants whose best lies there)."""
    lrs = sorted({p.lr for v in result.variants.values() for p in v.sweep})
    lines = ["| variant | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|" + "---|" * (len(lrs) + 1)]
    for v in result.variants.values():
        points = {p.lr: p for p in v.sweep}
        cells = []
        for lr in lrs:
            point = points.get(lr)
            if point is None:
                cells.append("–")
            elif point.val_split is None:
                cells.append("diverged")
            else:
                mark = "**" if lr == v.best_lr else ""
                cells.append(f"{mark}{point.val_split:.3f}{mark}")
        lines.append(f"| {v.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def samples_md(result: StudyResult) -> str:
    """samples.md: each variant's continuation of the same prompt."""
    parts = [f"# Samples: {result.corpus}\n", f"Prompt {result.prompt!r}, temperature 0.8, top-k 40, seed 0.\n"]
    for v in result.variants.values():
        if v.sample is not None:
            parts.append(f"## {v.label} (lr {v.best_lr:g})\n\n```text\n{result.prompt}{v.sample}\n```\n")
    return "\n".join(parts)


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
