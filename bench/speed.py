"""Speed and memory of GPT-2 mini against its peers, measured side by side in one run (a benchmark, not a test).

    python -m bench.speed             # training, generation and memory on the CPU (about 10 minutes on 2 cores)
    python -m bench.speed --compile   # also torch.compile'd training (compile time reported separately)
    python -m bench.speed --quick     # a smoke run of every code path in well under a minute (the tests run it)
    python -m bench.speed --device cuda --dtype bf16 --compile   # on a GPU: bf16 autocast, MFU against --peak_tflops
    python -m bench.speed --profile docs/profiles.md             # torch.profiler tables: where the time goes

What it measures, every contender with the same configuration (4 layers, 4 heads, 128 dims, context 256, vocabulary
65, dropout 0, random weights, fp32 unless --dtype) and the same number of threads:
- training tokens/s (forward, backward, fused AdamW step) of GPT2MiniForCausalLM against transformers'
  GPT2LMHeadModel (SDPA attention), both with the same loss code and optimizer;
- generation characters/s at 256 and 1024 new characters, batch 1 and 4, greedy: the fast decoding API
  (`TokenStream`), also sampling (temperature 0.8, top-k 40); this model's `generate()`; `GPT2LMHeadModel.generate()`;
  and a no-cache loop that re-runs the whole window for every character (nanoGPT's and the blog's way).
  `generate()` cannot go past the position table, so both generate() contenders get a table as long as prompt plus
  output; TokenStream and the loop keep the 256-character context and slide;
- serving: many requests of one model at once (`--streams`, 300 characters each, sampling, each its own seed): one
  `StreamPool` stepping them together (continuous batching, as the lab serves them) against a `TokenStream` per
  request stepped in turn;
- peak memory: training and generation, each contender in a fresh process (peak RSS above the process's baseline
  after imports; on CUDA `torch.cuda.max_memory_allocated`).
Contenders run interleaved, round by round, so that load on a shared machine hits them alike; it prints one JSON line
per measurement (medians, every round, per-round ratios to the peer) and a summary table with the goals.
"""

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.contenders import build

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (python bench/speed.py): the project's modules are one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
PEER_TRAIN = "GPT2LMHeadModel"
PEER_GENERATE = "GPT2LMHeadModel.generate()"
GOALS = {"training": 1.3, "generation": 15.0}  # x the peer: eager training on CPU; fast API at batch 1
PEER_SERVE = "TokenStreams in turn"  # the serving section's peer: each request's stream stepped alone, in turn


class UsageError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------------
# Contenders


def train_stepper(kind: str, batch: int, context: int, device: str, dtype: str, compile_: bool) -> Callable[[], None]:
    """A function that runs one training step (forward, loss, backward, optimizer) on a fixed random batch."""
    import torch
    import torch.nn.functional as F

    from gpt2mini.training.optim import make_optimizer
    from gpt2mini.training.settings import TrainSettings

    dev = torch.device(device)
    model = build(kind, device=device).train()
    optimizer = make_optimizer(model, TrainSettings(), dev)
    runner = torch.compile(model) if compile_ else model
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 65, (batch, context + 1), generator=g).to(dev)
    inputs, targets = x[:, :-1], x[:, 1:]
    autocast = (
        torch.autocast(dev.type, dtype=torch.bfloat16) if dtype == "bf16" else torch.autocast(dev.type, enabled=False)
    )

    def step():
        with autocast:  # the same loss code for both: training.evaluation.lm_loss's cross-entropy on the logits
            logits = runner(inputs, use_cache=False).logits
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def generate_runners(
    batch: int, new: int, prompt_len: int, device: str, only: str | None = None
) -> dict[str, Callable[[], int]]:
    """The generation contenders for one setting (or just `only`, building only its model); each returns the number
    of characters it produced."""
    import torch

    from gpt2mini.generation.stream import TokenStream

    dev = torch.device(device)
    long = prompt_len + new  # generate() needs a position for every token
    model = functools.cache(lambda kind, n_positions=256: build(kind, n_positions=n_positions, device=device).eval())
    g = torch.Generator().manual_seed(2)
    prompts = torch.randint(0, 65, (batch, prompt_len), generator=g).to(dev)

    def fast(**sampling):
        ours = model("gpt2mini")

        def run():
            stream = TokenStream(ours, prompts, **sampling)
            stream.take(new)
            return batch * new

        return run

    def generate(kind):
        generator = model(kind, long)

        def run():
            with torch.inference_mode():
                out = generator.generate(
                    prompts,
                    attention_mask=torch.ones_like(prompts),
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    pad_token_id=0,
                    use_cache=True,
                )
            assert out.shape == (batch, long)
            return batch * new

        return run

    def recompute():
        ours = model("gpt2mini")
        ctx = ours.config.n_positions

        def run():
            idx = prompts
            with torch.inference_mode():
                for _ in range(new):
                    logits = ours(idx[:, -ctx:], use_cache=False).logits[:, -1]
                    idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
            return batch * new

        return run

    factories = {
        "TokenStream (fast API)": lambda: fast(temperature=0),
        "TokenStream, sampling": lambda: fast(temperature=0.8, top_k=40, seed=0),
        "GPT2Mini.generate()": lambda: generate("gpt2mini"),
        PEER_GENERATE: lambda: generate("gpt2"),
        "no-cache loop": recompute,
    }
    return {name: make() for name, make in factories.items() if only in (None, name)}


