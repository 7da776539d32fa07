"""Publish GPT-2 mini on the Hugging Face Hub: a trained model as a model repository, or the lab as a Gradio Space.

    python publish.py runs/shakespeare --repo-id you/gpt2mini-shakespeare             # assemble and upload
    python publish.py models/wagahai/baseline --repo-id you/gpt2mini-wagahai --dry-run  # list what would be sent
    python publish.py runs/shakespeare --repo-id you/gpt2mini-shakespeare --out repo   # also keep the folder
    python publish.py --space you/gpt2mini-lab                                        # the lab as a Space
    python train.py --push-to-hub you/gpt2mini-shakespeare                             # train, then the same upload

What is notable:
- The model repository is assembled from the model folder alone: the files `save_pretrained` wrote (config.json with
  `auto_map`, model.safetensors, generation_config.json, the tokenizer, the two model files), the training log and
  loss curve, and a README.md model card generated from them (architecture next to GPT-2 small, the ablation
  switches, data and recipe, the measured validation loss, a usage snippet, limitations). The resume state
  (trainer_state.json, optimizer.safetensors) stays behind: it is for `train.py --resume`, not for Hub users.
- The card is a Markdown template, `MODEL_CARD` (the Space's is `SPACE_CARD`): read it to see the card's shape. Small
  functions fill its placeholders from the folder's files (config.json, metrics.jsonl, trainer_state.json with the
  settings and the `command` train.py recorded, the tokenizer), the shipped corpora and data/PROVENANCE.md, and the
  switch registry (`configuration_gpt2mini.SWITCHES`); nothing in it is written for one particular model.
- The Space holds app.py and exactly the project modules it imports (found by reading the imports), the models/
  tree, the corpus files the Knockout tab reads, a requirements.txt pinned to the versions installed here (CPU
  torch), and a README.md with the Space front matter (`sdk: gradio`, `sdk_version` = the installed Gradio).
- One upload path for both: `create_repo(exist_ok=True)`, then a single `create_commit` with one
  `CommitOperationAdd` per file of the assembled folder; `--dry-run` prints that same list and contacts nobody.
- A mistake (not a GPT-2 mini folder, a missing tokenizer, a bad repo id, not logged in, offline) is one line on
  stderr and exit code 2, before anything is sent or written; a failure on the Hub's side is one line and exit 1.
"""

import argparse
import ast
import importlib.metadata
import inspect
import json
import math
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from checkpoint import (
    CURVE_FILE,
    METRICS_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    UsageError,
    atomic_save,
    load_model_folder,
    read_metrics,
)
from configuration_gpt2mini import BASELINE, SWITCHES, GPT2MiniConfig, gpt2_value, switch_fields, variant_label
from corpus import CORPORA, CorpusSpec, load_corpus, train_val_split
from modeling_gpt2mini import LORA_TARGET_MODULES
from tokenizer import n_chars as corpus_characters

ROOT = Path(__file__).resolve().parent
LICENSE = "mit"  # the project's license (pyproject.toml); the training texts are public domain (data/PROVENANCE.md)
CODE_FILES = ("configuration_gpt2mini.py", "modeling_gpt2mini.py")
# what a model repository takes from the model folder (True: required; False: copied when the folder has it)
MODEL_FILES = {
    "config.json": True,
    "model.safetensors": True,
    "generation_config.json": False,  # written from the model if the folder lacks it
    "tokenizer.json": True,
    "tokenizer_config.json": True,
    "special_tokens_map.json": False,
    **dict.fromkeys(CODE_FILES, True),
    METRICS_FILE: False,
    CURVE_FILE: False,
}
# what a repository of the weights as plain GPT-2 takes from the folder (config.json, model.safetensors and
# generation_config.json are written by GPT2LMHeadModel.save_pretrained instead; no code)
WRITTEN_BY_GPT2 = ("config.json", "model.safetensors", "generation_config.json")
GPT2_FILES = [*WRITTEN_BY_GPT2, *(name for name in MODEL_FILES if name not in (*WRITTEN_BY_GPT2, *CODE_FILES))]
# GPT-2 small (Radford et al. 2019; the Hugging Face `gpt2` checkpoint), for the comparison table
GPT2_SMALL = {
    "n_layer": 12,
    "n_head": 12,
    "n_embd": 768,
    "inner": 3072,
    "context": "1,024 tokens",
    "vocab": "50,257 byte-level BPE tokens",
    "parameters": "124M",
    "data": "WebText, about 40 GB of web pages",
}
# the architecture table's rows for the switchable parts: (row, config field, how GPT-2's value reads)
ARCHITECTURE_SWITCHES = (
    ("norm placement", "ln_style", "pre-LN + final norm"),
    ("normalisation", "norm_style", "LayerNorm"),
    ("residual connections", "use_residual", "yes"),
    ("causal self-attention", "use_attention", "yes"),
    ("MLP", "use_mlp", "yes"),
    ("MLP activation", "mlp_style", "GELU (tanh approximation)"),
    ("position embeddings", "use_position_embeddings", "yes"),
    ("positions", "position_style", "learned table"),
    ("biases", "use_bias", "yes"),
    ("output layer tied to the input embedding", "tie_word_embeddings", "yes"),
)
LANGUAGE_NAMES = {"en": "English", "ja": "Japanese"}
# the split of a folder that does not record its own (no trainer_state.json): corpus.py's default (train.py's too)
DEFAULT_VAL_FRACTION = inspect.signature(train_val_split).parameters["val_fraction"].default
# what the copy a shipped corpus was taken from adds to the works' rights, by CorpusSpec.aozora (data/PROVENANCE.md)
COPY_RIGHTS = {
    True: "Aozora Bunko's transcriptions add no rights",
    False: "the excerpt compiled by karpathy/char-rnn is MIT-licensed",
}
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")  # the Hub's fixed list
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


