"""Train GPT-2 mini with a plain PyTorch loop, on CUDA, Apple MPS or CPU, and talk to what you trained.

    python train.py                                        # the default recipe: Tiny Shakespeare, ~3 min on 2 cores
    python train.py --corpus wagahai --save runs/wagahai   # 吾輩は猫である
    python train.py --disable_residual 1 --steps 100       # break it and watch
    python train.py --load runs/shakespeare --generate --prompt "ROMEO:"
    python train.py --load runs/shakespeare --interactive  # type a prompt, "quit" ends
    python train.py --resume runs/shakespeare --steps 2000 # continue exactly where it stopped
    torchrun --standalone --nproc_per_node=2 train.py ...  # DistributedDataParallel (gloo on CPU, NCCL on CUDA)
    python train.py --push-to-hub you/gpt2mini              # train, then publish the folder (publish.py's code)

What is notable:
- The loop reads like nanoGPT's: `setup` builds a `Run` (model, data, optimizer, where it stands), then `train` calls
  `train_step`, `evaluate_and_sample` and `save` on it until the last step.
- The output folder is a Hugging Face model folder that also holds the metrics log, the loss curve and everything
  `--resume` needs (checkpoint.py writes it atomically, so a crash or Ctrl-C never leaves a broken folder behind).
- Resuming is exact on CPU: the batch sampler, dropout RNG, optimizer and schedule continue where they stopped, so
  N steps in one go equal N/2 + N/2 with a resume in between.
- Ctrl-C saves a resumable checkpoint and exits; a non-finite loss stops with a message and keeps the last good save.
- At every evaluation the log also records each layer's attention entropy and residual-stream norm (probes.py), to
  see *how* an ablated model fails, not only that it does.
- The ablation flags (`--disable_residual 1`, `--ln_style post`, ...) are generated from the registry of switches
  in configuration_gpt2mini.py.
"""

