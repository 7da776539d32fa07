"""The Attention tab: every layer's and head's attention over the prompt's last characters, each head named by what it
mostly reads (probes.head_pattern), one head enlarged with its characters.
"""

import re
from dataclasses import dataclass

import gradio as gr
import pandas as pd
import torch

from gpt2mini.lab.catalog import Entry, Lab
from gpt2mini.lab.clients import Refused, shown
from gpt2mini.lab.i18n import spoken
from gpt2mini.lab.limits import ATTENTION_CHARS
from gpt2mini.lab.streaming import prepare_prompt, shown_char
from gpt2mini.probes import head_pattern
from gpt2mini.words import ENGLISH, Words


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
