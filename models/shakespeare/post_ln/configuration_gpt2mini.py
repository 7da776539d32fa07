"""GPT-2 mini configuration: GPT-2's field names, the blog's small defaults, and the ablation switches.

Every switch that breaks the model on purpose lives here, so a checkpoint carries the exact architecture it was
trained with. Validation happens in one place (`validate`), at construction and again before the model is built,
and names the offending field.

This file is copied next to the weights by `save_pretrained`; it imports only transformers.
"""

from transformers import PretrainedConfig

LN_STYLES = ("pre", "post", "none")


class GPT2MiniConfig(PretrainedConfig):
    """Configuration of a character-level GPT-2.

    Sizes use GPT-2's names; `attribute_map` also exposes the generic transformers names (`hidden_size`,
    `num_hidden_layers`, `num_attention_heads`, `max_position_embeddings`), which `DynamicCache` and `generate`
    read.

    Ablation switches (the default is GPT-2 itself):
        use_residual: add each sub-layer's output to its input (False: the sub-layer output replaces it).
        use_attention: causal self-attention sub-layer in every block (False: the block has no attention, so a
            position sees only itself).
        use_mlp: the feed-forward sub-layer in every block.
        ln_style: "pre" (GPT-2: LayerNorm before each sub-layer, plus a final `ln_f`), "post" (the original
            Transformer: LayerNorm after each residual sum, no final LayerNorm) or "none" (no LayerNorm at all).
        use_position_embeddings: the learned absolute position table `wpe` (False: no positional signal besides
            the causal mask).
        tie_word_embeddings: the output projection shares the input embedding matrix (GPT-2 does).
    """

    model_type = "gpt2mini"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
    }

    def __init__(
        self,
        vocab_size: int = 323,
        n_positions: int = 256,
        n_embd: int = 128,
        n_layer: int = 4,
        n_head: int = 4,
        n_inner: int | None = None,
        embd_pdrop: float = 0.0,
        attn_pdrop: float = 0.0,
        resid_pdrop: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        use_residual: bool = True,
        use_attention: bool = True,
        use_mlp: bool = True,
        ln_style: str = "pre",
        use_position_embeddings: bool = True,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.embd_pdrop = embd_pdrop
        self.attn_pdrop = attn_pdrop
        self.resid_pdrop = resid_pdrop
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.use_residual = use_residual
        self.use_attention = use_attention
        self.use_mlp = use_mlp
        self.ln_style = ln_style
        self.use_position_embeddings = use_position_embeddings
        self.use_cache = use_cache
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.validate()

    def validate(self) -> None:
        """Raise `ValueError` naming the field if any value cannot describe a working model."""
        super().validate()
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPT2MiniConfig.{name} must be a positive integer, got {value!r}")
        if self.n_inner is not None and (
            isinstance(self.n_inner, bool) or not isinstance(self.n_inner, int) or self.n_inner <= 0
        ):
            raise ValueError(f"GPT2MiniConfig.n_inner must be a positive integer or None, got {self.n_inner!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"GPT2MiniConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.ln_style not in LN_STYLES:
            raise ValueError(f"GPT2MiniConfig.ln_style must be one of {LN_STYLES}, got {self.ln_style!r}")
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"GPT2MiniConfig.{name} must be a probability in [0, 1), got {value!r}")
        for name in ("layer_norm_epsilon", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"GPT2MiniConfig.{name} must be a positive number, got {value!r}")
        for name in ("use_residual", "use_attention", "use_mlp", "use_position_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPT2MiniConfig.{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def inner_dim(self) -> int:
        """Width of the MLP's hidden layer (GPT-2: 4 x n_embd unless n_inner is set)."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def ablations(self) -> dict:
        """The switches that differ from GPT-2, as {name: value}; empty for the baseline."""
        baseline = {
            "use_residual": True,
            "use_attention": True,
            "use_mlp": True,
            "ln_style": "pre",
            "use_position_embeddings": True,
            "tie_word_embeddings": True,
        }
        return {k: getattr(self, k) for k, v in baseline.items() if getattr(self, k) != v}


GPT2MiniConfig.register_for_auto_class()
