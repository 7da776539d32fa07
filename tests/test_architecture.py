"""The house: every module imports only the layers docs/architecture.md allows it (no cycles, no program imported
by anything), the two model files stand alone, models/ holds no code, pyproject's first-party list names what is
here, and no function grows past about 80 lines without a reason written next to it."""

import ast
import fnmatch
import json
import re
from pathlib import Path

from conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"
LONG = 80  # lines from `def` to the function's last line
PACKAGES = ("gpt2mini", "experiments", "bench")  # the folders of modules (tests/ is the test suite, not a layer)
PROGRAM_LAYERS = {"programs", "experiments", "benchmarks"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every project module by import name: the top-level files and every module of the packages."""
    found = {p.stem: p for p in ROOT.glob("*.py")}
    for package in PACKAGES:
        found |= {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    return found


def project_imports(path: Path, names: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in it (inside functions too); `from a import b` counts `a.b`
    where that is a module, and `a` (whose __init__ runs) otherwise."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in imported if n in names}
    return out


def layers() -> dict[str, tuple[list[str], set[str]]]:
    """docs/architecture.md's table: layer -> (its module patterns, the layers it may import)."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            patterns = re.findall(r"`([\w.*]+)`", cells[1])
            allowed = set() if cells[3] == "nothing" else {c.strip() for c in cells[3].split(",")}
            rows[cells[0]] = (patterns, allowed)
    return rows


def layer_of(name: str, table: dict) -> list[str]:
    """The layers whose rows name `name`: by its own name if any row does, else by a pattern (`a.*` covers `a`)."""
    exact = [layer for layer, (patterns, _) in table.items() if name in patterns]
    if exact:
        return exact
    return [
        layer
        for layer, (patterns, _) in table.items()
        if any(fnmatch.fnmatchcase(name, p) or (p.endswith(".*") and name == p[:-2]) for p in patterns)
    ]


def test_every_module_is_in_exactly_one_layer():
    table = layers()
    assert {"model", "core", "programs", "experiments"} <= set(table), table.keys()
    for _, allowed in table.values():
        assert allowed <= set(table), f"docs/architecture.md names a layer it does not define: {allowed - set(table)}"
    wrong = {name: layer_of(name, table) for name in modules() if len(layer_of(name, table)) != 1}
    assert wrong == {}, f"modules in no layer or in several: {wrong}"


def test_every_module_imports_only_the_layers_its_row_allows():
    names, table = set(modules()), layers()
    wrong = {}
    for name, path in modules().items():
        (layer,) = layer_of(name, table)
        allowed = table[layer][1] | {layer}
        extra = {m for m in project_imports(path, names) - {name} if layer_of(m, table)[0] not in allowed}
        if extra:
            wrong[name] = sorted(extra)
    assert wrong == {}, f"imports that docs/architecture.md does not allow: {wrong}"


def test_no_module_imports_a_program():
    names, table = set(modules()), layers()
    # a program's package (experiments/__init__.py, bench/__init__.py) holds no program
    programs = {m for m in names if layer_of(m, table)[0] in PROGRAM_LAYERS and modules()[m].stem != "__init__"}
    assert {"train", "app", "publish", "experiments.ablate"} <= programs
    found = {name: sorted(project_imports(path, names) & programs - {name}) for name, path in modules().items()}
    assert {k: v for k, v in found.items() if v} == {}, "programs imported as libraries"


def test_the_imports_have_no_cycle():
    names = set(modules())
    graph = {name: project_imports(path, names) - {name} for name, path in modules().items()}
    done, active = set(), []

    def visit(node):
        assert node not in active, f"import cycle: {' -> '.join(active[active.index(node) :] + [node])}"
        if node in done:
            return
        active.append(node)
        for child in graph[node]:
            visit(child)
        active.pop()
        done.add(node)

    for node in graph:
        visit(node)


def test_the_checks_see_package_imports(tmp_path):
    (tmp_path / "m.py").write_text("from gpt2mini.lab import ui\nimport train\n\ndef f():\n    from app import main\n")
    names = {"gpt2mini.lab", "gpt2mini.lab.ui", "train", "app", "publish"}
    assert project_imports(tmp_path / "m.py", names) == {"gpt2mini.lab", "gpt2mini.lab.ui", "train", "app"}


def test_the_model_files_import_only_torch_transformers_and_each_other():
    # publishing copies these two into the repository it assembles; a Hub user runs them with trust_remote_code=True
    for name in ("configuration_gpt2mini", "modeling_gpt2mini"):
        tree = ast.parse((ROOT / f"{name}.py").read_text(encoding="utf-8"))
        roots = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots.add(node.module.split(".")[0])
        stdlib = {"math", "inspect", "dataclasses"}
        assert roots <= {"torch", "transformers", "configuration_gpt2mini"} | stdlib, (name, roots)


def test_the_top_level_is_the_design_card():
    programs = {"train.py", "app.py", "publish.py"}
    assert {p.name for p in ROOT.glob("*.py")} == {"configuration_gpt2mini.py", "modeling_gpt2mini.py"} | programs


def test_no_code_in_models():
    # model folders hold weights, config, tokenizer and training records: the classes come from the package's
    # registration (gpt2mini/__init__.py), so a model edit re-ships nothing; only an assembled Hub repository has code
    shipped = ROOT / "models"
    code = [p.relative_to(ROOT).as_posix() for p in shipped.rglob("*.py")]
    configs = sorted(shipped.rglob("config.json"))
    mapped = [p.relative_to(ROOT).as_posix() for p in configs if "auto_map" in json.loads(p.read_text("utf-8"))]
    assert code == [] and mapped == [], (code, mapped)
    assert len(configs) >= 16  # the check saw the shipped folders


def test_pyprojects_first_party_list_names_what_is_here():
    block = (ROOT / "pyproject.toml").read_text().split("known-first-party = [", 1)[1].split("]", 1)[0]
    listed = set(re.findall(r'"([\w.]+)"', block))
    here = {p.stem for p in ROOT.glob("*.py")} | {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"conftest"}
    assert listed == here


def long_functions(path: Path, root: Path = ROOT) -> list[str]:
    """Functions over LONG lines with no `# long:` comment on the line above them (or above their decorators)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            reason = first >= 2 and lines[first - 2].strip().startswith("# long:")
            if length > LONG and not reason:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_function_over_80_lines_without_a_reason():
    found = [f for path in modules().values() for f in long_functions(path)]
    assert found == [], "split these, or say why next to them with a '# long:' comment:\n" + "\n".join(found)


def test_the_length_check_finds_what_it_looks_for(tmp_path):
    body = "\n".join(f"    x = {i}" for i in range(LONG))
    source = f"def short():\n    pass\n\n\ndef long():\n{body}\n\n\n# long: a reason\ndef ok():\n{body}\n"
    (tmp_path / "m.py").write_text(source)
    found = [f.split(" ")[1] for f in long_functions(tmp_path / "m.py", root=tmp_path)]
    assert found == ["long"]
