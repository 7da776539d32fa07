"""The optimizer and its schedule: AdamW with weight decay on the matrices only, linear warm-up then cosine decay, and
the optimizer's state as named tensors (safetensors, no pickle) for `--resume`.
"""

import math

import torch

from gpt2mini.training.settings import TrainSettings


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
