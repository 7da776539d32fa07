"""The training data: random windows of the token stream, drawn from a generator of their own (so that a resumed
run draws the same batches), split across torchrun's processes; and that generator's state for `--resume`.
"""

import torch

from gpt2mini.checkpoint import UsageError
from gpt2mini.training.devices import Dist


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
