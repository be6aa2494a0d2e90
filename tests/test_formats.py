"""The readers of every layout (`gpt2qa.readers`): flat rows in JSON lines, a JSON list, CSV
and Parquet, MRQA JSON lines, and their detection; each gives the same `SquadExample`s as the
official JSON, or one line naming the file, the row or line, the field and the id."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import re
import sys
from pathlib import Path

import pytest

from builders import squad_rows
from gpt2qa import tasks
from gpt2qa.config import DataFormat, FeatureConfig
from gpt2qa.data import load_squad
from gpt2qa.errors import DataError, GPT2QAError
from gpt2qa.readers import file_layout, iter_examples, load_examples

REMAPPED = DataFormat(id_column="key", question_column="q", context_column="passage",
                      answer_column="gold")
RENAMES = {"id": "key", "question": "q", "context": "passage", "answers": "gold"}


def rich_squad(squad_v2_dict) -> dict:
    """The tiny SQuAD 2.0 file plus a question with two answers and a second question on a
    context (no plausible answers: flat rows do not carry them)."""
    d = squad_v2_dict()
    qas = d["data"][0]["paragraphs"][0]["qas"]
    ctx = d["data"][0]["paragraphs"][0]["context"]
    del qas[1]["plausible_answers"]
    qas.append({"id": "q4", "question": "Where is the tower?", "is_impossible": False,
                "answers": [{"text": "Paris", "answer_start": ctx.index("Paris")},
                            {"text": "Paris, France", "answer_start": ctx.index("Paris")}]})
    return d


def renamed(rows: list[dict], names: dict[str, str]) -> list[dict]:
    return [{names.get(k, k): v for k, v in row.items()} for row in rows]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """`rows` in the container `path`'s name asks for: .jsonl, .json, .csv or .parquet."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif path.suffix == ".csv":
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v
                                 for k, v in row.items()})
    else:
        pq = pytest.importorskip("pyarrow.parquet")
        import pyarrow

        pq.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


CONTAINERS = ["rows.jsonl", "rows.json", "rows.csv", "rows.parquet"]


@pytest.mark.parametrize("name", CONTAINERS)
@pytest.mark.parametrize("columns", ["default", "remapped"])
def test_squad_json_to_rows_reads_back_the_same_examples(tmp_path, squad_v2_dict, name,
                                                         columns):
    d = rich_squad(squad_v2_dict)
    (tmp_path / "squad.json").write_text(json.dumps(d), encoding="utf-8")
    official = load_squad(tmp_path / "squad.json")
    rows = squad_rows(d)
    reading = DataFormat() if columns == "default" else REMAPPED
    if columns == "remapped":
        rows = renamed(rows, RENAMES)
    path = write_rows(tmp_path / name, rows)
    got = load_examples(path, reading=reading)
    assert got.examples == official.examples
    assert [e.qas_id for e in got.examples] == ["q1", "q2", "q4", "q3"]
    assert [a.text for a in got.examples[2].answers] == ["Paris", "Paris, France"]
    assert got.examples[0].context is got.examples[1].context  # one passage, one string
    assert (got.is_v2, got.version) == (True, "v2.0")
    assert file_layout(path) == {"jsonl": "jsonl", "json": "json", "csv": "csv",
                                 "parquet": "parquet"}[name.split(".")[1]]
    assert tasks.for_data(path).name == "squad"


def test_json_lines_stream_one_line_at_a_time(tmp_path, squad_v2_dict):
    rows = squad_rows(squad_v2_dict())
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n",
                    encoding="utf-8")
    stream = iter_examples(path)
    assert [next(stream).qas_id for _ in rows] == ["q1", "q2", "q3"]  # read before line 4
    with pytest.raises(DataError, match=r"big\.jsonl: line 4: invalid JSON at column 2"):
        next(stream)
    compressed = tmp_path / "rows.jsonl.gz"
    compressed.write_bytes(gzip.compress(path.read_bytes().rsplit(b"{not", 1)[0]))
    assert [e.qas_id for e in iter_examples(compressed)] == ["q1", "q2", "q3"]


