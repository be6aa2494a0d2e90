"""MRQA shared-task JSON lines -> `SquadExample`s (docs/data.md).

An MRQA file (``SQuAD.jsonl.gz``, ``NewsQA.jsonl.gz``, ...) holds a header line, then one
context per line:

    {"context": str, "qas": [{"qid": str, "question": str,
                              "detected_answers": [{"text": str, "char_spans": [[s, e], ...]}],
                              ...}, ...], ...}

Every char span of every detected answer becomes an answer: spans are INCLUSIVE, so the
answer is ``context[s:e + 1]`` (the context's own text, which the detected ``text`` may
normalise). MRQA questions are all answerable; one marked ``is_impossible`` without answers is
read as unanswerable. Errors name the file, ``line N``, the JSON path in the line and the
``qid``; a span outside the context follows ``misaligned``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from gpt2qa.config import Misaligned
from gpt2qa.data import (
    Answer,
    Repair,
    SquadExample,
    describe_json,
    expect_type,
    json_field,
    nearest_occurrence,
    read_id_and_question,
)
from gpt2qa.errors import DataError
from gpt2qa.readers.lines import json_lines, refuse_lone_surrogates


class MrqaReader:
    """Reads an MRQA file's context lines in order; `seen` refuses a duplicate qid (None: not
    checked) and every dropped or moved span is appended to `repairs`."""

    def __init__(self, path: str, misaligned: Misaligned = "error", check_offsets: bool = True,
                 require_answers: bool = True, repairs: list[Repair] | None = None,
                 unique_ids: bool = True) -> None:
        self.path, self.misaligned = path, misaligned
        self.check_offsets, self.require_answers = check_offsets, require_answers
        self.repairs = repairs if repairs is not None else []
        self.seen: dict[str, str] | None = {} if unique_ids else None

    def examples(self) -> Iterator[SquadExample]:
        """Every question of the file, one context line at a time; the header is skipped."""
        for line in json_lines(self.path):
            value = line.value
            if line.number == 1 and isinstance(value, dict) and "header" in value:
                continue
            where = f"line {line.number}"
            expect_type(value, dict, self.path, where)
            context = json_field(value, "context", str, self.path, where)
            if not context.strip():
                raise DataError(self.path, "context is empty or whitespace only",
                                f"{where}: context")
            qas = json_field(value, "qas", list, self.path, where)
            for q, qa in enumerate(qas):
                example = self._question(qa, f"{where}: qas[{q}]", context)
                if example is None:
                    continue
                if line.surrogate:
                    refuse_lone_surrogates(self.path, f"{where}: qas[{q}]", example.qas_id, [
                        ("context", context), ("question", example.question),
                        *((f"answer {i}", a.text) for i, a in enumerate(example.answers))])
                yield example

    def _question(self, qa: Any, at: str, context: str) -> SquadExample | None:
        expect_type(qa, dict, self.path, at)
        seen = self.seen if self.seen is not None else {}
        qas_id, question = read_id_and_question(qa, "qid" if "qid" in qa else "id", self.path,
                                                at, seen)
        impossible = qa.get("is_impossible") is True
        if "detected_answers" in qa or (self.require_answers and not impossible):
            detected = json_field(qa, "detected_answers", list, self.path, at, qas_id)
        else:
            detected = []
        answers, dropped = self._spans(detected, f"{at}.detected_answers", context, qas_id)
        if impossible and answers:
            raise DataError(self.path, f"is_impossible is true but there are {len(answers)} "
                                       "detected answer spans", f"{at}.detected_answers", qas_id)
        if not answers and dropped:
            self.repairs.append(Repair(qas_id, at, "skipped", f"question skipped: none of its "
                                                              f"{dropped} spans is in the context"))
            return None
        if not answers and not impossible and self.require_answers:
            raise DataError(self.path, "no detected answers (MRQA questions are all "
                                       "answerable)", f"{at}.detected_answers", qas_id)
        return SquadExample(qas_id=qas_id, question=question, context=context,
                            answers=answers, is_impossible=impossible)

    def _spans(self, detected: list[Any], at: str, context: str,
               qas_id: str) -> tuple[tuple[Answer, ...], int]:
        """The answers of every in-context char span (each once) and how many were dropped."""
        answers: dict[tuple[int, int], Answer] = {}
        dropped = 0
        for d, item in enumerate(detected):
            where_d = f"{at}[{d}]"
            expect_type(item, dict, self.path, where_d, qas_id)
            text = json_field(item, "text", str, self.path, where_d, qas_id)
            spans = json_field(item, "char_spans", list, self.path, where_d, qas_id)
            for s, span in enumerate(spans):
                where_s = f"{where_d}.char_spans[{s}]"
                start, end = self._span(span, where_s, qas_id)
                answer = self._answer(start, end, text, context, where_s, qas_id)
                if answer is None:
                    dropped += 1
                else:
                    answers.setdefault((answer.answer_start, answer.answer_end), answer)
        return tuple(answers.values()), dropped

    def _span(self, span: Any, where: str, qas_id: str) -> tuple[int, int]:
        if (not isinstance(span, list) or len(span) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)):
            raise DataError(self.path, f"expected [start, end] (two integers), got "
                                       f"{describe_json(span)}", where, qas_id)
        return span[0], span[1]

    def _answer(self, start: int, end: int, text: str, context: str, where: str,
                qas_id: str) -> Answer | None:
        """The answer at inclusive [start, end], or what ``misaligned`` makes of a span that is
        not inside the context (moved to the detected text's nearest occurrence, or None)."""
        if 0 <= start <= end < len(context):
            return Answer(text=context[start:end + 1], answer_start=start)
        if not self.check_offsets:
            return Answer(text=text, answer_start=start)
        problem = (f"char span [{start}, {end}] (inclusive) is not inside the context "
                   f"(length {len(context)})")
        if self.misaligned == "error":
            raise DataError(self.path, problem, where, qas_id)
        found = (nearest_occurrence(context, text, start)
                 if self.misaligned == "fix-by-search" and text else None)
        if found is not None:
            self.repairs.append(Repair(qas_id, where, "fixed", f"span start {start} -> {found} "
                                                               f"({problem})"))
            return Answer(text=text, answer_start=found)
        self.repairs.append(Repair(qas_id, where, "skipped", f"span dropped: {problem}"))
        return None


def iter_mrqa(path: str | os.PathLike[str], misaligned: Misaligned = "error",
              check_offsets: bool = True, require_answers: bool = True,
              repairs: list[Repair] | None = None,
              unique_ids: bool = True) -> Iterator[SquadExample]:
    """`MrqaReader(...).examples()`: an MRQA file's questions, streamed."""
    return MrqaReader(str(path), misaligned, check_offsets, require_answers, repairs,
                      unique_ids).examples()
