"""GPT-2 mini: GPT-2's architecture at character scale, as a Hugging Face causal LM, with switches to break it.

What is notable here:
- The body is plain PyTorch with GPT-2's parameter names (`wte`, `wpe`, `h.{i}.ln_1`, `attn.c_attn`, `attn.c_proj`,
  `ln_2`, `mlp.c_fc`, `mlp.c_proj`, `ln_f`) and numerics (tanh GELU, eps 1e-5, q|k|v split), so a
  `transformers.GPT2LMHeadModel` converts into it with identical logits (`GPT2MiniForCausalLM.from_gpt2`).
- Every ablation switch of `GPT2MiniConfig` is one branch in `Block.forward`.
- The shell is a thin `PreTrainedModel` + `GenerationMixin`: transformers 5.x KV cache passed as `cache=`, SDPA with
  an eager path, attention masks for left padding, tied embeddings, `save_pretrained` to safetensors.
- `TokenStream` / `stream_text` are a lean incremental decoder for the app and the command line: a pre-allocated KV
  buffer, temperature / top-k / top-p / repetition penalty, a per-stream seed, and a sliding window past the
  context length. Several streams (models or prompts) can be advanced step by step with `round_robin`.

This file is copied next to the weights by `save_pretrained`; it imports only torch, transformers and the config.
"""

import contextlib
import math
import numbers
import re
import threading
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

try:  # relative import when loaded as remote code from a model folder, plain import from the project root
    from .configuration_gpt2mini import GPT2MiniConfig
except ImportError:
    from configuration_gpt2mini import GPT2MiniConfig


# ---------------------------------------------------------------------------------------------------------------------
# The body: plain PyTorch, GPT-2's names


def attention_mask_for(
    attention_mask: torch.Tensor | None, q_len: int, past_len: int, device: torch.device
) -> tuple[torch.Tensor | None, bool]:
    """Return `(mask, is_causal)` for `F.scaled_dot_product_attention`.

    `mask` is None or a (B or 1, 1, q_len, past_len + q_len) bool tensor, True where a query may attend. SDPA's own
    `is_causal=True` aligns the triangle top-left, which is only right for a prefill on an empty cache; every other
    case gets an explicit bottom-right causal mask, combined with the key padding mask when there is one.
    """
    kv_len = past_len + q_len
    if attention_mask is not None:
        if attention_mask.shape[-1] != kv_len:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[-1]} positions but the cache and the input hold {kv_len}"
            )
        if bool(attention_mask.all()):
            attention_mask = None
    if attention_mask is None:
        if q_len == 1:
            return None, False  # one new query sees every cached key
        if past_len == 0:
            return None, True
    mask = causal_mask(q_len, past_len, device)  # (1, 1, q, kv)
    if attention_mask is not None:
        keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, kv)
        # a padding query still attends to itself: no row is empty, so neither SDPA nor softmax produce NaN
        own = torch.arange(kv_len, device=device)[None, :] == torch.arange(past_len, kv_len, device=device)[:, None]
        mask = (mask & keys) | own
    return mask, False


