"""The lab's words, from the models' records: captions, where panes depart from the reference, look-alikes."""

from types import SimpleNamespace

from gpt2mini.lab import story as lab_story
from gpt2mini.words import Words

REF = {"unigram": 3.347, "bigram": 2.486}


def pane(name, ablations=None, loss=None, lr=None):
    training = {} if loss is None else {"val_split": loss, "lr": lr}
    return SimpleNamespace(name=name, ablations=ablations or {}, training=training)


def test_where_each_pane_departs_from_the_reference():
    assert lab_story.departures(["abcd", "abxd", "abcd", "zz"], reference=0) == [None, 2, None, 0]
    assert lab_story.departures(["abc", "ab"], reference=0) == [None, None]  # a shorter pane has not departed yet
    assert lab_story.departures(["abxd", "abcd"], reference=1) == [2, None]


def test_look_alikes_are_panes_that_agree_with_each_other_but_not_the_reference():
    assert lab_story.look_alikes(["ab", "xy", "xy", "ab", "q"], reference=0) == [[1, 2]]
    assert lab_story.look_alikes(["ab", "ab", "ab"], reference=0) == []  # agreeing with the reference is no puzzle


def test_a_caption_says_what_the_model_is_and_where_its_measured_loss_stands():
    text = lab_story.caption({"use_residual": False}, {"val_split": 3.3473, "lr": 0.004}, REF)
    assert text.startswith("Each sub-layer's output replaces its input")
    assert "Validation loss 3.347 (trained at lr 0.004), that is" in text and "unigram level (3.347)" in text
    assert lab_story.caption({}, {}, REF) == lab_story.meaning({}) + "."  # no record: only what it is
    two = lab_story.meaning({"use_mlp": False, "ln_style": "none"})
    assert "no LayerNorm anywhere" in two and "no feed-forward sub-layer" in two


def test_the_story_names_the_reference_and_explains_look_alikes_from_their_losses():
    entries = [pane("residual_off", {"use_residual": False}, 3.347), pane("baseline", {}, 1.85)]
    entries.append(pane("post_ln", {"ln_style": "post"}, 3.346))
    lines = lab_story.side_by_side_story(entries, ["aaa", "abc", "aaa"], REF)
    assert "departs from **baseline**" in lines[0]
    assert "residual off at character 2" in lines[0] and "post-LN at character 2" in lines[0]
    assert lines[1].startswith("residual off and post-LN write the same text: each is at the unigram level")
    entries[2] = pane("post_ln", {"ln_style": "post"}, 2.09)  # trained: the same text is then a coincidence
    lines = lab_story.side_by_side_story(entries, ["aaa", "abc", "aaa"], REF)
    assert "close enough that the same seed draws the same characters" in lines[1]
    assert lab_story.side_by_side_story(entries[:1], ["aaa"], REF) == []  # one pane: nothing to compare


def test_a_model_ignores_its_input_by_its_measured_input_dependence_first():
    flat, sharp = pane("a", {"use_residual": False}, 2.0), pane("b", {}, 3.347)
    flat.metrics = [{"input_dependence": 0.5}, {"input_dependence": 0.0007}]  # the last evaluation counts
    sharp.metrics = [{"input_dependence": 1.2}]
    assert lab_story.ignores_input(flat, REF) and not lab_story.ignores_input(sharp, REF)
    assert lab_story.ignores_input(pane("c", {}, 3.35), REF)  # no log: its loss at the unigram level says so


def test_the_story_speaks_japanese_from_the_same_records():
    ja = Words("ja")
    entries = [pane("residual_off", {"use_residual": False}, 3.347), pane("baseline", {}, 1.85)]
    entries.append(pane("post_ln", {"ln_style": "post"}, 3.346))
    lines = lab_story.side_by_side_story(entries, ["aaa", "abc", "aaa"], REF, ja)
    assert "**ベースライン**" in lines[0] and "残差接続なし：2 文字目から" in lines[0]
    assert (
        lines[1].startswith("「残差接続なし」と「Post-LN」は互いに同じ文章") and "ユニグラム水準（3.347）" in lines[1]
    )
    text = lab_story.caption({"use_residual": False}, {"val_split": 3.3473, "lr": 0.004}, REF, ja)
    assert (
        text == "各サブレイヤーの出力を入力に足さず、出力で入力を置き換える。検証損失 3.347（学習率 0.004 で学習）、"
        "ユニグラム水準（3.347）にあたる：文字の頻度だけを学び、それ以上は学んでいない。"
    )
    windows = {"residual_off": SimpleNamespace(window=[]), "baseline": SimpleNamespace(window=[0.001, 0.002])}
    sweep = SimpleNamespace(reference=REF, variants=windows)  # what tips reads of a records.SweepSummary
    said = lab_story.tips(entries, sweep, ja)
    assert set(said) == set(lab_story.tips(entries, sweep))  # the same tabs in either language
    assert "残差接続なし（該当なし）、ベースライン（0.001, 0.002）" in said["training"]
    assert not any(c.isascii() and c.isalpha() for c in said["knockout"].replace("L1", ""))
