"""The recipe comparison in docs/training.md, measured by the current code and written into it.

    python -m experiments.recipes                    # trains what is missing into runs/recipes/, rewrites the tables
    python -m experiments.recipes --doc /tmp/x.md    # write into another copy of the page

Each recipe is a train.py command line; a finished run folder of the same settings is reused, so a second call only
rewrites the tables. Validation loss is train.py --evaluate's: the whole held-out split in non-overlapping windows of
the model's own context. Run it on an otherwise idle machine: the training times are part of the table.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from gpt2mini.checkpoint import STATE_FILE, load_model_folder
from gpt2mini.cli import build_parser, settings_from_args
from gpt2mini.corpus import load_corpus, train_val_split
from gpt2mini.paths import ROOT
from gpt2mini.report.records import command_line
from gpt2mini.tokenizer import encode
from gpt2mini.training.evaluation import split_loss
from gpt2mini.training.loop import train
from gpt2mini.training.settings import repeat_command

MODULE = "experiments.recipes"

# (table, name, what it is, train.py flags)
RECIPES = (
    ("default", "nanogpt", "nanoGPT's documented CPU recipe, on this model",
     "--block_size 64 --batch_size 12 --lr 1e-3 --warmup 100 --steps 2000"),
    ("default", "default", "`python train.py`: the default recipe (context 256)", ""),
    ("short", "full_windows", "full 256-character windows throughout (`--short_context 0`)", "--short_context 0"),
    ("short", "default", "short windows at random offsets for 60% of the steps (the default)", ""),
    ("short", "short_73", "the same for 73% of the steps (`--short_fraction 0.73`)", "--short_fraction 0.73"),
)  # fmt: skip


def run(name: str, flags: str, out: Path) -> dict:
    """Train the recipe into out/<name> (or reuse a finished run of the same settings); return its figures."""
    folder = out / name
    args = build_parser().parse_args([*shlex.split(flags), "--no_progress", "--save", str(folder)])
    s = settings_from_args(args)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        state = None
    if not state or state.get("command") != repeat_command(s) or state["step"] < s.steps:
        train(s)
        state = json.loads((folder / STATE_FILE).read_text())
    model, tokenizer = load_model_folder(folder)
    val = train_val_split(load_corpus(s.corpus), s.val_fraction)[1]
    with torch.no_grad():
        loss = split_loss(model, encode(tokenizer, val), model.config.n_positions)
    return {
        "context": model.config.n_positions,
        "lr": s.lr,
        "steps": state["step"],
        "tokens": state["step"] * state["tokens_per_step"],
        "seconds": state["elapsed_s"],
        "loss": loss,
        "command": f"python train.py {flags} --save runs/recipes/{name}".replace("  ", " "),
    }


def tables(results: dict) -> dict[str, str]:
    out = {}
    for table in ("default", "short"):
        lines = [
            "| recipe | context | lr | steps | tokens seen | training time | validation loss |",
            "|---|---|---|---|---|---|---|",
        ]
        commands = []
        for t, name, what, _ in RECIPES:
            if t != table:
                continue
            r = results[name]
            lines.append(
                f"| {what} | {r['context']} | {r['lr']:g} | {r['steps']} | {r['tokens'] / 1e6:.2f}M | "
                f"{r['seconds']:.0f} s | {r['loss']:.3f} |"
            )
            commands.append(r["command"])
        threads = torch.get_num_threads()
        lines += ["", f"Measured by `{command_line(MODULE, [])}` ({threads} threads), which ran:", "", "```bash"]
        lines += [*commands, "```"]
        out[table] = "\n".join(lines)
    return out


def write(doc: Path, blocks: dict[str, str]) -> None:
    text = doc.read_text(encoding="utf-8")
    for name, block in blocks.items():
        begin, end = f"<!-- recipes:{name} -->", f"<!-- /recipes:{name} -->"
        if begin not in text or end not in text:
            raise SystemExit(f"error: {doc} has no {begin} ... {end} block")
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + block + "\n" + end + rest.split(end, 1)[1]
    doc.write_text(text, encoding="utf-8")


def main() -> int:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    p.add_argument("--doc", default=str(ROOT / "docs" / "training.md"), help="the page whose tables are rewritten")
    p.add_argument("--out", default="runs/recipes", help="where the runs go")
    args = p.parse_args()
    results = {}
    for _, name, _, flags in RECIPES:
        if name not in results:
            results[name] = run(name, flags, Path(args.out))
            print(f"{name}: {results[name]['loss']:.4f}", file=sys.stderr)
    write(Path(args.doc), tables(results))
    print(f"wrote {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