def causal_mask(q_len: int, past_len: int, device) -> torch.Tensor:
    """(1, 1, q_len, past_len + q_len) bool, aligned bottom-right: query i sits at position past_len + i."""
    q_pos = torch.arange(past_len, past_len + q_len, device=device)[:, None]
    k_pos = torch.arange(past_len + q_len, device=device)[None, :]
    return (k_pos <= q_pos)[None, None]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, GPT-2 style (one `c_attn` projection split into q|k|v)."""

    def __init__(self, config: GPT2MiniConfig, layer_idx: int):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.layer_idx = layer_idx
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, mask, is_causal, cache=None, eager=False, output_attentions=False):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nh, past + T, hd)
        dropout_p = self.attn_pdrop if self.training else 0.0
        weights = None
        if eager or output_attentions:
            # explicit softmax: the reference path, and the only one that can return the weights
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, nh, T, past + T)
            if mask is None and is_causal:
                mask = causal_mask(T, k.shape[-2] - T, x.device)
            if mask is not None:
                # an additive finfo.min (not -inf) keeps a fully masked row finite
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            weights = F.softmax(scores, dim=-1)
            y = F.dropout(weights, p=dropout_p, training=self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.resid_dropout(self.c_proj(y)), weights


class MLP(nn.Module):
    """GPT-2's feed-forward layer: expand 4x, tanh GELU ("gelu_new"), project back."""

    def __init__(self, config: GPT2MiniConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.inner_dim)
        self.act = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(config.inner_dim, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """One transformer block. Each ablation switch is a single branch below."""

    def __init__(self, config: GPT2MiniConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.use_residual = config.use_residual
        self.pre_ln = config.ln_style == "pre"
        self.post_ln = config.ln_style == "post"
        norm = config.ln_style != "none"
        eps = config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=eps) if norm and config.use_attention else None
        self.attn = CausalSelfAttention(config, layer_idx) if config.use_attention else None
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=eps) if norm and config.use_mlp else None
        self.mlp = MLP(config) if config.use_mlp else None

    def forward(self, x, mask=None, is_causal=False, cache=None, eager=False, output_attentions=False):
        weights = None
        # Self attention
        if self.attn is not None:
            h = self.ln_1(x) if self.pre_ln else x
            h, weights = self.attn(h, mask, is_causal, cache, eager, output_attentions)
            x = x + h if self.use_residual else h
            if self.post_ln:
                x = self.ln_1(x)
        elif cache is not None:
            # no keys to keep, but the cache still counts positions so that cached decoding places tokens right
            empty = x.new_zeros(x.shape[0], 0, x.shape[1], 0)
            cache.update(empty, empty, self.layer_idx)
        # Fully connected
        if self.mlp is not None:
            h = self.ln_2(x) if self.pre_ln else x
            h = self.mlp(h)
            x = x + h if self.use_residual else h
            if self.post_ln:
                x = self.ln_2(x)
        return x, weights


# ---------------------------------------------------------------------------------------------------------------------
# The shell: the Hugging Face contract


class GPT2MiniPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the transformers plumbing shared by the GPT-2 mini models."""

    config_class = GPT2MiniConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    def _init_weights(self, module):
        """GPT-2's scheme: N(0, 0.02) everywhere, zero biases, and residual projections scaled by 1/sqrt(2 n_layer)."""
        super()._init_weights(module)
        if isinstance(module, (CausalSelfAttention, MLP)):
            std = self.config.initializer_range / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.c_proj.weight, mean=0.0, std=std)


class GPT2MiniModel(GPT2MiniPreTrainedModel):
    """The transformer without its language-model head: embeddings, blocks and (pre-LN only) the final LayerNorm."""

    def __init__(self, config: GPT2MiniConfig):
        super().__init__(config)
        config.validate()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd) if config.use_position_embeddings else None
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        # post-LN already normalises every block's output; with no LayerNorm there is none to add
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon) if config.ln_style == "pre" else None
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, new_embeddings):
        self.wte = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None

        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T = x.shape[:2]
        past_len = cache.get_seq_length() if cache is not None else 0
        if past_len + T > self.config.n_positions:
            raise ValueError(
                f"sequence length {past_len + T} exceeds the model's context of {self.config.n_positions} "
                f"positions (n_positions); crop the input to its last {self.config.n_positions} tokens, or use "
                "TokenStream / stream_text, which slide the window"
            )
        if self.wpe is not None:
            if position_ids is None:
                if attention_mask is not None:
                    # left padding: real tokens are numbered from 0 in every row
                    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
                else:
                    position_ids = torch.arange(past_len, past_len + T, device=x.device)[None]
            x = x + self.wpe(position_ids)
        x = self.drop(x)

        mask, is_causal = attention_mask_for(attention_mask, T, past_len, x.device)
        eager = self.config._attn_implementation == "eager"
        all_hidden = [] if output_hidden_states else None
        all_attn = [] if output_attentions else None
        for block in self.h:
            if output_hidden_states:
                all_hidden.append(x)
            x, weights = block(x, mask, is_causal, cache, eager, output_attentions)
            if output_attentions:
                all_attn.append(weights)
        if self.ln_f is not None:
            x = self.ln_f(x)
        if output_hidden_states:
            all_hidden.append(x)

        out = BaseModelOutputWithPast(
            last_hidden_state=x,
            cache=cache,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attn) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


