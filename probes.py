"""Look inside GPT-2 mini and break it at inference time: knockouts and probes.

- `knockout(model, heads=..., attention=..., mlp=..., residual=...)`: switch parts of a trained model off while a
  `with` block runs (forward hooks, restored on exit); the lab's Knockout tab and its tests use it.
- `probe(model, x)`: per layer, the mean attention entropy and the residual-stream norm, which train.py logs at every
  evaluation to show *how* an ablated model fails, not only that it does.

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
