"""Generation in the lab: each request's values checked (`check_settings` turns them into numbers,
`SamplingSettings` with the sliders' LIMITS validates them), the prompt prepared, and the three streaming events
(side by side, generate, knockout) stepped and paced through one generator, `paced`: an update after the first
character, then at most every UPDATE_S, a stop at TIME_LIMIT_S, and always a final update.

Side by side, the chosen variants stream at once with the same seed, so they agree until their distributions part;
each pane is highlighted from where it departs from the baseline and, once the run ends, shades each character by how
likely its model found it.
"""

import dataclasses
import html
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gradio as gr

from gpt2mini.generation.sampling import SamplingSettings
from gpt2mini.generation.stream import TextDecoder, TokenStream
from gpt2mini.lab.catalog import Entry, Lab, as_list
from gpt2mini.lab.clients import Refused, shown
from gpt2mini.lab.i18n import spoken
from gpt2mini.lab.limits import CALM_STREAMS, LIMITS, MAX_PANES, TIME_LIMIT_S, UPDATE_S, WHOLE_SETTINGS
from gpt2mini.lab.story import caption, departures, reference_pane, side_by_side_story
from gpt2mini.serving.pool import StreamServer
from gpt2mini.tokenizer import crop_to_tokens, unseen_characters, valid_text
from gpt2mini.words import ENGLISH, Words


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
            server.stream(e.served_as, ids, settings, top=ALTERNATIVES + 1 if probabilities else 0)
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
    tokens = server.stream(entry.served_as, ids, settings)
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
