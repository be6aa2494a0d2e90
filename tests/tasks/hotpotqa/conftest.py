"""HotpotQA test builders, as fixtures: two hand-written questions and a file writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _hotpot_list() -> list[dict]:
    """Two hand-written questions: a bridge span answer and a comparison yes/no."""
    return [
        {"_id": "b1", "question": "Where was the founder of Tavrik born?", "answer": "Quellton",
         "type": "bridge", "level": "easy",
         "supporting_facts": [["Tavrik", 0], ["Quell Mebbit", 1]],
         "context": [["Tavrik", ["Tavrik was founded by Quell Mebbit.", " It has 31,000 people."]],
                     ["Quell Mebbit", ["Quell Mebbit was a trader.", " He was born in Quellton."]],
                     ["Zorbel", ["The Zorbel is a river."]]]},
        {"_id": "c1", "question": "Were Tavrik and Zorbel founded by the same person?",
         "answer": "no", "type": "comparison", "level": "medium",
         "supporting_facts": [["Tavrik", 0], ["Zorbel", 0]],
         "context": [["Tavrik", ["Tavrik was founded by Quell Mebbit."]],
                     ["Zorbel", ["Zorbel was founded by Ana Rusk."]]]},
    ]


def _write(tmp_path: Path, obj: object, name: str = "hotpot.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture()
def hotpot_list():
    """A function returning a fresh copy of the two questions (tests mutate it)."""
    return _hotpot_list


@pytest.fixture()
def write():
    """write(tmp_path, obj, name="hotpot.json") -> the path of obj written as JSON."""
    return _write
