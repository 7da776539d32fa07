"""The training loop, read like nanoGPT's: `setup` builds a `Run` (model, data, optimizer, where it stands), then
`train` calls `train_step`, `evaluate_and_sample` and `save` on it until the last step.

- Resuming is exact on CPU: the batch sampler, dropout RNG, optimizer and schedule continue where they stopped.
- Ctrl-C saves a resumable checkpoint and exits; a non-finite loss stops with `NonFiniteLoss` and keeps the last good
  save. Folders are written through gpt2mini/checkpoint.py, atomically.
- At every evaluation the log also records each layer's attention entropy and residual-stream norm (gpt2mini/probes.py).
"""

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from gpt2mini.checkpoint import (
    OPTIMIZER_FILE,
    SaveError,
    UsageError,
    check_save_target,
    load_model_folder,
    load_resume_tensors,
    one_line,
    read_metrics,
    read_state,
    save_lock,
    save_run,
)
from gpt2mini.corpus import CORPORA, load_corpus, train_val_split
from gpt2mini.probes import grad_norms, probe
from gpt2mini.tokenizer import build_bpe_tokenizer, build_tokenizer, config_for, encode, kind, unseen_characters
from gpt2mini.training.batches import Batches, restore_rng, rng_tensors
from gpt2mini.training.devices import Dist, init_distributed
from gpt2mini.training.evaluation import evaluate, lm_loss, sample, short_phase
from gpt2mini.training.optim import load_optimizer_tensors, lr_at, make_optimizer, optimizer_tensors
from gpt2mini.training.settings import BPE_VOCAB, TrainSettings, default_save_dir, repeat_command
from modeling_gpt2mini import GPT2MiniForCausalLM


class NonFiniteLoss(Exception):
    """The loss or the gradient became NaN or infinite."""


@dataclass
class Run:
    """What a training run holds while it runs: the settings, the model and its data, and where it stands."""

    s: TrainSettings
    dist: Dist
    device: torch.device
    model: GPT2MiniForCausalLM
    tokenizer: object
    batches: Batches
    fixed: dict  # the evaluation batches of each split, the same at every evaluation and on every resume
    optimizer: torch.optim.Optimizer
    out_dir: Path
    step: int = 0
    elapsed: float = 0.0  # seconds spent in training steps (not evaluating or saving)
    metrics: list = field(default_factory=list)
    saved_step: int | None = None  # the step the folder on disk holds
    runner: torch.nn.Module | None = None  # the model as trained: compiled and/or wrapped for DDP

    @property
    def block_size(self) -> int:
        return self.model.config.n_positions

    def logs_at(self, step: int) -> bool:
        """Whether the step gets a line in metrics.jsonl: every --log_interval steps, and the last."""
        return step % self.s.log_interval == 0 or step == self.s.steps

    @property
    def tokens_per_step(self) -> int:
        return self.s.batch_size * self.s.grad_accum * self.block_size * self.dist.world

    @property
    def short_window(self) -> int | None:
        """The short windows of the first steps (see `Batches.sample`), or None when the phase is off."""
        return short_phase(self.s, self.block_size)[0]

    @property
    def short_steps(self) -> int:
        return short_phase(self.s, self.block_size)[1]

    @property
    def bf16(self) -> bool:
        return self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    @property
    def prompt(self) -> str:
        """The prompt of the samples printed at each evaluation."""
        return self.s.sample_prompt or (CORPORA[self.s.corpus].sample_prompt if not self.s.data else "\n")

    @property
    def title(self) -> str:
        cfg = self.model.config
        switched = ", ".join(f"{k}={v}" for k, v in cfg.ablations.items())
        size = f"{cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}d ctx {cfg.n_positions}"
        return f"{self.s.data or self.s.corpus}: {size}" + (f" | {switched}" if switched else "")

    def state(self) -> dict:
        """trainer_state.json: where the run stands and the settings that continue it."""
        return {
            "step": self.step,
            "elapsed_s": self.elapsed,
            "settings": asdict(self.s) | {"save": str(self.out_dir)},
            "title": self.title,
            "tokens_per_step": self.tokens_per_step,
            "world_size": self.dist.world,
            "device": str(self.device),
            "parameters": self.model.num_parameters(),
            "torch": torch.__version__,
            "command": repeat_command(self.s),
        }


