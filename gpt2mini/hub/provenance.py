"""Where a model's training text came from and why it may be shared: the shipped corpus a run names (or the text it
was trained on), data/PROVENANCE.md's rows for it, and the public-domain reasoning the model card states.
"""

import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from gpt2mini.corpus import CORPORA, CorpusSpec, load_corpus, train_val_split
from gpt2mini.paths import DATA_DIR
from gpt2mini.tokenizer import n_chars as corpus_characters

LICENSE = "mit"  # the project's license (pyproject.toml); the training texts are public domain (data/PROVENANCE.md)


# the split of a folder that does not record its own (no trainer_state.json): gpt2mini.corpus.train_val_split's
# default (train.py's too)
DEFAULT_VAL_FRACTION = inspect.signature(train_val_split).parameters["val_fraction"].default


# what the copy a shipped corpus was taken from adds to the works' rights, by CorpusSpec.aozora (data/PROVENANCE.md)
COPY_RIGHTS = {
    True: "Aozora Bunko's transcriptions add no rights",
    False: "the excerpt compiled by karpathy/char-rnn is MIT-licensed",
}


def training_corpus(tokenizer, settings: dict) -> tuple[str | None, CorpusSpec | None, str | None]:
    """(name, spec, text) of the training text: from the run's settings, or else the shipped corpus whose
    characters are exactly the tokenizer's (ids 0..n-1 are the corpus's sorted characters). A text file that is not
    a shipped corpus gives (file name, None, None)."""
    if settings.get("data"):
        return Path(settings["data"]).name, None, None
    if settings.get("corpus") in CORPORA:
        name = settings["corpus"]
        return name, CORPORA[name], load_corpus(name)
    n = corpus_characters(tokenizer)
    chars = {t for t, i in tokenizer.get_vocab().items() if i < n}
    for name, spec in CORPORA.items():
        text = load_corpus(name)
        if set(text) == chars:
            return name, spec, text
    return None, None, None


@dataclass(frozen=True)
class TrainingText:
    """The training text as far as the folder tells: its name, the shipped corpus it is, and the split train.py made."""

    name: str | None  # the shipped corpus's name, or the text file's; None when the folder does not say
    spec: CorpusSpec | None  # the shipped corpus, or None
    text: str  # the whole text ("" when it is not at hand)
    train: str  # its first part, trained on
    val: str  # its last `val_fraction`, the validation split
    val_fraction: float


def training_text(tokenizer, settings: dict) -> TrainingText:
    """The training text of a run with these settings ({} when the folder does not record them)."""
    name, spec, text = training_corpus(tokenizer, settings)
    val_fraction = settings.get("val_fraction", DEFAULT_VAL_FRACTION)
    train, val = train_val_split(text, val_fraction) if text else ("", "")
    train = train[: round(len(train) * settings.get("train_fraction", 1.0))]  # as gpt2mini.training.loop.training_text
    return TrainingText(name, spec, text or "", train, val, val_fraction)


def provenance_table() -> dict[str, list[str]]:
    """{file: its eight cells} from data/PROVENANCE.md's table of the shipped files ({} without that file)."""
    path = DATA_DIR / "PROVENANCE.md"
    table = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and re.fullmatch(r"[0-9a-f]{64}", cells[7]):  # a file's row, not the header
            table[cells[0]] = cells
    return table


def provenance_rows(spec: CorpusSpec) -> list[list[str]]:
    """[file, work, author, source, sha256] for each file of a shipped corpus, from data/PROVENANCE.md."""
    table = provenance_table()
    return [[f, *table[f][1:4], table[f][7]] if f in table else [f, "", "", "", ""] for f in spec.files]


def _year_in_brackets(cell: str) -> tuple[str, int, int] | None:
    """A provenance cell's year or span in brackets at its end, as (text, first, last): "吾輩は猫である (1905–06)"
    gives ("1905–06", 1905, 1906), "銀河鉄道の夜 (posthumous, 1934)" gives ("1934", 1934, 1934); None without one."""
    m = re.search(r"\((?:[^()]*\s)?((\d{4})(?:–(\d{2}|\d{4}))?)\)$", cell)
    if not m:
        return None
    first, end = int(m[2]), m[3]
    last = first if not end else int(end) if len(end) == 4 else first // 100 * 100 + int(end)
    return m[1], first, last


def _before_brackets(cell: str) -> str:
    return cell.split(" (")[0]


def public_domain_reason(spec: CorpusSpec) -> str:
    """Why a shipped corpus is in the public domain, from data/PROVENANCE.md: when its works were first published,
    when their authors died (the table gives each author's year once), and what the copy taken adds."""
    table = provenance_table()
    rows = [table[f] for f in spec.files if f in table]
    died = {_before_brackets(c[2]): year[2] for c in table.values() if (year := _year_in_brackets(c[2]))}
    authors = {_before_brackets(c[2]) for c in rows}
    published = [_year_in_brackets(c[1]) for c in rows]
    when = who = ""
    if len(rows) == 1 and published[0]:
        when = f"the work was first published in {published[0][0]}"
    elif rows and all(published):
        first, last = min(p[1] for p in published), max(p[2] for p in published)
        when = f"the works were first published between {first} and {last}"
    if authors and authors <= died.keys():
        last_death = max(died[a] for a in authors)
        who = f"an author who died in {last_death}" if len(authors) == 1 else f"authors who died by {last_death}"
    reason = f"{when} by {who}" if when and who else when or (f"the work of {who}" if who else "")
    note = COPY_RIGHTS[spec.aozora]
    return f"{reason} ({note})" if reason else note
