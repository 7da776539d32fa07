"""bench/load.py --quick: concurrent clients against the real app on 127.0.0.1, bounded in time; no errors, the
figures it reports, the server's memory within the bound, clients that go away (abandoned joins, dropped connections,
cancels right after submit) followed each by a probe answered promptly with the server idle again, and a saturated
queue answering "Queue is full" at once."""

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
    phases = {p["name"]: p for p in r["gone_clients"]}
    assert list(phases) == ["abandoned joins", "dropped connections", "cancels right after submit"]
    assert [p["requests"] for p in phases.values()] == [8, 4, 12]
    for p in phases.values():  # after each: the probe answered promptly, the server idle, memory within the bound
        assert p["goals_met"] and p["errors"] == 0, p
        assert 0 < p["probe_s"] < p["probe_bound_s"] == 10 and 0 <= p["cpu_after_cores"] < p["idle_bound_cores"]
        assert p["rss_before_mb"] > 50 and p["rss_growth_mb"] < p["rss_bound_mb"]
    out = capsys.readouterr().out
    assert "errors                                 0" in out and "goals met" in out and "NOT MET" not in out
    assert out.count("   MET") == 3
    assert elapsed < 120  # about 50 s on 2 cores: two app starts, 8 s of load, the three phases, one burst


def test_bad_arguments_are_one_line_and_exit_2(capsys):
    for args in (
        ["--clients", "0"],
        ["--duration", "-1"],
        ["--clients", "1000"],
        ["--corpus", "klingon"],
        ["--abandoned", "-1"],
        ["--cancels", "1000"],
        ["--probe-bound", "0"],
    ):
        assert loadtest.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_the_speed_goals_are_judged_for_the_default_load_only():
    from bench.load import Report, summary

    def report(**figures):
        return Report(16, 60.0, 300, "models", requests=10, **figures)

    def speed(r):
        return [line for line in summary(r).splitlines() if "speed goals" in line]

    fast = report(first_char_p50_ms=500.0, first_char_p95_ms=1500.0, chars_per_s=3000.0)
    assert len(speed(fast)) == 1 and speed(fast)[0].endswith("  MET")
    slow = report(first_char_p50_ms=500.0, first_char_p95_ms=1500.0, chars_per_s=2500.0)
    assert speed(slow)[0].endswith("NOT MET")
    late = report(first_char_p50_ms=500.0, first_char_p95_ms=2500.0, chars_per_s=3000.0)
    assert speed(late)[0].endswith("NOT MET")
    assert speed(Report(4, 8.0, 40, "models", requests=10, chars_per_s=10.0)) == []  # --quick: not judged