def setup(s: TrainSettings) -> Run:
    """Build everything a run needs: device, model and tokenizer (new, loaded or resumed), data, optimizer."""
    resume_state = read_state(s.resume) if s.resume else None
    if s.resume:
        s.save = s.save or s.resume
    s.check()
    dist, device = init_distributed(s.device)
    torch.manual_seed(s.seed + dist.rank)
    text = load_corpus(s.data) if s.data else load_corpus(s.corpus)
    model, tokenizer = build_model(s, text)
    if s.resume:
        check_same_vocabulary(tokenizer, text, s)
    model.to(device).train()
    train_text, val_text = training_text(text, s), train_val_split(text, s.val_fraction)[1]
    block = model.config.n_positions
    batches = Batches(
        encode(tokenizer, train_text), encode(tokenizer, val_text), block, s.batch_size, s.seed, dist, device
    )
    fixed = {"train": batches.fixed("train", s.eval_iters, seed=1), "val": batches.fixed("val", s.eval_iters, seed=2)}
    out_dir = Path(s.save or default_save_dir(s))
    if dist.main:  # refused now, not after training up to the first save
        check_save_target(out_dir, checkpoint_bytes(model))
    run = Run(s, dist, device, model, tokenizer, batches, fixed, make_optimizer(model, s, device), out_dir)
    if resume_state is not None:
        restore(run, resume_state)
    run.runner = wrap(model, s, dist, device)
    return run


def training_text(text: str, s: TrainSettings) -> str:
    """What a run trains on: the training split (train_val_split), cut to its first `train_fraction`."""
    train_text = train_val_split(text, s.val_fraction)[0]
    return train_text[: round(len(train_text) * s.train_fraction)]


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About what one saved checkpoint takes on disk: fp32 weights and AdamW's two moments, plus logs and code."""
    return 3 * 4 * model.num_parameters() + 2_000_000


def new_tokenizer(s: TrainSettings, text: str):
    """The tokenizer a new run builds: the text's characters, or BPE learned from its training split (so that the
    held-out text tells nothing the tokenizer was fitted on)."""
    if s.tokenizer == "bpe":
        return build_bpe_tokenizer(training_text(text, s), s.vocab_size or BPE_VOCAB)
    return build_tokenizer(text)


def check_same_vocabulary(tokenizer, text: str, s: TrainSettings) -> None:
    """A resumed run continues on text its vocabulary was built from: another corpus would be fed as bytes the
    model never learned (or leave characters unused), so it is refused."""
    s = replace(s, tokenizer=kind(tokenizer), vocab_size=len(tokenizer) if kind(tokenizer) == "bpe" else None)
    if new_tokenizer(s, text).get_vocab() != tokenizer.get_vocab():
        new = unseen_characters(tokenizer, text)
        shown = " ".join(repr(c) for c in new[:5]) + (" ..." if len(new) > 5 else "")
        raise UsageError(
            f"{s.resume} was trained with another vocabulary than {s.data or s.corpus}'s"
            + (f" ({len(new)} of its characters are new to it: {shown})" if new else "")
            + ": a resumed run keeps its text; to train this model on new text, start a new run with --load"
        )


def build_model(s: TrainSettings, text: str) -> tuple[GPT2MiniForCausalLM, object]:
    """A new model and tokenizer for `text`, or those of the folder a run loads or resumes."""
    if s.resume or s.load:
        model, tokenizer = load_model_folder(s.resume or s.load)
        if s.dropout:
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = s.dropout
        return model, tokenizer
    tokenizer = new_tokenizer(s, text)
    p = s.dropout
    cfg = config_for(tokenizer, embd_pdrop=p, attn_pdrop=p, resid_pdrop=p, **s.model_overrides())
    tokenizer.model_max_length = cfg.n_positions
    return GPT2MiniForCausalLM(cfg), tokenizer


def restore(run: Run, state: dict) -> None:
    """Continue a saved run: optimizer moments, RNG states, step, time and metrics log."""
    tensors = load_resume_tensors(Path(run.s.resume))
    try:
        load_optimizer_tensors(run.model, run.optimizer, tensors)
        restore_rng(tensors, run.batches)
    except (KeyError, ValueError, RuntimeError) as e:
        where = Path(run.s.resume) / OPTIMIZER_FILE
        raise UsageError(f"{where} does not fit the model in {run.s.resume}: {one_line(e)}") from None
    run.step, run.elapsed = state["step"], state.get("elapsed_s", 0.0)
    run.saved_step = run.step
    run.metrics = read_metrics(run.s.resume)
    if run.step >= run.s.steps:
        raise UsageError(f"{run.s.resume} is already at step {run.step}; pass a larger --steps to continue")


