"""What a run measures: the loss of a batch and of a whole split (in non-overlapping windows of the model's context),
bits per character for any tokenizer, and a short sample.
"""

import math

import torch

from gpt2mini.checkpoint import UsageError
from gpt2mini.generation.stream import stream_text
from gpt2mini.training.settings import TrainSettings


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
