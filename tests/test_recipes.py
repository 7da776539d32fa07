"""experiments/recipes.py, which writes docs/training.md's recipe tables: a run is reused only when it is the same
recipe, and the tables land between their markers, nothing else on the page changes."""

import json

import pytest

from conftest import ROOT
from experiments import recipes

TINY = "--steps 4 --n_layer 1 --n_head 2 --n_embd 16 --block_size 16 --batch_size 2 --eval_iters 1 --sample_chars 0"


def test_a_run_is_measured_then_reused_while_it_is_the_same_recipe(tmp_path):
    first = recipes.run("tiny", TINY, tmp_path)
    assert first["steps"] == 4 and first["context"] == 16 and first["tokens"] == 4 * 2 * 16 and first["loss"] > 0
    state = json.loads((tmp_path / "tiny" / "trainer_state.json").read_text())
    assert recipes.run("tiny", TINY, tmp_path) == first  # reused: the same run, measured again
    recipes.run("tiny", TINY + " --lr 1e-3", tmp_path)  # another recipe in the same folder: trained again
    again = json.loads((tmp_path / "tiny" / "trainer_state.json").read_text())
    assert again["settings"]["lr"] == 1e-3 and again["elapsed_s"] != state["elapsed_s"]


def test_tables_land_between_their_markers_and_nothing_else_changes(tmp_path):
    result = {"context": 256, "lr": 4e-3, "steps": 1500, "tokens": 1_536_000, "seconds": 100.0, "loss": 1.8}
    results = {
        name: result | {"command": f"python train.py --save runs/recipes/{name}"} for _, name, _, _ in recipes.RECIPES
    }
    doc = tmp_path / "page.md"
    page = (
        "intro\n<!-- recipes:default -->\nold\n<!-- /recipes:default -->\nmiddle\n"
        "<!-- recipes:short -->\n<!-- /recipes:short -->\nend\n"
    )
    doc.write_text(page)
    recipes.write(doc, recipes.tables(results))
    text = doc.read_text()
    assert text.startswith("intro\n<!-- recipes:default -->\n| recipe |") and "old" not in text
    assert "\nmiddle\n" in text and text.endswith("<!-- /recipes:short -->\nend\n")
    assert text.count("| 1.800 |") == len(recipes.RECIPES) and "python train.py --save runs/recipes/nanogpt" in text
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(SystemExit, match="no <!-- recipes:default -->"):
        recipes.write(tmp_path / "bare.md", recipes.tables(results))


def test_the_page_has_its_tables_filled():
    text = (ROOT / "docs" / "training.md").read_text()
    for name in ("default", "short"):
        block = text.split(f"<!-- recipes:{name} -->")[1].split(f"<!-- /recipes:{name} -->")[0]
        assert "| recipe |" in block and "python -m experiments.recipes" in block, name
