"""Flat rows -> `SquadExample`s: one question per row, as `datasets` writes SQuAD and HF
run_qa.py reads it, in JSON lines, a JSON list, CSV or Parquet (docs/data.md).

A row has an id, a question, a context, an optional title and the answers,
``{"text": [...], "answer_start": [...]}`` (empty lists: unanswerable, as SQuAD 2.0 is written
by `datasets`); `DataFormat` names the columns. Every error is one `DataError` naming the
file, the row (``line N`` in JSON lines and CSV, as an editor numbers lines; ``row i`` in a JSON
list, Parquet or a hub split, counted from 0), the column and the id. Answers whose offset
does not point at their text follow ``misaligned``, as in the official layout
(`gpt2qa.data.parse_squad`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gpt2qa.config import DataFormat, Misaligned
from gpt2qa.data import (
    Answer,
    Repair,
    SquadExample,
    align_answers,
    describe_json,
    read_json_document,
)
from gpt2qa.errors import DataError, GPT2QAError
from gpt2qa.readers.lines import escapes_lone_surrogate, json_lines, refuse_lone_surrogates

PARQUET_BATCH_ROWS = 1024
"""Rows decoded from Parquet at a time (memory stays bounded however long the file)."""
_MISSING = object()
_FLAGS = {"id_column": "--id-column", "question_column": "--question-column",
          "context_column": "--context-column", "answer_column": "--answer-column"}


class RowReader:
    """Turns rows into examples, in order, checking each as `parse_squad` checks a question;
    it remembers the ids seen (to refuse a duplicate) and appends every repair to `repairs`.

    ``check_offsets=False`` keeps answers as written (evaluation compares texts only);
    ``require_answers=False`` lets the answer column be absent (questions to predict).
    """

    def __init__(self, path: str, reading: DataFormat, misaligned: Misaligned = "error",
                 check_offsets: bool = True, require_answers: bool = True,
                 repairs: list[Repair] | None = None, unique_ids: bool = True) -> None:
        self.path, self.reading, self.misaligned = path, reading, misaligned
        self.check_offsets, self.require_answers = check_offsets, require_answers
        self.repairs = repairs if repairs is not None else []
        self.seen: dict[str, str] | None = {} if unique_ids else None
        self.context = ""
        """The last row's context: the next row's equal one becomes the same object, so the
        questions of one passage share it in memory, as in the official layout."""

    def required(self) -> list[tuple[str, str]]:
        """(column, flag) of the columns every row must have."""
        names = ["id_column", "question_column", "context_column"]
        names += ["answer_column"] if self.require_answers else []
        return [(getattr(self.reading, n), _FLAGS[n]) for n in names]

    def check_columns(self, names: Iterable[str], where: str) -> None:
        """Refuse a header (CSV) or schema (Parquet) without a required column, in one line."""
        have = list(names)
        for column, flag in self.required():
            if column not in have:
                shown = ", ".join(map(repr, have[:12])) + (", ..." if len(have) > 12 else "")
                raise DataError(self.path, f"missing column {column!r} (the columns are "
                                           f"{shown or 'none'}; {flag} names another)", where)

    def example(self, row: Any, where: str, surrogate: bool = False,
                answers_as_json: bool = False) -> SquadExample | None:
        """One row -> an example, or None when its answers were all dropped (a `Repair`).
        `surrogate`: the row's JSON escaped a lone surrogate (its strings are checked);
        `answers_as_json`: a CSV row, whose answer cell holds JSON text."""
        if not isinstance(row, Mapping):
            raise DataError(self.path, f"expected an object (one row), got {describe_json(row)}",
                            where)
        reading = self.reading
        qas_id = self._id(row, where)
        question = self._text(row, reading.question_column, where, qas_id)
        context = self._text(row, reading.context_column, where, qas_id)
        if context == self.context:
            context = self.context
        self.context = context
        title = row.get("title")
        if title is not None and not isinstance(title, str):
            raise DataError(self.path, f"expected a string, got {describe_json(title)}",
                            f"{where}: title", qas_id)
        cell = row.get(reading.answer_column, _MISSING)
        if answers_as_json and isinstance(cell, str):
            surrogate = surrogate or escapes_lone_surrogate(cell)
            cell = self._json_cell(cell, where, qas_id)
        answers = self._answers(cell, where, qas_id)
        example = SquadExample(qas_id=qas_id, question=question, context=context,
                               answers=answers or (), is_impossible=answers == (),
                               title=title or "")
        if surrogate:
            self._check_unicode(example, where)
        if self.check_offsets and answers:
            kept = align_answers(
                answers, lambda i: f"{where}: {reading.answer_column}.answer_start[{i}]",
                context, self.path, qas_id, self.misaligned, self.repairs)
            if not kept:
                self.repairs.append(Repair(qas_id, where, "skipped", f"question skipped: none "
                                           f"of its {len(answers)} answers aligns with the "
                                           "context"))
                return None
            example = SquadExample(qas_id=qas_id, question=question, context=context,
                                   answers=kept, is_impossible=False, title=title or "")
        return example

    def _missing(self, column: str, where: str, qas_id: str | None = None) -> DataError:
        flag = next(f for n, f in _FLAGS.items() if getattr(self.reading, n) == column)
        return DataError(self.path, f"missing column {column!r} ({flag} names another)", where,
                         qas_id)

    def _id(self, row: Mapping[str, Any], where: str) -> str:
        column = self.reading.id_column
        value = row.get(column, _MISSING)
        if value is _MISSING:
            raise self._missing(column, where)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # hub and Parquet files may number their questions
        if not isinstance(value, str):
            raise DataError(self.path, f"expected a string, got {describe_json(value)}",
                            f"{where}: {column}")
        if not value.strip():
            raise DataError(self.path, "id is empty or whitespace only", f"{where}: {column}")
        if self.seen is not None:
            if value in self.seen:
                raise DataError(self.path, f"duplicate id, first used at {self.seen[value]}",
                                where, value)
            self.seen[value] = where
        return value

    def _text(self, row: Mapping[str, Any], column: str, where: str, qas_id: str) -> str:
        value = row.get(column, _MISSING)
        if value is _MISSING:
            raise self._missing(column, where, qas_id)
        if not isinstance(value, str):
            raise DataError(self.path, f"expected a string, got {describe_json(value)}",
                            f"{where}: {column}", qas_id)
        if not value.strip():
            raise DataError(self.path, f"{column} is empty or whitespace only",
                            f"{where}: {column}", qas_id)
        return value

    def _json_cell(self, cell: str, where: str, qas_id: str) -> Any:
        column = self.reading.answer_column
        if not cell.strip():
            if not self.require_answers:
                return _MISSING
            raise DataError(self.path, 'the cell is empty; write {"text": [], "answer_start": '
                                       '[]} for an unanswerable question', f"{where}: {column}",
                            qas_id)
        try:
            return json.loads(cell)
        except (ValueError, RecursionError):
            raise DataError(self.path, 'not JSON: a CSV cell holds the answers as JSON text, '
                                       '{"text": [...], "answer_start": [...]}',
                            f"{where}: {column}", qas_id) from None

    def _answers(self, cell: Any, where: str, qas_id: str) -> tuple[Answer, ...] | None:
        """The row's answers; None when the column is absent and answers are not required."""
        column = self.reading.answer_column
        if cell is _MISSING or cell is None:
            if self.require_answers:
                raise self._missing(column, where, qas_id)
            return None
        at = f"{where}: {column}"
        if not isinstance(cell, Mapping):
            raise DataError(self.path, f'expected an object {{"text": [...], "answer_start": '
                                       f'[...]}}, got {describe_json(cell)}', at, qas_id)
        texts, starts = (self._list(cell, key, at, qas_id) for key in ("text", "answer_start"))
        if len(texts) != len(starts):
            raise DataError(self.path, f"{len(texts)} texts but {len(starts)} answer_start "
                                       "offsets", at, qas_id)
        answers = []
        for i, (text, start) in enumerate(zip(texts, starts, strict=True)):
            if not isinstance(text, str) or not text:
                raise DataError(self.path, f"expected a non-empty string, got "
                                           f"{describe_json(text)}", f"{at}.text[{i}]", qas_id)
            if not isinstance(start, int) or isinstance(start, bool):
                raise DataError(self.path, f"expected an integer, got {describe_json(start)}",
                                f"{at}.answer_start[{i}]", qas_id)
            answers.append(Answer(text=text, answer_start=start))
        return tuple(answers)

    def _list(self, cell: Mapping[str, Any], key: str, at: str, qas_id: str) -> list[Any]:
        value = cell.get(key, _MISSING)
        if value is _MISSING:
            raise DataError(self.path, f"missing field {key!r}", at, qas_id)
        if not isinstance(value, (list, tuple)):
            raise DataError(self.path, f"expected an array, got {describe_json(value)}",
                            f"{at}.{key}", qas_id)
        return list(value)

    def _check_unicode(self, example: SquadExample, where: str) -> None:
        reading = self.reading
        refuse_lone_surrogates(self.path, where, example.qas_id, [
            (reading.id_column, example.qas_id), ("title", example.title),
            (reading.question_column, example.question), (reading.context_column, example.context),
            *((f"{reading.answer_column}.text[{i}]", a.text) for i, a in enumerate(example.answers))])

