"""Load test of the lab: many clients at once, on this machine only (127.0.0.1), bounded in time and count.

    python -m bench.load                          # 16 clients for 60 s on the shipped models, then the saturation check
    python -m bench.load --quick                  # 4 clients for 8 s, short generations (a smoke run, under a minute)
    python -m bench.load --clients 32 --duration 120 --json out.json

It starts `python app.py` in its own process on a free port of 127.0.0.1 and runs `--clients` threads in this one,
each with its own gradio_client, each looping until `--duration` is over: a generation (/generate) and a side-by-side
comparison of two variants (/side_by_side) in turn, `--chars` characters each, a new seed every time (no request
starts after the deadline; each must end within `--timeout` s). Then it reports:

- errors (goal: 0): requests that raised, timed out or ended without their final update;
- time to the first character as a client sees it, queue wait included (p50, p95), and as the server measures it
  from the start of the handler (p50, p95; side by side only: the app's "First character after N ms");
- characters per second: every generated character of every finished request, over the wall time;
- the server's resident memory (VmRSS from /proc) after a warm-up request of each kind, at the end, and its peak
  (VmHWM); goal: growth below `--rss-bound` MB.

Then the saturation check: a second server with `--queue-size` (default 2) gets `--burst` requests at the same moment
(default: the 4 that run at once + the queue + 6 more). The ones beyond what runs and waits must be turned away at once
with Gradio's "Queue is full" (HTTP 503; gradio_client raises QueueError), not left to time out; the accepted ones
are then cancelled. Exit status 0 when every goal holds, 1 otherwise.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (python bench/load.py): the project's modules are one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RUNNING = 4  # events the app runs at once (app.build_demo: concurrency_limit=4)
PROMPTS = ["ROMEO:", "First Citizen:\n", "KING RICHARD III:\nNow is the winter", "JULIET:\nO Romeo, Romeo!"]


@dataclass
class Request:
    kind: str
    ok: bool
    first_s: float | None = None  # submit to the first streamed update, as the client sees it
    server_first_ms: float | None = None  # the app's own figure (side by side)
    chars: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Report:
    clients: int
    duration_s: float
    chars: int
    models: str
    requests: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    first_char_p50_ms: float | None = None
    first_char_p95_ms: float | None = None
    server_first_char_p50_ms: float | None = None
    server_first_char_p95_ms: float | None = None
    chars_per_s: float = 0.0
    wall_s: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_growth_mb: float = 0.0
    rss_every_10s_mb: list[float] = field(default_factory=list)  # during the load: growing, or levelling off?
    rss_bound_mb: float = 0.0
    saturation: dict = field(default_factory=dict)
    goals_met: bool = False


# ---------------------------------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python app.py` in its own process on 127.0.0.1."""

    def __init__(self, models: str, queue_size: int | None = None, threads: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(self.port))
        env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        cmd = [sys.executable, str(ROOT / "app.py"), "--models", models, "--threads", str(threads)]
        if queue_size is not None:
            cmd += ["--queue-size", str(queue_size)]
        self.log = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill up and stall the server
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def client(self, timeout: float = 180.0):
        """A gradio_client for the server, once it answers (or its output if it exits first)."""
        from gradio_client import Client

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"app.py exited with {self.proc.returncode}: {self.log.read()[-2000:]}")
            try:
                return Client(self.url, verbose=False)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the server process in MB (Linux /proc)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        values = {k: int(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", status, re.M)}
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------------------------------------------------
# One request, as a user's client makes it


def one_request(client, kind: str, variants: list[str], corpus: str, chars: int, seed: int, timeout: float) -> Request:
    prompt = PROMPTS[seed % len(PROMPTS)]
    settings = (0.8, 40, 0.95, chars, 1.0, seed)
    start = time.perf_counter()
    try:
        if kind == "generate":
            job = client.submit(corpus, variants[0], prompt, *settings, api_name="/generate")
        else:
            job = client.submit(corpus, variants[:2], prompt, *settings, api_name="/side_by_side")
        first = None
        for _ in job:
            if first is None:
                first = time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                job.cancel()
                raise TimeoutError(f"no final update after {timeout:.0f} s")
        final = job.result(timeout=max(1.0, timeout - (time.perf_counter() - start)))
        seconds = time.perf_counter() - start
    except Exception as e:
        text = str(e).strip().splitlines()
        return Request(kind, False, error=f"{type(e).__name__}: {text[0] if text else ''}"[:200])
    if kind == "generate":
        text, status = final
        n = len(text) - len(prompt)
        if not text.startswith(prompt) or "characters in" not in status:
            return Request(kind, False, error=f"unexpected final update: {status!r}"[:200])
        return Request(kind, True, first, None, max(n, 0), seconds)
    counts = [int(m.replace(",", "")) for m in re.findall(r"<span>([\d,]+) chars ·", "".join(final[1:3]))]
    found = re.search(r"First character after (\d+) ms", final[0] or "")
    if len(counts) != 2 or not found:
        return Request(kind, False, error=f"unexpected final update: {str(final[0])[:120]!r}")
    return Request(kind, True, first, float(found[1]), sum(counts), seconds)


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank), rounded to a millisecond-friendly 0.1."""
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))], 1)


# ---------------------------------------------------------------------------------------------------------------------
# The load phase


def load_phase(server: Server, args, report: Report, variants: list[str]) -> None:
    warm = server.client()
    for kind in ("generate", "side_by_side"):  # the first request of each kind allocates what stays allocated
        r = one_request(warm, kind, variants, args.corpus, args.chars, 0, args.timeout)
        if not r.ok:
            raise RuntimeError(f"the warm-up {kind} request failed: {r.error}")
    report.rss_before_mb = server.memory_mb()[0]

    results: list[Request] = []
    lock = threading.Lock()
    clients = [server.client() for _ in range(args.clients)]  # connected before the clock starts
    barrier = threading.Barrier(args.clients + 1)
    deadline = [0.0]

    def work(i: int) -> None:
        client, n = clients[i], 0
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            kind = ("generate", "side_by_side")[(i + n) % 2]
            r = one_request(client, kind, variants, args.corpus, args.chars, 1000 * i + n + 1, args.timeout)
            with lock:
                results.append(r)
            n += 1

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    deadline[0] = start + args.duration
    barrier.wait()
    limit = start + args.duration + args.timeout + 30
    while any(t.is_alive() for t in threads) and time.perf_counter() < limit:
        if len(report.rss_every_10s_mb) <= (time.perf_counter() - start) // 10:
            report.rss_every_10s_mb.append(round(server.memory_mb()[0], 1))
        time.sleep(0.2)
    report.wall_s = round(time.perf_counter() - start, 1)
    if any(t.is_alive() for t in threads):
        results.append(Request("?", False, error="a client was still busy long after its last request's timeout"))
    time.sleep(1.0)  # let the server finish its last updates before reading its memory
    report.rss_after_mb, report.rss_peak_mb = server.memory_mb()

    done = [r for r in results if r.ok]
    report.requests = len(results)
    report.errors = len(results) - len(done)
    report.error_examples = sorted({r.error for r in results if not r.ok})[:5]
    firsts = [1000 * r.first_s for r in done if r.first_s is not None]
    servers = [r.server_first_ms for r in done if r.server_first_ms is not None]
    report.first_char_p50_ms, report.first_char_p95_ms = percentile(firsts, 0.5), percentile(firsts, 0.95)
    report.server_first_char_p50_ms = percentile(servers, 0.5)
    report.server_first_char_p95_ms = percentile(servers, 0.95)
    report.rss_before_mb, report.rss_after_mb = round(report.rss_before_mb, 1), round(report.rss_after_mb, 1)
    report.rss_peak_mb = round(report.rss_peak_mb, 1)
    report.chars_per_s = round(sum(r.chars for r in done) / report.wall_s, 1) if report.wall_s else 0.0
    report.rss_growth_mb = round(report.rss_after_mb - report.rss_before_mb, 1)


# ---------------------------------------------------------------------------------------------------------------------
# The saturation check


def saturation_phase(args, variants: list[str]) -> dict:
    from gradio_client.utils import QueueError, Status

    WAITING_OR_RUNNING = {Status.IN_QUEUE, Status.SENDING_DATA, Status.PROCESSING, Status.PROGRESS, Status.ITERATING}

    server = Server(args.models, queue_size=args.queue_size, threads=args.threads)
    try:
        clients = [server.client() for _ in range(args.burst)]
        outcome: list[dict] = [{} for _ in clients]
        jobs = [None] * len(clients)
        barrier = threading.Barrier(len(clients))

        def submit(i: int) -> None:
            barrier.wait()
            start = time.perf_counter()
            # long generations, so that the first ones still run when the last ones arrive
            job = clients[i].submit(
                args.corpus, variants[0], "ROMEO:", 0.8, 40, 0.95, 2000, 1.0, i, api_name="/generate"
            )
            jobs[i] = job
            while time.perf_counter() - start < args.timeout:
                if job.done():
                    try:
                        job.result()
                        outcome[i] = {"accepted": True}
                    except QueueError as e:
                        outcome[i] = {"refused": str(e)}
                    except Exception as e:
                        outcome[i] = {"error": f"{type(e).__name__}: {e}"[:200]}
                    break
                if job.status().code in WAITING_OR_RUNNING:  # in the queue or streaming: accepted
                    outcome[i] = {"accepted": True}
                    break
                time.sleep(0.02)
            if outcome[i]:
                outcome[i]["seconds"] = time.perf_counter() - start

        threads = [threading.Thread(target=submit, args=(i,), daemon=True) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.timeout)
        for job in jobs:
            if job is not None:
                job.cancel()
    finally:
        server.stop()
    refused = [o for o in outcome if "refused" in o]
    accepted = [o for o in outcome if o.get("accepted")]
    errors = [o["error"] for o in outcome if "error" in o] + ["no answer" for o in outcome if not o]
    # At least the requests beyond what runs and what waits are refused; a burst that arrives before the queue has
    # handed any request to a worker can see more refused (Gradio counts what has not started yet).
    expected = max(0, args.burst - RUNNING - args.queue_size)
    result = {
        "queue_size": args.queue_size,
        "burst": args.burst,
        "running_at_once": RUNNING,
        "accepted": len(accepted),
        "refused": len(refused),
        "refused_at_least": expected,
        "slowest_refusal_s": round(max((o["seconds"] for o in refused), default=0.0), 2),
        "message": refused[0]["refused"] if refused else None,
        "errors": errors[:5],
    }
    # every refusal is Gradio's queue-full answer, at once; none of the requests was left hanging
    result["ok"] = bool(
        len(refused) >= max(1, expected - 1)  # one may slip in if a running request ends while the burst arrives
        and len(accepted) >= 1
        and len(accepted) + len(refused) == args.burst
        and not errors
        and result["slowest_refusal_s"] < 10
        and all("Queue is full" in o["refused"] for o in refused)
    )
    return result


# ---------------------------------------------------------------------------------------------------------------------


def variants_of(models: str, corpus: str) -> list[str]:
    folder = Path(models) / corpus
    names = sorted(p.name for p in folder.iterdir() if (p / "config.json").exists()) if folder.is_dir() else []
    return (["baseline"] if "baseline" in names else []) + [n for n in names if n != "baseline"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Load test of the lab on 127.0.0.1 (see the module docstring).")
    p.add_argument("--models", default=str(ROOT / "models"), help="folder of <corpus>/<variant> model folders")
    p.add_argument("--corpus", default="shakespeare")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--duration", type=float, default=60.0, help="seconds during which clients start requests")
    p.add_argument("--chars", type=int, default=300, help="characters per request (the lab's default)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds one request may take, queue included")
    p.add_argument("--rss-bound", type=float, default=100.0, help="allowed growth of the server's memory, MB")
    p.add_argument("--queue-size", type=int, default=2, help="the saturation server's queue")
    p.add_argument("--burst", type=int, help="simultaneous requests in the saturation check (default: 4 + queue + 6)")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads (app.py --threads)")
    p.add_argument("--no-saturation", action="store_true", help="skip the saturation check")
    p.add_argument("--quick", action="store_true", help="4 clients, 8 s, 40 characters: a smoke run")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.duration, args.chars = 4, 8.0, 40
    args.burst = args.burst or RUNNING + args.queue_size + 6
    if min(args.clients, args.chars, args.queue_size, args.burst) < 1 or args.duration <= 0 or args.timeout <= 0:
        print(
            "error: --clients, --chars, --queue-size, --burst, --duration and --timeout must be positive",
            file=sys.stderr,
        )
        return 2
    if args.clients > 256 or args.duration > 3600 or args.burst > 256:
        print("error: at most 256 clients, 256 in a burst and 3600 s: this is a bounded test", file=sys.stderr)
        return 2
    variants = variants_of(args.models, args.corpus)
    if not variants:
        print(f"error: no models for {args.corpus!r} in {args.models} (<corpus>/<variant> folders)", file=sys.stderr)
        return 2

    report = Report(args.clients, args.duration, args.chars, args.models, rss_bound_mb=args.rss_bound)
    say(f"load: {args.clients} clients x {args.duration:.0f} s, {args.chars} characters per request, on 127.0.0.1")
    server = Server(args.models, threads=args.threads)
    try:
        load_phase(server, args, report, variants)
    finally:
        server.stop()
    if not args.no_saturation:
        say(f"saturation: {args.burst} requests at once against a queue of {args.queue_size} (+{RUNNING} running)")
        report.saturation = saturation_phase(args, variants)
    report.goals_met = (
        report.errors == 0
        and report.requests > 0
        and report.rss_growth_mb < args.rss_bound
        and (args.no_saturation or report.saturation["ok"])
    )
    print(summary(report))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0 if report.goals_met else 1


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fmt(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:,.0f} ms"


def summary(r: Report) -> str:
    examples = ("  " + "; ".join(r.error_examples)) if r.errors else ""
    lines = [
        f"{r.requests} requests from {r.clients} clients in {r.wall_s:.0f} s ({r.chars} characters each, "
        f"/generate and /side_by_side in turn)",
        f"  errors                                 {r.errors}   (goal 0){examples}",
        f"  time to first character, client p50   {fmt(r.first_char_p50_ms)}   p95 {fmt(r.first_char_p95_ms)}"
        "   (queue wait included)",
        f"  time to first character, server p50   {fmt(r.server_first_char_p50_ms)}   p95 "
        f"{fmt(r.server_first_char_p95_ms)}",
        f"  characters/s, all clients together     {r.chars_per_s:,.0f}",
        f"  server memory (RSS)                    {r.rss_before_mb:.0f} MB after warm-up, {r.rss_after_mb:.0f} MB at "
        f"the end ({r.rss_growth_mb:+.0f} MB; goal < {r.rss_bound_mb:.0f}), peak {r.rss_peak_mb:.0f} MB",
        f"  server memory every 10 s (MB)          {', '.join(f'{v:.0f}' for v in r.rss_every_10s_mb)}",
    ]
    s = r.saturation
    if s:
        lines.append(
            f"  saturation: {s['burst']} at once, {s['running_at_once']} running + queue {s['queue_size']}: "
            f"{s['accepted']} accepted, {s['refused']} refused (at least {s['refused_at_least']} expected), slowest "
            f"refusal "
            f"{s['slowest_refusal_s']:.2f} s, message {s['message']!r}{'' if s['ok'] else '  NOT AS EXPECTED'}"
        )
    lines.append("goals met" if r.goals_met else "GOALS NOT MET")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
