"""Fast streaming generation for GPT-2 mini: what the lab and the command line decode with.

What is notable:
- `TokenStream` samples one token per row per `step()` from a pre-allocated KV buffer (`KVBuffer`), with temperature,
  top-k, top-p, repetition penalty and a per-stream seed, and slides its window past the context length; several
  prompts go in one left-padded batch. `stream_text` wraps it for text, `round_robin` advances several streams in turn.
- `SamplingSettings` is the one place sampling settings are validated: every entry point (this module's API,
  train.py's flags, the lab's requests) builds one and turns its ValueError into its own kind of message.
- `DecodeStep` is the single-token forward written as the few dozen tensor operations it is, compiled with
  TorchScript where available; a test holds it to the model's own forward for every ablation switch.

It builds on `modeling_gpt2mini` and is not part of the model folder: `generate()` works without it, and a change here
re-ships nothing.
"""

import collections
import math
import numbers
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from configuration_gpt2mini import GPT2MiniConfig
from modeling_gpt2mini import MLP, Block, CausalSelfAttention, GPT2MiniForCausalLM, GPT2MiniModel, rotary, sinusoids

# ---------------------------------------------------------------------------------------------------------------------
# Sampling settings


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


# ---------------------------------------------------------------------------------------------------------------------
# The KV buffer and the single-token step