class GPT2MiniForCausalLM(GPT2MiniPreTrainedModel, GenerationMixin):
    """GPT-2 mini with its language-model head (tied to `wte` unless `tie_word_embeddings=False`)."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPT2MiniConfig):
        super().__init__(config)
        self.transformer = GPT2MiniModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, new_embeddings):
        self.transformer.wte = new_embeddings

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ):
        """Causal-LM forward. `labels` are the input ids themselves (shifted inside, -100 ignored)."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        out = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = out.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])  # (B, T or logits_to_keep, vocab)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        result = CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return result if return_dict else result.to_tuple()

    @classmethod
    def from_gpt2(cls, gpt2, **config_overrides) -> "GPT2MiniForCausalLM":
        """Convert a `transformers.GPT2LMHeadModel` (any size) into a GPT-2 mini model with identical logits.

        GPT-2 stores its four projection matrices as `Conv1D` weights of shape (in, out); they are transposed into
        `nn.Linear`'s (out, in). Everything else keeps its name and value.
        """
        g = gpt2.config
        unsupported = {
            "activation_function": (g.activation_function, ("gelu_new", "gelu_pytorch_tanh")),
            "scale_attn_weights": (g.scale_attn_weights, (True,)),
            "scale_attn_by_inverse_layer_idx": (g.scale_attn_by_inverse_layer_idx, (False,)),
            "reorder_and_upcast_attn": (g.reorder_and_upcast_attn, (False,)),
            "add_cross_attention": (g.add_cross_attention, (False,)),
        }
        for name, (value, allowed) in unsupported.items():
            if value not in allowed:
                raise ValueError(f"cannot convert a GPT-2 with {name}={value!r}: GPT-2 mini supports {allowed}")
        config = GPT2MiniConfig(
            vocab_size=g.vocab_size,
            n_positions=g.n_positions,
            n_embd=g.n_embd,
            n_layer=g.n_layer,
            n_head=g.n_head,
            n_inner=g.n_inner,
            embd_pdrop=g.embd_pdrop,
            attn_pdrop=g.attn_pdrop,
            resid_pdrop=g.resid_pdrop,
            layer_norm_epsilon=g.layer_norm_epsilon,
            initializer_range=g.initializer_range,
            tie_word_embeddings=g.tie_word_embeddings,
            bos_token_id=g.bos_token_id,
            eos_token_id=g.eos_token_id,
            pad_token_id=g.pad_token_id,
            **config_overrides,
        )
        model = cls(config)
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        state = {}
        for name, tensor in gpt2.state_dict().items():
            if name.endswith(("attn.bias", "attn.masked_bias")) and name not in model.state_dict():
                continue  # old GPT-2 checkpoints carry the causal mask as a buffer
            if name == "lm_head.weight" and config.tie_word_embeddings:
                continue
            state[name] = tensor.t().contiguous() if name.endswith(transposed) else tensor
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"GPT-2 state dict does not fit: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        return model.to(gpt2.dtype).eval()


GPT2MiniForCausalLM.register_for_auto_class("AutoModelForCausalLM")


