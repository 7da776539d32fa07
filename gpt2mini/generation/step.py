"""The single-token forward: `KVBuffer`, a pre-allocated cache written in place, and `DecodeStep`, which advances
every row of a filled cache by one token as the few dozen tensor operations it is, compiled with TorchScript where
available. A test holds it to the model's own forward for every ablation switch and preset.
"""

import functools
import inspect
import math
import operator
import sys
import types
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from configuration_gpt2mini import GPT2MiniConfig
from gpt2mini.generation.jit import compiled
from modeling_gpt2mini import MLP, Block, CausalSelfAttention, GPT2MiniForCausalLM, GPT2MiniModel, rotary, sinusoids


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
        self.views = CacheViews(self.rows, self.keys_t, self.values, self.bias)  # as decode_step takes them

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

    What it computes is described by `describe`, read off the model's own modules: a `StepModel` of `StepLayer`s,
    each part as its module is (a `Norm`'s kind and eps, an `Attention`'s and a `FeedForward`'s projections, the
    activation module's function). It keeps no copy of any weight: the description holds the model's Parameter
    objects, so every step reads them as they are at that moment and no update can be missed (an optimizer step,
    fused or not, `load_state_dict`, an in-place edit, `.to(dtype)`); anything else the forward reads that changes (a
    replaced Parameter, buffer or module, a norm's eps, a block's switch, the config's, a training flag: `looked_at`)
    is seen by `current` at the next call and described again. It reads `Block.use_residual` at every call (so
    residual knockouts apply), and refuses (`usable()` is False) while any module is in training mode, has forward
    hooks, or is one `computable` does not vouch for, all of which only the module path runs: `TokenStream` then uses
    the model.
    """

    def __init__(self, model: GPT2MiniForCausalLM):
        self.model = model
        self.collect()

    def usable(self) -> bool:
        """False while the model trains (dropout), has forward hooks (knockouts, probes) or modules this step does not
        compute (a PEFT adapter, a quantized layer, an edited copy of the model's code): the modules are stepped then,
        and compute what those do. A module or parameter replaced since the last look is looked at again first."""
        if not self.current():
            self.collect()
        return self.parts is not None and not self.training and not any(self.hooks)

    def collect(self) -> None:
        """Look at the model as it is now: its forward-hook dictionaries, whether any module trains, what `current`
        compares with (`looked_at`), and, if this step computes every module it has, its description (`parts`; None
        otherwise)."""
        from torch.nn.modules import module as global_hooks

        modules = list(self.model.modules())
        # the hook dictionaries themselves (empty is falsy), so that checking them all costs about a microsecond
        self.hooks = [global_hooks._global_forward_hooks, global_hooks._global_forward_pre_hooks]
        for m in modules:
            self.hooks += [m._forward_hooks, m._forward_pre_hooks]
        # a module whose forward reads its training flag (dropout, attention's dropout) trains: the modules are stepped
        flags = [(vars(m), "training", m.training) for m in modules if type(m) not in SAME_IN_TRAINING]
        self.training = any(training for _, _, training in flags)
        self.blocks = list(self.model.transformer.h)
        self.parts, reads = None, []
        own_forward = any("forward" in vars(m) for m in modules)  # an instance given a forward of its own
        if computable([*modules, self.model.config]) and not own_forward:
            try:
                self.parts = describe(self.model, reads)
            except Unsupported:  # a known module where the step does not expect it: the modules are stepped
                pass
        # what `current` compares at every step: the modules and tensors, and every value the description was made of
        self.held = looked_at(self.model, flags + reads)

    def current(self) -> bool:
        """Whether the model is still as it was looked at (`looked_at`), but for its tensors' values."""
        return self.held.changed() is None

    def step(
        self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVBuffer, slots: "OwnSlots | None" = None
    ) -> torch.Tensor | None:
        """`usable()` and then the step, with one look at the model: the (B, V) logits, or None (nothing written)
        where the modules must be stepped instead."""
        return self._computed(tokens, positions, cache, slots) if self.usable() else None

    def __call__(
        self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVBuffer, slots: "OwnSlots | None" = None
    ) -> torch.Tensor:
        """tokens, positions: (B,) long; writes slot `cache.length` (the caller advances it), or each row's own slot
        (`slots`; the caller sets `cache.bias` to show each row what it sees); returns (B, V) logits."""
        if not self.current():  # changed other than in its tensors' values: look at the model again
            self.collect()
        if self.parts is None:  # never a step through a model this step does not compute: callers ask `usable()`
            raise RuntimeError("DecodeStep cannot compute this model's modules; step the model itself")
        return self._computed(tokens, positions, cache, slots)

    @torch.inference_mode()
    def _computed(
        self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVBuffer, slots: "OwnSlots | None"
    ) -> torch.Tensor:
        """The step for a model this step was looked at and found to compute (`parts`)."""
        residual = [b.use_residual for b in self.blocks]  # read live: a residual knockout flips it
        slot = cache.length if slots is None else slots.widest
        return compiled_decode_step()(self.parts, residual, tokens, positions, cache.views, slot, slots)


class OwnSlots(NamedTuple):
    """Where each row of a `DecodeStep` writes when rows sit at different lengths: for every (row, head) of the cache
    (`heads`, (B*nh,): 0..B*nh-1) its row's slot (`slots`, (B*nh,)); `widest`, the largest, is how far keys are read."""

    heads: torch.Tensor
    slots: torch.Tensor
    widest: int


PLAIN = (bool, int, float, str, tuple, type(None))  # the attribute values `looked_at` holds (tensors are read live)


def looked_at(model: nn.Module, values: list[tuple[dict, str, object]] | None = None) -> "Looked":
    """Everything of `model` that its forward reads but its tensors' values, as it is now: each Parameter, buffer and
    submodule where it sits (the same object must be there); each module's own `forward` (None unless an instance
    was given one); and `values` (dictionary, key, value: an equal value must be there), by default every plain
    attribute of each module and of the config (a norm's eps, a block's switches, an activation's `approximate`,
    every training flag). Not seen: a class's methods patched after the project imported it (`known` compares them
    when it looks)."""
    modules = list(model.modules())
    objects = [(m._parameters, k, p) for m in modules for k, p in m._parameters.items()]
    objects += [(m._buffers, k, b) for m in modules for k, b in m._buffers.items()]
    objects += [(m._modules, k, c) for m in modules for k, c in m._modules.items()]
    objects += [(vars(m), "forward", vars(m).get("forward")) for m in modules]
    if values is None:
        values = []
        for part in [*modules, model.config]:
            attributes = vars(part)
            values += [
                (attributes, k, v) for k, v in attributes.items() if not k.startswith("_") and isinstance(v, PLAIN)
            ]
    return Looked(*columns(objects), *columns(values))


def columns(held: list[tuple]) -> tuple[list, ...]:
    """(dictionaries, keys, what each held), as three lists."""
    return tuple(map(list, zip(*held, strict=True))) if held else ([], [], [])


class Looked(NamedTuple):
    """What `looked_at` saw: under key `keys[i]` of dictionary `places[i]` the very object `seen[i]`, and under
    `value_keys[i]` of `value_places[i]` a value equal to `values[i]`."""

    places: list[dict]
    keys: list[str]
    seen: list[object]
    value_places: list[dict]
    value_keys: list[str]
    values: list

    def changed(self) -> tuple[dict, str] | None:
        """The first (dictionary, key) that holds another object or value now, or None: one test each, in C (about
        10 µs for the shipped baseline's 394)."""
        if all(map(operator.is_, map(dict.get, self.places, self.keys), self.seen)):
            if list(map(dict.get, self.value_places, self.value_keys)) == self.values:
                return None
            return next((d, k) for d, k, v in zip(*self[3:], strict=True) if d.get(k) != v)
        return next((d, k) for d, k, v in zip(*self[:3], strict=True) if d.get(k) is not v)


# ---------------------------------------------------------------------------------------------------------------------
# The model as the step reads it: one typed description per part, holding the modules' own Parameter objects.
# NamedTuples, because TorchScript compiles them, Optional fields and all.


class Norm(NamedTuple):
    """An nn.LayerNorm or nn.RMSNorm over the last dimension, as its forward calls `torch.layer_norm` /
    `torch.rms_norm`."""

    rms: bool
    weight: torch.Tensor | None  # None without elementwise_affine
    bias: torch.Tensor | None  # None for an RMSNorm, or a LayerNorm without bias
    eps: float


class Attention(NamedTuple):
    """A `CausalSelfAttention`: its two nn.Linear projections' weights ((out, in), as stored) and biases."""

    c_attn_weight: torch.Tensor
    c_attn_bias: torch.Tensor | None
    c_proj_weight: torch.Tensor
    c_proj_bias: torch.Tensor | None


class FeedForward(NamedTuple):
    """An `MLP`: its two projections and its activation module's function, by name (see `ACTIVATIONS`); `gated`
    (SwiGLU) when c_fc makes gate|up and the activation of the gate times up is projected back."""

    c_fc_weight: torch.Tensor
    c_fc_bias: torch.Tensor | None
    c_proj_weight: torch.Tensor
    c_proj_bias: torch.Tensor | None
    activation: str
    gated: bool


class StepLayer(NamedTuple):
    """A `Block`, part for part (None where a switch removed one). Its `use_residual` is not here: knockouts flip it,
    so `DecodeStep` reads it at every call."""

    ln_1: Norm | None
    attention: Attention | None
    ln_2: Norm | None
    mlp: FeedForward | None
    pre_ln: bool
    post_ln: bool


class StepModel(NamedTuple):
    """A `GPT2MiniForCausalLM`: embeddings and how positions enter (`positions`: "learned" with `wpe`,
    "sinusoidal", "rope", or "none"), the token embeddings' factor, the layers, the final norm and the head."""

    wte: torch.Tensor
    wpe: torch.Tensor | None
    positions: str
    embedding_scale: float
    layers: list[StepLayer]
    ln_f: Norm | None
    lm_head_weight: torch.Tensor
    lm_head_bias: torch.Tensor | None
    n_head: int


class Unsupported(Exception):
    """A module of a kind this step computes, but where it does not compute it (an nn.Linear as a norm, a block
    that normalises without a norm): the model is stepped as modules."""


def describe(model: GPT2MiniForCausalLM, reads: list | None = None) -> StepModel:
    """The model as `decode_step` reads it: references to its Parameters, never copies (see `DecodeStep`), and its
    switches as the modules and their forward read them, each value read noted in `reads` (`read`)."""
    reads = [] if reads is None else reads
    t, cfg = model.transformer, model.config
    width = read(reads, cfg, "n_embd")
    positions = read(reads, cfg, "position_style") if read(reads, cfg, "use_position_embeddings") else "none"
    if positions == "learned" and t.wpe is None:
        raise Unsupported("learned positions without a position table")
    wpe = _embedding(t.wpe, reads) if positions == "learned" else None
    head_weight, head_bias = _linear(model.lm_head)
    layers = [_layer(b, width, reads) for b in t.h]
    heads = {read(reads, b.attn, "n_head") for b in t.h if b.attn is not None} or {read(reads, cfg, "n_head")}
    if len(heads) != 1:
        raise Unsupported(f"layers with {sorted(heads)} heads")
    if any(read(reads, b.attn, "head_dim") * next(iter(heads)) != width for b in t.h if b.attn is not None):
        raise Unsupported("heads that do not split the width evenly")
    return StepModel(
        wte=_embedding(t.wte, reads),
        wpe=wpe,
        positions=positions,
        embedding_scale=math.sqrt(width) if read(reads, cfg, "scale_embeddings") else 1.0,
        layers=layers,
        ln_f=_norm(t.ln_f, width, reads),
        lm_head_weight=head_weight,
        lm_head_bias=head_bias,
        n_head=heads.pop(),
    )


def read(reads: list, part: object, name: str):
    """`part`'s attribute `name`, noted in `reads` as (its dictionary, the name, the value) where it is the
    instance's own: what `DecodeStep.current` compares at every step, since the description was made of it."""
    value = getattr(part, name)
    if name in vars(part):
        reads.append((vars(part), name, value))
    return value


def _layer(block: Block, width: int, reads: list) -> StepLayer:
    pre_ln, post_ln = read(reads, block, "pre_ln"), read(reads, block, "post_ln")
    normed = pre_ln or post_ln
    for part, ln in ((block.attn, block.ln_1), (block.mlp, block.ln_2)):
        if part is not None and normed and ln is None:  # the block's forward would fail: let it
            raise Unsupported("a block that normalises without a norm")
    a, m = block.attn, block.mlp
    attention = None if a is None else Attention(*_linear(a.c_attn), *_linear(a.c_proj))
    mlp = None
    if m is not None:
        mlp = FeedForward(*_linear(m.c_fc), *_linear(m.c_proj), _activation(m.act, reads), read(reads, m, "gated"))
    ln_1, ln_2 = _norm(block.ln_1, width, reads), _norm(block.ln_2, width, reads)
    return StepLayer(ln_1, attention, ln_2, mlp, pre_ln, post_ln)


def _norm(norm: nn.Module | None, width: int, reads: list) -> Norm | None:
    if norm is None:
        return None
    if type(norm) not in (nn.LayerNorm, nn.RMSNorm) or tuple(read(reads, norm, "normalized_shape")) != (width,):
        raise Unsupported(f"{type(norm).__name__} as a norm over the last {width} channels")
    eps = read(reads, norm, "eps")
    if type(norm) is nn.LayerNorm:
        return Norm(False, norm.weight, norm.bias, eps)
    if eps is None:  # an RMSNorm's eps None is its input dtype's own: not described here
        raise Unsupported("an RMSNorm without its eps")
    return Norm(True, norm.weight, None, eps)


def _linear(linear: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    if type(linear) is not nn.Linear:
        raise Unsupported(f"{type(linear).__name__} as a projection")
    return linear.weight, linear.bias


def _embedding(embedding: nn.Module, reads: list) -> torch.Tensor:
    if type(embedding) is not nn.Embedding or read(reads, embedding, "max_norm") is not None:  # rescales rows it reads
        raise Unsupported("an embedding other than a plain table")
    return embedding.weight


ACTIVATIONS = ("gelu_tanh", "gelu", "relu", "silu")  # the activation modules' functions `_activate` computes


def _activation(act: nn.Module, reads: list) -> str:
    """The function of an MLP's activation module, by name (one of ACTIVATIONS)."""
    if type(act) is nn.GELU:
        return "gelu_tanh" if read(reads, act, "approximate") == "tanh" else "gelu"
    if type(act) is nn.ReLU:
        return "relu"
    if type(act) is nn.SiLU:
        return "silu"
    raise Unsupported(f"{type(act).__name__} as an activation")


class CacheViews(NamedTuple):
    """What `decode_step` reads and writes of a `KVBuffer`: per layer its rows, keys and values views; the bias."""

    rows: list[torch.Tensor]
    keys_t: list[torch.Tensor]
    values: list[torch.Tensor]
    bias: torch.Tensor


# ---------------------------------------------------------------------------------------------------------------------
# The step: written for TorchScript (typed, no keyword-only tricks, Optional refined through locals)


def decode_step(
    model: StepModel,
    residual: list[bool],
    tokens: torch.Tensor,
    positions: torch.Tensor,
    cache: CacheViews,
    slot: int,
    own_slots: OwnSlots | None,
) -> torch.Tensor:
    """The body of `DecodeStep`: (B,) tokens at (B,) positions, written to cache slot `slot`; returns (B, V) logits.
    With `own_slots` every row writes its own slot instead (a `StreamPool`'s rows are at different lengths) and
    `slot` is the widest; keys at slots 0..slot are read, and `cache.bias` hides what a row does not see.

    It reads as `GPT2MiniModel.forward` and `Block.forward` do, for one token. Weights are as the modules hold them
    (nn.Linear's (out, in)), the parameters themselves; `residual` is each block's `use_residual`, read per call.
    """
    B = tokens.shape[0]
    x = _embed(model, tokens, positions)
    head_dim = x.shape[-1] // model.n_head
    scale = head_dim**-0.5  # the scores' 1/sqrt(head_dim), applied to the query
    rope: tuple[torch.Tensor, torch.Tensor] | None = None
    if model.positions == "rope":  # one angle per row, the same for every head: (B, 1, hd) each
        cos, sin = rotary(positions[None], head_dim, x.dtype)  # (1, 1, B, hd)
        rope = (cos[0, 0, :, None], sin[0, 0, :, None])
    visible = cache.bias.narrow(2, 0, slot + 1)  # slots 0..slot: 0, or the most negative value for left padding
    if B == 1:
        x = x[0]  # one row is carried as a (C,) vector, so that every projection is one `addmv` (see `_project`)
    for i, layer in enumerate(model.layers):
        attention = layer.attention
        if attention is not None:
            h = _normalize(x, layer.ln_1) if layer.pre_ln else x
            qkv = _project(h, attention.c_attn_weight, attention.c_attn_bias).view(B, 3, model.n_head, head_dim)
            if rope is not None:  # rotary positions: the query and key turn by this position's angles
                qkv = _turn(qkv, rope[0], rope[1])
            y = _attend(qkv, scale, cache.rows[i], cache.keys_t[i], cache.values[i], visible, slot, own_slots)
            h = _project(y.view(x.size()), attention.c_proj_weight, attention.c_proj_bias)
            x = x + h if residual[i] else h
            if layer.post_ln:
                x = _normalize(x, layer.ln_1)
        mlp = layer.mlp
        if mlp is not None:
            h = _normalize(x, layer.ln_2) if layer.pre_ln else x
            h = _feed_forward(h, mlp)
            x = x + h if residual[i] else h
            if layer.post_ln:
                x = _normalize(x, layer.ln_2)
    ln_f = model.ln_f
    if ln_f is not None:
        x = _normalize(x, ln_f)
    logits = _project(x, model.lm_head_weight, model.lm_head_bias)
    return (logits.unsqueeze(0) if B == 1 else logits).float()


def _embed(model: StepModel, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The tokens' embeddings (times the model's factor) plus their positions: a learned table or sinusoids (RoPE's
    come later, in attention)."""
    x = torch.embedding(model.wte, tokens)
    if model.embedding_scale != 1.0:
        x = x * model.embedding_scale
    wpe = model.wpe  # set for learned positions only
    if wpe is not None:
        x = x + torch.embedding(wpe, positions)
    elif model.positions == "sinusoidal":
        x = x + sinusoids(positions[None], model.wte.shape[1], x.dtype)[0]
    return x


def _attend(
    qkv: torch.Tensor,
    scale: float,
    rows: torch.Tensor,
    keys_t: torch.Tensor,
    values: torch.Tensor,
    visible: torch.Tensor,
    slot: int,
    own_slots: OwnSlots | None,
) -> torch.Tensor:
    """One layer's attention for (B, 3, n_head, hd) q|k|v: the new k and v go into the cache, the query meets the
    keys at slots 0..slot (the query scaled first: see `DecodeStep`); returns (B*nh, 1, hd)."""
    n = slot + 1
    q = _write(rows, qkv, slot, own_slots).narrow(1, 0, 1) * scale  # (B*nh, 1, hd)
    scores = torch.baddbmm(visible, q, keys_t.narrow(2, 0, n))  # (B*nh, 1, n)
    return torch.bmm(torch.softmax(scores, dim=-1), values.narrow(1, 0, n))


def _write(rows: torch.Tensor, qkv: torch.Tensor, slot: int, own_slots: OwnSlots | None) -> torch.Tensor:
    """Write (B, 3, n_head, hd) q|k|v into a layer's cache `rows` (B*nh, T, 3, hd): every row at `slot` with one
    strided copy, or with `own_slots` each row at its own; returns what was written as (B*nh, 3, hd)."""
    B, _, n_head, hd = qkv.shape
    if own_slots is None:
        written = rows.select(1, slot)  # (B*nh, 3, hd): this position's q, k, v of every row and head
        written.view(B, n_head, 3, hd).copy_(qkv.transpose(1, 2))
        return written
    written = qkv.transpose(1, 2).reshape(B * n_head, 3, hd)
    rows.index_put_([own_slots.heads, own_slots.slots], written)
    return written


def _turn(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(B, 3, n_head, hd) q|k|v with q and k rotated by their rows' angles (cos, sin: (B, 1, hd)), as `rotate`."""
    qk = qkv.narrow(1, 0, 2)
    first, second = qk.chunk(2, dim=-1)
    turned = qk * cos[:, None] + torch.cat((-second, first), dim=-1) * sin[:, None]
    return torch.cat((turned, qkv.narrow(1, 2, 1)), dim=1)


def _normalize(x: torch.Tensor, norm: Norm | None) -> torch.Tensor:
    """What the norm module computes (`describe` sees that a block which normalises has its norms)."""
    assert norm is not None
    if norm.rms:
        return torch.rms_norm(x, [x.shape[-1]], norm.weight, norm.eps)
    return torch.layer_norm(x, [x.shape[-1]], norm.weight, norm.bias, norm.eps)


def _feed_forward(x: torch.Tensor, mlp: FeedForward) -> torch.Tensor:
    """`MLP.forward`: expand, activate (with SwiGLU the gate, times up), project back."""
    h = _project(x, mlp.c_fc_weight, mlp.c_fc_bias)
    if mlp.gated:
        gate, up = h.chunk(2, dim=-1)
        h = _activate(gate, mlp.activation) * up
    else:
        h = _activate(h, mlp.activation)
    return _project(h, mlp.c_proj_weight, mlp.c_proj_bias)


def _activate(h: torch.Tensor, activation: str) -> torch.Tensor:
    """The activation module's function (one of ACTIVATIONS)."""
    if activation == "gelu_tanh":
        return F.gelu(h, approximate="tanh")
    if activation == "relu":
        return F.relu(h)
    if activation == "silu":
        return F.silu(h)
    if activation == "gelu":
        return F.gelu(h)
    raise RuntimeError("an activation decode_step does not know: " + activation)


def _project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` with nn.Linear's (out, in) weight as it is stored: a (C,) vector goes through one
    `addmv`, which reads the weight row by row (as fast here as `addmm` on a transposed copy, and there is no copy to
    go stale); (B, C) rows through `F.linear`."""
    if x.dim() == 1:
        return torch.mv(weight, x) if bias is None else torch.addmv(bias, weight, x)
    return F.linear(x, weight, bias)


def compiled_decode_step():
    """`decode_step`, compiled (see `compiled`)."""
    return compiled(decode_step)


# ---------------------------------------------------------------------------------------------------------------------
# Which modules the step computes: recognised by what they are, not by which class object they are

# torch's modules that `describe` reads, by exact type: a subclass (a LoRA wrapper, a quantized nn.Linear) may compute
# anything, so it sends a stream to the modules
TORCH_MODULES = frozenset(
    {nn.Linear, nn.LayerNorm, nn.RMSNorm, nn.Embedding, nn.Dropout, nn.GELU, nn.ReLU, nn.SiLU, nn.ModuleList}
)

# torch's modules among those whose forward does not read their training flag (a fresh one is in training mode)
SAME_IN_TRAINING = TORCH_MODULES - {nn.Dropout}

# this project's classes whose forward `decode_step` computes (and the config whose switches it reads), by name
PROJECT_CLASSES = {
    cls.__name__: cls for cls in (GPT2MiniForCausalLM, GPT2MiniModel, Block, CausalSelfAttention, MLP, GPT2MiniConfig)
}


def computable(parts: list[object]) -> bool:
    """Whether `decode_step` computes what each of `parts` (the model's modules and its config) computes: `known`
    of each class, once per class and per look (a class's methods can be patched between looks)."""
    code: dict[str, dict] = {}  # module name: `_compiled`, for this look
    return all(known(cls, code) for cls in {type(part) for part in parts})


def known(cls: type, code: dict | None = None) -> bool:
    """Whether `decode_step` computes what instances of `cls` compute. It recognises a class by what it is:

    - one of torch's modules in TORCH_MODULES, that very type (not a subclass);
    - one of this project's classes (PROJECT_CLASSES), or a copy of it: a class of the same name, found under that
      name in the module it says defined it, whose source text is this project's file character for character (so
      every function, constant and base class its methods reach is ours) and whose functions and methods run the
      compiled code this project's had when this module was imported (so neither was edited or patched since).
      That is what `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` makes of a folder holding
      this project's model files, imported as `transformers_modules.<folder>.modeling_gpt2mini`. An edited copy
      computes something else: it is stepped as modules, never with this step's math.
    """
    if cls in TORCH_MODULES:
        return True
    ours = PROJECT_CLASSES.get(cls.__name__)
    if ours is None or cls.__qualname__ != ours.__qualname__:
        return False
    theirs = sys.modules.get(cls.__module__)
    if theirs is None or getattr(theirs, cls.__qualname__, None) is not cls:  # a class naming a module not its own
        return False
    if cls is not ours and not _same_text(theirs, sys.modules[ours.__module__]):
        return False
    code = {} if code is None else code
    if theirs.__name__ not in code:
        code[theirs.__name__] = _compiled(theirs)
    return code[theirs.__name__] == ORIGINAL_CODE[ours.__module__]


@functools.cache
def _same_text(theirs: types.ModuleType, ours: types.ModuleType) -> bool:
    """Whether module `theirs` was read from a file with the same text as `ours` (read once per pair: what runs is
    checked at every look by `_compiled`)."""
    try:
        return _source(theirs) == _source(ours)
    except (OSError, TypeError, UnicodeDecodeError):  # no file to read: nothing to vouch for it
        return False


def _source(module: types.ModuleType) -> str:
    return Path(inspect.getsourcefile(module)).read_text(encoding="utf-8")


def _compiled(module: types.ModuleType) -> dict[str, types.CodeType]:
    """The code objects of the functions and methods `module` defines, by qualified name (code objects compare by
    what they run, not by the file they came from)."""
    code = {}
    for name, value in vars(module).items():
        if getattr(value, "__module__", None) != module.__name__:
            continue  # imported, not defined here: the config class is judged on its own
        members = vars(value).items() if inspect.isclass(value) else [("", value)]
        for attr, member in members:
            member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if inspect.isfunction(member):
                code[f"{name}.{attr}"] = member.__code__
    return code


# the compiled code of this project's model files as imported, what a class's methods must still run (`known`)
ORIGINAL_CODE = {name: _compiled(sys.modules[name]) for name in {c.__module__ for c in PROJECT_CLASSES.values()}}
