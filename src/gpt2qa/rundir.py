"""A run directory's guard and its log: what `gpt2qa train` refuses to write into, and
log.jsonl (whose records also go to the experiment trackers asked for, `tracking`), whose torn
or stale lines a resume drops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2qa.errors import GPT2QAError
from gpt2qa.io import check_writable, write_text_atomic, writing

if TYPE_CHECKING:
    from gpt2qa.tracking import Tracking

RUN_MARKERS = ("train_config.json", "log.jsonl")
"""Files whose presence marks a folder as a gpt2qa run."""

DEMO_MARKER = ".gpt2qa-demo"
"""The file `gpt2qa demo` writes first into its --out-dir: the folder is the demo's own."""


def claim_demo_dir(out: Path) -> None:
    """Train's rule for `gpt2qa demo --out-dir` (both tasks): the folder must be new, empty, or
    one a demo wrote (it holds DEMO_MARKER); anything else is refused with one line, so no
    file of the user's is replaced. Then the marker is written, before anything else."""
    if out.exists():
        if not out.is_dir():
            raise GPT2QAError(f"{out}: exists and is not a directory; choose another --out-dir")
        entries = sorted(p.name for p in out.iterdir())
        if entries and DEMO_MARKER not in entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise GPT2QAError(f"{out}: holds files that gpt2qa demo did not write ({shown}); "
                              "the demo will not write there: choose a new or empty --out-dir")
    check_writable(out, "--out-dir")  # a read-only location: one line before any training
    write_text_atomic(out / DEMO_MARKER, "written by gpt2qa demo: this folder is the demo's "
                                         "output and a later demo may replace its files\n")


def check_run_dir(out: Path, resume: bool) -> None:
    """Refuse a folder gpt2qa did not make, and a finished or running run without --resume."""
    if not out.exists():
        return
    if not out.is_dir():
        raise GPT2QAError(f"{out}: exists and is not a directory; choose another --output-dir")
    entries = sorted(p.name for p in out.iterdir())
    is_run = any(name in entries for name in RUN_MARKERS)
    if entries and not is_run:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise GPT2QAError(f"{out}: holds files that are not a gpt2qa run ({shown}); gpt2qa will "
                          "not write there: choose a new or empty --output-dir")
    if is_run and not resume:
        raise GPT2QAError(f"{out}: already holds a run; pass --resume to continue it, "
                          "or choose a new --output-dir")


class RunLog:
    """log.jsonl: one JSON object per line, flushed at once; each record also goes to the
    run's trackers (`tracking.Tracking`) once they are attached. Only the main process makes
    one."""

    def __init__(self, output_dir: Path, resume_step: int | None) -> None:
        self.path = output_dir / "log.jsonl"
        self.tracking: Tracking | None = None
        """The run's started trackers (`tracking.start`), or None."""
        if resume_step is None:
            with writing(self.path):
                self.path.write_text("", encoding="utf-8")
        elif self.path.exists():
            # Drop what was logged after the checkpoint we resume from (it will happen again)
            # and a line torn by a kill mid-write.
            kept = [line for line, record in self._lines()
                    if record.get("step", 0) <= resume_step]
            write_text_atomic(self.path, "".join(k + "\n" for k in kept))

    def _lines(self) -> list[tuple[str, dict[str, Any]]]:
        """(line, record) for each whole JSON-object line of log.jsonl."""
        out = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append((line, record))
        return out

    def records(self) -> list[dict[str, Any]]:
        """The records in log.jsonl now (a torn line skipped)."""
        return [record for _, record in self._lines()]

    def write(self, record: dict[str, Any]) -> None:
        with writing(self.path), self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tracking is not None:
            self.tracking.log(record)

    def close(self) -> None:
        """Finish the trackers (log.jsonl needs no closing)."""
        if self.tracking is not None:
            self.tracking.finish()
