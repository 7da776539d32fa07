"""GPT-2 mini lab: prompt a trained model, run it next to its broken twins, and look inside.

    python app.py                              # the shipped models in models/, on http://127.0.0.1:7860
    python app.py --model runs/shakespeare     # add your own run (a folder, or a Hub repo id) next to them
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py

What is notable:
- Side by side: the chosen variants stream at once from one event (round-robin, one character each in turn), with
  the same seed, so they agree until their distributions part; each pane is highlighted from where it departs from
  the baseline, says what the variant is and where its measured loss stands (lab_story, yardsticks), and, once the
  run ends, shades each character by how likely its model found it.
- Next character: the top candidates after temperature, top-k and top-p as labelled bars, one forward pass, redrawn
  as the sliders (in the sidebar, beside every tab) move; a step button draws one character at a time.
- Attention: every layer's and head's attention over the prompt's last 64 characters, each head named by what it
  mostly reads (probes.head_pattern), one head enlarged with its characters.
- Knockout: switch off heads, attention or MLP layers, or residual connections of the trained baseline at inference
  time (on a private copy, so other users are not affected) and compare loss and samples with the intact model.
- Every request is checked by the handlers themselves (RAW_INPUTS): `check_settings` only turns the request's values
  into numbers, and generation_gpt2mini.SamplingSettings, with the sliders' LIMITS, is the one validation of them.
- The three streaming events (side by side, generate, knockout) step and pace through one generator, `paced`: an
  update after the first character, then at most every UPDATE_S, a stop at TIME_LIMIT_S, and always a final update.
- No network: the models are read from disk, Gradio's analytics are off, and no theme is fetched.
`build_demo(lab)` builds the Blocks for tests and Spaces (one function per tab, each wiring its own events);
`python app.py` launches it.
"""

import argparse
import copy
import dataclasses
import html
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from gradio.i18n import I18nData  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from checkpoint import UsageError, load_model_folder, read_json, read_metrics  # noqa: E402
from configuration_gpt2mini import PRESETS, variant_label, variants  # noqa: E402
from corpus import CORPORA, load_corpus, train_val_split  # noqa: E402
from figures import (  # noqa: E402
    lr_sweep_figure,
    scaling_compute_figure,
    scaling_data_figure,
    scaling_size_figure,
    si,
    training_figure,
)
from generation_gpt2mini import SamplingSettings, StreamServer, TextDecoder, TokenStream, filter_logits  # noqa: E402
from lab_clients import ClientWatch, Refused, listening, shown  # noqa: E402
from lab_story import caption, departures, knocked_out, reference_pane, side_by_side_story, tips  # noqa: E402
from probes import head_pattern, knockout  # noqa: E402
from serving import ProcessServer  # noqa: E402
from tokenizer import crop_to_tokens, encode, unseen_characters, valid_text  # noqa: E402
from words import ENGLISH, LANGUAGES, Words, translations  # noqa: E402
from yardsticks import reference_losses  # noqa: E402

ROOT = Path(__file__).resolve().parent
MAX_PANES = 8
DEFAULT_PANES = 4  # variants chosen when a corpus is picked (the first four)
# the baseline, the registry's ablations (configuration_gpt2mini.SWITCHES), then the lineage's presets
ORDER = (*variants(), *(p for p, fields in PRESETS.items() if len(fields) > 1))
EXAMPLES = [
    ["shakespeare", "ROMEO:\nO, she doth teach the torches to burn bright!"],
    ["shakespeare", "First Citizen:\n"],
    ["wagahai", "吾輩は猫である。"],
    ["wagahai", "主人は"],
]
# What the API accepts, by SamplingSettings' field names (SamplingSettings.checked holds a request to these ranges);
# the sliders use the same ranges.
LIMITS = {
    "temperature": (0.0, 2.0),
    "top_k": (0, 200),
    "top_p": (0.01, 1.0),
    "max_new_tokens": (1, 2000),
    "repetition_penalty": (1.0, 2.0),
    "seed": (0, 2**31 - 1),
}
WHOLE_SETTINGS = ("top_k", "max_new_tokens", "seed")  # integers: 40, "40" and 40.0 are 40; 40.5 is refused
ATTENTION_CHARS = 64
TIME_LIMIT_S = 120  # a generation stops itself after this long (Gradio's time_limit only covers .stream events)
UPDATE_S = 0.1  # a streaming event updates the page at most this often (with few streams decoding: update_every)
CALM_STREAMS = 8  # streams decoding at once up to which the pages update every UPDATE_S
PASSAGE_WINDOWS = 4  # the knockout's fixed passage: the first 4 x 256 characters of the validation split
# RAW_INPUTS: the events that take user input run with preprocess=False, so the handlers get the request's values
# as sent and check them all themselves (check_settings, Lab.get, prepare_prompt, as_list, parse_parts): anything
# out of range or of the wrong type gets one gr.Error naming the setting. Gradio's own preprocessing would instead
# fail with an unexplained server error on, say, a string sent for a slider.
GENERATING_AT_ONCE = 32  # generation events running at once: their streams share one batched step (StreamServer)
KNOCKOUTS_AT_ONCE = 4  # knockouts running at once: each steps a private, hooked copy of the model on its own thread
QUEUE_SIZE = 64  # events waiting beyond those running; one more gets Gradio's "Queue is full" at once (HTTP 503)


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


@dataclass
class Entry:
    """One loaded model."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    metrics: list = field(default_factory=list)
    training: dict = field(default_factory=dict)  # training.json: the learning rate and seed it was trained with

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
    sweeps: dict[str, dict] = field(default_factory=dict)  # models/<corpus>/sweep.json: ablate.py's lr sweep
    passages: dict[str, str] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    # every generation's stream, batched per model: in this process, or a process of its own (app.py --decoding)
    server: StreamServer | ProcessServer = field(default_factory=StreamServer)
    generating: int = GENERATING_AT_ONCE  # generation events that run at once (app.py --generating)
    scaling: dict[str, dict] = field(default_factory=dict)  # {corpus: load_scaling's}: scaling.py's grid and sizes

    def corpora(self) -> list[str]:
        return list(self.groups)

    def models(self) -> list:
        """Every model the lab may decode: each group's and each scaling grid's."""
        entries = [e for group in self.groups.values() for e in group.values()]
        entries += [e for grid in self.scaling.values() for e in grid["entries"].values()]
        return [e.model for e in entries]

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
        return self.sweeps.get(corpus, {}).get("reference", {})

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


def load_lab(models_dir: str | Path = ROOT / "models", extra: list[str] = ()) -> Lab:
    """Every model under models_dir/<corpus>/<variant>/, plus the `extra` folders or Hub ids (group "your models")."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    groups: dict[str, dict[str, Entry]] = {}
    sweeps: dict[str, dict] = {}
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
                sweeps[corpus_dir.name] = read_json(corpus_dir / "sweep.json")
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
            f"no models found in {models_dir}: train some with `python ablate.py --ship {models_dir}` or pass --model"
        )
    return Lab(groups, sweeps, scaling=scaling)


def load_scaling(folder: Path) -> dict | None:
    """models/<corpus>/scaling/: scaling.py's summary (scaling.json) and the sizes shipped beside it, or None."""
    if not (folder / "scaling.json").exists():
        return None
    summary = read_json(folder / "scaling.json")
    names = [p["name"] for p in summary.get("sizes", []) if (folder / p["name"] / "config.json").exists()]
    return {"summary": summary, "entries": {n: load_entry(n, str(folder / n)) for n in names}}


# ---------------------------------------------------------------------------------------------------------------------
# Checks and prompt handling


def as_number(name: str, value) -> int | float:
    """A sampling setting from a request as a number, or a gr.Error if it is none (the API can send a string, None,
    a list, a complex number...). Numeric strings are numbers; an integer beyond any float is infinite (out of every
    range). A whole value of an integer setting (40, "40", 40.0) becomes an int, exactly as sent when it is one; a
    fraction stays a float, which SamplingSettings refuses, naming the setting. The ranges are SamplingSettings'."""
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return math.inf
    except (TypeError, ValueError):
        raise Refused(f"{name} must be a number, got {shown(value)}") from None
    if name not in WHOLE_SETTINGS or not number.is_integer():  # NaN and infinities are not whole either
        return number
    return int(value) if isinstance(value, int) else int(number)


def check_settings(**raw) -> SamplingSettings:
    """The request's sampling settings (SamplingSettings' field names; those not given keep its defaults), checked
    once, by SamplingSettings against LIMITS, or one gr.Error naming the setting."""
    values = {name: as_number(name, value) for name, value in raw.items()}
    try:
        return SamplingSettings.checked(limits=LIMITS, **values)
    except ValueError as e:
        raise Refused(html.escape(str(e), quote=False)) from None


def generation_settings(temperature, top_k, top_p, max_new, repetition_penalty, seed) -> SamplingSettings:
    """`check_settings` for the six settings a streaming event takes, in the order its inputs list them."""
    return check_settings(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )


