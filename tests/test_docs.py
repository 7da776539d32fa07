"""The README's Python examples run as written (in a scratch directory, with this project importable)."""

import os
import re
import subprocess
import sys

from conftest import ROOT


def test_readme_python_blocks_run(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    (tmp_path / "models").symlink_to(ROOT / "models")  # the examples run from the repository root
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ROMEO:" in out.stdout and "JULIET:" in out.stdout
    assert (tmp_path / "my-gpt2mini" / "model.safetensors").exists()
