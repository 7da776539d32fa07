"""The Knockout tab: heads, attention or MLP layers, or residual connections of the trained baseline switched off at
inference time, on a private copy (other visitors are not affected), compared with the intact model on a fixed
passage and in samples.
"""

import copy
import html
import re

import torch

from gpt2mini.generation.sampling import SamplingSettings
from gpt2mini.generation.stream import TextDecoder
from gpt2mini.lab.catalog import Entry, Lab, as_list
from gpt2mini.lab.clients import Refused, shown
from gpt2mini.lab.heads import written_head
from gpt2mini.lab.i18n import spoken
from gpt2mini.lab.limits import PASSAGE_WINDOWS
from gpt2mini.lab.story import knocked_out
from gpt2mini.lab.streaming import generation_settings, open_stream, paced, prepare_prompt
from gpt2mini.probes import knockout
from gpt2mini.tokenizer import encode
from gpt2mini.words import ENGLISH, Words


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