class PublishError(Exception):
    """The Hub (or the network) refused or failed: reported as one line, exit code 1."""


# ---------------------------------------------------------------------------------------------------------------------
# What a model folder says about itself


def check_repo_id(repo_id: str) -> str:
    """`owner/name`, valid for the Hub, or a UsageError (the model card's snippet needs the full id)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise UsageError(f"{repo_id!r} is not a valid Hub repo id: {str(e).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise UsageError(f"the repo id must be owner/name (your user or organisation, then the name), got {repo_id!r}")
    return repo_id


def check_model_folder(folder: str | Path):
    """The folder's model and tokenizer, or a UsageError saying why it cannot be published as it is."""
    folder = Path(folder)
    model, tokenizer = load_model_folder(folder)  # not a folder, not GPT-2 mini, no weights, no tokenizer ...
    config = json.loads((folder / "config.json").read_text())
    if "AutoModelForCausalLM" not in config.get("auto_map", {}):
        raise UsageError(
            f"{folder}/config.json has no auto_map, so the Hub could not find the model code: re-save the folder "
            "with this project's save_pretrained"
        )
    for name, required in MODEL_FILES.items():
        if required and not (folder / name).is_file():
            raise UsageError(f"{folder} has no {name}: re-save it with this project's save_pretrained")
    return model, tokenizer


def run_state(folder: Path) -> dict:
    """trainer_state.json of a train.py run folder, or else the training.json ablate.py ships with a model (its
    settings, step and command); {} for a folder with neither."""
    for name in (STATE_FILE, "training.json"):
        try:
            return json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
    return {}


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
    train = train[: round(len(train) * settings.get("train_fraction", 1.0))]  # train.training_text
    return TrainingText(name, spec, text or "", train, val, val_fraction)


def provenance_table() -> dict[str, list[str]]:
    """{file: its eight cells} from data/PROVENANCE.md's table of the shipped files ({} without that file)."""
    path = ROOT / "data" / "PROVENANCE.md"
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


def requirement(name: str) -> str:
    """The version range requirements.txt gives `name` (e.g. "transformers>=5.24,<6")."""
    from packaging.requirements import Requirement

    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and Requirement(line).name == name:
            return line
    return name


# ---------------------------------------------------------------------------------------------------------------------
# The model card: the template (a line ending in a backslash continues on the next: one Markdown line in the card)

MODEL_CARD = """\
# GPT-2 mini: {name}

A character-level GPT-2 with {parameters} parameters ({layers}, {heads}, {n_embd}-dimensional embeddings, a \
{context}-character context), trained from scratch on {trained_on}. It is GPT-2's architecture at toy scale, with \
GPT-2's parameter names and numerics, loadable with `from_pretrained`.

{broken_variant}

## Use it

```python
{usage}```

{code_note} It needs `{transformers}` and `{torch}`. The prompt plus `max_new_tokens` must fit the \
{context}-character context: {past_context}.

## Architecture next to GPT-2 small

| | this model | GPT-2 small |
|---|---|---|
{architecture_rows}

{kind_section}

## Training data

{training_data}

## Training recipe

{recipe}

## Evaluation

{evaluation}

## Limitations

- It is tiny: {parameters} parameters, trained on {trained_amount}. It learns spelling, word shapes and the layout of \
its text (names, line breaks, punctuation), not meaning or facts; what it writes is pastiche.
- It reads and writes characters and knows only the {characters} characters of its training text{language}. Any \
other character goes in as its UTF-8 bytes, which it never saw in training, so the text after it degrades.
- Its context is {context} characters: `generate()` stops there with an error. (The GPT-2 mini project's streaming \
decoder, `generation_gpt2mini.stream_text`, slides its window past the context; it is not part of this repository.)
- It imitates {imitates}; it has no safety tuning, no instruction following and no chat format.
{broken_limitation}

## Files

README.md (this card), {files}.

Made with the GPT-2 mini project's `publish.py`.
"""

# the card's snippet, a template that is also Python: tests/test_publish.py runs the card's copy as written
USAGE_SNIPPET = """\
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

repo_id = "{repo_id}"
model = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True)  # the code is in this repo
tok = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)

generator = pipeline("text-generation", model=model, tokenizer=tok)
out = generator({prompt}, max_new_tokens={max_new_tokens}, do_sample=True, temperature=0.8, top_k=40)
print(out[0]["generated_text"])
"""

# the card's snippet for the same weights saved as plain GPT-2 (publish.py --as-gpt2): no code from the repository
USAGE_SNIPPET_GPT2 = """\
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

repo_id = "{repo_id}"
model = AutoModelForCausalLM.from_pretrained(repo_id)  # a GPT2LMHeadModel: no custom code
tok = AutoTokenizer.from_pretrained(repo_id)

generator = pipeline("text-generation", model=model, tokenizer=tok)
out = generator({prompt}, max_new_tokens={max_new_tokens}, do_sample=True, temperature=0.8, top_k=40)
print(out[0]["generated_text"])
"""

CODE_NOTE = """\
`trust_remote_code=True` runs `modeling_gpt2mini.py` and `configuration_gpt2mini.py` from this repository (they \
import only torch and transformers; read them first if you like)."""
CODE_NOTE_GPT2 = """\
No code comes from this repository: the model is a `transformers.GPT2LMHeadModel` (`model_type: gpt2`), converted \
from GPT-2 mini with `GPT2MiniForCausalLM.to_gpt2()`, which gives identical logits."""