def prepare_prompt(entry: Entry, prompt: str | None, say: Words = ENGLISH) -> tuple[list[int], list[str]]:
    """Token ids for the prompt and the notices to show: empty prompt, unseen characters, longer than the context,
    lone surrogates (which have no UTF-8 form: each becomes U+FFFD, see tokenizer.valid_text)."""
    notices = []
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise Refused(f"the prompt must be text, got {type(prompt).__name__}")
    cleaned = valid_text(prompt)
    if cleaned.count("\ufffd") > prompt.count("\ufffd"):
        notices.append(say("notice.surrogates"))
    prompt = cleaned
    if not prompt:
        notices.append(say("notice.empty"))
        prompt = "\n"
    # One character is one token or more, so the last n characters hold the last n tokens: cropping before
    # tokenizing keeps a 100k-character prompt as cheap as a short one.
    n = entry.model.config.n_positions
    cropped = crop_to_tokens(entry.tokenizer, prompt[-n:], n)  # whole characters only, never a character's bytes
    unseen = unseen_characters(entry.tokenizer, cropped)
    if unseen:
        listed = html.escape(" ".join(repr(c) for c in unseen[:8]), quote=False)
        notices.append(say("notice.unseen", listed=listed))
    if len(cropped) < len(prompt):
        notices.append(say("notice.cropped", n=n, kept=len(cropped)))
    return entry.tokenizer.encode(cropped, add_special_tokens=False), notices


SHOWN = {"\n": "⏎", " ": "␣", "\t": "⇥", "": "∅"}  # characters that would be invisible, as signs


def shown_char(text: str) -> str:
    return SHOWN.get(text, text)


# ---------------------------------------------------------------------------------------------------------------------
# Pacing: the one loop every streaming event runs


@dataclass(frozen=True)
class Tick:
    """A moment to update the page, from `paced`: `steps` taken so far; `final` on the last one (flush the decoders,
    then render once more); `notice`, on a final tick that the time limit ended, the sentence saying so."""

    steps: int
    final: bool = False
    notice: str = ""


def paced(
    step: Callable[[int], object],
    n: int,
    start: float | None = None,
    every: float | None = None,
    limit: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    say: Words = ENGLISH,
) -> Iterator[Tick]:
    """Call step(0), step(1), ... up to step(n - 1), yielding a Tick after the first step (the first character shows
    at once), then at most once every `every` seconds (UPDATE_S), and a final Tick at the end: after the n-th step,
    or after the step that passed `limit` seconds (TIME_LIMIT_S) since `start` (default: now), with its notice."""
    every = UPDATE_S if every is None else every
    limit = TIME_LIMIT_S if limit is None else limit
    start = clock() if start is None else start
    last = start
    for i in range(n):
        step(i)
        now = clock()
        if now - start > limit:
            yield Tick(i + 1, final=True, notice=say("time_limit", limit=limit))
            return
        if i == 0 or now - last > every:
            last = now
            yield Tick(i + 1)
    yield Tick(n, final=True)


def update_every(server: StreamServer) -> float:
    """How often a streaming event updates its page: every UPDATE_S, or, with more than CALM_STREAMS streams being
    decoded, less often in proportion (16 streams: 0.2 s, 32: 0.4 s). Gradio's work for each update takes Python's
    lock, which the decoding thread needs between its calls into torch: with a class at once, fewer updates leave
    more characters per second to everyone (docs/performance.md#serving-a-class)."""
    return UPDATE_S * max(1.0, server.busy() / CALM_STREAMS)


# ---------------------------------------------------------------------------------------------------------------------
# Generation


ALTERNATIVES = 3  # how many other candidates a character's tooltip names


@dataclass
class Piece:
    """What one step wrote ("" while a character's bytes are held back), the model's probability of the token it drew
    (None for bytes flushed at the end), that token, and the model's top candidates (ids, log-probabilities)."""

    text: str
    p: float | None
    token: int
    top: list[int]
    top_logp: list[float] | None

    def tooltip(self, tokenizer) -> str:
        """'e: 0.42 · also: a 0.21, ⏎ 0.10, o 0.05'."""
        if self.p is None:
            return ""
        others = [
            f"{shown_char(tokenizer.decode([t]))} {math.exp(float(lp)):.2f}"
            for t, lp in zip(self.top, self.top_logp if self.top else [], strict=True)
            if t != self.token
        ][:ALTERNATIVES]
        return f"{shown_char(self.text)}: {self.p:.2f}" + (f" · also: {', '.join(others)}" if others else "")


def shaded(piece: Piece, tokenizer) -> str:
    """One written piece as a span shaded by its surprise (1 - p), with its alternatives as a tooltip."""
    text = html.escape(piece.text)
    if piece.p is None:
        return text
    tip = html.escape(piece.tooltip(tokenizer), quote=True)
    return f'<span class="gm-c" style="--s: {1 - piece.p:.2f}" title="{tip}">{text}</span>'


def written_html(text: str, departs: int | None, against: str, pieces: list[Piece] | None, tokenizer) -> str:
    """The generated text, highlighted from where it departs from the reference pane (`against`: the marker's title,
    "departs from baseline here"), with a marker there; with `pieces` (the final render), each character shaded by
    how likely its model found it."""
    cut = len(text) if departs is None else departs
    title = html.escape(against, quote=True)
    marker = f'<span class="gm-split" title="{title}">▍</span>' if cut < len(text) else ""
    if pieces is None:
        same, rest = html.escape(text[:cut]), html.escape(text[cut:])
    else:
        same, rest, at = [], [], 0
        for piece in pieces:
            inside = min(max(cut - at, 0), len(piece.text))  # how much of the piece comes before the cut
            for part, side in ((piece.text[:inside], same), (piece.text[inside:], rest)):
                if part:
                    side.append(shaded(dataclasses.replace(piece, text=part), tokenizer))
            at += len(piece.text)
        same, rest = "".join(same), "".join(rest)
    shading = " gm-shaded" if pieces is not None else ""  # the shades replace the highlight's background
    return f'{same}{marker}<span class="gm-diff{shading}">{rest}</span>'


def pane_html(label: str, caption: str, prompt: str, body: str, stats: str) -> str:
    """One pane: its label, speed and caption, the escaped prompt, then what it wrote (`body`, already HTML)."""
    return (
        f'<div class="gm-pane"><div class="gm-head"><b>{html.escape(label)}</b> <span>{html.escape(stats)}</span></div>'
        f'<div class="gm-caption">{html.escape(caption)}</div>'
        f'<pre class="gm-text"><span class="gm-prompt">{html.escape(prompt)}</span>{body}</pre></div>'
    )


def open_stream(model, tokenizer, ids: list[int], settings: SamplingSettings) -> TokenStream:
    """A TokenStream for one prompt with the request's sampling settings."""
    return TokenStream(model, [ids], **settings.stream_options(), pad_token_id=tokenizer.pad_token_id or 0)


def chosen_entries(lab: Lab, corpus, names) -> list[Entry]:
    """The variants a side-by-side request chose: one to MAX_PANES of them, or a gr.Error."""
    names = as_list(names, "variants")
    if not names:
        raise Refused("choose at least one variant")
    if len(names) > MAX_PANES:
        raise Refused(f"at most {MAX_PANES} variants at once")
    return [lab.get(corpus, n) for n in names]


class SideBySide:
    """The state of one side-by-side request: a stream, a decoder, the text so far, the model's average loss on it
    and its share of the batched steps that drew it, per pane; `step` advances every pane by one token, `render`
    draws them, `close` takes the streams out of the server."""

    def __init__(
        self, server: StreamServer, entries: list[Entry], prompt, settings, start, reference, say, probabilities=True
    ):
        """`probabilities`: keep how likely each character was (the loss on its text, the shading, the tooltips);
        off only to measure what they cost (bench.lab)."""
        self.entries, self.start, self.reference, self.say = entries, start, reference, say
        prompts, self.notices = [], []
        for e in entries:  # each model with its own tokenizer (models in "your models" may differ)
            ids, said = prepare_prompt(e, prompt, say)
            prompts.append(ids)
            self.notices += [n for n in said if n not in self.notices]
        self.prompt = entries[0].tokenizer.decode(prompts[0])
        self.streams = [
            server.stream(e.model, ids, settings, top=ALTERNATIVES + 1 if probabilities else 0)
            for e, ids in zip(entries, prompts, strict=True)
        ]
        self.decoders = [TextDecoder(e.tokenizer) for e in entries]
        k = len(entries)
        self.texts, self.nll, self.busy = [""] * k, [0.0] * k, [0.0] * k
        self.pieces: list[list[Piece]] = [[] for _ in entries]  # what each step wrote, and how likely it was
        self.held: list[Piece | None] = [None] * k  # per pane, the bytes of a character not yet complete
        self.captions = [caption(e.ablations, e.training, reference, say) for e in entries]
        self.ref = reference_pane(entries)  # once: reading a config's switches is slow, and a render is frequent
        self.first_char = None

    def step(self, taken: int) -> None:
        """One token for every pane (`taken`: the steps before this one, for the running average loss)."""
        for i, stream in enumerate(self.streams):
            token, likely, self.busy[i] = next(stream)
            piece = self.decoders[i].push(token)
            self.texts[i] += piece
            if likely is not None:  # (log-probability, the likeliest tokens, theirs)
                self.nll[i] = (self.nll[i] * taken - likely[0]) / (taken + 1)
                self.record(i, piece, token, *likely)
        if self.first_char is None:
            self.first_char = time.perf_counter() - self.start

    def record(self, i: int, piece: str, token: int, logp: float, top: list[int], top_logp: list[float]) -> None:
        """Keep what pane i's step wrote and how likely it was (`logp`; `top`: the likeliest tokens, `top_logp`
        theirs). A character split over byte tokens is one piece, with the product of its bytes' probabilities and
        no alternatives (those would be other bytes)."""
        held = self.held[i]
        p = math.exp(logp) * (held.p if held else 1.0)
        if not piece:  # a byte held back by the decoder: wait for the rest of its character
            self.held[i] = Piece("", p, token, [], None)
            return
        self.held[i] = None
        self.pieces[i].append(Piece(piece, p, token, *(([], None) if held else (top, top_logp))))

    def close(self) -> None:
        for stream in self.streams:
            stream.close()

    def flush(self) -> None:
        for i, decoder in enumerate(self.decoders):
            rest, held = decoder.flush(), self.held[i]
            self.texts[i] += rest
            if rest:  # bytes that never made a whole character (U+FFFD), with their probability
                self.pieces[i].append(Piece(rest, held.p if held else None, -1, [], None))
            self.held[i] = None

    def render(self, tick: Tick) -> list:
        """(status, pane 1, ..., pane MAX_PANES): the panes not in use are emptied and hidden."""
        say, ref = self.say, self.ref
        places = departures(self.texts, ref)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        against = say("departs_here", reference=say.variant(self.entries[ref].name))
        panes = []
        for i, e in enumerate(self.entries):
            text, loss, t = self.texts[i], self.nll[i], self.busy[i]
            ms = 1000 * t / max(tick.steps, 1)
            stats = say("pane_stats", chars=len(text), rate=len(text) / elapsed, ms=ms, loss=loss)
            body = written_html(text, places[i], against, self.pieces[i] if tick.final else None, e.tokenizer)
            panes.append(pane_html(say.variant(e.name), self.captions[i], self.prompt, body, stats))
        status = self.notices + side_by_side_story(self.entries, self.texts, self.reference, say, ref)
        if tick.final:
            status.append(say("colours_explained"))
        if tick.notice:
            status.append(tick.notice)
        if tick.final and self.first_char is not None:
            status.append(say("first_character", ms=self.first_char * 1000))
        # an example may run fewer panes than shown: the first render hides the rest, later ones leave them empty
        # (a plain value: Gradio builds a whole new component for every update dict, which costs more than the rest
        # of the render and, with many users, holds up the decoding thread)
        hide = gr.update(value="", visible=False) if tick.steps <= 1 else ""
        unused = [hide] * (MAX_PANES - len(panes))
        return ["  \n".join(status)] + panes + unused


