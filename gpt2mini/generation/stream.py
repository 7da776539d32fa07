"""Streaming generation: `TokenStream` samples one token per row per `step()` over a `KVBuffer` (the fast
`DecodeStep` where it can run, the model's own forward otherwise) and slides its window past the context;
`stream_text` wraps it for text, `round_robin` advances several streams in turn.

`generate()` works without any of this: the model folder holds no code from here, and a change here re-ships nothing.
"""

import re
from collections.abc import Iterable, Iterator, Sequence

import torch

from gpt2mini.generation.sampling import SamplingSettings, checked_prompts, draw, seeded_generator
from gpt2mini.generation.step import DecodeStep, KVBuffer
from modeling_gpt2mini import GPT2MiniForCausalLM


class TokenStream:
    """Incremental sampling from one model for a batch of prompts, one token per row per `step()`.

    - prompts: a list of token-id lists (rows may differ in length: they are left-padded) or a (B, T) tensor.
    - temperature 0 means greedy (argmax); top_k 0 and top_p 1.0 switch those filters off.
    - seed: the stream's own `torch.Generator`, so the same seed gives the same tokens whatever else runs.
    - Past the context length the window slides: when the buffer is full, the last `window` tokens of each row are
      re-encoded at positions 0.. and decoding continues from there (the blog's generator crops the same way, but
      re-encodes every step). With rotary positions (RoPE), which only see how far apart two tokens are, nothing is
      re-encoded: the cache keeps its last `window` slots, as they were computed, and positions go on counting, so a
      slide costs a copy of the cache. A prompt longer than the context keeps its last `n_positions` tokens.

    `logits` holds the (B, V) next-token logits before any filtering, for displays of the distribution.
    Iterating yields one (B,) tensor of new tokens per step, forever; bound it with `itertools.islice` or `take`.
    """

    def __init__(
        self,
        model: GPT2MiniForCausalLM,
        prompts: Sequence[Sequence[int]] | torch.Tensor,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        window: int | None = None,
        pad_token_id: int = 0,
        fast: bool = True,
    ):
        if isinstance(prompts, torch.Tensor):
            prompts = prompts.tolist()
        cfg = model.config
        rows = checked_prompts(prompts, cfg.vocab_size)
        settings = SamplingSettings(temperature, top_k, top_p, repetition_penalty, seed)  # a ValueError naming it
        self.window = window if window is not None else cfg.n_positions * 3 // 4
        if not 0 < self.window < cfg.n_positions:
            raise ValueError(f"window must be between 1 and {cfg.n_positions - 1}, got {self.window}")
        self.model = model
        self.settings = settings
        self.pad_token_id = pad_token_id
        param = next(model.parameters())
        self.device = param.device
        self.generator = seeded_generator(seed, self.device)
        self.history = rows  # every token of every row, prompt included
        self.seen = torch.zeros(len(rows), cfg.vocab_size, dtype=torch.bool, device=self.device)
        for i, r in enumerate(rows):
            self.seen[i, torch.tensor(r, device=self.device)] = True
        self.cache = KVBuffer(cfg, len(rows), self.device, param.dtype)
        self.attention_mask = None
        self.positions = torch.zeros(len(rows), dtype=torch.long, device=self.device)  # of each row's next token
        self.fast = DecodeStep(model) if fast else None
        self.relative = cfg.use_position_embeddings and cfg.position_style == "rope"  # slides by keeping the cache
        self.logits = self._encode([r[-cfg.n_positions :] for r in rows])

    @torch.inference_mode()
    def _forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=self.attention_mask,
            position_ids=position_ids,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache.length += input_ids.shape[1]
        return out.logits[:, -1, :].float()

    def _encode(self, rows: list[list[int]]) -> torch.Tensor:
        """(Re-)fill the cache from scratch with `rows`, left-padded to equal length; return the next-token logits."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        self.cache.reset()
        self.attention_mask = None if bool(mask.all()) else mask.to(self.device)
        self.positions = mask.sum(dim=1).to(self.device)
        logits = self._forward(ids.to(self.device))
        if self.attention_mask is not None:
            self.cache.mask_padding(self.attention_mask)
        return logits

    @torch.inference_mode()
    def step(self) -> torch.Tensor:
        """Sample one token for every row, feed it back, and return the (B,) new tokens."""
        token = draw(self.logits, self.settings, self.generator, self.seen)
        for row, t in zip(self.history, token.tolist(), strict=True):
            row.append(t)
        if self.cache.length == self.model.config.n_positions and self.relative:  # RoPE: keep the window's cache
            self.cache.keep_last(self.window)
            if self.attention_mask is not None:
                self.attention_mask = self.attention_mask[:, -self.window :]
        if self.cache.length < self.model.config.n_positions:
            if self.attention_mask is not None:
                ones = self.attention_mask.new_ones(len(self.history), 1)
                self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
            logits = self.fast.step(token, self.positions, self.cache) if self.fast is not None else None
            if logits is not None:
                self.logits = logits
                self.cache.length += 1
            else:
                self.logits = self._forward(token[:, None], self.positions[:, None])
            self.positions += 1
        else:  # the window is full: keep the last `window` tokens of every row and re-encode them
            self.logits = self._encode([row[-self.window :] for row in self.history])
        return token

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            yield self.step()

    def take(self, n: int) -> list[list[int]]:
        """Advance `n` steps and return the n new tokens of every row."""
        new = [self.step() for _ in range(n)]
        return torch.stack(new, dim=1).tolist() if new else [[] for _ in self.history]


class TextDecoder:
    """Turns a stream of token ids into text pieces, holding back a UTF-8 character split over byte tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def push(self, token: int) -> str:
        self.pending.append(token)
        text = self.tokenizer.decode(self.pending, skip_special_tokens=True)
        if text.endswith("\ufffd") and len(self.pending) < 4:
            return ""  # an incomplete multi-byte character: wait for its remaining bytes
        self.pending = []
        return text

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character decodes to U+FFFD)."""
        text = self.tokenizer.decode(self.pending, skip_special_tokens=True) if self.pending else ""
        self.pending = []
        return text


def stream_text(
    model: GPT2MiniForCausalLM,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    **sampling,
) -> Iterator[str]:
    """Yield the continuation of `prompt` piece by piece (usually one character per token).

    `sampling` takes `TokenStream`'s keywords: temperature, top_k, top_p, repetition_penalty, seed, window.
    An empty prompt starts from a newline; a lone surrogate in it (text that has no UTF-8 form) becomes U+FFFD.
    """
    if prompt and re.search("[\ud800-\udfff]", prompt):  # no UTF-8 form: pairs joined, lone ones U+FFFD
        prompt = prompt.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    ids = tokenizer.encode(prompt or "\n", add_special_tokens=False)
    stream = TokenStream(model, [ids], pad_token_id=tokenizer.pad_token_id or 0, **sampling)
    decoder = TextDecoder(tokenizer)
    for _ in range(max_new_tokens):
        piece = decoder.push(int(stream.step()[0]))
        if piece:
            yield piece


def round_robin(streams: Iterable[Iterator]) -> Iterator[tuple[int, object]]:
    """Advance several iterators one item each in turn; yield `(index, item)` until all are exhausted."""
    active = list(enumerate(streams))
    while active:
        still = []
        for i, it in active:
            try:
                yield i, next(it)
            except StopIteration:
                continue
            still.append((i, it))
        active = still
