"""A lossless character-level tokenizer that `AutoTokenizer` loads with no custom code.

One token per Unicode code point of the corpus, and byte fallback for everything else: a character never seen in
training becomes its UTF-8 bytes (`<0xE2>` ...), so any text round-trips exactly (spaces, CRLF, emoji, 𠮷) and
nothing turns into `[UNK]`. Built with the `tokenizers` library as a BPE model with no merges:

    ids 0 .. n-1        the corpus's characters, sorted (the same ids as nanoGPT's `stoi` for that corpus)
    n, n+1              <|endoftext|> (bos/eos, as in GPT-2) and <pad>
    n+2 .. n+257        the 256 byte tokens <0x00> .. <0xFF>

Tiny Shakespeare gives n = 65 and a vocabulary of 323.

`build_bpe_tokenizer` makes the other kind, to compare with: a byte-level BPE (GPT-2's scheme: text as UTF-8 bytes,
split by GPT-2's pre-tokenizer regex, merges learned from the training text by the `tokenizers` library) with the
same two specials first; it is lossless too and loads with `AutoTokenizer` with no custom code. `kind(tokenizer)`
tells them apart, and every helper here works for both.

Lone surrogates (U+D800-U+DFFF on their own) are not characters and have no UTF-8 form, so no tokenizer can encode
them; they reach Python from JSON (`"\\ud800"`), from a browser, and from command-line bytes that are not UTF-8.
`valid_text` is applied wherever outside text enters this project (the lab's prompt, train.py's prompts): a
surrogate pair becomes the character it encodes and every lone surrogate becomes U+FFFD, the replacement character,
which is what a browser or a UTF-8 decoder does with them. `encode` itself (the saved `tokenizer.json`, loaded with
no custom code) refuses such text with the `tokenizers` library's TypeError.
"""

import re
from collections.abc import Iterable

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from configuration_gpt2mini import GPT2MiniConfig

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
TOKENIZERS = ("char", "bpe")  # train.py --tokenizer
MIN_BPE_VOCAB = 2 + 256 + 1  # the specials, every byte, and at least one merge


def build_tokenizer(texts: str | Iterable[str], model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """A character tokenizer whose vocabulary is every character of `texts` plus specials and byte fallback."""
    if isinstance(texts, str):
        texts = [texts]
    chars = sorted(set().union(*map(set, texts)))
    if not chars:
        raise ValueError("cannot build a tokenizer from empty text")
    vocab = {c: i for i, c in enumerate(chars)}
    for token in (EOS_TOKEN, PAD_TOKEN, *BYTE_TOKENS):
        vocab[token] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, fuse_unk=False))
    # one pre-token per code point, so no merges are ever looked for
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",  # batched generation pads on the left
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,  # "<|endoftext|>" typed by a user is text, not a control token
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def build_bpe_tokenizer(
    texts: str | Iterable[str], vocab_size: int, model_max_length: int = 256
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of `vocab_size` tokens learned from `texts`: <|endoftext|> and <pad> (ids 0 and 1),
    the 256 bytes, then the merges, most frequent first (fewer if the text has fewer pairs to merge)."""
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_BPE_VOCAB:
        raise ValueError(f"a BPE vocabulary needs at least {MIN_BPE_VOCAB} tokens (2 specials, 256 bytes, a merge)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,
    )


def kind(tokenizer) -> str:
    """ "bpe" for a byte-level BPE tokenizer, "char" for this project's character tokenizer."""
    return "bpe" if isinstance(tokenizer.backend_tokenizer.pre_tokenizer, pre_tokenizers.ByteLevel) else "char"


def valid_text(text: str) -> str:
    """`text` with every surrogate pair joined into its character and every lone surrogate replaced by U+FFFD, so
    that it has a UTF-8 form and the tokenizer can encode it. Text without surrogates comes back unchanged."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def encode(tokenizer, text: str) -> torch.Tensor:
    """The whole text as token ids (int32), once per run.

    A character tokenizer maps each character to one id, so a dictionary lookup does it in a fraction of the
    tokenizer's time; text with characters outside the vocabulary, and every text for BPE (whose merges span
    characters), goes through the tokenizer."""
    vocab = tokenizer.get_vocab()
    try:
        if kind(tokenizer) != "char":
            raise KeyError("merges")
        ids = list(map(vocab.__getitem__, text))
    except KeyError:
        ids = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids
    return torch.tensor(ids, dtype=torch.int32)


def unseen_characters(tokenizer, text: str) -> list[str]:
    """Characters of `text` that are not in the vocabulary (they would be fed as UTF-8 bytes the model never saw);
    none for BPE, whose vocabulary is bytes and their merges."""
    if kind(tokenizer) != "char":
        return []
    vocab = tokenizer.get_vocab()
    return list(dict.fromkeys(c for c in text if c not in vocab))  # in order of appearance


def crop_to_tokens(tokenizer, text: str, n: int) -> str:
    """The longest end of `text` that takes at most `n` tokens, cut between characters (a character the vocabulary
    lacks takes one token per UTF-8 byte, and cutting through it would leave bytes that are no character). For BPE,
    the shortest cut found by bisection: a token there spans a character or more, so n characters never take more."""
    if kind(tokenizer) != "char":
        return _crop_bpe(tokenizer, text, n)
    vocab = tokenizer.get_vocab()
    used, start = 0, len(text)
    while start > 0:
        cost = 1 if text[start - 1] in vocab else len(text[start - 1].encode("utf-8"))
        if used + cost > n:
            break
        used, start = used + cost, start - 1
    return text[start:]


def _crop_bpe(tokenizer, text: str, n: int) -> str:
    """The earliest start whose rest of `text` takes at most n tokens, by bisection (the cut is always one that fits:
    the search only moves its end to starts that fit)."""

    def fits(start: int) -> bool:
        return len(tokenizer.backend_tokenizer.encode(text[start:], add_special_tokens=False).ids) <= n

    longest = max(map(len, tokenizer.get_vocab()))  # characters per token at most (byte-level: one per byte)
    lo, hi = max(0, len(text) - n * longest), len(text)
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return text[lo:]


def n_chars(tokenizer: PreTrainedTokenizerFast) -> int:
    """How many corpus characters the vocabulary holds (the rest are the 2 specials and 256 bytes)."""
    return len(tokenizer) - 2 - len(BYTE_TOKENS)


def config_for(tokenizer: PreTrainedTokenizerFast, **overrides) -> GPT2MiniConfig:
    """A model configuration sized to `tokenizer` (vocabulary and special-token ids); `overrides` set the rest."""
    kwargs = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2MiniConfig(**(kwargs | overrides))
