"""The model card: a Markdown template (`MODEL_CARD`) whose placeholders small functions fill from the folder's files,
the shipped corpora and the switch registry (architecture next to GPT-2 small, the switches, data and recipe, the
measured validation loss, usage, limitations); nothing in it is written for one particular model.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from configuration_gpt2mini import SWITCHES, GPT2MiniConfig, gpt2_value, switch_fields
from gpt2mini.checkpoint import CODE_FILES, CURVE_FILE, METRICS_FILE, STATE_FILE, read_metrics
from gpt2mini.hub.folder import GPT2_FILES, MODEL_FILES, requirement, run_state
from gpt2mini.hub.provenance import LICENSE, TrainingText, provenance_rows, public_domain_reason, training_text
from gpt2mini.tokenizer import n_chars as corpus_characters
from modeling_gpt2mini import LORA_TARGET_MODULES

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
decoder, `gpt2mini.generation.stream.stream_text`, slides its window past the context; it is not part of this \
repository.)
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
    files += [] if f.plain_gpt2 else list(CODE_FILES)  # from the repository root: a model folder has no code
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
