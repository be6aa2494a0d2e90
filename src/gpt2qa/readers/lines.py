"""JSON lines, read one line at a time (plain or gzip-compressed, as MRQA ships its files).

`json_lines` yields each non-blank line's value with its line number, so that a reader can
stream a file of any size and name the line in every error.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from gpt2qa.data import LONE_SURROGATE_ESCAPE, unicode_problem
from gpt2qa.errors import DataError
from gpt2qa.reading import loads_json

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Line:
    """One non-blank line of a JSON-lines file: its 1-based number, its value, and whether its
    text escapes a lone UTF-16 surrogate (then its strings need `unicode_problem`'s check)."""

    number: int
    value: Any
    surrogate: bool


@contextmanager
def open_bytes(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it starts with gzip's magic number (whatever its
    name); `DataError` when it cannot be opened."""
    name = str(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            if not compressed:
                yield raw
                return
            with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                yield fh
    except OSError as exc:
        if isinstance(exc, gzip.BadGzipFile) or exc.errno is None:
            raise DataError(name, f"not a readable gzip file ({exc})") from None
        raise DataError(name, f"cannot read file: {exc.strerror or exc}") from None
    except (EOFError, zlib.error) as exc:
        raise DataError(name, f"not a readable gzip file ({exc or 'it ends early'})") from None


def json_lines(path: str | os.PathLike[str]) -> Iterator[Line]:
    """Each non-blank line of a JSON-lines file, parsed, in order: one `DataError` naming the
    line for bad UTF-8 (with the byte) or invalid JSON (with the column). A leading BOM is
    allowed."""
    name = str(path)
    with open_bytes(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            yield Line(number, *_parse_line(raw, name, number))


def _parse_line(raw: bytes, name: str, number: int) -> tuple[Any, bool]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(name, f"not valid UTF-8 at byte {exc.start} of the line "
                              f"(byte 0x{raw[exc.start]:02x}: {exc.reason})",
                        f"line {number}") from None
    try:
        value = loads_json(text, name)
    except json.JSONDecodeError as exc:
        raise DataError(name, f"invalid JSON at column {exc.colno}: {exc.msg} (a JSON-lines "
                              f"file holds one JSON object per line)", f"line {number}") from None
    except RecursionError:
        raise DataError(name, "invalid JSON: nested too deeply", f"line {number}") from None
    return value, escapes_lone_surrogate(text)


def escapes_lone_surrogate(text: str) -> bool:
    """Whether JSON `text` escapes a lone UTF-16 surrogate (`data.LONE_SURROGATE_ESCAPE`); a
    plain substring test first, since the regular expression costs as much as parsing."""
    return ("\\ud" in text or "\\uD" in text) and LONE_SURROGATE_ESCAPE.search(text) is not None


def refuse_lone_surrogates(path: str, where: str, qas_id: str,
                           fields: Iterable[tuple[str, str]]) -> None:
    """One `DataError` naming the first (field, text) whose text holds a lone surrogate (JSON
    can escape one; tokenizers refuse it), with the id printable."""
    for name, text in fields:
        problem = unicode_problem(text)
        if problem is not None:
            shown = qas_id.encode("utf-8", "backslashreplace").decode("utf-8")
            raise DataError(path, problem, f"{where}: {name}", shown)
