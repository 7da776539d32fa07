"""Load test of the lab: many clients at once, on this machine only (127.0.0.1), bounded in time and count.

    python -m bench.load                          # 16 clients for 60 s, clients that go away, the saturation check
    python -m bench.load --quick                  # 4 clients for 8 s, short generations, small phases (a minute)
    python -m bench.load --clients 32 --duration 120 --json out.json
    python -m bench.load --decoding thread        # the lab decoding in a thread of its own process (app.py's option)

It starts `python app.py` in its own process on a free port of 127.0.0.1 and runs `--clients` threads in this one,
each with its own gradio_client, each looping until `--duration` is over: a generation (/generate) and a side-by-side
comparison of two variants (/side_by_side) in turn, `--chars` characters each, a new seed every time (no request
starts after the deadline; each must end within `--timeout` s). Then it reports:

- errors (goal: 0): requests that raised, timed out or ended without their final update;
- time to the first character as a client sees it, queue wait included (p50, p95), and as the server measures it
  from the start of the handler (p50, p95; side by side only: the app's "First character after N ms");
- characters per second: every generated character of every finished request, over the wall time;
- the server's resident memory (VmRSS from /proc) after a warm-up request of each kind, at the end, and its peak
  (VmHWM); goal: growth below `--rss-bound` MB;
- the speed goals (SPEED_GOALS: first character p50 <= 1 s, p95 <= 2 s, >= 2,964 characters/s), printed as met or
  not for the default load (16 clients, 300 characters); they are for an idle 2-core machine and do not count in
  the exit status.

Then, on the same server, three phases of clients that go away, each followed by a probe (one short /generate from
a client of its own, timed) and a look at the server: its CPU time over the next 3 s (IDLE_WINDOW_S) and its memory
before and after the phase:

- abandoned joins (`--abandoned`, default 20): raw `POST /gradio_api/queue/join`s of 4-pane, 2000-character
  side-by-side comparisons, in gradio_client's payload ({"data", "fn_index", "session_hash"}), whose update stream is
  never opened;
- dropped connections (`--dropped`, default 8): the same requests, each client opening its stream, reading 3 updates
  and closing the connection;
- a cancel storm (`--cancels`, default 50): one gradio_client submitting such comparisons, each `job.cancel()`ed at
  once.

Goals for each: no errors; the probe answered within `--probe-bound` s (default 10: the lab waits up to 5 s for a
client's stream, and a short generation takes well under a second); the server idle again (below `--idle-bound`
cores, default 0.25: an idle lab polls its queue every millisecond, about 0.07 of a core on a 2-core VM, while one
generating stream keeps a core busy); memory growth below `--rss-bound` MB.

Then the saturation check: a second server with `--queue-size` (default 2), running 4 generations at once
(`app.py --generating 4`, so that a small burst fills it), gets `--burst` requests at the same moment (default: the
4 that run + the queue + 6 more). The ones beyond what runs and waits must be turned away at once
with Gradio's "Queue is full" (HTTP 503; gradio_client raises QueueError), not left to time out; the accepted ones
are then cancelled. Exit status 0 when every goal holds, 1 otherwise.
"""

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (python bench/load.py): the project's modules are one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RUNNING = 4  # generations the saturation server runs at once (app.py --generating 4): a burst of a dozen fills it
PROMPTS = ["ROMEO:", "First Citizen:\n", "KING RICHARD III:\nNow is the winter", "JULIET:\nO Romeo, Romeo!"]
# The speed goals of the default load (16 clients, 300 characters; issue 20), for an idle 2-core machine: printed
# as met or not, and not part of the exit status (on a busy machine they say more about the machine than the lab).
# 988 characters/s is what the lab served this load before its generations were batched (2026-12-03).
SPEED_GOALS = {"first_char_p50_ms": 1000.0, "first_char_p95_ms": 2000.0, "chars_per_s": 3 * 988.0}
LONG_CHARS = 2000  # the largest request the lab takes: what a client that goes away would leave running
POLL_S = 0.002  # how often a client looks for its request's first update (the figure's resolution)
IDLE_WINDOW_S = 3.0  # how long the server's CPU time is watched after a phase's probe


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
    gone_clients: list[dict] = field(default_factory=list)  # the three phases (Phase, as dicts)
    goals_met: bool = False


@dataclass
class Phase:
    """One phase of clients that go away, and what the server did after it."""

    name: str
    requests: int
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    probe_s: float | None = None  # a short /generate sent after the phase: seconds to its answer (None: no answer)
    probe_bound_s: float = 0.0
    cpu_after_cores: float | None = None  # the server's CPU seconds per second over IDLE_WINDOW_S after the probe
    idle_bound_cores: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_growth_mb: float = 0.0
    rss_bound_mb: float = 0.0
    goals_met: bool = False


