"""Loading fast tokenizers, and training small ones for tests, the demo and the backbone matrix.

Two families are trained here: GPT-2's byte-level BPE (also NeoX's and Qwen's kind) and the
SentencePiece-style BPE of Llama 2 / Mistral (Metaspace pre-tokenizer, byte fallback, `<s>`
added in front of every encoding).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from gpt2qa.errors import GPT2QAError
from gpt2qa.reading import read_json_object

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


def train_metaspace_tokenizer(texts: Iterable[str], vocab_size: int = 600,
                              min_frequency: int = 2, limit_alphabet: int = 100,
                              bos: str = "<s>", eos: str = "</s>", unk: str = "<unk>"):
    """Train a SentencePiece-style BPE (Llama 2's and Mistral's kind) and wrap it for transformers.

    Spaces become "▁" glued to the next word (with one "▁" put in front of the text); a
    character outside the vocabulary falls back to its UTF-8 bytes (`<0xE2>`, ...), never to
    `<unk>`. Like Llama's tokenizer it puts `bos` in front of every encoding when special
    tokens are added, and it has no pad token. `limit_alphabet` keeps rare characters out of
    the vocabulary, so byte fallback is exercised.
    """
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=unk, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[unk, bos, eos], limit_alphabet=limit_alphabet,
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    # The trainer knows nothing of byte fallback: append the 256 byte tokens to the vocabulary.
    obj = json.loads(tok.to_str())
    vocab = obj["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    obj["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(obj))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   unk_token=unk)


def load_tokenizer(name_or_dir: str | os.PathLike[str]):
    """Load a fast tokenizer from a hub id or a directory.

    A directory holding only GPT-2's original ``vocab.json`` and ``merges.txt`` (no
    ``tokenizer.json``) is loaded as a GPT-2 tokenizer.
    """
    from transformers import AutoTokenizer, GPT2Tokenizer

    path = Path(name_or_dir)
    refuse_remote_code(path)
    check_tokenizer_files(path)
    try:
        if path.is_dir() and not (path / "tokenizer.json").exists() \
                and (path / "vocab.json").exists() and (path / "merges.txt").exists():
            tok = GPT2Tokenizer.from_pretrained(str(path), trust_remote_code=False)
        else:
            tok = AutoTokenizer.from_pretrained(str(name_or_dir), **hub_kwargs(str(name_or_dir)))
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise GPT2QAError(load_failure(str(name_or_dir), "tokenizer", exc)) from None
    if not getattr(tok, "is_fast", False):
        raise GPT2QAError(f"{name_or_dir}: gpt2qa needs a fast tokenizer (offset mappings); "
                          f"got {type(tok).__name__}")
    check_tokenizer(tok, str(name_or_dir))
    return tok


TOKENIZER_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                        "added_tokens.json")
"""The JSON files transformers reads from a tokenizer folder; each must hold a JSON object."""


def check_tokenizer_files(path: Path) -> None:
    """One GPT2QAError line naming the file for a local tokenizer folder whose JSON files are
    not JSON objects, or whose tokenizer.json the tokenizers library cannot build a tokenizer
    from (transformers would fail later with a KeyError or AttributeError)."""
    if not path.is_dir():
        return
    for name in TOKENIZER_JSON_FILES:
        file = path / name
        if not file.is_file():
            continue
        read_json_object(file)
    if (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # the Rust parser's own error type: a field missing or wrong
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise GPT2QAError(f"{path / 'tokenizer.json'}: not a tokenizer the tokenizers "
                              f"library can build ({first})") from None


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


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the model hub (HF_ENDPOINT) opens within `timeout` s."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json")
"""Where an `auto_map` (a folder's own Python classes) would ask transformers to run code."""


def refuse_remote_code(name_or_dir: str | os.PathLike[str]) -> None:
    """One GPT2QAError line, naming `auto_map` and the file, for a local folder whose
    config.json or tokenizer_config.json maps classes to its own Python files. gpt2qa never
    runs such code (every ``from_pretrained`` gets ``trust_remote_code=False``); refusing
    here, before transformers reads the folder, also keeps it from asking "Do you wish to run
    the custom code? [y/N]". A file that is absent or not JSON is left to the loader."""
    path = Path(name_or_dir)
    if not path.is_dir():
        return
    for name in REMOTE_CODE_FILES:
        try:
            obj = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and "auto_map" in obj:
            raise GPT2QAError(f"{path / name}: auto_map asks to run Python code from the model "
                              "folder; gpt2qa never runs a folder's own code (remove auto_map "
                              "and use a model type transformers knows)")


def hub_kwargs(name_or_dir: str) -> dict[str, bool]:
    """``from_pretrained`` options for `name_or_dir`: never ``trust_remote_code``, and
    ``local_files_only`` when it is a hub id and the hub cannot be reached, so the load uses
    the local cache or fails at once (otherwise huggingface_hub retries for about a minute
    before giving up). A local folder with `auto_map` is refused (`refuse_remote_code`)."""
    refuse_remote_code(name_or_dir)
    kwargs = {"trust_remote_code": False}
    if Path(name_or_dir).exists() or os.environ.get("HF_HUB_OFFLINE") == "1":
        return kwargs
    return kwargs if hub_reachable() else {**kwargs, "local_files_only": True}


def load_failure(name: str, what: str, exc: BaseException) -> str:
    """One line for a failed hub or directory load."""
    if Path(name).exists():
        return f"{name}: could not load the {what} from this directory: {str(exc).splitlines()[0]}"
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if offline:
        hint = "HF_HUB_OFFLINE=1 is set, so only the local cache was searched"
    elif not hub_reachable():
        hint = "the model hub cannot be reached from here, and the local cache has no copy"
    else:
        hint = "the model hub has no such repository, or it is private"
    return (f"{name}: no such local directory, and loading the {what} from the Hugging Face hub "
            f"failed ({hint}). Pass a local directory, or run where the hub is reachable.")
