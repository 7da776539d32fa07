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
- The output folder is a Hugging Face model folder (`save_pretrained` + tokenizer) that also holds the metrics log
  (`metrics.jsonl`), the loss curve (`loss_curve.png`) and everything `--resume` needs (`trainer_state.json`,
  `optimizer.safetensors`: optimizer moments and RNG states; no pickle). Each save is atomic: the new folder is
  written beside the old one and swapped in, so a crash or Ctrl-C never leaves a broken folder behind.
- Resuming is exact on CPU: the batch sampler, dropout RNG, optimizer and schedule continue where they stopped, so
  N steps in one go equal N/2 + N/2 with a resume in between.
- Ctrl-C saves a resumable checkpoint and exits; a non-finite loss stops with a message and keeps the last good save.
- At every evaluation the log also records each layer's attention entropy and residual-stream norm, to see *how* an
  ablated model fails, not only that it does.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from configuration_gpt2mini import LN_STYLES
from corpus import CORPORA, CorpusError, load_corpus, train_val_split
from modeling_gpt2mini import GPT2MiniForCausalLM, stream_text
from tokenizer import build_tokenizer, config_for, valid_text

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "loss_curve.png"


class UsageError(Exception):
    """A mistake in what the user asked for: reported as one line, exit code 2, nothing written."""


class NonFiniteLoss(Exception):
    """The loss or the gradient became NaN or infinite."""


# ---------------------------------------------------------------------------------------------------------------------
# Settings