# ---------------------------------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python app.py` in its own process on 127.0.0.1."""

    def __init__(
        self,
        models: str,
        queue_size: int | None = None,
        threads: int = 1,
        generating: int | None = None,
        decoding: str | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(self.port))
        env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        cmd = [sys.executable, str(ROOT / "app.py"), "--models", models, "--threads", str(threads)]
        if queue_size is not None:
            cmd += ["--queue-size", str(queue_size)]
        if generating is not None:
            cmd += ["--generating", str(generating)]
        if decoding is not None:
            cmd += ["--decoding", decoding]
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
                # plain HTTP to 127.0.0.1: no certificates to load for each request's connection (gradio_client
                # makes a new one per request, and loading them took a fifth of the clients' CPU time)
                return Client(self.url, verbose=False, ssl_verify=False)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def processes(self) -> list[int]:
        """The server's process and its children (app.py's decoding process), from Linux /proc."""
        children = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that has just ended
                children += (task / "children").read_text().split()
        return [self.proc.pid] + [int(c) for c in children]

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB of the server, its children counted in (their peaks summed: an upper bound)."""
        rss = peak = 0.0
        for pid in self.processes():
            status = Path(f"/proc/{pid}/status").read_text()
            values = {k: int(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", status, re.M)}
            rss, peak = rss + values["VmRSS"], peak + values["VmHWM"]
        return rss, peak

    def cpu_s(self) -> float:
        """CPU seconds the server and its children have used (utime + stime from /proc/PID/stat)."""
        total = 0.0
        for pid in self.processes():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

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
        first = first_update(job, start, timeout)
        try:
            final = job.result(timeout=max(1.0, timeout - (time.perf_counter() - start)))
        except TimeoutError:
            job.cancel()
            raise TimeoutError(f"no final update after {timeout:.0f} s") from None
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


def first_update(job, start: float, timeout: float) -> float | None:
    """Seconds from `start` to the job's first streamed update (None if it ended without one), looked for every
    POLL_S. Not by iterating the job: gradio_client's iterator looks every millisecond, which in 16 client threads
    took about half a core of the 2-core machine the server under test runs on."""
    while not job.outputs():
        if job.done():
            return None
        if time.perf_counter() - start > timeout:
            job.cancel()
            raise TimeoutError(f"no update after {timeout:.0f} s")
        time.sleep(POLL_S)
    return time.perf_counter() - start


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
# Clients that go away: abandoned joins, dropped connections, a cancel storm


def fn_index(url: str, api_name: str) -> int:
    """The event's index, from the app's /config (what gradio_client reads too)."""
    import httpx

    dependencies = httpx.get(f"{url}config", timeout=30).json()["dependencies"]
    return next(d["id"] for d in dependencies if d.get("api_name") == api_name)


def long_comparison(args, variants: list[str], i: int) -> list:
    """A side-by-side comparison of up to 4 variants, LONG_CHARS characters: every input, in the API's order (a raw
    join sends them all; the last is the language)."""
    return [args.corpus, variants[:4], PROMPTS[i % len(PROMPTS)], 0.8, 40, 0.95, LONG_CHARS, 1.0, i, "en"]


def raw_join(url: str, fn: int, data: list, session: str) -> str:
    """POST /gradio_api/queue/join with gradio_client's payload; the event id (an error unless HTTP 200)."""
    import httpx

    answer = httpx.post(
        f"{url}gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()["event_id"]


def error_text(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


def abandon(server: Server, args, variants: list[str]) -> Callable[[], list[str]]:
    """`--abandoned` joins whose update stream is never opened, each from a session of its own."""
    fn, errors = fn_index(server.url, "side_by_side"), []
    for i in range(args.abandoned):
        try:
            raw_join(server.url, fn, long_comparison(args, variants, i), uuid.uuid4().hex)
        except Exception as e:
            errors.append(error_text(e))
    return lambda: errors


def drop(server: Server, args, variants: list[str]) -> Callable[[], list[str]]:
    """`--dropped` clients at once, each joining, opening its stream, reading 3 updates and closing the connection."""
    import httpx

    fn, errors = fn_index(server.url, "side_by_side"), []

    def one(i: int) -> None:
        session = uuid.uuid4().hex
        try:
            raw_join(server.url, fn, long_comparison(args, variants, i), session)
            url = f"{server.url}gradio_api/queue/data"
            with httpx.stream("GET", url, params={"session_hash": session}, timeout=args.timeout) as stream:
                updates = 0
                for line in stream.iter_lines():
                    updates += '"process_generating"' in line
                    if updates == 3:
                        return  # closes the connection
            errors.append("the stream ended before 3 updates")
        except Exception as e:
            errors.append(error_text(e))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(args.dropped)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.timeout)
    return lambda: errors + ["a client still reading after the timeout" for t in threads if t.is_alive()]


# gradio_client's own words when a job's stream ends just as it notices its cancel (gradio_client/utils.py:412, in
# get_pred_from_sse_v1plus): the job was cancelled and stopped; the client only fails to say which came first.
CLIENT_RACE = "Did not expect 2 tasks to be done."


def cancel_storm(server: Server, args, variants: list[str]) -> Callable[[], list[str]]:
    """One gradio_client submitting `--cancels` comparisons, each job.cancel()ed right after submit(). Checked after
    the probe: every job done, cancelled or ended empty (a job the server stops before the client's cancel reaches it
    ends with an empty result), none with an error or a finished comparison."""
    client, jobs, errors = server.client(), [], []
    for i in range(args.cancels):
        try:
            job = client.submit(*long_comparison(args, variants, i), api_name="/side_by_side")
            job.cancel()
            jobs.append(job)
        except Exception as e:
            errors.append(error_text(e))

    def check() -> list[str]:
        for job in jobs:
            e = job.exception() if job.done() else None
            if not job.done():
                errors.append("a cancelled job not done after the probe")
            elif e is None and "First character after" in str(job.result()[0]):
                errors.append("a cancelled job ran to its end")  # an empty result is how some end: stopped at once
            elif e is not None and not (isinstance(e, CancelledError) or CLIENT_RACE in str(e)):
                errors.append(f"a cancelled job ended with {error_text(e)}")
        return errors

    return check


def probe(client, args, variants: list[str]) -> float | None:
    """Seconds until one short /generate comes back (None if it fails or times out)."""
    start = time.perf_counter()
    try:
        job = client.submit(args.corpus, variants[0], "KING:", 0.8, 40, 0.95, 20, 1.0, 0, api_name="/generate")
        _, status = job.result(timeout=args.timeout)
    except Exception:
        return None
    return round(time.perf_counter() - start, 2) if "characters in" in status else None


def gone_phase(server: Server, args, variants: list[str], name: str, requests: int, run) -> Phase:
    """One phase (`run` sends its requests and returns the check of its errors), then the probe, the server's CPU
    over IDLE_WINDOW_S and its memory."""
    phase = Phase(name, requests, probe_bound_s=args.probe_bound)
    phase.idle_bound_cores, phase.rss_bound_mb = args.idle_bound, args.rss_bound
    probe_client = server.client()  # connected before the phase, so the probe times the answer only
    phase.rss_before_mb = round(server.memory_mb()[0], 1)
    check = run(server, args, variants)
    phase.probe_s = probe(probe_client, args, variants)
    cpu = server.cpu_s()
    time.sleep(IDLE_WINDOW_S)
    phase.cpu_after_cores = round((server.cpu_s() - cpu) / IDLE_WINDOW_S, 3)
    phase.rss_after_mb = round(server.memory_mb()[0], 1)
    phase.rss_growth_mb = round(phase.rss_after_mb - phase.rss_before_mb, 1)
    errors = check()
    phase.errors, phase.error_examples = len(errors), sorted(set(errors))[:5]
    phase.goals_met = (
        phase.errors == 0
        and phase.probe_s is not None
        and phase.probe_s < args.probe_bound
        and phase.cpu_after_cores < args.idle_bound
        and phase.rss_growth_mb < args.rss_bound
    )
    return phase


GONE_PHASES = [  # (name, the argument giving its number of requests, what it sends)
    ("abandoned joins", "abandoned", abandon),
    ("dropped connections", "dropped", drop),
    ("cancels right after submit", "cancels", cancel_storm),
]


# ---------------------------------------------------------------------------------------------------------------------
# The saturation check


def saturation_phase(args, variants: list[str]) -> dict:
    from gradio_client.utils import QueueError, Status

    WAITING_OR_RUNNING = {Status.IN_QUEUE, Status.SENDING_DATA, Status.PROCESSING, Status.PROGRESS, Status.ITERATING}

    server = Server(
        args.models, queue_size=args.queue_size, threads=args.threads, generating=RUNNING, decoding=args.decoding
    )
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
    p.add_argument(
        "--decoding", choices=("process", "thread"), help="the server's app.py --decoding (default: app.py's own)"
    )
    p.add_argument("--no-saturation", action="store_true", help="skip the saturation check")
    p.add_argument("--abandoned", type=int, default=20, help="joins whose stream is never opened (0: skip)")
    p.add_argument("--dropped", type=int, default=8, help="clients that read 3 updates and hang up (0: skip)")
    p.add_argument("--cancels", type=int, default=50, help="jobs cancelled right after submit (0: skip)")
    p.add_argument("--probe-bound", type=float, default=10.0, help="seconds a probe may take after a phase")
    p.add_argument("--idle-bound", type=float, default=0.25, help="the server's CPU (cores) after a phase's probe")
    p.add_argument(
        "--quick", action="store_true", help="4 clients, 8 s, 40 characters, phases of 8, 4, 12: a smoke run"
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.duration, args.chars = 4, 8.0, 40
        args.abandoned, args.dropped, args.cancels = 8, 4, 12
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
    if not all(0 <= n <= 256 for n in (args.abandoned, args.dropped, args.cancels)):
        print("error: --abandoned, --dropped and --cancels must be between 0 and 256", file=sys.stderr)
        return 2
    if not (args.probe_bound > 0 and args.idle_bound > 0):
        print("error: --probe-bound and --idle-bound must be positive", file=sys.stderr)
        return 2
    variants = variants_of(args.models, args.corpus)
    if not variants:
        print(f"error: no models for {args.corpus!r} in {args.models} (<corpus>/<variant> folders)", file=sys.stderr)
        return 2

    report = Report(args.clients, args.duration, args.chars, args.models, rss_bound_mb=args.rss_bound)
    say(f"load: {args.clients} clients x {args.duration:.0f} s, {args.chars} characters per request, on 127.0.0.1")
    server = Server(args.models, threads=args.threads, decoding=args.decoding)
    try:
        load_phase(server, args, report, variants)
        for name, count, run in GONE_PHASES:
            if getattr(args, count):
                say(f"{name}: {getattr(args, count)}, then a probe")
                report.gone_clients.append(asdict(gone_phase(server, args, variants, name, getattr(args, count), run)))
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
        and all(phase["goals_met"] for phase in report.gone_clients)
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
    if r.requests and (r.clients, r.chars) == (16, 300):  # the load the speed goals are for
        lines.append(speed_line(r))
    s = r.saturation
    if s:
        lines.append(
            f"  saturation: {s['burst']} at once, {s['running_at_once']} running + queue {s['queue_size']}: "
            f"{s['accepted']} accepted, {s['refused']} refused (at least {s['refused_at_least']} expected), slowest "
            f"refusal "
            f"{s['slowest_refusal_s']:.2f} s, message {s['message']!r}{'' if s['ok'] else '  NOT AS EXPECTED'}"
        )
    for phase in r.gone_clients:
        lines.append(gone_line(phase))
    lines.append("goals met" if r.goals_met else "GOALS NOT MET")
    return "\n".join(lines)


def speed_line(r: Report) -> str:
    """The speed goals (SPEED_GOALS), each met or not."""
    g = SPEED_GOALS
    ok = (
        r.first_char_p50_ms is not None
        and r.first_char_p50_ms <= g["first_char_p50_ms"]
        and r.first_char_p95_ms <= g["first_char_p95_ms"]
        and r.chars_per_s >= g["chars_per_s"]
    )
    return (
        f"  speed goals (an idle machine, 16 clients, 300 characters): first character p50 <= "
        f"{fmt(g['first_char_p50_ms'])}, p95 <= {fmt(g['first_char_p95_ms'])}, >= {g['chars_per_s']:,.0f} "
        f"characters/s (3x the 988 before batching)   {'MET' if ok else 'NOT MET'}"
    )


def gone_line(p: dict) -> str:
    """One phase of clients that go away, with its goals."""
    probe = "no answer" if p["probe_s"] is None else f"{p['probe_s']:.1f} s"
    examples = ("  " + "; ".join(p["error_examples"])) if p["errors"] else ""
    return (
        f"  {p['name'] + ':':29}{p['requests']:>3}; errors {p['errors']}, probe answered in {probe} (goal < "
        f"{p['probe_bound_s']:g}), server CPU after it {p['cpu_after_cores']:.2f} cores (goal < "
        f"{p['idle_bound_cores']:g}), memory {p['rss_before_mb']:.0f} -> {p['rss_after_mb']:.0f} MB "
        f"({p['rss_growth_mb']:+.0f}; goal < {p['rss_bound_mb']:.0f})   {'MET' if p['goals_met'] else 'NOT MET'}"
        f"{examples}"
    )


if __name__ == "__main__":
    sys.exit(main())
