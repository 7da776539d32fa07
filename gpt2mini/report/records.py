"""The studies' records: a trial's row, a variant's summary, a sweep, a lineage's arm, a scaling point; each a dataclass
with named fields, read from its JSON and written back to it here and nowhere else.

    TrialRow        one trial, as study.trials.measure measured it    each run's trials.json (by key), results.json
    StudyResult     the protocol on one corpus: variants and trials   results.json, docs/ablations/<corpus>_results.json
    SweepSummary    each variant's sweep and best, for the lab        models/<corpus>/sweep.json
    LineageRecord   the lineage and the BPE arms of one corpus        docs/lineage/<corpus>_results.json
    ScalingSummary  the scaling grid: sizes, data, fits, frontier     docs/scaling/<corpus>_results.json and
                                                                      models/<corpus>/scaling/scaling.json

`X.from_json(d).to_json() == d` for every file the project ships (tests/test_records.py). A field added to a record
after a file was written loads at its default (None: not recorded then); a key a record does not know is refused
(RecordError) rather than dropped on the way back.
"""

import json
import shlex
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from gpt2mini.checkpoint import UsageError, atomic_write_text


class RecordError(UsageError, ValueError):
    """A JSON object that is not the record it should be (an unknown key, a missing one): one line, naming both."""


def _plain(value):
    """A value as JSON: a record by its to_json, lists and dicts item by item."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _list_of(record: type) -> Callable:
    return lambda items: None if items is None else [record.from_json(item) for item in items]


def _dict_of(record: type) -> Callable:
    return lambda items: None if items is None else {k: record.from_json(v) for k, v in items.items()}


def _one(record: type) -> Callable:
    return lambda item: None if item is None else record.from_json(item)


class Record:
    """The JSON side of a record dataclass. to_json: every field in its order, but the OPTIONAL ones while they are
    None (keys a file holds only when there is something to hold); from_json: a JSON object's keys as the fields,
    each NESTED one read as its record, the ones it lacks at their defaults (or, for a field in the middle of the
    record that files written before it lack, at its value in ADDED)."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    NESTED: ClassVar[dict[str, Callable]] = {}
    ADDED: ClassVar[dict] = {}

    def to_json(self) -> dict:
        return {
            f.name: _plain(getattr(self, f.name))
            for f in fields(self)
            if not (f.name in self.OPTIONAL and getattr(self, f.name) is None)
        }

    @classmethod
    def from_json(cls, data: dict):
        if not isinstance(data, dict):
            raise RecordError(f"a {cls.__name__} is a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        data = cls.ADDED | data
        unknown = [k for k in data if k not in known]
        if unknown:
            raise RecordError(f"a {cls.__name__} has no field {', '.join(map(repr, unknown))}")
        missing = [f.name for f in fields(cls) if f.name not in data and _required(f)]
        if missing:
            raise RecordError(f"this {cls.__name__} lacks {', '.join(map(repr, missing))}")
        return cls(**{k: cls.NESTED[k](v) if k in cls.NESTED else v for k, v in data.items()})


def _required(f) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def read_record(path: Path, record: type):
    """The record of type `record` in the JSON file `path`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as e:
        raise RecordError(f"{path} is not JSON ({e})") from None
    try:
        return record.from_json(data)
    except RecordError as e:
        raise RecordError(f"{path}: {e}") from None


def write_record(path: Path, record) -> None:
    """`record` (or a {name: record} mapping) as a JSON file, written beside `path` and renamed over it."""
    atomic_write_text(path, json.dumps(_plain(record), indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------------------------------
# A trial and the protocol on a corpus (study.trials, study.protocol)


@dataclass
class TrainingRun(Record):
    """What only training knew of a trial (measuring its folder again cannot recover it)."""

    diverged: str | None = None  # NonFiniteLoss's message, or None
    wall_s: float | None = None  # seconds this session trained (the checkpoint's elapsed_s counts every session)
    threads: int | None = None  # torch threads it trained with: a loss repeats exactly only with the same count

    @classmethod
    def of_row(cls, row: dict) -> "TrainingRun":
        """What a cached row of any version kept of its training."""
        return cls(row["diverged"], row["wall_s"], row["threads"])


@dataclass
class TrialRow(Record):
    """One trial's row: what trained, from what, and what measuring its folder found. A trial that diverged before
    its first save has no folder to measure: its row ends at val_split (None), without the MEASURED fields."""

    key: str  # Trial.key: "<variant>/lr<lr>-seed<seed>[-<setting><value>...]"
    variant: str
    lr: float
    seed: int
    version: int | None  # study.trials.ROW_VERSION when measured (None: before rows had versions)
    changes: dict  # the settings a follow-up (or a scaling point) changes in the recipe
    recipe: dict  # the TrainSettings fields it trained with (study.trials.RECIPE_FIELDS)
    state: list | None  # [step, elapsed_s] of the folder it was measured from (study.trials.folder_state)
    diverged: str | None
    wall_s: float | None
    threads: int | None
    val_split: float | None  # the loss over the whole validation split; None if it diverged
    val_split_saved: float | None = None  # the same of the saved weights, diverged or not
    steps: int | None = None
    parameters: int | None = None
    context: int | None = None
    switches: dict | None = None  # the config's ablations
    tokens_per_s: int | None = None
    val_curve: list | None = None  # [step, validation loss on the fixed batches]
    loss_curve: list | None = None  # [step, training batch loss]
    batch_loss_100: float | None = None
    attn_entropy: float | None = None  # mean over layers and heads, at the last evaluation
    attn_entropy_layers: list | None = None
    resid_norm_layers: list | None = None
    input_dependence: float | None = None
    grad_norm_layers: list | None = None  # per part, the mean over the last logged steps
    grad_norm_early: dict | None = None  # {step: per part} at study.trials.EARLY_STEPS (since row version 2)

    MEASURED = (
        "val_split_saved", "steps", "parameters", "context", "switches", "tokens_per_s", "val_curve", "loss_curve",
        "batch_loss_100", "attn_entropy", "attn_entropy_layers", "resid_norm_layers", "input_dependence",
        "grad_norm_layers", "grad_norm_early",
    )  # fmt: skip

    @property
    def run(self) -> TrainingRun:
        return TrainingRun(self.diverged, self.wall_s, self.threads)

    def to_json(self) -> dict:
        row = super().to_json()
        return {k: v for k, v in row.items() if k not in self.MEASURED} if self.state is None else row


def read_trials(path: Path) -> dict[str, dict]:
    """A study's trials.json: each row by key as `measure` wrote it, of whatever ROW_VERSION (a row becomes a
    TrialRow when it is reused: study.trials.cached_row); {} where there is none or it is not JSON (it is then
    written anew)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_trials(path: Path, cache: dict[str, dict]) -> None:
    """trials.json again: the rows not measured this time exactly as they were read."""
    write_record(path, cache)