def test_rows_without_answers_are_predicted_but_not_trained_on(tmp_path, squad_v2_dict):
    rows = [{k: v for k, v in r.items() if k != "answers"} for r in squad_rows(squad_v2_dict())]
    path = write_rows(tmp_path / "questions.jsonl", rows)
    for_predict = tasks.get("squad").read(str(path), gold=False)
    assert [e.answers for e in for_predict.examples] == [(), (), ()]
    with pytest.raises(DataError, match=r"line 1: id=q1: missing column 'answers' "
                                        r"\(--answer-column names another\)"):
        tasks.get("squad").read(str(path))


def inclusive(context: str, text: str, after: int = 0) -> list[int]:
    """MRQA's char span of `text` in `context`: [start, end] with the end INCLUSIVE."""
    start = context.index(text, after)
    return [start, start + len(text) - 1]


def mrqa_lines() -> list[dict]:
    """A header and two contexts, as the MRQA shared task writes them: INCLUSIVE char spans,
    an answer found twice, and two detected answers for one question."""
    c1 = "Tavrik is a city of 31,000 people founded by Quell Mebbit in 1834. Tavrik grew."
    c2 = "The river Zorbel flows 412 kilometres from the Hask mountains to the sea."
    return [
        {"header": {"dataset": "Tiny", "split": "dev"}},
        {"context": c1, "context_tokens": [["Tavrik", 0]], "qas": [
            {"qid": "m1", "question": "Which city did Quell Mebbit found?",
             "detected_answers": [{"text": "Tavrik", "char_spans": [
                 inclusive(c1, "Tavrik"), inclusive(c1, "Tavrik", 1)],
                 "token_spans": [[0, 0], [13, 13]]}],
             "answers": ["Tavrik"]},
            {"qid": "m2", "question": "When was Tavrik founded?",
             "detected_answers": [{"text": "1834", "char_spans": [inclusive(c1, "1834")]},
                                  {"text": "in 1834", "char_spans": [inclusive(c1, "in 1834")]}],
             "answers": ["1834", "in 1834"]}]},
        {"context": c2, "qas": [
            {"qid": "m3", "question": "How long is the Zorbel?",
             "detected_answers": [{"text": "412 kilometres",
                                   "char_spans": [inclusive(c2, "412 kilometres")]}],
             "answers": ["412 kilometres"]}]},
    ]


def write_lines(path: Path, lines: list[dict]) -> Path:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("name", ["dev.jsonl", "NewsQA.jsonl.gz"])
def test_mrqa_every_inclusive_char_span_is_an_answer(tmp_path, name):
    lines = mrqa_lines()
    path = write_lines(tmp_path / name, lines)
    assert file_layout(path) == "mrqa" and tasks.for_data(path).name == "squad"
    dataset = load_examples(path)
    assert [e.qas_id for e in dataset.examples] == ["m1", "m2", "m3"]
    assert (dataset.is_v2, dataset.version) == (False, "1.1")
    assert not any(e.is_impossible for e in dataset.examples)
    by_id = {e.qas_id: e for e in dataset.examples}
    for line in lines[1:]:
        for qa in line["qas"]:
            spans = [(d["text"], s, e) for d in qa["detected_answers"] for s, e in d["char_spans"]]
            answers = by_id[qa["qid"]].answers
            assert [(a.text, a.answer_start, a.answer_end - 1) for a in answers] == spans
            for answer in answers:  # the inclusive end: the span's last character is in it
                assert line["context"][answer.answer_start:answer.answer_end] == answer.text


def test_mrqa_training_warns_that_it_cannot_learn_to_abstain(tmp_path, capsys):
    dataset = load_examples(write_lines(tmp_path / "m.jsonl", mrqa_lines()))
    with pytest.raises(GPT2QAError, match="only 0.0% of the answerable"):  # no windows here
        tasks.get("squad").check_training(dataset, [], "m.jsonl", FeatureConfig())
    assert "m.jsonl: no unanswerable questions, so the model cannot learn to abstain" in \
        capsys.readouterr().err


