"""The lab's words: what each variant is, what its loss means, where side-by-side panes depart from the reference
and why some agree. Every number comes from the models' own records (training.json, written by `ablate.py --ship`)
and the sweep's yardsticks (sweep.json); nothing here is typed in by hand.

    caption("post_ln", {"val_split": 2.092, "lr": 0.001}, {"unigram": 3.347, "bigram": 2.486})
    departures(["abcd", "abxd", "abcd"], reference=0)   # [None, 2, None]: pane 1 departs at index 2 (character 3)
    look_alikes(["ab", "xy", "xy"], reference=0)        # [[1, 2]]: panes 1 and 2 write the same text
"""

from configuration_gpt2mini import BASELINE_MEANING, SWITCHES
from yardsticks import at_unigram, level, yardstick


def meaning(ablations: dict) -> str:
    """What a model is, from the switches its config sets (`config.ablations`): GPT-2 as designed, or each switch's
    one-line meaning. Taken from the model, not from its folder's name."""
    if not ablations:
        return BASELINE_MEANING
    return "; ".join(s.meaning for s in SWITCHES if s.field in ablations and ablations[s.field] == s.value)


def measured_loss(training: dict) -> float | None:
    """A shipped model's validation loss over the whole held-out split (training.json), if it has one."""
    loss = training.get("val_split")
    return float(loss) if isinstance(loss, (int, float)) else None


def loss_line(training: dict, reference: dict) -> str | None:
    """'validation loss 2.092 (trained at lr 0.001), between the unigram (3.347) and bigram (2.486) levels', or None."""
    loss = measured_loss(training)
    if loss is None:
        return None
    lr = f" (trained at lr {training['lr']:g})" if isinstance(training.get("lr"), (int, float)) else ""
    where = yardstick(loss, reference)
    return f"validation loss {loss:.3f}{lr}" + (f", {where}" if where else "")


def caption(ablations: dict, training: dict, reference: dict) -> str:
    """A pane's caption: what the model is, and its measured loss against the yardsticks (what is known of it)."""
    return ". ".join(x[0].upper() + x[1:] for x in (meaning(ablations), loss_line(training, reference)) if x) + "."


def departure(text: str, reference: str) -> int | None:
    """The first character where `text` differs from `reference`, within the shorter (a pane still holding back a
    character's bytes has not departed yet); None where they agree so far."""
    for i, (a, b) in enumerate(zip(text, reference, strict=False)):
        if a != b:
            return i
    return None


def departures(texts: list[str], reference: int) -> list[int | None]:
    """Where each pane departs from the reference pane (None for the reference itself and for panes that agree)."""
    return [None if i == reference else departure(t, texts[reference]) for i, t in enumerate(texts)]