@dataclass
class SweepPoint(Record):
    """A variant at one learning rate of its sweep (the base seed)."""

    lr: float
    val_split: float | None
    diverged: str | None = None


@dataclass
class VariantSummary(Record):
    """A variant across the protocol: its sweep, its best learning rate and the spread over seeds there, and its
    stability window (the rates at which it ends clearly below the bigram level)."""

    variant: str
    label: str
    best_lr: float | None  # None: it diverged at every rate
    at_edge: bool
    best_key: str | None  # the key of its best trial
    sweep: list[SweepPoint]
    seed_losses: list[float]
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    window: list[float]
    parameters: int | None
    sample: str | None = None  # a continuation from its best run, where that run's folder was there to sample

    OPTIONAL = ("sample",)
    NESTED = {"sweep": _list_of(SweepPoint)}


@dataclass
class StudyResult(Record):
    """The protocol on one corpus (study.protocol.run_corpus): what it ran, every variant's summary, every trial."""

    corpus: str
    prompt: str
    hardware: str
    wall_s: float
    jobs: int
    lrs: list[float]
    seeds: int
    extend: int
    base_seed: int
    steps: int
    recipe: dict
    command: str | None  # the command line that measured it, as it was typed then (current_command: as it runs now)
    reference: dict  # {"unigram": ..., "bigram": ...}: yardsticks.reference_losses
    variants: dict[str, VariantSummary]
    trials: list[TrialRow]
    out: str | None = None  # the folder of its trials, in a report's record

    OPTIONAL = ("out",)
    NESTED = {"variants": _dict_of(VariantSummary), "trials": _list_of(TrialRow)}
    ADDED = {"extend": 0}  # a result from before the sweep looked beyond its edges

    def trial(self, key: str) -> TrialRow | None:
        return next((r for r in self.trials if r.key == key), None)


