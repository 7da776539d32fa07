"""The models the lab serves: the shipped `models/<corpus>/<variant>` folders, any extra folder or Hub repo id, each
loaded and checked once (`Entry`), with their training records, the sweep and the scaling results beside them.
"""

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from configuration_gpt2mini import PRESETS, variant_label, variants
from gpt2mini.checkpoint import UsageError, load_model_folder, read_json, read_metrics
from gpt2mini.corpus import CORPORA, load_corpus, train_val_split
from gpt2mini.lab.clients import Refused, shown
from gpt2mini.lab.limits import GENERATING_AT_ONCE
from gpt2mini.lab.story import tips
from gpt2mini.paths import MODELS_DIR
from gpt2mini.report.records import RecordError, ScalingSummary, SweepSummary
from gpt2mini.report.yardsticks import reference_losses
from gpt2mini.serving.pool import StreamServer
from gpt2mini.serving.process import ProcessServer
from gpt2mini.words import ENGLISH, Words

# the baseline, the registry's ablations (configuration_gpt2mini.SWITCHES), then the lineage's presets
ORDER = (*variants(), *(p for p, fields in PRESETS.items() if len(fields) > 1))


def as_list(value, what: str) -> list:
    """A list of choices from a request: None is none, one string is one choice, anything else but a list or tuple
    is refused."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise Refused(f"{what} must be a list of names, got {shown(value)}")
    return list(value)


ENTRY_NUMBERS = itertools.count(1)  # what makes each entry's `served_as` its own


@dataclass
class Entry:
    """One loaded model."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    metrics: list = field(default_factory=list)
    training: dict = field(default_factory=dict)  # training.json: the learning rate and seed it was trained with
    # the name a lab's server knows its model by ("baseline#3"; `Lab.register`): its own, whichever groups and labs
    # hold the entry (a variant's name is only its group's)
    served_as: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.served_as = f"{self.name}#{next(ENTRY_NUMBERS)}"

    @property
    def label(self) -> str:
        return variant_label(self.name)

    @property
    def ablations(self) -> dict:
        """The switches its config sets away from GPT-2 (what the model is, whatever its folder is called)."""
        return self.model.config.ablations


@dataclass
class Lab:
    """The models the app serves, grouped by the corpus they were trained on."""

    groups: dict[str, dict[str, Entry]]
    # models/<corpus>/sweep.json: experiments.ablate's lr sweep
    sweeps: dict[str, SweepSummary] = field(default_factory=dict)
    passages: dict[str, str] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    # every generation's stream, batched per model: in this process, or a process of its own (app.py --decoding);
    # each model registered with it once (`register`), each request naming it by its entry's `served_as`
    server: StreamServer | ProcessServer = field(default_factory=StreamServer)
    generating: int = GENERATING_AT_ONCE  # generation events that run at once (app.py --generating)
    # {corpus: load_scaling's}: experiments.scaling's grid and sizes
    scaling: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self.register(self.entries())

    def decode_with(self, server: StreamServer | ProcessServer) -> None:
        """Stream every generation from `server` from now on (app.py's `--decoding process` gives a ProcessServer),
        its models registered with it now, before any request uses them."""
        self.server = server
        self.register(self.entries())

    def register(self, entries: list[Entry]) -> None:
        """Register each entry's model with the server under its `served_as`. Once: the lab never changes a model it
        serves (the Knockout tab steps a private copy on its own thread); a model changed other than in place would
        be registered again (gpt2mini/serving/registry.py's rules)."""
        for entry in {e.served_as: e for e in entries}.values():  # an entry in two groups is registered once
            self.server.register(entry.served_as, entry.model)

    def add(self, corpus: str, entry: Entry) -> None:
        """Serve one more model, in `corpus`'s group (made if need be), registered now."""
        self.groups.setdefault(corpus, {})[entry.name] = entry
        self.register([entry])

    def corpora(self) -> list[str]:
        return list(self.groups)

    def entries(self) -> list[Entry]:
        """Every model the lab may decode: each group's and each scaling grid's."""
        entries = [e for group in self.groups.values() for e in group.values()]
        return entries + [e for grid in self.scaling.values() for e in grid["entries"].values()]

    def group(self, corpus) -> dict[str, Entry]:
        """The models trained on `corpus`, or a gr.Error listing the groups there are."""
        if not isinstance(corpus, str) or corpus not in self.groups:
            raise Refused(f"no models trained on {shown(corpus)}; choose from {', '.join(self.groups)}")
        return self.groups[corpus]

    def variants(self, corpus: str) -> list[str]:
        return list(self.group(corpus))

    def choices(self, corpus: str, say: Words = ENGLISH) -> list[tuple[str, str]]:
        """(label, name) pairs for checkboxes and dropdowns."""
        return [(say.variant(n), n) for n in self.group(corpus)]

    def reference(self, corpus: str) -> dict:
        """The corpus's yardsticks (unigram and bigram validation loss, from its sweep.json), or {} without one."""
        sweep = self.sweeps.get(corpus)
        return sweep.reference if sweep else {}

    def tips(self, corpus: str, say: Words = ENGLISH) -> dict[str, str]:
        """Each tab's "what to try" for a corpus, from its models' records and its sweep."""
        return tips(list(self.group(corpus).values()), self.sweeps.get(corpus), say)

    def passage_levels(self, corpus: str, text: str) -> dict:
        """The unigram and bigram levels on `text` (the Knockout tab's passage), fitted on the corpus's training split;
        {} for a corpus the project does not ship. Computed once per corpus."""
        key = ("levels", corpus)
        if key not in self.cache and corpus in CORPORA:
            self.cache[key] = reference_losses(train_val_split(load_corpus(corpus))[0], text)
        return self.cache.get(key, {})

    def passage(self, corpus: str) -> str | None:
        """The validation split of a shipped corpus, read on first use (the Knockout tab's fixed passage)."""
        if corpus not in self.passages and corpus in CORPORA:
            self.passages[corpus] = train_val_split(load_corpus(corpus))[1]
        return self.passages.get(corpus)

    def scaling_grid(self, corpus) -> dict | None:
        """The corpus's scaling grid (load_scaling's summary and shipped sizes), or None without one."""
        return self.scaling.get(corpus) if isinstance(corpus, str) else None

    def scaling_entry(self, corpus, size) -> Entry:
        """A size shipped from the corpus's scaling grid, or a gr.Error naming the ones there are."""
        shipped = (self.scaling_grid(corpus) or {}).get("entries", {})
        if not isinstance(size, str) or size not in shipped:
            there = ", ".join(shipped) or "none"
            raise Refused(f"no size {shown(size)} shipped from the scaling grid of {shown(corpus)}; there are: {there}")
        return shipped[size]

    def get(self, corpus: str, name: str) -> Entry:
        group = self.group(corpus)
        if not isinstance(name, str) or name not in group:
            raise Refused(f"no model {shown(name)} for {shown(corpus)}; choose from {', '.join(group)}")
        return group[name]