def hotpot_item() -> dict:
    return {"_id": "h1", "question": "Who?", "answer": "Ana", "type": "bridge", "level": "easy",
            "supporting_facts": [["A", 0]], "context": [["A", ["Ana was here."]]]}


def test_detection_keeps_hotpotqa_and_honours_a_forced_format(tmp_path, squad_v2_dict):
    hotpot = tmp_path / "hotpot.json"
    hotpot.write_text(json.dumps([hotpot_item()]), encoding="utf-8")
    assert file_layout(hotpot) is None and tasks.for_data(hotpot).name == "hotpotqa"
    assert tasks.get("hotpotqa").sniff(str(hotpot)) and not tasks.get("squad").sniff(str(hotpot))
    rows = write_rows(tmp_path / "rows.json", squad_rows(squad_v2_dict()))
    assert not tasks.get("hotpotqa").sniff(str(rows))
    squad = tmp_path / "one-line.json"  # the official layout on one line, first key "data"
    squad.write_text(json.dumps({"data": squad_v2_dict()["data"], "version": "v2.0"}))
    assert file_layout(squad) == "squad"
    # Forced: a JSON list read as rows, MRQA without its header, rows in a .txt file.
    assert file_layout(rows, "rows") == "json"
    headless = write_lines(tmp_path / "headless.txt", mrqa_lines()[1:])
    assert file_layout(headless) == "jsonl" and file_layout(headless, "mrqa") == "mrqa"
    assert len(load_examples(headless, reading=DataFormat(data_format="mrqa")).examples) == 3
    assert tasks.resolve("auto", data=hotpot, data_format="rows").name == "squad"
    with pytest.raises(GPT2QAError, match="--data-format rows is not supported for hotpotqa"):
        tasks.resolve("hotpotqa", data=hotpot, data_format="rows")


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"PAR1 not really")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert file_layout(path) == "parquet"  # by name, without pyarrow
    with pytest.raises(GPT2QAError) as info:
        load_examples(path)
    assert str(info.value) == f"{path}: reading Parquet needs pyarrow: pip install " \
                              "'gpt2qa[parquet]'"


def _row(**changes):
    ctx = "The Eiffel Tower was completed in 1889 in Paris, France."
    row = {"id": "a", "title": "T", "context": ctx, "question": "When?",
           "answers": {"text": ["1889"], "answer_start": [34]}}
    return {**row, **changes}


BAD_JSONL = [
    ([_row(), _row(id="b", question=None)],
     r"line 2: question: id=b: expected a string, got null"),
    ([_row(), {k: v for k, v in _row(id="b").items() if k != "question"}],
     r"line 2: id=b: missing column 'question' \(--question-column names another\)"),
    ([_row(answers={"text": ["1889"], "answer_start": [4]})],
     r"line 1: answers\.answer_start\[0\]: id=a: context\[4:8\] is \"Eiff\", not the answer "
     r"text \"1889\""),
    ([_row(answers={"text": ["1889"], "answer_start": [90]})],
     r"line 1: answers\.answer_start\[0\]: id=a: answer_start 90 \+ length 4 is outside"),
    ([_row(), _row(question="Again?")], r"line 2: id=a: duplicate id, first used at line 1"),
    ([_row(answers={"text": ["1889", "Paris"], "answer_start": [34]})],
     r"line 1: answers: id=a: 2 texts but 1 answer_start offsets"),
    ([_row(answers=[{"text": "1889", "answer_start": 34}])],
     r"line 1: answers: id=a: expected an object \{\"text\""),
    ([_row(answers={"text": [""], "answer_start": [34]})],
     r"line 1: answers\.text\[0\]: id=a: expected a non-empty string"),
    ([_row(answers={"text": ["1889"], "answer_start": ["34"]})],
     r"line 1: answers\.answer_start\[0\]: id=a: expected an integer, got a string"),
    ([_row(context="  ")], r"line 1: context: id=a: context is empty or whitespace only"),
    ([_row(id="")], r"line 1: id: id is empty or whitespace only"),
    ([_row(), ["not", "a", "row"]], r"line 2: expected an object \(one row\), got an array"),
]


