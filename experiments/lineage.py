"""The road from the 2017 Transformer to Llama, measured on one small model; and characters against byte-level BPE.

    python -m experiments.lineage --jobs 2               # both corpora: trains what is missing, writes docs/lineage.md
    python -m experiments.lineage --jobs 2 --ship models # also ships Llama's recipe and the 2017 Transformer
    python -m experiments.lineage --quick                # the whole experiment on a tiny model in minutes

Two experiments, both under experiments.ablate's protocol (gpt2mini.study.protocol: each arm at its own best learning
rate, then more seeds there) and on its trials (GPT-2 is experiments.ablate's baseline and GPT-1 its post-LN variant:
the same runs serve both reports):

- The lineage: configuration_gpt2mini.PRESETS (the 2017 Transformer, GPT-1, GPT-2, Llama's recipe) at the same size,
  data and recipe; validation loss, parameters, training FLOPs per token, and training and decoding speed measured
  side by side in one process.
- Characters against BPE: the baseline with a byte-level BPE tokenizer of each vocabulary size, trained for as many
  steps as give it the training FLOPs of the character model (a larger vocabulary makes the output head, and each
  step, dearer), compared in bits per character of the same held-out text (a loss per token is not comparable across
  tokenizers).

Everything in the report is computed from the runs by this command; the trials resume and are reused like
experiments.ablate's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from configuration_gpt2mini import BASELINE, PRESET_LABELS, PRESETS, GPT2MiniConfig
from gpt2mini.checkpoint import UsageError, atomic_write_text, load_model_folder
from gpt2mini.corpus import CORPORA, load_corpus, train_val_split
from gpt2mini.report.records import (
    LineageRecord,
    StudyResult,
    TokenizerArm,
    command_line,
    current_command,
    write_record,
)
from gpt2mini.study import protocol
from gpt2mini.study.plots import pyplot
from gpt2mini.study.protocol import EXTEND, LRS, SEEDS, exit_status, parse_lrs, run_corpus, write_results
from gpt2mini.study.ship import ship_best
from gpt2mini.study.tables import number, rates, recipe_line, sweep_table, versus
from gpt2mini.study.trials import Trial, recorded_recipe
from gpt2mini.study.variants import LINEAGE, NAMED, parse_list
from gpt2mini.tokenizer import build_tokenizer, encode
from gpt2mini.training.evaluation import bits_per_char, short_phase
from gpt2mini.training.loop import new_tokenizer
from gpt2mini.training.settings import BPE_VOCAB, TrainSettings
from modeling_gpt2mini import GPT2MiniForCausalLM

SHIPPED = ("llama", "transformer-2017")  # next to experiments.ablate's shipped variants in models/<corpus>/
VOCABS = (512, BPE_VOCAB, 8192)  # the BPE vocabulary sizes compared with the characters
BPE_LRS = (2e-3, 4e-3)  # each BPE arm's sweep: the best rates of the character model on the two corpora
BPE_SEEDS = 2
PRESET_OF = {variant: next(p for p, f in PRESETS.items() if f == NAMED[variant]) for variant in LINEAGE}


# ---------------------------------------------------------------------------------------------------------------------
# The lineage


def label(variant: str) -> str:
    """'GPT-1' for the post-LN variant, 'GPT-2' for the baseline: the lineage's names for experiments.ablate's
    variants."""
    return PRESET_LABELS[PRESET_OF[variant]]


def differs(variant: str) -> str:
    """What a design changes in GPT-2, switch by switch ('ln_style post, ...'), or '-' for GPT-2 itself."""
    fields = NAMED[variant]
    return ", ".join(f"`{k}` {v}" for k, v in fields.items()) or "– (the reference)"


def run_lineage(corpus: str | None, base: TrainSettings, out: Path, args, command: str) -> StudyResult:
    """experiments.ablate's protocol on the lineage's presets; the comparisons go to out/lineage (the trials stay
    shared)."""
    return run_corpus(
        corpus,
        LINEAGE,
        base,
        out,
        data=args.data,
        sample_chars=args.sample_chars,
        jobs=args.jobs,
        lrs=args.lrs,
        seeds=args.seeds,
        extend=args.extend,
        command=command,
        results=out / "lineage",
    )


def model_of(variant: str, vocab_size: int, base: TrainSettings) -> GPT2MiniForCausalLM:
    """A fresh model of a design at the recipe's size (for counting and timing; weights do not matter)."""
    fields = base.model_overrides() | NAMED[variant]
    return GPT2MiniForCausalLM(GPT2MiniConfig(vocab_size=vocab_size, **fields))


