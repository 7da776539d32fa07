"""Training text: the corpora shipped in `data/`, an Aozora Bunko cleaner, and the train/validation split.

`load_corpus("shakespeare")` gives Tiny Shakespeare (65 distinct characters); `load_corpus("wagahai")` gives
Natsume Soseki's 吾輩は猫である with Aozora Bunko's markup removed; any other UTF-8 file works by path. Problems with a
file (missing, not UTF-8, empty) raise `CorpusError` with a message meant for the person who named it.

Run `python -m gpt2mini.corpus` for a table of the shipped corpora, their sizes and vocabularies.
"""

import argparse
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from gpt2mini.paths import DATA_DIR


class CorpusError(ValueError):
    """A corpus name or file that cannot be used, with a message that says why."""


@dataclass(frozen=True)
class CorpusSpec:
    """A named corpus: files under `data/`, joined by a blank line, cleaned as Aozora Bunko text if `aozora`."""

    name: str
    files: tuple[str, ...]
    description: str
    language: str
    aozora: bool = False
    sample_prompt: str = "\n"


_SOSEKI = ("wagahai_neko.txt", "botchan.txt", "sanshiro.txt", "kokoro.txt")
CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in (
        CorpusSpec(
            "shakespeare", ("tinyshakespeare.txt",), "Tiny Shakespeare (char-rnn excerpt)", "en", False, "ROMEO:"
        ),
        CorpusSpec("wagahai", ("wagahai_neko.txt",), "夏目漱石『吾輩は猫である』", "ja", True, "吾輩は"),
        CorpusSpec("soseki", _SOSEKI, "夏目漱石: 吾輩は猫である, 坊っちゃん, 三四郎, こころ", "ja", True, "吾輩は"),
        CorpusSpec(
            "aozora",
            _SOSEKI + ("ginga_tetsudo_no_yoru.txt", "hana.txt", "rashomon.txt"),
            "All seven Aozora Bunko works: Soseki's four, 銀河鉄道の夜, 鼻, 羅生門",
            "ja",
            True,
            "吾輩は",
        ),
    )
}


# ---------------------------------------------------------------------------------------------------------------------
# Reading files


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (CRLF kept as is), or raise `CorpusError` saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"corpus file not found: {path} (named corpora: {', '.join(CORPORA)})")
    if not path.is_file():
        raise CorpusError(f"corpus path is not a file: {path}")
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark is not text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start} cannot be decoded); convert it "
            "first, for example: iconv -f SHIFT_JIS -t UTF-8 in.txt > out.txt"
        ) from None
    if not text.strip():
        raise CorpusError(f"{path} is empty: a corpus needs some text to learn from")
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Aozora Bunko markup

_RULE = "-" * 55
_RUBY = re.compile(r"《[^》]*》")
_GAIJI = re.compile(r"※［＃([^］]*)］")
_ANNOTATION = re.compile(r"［＃[^］]*］")
_JIS_CODE = re.compile(r"(?:第[34]水準)?([12])-(\d{1,2})-(\d{1,2})")
_UNICODE_CODE = re.compile(r"U\+([0-9A-Fa-f]{4,6})")
_ACCENT_SPAN = re.compile(r"〔([^〕]*[A-Za-z][^〕]*)〕")
# Aozora's accent decomposition: a letter followed by a mark stands for one accented letter
_MARKS = {
    "'": ("\u0301", "aeiouyAEIOUY"),
    "`": ("\u0300", "aeiouAEIOU"),
    "^": ("\u0302", "aeiouAEIOU"),
    ":": ("\u0308", "aeiouyAEIOUY"),
    "~": ("\u0303", "aonAON"),
    ",": ("\u0327", "cC"),
    "@": ("\u030a", "aA"),
}
_LIGATURES = {"ae&": "æ", "AE&": "Æ", "oe&": "œ", "OE&": "Œ", "s&": "ß", "o/": "ø", "O/": "Ø"}


def _gaiji_char(annotation: str) -> str:
    """The character an Aozora gaiji note describes, from its JIS X 0213 men-ku-ten or Unicode code; '' if neither."""
    if m := _UNICODE_CODE.search(annotation):
        return chr(int(m.group(1), 16))
    if m := _JIS_CODE.search(annotation):
        plane, row, cell = (int(g) for g in m.groups())
        if 1 <= row <= 94 and 1 <= cell <= 94:
            raw = bytes([0xA0 + row, 0xA0 + cell])
            try:
                return (raw if plane == 1 else b"\x8f" + raw).decode("euc_jis_2004")
            except UnicodeDecodeError:
                return ""
    return ""