@pytest.mark.parametrize(("rows", "message"), BAD_JSONL)
def test_bad_rows_are_one_line_naming_file_line_field_and_id(tmp_path, rows, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"^" + str(path).replace(".", r"\.") + ": " + message):
        load_examples(path)


def test_lone_surrogate_in_a_line_is_named(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(_row(question="When\ud800?")) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: question: id=a: lone UTF-16 surrogate U\+D800"):
        load_examples(path)


@pytest.mark.parametrize(("text", "message"), [
    ("id,question,context\na,q,c\n",
     r"line 1: missing column 'answers' \(the columns are 'id', 'question', 'context'; "
     r"--answer-column names another\)"),
    ('id,question,context,answers\na,When?,In 1889.,{"text": [\n',
     r"line 2: answers: id=a: not JSON: a CSV cell holds the answers as JSON text"),
    ("id,question,context,answers\na,When?,In 1889.\n", r"line 2: 3 cells, but the header has 4"),
    ('id,question,context,answers\na,When?,"In\n1889.",\nb,Who?,Ana.,\n',
     r"line 2: answers: id=a: the cell is empty"),
])
def test_bad_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_examples(path)


def test_csv_record_spanning_lines_is_named_by_its_first_line(tmp_path):
    path = tmp_path / "multi.csv"

    def write(start: int) -> None:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "question", "context", "answers"])
            writer.writerow(["a", "When?", "In\n1889.", '{"text": [], "answer_start": []}'])
            writer.writerow(["b", "When?", "In 1889.",
                             json.dumps({"text": ["1889"], "answer_start": [start]})])

    write(3)
    dataset = load_examples(path)
    assert [(e.qas_id, e.is_impossible) for e in dataset.examples] == [("a", True), ("b", False)]
    assert dataset.examples[0].context == "In\n1889."
    write(0)
    with pytest.raises(DataError, match=r"multi\.csv: line 4: answers\.answer_start\[0\]: id=b"):
        load_examples(path)


def test_parquet_missing_column_and_bad_row(tmp_path, squad_v2_dict):
    rows = squad_rows(squad_v2_dict())
    path = write_rows(tmp_path / "r.parquet", renamed(rows, {"question": "query"}))
    with pytest.raises(DataError, match=r"r\.parquet: schema: missing column 'question' "
                                        r"\(the columns are .*'query'"):
        load_examples(path)
    rows[2]["id"] = "q1"
    write_rows(path, rows)
    with pytest.raises(DataError, match=r"r\.parquet: row 2: id=q1: duplicate id, first used "
                                        r"at row 0"):
        load_examples(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda ls: ls[1]["qas"][0]["detected_answers"][0]["char_spans"].append([70, 200]),
     r"line 2: qas\[0\]\.detected_answers\[0\]\.char_spans\[2\]: id=m1: char span \[70, 200\] "
     r"\(inclusive\) is not inside the context \(length 79\)"),
    (lambda ls: ls[2]["qas"][0].update(qid="m1"),
     r"line 3: qas\[0\]: id=m1: duplicate qid, first used at line 2: qas\[0\]"),
    (lambda ls: ls[2]["qas"][0].update(detected_answers=[]),
     r"line 3: qas\[0\]\.detected_answers: id=m3: no detected answers"),
    (lambda ls: ls[2]["qas"][0]["detected_answers"][0].update(char_spans=[[23]]),
     r"line 3: qas\[0\]\.detected_answers\[0\]\.char_spans\[0\]: id=m3: expected \[start, end\]"),
    (lambda ls: ls[2].pop("context"), r"line 3: missing field 'context'"),
])
def test_bad_mrqa(tmp_path, edit, message):
    lines = mrqa_lines()
    edit(lines)
    with pytest.raises(DataError, match=message):
        load_examples(write_lines(tmp_path / "bad.jsonl", lines))


