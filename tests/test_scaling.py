"""experiments/scaling.py: the fits recover known laws, the frontier is the envelope of the curves, the plan extends and
waits as it should, the --quick grid end to end (report, figures, shipped sizes, resuming), train.py's
--train_fraction, and the committed report is what the current code writes from the committed results."""

import json
import math

import gradio as gr
import numpy as np
import pytest

from conftest import ROOT
from experiments import scaling
from gpt2mini.checkpoint import UsageError, load_model_folder
from gpt2mini.lab.catalog import load_lab
from gpt2mini.lab.clients import Refused
from gpt2mini.lab.curves import frontier_span, sample_size, scaling_figures, scaling_words
from gpt2mini.lab.i18n import spoken
from gpt2mini.lab.streaming import generate_one
from gpt2mini.lab.ui import scaling_update
from gpt2mini.report.records import PowerFit, ScalingSummary, SizePoint, TrialRow, read_record
from gpt2mini.training.loop import setup
from gpt2mini.training.settings import TrainSettings


def law(x, e=1.5, a=4.0, alpha=0.3):
    return e + a * (np.asarray(x, float) / 1e4) ** -alpha


def test_the_fit_recovers_a_known_law_and_its_interval_covers_it():
    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 4e6])
    exact = scaling.fit_power(n, law(n))
    assert exact.alpha == pytest.approx(0.3, rel=0.01) and exact.E == pytest.approx(1.5, abs=0.01)
    assert exact.A == pytest.approx(4.0 * 1e4**0.3, rel=0.03)  # A in N's own units
    noisy = law(n) + np.random.default_rng(1).normal(0, 0.01, len(n))
    fit = scaling.fit_power(n, noisy)
    lo, hi = fit.alpha_interval
    assert lo < fit.alpha < hi and lo < 0.3 < hi  # the 68% interval is not a point, and holds the truth here
    assert fit.rms < 0.02


def test_a_fit_needs_four_points_and_keeps_its_floor_at_or_above_zero():
    assert scaling.fit_power([1, 2, 3], [3, 2, 1]).error
    fit = scaling.fit_power(np.array([1e3, 1e4, 1e5, 1e6]), 5 * np.array([1e3, 1e4, 1e5, 1e6]) ** -0.2)  # no floor
    assert fit.E >= 0 and fit.alpha == pytest.approx(0.2, rel=0.02)
    rising = scaling.fit_power([1e3, 1e4, 1e5, 1e6], [2.0, 2.1, 2.3, 2.6])  # a loss that does not fall
    assert rising == PowerFit(error="the loss does not fall as it grows: no power law of this shape fits")
    assert rising.to_json() == {"error": rising.error}
    json.dumps(fit.to_json(), allow_nan=False)  # no infinities in the results file


def point(name, n, fpt, curve) -> SizePoint:
    """A size with what the frontier reads of it (its name, N, FLOPs per token and curve)."""
    unread = dict(n_layer=1, n_head=1, n_embd=32, parameters=None, sweep=[], best_lr=None, at_edge=False)
    unread |= dict(seed_losses=[], loss=None, min=None, max=None, tokens=0, flops=0, wall_s=None, key=None)
    return SizePoint(name=name, non_embedding=n, flops_per_token=fpt, curve=curve, **unread)


def test_the_frontier_is_the_lower_envelope_of_the_curves():
    small = point("small", 1000, 6000, [[s, s * 6000 * 100, 3.0 - 0.001 * s] for s in (100, 500, 1000)])
    big = point("big", 10000, 60000, [[s, s * 60000 * 100, 3.2 - 0.0025 * s] for s in (100, 500, 1000)])
    front = scaling.frontier([small, big], budgets=12)
    assert front[0].size == "small" and front[-1].size == "big"  # small first, big once it is ahead
    for f in front:
        mine = {p.name: scaling.best_within(p.curve, f.flops) for p in (small, big)}
        loss, spent = min(v for v in mine.values() if v is not None)
        assert f.loss == pytest.approx(loss, abs=1e-4) and f.spent == pytest.approx(spent)
        assert spent <= f.flops
        fpt, n = (6000, 1000) if f.size == "small" else (60000, 10000)
        assert f.tokens_per_parameter == pytest.approx(spent / fpt / n, rel=0.01)
    assert [f.loss for f in front] == sorted((f.loss for f in front), reverse=True)  # never worse with more
    assert scaling.loss_at(small.curve, 1.0) is None and scaling.best_within(small.curve, 1.0) is None


