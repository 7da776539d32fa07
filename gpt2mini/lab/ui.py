"""The lab as one `gr.Blocks`: `build_demo` lays out the tabs and wires what changes them all (the corpus, the
language); `launch_options` are what app.py launches it with (CSS, i18n, the ClientWatch middleware).
"""

import gradio as gr
import pandas as pd
from starlette.middleware import Middleware

from gpt2mini.lab.catalog import Lab, load_lab
from gpt2mini.lab.clients import ClientWatch
from gpt2mini.lab.curves import scaling_figures, scaling_words, sweep_columns, sweep_table, training_view
from gpt2mini.lab.i18n import DETECT_LANGUAGE, I18N, reworded, spoken
from gpt2mini.lab.knockouts import knockout_choices
from gpt2mini.lab.limits import DEFAULT_PANES, QUEUE_SIZE
from gpt2mini.lab.tabs import (
    Inputs,
    attention_tab,
    generate_tab,
    intro,
    knockout_tab,
    next_character_tab,
    prompt_for,
    scaling_tab,
    shared_inputs,
    side_by_side_tab,
    training_tab,
)
from gpt2mini.words import Words

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
        preprocess=False,  # our own checks, naming the setting (limits.py's RAW_INPUTS)
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
    this demo (clients.py's LISTENING). A new dict every time: Gradio adds its own entries to app_kwargs."""
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