def test_misaligned_policy_is_the_official_layouts(tmp_path):
    rows = [_row(answers={"text": ["1889", "Paris"], "answer_start": [30, 42]}),
            _row(id="b", answers={"text": ["Rome"], "answer_start": [0]})]
    path = write_rows(tmp_path / "m.jsonl", rows)
    skipped = load_examples(path, misaligned="skip")
    assert [(e.qas_id, [a.text for a in e.answers]) for e in skipped.examples] == [
        ("a", ["Paris"])]
    assert [(r.qas_id, r.action) for r in skipped.repairs] == [("a", "skipped"), ("b", "skipped"),
                                                              ("b", "skipped")]
    assert skipped.repairs[0].json_path == "line 1: answers.answer_start[0]"
    fixed = load_examples(path, misaligned="fix-by-search")
    assert fixed.examples[0].answers[0].answer_start == 34
    assert [e.qas_id for e in fixed.examples] == ["a"]  # "Rome" is nowhere in the context
    as_written = load_examples(path, check_offsets=False)
    assert as_written.examples[1].answers[0].answer_start == 0
    lines = mrqa_lines()
    lines[2]["qas"][0]["detected_answers"][0]["char_spans"] = [[100, 113]]
    mrqa = load_examples(write_lines(tmp_path / "m2.jsonl", lines), misaligned="fix-by-search")
    assert mrqa.examples[2].answers[0].answer_start == 23
    assert mrqa.repairs[0].action == "fixed"


@pytest.mark.realdata
@pytest.mark.parametrize("parts", [("squad-v2", "cs224n-dev-v2.0.json"),
                                   ("squad-v2", "train-v2.0-first10articles.json"),
                                   ("squad-v1.1", "bloomsbury-dev-half-v1.1.json")])
def test_rows_from_real_squad_files_match_them(shared_data, tmp_path, parts):
    """Real SQuAD files through flat rows (JSON lines): the same examples, less the plausible
    answers rows do not carry, and the same SQuAD version."""
    dev = shared_data(*parts)
    official = load_squad(dev)
    rows = squad_rows(json.loads(dev.read_text(encoding="utf-8")))
    got = load_examples(write_rows(tmp_path / "dev.jsonl", rows))
    assert got.examples == tuple(dataclasses.replace(e, plausible_answers=())
                                 for e in official.examples)
    assert got.is_v2 == official.is_v2 and len(got.examples) > 1000


DOCS = Path(__file__).resolve().parents[1] / "docs" / "data.md"


def docs_blocks(kind: str) -> dict[str, str]:
    """docs/data.md's fenced blocks after ``<!-- KIND: NAME -->``, by NAME."""
    text = DOCS.read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(
        rf"<!-- {kind}: (\S+) -->\n```\w*\n(.*?)```", text, re.S)}


def test_the_examples_in_docs_data_md_read_as_it_says(tmp_path):
    files = docs_blocks("file")
    assert set(files) == {"qa.jsonl", "qa.json", "qa.csv", "mrqa.jsonl"}
    for name, body in files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    command = docs_blocks("command")["qa.csv"].split()
    flags = {command[i][2:].replace("-", "_"): command[i + 1] for i in range(len(command) - 1)
             if command[i].endswith("-column")}
    got = {name: [(e.qas_id, [(a.text, a.answer_start) for a in e.answers])
                  for e in load_examples(tmp_path / name, reading=DataFormat(**flags)
                                         if name.endswith(".csv") else None).examples]
           for name in files}
    tower = [("q1", [("1889", 34)]), ("q2", [])]
    assert got == {"qa.jsonl": tower, "qa.json": tower[:1], "qa.csv": tower,
                   "mrqa.jsonl": [("m1", [("1889", 34)])]}
    assert [file_layout(tmp_path / name) for name in files] == ["jsonl", "json", "csv", "mrqa"]
