"""The figures of a corpus's result: lr_sweep.png (figures.lr_sweep_figure, the lab's too), loss_curves.png and
probes.png of each variant's best run."""

from pathlib import Path

from gpt2mini.checkpoint import read_metrics
from gpt2mini.report.records import StudyResult, TrialRow
from gpt2mini.study.variants import NAMED

GRAD_FLOOR = 1e-4  # where the probes plot draws a gradient norm of (about) zero


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colors(plt) -> dict:
    """Each name of NAMED its colour, the same in every figure."""
    return {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(NAMED)}


def plot_sweep(out: Path, result: StudyResult) -> None:
    """lr_sweep.png: the figure the lab shows too (figures.lr_sweep_figure)."""
    from gpt2mini.report.figures import lr_sweep_figure

    lr_sweep_figure(result, list(NAMED)).savefig(out / "lr_sweep.png")


def best_runs(result: StudyResult) -> dict[str, TrialRow]:
    """Each variant's best trial (base seed), by variant."""
    rows = {r.key: r for r in result.trials}
    return {n: rows[v.best_key] for n, v in result.variants.items() if v.best_key}


def plot_curves(out: Path, result: StudyResult, trials: Path) -> None:
    """loss_curves.png and probes.png of each variant's best run: validation loss, attention entropy, input
    dependence and gradient norm over training."""
    plt = pyplot()
    palette = colors(plt)
    best = best_runs(result)
    fig, (ax_val, ax_batch) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for name, r in best.items():
        label, c = f"{result.variants[name].label} (lr {r.lr:g})", palette[name]
        ax_val.plot(*zip(*r.val_curve, strict=True), "o-", ms=2.5, color=c, label=label)
        ax_batch.plot(*zip(*r.loss_curve, strict=True), lw=0.8, color=c, label=label)
    for ax, title in ((ax_val, "validation loss (fixed batches)"), (ax_batch, "training batch loss")):
        for key, style in (("unigram", ":"), ("bigram", "--")):
            ax.axhline(result.reference[key], color="grey", ls=style, lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("nats / character")
        ax.set_title(f"{result.corpus}: {title}, each variant at its best learning rate", fontsize=10)
        ax.grid(alpha=0.3)
    ax_val.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png")
    plt.close(fig)
    plot_probes(out, result, best, plt, palette, trials)


def plot_probes(out: Path, result: StudyResult, best: dict, plt, palette: dict, trials: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), dpi=100)
    for name, r in best.items():
        evals = [m for m in read_metrics(trials / r.key) if "attn_entropy" in m]
        label, c = f"{result.variants[name].label} (lr {r.lr:g})", palette[name]
        ent = [(m["step"], [e for e in m["attn_entropy"] if e is not None]) for m in evals]
        ent = [(s, sum(e) / len(e)) for s, e in ent if e]
        if ent:
            axes[0].plot(*zip(*ent, strict=True), "o-", ms=2.5, color=c, label=label)
        dep = [(m["step"], m["input_dependence"]) for m in evals if "input_dependence" in m]
        if dep:
            axes[1].plot(*zip(*dep, strict=True), "o-", ms=2.5, color=c, label=label)
        if r.grad_norm_layers:
            g = [max(x, GRAD_FLOOR) for x in r.grad_norm_layers]  # a zero would fall off the log scale
            axes[2].plot(range(len(g)), g, "o-", ms=3, color=c, label=label)
    n = len(next(iter(best.values())).grad_norm_layers or []) if best else 0
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
        ax.set_title(f"{result.corpus}: {title}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "probes.png")
    plt.close(fig)