def generate_panes(
    lab: Lab, corpus, names, prompt, temperature, top_k, top_p, max_new, repetition_penalty, seed, language=None
):
    """Stream every chosen variant from one event, each in its model's batched step; yield (status, pane 1, ...,
    pane MAX_PANES)."""
    start, say = time.perf_counter(), spoken(language)
    settings = generation_settings(temperature, top_k, top_p, max_new, repetition_penalty, seed)
    entries = chosen_entries(lab, corpus, names)
    run = SideBySide(lab.server, entries, prompt, settings, start, lab.reference(corpus), say)
    try:
        for tick in paced(run.step, settings.max_new_tokens, start, update_every(lab.server), say=say):
            if tick.final:
                run.flush()
            yield run.render(tick)
    finally:
        run.close()


def generate_one(
    lab: Lab, corpus, name, prompt, temperature, top_k, top_p, max_new, repetition_penalty, seed, language=None
):
    """The single-model tab: stream (text, status)."""
    settings = generation_settings(temperature, top_k, top_p, max_new, repetition_penalty, seed)
    yield from stream_one(lab.server, lab.get(corpus, name), prompt, settings, spoken(language))


def stream_one(
    server: StreamServer, entry: Entry, prompt, settings: SamplingSettings, say: Words
) -> Iterator[tuple[str, str]]:
    """One model's text as it is written, drawn in its model's batched step: (prompt and text, status) at most every
    UPDATE_S, then the last."""
    start = time.perf_counter()
    ids, notices = prepare_prompt(entry, prompt, say)
    tokens = server.stream(entry.model, ids, settings)
    decoder = TextDecoder(entry.tokenizer)
    text, written = entry.tokenizer.decode(ids), 0

    def step(_: int) -> None:
        nonlocal text, written
        piece = decoder.push(next(tokens)[0])
        text += piece
        written += len(piece)

    try:
        for tick in paced(step, settings.max_new_tokens, start, update_every(server), say=say):
            took = time.perf_counter() - start
            if not tick.final:
                yield text, "  \n".join(notices + [say("one_running", n=written, rate=written / took)])
                continue
            text += decoder.flush()
            notices += [tick.notice] if tick.notice else []
            yield text, "  \n".join(notices + [say("one_done", n=written, s=took, rate=written / took)])
    finally:
        tokens.close()


# ---------------------------------------------------------------------------------------------------------------------
# Looking inside


@torch.inference_mode()
def next_char_table(entry: Entry, ids: list[int], temperature: float, top_k: int, top_p: float, n: int = 12):
    """The n most likely next characters after temperature, top-k and top-p, as a DataFrame (candidate, probability)."""
    logits = entry.model(torch.tensor([ids]), use_cache=False, logits_to_keep=1).logits[:, -1].float()
    if temperature == 0:  # greedy: all mass on the argmax
        probs = torch.zeros_like(logits).scatter_(1, logits.argmax(-1, keepdim=True), 1.0)
    else:
        probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    p, idx = probs[0].topk(n)
    rows, seen = [], set()
    for prob, token in zip(p.tolist(), idx.tolist(), strict=True):
        if prob <= 0:
            continue
        label = shown_char(entry.tokenizer.decode([token]))
        if label in seen or label == "\ufffd":
            label = f"{label} #{token}"
        seen.add(label)
        rows.append({"candidate": label, "probability": round(prob, 4)})
    return pd.DataFrame(rows, columns=["candidate", "probability"])


# The last character (not the last UTF-16 unit) off the prompt, in the browser.
TAKE_BACK = "(p) => [Array.from(p ?? '').slice(0, -1).join(''), '']"


def bars_html(label: str, table: pd.DataFrame) -> str:
    """One variant's next-character candidates as horizontal bars, each with its character and probability."""
    rows = "".join(
        f'<div class="gm-bar-row" data-p="{p:.4f}"><span class="gm-cand{" gm-sign" if c in SHOWN.values() else ""}">'
        f"{html.escape(c)}</span>"
        f'<span class="gm-bar-track"><span class="gm-bar" style="width: {100 * p:.1f}%"></span></span>'
        f'<span class="gm-p">{100 * p:.1f}%</span></div>'
        for c, p in zip(table["candidate"], table["probability"], strict=True)
    )
    return f'<div class="gm-card"><div class="gm-head"><b>{html.escape(label)}</b></div>{rows}</div>'


def next_char(lab: Lab, corpus, names, prompt, temperature, top_k, top_p, language=None):
    """(status, {variant: [{candidate, probability}, ...]}, the bars of every chosen variant as one HTML block)."""
    say = spoken(language)
    settings = check_settings(temperature=temperature, top_k=top_k, top_p=top_p)
    cards, data, notices = [], {}, []
    for name in as_list(names, "variants")[:MAX_PANES]:
        entry = lab.get(corpus, name)
        ids, notices = prepare_prompt(entry, prompt, say)
        table = next_char_table(entry, ids, settings.temperature, settings.top_k, settings.top_p)
        data[name] = table.to_dict("records")
        cards.append(bars_html(say.variant(name), table))
    return "  \n".join([say("next_explained"), *notices]), data, f'<div class="gm-cards">{"".join(cards)}</div>'


@dataclass
class AttentionMaps:
    """A model's attention over the prompt's last ATTENTION_CHARS characters: per layer, the (n_head, rows, cols)
    weights (None where attention is off), each head's mean entropy (on the full rows) and what it mostly reads
    (probes.head_pattern), and the characters."""

    maps: list
    entropies: list
    patterns: list
    chars: list[str]

    def heads(self) -> list[tuple[int, int]]:
        """(layer, head) of every head there is, in order."""
        return [(layer, h) for layer, m in enumerate(self.maps) if m is not None for h in range(m.shape[0])]


@torch.inference_mode()
def step_character(lab: Lab, corpus, names, prompt, temperature, top_k, top_p, seed, language=None) -> tuple[str, str]:
    """One step through a generation: the first chosen variant draws the next character with the temperature, top-k
    and top-p (the same seed and prompt draw the same character; the repetition penalty is not applied), and it is
    added to the prompt, so that every variant's bars show the next step. A character the tokenizer holds as bytes
    takes one draw per byte. Returns (the new prompt, a line saying what was drawn)."""
    settings, say = check_settings(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed), spoken(language)
    chosen = as_list(names, "variants")
    if not chosen:
        raise Refused("choose at least one variant")
    entry = lab.get(corpus, chosen[0])
    text = (valid_text(prompt) if isinstance(prompt, str) else "") or "\n"  # as prepare_prompt reads it
    ids, _ = prepare_prompt(entry, text)
    generator = torch.Generator().manual_seed(settings.seed + len(ids))
    decoder, p, char = TextDecoder(entry.tokenizer), 1.0, ""
    for _ in range(4):  # a character is at most 4 UTF-8 bytes
        window = ids[-entry.model.config.n_positions :]
        logits = entry.model(torch.tensor([window]), use_cache=False, logits_to_keep=1).logits[:, -1].float()
        logits[:, entry.tokenizer.all_special_ids] = float("-inf")  # a control token is not text
        probs = filter_logits(logits, settings.temperature, settings.top_k, settings.top_p).softmax(-1)[0]
        drawn = int(torch.multinomial(probs, 1, generator=generator))
        p, ids = p * float(probs[drawn]), ids + [drawn]
        if char := decoder.push(drawn):
            break
    char = char or decoder.flush()
    if "\ufffd" in char:
        return text, say("drew_bytes", label=say.variant(entry.name), p=p)
    return text + char, say("drew", label=say.variant(entry.name), char=html.escape(shown_char(char)), p=p)


