"""bench/lab.py's smoke run: it drives the real app on the shipped models and prints its figures."""

import json

from bench import lab as bench_app


def test_quick_run_prints_rounds_and_a_summary(capsys):
    assert bench_app.main(["--quick"]) == 0
    out = capsys.readouterr().out
    row = json.loads(out.splitlines()[0])
    assert row["panes"] == 4 and row["chars_per_pane"] == 60
    assert row["server_first_char_ms"] > 0 and row["chars_per_s_per_pane"] > 0
    assert "server time to first character" in out and "characters/s per pane" in out
    assert "per-character probabilities" in out and "x the same steps without them" in out
