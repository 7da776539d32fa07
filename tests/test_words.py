"""The lab's two languages come from one table: every key in both, with the same placeholders, and every variant
named in both."""

import string

import pytest

from configuration_gpt2mini import variants
from gpt2mini.words import ENGLISH, LANGUAGES, TABLE, Words, translations


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def test_every_key_is_in_every_language_with_the_same_placeholders():
    for key, texts in TABLE.items():
        assert set(texts) == set(LANGUAGES), key
        assert all(texts.values()), key
        assert placeholders(texts["ja"]) == placeholders(texts["en"]), key


def test_every_variant_has_a_name_and_a_meaning_in_every_language():
    for name in variants():
        for language in LANGUAGES:
            say = Words(language)
            assert say.variant(name) != name or language == "en" and name == "baseline"
            assert say(f"meaning.{name}")
    assert ENGLISH.variant("residual_off") == "residual off" and Words("ja").variant("residual_off") == "残差接続なし"
    assert Words("ja").variant("my_run") == "my_run"  # a model of your own keeps its name


def test_a_missing_key_or_language_fails_loudly():
    with pytest.raises(KeyError):
        ENGLISH("no such key")
    with pytest.raises(ValueError, match="no language 'fr'"):
        Words("fr")


def test_gradio_gets_the_fixed_words_only():
    found = translations()
    assert set(found) == set(LANGUAGES) and set(found["en"]) == set(found["ja"])
    assert found["ja"]["tab.next-character"] == "次の文字"
    assert "intro" not in found["en"]  # worded by the server, with its numbers