@dataclass
class TrainSettings:
    """Everything a run depends on. The defaults are the laptop-CPU recipe (see README "Training")."""

    # data
    corpus: str = "shakespeare"
    data: str | None = None
    val_fraction: float = 0.1
    # model (None: the GPT2MiniConfig default, or the loaded model's value)
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float = 0.0
    disable_residual: int = 0
    disable_attention: int = 0
    disable_mlp: int = 0
    disable_position_embeddings: int = 0
    untie_embeddings: int = 0
    ln_style: str | None = None
    # optimisation
    steps: int = 1500
    short_context: int = 64
    short_fraction: float = 0.6
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 4e-3
    min_lr: float = 4e-4
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
        """The config fields the command line sets explicitly."""
        out = {}
        for ours, theirs in (
            ("n_layer", "n_layer"),
            ("n_head", "n_head"),
            ("n_embd", "n_embd"),
            ("block_size", "n_positions"),
            ("ln_style", "ln_style"),
        ):
            if getattr(self, ours) is not None:
                out[theirs] = getattr(self, ours)
        for flag, field_name in (
            ("disable_residual", "use_residual"),
            ("disable_attention", "use_attention"),
            ("disable_mlp", "use_mlp"),
            ("disable_position_embeddings", "use_position_embeddings"),
            ("untie_embeddings", "tie_word_embeddings"),
        ):
            if getattr(self, flag):
                out[field_name] = False
        return out

    def check(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name} must be a positive integer, got {value}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise UsageError(f"need 0 <= --min_lr <= --lr and --lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.stop_at is not None and self.stop_at <= 0:
            raise UsageError(f"--stop_at must be a positive step, got {self.stop_at}")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.short_context < 0 or not 0 <= self.short_fraction <= 1:
            raise UsageError(
                f"need --short_context >= 0 and 0 <= --short_fraction <= 1, got {self.short_context} and "
                f"{self.short_fraction}"
            )
        if self.warmup < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise UsageError("--warmup, --grad_clip and --weight_decay must not be negative")
        if self.ln_style is not None and self.ln_style not in LN_STYLES:
            raise UsageError(f"--ln_style must be one of {', '.join(LN_STYLES)}, got {self.ln_style!r}")
        if self.load and self.resume:
            raise UsageError("--load starts a new run from saved weights and --resume continues one: pick one")
        if self.load and self.model_overrides():
            flags = ", ".join(self.model_overrides())
            raise UsageError(f"the architecture comes from the loaded folder; drop {flags} or train from scratch")


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


def encode(tokenizer, text: str) -> torch.Tensor:
    """The whole text as token ids (int32), once per run.

    A character tokenizer maps each character to one id, so a dictionary lookup does it in a fraction of the
    tokenizer's time; text with characters outside the vocabulary goes through the tokenizer (byte fallback)."""
    vocab = tokenizer.get_vocab()
    try:
        ids = list(map(vocab.__getitem__, text))
    except KeyError:
        ids = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids
    return torch.tensor(ids, dtype=torch.int32)


# ---------------------------------------------------------------------------------------------------------------------
# Optimisation


def lr_at(step: int, s: TrainSettings) -> float:
    """Linear warmup, then cosine decay from lr to min_lr at the last step."""
    if step < s.warmup:
        return s.lr * (step + 1) / (s.warmup + 1)
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


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
def probe(model: GPT2MiniForCausalLM, x: torch.Tensor) -> dict[str, list]:
    """Per layer: mean attention entropy (nats; None where attention is off) and mean residual-stream norm after
    the block."""
    was_training = model.training
    model.eval()
    norms = []
    hooks = [
        block.register_forward_hook(lambda _m, _i, out: norms.append(out[0].float().norm(dim=-1).mean().item()))
        for block in model.transformer.h
    ]
    try:
        attn = model(x, output_attentions=True, use_cache=False).attentions
    finally:
        for h in hooks:
            h.remove()
    entropy = [None if w is None else (-(w.float() * (w.float() + 1e-12).log()).sum(-1)).mean().item() for w in attn]
    model.train(was_training)
    return {"attn_entropy": entropy, "resid_norm": norms}


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


def sample(model, tokenizer, prompt: str, n: int) -> str:
    was_training = model.training
    model.eval()
    text = "".join(stream_text(model, tokenizer, prompt, max_new_tokens=n, temperature=0.8, top_k=40, seed=0))
    model.train(was_training)
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Saving and loading


def _siblings(out_dir: Path, kind: str) -> list[Path]:
    return sorted(out_dir.parent.glob(f".{out_dir.name}.{kind}-*"))


def _alive(path: Path) -> bool:
    """Whether the process that named a `.partial-PID` / `.old-PID` folder is still running (its save is not over)."""
    try:
        pid = int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # this process is not inside a save while it recovers
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def recover_interrupted_save(out_dir: Path) -> None:
    """Undo what a save killed half-way may have left: a stray partial folder, or the old folder moved aside.

    Folders of a process that is still running are left alone: its save is in progress, not interrupted."""
    out_dir = Path(out_dir)
    if not out_dir.parent.exists():
        return
    for partial in _siblings(out_dir, "partial"):
        if not _alive(partial):
            shutil.rmtree(partial, ignore_errors=True)
    for old in _siblings(out_dir, "old"):
        if _alive(old):
            continue
        if not out_dir.exists():
            os.replace(old, out_dir)  # killed between the two renames: the previous save comes back
        else:
            shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(out_dir: Path, write: Callable[[Path], None]) -> None:
    """Write a folder with `write(tmp)` next to `out_dir`, then swap it in. Readers never see a half-written folder;
    if anything fails before the swap, the previous folder is untouched.

    What a kill (even SIGKILL) can leave at each point, and what `recover_interrupted_save` makes of it on the next
    load or save: during `write`, a `.partial-PID` folder (deleted); between the two renames, the previous folder as
    `.old-PID` and no `out_dir` (moved back); after them, a stale `.old-PID` (deleted)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_save(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    _fsync_dir(out_dir.parent)
    shutil.rmtree(old, ignore_errors=True)


def read_json(path: Path) -> dict:
    """The JSON object in `path`, or a UsageError naming the file."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text (a damaged file?)") from None
    except ValueError as e:
        raise UsageError(f"{path} is not valid JSON ({e})") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a JSON object")
    return data


def is_checkpoint(folder: Path) -> bool:
    try:
        return read_json(Path(folder) / "config.json").get("model_type") == "gpt2mini"
    except UsageError:
        return False


