"""The `data` stage: SQuAD JSON (v1.1 or v2.0) -> typed, validated examples.

`load_squad` reads a file in the official layout and refuses bad input with one
`DataError` that names the file, the JSON path and the question id. Misaligned
answers (an ``answer_start`` that does not point at the answer text) either stop
loading or are skipped / moved by search, and every such repair is recorded in
`SquadDataset.repairs`. `examples_to_squad_json` writes examples back.
"""

from __future__ import annotations

import codecs
import gc
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from gpt2qa.config import MISALIGNED_MODES, Misaligned
from gpt2qa.errors import DataError, GPT2QAError
from gpt2qa.reading import loads_json


@dataclass(frozen=True)
class Answer:
    """One gold (or plausible) answer: its text and the character offset where it starts."""

    text: str
    answer_start: int

    @property
    def answer_end(self) -> int:
        """Exclusive character end offset."""
        return self.answer_start + len(self.text)


@dataclass(frozen=True)
class SquadExample:
    """One question about one context, as in the official layout.

    ``answers`` is empty exactly when ``is_impossible`` is true (SQuAD 2.0).
    """

    qas_id: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    is_impossible: bool
    title: str = ""
    plausible_answers: tuple[Answer, ...] = ()


@dataclass(frozen=True)
class Repair:
    """An answer that `load_squad` skipped or moved instead of refusing the file."""

    qas_id: str
    json_path: str
    action: Literal["skipped", "fixed"]
    detail: str


@dataclass(frozen=True)
class SquadDataset:
    """A loaded file: its examples, its version and every repair made while loading."""

    path: str
    version: str
    is_v2: bool
    examples: tuple[SquadExample, ...]
    repairs: tuple[Repair, ...] = ()


_T = TypeVar("_T")

V2_VERSIONS = frozenset({"v2.0", "2.0"})
"""Version strings that mark a SQuAD 2.0 file (one with unanswerable questions)."""

_MISSING = object()

# A JSON escape of a lone UTF-16 surrogate: a high one (\uD800-\uDBFF) not followed by a
# low one (\uDC00-\uDFFF), or a low one not after a high one. Text decoded from valid
# UTF-8 can only hold a surrogate through such an escape, so the exact check (a walk over
# every string) runs only for files where this finds one; paired escapes (an emoji in an
# ensure_ascii file) do not trigger it.
LONE_SURROGATE_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")

_JSON_NAMES: dict[type, str] = {
    dict: "an object", list: "an array", str: "a string", int: "an integer", bool: "a boolean",
}


def load_squad(path: str | os.PathLike[str], misaligned: Misaligned = "error",
               check_offsets: bool = True) -> SquadDataset:
    """Read a SQuAD v1.1 or v2.0 JSON file in the official layout.

    The file is read as bytes and decoded as UTF-8 (a leading BOM is allowed), so
    ``answer_start`` counts Python ``str`` characters, as the official data does.
    See `parse_squad` for the validation, ``misaligned`` and ``check_offsets``.
    Raises `DataError` for an unreadable file, bad UTF-8 (with the byte position) and
    invalid JSON (with line and column).
    """
    _check_mode(misaligned)
    obj = read_json_document(path)
    with gc_paused():
        return parse_squad(obj, str(path), misaligned=misaligned, check_offsets=check_offsets)