def register_auto_classes() -> None:
    """Register with `AutoConfig` / `AutoModelForCausalLM` for in-process use without remote code."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        AutoConfig.register(GPT2MiniConfig.model_type, GPT2MiniConfig)
        AutoModelForCausalLM.register(GPT2MiniConfig, GPT2MiniForCausalLM)
    except ValueError:  # registered already (by this module under another import path, or twice)
        pass


register_auto_classes()


# ---------------------------------------------------------------------------------------------------------------------
# Fast incremental decoding


class KVBuffer:
    """A pre-allocated key/value cache, written in place: per layer one (B, n_head, n_positions, 3, head_dim) tensor.

    Index 1 of the fourth dimension holds keys, index 2 values; a `DecodeStep` writes a new position's query, key and
    value together with one copy (its attention projection emits them in that per-head order), so index 0 holds its
    queries. The cache has the two methods the attention layers use (`update`, `get_seq_length`), so the model's own
    forward can fill it (a prefill). `length` is advanced by the caller after each forward, so every layer writes the
    same slots. `bias` is the additive attention bias over key positions, per (row, head): 0, or the dtype's most
    negative value where a row has left padding.
    """

    def __init__(self, config: GPT2MiniConfig, batch_size: int, device, dtype):
        B, nh, T, hd = batch_size, config.n_head, config.n_positions, config.n_embd // config.n_head
        self.qkv = [torch.zeros(B, nh, T, 3, hd, device=device, dtype=dtype) for _ in range(config.n_layer)]
        # views of the same memory in the shapes a DecodeStep writes and `torch.baddbmm` / `torch.bmm` read, made once
        self.rows = [c.view(B * nh, T, 3, hd) for c in self.qkv]
        self.keys_t = [c[:, :, :, 1].reshape(B * nh, T, hd).transpose(1, 2) for c in self.qkv]  # (B*nh, hd, T)
        self.values = [c[:, :, :, 2].reshape(B * nh, T, hd) for c in self.qkv]  # (B*nh, T, hd)
        for view in self.rows + self.keys_t + self.values:  # views of the cache, not copies
            assert view.untyped_storage().data_ptr() in {c.untyped_storage().data_ptr() for c in self.qkv}
        self.bias = torch.zeros(B * nh, 1, T, device=device, dtype=dtype)
        self.n_head = nh
        self.length = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def update(self, key, value, layer_idx):
        if key.shape[1] == 0:  # a layer without attention only counts positions
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


class DecodeStep:
    """One new token per row through a model with a filled `KVBuffer`, as the few dozen tensor operations it is.

    It computes what `GPT2MiniForCausalLM.forward` computes for a (B, 1) input over the cache (a test holds them
    together for every ablation switch), without what a general forward needs per call: module calls, output objects,
    mask construction, cache bookkeeping. At batch 1 a 0.8M-parameter model is bound by per-operation overhead (each
    small operation costs microseconds of dispatch, the arithmetic less), so the number of operations is the cost:
    - the attention projection emits q, k, v per head in the cache's layout: one copy stores them;
    - each head's query meets the cached keys in one batched matmul (`baddbmm` adds the bias that hides left padding),
      then softmax and one more batched matmul over views of the cache: no SDPA set-up, no mask building;
    - weights are pre-transposed once (the query's pre-scaled by 1/sqrt(head_dim)), so every projection is one
      `addmm`. On CPU all of these stay single-threaded at this size (`baddbmm` with a scale factor did not: under
      load it waited milliseconds for a second thread).
    The step itself, `decode_step`, is compiled with TorchScript when this torch has it, which runs the ~70 operations
    from C++ without the Python interpreter between them (1.7x faster here; `torch.compile` made this step slower on
    CPU, see docs/performance.md); otherwise the same function runs as Python.
    It reads `Block.use_residual` live (so residual knockouts apply) and refuses (`usable()` is False) while the model
    is in training mode or has forward hooks, which only the module path runs: `TokenStream` then uses the model.
    It holds pre-transposed copies of the weights: `DecodeStep.of(model)` keeps one per model and builds a new one
    when a parameter has changed since (an optimizer step, an in-place edit).
    """

    @classmethod
    def of(cls, model: GPT2MiniForCausalLM) -> "DecodeStep":
        """The model's DecodeStep, rebuilt only if a parameter changed (or was replaced) since it was made."""
        version = tuple((id(p), p._version) for p in model.parameters())
        cached = model.__dict__.get("_decode_step")
        if cached is None or cached[0] != version:
            cached = (version, cls(model))
            model.__dict__["_decode_step"] = cached  # not a submodule or attribute nn.Module tracks
        return cached[1]

    def __init__(self, model: GPT2MiniForCausalLM):
        cfg = model.config
        t = model.transformer
        self.model = model
        self.n_head, self.eps = cfg.n_head, cfg.layer_norm_epsilon
        head_dim = cfg.n_embd // cfg.n_head
        self.wte = t.wte.weight.detach()
        self.wpe = t.wpe.weight.detach() if t.wpe is not None else None
        self.blocks = list(t.h)
        self.attn: list[list[torch.Tensor]] = []  # per layer [ln_1 weight, bias, w_qkv, b_qkv, w_o, b_o] or []
        self.mlp: list[list[torch.Tensor]] = []  # per layer [ln_2 weight, bias, w_fc, b_fc, w_proj, b_proj] or []
        self.flags: list[list[bool]] = []  # per layer [pre-LN, post-LN]
        for b in t.h:
            attn = []
            if b.attn is not None:
                # c_attn's outputs reordered from (q|k|v, head, dim) to (head, q|k|v, dim), the layout of the cache,
                # and the query's columns pre-scaled by 1/sqrt(head_dim) (baddbmm with alpha != 1 leaves BLAS on CPU)
                w_qkv, b_qkv = _transposed(b.attn.c_attn)
                scale = torch.tensor([head_dim**-0.5, 1.0, 1.0], dtype=w_qkv.dtype, device=w_qkv.device)
                scale = scale[:, None, None]
                w_qkv = (w_qkv.view(-1, 3, cfg.n_head, head_dim) * scale).transpose(1, 2).reshape(w_qkv.shape)
                b_qkv = (b_qkv.view(3, cfg.n_head, head_dim) * scale).transpose(0, 1).reshape(b_qkv.shape)
                attn = _affine(b.ln_1) + [w_qkv, b_qkv] + list(_transposed(b.attn.c_proj))
            mlp = _affine(b.ln_2) + list(_transposed(b.mlp.c_fc)) + list(_transposed(b.mlp.c_proj)) if b.mlp else []
            self.attn.append(attn)
            self.mlp.append(mlp)
            self.flags.append([b.pre_ln, b.post_ln])
        self.ln_f = _affine(t.ln_f) if t.ln_f is not None else []
        self.head = model.lm_head.weight.detach().t().contiguous()
        from torch.nn.modules import module as global_hooks

        # the hook dictionaries themselves (empty is falsy), so that checking them all costs about a microsecond
        self.hooks = [global_hooks._global_forward_hooks, global_hooks._global_forward_pre_hooks]
        for m in model.modules():
            self.hooks += [m._forward_hooks, m._forward_pre_hooks]

    def usable(self) -> bool:
        """False while the model trains (dropout) or has forward hooks (knockouts, probes): use the modules then."""
        return not self.model.training and not any(self.hooks)

    @torch.inference_mode()
    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVBuffer) -> torch.Tensor:
        """tokens, positions: (B,) long; writes slot `cache.length` (the caller advances it); returns (B, V) logits."""
        residual = [b.use_residual for b in self.blocks]
        return compiled_decode_step()(
            tokens, positions, cache.length, cache.bias, cache.rows, cache.keys_t, cache.values, self.wte, self.wpe,
            self.attn, self.mlp, self.flags, residual, self.ln_f, self.head, self.n_head, self.eps,
        )  # fmt: skip