import argparse
import contextlib
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from checkpoint import (
    OPTIMIZER_FILE,
    STATE_FILE,
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
from configuration_gpt2mini import PRESETS, SWITCHES, GPT2MiniConfig, choices, gpt2_value, preset, switch_fields
from corpus import CORPORA, CorpusError, load_corpus, train_val_split
from generation_gpt2mini import SamplingSettings, stream_text
from modeling_gpt2mini import GPT2MiniForCausalLM
from probes import grad_norms, probe
from tokenizer import (
    MIN_BPE_VOCAB,
    TOKENIZERS,
    build_bpe_tokenizer,
    build_tokenizer,
    config_for,
    encode,
    kind,
    unseen_characters,
    valid_text,
)


class NonFiniteLoss(Exception):
    """The loss or the gradient became NaN or infinite."""


# ---------------------------------------------------------------------------------------------------------------------
# Settings

SIZES = {"n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd", "block_size": "n_positions"}  # ours: config's


@dataclass
class TrainSettings:
    """Everything a run depends on. The defaults are the laptop-CPU recipe (see docs/training.md)."""

    # data
    corpus: str = "shakespeare"
    data: str | None = None
    val_fraction: float = 0.1
    train_fraction: float = 1.0  # the share of the training split that trains, from its start (data-scaling runs)
    tokenizer: str = "char"  # "char" (one token per character) or "bpe" (byte-level BPE, for comparison)
    vocab_size: int | None = None  # BPE's vocabulary (default: BPE_VOCAB); the character tokenizer's is the text's
    # model (None: the GPT2MiniConfig default, or the loaded model's value)
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float = 0.0
    switches: dict = field(default_factory=dict)  # config field: value, for the switches set away from GPT-2
    # optimisation
    steps: int = 1500
    short_context: int = 64
    short_fraction: float = 0.6
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 4e-3
    min_lr_ratio: float = 0.1  # the learning rate at the end, as a fraction of --lr: the schedule keeps its shape
    warmup: int = 100
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    seed: int = 1337
    # evaluation and logging
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    sample_chars: int = 120
    sample_prompt: str | None = None
    # where and how
    save: str | None = None
    load: str | None = None
    resume: str | None = None
    stop_at: int | None = None
    device: str = "auto"
    compile: bool = False
    progress: bool = True

    def model_overrides(self) -> dict:
        """The config fields the settings set explicitly: sizes given, and the switches."""
        sizes = {theirs: getattr(self, ours) for ours, theirs in SIZES.items() if getattr(self, ours) is not None}
        return sizes | self.switches

    def check(self) -> None:
        """A UsageError naming the flag for any setting a run cannot use (NaN and infinity fail every test here)."""
        positive = ("steps", "batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        for name in SIZES:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name} must be a positive integer, got {value}")
        if self.stop_at is not None and self.stop_at <= 0:
            raise UsageError(f"--stop_at must be a positive step, got {self.stop_at}")
        for name, (ok, what) in self.number_rules().items():
            if not ok(getattr(self, name)):
                raise UsageError(f"--{name} must be {what}, got {getattr(self, name)}")
        for name, value in self.switches.items():
            if name not in switch_fields() or value not in choices(name):
                raise UsageError(f"no switch sets {name} to {value!r} (configuration_gpt2mini.SWITCHES)")
        try:  # switches that cannot go together (RoPE without positions), refused before any text is read
            GPT2MiniConfig(**self.model_overrides())
        except ValueError as e:
            raise UsageError(f"these settings do not make a model: {e}") from None
        if self.tokenizer not in TOKENIZERS:
            raise UsageError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {self.tokenizer!r}")
        if self.vocab_size is not None and self.tokenizer != "bpe":
            raise UsageError("--vocab_size sets a BPE vocabulary: the character tokenizer's is the text's characters")
        if self.vocab_size is not None and self.vocab_size < MIN_BPE_VOCAB:
            raise UsageError(f"--vocab_size must be at least {MIN_BPE_VOCAB} (2 specials, 256 bytes, a merge)")
        if self.load and self.resume:
            raise UsageError("--load starts a new run from saved weights and --resume continues one: pick one")
        if self.load and self.model_overrides():
            flags = ", ".join(self.model_overrides())
            raise UsageError(f"the architecture comes from the loaded folder; drop {flags} or train from scratch")

    def number_rules(self) -> dict:
        """{setting: (test, what it must be)} for the real-valued settings."""
        finite = math.isfinite
        return {
            "lr": (lambda v: finite(v) and v > 0, "a finite number above 0"),
            "min_lr_ratio": (lambda v: 0 <= v <= 1, "between 0 and 1"),
            "val_fraction": (lambda v: 0 < v < 1, "between 0 and 1, both excluded"),
            "train_fraction": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
            "beta2": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
            "dropout": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
            "short_fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
            "short_context": (lambda v: v >= 0, "0 or more"),
            "warmup": (lambda v: v >= 0, "0 or more"),
            "weight_decay": (lambda v: finite(v) and v >= 0, "a finite number, 0 or more"),
            "grad_clip": (lambda v: finite(v) and v >= 0, "a finite number, 0 or more (0: off)"),
        }


def switches_from_flags(flags: dict) -> dict:
    """{config field: value} from train.py's switch flags ({"disable_residual": 1, "ln_style": "post"}): a preset's
    fields (`preset`, if any), then the blog's `--disable_X 1` for a true/false field and `--field value` for one with
    several values, each over the preset's; GPT-2's values drop out."""
    out = preset(flags["preset"]) if flags.get("preset") else {}
    for s in SWITCHES:
        given = flags.get(s.flag)
        if isinstance(gpt2_value(s.field), bool) and given == 1:  # 1 (or True), not 0 (== False)
            out[s.field] = s.value
        elif isinstance(gpt2_value(s.field), bool) and given == 0:  # typed (the flags default to None): GPT-2's value
            out.pop(s.field, None)  # `--preset llama --disable_bias 0`: Llama's recipe with biases
        elif not isinstance(gpt2_value(s.field), bool) and given == s.value:
            out[s.field] = s.value
        elif not isinstance(gpt2_value(s.field), bool) and given == gpt2_value(s.field):
            out.pop(s.field, None)  # `--preset llama --norm_style layernorm`: GPT-2's norm in Llama's recipe
    return out


def default_save_dir(s: TrainSettings) -> str:
    """runs/<corpus or file>[-<variant>...][-bpe<vocab>], e.g. runs/shakespeare-residual_off, runs/shakespeare-llama,
    runs/shakespeare-bpe2048."""
    name = Path(s.data).stem if s.data else s.corpus
    named = [p for p, fields in PRESETS.items() if len(fields) > 1 and fields == s.switches]  # runs/shakespeare-llama
    tags = named or [sw.variant for sw in SWITCHES if s.switches.get(sw.field) == sw.value]
    if s.tokenizer == "bpe":
        tags.append(f"bpe{s.vocab_size or BPE_VOCAB}")
    return str(Path("runs") / "-".join([name, *tags]))


ARCHITECTURE = (*SIZES, "preset", *dict.fromkeys(s.flag for s in SWITCHES))  # what a resumed run keeps


def resume_settings(folder: str | Path, **changes) -> TrainSettings:
    """The settings a saved run was trained with, pointed at its folder, with `changes` (e.g. more `steps`)."""
    fixed = sorted(set(changes) & set(ARCHITECTURE))
    if fixed:
        raise UsageError(f"a resumed run keeps its architecture; drop {', '.join('--' + f for f in fixed)}")
    saved = read_state(folder)["settings"]
    saved.setdefault("switches", switches_from_flags(saved))  # a folder saved when each switch had its own field
    if "min_lr" in saved and "min_lr_ratio" not in saved:  # saved when the end rate was absolute: same schedule
        saved["min_lr_ratio"] = saved["min_lr"] / saved["lr"] if saved.get("lr") else 0.0
    names = {f.name for f in fields(TrainSettings)}
    s = TrainSettings(**{k: v for k, v in saved.items() if k in names})
    s.resume, s.load, s.save, s.stop_at = str(folder), None, None, None
    for k, v in changes.items():
        setattr(s, k, v)
    try:
        s.check()
    except (TypeError, AttributeError):
        raise UsageError(f"{Path(folder) / STATE_FILE} has settings of the wrong type (a damaged file?)") from None
    return s


# ---------------------------------------------------------------------------------------------------------------------
# Devices and distributed training


def pick_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible to PyTorch")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple's Metal backend is not available here")
    if not (name == "cpu" or name == "mps" or name.startswith("cuda")):
        raise UsageError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return torch.device(name)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Under torchrun (WORLD_SIZE > 1) join the process group: NCCL on CUDA, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), pick_device(device_name)
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank), device