def look_alikes(texts: list[str], reference: int) -> list[list[int]]:
    """Groups of two or more panes that write the same text as each other but not the reference's."""
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        if i != reference and text and departure(text, texts[reference]) is not None:
            groups.setdefault(text, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def reference_pane(entries: list) -> int:
    """The pane the others are compared with: the first intact GPT-2 (no switch set), else the first."""
    return next((i for i, e in enumerate(entries) if not e.ablations), 0)


def at_place(i: int | None) -> str:
    return "agrees so far" if i is None else "from the first character" if i == 0 else f"at character {i + 1}"


def knocked_out(loss: float, levels: dict) -> str:
    """Where a knocked-out model's loss stands against the levels of the same text: 'no better than character
    frequencies alone (unigram level 3.35)'."""
    uni, bi = levels["unigram"], levels["bigram"]
    return {
        "unigram": f"it is at the unigram level of this passage ({uni:.3f}): no better than character frequencies",
        "above_unigram": f"it is worse than character frequencies alone (the unigram level of this passage: {uni:.3f})",
        "bigram": f"it is about the bigram level of this passage ({bi:.3f}): no better than predicting from the "
        "current character alone",
        "between": f"it is between the unigram ({uni:.3f}) and bigram ({bi:.3f}) levels of this passage",
        "below_bigram": f"it is still below the bigram level of this passage ({bi:.3f})",
    }[level(loss, levels)]


def why_alike(trainings: list[dict], reference: dict) -> str:
    """Why panes write the same text: from their measured losses where they are all at the unigram level."""
    if all(at_unigram(measured_loss(t), reference) for t in trainings):
        return (
            f"each is at the unigram level ({reference['unigram']:.3f}): it predicts the character frequencies "
            "whatever it reads, so the same seed draws the same characters"
        )
    return "their next-character distributions are close enough that the same seed draws the same characters"


def side_by_side_story(entries: list, texts: list[str], reference: dict) -> list[str]:
    """Status lines for the side-by-side panes (`entries`: app.Entry, or anything with label, ablations and
    training): where each departs from the reference pane (the first intact GPT-2, else the first), which agree."""
    if len(texts) < 2 or not all(texts):
        return []
    ref = reference_pane(entries)
    places = departures(texts, ref)
    lines = [
        f"Highlighted: where each pane departs from **{entries[ref].label}** (same seed: a pane draws the same "
        "characters until its distribution differs enough). "
        + "; ".join(
            f"{e.label} {at_place(p)}" for i, (e, p) in enumerate(zip(entries, places, strict=True)) if i != ref
        )
        + "."
    ]
    for group in look_alikes(texts, ref):
        who = " and ".join(entries[i].label for i in group)
        lines.append(f"{who} write the same text: {why_alike([entries[i].training for i in group], reference)}.")
    return lines


# ---------------------------------------------------------------------------------------------------------------------
# What to try: one short guide per tab, worded from the shipped models' records and the sweep


def standing(entry, baseline_loss: float | None, reference: dict) -> str | None:
    """'residual off: 3.344, at the unigram level (3.347): it writes character frequencies whatever it reads'."""
    loss = measured_loss(entry.training)
    if loss is None:
        return None
    where = level(loss, reference)
    said = {
        "unigram": f"at the unigram level ({reference.get('unigram', 0):.3f}): it writes character frequencies "
        "whatever it reads",
        "above_unigram": f"worse than character frequencies alone ({reference.get('unigram', 0):.3f})",
        "bigram": f"about the bigram level ({reference.get('bigram', 0):.3f}): it predicts from the current "
        "character alone",
    }.get(where)
    if said is None and baseline_loss is not None:
        said = f"{loss - baseline_loss:+.3f} against the baseline ({baseline_loss:.3f})"
    return f"**{entry.label}** {loss:.3f}" + (f", {said}" if said else "")


def windows(entries: list, sweep: dict) -> str:
    """'... clearly below the bigram level: baseline 0.0005, ...; residual off none.' for the entries' variants."""
    by_label = {v["label"]: v for v in sweep.get("variants", {}).values()}
    known = [(e.label, by_label[e.label]["window"]) for e in entries if e.label in by_label]
    if not known:
        return ""
    return (
        "The learning rates at which each ends clearly below the bigram level: "
        + "; ".join(f"{label} {', '.join(f'{lr:g}' for lr in w) or 'none'}" for label, w in known)
        + "."
    )


DEPENDENCE_FLOOR = 0.01  # nats: below this input dependence, a model predicts about the same whatever it reads


def ignores_input(entry, reference: dict) -> bool:
    """Whether a model predicts the same whatever it reads: its last measured input dependence (metrics log) is about
    0, or, without one, its validation loss is at the unigram level."""
    probed = [m["input_dependence"] for m in getattr(entry, "metrics", []) if m.get("input_dependence") is not None]
    return probed[-1] < DEPENDENCE_FLOOR if probed else at_unigram(measured_loss(entry.training), reference)


def tips(entries: list, sweep: dict | None) -> dict[str, str]:
    """'What to try' for each tab (keys: the tabs' ids), from the entries' records and the corpus's sweep."""
    reference = (sweep or {}).get("reference", {})
    intact = [e for e in entries if not e.ablations]
    base = measured_loss(intact[0].training) if intact else None
    said = [s for e in entries if e.ablations and (s := standing(e, base, reference))]
    flat = [e.label for e in entries if ignores_input(e, reference)]
    found = {
        "side-by-side": "Press **Generate side by side**. Validation loss over the held-out text: "
        + ("; ".join(said) + "." if said else "no measured losses for these models."),
        "next-character": "Edit the prompt and watch the bars follow it"
        + (
            f", except for {' and '.join(flat)}: at the unigram level, it shows the same bars whatever it reads."
            if flat
            else "."
        )
        + " Then move the temperature: 0 puts everything on one character, 2 flattens the bars.",
        "attention": "Press **Show attention** with a prompt of several lines: heads titled *previous char* or "
        "*newlines* read mostly one place; the table says what every head mostly reads.",
        "knockout": "Switch off the residual connections of L1 and run: compare the knocked-out loss with the intact "
        "one (and, on a shipped corpus, with the unigram and bigram levels of the same passage). Then switch off "
        "single heads instead, one at a time.",
        "training": "A variant that fails at one learning rate may train at another. " + windows(entries, sweep or {}),
    }
    return {tab: f"**Try:** {text}" for tab, text in found.items()}