def decode_step(
    tokens: torch.Tensor,
    positions: torch.Tensor,
    pos: int,
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
) -> torch.Tensor:
    """The body of `DecodeStep`: (B,) tokens at (B,) positions, written to cache slot `pos`; returns (B, V) logits.

    Typed and written for TorchScript (no keyword-only tricks, lists not dicts); see `DecodeStep` for the layout.
    """
    B, C = tokens.shape[0], wte.shape[1]
    hd = C // n_head
    n = pos + 1
    visible = bias.narrow(2, 0, n)  # slots 0..pos: 0, or the most negative value for left padding
    x = torch.embedding(wte, tokens)
    if wpe is not None:
        x = x + torch.embedding(wpe, positions)
    for i in range(len(flags)):
        pre, post = flags[i][0], flags[i][1]
        w = attn[i]
        if len(w) > 0:
            h = torch.layer_norm(x, [C], w[0], w[1], eps) if pre else x
            qkv = torch.addmm(w[3], h, w[2]).view(B * n_head, 3, hd)  # q, k, v of every row and head
            rows[i].select(1, pos).copy_(qkv)
            scores = torch.baddbmm(visible, qkv.narrow(1, 0, 1), keys_t[i].narrow(2, 0, n))  # (B*nh, 1, n)
            y = torch.bmm(torch.softmax(scores, dim=-1), values[i].narrow(1, 0, n))  # (B*nh, 1, hd)
            h = torch.addmm(w[5], y.view(B, C), w[4])
            x = x + h if residual[i] else h
            if post:
                x = torch.layer_norm(x, [C], w[0], w[1], eps)
        w = mlp[i]
        if len(w) > 0:
            h = torch.layer_norm(x, [C], w[0], w[1], eps) if pre else x
            h = torch.addmm(w[5], F.gelu(torch.addmm(w[3], h, w[2]), approximate="tanh"), w[4])
            x = x + h if residual[i] else h
            if post:
                x = torch.layer_norm(x, [C], w[0], w[1], eps)
    if len(ln_f) > 0:
        x = torch.layer_norm(x, [C], ln_f[0], ln_f[1], eps)
    return torch.mm(x, head).float()


_COMPILED: list = []
_COMPILE_LOCK = threading.Lock()  # the app's worker threads may ask at once; catch_warnings is not thread-safe


def compiled_decode_step():
    """`decode_step` compiled with TorchScript once per process, or the plain function where that fails."""
    if not _COMPILED:
        with _COMPILE_LOCK:
            if not _COMPILED:
                import warnings

                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # torch.jit is deprecated for torch.compile; see DecodeStep
                        _COMPILED.append(torch.jit.script(decode_step))
                except Exception:  # no TorchScript in this torch, or no source: the same function, run as Python
                    _COMPILED.append(decode_step)
    return _COMPILED[0]


