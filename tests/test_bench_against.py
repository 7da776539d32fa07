"""bench/against.py: the fast decoder at a git revision against today's, in one process."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench import against
from conftest import ROOT

HAS_HISTORY = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode == 0


@pytest.mark.skipif(not HAS_HISTORY, reason="needs the repository's git history")
def test_it_checks_the_tokens_then_times_both():
    # in its own process: it imports a second copy of the model classes
    run = subprocess.run(
        [sys.executable, "-m", "bench.against", "HEAD", "--rounds", "2"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "same greedy tokens: True" in run.stdout and "decode step: REV" in run.stdout and "chars/s" in run.stdout


@pytest.mark.skipif(not HAS_HISTORY, reason="needs the repository's git history")
def test_the_auto_classes_keep_todays_model_after_loading_a_revision():
    from transformers import AutoConfig, AutoModelForCausalLM

    from configuration_gpt2mini import GPT2MiniConfig
    from modeling_gpt2mini import GPT2MiniForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        against.modules_at("HEAD", Path(tmp))
    assert type(AutoConfig.for_model("gpt2mini")) is GPT2MiniConfig
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2mini", n_layer=1, n_embd=16, n_head=2))
    assert type(model) is GPT2MiniForCausalLM


@pytest.mark.skipif(not HAS_HISTORY, reason="needs the repository's git history")
def test_an_unknown_revision_is_one_line(capsys):
    assert against.main(["no-such-revision"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: git cannot show") and "\n" not in err