@dataclass
class SweepVariant(Record):
    """A variant of the lab's sweep summary: its summary's SWEEP_KEYS and the command that measured it."""

    label: str
    best_lr: float | None
    at_edge: bool
    sweep: list[SweepPoint]
    seed_losses: list[float]
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    window: list[float]
    command: str | None = None

    NESTED = {"sweep": _list_of(SweepPoint)}

    @classmethod
    def of(cls, v: VariantSummary, command: str | None) -> "SweepVariant":
        return cls(**{k: getattr(v, k) for k in SWEEP_KEYS}, command=command)


SWEEP_KEYS = tuple(f.name for f in fields(SweepVariant) if f.name != "command")  # what a sweep summary keeps


@dataclass
class SweepSummary(Record):
    """models/<corpus>/sweep.json, the lab's Training tab: the protocol and each variant's sweep. Two sweeps are one
    protocol when every PROTOCOL field is equal (None: written before the field existed, so another protocol)."""

    corpus: str
    recipe: dict | None
    lrs: list[float]
    seeds: int
    extend: int | None
    base_seed: int
    steps: int
    reference: dict
    variants: dict[str, SweepVariant]

    NESTED = {"variants": _dict_of(SweepVariant)}
    ADDED = {"recipe": None, "extend": None}  # an older sweep.json lacks them: another protocol
    PROTOCOL = ("corpus", "recipe", "lrs", "seeds", "extend", "base_seed", "steps", "reference")

    @classmethod
    def of(cls, result: StudyResult) -> "SweepSummary":
        """The result's protocol and variants."""
        variants = {n: SweepVariant.of(v, result.command) for n, v in result.variants.items()}
        return cls(**{k: getattr(result, k) for k in cls.PROTOCOL}, variants=variants)

    def same_protocol(self, other: "SweepSummary") -> bool:
        return all(getattr(self, k) is not None and getattr(self, k) == getattr(other, k) for k in self.PROTOCOL)


# ---------------------------------------------------------------------------------------------------------------------
# The lineage (experiments/lineage.py)


@dataclass
class TokenizerArm(Record):
    """One tokenizer's arm of the lineage's comparison: the characters or a BPE vocabulary, at its best learning
    rate. An arm that diverged at every rate has no MEASURED fields."""

    tokenizer: str  # "characters" or "BPE <vocab>"
    steps: int
    best_lr: float | None
    at_edge: bool
    sweep: list[SweepPoint]
    vocab: int
    chars_per_token: float | None = None
    context_chars: int | None = None
    embedding_parameters: int | None = None
    parameters: int | None = None
    train_flops: int | None = None
    bits: list[float] = field(default_factory=list)  # bits per character of the held-out text, per seed
    mean: float | None = None
    sample: str | None = None

    NESTED = {"sweep": _list_of(SweepPoint)}
    MEASURED = ("chars_per_token", "context_chars", "embedding_parameters", "parameters", "train_flops")

    def to_json(self) -> dict:
        arm = super().to_json()
        return {k: v for k, v in arm.items() if k not in self.MEASURED} if self.best_lr is None else arm


@dataclass
class LineageRecord(Record):
    """docs/lineage/<corpus>_results.json: the lineage's designs, each BPE arm's protocol, and the arms compared."""

    corpus: str
    out: str
    lineage: StudyResult
    bpe: list[StudyResult]
    arms: list[TokenizerArm]

    NESTED = {"lineage": _one(StudyResult), "bpe": _list_of(StudyResult), "arms": _list_of(TokenizerArm)}


# ---------------------------------------------------------------------------------------------------------------------
# Scaling (experiments/scaling.py)


@dataclass
class SizeSweepPoint(Record):
    """A size of the scaling grid at one learning rate (the base seed)."""

    lr: float
    val_split: float | None


@dataclass
class SizePoint(Record):
    """One size of the grid: its sweep, its best rate, the loss there over seeds, its compute, its validation curve."""

    name: str  # "<layers>x<width>"
    n_layer: int
    n_head: int
    n_embd: int
    non_embedding: int  # parameters without the token and position embeddings (Kaplan et al.'s N)
    parameters: int | None
    flops_per_token: int
    sweep: list[SizeSweepPoint]
    best_lr: float | None
    at_edge: bool
    seed_losses: list[float]
    loss: float | None  # the mean over seeds at its best rate
    min: float | None
    max: float | None
    tokens: int
    flops: int
    wall_s: float | None
    key: str | None  # its best trial's key
    curve: list  # [step, FLOPs so far, validation loss on the fixed batches]
    sample: str | None = None
    prompt_and_sample: str | None = None

    OPTIONAL = ("sample", "prompt_and_sample")
    NESTED = {"sweep": _list_of(SizeSweepPoint)}


