"""Train GPT-2 mini with a plain PyTorch loop, on CUDA, Apple MPS or CPU, and talk to what you trained.

    python train.py                                        # the default recipe: Tiny Shakespeare, ~3 min on 2 cores
    python train.py --corpus wagahai --save runs/wagahai   # 吾輩は猫である
    python train.py --disable_residual 1 --steps 100       # break it and watch
    python train.py --load runs/shakespeare --generate --prompt "ROMEO:"
    python train.py --load runs/shakespeare --interactive  # type a prompt, "quit" ends
    python train.py --load runs/shakespeare --evaluate     # the loss over the whole validation split
    python train.py --resume runs/shakespeare --steps 2000 # continue exactly where it stopped
    torchrun --standalone --nproc_per_node=2 train.py ...  # DistributedDataParallel (gloo on CPU, NCCL on CUDA)
    python train.py --push-to-hub you/gpt2mini              # train, then publish the folder

This file is the program: it parses the blog's command line and calls the package, which does the work:
- gpt2mini/cli.py defines the flags (generated from `TrainSettings` and the switch registry in
  configuration_gpt2mini.py) and the terminal side of --generate and --interactive;
- gpt2mini/training/ holds the loop, which reads like nanoGPT's (`setup` builds a `Run`, then `train` calls
  `train_step`, `evaluate_and_sample` and `save` on it until the last step), exact to resume on CPU;
- gpt2mini/checkpoint.py writes the output folder atomically (a Hugging Face model folder with the metrics log, the
  loss curve and what --resume needs), so a crash or Ctrl-C never leaves a broken folder behind;
- gpt2mini/hub/ publishes a finished run for --push-to-hub (the same code as publish.py).
A user's mistake is one line and exit code 2; a diverged run or a failed save, one line and exit code 1.
"""

import json
import os
import sys
from dataclasses import fields

from gpt2mini.checkpoint import SaveError, UsageError, load_model_folder
from gpt2mini.cli import (
    build_parser,
    check_prompt,
    explicit_args,
    generate_to,
    interactive,
    sampling_from,
    settings_from_args,
)
from gpt2mini.corpus import CorpusError, load_corpus, train_val_split
from gpt2mini.hub.folder import check_repo_id
from gpt2mini.hub.upload import PublishError, check_can_upload, publish_model
from gpt2mini.tokenizer import encode, valid_text
from gpt2mini.training.devices import pick_device
from gpt2mini.training.evaluation import bits_per_char, split_loss
from gpt2mini.training.loop import NonFiniteLoss, train
from gpt2mini.training.settings import ARCHITECTURE, TrainSettings, resume_settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is enough
    try:
        if args.push_to_hub:
            check_push_to_hub(args)
        if args.evaluate:
            return evaluate_command(args)
        if args.generate or args.interactive:
            return generate_command(args)
        return train_command_line(args, argv)
    except (UsageError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLoss, SaveError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def check_push_to_hub(args) -> None:
    """Checked before training, so that a long run does not end in "not logged in"."""

    if args.generate or args.interactive or args.evaluate or args.stop_at:
        raise UsageError("--push-to-hub publishes a finished training run; for a saved folder use publish.py")
    check_repo_id(args.push_to_hub)
    check_can_upload(None)


def evaluate_command(args) -> int:
    """--load DIR --evaluate: the loss over the whole validation split, as one JSON line."""
    if not args.load:
        raise UsageError("--evaluate needs --load DIR (a trained model folder)")
    model, tokenizer = load_model_folder(args.load, pick_device(args.device))
    text = load_corpus(args.data) if args.data else load_corpus(args.corpus)
    _, val_text = train_val_split(text, args.val_fraction)
    block = args.block_size or model.config.n_positions
    if block > model.config.n_positions:
        raise UsageError(f"--block_size {block} exceeds the model's context of {model.config.n_positions}")
    ids = encode(tokenizer, val_text)
    loss = split_loss(model, ids, block)
    row = {"model": args.load, "corpus": args.data or args.corpus, "split": "val", "block_size": block}
    bpc = bits_per_char(loss, tokenizer, ids, block)
    print(json.dumps(row | {"tokens": len(ids), "val_loss": round(loss, 4), "bits_per_char": round(bpc, 4)}))
    return 0


def generate_command(args) -> int:
    """--load DIR --generate / --interactive: the blog's way to talk to a trained model."""
    if not args.load:
        raise UsageError("--generate and --interactive need --load DIR (a trained model folder)")
    sampling = sampling_from(args)
    model, tokenizer = load_model_folder(args.load, pick_device(args.device))
    prompt = valid_text(args.prompt)  # bytes that are not UTF-8 arrive as lone surrogates
    if args.interactive:
        if hasattr(sys.stdin, "reconfigure"):
            sys.stdin.reconfigure(errors="replace")  # a line that is not UTF-8 is not a crash
        interactive(model, tokenizer, sampling, args.allow_unseen)
    else:
        check_prompt(tokenizer, prompt, args.allow_unseen)
        generate_to(sys.stdout, model, tokenizer, prompt, sampling)
    return 0


def train_command_line(args, argv: list[str] | None) -> int:
    """Train (or resume) with the flags given; then publish if --push-to-hub."""
    if args.resume:  # the saved run's settings, except what is given again now
        flags, names = vars(args), {f.name for f in fields(TrainSettings)}
        changes = {k: flags[k] for k in explicit_args(argv) if k in names or k in ARCHITECTURE}
        changes.pop("resume", None)
        changes["progress"] = not args.no_progress
        result = train(resume_settings(args.resume, **changes))
    else:
        result = train(settings_from_args(args))
    if args.push_to_hub and int(os.environ.get("RANK", "0")) == 0 and _finish(result) == 0:
        return push_to_hub(result, args.push_to_hub)
    return _finish(result)


def push_to_hub(result: dict, repo_id: str) -> int:
    """Publish a finished run's folder with gpt2mini/hub/'s code, publish.py's too (model card, one commit)."""

    try:
        publish_model(result["folder"], repo_id, report=lambda line: print(line, file=sys.stderr))
    except PublishError as e:
        print(f"error: {e}; the model is saved in {result['folder']}", file=sys.stderr)
        return 1
    return 0


def _finish(result: dict) -> int:
    return 130 if result.get("interrupted") else 0


if __name__ == "__main__":
    raise SystemExit(main())