def args_for(*extra):
    return scaling.parse_args(["--sizes", "1x16,2x32", "--data_size", "2x32", "--fractions", "0.5,1", *extra])


def fake_rows(trials, losses):
    """Each trial's row as if it had trained to `losses(trial)`."""
    run = dict(version=2, recipe={}, state=None, diverged=None, wall_s=None, threads=None)
    return {
        t.key: TrialRow(t.key, t.variant, t.lr, t.seed, changes=dict(t.changes), **run, val_split=losses(t))
        for t in trials
    }


def test_the_plan_looks_beyond_an_edge_and_the_data_grid_waits_for_the_best_rate():
    args = args_for("--lr_factors", "0.5,1,2", "--extend", "1")
    plan = scaling.Plan(args, TrainSettings())
    first = plan.needed({})
    assert len(first) == 6 and all(dict(t.changes).get("train_fraction") is None for t in first)
    rows = fake_rows(first, lambda t: t.lr)  # lower is better: every best at the lowest rate, an edge
    second = [t for t in plan.needed(rows) if t.key not in rows]
    lowest = {size: float(f"{scaling.rule_lr(size) * 0.25:.3g}") for size in plan.sizes}  # 2x below the sweep
    assert sorted((size_of(t), t.lr) for t in second) == sorted(lowest.items())
    rows |= fake_rows(second, lambda t: 0.0)  # the new rates win, at the new edge: but the sweep extends only once
    third = [t for t in plan.needed(rows) if t.key not in rows]
    assert [(size_of(t), t.lr, dict(t.changes)["train_fraction"]) for t in third] == [((2, 32), lowest[(2, 32)], 0.5)]


def size_of(trial):
    changes = dict(trial.changes)
    return changes["n_layer"], changes["n_embd"]


def test_bad_grids_are_one_line_each():
    for argv, message in (
        (["--sizes", "4by128"], "is not LAYERSxWIDTH"),
        (["--fractions", "0.5,2"], "at most 1"),
        (["--lr_factors", "0"], "positive numbers"),
        (["--ship", "x", "--ship_sizes", "9x288"], "not in the grid"),
        (["--corpus", "nope"], "--corpus must be one of"),
    ):
        with pytest.raises(UsageError, match=message):
            scaling.parse_args(argv)
    assert scaling.main(["--sizes", "0x32"]) == 2


def test_train_fraction_trains_on_the_start_of_the_training_split_only():
    full = setup(TrainSettings(steps=1, save=None, n_layer=1, n_embd=16, n_head=1, block_size=16, progress=False))
    part = setup(TrainSettings(steps=1, train_fraction=0.25, n_layer=1, n_embd=16, n_head=1, block_size=16))
    a, b = full.batches.data["train"], part.batches.data["train"]
    assert len(b) == round(len(a) * 0.25) and bool((a[: len(b)] == b).all())
    assert bool((full.batches.data["val"] == part.batches.data["val"]).all())  # the same held-out text
    with pytest.raises(UsageError, match="--train_fraction must be above 0 and at most 1"):
        TrainSettings(train_fraction=0).check()


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    argv = ["--quick", "--out", str(root / "runs"), "--report", str(root / "docs" / "scaling.md")]
    argv += ["--ship", str(root / "models")]
    assert scaling.main(argv) == 0
    return root, argv


def test_the_quick_grid_writes_its_report_figures_and_results(quick):
    root, _ = quick
    report = (root / "docs" / "scaling.md").read_text()
    summary = read_record(root / "docs" / "scaling" / "shakespeare_results.json", ScalingSummary)
    assert "python -m experiments.scaling --quick" in report and "Fit, L(N) = E + A / N^α over 4 points" in report
    assert [p.name for p in summary.sizes] == ["1x16", "1x24", "2x32", "2x48"]
    assert [d.fraction for d in summary.data] == [0.125, 0.25, 0.5, 1]
    for kind in ("size", "data", "compute"):
        assert (root / "docs" / "scaling" / f"shakespeare_{kind}.png").stat().st_size > 10_000
    for p in summary.sizes:  # FLOPs: steps x tokens per step x the model's own count per token
        assert p.flops == 150 * 4 * 64 * p.flops_per_token and p.loss is not None
    assert summary.fits.N.points == 4 and summary.frontier
    assert report == "\n".join(scaling.report_lines(summary, "scaling")) + "\n"