def wrap(model: torch.nn.Module, s: TrainSettings, dist: Dist, device: torch.device) -> torch.nn.Module:
    """The model as the training step runs it: compiled if asked, wrapped in DDP under torchrun."""
    runner = torch.compile(model) if s.compile else model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)
    return runner


def train_step(run: Run) -> dict:
    """One optimizer step (over `grad_accum` micro-batches); returns its log row."""
    t0 = time.perf_counter()
    s, dist = run.s, run.dist
    lr = lr_at(run.step, s)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    window = run.short_window if run.step < run.short_steps else None
    loss_sum, tokens = 0.0, 0
    for micro in range(s.grad_accum):
        x, y, pos = run.batches.sample("train", window=window)
        sync = dist.world == 1 or micro == s.grad_accum - 1
        ctx = contextlib.nullcontext() if sync else run.runner.no_sync()
        with ctx, run.autocast():
            loss = lm_loss(run.runner, x, y, pos) / s.grad_accum
        with ctx:
            loss.backward()
        loss_sum += loss.item()
        tokens += x.numel() * dist.world
    layers = grad_norms(run.model) if run.logs_at(run.step + 1) else None  # before clipping, like grad_norm
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), s.grad_clip or float("inf")).item()
    if not (math.isfinite(loss_sum) and math.isfinite(grad_norm)):
        raise NonFiniteLoss(f"the loss became {loss_sum} (gradient norm {grad_norm}) at step {run.step + 1}")
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    dt = time.perf_counter() - t0
    run.elapsed += dt
    row = {"step": run.step, "loss": loss_sum, "lr": lr, "grad_norm": grad_norm, "tokens": tokens, "seconds": dt}
    return row | ({"grad_norm_layers": layers} if layers else {})


def evaluate_and_sample(run: Run, bar=None) -> None:
    """Losses on the fixed batches and the probes into the log; a sample of the model's writing to the terminal."""
    row = {"step": run.step} | evaluate(run.model, run.fixed, run.autocast)
    run.metrics.append(row | probe(run.model, run.fixed["val"][0][0][:4]))
    if run.step > 0:
        text = sample(run.model, run.tokenizer, run.prompt, run.s.sample_chars)
        say(
            f"step {run.step}: train {row['train_loss']:.4f}, val {row['val_loss']:.4f}\n  {(run.prompt + text)!r}",
            bar,
        )


def save(run: Run) -> None:
    """Save the run folder (on the main process, once per step)."""
    if run.dist.main and run.saved_step != run.step:
        tensors = optimizer_tensors(run.model, run.optimizer) | rng_tensors(run.batches)
        save_run(run.out_dir, run.model, run.tokenizer, run.state(), run.metrics, tensors)
        run.saved_step = run.step


class Throughput:
    """Tokens per second over the steps since the last log line."""

    def __init__(self):
        self.tokens, self.seconds = 0, 0.0

    def add(self, row: dict) -> float:
        self.tokens += row["tokens"]
        self.seconds += row["seconds"]
        return self.tokens / self.seconds

    def reset(self) -> None:
        self.tokens, self.seconds = 0, 0.0


def train(settings: TrainSettings | None = None, **overrides) -> dict:
    """Run a training; return a summary (final losses, steps, folder, tokens/s). See `TrainSettings` for options."""
    s = settings or TrainSettings()
    for k, v in overrides.items():
        if k not in {f.name for f in fields(TrainSettings)}:
            raise TypeError(f"unknown training setting {k!r}")
        setattr(s, k, v)
    run = setup(s)
    with save_lock(run.out_dir) if run.dist.main else contextlib.nullcontext():  # one process per folder
        if run.dist.main:
            announce(run)
        bar = progress_bar(run)
        result = {"folder": str(run.out_dir)}
        with StopRequest() as stop:
            if run.dist.main:  # said once Ctrl-C is handled, so a wrapper can wait for this line to interrupt
                say(f"training steps {run.step + 1}-{s.steps}; Ctrl-C saves a checkpoint and stops", bar)
            try:
                result |= loop(run, stop, bar)
            except NonFiniteLoss as e:
                raise NonFiniteLoss(f"{e}; stopping. Lower --lr or keep --grad_clip on; {kept(run)}") from None
            except SaveError as e:
                raise SaveError(f"{e}; {kept(run)}") from None
            finally:
                if bar is not None:
                    bar.close()
                if run.dist.world > 1:
                    leave_process_group(run)
    return result | summary(run, result)


