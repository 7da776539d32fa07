"""Figures drawn from the experiments' results, shared by the report (experiments.ablate) and the lab (gpt2mini/lab/).

- `lr_sweep_figure(summary)`: final validation loss against peak learning rate, one line per variant, with the spread
  over seeds at each variant's best learning rate and the unigram and bigram levels. `summary` is what
  experiments.ablate ships as models/<corpus>/sweep.json (records.SweepSummary), or its results.json
  (records.StudyResult: the same fields and more).
- `training_figure(runs, reference, title)`: how runs trained, from their metrics logs: validation loss against the
  yardsticks, input dependence, and each layer's attention entropy and residual-stream norm (the lab's Training tab).
"""

from matplotlib.figure import Figure

from gpt2mini.report.records import PowerFit, ScalingSummary, StudyResult, SweepSummary

COLORS = "tab10"
MARKERS = "o^vDPX*<>"  # a variant's marker keeps it visible where lines lie on top of each other


def lr_sweep_figure(summary: StudyResult | SweepSummary, order: list[str] | None = None) -> Figure:
    """The learning-rate sweep of one corpus. `order` fixes each variant's colour (the registry's order)."""
    import matplotlib

    cmap = matplotlib.colormaps[COLORS]
    names = order or list(summary.variants)
    fig = Figure(figsize=(9, 6), dpi=100)
    ax = fig.subplots()
    ref = summary.reference
    top = ref["unigram"] + 0.25
    for name, v in summary.variants.items():
        i = names.index(name) if name in names else len(names)
        c, marker = cmap(i), MARKERS[i % len(MARKERS)]
        pts = [(p.lr, p.val_split) for p in v.sweep if p.val_split is not None]
        ax.plot(
            [x for x, _ in pts],
            [min(y, top) for _, y in pts],
            "-",
            marker=marker,
            ms=7 - i * 0.4,
            mfc="none",
            color=c,
            alpha=0.9,
            label=v.label,
        )
        bad = [p.lr for p in v.sweep if p.val_split is None]
        ax.plot(bad, [top] * len(bad), "x", ms=8, color=c)
        if v.mean is not None and len(v.seed_losses) > 1:
            err = [[v.mean - v.min], [v.max - v.mean]]
            ax.errorbar([v.best_lr], [v.mean], yerr=err, fmt="s", ms=6, color=c, capsize=4, mfc="white")
    left = min(p.lr for v in summary.variants.values() for p in v.sweep)
    for key, style in (("unigram", ":"), ("bigram", "--")):
        ax.axhline(ref[key], color="grey", ls=style, lw=1)
        ax.annotate(
            f"{key} level {ref[key]:.3f}",
            (left, ref[key]),
            fontsize=8,
            color="grey",
            xytext=(2, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ticks = sorted({p.lr for v in summary.variants.values() for p in v.sweep})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("validation loss, nats / character (whole split)")
    ax.set_title(
        f"{summary.corpus}: validation loss after {summary.steps} steps against peak learning rate\n"
        f"(seed {summary.base_seed}; squares: mean and range of {summary.seeds} seeds at each best "
        "learning rate; x: diverged)",
        fontsize=10,
    )
    ax.set_ylim(top=top + 0.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    fig.tight_layout()
    return fig


def training_figure(runs: list[tuple[str, list[dict]]], reference: dict, title: str) -> Figure:
    """How each run trained, from its metrics log (train.py's metrics.jsonl): validation loss with the unigram and
    bigram levels, how much its predictions depend on the input, and at its last evaluation the attention entropy and
    the residual-stream norm of each layer. A run's marker keeps it visible where lines lie on top of each other."""
    import matplotlib

    cmap = matplotlib.colormaps[COLORS]
    fig = Figure(figsize=(11, 7.5), dpi=100)
    (loss, dependence), (entropy, norm) = fig.subplots(2, 2)
    for i, (label, metrics) in enumerate(runs):
        evals = [m for m in metrics if "val_loss" in m]
        style = {"color": cmap(i), "marker": MARKERS[i % len(MARKERS)], "mfc": "none", "ms": 6 - i * 0.4}
        loss.plot([m["step"] for m in evals], [m["val_loss"] for m in evals], "-", label=label, **style)
        probed = [m for m in evals if m.get("input_dependence") is not None]
        dependence.plot([m["step"] for m in probed], [m["input_dependence"] for m in probed], "-", **style)
        last = next((m for m in reversed(evals) if "attn_entropy" in m), None)
        if last:
            layers = range(1, len(last["resid_norm"]) + 1)
            ent = [(k, e) for k, e in zip(layers, last["attn_entropy"], strict=True) if e is not None]
            entropy.plot([k for k, _ in ent], [e for _, e in ent], "-", **style)
            norm.plot(list(layers), last["resid_norm"], "-", **style)
    for key, ls in (("unigram", ":"), ("bigram", "--")):
        if key in reference:
            loss.axhline(reference[key], color="grey", ls=ls, lw=1, label=f"{key} level {reference[key]:.3f}")
    loss.set(xlabel="step", ylabel="nats / character", title="validation loss (fixed evaluation batches)")
    dependence.set(xlabel="step", ylabel="nats", title="input dependence (0: it predicts the same whatever it reads)")
    entropy.set(xlabel="layer", ylabel="nats", title="attention entropy per layer, at the end (low = focused)")
    norm.set(
        xlabel="layer", ylabel="mean norm", yscale="log", title="residual-stream norm after each layer, at the end"
    )
    for ax in (entropy, norm):
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (loss, dependence, entropy, norm):
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    loss.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# Scaling (experiments.scaling's summary, records.ScalingSummary: models/<corpus>/scaling/scaling.json or
# docs/scaling/<corpus>_results.json)


def si(x: float) -> str:
    """12345 -> '12.3k', 4.2e6 -> '4.2M', 3.1e12 -> '3.1T': the grid's numbers, short."""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _plain_loss_axis(ax) -> None:
    """A log-scaled loss axis labelled 2.5, 3 (not 2.5 x 10^0): a loss spans less than a decade."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


def _power(fit: PowerFit, x):
    import numpy as np

    return fit.E + fit.A_at_x0 * (np.asarray(x, float) / fit.x0) ** -fit.alpha


def _fit_label(fit: PowerFit, symbol: str, exponent: str) -> str:
    lo, hi = fit.alpha_interval
    return f"fit: L = {fit.E:.2f} + A / {symbol}^{exponent}, {exponent} = {fit.alpha:.2f} ({lo:.2f}-{hi:.2f})"


def scaling_size_figure(summary: ScalingSummary) -> Figure:
    """Validation loss against non-embedding parameters, each size at its best learning rate, with the fit."""
    import numpy as np

    fig = Figure(figsize=(7, 4.8), dpi=100)
    ax = fig.subplots()
    done = [p for p in summary.sizes if p.loss is not None]
    n = [p.non_embedding for p in done]
    err = [[p.loss - p.min for p in done], [p.max - p.loss for p in done]]
    ax.errorbar(n, [p.loss for p in done], yerr=err, fmt="o", color="tab:blue", capsize=3, label="measured")
    for p in done:
        ax.annotate(p.name, (p.non_embedding, p.loss), fontsize=7, xytext=(4, 4), textcoords="offset points")
    fit = summary.fits.N
    if not fit.error:
        x = np.geomspace(min(n) / 1.5, max(n) * 1.5, 100)
        ax.plot(x, _power(fit, x), "-", color="tab:orange", label=_fit_label(fit, "N", "α"))
    recipe = summary.recipe
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters N", ylabel="validation loss, nats / character")
    _plain_loss_axis(ax)
    ax.set_title(
        f"{summary.corpus}: loss against model size, each at its best learning rate\n"
        f"({recipe['steps']} steps x {summary.tokens_per_step:,} tokens each; bars: range over seeds)",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def scaling_data_figure(summary: ScalingSummary) -> Figure:
    """Validation loss against the characters trained on, at one size: at the end, at its lowest, and training loss."""
    import numpy as np

    fig = Figure(figsize=(7, 4.8), dpi=100)
    ax = fig.subplots()
    data = [d for d in summary.data if d.loss is not None]
    if not data:  # the data grid's size diverged at every learning rate
        ax.text(0.5, 0.5, "no data grid: its size trained at no learning rate", ha="center", transform=ax.transAxes)
        return fig
    chars = [d.chars for d in data]
    ax.plot(chars, [d.loss for d in data], "o-", color="tab:red", label="validation, at the end (whole split)")
    ax.plot(
        chars,
        [d.early for d in data],
        "s",
        color="tab:blue",
        mfc="none",
        label="validation, at its lowest (estimate)",
    )
    ax.plot(chars, [d.train_loss for d in data], "^--", color="tab:green", label="training, at the end")
    fit = summary.fits.D
    if not fit.error:
        x = np.geomspace(min(chars) / 1.5, max(chars) * 1.5, 100)
        ax.plot(x, _power(fit, x), "-", color="tab:blue", alpha=0.6, label=_fit_label(fit, "D", "β"))
    ax.set(xscale="log", yscale="log", xlabel="training characters D", ylabel="loss, nats / character")
    _plain_loss_axis(ax)
    ax.set_title(
        f"{summary.corpus}: loss against data, size {summary.data_size}, lr {summary.data_lr:g}\n"
        f"(every run {summary.recipe['steps']} steps: less data is seen more often)",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def scaling_compute_figure(summary: ScalingSummary) -> Figure:
    """Each size's validation curve against training FLOPs, and the frontier: the lowest loss at each budget."""
    import matplotlib

    fig = Figure(figsize=(7, 4.8), dpi=100)
    ax = fig.subplots()
    runs = [p for p in summary.sizes if p.curve]
    cmap = matplotlib.colormaps["viridis"]
    for i, p in enumerate(runs):
        c = cmap(i / max(1, len(runs) - 1))
        ax.plot([q[1] for q in p.curve], [q[2] for q in p.curve], "-", color=c, lw=1.2, label=p.name)
    front = summary.frontier
    ax.plot([f.flops for f in front], [f.loss for f in front], "k--", lw=1.5, label="frontier: lowest at most C")
    batches = summary.recipe["eval_iters"]
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel=f"validation loss ({batches} fixed batches)")
    _plain_loss_axis(ax)
    ax.set_title(f"{summary.corpus}: loss against compute, each size at its best learning rate", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    return fig
