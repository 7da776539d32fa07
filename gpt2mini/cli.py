"""The blog's command line, defined once: train.py's flags (generated from `TrainSettings` and the switch registry),
the settings they make, and talking to a trained model in the terminal (`--generate`, `--interactive`).

train.py parses with `build_parser` and `settings_from_args`; experiments/recipes.py reads the same flags, so a recipe
is written as the train.py command line that trains it.
"""

import argparse
import sys
from dataclasses import fields

from configuration_gpt2mini import PRESETS, SWITCHES, choices, gpt2_value
from gpt2mini.checkpoint import UsageError
from gpt2mini.corpus import CORPORA
from gpt2mini.generation.sampling import SamplingSettings
from gpt2mini.generation.stream import stream_text
from gpt2mini.tokenizer import (
    TOKENIZERS,
    unseen_characters,
    valid_text,
)
from gpt2mini.training.settings import BPE_VOCAB, TrainSettings, switches_from_flags


def check_prompt(tokenizer, prompt: str, allow_unseen: bool) -> None:
    missing = unseen_characters(tokenizer, prompt)
    if missing and not allow_unseen:
        shown = " ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise UsageError(
            f"the prompt has characters this model never saw in training: {shown}; rephrase it, or pass "
            "--allow_unseen to feed them as raw bytes"
        )


def sampling_from(args) -> SamplingSettings:
    """The sampling flags as SamplingSettings, or a UsageError naming the flag."""
    try:
        return SamplingSettings(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            seed=args.seed,
            max_new_tokens=args.max_tokens,
        )
    except ValueError as e:
        raise UsageError("--" + str(e).replace("max_new_tokens", "max_tokens")) from None


def generate_to(out, model, tokenizer, prompt: str, sampling: SamplingSettings) -> None:
    """Stream the continuation of `prompt` to `out` as it is sampled."""
    out.write(prompt)
    out.flush()
    for piece in stream_text(model, tokenizer, prompt, sampling.max_new_tokens, **sampling.stream_options()):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()


def interactive(model, tokenizer, sampling: SamplingSettings, allow_unseen: bool, stdin=sys.stdin, out=sys.stdout):
    out.write("Type a prompt and press Enter; an empty line starts from a newline; 'quit' ends.\n")
    while True:
        out.write(">>> ")
        out.flush()
        line = stdin.readline()
        if not line or line.strip() in ("quit", "exit"):
            break
        prompt = valid_text(line.rstrip("\n"))
        try:
            check_prompt(tokenizer, prompt, allow_unseen)
        except UsageError as e:
            out.write(f"{e}\n")
            continue
        generate_to(out, model, tokenizer, prompt, sampling)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except the empty ones (None, off switches)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train GPT-2 mini, or generate text with a trained one.", formatter_class=_HelpFormatter
    )
    d = TrainSettings()
    add_data_args(p.add_argument_group("data"), d)
    add_model_args(p.add_argument_group("model (defaults: 4 layers, 4 heads, 128 dims, context 256)"), d)
    add_switch_args(
        p.add_argument_group(
            "switches (ablations break a part on purpose; lineage switches take an earlier or later generation's "
            "design; configuration_gpt2mini.SWITCHES)"
        )
    )
    add_optimisation_args(p.add_argument_group("optimisation"), d)
    add_output_args(p.add_argument_group("evaluation and output"), d)
    add_generation_args(p.add_argument_group("generation (with --load)"))
    g = p.add_argument_group("evaluation of a saved model (with --load)")
    g.add_argument(
        "--evaluate", action="store_true", help="print the loss over the whole validation split of --corpus/--data"
    )
    return p


def add_data_args(g, d: TrainSettings) -> None:
    g.add_argument("--corpus", default=d.corpus, help=f"shipped corpus: {', '.join(CORPORA)}")
    g.add_argument("--data", metavar="FILE", help="train on any UTF-8 text file instead of --corpus")
    g.add_argument("--val_fraction", type=float, default=d.val_fraction, help="share of the text held out at its end")
    g.add_argument(
        "--train_fraction",
        type=float,
        default=d.train_fraction,
        help="share of the training split to train on, from its start (less data, the same validation split)",
    )
    g.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default=d.tokenizer,
        help="char: one token per character (the project's); bpe: byte-level BPE learned from the training split, "
        "to compare with (--block_size then counts BPE tokens)",
    )
    g.add_argument(
        "--vocab_size", type=int, help=f"BPE's vocabulary, specials and bytes included (default: {BPE_VOCAB})"
    )


def add_model_args(g, d: TrainSettings) -> None:
    g.add_argument("--n_layer", type=int, help="transformer blocks (default: 4)")
    g.add_argument("--n_head", type=int, help="attention heads per block (default: 4)")
    g.add_argument("--n_embd", type=int, help="embedding width (default: 128)")
    g.add_argument("--block_size", type=int, help="context length in characters, n_positions (default: 256)")
    g.add_argument("--dropout", type=float, default=d.dropout, help="dropout on embeddings, attention and residuals")


