"""The lab in two languages: the page's fixed words are Gradio i18n keys (gpt2mini/words.py's table), drawn in the
browser's language at first paint; the language switch re-words every component from the same table.
"""

import json
import re

import gradio as gr
from gradio.i18n import I18nData

from gpt2mini.lab.clients import Refused, shown
from gpt2mini.words import ENGLISH, LANGUAGES, Words, translations

# The page's fixed words are Gradio i18n keys (gpt2mini/words.py's table): the browser's language draws them at first
# paint, and the language switch re-words them all (`reworded`).
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