SWITCHES_SECTION = """\
## Switches

Every part that matters can be switched off, or swapped for an earlier or later generation's design, in \
`config.json` (each switch is read where `modeling_gpt2mini.py` builds that part). {switches_changed}

| switch | this model | GPT-2 | the other values mean |
|---|---|---|---|
{switch_rows}

## Fine-tune it with LoRA

PEFT has no default target modules for `gpt2mini`; name them. The projections are `nn.Linear` (GPT-2's are \
`Conv1D`), so `fan_in_fan_out` stays `False`:

```python
from peft import LoraConfig, get_peft_model

model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules={lora_targets}))
```"""
GPT2_SECTION = """\
## Plain GPT-2

These are GPT-2 mini's weights saved as GPT-2 itself: `config.json` says `model_type: gpt2`, and the repository \
holds no Python. Checked by the GPT-2 mini project's tests: `AutoModelForCausalLM` and the `text-generation` \
pipeline load it in a fresh process without `trust_remote_code`, with the same logits as the original and the same \
`tokenizer.json`. Other tools that read GPT-2 checkpoints (ONNX export and Optimum, transformers.js, vLLM, \
llama.cpp's converter) should take the weights as they take GPT-2's; that was not tested here. The tokenizer is \
not GPT-2's byte-level BPE but a character tokenizer in `tokenizer.json` (a BPE model with no merges and byte \
fallback): a tool that insists on GPT-2's `vocab.json` and `merges.txt` will not find them. Left-padded input \
without `position_ids` counts the padding as positions (GPT-2's rule; `generate` passes `position_ids`, so \
generations are unaffected)."""

BROKEN_VARIANT = """\
**This is a deliberately broken variant** ({switches}): it differs from GPT-2 in {that_switch} and was trained to \
show what {that_part} of the architecture {does}. Expect worse text than the baseline."""

LINEAGE_VARIANT = """\
It takes designs from GPT-2's ancestors or descendants ({switches}): see the switches below."""

# the "Training data" section: a shipped corpus, another text file, or nothing recorded
SHIPPED_CORPUS = """\
The GPT-2 mini project's `{name}` corpus, {description}: {characters} characters, {distinct} distinct, language \
`{language}`.{cleaning}

Training used the first {train_share} ({train_characters} characters); the last {val_share} ({val_characters} \
characters) is the validation split, never trained on.

| file | work | author (died) | source | sha256 |
|---|---|---|---|---|
{provenance_rows}

All of it is in the public domain: {public_domain}. Sources, hashes and the reasoning are in the project's \
`data/PROVENANCE.md`."""
AOZORA_CLEANING = """ Aozora Bunko's markup (header, ruby, editor's notes, footer) is removed and its gaiji notes \
are resolved to the characters they describe."""
OTHER_TEXT_FILE = """\
A text file, `{name}`, that is not one of the project's corpora: its provenance and license are not recorded here. \
The vocabulary has {characters} distinct characters."""
UNRECORDED_TEXT = """\
Not recorded in the model folder, and not one of the project's corpora. The vocabulary has {characters} distinct \
characters."""


def fill(template: str, **values) -> str:
    """The template with its placeholders filled; an optional part left empty leaves no run of blank lines."""
    return re.sub(r"\n{3,}", "\n\n", template.format(**values))


# ---------------------------------------------------------------------------------------------------------------------
# The model card: the values, computed from the model folder and the switch registry


@dataclass(frozen=True)
class ModelFacts:
    """What the model card reports, gathered once from the model folder."""

    folder: Path
    repo_id: str
    config: GPT2MiniConfig
    parameters: int
    characters: int  # the distinct characters the tokenizer knows (its first ids)
    state: dict  # trainer_state.json ({} when the folder has none)
    metrics: list[dict]  # metrics.jsonl
    data: TrainingText
    prompt: str  # the usage snippet's prompt: the corpus's sample prompt
    max_new_tokens: int  # what fits in the context after the prompt (at most 200)
    plain_gpt2: bool = False  # the card of the weights saved as GPT-2 itself (publish.py --as-gpt2)

    @property
    def settings(self) -> dict:
        return self.state.get("settings", {})

    @property
    def evals(self) -> list[dict]:
        return [m for m in self.metrics if "val_loss" in m]


def model_facts(folder: str | Path, repo_id: str, model, tokenizer, plain_gpt2: bool = False) -> ModelFacts:
    """Read what the card needs from the folder (and the model and tokenizer loaded from it), once."""
    folder = Path(folder)
    state = run_state(folder)
    data = training_text(tokenizer, state.get("settings", {}))
    prompt = data.spec.sample_prompt if data.spec else "\n"
    room = model.config.n_positions - len(tokenizer.encode(prompt, add_special_tokens=False))
    return ModelFacts(
        folder=folder,
        repo_id=repo_id,
        config=model.config,
        parameters=model.num_parameters(),
        characters=corpus_characters(tokenizer),
        state=state,
        metrics=read_metrics(folder),
        data=data,
        prompt=prompt,
        max_new_tokens=max(1, min(200, room)),
        plain_gpt2=plain_gpt2,
    )


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    """The count and the noun, plural unless the count is 1: "1 layer", "1,500 optimizer steps"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _table(rows) -> str:
    """Markdown table rows, one line each."""
    return "\n".join("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)


def _assignments(fields: dict) -> str:
    """`use_residual=false`, ... : switch fields as they read in config.json."""
    return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in fields.items())


def switch_cell(cfg, field: str, gpt2_reads: str) -> str:
    """How the architecture table shows a switch field: as GPT-2's value reads, or in bold what is different."""
    value = getattr(cfg, field)
    if value == gpt2_value(field):
        return gpt2_reads
    if isinstance(value, bool):
        return "**yes**" if value else "**no**"
    return f"**{next(s.label for s in SWITCHES if s.field == field and s.value == value)}**"