@torch.inference_mode()
def attention_maps(entry: Entry, ids: list[int]) -> AttentionMaps:
    """Run the whole prompt (so every position has its real context) and keep the last ATTENTION_CHARS rows."""
    out = entry.model(torch.tensor([ids]), output_attentions=True, use_cache=False)
    n = min(ATTENTION_CHARS, len(ids))
    newline = torch.tensor([entry.tokenizer.decode([t]) == "\n" for t in ids])
    found = AttentionMaps([], [], [], [shown_char(entry.tokenizer.decode([t])) for t in ids[-n:]])
    for a in out.attentions:
        rows = None if a is None else a[0, :, -n:, :].float()  # (n_head, n, T): full rows, for entropy and patterns
        found.maps.append(None if rows is None else rows[:, :, -n:])
        found.entropies.append(None if rows is None else (-(rows * (rows + 1e-12).log()).sum(-1)).mean(-1).tolist())
        found.patterns.append(
            None if rows is None else [off_the_map(head_pattern(r, newline), len(ids) > n) for r in rows]
        )
    return found


OFF_THE_MAP = " (off the map)"


def off_the_map(pattern: str | None, cropped: bool) -> str | None:
    """A head that mostly reads the first position, when the map does not show it, says so."""
    return pattern + OFF_THE_MAP if cropped and pattern == "the first position" else pattern


def reads(pattern: str | None, say: Words = ENGLISH, form: str = "reads") -> str:
    """What a head mostly reads (probes.head_pattern, through off_the_map) in words: "reads" for the table, "short"
    for a map's title ("" there for a head with no pattern)."""
    if pattern is None:
        return say("reads.spread") if form == "reads" else ""
    if pattern.endswith(OFF_THE_MAP):
        return say(f"{form}.off_map", pattern=say(f"{form}.{pattern.removesuffix(OFF_THE_MAP)}"))
    return say(f"{form}.{pattern}")


def attention_grid(found: AttentionMaps, n_head: int, say: Words = ENGLISH):
    """Every layer (rows) and head (columns) as a small heatmap, titled with what the head mostly reads."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    titles = []
    for layer, patterns in enumerate(found.patterns):
        for h in range(n_head):
            what = say("short.off") if patterns is None else reads(patterns[h], say, "short")
            titles.append(f"L{layer + 1} H{h + 1}" + (f" · {what}" if what else ""))
    n_layer = len(found.maps)
    fig = make_subplots(
        rows=n_layer, cols=n_head, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.08
    )
    t = len(found.chars)
    hover = [[f"{found.chars[q]} ← {found.chars[k]}" for k in range(t)] for q in range(t)]
    for layer, head in found.heads():
        fig.add_trace(
            go.Heatmap(
                z=found.maps[layer][head].numpy(),
                colorscale="Blues",
                zmin=0,
                zmax=1,
                showscale=False,
                customdata=hover,
                hovertemplate="%{customdata}: %{z:.3f}<extra></extra>",
            ),
            row=layer + 1,
            col=head + 1,
        )
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=210 * n_layer + 40, margin=dict(l=10, r=10, t=50, b=10), font=dict(size=11))
    return fig


def attention_zoom(found: AttentionMaps, layer: int, head: int, say: Words = ENGLISH):
    """One head large, with the characters on both axes."""
    import plotly.graph_objects as go

    t = len(found.chars)
    what = found.patterns[layer][head]
    fig = go.Figure(
        go.Heatmap(
            z=found.maps[layer][head].numpy(),
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar=dict(title=say("zoom.weight")),
            customdata=[[f"{found.chars[q]} ← {found.chars[k]}" for k in range(t)] for q in range(t)],
            hovertemplate="%{customdata}: %{z:.3f}<extra></extra>",
        )
    )
    axis = dict(tickmode="array", tickvals=list(range(t)), ticktext=found.chars, tickfont=dict(size=11), tickangle=0)
    fig.update_xaxes(title=say("zoom.reads"), side="top", **axis)
    fig.update_yaxes(title=say("zoom.attending"), autorange="reversed", scaleanchor="x", **axis)
    name = f"L{layer + 1} H{head + 1}"
    fig.update_layout(
        title=say("zoom.title", head=name, what=reads(what, say)) if what else say("zoom.spread", head=name),
        height=720,
        margin=dict(l=60, r=20, t=110, b=20),
    )
    return fig


def written_head(choice) -> tuple[int, int] | None:
    """A head as the lab writes it ('L2 H3', spaces loose) to 0-based (layer, head); None if it is not written so."""
    match = re.fullmatch(r"L([1-9][0-9]{0,3}) H([1-9][0-9]{0,3})", " ".join(str(choice).split()))
    return (int(match[1]) - 1, int(match[2]) - 1) if match else None


def zoomed_head(found: AttentionMaps, choice) -> tuple[int, int]:
    """The head to enlarge: the one chosen ('L2 H3'), or for 'auto' the head with the clearest pattern (the lowest
    entropy among those with one, else the lowest of all)."""
    heads = found.heads()
    if choice not in (None, "auto"):
        head = written_head(choice)
        if head not in heads:
            raise Refused(f"no head {shown(choice)} with attention in this model; choose auto or one of its heads")
        return head
    patterned = [lh for lh in heads if found.patterns[lh[0]][lh[1]]] or heads
    return min(patterned, key=lambda lh: found.entropies[lh[0]][lh[1]])


def attention_view(lab: Lab, corpus, name, prompt, head="auto", language=None):
    """(status, every head as a grid, one head enlarged, a table of each head's entropy and pattern); the plots
    and table are hidden for a model without attention."""
    entry, say = lab.get(corpus, name), spoken(language)
    ids, notices = prepare_prompt(entry, prompt, say)
    found = attention_maps(entry, ids)
    if not found.heads():
        notices.append(say("no_attention"))
        hidden = [gr.Plot(value=None, visible=False), gr.Plot(value=None, visible=False)]
        return ["  \n".join(notices), *hidden, gr.Dataframe(value=None, visible=False)]
    layer, h = zoomed_head(found, head)
    if len(ids) > ATTENTION_CHARS:
        notices.append(say("attention_cropped", shown=ATTENTION_CHARS, all=len(ids)))
    notices.append(say("attention_read", head=f"L{layer + 1} H{h + 1}"))
    rows = [
        {
            say("column.layer"): lh[0] + 1,
            say("column.head"): lh[1] + 1,
            say("column.entropy"): round(found.entropies[lh[0]][lh[1]], 3),
            say("column.reads"): reads(found.patterns[lh[0]][lh[1]], say),
        }
        for lh in found.heads()
    ]
    return [
        "  \n".join(notices),
        gr.Plot(value=attention_grid(found, entry.model.config.n_head, say), visible=True),
        gr.Plot(value=attention_zoom(found, layer, h, say), visible=True),
        gr.Dataframe(value=pd.DataFrame(rows), visible=True),
    ]


def parse_parts(heads, attention, mlp, residual, n_layer: int, n_head: int) -> dict:
    """'L2 H3' / 'L1' choices to 0-based knockout arguments, each part once; a gr.Error for anything the model does
    not have."""
    limits = f"{n_layer} layers L1-L{n_layer}, {n_head} heads H1-H{n_head}"

    def layer_of(choice) -> int:
        match = re.fullmatch(r"L([1-9][0-9]{0,3})", str(choice).strip())
        if not match or int(match[1]) > n_layer:
            raise Refused(f"no layer {shown(choice)} in this model ({limits})")
        return int(match[1]) - 1

    def head_of(choice) -> tuple[int, int]:
        head = written_head(choice)
        if head is None:
            raise Refused(f"a head is written like 'L1 H2', got {shown(choice)}")
        if head[0] >= n_layer or head[1] >= n_head:
            raise Refused(f"no head {shown(choice)} in this model ({limits})")
        return head

    return {  # each part once, in the order first chosen (["L1 H1", "L1  H1"] is one head)
        "heads": list(dict.fromkeys(head_of(h) for h in as_list(heads, "heads"))),
        "attention": list(dict.fromkeys(layer_of(c) for c in as_list(attention, "attention layers"))),
        "mlp": list(dict.fromkeys(layer_of(c) for c in as_list(mlp, "MLP layers"))),
        "residual": list(dict.fromkeys(layer_of(c) for c in as_list(residual, "residual layers"))),
    }


@torch.inference_mode()
def passage_loss(model, ids: torch.Tensor) -> float | None:
    """Mean loss over the first PASSAGE_WINDOWS full windows of `ids` (None if there is not one)."""
    n = model.config.n_positions
    windows = min(PASSAGE_WINDOWS, (len(ids) - 1) // n)
    if windows == 0:
        return None
    batch = torch.stack([ids[i * n : i * n + n + 1] for i in range(windows)]).long()
    logits = model(batch[:, :-1], use_cache=False).logits.float()
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()))


def baseline_of(lab: Lab, corpus) -> str:
    """The model the Knockout tab breaks: the corpus's baseline, else its first model (a gr.Error for a corpus the
    lab does not have)."""
    names = lab.variants(corpus)
    return "baseline" if "baseline" in names else names[0]


def described(parts: dict, say: Words = ENGLISH) -> str:
    """The parts a knockout switches off, in words."""
    return say.listed(
        [f"L{layer + 1} H{head + 1}" for layer, head in parts["heads"]]
        + [
            say(f"part.{part}", layer=f"L{layer + 1}")
            for part in ("attention", "mlp", "residual")
            for layer in parts[part]
        ],
        "list.comma",
    ) or say("part.none")


def passage_comparison(lab: Lab, corpus: str, base_name: str, broken, say: Words = ENGLISH) -> list[str]:
    """The intact and knocked-out loss on the corpus's fixed passage, as a line of the summary (none if the corpus
    has no passage or it is shorter than one window). The intact model's loss is computed once per model."""
    entry, passage = lab.get(corpus, base_name), lab.passage(corpus)
    if not passage:
        return []
    cfg = entry.model.config
    key = (corpus, base_name)
    if key not in lab.cache:  # the passage's ids and the intact loss, once per model
        ids = encode(entry.tokenizer, passage[: PASSAGE_WINDOWS * cfg.n_positions * 2])
        lab.cache[key] = (ids, passage_loss(entry.model, ids))
    passage_ids, intact_loss = lab.cache[key]
    if intact_loss is None:
        return []
    broken_loss = passage_loss(broken, passage_ids)
    line = say(
        "passage",
        windows=PASSAGE_WINDOWS,
        n=cfg.n_positions,
        intact=intact_loss,
        broken=broken_loss,
        change=broken_loss - intact_loss,
    )
    levels = lab.passage_levels(corpus, passage[: PASSAGE_WINDOWS * cfg.n_positions + 1])
    return [line + (say("passage.level", where=knocked_out(broken_loss, levels, say)) if levels else "")]


