"""Shared fixtures: a byte-level BPE tokenizer trained in the test session, tiny SQuAD files.

The plain data behind them lives in builders.py; tests take it through these fixtures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import builders

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """The short English + non-ASCII corpus the test tokenizers are trained on."""
    return builders.CORPUS


@pytest.fixture(scope="session")
def squad_v2_dict():
    """squad_v2_dict(): a fresh small hand-written SQuAD 2.0 dict (answerable, unanswerable,
    non-ASCII) on every call, so a test may mutate what it gets."""
    return builders.squad_v2_dict


@pytest.fixture(scope="session")
def tiny_tokenizer(corpus):
    """A GPT-2-style byte-level BPE tokenizer trained here with `tokenizers` (vocab ~400)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", unk_token="<|endoftext|>")


@pytest.fixture()
def squad_v2_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-v2.json"
    path.write_text(json.dumps(builders.squad_v2_dict(), ensure_ascii=False), encoding="utf-8")
    return path


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or a clean skip when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def shared_data():
    """shared_data(*parts): the path of a file under ../shared/data; skips the test when the
    file is absent (a checkout without shared/)."""
    return shared_file