def add_switch_args(g) -> None:
    """One option per switch flag of the registry: `--disable_residual 1` for a true/false config field (the blog's
    form), `--ln_style post` for a field with several values; and `--preset`, several at once."""
    presets = "; ".join(
        f"{name}: " + (", ".join(f"{k}={v}" for k, v in fields.items()) or "GPT-2 itself, the default")
        for name, fields in PRESETS.items()
    )
    g.add_argument(
        "--preset",
        choices=list(PRESETS),
        help=f"a step of the lineage, several switches at once ({presets}); a switch flag given too changes that one",
    )
    by_flag: dict[str, list] = {}
    for s in SWITCHES:
        by_flag.setdefault(s.flag, []).append(s)
    for flag, switches in by_flag.items():
        field_name = switches[0].field
        if isinstance(gpt2_value(field_name), bool):
            s = switches[0]
            g.add_argument(f"--{flag}", type=int, choices=(0, 1), help=f"1: {s.label}: {s.meaning} (default: 0)")
        else:
            options = "; ".join(f"{s.value}: {s.label}, {s.meaning}" for s in switches)
            g.add_argument(
                f"--{flag}", choices=choices(field_name), help=f"{options} (default: {gpt2_value(field_name)}, GPT-2)"
            )


def add_optimisation_args(g, d: TrainSettings) -> None:
    g.add_argument(
        "--steps", type=int, default=d.steps, help="optimizer steps in total (a resumed run continues to it)"
    )
    g.add_argument("--batch_size", type=int, default=d.batch_size, help="sequences per micro-batch (per process)")
    g.add_argument("--grad_accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    g.add_argument(
        "--short_context",
        type=int,
        default=d.short_context,
        help="early steps train on windows this long (more of them, same tokens per step) at random positions in "
        "the context, which gets attention working sooner; 0 or >= the context: off",
    )
    g.add_argument(
        "--short_fraction", type=float, default=d.short_fraction, help="share of --steps spent on the short windows"
    )
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    g.add_argument(
        "--min_lr_ratio",
        type=float,
        default=d.min_lr_ratio,
        help="learning rate at the end of the cosine decay, as a fraction of --lr",
    )
    g.add_argument("--warmup", type=int, default=d.warmup, help="linear warmup steps")
    g.add_argument("--weight_decay", type=float, default=d.weight_decay, help="AdamW weight decay on matrices")
    g.add_argument("--beta2", type=float, default=d.beta2, help="AdamW beta2")
    g.add_argument("--grad_clip", type=float, default=d.grad_clip, help="clip the gradient norm (0: off)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed for initialisation, data order and sampling")


def add_output_args(g, d: TrainSettings) -> None:
    g.add_argument("--eval_interval", type=int, default=d.eval_interval, help="evaluate, sample and save every N steps")
    g.add_argument("--eval_iters", type=int, default=d.eval_iters, help="fixed batches per split in each evaluation")
    g.add_argument("--log_interval", type=int, default=d.log_interval, help="metrics-log line every N steps")
    g.add_argument("--sample_chars", type=int, default=d.sample_chars, help="characters sampled at each evaluation")
    g.add_argument("--sample_prompt", help="prompt for those samples (default: one that suits the corpus)")
    g.add_argument("--save", metavar="DIR", help="output folder (default: runs/<corpus>[-<variant>])")
    g.add_argument("--load", metavar="DIR", help="start from a saved model (or generate with it)")
    g.add_argument("--resume", metavar="DIR", help="continue a saved run exactly where it stopped")
    g.add_argument("--stop_at", type=int, metavar="STEP", help="save and stop at this step (continue with --resume)")
    g.add_argument("--device", default=d.device, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on CUDA)")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--push-to-hub",
        "--push_to_hub",
        dest="push_to_hub",
        metavar="REPO_ID",
        help="after training, publish the saved folder to this Hub model repo (publish.py: model card, one commit)",
    )


def add_generation_args(g) -> None:
    g.add_argument("--generate", action="store_true", help="print a continuation of --prompt and exit")
    g.add_argument("--interactive", action="store_true", help="read prompts from the terminal; 'quit' ends")
    g.add_argument("--prompt", default="\n", help="text to continue")
    g.add_argument("--max_tokens", type=int, default=300, help="characters to generate")
    g.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more random")
    g.add_argument("--top_k", type=int, default=0, help="sample from the k most likely characters (0: all)")
    g.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling threshold (1: off)")
    g.add_argument("--repetition_penalty", type=float, default=1.0, help=">1 discourages repeating characters")
    g.add_argument("--allow_unseen", action="store_true", help="accept prompt characters the model never saw")


def settings_from_args(args) -> TrainSettings:
    """The TrainSettings that train.py's parsed flags describe (a new run)."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainSettings) if hasattr(args, f.name)}
    values["progress"] = not args.no_progress
    return TrainSettings(**values, switches=switches_from_flags(vars(args)))


def explicit_args(argv: list[str] | None) -> set[str]:
    """The destinations of the options actually typed on the command line."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))
