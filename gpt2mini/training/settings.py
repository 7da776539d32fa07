"""`TrainSettings`: everything a run depends on, in one dataclass whose defaults are the laptop-CPU recipe; what a
resumed run keeps (`ARCHITECTURE`), the default save folder, and the train.py command line that repeats a run.
"""

import math
import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from configuration_gpt2mini import PRESETS, SWITCHES, GPT2MiniConfig, choices, gpt2_value, preset, switch_fields
from gpt2mini.checkpoint import (
    STATE_FILE,
    UsageError,
    read_state,
)
from gpt2mini.tokenizer import MIN_BPE_VOCAB, TOKENIZERS

SIZES = {"n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd", "block_size": "n_positions"}  # ours: config's


@dataclass
class TrainSettings:
    """Everything a run depends on. The defaults are the laptop-CPU recipe (see docs/training.md)."""

    # data
    corpus: str = "shakespeare"
    data: str | None = None
    val_fraction: float = 0.1
    train_fraction: float = 1.0  # the share of the training split that trains, from its start (data-scaling runs)
    tokenizer: str = "char"  # "char" (one token per character) or "bpe" (byte-level BPE, for comparison)
    vocab_size: int | None = None  # BPE's vocabulary (default: BPE_VOCAB); the character tokenizer's is the text's
    # model (None: the GPT2MiniConfig default, or the loaded model's value)
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float = 0.0
    switches: dict = field(default_factory=dict)  # config field: value, for the switches set away from GPT-2
    # optimisation
    steps: int = 1500
    short_context: int = 64
    short_fraction: float = 0.6
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 4e-3
    min_lr_ratio: float = 0.1  # the learning rate at the end, as a fraction of --lr: the schedule keeps its shape
    warmup: int = 100
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    seed: int = 1337
    # evaluation and logging
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    sample_chars: int = 120
    sample_prompt: str | None = None
    # where and how
    save: str | None = None
    load: str | None = None
    resume: str | None = None
    stop_at: int | None = None
    device: str = "auto"
    compile: bool = False
    progress: bool = True

    def model_overrides(self) -> dict:
        """The config fields the settings set explicitly: sizes given, and the switches."""
        sizes = {theirs: getattr(self, ours) for ours, theirs in SIZES.items() if getattr(self, ours) is not None}
        return sizes | self.switches

    def check(self) -> None:
        """A UsageError naming the flag for any setting a run cannot use (NaN and infinity fail every test here)."""
        positive = ("steps", "batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        for name in SIZES:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name} must be a positive integer, got {value}")
        if self.stop_at is not None and self.stop_at <= 0:
            raise UsageError(f"--stop_at must be a positive step, got {self.stop_at}")
        for name, (ok, what) in self.number_rules().items():
            if not ok(getattr(self, name)):
                raise UsageError(f"--{name} must be {what}, got {getattr(self, name)}")
        for name, value in self.switches.items():
            if name not in switch_fields() or value not in choices(name):
                raise UsageError(f"no switch sets {name} to {value!r} (configuration_gpt2mini.SWITCHES)")
        try:  # switches that cannot go together (RoPE without positions), refused before any text is read
            GPT2MiniConfig(**self.model_overrides())
        except ValueError as e:
            raise UsageError(f"these settings do not make a model: {e}") from None
        if self.tokenizer not in TOKENIZERS:
            raise UsageError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {self.tokenizer!r}")
        if self.vocab_size is not None and self.tokenizer != "bpe":
            raise UsageError("--vocab_size sets a BPE vocabulary: the character tokenizer's is the text's characters")
        if self.vocab_size is not None and self.vocab_size < MIN_BPE_VOCAB:
            raise UsageError(f"--vocab_size must be at least {MIN_BPE_VOCAB} (2 specials, 256 bytes, a merge)")
        if self.load and self.resume:
            raise UsageError("--load starts a new run from saved weights and --resume continues one: pick one")
        if self.load and self.model_overrides():
            flags = ", ".join(self.model_overrides())
            raise UsageError(f"the architecture comes from the loaded folder; drop {flags} or train from scratch")

    def number_rules(self) -> dict:
        """{setting: (test, what it must be)} for the real-valued settings."""
        finite = math.isfinite
        return {
            "lr": (lambda v: finite(v) and v > 0, "a finite number above 0"),
            "min_lr_ratio": (lambda v: 0 <= v <= 1, "between 0 and 1"),
            "val_fraction": (lambda v: 0 < v < 1, "between 0 and 1, both excluded"),
            "train_fraction": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
            "beta2": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
            "dropout": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
            "short_fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
            "short_context": (lambda v: v >= 0, "0 or more"),
            "warmup": (lambda v: v >= 0, "0 or more"),
            "weight_decay": (lambda v: finite(v) and v >= 0, "a finite number, 0 or more"),
            "grad_clip": (lambda v: finite(v) and v >= 0, "a finite number, 0 or more (0: off)"),
        }


