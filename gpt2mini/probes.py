"""Look inside GPT-2 mini and break it at inference time: knockouts and probes.

- `knockout(model, heads=..., attention=..., mlp=..., residual=...)`: switch parts of a trained model off while a
  `with` block runs (forward hooks, restored on exit); the lab's Knockout tab and its tests use it.
- `probe(model, x)`: per layer, the mean attention entropy and the residual-stream norm, and how much the predictions
  depend on the input at all; train.py logs them at every evaluation to show *how* an ablated model fails.
- `grad_norms(model)`: the gradient norm of each part (embeddings, each block, the head), which train.py logs with
  the loss.
- `head_pattern(weights, newline)`: what one attention head mostly reads (the previous character, its own, the first
  position, the newlines), for the lab's Attention tab.

Both take a model from `modeling_gpt2mini` and add nothing to it.
"""

import contextlib
from collections.abc import Iterable

import torch

from modeling_gpt2mini import GPT2MiniForCausalLM

# ---------------------------------------------------------------------------------------------------------------------
# Knockouts: break a trained model at inference time


@contextlib.contextmanager
def knockout(
    model: GPT2MiniForCausalLM,
    heads: Iterable[tuple[int, int]] = (),
    attention: Iterable[int] = (),
    mlp: Iterable[int] = (),
    residual: Iterable[int] = (),
):
    """Switch parts of a trained model off while the `with` block runs; everything is restored on exit.

    - heads: (layer, head) pairs, 0-based; a knocked-out head's output is zeroed before the attention projection
      (TransformerLens's zero ablation), so the other heads of the layer keep working;
    - attention / mlp: layers whose whole attention or feed-forward sub-layer outputs zeros;
    - residual: layers whose sub-layers replace their input instead of adding to it (as `use_residual=False`).
    Works with `forward`, `generate` and `TokenStream` (whose fast path steps aside while hooks are set).
    """
    blocks = model.transformer.h
    n_layer, n_head = len(blocks), model.config.n_head
    heads, attention, mlp, residual = set(heads), set(attention), set(mlp), set(residual)
    for layer, head in heads:
        if not (0 <= layer < n_layer and 0 <= head < n_head):
            raise ValueError(f"no head {head} in layer {layer} (the model has {n_layer} layers of {n_head} heads)")
    for layer in attention | mlp | residual:
        if not 0 <= layer < n_layer:
            raise ValueError(f"no layer {layer} (the model has {n_layer})")
    hooks, saved = [], {}
    try:
        for layer in {layer for layer, _ in heads} - attention:
            attn = blocks[layer].attn
            if attn is None:
                continue
            keep = torch.ones(n_head, 1, device=model.device, dtype=model.dtype)
            keep[[h for l_, h in heads if l_ == layer]] = 0.0

            def zero_heads(_module, args, keep=keep, hd=attn.head_dim):
                (y,) = args  # (B, T, C): the heads side by side, before the output projection
                return (y * keep.expand(-1, hd).reshape(1, 1, -1),)

            hooks.append(attn.c_proj.register_forward_pre_hook(zero_heads))
        for layer in attention:
            if blocks[layer].attn is not None:
                hooks.append(
                    blocks[layer].attn.register_forward_hook(lambda _m, _a, out: (torch.zeros_like(out[0]), out[1]))
                )
        for layer in mlp:
            if blocks[layer].mlp is not None:
                hooks.append(blocks[layer].mlp.register_forward_hook(lambda _m, _a, out: torch.zeros_like(out)))
        for layer in residual:
            saved[layer] = blocks[layer].use_residual
            blocks[layer].use_residual = False
        yield model
    finally:
        for h in hooks:
            h.remove()
        for layer, value in saved.items():
            blocks[layer].use_residual = value


# ---------------------------------------------------------------------------------------------------------------------
# Probes: what each layer does