def serve_runners(streams: int, new: int, prompt_len: int, device: str) -> dict[str, Callable[[], int]]:
    """Many requests for one model at once, each with its own seed (sampling: temperature 0.8, top-k 40) and prompt
    length: one `StreamPool` stepping them all in one batched step, against a `TokenStream` per request stepped in
    turn (how the lab served them before the pool). Each returns the characters produced."""
    import torch

    from gpt2mini.generation.sampling import SamplingSettings
    from gpt2mini.generation.stream import TokenStream
    from gpt2mini.serving.pool import StreamPool

    model = build("gpt2mini", device=device).eval()
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(0, 65, (prompt_len + i % 8,), generator=g).tolist() for i in range(streams)]
    settings = [SamplingSettings(temperature=0.8, top_k=40, seed=i, max_new_tokens=new) for i in range(streams)]

    def pooled():
        pool = StreamPool(model)
        for ids, s in zip(prompts, settings, strict=True):
            pool.join(ids, s)
        made = 0
        while pool.rows:
            made += len(pool.step())
        return made

    def in_turn():
        each = [TokenStream(model, [ids], **s.stream_options()) for ids, s in zip(prompts, settings, strict=True)]
        for _ in range(new):
            for stream in each:
                stream.step()
        return streams * new

    return {"StreamPool (one batched step)": pooled, PEER_SERVE: in_turn}


PAST_THE_CONTEXT = {"learned": "gpt2", "rotary": "llama"}  # positions: the preset whose stream is timed


