"""The lab's tabs, one function each (its components and its own events), and the inputs above them that every tab
reads (corpus, variants, prompt, sampling settings).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from gpt2mini.corpus import CORPORA
from gpt2mini.lab.catalog import Lab, as_list
from gpt2mini.lab.clients import listening
from gpt2mini.lab.curves import sample_size, scaling_figures, scaling_words, training_view
from gpt2mini.lab.heads import attention_view
from gpt2mini.lab.i18n import I18N
from gpt2mini.lab.knockouts import baseline_of, knockout_choices, run_knockout
from gpt2mini.lab.limits import DEFAULT_PANES, EXAMPLES, KNOCKOUTS_AT_ONCE, LIMITS, MAX_PANES
from gpt2mini.lab.next_character import TAKE_BACK, next_char, step_character
from gpt2mini.lab.streaming import generate_one, generate_panes
from gpt2mini.words import ENGLISH, LANGUAGES, Words


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
    """A tab's "what to try" line (story.tips, from the first corpus's records; the corpus sets it)."""
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
        preprocess=False,  # our own checks, naming the setting (limits.py's RAW_INPUTS)
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
        "preprocess": False,  # our own checks, naming the setting (limits.py's RAW_INPUTS)
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
        preprocess=False,  # our own checks, naming the setting (limits.py's RAW_INPUTS)
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
        preprocess=False,  # our own checks, naming the setting (limits.py's RAW_INPUTS)
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
        "preprocess": False,  # our own checks, naming the setting (limits.py's RAW_INPUTS)
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
        preprocess=False,  # our own checks, naming the setting (limits.py's RAW_INPUTS)
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
    """Loss against size, data and compute (experiments.scaling), the frontier, and a shipped size to sample from.
    Returns what the corpus sets: the note, the three figures, the frontier table and the sizes."""
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
        preprocess=False,  # our own checks, naming the setting (limits.py's RAW_INPUTS)
        concurrency_id="generation",
        concurrency_limit=lab.generating,
    )
    wire_stop(stop, stopped, [ev], inputs.language)
    return [note, size_plot, data_plot, compute_plot, table, sizes]


def intro(lab: Lab, say: Words = ENGLISH) -> str:
    """The lab's first lines, with each group's size taken from its baseline (or first model)."""
    sizes = []
    for corpus in lab.corpora():
        model = lab.get(corpus, baseline_of(lab, corpus)).model
        name = CORPORA[corpus].description if corpus in CORPORA else corpus
        sizes.append(say("intro.size", name=name, millions=sum(p.numel() for p in model.parameters()) / 1e6))
    return say("intro", sizes=say.listed(sizes, "list.comma"))