def _one_line(e: Exception, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sha256_of(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(folder: Path, names: tuple[str, ...]) -> None:
    """Compare files with the SHA-256 that train.py recorded in trainer_state.json when it saved them (folders that
    train.py did not write, such as the shipped fp16 models or a Hub download, have no record and are not checked).
    Safetensors has no checksum of its own: without this, a flipped byte inside a tensor would load silently."""
    try:
        recorded = json.loads((folder / STATE_FILE).read_text()).get("sha256") or {}
    except (OSError, ValueError, AttributeError):
        return  # no record (or a damaged state file, which --resume reports by name)
    for name in names:
        want = recorded.get(name) if isinstance(recorded, dict) else None
        if want and (folder / name).is_file() and sha256_of(folder / name) != want:
            raise UsageError(
                f"{folder / name} is damaged: its SHA-256 differs from the one train.py recorded in {STATE_FILE} "
                "when it saved it"
            )


@contextlib.contextmanager
def _quiet_transformers():
    """No load report or progress bar from transformers: a problem becomes our own one-line message instead."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_config(folder: Path, raw: dict):
    """The folder's GPT2MiniConfig, or a UsageError naming config.json and the field that is wrong."""
    from configuration_gpt2mini import GPT2MiniConfig

    try:
        with _quiet_transformers():
            return GPT2MiniConfig.from_pretrained(folder)
    except Exception as e:  # transformers and huggingface_hub validate with their own exception types
        message = _one_line(e)
        if not isinstance(e, ValueError) or message.startswith("Class validation"):
            # transformers' token-id check runs before the config's own validation and cannot name the field;
            # build the config again without the token ids to get the config's own message
            try:
                GPT2MiniConfig(**(raw | {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}))
            except Exception as own:
                message = _one_line(own)
        raise UsageError(f"{folder / 'config.json'} has an invalid value: {message}") from None


def _weights_problem(info: dict) -> str | None:
    """What `from_pretrained`'s loading info says is wrong between the weights and the config, in one phrase."""

    def listed(keys) -> str:
        keys = sorted(keys)
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        name, in_file, expected = mismatched[0]
        return f"{name} is {tuple(in_file)} in the file but {tuple(expected)} for the config" + (
            f" (and {len(mismatched) - 1} more tensors differ)" if len(mismatched) > 1 else ""
        )
    if info.get("missing_keys"):
        return f"tensors missing from the file: {listed(info['missing_keys'])}"
    if info.get("unexpected_keys"):
        return f"tensors the config has no place for: {listed(info['unexpected_keys'])}"
    if info.get("error_msgs"):
        return "; ".join(str(m).splitlines()[0] for m in info["error_msgs"])
    return None


MODEL_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"


def load_model_folder(folder: str | Path, device: torch.device | None = None):
    """Model and tokenizer from a saved folder, or a UsageError that names the file at fault.

    Checked: config.json is a GPT-2 mini config with valid values; every JSON file parses; model.safetensors is
    complete (not truncated, a readable header), matches the config tensor for tensor (no missing, extra or
    differently shaped tensors), holds only finite numbers and, in a folder train.py saved, has the SHA-256 it was
    saved with; tokenizer.json loads and belongs to the model (same vocabulary size and special-token ids). The
    model code is this project's: the folder's own copies of the model files are never run."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    recover_interrupted_save(folder)
    if not folder.is_dir():
        raise UsageError(f"no model folder at {folder}")
    config_file, weights, tok_file = folder / "config.json", folder / MODEL_FILE, folder / TOKENIZER_FILE
    if not config_file.exists():
        raise UsageError(f"{folder} is not a GPT-2 mini model folder (no config.json)")
    raw = read_json(config_file)
    if raw.get("model_type") != "gpt2mini":
        raise UsageError(f"{config_file} is not a GPT-2 mini config (model_type must be 'gpt2mini')")
    if not weights.exists():
        raise UsageError(f"{folder} has no {MODEL_FILE}")
    if not tok_file.exists():
        raise UsageError(f"{folder} has no {TOKENIZER_FILE} (save the tokenizer next to the model)")
    for name in (TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if (folder / name).exists():
            read_json(folder / name)  # a damaged file is named here, not deep inside a library
    config = load_config(folder, raw)
    try:
        with _quiet_transformers():
            model, info = GPT2MiniForCausalLM.from_pretrained(
                folder, config=config, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except SafetensorError as e:
        raise UsageError(f"cannot load {weights}: damaged or truncated ({_one_line(e)})") from None
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise UsageError(f"cannot load {weights}: {_one_line(e)}") from None
    problem = _weights_problem(info)
    if problem:
        raise UsageError(f"{weights} does not match {config_file}: {problem}")
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise UsageError(f"{weights}: {name} holds NaN or infinite values (a damaged file, or a diverged run)")
    verify_checksums(folder, (MODEL_FILE,))  # what is left: damage that still parses, e.g. one flipped byte
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # the tokenizers library raises its own exception types
        raise UsageError(f"cannot load {tok_file}: {_one_line(e)}") from None
    if len(tokenizer) != model.config.vocab_size:
        raise UsageError(
            f"{folder}: tokenizer.json has {len(tokenizer)} tokens but the model's vocabulary is "
            f"{model.config.vocab_size} (config.json): they do not belong together"
        )
    for which in ("bos_token_id", "eos_token_id", "pad_token_id"):
        ours, theirs = getattr(model.config, which, None), getattr(tokenizer, which, None)
        if ours is not None and theirs is not None and ours != theirs:
            raise UsageError(
                f"{folder}: tokenizer.json has {which} {theirs} but config.json has {ours}: they do not belong together"
            )
    return (model.to(device) if device is not None else model), tokenizer


def save_checkpoint(out_dir, model, tokenizer, optimizer, state: dict, metrics: list[dict], rng: dict) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar inside ours

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_file(optimizer_tensors(model, optimizer) | rng, tmp / OPTIMIZER_FILE)
        # safetensors has no checksum of its own: record one, so that a damaged file is caught when loaded
        sums = {name: sha256_of(tmp / name) for name in (MODEL_FILE, OPTIMIZER_FILE)}
        (tmp / STATE_FILE).write_text(json.dumps(state | {"sha256": sums}, indent=2, ensure_ascii=False))
        with open(tmp / METRICS_FILE, "w") as f:
            for row in metrics:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        plot_losses(metrics, tmp / CURVE_FILE, title=state.get("title", ""))

    atomic_save(Path(out_dir), write)


def plot_losses(metrics: list[dict], path: Path, title: str = "") -> None:
    """Training loss (per logged step) and evaluated train/validation loss against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    logged = [m for m in metrics if "loss" in m]
    evals = [m for m in metrics if "val_loss" in m]
    if logged:
        ax.plot([m["step"] for m in logged], [m["loss"] for m in logged], lw=0.8, alpha=0.5, label="batch loss")
    if evals:
        ax.plot([m["step"] for m in evals], [m["train_loss"] for m in evals], "o-", ms=3, label="train (eval)")
        ax.plot([m["step"] for m in evals], [m["val_loss"] for m in evals], "o-", ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / character)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
# Training


class StopRequest:
    """First Ctrl-C: finish the step, save, exit. Second Ctrl-C: stop at once (the last save is kept)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading_main():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def default_save_dir(s: TrainSettings) -> str:
    name = Path(s.data).stem if s.data else s.corpus
    tags = [k for k, v in s.model_overrides().items() if k not in ("n_layer", "n_head", "n_embd", "n_positions")]
    suffix = "".join(f"-{t}" for t in tags)
    return str(Path("runs") / f"{name}{suffix}")


ARCHITECTURE = (
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "ln_style",
    "disable_residual",
    "disable_attention",
    "disable_mlp",
    "disable_position_embeddings",
    "untie_embeddings",
)


def read_metrics(folder: str | Path) -> list[dict]:
    """The rows of a run folder's metrics log (none if it has no log), or a UsageError naming the line that is not
    a JSON object."""
    path = Path(folder) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text (a damaged file?)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise UsageError(f"{path}, line {number}, is not a JSON object (a damaged log?)")
        rows.append(row)
    return rows


def read_state(folder: str | Path) -> dict:
    folder = Path(folder)
    recover_interrupted_save(folder)
    if not (folder / STATE_FILE).exists() or not (folder / OPTIMIZER_FILE).exists():
        raise UsageError(
            f"cannot resume from {folder}: no {STATE_FILE} and {OPTIMIZER_FILE} there (a folder saved "
            "by train.py is needed)"
        )
    state = read_json(folder / STATE_FILE)
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0 or not isinstance(state.get("settings"), dict):
        raise UsageError(f"{folder / STATE_FILE} has no valid 'step' and 'settings' (a damaged file?)")
    return state


def resume_settings(folder: str | Path, **changes) -> TrainSettings:
    """The settings a saved run was trained with, pointed at its folder, with `changes` (e.g. more `steps`)."""
    fixed = sorted(set(changes) & set(ARCHITECTURE))
    if fixed:
        raise UsageError(f"a resumed run keeps its architecture; drop {', '.join('--' + f for f in fixed)}")
    saved = read_state(folder)["settings"]
    names = {f.name for f in fields(TrainSettings)}
    s = TrainSettings(**{k: v for k, v in saved.items() if k in names})
    s.resume, s.load, s.save, s.stop_at = str(folder), None, None, None
    for k, v in changes.items():
        setattr(s, k, v)
    try:
        s.check()
    except TypeError:
        raise UsageError(f"{Path(folder) / STATE_FILE} has settings of the wrong type (a damaged file?)") from None
    return s


def load_resume_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """optimizer.safetensors (optimizer moments and RNG states), or a UsageError naming it."""
    path = Path(folder) / OPTIMIZER_FILE
    try:
        tensors = load_file(path)
    except SafetensorError as e:
        raise UsageError(f"cannot load {path}: damaged or truncated ({_one_line(e)})") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    verify_checksums(Path(folder), (OPTIMIZER_FILE,))
    return tensors


def train(settings: TrainSettings | None = None, **overrides) -> dict:
    """Run a training; return a summary (final losses, steps, folder, tokens/s). See `TrainSettings` for options."""
    s = settings or TrainSettings()
    for k, v in overrides.items():
        if k not in {f.name for f in fields(TrainSettings)}:
            raise TypeError(f"unknown training setting {k!r}")
        setattr(s, k, v)

    resume_state = None
    if s.resume:
        resume_state = read_state(s.resume)
        s.save = s.save or s.resume
    s.check()
    dist, device = init_distributed(s.device)
    torch.manual_seed(s.seed + dist.rank)
    out_dir = Path(s.save or default_save_dir(s))

    # data and model
    if s.resume or s.load:
        model, tokenizer = load_model_folder(s.resume or s.load)
        if s.dropout:
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = s.dropout
    text = load_corpus(s.data) if s.data else load_corpus(s.corpus)
    train_text, val_text = train_val_split(text, s.val_fraction)
    if not (s.resume or s.load):
        tokenizer = build_tokenizer(text)
        cfg = config_for(
            tokenizer, embd_pdrop=s.dropout, attn_pdrop=s.dropout, resid_pdrop=s.dropout, **s.model_overrides()
        )
        tokenizer.model_max_length = cfg.n_positions
        model = GPT2MiniForCausalLM(cfg)
    model.to(device).train()
    cfg = model.config
    block_size = cfg.n_positions
    batches = Batches(
        encode(tokenizer, train_text), encode(tokenizer, val_text), block_size, s.batch_size, s.seed, dist, device
    )
    fixed = {"train": batches.fixed("train", s.eval_iters, seed=1), "val": batches.fixed("val", s.eval_iters, seed=2)}
    optimizer = make_optimizer(model, s, device)

    step, metrics, elapsed = 0, [], 0.0
    if resume_state is not None:
        tensors = load_resume_tensors(Path(s.resume))
        try:
            load_optimizer_tensors(model, optimizer, tensors)
            restore_rng(tensors, batches)
        except (KeyError, ValueError, RuntimeError) as e:
            raise UsageError(
                f"{Path(s.resume) / OPTIMIZER_FILE} does not fit the model in {s.resume}: {_one_line(e)}"
            ) from None
        step, elapsed = resume_state["step"], resume_state.get("elapsed_s", 0.0)
        metrics = read_metrics(s.resume)
        if step >= s.steps:
            raise UsageError(f"{s.resume} is already at step {step}; pass a larger --steps to continue")

    runner = model
    if s.compile:
        runner = torch.compile(model)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    prompt = s.sample_prompt or (CORPORA[s.corpus].sample_prompt if not s.data else "\n")
    title = f"{s.data or s.corpus}: {cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}d ctx {cfg.n_positions}" + (
        " | " + ", ".join(f"{k}={v}" for k, v in cfg.ablations.items()) if cfg.ablations else ""
    )
    tokens_per_step = s.batch_size * s.grad_accum * block_size * dist.world
    # The short-window phase: the same tokens per step as more, shorter windows at random offsets (see README)
    short = s.short_context if 0 < s.short_context < block_size else None
    short_steps = round(s.short_fraction * s.steps) if short else 0
    saved = {"step": step if resume_state is not None else None}  # the step the folder on disk holds

    def state_dict() -> dict:
        return {
            "step": step,
            "elapsed_s": elapsed,
            "settings": asdict(s) | {"save": str(out_dir)},
            "title": title,
            "tokens_per_step": tokens_per_step,
            "world_size": dist.world,
            "device": str(device),
            "parameters": model.num_parameters(),
            "torch": torch.__version__,
        }

    def eval_row() -> dict:
        return {"step": step} | evaluate(model, fixed, autocast) | probe(model, fixed["val"][0][0][:4])

    def save() -> None:
        if dist.main and saved["step"] != step:
            save_checkpoint(out_dir, model, tokenizer, optimizer, state_dict(), metrics, rng_tensors(batches))
            saved["step"] = step

    if dist.main:
        say(
            f"device {device}{' (bf16 autocast)' if use_bf16 else ''}, {dist.world} process(es); "
            f"{model.num_parameters():,} parameters; vocabulary {cfg.vocab_size}; context {block_size}; "
            f"{len(batches.data['train']):,} training tokens; {tokens_per_step:,} tokens per step"
        )
        if short_steps:
            say(
                f"steps 1-{short_steps}: {s.batch_size * (block_size // short)} windows of {short} characters at "
                f"random positions per step; then {s.batch_size} full windows of {block_size}"
            )
        if cfg.ablations:
            say(f"ablations: {cfg.ablations}")
    bar = None
    if dist.main and s.progress:
        from tqdm import tqdm

        bar = tqdm(total=s.steps, initial=step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)

    result = {"folder": str(out_dir)}
    window_tokens, window_time = 0, 0.0
    with StopRequest() as stop:
        if dist.main:  # said once Ctrl-C is handled, so a wrapper can wait for this line before it may interrupt
            say(f"training steps {step + 1}-{s.steps}; Ctrl-C saves a checkpoint and stops", bar)
        try:
            if step == 0 and dist.main:  # where the curves start: about ln(vocab) for a fresh model
                metrics.append(eval_row())
            while step < s.steps:
                t0 = time.perf_counter()
                lr = lr_at(step, s)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum, step_tokens = 0.0, 0
                for micro in range(s.grad_accum):
                    x, y, pos = batches.sample("train", window=short if step < short_steps else None)
                    sync = dist.world == 1 or micro == s.grad_accum - 1
                    ctx = contextlib.nullcontext() if sync else runner.no_sync()
                    with ctx, autocast():
                        loss = lm_loss(runner, x, y, pos) / s.grad_accum
                    with ctx:
                        loss.backward()
                    loss_sum += loss.item()
                    step_tokens += x.numel() * dist.world
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip or float("inf")).item()
                if not (math.isfinite(loss_sum) and math.isfinite(grad_norm)):
                    raise NonFiniteLoss(f"the loss became {loss_sum} (gradient norm {grad_norm}) at step {step + 1}")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                dt = time.perf_counter() - t0
                elapsed += dt
                window_tokens += step_tokens
                window_time += dt
                tok_s = window_tokens / window_time
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                if step % s.log_interval == 0 or step == s.steps:
                    metrics.append(
                        {
                            "step": step,
                            "loss": round(loss_sum, 5),
                            "lr": lr,
                            "grad_norm": round(grad_norm, 5),
                            "tokens_per_s": round(tok_s),
                            "elapsed_s": round(elapsed, 2),
                        }
                    )
                    window_tokens, window_time = 0, 0.0
                if step % s.eval_interval == 0 or step == s.steps:
                    if dist.main:
                        row = eval_row()
                        metrics.append(row)
                        text = sample(model, tokenizer, prompt, s.sample_chars)
                        say(
                            f"step {step}: train {row['train_loss']:.4f}, val {row['val_loss']:.4f}\n"
                            f"  {(prompt + text)!r}",
                            bar,
                        )
                    save()
                if stop.requested or (s.stop_at is not None and s.stop_at <= step < s.steps):
                    save()
                    say(
                        f"stopped at step {step}; saved to {out_dir}; continue: python train.py --resume {out_dir}",
                        bar,
                    )
                    result["interrupted" if stop.requested else "stopped"] = True
                    break
        except NonFiniteLoss as e:
            if bar is not None:
                bar.close()
            kept = (
                f"the last good checkpoint (step {saved['step']}) is kept in {out_dir}"
                if saved["step"] is not None
                else "nothing was saved"
            )
            raise NonFiniteLoss(f"{e}; stopping. Lower --lr or keep --grad_clip on; {kept}") from None
        finally:
            if bar is not None:
                bar.close()
            if dist.world > 1:
                import torch.distributed as tdist

                # Tear down in this order: drop the DDP wrapper (its reducer holds a reference to the process group)
                # while the group is alive, let gloo's worker threads finish (barrier releases the GIL), then destroy
                # the group. Freeing the reducer after the group, with the GIL held, can deadlock in gloo's
                # destructor.
                runner = model
                tdist.barrier()
                time.sleep(0.1)
                tdist.destroy_process_group()

    evals = [m for m in metrics if "val_loss" in m]
    result.update(
        step=step,
        elapsed_s=elapsed,
        parameters=model.num_parameters(),
        train_loss=evals[-1]["train_loss"] if evals else None,
        val_loss=evals[-1]["val_loss"] if evals else None,
        tokens_per_s=step * tokens_per_step / elapsed if elapsed else None,
    )
    if dist.main and not (result.get("interrupted") or result.get("stopped")):
        say(f"done: {step} steps in {elapsed:.0f} s; val loss {result['val_loss']:.4f}; saved to {out_dir}")
    return result


def say(message: str, bar=None) -> None:
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------------
# Generation from the command line


def unseen_characters(tokenizer, text: str) -> list[str]:
    """Characters of `text` that are not in the vocabulary (they would be fed as UTF-8 bytes the model never saw)."""
    vocab = tokenizer.get_vocab()
    return list(dict.fromkeys(c for c in text if c not in vocab))  # in order of appearance


def check_prompt(tokenizer, prompt: str, allow_unseen: bool) -> None:
    missing = unseen_characters(tokenizer, prompt)
    if missing and not allow_unseen:
        shown = " ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise UsageError(
            f"the prompt has characters this model never saw in training: {shown}; rephrase it, or pass "
            "--allow_unseen to feed them as raw bytes"
        )


def generate_to(out, model, tokenizer, prompt: str, args) -> None:
    """Stream the continuation of `prompt` to `out` as it is sampled."""
    out.write(prompt)
    out.flush()
    for piece in stream_text(
        model,
        tokenizer,
        prompt,
        max_new_tokens=args.max_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    ):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()


def interactive(model, tokenizer, args, stdin=sys.stdin, out=sys.stdout) -> None:
    out.write("Type a prompt and press Enter; an empty line starts from a newline; 'quit' ends.\n")
    while True:
        out.write(">>> ")
        out.flush()
        line = stdin.readline()
        if not line or line.strip() in ("quit", "exit"):
            break
        prompt = valid_text(line.rstrip("\n"))
        try:
            check_prompt(tokenizer, prompt, args.allow_unseen)
        except UsageError as e:
            out.write(f"{e}\n")
            continue
        generate_to(out, model, tokenizer, prompt, args)


# ---------------------------------------------------------------------------------------------------------------------
# Command line


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except the empty ones (None, off switches)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    d = TrainSettings()
    p = argparse.ArgumentParser(
        description="Train GPT-2 mini, or generate text with a trained one.",
        formatter_class=_HelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--corpus", default=d.corpus, help=f"shipped corpus: {', '.join(CORPORA)}")
    g.add_argument("--data", metavar="FILE", help="train on any UTF-8 text file instead of --corpus")
    g.add_argument("--val_fraction", type=float, default=d.val_fraction, help="share of the text held out at its end")
    g = p.add_argument_group("model (defaults: 4 layers, 4 heads, 128 dims, context 256)")
    g.add_argument("--n_layer", type=int, help="transformer blocks (default: 4)")
    g.add_argument("--n_head", type=int, help="attention heads per block (default: 4)")
    g.add_argument("--n_embd", type=int, help="embedding width (default: 128)")
    g.add_argument("--block_size", type=int, help="context length in characters, n_positions (default: 256)")
    g.add_argument("--dropout", type=float, default=d.dropout, help="dropout on embeddings, attention and residuals")
    g = p.add_argument_group("ablations (break it on purpose)")
    g.add_argument("--disable_residual", type=int, choices=(0, 1), default=0, help="1: no residual connections")
    g.add_argument("--disable_attention", type=int, choices=(0, 1), default=0, help="1: no self-attention")
    g.add_argument("--disable_mlp", type=int, choices=(0, 1), default=0, help="1: no feed-forward layers")
    g.add_argument(
        "--disable_position_embeddings", type=int, choices=(0, 1), default=0, help="1: no learned position embeddings"
    )
    g.add_argument("--untie_embeddings", type=int, choices=(0, 1), default=0, help="1: separate output matrix")
    g.add_argument("--ln_style", choices=LN_STYLES, help="LayerNorm placement (default: pre)")
    g = p.add_argument_group("optimisation")
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
    g.add_argument("--min_lr", type=float, default=d.min_lr, help="learning rate at the end of the cosine decay")
    g.add_argument("--warmup", type=int, default=d.warmup, help="linear warmup steps")
    g.add_argument("--weight_decay", type=float, default=d.weight_decay, help="AdamW weight decay on matrices")
    g.add_argument("--beta2", type=float, default=d.beta2, help="AdamW beta2")
    g.add_argument("--grad_clip", type=float, default=d.grad_clip, help="clip the gradient norm (0: off)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed for initialisation, data order and sampling")
    g = p.add_argument_group("evaluation and output")
    g.add_argument("--eval_interval", type=int, default=d.eval_interval, help="evaluate, sample and save every N steps")
    g.add_argument("--eval_iters", type=int, default=d.eval_iters, help="fixed batches per split in each evaluation")
    g.add_argument("--log_interval", type=int, default=d.log_interval, help="metrics-log line every N steps")
    g.add_argument("--sample_chars", type=int, default=d.sample_chars, help="characters sampled at each evaluation")
    g.add_argument("--sample_prompt", help="prompt for those samples (default: one that suits the corpus)")
    g.add_argument("--save", metavar="DIR", help="output folder (default: runs/<corpus>[-ablations])")
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
    g = p.add_argument_group("generation (with --load)")
    g.add_argument("--generate", action="store_true", help="print a continuation of --prompt and exit")
    g.add_argument("--interactive", action="store_true", help="read prompts from the terminal; 'quit' ends")
    g.add_argument("--prompt", default="\n", help="text to continue")
    g.add_argument("--max_tokens", type=int, default=300, help="characters to generate")
    g.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more random")
    g.add_argument("--top_k", type=int, default=0, help="sample from the k most likely characters (0: all)")
    g.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling threshold (1: off)")
    g.add_argument("--repetition_penalty", type=float, default=1.0, help=">1 discourages repeating characters")
    g.add_argument("--allow_unseen", action="store_true", help="accept prompt characters the model never saw")
    g = p.add_argument_group("evaluation of a saved model (with --load)")
    g.add_argument(
        "--evaluate",
        action="store_true",
        help="print the loss over the whole validation split of --corpus/--data and exit",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is enough
    try:
        if args.push_to_hub:  # checked before training, so a long run does not end in "not logged in"
            import publish

            if args.generate or args.interactive or args.evaluate or args.stop_at:
                raise UsageError("--push-to-hub publishes a finished training run; for a saved folder use publish.py")
            publish.check_repo_id(args.push_to_hub)
            publish.check_can_upload(None)
        if args.evaluate:
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
            print(
                json.dumps(
                    {
                        "model": args.load,
                        "corpus": args.data or args.corpus,
                        "split": "val",
                        "block_size": block,
                        "tokens": len(ids),
                        "val_loss": round(loss, 4),
                    }
                )
            )
            return 0
        if args.generate or args.interactive:
            if not args.load:
                raise UsageError("--generate and --interactive need --load DIR (a trained model folder)")
            if args.max_tokens <= 0:
                raise UsageError(f"--max_tokens must be a positive integer, got {args.max_tokens}")
            if args.temperature < 0 or args.top_k < 0 or not 0 < args.top_p <= 1 or args.repetition_penalty <= 0:
                raise UsageError("need --temperature >= 0, --top_k >= 0, 0 < --top_p <= 1, --repetition_penalty > 0")
            device = pick_device(args.device)
            model, tokenizer = load_model_folder(args.load, device)
            args.prompt = valid_text(args.prompt)  # bytes that are not UTF-8 arrive as lone surrogates
            if args.interactive:
                if hasattr(sys.stdin, "reconfigure"):
                    sys.stdin.reconfigure(errors="replace")  # a line that is not UTF-8 is not a crash
                interactive(model, tokenizer, args)
            else:
                check_prompt(tokenizer, args.prompt, args.allow_unseen)
                generate_to(sys.stdout, model, tokenizer, args.prompt, args)
            return 0
        values = {f.name: getattr(args, f.name) for f in fields(TrainSettings) if hasattr(args, f.name)}
        values["progress"] = not args.no_progress
        if args.resume:  # the saved run's settings, except what is given again now
            given = explicit_args(argv)
            changes = {k: v for k, v in values.items() if k in given and k != "resume"}
            changes["progress"] = values["progress"]
            result = train(resume_settings(args.resume, **changes))
        else:
            result = train(TrainSettings(**values))
        if args.push_to_hub and int(os.environ.get("RANK", "0")) == 0 and _finish(result) == 0:
            return push_to_hub(result, args.push_to_hub)
        return _finish(result)
    except (UsageError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


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