def architecture_rows(f: ModelFacts) -> str:
    """The rows of "Architecture next to GPT-2 small": sizes, vocabulary, data, then the switchable parts."""
    cfg, train = f.config, f.data.train
    rows = [
        ("layers", cfg.n_layer, GPT2_SMALL["n_layer"]),
        ("attention heads", cfg.n_head, GPT2_SMALL["n_head"]),
        ("embedding dimension", cfg.n_embd, GPT2_SMALL["n_embd"]),
        ("MLP hidden width", f"{cfg.inner_dim:,}", f"{GPT2_SMALL['inner']:,}"),
        ("context", f"{cfg.n_positions:,} characters", GPT2_SMALL["context"]),
        (
            "vocabulary",
            f"{cfg.vocab_size:,}: {f.characters:,} characters + 2 special tokens + 256 byte-fallback tokens",
            GPT2_SMALL["vocab"],
        ),
        ("parameters", f"{f.parameters:,}", GPT2_SMALL["parameters"]),
        (
            "training data",
            f"{len(train):,} characters ({len(train.encode()) / 1e6:.1f} MB of UTF-8)" if train else "see below",
            GPT2_SMALL["data"],
        ),
    ]
    rows += [(row, switch_cell(cfg, field, reads), reads) for row, field, reads in ARCHITECTURE_SWITCHES]
    return _table(rows)


def switch_rows(cfg) -> str:
    """The rows of "Switches": every field of the registry, this model's value (bold where it differs),
    GPT-2's, and what each other value means."""
    rows = []
    for field in switch_fields():
        value, gpt2 = getattr(cfg, field), gpt2_value(field)
        shown = f"`{json.dumps(value)}`" if value == gpt2 else f"**`{json.dumps(value)}`**"
        meanings = "; ".join(f"`{json.dumps(s.value)}`: {s.meaning}" for s in SWITCHES if s.field == field)
        rows.append((f"`{field}`", shown, f"`{json.dumps(gpt2)}`", meanings))
    return _table(rows)


def switches_changed(cfg) -> str:
    if not cfg.ablations:
        return "This model has them all as GPT-2 has them."
    return f"This model has {_count(len(cfg.ablations), 'switch', 'switches')} set away from GPT-2."


def broken_variant(cfg) -> str:
    """The line under the title of a model with switches away from GPT-2: a warning for parts broken on purpose, a
    plain statement for another generation's designs ("" for GPT-2 itself)."""
    lines = []
    if cfg.broken:
        one = len(cfg.broken) == 1
        lines.append(
            BROKEN_VARIANT.format(
                switches=_assignments(cfg.broken),
                that_switch="that switch" if one else "those switches",
                that_part="that part" if one else "those parts",
                does="does" if one else "do",
            )
        )
    if cfg.lineage:
        lines.append(LINEAGE_VARIANT.format(switches=_assignments(cfg.lineage)))
    return "\n\n".join(lines)


def training_data(f: ModelFacts) -> str:
    """The "Training data" section: the shipped corpus with its split and provenance, or what is known of the text."""
    data, spec = f.data, f.data.spec
    if spec is None:
        template = OTHER_TEXT_FILE if data.name else UNRECORDED_TEXT
        return template.format(name=data.name, characters=f"{f.characters:,}")
    return SHIPPED_CORPUS.format(
        name=data.name,
        description=spec.description,
        characters=f"{len(data.text):,}",
        distinct=f"{len(set(data.text)):,}",
        language=spec.language,
        cleaning=AOZORA_CLEANING if spec.aozora else "",
        train_share=f"{len(data.train) / len(data.text):.1%}".replace(".0%", "%"),
        train_characters=f"{len(data.train):,}",
        val_share=f"{data.val_fraction:.0%}",
        val_characters=f"{len(data.val):,}",
        provenance_rows=_table(r[:4] + [f"`{r[4][:16]}…`" if r[4] else ""] for r in provenance_rows(spec)),
        public_domain=public_domain_reason(spec),
    )


def recipe_from_log(metrics: list[dict]) -> list[str]:
    """What the training log shows of the recipe (for a folder without trainer_state.json)."""
    logged = [m for m in metrics if "lr" in m]
    if not logged:
        return ["This folder records neither its training settings nor a training log."]
    lrs = [m["lr"] for m in logged]
    return [
        f"The folder keeps the training log (`{METRICS_FILE}`) but not the full settings (no `{STATE_FILE}`). "
        "From the log:",
        "",
        f"- {_count(logged[-1]['step'], 'optimizer step')}; the learning rate logged every {logged[0]['step']} steps "
        f"rose to {max(lrs):.3g} and ended at {lrs[-1]:.3g} (warmup, then decay)",
        f"- {logged[-1].get('elapsed_s', 0):,.0f} s of training, about {logged[-1].get('tokens_per_s', 0):,} "
        "tokens/s at the end",
    ]


def recipe_from_settings(s: dict, state: dict, n_positions: int) -> list[str]:
    """The recipe as trainer_state.json records it: optimizer, batches, short-context warmup, regularisation,
    hardware, and the command that repeats the run."""
    planned, done = s.get("steps"), state.get("step", s.get("steps"))
    final_lr = s["lr"] * s["min_lr_ratio"] if "min_lr_ratio" in s else s["min_lr"]  # older runs: absolute
    per_step = state.get("tokens_per_step")
    lines = [
        f"- {_count(done, 'optimizer step')}"
        + (f" of the {planned:,} planned (the run was stopped early)" if done != planned else "")
        + f": AdamW (beta2 {s['beta2']:g}, weight decay {s['weight_decay']:g} on matrices only), peak learning rate "
        f"{s['lr']:g} after {s['warmup']} warmup steps, cosine decay to {final_lr:g}, gradient clipping at "
        f"{s['grad_clip']:g}",
        f"- {s['batch_size']} windows of {n_positions} characters per micro-batch"
        + (f", {s['grad_accum']} micro-batches per step" if s.get("grad_accum", 1) > 1 else "")
        + (f" ({per_step:,} tokens per step)" if per_step else ""),
    ]
    short = s.get("short_context") or 0
    if 0 < short < n_positions and s.get("short_fraction"):
        lines.append(
            f"- the first {s['short_fraction']:.0%} of the steps take the same tokens as "
            f"{s['batch_size'] * (n_positions // short)} windows of {short} characters, each at a random position "
            "inside the context (attention starts working sooner; every position embedding still trains)"
        )
    lines.append(f"- dropout {s['dropout']:g}, seed {s['seed']}")
    if state.get("elapsed_s"):
        world = state.get("world_size", 1)
        lines.append(
            f"- {state['elapsed_s']:,.0f} s of training on {state.get('device', '?')}"
            + (f" ({world} processes)" if world > 1 else "")
            + (f", torch {state['torch']}" if state.get("torch") else "")
        )
    if state.get("command"):  # written by train.py: the flags that differ from its defaults
        lines += ["", f"To train it again with this project: `{state['command']}`"]
    return lines


