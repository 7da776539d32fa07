"""Figures drawn from the experiments' results, shared by the report (ablate.py) and the lab (app.py).

- `lr_sweep_figure(summary)`: final validation loss against peak learning rate, one line per variant, with the spread
  over seeds at each variant's best learning rate and the unigram and bigram levels. `summary` is what ablate.py
  ships as models/<corpus>/sweep.json (or its results.json: the same keys and more).
"""

from matplotlib.figure import Figure

COLORS = "tab10"
MARKERS = "o^vDPX*<>"  # a variant's marker keeps it visible where lines lie on top of each other


def lr_sweep_figure(summary: dict, order: list[str] | None = None) -> Figure:
    """The learning-rate sweep of one corpus. `order` fixes each variant's colour (the registry's order)."""
    import matplotlib

    cmap = matplotlib.colormaps[COLORS]
    names = order or list(summary["variants"])
    fig = Figure(figsize=(9, 6), dpi=100)
    ax = fig.subplots()
    ref = summary["reference"]
    top = ref["unigram"] + 0.25
    for name, v in summary["variants"].items():
        i = names.index(name) if name in names else len(names)
        c, marker = cmap(i), MARKERS[i % len(MARKERS)]
        pts = [(p["lr"], p["val_split"]) for p in v["sweep"] if p["val_split"] is not None]
        ax.plot(
            [x for x, _ in pts],
            [min(y, top) for _, y in pts],
            "-",
            marker=marker,
            ms=7 - i * 0.4,
            mfc="none",
            color=c,
            alpha=0.9,
            label=v["label"],
        )
        bad = [p["lr"] for p in v["sweep"] if p["val_split"] is None]
        ax.plot(bad, [top] * len(bad), "x", ms=8, color=c)
        if v["mean"] is not None and len(v["seed_losses"]) > 1:
            err = [[v["mean"] - v["min"]], [v["max"] - v["mean"]]]
            ax.errorbar([v["best_lr"]], [v["mean"]], yerr=err, fmt="s", ms=6, color=c, capsize=4, mfc="white")
    left = min(p["lr"] for v in summary["variants"].values() for p in v["sweep"])
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
    ticks = sorted({p["lr"] for v in summary["variants"].values() for p in v["sweep"]})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("validation loss, nats / character (whole split)")
    ax.set_title(
        f"{summary['corpus']}: validation loss after {summary['steps']} steps against peak learning rate\n"
        f"(seed {summary['base_seed']}; squares: mean and range of {summary['seeds']} seeds at each best "
        "learning rate; x: diverged)",
        fontsize=10,
    )
    ax.set_ylim(top=top + 0.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    fig.tight_layout()
    return fig