# ---------------------------------------------------------------------------------------------------------------------
# Speed: every design timed in the same rounds, in one process (a busy machine slows them alike)


def speed(base: TrainSettings, vocab: int, rounds: int, steps: int) -> dict:
    """Training tokens/s (forward, backward, AdamW on a fixed batch) and decoding characters/s (the fast API, one
    stream, greedy) of each design, interleaved: medians and each design's median ratio to GPT-2 per round."""
    runners = {}
    for variant in LINEAGE:
        runners[f"train {variant}"] = train_runner(variant, vocab, base, steps)
        runners[f"decode {variant}"] = decode_runner(variant, vocab, base)
    for run in runners.values():
        run()  # warm-up
    measured = {name: [] for name in runners}
    for _ in range(rounds):  # every design in every round, so that what slows a round slows them all
        for name, run in runners.items():
            t0 = time.perf_counter()
            units = run()
            measured[name].append(units / (time.perf_counter() - t0))
    result = {"rounds": rounds, "threads": torch.get_num_threads(), "batch": base.batch_size, "vocab": vocab}
    for what in ("train", "decode"):
        ref = measured[f"{what} {BASELINE}"]
        for variant in LINEAGE:
            mine = measured[f"{what} {variant}"]
            result[f"{what} {variant}"] = {
                "median": round(statistics.median(mine), 1),
                "x GPT-2": round(statistics.median(a / b for a, b in zip(mine, ref, strict=True)), 3),
            }
    return result


def train_runner(variant: str, vocab: int, base: TrainSettings, steps: int):
    import torch.nn.functional as F

    from gpt2mini.training.optim import make_optimizer

    torch.manual_seed(0)
    model = model_of(variant, vocab, base).train()
    optimizer = make_optimizer(model, base, torch.device("cpu"))
    context = model.config.n_positions
    x = torch.randint(0, vocab, (base.batch_size, context + 1), generator=torch.Generator().manual_seed(1))

    def run() -> int:
        for _ in range(steps):
            logits = model(x[:, :-1], use_cache=False).logits
            F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return steps * base.batch_size * context

    return run


