"""The character tokenizer: lossless on any text, nanoGPT's ids, byte fallback, and AutoTokenizer reloads it."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2mini.corpus import load_corpus
from gpt2mini.tokenizer import BYTE_TOKENS, EOS_TOKEN, build_tokenizer, n_chars

HARD = [
    "  leading spaces and trailing  ",
    "\n\nleading newlines\n",
    "CRLF\r\nline\r\n",
    "tab\tand\x0bvertical\x0cfeed",
    "吾輩は猫である。名前はまだ無い。 Mixed English and 日本語, full-width　space.",
    "emoji 😀👍🏽 and a family 👨‍👩‍👧 and 𠮷野家",
    "unseen: é ñ ß Ω ж ع € \u200b zero width, \x00 NUL",
    "special-looking text: <|endoftext|> <pad> <0x41> [UNK]",
    "",
]


@pytest.fixture(scope="module")
def shakespeare_tok():
    return build_tokenizer(load_corpus("shakespeare"))


def test_vocabulary_layout(shakespeare_tok):
    tok = shakespeare_tok
    text = load_corpus("shakespeare")
    chars = sorted(set(text))
    assert n_chars(tok) == 65 and len(tok) == 65 + 2 + 256 == 323
    assert [tok.convert_tokens_to_ids(c) for c in chars] == list(range(65))  # nanoGPT's stoi
    assert tok.eos_token == tok.bos_token == EOS_TOKEN and tok.eos_token_id == 65 and tok.pad_token_id == 66
    assert tok.convert_tokens_to_ids(BYTE_TOKENS[0]) == 67 and tok.padding_side == "left"
    assert tok.encode("First Citizen:", add_special_tokens=False) == [chars.index(c) for c in "First Citizen:"]


@pytest.mark.parametrize("text", HARD)
def test_hard_text_round_trips(shakespeare_tok, text):
    ids = shakespeare_tok.encode(text, add_special_tokens=False)
    assert shakespeare_tok.decode(ids) == text
    assert shakespeare_tok.unk_token_id is None or shakespeare_tok.unk_token_id not in ids


def test_unseen_characters_fall_back_to_utf8_bytes(shakespeare_tok):
    ids = shakespeare_tok.encode("é😀", add_special_tokens=False)
    assert shakespeare_tok.convert_ids_to_tokens(ids) == ["<0xC3>", "<0xA9>", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    japanese = build_tokenizer("吾輩は猫である")
    assert len(japanese.encode("吾輩は猫", add_special_tokens=False)) == 4  # one token per seen character


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_unicode_text_round_trips(text):
    tok = _SMALL
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


_SMALL = build_tokenizer("abc 吾輩\n")


def test_saved_tokenizer_loads_in_a_fresh_process_without_custom_code(tmp_path, shakespeare_tok):
    shakespeare_tok.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    script = (
        "import sys, json\n"
        "from transformers import AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "texts = json.loads(sys.stdin.read())\n"
        "same = [tok.decode(tok.encode(t, add_special_tokens=False)) == t for t in texts]\n"
        "print(json.dumps(same, separators=(',', ':')), len(tok), tok.padding_side, tok.eos_token)\n"
    )
    import json

    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        input=json.dumps(HARD),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    flags, size, side, eos = out.stdout.split()
    assert json.loads(flags) == [True] * len(HARD)
    assert (size, side, eos) == ("323", "left", EOS_TOKEN)


def test_empty_text_cannot_build_a_tokenizer():
    with pytest.raises(ValueError, match="empty"):
        build_tokenizer("")


# ---------------------------------------------------------------------------------------------------------------------
# Byte-level BPE: the tokenizer to compare with


@pytest.fixture(scope="module")
def bpe():
    from gpt2mini.tokenizer import build_bpe_tokenizer

    return build_bpe_tokenizer(load_corpus("shakespeare")[:200_000], 600)


@pytest.mark.parametrize("text", HARD)
def test_bpe_is_lossless_and_merges_characters(bpe, text):
    from gpt2mini.tokenizer import encode, kind

    ids = encode(bpe, text).tolist()
    assert bpe.decode(ids) == text and ids == bpe.backend_tokenizer.encode(text, add_special_tokens=False).ids
    assert kind(bpe) == "bpe" and kind(build_tokenizer("ab")) == "char"


def test_bpe_encode_never_takes_the_per_character_shortcut(bpe):
    # every single letter is in a byte-level vocabulary too: looking characters up one by one would skip the merges
    from gpt2mini.tokenizer import encode

    assert len(encode(bpe, "the king")) < len("the king")
    assert encode(bpe, "abc").tolist() == bpe.backend_tokenizer.encode("abc", add_special_tokens=False).ids


def test_bpe_specials_come_first_and_autotokenizer_reloads_it_without_code(bpe, tmp_path):
    from transformers import AutoTokenizer

    assert len(bpe) == 600 and bpe.convert_ids_to_tokens([0, 1]) == [EOS_TOKEN, "<pad>"]
    bpe.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    for text in HARD:
        assert again(text, add_special_tokens=False)["input_ids"] == bpe(text, add_special_tokens=False)["input_ids"]


def test_bpe_crop_keeps_the_longest_end_that_fits(bpe):
    from gpt2mini.tokenizer import crop_to_tokens, encode

    text = load_corpus("shakespeare")[:3000] + "吾輩は猫である😀"
    for n in (1, 7, 64, 256):
        kept = crop_to_tokens(bpe, text, n)
        assert text.endswith(kept) and len(encode(bpe, kept)) <= n
        assert len(kept) == len(text) or len(encode(bpe, text[-len(kept) - 1 :])) > n


def test_a_bpe_vocabulary_too_small_for_the_bytes_is_refused():
    from gpt2mini.tokenizer import build_bpe_tokenizer

    with pytest.raises(ValueError, match="at least 259 tokens"):
        build_bpe_tokenizer("abc", 258)
