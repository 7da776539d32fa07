"""The studies' records (gpt2mini.report.records): every JSON file the project ships loads into its record and writes
back to the same JSON; a row or a summary written before a field existed still loads; a key no record knows is
refused, not dropped; a recorded command is shown as it runs today."""

import json

import pytest

from conftest import ROOT
from gpt2mini.report.records import (
    LineageRecord,
    RecordError,
    ScalingSummary,
    StudyResult,
    SweepSummary,
    TrialRow,
    current_command,
    read_record,
    read_trials,
    write_record,
    write_trials,
)
from gpt2mini.study.trials import ROW_VERSION, Trial, cached_row, trial_settings
from gpt2mini.training.settings import TrainSettings

SHIPPED = {
    **{p: StudyResult for p in sorted((ROOT / "docs" / "ablations").glob("*_results.json"))},
    **{p: LineageRecord for p in sorted((ROOT / "docs" / "lineage").glob("*_results.json"))},
    **{p: ScalingSummary for p in sorted((ROOT / "docs" / "scaling").glob("*_results.json"))},
    **{p: SweepSummary for p in sorted((ROOT / "models").glob("*/sweep.json"))},
    **{p: ScalingSummary for p in sorted((ROOT / "models").glob("*/scaling/scaling.json"))},
}


def test_every_kind_of_shipped_record_is_here():
    kinds = {(p.parent.name if p.suffix == ".json" and "_results" in p.name else p.name) for p in SHIPPED}
    assert {"ablations", "lineage", "scaling", "sweep.json", "scaling.json"} <= kinds and len(SHIPPED) >= 8


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_shipped_file_loads_into_its_record_and_writes_back_the_same_json(path, tmp_path):
    record = read_record(path, SHIPPED[path])
    assert record.to_json() == json.loads(path.read_text(encoding="utf-8"))
    write_record(tmp_path / "again.json", record)
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == record.to_json()
    assert read_record(tmp_path / "again.json", SHIPPED[path]) == record


def shipped_trials() -> list[list[dict]]:
    """The trial rows of each protocol the shipped reports hold (one study folder's trials.json each), as `measure`
    wrote them."""
    results = [json.loads(p.read_text()) for p, kind in SHIPPED.items() if kind is StudyResult]
    lineages = [json.loads(p.read_text()) for p, kind in SHIPPED.items() if kind is LineageRecord]
    results += [r for lineage in lineages for r in (lineage["lineage"], *lineage["bpe"])]
    return [r["trials"] for r in results]


def shipped_rows() -> list[dict]:
    return [row for rows in shipped_trials() for row in rows]


@pytest.mark.parametrize("rows", shipped_trials(), ids=lambda rows: f"{len(rows)} trials")
def test_a_trials_cache_of_shipped_rows_loads_row_by_row_and_is_written_back_unchanged(rows, tmp_path):
    cache = {row["key"]: row for row in rows}
    assert len(cache) == len(rows)
    (tmp_path / "trials.json").write_text(json.dumps(cache, indent=1))  # as the studies wrote it before
    again = read_trials(tmp_path / "trials.json")
    assert all(TrialRow.from_json(row).to_json() == row for row in again.values())
    write_trials(tmp_path / "trials.json", again)
    assert json.loads((tmp_path / "trials.json").read_text()) == cache
    assert read_trials(tmp_path / "missing.json") == {}


def test_a_row_that_diverged_before_its_first_save_keeps_its_short_shape():
    head = {"key": "post_ln/lr0.008-seed1337", "variant": "post_ln", "lr": 0.008, "seed": 1337, "version": ROW_VERSION}
    short = head | {"changes": {}, "recipe": {}, "state": None, "diverged": "nan at step 3", "wall_s": 1.0}
    short |= {"threads": 1, "val_split": None}
    row = TrialRow.from_json(short)
    assert row.diverged == "nan at step 3" and row.parameters is None and row.to_json() == short


