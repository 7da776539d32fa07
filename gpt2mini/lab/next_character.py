"""The Next character tab: the top candidates after temperature, top-k and top-p as labelled bars, from one forward
pass, and a step button that draws one character at a time.
"""

import html

import pandas as pd
import torch

from gpt2mini.generation.sampling import filter_logits
from gpt2mini.generation.stream import TextDecoder
from gpt2mini.lab.catalog import Entry, Lab, as_list
from gpt2mini.lab.clients import Refused
from gpt2mini.lab.i18n import spoken
from gpt2mini.lab.limits import MAX_PANES
from gpt2mini.lab.streaming import SHOWN, check_settings, prepare_prompt, shown_char
from gpt2mini.tokenizer import valid_text


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
