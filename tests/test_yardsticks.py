"""The yardsticks the report and the lab word their verdicts from."""

from gpt2mini.report import yardsticks


def test_reference_losses_and_their_wording():
    text = "abababababababab" * 50 + "cacacacacacacaca" * 50
    ref = yardsticks.reference_losses(text[:1200], text[1200:])
    assert ref["bigram"] < ref["unigram"]
    assert "unigram level" in yardsticks.yardstick(ref["unigram"] + 0.01, ref)
    assert "bigram level" in yardsticks.yardstick(ref["bigram"], ref)
    assert "worse than character frequencies" in yardsticks.yardstick(ref["unigram"] + 1, ref)
    assert "uses more than the current character" in yardsticks.yardstick(ref["bigram"] - 0.5, ref)


def test_levels_and_the_unigram_check():
    ref = {"unigram": 3.35, "bigram": 2.49}
    got = [yardsticks.level(x, ref) for x in (3.9, 3.36, 3.0, 2.5, 1.8)]
    assert got == ["above_unigram", "unigram", "between", "bigram", "below_bigram"]
    assert yardsticks.at_unigram(3.32, ref) and not yardsticks.at_unigram(3.2, ref)
    assert not yardsticks.at_unigram(None, ref)  # a diverged trial has no loss
    assert yardsticks.level(2.0, {}) is None and yardsticks.yardstick(2.0, {"unigram": 3.3}) is None
