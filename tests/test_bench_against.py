"""bench/against.py: the fast decoder at a git revision against today's, in one process."""

import subprocess

import pytest

from bench import against
from conftest import ROOT

HAS_HISTORY = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode == 0


@pytest.mark.skipif(not HAS_HISTORY, reason="needs the repository's git history")
def test_it_checks_the_tokens_then_times_both(capsys):
    assert against.main(["HEAD", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "same greedy tokens: True" in out and "decode step: REV" in out and "chars/s" in out


@pytest.mark.skipif(not HAS_HISTORY, reason="needs the repository's git history")
def test_an_unknown_revision_is_one_line(capsys):
    assert against.main(["no-such-revision"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: git cannot show") and "\n" not in err
