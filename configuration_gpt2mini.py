"""GPT-2 mini configuration: GPT-2's field names, the blog's small defaults, and the switches.

What is notable:
- Every switch is a config field, so a checkpoint carries the exact architecture it was trained with. The field's
  default is GPT-2's value. Two kinds: an *ablation* breaks a part on purpose (residual off, attention off, ...); a
  *lineage* switch takes a design from GPT-2's ancestors or descendants (sinusoidal positions, RoPE, RMSNorm, ReLU,
  SwiGLU, no biases).
- `SWITCHES` is the one registry of those switches: per variant its name, the field and value it sets, a label and
  a one-line meaning. train.py's flags, the studies' variants, the lab's labels and the model card are generated from
  it, so a new switch is one entry here plus its branch in modeling_gpt2mini.py.
- `PRESETS` name the lineage: several switches at once (`transformer-2017`, `gpt1`, `gpt2`, `llama`).
- Validation happens in one place (`validate`), at construction and again before the model is built, and names the
  offending field.

Publishing copies this file into the model repository it assembles (with modeling_gpt2mini.py and an `auto_map`),
where `trust_remote_code=True` runs it, so it imports only transformers. A model folder holds no copy and no
`auto_map`: importing `gpt2mini` registers the classes with the Auto classes instead.
"""

import inspect
from dataclasses import dataclass

from transformers import PretrainedConfig


@dataclass(frozen=True)
class Switch:
    """One departure from GPT-2: a variant that sets one config field away from GPT-2's value."""

    variant: str  # the variant's name: experiments.ablate --variants, models/<corpus>/<variant>, the lab
    field: str  # the GPT2MiniConfig field it sets
    value: object  # the value it sets (GPT-2's value is the field's default)
    label: str  # how the lab, the report and the model card name it
    meaning: str  # one line: what the model is without it
    flag: str  # train.py's option: `--flag 1` for a true/false field, `--flag VALUE` otherwise
    kind: str = "ablation"  # "ablation": a part broken on purpose; "lineage": another generation's design


BASELINE = "baseline"  # GPT-2 itself: every switch at its default
BASELINE_MEANING = "GPT-2 as designed: pre-LN blocks with residual connections, attention and an MLP, learned positions"
SWITCHES = (
    Switch(
        "residual_off", "use_residual", False, "residual off",
        "each sub-layer's output replaces its input instead of being added to it", "disable_residual",
    ),
    Switch(
        "attention_off", "use_attention", False, "attention off",
        "no attention sub-layer: a position sees only its own character", "disable_attention",
    ),
    Switch(
        "post_ln", "ln_style", "post", "post-LN",
        "LayerNorm after each residual sum and no final LayerNorm (where the 2017 Transformer put it)", "ln_style",
    ),
    Switch("no_layernorm", "ln_style", "none", "no LayerNorm", "no LayerNorm anywhere", "ln_style"),
    Switch("mlp_off", "use_mlp", False, "MLP off", "no feed-forward sub-layer", "disable_mlp"),
    Switch(
        "no_position", "use_position_embeddings", False, "no position embedding",
        "no learned position table; only the causal mask hints at order", "disable_position_embeddings",
    ),
    Switch(
        "untied", "tie_word_embeddings", False, "untied embeddings",
        "a separate output matrix instead of the input embedding's transpose", "untie_embeddings",
    ),
    Switch(
        "sinusoidal", "position_style", "sinusoidal", "sinusoidal positions",
        "fixed sine and cosine positions added to the embeddings (the 2017 Transformer's) instead of a learned table",
        "position_style", "lineage",
    ),
    Switch(
        "rope", "position_style", "rope", "RoPE",
        "rotary positions (Llama's): queries and keys rotated by their position, no position table",
        "position_style", "lineage",
    ),
    Switch(
        "scaled_embeddings", "scale_embeddings", True, "scaled embeddings",
        "token embeddings multiplied by sqrt(n_embd) before positions are added (the 2017 Transformer's)",
        "scale_embeddings", "lineage",
    ),
    Switch(
        "rmsnorm", "norm_style", "rmsnorm", "RMSNorm",
        "RMSNorm (Llama's: rescale by the root mean square, no mean subtracted, no bias) instead of LayerNorm",
        "norm_style", "lineage",
    ),
    Switch(
        "relu", "mlp_style", "relu", "ReLU MLP", "ReLU in the MLP (the 2017 Transformer's) instead of GELU",
        "mlp_style", "lineage",
    ),
    Switch(
        "swiglu", "mlp_style", "swiglu", "SwiGLU MLP",
        "a gated MLP (Llama's SwiGLU: SiLU(gate) x up), 8/3 x as wide so its weights match GELU's 4x MLP",
        "mlp_style", "lineage",
    ),
    Switch(
        "no_bias", "use_bias", False, "no biases", "no bias in any linear layer or LayerNorm (as in Llama)",
        "disable_bias", "lineage",
    ),
)  # fmt: skip