class KVBuffer:
    """A pre-allocated key/value cache, written in place: per layer one (B, n_head, n_positions, 3, head_dim) tensor.

    Index 1 of the fourth dimension holds keys, index 2 values; a `DecodeStep` writes a new position's query, key and
    value together with one copy, so index 0 holds its queries. The cache has the methods the model's forward calls
    (`get_seq_length`, `get_mask_sizes`, `update`), so the model itself can fill it (a prefill). `length` is
    advanced by the caller after each forward, so every layer writes the same slots. `bias` is the additive attention
    bias over key positions, per (row, head): 0, or the dtype's most negative value where a row has left padding.
    """

    def __init__(self, config: GPT2MiniConfig, batch_size: int, device, dtype):
        B, nh, T, hd = batch_size, config.n_head, config.n_positions, config.n_embd // config.n_head
        qkv = [torch.zeros(B, nh, T, 3, hd, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self._share(qkv, torch.zeros(B * nh, 1, T, device=device, dtype=dtype), nh)

    def _share(self, qkv: list[torch.Tensor], bias: torch.Tensor, n_head: int) -> None:
        """Hold `qkv` and `bias` (allocated here, or part of another buffer's) and make the views a step reads."""
        self.qkv, self.bias, self.n_head, self.length = qkv, bias, n_head, 0
        B, nh, T, _, hd = qkv[0].shape
        # views of the same memory in the shapes a DecodeStep writes and `torch.baddbmm` / `torch.bmm` read, made once
        self.rows = [c.view(B * nh, T, 3, hd) for c in qkv]
        self.keys_t = [c[:, :, :, 1].reshape(B * nh, T, hd).transpose(1, 2) for c in qkv]  # (B*nh, hd, T)
        self.values = [c[:, :, :, 2].reshape(B * nh, T, hd) for c in qkv]  # (B*nh, T, hd)
        for view in self.rows + self.keys_t + self.values:  # views of the cache, not copies
            assert view.untyped_storage().data_ptr() in {c.untyped_storage().data_ptr() for c in qkv}

    def part(self, start: int, stop: int) -> "KVBuffer":
        """Rows start..stop-1 as a buffer of their own that shares this one's memory (what it writes, this one holds):
        one row for a prefill, the first rows in use for a `StreamPool`'s step."""
        part = KVBuffer.__new__(KVBuffer)
        nh = self.n_head
        part._share([c[start:stop] for c in self.qkv], self.bias[start * nh : stop * nh], nh)
        return part

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        """(keys `update` will return, offset): as transformers' caches say it."""
        return self.length + query_length, 0

    def update(self, key, value, layer_idx):
        if key.shape[-1] != self.qkv[layer_idx].shape[-1]:  # a layer without attention only counts positions
            return key, value
        end = self.length + key.shape[2]
        c = self.qkv[layer_idx]
        c[:, :, self.length : end, 1] = key
        c[:, :, self.length : end, 2] = value
        return c[:, :, :end, 1], c[:, :, :end, 2]

    def mask_padding(self, attention_mask: torch.Tensor) -> None:
        """After a prefill: hide the keys of padding positions (attention_mask 0) from every later `DecodeStep`."""
        pad = (attention_mask == 0).repeat_interleave(self.n_head, dim=0)  # (B * nh, width)
        self.bias[:, 0, : pad.shape[1]].masked_fill_(pad, torch.finfo(self.bias.dtype).min)

    def reset(self) -> None:
        self.length = 0
        self.bias.zero_()

    def keep_last(self, n: int) -> None:
        """Keep the last n slots, moved to the front (keys, values and the padding bias); the rest is free again."""
        start = self.length - n
        for c in self.qkv:
            c[:, :, :n] = c[:, :, start : self.length].clone()
        self.bias[:, :, :n] = self.bias[:, :, start : self.length].clone()
        self.bias[:, :, n:] = 0
        self.length = n


class DecodeStep:
    """One new token per row through a model with a filled `KVBuffer`, as the few dozen tensor operations it is.

    It computes what `GPT2MiniForCausalLM.forward` computes for a (B, 1) input over the cache (a test holds them
    together for every ablation switch), without what a general forward needs per call: module calls, output objects,
    mask construction, cache bookkeeping. At batch 1 a 0.8M-parameter model is bound by per-operation overhead (each
    small operation costs microseconds of dispatch, the arithmetic less), so the number of operations is the cost:
    - the attention projection's q, k, v go into the cache's per-head layout with one (strided) copy;
    - each head's query meets the cached keys in one batched matmul (`baddbmm` adds the bias that hides left padding),
      then softmax and one more batched matmul over views of the cache: no SDPA set-up, no mask building;
    - every projection is one `F.linear`. On CPU all of these stay single-threaded at this size (`baddbmm` with a
      scale factor did not: under load it waited milliseconds for a second thread, so the query is scaled first).
    The step itself, `decode_step`, is compiled with TorchScript when this torch has it, which runs the ~70 operations
    from C++ without the Python interpreter between them (1.7x faster here; `torch.compile` made this step slower on
    CPU, see docs/performance.md); otherwise the same function runs as Python.
    It keeps no copy of any weight: every step reads the model's parameters as they are at that moment, so no update
    can be missed (an optimizer step, fused or not, `load_state_dict`, an in-place edit, `.to(dtype)`, a replaced
    parameter). It reads `Block.use_residual` live too (so residual knockouts apply), and refuses (`usable()` is
    False) while the model is in training mode or has forward hooks, which only the module path runs: `TokenStream`
    then uses the model.
    """

    def __init__(self, model: GPT2MiniForCausalLM):
        self.model = model
        self.collect()

    def usable(self) -> bool:
        """False while the model trains (dropout), has forward hooks (knockouts, probes) or modules this step does not
        know (a PEFT adapter, a quantized layer): the modules are stepped then, and compute what those do. A module
        or parameter replaced since the last look is looked at again first."""
        if not self.current():
            self.collect()
        return self.supported and not self.model.training and not any(self.hooks)

    def collect(self) -> None:
        """Look at the model as it is now: which modules it has (all of them known to this step: `supported`), their
        forward-hook dictionaries, and where each module and Parameter sits (`held`, for `current`); then, if it is
        supported, gather its Parameter objects as `decode_step` takes them (`_gather`)."""
        from torch.nn.modules import module as global_hooks

        modules = list(self.model.modules())
        self.supported = all(type(m) in SUPPORTED_MODULES for m in modules)  # exactly these, no subclass
        # the hook dictionaries themselves (empty is falsy), so that checking them all costs about a microsecond
        self.hooks = [global_hooks._global_forward_hooks, global_hooks._global_forward_pre_hooks]
        for m in modules:
            self.hooks += [m._forward_hooks, m._forward_pre_hooks]
        # where each Parameter and module lives, to see at every step that none has been replaced since
        self.held = [(m._parameters, k, p) for m in modules for k, p in m._parameters.items()]
        self.held += [(m._modules, k, c) for m in modules for k, c in m._modules.items()]
        if self.supported:
            self._gather()

    def _gather(self) -> None:
        """The model's Parameter objects as `decode_step` takes them (references, never copies): per layer
        [ln_1 weight, bias, c_attn weight, bias, c_proj weight, bias] (or [] without attention), the same for the
        MLP, [pre-LN, post-LN] flags; ln_f's [weight, bias] (or []); the embeddings and the head."""
        t = self.model.transformer
        self.blocks = list(t.h)
        self.attn, self.mlp, self.flags = [], [], []
        for b in self.blocks:
            a, m = b.attn, b.mlp
            self.attn.append([] if a is None else self._norm(b.ln_1) + _linear(a.c_attn) + _linear(a.c_proj))
            self.mlp.append([] if m is None else self._norm(b.ln_2) + _linear(m.c_fc) + _linear(m.c_proj))
            self.flags.append([b.pre_ln, b.post_ln])
        self.ln_f = [] if t.ln_f is None else self._norm(t.ln_f)
        self.wte, self.wpe = t.wte.weight, (t.wpe.weight if t.wpe is not None else None)
        self.head = self.model.lm_head.weight
        cfg = self.model.config
        # the lineage switches, as decode_step takes them: which norm, activation and positions
        self.rms = cfg.norm_style == "rmsnorm"
        self.act = ACTIVATION_CODES[cfg.mlp_style]
        self.positions = POSITION_CODES[cfg.position_style] if cfg.use_position_embeddings else 0
        self.biased = cfg.use_bias
        self.scale = math.sqrt(cfg.n_embd) if cfg.scale_embeddings else 1.0

    def current(self) -> bool:
        """Whether the model still holds the modules and Parameter objects looked at (a dictionary lookup each:
        microseconds)."""
        return all(d.get(k) is p for d, k, p in self.held)

    def _norm(self, norm: nn.Module | None) -> list[torch.Tensor]:
        """[weight, bias] (a LayerNorm without bias, or an RMSNorm, has ABSENT for its bias)."""
        if norm is None:
            return [ABSENT, ABSENT]
        bias = getattr(norm, "bias", None)
        return [norm.weight, ABSENT if bias is None else bias]

    @torch.inference_mode()
    def __call__(
        self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVBuffer, slots: "OwnSlots | None" = None
    ) -> torch.Tensor:
        """tokens, positions: (B,) long; writes slot `cache.length` (the caller advances it), or each row's own slot
        (`slots`; the caller sets `cache.bias` to show each row what it sees); returns (B, V) logits."""
        if not self.current():  # a parameter was replaced (not just updated in place): gather them again
            self.collect()
        cfg = self.model.config
        residual = [b.use_residual for b in self.blocks]
        pos, where = (cache.length, []) if slots is None else (slots.widest, [slots.heads, slots.slots])
        return compiled_decode_step()(
            tokens, positions, pos, where, cache.bias, cache.rows, cache.keys_t, cache.values, self.wte, self.wpe,
            self.attn, self.mlp, self.flags, residual, self.ln_f, self.head, cfg.n_head, cfg.layer_norm_epsilon,
            self.rms, self.act, self.positions, self.biased, self.scale,
        )  # fmt: skip


@dataclass(frozen=True)
class OwnSlots:
    """Where each row of a `DecodeStep` writes when rows sit at different lengths: for every (row, head) of the cache
    (`heads`, (B*nh,): 0..B*nh-1) its row's slot (`slots`, (B*nh,)); `widest`, the largest, is how far keys are read."""

    heads: torch.Tensor
    slots: torch.Tensor
    widest: int


ACTIVATION_CODES = {"gelu_tanh": 0, "relu": 1, "swiglu": 2}  # config.mlp_style, as decode_step takes it
POSITION_CODES = {"learned": 1, "sinusoidal": 2, "rope": 3}  # config.position_style (0: no positions at all)


def decode_step(
    tokens: torch.Tensor,
    positions: torch.Tensor,
    pos: int,
    slots: list[torch.Tensor],
    bias: torch.Tensor,
    rows: list[torch.Tensor],
    keys_t: list[torch.Tensor],
    values: list[torch.Tensor],
    wte: torch.Tensor,
    wpe: torch.Tensor | None,
    attn: list[list[torch.Tensor]],
    mlp: list[list[torch.Tensor]],
    flags: list[list[bool]],
    residual: list[bool],
    ln_f: list[torch.Tensor],
    head: torch.Tensor,
    n_head: int,
    eps: float,
    rms: bool,
    act: int,
    position_style: int,
    biased: bool,
    scale: float,
) -> torch.Tensor:
    """The body of `DecodeStep`: (B,) tokens at (B,) positions, written to cache slot `pos`; returns (B, V) logits.
    With `slots` ([row-and-head index, slot], each (B*nh,)) every row writes its own slot instead (a `StreamPool`'s
    rows are at different lengths); keys at slots 0..pos are read, and `bias` hides what a row does not see.

    Typed and written for TorchScript (no keyword-only tricks, lists not dicts); see `DecodeStep` for the layout.
    Weights are as the modules hold them (nn.Linear's (out, in)), the parameters themselves, never copies. The
    lineage switches: `rms` (RMSNorm, else LayerNorm), `act` (ACTIVATION_CODES), `position_style` (POSITION_CODES; 0
    for none), `biased` (whether the layers have biases: an empty tensor stands in for each bias where not) and
    `scale` (the token embeddings' factor: sqrt(n_embd) or 1), computed as modeling_gpt2mini computes them.
    """
    B, C = tokens.shape[0], wte.shape[1]
    hd = C // n_head
    n = pos + 1
    visible = bias.narrow(2, 0, n)  # slots 0..pos: 0, or the most negative value for left padding
    x = _embed(tokens, positions, wte, wpe, scale, position_style)
    cos, sin = x, x  # RoPE's, below: (B, 1, hd), one angle per row, the same for every head
    if position_style == 3:
        turn = rotary(positions[None], hd, x.dtype)  # ((1, 1, B, hd), (1, 1, B, hd))
        cos, sin = turn[0][0, 0, :, None], turn[1][0, 0, :, None]
    if B == 1:
        x = x[0]  # one row is carried as a (C,) vector, so that every projection is one `addmv` (see `_project`)
    for i in range(len(flags)):
        pre, post = flags[i][0], flags[i][1]
        w = attn[i]
        if len(w) > 0:
            h = _normalize(x, C, w[0], w[1] if biased else None, eps, rms) if pre else x
            qkv = _project(h, w[2], w[3] if biased else None).view(
                B, 3, n_head, hd
            )  # q|k|v, then heads, as c_attn emits them
            if position_style == 3:  # rotary positions: the query and key turn by this position's angles
                qkv = _turn(qkv, cos, sin)
            q = _write(rows[i], qkv, pos, slots).narrow(1, 0, 1) * (hd**-0.5)  # (B*nh, 1, hd)
            scores = torch.baddbmm(visible, q, keys_t[i].narrow(2, 0, n))  # (B*nh, 1, n)
            y = torch.bmm(torch.softmax(scores, dim=-1), values[i].narrow(1, 0, n))  # (B*nh, 1, hd)
            h = _project(y.view(x.size()), w[4], w[5] if biased else None)
            x = x + h if residual[i] else h
            if post:
                x = _normalize(x, C, w[0], w[1] if biased else None, eps, rms)
        w = mlp[i]
        if len(w) > 0:
            h = _normalize(x, C, w[0], w[1] if biased else None, eps, rms) if pre else x
            h = _project(h, w[2], w[3] if biased else None)
            h = _project(
                _activate(h, act) if act > 0 else F.gelu(h, approximate="tanh"), w[4], w[5] if biased else None
            )
            x = x + h if residual[i] else h
            if post:
                x = _normalize(x, C, w[0], w[1] if biased else None, eps, rms)
    if len(ln_f) > 0:
        x = _normalize(x, C, ln_f[0], ln_f[1] if biased else None, eps, rms)
    logits = _project(x, head, None)
    return (logits.unsqueeze(0) if B == 1 else logits).float()


def _write(rows: torch.Tensor, qkv: torch.Tensor, pos: int, slots: list[torch.Tensor]) -> torch.Tensor:
    """Write (B, 3, n_head, hd) q|k|v into a layer's cache `rows` (B*nh, T, 3, hd): every row at slot `pos` with one
    strided copy, or with `slots` each row at its own; returns what was written as (B*nh, 3, hd)."""
    B, _, n_head, hd = qkv.shape
    if len(slots) == 0:
        slot = rows.select(1, pos)  # (B*nh, 3, hd): this position's q, k, v of every row and head
        slot.view(B, n_head, 3, hd).copy_(qkv.transpose(1, 2))
        return slot
    slot = qkv.transpose(1, 2).reshape(B * n_head, 3, hd)
    rows.index_put_([slots[0], slots[1]], slot)
    return slot


def _embed(
    tokens: torch.Tensor,
    positions: torch.Tensor,
    wte: torch.Tensor,
    wpe: Optional[torch.Tensor],  # noqa: UP045 (TorchScript reads typing.Optional)
    scale: float,
    position_style: int,
) -> torch.Tensor:
    """The tokens' embeddings (times `scale`) plus their positions: a learned table or sinusoids (RoPE's come later,
    in attention)."""
    x = torch.embedding(wte, tokens)
    if scale != 1.0:
        x = x * scale
    if position_style == 1 and wpe is not None:
        x = x + torch.embedding(wpe, positions)
    elif position_style == 2:
        x = x + sinusoids(positions[None], wte.shape[1], x.dtype)[0]
    return x


def _turn(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(B, 3, n_head, hd) q|k|v with q and k rotated by their rows' angles (cos, sin: (B, 1, hd)), as `rotate`."""
    qk = qkv.narrow(1, 0, 2)
    first, second = qk.chunk(2, dim=-1)
    turned = qk * cos[:, None] + torch.cat((-second, first), dim=-1) * sin[:, None]
    return torch.cat((turned, qkv.narrow(1, 2, 1)), dim=1)


def _normalize(
    x: torch.Tensor,
    C: int,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045 (TorchScript reads typing.Optional)
    eps: float,
    rms: bool,
):
    """LayerNorm (with its bias, if it has one) or RMSNorm, as the model's norm modules compute them."""
    if rms:
        return torch.rms_norm(x, [C], weight, eps)
    return torch.layer_norm(x, [C], weight, bias, eps)


def _activate(h: torch.Tensor, act: int) -> torch.Tensor:
    """The MLP's activation (ACTIVATION_CODES) but GELU, which decode_step applies itself: ReLU, or SwiGLU's
    SiLU(gate) x up of h = gate|up."""
    if act == 2:
        gate, up = h.chunk(2, dim=-1)
        return F.silu(gate) * up
    if act == 1:
        return F.relu(h)
    return F.gelu(h, approximate="tanh")


def _project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` with nn.Linear's (out, in) weight as it is stored: a (C,) vector goes through one
    `addmv`, which reads the weight row by row (as fast here as `addmm` on a transposed copy, and there is no copy to
    go stale); (B, C) rows through `F.linear`."""
    if x.dim() == 1:
        return torch.mv(weight, x) if bias is None else torch.addmv(bias, weight, x)
    return F.linear(x, weight, bias)


_COMPILED: dict = {}
_COMPILE_LOCK = threading.Lock()  # the app's worker threads may ask at once; catch_warnings is not thread-safe


def compiled(fn):
    """`fn` compiled with TorchScript once per process, or `fn` itself where that fails (no TorchScript in this
    torch, or no source): the same function, run as Python."""
    if fn not in _COMPILED:
        with _COMPILE_LOCK:
            if fn not in _COMPILED:
                import warnings

                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # torch.jit is deprecated for torch.compile; see DecodeStep
                        _COMPILED[fn] = torch.jit.script(fn)
                except Exception:
                    _COMPILED[fn] = fn
    return _COMPILED[fn]


def compiled_decode_step():
    """`decode_step`, compiled (see `compiled`)."""
    return compiled(decode_step)


def _linear(linear: nn.Linear) -> list[torch.Tensor]:
    """[weight, bias]; an empty tensor for a bias it does not have (decode_step, told `biased`, then passes None)."""
    return [linear.weight, linear.bias if linear.bias is not None else ABSENT]


ABSENT = torch.empty(0)  # stands for a norm a variant does not have (its flag then skips it) or a missing bias


# the modules `decode_step` computes exactly; any other kind (a LoRA wrapper, a quantized Linear subclass, this
# model's classes loaded as remote code from a folder) sends a stream to the modules
SUPPORTED_MODULES = (
    GPT2MiniForCausalLM, GPT2MiniModel, Block, CausalSelfAttention, MLP, nn.Linear, nn.LayerNorm, nn.RMSNorm,
    nn.Embedding, nn.Dropout, nn.GELU, nn.ReLU, nn.SiLU, nn.ModuleList,
)  # fmt: skip


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
            if self.fast is not None and self.fast.usable():
                self.logits = self.fast(token, self.positions, self.cache)
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


# ---------------------------------------------------------------------------------------------------------------------
# Continuous batching: many requests' streams of one model, stepped together


class PoolRow:
    """One request in a `StreamPool`: its settings and generator, every token so far, and where it stands: the
    buffer row it holds (`index`; its next-token logits are the pool's `logits[index]`), the slots of that row in
    use (`length`), its next token's position, how many tokens it may still draw (`left`), how many likeliest
    tokens it reports with each token (`top`) and its share of the steps' time so far (`seconds`: each step's time
    over the rows it served)."""

    def __init__(self, pool: "StreamPool", ids: list[int], settings: SamplingSettings, top: int):
        self.pool, self.settings, self.history, self.top = pool, settings, list(ids), top
        self.generator = seeded_generator(settings.seed, pool.device)
        self.index, self.length, self.position, self.left = -1, 0, 0, settings.max_new_tokens
        self.seconds = 0.0

    @property
    def logits(self) -> torch.Tensor:
        """(1, V): the logits of this row's next token, before any filtering."""
        return self.pool.logits[self.index : self.index + 1]


class StreamPool:
    """The streams of one model, one row each, advanced together by one batched `DecodeStep` per `step()`: rows join
    and leave between steps (continuous batching, as vLLM and TGI serve language models).

    Each row draws its own token with its own settings and generator (`draw`, as `TokenStream` does for one prompt;
    rows with equal settings in one call), so the same seed gives the same text whoever else is in the pool; a test
    holds every row to a `TokenStream` of its own. Rows sit at different lengths: each writes its own slot of the
    shared `KVBuffer`, and the buffer's bias shows each row its own slots only. Past the context a row slides alone,
    as `TokenStream` slides. The rows in use are the buffer's first ones (a row that leaves is replaced by the last),
    so a step reads no empty row. The buffer, with the rows' logits and seen tokens, doubles when it is full
    (`reserve` makes room for several joins at once) and is kept when the pool empties, for the rows that come next
    (requests that start together end together); `free()` gives it back. Where `DecodeStep` cannot run (hooks,
    training mode, modules it does not know) each row goes through the model's own forward instead. A step makes a
    few calls into torch per row and the rest per pool: each call lets other Python threads in, which under load is
    what a step waits for (serving.py's `ProcessServer` steps in a process of its own).
    """

    def __init__(self, model: GPT2MiniForCausalLM, window: int | None = None):
        cfg = model.config
        self.model, self.config, self.rows = model, cfg, []
        # read once: the buffer is sized by them (a transformers config's attributes are slow to read, ~1 us each)
        self.n_positions, self.n_head, self.vocab_size = cfg.n_positions, cfg.n_head, cfg.vocab_size
        self.window = window if window is not None else self.n_positions * 3 // 4
        if not 0 < self.window < self.n_positions:
            raise ValueError(f"window must be between 1 and {self.n_positions - 1}, got {self.window}")
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.shape = StreamPool._shape(model)  # what the buffer is made for (`fits`)
        self.fast = DecodeStep(model)
        self.relative = cfg.use_position_embeddings and cfg.position_style == "rope"
        self.cache: KVBuffer | None = None
        self.parts: dict[int, tuple[KVBuffer, torch.Tensor]] = {}  # n: the buffer's first n rows, their (row, head)s
        self.logits = torch.empty(0, self.vocab_size, device=self.device)  # (rows held, V), float
        self.seen = torch.empty(0, self.vocab_size, dtype=torch.bool, device=self.device)

    def fits(self) -> bool:
        """Whether the model still needs the buffer this pool was made with (device, dtype, cache geometry), so that
        an emptied pool may serve it again."""
        return self.shape == StreamPool._shape(self.model)

    @staticmethod
    def _shape(model: GPT2MiniForCausalLM) -> tuple:
        cfg, param = model.config, next(model.parameters())
        geometry = (cfg.n_layer, cfg.n_head, cfg.n_positions, cfg.n_embd, cfg.vocab_size)
        return geometry, cfg.use_position_embeddings, cfg.position_style, param.device, param.dtype

    def join(self, ids: Sequence[int], settings: SamplingSettings, top: int = 0) -> PoolRow:
        """A new row for the prompt `ids` (its last n_positions tokens), drawing `settings.max_new_tokens` tokens,
        each reported with its log-probability and the `top` likeliest tokens (see `step`)."""
        (ids,) = checked_prompts([ids], self.vocab_size)
        row = PoolRow(self, ids, settings, top)
        self.reserve(len(self.rows) + 1)
        row.index = len(self.rows)
        self.rows.append(row)
        try:
            self.seen[row.index] = False
            self.seen[row.index, torch.tensor(ids, device=self.device)] = True
            self.logits[row.index] = self._prefill(row, ids[-self.n_positions :])[0]
        except BaseException:  # a prompt that did not go in leaves nothing behind
            self.leave(row)
            raise
        row.position = row.length
        return row

    def leave(self, row: PoolRow) -> None:
        """Take `row` out (its buffer row goes to the last row in use, moved there)."""
        if row not in self.rows:
            return
        last = self.rows.pop()
        if last is not row:
            self._move(last, row.index)
            self.rows[row.index] = last
        row.index = -1

    def free(self) -> None:
        """Give back the buffer of an empty pool (the next join allocates one again)."""
        if self.rows:
            raise RuntimeError(f"a pool with {len(self.rows)} rows keeps its buffer")
        self.cache, self.parts = None, {}
        self.logits, self.seen = self.logits[:0].clone(), self.seen[:0].clone()

    @torch.inference_mode()
    def step(self) -> list[tuple[PoolRow, int, tuple | None]]:
        """Draw one token for every row and feed it back; return (row, token, likelihood) for each, the likelihood
        for rows that asked for it (`top` > 0): (the token's log-probability, the `top` likeliest tokens, their
        log-probabilities). A row that has drawn its last token leaves the pool."""
        start, served = time.perf_counter(), list(self.rows)
        tokens = self._draw(served)
        likely = self._likelihoods(served, tokens)
        drawn = []
        for row, token, said in zip(served, tokens, likely, strict=True):
            row.history.append(token)
            row.left -= 1
            drawn.append((row, token, said))
        for row in [r for r in served if r.left == 0]:
            self.leave(row)
        for row in self.rows:
            if row.length == self.n_positions:
                self._slide(row)
        if self.rows:
            self._advance()
        share = (time.perf_counter() - start) / max(len(served), 1)
        for row in served:
            row.seconds += share
        return drawn

    def _draw(self, rows: list[PoolRow]) -> list[int]:
        """Each row's next token: rows with the same settings (but seeds) in one `draw`, each with its generator."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):
            s = r.settings
            groups.setdefault((s.temperature, s.top_k, s.top_p, s.repetition_penalty), []).append(i)
        n = len(rows)
        if len(groups) == 1:  # one draw over the pool's own rows (the seen tokens are marked in place)
            return draw(self.logits[:n], rows[0].settings, [r.generator for r in rows], self.seen[:n]).tolist()
        tokens = [0] * n
        for members in groups.values():
            at = torch.tensor(members, device=self.device)
            seen = self.seen[at]
            picked = draw(self.logits[at], rows[members[0]].settings, [rows[i].generator for i in members], seen)
            self.seen[at] = seen
            for i, token in zip(members, picked.tolist(), strict=True):
                tokens[i] = token
        return tokens

    def _likelihoods(self, rows: list[PoolRow], tokens: list[int]) -> list[tuple | None]:
        """For the rows that asked (`top`), computed for all rows at once: (log-probability of the token drawn, the
        likeliest tokens, their log-probabilities), from the logits before any filtering."""
        k = max((r.top for r in rows), default=0)
        if k == 0:
            return [None] * len(rows)
        logp = torch.log_softmax(self.logits[: len(rows)], dim=-1)
        chosen = logp.gather(1, torch.tensor(tokens, device=self.device)[:, None])[:, 0].tolist()
        best = logp.topk(min(k, self.vocab_size), dim=-1)
        ids, values = best.indices.tolist(), best.values.tolist()
        return [(chosen[i], ids[i][: r.top], values[i][: r.top]) if r.top else None for i, r in enumerate(rows)]

    def _advance(self) -> None:
        """Every row's newest token through the model at the row's own slot and position: the next logits."""
        rows, n = self.rows, len(self.rows)
        tokens = torch.tensor([r.history[-1] for r in rows], device=self.device)
        positions = torch.tensor([r.position for r in rows], device=self.device)
        if self.fast.usable():
            part, heads = self._part(n)
            slots = [r.length for r in rows]
            own = OwnSlots(heads, torch.tensor(slots, device=self.device).repeat_interleave(self.n_head), max(slots))
            part.bias[heads, 0, own.slots] = 0  # each row sees its new slot
            self.logits[:n] = self.fast(tokens, positions, part, own)
            for r in rows:
                r.length += 1
        else:  # the modules, one row at a time (`_forward` counts the slot): what hooks, training mode and unknown
            # modules need
            for i, r in enumerate(rows):
                self.logits[i] = self._forward(r, tokens[i : i + 1, None], positions[i : i + 1, None])[0]
        for r in rows:
            r.position += 1

    def _part(self, n: int) -> tuple[KVBuffer, torch.Tensor]:
        """The buffer's first n rows as a buffer of their own, and their (row, head) indices: made once per n and
        buffer (a step makes no views; every call into torch lets other threads in), dropped with the buffer."""
        if n not in self.parts:
            self.parts[n] = (self.cache.part(0, n), torch.arange(n * self.n_head, device=self.device))
        return self.parts[n]

    def _forward(self, row: PoolRow, ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`ids` (1, t) through the model over `row`'s own part of the buffer from its slot `length`; (1, V) logits."""
        part = self.cache.part(row.index, row.index + 1)
        part.length = row.length
        out = self.model(input_ids=ids, position_ids=position_ids, cache=part, use_cache=True, logits_to_keep=1)
        end = row.length + ids.shape[1]
        self.cache.bias[row.index * self.n_head : (row.index + 1) * self.n_head, :, row.length : end] = 0
        row.length = end
        return out.logits[:, -1, :].float()

    @torch.inference_mode()
    def _prefill(self, row: PoolRow, ids: list[int]) -> torch.Tensor:
        """Fill `row`'s part of the buffer from slot 0 with `ids`; the rest of it is hidden. Returns the next logits."""
        nh = self.n_head
        self.cache.bias[row.index * nh : (row.index + 1) * nh] = torch.finfo(self.dtype).min
        row.length = 0
        return self._forward(row, torch.tensor([ids], device=self.device))

    def _slide(self, row: PoolRow) -> None:
        """A row whose part of the buffer is full keeps its last `window` tokens, as `TokenStream` does: with rotary
        positions their cache as it is, moved to the front; otherwise re-encoded at positions 0.. (all but the
        newest token, which the step then feeds)."""
        if self.relative:
            nh, w, start = self.n_head, self.window, row.length - self.window
            for c in self.cache.qkv:
                c[row.index, :, :w] = c[row.index, :, start : row.length].clone()
            self.cache.bias[row.index * nh : (row.index + 1) * nh, :, w:] = torch.finfo(self.dtype).min
            row.length = w
        else:
            self._prefill(row, row.history[-self.window : -1])
            row.position = row.length

    def reserve(self, rows: int) -> None:
        """A buffer that holds `rows` rows: allocated for the first, doubled (rows copied over) until it does."""
        have = 0 if self.cache is None else self.cache.qkv[0].shape[0]
        if rows <= have:
            return
        size = max(1, have)
        while size < rows:
            size *= 2
        bigger = KVBuffer(self.config, size, self.device, self.dtype)
        if self.cache is not None:
            for old, new in zip(self.cache.qkv, bigger.qkv, strict=True):
                new[:have] = old
            bigger.bias[: self.cache.bias.shape[0]] = self.cache.bias
        self.cache, self.parts = bigger, {}
        logits, seen = self.logits, self.seen
        self.logits = torch.zeros(size, self.vocab_size, device=self.device)
        self.seen = torch.zeros(size, self.vocab_size, dtype=torch.bool, device=self.device)
        self.logits[:have], self.seen[:have] = logits[:have], seen[:have]

    def _move(self, row: PoolRow, index: int) -> None:
        """Copy `row`'s part of the buffer, its logits and seen tokens to row `index`, and let it live there."""
        nh = self.n_head
        for c in self.cache.qkv:
            c[index] = c[row.index]
        self.cache.bias[index * nh : (index + 1) * nh] = self.cache.bias[row.index * nh : (row.index + 1) * nh]
        self.logits[index], self.seen[index] = self.logits[row.index], self.seen[row.index]
        row.index = index


class PoolTicket:
    """One request to a `StreamServer`: what it asked for, and the queue its tokens come back on, a list at a time:
    its first token at once, then what was drawn every DELIVER_S (each reader wakes a few times a second, not once
    per token: many threads woken per step would keep the stepping thread waiting for Python's lock)."""

    def __init__(self, model, ids: list[int], settings: SamplingSettings, top: int, tokens=None):
        self.model, self.ids, self.settings, self.top = model, ids, settings, top
        # lists of (token, likelihood, seconds), or an error: a queue, or anything with its `put` (serving.py's)
        self.tokens = queue.SimpleQueue() if tokens is None else tokens
        self.drawn: list[tuple] = []  # not yet delivered
        self.delivered = -math.inf  # when the last list went
        self.gone = False  # set by the reader that stops early: the row leaves at the next step
        self.row: PoolRow | None = None

    def add(self, item: tuple, last: bool) -> None:
        """Keep a drawn token; deliver what is kept if it is the first, the last or DELIVER_S has passed."""
        self.drawn.append(item)
        now = time.monotonic()
        if last or now - self.delivered >= DELIVER_S:
            self.tokens.put(self.drawn)
            self.drawn, self.delivered = [], now


class PoolReader:
    """The tokens of one request to a `StreamServer` as they are drawn: an iterator of (token, likelihood, seconds)
    that ends after `max_new_tokens`; an error of the decoding thread is raised here. `close()` (or dropping the
    reader) takes the request out of its pool at the next step."""

    def __init__(self, ticket: PoolTicket, reply_s: float):
        self.ticket, self.reply_s, self.ready, self.given = ticket, reply_s, collections.deque(), 0

    def __iter__(self) -> "PoolReader":
        return self

    def __next__(self) -> tuple:
        if self.given == self.ticket.settings.max_new_tokens:
            self.close()
            raise StopIteration
        if not self.ready:
            try:
                items = self.ticket.tokens.get(timeout=self.reply_s)
            except queue.Empty:
                self.close()
                raise RuntimeError(f"no token came from the decoding thread in {self.reply_s:g} s") from None
            if isinstance(items, BaseException):
                self.close()
                raise items
            self.ready.extend(items)
        self.given += 1
        return self.ready.popleft()

    def close(self) -> None:
        self.ticket.gone = True

    __del__ = close


DELIVER_S = 0.03  # how often a StreamServer hands a request the tokens drawn for it (its first one at once)


class StreamServer:
    """Every model's `StreamPool`, stepped in turn on one thread of its own while any has a row: a lab's requests
    join their model's pool and read their tokens from a queue (`stream`), so one batched step serves every user of
    a model at once. The thread waits when nothing is asked and starts again on the next request; an error in a
    pool's step ends each of its requests with that error, raised in the thread that reads it. A pool that empties
    is kept `keep_s` seconds with its buffer for the requests that come next (a class's requests come in waves),
    then dropped with its model."""

    def __init__(self, window: int | None = None, reply_s: float = 120.0, keep_s: float = 10.0):
        for name, value in (("reply_s", reply_s), ("keep_s", keep_s)):
            if not 0 < value <= threading.TIMEOUT_MAX:
                raise ValueError(f"{name} must be a positive number of seconds up to {threading.TIMEOUT_MAX:g}")
        self.window, self.reply_s, self.keep_s = window, reply_s, keep_s
        self.pools: dict[int, StreamPool] = {}  # id(model): a pool holds its model, so ids stay
        self.idle: dict[int, float] = {}  # id(model): since when its pool has had no request (time.monotonic())
        self.tickets: dict[int, list[PoolTicket]] = {}  # id(model): the tickets in its pool
        self.waiting: list[PoolTicket] = []
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None

    def stream(self, model, ids: Sequence[int], settings: SamplingSettings, top: int = 0) -> "PoolReader":
        """Join `model`'s pool now with the prompt `ids`; the reader yields (token, likelihood, the row's `seconds`)
        for each of `settings.max_new_tokens` tokens (the likelihood as `StreamPool.step` gives it, with the `top`
        likeliest tokens; None for top 0). Closing the reader early takes the request out."""
        ticket = PoolTicket(model, list(ids), settings, top)
        self.submit(ticket)
        return PoolReader(ticket, self.reply_s)

    def submit(self, ticket: PoolTicket) -> None:
        """Queue `ticket` to join its model's pool at the next step; its tokens go to `ticket.tokens`, and setting
        `ticket.gone` takes it out."""
        with self.wake:
            self.waiting.append(ticket)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="stream-server", daemon=True)
                self.thread.start()
            self.wake.notify()

    def busy(self) -> int:
        """Requests being decoded or waiting to join."""
        with self.wake:
            return len(self.waiting) + sum(len(t) for t in self.tickets.values())

    def _run(self) -> None:
        while True:
            with self.wake:
                self._drop_idle_pools()
                while not self.waiting and not self.tickets:
                    self.wake.wait(timeout=self.keep_s if self.idle else None)
                    self._drop_idle_pools()
                joining, self.waiting = self.waiting, []
            self._admit(joining)
            del joining  # while this thread waits, no ticket (nor its model) is kept alive by it
            for key in list(self.tickets):
                self._step(key)

    def _drop_idle_pools(self) -> None:
        """Drop the pools (their buffers, their models) that have had no request for `keep_s` seconds."""
        now = time.monotonic()
        for key in [k for k, since in self.idle.items() if now - since >= self.keep_s]:
            del self.pools[key], self.idle[key]

    def _admit(self, joining: list[PoolTicket]) -> None:
        """Each ticket joins its model's pool (made if need be), whose buffer first grows for all that join it."""
        for ticket in joining:
            self._renew_if_stale(id(ticket.model))
        for key, count in collections.Counter(id(t.model) for t in joining).items():
            if key in self.pools:
                try:
                    self.pools[key].reserve(len(self.pools[key].rows) + count)
                except Exception:  # each join then grows the buffer itself, and a failure is its request's error
                    pass
        for ticket in joining:
            self._join(ticket)

    def _renew_if_stale(self, key: int) -> None:
        """An idle pool whose model changed since it was made (device, dtype, cache geometry, positions) is dropped,
        so that its buffer does not outlive what it was made for (its `DecodeStep` looks again at a model whose
        modules or parameters were replaced by itself)."""
        if key in self.idle and not self.pools[key].fits():
            del self.pools[key], self.idle[key]

    def _join(self, ticket: PoolTicket) -> None:
        key = id(ticket.model)
        try:
            if key not in self.pools:
                self.pools[key] = StreamPool(ticket.model, self.window)
            ticket.row = self.pools[key].join(ticket.ids, ticket.settings, ticket.top)
        except Exception as e:  # a prompt the pool refuses: that request's error, raised where it is read
            if key not in self.tickets and key not in self.idle:  # a pool made for it alone does not keep the model
                del self.pools[key]
            ticket.tokens.put(e)
            return
        self.idle.pop(key, None)
        with self.wake:
            self.tickets.setdefault(key, []).append(ticket)

    def _step(self, key: int) -> None:
        """One step of a model's pool: the requests whose readers left go first; the tokens go to their queues."""
        pool = self.pools[key]
        for ticket in [t for t in self.tickets[key] if t.gone]:
            pool.leave(ticket.row)
        try:
            drawn = pool.step() if pool.rows else []
        except Exception as e:  # every request of this pool ends with it: none gets a wrong token silently
            for ticket in self.tickets[key]:
                ticket.tokens.put(e)
            pool.rows = []
            drawn = []
        by_row = {id(t.row): t for t in self.tickets[key]}
        for row, token, likely in drawn:
            by_row[id(row)].add((token, likely, row.seconds), last=row.left == 0)  # every row has its ticket
        with self.wake:
            self.tickets[key] = [t for t in self.tickets[key] if t.row in pool.rows]
            if not self.tickets[key]:  # kept keep_s seconds for the next requests (`_drop_idle_pools`)
                del self.tickets[key]
                self.idle[key] = time.monotonic()


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
