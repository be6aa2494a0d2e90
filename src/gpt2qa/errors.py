"""The one exception type that the CLI turns into a one-line message instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterable


class GPT2QAError(Exception):
    """A user-facing error: bad input, a missing file, an impossible setting.

    The message must stand alone on one line and name the file, the field (a JSON
    path such as ``data[3].paragraphs[0].qas[2].answers[0].answer_start``) and the
    question id where those apply.
    """


class DataError(GPT2QAError):
    """A SQuAD file that cannot be read as the official layout."""

    def __init__(self, path: str, message: str, json_path: str | None = None,
                 qas_id: str | None = None) -> None:
        parts = [str(path)]
        if json_path:
            parts.append(json_path)
        if qas_id is not None:
            parts.append(f"id={qas_id}")
        super().__init__(f"{': '.join(parts)}: {message}")
        self.path = str(path)
        self.json_path = json_path
        self.qas_id = qas_id


def check(checks: Iterable[tuple[bool, str]], prefix: str = "") -> None:
    """Raise GPT2QAError(prefix + message) for the first (ok, message) whose ok is false."""
    for ok, message in checks:
        if not ok:
            raise GPT2QAError(prefix + message)