def test_an_older_row_still_loads_and_is_measured_again_keeping_what_training_knew(tmp_path):
    newest = next(row for row in shipped_rows() if row["state"] is not None)
    older = {k: v for k, v in newest.items() if k != "grad_norm_early"} | {"version": 1}  # before row version 2
    row = TrialRow.from_json(older)
    assert row.grad_norm_early is None and row.val_split == newest["val_split"] and row.version == 1
    # reused only as what training knew, while its folder holds what it was measured from
    t = Trial(newest["variant"], newest["lr"], newest["seed"], tuple(newest["changes"].items()))
    s = trial_settings(TrainSettings(**newest["recipe"]), t, t.folder(tmp_path))
    assert cached_row({t.key: older | {"state": None}}, t, s, t.folder(tmp_path)).wall_s == newest["wall_s"]
    assert cached_row({t.key: older}, t, s, t.folder(tmp_path)) is None  # the folder holds something else now


def test_an_older_sweep_summary_loads_and_is_another_protocol():
    sweep = json.loads((ROOT / "models" / "shakespeare" / "sweep.json").read_text())
    older = {k: v for k, v in sweep.items() if k not in ("recipe", "extend")}
    older["variants"] = {n: {k: x for k, x in v.items() if k != "command"} for n, v in sweep["variants"].items()}
    summary = SweepSummary.from_json(older)
    assert summary.recipe is None and summary.extend is None
    assert all(v.command is None for v in summary.variants.values())
    assert not summary.same_protocol(SweepSummary.from_json(sweep))
    assert SweepSummary.from_json(sweep).same_protocol(SweepSummary.from_json(sweep))
    result = json.loads((ROOT / "docs" / "ablations" / "shakespeare_results.json").read_text())
    assert StudyResult.from_json({k: v for k, v in result.items() if k != "extend"}).extend == 0  # before --extend


def test_a_key_no_record_knows_or_a_missing_one_is_refused_with_its_name(tmp_path):
    sweep = json.loads((ROOT / "models" / "shakespeare" / "sweep.json").read_text())
    with pytest.raises(RecordError, match="a SweepSummary has no field 'colour'"):
        SweepSummary.from_json(sweep | {"colour": "blue"})
    with pytest.raises(RecordError, match="lacks 'lrs'"):
        SweepSummary.from_json({k: v for k, v in sweep.items() if k != "lrs"})
    (tmp_path / "sweep.json").write_text("{not json")
    with pytest.raises(RecordError, match="sweep.json is not JSON"):
        read_record(tmp_path / "sweep.json", SweepSummary)


def test_a_recorded_command_is_shown_as_it_runs_today():
    assert (
        current_command("python ablate.py --jobs 2 --ship models")
        == "python -m experiments.ablate --jobs 2 --ship models"
    )
    assert current_command("python lineage.py") == "python -m experiments.lineage"
    assert current_command("python scaling.py --quick") == "python -m experiments.scaling --quick"
    assert current_command("python scripts/recipes.py") == "python -m experiments.recipes"
    assert current_command("python -m experiments.ablate --quick") == "python -m experiments.ablate --quick"
    assert current_command("python ablate.pyc") == "python ablate.pyc" and current_command(None) is None


def test_a_sweep_summary_that_is_not_one_is_refused_not_overwritten(tmp_path):
    """The ablations and the lineage share models/<corpus>/sweep.json: a file there that does not load is one line
    naming it, and stays as it was (the other study's variants are not dropped)."""
    from gpt2mini.study.ship import write_sweep_summary

    path = tmp_path / "sweep.json"
    sweep = json.loads((ROOT / "models" / "shakespeare" / "sweep.json").read_text()) | {"note": "mine"}
    path.write_text(json.dumps(sweep))
    before = path.read_text()
    result = read_record(ROOT / "docs" / "ablations" / "shakespeare_results.json", StudyResult)
    with pytest.raises(RecordError, match=r"sweep\.json: a SweepSummary has no field 'note'"):
        write_sweep_summary(path, result)
    assert path.read_text() == before