def json_opening(path: str | os.PathLike[str]) -> str:
    """The first non-blank character of a JSON file ("{" for SQuAD, "[" for HotpotQA), read
    from its first bytes only, so that a task can claim a file without parsing it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise DataError(str(path), f"cannot read file: {exc.strerror or exc}") from None
    return head.lstrip(b"\xef\xbb\xbf").lstrip()[:1].decode("latin-1")


def read_json_document(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A data file's JSON (SQuAD or HotpotQA), read as bytes and decoded as UTF-8 (a leading
    BOM is allowed). Raises `DataError` for an unreadable file, bad UTF-8 (with the byte
    position), invalid JSON (with line and column), nesting too deep for the parser, and lone
    surrogates (with the JSON path). `kwargs` go to `json.loads` (an object_pairs_hook)."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(name, f"cannot read file: {exc.strerror or exc}") from exc
    # The utf-8-sig codec counts error positions after the BOM; report file offsets.
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        pos = exc.start + bom
        raise DataError(name, f"not valid UTF-8 at byte {pos} "
                              f"(byte 0x{raw[pos]:02x}: {exc.reason})") from exc
    del raw  # keep only one copy of a large file alive while parsing
    with gc_paused():
        try:
            obj = loads_json(text, name, **kwargs)
        except json.JSONDecodeError as exc:
            raise DataError(name, f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                                  f"{exc.msg}") from exc
        except RecursionError as exc:
            raise DataError(name, "invalid JSON: nested too deeply") from exc
    if ("\\ud" in text or "\\uD" in text) and LONE_SURROGATE_ESCAPE.search(text):  # fast first
        _check_unicode(obj, name)
    return obj


def parse_squad(obj: Any, path: str, misaligned: Misaligned = "error",
                check_offsets: bool = True) -> SquadDataset:
    """Validate an already-parsed SQuAD object and turn it into a `SquadDataset`.

    ``path`` only names the source in error messages. The file is SQuAD 2.0
    (``is_v2``) when ``version`` is "v2.0"/"2.0" or any question has
    ``is_impossible``. A question without ``is_impossible`` is answerable in a v1.1
    file (and must have answers); in a v2.0 file it is unanswerable exactly when its
    answer list is empty (the CS224N test file has no ``is_impossible`` at all).
    ``version`` and ``title`` may be absent (read as ""); every other field is required.

    ``misaligned`` decides what happens to an answer whose ``answer_start`` does not
    point at its text: "error" raises, "skip" drops it, "fix-by-search" moves it to
    the occurrence of its text nearest the given offset (or drops it when the text
    does not occur). An answerable question left without answers is skipped. A
    misaligned plausible answer is dropped in both "skip" and "fix-by-search" modes.
    Every drop or move is a `Repair`. ``check_offsets=False`` keeps every answer as
    written (for evaluation, which compares texts only).
    """
    _check_mode(misaligned)
    if not isinstance(obj, dict):
        raise DataError(path, f"top level is {describe_json(obj)}, expected an object with "
                              f"'version' and 'data'")
    version = expect_type(obj.get("version", ""), str, path, "version")
    articles = json_field(obj, "data", list, path, "")
    is_v2 = version.strip() in V2_VERSIONS or _declares_is_impossible(articles)
    examples: list[SquadExample] = []
    repairs: list[Repair] = []
    seen: dict[str, str] = {}  # qas_id -> JSON path of its first use
    for a, article in enumerate(articles):
        where_a = f"data[{a}]"
        expect_type(article, dict, path, where_a)
        title = expect_type(article.get("title", ""), str, path, f"{where_a}.title")
        paragraphs = json_field(article, "paragraphs", list, path, where_a)
        for p, paragraph in enumerate(paragraphs):
            where_p = f"{where_a}.paragraphs[{p}]"
            expect_type(paragraph, dict, path, where_p)
            context = json_field(paragraph, "context", str, path, where_p)
            if not context.strip():
                raise DataError(path, "context is empty or whitespace only", f"{where_p}.context")
            qas = json_field(paragraph, "qas", list, path, where_p)
            for q, qa in enumerate(qas):
                example = _parse_qa(qa, f"{where_p}.qas[{q}]", context, title, path, is_v2,
                                    misaligned, check_offsets, seen, repairs)
                if example is not None:
                    examples.append(example)
    return SquadDataset(path=path, version=version, is_v2=is_v2, examples=tuple(examples),
                        repairs=tuple(repairs))


def examples_to_squad_json(examples: Iterable[SquadExample],
                           version: str = "v2.0") -> dict[str, Any]:
    """Write examples in the official layout, grouped by title and then by context.

    Titles and contexts keep the order of their first appearance, so a loaded file
    written back with this function loads to the same examples. A v2.0 output has
    ``is_impossible`` on every question; a v1.1 output cannot hold unanswerable
    questions and refuses them with `GPT2QAError`.
    """
    v2 = version.strip() in V2_VERSIONS
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for ex in examples:
        if not v2 and (ex.is_impossible or not ex.answers):
            raise GPT2QAError(f"examples_to_squad_json: id={ex.qas_id}: an unanswerable "
                              f"question cannot be written as SQuAD {version!r}; use 'v2.0'")
        qa: dict[str, Any] = {"id": ex.qas_id, "question": ex.question,
                              "answers": [_answer_json(ans) for ans in ex.answers]}
        if v2:
            qa["is_impossible"] = ex.is_impossible
        if ex.plausible_answers:
            qa["plausible_answers"] = [_answer_json(ans) for ans in ex.plausible_answers]
        grouped.setdefault(ex.title, {}).setdefault(ex.context, []).append(qa)
    data = [{"title": title,
             "paragraphs": [{"context": context, "qas": qas} for context, qas in paras.items()]}
            for title, paras in grouped.items()]
    return {"version": version, "data": data}


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of acyclic objects are built.

    Otherwise every burst of allocations starts a collection that walks the growing
    tree again, which slows large loads (benchmarks/README.md). Reference counting still
    frees everything (JSON has no cycles).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def unicode_problem(text: str) -> str | None:
    """Why ``text`` cannot be encoded as UTF-8 (tokenizers refuse it), or None.

    Only lone surrogates can be: a JSON escape such as ``"\\ud800"`` without its pair, or
    an undecodable byte on the command line, which Python turns into U+DC80-U+DCFF.
    Worked example: the argument bytes ``when\\xff?`` arrive as "when\\udcff?" and give
    "undecodable byte 0xff at character 4".
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        if 0xDC80 <= code <= 0xDCFF:
            return f"undecodable byte 0x{code - 0xDC00:02x} at character {exc.start}"
        return f"lone UTF-16 surrogate U+{code:04X} at character {exc.start} (not valid Unicode)"
    return None


