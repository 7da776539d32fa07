"""GPT-2 mini: GPT-2's architecture at character scale, as a Hugging Face causal LM, with switches to break it.

What is notable here:
- The body is plain PyTorch with GPT-2's parameter names (`wte`, `wpe`, `h.{i}.ln_1`, `attn.c_attn`, `attn.c_proj`,
  `ln_2`, `mlp.c_fc`, `mlp.c_proj`, `ln_f`) and numerics (tanh GELU, eps 1e-5, q|k|v split), so a
  `transformers.GPT2LMHeadModel` converts into it with identical logits (`GPT2MiniForCausalLM.from_gpt2`).
- Every switch of `GPT2MiniConfig` is one readable branch where the model builds that part: `Block` for the
  sub-layers, their residual connections and norms (`norm`: LayerNorm or RMSNorm), `MLP` for its activation (GELU,
  ReLU or SwiGLU), `CausalSelfAttention` for rotary positions (`rotate`), `GPT2MiniModel` for the other positions
  (a learned table or `sinusoids`) and the final norm, the config's `tie_word_embeddings` for the head. Positions
  that are computed (sinusoids, RoPE's angles) are computed from the positions at each call, never stored.
- The shell is a thin `PreTrainedModel` + `GenerationMixin`: transformers 5.x KV cache passed as `cache=`, SDPA with
  an eager path, attention masks for left padding, tied embeddings, `save_pretrained` to safetensors.

This file is the model and nothing else: the fast streaming decoder (`gpt2mini.generation`) and the knockouts and
probes (`gpt2mini.probes`) import it, never the reverse. It imports only torch, transformers and the config, because
publishing copies it into the model repository it assembles (`gpt2mini.hub.repo`), where `trust_remote_code=True`
runs it. A model folder holds no copy: importing `gpt2mini` registers these classes with the Auto classes.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, StaticCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

try:  # relative import when loaded as remote code from a model folder, plain import from the project root
    from .configuration_gpt2mini import GPT2MiniConfig
except ImportError:
    from configuration_gpt2mini import GPT2MiniConfig


# ---------------------------------------------------------------------------------------------------------------------
# The body: plain PyTorch, GPT-2's names


def norm(config: GPT2MiniConfig) -> nn.Module:
    """The normalisation the config names: GPT-2's LayerNorm (without its bias when use_bias is false) or RMSNorm."""
    if config.norm_style == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.layer_norm_epsilon)
    return nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.use_bias)


