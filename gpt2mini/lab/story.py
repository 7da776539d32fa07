"""The lab's words: what each variant is, what its loss means, where side-by-side panes depart from the reference
and why some agree. Every number comes from the models' own records (training.json, written by
`experiments.ablate --ship`) and the sweep's yardsticks (sweep.json); nothing here is typed in by hand. Each function
that words something takes `say` (gpt2mini.words.Words: English unless told), so the lab speaks English or Japanese
from one table.

    caption("post_ln", {"val_split": 2.092, "lr": 0.001}, {"unigram": 3.347, "bigram": 2.486})
    departures(["abcd", "abxd", "abcd"], reference=0)   # [None, 2, None]: pane 1 departs at index 2 (character 3)
    look_alikes(["ab", "xy", "xy"], reference=0)        # [[1, 2]]: panes 1 and 2 write the same text
"""

from configuration_gpt2mini import BASELINE, SWITCHES
from gpt2mini.report.yardsticks import at_unigram, level, yardstick
from gpt2mini.words import ENGLISH, Words


def meaning(ablations: dict, say: Words = ENGLISH) -> str:
    """What a model is, from the switches its config sets (`config.ablations`): GPT-2 as designed, or each switch's
    one-line meaning. Taken from the model, not from its folder's name."""
    if not ablations:
        return say(f"meaning.{BASELINE}")
    return say.listed([say(f"meaning.{s.variant}") for s in SWITCHES if ablations.get(s.field, object()) == s.value])


def measured_loss(training: dict) -> float | None:
    """A shipped model's validation loss over the whole held-out split (training.json), if it has one."""
    loss = training.get("val_split")
    return float(loss) if isinstance(loss, (int, float)) else None


def loss_line(training: dict, reference: dict, say: Words = ENGLISH) -> str | None:
    """'validation loss 2.092 (trained at lr 0.001), between the unigram (3.347) and bigram (2.486) levels', or None."""
    loss = measured_loss(training)
    if loss is None:
        return None
    lr = say("loss_line.lr", lr=training["lr"]) if isinstance(training.get("lr"), (int, float)) else ""
    where = yardstick(loss, reference, say)
    return say("loss_line", loss=loss, lr=lr) + (say("loss_line.where", where=where) if where else "")


def caption(ablations: dict, training: dict, reference: dict, say: Words = ENGLISH) -> str:
    """A pane's caption: what the model is, and its measured loss against the yardsticks (what is known of it)."""
    parts = [x[0].upper() + x[1:] for x in (meaning(ablations, say), loss_line(training, reference, say)) if x]
    return say("sentence.sep").join(parts) + say("sentence.end")


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


def at_place(i: int | None, say: Words = ENGLISH) -> str:
    return say("at.agrees") if i is None else say("at.first") if i == 0 else say("at.character", n=i + 1)


def knocked_out(loss: float, levels: dict, say: Words = ENGLISH) -> str:
    """Where a knocked-out model's loss stands against the levels of the same text: 'it is worse than character
    frequencies alone (the unigram level of this passage: 3.350)'."""
    return say(f"passage.{level(loss, levels)}", uni=levels["unigram"], bi=levels["bigram"])


def why_alike(trainings: list[dict], reference: dict, say: Words = ENGLISH) -> str:
    """Why panes write the same text: from their measured losses where they are all at the unigram level."""
    if all(at_unigram(measured_loss(t), reference) for t in trainings):
        return say("why_alike.unigram", uni=reference["unigram"])
    return say("why_alike.close")


def side_by_side_story(
    entries: list, texts: list[str], reference: dict, say: Words = ENGLISH, ref: int | None = None
) -> list[str]:
    """Status lines for the side-by-side panes (`entries`: catalog.Entry, or anything with name, ablations and
    training): where each departs from the reference pane (`ref`, default `reference_pane(entries)`), which agree."""
    if len(texts) < 2 or not all(texts):
        return []
    ref = reference_pane(entries) if ref is None else ref
    places = departures(texts, ref)
    named = [say.variant(e.name) for e in entries]
    where = [say("place", label=named[i], at=at_place(p, say)) for i, p in enumerate(places) if i != ref]
    lines = [say("highlighted", reference=named[ref], places=say.listed(where))]
    for group in look_alikes(texts, ref):
        who = say.listed([named[i] for i in group], "list.and")
        why = why_alike([entries[i].training for i in group], reference, say)
        lines.append(say("alike", who=who, why=why))
    return lines


# ---------------------------------------------------------------------------------------------------------------------
# What to try: one short guide per tab, worded from the shipped models' records and the sweep


def standing(entry, baseline_loss: float | None, reference: dict, say: Words = ENGLISH) -> str | None:
    """'residual off 3.344, at the unigram level (3.347): it writes character frequencies whatever it reads'."""
    loss = measured_loss(entry.training)
    if loss is None:
        return None
    where = level(loss, reference)
    said = ""
    if where in ("unigram", "above_unigram", "bigram"):
        said = say(f"standing.{where}", uni=reference.get("unigram", 0), bi=reference.get("bigram", 0))
    elif baseline_loss is not None:
        said = say("standing.against", change=loss - baseline_loss, base=baseline_loss)
    return say("standing", label=say.variant(entry.name), loss=loss, said=said)


def windows(entries: list, sweep, say: Words = ENGLISH) -> str:
    """'... clearly below the bigram level: baseline 0.0005, ...; residual off none.' for the entries' variants (matched
    by name: the sweep, a records.SweepSummary or None, is keyed by variant)."""
    swept = sweep.variants if sweep else {}
    known = [
        say("window", label=say.variant(e.name), lrs=", ".join(f"{lr:g}" for lr in swept[e.name].window) or
            say("sweep.none"))
        for e in entries
        if e.name in swept
    ]  # fmt: skip
    return say("windows", windows=say.listed(known, "list.windows")) if known else ""


DEPENDENCE_FLOOR = 0.01  # nats: below this input dependence, a model predicts about the same whatever it reads


def ignores_input(entry, reference: dict) -> bool:
    """Whether a model predicts the same whatever it reads: its last measured input dependence (metrics log) is about
    0, or, without one, its validation loss is at the unigram level."""
    probed = [m["input_dependence"] for m in getattr(entry, "metrics", []) if m.get("input_dependence") is not None]
    return probed[-1] < DEPENDENCE_FLOOR if probed else at_unigram(measured_loss(entry.training), reference)


def tips(entries: list, sweep, say: Words = ENGLISH) -> dict[str, str]:
    """'What to try' for each tab (keys: the tabs' ids), from the entries' records and the corpus's sweep (a
    records.SweepSummary, or None without one)."""
    reference = sweep.reference if sweep else {}
    intact = [e for e in entries if not e.ablations]
    base = measured_loss(intact[0].training) if intact else None
    said = [s for e in entries if e.ablations and (s := standing(e, base, reference, say))]
    flat = [say.variant(e.name) for e in entries if ignores_input(e, reference)]
    found = {
        "side-by-side": say(
            "try.side-by-side", said=say.listed(said) + say("sentence.end") if said else say("try.no_losses")
        ),
        "next-character": say(
            "try.next-character",
            except_=say("try.except", who=say.listed(flat, "list.and")) if flat else say("sentence.end"),
        ),
        "attention": say("try.attention"),
        "knockout": say("try.knockout"),
        "training": say("try.training", windows=windows(entries, sweep, say)),
    }
    return {tab: say("try", text=text) for tab, text in found.items()}