def iter_rows(rows: Iterable[Any], reader: RowReader) -> Iterator[SquadExample]:
    """Rows already in memory (a JSON list, a hub split), named ``row i`` from 0."""
    for i, row in enumerate(rows):
        example = reader.example(row, f"row {i}")
        if example is not None:
            yield example


def iter_jsonl(path: str | os.PathLike[str], reader: RowReader) -> Iterator[SquadExample]:
    """A JSON-lines file, one line at a time."""
    for line in json_lines(path):
        example = reader.example(line.value, f"line {line.number}", surrogate=line.surrogate)
        if example is not None:
            yield example


def iter_json_list(path: str | os.PathLike[str], reader: RowReader) -> Iterator[SquadExample]:
    """A JSON list of rows (parsed whole: JSON has no cheaper way to reach its end)."""
    rows = read_json_document(path)
    if not isinstance(rows, list):
        raise DataError(str(path), f"top level is {describe_json(rows)}, expected a list of "
                                   "rows")
    yield from iter_rows(rows, reader)


def iter_csv(path: str | os.PathLike[str], reader: RowReader) -> Iterator[SquadExample]:
    """A CSV file with a header line, one record at a time (a quoted cell may span lines; a
    record is named by the line it starts on)."""
    name, line = str(path), 1
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # contexts beyond 128 KiB
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            records = csv.reader(fh)
            header = next(records, None)
            if header is None:
                return
            reader.check_columns(header, "line 1")
            line = records.line_num + 1
            for record in records:
                start, line = line, records.line_num + 1
                if not record:
                    continue
                if len(record) != len(header):
                    raise DataError(name, f"{len(record)} cells, but the header has "
                                          f"{len(header)}", f"line {start}")
                example = reader.example(dict(zip(header, record, strict=True)),
                                         f"line {start}", answers_as_json=True)
                if example is not None:
                    yield example
    except UnicodeDecodeError as exc:
        raise DataError(name, f"not valid UTF-8 ({exc.reason})", f"line {line}") from None
    except csv.Error as exc:
        raise DataError(name, f"not valid CSV ({exc})", f"line {line}") from None
    except OSError as exc:
        raise DataError(name, f"cannot read file: {exc.strerror or exc}") from None


