"""The shipped corpora, the Aozora Bunko cleaner on real text, and clear errors for bad files."""

import hashlib
import re

import pytest

from gpt2mini.corpus import CORPORA, DATA_DIR, CorpusError, clean_aozora, load_corpus, read_text, train_val_split


def test_shipped_files_match_their_provenance():
    provenance = (DATA_DIR / "PROVENANCE.md").read_text(encoding="utf-8")
    for name, digest in re.findall(r"\| (\w+\.txt) \|.*\| ([0-9a-f]{64}) \|", provenance):
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name
    assert len(re.findall(r"\| (\w+\.txt) \|.*\| ([0-9a-f]{64}) \|", provenance)) == 8


def test_shakespeare_is_the_blogs_65_characters():
    text = load_corpus("shakespeare")
    assert len(text) == 1_115_394 and len(set(text)) == 65
    train, val = train_val_split(text)
    assert train + val == text and len(val) == 111_540


def test_wagahai_is_clean():
    text = load_corpus("wagahai")
    assert text.startswith("一\n\n　吾輩は猫である。名前はまだ無い。\n")
    for marker in ("《", "》", "｜", "［＃", "※", "底本", "テキスト中に現れる記号", "-----"):
        assert marker not in text, marker
    assert text.rstrip().endswith("ありがたいありがたい。")
    assert "譃わられた" in text  # gaiji ※［＃「言＋墟のつくり」、第4水準2-88-74］ resolved through JIS X 0213


def test_aozora_cleaner_on_a_real_excerpt():
    lines = (DATA_DIR / "wagahai_neko.txt").read_text(encoding="utf-8").split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("　吾輩《わがはい》は猫である"))
    gaiji = next(line for line in lines if "第4水準2-88-74］《いつ》" in line)
    sentence = gaiji[gaiji.index("「何が」") : gaiji.index("気がつかない。") + len("気がつかない。")]
    footer = lines.index(next(line for line in lines if line.startswith("底本：")))
    excerpt = "\r\n".join(
        lines[: first + 1] + [sentence, "", "", "", "〔ve'rite'《ヴェリテ》 vraie《ヴレイ》.〕"] + lines[footer:]
    )
    assert clean_aozora(excerpt) == (
        "一\n\n　吾輩は猫である。名前はまだ無い。\n「何が」と主人はまだ譃わられた事に気がつかない。\n\nvérité vraie.\n"
    )


def test_aozora_annotations_and_gaiji_codes():
    text = (
        "［＃ここから２字下げ］\n※［＃「てへん＋劣」、第3水準1-84-77］と※［＃小書き片仮名ヒ、1-6-84］と"
        "※［＃「口＋世」、U+546D、12-3］と※［＃説明のみ］\n"
    )
    assert clean_aozora(text) == "挘とㇶと呭と\n"


def test_named_japanese_corpora_join_their_works():
    soseki = load_corpus("soseki")
    assert "吾輩は猫である。" in soseki and "親譲りの無鉄砲で" in soseki and "三四郎" in soseki
    assert len(load_corpus("aozora")) > len(soseki) > len(load_corpus("wagahai"))
    assert set(CORPORA) >= {"shakespeare", "wagahai", "soseki", "aozora"}


def test_any_utf8_file_works_and_aozora_files_are_detected(tmp_path):
    plain = tmp_path / "mine.txt"
    plain.write_text("hello 《not ruby here》\n", encoding="utf-8")
    assert load_corpus(plain) == "hello 《not ruby here》\n"
    aozora = tmp_path / "aozora.txt"
    aozora.write_bytes((DATA_DIR / "hana.txt").read_bytes())
    assert "《" not in load_corpus(aozora)
    assert load_corpus(aozora, clean=False) == (DATA_DIR / "hana.txt").read_text(encoding="utf-8")


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        read_text(tmp_path / "missing.txt")
    sjis = tmp_path / "sjis.txt"
    sjis.write_bytes("吾輩は猫である".encode("cp932"))
    with pytest.raises(CorpusError, match="not UTF-8.*iconv"):
        load_corpus(sjis)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(empty)
    with pytest.raises(CorpusError, match="unknown corpus 'shakespear'.*shakespeare"):
        load_corpus("shakespear")
    with pytest.raises(CorpusError, match="not a file"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="too short"):
        train_val_split("a")


def test_corpus_command_lists_corpora(capsys):
    from gpt2mini.corpus import main

    assert main(["shakespeare"]) == 0
    out = capsys.readouterr().out
    assert "shakespeare" in out and "1,115,394" in out and "65" in out
    with pytest.raises(SystemExit) as exc:
        main(["nonexistent"])
    assert exc.value.code == 2
