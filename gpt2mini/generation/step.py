"""The single-token forward: `KVBuffer`, a pre-allocated cache written in place, and `DecodeStep`, which advances
every row of a filled cache by one token as the few dozen tensor operations it is, compiled with TorchScript where
available. A test holds it to the model's own forward for every ablation switch and preset.
"""

import math
from dataclasses import dataclass
from typing import Optional

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
