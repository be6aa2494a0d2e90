"""Reading the JSON and YAML files gpt2qa takes, with one line per problem: `loads_json` under
every JSON reader (data, predictions, na-prob files, gpt2qa.json), `read_json_object` for a
model folder's JSON files, `load_yaml_mapping` for config files. Writing is `gpt2qa.io`."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from gpt2qa.errors import DataError, GPT2QAError

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def loads_json(text: str, name: str, **kwargs: Any) -> Any:
    """`json.loads` for the text of the file `name`, under every JSON reader (data, predictions,
    na-prob, gpt2qa.json). An integer longer than Python converts (4,300 digits by default:
    `sys.get_int_max_str_digits`) is one `DataError` naming the file, the line and the column,
    where json raises a bare ValueError. JSONDecodeError and RecursionError are left to the
    caller's own message."""
    try:
        return json.loads(text, **kwargs)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        if "digits" not in str(exc):
            raise
    match, limit = long_number(text)
    if match is None:
        raise DataError(name, f"invalid JSON: a number has more than {limit} digits")
    line = text.count("\n", 0, match.start()) + 1
    column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
    raise DataError(name, f"invalid JSON at line {line} column {column}: a number with "
                          f"{len(match.group())} digits (Python reads at most {limit})")


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model folder's JSON file (config.json, tokenizer files, adapter_config.json) read
    once, before the library that owns it does: one GPT2QAError line naming the file when it
    cannot be read, is not JSON, or is not a JSON object."""
    try:
        obj = loads_json(Path(path).read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise GPT2QAError(f"{path}: not a readable JSON file ({first})") from None
    if not isinstance(obj, dict):
        raise GPT2QAError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def long_number(text: str) -> tuple[re.Match[str] | None, int]:
    """The first run of digits outside JSON strings longer than Python converts to an int
    (json.loads raises ValueError on it), or None; and that limit (4,300 by default)."""
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if limit <= 0:  # no limit set (or a Python without one)
        return None, limit
    pattern = re.compile(rf"\d{{{limit + 1},}}")
    if pattern.search(text) is None:  # the common case: one cheap scan
        return None, limit
    # Blank out strings (keeping offsets) so that digits inside them do not count.
    blanked = _JSON_STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)
    return pattern.search(blanked), limit


def load_yaml_mapping(path: str | os.PathLike[str], what: str = "config file") -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file is ``{}``); every problem is one
    GPT2QAError line naming the file: unreadable (`what` says which file), invalid YAML (with
    line and column), or not a mapping."""
    import yaml  # not at the top: `gpt2qa --help` imports this module

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GPT2QAError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise GPT2QAError(f"{path}: invalid YAML{where}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GPT2QAError(f"{path}: expected a mapping of settings")
    return raw