def recipe(f: ModelFacts) -> str:
    """The "Training recipe" section, from trainer_state.json's settings, or else from the training log."""
    if f.settings:
        return "\n".join(recipe_from_settings(f.settings, f.state, f.config.n_positions))
    return "\n".join(recipe_from_log(f.metrics))


def evaluation(f: ModelFacts) -> str:
    """The "Evaluation" section: the last validation loss and how it was measured, the untrained loss, the curve."""
    cfg, evals = f.config, f.evals
    lines = []
    if evals:
        last, first = evals[-1], evals[0]
        measure = (
            f"the mean over {_count(f.settings['eval_iters'], 'fixed batch', 'fixed batches')} of "
            f"{f.settings['batch_size']} random {cfg.n_positions}-character windows"
            if f.settings
            else "the mean over the fixed batches of random full-context windows that train.py evaluates on"
        )
        lines.append(
            f"Validation loss **{_fmt(last['val_loss'])}** nats per character (cross-entropy with the natural log; "
            f"perplexity {math.exp(last['val_loss']):.2f} per character) at step {last['step']:,}: {measure} "
            f"from the validation split. On the same kind of batches from the training split: "
            f"{_fmt(last['train_loss'])}."
        )
        if first["step"] == 0:
            lines.append(
                f"At step 0, untrained, the validation loss was {_fmt(first['val_loss'])} (ln {cfg.vocab_size} = "
                f"{math.log(cfg.vocab_size):.3f}: a uniform guess over the vocabulary)."
            )
        lines.append(f"(From `{METRICS_FILE}`, the training log in this repository.)")
    else:
        lines.append(f"This folder records no evaluation (no `{METRICS_FILE}`).")
    if (f.folder / CURVE_FILE).exists():
        lines += ["", f"![training and validation loss against steps]({CURVE_FILE})"]
    return "\n".join(lines)


def card_metadata(f: ModelFacts) -> str:
    """The card's YAML front matter: license, language, library, pipeline and tags."""
    from huggingface_hub import ModelCardData

    tags = ["gpt2mini", "gpt2", "character-level", "text-generation", "from-scratch"]
    tags += [] if f.plain_gpt2 else ["custom_code"]
    spec = f.data.spec
    return ModelCardData(
        license=LICENSE,
        language=[spec.language] if spec else None,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=tags + (["ablation"] if f.config.broken else []) + (["lineage"] if f.config.lineage else []),
    ).to_yaml()


def model_card_values(f: ModelFacts) -> dict[str, str]:
    """Every placeholder of MODEL_CARD, filled from the facts."""
    cfg, data, spec = f.config, f.data, f.data.spec
    listed = GPT2_FILES if f.plain_gpt2 else MODEL_FILES
    files = [name for name in listed if name == "generation_config.json" or (f.folder / name).exists()]
    usage = (USAGE_SNIPPET_GPT2 if f.plain_gpt2 else USAGE_SNIPPET).format(
        repo_id=f.repo_id, prompt=json.dumps(f.prompt, ensure_ascii=False), max_new_tokens=f.max_new_tokens
    )
    kind_section = (
        GPT2_SECTION
        if f.plain_gpt2
        else fill(
            SWITCHES_SECTION,
            switches_changed=switches_changed(cfg),
            switch_rows=switch_rows(cfg),
            lora_targets=json.dumps(list(LORA_TARGET_MODULES)),
        )
    )
    return dict(
        name=f.repo_id.split("/")[1],
        parameters=f"{f.parameters:,}",
        layers=_count(cfg.n_layer, "layer"),
        heads=_count(cfg.n_head, "head"),
        n_embd=cfg.n_embd,
        context=cfg.n_positions,
        trained_on=spec.description if spec else f"the text file `{data.name}`" if data.name else "an unrecorded text",
        broken_variant=broken_variant(cfg),
        usage=usage,
        code_note=CODE_NOTE_GPT2 if f.plain_gpt2 else CODE_NOTE,
        past_context="GPT-2's own code does not check this, and fails past it with an IndexError in its position table"
        if f.plain_gpt2
        else "`generate()` refuses to go past it with a clear error",
        transformers=requirement("transformers"),
        torch=requirement("torch"),
        architecture_rows=architecture_rows(f),
        kind_section=kind_section,
        training_data=training_data(f),
        recipe=recipe(f),
        evaluation=evaluation(f),
        trained_amount=f"{len(data.train):,} characters" if data.train else "one text",
        characters=f"{f.characters:,}",
        language=f" ({LANGUAGE_NAMES.get(spec.language, spec.language)})" if spec else "",
        imitates="old public-domain texts, with their period's views and language" if spec else "its training text",
        broken_limitation="- It is broken on purpose (see above): use the baseline for anything but comparisons."
        if cfg.broken
        else "",
        files=", ".join(f"`{name}`" for name in files),
    )