def switches_from_flags(flags: dict) -> dict:
    """{config field: value} from train.py's switch flags ({"disable_residual": 1, "ln_style": "post"}): a preset's
    fields (`preset`, if any), then the blog's `--disable_X 1` for a true/false field and `--field value` for one with
    several values, each over the preset's; GPT-2's values drop out."""
    out = preset(flags["preset"]) if flags.get("preset") else {}
    for s in SWITCHES:
        given = flags.get(s.flag)
        if isinstance(gpt2_value(s.field), bool) and given == 1:  # 1 (or True), not 0 (== False)
            out[s.field] = s.value
        elif isinstance(gpt2_value(s.field), bool) and given == 0:  # typed (the flags default to None): GPT-2's value
            out.pop(s.field, None)  # `--preset llama --disable_bias 0`: Llama's recipe with biases
        elif not isinstance(gpt2_value(s.field), bool) and given == s.value:
            out[s.field] = s.value
        elif not isinstance(gpt2_value(s.field), bool) and given == gpt2_value(s.field):
            out.pop(s.field, None)  # `--preset llama --norm_style layernorm`: GPT-2's norm in Llama's recipe
    return out


def default_save_dir(s: TrainSettings) -> str:
    """runs/<corpus or file>[-<variant>...][-bpe<vocab>], e.g. runs/shakespeare-residual_off, runs/shakespeare-llama,
    runs/shakespeare-bpe2048."""
    name = Path(s.data).stem if s.data else s.corpus
    named = [p for p, fields in PRESETS.items() if len(fields) > 1 and fields == s.switches]  # runs/shakespeare-llama
    tags = named or [sw.variant for sw in SWITCHES if s.switches.get(sw.field) == sw.value]
    if s.tokenizer == "bpe":
        tags.append(f"bpe{s.vocab_size or BPE_VOCAB}")
    return str(Path("runs") / "-".join([name, *tags]))


ARCHITECTURE = (*SIZES, "preset", *dict.fromkeys(s.flag for s in SWITCHES))  # what a resumed run keeps


def resume_settings(folder: str | Path, **changes) -> TrainSettings:
    """The settings a saved run was trained with, pointed at its folder, with `changes` (e.g. more `steps`)."""
    fixed = sorted(set(changes) & set(ARCHITECTURE))
    if fixed:
        raise UsageError(f"a resumed run keeps its architecture; drop {', '.join('--' + f for f in fixed)}")
    saved = read_state(folder)["settings"]
    saved.setdefault("switches", switches_from_flags(saved))  # a folder saved when each switch had its own field
    if "min_lr" in saved and "min_lr_ratio" not in saved:  # saved when the end rate was absolute: same schedule
        saved["min_lr_ratio"] = saved["min_lr"] / saved["lr"] if saved.get("lr") else 0.0
    names = {f.name for f in fields(TrainSettings)}
    s = TrainSettings(**{k: v for k, v in saved.items() if k in names})
    s.resume, s.load, s.save, s.stop_at = str(folder), None, None, None
    for k, v in changes.items():
        setattr(s, k, v)
    try:
        s.check()
    except (TypeError, AttributeError):
        raise UsageError(f"{Path(folder) / STATE_FILE} has settings of the wrong type (a damaged file?)") from None
    return s


def repeat_command(s: TrainSettings) -> str:
    """The train.py command line that repeats a run (the flags that differ from the defaults)."""
    default = asdict(TrainSettings())
    skip = {"save", "load", "resume", "stop_at", "device", "progress", "compile", "switches"}
    parts = ["python train.py"]
    for key, value in asdict(s).items():
        if key in skip or value == default[key] or value is None:
            continue
        if key == "data":
            value = Path(value).name
        parts.append(f"--{key} {shlex.quote(str(value))}")
    for sw in SWITCHES:
        if s.switches.get(sw.field) == sw.value:
            parts.append(f"--{sw.flag} {1 if isinstance(sw.value, bool) else sw.value}")
    return " ".join(parts)


BPE_VOCAB = 2048  # --tokenizer bpe without --vocab_size