def check_text(text: str, what: str) -> str:
    """``text`` itself, or GPT2QAError naming ``what`` (e.g. "--question") and the problem."""
    problem = unicode_problem(text)
    if problem is not None:
        raise GPT2QAError(f"{what}: {problem}")
    return text


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_unicode(obj: Any, path: str, where: str = "", qas_id: str | None = None) -> None:
    """Refuse the first string in a parsed file that holds a lone surrogate, by JSON path."""
    if isinstance(obj, str):
        problem = unicode_problem(obj)
        if problem is not None:
            raise DataError(path, problem, where or None,
                            None if qas_id is None else _printable(qas_id))
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            _check_unicode(item, path, f"{where}[{i}]", qas_id)
    elif isinstance(obj, dict):
        if isinstance(obj.get("id"), str) and "question" in obj:
            qas_id = obj["id"]
        for key, value in obj.items():
            _check_unicode(value, path, f"{where}.{key}" if where else str(key), qas_id)


def _answer_json(answer: Answer) -> dict[str, Any]:
    return {"text": answer.text, "answer_start": answer.answer_start}


def _check_mode(misaligned: str) -> None:
    if misaligned not in MISALIGNED_MODES:
        raise GPT2QAError(f"misaligned must be one of {', '.join(MISALIGNED_MODES)}, "
                          f"got {misaligned!r}")


def _declares_is_impossible(articles: list[Any]) -> bool:
    """Whether any question carries ``is_impossible``; tolerant of a malformed tree,
    which the main pass then reports properly."""
    for article in articles:
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        for paragraph in paragraphs if isinstance(paragraphs, list) else ():
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            for qa in qas if isinstance(qas, list) else ():
                if isinstance(qa, dict) and "is_impossible" in qa:
                    return True
    return False