def intact_and_broken(entry: Entry, broken, ids: list[int], settings: SamplingSettings, head: str, say: Words):
    """Sample from the intact and the knocked-out model side by side; yield (summary, intact text, knocked text)."""
    shown_prompt = entry.tokenizer.decode(ids)
    streams = [open_stream(m, entry.tokenizer, ids, settings) for m in (entry.model, broken)]
    decoders = [TextDecoder(entry.tokenizer), TextDecoder(entry.tokenizer)]
    texts = ["", ""]

    def step(_: int) -> None:
        for i in range(2):
            texts[i] += decoders[i].push(int(streams[i].step()[0]))

    for tick in paced(step, settings.max_new_tokens, say=say):
        if tick.final:
            for i in range(2):
                texts[i] += decoders[i].flush()
            head += f"  \n{tick.notice}" if tick.notice else ""
        yield head, shown_prompt + texts[0], shown_prompt + texts[1]


def run_knockout(
    lab: Lab,
    corpus,
    heads,
    attention,
    mlp,
    residual,
    prompt,
    temperature,
    top_k,
    top_p,
    max_new,
    repetition_penalty,
    seed,
    language=None,
):
    """Loss on the fixed passage and a sample, intact against knocked out; yields (summary, intact, knocked)."""
    settings, say = generation_settings(temperature, top_k, top_p, max_new, repetition_penalty, seed), spoken(language)
    base_name = baseline_of(lab, corpus)
    entry = lab.get(corpus, base_name)
    parts = parse_parts(heads, attention, mlp, residual, entry.model.config.n_layer, entry.model.config.n_head)
    broken = copy.deepcopy(entry.model)  # a private copy: the hooks never touch what other users run
    summary = [say("knocked_out_of", label=say.variant(entry.name), parts=html.escape(described(parts, say)))]
    ids, notices = prepare_prompt(entry, prompt, say)
    with knockout(broken, **parts):
        summary += passage_comparison(lab, corpus, base_name, broken, say)
        yield from intact_and_broken(entry, broken, ids, settings, "  \n".join(notices + summary), say)


def knockout_choices(lab: Lab, corpus: str) -> tuple[list[str], list[str]]:
    """'L1 H1'... and 'L1'... for the corpus's baseline (the model the Knockout tab breaks)."""
    cfg = lab.get(corpus, baseline_of(lab, corpus)).model.config
    heads = [f"L{layer + 1} H{h + 1}" for layer in range(cfg.n_layer) for h in range(cfg.n_head)]
    return heads, [f"L{layer + 1}" for layer in range(cfg.n_layer)]


def training_view(lab: Lab, corpus, say: Words = ENGLISH):
    """The Training tab for a corpus: how each shipped variant trained (figures.training_figure, from its metrics
    log), the learning-rate sweep (a figure, None without one) and a table of each variant at its best rate."""
    runs = [
        (e.label + (f" (lr {e.training['lr']:g})" if "lr" in e.training else ""), e.metrics)
        for e in lab.groups.get(corpus, {}).values()
        if e.metrics
    ]
    curves = training_figure(runs, lab.reference(corpus), f"{corpus}: how each variant trained") if runs else None
    sweep = lab.sweeps.get(corpus)
    if not sweep:
        return curves, None, pd.DataFrame(columns=sweep_columns(say))
    return curves, lr_sweep_figure(sweep, list(ORDER)), sweep_table(sweep, say)


def sweep_columns(say: Words = ENGLISH) -> list[str]:
    """The sweep table's headers; the last is the stability window."""
    return [say(f"sweep.{key}") for key in ("variant", "best_lr", "mean", "range", "window")]


def sweep_table(sweep: dict, say: Words = ENGLISH) -> pd.DataFrame:
    """Each variant at its own best learning rate: the mean and range over seeds, and the learning rates at which it
    ends clearly below the bigram level (the stability window)."""
    rows = []
    for name, v in sweep["variants"].items():
        spread = f"{v['min']:.3f} – {v['max']:.3f}" if v.get("min") is not None else "–"
        rows.append(
            [
                say.variant(name),
                f"{v['best_lr']:g}" if v["best_lr"] is not None else say("sweep.diverged"),
                f"{v['mean']:.3f}" if v["mean"] is not None else "–",
                spread,
                ", ".join(f"{lr:g}" for lr in v["window"]) or say("sweep.none"),
            ]
        )
    for key in ("unigram", "bigram"):
        rows.append([say(f"sweep.{key}"), "–", f"{sweep['reference'][key]:.3f}", "–", "–"])
    return pd.DataFrame(rows, columns=sweep_columns(say))


# ---------------------------------------------------------------------------------------------------------------------
# Scaling: scaling.py's grid, fits and frontier, and the sizes shipped from it


def frontier_span(summary: dict, size: str) -> tuple[float, float] | None:
    """The compute budgets (lowest, highest) at which a size reached the lowest loss of the grid against at least one
    other size, or None."""
    budgets = [f["flops"] for f in summary.get("frontier", []) if f["size"] == size and f["competitors"] > 1]
    return (min(budgets), max(budgets)) if budgets else None


def size_choices(found: dict, say: Words = ENGLISH) -> list[tuple[str, str]]:
    """(label, size) for each shipped size: its parameters, its loss and where it lies on the frontier."""
    summary, out = found["summary"], []
    for p in summary["sizes"]:
        if p["name"] not in found["entries"]:
            continue
        span = frontier_span(summary, p["name"])
        where = say("scaling.on_frontier", low=si(span[0]), high=si(span[1])) if span else say("scaling.off_frontier")
        out.append((f"{p['name']} · N {si(p['non_embedding'])} · val {p['loss']:.3f} · {where}", p["name"]))
    return out


def frontier_columns(say: Words = ENGLISH) -> list[str]:
    return [say(f"frontier.{key}") for key in ("budget", "loss", "size", "parameters", "tokens_per_parameter")]


def frontier_table(found: dict | None, say: Words = ENGLISH) -> pd.DataFrame:
    """The frontier, one row per budget where the best size changes (and the first and last budgets)."""
    front = found["summary"].get("frontier", []) if found else []
    kept = [f for i, f in enumerate(front) if i in (0, len(front) - 1) or f["size"] != front[i - 1]["size"]]
    rows = [
        [si(f["flops"]), f"{f['loss']:.3f}", f["size"], si(f["non_embedding"]), f"{f['tokens_per_parameter']:g}"]
        for f in kept
    ]
    return pd.DataFrame(rows, columns=frontier_columns(say))


def scaling_words(lab: Lab, corpus, say: Words = ENGLISH) -> tuple:
    """The Scaling tab's worded parts for a corpus: what it holds (or how to make it), the frontier table and the
    shipped sizes to sample from ((label, size) pairs)."""
    found = lab.scaling_grid(corpus)
    if not found:
        return say("scaling.missing", corpus=corpus), frontier_table(None, say), []
    summary = found["summary"]
    note = say("scaling.about", command=summary.get("command") or "python scaling.py", trials=summary["trials"])
    return note, frontier_table(found, say), size_choices(found, say)


def scaling_figures(lab: Lab, corpus) -> tuple:
    """The Scaling tab's three figures for a corpus (Nones without a grid): size, data, compute."""
    found = lab.scaling_grid(corpus)
    if not found:
        return None, None, None
    summary = found["summary"]
    return scaling_size_figure(summary), scaling_data_figure(summary), scaling_compute_figure(summary)


def sample_size(
    lab: Lab, corpus, size, prompt, temperature, top_k, top_p, max_new, repetition_penalty, seed, language=None
):
    """A shipped size of the scaling grid writes from the prompt: stream (text, status)."""
    settings = generation_settings(temperature, top_k, top_p, max_new, repetition_penalty, seed)
    yield from stream_one(lab.server, lab.scaling_entry(corpus, size), prompt, settings, spoken(language))