def past_the_context(args, positions: str) -> dict:
    """Does the fast API slow down past the context? One stream, timed over its first `n_positions` new characters
    and over its last as many of 4x that, in the same run (so machine load hits both alike); rounds as generation.
    With learned positions a stream re-encodes its window as it slides; with rotary ones it keeps its cache."""
    import torch

    from gpt2mini.generation.stream import TokenStream

    model = build("gpt2mini", device=args.device, preset=PAST_THE_CONTEXT[positions]).eval()
    ctx = model.config.n_positions
    prompt = torch.randint(0, 65, (1, args.prompt_len), generator=torch.Generator().manual_seed(3)).to(args.device)
    early, late = [], []
    for _ in range(args.gen_rounds):
        stream = TokenStream(model, prompt, temperature=0)
        spans = []
        for _ in range(4):
            sync(args.device)
            t0 = time.perf_counter()
            stream.take(ctx)
            sync(args.device)
            spans.append(ctx / (time.perf_counter() - t0))
        early.append(spans[0])
        late.append(spans[-1])
    ratios = [b / a for a, b in zip(early, late, strict=True)]
    return {
        "section": "past the context",
        "contender": "TokenStream (fast API)",
        "positions": positions,
        "unit": "chars/s",
        "first_context_chars_s": round(statistics.median(early), 1),
        "fourth_context_chars_s": round(statistics.median(late), 1),
        "late / early": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Measurement


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def interleaved(runners: dict[str, Callable[[], int]], rounds: int, device: str) -> dict[str, list[float]]:
    """Units per second of every runner in every round; the runners alternate within a round (order rotated)."""
    names = list(runners)
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sync(device)
            t0 = time.perf_counter()
            units = runners[name]()
            sync(device)
            rates[name].append(units / (time.perf_counter() - t0))
    return rates


def record(section: str, setting: dict, rates: dict[str, list[float]], peer: str, unit: str) -> list[dict]:
    rows = []
    for name, values in rates.items():
        row = {"section": section, **setting, "contender": name, "unit": unit, "median": statistics.median(values)}
        row["rounds"] = [round(v, 1) for v in values]
        if peer in rates and name != peer:
            ratios = [a / b for a, b in zip(values, rates[peer], strict=True)]
            row[f"x {peer}"] = round(statistics.median(ratios), 3)
            row["ratios"] = [round(q, 3) for q in ratios]
        rows.append(row)
    return rows


def bench_training(args, emit) -> list[dict]:
    rows = []
    modes = [False, True] if args.compile else [False]
    for compile_ in modes:
        runners, compile_s = {}, {}
        for kind, name in (("gpt2mini", "GPT2MiniForCausalLM"), ("gpt2", PEER_TRAIN)):
            step = train_stepper(kind, args.batch, args.context, args.device, args.dtype, compile_)
            t0 = time.perf_counter()
            step()  # warm-up; with --compile this is where compilation happens
            sync(args.device)
            compile_s[name] = time.perf_counter() - t0
            for _ in range(args.warmup):
                step()

            def run(step=step):
                for _ in range(args.steps):
                    step()
                return args.steps * args.batch * args.context

            runners[name] = run
        rates = interleaved(runners, args.rounds, args.device)
        setting = {"mode": "compile" if compile_ else "eager", "batch": args.batch, "context": args.context}
        for row in record("training", setting, rates, PEER_TRAIN, "tokens/s"):
            if compile_:
                row["first_step_s"] = round(compile_s[row["contender"]], 1)
            if args.device.startswith("cuda") and args.peak_tflops:
                row["mfu"] = round(mfu(row["median"], args.context) / (args.peak_tflops * 1e12), 4)
            emit(row)
            rows.append(row)
    return rows


def mfu(tokens_per_s: float, context: int) -> float:
    """Model FLOPs per second (GPT2MiniForCausalLM.flops_per_token: PaLM's 6N + 12 L T C, nanoGPT's estimate)."""
    return tokens_per_s * build("gpt2mini").flops_per_token(context)


def forward_flops(prompt_len: int, new: int) -> float:
    """Forward FLOPs per generated token (a third of `flops_per_token`, nanoGPT's estimate) at the mean context over
    `new` characters after a `prompt_len` prompt (at most the 256 positions a stream keeps)."""
    return build("gpt2mini").flops_per_token(min(256, prompt_len + new // 2)) / 3


def bench_generation(args, emit) -> list[dict]:
    rows = []
    for run in generate_runners(1, 8, args.prompt_len, args.device).values():
        run()  # warm-up: first calls load kernels and allocate
    for new in args.new:
        for batch in args.gen_batch:
            runners = generate_runners(batch, new, args.prompt_len, args.device)
            rates = interleaved(runners, args.gen_rounds, args.device)
            for row in record("generation", {"new": new, "batch": batch}, rates, PEER_GENERATE, "chars/s"):
                row["gflops"] = round(row["median"] * forward_flops(args.prompt_len, new) / 1e9, 3)
                if args.peak_tflops:
                    row["of_peak"] = round(row["gflops"] / (args.peak_tflops * 1e3), 5)
                emit(row)
                rows.append(row)
    for positions in PAST_THE_CONTEXT:
        row = past_the_context(args, positions)
        emit(row)
        rows.append(row)
    return rows


def bench_serving(args, emit) -> list[dict]:
    rows = []
    for streams in args.streams:
        runners = serve_runners(streams, args.serve_new, args.prompt_len, args.device)
        rates = interleaved(runners, args.gen_rounds, args.device)
        for row in record("serving", {"streams": streams, "new": args.serve_new}, rates, PEER_SERVE, "chars/s"):
            emit(row)
            rows.append(row)
    return rows


def peak_memory(args, what: str) -> float:
    """Run `what` in a fresh process and return its peak memory above the baseline, in MiB."""
    cmd = [sys.executable, "-m", "bench.speed", "--_memory", what, "--device", args.device]
    cmd += ["--batch", str(args.batch), "--context", str(args.context), "--threads", str(args.threads)]
    cmd += ["--dtype", args.dtype, "--new", str(args.new[0]), "--prompt_len", str(args.prompt_len)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {what} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


MEMORY_CASES = {
    "train GPT2MiniForCausalLM": ("train", "gpt2mini"),
    f"train {PEER_TRAIN}": ("train", "gpt2"),
    "generate TokenStream (fast API)": ("generate", "TokenStream (fast API)"),
    "generate GPT2Mini.generate()": ("generate", "GPT2Mini.generate()"),
    f"generate {PEER_GENERATE}": ("generate", PEER_GENERATE),
    "generate no-cache loop": ("generate", "no-cache loop"),
}


def memory_child(args) -> None:
    """--_memory: one workload in this fresh process; print its peak memory above the baseline as JSON."""
    import torch
    from transformers import GPT2LMHeadModel  # noqa: F401  (every import before the baseline is taken)

    import gpt2mini.generation.stream  # noqa: F401
    import gpt2mini.training.loop  # noqa: F401
    import modeling_gpt2mini  # noqa: F401

    section, name = MEMORY_CASES[args._memory]
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    base = rss_mib()
    if section == "train":
        step = train_stepper(name, args.batch, args.context, args.device, args.dtype, False)
        for _ in range(3):
            step()
    else:
        generate_runners(1, args.new[0], args.prompt_len, args.device, only=name)[name]()
    sync(args.device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else max_rss_mib() - base
    print(json.dumps({"case": args._memory, "peak_mib": round(peak, 1)}))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mib() -> float:
    """This process's peak resident memory. Linux: VmHWM of the current image (ru_maxrss is not usable here: Linux
    carries it across exec, so a child started from a big parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def bench_memory(args, emit) -> list[dict]:
    rows = []
    cases = [c for c in MEMORY_CASES if MEMORY_CASES[c][0] == "train"] if args.quick else list(MEMORY_CASES)
    for case in cases:
        section = MEMORY_CASES[case][0]
        setting = {"batch": args.batch, "context": args.context} if section == "train" else {"new": args.new[0]}
        row = {"section": "memory", "contender": case, **setting, "peak_mib": peak_memory(args, case)}
        emit(row)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Profiles


def profile(args, path: Path) -> None:
    """torch.profiler tables for a training step of each model and for a decode step of each generator."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from gpt2mini.generation.stream import TokenStream

    def table(fn, n) -> str:
        fn()
        with torch_profile(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(n):
                fn()
        return p.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows)

    sections = []
    for kind, name in (("gpt2mini", "GPT2MiniForCausalLM"), ("gpt2", PEER_TRAIN)):
        step = train_stepper(kind, args.batch, args.context, args.device, args.dtype, False)
        sections.append((f"Training step: {name} (batch {args.batch} x {args.context}, 3 steps)", table(step, 3)))
    ours = build("gpt2mini").eval()
    prompt = torch.randint(0, 65, (1, args.prompt_len))
    for label, fast in (("DecodeStep (the fast path)", True), ("the model's modules (fast=False)", False)):
        stream = TokenStream(ours, prompt, temperature=0, fast=fast)
        sections.append((f"TokenStream, one token per step through {label}: 100 steps", table(stream.step, 100)))
    peer = build("gpt2", n_positions=args.prompt_len + 101).eval()

    def peer_generate():
        with torch.inference_mode():
            peer.generate(prompt, max_new_tokens=100, min_new_tokens=100, do_sample=False, pad_token_id=0)

    sections.append((f"{PEER_GENERATE}, 100 new tokens", table(peer_generate, 1)))
    text = [f"# Profiles ({machine()})", "", f"Written by `python -m bench.speed --profile {path}`.", ""]
    for title, body in sections:
        text += [f"## {title}", "", "```", body.rstrip(), "```", ""]
    path.write_text("\n".join(text))
    print(f"profiles written to {path}")


# ---------------------------------------------------------------------------------------------------------------------
# Report


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{os.cpu_count()} CPUs"
    return f"{cpu}, {where}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def summary(rows: list[dict], args) -> str:
    lines = []
    train = [r for r in rows if r["section"] == "training"]
    if train:
        lines += ["", "| training | mode | tokens/s (median) | x GPT2LMHeadModel | rounds |", "|---|---|---|---|---|"]
        for r in train:
            extra = f" (first step {r['first_step_s']} s)" if "first_step_s" in r else ""
            extra += f", MFU {r['mfu']:.1%}" if "mfu" in r else ""
            ratio = r.get(f"x {PEER_TRAIN}", 1.0)
            lines.append(
                f"| {r['contender']} | {r['mode']}{extra} | {r['median']:,.0f} | {ratio:.2f} | {len(r['rounds'])} |"
            )
    gen = [r for r in rows if r["section"] == "generation"]
    if gen:
        lines += [
            "",
            "| generation | new | batch | chars/s (median) | x GPT2LMHeadModel.generate() |",
            "|---|---|---|---|---|",
        ]
        for r in gen:
            ratio = r.get(f"x {PEER_GENERATE}", 1.0)
            lines.append(f"| {r['contender']} | {r['new']} | {r['batch']} | {r['median']:,.0f} | {ratio:.2f} |")
    serve = [r for r in rows if r["section"] == "serving"]
    if serve:
        lines += ["", f"| serving | streams | chars/s, all (median) | x {PEER_SERVE} |", "|---|---|---|---|"]
        for r in serve:
            ratio = r.get(f"x {PEER_SERVE}", 1.0)
            lines.append(f"| {r['contender']} | {r['streams']} | {r['median']:,.0f} | {ratio:.2f} |")
    mem = [r for r in rows if r["section"] == "memory"]
    if mem:
        lines += ["", "| peak memory above baseline | MiB |", "|---|---|"]
        lines += [f"| {r['contender']} | {r['peak_mib']:,.1f} |" for r in mem]
    lines += ["", "Goals:"] + [f"- {g}" for g in goals(rows)]
    return "\n".join(lines)


def goals(rows: list[dict]) -> list[str]:
    out = []
    eager = [r for r in rows if r["section"] == "training" and r["mode"] == "eager" and f"x {PEER_TRAIN}" in r]
    for r in eager:
        x = r[f"x {PEER_TRAIN}"]
        ok = verdict(x >= GOALS["training"])
        out.append(f"training, eager: {x:.2f}x {PEER_TRAIN} (goal on CPU >= {GOALS['training']}x): {ok}")
    fast = [
        r
        for r in rows
        if r["section"] == "generation" and r["contender"] == "TokenStream (fast API)" and r["batch"] == 1
    ]
    for r in fast:
        x = r[f"x {PEER_GENERATE}"]
        peak = f", {r['of_peak']:.1%} of --peak_tflops" if "of_peak" in r else ""
        out.append(
            f"generation, fast API, batch 1, {r['new']} new: {x:.1f}x {PEER_GENERATE} "
            f"(goal on CPU >= {GOALS['generation']:.0f}x): {verdict(x >= GOALS['generation'])} "
            f"({r.get('gflops', 0):.1f} GFLOP/s{peak})"
        )
    for r in rows:
        if r["section"] == "past the context":
            kept = r["late / early"]
            out.append(
                f"fast API past the context, {r['positions']} positions: characters {3 * 256 + 1}-{4 * 256} at "
                f"{kept:.0%} of the speed of "
                f"characters 1-256, same stream (goal: no slow-down, >= 90%): {verdict(kept >= 0.9)}"
            )
    mem = {r["contender"]: r["peak_mib"] for r in rows if r["section"] == "memory"}
    ours, peer = mem.get("train GPT2MiniForCausalLM"), mem.get(f"train {PEER_TRAIN}")
    if ours is not None and peer is not None:
        out.append(
            f"peak training memory: {ours:,.0f} MiB vs {PEER_TRAIN} {peer:,.0f} MiB (goal: no higher): "
            f"{verdict(ours <= peer)}"
        )
    return out


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Training and generation speed and memory of GPT-2 mini against GPT2LMHeadModel, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="a smoke run of every code path (tiny sizes, one round)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="training precision (bf16 autocast)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for every contender")
    p.add_argument("--only", default="training,generation,serving,memory", help="comma-separated sections to run")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile'd training")
    p.add_argument("--batch", type=int, default=32, help="training batch")
    p.add_argument("--context", type=int, default=256, help="training sequence length")
    p.add_argument("--steps", type=int, default=3, help="training steps per contender per round")
    p.add_argument("--warmup", type=int, default=2, help="training steps before measuring")
    p.add_argument("--rounds", type=int, default=5, help="training rounds")
    p.add_argument("--new", default="256,1024", help="new characters per generation setting")
    p.add_argument("--gen_batch", default="1,4", help="generation batch sizes")
    p.add_argument("--gen_rounds", type=int, default=3, help="generation rounds")
    p.add_argument("--prompt_len", type=int, default=16, help="prompt characters per row")
    p.add_argument("--streams", default="4,16", help="serving: requests of one model at once")
    p.add_argument("--serve_new", type=int, default=300, help="serving: characters per request (the lab's default)")
    p.add_argument(
        "--peak_tflops",
        type=float,
        default=0.0,
        help="the machine's peak: training MFU on CUDA, the fast API's share of it in generation",
    )
    p.add_argument("--json", metavar="FILE", help="also write the JSON lines here")
    p.add_argument("--profile", metavar="FILE", help="write torch.profiler tables here instead of benchmarking")
    p.add_argument("--profile_rows", type=int, default=25, help=argparse.SUPPRESS)
    p.add_argument("--_memory", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.new = [int(v) for v in str(args.new).split(",")]
        args.gen_batch = [int(v) for v in str(args.gen_batch).split(",")]
        args.streams = [int(v) for v in str(args.streams).split(",")]
    except ValueError:
        raise UsageError("--new, --gen_batch and --streams take comma-separated integers, e.g. 256,1024") from None
    if args.quick:
        args.batch, args.context, args.steps, args.warmup, args.rounds = 2, 32, 1, 1, 2
        args.new, args.gen_batch, args.gen_rounds, args.prompt_len = [8, 40], [1, 2], 1, 4
        args.streams, args.serve_new = [3], 20
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        raise UsageError(f"--only: unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    for name in ("batch", "context", "steps", "rounds", "gen_rounds", "prompt_len", "threads", "serve_new"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    if min(args.new) < 1 or min(args.gen_batch) < 1 or min(args.streams) < 1:
        raise UsageError("--new, --gen_batch and --streams must be positive")
    if args.context > 256:
        raise UsageError("--context must be at most 256 (the model's context)")
    return args


SECTIONS = {
    "training": bench_training,
    "generation": bench_generation,
    "serving": bench_serving,
    "memory": bench_memory,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"bench.speed: error: {e}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    if args.device != "cpu":
        ok = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}.get(
            args.device.split(":")[0]
        )
        if not ok:
            print(f"bench.speed: error: device {args.device!r} is not available here", file=sys.stderr)
            return 2
    if args._memory:
        memory_child(args)
        return 0
    if args.profile:
        profile(args, Path(args.profile))
        return 0
    sink = open(args.json, "w") if args.json else None
    print(f"# bench.speed on {machine()}", flush=True)

    def emit(row):
        line = json.dumps(row)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")
            sink.flush()

    rows = []
    try:
        for name, run in SECTIONS.items():
            if name in args.sections:
                rows += run(args, emit)
    finally:
        if sink:
            sink.close()
    print(summary(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