@dataclass
class DataPoint(Record):
    """One share of the training split, at the data grid's size: where it ended, its lowest, its training loss."""

    fraction: float
    chars: int
    epochs: float
    loss: float | None  # at the end, over the whole split
    early: float | None  # the lowest periodic estimate (what stopping early would keep)
    early_step: int | None
    train_loss: float | None
    val_estimate: float | None  # the last periodic estimate (the same batches as `early`)
    curve: list  # [step, validation estimate, training estimate]
    key: str
    wall_s: float | None


@dataclass
class FrontierPoint(Record):
    """A compute budget: the lowest loss any size reached with at most that compute, who reached it and with what."""

    flops: float
    loss: float
    size: str
    non_embedding: int
    spent: float
    tokens: int
    tokens_per_parameter: float
    competitors: int  # the sizes with a curve at this budget


@dataclass
class PowerFit(Record):
    """loss = E + A / x^alpha fitted with bootstrap intervals (scaling.fit_power), or the `error` that stopped it."""

    E: float | None = None
    A: float | None = None  # in x's own units
    alpha: float | None = None
    x0: float | None = None
    A_at_x0: float | None = None  # A per x0: loss = E + A_at_x0 * (x / x0)^-alpha
    E_interval: list | None = None
    alpha_interval: list | None = None
    rms: float | None = None
    points: int | None = None
    flat_refits: int | None = None
    at_bound: bool | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return {"error": self.error} if self.error else {k: v for k, v in super().to_json().items() if k != "error"}


@dataclass
class SizeExponent(Record):
    """The slope `a` of log N_opt against log C over the frontier (scaling.optimal_size_exponent), or its error."""

    a: float | None = None
    points: int | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return {"error": self.error} if self.error else {"a": self.a, "points": self.points}


@dataclass
class ScalingFits(Record):
    N: PowerFit  # loss against non-embedding parameters
    D: PowerFit  # loss against training characters (at each run's lowest)
    a: SizeExponent

    NESTED = {"N": _one(PowerFit), "D": _one(PowerFit), "a": _one(SizeExponent)}


@dataclass
class LrRule(Record):
    """Each size's sweep: `factors` x anchor x width / width of the size, and up to `extend` beyond an edge."""

    anchor: float
    width: int
    factors: list[float]
    extend: int


@dataclass
class ScalingSummary(Record):
    """The scaling grid: everything the report, its figures and the lab's Scaling tab show. The report's record holds
    the published laws it compares with; the lab's copy (scaling.json) holds the sizes shipped beside it instead."""

    corpus: str
    hardware: str
    recipe: dict
    vocab: int
    context: int
    tokens_per_step: int
    train_chars: int
    lr_rule: LrRule
    seeds: int
    data_size: str
    data_lr: float | None
    trials: int  # how many training runs the grid holds
    train_wall_s: int
    threads: list[int]
    sizes: list[SizePoint]
    data: list[DataPoint]
    fits: ScalingFits
    frontier: list[FrontierPoint]
    published: dict | None = None
    prompt: str | None = None
    command: str | None = None
    wall_s: float | None = None
    date: str | None = None
    shipped: list[str] | None = None

    OPTIONAL = ("published", "shipped")
    NESTED = {
        "lr_rule": _one(LrRule),
        "sizes": _list_of(SizePoint),
        "data": _list_of(DataPoint),
        "fits": _one(ScalingFits),
        "frontier": _list_of(FrontierPoint),
    }

    def size(self, name: str) -> SizePoint | None:
        return next((p for p in self.sizes if p.name == name), None)


# ---------------------------------------------------------------------------------------------------------------------
# Commands


# Where each study's program went when the studies moved into experiments/ (e9dee67): a command recorded before runs
# today as the same arguments to the module.
MOVED = {
    "python ablate.py": "python -m experiments.ablate",
    "python lineage.py": "python -m experiments.lineage",
    "python scaling.py": "python -m experiments.scaling",
    "python scripts/recipes.py": "python -m experiments.recipes",
}


def command_line(module: str, argv: list[str]) -> str:
    """The command that runs `module` with `argv`, as a study records it."""
    return shlex.join(["python", "-m", module, *argv])


def current_command(recorded: str | None) -> str | None:
    """A recorded command as it runs today: the same arguments, the program under its current name."""
    for old, new in MOVED.items():
        if recorded is not None and (recorded == old or recorded.startswith(old + " ")):
            return new + recorded[len(old) :]
    return recorded