# ---------------------------------------------------------------------------------------------------------------------
# The UI

CSS = """
.gm-pane {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px; min-height: 120px;}
.gm-head {font-size: 0.85em; margin-bottom: 4px;} .gm-head span {color: var(--body-text-color-subdued);}
.gm-panes {flex-wrap: wrap;} .gm-panes > .gm-slot {min-width: min(340px, 100%) !important; flex: 1 1 340px;}
.gm-cards {display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; align-items: start;}
.gm-card {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px;}
.gm-bar-row {display: flex; align-items: center; gap: 8px; margin: 3px 0;}
.gm-cand {font-family: var(--font-mono); font-size: 1.35em; width: 2.6rem; flex: none; text-align: center;}
.gm-cand.gm-sign {font-size: 1.9em; line-height: 1; color: var(--color-accent);}
.gm-bar-track {flex: 1; background: var(--background-fill-secondary); border-radius: 3px; height: 1.1em;}
.gm-bar {display: block; height: 100%; background: var(--color-accent); border-radius: 3px;}
.gm-p {font-size: 0.85em; width: 3.6em; text-align: right; font-variant-numeric: tabular-nums;}
.gm-tip {background: var(--background-fill-secondary); border-radius: 6px; padding: 2px 10px;}
.gm-caption {font-size: 0.8em; color: var(--body-text-color-subdued); margin-bottom: 6px;}
.gm-text {white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 0.9em;}
.gm-prompt {color: var(--body-text-color-subdued);}
.gm-diff {background: rgba(255, 180, 0, 0.25); text-decoration: underline 2px rgba(230, 150, 0, 0.9);
  text-underline-offset: 3px;}
.gm-diff.gm-shaded {background: none;}
.gm-c {background: rgba(40, 90, 200, calc(var(--s) * 0.55));}
.gm-split {color: #d33; font-weight: bold;}
"""


# On a narrow screen the open sidebar would cover the page: start with it closed (its arrow opens it).
CLOSE_SIDEBAR_ON_PHONES = """() => {
    const toggle = document.querySelector('#settings.open .toggle-button');
    if (toggle && window.innerWidth < 768) toggle.click();
}"""


def intro(lab: Lab, say: Words = ENGLISH) -> str:
    """The lab's first lines, with each group's size taken from its baseline (or first model)."""
    sizes = []
    for corpus in lab.corpora():
        model = lab.get(corpus, baseline_of(lab, corpus)).model
        name = CORPORA[corpus].description if corpus in CORPORA else corpus
        sizes.append(say("intro.size", name=name, millions=sum(p.numel() for p in model.parameters()) / 1e6))
    return say("intro", sizes=say.listed(sizes, "list.comma"))


# The page's fixed words are Gradio i18n keys (words.py's table): the browser's language draws them at first paint,
# and the language switch re-words them all (`reworded`).
I18N = gr.I18n(**translations())
# At load: the language the page was drawn in (Gradio sets <html lang> from the browser's), for the switch and for
# everything the server words.
DETECT_LANGUAGE = """(...inputs) => {
    const lang = (document.documentElement.lang || navigator.language || 'en').toLowerCase();
    return [...inputs.slice(0, -1), lang.startsWith('ja') ? 'ja' : 'en'];
}"""


def spoken(language) -> Words:
    """The words for a request's language ("en" or "ja"; None, as from an API call that leaves it out, is English)."""
    if language is None:
        return ENGLISH
    if not isinstance(language, str) or language not in LANGUAGES:
        raise Refused(f"no language {shown(language)}; choose from {', '.join(LANGUAGES)}")
    return Words(language)


I18N_MARKER = re.compile(r"__i18n__(\{.*\})", re.DOTALL)  # how a component's value holds an i18n key


def i18n_key(value) -> str | None:
    """The key of a text given as I18N(key): kept as I18nData (labels) or, for values, as Gradio's marker string."""
    if isinstance(value, I18nData):
        return value.key
    match = I18N_MARKER.fullmatch(value) if isinstance(value, str) else None
    return json.loads(match[1])["key"] if match else None


def reworded(demo: gr.Blocks) -> list[tuple[gr.components.Component, dict[str, str]]]:
    """Every block whose text was given as an i18n key, with {property: key}: what the language switch re-words."""
    found = []
    for block in demo.blocks.values():
        keys = {
            prop: key
            for prop in ("label", "value", "info", "placeholder")
            if (key := i18n_key(getattr(block, prop, None)))
        }
        if keys:
            found.append((block, keys))
    return found


def prompt_for(corpus: str) -> str:
    """A corpus's sample prompt (a newline for models of your own)."""
    return CORPORA[corpus].sample_prompt if corpus in CORPORA else "\n"


@dataclass
class Inputs:
    """The inputs above the tabs, which every tab reads: the corpus, the chosen variants, the prompt and the
    sampling settings (`sampling`, in the order the streaming handlers take them)."""

    language: gr.Radio
    corpus: gr.Dropdown
    names: gr.CheckboxGroup
    prompt: gr.Textbox
    temperature: gr.Slider
    top_k: gr.Slider
    top_p: gr.Slider
    max_new: gr.Slider
    repetition_penalty: gr.Slider
    seed: gr.Number
    guides: dict = field(default_factory=dict)  # {tab id: its "what to try" line}, which the corpus sets
    intro: gr.Markdown | None = None

    @property
    def sampling(self) -> list:
        return [self.temperature, self.top_k, self.top_p, self.max_new, self.repetition_penalty, self.seed]


def sampling_inputs() -> list:
    """The sampling sliders (their ranges are LIMITS, what the API accepts) and the seed: the three that shape the
    next-character distribution in view, the rest folded away."""
    temperature = gr.Slider(
        *LIMITS["temperature"], value=0.8, step=0.05, label=I18N("temperature"), elem_id="temperature"
    )
    top_k = gr.Slider(*LIMITS["top_k"], value=40, step=1, label=I18N("top_k"))
    top_p = gr.Slider(*LIMITS["top_p"], value=0.95, step=0.01, label=I18N("top_p"))
    with gr.Accordion(I18N("more_settings"), open=False):
        max_new = gr.Slider(*LIMITS["max_new_tokens"], value=300, step=1, label=I18N("max_new"), elem_id="max-new")
        repetition_penalty = gr.Slider(
            *LIMITS["repetition_penalty"], value=1.0, step=0.05, label=I18N("repetition_penalty")
        )
        seed = gr.Number(value=0, precision=0, minimum=0, maximum=LIMITS["seed"][1], label=I18N("seed"))
    return [temperature, top_k, top_p, max_new, repetition_penalty, seed]


def shared_inputs(lab: Lab) -> tuple[Inputs, gr.Examples]:
    """The settings every tab reads: the corpus, the variants and the sampling settings in a sidebar (beside every
    tab, so a slider is next to what it changes), the prompt and its examples above the tabs."""
    corpora = lab.corpora()
    first = corpora[0]
    with gr.Sidebar(label=I18N("settings"), elem_id="settings"):
        language = gr.Radio(
            [(name, code) for code, name in LANGUAGES.items()], value="en", label="Language · 言語", elem_id="language"
        )
        corpus = gr.Dropdown(corpora, value=first, label=I18N("corpus"))
        names = gr.CheckboxGroup(lab.choices(first), value=lab.variants(first)[:DEFAULT_PANES], label=I18N("variants"))
        sampling = sampling_inputs()
    lines = gr.Markdown(intro(lab))
    prompt = gr.Textbox(value=prompt_for(first), label=I18N("prompt"), lines=2, elem_id="prompt")
    examples = [e for e in EXAMPLES if e[0] in corpora] or [[first, prompt_for(first)]]
    shown = gr.Examples(
        examples,
        inputs=[corpus, prompt],
        label=I18N("examples"),
        example_labels=[f"{c}: {' '.join(p.split())}" for c, p in examples],
    )
    return Inputs(language, corpus, names, prompt, *sampling, intro=lines), shown


def guide(lab: Lab, inputs: Inputs, tab: str) -> None:  # re-worded by the corpus and the language
    """A tab's "what to try" line (lab_story.tips, from the first corpus's records; the corpus sets it)."""
    inputs.guides[tab] = gr.Markdown(lab.tips(lab.corpora()[0])[tab], elem_classes="gm-tip")


def generate_tab(lab: Lab, inputs: Inputs) -> gr.Dropdown:
    """One model, streamed into a text box. Returns its model dropdown (the corpus sets its choices)."""
    first = lab.corpora()[0]
    with gr.Tab(I18N("tab.generate"), id="generate"):
        with gr.Row():
            one_name = gr.Dropdown(lab.choices(first), value=lab.variants(first)[0], label=I18N("model"))
            one_btn = gr.Button(I18N("generate"), variant="primary")
            one_stop = gr.Button(I18N("stop"))
        one_status = gr.Markdown()
        one_stopped = gr.Markdown(elem_id="one-stopped")
        one_out = gr.Textbox(label=I18N("output"), lines=12, buttons=["copy"], elem_id="one-out")
    clears(one_btn, one_stopped)
    ev = one_btn.click(
        listening(lambda *a: generate_one(lab, *a)),
        [inputs.corpus, one_name, inputs.prompt, *inputs.sampling, inputs.language],
        [one_out, one_status],
        api_name="generate",
        preprocess=False,  # our own checks, naming the setting (RAW_INPUTS)
        concurrency_id="generation",
        concurrency_limit=lab.generating,
    )
    wire_stop(one_stop, one_stopped, [ev], inputs.language)
    return one_name


