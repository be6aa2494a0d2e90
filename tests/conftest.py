"""Shared fixtures: a byte-level BPE tokenizer trained in the test session, tiny SQuAD files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CORPUS = [
    "The Eiffel Tower was completed in 1889 in Paris, France.",
    "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    "The river Zorbel flows 412 kilometres from the Hask mountains to the sea.",
    "Who built the tower? When was it completed? Where does the river flow?",
    "Émile Zola wrote novels; café culture thrived 🎉 in the 19th century.",
    "Tavrik is a city of 31,000 people founded by Quell Mebbit in 1834.",
] * 20


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer trained here with `tokenizers` (vocab ~400)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", unk_token="<|endoftext|>")


def squad_v2_dict() -> dict:
    """A small hand-written SQuAD 2.0 file: answerable, unanswerable, non-ASCII."""
    ctx1 = "The Eiffel Tower was completed in 1889 in Paris, France."
    ctx2 = "Émile Zola wrote novels; café culture thrived 🎉 in the 19th century."
    return {
        "version": "v2.0",
        "data": [
            {"title": "Tower", "paragraphs": [{"context": ctx1, "qas": [
                {"id": "q1", "question": "When was the Eiffel Tower completed?",
                 "answers": [{"text": "1889", "answer_start": ctx1.index("1889")}],
                 "is_impossible": False},
                {"id": "q2", "question": "Who designed the Eiffel Tower?", "answers": [],
                 "plausible_answers": [{"text": "Paris", "answer_start": ctx1.index("Paris")}],
                 "is_impossible": True},
            ]}]},
            {"title": "Zola", "paragraphs": [{"context": ctx2, "qas": [
                {"id": "q3", "question": "What did Émile Zola write?",
                 "answers": [{"text": "novels", "answer_start": ctx2.index("novels")}],
                 "is_impossible": False},
            ]}]},
        ],
    }


@pytest.fixture()
def squad_v2_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-v2.json"
    path.write_text(json.dumps(squad_v2_dict(), ensure_ascii=False), encoding="utf-8")
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