def decode_runner(variant: str, vocab: int, base: TrainSettings):
    """One greedy stream that fills the context (a prompt of a sixteenth of it, then the rest) without sliding it:
    past the context, designs with learned positions re-encode and rotary ones do not (bench.speed times that)."""
    from gpt2mini.generation.stream import TokenStream

    torch.manual_seed(0)
    model = model_of(variant, vocab, base).eval()
    context = model.config.n_positions
    prompt = torch.randint(0, vocab, (1, max(1, context // 16)), generator=torch.Generator().manual_seed(2))
    chars = context - prompt.shape[1]

    def run() -> int:
        TokenStream(model, prompt, temperature=0).take(chars)
        return chars

    return run


# ---------------------------------------------------------------------------------------------------------------------
# Characters against BPE at equal training compute


def training_flops(s: TrainSettings, vocab: int) -> int:
    """The FLOPs a run of these settings trains with: the curriculum's short-window steps at their context, the rest
    at the full one, the same tokens per step throughout (gpt2mini.training.evaluation.short_phase)."""
    model = model_of(BASELINE, vocab, s)
    context = s.block_size or GPT2MiniConfig().n_positions
    window, short = short_phase(s, context)
    tokens = s.batch_size * s.grad_accum * context
    per_step = {n: tokens * model.flops_per_token(n) for n in (window, context) if n}
    return short * per_step.get(window, 0) + (s.steps - short) * per_step[context]


def equal_compute_steps(base: TrainSettings, char_vocab: int, bpe_vocab: int) -> int:
    """The steps that give a BPE model of `bpe_vocab` tokens the character model's training FLOPs (the same tokens per
    step; each token dearer by its larger output head): the closest a whole number of steps comes."""
    target = training_flops(base, char_vocab)
    bpe = replace(base, tokenizer="bpe", vocab_size=bpe_vocab)
    guess = round(base.steps * target / training_flops(bpe, bpe_vocab))
    tried = range(max(1, guess - 2), guess + 3)
    return min(tried, key=lambda n: abs(training_flops(replace(bpe, steps=n), bpe_vocab) - target))


def bpe_vocabulary(base: TrainSettings, text: str, vocab: int) -> int:
    """The size of the BPE vocabulary `vocab` asks for, or a UsageError where the text makes fewer tokens (its arm
    would be named for a size it does not have, and given the steps of that size)."""
    size = len(new_tokenizer(replace(base, tokenizer="bpe", vocab_size=vocab), text))
    if size != vocab:
        raise UsageError(
            f"--vocabs {vocab}: the text makes a BPE vocabulary of only {size} tokens; ask for at most that"
        )
    return size


def run_bpe(
    corpus: str | None, base: TrainSettings, out: Path, vocab: int, char_vocab: int, args, command
) -> StudyResult:
    """The baseline with a BPE tokenizer of `vocab` tokens under the protocol, at the character model's training
    FLOPs, its trials in out/bpe<vocab>. Its samples are cut to as many characters as the others' (tokens hold more
    or fewer than one)."""
    s = replace(base, tokenizer="bpe", vocab_size=vocab, steps=equal_compute_steps(base, char_vocab, vocab))
    return run_corpus(
        corpus,
        [BASELINE],
        s,
        out / f"bpe{vocab}",
        data=args.data,
        sample_chars=4 * args.sample_chars,
        jobs=args.jobs,
        lrs=args.bpe_lrs,
        seeds=args.bpe_seeds,
        extend=args.bpe_extend,
        command=command,
    )


def tokenizer_row(result: StudyResult, out: Path, val_text: str, name: str) -> TokenizerArm:
    """One tokenizer's arm: its vocabulary, how many characters a token holds, the embedding's parameters, the
    training it got (FLOPs as `training_flops`), and bits per character of the held-out text at its best learning
    rate, for each seed that did not diverge."""
    v = result.variants[BASELINE]
    s = TrainSettings(**recorded_recipe(result.recipe))
    arm = TokenizerArm(name, s.steps, v.best_lr, v.at_edge, v.sweep, vocab=s.vocab_size)
    if v.best_lr is None:  # diverged at every learning rate
        return arm
    at_best = [result.trial(Trial(BASELINE, v.best_lr, result.base_seed + k).key) for k in range(result.seeds)]
    model, tokenizer = load_model_folder(out / v.best_key, "cpu")
    ids = encode(tokenizer, val_text)
    context = model.config.n_positions
    bits = [bits_per_char(r.val_split, tokenizer, ids, context) for r in at_best if r and r.val_split is not None]
    chars_per_token = len(val_text) / len(ids)
    arm.vocab = len(tokenizer)
    arm.chars_per_token = round(chars_per_token, 3)
    arm.context_chars = round(context * chars_per_token)
    arm.embedding_parameters = model.transformer.wte.weight.numel()
    arm.parameters = model.num_parameters()
    arm.train_flops = training_flops(s, len(tokenizer))
    arm.bits = [round(b, 4) for b in bits]
    arm.mean = round(sum(bits) / len(bits), 4) if bits else None
    arm.sample = v.sample
    return arm


def compare_tokenizers(
    lineage: StudyResult, corpus, base, out: Path, text: str, args, command
) -> tuple[list[TokenizerArm], list[StudyResult]]:
    """The character baseline (the lineage's GPT-2 runs) and a BPE arm per vocabulary size: each arm's row, and each
    BPE arm's result."""
    char_vocab, val_text = len(build_tokenizer(text)), train_val_split(text, base.val_fraction)[1]
    arms, results = [tokenizer_row(lineage, out, val_text, "characters")], []
    for vocab in args.vocabs:
        results.append(run_bpe(corpus, base, out, vocab, char_vocab, args, command))
        arms.append(tokenizer_row(results[-1], out / f"bpe{vocab}", val_text, f"BPE {vocab}"))
    return arms, results


def load_text(corpus: str | None, args) -> str:
    return load_corpus(args.data) if args.data else load_corpus(corpus)


# ---------------------------------------------------------------------------------------------------------------------
# The report


def relabeled(result: StudyResult) -> StudyResult:
    """The lineage's result with the lineage's names (GPT-2 for the baseline) for its tables and plots."""
    return replace(result, variants={n: replace(v, label=label(n)) for n, v in result.variants.items()})


def lineage_table(result: StudyResult) -> str:
    """Each design at its own best learning rate against GPT-2 (the ties as experiments.ablate calls them)."""
    vs, lines = result.variants, []
    head = ["design", "what it changes in GPT-2", "parameters", "best lr", "val loss (mean)", "seeds: min – max"]
    lines += ["| " + " | ".join(head + ["against GPT-2"]) + " |", "|" + "---|" * (len(head) + 1)]
    for n, v in vs.items():
        edge = " (edge)" if v.at_edge else ""
        cells = [label(n), differs(n), f"{v.parameters:,}" if v.parameters else "–"]
        cells += [f"{v.best_lr:g}{edge}" if v.best_lr else "–", number(v.mean)]
        cells += [f"{number(v.min)} – {number(v.max)} (n={len(v.seed_losses)})", versus(v, vs[BASELINE])]
        lines.append("| " + " | ".join(cells) + " |")
    for key in ("unigram", "bigram"):
        lines.append(f"| *{key} (counts, no network)* | – | – | – | {result.reference[key]:.3f} | – | – |")
    return "\n".join(lines)


def speed_table(sp: dict, base: TrainSettings) -> str:
    lines = [
        "| design | parameters | training FLOPs per token | training tokens/s | x GPT-2 | decoding characters/s | "
        "x GPT-2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in LINEAGE:
        model = model_of(n, sp["vocab"], base)
        t, d = sp[f"train {n}"], sp[f"decode {n}"]
        cells = [label(n), f"{model.num_parameters():,}", f"{model.flops_per_token() / 1e6:.2f} M"]
        cells += [f"{t['median']:,.0f}", f"{t['x GPT-2']:.2f}", f"{d['median']:,.0f}", f"{d['x GPT-2']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tokenizer_table(arms: list[TokenizerArm]) -> str:
    head = ["tokenizer", "vocabulary", "characters per token", "context in characters", "embedding / all parameters"]
    head += ["steps (equal FLOPs)", "best lr", "bits per character (mean)", "seeds", "against characters"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    char = arms[0]
    for a in arms:
        if a.best_lr is None:
            lines.append(
                f"| {a.tokenizer} | {a.vocab} | – | – | – | {a.steps:,} | diverged at every rate | – | – | – |"
            )
            continue
        cells = [a.tokenizer, f"{a.vocab:,}", f"{a.chars_per_token:.2f}", f"{a.context_chars:,}"]
        cells += [
            f"{a.embedding_parameters:,} / {a.parameters:,}",
            f"{a.steps:,}",
            f"{a.best_lr:g}" + (" (edge)" if a.at_edge else ""),
        ]
        cells += [number(a.mean), ", ".join(f"{b:.3f}" for b in a.bits), against(a, char)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def against(arm: TokenizerArm, char: TokenizerArm) -> str:
    """An arm against the characters in bits per character: a tie where the seeds' ranges overlap."""
    if arm is char:
        return "reference"
    if arm.mean is None or char.mean is None:
        return "–"
    gap = arm.mean - char.mean
    if len(arm.bits) > 1 and min(arm.bits) <= max(char.bits) and min(char.bits) <= max(arm.bits):
        return f"{gap:+.3f}: a tie (the seed ranges overlap)"
    if gap > 0 and arm.at_edge:  # it might do better at a rate not tried
        return f"{gap:+.3f}: worse at the rates tried; its best was the edge of them, so not settled"
    return f"{gap:+.3f}: " + ("worse" if gap > 0 else "better")


def plot_tokenizers(path: Path, per_corpus: dict[str, list[TokenizerArm]]) -> None:
    """Bits per character against the characters' (each seed, and the mean) and characters per token, against the
    BPE vocabulary size: the characters are the zero line (and 1 character per token)."""
    plt = pyplot()
    fig, (ax_bits, ax_len) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    sizes = sorted({a.vocab for arms in per_corpus.values() for a in arms[1:]})
    for corpus, (char, *bpe) in per_corpus.items():
        bpe = [a for a in bpe if a.mean is not None]
        if char.mean is not None:
            gaps = [a.mean - char.mean for a in bpe]
            (line,) = ax_bits.plot([a.vocab for a in bpe], gaps, "o-", label=corpus)
            for a in bpe:
                seeds = [b - char.mean for b in a.bits]
                ax_bits.plot([a.vocab] * len(seeds), seeds, ".", color=line.get_color(), alpha=0.5)
        ax_len.plot([a.vocab for a in bpe], [a.chars_per_token for a in bpe], "o-", label=corpus)
    ax_bits.axhline(0, color="grey", ls="--", lw=1, label="characters (mean)")
    ax_len.axhline(1, color="grey", ls="--", lw=1, label="characters")
    labels = (
        (ax_bits, "bits per character, BPE minus characters"),
        (ax_len, "characters per token (held-out text)"),
    )
    for ax, y in labels:
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{v:,}" for v in sizes])
        ax.minorticks_off()
        ax.set_xlabel("BPE vocabulary size")
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_bits.set_title("held-out text, at the character model's training FLOPs (below 0: BPE better)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def mlp_widths(base: TrainSettings) -> str:
    """SwiGLU's hidden width and its weights against GELU's, from the models themselves."""
    gelu, swiglu = (model_of(n, 65, base).transformer.h[0].mlp for n in (BASELINE, "llama"))
    width, count = swiglu.c_proj.in_features, lambda m: sum(p.numel() for n, p in m.named_parameters() if "weight" in n)
    return (
        f"SwiGLU's hidden width is {width} (8/3 x {base.n_embd or GPT2MiniConfig().n_embd}, rounded), so its three "
        f"matrices hold about the weights of GELU's two of width {gelu.c_proj.in_features} ({count(swiglu):,} "
        f"against {count(gelu):,})."
    )


def design_lines() -> list[str]:
    """What each preset sets, from configuration_gpt2mini.PRESETS and the switches' meanings."""
    from configuration_gpt2mini import variant_meaning

    lines = ["| design | preset | what it changes in GPT-2 (`train.py --preset NAME`) |", "|---|---|---|"]
    for n in LINEAGE:
        lines.append(f"| {label(n)} | `{PRESET_OF[n]}` | {variant_meaning(PRESET_OF[n])} |")
    return lines


def header(command: str, entries: list[LineageRecord], sp: dict, base: TrainSettings, wall: float) -> list[str]:
    trials = [t for e in entries for r in (e.lineage, *e.bpe) for t in r.trials]
    hours = sum(t.wall_s or 0 for t in trials) / 3600
    threads = sorted({t.threads for t in trials if t.threads})
    r0 = entries[0].lineage
    return [
        "# The lineage, measured: from the 2017 Transformer to Llama, and characters against BPE",
        "",
        "Written by `python -m experiments.lineage`; every figure below was measured by the command that wrote this "
        "page:",
        "",
        "```bash",
        current_command(command),
        "```",
        "",
        f"- Hardware: {r0.hardware}; {r0.jobs} trials at once, {', '.join(map(str, threads))} thread(s) each.",
        f"- Wall time: the {len(trials)} trials took {hours:.1f} h of training added up (each timed when it was "
        f"trained, not always on an idle machine); the last run of the command took {wall / 60:.1f} min, reusing "
        "what earlier runs measured.",
        "- Protocol: experiments.ablate's ([docs/ablations.md](ablations.md)), on the same trials: every design trains "
        "at each "
        f"learning rate of the sweep ({rates(r0.lrs)}) with seed {r0.base_seed}"
        + (f" (and up to {r0.extend} beyond an edge where its best lay there)" if r0.extend else "")
        + f"; at its best it trains again with {r0.seeds - 1} more seed(s). A difference "
        "smaller than the spread over seeds (overlapping ranges) is a tie.",
        f"- Recipe, the same for every design: {recipe_line(r0.recipe, r0.trials[0].context or '?')} "
        "(the BPE arms differ in tokenizer and steps only: below).",
        "",
        "## The designs",
        "",
        *design_lines(),
        "",
        "Not modelled: the 2017 Transformer was an encoder-decoder (here only its decoder's design is used, as GPT-1 "
        "did); GPT-1 also had a shorter context; Llama also uses grouped-query attention and, in its larger sizes, "
        f"untied embeddings. {mlp_widths(base)}",
        "",
        f"## Cost: parameters, FLOPs and speed ({entries[0].corpus}'s characters: vocabulary {sp['vocab']})",
        "",
        speed_table(sp, base),
        "",
        f"Measured side by side in one process ({sp['threads']} threads, training batch {sp['batch']}), "
        f"{sp['rounds']} rounds, the designs interleaved in each (a busy "
        "machine slows them alike): the median rate, and the median of each round's ratio to GPT-2. Training: "
        "forward, backward and AdamW on a fixed batch of full windows; decoding: the fast API (`TokenStream`), one "
        "greedy stream. FLOPs per token: `GPT2MiniForCausalLM.flops_per_token` (6 per weight that multiplies, plus "
        "12 L T C for attention). At about equal arithmetic per token (that column), a difference in speed is the "
        "cost of the operations this implementation runs for each step, not of the arithmetic.",
        "",
    ]


def corpus_section(entry: LineageRecord, images: Path, rel: str) -> list[str]:
    corpus, result, out = entry.corpus, relabeled(entry.lineage), Path(entry.out)
    for fig in ("lr_sweep.png", "loss_curves.png"):
        if (out / "lineage" / fig).exists():
            shutil.copy2(out / "lineage" / fig, images / f"{corpus}_{fig}")
    write_record(images / f"{corpus}_results.json", entry)
    lines = [f"## {corpus}: the lineage", "", lineage_table(result), "", conclusion(result), ""]
    lines += [f"![loss against learning rate]({rel}/{corpus}_lr_sweep.png)", ""]
    lines += [f"The sweep (seed {result.base_seed}; bold: the best):", "", sweep_table(result), ""]
    lines += [f"![loss curves]({rel}/{corpus}_loss_curves.png)", ""]
    lines += samples(result.prompt, [(v.label, v.sample) for v in result.variants.values()])
    return lines


def conclusion(result: StudyResult) -> str:
    """What the table shows, in one sentence per design, from the same comparison as its last column."""
    vs, base = result.variants, result.variants[BASELINE]
    said = []
    for n, v in vs.items():
        if n == BASELINE or v.mean is None or base.mean is None:
            continue
        said.append(
            f"{label(n)} ends at {v.mean:.3f} against GPT-2's {base.mean:.3f} (each at its best learning "
            f"rate, {v.best_lr:g} and {base.best_lr:g}): {versus(v, base)}."
        )
    return " ".join(said)


def samples(prompt: str, texts: list[tuple[str, str | None]], chars: int | None = None) -> list[str]:
    lines = [f"Samples (prompt {prompt!r}, temperature 0.8, top-k 40, seed 0):", ""]
    for name, text in texts:
        if text is not None:
            lines += [f"**{name}**", "", "```text", prompt + (text[:chars] if chars else text), "```", ""]
    return lines


def tokenizer_section(entries: list[LineageRecord], images: Path, rel: str, sample_chars: int) -> list[str]:
    plot_tokenizers(images / "tokenizers.png", {e.corpus: e.arms for e in entries})
    e0 = entries[0].bpe[0] if entries[0].bpe else entries[0].lineage
    lines = [
        "## Characters against BPE, at equal training compute",
        "",
        "The GPT-2 design with a byte-level BPE tokenizer (`train.py --tokenizer bpe --vocab_size N`, learned from the "
        "training split) instead of one token per character. Each BPE arm trains on the same number of tokens per "
        "step for as many steps as give it the training FLOPs of the character model (its larger output head makes "
        f"each token dearer), at its own best learning rate of {rates(e0.lrs)} ("
        + ("not looked beyond: an arm marked (edge) may do better past it" if not e0.extend else "and beyond an edge")
        + f"; then {e0.seeds} seeds; the characters: GPT-2's runs above). The measure is bits per character of "
        "the same held-out text: the loss over the split's tokens divided by the characters they spell, in bits "
        "(a loss per token is not comparable across tokenizers), over each tokenizer's whole windows of the split "
        "(all but its last part-window, under one window's worth of text). A BPE model's "
        f"{entries[0].lineage.trials[0].context or '?'} positions hold more "
        "characters (context in characters below), and its embedding table holds more of its parameters.",
        "",
        f"![bits per character against vocabulary size]({rel}/tokenizers.png)",
        "",
    ]
    for e in entries:
        lines += [f"### {e.corpus}", "", tokenizer_table(e.arms), ""]
        lines += samples(e.lineage.prompt, [(a.tokenizer, a.sample) for a in e.arms], sample_chars)
    return lines


def write_report(
    path: Path, entries: list[LineageRecord], sp: dict, base: TrainSettings, command: str, wall: float
) -> None:
    images = path.parent / path.stem
    images.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(images, path.parent)
    lines = header(command, entries, sp, base, wall)
    for e in entries:
        lines += corpus_section(e, images, rel)
    lines += tokenizer_section(entries, images, rel, 200)
    atomic_write_text(path, "\n".join(lines))


# ---------------------------------------------------------------------------------------------------------------------
# Command line


RECIPE = (
    "steps",
    "batch_size",
    "warmup",
    "eval_interval",
    "eval_iters",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "device",
)
MODULE = "experiments.lineage"
# --quick: both experiments on the protocol's quick model in minutes, into their own folders (flags given still win)
QUICK = protocol.QUICK | {
    "vocabs": "300,400",
    "bpe_lrs": "2e-3,8e-3",
    "bpe_seeds": 2,
    "speed_rounds": 1,
    "out": "runs/lineage-quick",
    "report": "runs/lineage-quick/lineage.md",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Train the lineage's designs (2017 Transformer, GPT-1, GPT-2, Llama's recipe) and GPT-2 with BPE "
        "tokenizers under experiments.ablate's protocol, measure their cost, and write the report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--corpus", default="shakespeare,wagahai", help=f"comma-separated: {', '.join(CORPORA)}")
    p.add_argument("--data", metavar="FILE", help="run on this UTF-8 text file instead of --corpus")
    p.add_argument("--quick", action="store_true", help="everything on a tiny model in minutes (to see it work)")
    p.add_argument("--out", default="runs/ablations", help="experiments.ablate's folder: the trials are shared with it")
    p.add_argument("--report", default="docs/lineage.md", help="the report to write")
    p.add_argument("--ship", metavar="DIR", help=f"copy {', '.join(SHIPPED)} into DIR/<corpus>/ (fp16)")
    p.add_argument("--jobs", type=int, default=1, help="trials trained at once (separate processes)")
    p.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in LRS), help="the lineage's learning rates")
    p.add_argument("--seeds", type=int, default=SEEDS, help="runs at each design's best learning rate")
    p.add_argument("--extend", type=int, default=EXTEND, help="learning rates tried beyond an edge")
    p.add_argument("--vocabs", default=",".join(map(str, VOCABS)), help="BPE vocabulary sizes")
    p.add_argument("--bpe_lrs", default=",".join(f"{lr:g}" for lr in BPE_LRS), help="each BPE arm's learning rates")
    p.add_argument("--bpe_seeds", type=int, default=BPE_SEEDS, help="runs at each BPE arm's best learning rate")
    p.add_argument("--bpe_extend", type=int, default=1, help="learning rates tried beyond a BPE arm's edge")
    p.add_argument("--speed_rounds", type=int, default=5, help="rounds of the side-by-side speed measurement")
    p.add_argument("--sample_chars", type=int, default=200, help="characters per sample")
    d = TrainSettings()
    for name in RECIPE:
        p.add_argument(f"--{name}", type=str if name == "device" else int, default=getattr(d, name))
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser()
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)
    args = p.parse_args(argv)
    args.lrs, args.bpe_lrs = parse_lrs(args.lrs), parse_lrs(args.bpe_lrs)
    try:
        args.vocabs = sorted({int(v) for v in args.vocabs.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"--vocabs takes comma-separated integers, got {args.vocabs!r}") from None
    for name in ("jobs", "seeds", "bpe_seeds", "speed_rounds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    return args


def run(args, command: str) -> Path:
    """Both experiments on every corpus, the speed measurement, the report (and the shipped models)."""
    base = TrainSettings(**{k: getattr(args, k) for k in RECIPE})
    base.check()
    for vocab in args.vocabs:
        replace(base, tokenizer="bpe", vocab_size=vocab).check()
    corpora = [None] if args.data else parse_list(args.corpus, CORPORA, "corpus")
    texts = {corpus: load_text(corpus, args) for corpus in corpora}
    for text in texts.values():  # every BPE vocabulary is one the text makes, before anything trains
        for vocab in args.vocabs:
            bpe_vocabulary(base, train_val_split(text, base.val_fraction)[0], vocab)
    t0, entries = time.perf_counter(), []
    for corpus, text in texts.items():
        name = Path(args.data).stem if args.data else corpus
        out = Path(args.out) / name
        lineage = run_lineage(corpus, base, out, args, command)
        write_results(out / "lineage", relabeled(lineage), out)
        arms, bpe = compare_tokenizers(lineage, corpus, base, out, text, args, command)
        entries.append(LineageRecord(corpus=name, out=str(out), lineage=lineage, bpe=bpe, arms=arms))
        print(f"\n{name}\n{lineage_table(relabeled(lineage))}\n\n{tokenizer_table(arms)}", file=sys.stderr)
        if args.ship:
            for info in ship_best(lineage, out, Path(args.ship) / name, SHIPPED):
                print(f"shipped {info['folder']} ({info['bytes'] / 1e6:.1f} MB)", file=sys.stderr)
    torch.set_num_threads(os.cpu_count() or 1)
    vocab = len(build_tokenizer(texts[corpora[0]]))  # the first corpus's characters
    sp = speed(base, vocab, args.speed_rounds, steps=2)
    report = Path(args.report)
    write_report(report, entries, sp, base, command, time.perf_counter() - t0)
    return report


def main(argv: list[str] | None = None) -> int:
    def work() -> int:
        args = parse_args(argv)
        if args.data:
            load_corpus(args.data)  # fail on a bad file before anything is written
        report = run(args, command_line(MODULE, sys.argv[1:] if argv is None else argv))
        print(f"report: {report}", file=sys.stderr)
        return 0

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