def sinusoids(positions: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """The 2017 Transformer's positions: sin(p / 10000^(2i/width)) in channel 2i, cos in channel 2i + 1; positions
    (B, T) or (1, T) -> (B or 1, T, width)."""
    half = torch.arange(0, width, 2, device=positions.device, dtype=torch.float32) / width
    angles = positions[..., None].float() / (10000.0**half)  # (B, T, width / 2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)[..., :width].to(dtype)


def rotary(positions: torch.Tensor, head_dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE's (cos, sin), each (B or 1, 1, T, head_dim), for `rotate`: channel pair (i, i + head_dim/2) turns by
    position / 10000^(2i/head_dim), as in Llama (transformers' rotate_half convention)."""
    inv_freq = 1.0 / (
        10000.0 ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    angles = positions[..., None].float() * inv_freq  # (B, T, head_dim / 2)
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, T, head_dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys (B, nh, T, hd) by their positions' angles."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


def attention_mask_for(
    attention_mask: torch.Tensor | None, q_len: int, past_len, kv_len: int, device: torch.device
) -> tuple[torch.Tensor | None, bool]:
    """Return `(mask, is_causal)` for `F.scaled_dot_product_attention`.

    Query i sits at position past_len + i, key j at position j; kv_len is how many keys the cache returns, which a
    static cache makes larger than past_len + q_len (its unfilled slots are hidden by causality). `mask` is None or a
    (B or 1, 1, q_len, kv_len) bool tensor, True where a query may attend; a 4-D mask (what `generate` prepares for a
    static cache) is used as it is. The mask is built from positions with tensor operations only, never from the
    values in `attention_mask`, so torch.export and ONNX keep one graph for every padding pattern. SDPA's own
    `is_causal=True` aligns the triangle top-left, which is only right for a prefill on an empty cache.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask, False
    if attention_mask is None and isinstance(past_len, int) and kv_len == past_len + q_len:
        if q_len == 1:
            return None, False  # one new query sees every cached key
        if past_len == 0:
            return None, True
    q_pos = past_len + torch.arange(q_len, device=device)[:, None]  # (q, 1); past_len may be a tensor
    k_pos = torch.arange(kv_len, device=device)[None, :]  # (1, kv)
    mask = (k_pos <= q_pos)[None, None]  # (1, 1, q, kv)
    if attention_mask is not None:
        keys = padding_keys(attention_mask, past_len, q_len, kv_len)[:, None, None, :]  # (B, 1, 1, kv)
        # a padding query still attends to itself: no row is empty, so neither SDPA nor softmax produce NaN
        mask = (mask & keys) | (k_pos == q_pos)[None, None]
    return mask, False


def padding_keys(attention_mask: torch.Tensor, past_len, q_len: int, kv_len: int) -> torch.Tensor:
    """The 2-D (B, past + q) padding mask as a (B, kv_len) bool mask; a static cache's slots beyond it count as
    padding (causality hides them anyway)."""
    width = attention_mask.shape[-1]
    if width > kv_len or (isinstance(past_len, int) and width not in (past_len + q_len, kv_len)):
        held = f"{past_len + q_len}" if isinstance(past_len, int) else f"up to {kv_len}"
        raise ValueError(f"attention_mask covers {width} positions but the cache and the input hold {held}")
    return F.pad(attention_mask.bool(), (0, kv_len - width))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, GPT-2 style (one `c_attn` projection split into q|k|v)."""

    def __init__(self, config: GPT2MiniConfig, layer_idx: int):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.layer_idx = layer_idx
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.use_bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.use_bias)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, mask, is_causal, cache=None, eager=False, output_attentions=False, rope=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if rope is not None:  # rotary positions: keys are cached rotated
            q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nh, past + T, hd)
        dropout_p = self.attn_pdrop if self.training else 0.0
        weights = None
        if eager or output_attentions:
            # explicit softmax: the reference path, and the only one that can return the weights
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, nh, T, past + T)
            if mask is None and is_causal:  # a prefill on an empty cache: the plain triangle
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()[None, None]
            if mask is not None and mask.dtype != torch.bool:  # additive, as generate prepares it for eager models
                scores = scores + mask
            elif mask is not None:
                # an additive finfo.min (not -inf) keeps a fully masked row finite
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            weights = F.softmax(scores, dim=-1)
            y = F.dropout(weights, p=dropout_p, training=self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.resid_dropout(self.c_proj(y)), weights


ACTIVATIONS = {"gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU, "swiglu": nn.SiLU}


class MLP(nn.Module):
    """GPT-2's feed-forward layer: expand 4x, tanh GELU ("gelu_new"), project back. With ReLU, the same with ReLU;
    with SwiGLU, `c_fc` makes a gate and an up projection (one matrix, gate|up) and SiLU(gate) x up is projected
    back."""

    def __init__(self, config: GPT2MiniConfig):
        super().__init__()
        self.gated = config.mlp_style == "swiglu"
        width = config.inner_dim
        self.c_fc = nn.Linear(config.n_embd, 2 * width if self.gated else width, bias=config.use_bias)
        self.act = ACTIVATIONS[config.mlp_style]()
        self.c_proj = nn.Linear(width, config.n_embd, bias=config.use_bias)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        h = self.c_fc(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = self.act(gate) * up
        else:
            h = self.act(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """One transformer block. Each ablation switch is a single branch below."""

    def __init__(self, config: GPT2MiniConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.use_residual = config.use_residual
        self.pre_ln = config.ln_style == "pre"
        self.post_ln = config.ln_style == "post"
        normed = config.ln_style != "none"
        self.ln_1 = norm(config) if normed and config.use_attention else None
        self.attn = CausalSelfAttention(config, layer_idx) if config.use_attention else None
        self.ln_2 = norm(config) if normed and config.use_mlp else None
        self.mlp = MLP(config) if config.use_mlp else None

    def forward(self, x, mask=None, is_causal=False, cache=None, eager=False, output_attentions=False, rope=None):
        weights = None
        # Self attention
        if self.attn is not None:
            h = self.ln_1(x) if self.pre_ln else x
            h, weights = self.attn(h, mask, is_causal, cache, eager, output_attentions, rope)
            x = x + h if self.use_residual else h
            if self.post_ln:
                x = self.ln_1(x)
        elif cache is not None:
            # nothing to attend to, but the cache still counts positions so that cached decoding places tokens right
            # (one zero channel: a cache reads its length from what it holds, and an empty tensor holds nothing)
            counter = x.new_zeros(x.shape[0], 1, x.shape[1], 1)
            cache.update(counter, counter, self.layer_idx)
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
    supports_gradient_checkpointing = True  # GPT2MiniModel.forward checkpoints block by block

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        # transformers guesses this from the source (it looks for its attention-function registry); here every
        # forward reads config._attn_implementation ("sdpa" or "eager"), so `set_attn_implementation` takes effect
        # at once. Other implementations are refused by transformers' own check (no _supports_flash_attn etc.).
        return True

    def _init_weights(self, module):
        """GPT-2's scheme: N(0, 0.02) everywhere, zero biases, and residual projections scaled by 1/sqrt(2 n_layer)."""
        super()._init_weights(module)
        if isinstance(module, (CausalSelfAttention, MLP)):
            std = self.config.initializer_range / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.c_proj.weight, mean=0.0, std=std)


# the projections to adapt with PEFT's LoRA (it has no default for gpt2mini): LoraConfig(target_modules=...)
LORA_TARGET_MODULES = ("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj")

# GPT-2 stores these four as Conv1D weights of shape (in, out); nn.Linear's are (out, in)
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def positions_for(attention_mask: torch.Tensor | None, past_len, q_len: int, device) -> torch.Tensor:
    """Position ids of the new tokens: from past_len on, or, with a 2-D padding mask, counted from each row's first
    real token (GPT2LMHeadModel counts the left padding too unless it is given position_ids, as generate does)."""
    new = past_len + torch.arange(q_len, device=device)  # (q,); past_len may be a tensor
    if attention_mask is None or attention_mask.dim() != 2:
        return new[None]
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0).index_select(-1, new)  # (B, q)


def check_cache(cache):
    """The cache as it is, or a ValueError naming a kind this model does not fill correctly."""
    if isinstance(cache, Cache):
        layers = getattr(cache, "layers", None) or []
        if type(cache) not in (DynamicCache, StaticCache) or any(layer.is_sliding for layer in layers):
            raise ValueError(
                f"GPT-2 mini cannot use a {type(cache).__name__}: it supports DynamicCache and StaticCache "
                '(generate\'s cache_implementation "dynamic", "offloaded", "static" and "offloaded_static")'
            )
    return cache


class GPT2MiniModel(GPT2MiniPreTrainedModel):
    """The transformer without its language-model head: embeddings, blocks and (pre-LN only) the final LayerNorm."""

    def __init__(self, config: GPT2MiniConfig):
        super().__init__(config)
        config.validate()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        learned = config.use_position_embeddings and config.position_style == "learned"
        self.wpe = nn.Embedding(config.n_positions, config.n_embd) if learned else None
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.gradient_checkpointing = False  # set by gradient_checkpointing_enable()
        # post-LN already normalises every block's output; with no LayerNorm there is none to add
        self.ln_f = norm(config) if config.ln_style == "pre" else None
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, new_embeddings):
        self.wte = new_embeddings

    def check_context(self, positions: int) -> None:
        """A clear error instead of an index error deep in `wpe` when the input (or a static cache) needs more
        positions than the model has."""
        if positions > self.config.n_positions:
            raise ValueError(
                f"sequence length {positions} exceeds the model's context of {self.config.n_positions} "
                f"positions (n_positions); crop the input to its last {self.config.n_positions} tokens, or use "
                "gpt2mini.generation.stream's TokenStream / stream_text, which slide the window"
            )

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
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if use_cache and not checkpointing:  # a checkpointed block runs twice: it must not fill a cache twice
            cache = check_cache(cache) if cache is not None else DynamicCache(config=self.config)
        else:
            cache = None

        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        if self.config.scale_embeddings:  # the 2017 Transformer's: tokens at the scale of its sinusoids
            x = x * math.sqrt(self.config.n_embd)
        T = x.shape[1]
        past_len = cache.get_seq_length() if cache is not None else 0  # a 0-d tensor for a static cache
        kv_len = cache.get_mask_sizes(T, 0)[0] if cache is not None else T  # keys the cache will return
        self.check_context(past_len + T if isinstance(past_len, int) else kv_len)
        style = self.config.position_style if self.config.use_position_embeddings else None
        if style is not None and position_ids is None:
            position_ids = positions_for(attention_mask, past_len, T, x.device)
        if style == "learned":
            x = x + self.wpe(position_ids)
        elif style == "sinusoidal":
            x = x + sinusoids(position_ids, self.config.n_embd, x.dtype)
        rope = rotary(position_ids, self.config.head_dim, x.dtype) if style == "rope" else None
        x = self.drop(x)

        mask, is_causal = attention_mask_for(attention_mask, T, past_len, kv_len, x.device)
        eager = self.config._attn_implementation == "eager"
        all_hidden = [] if output_hidden_states else None
        all_attn = [] if output_attentions else None
        for block in self.h:
            if output_hidden_states:
                all_hidden.append(x)
            if checkpointing:  # keep only each block's input; recompute its inside in the backward pass
                x, weights = self._gradient_checkpointing_func(
                    block.__call__, x, mask, is_causal, None, eager, False, rope
                )
            else:
                x, weights = block(x, mask, is_causal, cache, eager, output_attentions, rope)
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
        state = {}
        for name, tensor in gpt2.state_dict().items():
            if name.endswith(("attn.bias", "attn.masked_bias")) and name not in model.state_dict():
                continue  # old GPT-2 checkpoints carry the causal mask as a buffer
            if name == "lm_head.weight" and config.tie_word_embeddings:
                continue
            state[name] = tensor.t().contiguous() if name.endswith(CONV1D_WEIGHTS) else tensor
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"GPT-2 state dict does not fit: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        return model.to(gpt2.dtype).eval()

    def flops_per_token(self, context: int | None = None) -> int:
        """Training FLOPs per token, forward and backward (PaLM's estimate, as nanoGPT's `estimate_mfu`): 6 for each
        weight that multiplies (the output head included; an embedding lookup multiplies nothing) plus 12 L T C for
        the attention scores and their weighted sums over a context of T."""
        c, t = self.config, self.transformer
        lookups = (t.wpe.weight.numel() if t.wpe is not None else 0) + (
            0 if c.tie_word_embeddings else t.wte.weight.numel()
        )
        attention = 12 * c.n_layer * (context or c.n_positions) * c.n_embd if c.use_attention else 0
        return 6 * (self.num_parameters() - lookups) + attention

    def to_gpt2(self):
        """This model as a `transformers.GPT2LMHeadModel` with identical logits: what it saves is plain GPT-2, which
        loads wherever GPT-2 does, without this project's code. The inverse of `from_gpt2`. A variant that GPT-2
        cannot express (any switch but untied embeddings) is refused with a ValueError naming the switch."""
        from transformers import GPT2Config, GPT2LMHeadModel

        c = self.config
        foreign = {k: v for k, v in c.ablations.items() if k != "tie_word_embeddings"}
        if foreign:
            switched = ", ".join(f"{k}={v!r}" for k, v in foreign.items())
            raise ValueError(f"GPT-2 has no equivalent of {switched}: only the baseline architecture converts")
        config = GPT2Config(
            vocab_size=c.vocab_size,
            n_positions=c.n_positions,
            n_embd=c.n_embd,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_inner=c.n_inner,
            activation_function="gelu_new",  # tanh GELU, as here
            embd_pdrop=c.embd_pdrop,
            attn_pdrop=c.attn_pdrop,
            resid_pdrop=c.resid_pdrop,
            layer_norm_epsilon=c.layer_norm_epsilon,
            initializer_range=c.initializer_range,
            tie_word_embeddings=c.tie_word_embeddings,
            bos_token_id=c.bos_token_id,
            eos_token_id=c.eos_token_id,
            pad_token_id=c.pad_token_id,
            attn_implementation=c._attn_implementation,
        )
        gpt2 = GPT2LMHeadModel(config)
        state = {k: v.t().contiguous() if k.endswith(CONV1D_WEIGHTS) else v for k, v in self.state_dict().items()}
        if c.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        missing, unexpected = gpt2.load_state_dict(state, strict=False)
        if [m for m in missing if m != "lm_head.weight"] or unexpected:
            raise ValueError(f"the state dict does not fit GPT2LMHeadModel: missing {missing}, unexpected {unexpected}")
        gpt2.tie_weights()
        gpt2.generation_config = self.generation_config
        return gpt2.to(self.dtype).train(self.training)