HUB_FILES = ["*.json", "*.safetensors", "metrics.jsonl"]  # what the lab reads from a Hub model repository


def fetch_from_hub(repo_id: str) -> Path:
    """A local copy of a Hub model repository (downloaded, or from the Hub cache when offline), checked to be a
    GPT-2 mini model with its tokenizer, or a UsageError that says which of these it is not."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except HFValidationError:
        raise UsageError(f"{repo_id}: no such folder, and not a valid Hub repo id (owner/name)") from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "the Hub cannot be reached"
        raise UsageError(f"{repo_id}: no such folder, and not in the Hugging Face cache while {why}") from None
    except RepositoryNotFoundError:
        raise UsageError(
            f"{repo_id}: no such folder, and no such Hub repo (or it is private: log in with `hf auth login`)"
        ) from None
    except Exception as e:  # hub and network errors come in many types
        text = str(e).strip().splitlines()
        raise UsageError(
            f"{repo_id}: no such folder, and loading it from the Hugging Face Hub failed: "
            f"{text[0] if text else type(e).__name__}"
        ) from None
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        model_type = None
    if model_type != "gpt2mini":
        what = f"a {model_type!r} model" if model_type else "not a model repository (no usable config.json)"
        raise UsageError(f"{repo_id} on the Hub is {what}, not a GPT-2 mini model")
    if not (folder / "tokenizer.json").exists():
        raise UsageError(f"{repo_id} on the Hub has no tokenizer.json (upload the tokenizer next to the model)")
    return folder


def load_entry(name: str, source: str) -> Entry:
    """A model folder (or, if no such folder exists, a Hugging Face Hub repo id)."""
    path = Path(source)
    if not path.exists():
        path = fetch_from_hub(source)
    model, tokenizer = load_model_folder(path)
    training = read_json(path / "training.json") if (path / "training.json").exists() else {}
    return Entry(name, model.eval(), tokenizer, read_metrics(path), training)


def load_lab(models_dir: str | Path = MODELS_DIR, extra: list[str] = ()) -> Lab:
    """Every model under models_dir/<corpus>/<variant>/, plus the `extra` folders or Hub ids (group "your models")."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    groups: dict[str, dict[str, Entry]] = {}
    sweeps: dict[str, SweepSummary] = {}
    scaling: dict[str, dict] = {}
    models_dir = Path(models_dir)
    if models_dir.is_dir():
        for corpus_dir in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            names = sorted(
                (p.name for p in corpus_dir.iterdir() if (p / "config.json").exists()),
                key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n),
            )
            if names:
                groups[corpus_dir.name] = {n: load_entry(n, str(corpus_dir / n)) for n in names}
            if names and (corpus_dir / "sweep.json").exists():
                sweeps[corpus_dir.name] = read_summary(corpus_dir / "sweep.json", SweepSummary)
            if names and (found := load_scaling(corpus_dir / "scaling")):
                scaling[corpus_dir.name] = found
    if extra:
        group = {}
        for src in extra:
            name = Path(src).name or src
            while name in group:  # two runs/foo folders from different places
                name += "'"
            group[name] = load_entry(name, src)
        groups["your models"] = group
    if not groups:
        raise UsageError(
            f"no models found in {models_dir}: train some with `python -m experiments.ablate --ship {models_dir}` or "
            "pass --model"
        )
    return Lab(groups, sweeps, scaling=scaling)


def load_scaling(folder: Path) -> dict | None:
    """models/<corpus>/scaling/: experiments.scaling's summary (scaling.json, a records.ScalingSummary) and the sizes
    shipped beside it, or None."""
    if not (folder / "scaling.json").exists():
        return None
    summary = read_summary(folder / "scaling.json", ScalingSummary)
    names = [p.name for p in summary.sizes if (folder / p.name / "config.json").exists()]
    return {"summary": summary, "entries": {n: load_entry(n, str(folder / n)) for n in names}}


def read_summary(path: Path, record: type):
    """A study's summary the lab shows (sweep.json, scaling.json), read as its record; a file that is not one is a
    UsageError naming it."""
    try:
        return record.from_json(read_json(path))
    except RecordError as e:
        raise UsageError(f"{path}: {e}") from None
