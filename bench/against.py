"""The fast decoder of this working tree against the one at a git revision, interleaved in one process.

    python -m bench.against a6b357f            # greedy, batch 1, the default model, 1 thread
    python -m bench.against a6b357f --threads 2 --rounds 15

For a change to the decoder or the model: it loads generation_gpt2mini.py, modeling_gpt2mini.py and
configuration_gpt2mini.py as they were at REV (under other module names) next to today's, gives both models the same
weights, checks that both give the same tokens, then times them round by round in alternating order, so that load on
a shared machine hits both alike. It prints the median time per `DecodeStep` call (a filled cache, one token) and
the median characters/s of a whole `TokenStream` (240 new characters, greedy), each with the per-round ratios.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python bench/against.py): the project's modules are one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import generation_gpt2mini as today
import torch

from configuration_gpt2mini import GPT2MiniConfig
from modeling_gpt2mini import GPT2MiniForCausalLM

ROOT = Path(__file__).resolve().parents[1]


FILES = {"configuration_gpt2mini": "configuration_at_rev", "modeling_gpt2mini": "modeling_at_rev"}


def modules_at(rev: str, folder: Path):
    """(generation module, model class) as they were at `rev`, imported under other names next to today's."""
    loaded = {}
    for name in (*FILES, "generation_gpt2mini"):
        source = subprocess.run(
            ["git", "show", f"{rev}:{name}.py"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        source = source.replace("\nregister_auto_classes()\n", "\n")  # the Auto classes keep today's model
        for today_name, rev_name in FILES.items():  # their imports of each other point at the REV copies
            source = source.replace(f"from .{today_name} import", f"from {rev_name} import")
            source = source.replace(f"from {today_name} import", f"from {rev_name} import")
        module_name = FILES.get(name, "generation_at_rev")
        path = folder / f"{module_name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(module_name, path)
        loaded[name] = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = loaded[name]
        spec.loader.exec_module(loaded[name])
    return loaded["generation_gpt2mini"], loaded["modeling_gpt2mini"].GPT2MiniForCausalLM


def step_timer(mod, model):
    """A function that runs one decode step over a half-full cache."""
    make = getattr(mod.DecodeStep, "of", mod.DecodeStep)  # older revisions kept one step per model
    step, cache = make(model), mod.KVBuffer(model.config, 1, "cpu", torch.float32)
    cache.length = model.config.n_positions // 2
    tokens, positions = torch.tensor([5]), torch.tensor([cache.length])
    return lambda: step(tokens, positions, cache)


def stream_timer(mod, model, prompt):
    def run():
        mod.TokenStream(model, prompt, temperature=0, seed=0).take(240)

    return run


def interleaved(runners: dict, rounds: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each runner, per round, alternating which goes first."""
    for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for r in range(rounds):
        for name in list(runners) if r % 2 == 0 else list(reversed(runners)):
            t0 = time.perf_counter()
            for _ in range(repeat):
                runners[name]()
            times[name].append((time.perf_counter() - t0) / repeat)
    return times


def report(label: str, times: dict, unit) -> None:
    then, now = times["at REV"], times["today"]
    ratios = [b / a for a, b in zip(then, now, strict=True)]
    print(
        f"{label}: REV {unit(statistics.median(then))}, today {unit(statistics.median(now))}; "
        f"today / REV time {statistics.median(ratios):.3f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="generation_gpt2mini.py at a git revision against today's, interleaved")
    p.add_argument("rev", help="a git revision, e.g. a6b357f")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT2MiniForCausalLM(GPT2MiniConfig(vocab_size=65)).eval()
    prompt = [[1, 2, 3, 4, 5, 6, 7, 8]]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            then, model_class = modules_at(args.rev, Path(tmp))
        except subprocess.CalledProcessError as e:
            print(f"error: git cannot show the model files at {args.rev}: {e.stderr.strip()}", file=sys.stderr)
            return 2
        old_model = model_class(model_class.config_class(**model.config.to_dict())).eval()
        old_model.load_state_dict(model.state_dict())
        greedy = [mod.TokenStream(m, prompt, temperature=0).take(60) for mod, m in ((then, old_model), (today, model))]
        same = greedy[0] == greedy[1]
        print(f"# {args.rev} against the working tree, {args.threads} thread(s); same greedy tokens: {same}")
        pairs = {"at REV": (then, old_model), "today": (today, model)}
        steps = interleaved({k: step_timer(mod, m) for k, (mod, m) in pairs.items()}, args.rounds, 300)
        report("decode step", steps, lambda s: f"{s * 1e6:.0f} us")
        streams = interleaved({k: stream_timer(mod, m, prompt) for k, (mod, m) in pairs.items()}, args.rounds, 1)
        report("TokenStream, 240 characters", streams, lambda s: f"{240 / s:,.0f} chars/s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
