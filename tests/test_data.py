"""Stage 1 tests: SQuAD loading, validation errors, misaligned-answer repairs, writing back."""

from __future__ import annotations

import codecs
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gpt2qa.data
from gpt2qa.data import (
    Answer,
    Repair,
    SquadExample,
    examples_to_squad_json,
    load_squad,
    parse_squad,
)
from gpt2qa.errors import DataError, GPT2QAError


def write_json(tmp_path: Path, obj: Any, name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def v1_dict() -> dict:
    """A small SQuAD 1.1 file: no is_impossible anywhere, several answers per question."""
    ctx = "Tavrik is a city of 31,000 people founded by Quell Mebbit in 1834."
    return {"version": "1.1", "data": [{"title": "Tavrik", "paragraphs": [{"context": ctx, "qas": [
        {"id": "t1", "question": "Who founded Tavrik?",
         "answers": [{"text": "Quell Mebbit", "answer_start": ctx.index("Quell")},
                     {"text": "Mebbit", "answer_start": ctx.index("Mebbit")}]},
        {"id": "t2", "question": "When was Tavrik founded?",
         "answers": [{"text": "1834", "answer_start": ctx.index("1834")}]},
    ]}]}]}


# --- one DataError per kind of bad input --------------------------------------------------

Mutation = Callable[[dict], None]


def _qa(d: dict, article: int = 0, qa: int = 0) -> dict:
    return d["data"][article]["paragraphs"][0]["qas"][qa]


def _set(target: Callable[[dict], dict], key: str, value: Any) -> Mutation:
    def mutate(d: dict) -> None:
        target(d)[key] = value
    return mutate


def _del(target: Callable[[dict], dict], key: str) -> Mutation:
    def mutate(d: dict) -> None:
        del target(d)[key]
    return mutate


def _top(d: dict) -> dict:
    return d


def _article(d: dict) -> dict:
    return d["data"][0]


def _para(d: dict) -> dict:
    return d["data"][0]["paragraphs"][0]


def _q1(d: dict) -> dict:
    return _qa(d, 0, 0)


def _q2(d: dict) -> dict:
    return _qa(d, 0, 1)


def _q1_answer(d: dict) -> dict:
    return _qa(d, 0, 0)["answers"][0]


def _q2_plausible(d: dict) -> dict:
    return _qa(d, 0, 1)["plausible_answers"][0]


Q1 = "data[0].paragraphs[0].qas[0]"
Q2 = "data[0].paragraphs[0].qas[1]"
ERROR_CASES: list[tuple[str, Mutation, str | None, str | None, str]] = [
    # (case, mutation of squad_v2_dict(), json path, qas id, message fragment)
    ("missing data", _del(_top, "data"), None, None, "missing field 'data'"),
    ("data not array", _set(_top, "data", {}), "data", None, "expected an array, got an object"),
    ("version not string", _set(_top, "version", 2.0), "version", None, "expected a string"),
    ("article not object", _set(_top, "data", [[]]), "data[0]", None, "expected an object"),
    ("title not string", _set(_article, "title", None), "data[0].title", None, "got null"),
    ("missing paragraphs", _del(_article, "paragraphs"), "data[0]", None,
     "missing field 'paragraphs'"),
    ("missing context", _del(_para, "context"), "data[0].paragraphs[0]", None,
     "missing field 'context'"),
    ("context not string", _set(_para, "context", 7), "data[0].paragraphs[0].context", None,
     "expected a string, got an integer (7)"),
    ("blank context", _set(_para, "context", " \n\t"), "data[0].paragraphs[0].context", None,
     "context is empty"),
    ("qas not array", _set(_para, "qas", "q1"), "data[0].paragraphs[0].qas", None,
     "expected an array"),
    ("missing id", _del(_q1, "id"), Q1, None, "missing field 'id'"),
    ("id not string", _set(_q1, "id", 17), f"{Q1}.id", None, "expected a string"),
    ("blank id", _set(_q1, "id", "  "), f"{Q1}.id", None, "id is empty"),
    ("missing question", _del(_q1, "question"), Q1, "q1", "missing field 'question'"),
    ("empty question", _set(_q1, "question", ""), f"{Q1}.question", "q1", "question is empty"),
    ("blank question", _set(_q1, "question", " \t "), f"{Q1}.question", "q1",
     "question is empty"),
    ("missing answers", _del(_q1, "answers"), Q1, "q1", "missing field 'answers'"),
    ("answers not array", _set(_q1, "answers", {"text": "1889"}), f"{Q1}.answers", "q1",
     "expected an array"),
    ("answer_start string", _set(_q1_answer, "answer_start", "34"),
     f"{Q1}.answers[0].answer_start", "q1", 'expected an integer, got a string ("34")'),
    ("answer_start bool", _set(_q1_answer, "answer_start", True),
     f"{Q1}.answers[0].answer_start", "q1", "expected an integer, got a boolean (true)"),
    ("answer_start float", _set(_q1_answer, "answer_start", 34.0),
     f"{Q1}.answers[0].answer_start", "q1", "expected an integer, got a number (34.0)"),
    ("missing answer_start", _del(_q1_answer, "answer_start"), f"{Q1}.answers[0]", "q1",
     "missing field 'answer_start'"),
    ("missing answer text", _del(_q1_answer, "text"), f"{Q1}.answers[0]", "q1",
     "missing field 'text'"),
    ("empty answer text", _set(_q1_answer, "text", ""), f"{Q1}.answers[0].text", "q1",
     "answer text is empty"),
    ("is_impossible string", _set(_q1, "is_impossible", "false"), f"{Q1}.is_impossible", "q1",
     "expected a boolean"),
    ("impossible with answers", _set(_q1, "is_impossible", True), f"{Q1}.answers", "q1",
     "is_impossible is true but there are 1 answers"),
    ("answerable without answers", _set(_q1, "answers", []), f"{Q1}.answers", "q1",
     "is_impossible is false but there are no answers"),
    ("plausible not array", _set(_q2, "plausible_answers", None), f"{Q2}.plausible_answers",
     "q2", "expected an array"),
    ("answer_start past the end", _set(_q1_answer, "answer_start", 55),
     f"{Q1}.answers[0].answer_start", "q1", "outside the context (length 56)"),
    ("answer_start negative", _set(_q1_answer, "answer_start", -1),
     f"{Q1}.answers[0].answer_start", "q1", "outside the context"),
    ("answer text mismatch", _set(_q1_answer, "answer_start", 35),
     f"{Q1}.answers[0].answer_start", "q1", 'context[35:39] is "889 ", not the answer text "1889"'),
    ("plausible mismatch", _set(_q2_plausible, "answer_start", 0),
     f"{Q2}.plausible_answers[0].answer_start", "q2", "not the answer text"),
]


@pytest.mark.parametrize(("case", "mutate", "json_path", "qas_id", "fragment"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_bad_input_raises_one_clear_error(tmp_path: Path, case: str, mutate: Mutation,
                                          json_path: str | None, qas_id: str | None,
                                          fragment: str, squad_v2_dict) -> None:
    d = squad_v2_dict()
    mutate(d)
    path = write_json(tmp_path, d, "broken-v2.json")
    with pytest.raises(DataError) as info:
        load_squad(path)
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert "broken-v2.json" in message and err.path == str(path)
    assert fragment in message
    assert err.json_path == json_path
    if json_path is not None:
        assert f": {json_path}: " in message
    assert err.qas_id == qas_id
    if qas_id is not None:
        assert f"id={qas_id}" in message
    else:
        assert "id=" not in message


def test_duplicate_id_names_both_places(tmp_path: Path, squad_v2_dict) -> None:
    d = squad_v2_dict()
    _qa(d, 1, 0)["id"] = "q1"
    path = write_json(tmp_path, d, "dup.json")
    with pytest.raises(DataError) as info:
        load_squad(path)
    err = info.value
    assert err.qas_id == "q1"
    assert err.json_path == "data[1].paragraphs[0].qas[0]"
    assert "dup.json" in str(err) and "duplicate id" in str(err)
    assert "first used at data[0].paragraphs[0].qas[0]" in str(err)


def test_v1_question_without_answers_is_refused(tmp_path: Path) -> None:
    d = v1_dict()
    _qa(d, 0, 1)["answers"] = []
    path = write_json(tmp_path, d, "v1.json")
    with pytest.raises(DataError, match=r"v1\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers: "
                                        r"id=t2: question has no answers"):
        load_squad(path)


@pytest.mark.parametrize(("content", "fragment"), [
    ("[]", "top level is an array"),
    ('"squad"', "top level is a string"),
    ("null", "top level is null"),
    ('{"version": "v2.0",\n "data": [\n  {"title": "x",, }\n]}', "invalid JSON at line 3 column 17"),
    ('{"version": "v2.0", "data": [', "invalid JSON at line 1 column 30"),
    ("", "invalid JSON at line 1 column 1"),
])
def test_not_a_squad_object(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "odd.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_squad(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert gc.isenabled()  # the loader pauses the collector and must restore it on errors


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
def test_invalid_utf8_reports_the_byte_position(tmp_path: Path, bom: bytes,
                                                 squad_v2_dict) -> None:
    good = json.dumps(squad_v2_dict(), ensure_ascii=False).encode("utf-8")
    cut = good.index(b"Paris, France")
    path = tmp_path / "latin1.json"
    path.write_bytes(bom + good[:cut] + b"\xe9" + good[cut + 1:])  # a Latin-1 byte
    with pytest.raises(DataError) as info:
        load_squad(path)
    assert f"not valid UTF-8 at byte {len(bom) + cut} (byte 0xe9" in str(info.value)
    assert "latin1.json" in str(info.value)


def test_unreadable_file_and_bad_mode(tmp_path: Path, squad_v2_file: Path) -> None:
    with pytest.raises(DataError, match="missing.json: cannot read file"):
        load_squad(tmp_path / "missing.json")
    with pytest.raises(GPT2QAError, match="misaligned must be one of"):
        load_squad(squad_v2_file, misaligned="guess")  # type: ignore[arg-type]


# --- the happy path ----------------------------------------------------------------------

def test_loads_the_conftest_file(squad_v2_file: Path) -> None:
    ds = load_squad(squad_v2_file)
    assert ds.path == str(squad_v2_file) and ds.version == "v2.0" and ds.is_v2
    assert [e.qas_id for e in ds.examples] == ["q1", "q2", "q3"]
    q1, q2, q3 = ds.examples
    assert q1.answers == (Answer("1889", 34),) and not q1.is_impossible and q1.title == "Tower"
    assert q2.is_impossible and q2.answers == () and q2.plausible_answers == (Answer("Paris", 42),)
    assert q3.context.startswith("Émile") and q3.answers[0].text == "novels"
    assert q3.context[q3.answers[0].answer_start:q3.answers[0].answer_end] == "novels"
    assert ds.repairs == ()


def test_bom_file_loads_like_plain_file(tmp_path: Path, squad_v2_file: Path) -> None:
    bom_path = tmp_path / "bom.json"
    bom_path.write_bytes(codecs.BOM_UTF8 + squad_v2_file.read_bytes())
    assert bom_path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert load_squad(bom_path).examples == load_squad(squad_v2_file).examples


EMOJI_CTX = "Fans cheered 🎉🎉 when Zoë sang «Über» at 9 pm in Zürich."


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_answer_start_counts_str_characters_past_emoji(tmp_path: Path,
                                                       ensure_ascii: bool) -> None:
    start = EMOJI_CTX.index("Zürich")  # 48 characters in; 50 UTF-16 units, 58 UTF-8 bytes
    assert (start, len(EMOJI_CTX[:start].encode())) == (48, 58)
    d = {"version": "v2.0", "data": [{"title": "E", "paragraphs": [{"context": EMOJI_CTX, "qas": [
        {"id": "e1", "question": "Where?", "is_impossible": False,
         "answers": [{"text": "Zürich", "answer_start": start}]}]}]}]}
    path = tmp_path / "emoji.json"
    path.write_text(json.dumps(d, ensure_ascii=ensure_ascii), encoding="utf-8")
    (ex,) = load_squad(path).examples
    assert ex.context == EMOJI_CTX
    assert ex.context[ex.answers[0].answer_start:ex.answers[0].answer_end] == "Zürich"


def test_utf16_offset_is_misaligned_and_fixable(tmp_path: Path) -> None:
    start = EMOJI_CTX.index("Zürich")
    utf16 = len(EMOJI_CTX[:start].encode("utf-16-le")) // 2
    assert utf16 == start + 2  # each emoji is two UTF-16 units
    d = {"version": "v2.0", "data": [{"title": "E", "paragraphs": [{"context": EMOJI_CTX, "qas": [
        {"id": "e1", "question": "Where?", "is_impossible": False,
         "answers": [{"text": "Zürich", "answer_start": utf16}]}]}]}]}
    path = write_json(tmp_path, d, "utf16.json")
    with pytest.raises(DataError, match="id=e1: answer_start 50 \\+ length 6 is outside"):
        load_squad(path)
    ds = load_squad(path, misaligned="fix-by-search")
    assert ds.examples[0].answers == (Answer("Zürich", start),)
    assert ds.repairs == (Repair("e1", "data[0].paragraphs[0].qas[0].answers[0].answer_start",
                                 "fixed", ds.repairs[0].detail),)
    assert ds.repairs[0].detail.startswith(f"answer_start {utf16} -> {start} ")


# --- version detection -------------------------------------------------------------------

def _versioned(version: str | None, flags: list[bool | None], answers: list[bool]) -> dict:
    ctx = "Marie Curie won the Nobel Prize in Physics in 1903."
    qas = []
    for i, (flag, answered) in enumerate(zip(flags, answers, strict=True)):
        qa: dict[str, Any] = {"id": f"v{i}", "question": f"Question {i}?",
                              "answers": [{"text": "1903", "answer_start": 46}] if answered else []}
        if flag is not None:
            qa["is_impossible"] = flag
        qas.append(qa)
    d: dict[str, Any] = {"data": [{"title": "C", "paragraphs": [{"context": ctx, "qas": qas}]}]}
    if version is not None:
        d["version"] = version
    return d


@pytest.mark.parametrize(("version", "flags", "answers", "is_v2", "impossible"), [
    ("1.1", [None, None], [True, True], False, [False, False]),
    ("v1.1", [None], [True], False, [False]),
    (None, [None], [True], False, [False]),
    ("v2.0", [False, True], [True, False], True, [False, True]),
    ("2.0", [False], [True], True, [False]),
    # a "1.1" label but one question carries is_impossible: treated as 2.0
    ("1.1", [None, True], [True, False], True, [False, True]),
    # the CS224N test layout: v2.0, no is_impossible, empty answers -> unanswerable
    ("v2.0", [None, None], [False, True], True, [True, False]),
])
def test_version_detection(tmp_path: Path, version: str | None, flags: list[bool | None],
                           answers: list[bool], is_v2: bool, impossible: list[bool]) -> None:
    ds = load_squad(write_json(tmp_path, _versioned(version, flags, answers), "v.json"))
    assert ds.version == (version or "")
    assert ds.is_v2 is is_v2
    assert [e.is_impossible for e in ds.examples] == impossible
    assert all(bool(e.answers) is not e.is_impossible for e in ds.examples)


def test_v1_file(tmp_path: Path) -> None:
    ds = load_squad(write_json(tmp_path, v1_dict(), "v1.json"))
    assert (ds.version, ds.is_v2) == ("1.1", False)
    assert [len(e.answers) for e in ds.examples] == [2, 1]
    assert not any(e.is_impossible for e in ds.examples)


# --- misaligned answers ------------------------------------------------------------------

CTX = "The cat sat on the mat. Later the cat slept near the big mat in Paris."


def misaligned_dict() -> dict:
    """Six questions; qa A..F exercise each path through the misaligned modes."""
    cat1, cat2 = CTX.index("cat"), CTX.rindex("cat")  # 4 and 34
    mat2 = CTX.rindex("mat")
    qas = [
        # A: one good answer, one off by two ("the cat" is at 30; "The cat" at 0 differs)
        {"id": "A", "question": "Who sat?", "is_impossible": False,
         "answers": [{"text": "cat", "answer_start": cat1},
                     {"text": "the cat", "answer_start": CTX.index("the cat") + 2}]},
        # B: its only answer is misaligned; nearest occurrence of "cat" to 30 is 34, not 4
        {"id": "B", "question": "Who slept?", "is_impossible": False,
         "answers": [{"text": "cat", "answer_start": 30}]},
        # C: the answer text is not in the context at all
        {"id": "C", "question": "Where is the dog?", "is_impossible": False,
         "answers": [{"text": "kennel", "answer_start": 5}]},
        # D: unanswerable, with a misaligned plausible answer
        {"id": "D", "question": "Who owns the mat?", "is_impossible": True, "answers": [],
         "plausible_answers": [{"text": "Paris", "answer_start": 3}]},
        # E: fine
        {"id": "E", "question": "Which city?", "is_impossible": False,
         "answers": [{"text": "Paris", "answer_start": CTX.index("Paris")}]},
        # F: answer_start far past the end
        {"id": "F", "question": "Which mat?", "is_impossible": False,
         "answers": [{"text": "big mat", "answer_start": 10_000}]},
    ]
    assert (cat1, cat2, mat2) == (4, 34, 57)
    return {"version": "v2.0",
            "data": [{"title": "Cats", "paragraphs": [{"context": CTX, "qas": qas}]}]}


def _where(qa: int, answer: int | None = None, field: str = "answers") -> str:
    base = f"data[0].paragraphs[0].qas[{qa}]"
    return base if answer is None else f"{base}.{field}[{answer}].answer_start"


def test_misaligned_error_mode_stops_at_first(tmp_path: Path) -> None:
    path = write_json(tmp_path, misaligned_dict(), "mis.json")
    with pytest.raises(DataError) as info:
        load_squad(path)  # "error" is the default
    assert info.value.json_path == _where(0, 1) and info.value.qas_id == "A"
    assert 'context[32:39] is "e cat s", not the answer text "the cat"' in str(info.value)


def test_misaligned_skip_mode(tmp_path: Path) -> None:
    ds = load_squad(write_json(tmp_path, misaligned_dict(), "mis.json"), misaligned="skip")
    assert [e.qas_id for e in ds.examples] == ["A", "D", "E"]
    a, d, _ = ds.examples
    assert a.answers == (Answer("cat", 4),)
    assert d.is_impossible and d.plausible_answers == ()
    assert [(r.qas_id, r.json_path, r.action) for r in ds.repairs] == [
        ("A", _where(0, 1), "skipped"),
        ("B", _where(1, 0), "skipped"), ("B", _where(1), "skipped"),
        ("C", _where(2, 0), "skipped"), ("C", _where(2), "skipped"),
        ("D", _where(3, 0, "plausible_answers"), "skipped"),
        ("F", _where(5, 0), "skipped"), ("F", _where(5), "skipped"),
    ]
    assert ds.repairs[2].detail == "question skipped: none of its 1 answers aligns with the context"
    assert ds.repairs[6].detail.startswith("answer dropped: answer_start 10000 + length 7 is outside")


def test_misaligned_fix_by_search_mode(tmp_path: Path) -> None:
    ds = load_squad(write_json(tmp_path, misaligned_dict(), "mis.json"),
                    misaligned="fix-by-search")
    by_id = {e.qas_id: e for e in ds.examples}
    assert list(by_id) == ["A", "B", "D", "E", "F"]
    assert by_id["A"].answers == (Answer("cat", 4), Answer("the cat", 30))
    assert by_id["B"].answers == (Answer("cat", 34),)  # nearest to 30, not the first
    assert by_id["F"].answers == (Answer("big mat", 53),)
    assert by_id["D"].plausible_answers == ()  # plausible answers are dropped, not searched
    for ex in ds.examples:
        for ans in ex.answers:
            assert ex.context[ans.answer_start:ans.answer_end] == ans.text
    assert [(r.qas_id, r.json_path, r.action) for r in ds.repairs] == [
        ("A", _where(0, 1), "fixed"),
        ("B", _where(1, 0), "fixed"),
        ("C", _where(2, 0), "skipped"), ("C", _where(2), "skipped"),
        ("D", _where(3, 0, "plausible_answers"), "skipped"),
        ("F", _where(5, 0), "fixed"),
    ]
    assert ds.repairs[1].detail.startswith("answer_start 30 -> 34 ")
    assert "does not occur in the context" in ds.repairs[2].detail


def test_check_offsets_false_keeps_everything(tmp_path: Path) -> None:
    d = misaligned_dict()
    ds = load_squad(write_json(tmp_path, d, "mis.json"), check_offsets=False)
    assert [e.qas_id for e in ds.examples] == ["A", "B", "C", "D", "E", "F"]
    assert ds.repairs == ()
    written = [[(a["text"], a["answer_start"]) for a in qa["answers"]]
               for qa in d["data"][0]["paragraphs"][0]["qas"]]
    assert [[(a.text, a.answer_start) for a in e.answers] for e in ds.examples] == written
    assert ds.examples[3].plausible_answers == (Answer("Paris", 3),)


@pytest.mark.parametrize(("given", "expected"), [
    (0, 3), (7, 3), (8, 11), (11, 11), (500, 11), (-4, 3),
])
def test_fix_by_search_picks_nearest_occurrence(given: int, expected: int) -> None:
    ctx = "xx cat yyy cat zz"  # "cat" at 3 and 11; 7 is equally far from both: earlier wins
    obj = {"version": "v2.0", "data": [{"paragraphs": [{"context": ctx, "qas": [
        {"id": "n", "question": "?", "is_impossible": False,
         "answers": [{"text": "cat", "answer_start": given}]}]}]}]}
    ds = parse_squad(obj, "<memory>", misaligned="fix-by-search")
    assert ds.examples[0].answers == (Answer("cat", expected),)
    assert len(ds.repairs) == (0 if given == expected else 1)


# --- writing back ------------------------------------------------------------------------

def test_round_trip_reproduces_the_official_layout(squad_v2_file: Path, squad_v2_dict) -> None:
    ds = load_squad(squad_v2_file)
    written = examples_to_squad_json(ds.examples)
    assert written == squad_v2_dict()
    again = parse_squad(json.loads(json.dumps(written)), "<round trip>")
    assert again.examples == ds.examples and again.is_v2


def test_round_trip_v1(tmp_path: Path) -> None:
    ds = load_squad(write_json(tmp_path, v1_dict(), "v1.json"))
    written = examples_to_squad_json(ds.examples, version="1.1")
    assert written == v1_dict()
    assert parse_squad(written, "<v1>").examples == ds.examples


def test_writer_groups_by_title_then_context() -> None:
    def ex(qas_id: str, title: str, context: str) -> SquadExample:
        return SquadExample(qas_id=qas_id, question=f"{qas_id}?", context=context,
                            answers=(Answer(context[:3], 0),), is_impossible=False, title=title)
    examples = [ex("1", "A", "aaa one"), ex("2", "B", "bbb two"), ex("3", "A", "aaa one"),
                ex("4", "A", "ccc three")]
    written = examples_to_squad_json(examples)
    assert [(art["title"], [[qa["id"] for qa in p["qas"]] for p in art["paragraphs"]])
            for art in written["data"]] == [("A", [["1", "3"], ["4"]]), ("B", [["2"]])]
    assert sorted(e.qas_id for e in parse_squad(written, "<grouped>").examples) == list("1234")


def test_writer_refuses_unanswerable_in_v1(squad_v2_dict) -> None:
    (q2,) = [e for e in parse_squad(squad_v2_dict(), "<v2>").examples if e.is_impossible]
    with pytest.raises(GPT2QAError, match="id=q2: an unanswerable question cannot be written"):
        examples_to_squad_json([q2], version="1.1")


# --- real data ---------------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize(("parts", "n", "answerable", "is_v2"), [
    (("squad-v2", "cs224n-dev-v2.0.json"), 6078, 2910, True),
    (("squad-v2", "train-v2.0-first10articles.json"), 4719, 4371, True),
    (("squad-v1.1", "bloomsbury-dev-half-v1.1.json"), 4961, 4961, False),
])
def test_real_files(parts: tuple[str, str], n: int, answerable: int, is_v2: bool,
                    shared_data) -> None:
    ds = load_squad(shared_data(*parts))
    assert len(ds.examples) == n
    assert sum(not e.is_impossible for e in ds.examples) == answerable
    assert sum(e.is_impossible for e in ds.examples) == n - answerable
    assert ds.is_v2 is is_v2
    assert ds.repairs == ()
    assert len({e.qas_id for e in ds.examples}) == n
    if is_v2:
        impossible = [e for e in ds.examples if e.is_impossible]
        assert all(e.plausible_answers and not e.answers for e in impossible)
    unchecked = load_squad(shared_data(*parts), check_offsets=False)
    assert unchecked.examples == ds.examples


# --- a 100 MB file -----------------------------------------------------------------------

def write_big_squad(path: Path, target_bytes: int) -> tuple[int, int]:
    """Stream a SQuAD 2.0 file of about ``target_bytes``; return (questions, answerable)."""
    filler = ("The river Zorbel flows 412 kilometres from the Hask mountains to the sea, past "
              "the café towns where Émile sold maps 🎉 to travellers. ") * 4
    questions = answerable = 0
    with path.open("w", encoding="utf-8") as f:
        f.write('{"version": "v2.0", "data": [')
        n = 0
        while f.tell() < target_bytes:
            context = f"Paragraph {n}: Tavrik {n} was founded in {1800 + n % 200}. {filler}"
            year = str(1800 + n % 200)
            qas = [{"id": f"p{n}-q{k}", "question": f"When was Tavrik {n} founded ({k})?",
                    "answers": [{"text": year, "answer_start": context.index(year)}],
                    "is_impossible": False} for k in range(4)]
            qas.append({"id": f"p{n}-x", "question": f"Who mapped Tavrik {n}?", "answers": [],
                        "plausible_answers": [{"text": "Émile", "answer_start":
                                               context.index("Émile")}],
                        "is_impossible": True})
            article = {"title": f"T{n // 50}", "paragraphs": [{"context": context, "qas": qas}]}
            f.write(("," if n else "") + json.dumps(article, ensure_ascii=False))
            questions += 5
            answerable += 4
            n += 1
        f.write("]}")
    return questions, answerable


LOAD_AND_MEASURE = """
import json, resource, sys, time
from gpt2qa.data import load_squad
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
ds = load_squad(sys.argv[1])
seconds = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": len(ds.examples), "answerable": sum(not e.is_impossible for e in ds.examples),
                  "repairs": len(ds.repairs), "before_kib": before, "after_kib": after,
                  "seconds": seconds}))
"""


@pytest.mark.slow
def test_100mb_file_loads_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big-v2.json"
    questions, answerable = write_big_squad(path, 100 * 2**20)
    size = path.stat().st_size
    assert 100 * 2**20 <= size < 101 * 2**20
    # A fresh process, so that ru_maxrss (a lifetime peak) measures this load alone.
    src = str(Path(gpt2qa.data.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, str(path)], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    stats = json.loads(done.stdout)
    path.unlink()
    assert stats["n"] == questions and stats["answerable"] == answerable
    assert stats["repairs"] == 0
    growth_gib = (stats["after_kib"] - stats["before_kib"]) / 2**20  # Linux: KiB
    print(f"\n100 MB load: {stats['seconds']:.1f} s, peak RSS growth {growth_gib:.2f} GiB, "
          f"{questions} questions")
    assert growth_gib < 4.0