@torch.no_grad()
def probe(model: GPT2MiniForCausalLM, x: torch.Tensor) -> dict[str, list]:
    """Per layer: mean attention entropy (nats; None where attention is off) and mean residual-stream norm after
    the block; and `input_dependence`, the mean KL divergence (nats) of each position's next-character distribution
    from the mean of them all: 0 when every position predicts the same thing, whatever the input (a collapsed model
    that learned only the character frequencies)."""
    was_training = model.training
    model.eval()
    norms = []
    hooks = [
        block.register_forward_hook(lambda _m, _i, out: norms.append(out[0].float().norm(dim=-1).mean().item()))
        for block in model.transformer.h
    ]
    try:
        out = model(x, output_attentions=True, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    entropy = [
        None if w is None else (-(w.float() * (w.float() + 1e-12).log()).sum(-1)).mean().item() for w in out.attentions
    ]
    model.train(was_training)
    return {"attn_entropy": entropy, "resid_norm": norms, "input_dependence": input_dependence(out.logits)}


def input_dependence(logits: torch.Tensor) -> float:
    """Mean KL(p_i || p_mean) over the positions i of `logits` (..., vocab), in nats: the mutual information between
    where one is in the text and what the model predicts there."""
    logp = torch.log_softmax(logits.float().flatten(0, -2), dim=-1)
    mean_logp = torch.logsumexp(logp, dim=0) - torch.log(torch.tensor(float(logp.shape[0])))
    return max(0.0, (logp.exp() * (logp - mean_logp)).sum(-1).mean().item())  # >= 0; rounding can dip below


def grad_norms(model: GPT2MiniForCausalLM) -> list[float]:
    """The gradient norm of each part of the model, in order: the embeddings (tokens and positions), each block, and
    the final norm with an untied output head (a tied head's gradient is the token embedding's)."""
    n = model.config.n_layer
    squares = [0.0] * (n + 2)
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        parts = name.split(".")
        part = 1 + int(parts[2]) if parts[1:2] == ["h"] else 0 if parts[1:2] in (["wte"], ["wpe"]) else n + 1
        squares[part] += p.grad.float().pow(2).sum().item()
    return [q**0.5 for q in squares]


PATTERN_SHARE = 0.4  # a head "mostly reads" a place when at least this share of its attention goes there ...
ABOVE_CHANCE = 3  # ... and at least this many times the share that evenly spread attention would give it


def head_pattern(weights: torch.Tensor, newline: torch.Tensor) -> str | None:
    """What one head mostly reads, from its attention rows of the last n positions onto all T (`weights` (n, T),
    row q being position T - n + q; `newline` (T,) true where the input is a newline): "the previous character",
    "its own character", "the first position" or "the newlines" when, on average, at least PATTERN_SHARE of its
    attention goes there and ABOVE_CHANCE times what evenly spread attention would give (which, on a short prompt,
    is most of it: there a head reads its own character by chance); None when no place stands out."""
    n, t = weights.shape
    rows = torch.arange(t - n, t)  # the position each row attends from
    visible = (torch.arange(t)[None, :] <= rows[:, None]).float()  # the causal mask, per row
    one = (1 / visible.sum(-1)).mean()  # the share of one visible position under even attention
    later = rows > 0  # rows that have a previous character
    places = {  # (the share it gets, the share even attention would give)
        "the previous character": (weights[later, rows[later] - 1].mean(), one) if later.any() else (0.0, 1.0),
        "its own character": (weights[torch.arange(n), rows].mean(), one),
        "the first position": (weights[:, 0].mean(), one),
    }
    if newline.any():
        chance = ((visible * newline).sum(-1) / visible.sum(-1)).mean()
        places["the newlines"] = ((weights * newline).sum(-1).mean(), chance)
    standing = {k: float(v) for k, (v, chance) in places.items() if v >= PATTERN_SHARE and v >= ABOVE_CHANCE * chance}
    return max(standing, key=standing.get) if standing else None
