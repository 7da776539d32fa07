"""The lab as a Gradio Space: app.py and exactly the project modules it imports (found by reading the imports), the
models/ tree, the corpus files the Knockout tab reads, a requirements.txt pinned to the versions installed here (CPU
torch), and a README.md with the Space front matter.
"""

import ast
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

from configuration_gpt2mini import BASELINE, SWITCHES, gpt2_value, switch_fields, variant_label
from gpt2mini.checkpoint import METRICS_FILE, OPTIMIZER_FILE, STATE_FILE, UsageError, load_model_folder, read_metrics
from gpt2mini.corpus import CORPORA
from gpt2mini.hub.card import _assignments, _table, fill
from gpt2mini.hub.folder import check_repo_id, run_state
from gpt2mini.hub.provenance import DEFAULT_VAL_FRACTION, LICENSE
from gpt2mini.hub.repo import write_new_folder
from gpt2mini.paths import DATA_DIR, MODELS_DIR, ROOT

SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")  # the Hub's fixed list


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def module_level(tree: ast.AST):
    """The nodes of a module outside function bodies: what `import` runs (an import inside a function runs only when
    the function is called, and the Space carries only what importing app.py needs)."""
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield node
            yield from module_level(node)


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (a module, or a package's __init__.py), or None outside the project."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(node: ast.AST) -> list[str]:
    """The dotted names an import statement loads: each package on the way, and for `from a.b import c` also
    `a.b.c` (which is a module when c is one)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    else:
        return []
    return [".".join(n.split(".")[: i + 1]) for n in names for i in range(n.count(".") + 1)]


def local_imports(script: Path) -> list[str]:
    """The project files `script` needs, as paths from the repository root: its module-level imports of project
    modules (and the packages they sit in), followed through them."""
    seen, todo = {}, [script]
    while todo:
        path = todo.pop()
        name = path.relative_to(ROOT).as_posix()
        if name in seen:
            continue
        seen[name] = path
        for node in module_level(ast.parse(path.read_text())):
            todo += [f for f in map(module_file, imported_modules(node)) if f is not None]
    return sorted(seen)


def model_folders(models_dir: Path) -> list[Path]:
    """models_dir/<corpus>/<variant>/ folders with a config.json (the layout app.py serves)."""
    return sorted(p.parent for p in models_dir.glob("*/*/config.json"))


def space_requirements() -> str:
    """requirements.txt for the Space: the project's runtime requirements pinned to the versions installed here
    (each checked against the project's range), torch as the CPU build. Gradio comes from `sdk_version`."""
    from packaging.requirements import Requirement

    lines = [
        "# Written by publish.py: the project's requirements.txt pinned to the versions it was tested with.",
        "# Gradio itself is installed by the Space from README.md's sdk_version.",
        f"--extra-index-url {TORCH_CPU_INDEX}",
    ]
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.name == "gradio":
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise UsageError(f"{req.name} is not installed here; install requirements.txt first") from None
        if not req.specifier.contains(version, prereleases=True):
            raise UsageError(f"the installed {req.name} {version} does not satisfy requirements.txt's {line!r}")
        if req.name == "torch":
            version = version.split("+")[0] + "+cpu"  # a Space without a GPU: the small CPU build
        lines.append(f"{req.name}=={version}")
    return "\n".join(lines) + "\n"


SPACE_CARD = """\
# GPT-2 mini lab

A character-level GPT-2 small enough to read in one sitting{variants}. Same prompt, same seed: watch where the \
variants part. Tabs: side by side, generate, next character, attention maps, knockout (switch off heads or layers of \
the trained baseline), training curves.

| corpus | variant | switches changed | parameters | validation loss (last evaluation) |
|---|---|---|---|---|
{model_rows}

Validation loss: nats per character on fixed batches of the held-out last {val_share} of each corpus, from each \
model's training log (`{metrics_file}`). The models run on the CPU, one torch thread per process.

The training texts are in the public domain: {texts}. `data/PROVENANCE.md` has the sources and hashes. Made \
with the GPT-2 mini project's `publish.py --space`; run it locally with \
`pip install -r requirements.txt gradio=={gradio_version}` and `python app.py`.
"""


def space_metadata(gradio_version: str) -> str:
    """The Space's YAML front matter: what the Hub reads to build and run it."""
    from huggingface_hub import SpaceCardData

    return SpaceCardData(
        title="GPT-2 mini lab",
        emoji="🔬",
        colorFrom="indigo",
        colorTo="pink",
        sdk="gradio",
        sdk_version=gradio_version,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        license=LICENSE,
        short_description="A character-level GPT-2 and its broken twins",
        tags=["gpt2", "character-level", "ablation", "interpretability", "education"],
        pinned=False,
    ).to_yaml()


def shipped_variants(folders: list[Path]) -> str:
    """ ", next to copies trained with one part switched off or changed (residual off, ...)": the registry's labels
    of the variants shipped, in registry order ("" when only baselines are shipped)."""
    names = {f.name for f in folders} - {BASELINE}
    order = [s.variant for s in SWITCHES]
    names = sorted(names, key=lambda v: (order.index(v) if v in order else len(order), v))
    if not names:
        return ""
    return f", next to copies trained with one part switched off or changed ({', '.join(map(variant_label, names))})"


def space_model_row(folder: Path, parameters: int) -> tuple:
    """A model's row of the Space's table: corpus, variant, switches changed, size, last validation loss."""
    config = json.loads((folder / "config.json").read_text())
    values = {k: config.get(k, gpt2_value(k)) for k in switch_fields()}
    changed = {k: v for k, v in values.items() if v != gpt2_value(k)}
    evals = [m for m in read_metrics(folder) if "val_loss" in m]
    loss = f"{evals[-1]['val_loss']:.3f} at step {evals[-1]['step']:,}" if evals else "not recorded"
    return folder.parent.name, folder.name, _assignments(changed) or "none (GPT-2)", f"{parameters:,}", loss


def space_card(folders: list[Path], parameters: dict[Path, int]) -> str:
    """README.md for the Space: the front matter the Hub reads, and SPACE_CARD filled with what the Space holds."""
    from huggingface_hub import SpaceCard

    gradio_version = importlib.metadata.version("gradio")  # the SDK the Space runs: the one tested here
    specs = [CORPORA[c] for c in sorted({f.parent.name for f in folders}) if c in CORPORA]
    fractions = sorted({run_state(f).get("settings", {}).get("val_fraction", DEFAULT_VAL_FRACTION) for f in folders})
    body = fill(
        SPACE_CARD,
        variants=shipped_variants(folders),
        model_rows=_table(space_model_row(f, parameters[f]) for f in folders),
        val_share=" or ".join(f"{x:.0%}" for x in fractions),
        metrics_file=METRICS_FILE,
        texts="; ".join(s.description + (" from Aozora Bunko" if s.aozora else "") for s in specs),
        gradio_version=gradio_version,
    )
    return str(SpaceCard(f"---\n{space_metadata(gradio_version)}\n---\n\n{body}")).rstrip("\n") + "\n"


def write_space_repo(dest: Path, models_dir: Path, parameters: dict[Path, int]) -> None:
    """Write the Space into the (new, empty) folder `dest`; `parameters` gives each model folder's size."""
    folders = model_folders(models_dir)
    for name in local_imports(ROOT / "app.py"):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, dest / name)
    for f in folders:
        target = dest / "models" / f.relative_to(models_dir)
        target.mkdir(parents=True)
        for p in sorted(f.iterdir()):
            if p.is_file() and p.name not in (STATE_FILE, OPTIMIZER_FILE):
                shutil.copyfile(p, target / p.name)
    for sweep in sorted({f.parent / "sweep.json" for f in folders}):  # the lab's Training tab shows it
        if sweep.exists():
            shutil.copyfile(sweep, dest / "models" / sweep.relative_to(models_dir))
    for grid in sorted({f.parent / "scaling" for f in folders}):  # the lab's Scaling tab: experiments.scaling's sizes
        if (grid / "scaling.json").exists():
            skip = shutil.ignore_patterns(STATE_FILE, OPTIMIZER_FILE)
            shutil.copytree(grid, dest / "models" / grid.relative_to(models_dir), ignore=skip)
    (dest / "data").mkdir()
    for corpus in sorted({f.parent.name for f in folders} & set(CORPORA)):  # Lab.passage reads these
        for name in CORPORA[corpus].files:
            shutil.copyfile(DATA_DIR / name, dest / "data" / name)
    shutil.copyfile(DATA_DIR / "PROVENANCE.md", dest / "data" / "PROVENANCE.md")
    (dest / "requirements.txt").write_text(space_requirements())
    (dest / "README.md").write_text(space_card(folders, parameters))


def assemble_space(out: str | Path, repo_id: str, models_dir: str | Path = MODELS_DIR) -> Path:
    """Check the models, then write the Space to `out` atomically. Returns `out`."""
    check_repo_id(repo_id)
    models_dir = Path(models_dir)
    folders = model_folders(models_dir)
    if not folders:
        raise UsageError(f"no models in {models_dir} (expected {models_dir}/<corpus>/<variant>/config.json)")
    # every model the Space will serve loads, or a clear line says which does not
    parameters = {f: load_model_folder(f)[0].num_parameters() for f in folders}
    space_requirements()  # a version mismatch is reported before anything is written
    return write_new_folder(out, lambda tmp: write_space_repo(tmp, models_dir, parameters))