def iter_parquet(path: str | os.PathLike[str], reader: RowReader) -> Iterator[SquadExample]:
    """A Parquet file, `PARQUET_BATCH_ROWS` rows at a time (needs the parquet extra); Arrow
    decodes a whole row group first, so memory is bounded by the file's row-group size."""
    name = str(path)
    pq, arrow_error = parquet_module(name)
    try:
        table = pq.ParquetFile(path)
        columns = table.schema_arrow.names
        reader.check_columns(columns, "schema")
        wanted = dict.fromkeys([*(c for c, _ in reader.required()), "title",
                                reader.reading.answer_column])
        batches = table.iter_batches(batch_size=PARQUET_BATCH_ROWS,
                                     columns=[c for c in wanted if c in columns])
        row = 0
        for batch in batches:
            for item in batch.to_pylist():
                example = reader.example(item, f"row {row}")
                row += 1
                if example is not None:
                    yield example
    except (OSError, arrow_error) as exc:
        raise DataError(name, f"not a readable Parquet file ({exc})") from None


def parquet_module(source: str) -> tuple[Any, type[Exception]]:
    """pyarrow.parquet and Arrow's base error, or one line naming `source` and the extra that
    installs pyarrow."""
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise GPT2QAError(f"{source}: reading Parquet needs pyarrow: pip install "
                          "'gpt2qa[parquet]'") from None
    return pq, pyarrow.ArrowException