def test_the_quick_grid_ships_loadable_sizes_and_reuses_its_trials(quick, capsys):
    root, argv = quick
    shipped = root / "models" / "shakespeare" / "scaling"
    summary = read_record(shipped / "scaling.json", ScalingSummary)
    assert summary.shipped == ["1x16", "2x32"] and summary.published is None  # the lab's copy: no published laws
    for name in summary.shipped:
        model, _ = load_model_folder(shipped / name)
        assert (model.config.n_layer, model.config.n_embd) == tuple(int(v) for v in name.split("x"))
        record = json.loads((shipped / name / "training.json").read_text())
        assert record["val_split"] == summary.size(name).loss
    assert scaling.main(argv) == 0
    err = capsys.readouterr().err
    assert all(" 0 to train" in line for line in err.splitlines() if "to train" in line)


COMMITTED = ROOT / "docs" / "scaling" / "shakespeare_results.json"


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed scaling results yet")
def test_the_committed_report_is_what_the_code_writes_from_the_committed_results():
    summary = read_record(COMMITTED, ScalingSummary)
    assert (ROOT / "docs" / "scaling.md").read_text() == "\n".join(scaling.report_lines(summary, "scaling")) + "\n"
    fit = summary.fits.N  # and the fit is the one the current code makes of those points
    done = [p for p in summary.sizes if p.loss is not None]
    again = scaling.fit_power([p.non_embedding for p in done], [p.loss for p in done])
    assert again.alpha == fit.alpha and again.alpha_interval == fit.alpha_interval
    assert len(summary.sizes) >= 6 and len(summary.data) >= 4
    assert min(p.non_embedding for p in summary.sizes) < 20_000 < 4e6 < max(p.non_embedding for p in summary.sizes)
    assert all(math.isfinite(p.loss) for p in done)


@pytest.fixture(scope="module")
def scaling_lab(quick):
    import shutil

    root, _ = quick
    models = root / "lab-models"
    shutil.copytree(root / "models" / "shakespeare" / "scaling", models / "shakespeare" / "scaling")
    shutil.copytree(models / "shakespeare" / "scaling" / "2x32", models / "shakespeare" / "baseline")
    return load_lab(models)


def test_the_lab_shows_the_grid_and_labels_each_shipped_size_by_its_place_on_the_frontier(scaling_lab):

    note, table, choices = scaling_words(scaling_lab, "shakespeare")
    assert "python -m experiments.scaling --quick" in note
    assert all(f is not None for f in scaling_figures(scaling_lab, "shakespeare"))
    summary = scaling_lab.scaling["shakespeare"]["summary"]
    assert [size for _, size in choices] == ["1x16", "2x32"]
    for label, size in choices:
        span = frontier_span(summary, size)
        assert ("lowest at" in label) == (span is not None)
    sizes = list(table[table.columns[2]])
    assert sizes[0] == summary.frontier[0].size and sizes[-1] == summary.frontier[-1].size
    assert scaling_figures(scaling_lab, "nowhere") == (None, None, None)
    assert "同梱" in scaling_words(scaling_lab, "nowhere", spoken("ja"))[0]
    # a new language rewords the tab and keeps the figures and the chosen size
    update = scaling_update(scaling_lab, "shakespeare", spoken("ja"), figures=False)
    assert update[1:4] == tuple(gr.update() for _ in range(3)) and "value" not in update[-1]


def test_a_shipped_size_writes_what_the_same_model_writes_in_the_generate_tab(scaling_lab):

    scaling_lab.groups["shakespeare"]["2x32"] = scaling_lab.scaling_entry("shakespeare", "2x32")
    settings = ["ROMEO:", 0.8, 40, 0.95, 60, 1.0, 7]
    *_, (sampled, status) = sample_size(scaling_lab, "shakespeare", "2x32", *settings)
    *_, (generated, _) = generate_one(scaling_lab, "shakespeare", "2x32", *settings)
    assert sampled == generated and sampled.startswith("ROMEO:") and len(sampled) > len("ROMEO:")
    with pytest.raises(Refused, match="no size '9x288' shipped from the scaling grid of 'shakespeare'"):
        next(sample_size(scaling_lab, "shakespeare", "9x288", *settings))
