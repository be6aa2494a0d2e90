"""Every layout of extractive-QA data gpt2qa reads, into the same `SquadExample` records
(docs/data.md, "Bring your own data").

`--data-format` (`DataFormat.data_format`) picks the reader, or auto finds it (`sniff`):

  squad  the official nested SQuAD JSON (v1.1 or v2.0), `gpt2qa.data.load_squad`
  rows   one question per row, as `datasets` writes SQuAD and HF run_qa.py reads it: JSON
         lines, a JSON list, CSV (answers as JSON in a cell) or Parquet (the parquet extra),
         with the columns `DataFormat` names (`readers.rows`)
  mrqa   MRQA shared-task JSON lines, plain or gzip (`readers.mrqa`)

`load_examples` is the one loader of the SQuAD task's data: train, predict, evaluate,
check-spans, study and the hub (`gpt2qa.hub_data`) all read through it. `iter_examples` streams
JSON lines, CSV and Parquet one question at a time, in bounded memory, for a caller that
processes questions as they come.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from gpt2qa.config import DataFormat, Misaligned
from gpt2qa.data import Repair, SquadDataset, SquadExample, gc_paused, load_squad
from gpt2qa.errors import DataError
from gpt2qa.readers.mrqa import iter_mrqa
from gpt2qa.readers.rows import (
    RowReader,
    iter_csv,
    iter_json_list,
    iter_jsonl,
    iter_parquet,
    iter_rows,
)
from gpt2qa.readers.sniff import (
    CSV,
    JSON_LIST,
    JSONL,
    LAYOUTS,
    MRQA,
    PARQUET,
    ROW_LAYOUTS,
    SQUAD,
    file_layout,
)

__all__ = ["LAYOUTS", "ROW_LAYOUTS", "file_layout", "iter_examples", "load_examples",
           "rows_dataset", "sniff"]

_ROW_READERS = {JSONL: iter_jsonl, JSON_LIST: iter_json_list, CSV: iter_csv,
                PARQUET: iter_parquet}


def sniff(path: str | os.PathLike[str]) -> bool:
    """Whether auto detection finds one of these layouts in the file (the SQuAD task's claim;
    a HotpotQA list is not one)."""
    return file_layout(path) is not None


def layout_of(path: str | os.PathLike[str], reading: DataFormat) -> str:
    """The layout `reading` asks for, or the one auto finds; one line when auto finds none."""
    layout = file_layout(path, reading.data_format)
    if layout is None:
        raise DataError(str(path), "not a data file gpt2qa reads here: the official SQuAD "
                                   "JSON, flat rows (JSON lines, a JSON list, CSV, Parquet) or "
                                   "MRQA JSON lines (docs/data.md); --data-format picks one")
    return layout


def iter_examples(path: str | os.PathLike[str], reading: DataFormat | None = None,
                  misaligned: Misaligned = "error", check_offsets: bool = True,
                  require_answers: bool = True, repairs: list[Repair] | None = None,
                  unique_ids: bool = True) -> Iterator[SquadExample]:
    """The file's questions, in order, each checked (`readers.rows`, `readers.mrqa`).

    JSON lines (rows and MRQA), CSV and Parquet (a row group at a time) are read as they are
    consumed, so memory stays bounded; the official SQuAD JSON and a JSON list are parsed
    whole first. ``repairs``
    receives each answer dropped or moved under ``misaligned``; ``check_offsets=False`` keeps
    answers as written; ``require_answers=False`` accepts rows without an answer column
    (questions to predict); ``unique_ids=False`` stops remembering every id (a caller that
    streams millions of questions and checks ids itself).
    """
    reading = reading or DataFormat()
    repairs = repairs if repairs is not None else []
    return _examples(str(path), layout_of(path, reading), reading, misaligned, check_offsets,
                     require_answers, repairs, unique_ids)


def _examples(name: str, layout: str, reading: DataFormat, misaligned: Misaligned,
              check_offsets: bool, require_answers: bool, repairs: list[Repair],
              unique_ids: bool = True) -> Iterator[SquadExample]:
    if layout == SQUAD:
        dataset = load_squad(name, misaligned, check_offsets=check_offsets)
        repairs.extend(dataset.repairs)
        return iter(dataset.examples)
    if layout == MRQA:
        return iter_mrqa(name, misaligned, check_offsets, require_answers, repairs, unique_ids)
    reader = RowReader(name, reading, misaligned, check_offsets, require_answers, repairs,
                       unique_ids)
    return _ROW_READERS[layout](name, reader)


def load_examples(path: str | os.PathLike[str], misaligned: Misaligned = "error",
                  check_offsets: bool = True, require_answers: bool = True,
                  reading: DataFormat | None = None) -> SquadDataset:
    """A whole file as a `SquadDataset`, in any layout (`iter_examples` says how each is read).

    The official JSON keeps its own version; other layouts are scored by SQuAD 2.0's rules when
    any question is unanswerable (version "v2.0"), else by 1.1's.
    """
    reading = reading or DataFormat()
    layout = layout_of(path, reading)
    if layout == SQUAD:
        return load_squad(path, misaligned, check_offsets=check_offsets)
    repairs: list[Repair] = []
    with gc_paused():
        examples = tuple(_examples(str(path), layout, reading, misaligned, check_offsets,
                                   require_answers, repairs))
    return _dataset(str(path), examples, repairs)


def rows_dataset(rows: Iterable[Any], source: str, reading: DataFormat | None = None,
                 misaligned: Misaligned = "error", version: str | None = None) -> SquadDataset:
    """Rows already in memory (a hub split: mappings with `reading`'s columns) as a dataset;
    `source` names them in errors. ``version`` fixes the SQuAD version (else as
    `load_examples`)."""
    repairs: list[Repair] = []
    reader = RowReader(source, reading or DataFormat(), misaligned, repairs=repairs)
    with gc_paused():
        examples = tuple(iter_rows(rows, reader))
    return _dataset(source, examples, repairs, version)


def _dataset(source: str, examples: tuple[SquadExample, ...], repairs: list[Repair],
             version: str | None = None) -> SquadDataset:
    if version is None:
        version = "v2.0" if any(ex.is_impossible for ex in examples) else "1.1"
    return SquadDataset(path=source, version=version, is_v2=version == "v2.0",
                        examples=examples, repairs=tuple(repairs))