def _parse_qa(qa: Any, where: str, context: str, title: str, path: str, is_v2: bool,
              misaligned: Misaligned, check_offsets: bool, seen: dict[str, str],
              repairs: list[Repair]) -> SquadExample | None:
    """One ``qas[]`` entry -> an example, or None when skipped (with a Repair)."""
    expect_type(qa, dict, path, where)
    qas_id, question = read_id_and_question(qa, "id", path, where, seen)
    declared = (expect_type(qa["is_impossible"], bool, path, f"{where}.is_impossible", qas_id)
                if "is_impossible" in qa else None)
    answers = _parse_answers(json_field(qa, "answers", list, path, where, qas_id),
                             f"{where}.answers", path, qas_id)
    plausible: tuple[Answer, ...] = ()
    if "plausible_answers" in qa:
        plausible = _parse_answers(
            expect_type(qa["plausible_answers"], list, path, f"{where}.plausible_answers", qas_id),
            f"{where}.plausible_answers", path, qas_id)

    if declared is None:
        if not is_v2 and not answers:
            raise DataError(path, "question has no answers (every SQuAD v1.1 question is "
                                  "answerable)", f"{where}.answers", qas_id)
        is_impossible = not answers
    else:
        is_impossible = declared
        if is_impossible and answers:
            raise DataError(path, f"is_impossible is true but there are {len(answers)} "
                                  f"answers", f"{where}.answers", qas_id)
        if not is_impossible and not answers:
            raise DataError(path, "is_impossible is false but there are no answers",
                            f"{where}.answers", qas_id)

    if check_offsets:
        kept = align_answers(answers, f"{where}.answers", context, path, qas_id, misaligned,
                             repairs)
        if answers and not kept:
            repairs.append(Repair(qas_id, where, "skipped",
                                  f"question skipped: none of its {len(answers)} answers "
                                  f"aligns with the context"))
            return None
        answers = kept
        # A plausible answer is never worth losing the question over.
        plausible = align_answers(plausible, f"{where}.plausible_answers", context, path,
                                  qas_id, "error" if misaligned == "error" else "skip", repairs)
    return SquadExample(qas_id=qas_id, question=question, context=context, answers=answers,
                        is_impossible=is_impossible, title=title, plausible_answers=plausible)


def _parse_answers(items: list[Any], where: str, path: str, qas_id: str) -> tuple[Answer, ...]:
    answers = []
    for i, item in enumerate(items):
        where_i = f"{where}[{i}]"
        expect_type(item, dict, path, where_i, qas_id)
        text = json_field(item, "text", str, path, where_i, qas_id)
        if not text:
            raise DataError(path, "answer text is empty", f"{where_i}.text", qas_id)
        start = json_field(item, "answer_start", int, path, where_i, qas_id)
        answers.append(Answer(text=text, answer_start=start))
    return tuple(answers)


def align_answers(answers: tuple[Answer, ...], where: str | Callable[[int], str], context: str,
                  path: str, qas_id: str, misaligned: Misaligned,
                  repairs: list[Repair]) -> tuple[Answer, ...]:
    """Keep aligned answers; raise, drop or move the others according to ``misaligned``. Answer
    i's place is ``{where}[i].answer_start`` (a JSON path), or ``where(i)`` (a function)."""
    problems = [misalignment(answer, context) for answer in answers]
    if not any(problems):
        return answers
    kept: list[Answer] = []
    for i, (answer, problem) in enumerate(zip(answers, problems, strict=True)):
        if problem is None:
            kept.append(answer)
            continue
        where_i = where(i) if callable(where) else f"{where}[{i}].answer_start"
        if misaligned == "error":
            raise DataError(path, problem, where_i, qas_id)
        if misaligned == "fix-by-search":
            start = nearest_occurrence(context, answer.text, answer.answer_start)
            if start is not None:
                kept.append(Answer(text=answer.text, answer_start=start))
                repairs.append(Repair(qas_id, where_i, "fixed",
                                      f"answer_start {answer.answer_start} -> {start} "
                                      f"({problem})"))
                continue
            problem += "; the text does not occur in the context"
        repairs.append(Repair(qas_id, where_i, "skipped", f"answer dropped: {problem}"))
    return tuple(kept)