def _transposed(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight as (in, out), bias): the operands of `torch.addmm(bias, x, weight)`."""
    return linear.weight.detach().t().contiguous(), linear.bias.detach()


def _affine(norm: nn.LayerNorm | None) -> list[torch.Tensor]:
    """[weight, bias] of a LayerNorm; two empty placeholders where there is none (the flags then skip them)."""
    return [torch.empty(0), torch.empty(0)] if norm is None else [norm.weight.detach(), norm.bias.detach()]


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Apply temperature, then top-k, then top-p (nucleus) to (B, V) logits; removed entries become -inf.

    Same order and tie rules as transformers' warpers; at least one token always survives.
    """
    if temperature != 1.0:
        logits = logits / temperature
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


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty as transformers applies it: seen tokens' logits are divided by `penalty` if positive,
    multiplied if negative. `seen` is a (B, V) bool mask."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


class TokenStream:
    """Incremental sampling from one model for a batch of prompts, one token per row per `step()`.

    - prompts: a list of token-id lists (rows may differ in length: they are left-padded) or a (B, T) tensor.
    - temperature 0 means greedy (argmax); top_k 0 and top_p 1.0 switch those filters off.
    - seed: the stream's own `torch.Generator`, so the same seed gives the same tokens whatever else runs.
    - Past the context length the window slides: when the buffer is full, the last `window` tokens of each row are
      re-encoded at positions 0.. and decoding continues from there (the blog's generator crops the same way, but
      re-encodes every step). A prompt longer than the context keeps its last `n_positions` tokens.

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
        rows = [list(map(int, p)) for p in prompts]
        if not rows or any(len(r) == 0 for r in rows):
            raise ValueError("every prompt needs at least one token (start from a newline if there is no text)")
        if not temperature >= 0:  # written so that NaN fails too
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not _whole(top_k) or top_k < 0:
            raise ValueError(f"top_k must be a whole number >= 0, got {top_k!r}")
        if seed is not None and (not _whole(seed) or not 0 <= seed < 2**63):
            raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, got {seed!r}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if not repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
        cfg = model.config
        bad = [t for r in rows for t in r if not 0 <= t < cfg.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary (0 to {cfg.vocab_size - 1})")
        self.window = window if window is not None else cfg.n_positions * 3 // 4
        if not 0 < self.window < cfg.n_positions:
            raise ValueError(f"window must be between 1 and {cfg.n_positions - 1}, got {self.window}")
        self.model = model
        self.temperature, self.top_k, self.top_p = temperature, int(top_k), top_p
        self.repetition_penalty = repetition_penalty
        self.pad_token_id = pad_token_id
        param = next(model.parameters())
        self.device = param.device
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.history = rows  # every token of every row, prompt included
        self.seen = torch.zeros(len(rows), cfg.vocab_size, dtype=torch.bool, device=self.device)
        for i, r in enumerate(rows):
            self.seen[i, torch.tensor(r, device=self.device)] = True
        self.cache = KVBuffer(cfg, len(rows), self.device, param.dtype)
        self.attention_mask = None
        self.positions = torch.zeros(len(rows), dtype=torch.long, device=self.device)  # of each row's next token
        self.fast = DecodeStep.of(model) if fast else None
        self.logits = self._encode([r[-cfg.n_positions :] for r in rows])

    @torch.inference_mode()
    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=self.attention_mask,
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
        logits = self.logits
        if self.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, self.seen, self.repetition_penalty)
        if self.temperature == 0:
            token = logits.argmax(dim=-1)
        else:
            probs = filter_logits(logits, self.temperature, self.top_k, self.top_p).softmax(dim=-1)
            # a draw from `probs`: argmax of p / E with E ~ Exp(1) (the exponential race; cheaper than
            # torch.multinomial at this size). The clamp keeps 0/0 (a filtered token meeting E == 0) from winning.
            noise = torch.empty_like(probs).exponential_(generator=self.generator).clamp_min_(1e-30)
            token = probs.div_(noise).argmax(dim=-1)
        if self.repetition_penalty != 1.0:
            self.seen.scatter_(1, token[:, None], True)
        for row, t in zip(self.history, token.tolist(), strict=True):
            row.append(t)
        if self.cache.length < self.model.config.n_positions:
            if self.attention_mask is not None:
                ones = self.attention_mask.new_ones(len(self.history), 1)
                self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
            if self.fast is not None and self.fast.usable():
                self.logits = self.fast(token, self.positions, self.cache)
                self.cache.length += 1
            else:
                self.logits = self._forward(token[:, None])
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


def _whole(value) -> bool:
    """An integer of any kind (Python, NumPy), not a bool or a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


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
