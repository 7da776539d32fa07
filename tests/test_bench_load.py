"""bench/load.py --quick: concurrent clients against the real app on 127.0.0.1, bounded in time; no errors, the
figures it reports, the server's memory within the bound, and a saturated queue answering "Queue is full" at once."""

import json
import time

from bench import load as loadtest


def test_quick_load_test_meets_its_goals(tmp_path, capsys):
    start = time.monotonic()
    assert loadtest.main(["--quick", "--json", str(tmp_path / "figures.json")]) == 0, capsys.readouterr()
    elapsed = time.monotonic() - start
    r = json.loads((tmp_path / "figures.json").read_text())
    assert r["clients"] == 4 and r["requests"] >= 8 and r["errors"] == 0 and r["goals_met"]
    assert 0 < r["first_char_p50_ms"] <= r["first_char_p95_ms"] < 30_000
    assert 0 < r["server_first_char_p50_ms"] <= r["server_first_char_p95_ms"]
    assert r["chars_per_s"] > 0 and r["rss_before_mb"] > 50 and r["rss_growth_mb"] < r["rss_bound_mb"]
    s = r["saturation"]
    assert s["ok"] and s["refused"] >= s["refused_at_least"] - 1 >= 1 and s["accepted"] >= 1
    assert s["message"].startswith("Queue is full") and s["slowest_refusal_s"] < 10  # at once, not a timeout
    out = capsys.readouterr().out
    assert "errors                                 0" in out and "goals met" in out
    assert elapsed < 120  # about 40 s on 2 busy cores: two app starts, 8 s of load, one burst


def test_bad_arguments_are_one_line_and_exit_2(capsys):
    for args in (["--clients", "0"], ["--duration", "-1"], ["--clients", "1000"], ["--corpus", "klingon"]):
        assert loadtest.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