def misalignment(answer: Answer, context: str) -> str | None:
    """Why ``answer`` does not sit at its ``answer_start`` in ``context``, or None."""
    start = answer.answer_start
    if start >= 0 and context.startswith(answer.text, start):
        return None  # the common case, checked without slicing
    end = answer.answer_end
    if start < 0 or end > len(context):
        return (f"answer_start {start} + length {len(answer.text)} is outside the context "
                f"(length {len(context)})")
    return (f"context[{start}:{end}] is {_quote(context[start:end])}, "
            f"not the answer text {_quote(answer.text)}")


def nearest_occurrence(context: str, text: str, start: int) -> int | None:
    """The start of the occurrence of ``text`` nearest ``start`` (earlier wins a tie).

    Worked example: context "a cat and a cat", text "cat", start 9: the text occurs
    at 2 and 12, |2 - 9| = 7 > |12 - 9| = 3, so the answer moves to 12.
    """
    best: int | None = None
    found = context.find(text)
    while found != -1:
        if best is None or abs(found - start) < abs(best - start):
            best = found
        found = context.find(text, found + 1)  # overlapping matches count too
    return best


def read_id_and_question(item: dict[str, Any], id_key: str, path: str, where: str,
                         seen: dict[str, str]) -> tuple[str, str]:
    """A question's id (non-empty, unique: `seen` maps each id to where it was first used) and
    its text (non-empty), for SQuAD's ``id`` and HotpotQA's ``_id`` alike."""
    qas_id = json_field(item, id_key, str, path, where)
    if not qas_id.strip():
        raise DataError(path, f"{id_key} is empty or whitespace only", f"{where}.{id_key}")
    if qas_id in seen:
        raise DataError(path, f"duplicate {id_key}, first used at {seen[qas_id]}", where, qas_id)
    seen[qas_id] = where
    question = json_field(item, "question", str, path, where, qas_id)
    if not question.strip():
        raise DataError(path, "question is empty or whitespace only", f"{where}.question", qas_id)
    return qas_id, question


def json_field(obj: dict[str, Any], key: str, typ: type[_T], path: str, where: str,
           qas_id: str | None = None) -> _T:
    """``obj[key]``, which must exist and have JSON type ``typ``."""
    value = obj.get(key, _MISSING)
    if type(value) is typ:  # fast path: what json.loads builds (and True is not an int)
        return value  # type: ignore[no-any-return]
    if value is _MISSING:
        raise DataError(path, f"missing field {key!r}", where or None, qas_id)
    return expect_type(value, typ, path, f"{where}.{key}" if where else key, qas_id)


def expect_type(value: Any, typ: type[_T], path: str, where: str,
            qas_id: str | None = None) -> _T:
    """``value`` itself when it has JSON type ``typ`` (a boolean is not an integer)."""
    if type(value) is typ:
        return value  # type: ignore[no-any-return]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise DataError(path, f"expected {_JSON_NAMES[typ]}, got {describe_json(value)}", where,
                        qas_id)
    return value


def describe_json(value: Any) -> str:
    """A JSON value's type and, for scalars, the value itself, on one line."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, str):
        return f"a string ({_quote(value)})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value!r})"
    return type(value).__name__


def _quote(text: str, limit: int = 60) -> str:
    """``text`` as a one-line JSON string, shortened to about ``limit`` characters."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return json.dumps(text, ensure_ascii=False)