def side_by_side_tab(lab: Lab, inputs: Inputs, examples: gr.Examples, tabs: gr.Tabs) -> None:
    """The chosen variants streaming at once, one pane each (a pane per chosen variant is shown); an example, once
    clicked, runs here."""
    shown_panes = len(lab.variants(lab.corpora()[0])[:DEFAULT_PANES])
    with gr.Tab(I18N("tab.side-by-side"), id="side-by-side"):
        guide(lab, inputs, "side-by-side")
        with gr.Row():
            compare_btn = gr.Button(I18N("compare"), variant="primary", elem_id="compare")
            compare_stop = gr.Button(I18N("stop"), elem_id="compare-stop")
        compare_status = gr.Markdown(elem_id="compare-status")
        compare_stopped = gr.Markdown(elem_id="compare-stopped")
        panes = []
        with gr.Row(elem_classes="gm-panes"):
            for i in range(MAX_PANES):
                panes.append(gr.HTML(visible=i < shown_panes, elem_id=f"pane-{i}", elem_classes="gm-slot"))

    def on_names(selected):
        n = len(selected or [])
        return [gr.HTML(visible=i < n) for i in range(MAX_PANES)]

    inputs.names.change(on_names, inputs.names, panes, api_visibility="private")
    run = {
        "inputs": [inputs.corpus, inputs.names, inputs.prompt, *inputs.sampling, inputs.language],
        "outputs": [compare_status, *panes],
        "preprocess": False,  # our own checks, naming the setting (RAW_INPUTS)
        "concurrency_id": "generation",
        "concurrency_limit": lab.generating,
    }
    clears(compare_btn, compare_stopped)
    ev = compare_btn.click(listening(lambda *a: generate_panes(lab, *a)), api_name="side_by_side", **run)
    shown = examples.load_input_event.then(
        lambda: (gr.Tabs(selected="side-by-side"), ""), None, [tabs, compare_stopped]
    )
    example = shown.then(
        listening(lambda c, n, *a: generate_panes(lab, c, available(lab, c, n), *a)), api_visibility="private", **run
    )
    wire_stop(compare_stop, compare_stopped, [ev, example], inputs.language)


def available(lab: Lab, corpus, names) -> list:
    """The chosen variants that the corpus has (an example may switch the corpus before its variants follow), or
    its first DEFAULT_PANES."""
    group = lab.groups.get(corpus, {}) if isinstance(corpus, str) else {}
    kept = [n for n in as_list(names, "variants") if n in group]
    return kept or list(group)[:DEFAULT_PANES]


def wire_stop(stop: gr.Button, note: gr.Markdown, events: list, language: gr.Radio) -> None:
    """Stop cancels `events` and says so in `note`, in the page's language (its own line, so that no update still in
    flight overwrites it). Both run in the browser only."""
    stopped = {code: Words(code)("stopped") for code in LANGUAGES}
    stop.click(None, None, None, cancels=events)
    stop.click(None, language, note, js=f"(lang) => ({json.dumps(stopped, ensure_ascii=False)})[lang] ?? ''")


def clears(start: gr.Button, note: gr.Markdown) -> None:
    """Pressing `start` clears the Stop note. Wired before the start button's own event, so that it runs first: wired
    after, it can run after a quick Stop and wipe its note."""
    start.click(None, None, note, js="() => ''")


def next_character_tab(lab: Lab, inputs: Inputs) -> Callable:
    """The next character's candidates per chosen variant, redrawn whenever what they depend on changes (the API
    also gets them as data). Returns `redraw(trigger)`, which wires one more trigger to redraw them."""
    with gr.Tab(I18N("tab.next-character"), id="next-character"):
        guide(lab, inputs, "next-character")
        next_status = gr.Markdown(ENGLISH("next_explained"))
        with gr.Row():
            back = gr.Button(I18N("take_back"), size="sm")
            forward = gr.Button(I18N("step"), size="sm", variant="primary", elem_id="step")
        step_note = gr.Markdown(elem_id="step-note")
        next_data = gr.JSON(visible=False)
        bars = gr.HTML(elem_id="next-bars")
    next_inputs = [inputs.corpus, inputs.names, inputs.prompt, inputs.temperature, inputs.top_k, inputs.top_p]
    forward.click(
        lambda *a: step_character(lab, *a),
        [*next_inputs, inputs.seed, inputs.language],
        [inputs.prompt, step_note],
        api_name="step",
        preprocess=False,  # our own checks, naming the setting (RAW_INPUTS)
    )
    back.click(None, inputs.prompt, [inputs.prompt, step_note], js=TAKE_BACK)
    next_outputs = [next_status, next_data, bars]
    inputs.temperature.change(
        lambda *a: next_char(lab, *a),
        [*next_inputs, inputs.language],
        next_outputs,
        trigger_mode="always_last",
        show_progress="hidden",
        api_name="next_character",
        preprocess=False,  # our own checks, naming the setting (RAW_INPUTS)
    )

    def redraw(trigger) -> None:
        trigger(
            lambda *a: next_char(lab, *a),
            [*next_inputs, inputs.language],
            next_outputs,
            trigger_mode="always_last",
            show_progress="hidden",
            api_visibility="private",
            preprocess=False,
        )

    for trigger in (inputs.top_k.change, inputs.top_p.change, inputs.names.change, inputs.prompt.change):
        redraw(trigger)
    return redraw


def attention_tab(lab: Lab, inputs: Inputs) -> list[gr.Dropdown]:
    """Attention maps, one head enlarged, and each head's entropy and pattern for one model. Returns its model and
    head dropdowns (the corpus sets their choices)."""
    first = lab.corpora()[0]
    with gr.Tab(I18N("tab.attention"), id="attention"):
        guide(lab, inputs, "attention")
        with gr.Row():
            attn_name = gr.Dropdown(lab.choices(first), value=lab.variants(first)[0], label=I18N("model"))
            attn_btn = gr.Button(I18N("show_attention"), variant="primary")
        attn_status = gr.Markdown()
        attn_plot = gr.Plot(label=I18N("attention_grid"))
        attn_head = gr.Dropdown(["auto", *knockout_choices(lab, first)[0]], value="auto", label=I18N("head_to_enlarge"))
        attn_zoom = gr.Plot(label=I18N("one_head"))
        attn_table = gr.Dataframe(label=I18N("head_table"))
    run = {
        "inputs": [inputs.corpus, attn_name, inputs.prompt, attn_head, inputs.language],
        "outputs": [attn_status, attn_plot, attn_zoom, attn_table],
        "preprocess": False,  # our own checks, naming the setting (RAW_INPUTS)
    }
    attn_btn.click(lambda *a: attention_view(lab, *a), api_name="attention", **run)
    attn_head.input(lambda *a: attention_view(lab, *a), api_visibility="private", **run)
    return [attn_name, attn_head]


def knockout_tab(lab: Lab, inputs: Inputs) -> list[gr.CheckboxGroup]:
    """Parts of the baseline switched off, against the intact model. Returns the four part choices (heads, whole
    attention, MLP, residual layers; the corpus sets their choices)."""
    with gr.Tab(I18N("tab.knockout"), id="knockout"):
        guide(lab, inputs, "knockout")
        gr.Markdown(I18N("knockout_explained"))
        heads, layers = knockout_choices(lab, lab.corpora()[0])
        ko_heads = gr.CheckboxGroup(heads, label=I18N("heads"))
        with gr.Row():
            ko_attn = gr.CheckboxGroup(layers, label=I18N("whole_attention"))
            ko_mlp = gr.CheckboxGroup(layers, label=I18N("mlp_layer"))
            ko_res = gr.CheckboxGroup(layers, label=I18N("residual_layer"))
        ko_btn = gr.Button(I18N("run_knockout"), variant="primary")
        ko_status = gr.Markdown()
        with gr.Row():
            ko_intact = gr.Textbox(label=I18N("intact"), lines=8)
            ko_broken = gr.Textbox(label=I18N("knocked_out"), lines=8)
    parts = [ko_heads, ko_attn, ko_mlp, ko_res]
    ko_btn.click(
        listening(lambda *a: run_knockout(lab, *a)),
        [inputs.corpus, *parts, inputs.prompt, *inputs.sampling, inputs.language],
        [ko_status, ko_intact, ko_broken],
        api_name="knockout",
        preprocess=False,  # our own checks, naming the setting (RAW_INPUTS)
        concurrency_id="knockout",
        concurrency_limit=KNOCKOUTS_AT_ONCE,
    )
    return parts


def training_tab(lab: Lab, inputs: Inputs) -> list:
    """How the variants trained and the learning-rate sweep they were chosen from. Returns the training figure, the
    sweep figure and its table (the corpus sets them)."""
    curves0, sweep0, table0 = training_view(lab, lab.corpora()[0])
    with gr.Tab(I18N("tab.training"), id="training"):
        guide(lab, inputs, "training")
        gr.Markdown(I18N("training_explained"))
        curves = gr.Plot(curves0, label=I18N("training_plot"), elem_id="training-plot")
        gr.Markdown(I18N("sweep_explained"))
        sweep = gr.Plot(sweep0, label=I18N("sweep_plot"), elem_id="sweep-plot")
        table = gr.Dataframe(table0, label=I18N("sweep_table"))
    return [curves, sweep, table]