def _compose_accents(span: str) -> str:
    for seq, char in _LIGATURES.items():
        span = span.replace(seq, char)

    def compose(m: re.Match) -> str:
        letter, mark = m.group(1), m.group(2)
        combining, letters = _MARKS[mark]
        if letter not in letters:
            return m.group(0)
        composed = unicodedata.normalize("NFC", letter + combining)
        return composed if len(composed) == 1 else m.group(0)

    return re.sub(r"([A-Za-z])(['`^:~,@])", compose, span)


def clean_aozora(text: str) -> str:
    """Strip Aozora Bunko markup and keep the work's text.

    Removes the title/author lines and the legend block (everything up to the second 55-dash rule), the footer
    (from 底本： on), ruby 《…》 and its start marker ｜, editor's notes ［＃…］, and replaces gaiji notes
    ※［＃…、第3水準1-84-77］ by the character their JIS X 0213 or Unicode code names (dropped when there is none).
    Accent-decomposed Latin in 〔…〕 becomes accented letters (e' -> é, ae& -> æ). Runs of blank lines collapse to one.
    """
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    rules = [i for i, line in enumerate(lines) if line.strip() == _RULE]
    if len(rules) >= 2 and rules[0] < 10:
        lines = lines[rules[1] + 1 :]
    text = "\n".join(lines)
    footer = text.find("\n底本：")
    if footer != -1:
        text = text[:footer]
    text = _GAIJI.sub(lambda m: _gaiji_char(m.group(1)), text)
    text = _RUBY.sub("", text).replace("｜", "")
    text = _ANNOTATION.sub("", text)
    text = _ACCENT_SPAN.sub(lambda m: _compose_accents(m.group(1)), text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n"


def looks_like_aozora(text: str) -> bool:
    """True for text with Aozora Bunko's markers (the legend heading, or ruby together with the 底本： footer)."""
    return "【テキスト中に現れる記号について】" in text or ("《" in text and "\n底本：" in text)


# ---------------------------------------------------------------------------------------------------------------------
# Corpora


def load_corpus(name_or_path: str | Path, clean: bool | None = None) -> str:
    """The text of a named corpus (see `CORPORA`) or of any UTF-8 file.

    `clean`: apply the Aozora cleaner; by default named Japanese corpora are cleaned and other files are cleaned
    only if they look like Aozora Bunko text.
    """
    spec = CORPORA.get(str(name_or_path))
    if spec is not None:
        texts = [read_text(DATA_DIR / f) for f in spec.files]
        if clean if clean is not None else spec.aozora:
            texts = [clean_aozora(t) for t in texts]
        return "\n".join(t.rstrip("\n") + "\n" for t in texts) if len(texts) > 1 else texts[0]
    path = Path(name_or_path)
    if not path.exists() and path.suffix == "" and path.parent == Path("."):
        raise CorpusError(f"unknown corpus {str(name_or_path)!r}: choose one of {', '.join(CORPORA)} or give a file")
    text = read_text(path)
    if clean if clean is not None else looks_like_aozora(text):
        text = clean_aozora(text)
    return text


def train_val_split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split by position: the first (1 - val_fraction) of the characters train, the rest validate (as nanoGPT)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = int(len(text) * (1 - val_fraction))
    if n == 0 or n == len(text):
        raise CorpusError(f"a text of {len(text)} characters is too short to split into training and validation")
    return text[:n], text[n:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List the shipped corpora (or inspect a file) with their sizes.")
    parser.add_argument("corpus", nargs="*", help="corpus names or UTF-8 files (default: every shipped corpus)")
    parser.add_argument("--show", type=int, default=0, metavar="N", help="print the first N characters of each")
    args = parser.parse_args(argv)
    names = args.corpus or list(CORPORA)
    print(f"{'corpus':<14}{'characters':>12}{'distinct':>10}{'train':>10}{'val':>9}  description")
    for name in names:
        try:
            text = load_corpus(name)
        except CorpusError as e:
            parser.exit(2, f"error: {e}\n")
        train, val = train_val_split(text)
        desc = CORPORA[name].description if name in CORPORA else "file"
        print(f"{name:<14}{len(text):>12,}{len(set(text)):>10,}{len(train):>10,}{len(val):>9,}  {desc}")
        if args.show:
            print(text[: args.show])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
