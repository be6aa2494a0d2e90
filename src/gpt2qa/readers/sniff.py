"""Which reader a data file needs, from its name and its first bytes (docs/data.md).

A layout is one of `LAYOUTS`: the official nested SQuAD JSON, MRQA JSON lines, or flat rows in
JSON lines, a JSON list, CSV or Parquet. `--data-format auto` decides by:

  *.parquet / *.pq, or Parquet's magic bytes   rows in Parquet
  *.csv                                         rows in CSV
  an object whose first key is "header"         MRQA (its header line)
  an object whose first key is "version"/"data" the official SQuAD JSON
  any other object on a line of its own         rows in JSON lines
  a list whose first item is an object          rows in a JSON list, unless the item is
                                                HotpotQA's (`_id`, `supporting_facts`, or a
                                                context that is a list of paragraphs)

Only the first bytes are read (at most `SNIFF_LIMIT` to find a first row), never the file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from gpt2qa.errors import DataError
from gpt2qa.readers.lines import open_bytes

SQUAD, MRQA, JSONL, JSON_LIST, CSV, PARQUET = "squad", "mrqa", "jsonl", "json", "csv", "parquet"
LAYOUTS = (SQUAD, MRQA, JSONL, JSON_LIST, CSV, PARQUET)
ROW_LAYOUTS = (JSONL, JSON_LIST, CSV, PARQUET)
HEAD_BYTES = 1 << 16
SNIFF_LIMIT = 1 << 24
"""The most bytes read to find a file's first row or list item (a first context of 16 MiB)."""

_FIRST_KEY = re.compile(rb'\A\{\s*"((?:[^"\\]|\\.)*)"\s*:')


def file_layout(path: str | os.PathLike[str], data_format: str = "auto") -> str | None:
    """The layout to read `path` as: `data_format` (squad, rows, mrqa) when given, with the
    container of rows from the file; under auto, None when the file is none of these (a
    HotpotQA list, or not a data file at all)."""
    if data_format in (SQUAD, MRQA):
        return data_format
    container = _container(path)
    if data_format == "rows":
        if container is not None:
            return container
        return JSON_LIST if _head(path)[:1] == b"[" else JSONL
    return container or _sniff_json(path)


def _container(path: str | os.PathLike[str]) -> str | None:
    """CSV or Parquet, by the file's name (a trailing .gz ignored) or Parquet's magic bytes."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes.pop()
    ext = suffixes[-1] if suffixes else ""
    if ext in (".parquet", ".pq") or _raw_start(path, 4) == b"PAR1":
        return PARQUET
    return CSV if ext == ".csv" else None


def _sniff_json(path: str | os.PathLike[str]) -> str | None:
    head = _head(path)
    if head[:1] == b"{":
        match = _FIRST_KEY.match(head)
        key = _json_string(match.group(1)) if match else None
        if key == "header":
            return MRQA
        if key in ("version", "data"):
            return SQUAD
        first = _first_line(path)
        return (JSONL if isinstance(first, dict) and not isinstance(first.get("data"), list)
                else SQUAD)
    if head[:1] == b"[":
        first = _first_item(path)
        return JSON_LIST if isinstance(first, dict) and not _other_task(first) else None
    return None


def _other_task(item: dict[str, Any]) -> bool:
    """Whether a list's first item is a HotpotQA question rather than a flat row."""
    return "_id" in item or "supporting_facts" in item or isinstance(item.get("context"), list)


def _raw_start(path: str | os.PathLike[str], n: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise DataError(str(path), f"cannot read file: {exc.strerror or exc}") from None


def _head(path: str | os.PathLike[str], n: int = HEAD_BYTES) -> bytes:
    """The first `n` bytes (decompressed), without a BOM or leading white space."""
    with open_bytes(path) as fh:
        return fh.read(n).removeprefix(b"\xef\xbb\xbf").lstrip()


def _json_string(raw: bytes) -> str | None:
    try:
        return json.loads(b'"' + raw + b'"')  # type: ignore[no-any-return]
    except ValueError:
        return None


def _first_line(path: str | os.PathLike[str]) -> Any:
    """The first line's JSON value, or None when it is not JSON on its own (pretty-printed)."""
    with open_bytes(path) as fh:
        line = fh.readline(SNIFF_LIMIT).removeprefix(b"\xef\xbb\xbf")
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _first_item(path: str | os.PathLike[str]) -> Any:
    """The first item of a JSON list, decoded from as few bytes as hold it (None when the list
    is empty, or its first item is not valid JSON within `SNIFF_LIMIT` bytes)."""
    decoder = json.JSONDecoder()
    size, buf = HEAD_BYTES, b""
    with open_bytes(path) as fh:
        while True:
            chunk = fh.read(size - len(buf))
            buf += chunk
            text = buf.decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")[1:]
            try:
                return decoder.raw_decode(text, len(text) - len(text.lstrip()))[0]
            except (ValueError, RecursionError):
                if not chunk or len(buf) >= SNIFF_LIMIT:
                    return None
            size = min(2 * size, SNIFF_LIMIT)
