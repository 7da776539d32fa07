"""The house: every module imports only what docs/architecture.md allows it (no cycles), the two model files stand
alone, and no function grows past about 80 lines without a reason written next to it."""

import ast
import re
from pathlib import Path

from conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"
LONG = 80  # lines from `def` to the function's last line


def modules() -> dict[str, Path]:
    """Every project module: the top-level files and the bench package's, by import name."""
    found = {p.stem: p for p in ROOT.glob("*.py")}
    found |= {f"bench.{p.stem}": p for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__"}
    return found


def project_imports(path: Path, names: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in it (inside functions too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in imported:
            out |= {n for n in (name, name.split(".")[0]) if n in names}
    return out


def allowed() -> dict[str, set[str]]:
    """docs/architecture.md's table: module -> the project modules it may import."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[\w.]+`", cells[0]):
            rows[cells[0].strip("`")] = set(re.findall(r"`([\w.]+)`", cells[2]))
    return rows


def test_the_table_names_every_module():
    assert set(allowed()) == set(modules()), "docs/architecture.md's table and the modules differ"


def test_every_module_imports_only_what_the_table_allows():
    names, rules = set(modules()), allowed()
    wrong = {}
    for name, path in modules().items():
        extra = project_imports(path, names) - rules[name] - {name}
        if extra:
            wrong[name] = sorted(extra)
    assert wrong == {}, f"imports that docs/architecture.md does not allow: {wrong}"


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


def test_the_model_files_import_only_torch_transformers_and_each_other():
    # save_pretrained copies these two next to the weights; a Hub user runs them with trust_remote_code=True
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
