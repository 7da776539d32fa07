"""The fast decoder of this working tree against the one at a git revision, interleaved in one process.

    python -m bench.against 17ae234            # greedy, batch 1, the default model, 1 thread
    python -m bench.against 17ae234 --batch 16 --threads 2 --rounds 15

For a change to the decoder or the model: it loads the decoder, modeling_gpt2mini.py and configuration_gpt2mini.py as
they were at REV (under other module names) next to today's, gives both models the same weights, checks that both
give the same tokens, then times them round by round in alternating order, so that load on a shared machine hits
both alike. It prints the median time per `DecodeStep` call (a filled cache, one token per row) and the median
characters/s of a whole `TokenStream` (240 new characters per row, greedy, `--batch` rows), each with the per-round
ratios. The decoder at REV is either layout it has had: one file, generation_gpt2mini.py (17ae234 and before), or the
package gpt2mini/generation/ (imported as gpt2mini_at_rev.generation).
"""

import argparse
import importlib
import importlib.util
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python bench/against.py): the project's modules are one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from configuration_gpt2mini import GPT2MiniConfig
from gpt2mini.generation import step, stream
from modeling_gpt2mini import GPT2MiniForCausalLM

ROOT = Path(__file__).resolve().parents[1]

# today's decoder, as the revision's is returned by `modules_at`
today = types.SimpleNamespace(DecodeStep=step.DecodeStep, KVBuffer=step.KVBuffer, TokenStream=stream.TokenStream)

FILES = {"configuration_gpt2mini": "configuration_at_rev", "modeling_gpt2mini": "modeling_at_rev"}
PACKAGE = "gpt2mini_at_rev"  # the revision's gpt2mini package, under this name


def modules_at(rev: str, folder: Path):
    """(decoder, model class) as they were at `rev`, imported under other names next to today's: the decoder is the
    module generation_gpt2mini, or a namespace of the package's DecodeStep, KVBuffer and TokenStream."""
    package = "gpt2mini/generation/stream.py" in git_files(rev, "gpt2mini/generation/")
    names = [*FILES, *([] if package else ["generation_gpt2mini"])]
    loaded = {name: load(name, FILES.get(name, "generation_at_rev"), show(rev, f"{name}.py"), folder) for name in names}
    model_class = loaded["modeling_gpt2mini"].GPT2MiniForCausalLM
    if not package:
        return loaded["generation_gpt2mini"], model_class
    for path in [f"{PACKAGE}/__init__.py", f"{PACKAGE}/generation/__init__.py"]:  # empty: nothing registers here
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text("")
    for path in git_files(rev, "gpt2mini/generation/"):
        (folder / PACKAGE / path.removeprefix("gpt2mini/")).write_text(at_rev(show(rev, path)))
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:  # another revision's, loaded before
        del sys.modules[name]
    sys.path.insert(0, str(folder))
    try:
        step_at, stream_at = (importlib.import_module(f"{PACKAGE}.generation.{m}") for m in ("step", "stream"))
    finally:
        sys.path.remove(str(folder))
    decoder = types.SimpleNamespace(
        DecodeStep=step_at.DecodeStep, KVBuffer=step_at.KVBuffer, TokenStream=stream_at.TokenStream
    )
    return decoder, model_class


def show(rev: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def git_files(rev: str, folder: str) -> list[str]:
    """The .py files in `folder` at `rev` (none where it has no such folder)."""
    out = subprocess.run(["git", "ls-tree", "--name-only", rev, folder], cwd=ROOT, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.endswith(".py")]


def at_rev(source: str) -> str:
    """A revision's source with its imports of the model files and the package pointing at their REV copies."""
    source = source.replace("\nregister_auto_classes()\n", "\n")  # the Auto classes keep today's model
    for today_name, rev_name in FILES.items():
        source = source.replace(f"from .{today_name} import", f"from {rev_name} import")
        source = source.replace(f"from {today_name} import", f"from {rev_name} import")
    return re.sub(r"^(\s*(?:from|import) )gpt2mini(?=[.\s])", rf"\g<1>{PACKAGE}", source, flags=re.MULTILINE)


def load(name: str, module_name: str, source: str, folder: Path) -> types.ModuleType:
    """Import the revision's file `name` (its `source`) from `folder` as `module_name`."""
    path = folder / f"{module_name}.py"
    path.write_text(at_rev(source))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def step_timer(mod, model, batch: int):
    """A function that runs one decode step of `batch` rows over a half-full cache."""
    make = getattr(mod.DecodeStep, "of", mod.DecodeStep)  # older revisions kept one step per model
    step, cache = make(model), mod.KVBuffer(model.config, batch, "cpu", torch.float32)
    cache.length = model.config.n_positions // 2
    tokens, positions = torch.full((batch,), 5), torch.full((batch,), cache.length)
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
    p = argparse.ArgumentParser(description="the fast decoder at a git revision against today's, interleaved")
    p.add_argument("rev", help="a git revision, e.g. 17ae234")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--batch", type=int, default=1, help="rows decoded together (prompts of 8 tokens each)")
    args = p.parse_args(argv)
    if args.batch < 1:
        print(f"error: --batch must be at least 1, got {args.batch}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT2MiniForCausalLM(GPT2MiniConfig(vocab_size=65)).eval()
    prompt = [[(row + i) % 64 + 1 for i in range(8)] for row in range(args.batch)]  # a different prompt per row
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
        print(
            f"# {args.rev} against the working tree, batch {args.batch}, {args.threads} thread(s); "
            f"same greedy tokens: {same}"
        )
        pairs = {"at REV": (then, old_model), "today": (today, model)}
        steps = interleaved({k: step_timer(mod, m, args.batch) for k, (mod, m) in pairs.items()}, args.rounds, 300)
        report("decode step", steps, lambda s: f"{s * 1e6:.0f} us")
        streams = interleaved({k: stream_timer(mod, m, prompt) for k, (mod, m) in pairs.items()}, args.rounds, 1)
        chars = 240 * args.batch
        report(f"TokenStream, 240 characters x {args.batch} rows", streams, lambda s: f"{chars / s:,.0f} chars/s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