def kept(run: Run) -> str:
    if run.saved_step is None:
        return "nothing was saved"
    return f"the last good checkpoint (step {run.saved_step}) is kept in {run.out_dir}"


def loop(run: Run, stop: "StopRequest", bar) -> dict:
    """Step to the end, logging, evaluating and saving on schedule; stop early (saved) on Ctrl-C or --stop_at."""
    s = run.s
    if run.step == 0 and run.dist.main:  # where the curves start: about ln(vocab) for a fresh model
        evaluate_and_sample(run)
    throughput = Throughput()
    while run.step < s.steps:
        row = train_step(run)
        tok_s = throughput.add(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
        if run.logs_at(run.step):
            run.metrics.append(log_row(row, tok_s, run.elapsed))
            throughput.reset()
        if run.step % s.eval_interval == 0 or run.step == s.steps:
            if run.dist.main:
                evaluate_and_sample(run, bar)
            save(run)
        if stop.requested or (s.stop_at is not None and s.stop_at <= run.step < s.steps):
            save(run)
            say(
                f"stopped at step {run.step}; saved to {run.out_dir}; continue: python train.py --resume {run.out_dir}",
                bar,
            )
            return {"interrupted" if stop.requested else "stopped": True}
    return {}


def log_row(row: dict, tok_s: float, elapsed: float) -> dict:
    """A line of metrics.jsonl for a training step."""
    return {
        "step": row["step"],
        "loss": round(row["loss"], 5),
        "lr": row["lr"],
        "grad_norm": round(row["grad_norm"], 5),
        **({"grad_norm_layers": [round(g, 5) for g in row["grad_norm_layers"]]} if "grad_norm_layers" in row else {}),
        "tokens_per_s": round(tok_s),
        "elapsed_s": round(elapsed, 2),
    }


def summary(run: Run, result: dict) -> dict:
    """What `train` returns besides the folder, and the closing line."""
    evals = [m for m in run.metrics if "val_loss" in m]
    out = {
        "step": run.step,
        "elapsed_s": run.elapsed,
        "parameters": run.model.num_parameters(),
        "train_loss": evals[-1]["train_loss"] if evals else None,
        "val_loss": evals[-1]["val_loss"] if evals else None,
        "tokens_per_s": run.step * run.tokens_per_step / run.elapsed if run.elapsed else None,
    }
    if run.dist.main and not (result.get("interrupted") or result.get("stopped")):
        say(f"done: {run.step} steps in {run.elapsed:.0f} s; val loss {out['val_loss']:.4f}; saved to {run.out_dir}")
    return out


def announce(run: Run) -> None:
    """What is about to be trained, and how."""
    cfg, s = run.model.config, run.s
    say(
        f"device {run.device}{' (bf16 autocast)' if run.bf16 else ''}, {run.dist.world} process(es); "
        f"{run.model.num_parameters():,} parameters; vocabulary {cfg.vocab_size}; context {run.block_size}; "
        f"{len(run.batches.data['train']):,} training tokens; {run.tokens_per_step:,} tokens per step"
    )
    if run.short_steps:
        say(
            f"steps 1-{run.short_steps}: {s.batch_size * (run.block_size // run.short_window)} windows of "
            f"{run.short_window} {'characters' if kind(run.tokenizer) == 'char' else 'tokens'} at random positions "
            f"per step; then {s.batch_size} full windows of "
            f"{run.block_size}"
        )
    if cfg.ablations:
        say(f"switches: {cfg.ablations}")


def progress_bar(run: Run):
    if not (run.dist.main and run.s.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=run.s.steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)


def leave_process_group(run: Run) -> None:
    """Tear down DDP in this order: drop the wrapper (its reducer holds a reference to the process group) while the
    group is alive, let gloo's worker threads finish (barrier releases the GIL), then destroy the group. Freeing the
    reducer after the group, with the GIL held, can deadlock in gloo's destructor."""
    import torch.distributed as tdist

    run.runner = run.model
    tdist.barrier()
    time.sleep(0.1)
    tdist.destroy_process_group()


class StopRequest:
    """First Ctrl-C: finish the step, save, exit. Second Ctrl-C: stop at once (the last save is kept)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def say(message: str, bar=None) -> None:
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)