def model_card(folder: str | Path, repo_id: str, model, tokenizer, plain_gpt2: bool = False) -> str:
    """README.md for the model repository: Hub metadata, and MODEL_CARD filled from the folder's own files (for the
    weights saved as plain GPT-2 when `plain_gpt2`)."""
    from huggingface_hub import ModelCard

    facts = model_facts(folder, repo_id, model, tokenizer, plain_gpt2)
    body = fill(MODEL_CARD, **model_card_values(facts))
    return str(ModelCard(f"---\n{card_metadata(facts)}\n---\n\n{body}")).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# Assembling the repository folders


def write_new_folder(out: str | Path, write) -> Path:
    """Create the folder `out` (which must not exist) with checkpoint.atomic_save: written beside it, then renamed
    into place, so a failure or Ctrl-C half-way leaves no `out` behind."""
    out = Path(out)
    if out.exists():
        raise UsageError(f"{out} already exists: name a new folder (it is written whole, then kept)")
    atomic_save(out, write)
    return out


def repo_files(folder: str | Path) -> list[str]:
    """Every file under `folder`, as sorted repository paths: what an upload sends and what --dry-run lists."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def write_model_repo(folder: str | Path, dest: Path, repo_id: str, model=None, tokenizer=None) -> None:
    """Write the model repository for `folder` into the (new, empty) folder `dest`."""
    folder = Path(folder)
    if model is None:
        model, tokenizer = check_model_folder(folder)
    for name in MODEL_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, dest / name)
    if not (dest / "generation_config.json").exists():
        model.generation_config.save_pretrained(dest)
    (dest / "README.md").write_text(model_card(folder, repo_id, model, tokenizer))


def write_gpt2_repo(folder: str | Path, dest: Path, repo_id: str, model, tokenizer) -> None:
    """Write the model as plain GPT-2 into the (new, empty) folder `dest`: `to_gpt2()`'s save_pretrained, the
    tokenizer, the training log and curve, and its card. No code files."""
    folder = Path(folder)
    as_gpt2(model).save_pretrained(dest)
    for name in GPT2_FILES:
        if (folder / name).is_file() and not (dest / name).exists():
            shutil.copyfile(folder / name, dest / name)
    (dest / "README.md").write_text(model_card(folder, repo_id, model, tokenizer, plain_gpt2=True))


def as_gpt2(model):
    """`model.to_gpt2()`, or a UsageError naming the switch GPT-2 cannot express."""
    try:
        return model.to_gpt2()
    except ValueError as e:
        raise UsageError(f"--as-gpt2: {e}") from None


def assemble_model(folder: str | Path, out: str | Path, repo_id: str, plain_gpt2: bool = False) -> Path:
    """Check `folder`, then write its model repository (as plain GPT-2 if asked) to `out` atomically. Returns `out`."""
    check_repo_id(repo_id)
    model, tokenizer = check_model_folder(folder)
    if plain_gpt2:
        as_gpt2(model)  # refused before anything is written
        return write_new_folder(out, lambda tmp: write_gpt2_repo(folder, tmp, repo_id, model, tokenizer))
    return write_new_folder(out, lambda tmp: write_model_repo(folder, tmp, repo_id, model, tokenizer))


def module_level(tree: ast.AST):
    """The nodes of a module outside function bodies: what `import` runs (imports inside functions are lazy ones,
    such as train.py's `import publish` for --push-to-hub, which the app never calls)."""
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield node
            yield from module_level(node)


def local_imports(script: Path) -> list[str]:
    """The project modules `script` needs: its module-level imports of project files, followed through them."""
    seen, todo = [], [script.stem]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        tree = ast.parse((ROOT / f"{name}.py").read_text())
        for node in module_level(tree):
            if isinstance(node, ast.Import):
                found = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [node.module.split(".")[0]]
            else:
                continue
            todo += [m for m in found if (ROOT / f"{m}.py").is_file()]
    return sorted(f"{m}.py" for m in seen)


def model_folders(models_dir: Path) -> list[Path]:
    """models_dir/<corpus>/<variant>/ folders with a config.json (the layout app.py serves)."""
    return sorted(p.parent for p in models_dir.glob("*/*/config.json"))


def space_requirements() -> str:
    """requirements.txt for the Space: the project's runtime requirements pinned to the versions installed here
    (each checked against the project's range), torch as the CPU build. Gradio comes from `sdk_version`."""
    from packaging.requirements import Requirement

    lines = [
        "# Written by publish.py: the project's requirements.txt pinned to the versions it was tested with.",
        "# Gradio itself is installed by the Space from README.md's sdk_version.",
        f"--extra-index-url {TORCH_CPU_INDEX}",
    ]
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.name == "gradio":
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise UsageError(f"{req.name} is not installed here; install requirements.txt first") from None
        if not req.specifier.contains(version, prereleases=True):
            raise UsageError(f"the installed {req.name} {version} does not satisfy requirements.txt's {line!r}")
        if req.name == "torch":
            version = version.split("+")[0] + "+cpu"  # a Space without a GPU: the small CPU build
        lines.append(f"{req.name}=={version}")
    return "\n".join(lines) + "\n"


SPACE_CARD = """\
# GPT-2 mini lab

A character-level GPT-2 small enough to read in one sitting{variants}. Same prompt, same seed: watch where the \
variants part. Tabs: side by side, generate, next character, attention maps, knockout (switch off heads or layers of \
the trained baseline), training curves.

| corpus | variant | switches changed | parameters | validation loss (last evaluation) |
|---|---|---|---|---|
{model_rows}

Validation loss: nats per character on fixed batches of the held-out last {val_share} of each corpus, from each \
model's training log (`{metrics_file}`). The models run on the CPU, one torch thread per process.

The training texts are in the public domain: {texts}. `data/PROVENANCE.md` has the sources and hashes. Made \
with the GPT-2 mini project's `publish.py --space`; run it locally with \
`pip install -r requirements.txt gradio=={gradio_version}` and `python app.py`.
"""


def space_metadata(gradio_version: str) -> str:
    """The Space's YAML front matter: what the Hub reads to build and run it."""
    from huggingface_hub import SpaceCardData

    return SpaceCardData(
        title="GPT-2 mini lab",
        emoji="🔬",
        colorFrom="indigo",
        colorTo="pink",
        sdk="gradio",
        sdk_version=gradio_version,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        license=LICENSE,
        short_description="A character-level GPT-2 and its broken twins",
        tags=["gpt2", "character-level", "ablation", "interpretability", "education"],
        pinned=False,
    ).to_yaml()


def shipped_variants(folders: list[Path]) -> str:
    """ ", next to copies trained with one part switched off or changed (residual off, ...)": the registry's labels
    of the variants shipped, in registry order ("" when only baselines are shipped)."""
    names = {f.name for f in folders} - {BASELINE}
    order = [s.variant for s in SWITCHES]
    names = sorted(names, key=lambda v: (order.index(v) if v in order else len(order), v))
    if not names:
        return ""
    return f", next to copies trained with one part switched off or changed ({', '.join(map(variant_label, names))})"


def space_model_row(folder: Path, parameters: int) -> tuple:
    """A model's row of the Space's table: corpus, variant, switches changed, size, last validation loss."""
    config = json.loads((folder / "config.json").read_text())
    values = {k: config.get(k, gpt2_value(k)) for k in switch_fields()}
    changed = {k: v for k, v in values.items() if v != gpt2_value(k)}
    evals = [m for m in read_metrics(folder) if "val_loss" in m]
    loss = f"{evals[-1]['val_loss']:.3f} at step {evals[-1]['step']:,}" if evals else "not recorded"
    return folder.parent.name, folder.name, _assignments(changed) or "none (GPT-2)", f"{parameters:,}", loss


def space_card(folders: list[Path], parameters: dict[Path, int]) -> str:
    """README.md for the Space: the front matter the Hub reads, and SPACE_CARD filled with what the Space holds."""
    from huggingface_hub import SpaceCard

    gradio_version = importlib.metadata.version("gradio")  # the SDK the Space runs: the one tested here
    specs = [CORPORA[c] for c in sorted({f.parent.name for f in folders}) if c in CORPORA]
    fractions = sorted({run_state(f).get("settings", {}).get("val_fraction", DEFAULT_VAL_FRACTION) for f in folders})
    body = fill(
        SPACE_CARD,
        variants=shipped_variants(folders),
        model_rows=_table(space_model_row(f, parameters[f]) for f in folders),
        val_share=" or ".join(f"{x:.0%}" for x in fractions),
        metrics_file=METRICS_FILE,
        texts="; ".join(s.description + (" from Aozora Bunko" if s.aozora else "") for s in specs),
        gradio_version=gradio_version,
    )
    return str(SpaceCard(f"---\n{space_metadata(gradio_version)}\n---\n\n{body}")).rstrip("\n") + "\n"


def write_space_repo(dest: Path, models_dir: Path, parameters: dict[Path, int]) -> None:
    """Write the Space into the (new, empty) folder `dest`; `parameters` gives each model folder's size."""
    folders = model_folders(models_dir)
    for name in local_imports(ROOT / "app.py"):
        shutil.copyfile(ROOT / name, dest / name)
    for f in folders:
        target = dest / "models" / f.relative_to(models_dir)
        target.mkdir(parents=True)
        for p in sorted(f.iterdir()):
            if p.is_file() and p.name not in (STATE_FILE, OPTIMIZER_FILE):
                shutil.copyfile(p, target / p.name)
    for sweep in sorted({f.parent / "sweep.json" for f in folders}):  # the lab's Training tab shows it
        if sweep.exists():
            shutil.copyfile(sweep, dest / "models" / sweep.relative_to(models_dir))
    for grid in sorted({f.parent / "scaling" for f in folders}):  # the lab's Scaling tab: scaling.py's sizes
        if (grid / "scaling.json").exists():
            skip = shutil.ignore_patterns(STATE_FILE, OPTIMIZER_FILE)
            shutil.copytree(grid, dest / "models" / grid.relative_to(models_dir), ignore=skip)
    (dest / "data").mkdir()
    for corpus in sorted({f.parent.name for f in folders} & set(CORPORA)):  # Lab.passage reads these
        for name in CORPORA[corpus].files:
            shutil.copyfile(ROOT / "data" / name, dest / "data" / name)
    shutil.copyfile(ROOT / "data" / "PROVENANCE.md", dest / "data" / "PROVENANCE.md")
    (dest / "requirements.txt").write_text(space_requirements())
    (dest / "README.md").write_text(space_card(folders, parameters))


def assemble_space(out: str | Path, repo_id: str, models_dir: str | Path = ROOT / "models") -> Path:
    """Check the models, then write the Space to `out` atomically. Returns `out`."""
    check_repo_id(repo_id)
    models_dir = Path(models_dir)
    folders = model_folders(models_dir)
    if not folders:
        raise UsageError(f"no models in {models_dir} (expected {models_dir}/<corpus>/<variant>/config.json)")
    # every model the Space will serve loads, or a clear line says which does not
    parameters = {f: load_model_folder(f)[0].num_parameters() for f in folders}
    space_requirements()  # a version mismatch is reported before anything is written
    return write_new_folder(out, lambda tmp: write_space_repo(tmp, models_dir, parameters))


# ---------------------------------------------------------------------------------------------------------------------
# Uploading


def check_can_upload(token: str | None) -> None:
    """Fail early, before anything is sent: offline mode, or no token from --token, HF_TOKEN or `hf auth login`."""
    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        raise UsageError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it, or use --dry-run")
    if not (token or get_token()):
        raise UsageError("not logged in to the Hugging Face Hub: run `hf auth login`, set HF_TOKEN or pass --token")


def upload(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Create the repo if needed and send every file of `folder` (`repo_files`) in one commit. Returns its URL."""
    import httpx2  # huggingface_hub's HTTP client: its connection errors
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(folder)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(
            repo_id,
            repo_type=repo_type,
            private=True if private else None,  # None: public, unless the organisation's default is private
            exist_ok=True,
            space_sdk="gradio" if repo_type == "space" else None,
        )
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in repo_files(folder)]
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=message or f"Upload with publish.py ({len(operations)} files)",
            repo_type=repo_type,
            revision=revision,
        )
    except (HfHubHTTPError, OfflineModeIsEnabled, httpx2.HTTPError, OSError, ValueError, RuntimeError) as e:
        # RuntimeError: a failed LFS/Xet transfer; ValueError: metadata the Hub rejects, or a malformed answer
        text = str(e).strip().splitlines()
        raise PublishError(f"the upload to {repo_id} failed: {text[0] if text else type(e).__name__}") from None
    return info.commit_url


def publish_model(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
    dry_run: bool = False,
    out: str | Path | None = None,
    endpoint: str | None = None,
    report=print,
    plain_gpt2: bool = False,
) -> str | None:
    """Assemble the model repository for `folder` and upload it (what `publish.py MODEL_DIR` and
    `train.py --push-to-hub` run); as plain GPT-2 with `plain_gpt2`. Returns the commit URL (None for a dry run)."""
    return _publish(
        lambda dest: assemble_model(folder, dest, repo_id, plain_gpt2),
        repo_id,
        "model",
        token=token,
        private=private,
        revision=revision,
        message=message or f"Upload GPT-2 mini from {Path(folder).name} with publish.py",
        dry_run=dry_run,
        out=out,
        endpoint=endpoint,
        report=report,
    )


def publish_space(
    repo_id: str,
    *,
    models_dir: str | Path = ROOT / "models",
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
    dry_run: bool = False,
    out: str | Path | None = None,
    endpoint: str | None = None,
    report=print,
) -> str | None:
    """Assemble the lab as a Gradio Space and upload it. Returns the commit URL (None for a dry run)."""
    return _publish(
        lambda dest: assemble_space(dest, repo_id, models_dir),
        repo_id,
        "space",
        token=token,
        private=private,
        revision=revision,
        message=message or "Upload the GPT-2 mini lab with publish.py",
        dry_run=dry_run,
        out=out,
        endpoint=endpoint,
        report=report,
    )


def _publish(assemble, repo_id, repo_type, *, dry_run, out, report, **upload_options) -> str | None:
    check_repo_id(repo_id)
    if not dry_run:
        check_can_upload(upload_options.get("token"))
    if out is not None and Path(out).exists():
        raise UsageError(f"--out {out} already exists: name a new folder (it is written whole, then kept)")
    with tempfile.TemporaryDirectory(prefix="gpt2mini-publish-") as tmp:
        folder = assemble(Path(out) if out is not None else Path(tmp) / "repo")
        files = repo_files(folder)
        size = sum((folder / f).stat().st_size for f in files)
        kind = "Space" if repo_type == "space" else "model repository"
        verb = "would upload" if dry_run else "uploading"
        print(f"{verb} {len(files)} files ({size / 1e6:.1f} MB) to the {kind} {repo_id}:", file=sys.stderr)
        for f in files:
            report(f"{(folder / f).stat().st_size:>12,}  {f}")
        if dry_run:
            return None
        url = upload(folder, repo_id, repo_type=repo_type, **upload_options)
        print(f"done: {url}", file=sys.stderr)
        return url


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Publish a GPT-2 mini model folder as a Hugging Face model repository, or the lab as a Space.",
    )
    p.add_argument("model_dir", nargs="?", metavar="MODEL_DIR", help="a model folder saved by train.py or ablate.py")
    p.add_argument("--repo-id", "--repo_id", dest="repo_id", metavar="OWNER/NAME", help="the model repository")
    p.add_argument("--space", metavar="OWNER/NAME", help="publish the lab (app.py and models/) as this Gradio Space")
    p.add_argument("--models", default=str(ROOT / "models"), help="with --space: the <corpus>/<variant> models to ship")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the `hf auth login` cache)")
    p.add_argument("--revision", metavar="BRANCH", help="commit to this branch (created if missing; default: main)")
    p.add_argument("--message", "-m", help="commit message")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="list the files; send nothing")
    p.add_argument("--out", metavar="DIR", help="also keep the assembled folder here (a new folder)")
    p.add_argument(
        "--as-gpt2",
        "--as_gpt2",
        dest="as_gpt2",
        action="store_true",
        help="publish the model as plain GPT-2 (GPT2LMHeadModel, model_type gpt2, no custom code); baseline only",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    options = dict(
        token=args.token,
        private=args.private,
        revision=args.revision,
        message=args.message,
        dry_run=args.dry_run,
        out=args.out,
    )
    try:
        if args.space:
            if args.model_dir or args.repo_id or args.as_gpt2:
                raise UsageError("--space publishes the lab; publish a model folder in a separate command")
            publish_space(args.space, models_dir=args.models, **options)
        else:
            if not args.model_dir or not args.repo_id:
                raise UsageError("give a model folder and --repo-id OWNER/NAME (or --space OWNER/NAME for the lab)")
            publish_model(args.model_dir, args.repo_id, plain_gpt2=args.as_gpt2, **options)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
