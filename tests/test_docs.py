"""The documentation is true to the project: every Python block of README.md and of docs/*.md runs as written (each
file's blocks as one script, in a scratch directory with this project importable and models/ linked in), the
README's switch table is the registry `configuration_gpt2mini.SWITCHES`, its file map names every top-level file and
folder, and every relative link and #anchor in the README and the docs resolves."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from gpt2mini.cli import build_parser
from gpt2mini.training.settings import switches_from_flags

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```[ \t]*$", flags=re.M | re.S)


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.M | re.S)


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(d)], ids=name)
def test_python_blocks_run(doc, tmp_path):
    blocks = python_blocks(doc)
    (tmp_path / "models").symlink_to(ROOT / "models")  # the examples run from the repository root
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, f"{name(doc)}:\n{out.stderr[-3000:]}"
    if doc == README:
        assert len(blocks) >= 2
        assert "ROMEO:" in out.stdout and "JULIET:" in out.stdout
        assert (tmp_path / "my-gpt2mini" / "model.safetensors").exists()
        assert "torch.float32 False" in out.stdout


# ---------------------------------------------------------------------------------------------------------------------
# The README's tables


def table_after(text: str, header: str) -> list[list[str]]:
    """The rows (cells stripped) of the markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:  # after the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_readme_switch_table_is_the_registry():
    from configuration_gpt2mini import BASELINE, BASELINE_MEANING, SWITCHES, gpt2_value, variant_label

    rows = table_after(README.read_text(encoding="utf-8"), "| variant | config field | train.py flag |")
    listed = []
    for variant, setting, flag, label, meaning in rows:
        if variant.strip("`") == BASELINE:
            listed.append((BASELINE, None, None, label, meaning))
            continue
        field, value = setting.strip("`").split("=", 1)
        listed.append((variant.strip("`"), (field, ast.literal_eval(value)), flag.strip("`"), label, meaning))
        # the flag as shown makes exactly that variant
        args = build_parser().parse_args(flag.strip("`").split())
        assert switches_from_flags(vars(args)) == {field: ast.literal_eval(value)}, flag

    def shown_flag(s) -> str:
        return f"--{s.flag} 1" if isinstance(gpt2_value(s.field), bool) else f"--{s.flag} {s.value}"

    expected = [(BASELINE, None, None, variant_label(BASELINE), BASELINE_MEANING)] + [
        (s.variant, (s.field, s.value), shown_flag(s), s.label, s.meaning) for s in SWITCHES
    ]
    assert listed == expected


def test_the_readme_file_map_names_every_top_level_entry():
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    top = {path.split("/")[0] for path in tracked.splitlines()} - {"README.md", ".gitignore"}
    rows = table_after(README.read_text(encoding="utf-8"), "| file | what it is |")
    named = {token.rstrip("/") for row in rows for token in re.findall(r"`([^`]+)`", row[0])}
    missing = {entry for entry in top if not any(n == entry or n.startswith(entry + "/") for n in named)}
    assert not missing, f"README's file map lacks {sorted(missing)}"


# ---------------------------------------------------------------------------------------------------------------------
# Links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but not - or _), spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            found.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return found


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("doc", DOCS, ids=name)
def test_every_relative_link_and_anchor_resolves(doc):
    broken = []
    for target in links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, f"{name(doc)}: {broken}"


def test_the_readme_names_the_lora_target_modules_the_model_file_defines():
    from modeling_gpt2mini import LORA_TARGET_MODULES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"target_modules={json.dumps(list(LORA_TARGET_MODULES))}" in readme