# The lineage as named sets of switches (GPT-2 is every default). The 2017 Transformer was also an encoder-decoder;
# GPT-1 is GPT-2 with post-LN (and a shorter context); Llama also has no tied embeddings in its larger sizes and uses
# grouped-query attention, which this model has no switch for.
PRESETS = {
    "transformer-2017": {
        "ln_style": "post",
        "position_style": "sinusoidal",
        "scale_embeddings": True,
        "mlp_style": "relu",
    },
    "gpt1": {"ln_style": "post"},
    "gpt2": {},
    "llama": {"norm_style": "rmsnorm", "position_style": "rope", "mlp_style": "swiglu", "use_bias": False},
}
PRESET_LABELS = {"transformer-2017": "2017 Transformer", "gpt1": "GPT-1", "gpt2": "GPT-2", "llama": "Llama's recipe"}


class GPT2MiniConfig(PretrainedConfig):
    """Configuration of a character-level GPT-2.

    Sizes use GPT-2's names; `attribute_map` also exposes the generic transformers names (`hidden_size`,
    `num_hidden_layers`, `num_attention_heads`, `max_position_embeddings`), which `DynamicCache` and `generate`
    read.

    Ablation switches (the default is GPT-2 itself; `SWITCHES` lists the variants they make):
        use_residual: add each sub-layer's output to its input (False: the sub-layer output replaces it).
        use_attention: causal self-attention sub-layer in every block (False: the block has no attention, so a
            position sees only itself).
        use_mlp: the feed-forward sub-layer in every block.
        ln_style: "pre" (GPT-2: LayerNorm before each sub-layer, plus a final `ln_f`), "post" (the original
            Transformer: LayerNorm after each residual sum, no final LayerNorm) or "none" (no LayerNorm at all).
        use_position_embeddings: the learned absolute position table `wpe` (False: no positional signal besides
            the causal mask).
        tie_word_embeddings: the output projection shares the input embedding matrix (GPT-2 does).

    Lineage switches (GPT-2's value first):
        position_style: "learned" (a position table `wpe`), "sinusoidal" (fixed sines and cosines added to the
            embeddings) or "rope" (queries and keys rotated by their position). Only with use_position_embeddings.
        scale_embeddings: multiply the token embeddings by sqrt(n_embd) before positions are added, as the 2017
            Transformer did (its sinusoids have amplitude 1; GPT-2's embeddings start at 0.02).
        norm_style: "layernorm" or "rmsnorm" (where it sits is ln_style's).
        mlp_style: "gelu_tanh", "relu" or "swiglu" (a gated MLP whose hidden width, 8/3 x n_embd unless n_inner is
            set, gives it the same number of weights as GELU's 4x MLP).
        use_bias: biases in every linear layer and LayerNorm (GPT-2 has them; Llama has none).
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
        position_style: str = "learned",
        scale_embeddings: bool = False,
        norm_style: str = "layernorm",
        mlp_style: str = "gelu_tanh",
        use_bias: bool = True,
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
        self.position_style = position_style
        self.scale_embeddings = scale_embeddings
        self.norm_style = norm_style
        self.mlp_style = mlp_style
        self.use_bias = use_bias
        self.use_cache = use_cache
        if type(self)._auto_class is None:
            # `auto_map` names model code saved next to the weights. transformers sets `_auto_class` when it runs
            # this file as remote code, or when asked to save the code with the weights; otherwise no code goes
            # with this config, so an `auto_map` read from a folder saved by an earlier version is dropped here
            # rather than written again, pointing at files the new folder does not have.
            kwargs.pop("auto_map", None)
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
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"GPT2MiniConfig.{name} must be a probability in [0, 1), got {value!r}")
        for name in ("layer_norm_epsilon", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"GPT2MiniConfig.{name} must be a positive number, got {value!r}")
        for name in switch_fields():
            value, allowed = getattr(self, name), choices(name)
            if value not in allowed or type(value) is not type(allowed[0]):
                shown = "true or false" if isinstance(allowed[0], bool) else f"one of {allowed}"
                raise ValueError(f"GPT2MiniConfig.{name} must be {shown}, got {value!r}")
        if not self.use_position_embeddings and self.position_style != gpt2_value("position_style"):
            raise ValueError(
                f"GPT2MiniConfig.position_style={self.position_style!r} needs use_position_embeddings=true "
                "(false means no positions at all)"
            )
        for field, needs, why in (
            ("norm_style", self.ln_style != "none", "ln_style='none' has no norm to make RMSNorm"),
            ("mlp_style", self.use_mlp, "use_mlp=false has no MLP to give an activation"),
        ):
            if getattr(self, field) != gpt2_value(field) and not needs:
                raise ValueError(f"GPT2MiniConfig.{field}={getattr(self, field)!r} changes nothing: {why}")
        if self.position_style == "rope" and self.head_dim % 2:
            raise ValueError(f"GPT2MiniConfig: RoPE rotates pairs of channels; the head width {self.head_dim} is odd")

    @property
    def inner_dim(self) -> int:
        """Width of the MLP's hidden layer: n_inner if set, else GPT-2's 4 x n_embd, or for SwiGLU (three matrices,
        not two) round(8/3 x n_embd), which gives it about the same number of weights."""
        if self.n_inner is not None:
            return self.n_inner
        return round(8 * self.n_embd / 3) if self.mlp_style == "swiglu" else 4 * self.n_embd

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def ablations(self) -> dict:
        """The switches that differ from GPT-2, as {field: value}; empty for the baseline."""
        return {name: getattr(self, name) for name in switch_fields() if getattr(self, name) != gpt2_value(name)}

    @property
    def broken(self) -> dict:
        """The ablation switches set (parts broken on purpose), as {field: value}."""
        return {k: v for k, v in self.ablations.items() if switch_kind(k) == "ablation"}

    @property
    def lineage(self) -> dict:
        """The lineage switches set (another generation's designs), as {field: value}."""
        return {k: v for k, v in self.ablations.items() if switch_kind(k) == "lineage"}


# ---------------------------------------------------------------------------------------------------------------------
# Reading the registry


def switch_fields() -> list[str]:
    """The config fields the switches set, in registry order, each once."""
    return list(dict.fromkeys(s.field for s in SWITCHES))


def switch_kind(field: str) -> str:
    """ "ablation" or "lineage": the kind of the switches that set a field."""
    return next(s.kind for s in SWITCHES if s.field == field)


def gpt2_value(field: str):
    """GPT-2's value of a switch field: its default in `GPT2MiniConfig.__init__`."""
    return inspect.signature(GPT2MiniConfig.__init__).parameters[field].default


def choices(field: str) -> tuple:
    """Every value a switch field may take: GPT-2's first, then the switches' values."""
    return (gpt2_value(field), *dict.fromkeys(s.value for s in SWITCHES if s.field == field))


def variant_label(variant: str) -> str:
    """The variant's label ("residual off") or a preset's ("Llama's recipe"); the name itself for a variant the
    registry does not know."""
    return next((s.label for s in SWITCHES if s.variant == variant), PRESET_LABELS.get(variant, variant))


def variant_meaning(variant: str) -> str:
    """The variant's one-line meaning ("each sub-layer's output replaces its input ..."); a preset's, its switches'
    meanings."""
    if variant == BASELINE or PRESETS.get(variant) == {}:
        return BASELINE_MEANING
    if variant in PRESETS:
        return "; ".join(s.meaning for s in SWITCHES if PRESETS[variant].get(s.field, object()) == s.value)
    return next(s.meaning for s in SWITCHES if s.variant == variant)


def variants(kinds: tuple[str, ...] = ("ablation",)) -> dict[str, dict]:
    """{variant name: the config fields it sets}: the baseline (nothing) and one variant per switch of these kinds
    (the ablations unless told: what experiments.ablate sweeps and the lab shows)."""
    return {BASELINE: {}} | {s.variant: {s.field: s.value} for s in SWITCHES if s.kind in kinds}


def preset(name: str) -> dict:
    """The config fields a preset sets (a copy), or a ValueError naming the presets there are."""
    if name not in PRESETS:
        raise ValueError(f"no preset {name!r}; choose from {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def variant_of(ablations: dict) -> str | None:
    """The name of the variant (or preset) whose switches are exactly `ablations` (a config's `.ablations`), or
    None."""
    named = variants(("ablation", "lineage")) | PRESETS
    return next((name for name, fields in named.items() if fields == ablations), None)
