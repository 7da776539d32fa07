"""How fast the lab streams, measured on the machine it runs on (a benchmark, not a test).

    python -m bench.lab                 # the shipped models, 4 panes x 300 characters, 5 rounds
    python -m bench.lab --quick         # 1 round of 60 characters (a smoke run)

It starts the app (`python app.py`) in its own process on 127.0.0.1, as a user would, and drives it with gradio_client
from this one, like a browser in another process, and reports per round:
- the server's time to the first streamed character (goal: under 100 ms), as the app measures it from the start of the
  request to the first sampled character, and the time until the first update reaches the client;
- characters per second per pane with 4 panes streaming from one event (goal: at least 200 per pane on 2 cores);
- then, in this process, what the per-character probabilities (the shading and its alternatives: the log-probabilities
  the decoding pool computes with each token, SideBySide.record and the final render) cost: the same side-by-side
  steps with and without them, interleaved, as a ratio (goal: at most 1.10).
Prints one JSON line per round and a summary with medians.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python bench/lab.py): the project's modules are one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from gpt2mini.corpus import CORPORA
from gpt2mini.lab.catalog import load_lab
from gpt2mini.lab.streaming import SideBySide, Tick, chosen_entries, generation_settings
from gpt2mini.paths import MODELS_DIR, ROOT
from gpt2mini.words import ENGLISH


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=str(MODELS_DIR))
    p.add_argument("--corpus", default="shakespeare")
    p.add_argument("--chars", type=int, default=300, help="characters per pane")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads, as app.py sets them")
    p.add_argument("--quick", action="store_true", help="one round of 60 characters")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.chars = 1, 60
    if args.rounds < 1 or args.chars < 1:
        p.error("--rounds and --chars must be positive")
    torch.set_num_threads(args.threads)
    from gradio_client import Client

    lab = load_lab(args.models)  # only to name the variants; the server loads its own
    names = lab.variants(args.corpus)[:4]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    cmd = [sys.executable, str(ROOT / "app.py"), "--models", str(args.models), "--threads", str(args.threads)]
    log = tempfile.TemporaryFile(mode="w+")  # the server's stderr (a pipe nobody reads could fill up and stall it)
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        client = connect(Client, url, server, log)
    except BaseException:
        server.kill()
        raise
    prompt = CORPORA[args.corpus].sample_prompt if args.corpus in CORPORA else "\n"
    rows = []
    try:
        for r in range(args.rounds + 1):  # round 0 warms up
            t0 = time.perf_counter()
            job = client.submit(args.corpus, names, prompt, 0.8, 40, 0.95, args.chars, 1.0, r, api_name="/side_by_side")
            first_update = None
            for _ in job:
                if first_update is None:
                    first_update = time.perf_counter() - t0
            final = job.result()
            wall = time.perf_counter() - t0
            server_first = float(re.search(r"First character after (\d+) ms", final[0]).group(1))
            speeds = [float(m.replace(",", "")) for m in re.findall(r"([\d,]+) chars/s", "".join(final[1:5]))]
            step_ms = [float(m) for m in re.findall(r"([\d.]+) ms/step", "".join(final[1:5]))]
            row = {
                "round": r,
                "panes": len(names),
                "chars_per_pane": args.chars,
                "server_first_char_ms": server_first,
                "client_first_update_ms": round(first_update * 1000),
                "chars_per_s_per_pane": round(min(speeds)),
                "decode_ms_per_step": [round(v, 2) for v in step_ms],  # each pane's own model time per character
                "wall_s": round(wall, 2),
            }
            if r:
                rows.append(row)
                print(json.dumps(row))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    med = {k: statistics.median(x[k] for x in rows) for k in rows[0] if k not in ("round", "panes", "chars_per_pane")}
    print(
        f"\n{len(names)} panes ({', '.join(names)}) x {args.chars} characters, {args.rounds} rounds, "
        f"{torch.get_num_threads()} torch thread(s):\n"
        f"  server time to first character  {med['server_first_char_ms']:.0f} ms   (goal < 100 ms)\n"
        f"  client time to first update     {med['client_first_update_ms']:.0f} ms\n"
        f"  characters/s per pane           {med['chars_per_s_per_pane']:.0f}      (goal >= 200)"
    )
    cost = probability_cost(lab, args.corpus, names, prompt, args.chars, args.rounds)
    print(
        f"  per-character probabilities     {cost['ratio']:.3f} x the same steps without them "
        f"({cost['with_ms']:.0f} against {cost['without_ms']:.0f} ms per run; goal <= 1.10)"
    )
    return 0


def probability_cost(lab, corpus: str, names: list[str], prompt: str, chars: int, rounds: int) -> dict:
    """The side-by-side run's steps and final render with and without the per-character probabilities (a run
    without them asks the pool for none and records nothing, so its final render shades nothing), interleaved,
    `rounds` of each after one warm-up: the median times (ms) and their ratio."""
    settings = generation_settings(0.8, 40, 0.95, chars, 1.0, 0)
    entries = chosen_entries(lab, corpus, names)
    times = {"with": [], "without": []}
    for r in range(rounds + 1):
        for mode in times:
            t0 = time.perf_counter()
            run = SideBySide(lab.server, entries, prompt, settings, t0, lab.reference(corpus), ENGLISH, mode == "with")
            for i in range(chars):
                run.step(i)
            run.flush()
            run.render(Tick(chars, final=True))
            run.close()
            if r:
                times[mode].append((time.perf_counter() - t0) * 1000)
    med = {mode: statistics.median(t) for mode, t in times.items()}
    return {"with_ms": med["with"], "without_ms": med["without"], "ratio": med["with"] / med["without"]}


def connect(Client, url: str, server: subprocess.Popen, log, timeout: float = 120.0):
    """A gradio_client for the server at `url`, once it answers (or the server's error if it exits first)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"app.py exited with {server.returncode}: {log.read()[-2000:]}")
        try:
            return Client(url, verbose=False)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