def scaling_tab(lab: Lab, inputs: Inputs) -> list:
    """Loss against size, data and compute (scaling.py), the frontier, and a shipped size to sample from. Returns
    what the corpus sets: the note, the three figures, the frontier table and the sizes."""
    first = lab.corpora()[0]
    (note0, table0, choices0), (size0, data0, compute0) = scaling_words(lab, first), scaling_figures(lab, first)
    chosen0 = choices0[0][1] if choices0 else None
    with gr.Tab(I18N("tab.scaling"), id="scaling"):
        gr.Markdown(I18N("scaling_explained"))
        note = gr.Markdown(note0, elem_classes="gm-tip")
        with gr.Row(elem_classes="gm-panes"):
            size_plot = gr.Plot(size0, label=I18N("scaling_size_plot"), elem_classes="gm-slot")
            data_plot = gr.Plot(data0, label=I18N("scaling_data_plot"), elem_classes="gm-slot")
        compute_plot = gr.Plot(compute0, label=I18N("scaling_compute_plot"), elem_id="scaling-compute")
        table = gr.Dataframe(table0, label=I18N("frontier_table"))
        sizes = gr.Radio(choices0, value=chosen0, label=I18N("scaling_size"), elem_id="scaling-size")
        with gr.Row():
            start = gr.Button(I18N("scaling_sample"), variant="primary")
            stop = gr.Button(I18N("stop"))
        status = gr.Markdown()
        stopped = gr.Markdown()
        out = gr.Textbox(label=I18N("output"), lines=8, buttons=["copy"], elem_id="scaling-out")
    clears(start, stopped)
    ev = start.click(
        listening(lambda *a: sample_size(lab, *a)),
        [inputs.corpus, sizes, inputs.prompt, *inputs.sampling, inputs.language],
        [out, status],
        api_name="sample_size",
        preprocess=False,  # our own checks, naming the setting (RAW_INPUTS)
        concurrency_id="generation",
        concurrency_limit=lab.generating,
    )
    wire_stop(stop, stopped, [ev], inputs.language)
    return [note, size_plot, data_plot, compute_plot, table, sizes]


def wire_corpus(
    lab: Lab, inputs: Inputs, model_dropdowns: list, head: gr.Dropdown, training: list, parts: list, scaling: list
):
    """Picking a corpus sets every tab's choices to its models: the variants (the first DEFAULT_PANES chosen), the
    Generate and Attention model dropdowns, the head to enlarge (auto), the Training tab, the knockout parts (none
    chosen) and each tab's guide; picking one (not an example, which sets its own prompt) also sets the prompt to the
    corpus's sample prompt."""

    def on_corpus(c, language=None):
        say = spoken(language)
        v, labelled = lab.variants(c), lab.choices(c, say)
        heads, layers = knockout_choices(lab, c)
        said = lab.tips(c, say)
        return (
            gr.CheckboxGroup(choices=labelled, value=v[:DEFAULT_PANES]),
            *[gr.Dropdown(choices=labelled, value=v[0]) for _ in model_dropdowns],
            gr.Dropdown(choices=["auto", *heads], value="auto"),
            *training_view(lab, c, say),
            gr.CheckboxGroup(choices=heads, value=[]),
            *[gr.CheckboxGroup(choices=layers, value=[]) for _ in parts[1:]],
            *[said[tab] for tab in inputs.guides],
            *scaling_update(lab, c, say),
        )

    inputs.corpus.change(
        on_corpus,
        [inputs.corpus, inputs.language],
        [inputs.names, *model_dropdowns, head, *training, *parts, *inputs.guides.values(), *scaling],
        api_name="choose_corpus",
        preprocess=False,  # our own checks, naming the setting (RAW_INPUTS)
    )
    # the corpus's sample prompt only when the user picks a corpus (an example sets its own prompt)
    inputs.corpus.input(prompt_for, inputs.corpus, inputs.prompt, api_visibility="private")


def scaling_update(lab: Lab, corpus, say: Words, figures: bool = True) -> tuple:
    """The Scaling tab's outputs for a corpus, in scaling_tab's order. A new corpus (`figures`) redraws the figures
    and chooses its first size; a new language rewords the rest and keeps the figures and the chosen size."""
    note, table, choices = scaling_words(lab, corpus, say)
    if not figures:
        return note, *[gr.update()] * 3, table, gr.update(choices=choices)
    return (
        note,
        *scaling_figures(lab, corpus),
        table,
        gr.Radio(choices=choices, value=choices[0][1] if choices else None),
    )


def wire_language(lab: Lab, demo: gr.Blocks, inputs: Inputs, model_dropdowns: list, table: gr.Dataframe, scaling: list):
    """The language: at load, the one the page was drawn in (DETECT_LANGUAGE); then the switch. Either re-words the
    page's fixed words (`reworded`) and what the server words (the introduction, the guides, the variants' names, the
    sweep table). Returns the load event (the next-character bars follow it)."""
    fixed = reworded(demo)

    def on_language(corpus, language):
        say = spoken(language)
        labelled = lab.choices(corpus, say) if corpus in lab.groups else None
        choices = [gr.update() if labelled is None else gr.update(choices=labelled)] * (1 + len(model_dropdowns))
        sweep = lab.sweeps.get(corpus)
        said = lab.tips(corpus, say) if corpus in lab.groups else {}
        return (
            language,
            *[gr.update(**{prop: say(key) for prop, key in keys.items()}) for _, keys in fixed],
            intro(lab, say),
            *choices,
            sweep_table(sweep, say) if sweep else pd.DataFrame(columns=sweep_columns(say)),
            *[said.get(tab, gr.update()) for tab in inputs.guides],
            *scaling_update(lab, corpus, say, figures=False),
        )

    outputs = [
        inputs.language,
        *[block for block, _ in fixed],
        inputs.intro,
        inputs.names,
        *model_dropdowns,
        table,
        *inputs.guides.values(),
        *scaling,
    ]
    options = {"api_visibility": "private", "preprocess": False, "show_progress": "hidden"}
    loaded = demo.load(on_language, [inputs.corpus, inputs.language], outputs, js=DETECT_LANGUAGE, **options)
    inputs.language.input(on_language, [inputs.corpus, inputs.language], outputs, **options)
    return loaded


def launch_options(demo: gr.Blocks) -> dict:
    """demo.launch()'s options, for main() and the tests: the CSS (Gradio 6 takes it at launch) and ClientWatch for
    this demo (LISTENING). A new dict every time: Gradio adds its own entries to app_kwargs."""
    return {"css": CSS, "i18n": I18N, "app_kwargs": {"middleware": [Middleware(ClientWatch, blocks=demo)]}}


def build_demo(lab: Lab | None = None, queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The lab as a gr.Blocks (not launched). Up to `lab.generating` generations run at once (KNOCKOUTS_AT_ONCE
    knockouts, 4 of any other event); `queue_size` more wait, and a request beyond that is turned away at once with
    Gradio's "Queue is full" (HTTP 503) instead of waiting for a timeout."""
    lab = lab or load_lab()
    with gr.Blocks(title="GPT-2 mini lab") as demo:
        inputs, examples = shared_inputs(lab)
        with gr.Tabs() as tabs:
            side_by_side_tab(lab, inputs, examples, tabs)
            redraw_next = next_character_tab(lab, inputs)
            one_name = generate_tab(lab, inputs)
            attn_name, attn_head = attention_tab(lab, inputs)
            parts = knockout_tab(lab, inputs)
            training = training_tab(lab, inputs)
            scaling = scaling_tab(lab, inputs)
        wire_corpus(lab, inputs, [one_name, attn_name], attn_head, training, parts, scaling)
        loaded = wire_language(lab, demo, inputs, [one_name, attn_name], training[2], scaling)
        redraw_next(loaded.then)
        redraw_next(inputs.language.input)
        demo.load(None, js=CLOSE_SIDEBAR_ON_PHONES)
    demo.queue(default_concurrency_limit=4, max_size=queue_size)
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The GPT-2 mini lab (Gradio). Host and port: GRADIO_SERVER_NAME, GRADIO_SERVER_PORT."
    )
    parser.add_argument("--models", default=str(ROOT / "models"), help="folder of <corpus>/<variant> model folders")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH_OR_REPO",
        help="also serve this model folder or Hub repo id (repeatable)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps several streams smooth)")
    parser.add_argument(
        "--queue-size",
        type=int,
        default=QUEUE_SIZE,
        help="requests that may wait while others run; more are told at once that the queue is full",
    )
    parser.add_argument(
        "--generating",
        type=int,
        default=GENERATING_AT_ONCE,
        help="generations that run at once, their streams batched per model (more wait in the queue)",
    )
    parser.add_argument(
        "--decoding",
        choices=("process", "thread"),
        default="process",
        help="where generations are stepped: a process of its own (default; out of the page's Python lock) or a "
        "thread of this one",
    )
    args = parser.parse_args(argv)
    for flag, value in (("--queue-size", args.queue_size), ("--generating", args.generating)):
        if value < 1:
            print(f"error: {flag} must be a positive integer, got {value}", file=sys.stderr)
            return 2
    torch.set_num_threads(max(1, args.threads))
    try:
        lab = load_lab(args.models, args.model)
    except (UsageError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lab.generating = args.generating
    if args.decoding == "process":
        lab.server = ProcessServer(threads=max(1, args.threads)).start()
        lab.server.share(lab.models())  # now, before any request thread uses them
    demo = build_demo(lab, args.queue_size)
    demo.launch(**launch_options(demo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
