"""HotpotQA's reader: the official JSON list -> typed, validated multi-hop examples.

A HotpotQA file (``hotpot_dev_distractor_v1.json`` and friends) is a JSON *list* of

    {"_id": str, "question": str, "answer": str, "type": "bridge"|"comparison",
     "level": str, "supporting_facts": [[title, sentence_index], ...],
     "context": [[title, [sentence, ...]], ...]}

where the distractor setting gives 10 paragraphs, 2 of them gold. Sentences keep their own
leading spaces (" He lives in ..."), so joining them gives the paragraph text back.
A SQuAD file is a JSON *object* with "data"; the task's `sniff` tells them apart by the first
non-blank character, without parsing the file.

Every error names the file, the JSON path (``[12].supporting_facts[1]``) and the ``_id``.
The official test file has no answers; ``require_gold=False`` accepts that (for predict).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from gpt2qa.data import (
    describe_json,
    expect_type,
    gc_paused,
    json_field,
    read_id_and_question,
    read_json_document,
)
from gpt2qa.errors import DataError, GPT2QAError

_T = TypeVar("_T")

AnswerType = Literal["span", "yes", "no"]
ANSWER_TYPES: tuple[AnswerType, ...] = ("span", "yes", "no")
BadFacts = Literal["error", "skip"]


@dataclass(frozen=True)
class Paragraph:
    """One titled paragraph; ``sentences`` joined with "" is its text."""

    title: str
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class HotpotExample:
    """One multi-hop question with its paragraphs and (when known) its gold labels."""

    qas_id: str
    question: str
    answer: str
    type: str
    level: str
    supporting_facts: tuple[tuple[str, int], ...]
    paragraphs: tuple[Paragraph, ...]

    @property
    def answer_type(self) -> AnswerType:
        """"yes"/"no" for those literal answers (as the official metric treats them), else span."""
        norm = self.answer.strip().lower()
        return norm if norm in ("yes", "no") else "span"  # type: ignore[return-value]

    def gold_titles(self) -> frozenset[str]:
        return frozenset(title for title, _ in self.supporting_facts)


@dataclass(frozen=True)
class HotpotDataset:
    """A loaded file; ``repairs`` lists every supporting fact dropped under ``bad_facts="skip"``."""

    path: str
    examples: tuple[HotpotExample, ...]
    repairs: tuple[str, ...] = ()


def load_hotpot(path: str | os.PathLike[str], require_gold: bool = True,
                bad_facts: BadFacts = "error") -> HotpotDataset:
    """Read and validate an official HotpotQA file (see `parse_hotpot`)."""
    obj = read_json_document(path)
    with gc_paused():
        return parse_hotpot(obj, str(path), require_gold, bad_facts)


def parse_hotpot(obj: Any, path: str, require_gold: bool = True,
                 bad_facts: BadFacts = "error") -> HotpotDataset:
    """Validate a parsed HotpotQA list.

    Refused: a non-list top level, a missing or mistyped field, an empty or duplicate ``_id``,
    an empty question, an empty context, a paragraph without sentences, and (unless
    ``bad_facts="skip"``, which drops them with a recorded repair) a supporting fact whose
    title is not among the paragraphs or whose index is past the paragraph's last sentence.
    ``type`` and ``level`` may be absent (read as ""). Without ``require_gold``, ``answer``
    and ``supporting_facts`` may be absent too (the official test file).
    """
    if bad_facts not in ("error", "skip"):
        raise GPT2QAError(f"bad_facts must be error or skip, got {bad_facts!r}")
    if not isinstance(obj, list):
        raise DataError(path, f"top level is {describe_json(obj)}, expected a HotpotQA list of "
                              "questions")
    if not obj:
        raise DataError(path, "the file holds no questions")
    seen: dict[str, str] = {}
    examples: list[HotpotExample] = []
    repairs: list[str] = []
    for i, item in enumerate(obj):
        where = f"[{i}]"
        expect_type(item, dict, path, where)
        qid, question = read_id_and_question(item, "_id", path, where, seen)
        paragraphs = _parse_context(json_field(item, "context", list, path, where, qid),
                                    f"{where}.context", path, qid)
        gold = require_gold or "answer" in item or "supporting_facts" in item
        answer = json_field(item, "answer", str, path, where, qid) if gold else ""
        if gold and not answer.strip():
            raise DataError(path, "answer is empty or whitespace only", f"{where}.answer", qid)
        facts: tuple[tuple[str, int], ...] = ()
        if gold:
            facts = _parse_facts(json_field(item, "supporting_facts", list, path, where, qid),
                                 f"{where}.supporting_facts", path, qid, paragraphs, bad_facts,
                                 repairs)
        qtype = expect_type(item.get("type", ""), str, path, f"{where}.type", qid)
        level = expect_type(item.get("level", ""), str, path, f"{where}.level", qid)
        examples.append(HotpotExample(qas_id=qid, question=question, answer=answer, type=qtype,
                                      level=level, supporting_facts=facts,
                                      paragraphs=paragraphs))
    return HotpotDataset(path=path, examples=tuple(examples), repairs=tuple(repairs))


def _titled_pair(pair: Any, typ: type[_T], shape: str, path: str, where: str,
                 qid: str) -> tuple[str, _T]:
    """A ``[title, value]`` list (a context paragraph or a supporting fact), checked."""
    pair = expect_type(pair, list, path, where, qid)
    if len(pair) != 2:
        raise DataError(path, f"expected {shape}, got {len(pair)} items", where, qid)
    return (expect_type(pair[0], str, path, f"{where}[0]", qid),
            expect_type(pair[1], typ, path, f"{where}[1]", qid))


def _parse_context(items: list[Any], where: str, path: str, qid: str) -> tuple[Paragraph, ...]:
    if not items:
        raise DataError(path, "context is empty (no paragraphs)", where, qid)
    out = []
    for p, pair in enumerate(items):
        where_p = f"{where}[{p}]"
        title, sentences = _titled_pair(pair, list, "[title, [sentences]]", path, where_p, qid)
        if not sentences:
            raise DataError(path, f"paragraph {json.dumps(title)} has no sentences",
                            f"{where_p}[1]", qid)
        for s, sentence in enumerate(sentences):
            expect_type(sentence, str, path, f"{where_p}[1][{s}]", qid)
        out.append(Paragraph(title=title, sentences=tuple(sentences)))
    if not any(s.strip() for para in out for s in para.sentences):
        raise DataError(path, "context is empty (every sentence is blank)", where, qid)
    return tuple(out)


def _parse_facts(items: list[Any], where: str, path: str, qid: str,
                 paragraphs: tuple[Paragraph, ...], bad_facts: BadFacts,
                 repairs: list[str]) -> tuple[tuple[str, int], ...]:
    lengths: dict[str, int] = {}
    for para in paragraphs:  # a repeated title: the longest paragraph of that name bounds idx
        lengths[para.title] = max(lengths.get(para.title, 0), len(para.sentences))
    out: list[tuple[str, int]] = []
    for f, pair in enumerate(items):
        where_f = f"{where}[{f}]"
        title, idx = _titled_pair(pair, int, "[title, sentence_index]", path, where_f, qid)
        problem = None
        if title not in lengths:
            problem = f"supporting fact names title {json.dumps(title)}, which is not in context"
        elif not 0 <= idx < lengths[title]:
            problem = (f"supporting fact points at sentence {idx} of {json.dumps(title)}, "
                       f"which has {lengths[title]} sentences")
        if problem is not None:
            if bad_facts == "error":
                raise DataError(path, problem, where_f, qid)
            repairs.append(f"{path}: {where_f}: id={qid}: dropped: {problem}")
            continue
        out.append((title, idx))
    return tuple(out)


def examples_to_hotpot_json(examples: list[HotpotExample] | tuple[HotpotExample, ...]
                            ) -> list[dict[str, Any]]:
    """Examples back in the official layout (loads back to the same examples)."""
    return [{"_id": ex.qas_id, "question": ex.question, "answer": ex.answer, "type": ex.type,
             "level": ex.level, "supporting_facts": [[t, i] for t, i in ex.supporting_facts],
             "context": [[p.title, list(p.sentences)] for p in ex.paragraphs]}
            for ex in examples]
