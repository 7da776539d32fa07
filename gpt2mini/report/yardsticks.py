"""Yardsticks: what a validation loss means, against two models with no network at all.

    reference_losses(train_text, val_text)  # {"unigram": 3.347, "bigram": 2.486} on Tiny Shakespeare
    level(loss, reference)                  # "unigram", "above_unigram", "between", "bigram" or "below_bigram"
    yardstick(loss, reference)              # the same in words (gpt2mini/words.py), for the report and the lab

A character model that ends at the unigram level learned the character frequencies and nothing more (whatever it
reads, it predicts the same distribution); one at the bigram level predicts from the current character alone; only
below the bigram level does it use more than the current character. experiments.ablate's report and the lab word their
verdicts from here, so they cannot disagree.
"""

import math
from collections import Counter

from gpt2mini.words import ENGLISH, Words

AT_LEVEL = 0.05  # nats per character: a loss this close to a yardstick is "at" it


def reference_losses(train_text: str, val_text: str) -> dict[str, float]:
    """Validation cross-entropy (nats per character) of two models with no network at all, fitted on the training
    text: character frequencies (unigram, add-one smoothed) and the previous character (bigram, Witten-Bell
    interpolated with the unigram)."""
    v = len(set(train_text) | set(val_text))
    uni = Counter(train_text)
    n = len(train_text)

    def p_uni(c: str) -> float:
        return (uni[c] + 1) / (n + v)

    pairs = Counter(zip(train_text, train_text[1:], strict=False))
    followers = Counter(a for a, _ in pairs)  # distinct characters seen after each character
    total = Counter(train_text[:-1])

    def p_bi(a: str, b: str) -> float:
        if total[a] == 0:
            return p_uni(b)
        lam = total[a] / (total[a] + followers[a])
        return lam * pairs[(a, b)] / total[a] + (1 - lam) * p_uni(b)

    m = len(val_text) - 1
    unigram = -sum(math.log(p_uni(c)) for c in val_text[1:]) / m
    bigram = -sum(math.log(p_bi(a, b)) for a, b in zip(val_text, val_text[1:], strict=False)) / m
    return {"unigram": round(unigram, 4), "bigram": round(bigram, 4)}


def level(loss: float, reference: dict) -> str | None:
    """Where a loss stands: "unigram" (at it), "above_unigram", "between" (the two), "bigram" (at it) or
    "below_bigram"; None without both yardsticks."""
    uni, bi = reference.get("unigram"), reference.get("bigram")
    if uni is None or bi is None:
        return None
    if abs(loss - uni) < AT_LEVEL:
        return "unigram"
    if loss > uni:
        return "above_unigram"
    if abs(loss - bi) < AT_LEVEL:
        return "bigram"
    return "between" if loss > bi else "below_bigram"


def at_unigram(loss: float | None, reference: dict) -> bool:
    """True where a loss is at the unigram level: the model predicts the same distribution whatever it reads."""
    return loss is not None and level(loss, reference) == "unigram"


def yardstick(loss: float, reference: dict, say: Words = ENGLISH) -> str | None:
    """Where a loss stands, in words (gpt2mini/words.py: `say` picks the language; None without both yardsticks)."""
    where = level(loss, reference)
    if where is None:
        return None
    return say(f"level.{where}", uni=reference["unigram"], bi=reference["bigram"])
