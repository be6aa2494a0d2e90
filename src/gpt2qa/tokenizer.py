"""Loading GPT-2-style byte-level BPE tokenizers, and training small ones for tests and the demo."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gpt2qa.errors import GPT2QAError

EOS_TOKEN = "<|endoftext|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer (GPT-2's kind) and wrap it for transformers.

    The only special token is GPT-2's ``<|endoftext|>``; features adds its own.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=[EOS_TOKEN], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS_TOKEN,
                                   bos_token=EOS_TOKEN, unk_token=EOS_TOKEN)


def load_tokenizer(name_or_dir: str | os.PathLike[str]):
    """Load a fast tokenizer from a hub id or a directory.

    A directory holding only GPT-2's original ``vocab.json`` and ``merges.txt`` (no
    ``tokenizer.json``) is loaded as a GPT-2 tokenizer.
    """
    from transformers import AutoTokenizer, GPT2Tokenizer

    path = Path(name_or_dir)
    try:
        if path.is_dir() and not (path / "tokenizer.json").exists() \
                and (path / "vocab.json").exists() and (path / "merges.txt").exists():
            tok = GPT2Tokenizer.from_pretrained(str(path))
        else:
            tok = AutoTokenizer.from_pretrained(str(name_or_dir))
    except (OSError, ValueError) as exc:
        raise GPT2QAError(_load_failure(str(name_or_dir), "tokenizer", exc)) from None
    if not getattr(tok, "is_fast", False):
        raise GPT2QAError(f"{name_or_dir}: gpt2qa needs a fast tokenizer (offset mappings); "
                          f"got {type(tok).__name__}")
    check_tokenizer(tok, str(name_or_dir))
    return tok


PROBE_TEXT = "When was the tower completed? It was completed in 1889."


def check_tokenizer(tokenizer, name: str) -> None:
    """Refuse a tokenizer that maps non-empty text to no tokens.

    transformers 5 builds such a tokenizer without a word, e.g. GPT2TokenizerFast from
    vocab/merges paths that hold nothing; with it every context is empty and a model can
    only ever learn to abstain.
    """
    ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    if not ids:
        raise GPT2QAError(f"{name}: the tokenizer maps text to no tokens (an empty vocabulary?); "
                          f"{PROBE_TEXT!r} gave []")


def _load_failure(name: str, what: str, exc: BaseException) -> str:
    """One line for a failed hub or directory load."""
    if Path(name).exists():
        return f"{name}: could not load the {what} from this directory: {str(exc).splitlines()[0]}"
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = ("HF_HUB_OFFLINE=1 is set, so only the local cache was searched"
            if offline else "the model hub could not be reached or has no such repository")
    return (f"{name}: no such local directory, and loading the {what} from the Hugging Face hub "
            f"failed ({hint}). Pass a local directory, or run where the hub is reachable.")
