"""The Training and Scaling tabs: how the shipped variants trained and the learning-rate sweep they were chosen from;
loss against size, data and compute (experiments/scaling.py's results), the frontier, and a shipped size to sample
from.
"""

import pandas as pd

from gpt2mini.lab.catalog import ORDER, Lab
from gpt2mini.lab.i18n import spoken
from gpt2mini.lab.streaming import generation_settings, stream_one
from gpt2mini.report.figures import (
    lr_sweep_figure,
    scaling_compute_figure,
    scaling_data_figure,
    scaling_size_figure,
    si,
    training_figure,
)
from gpt2mini.report.records import ScalingSummary, SweepSummary, command_line, current_command
from gpt2mini.words import ENGLISH, Words


def training_view(lab: Lab, corpus, say: Words = ENGLISH):
    """The Training tab for a corpus: how each shipped variant trained (figures.training_figure, from its metrics
    log), the learning-rate sweep (a figure, None without one) and a table of each variant at its best rate."""
    runs = [
        (e.label + (f" (lr {e.training['lr']:g})" if "lr" in e.training else ""), e.metrics)
        for e in lab.groups.get(corpus, {}).values()
        if e.metrics
    ]
    curves = training_figure(runs, lab.reference(corpus), f"{corpus}: how each variant trained") if runs else None
    sweep = lab.sweeps.get(corpus)
    if not sweep:
        return curves, None, pd.DataFrame(columns=sweep_columns(say))
    return curves, lr_sweep_figure(sweep, list(ORDER)), sweep_table(sweep, say)


def sweep_columns(say: Words = ENGLISH) -> list[str]:
    """The sweep table's headers; the last is the stability window."""
    return [say(f"sweep.{key}") for key in ("variant", "best_lr", "mean", "range", "window")]


def sweep_table(sweep: SweepSummary, say: Words = ENGLISH) -> pd.DataFrame:
    """Each variant at its own best learning rate: the mean and range over seeds, and the learning rates at which it
    ends clearly below the bigram level (the stability window)."""
    rows = []
    for name, v in sweep.variants.items():
        spread = f"{v.min:.3f} – {v.max:.3f}" if v.min is not None else "–"
        rows.append(
            [
                say.variant(name),
                f"{v.best_lr:g}" if v.best_lr is not None else say("sweep.diverged"),
                f"{v.mean:.3f}" if v.mean is not None else "–",
                spread,
                ", ".join(f"{lr:g}" for lr in v.window) or say("sweep.none"),
            ]
        )
    for key in ("unigram", "bigram"):
        rows.append([say(f"sweep.{key}"), "–", f"{sweep.reference[key]:.3f}", "–", "–"])
    return pd.DataFrame(rows, columns=sweep_columns(say))


def frontier_span(summary: ScalingSummary, size: str) -> tuple[float, float] | None:
    """The compute budgets (lowest, highest) at which a size reached the lowest loss of the grid against at least one
    other size, or None."""
    budgets = [f.flops for f in summary.frontier if f.size == size and f.competitors > 1]
    return (min(budgets), max(budgets)) if budgets else None


def size_choices(found: dict, say: Words = ENGLISH) -> list[tuple[str, str]]:
    """(label, size) for each shipped size: its parameters, its loss and where it lies on the frontier."""
    summary, out = found["summary"], []
    for p in summary.sizes:
        if p.name not in found["entries"]:
            continue
        span = frontier_span(summary, p.name)
        where = say("scaling.on_frontier", low=si(span[0]), high=si(span[1])) if span else say("scaling.off_frontier")
        out.append((f"{p.name} · N {si(p.non_embedding)} · val {p.loss:.3f} · {where}", p.name))
    return out


def frontier_columns(say: Words = ENGLISH) -> list[str]:
    return [say(f"frontier.{key}") for key in ("budget", "loss", "size", "parameters", "tokens_per_parameter")]


def frontier_table(found: dict | None, say: Words = ENGLISH) -> pd.DataFrame:
    """The frontier, one row per budget where the best size changes (and the first and last budgets)."""
    front = found["summary"].frontier if found else []
    kept = [f for i, f in enumerate(front) if i in (0, len(front) - 1) or f.size != front[i - 1].size]
    rows = [[si(f.flops), f"{f.loss:.3f}", f.size, si(f.non_embedding), f"{f.tokens_per_parameter:g}"] for f in kept]
    return pd.DataFrame(rows, columns=frontier_columns(say))


def scaling_words(lab: Lab, corpus, say: Words = ENGLISH) -> tuple:
    """The Scaling tab's worded parts for a corpus: what it holds (or how to make it), the frontier table and the
    shipped sizes to sample from ((label, size) pairs)."""
    found = lab.scaling_grid(corpus)
    if not found:
        return say("scaling.missing", corpus=corpus), frontier_table(None, say), []
    summary = found["summary"]
    command = current_command(summary.command) or command_line("experiments.scaling", [])
    note = say("scaling.about", command=command, trials=summary.trials)
    return note, frontier_table(found, say), size_choices(found, say)


def scaling_figures(lab: Lab, corpus) -> tuple:
    """The Scaling tab's three figures for a corpus (Nones without a grid): size, data, compute."""
    found = lab.scaling_grid(corpus)
    if not found:
        return None, None, None
    summary = found["summary"]
    return scaling_size_figure(summary), scaling_data_figure(summary), scaling_compute_figure(summary)


def sample_size(
    lab: Lab, corpus, size, prompt, temperature, top_k, top_p, max_new, repetition_penalty, seed, language=None
):
    """A shipped size of the scaling grid writes from the prompt: stream (text, status)."""
    settings = generation_settings(temperature, top_k, top_p, max_new, repetition_penalty, seed)
    yield from stream_one(lab.server, lab.scaling_entry(corpus, size), prompt, settings, spoken(language))