# ---------------------------------------------------------------------------------------------------------------------
# Data


class Batches:
    """Random windows of the encoded corpus. Tokens are encoded once; a batch is an index gather.

    All ranks draw the same global batch from one generator and each keeps its own slice, so a distributed step sees
    exactly the batch a single process with `world` times the batch size would see.
    """

    def __init__(self, train_ids, val_ids, block_size, batch_size, seed, dist: Dist, device):
        self.data = {"train": train_ids, "val": val_ids}
        for split, ids in self.data.items():
            if len(ids) < block_size + 2:
                raise UsageError(
                    f"the {split} split has {len(ids)} tokens, too few for a context of {block_size}: "
                    "use more text or a smaller --block_size"
                )
        self.block_size, self.batch_size, self.dist, self.device = block_size, batch_size, dist, device
        self.generator = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(block_size + 1)

    def sample(self, split: str, generator: torch.Generator | None = None, window: int | None = None):
        """(x, y, position_ids): `batch_size` random windows of the context length, y one character ahead of x.

        With `window` shorter than the context, the same number of tokens comes as more, shorter windows, each placed
        at a random offset inside the context (position_ids says where), so every position embedding keeps training.
        position_ids is None for full windows (the model counts from 0)."""
        ids = self.data[split]
        g = generator or self.generator
        T = window if window and window < self.block_size else self.block_size
        B = self.batch_size * (self.block_size // T)
        starts = torch.randint(len(ids) - T - 1, (B * self.dist.world,), generator=g)
        starts = starts[self.dist.rank * B : (self.dist.rank + 1) * B]
        batch = ids[starts[:, None] + self.offsets[: T + 1]].long()  # (B, T + 1)
        x, y, pos = batch[:, :-1], batch[:, 1:], None
        if T < self.block_size:
            shift = torch.randint(self.block_size - T + 1, (B * self.dist.world,), generator=g)
            pos = shift[self.dist.rank * B : (self.dist.rank + 1) * B, None] + self.offsets[:T]
        if self.device.type == "cuda":
            x, y = x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device), (pos.to(self.device) if pos is not None else None)

    def fixed(self, split: str, n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`n` batches that are the same every time (and on every resume): evaluation compares like with like."""
        g = torch.Generator().manual_seed(seed)
        return [self.sample(split, g) for _ in range(n)]


# ---------------------------------------------------------------------------------------------------------------------
# Optimisation


def lr_at(step: int, s: TrainSettings) -> float:
    """Linear warmup, then cosine decay from lr to lr * min_lr_ratio at the last step."""
    if step < s.warmup:
        return s.lr * (step + 1) / (s.warmup + 1)
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    low = s.lr * s.min_lr_ratio
    return low + 0.5 * (s.lr - low) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, s: TrainSettings, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases or LayerNorm), fused where the device has it."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=s.lr, betas=(0.9, s.beta2), eps=1e-8)
    try:
        return torch.optim.AdamW(groups, fused=device.type in ("cuda", "cpu", "mps"), **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, **kwargs)


def optimizer_tensors(model, optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state keyed by parameter name, for safetensors."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for p, state in optimizer.state.items():
        for key, value in state.items():
            out[f"{names[id(p)]}::{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return out


def load_optimizer_tensors(model, optimizer, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        if "::" not in key or key.startswith("rng::"):
            continue
        name, field_name = key.split("::")
        p = params[name]
        if field_name != "step" and value.shape != p.shape:
            raise ValueError(f"{key} has shape {tuple(value.shape)}, the parameter {tuple(p.shape)}")
        optimizer.state[p][field_name] = value.to(p.device) if field_name != "step" else value.to(torch.float32)


def rng_tensors(batches: Batches) -> dict[str, torch.Tensor]:
    out = {"rng::torch": torch.get_rng_state(), "rng::batches": batches.generator.get_state()}
    if torch.cuda.is_available():
        out["rng::cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(tensors: dict[str, torch.Tensor], batches: Batches) -> None:
    torch.set_rng_state(tensors["rng::torch"])
    batches.generator.set_state(tensors["rng::batches"])
    if "rng::cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng::cuda"])


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


def lm_loss(model, x: torch.Tensor, y: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the next-character predictions for inputs x (B, T) against targets y = x shifted by one.

    (The model's own `labels=` shifts inside, like every transformers causal LM; the batches here come shifted.)"""
    logits = model(x, position_ids=position_ids, use_cache=False).logits  # (B, T, vocab)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


@torch.no_grad()
def evaluate(model, batches: dict[str, list], autocast) -> dict[str, float]:
    """Mean loss over fixed batches of each split."""
    was_training = model.training
    model.eval()
    out = {}
    for split, items in batches.items():
        losses = []
        for x, y, _ in items:
            with autocast():
                losses.append(lm_loss(model, x, y).item())
        out[f"{split}_loss"] = sum(losses) / len(losses)
    model.train(was_training)
    return out


@torch.no_grad()
def split_loss(model, ids: torch.Tensor, block_size: int, batch_size: int = 32) -> float:
    """Mean next-character loss over a whole split, cut into non-overlapping windows of `block_size` + 1."""
    model.eval()
    n = (len(ids) - 1) // block_size
    if n == 0:
        raise UsageError(f"the text has {len(ids)} tokens, fewer than one window of {block_size + 1}")
    starts = torch.arange(n) * block_size
    window = torch.arange(block_size + 1)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, n, batch_size):
        chunk = ids[starts[i : i + batch_size, None] + window].long().to(device)
        logits = model(chunk[:, :-1], use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum")
        total += loss.item()
        count += chunk[:, 1:].numel()
    return total / count


def short_phase(s: TrainSettings, block_size: int) -> tuple[int | None, int]:
    """The curriculum's first phase: the width of its short windows and how many steps it lasts ((None, 0): off)."""
    window = s.short_context if 0 < s.short_context < block_size else None
    return window, round(s.short_fraction * s.steps) if window else 0


def bits_per_char(loss: float, tokenizer, ids: torch.Tensor, block_size: int) -> float:
    """split_loss (nats per token) as bits per character of the text its windows predict: comparable across
    tokenizers, whose tokens hold different numbers of characters."""
    n = (len(ids) - 1) // block_size * block_size  # the targets split_loss scored: ids[1 : n + 1]
    chars = len(tokenizer.decode(ids[1 : n + 1].tolist(), skip_special_tokens=True))
    return loss * n / chars / math.log(2)


def sample(model, tokenizer, prompt: str, n: int) -> str:
    was_training = model.training
    model.eval()
    text = "".join(stream_text(model, tokenizer, prompt, max_new_tokens=n, temperature=0.8, top_k=40, seed=0))
    model.train(was_training)
    return text


# ---------------------------------------------------------------------------------------------------------------------
# The training run


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


BPE_VOCAB = 2048  # --tokenizer bpe without --vocab_size


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


# ---------------------------------------------------------------------------------------------------------------------
# Generation from the command line


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


def repeat_command(s: TrainSettings) -> str:
    """The train.py command line that repeats a run (the flags that differ from the defaults)."""
    default = asdict(TrainSettings())
    skip = {"save", "load", "resume", "stop_at", "device", "progress", "compile", "switches"}
    parts = ["python train.py"]
    for key, value in asdict(s).items():
        if key in skip or value == default[key] or value is None:
            continue
        if key == "data":
            value = Path(value).name
        parts.append(f"--{key} {shlex.quote(str(value))}")
    for sw in SWITCHES:
        if s.switches.get(sw.field) == sw.value:
            parts.append(f"--{sw.flag} {1 if isinstance(sw.value, bool) else sw.value}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------------
# Command line


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
    import publish

    if args.generate or args.interactive or args.evaluate or args.stop_at:
        raise UsageError("--push-to-hub publishes a finished training run; for a saved folder use publish.py")
    publish.check_repo_id(args.push_to_hub)
    publish.check_can_upload(None)


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


def settings_from_args(args) -> TrainSettings:
    """The TrainSettings that train.py's parsed flags describe (a new run)."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainSettings) if hasattr(args, f.name)}
    values["progress"] = not args.no_progress
    return TrainSettings(**values, switches=switches_from_flags(vars(args)))


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
    """Publish a finished run's folder with publish.py's code (model card, one commit)."""
    import publish

    try:
        publish.publish_model(result["folder"], repo_id, report=lambda line: print(line, file=sys.stderr))
    except publish.PublishError as e:
        print(f"error: {e}; the model is saved in {result['folder']}", file=sys.stderr)
        return 1
    return 0


def explicit_args(argv: list[str] | None) -> set[str]:
    """The destinations of the options actually typed on the command line."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _finish(result: dict) -> int:
    return 130 if result.get("interrupted") else 0


if __name__ == "__main__":
    raise SystemExit(main())
