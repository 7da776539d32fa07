"""How each next token is picked: `SamplingSettings` (the one place sampling settings are validated: every entry point
builds one and turns its ValueError into its own kind of message), `filter_logits` (temperature, top-k, top-p, in
transformers' order), CTRL's repetition penalty, and `draw`, which runs as one TorchScript call.
"""

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from gpt2mini.generation.jit import compiled


@dataclass(frozen=True)
class SamplingSettings:
    """How each next token is picked, validated once, here (a ValueError that names the setting).

    - temperature: 0 is greedy (argmax); higher is more random.
    - top_k: sample from the k most likely tokens (0: all). top_p: from the smallest set holding this much
      probability (1: all). repetition_penalty: CTRL's, as transformers applies it (1: off).
    - seed: the stream's own generator, so the same seed gives the same text whatever else runs (None: random).
    - max_new_tokens: how many tokens to generate.
    A caller with narrower ranges (the lab's sliders) passes them to `checked`, which names the range it broke.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    max_new_tokens: int = 200

    def __post_init__(self):
        if not self.temperature >= 0 or self.temperature == math.inf:  # written so that NaN fails too
            raise ValueError(f"temperature must be a finite number, 0 or more, got {self.temperature}")
        if not _whole(self.top_k) or self.top_k < 0:
            raise ValueError(f"top_k must be a whole number, 0 or more, got {self.top_k!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 < self.repetition_penalty < math.inf:
            raise ValueError(f"repetition_penalty must be a finite number above 0, got {self.repetition_penalty}")
        if self.seed is not None and (not _whole(self.seed) or not 0 <= self.seed < 2**63):
            raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r}")
        if not _whole(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a whole number, 1 or more, got {self.max_new_tokens!r}")

    @classmethod
    def checked(cls, limits: dict[str, tuple[float, float]] | None = None, **values) -> "SamplingSettings":
        """Settings from `values`, each first checked against its inclusive (low, high) range in `limits`."""
        for name, (low, high) in (limits or {}).items():
            value = values.get(name)
            if value is not None and not low <= value <= high:  # NaN fails too
                raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")
        return cls(**values)

    def stream_options(self) -> dict:
        """The keywords `TokenStream` takes (everything but max_new_tokens)."""
        return {k: v for k, v in asdict(self).items() if k != "max_new_tokens"}


def _whole(value) -> bool:
    """An integer of any kind (Python, NumPy), not a bool or a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Apply temperature, then top-k, then top-p (nucleus) to (B, V) logits; removed entries become -inf.

    Same order and tie rules as transformers' warpers; at least one token always survives. The logits are shifted so
    that the largest is 0 before they are divided by the temperature: the same distribution, and no overflow to
    NaN at any temperature above 0 (a tiny one leaves only the most likely tokens: greedy).
    """
    if temperature != 1.0:
        shifted = logits - logits.amax(dim=-1, keepdim=True)
        if temperature >= _tiny(logits.dtype):
            logits = shifted / temperature
        else:  # below what the dtype can hold (it would divide by 0): the limit, greedy
            logits = shifted.masked_fill(shifted < 0, float("-inf"))
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1] = False  # keep the most likely token
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def _tiny(dtype: torch.dtype) -> float:
    """`torch.finfo(dtype).tiny` of a floating dtype, written so that TorchScript can compile it (it has no finfo)."""
    if dtype == torch.float64:
        return 2.2250738585072014e-308
    if dtype == torch.float16:
        return 6.103515625e-05
    return 1.1754943508222875e-38  # float32 and bfloat16


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty as transformers applies it: seen tokens' logits are divided by `penalty` if positive,
    multiplied if negative. `seen` is a (B, V) bool mask."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def checked_prompts(prompts: Sequence[Sequence[int]], vocab_size: int) -> list[list[int]]:
    """The prompts as lists of ints, or a ValueError: an empty prompt, or a token outside the vocabulary."""
    rows = [list(map(int, p)) for p in prompts]
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token (start from a newline if there is no text)")
    bad = [t for r in rows for t in r if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside the vocabulary: token ids must be from 0 to {vocab_size - 1}")
    return rows


def seeded_generator(seed: int | None, device) -> torch.Generator:
    """A stream's own generator: seeded with `seed`, or at random for None."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def draw(logits: torch.Tensor, settings: SamplingSettings, generator, seen: torch.Tensor) -> torch.Tensor:
    """One token per row of (B, V) `logits`, as `settings` say, with noise from `generator` (one for every row, or a
    list of one per row); returns (B,) tokens and marks them in `seen`, the (B, V) tokens each row has had (for the
    repetition penalty). A row's token depends only on its logits and its generator, whatever rows are beside it.
    It runs as one TorchScript call (`sample`): under load, every call into torch from Python lets other threads
    in, and a `StreamPool`'s step waits for each of them."""
    shared = isinstance(generator, torch.Generator)
    s = settings
    return compiled(sample)(
        logits, seen, float(s.temperature), int(s.top_k), float(s.top_p), float(s.repetition_penalty),
        [generator] if shared else list(generator), shared,
    )  # fmt: skip


def sample(
    logits: torch.Tensor,
    seen: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    penalty: float,
    generators: list[torch.Generator],
    shared: bool,
) -> torch.Tensor:
    """The body of `draw`, typed for TorchScript: noise from `generators[0]` for all rows at once (`shared`), or from
    each row's own."""
    if penalty != 1.0:
        logits = apply_repetition_penalty(logits, seen, penalty)
    if temperature == 0:
        token = logits.argmax(dim=-1)
    else:
        probs = filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1)
        # a draw from `probs`: argmax of p / E with E ~ Exp(1) (the exponential race; cheaper than
        # torch.multinomial at this size). The clamp keeps 0/0 (a filtered token meeting E == 0) from winning.
        noise = torch.empty_like(probs)
        if shared:
            noise.exponential_(1.0, generator=generators[0])
        else:  # each row's from its own generator, drawn as a row alone would draw it
            for i in range(len(generators)):
                noise[i].exponential_(1.0, generator=generators[i])
        token = probs.div_(noise.clamp_min_(1e-30)).argmax(dim=-1)
    if penalty != 1.0:
        seen.scatter_(1, token[:, None], True)
    return token
