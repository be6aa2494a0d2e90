"""Streamed predict: a file of any size answered chunk by chunk, in bounded memory, resumable
after a crash and shared among the processes of `gpt2qa launch -n N`.

`stream_predict` takes the questions `chunk_size` at a time. For each chunk it makes the
windows, runs the model, decodes, and appends one JSON line per question to its prediction
log, flushed and fsynced before the next chunk is read:

    {"id": "q1", "answer": "1889", "na_prob": 0.12}      ("nbest": [...] too with n_best)

Only one chunk's questions, windows and model outputs are held at a time (a JSON-lines file is
read a line at a time; a SQuAD JSON file is still parsed whole first). One process writes
``predictions.jsonl``; process K of N takes every N-th chunk (K, K+N, ...) and writes
``predictions.part-K.jsonl``.

A restart (the same command) reads each log along the input: the ids already written are
skipped, after checking that they are the input's ids at those places; a torn last line (a
write that a crash cut short) is cut off and its question answered again. ``stream.json``
records the chunk size, the number of processes and the other settings that decide which
process answers what and how; a restart must keep them.

At the end the main process interleaves the logs back into input order and writes
predictions.json and na_probs.json (and nbest.json with n_best): the bytes `predict` writes
without streaming. Both run the model batch-invariant (`inference.run_model`), so a question
gets the same bits whichever chunk, batch or process answers it.
"""

from __future__ import annotations

import itertools
import json
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpt2qa.errors import DataError, GPT2QAError
from gpt2qa.io import (
    append_text_durably,
    exclusive_lock,
    json_object_writer,
    truncate_durably,
    write_json_atomic,
)
from gpt2qa.reading import loads_json, read_json_object

DEFAULT_CHUNK_SIZE = 4096
"""Questions per chunk: enough for full batches, few enough that a chunk's windows and model
outputs stay a small part of the process's memory."""

MANIFEST = "stream.json"
LINE_KEYS = {"predictions": "answer", "na_probs": "na_prob", "nbest": "nbest"}
"""The task's prediction files (`Task.files`) -> the key of their value in a log line."""

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")

KERNEL_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
KERNEL_CACHE_SIZE = 64
"""oneDNN keeps the CPU kernels it built for the last 1,024 matmul shapes by default. A long
streamed run keeps meeting new batch shapes (a chunk's last, short batch of each width), so
that cache would grow its memory chunk after chunk; 64 kernels hold the shapes in use."""


@dataclass(frozen=True)
class StreamSettings:
    """How a streamed run answers and writes (the CLI's flags)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    n_best: bool = False
    """Each line also holds the question's n-best list; merging also writes nbest.json."""
    merge: bool = True
    """Write the merged prediction files at the end (off: only the logs, for huge runs)."""
    batch_size: int = 0
    null_score_diff_threshold: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise GPT2QAError(f"--chunk-size must be at least 1; got {self.chunk_size!r}")


@dataclass(frozen=True)
class StreamResult:
    """One process's share of a streamed run."""

    examples: int
    """Questions in the input."""
    written: int
    """Answered and written by all processes in this run."""
    resumed: int
    """Found already written by an earlier run (skipped)."""
    logs: tuple[Path, ...]
    merged: dict[str, Path] = field(default_factory=dict)
    """Prediction file name -> path (the main process, when merging)."""


def is_json_lines(path: str | os.PathLike[str]) -> bool:
    """A JSON-lines file by its name (.jsonl, .ndjson): `predict` streams it."""
    return Path(path).suffix.lower() in JSON_LINES_SUFFIXES


def bound_kernel_cache() -> None:
    """Cap oneDNN's kernel cache for this process (`KERNEL_CACHE_SIZE`), unless the user set
    ONEDNN_PRIMITIVE_CACHE_CAPACITY. oneDNN reads it when it builds its first kernel: call
    this before the model first runs."""
    os.environ.setdefault(KERNEL_CACHE, str(KERNEL_CACHE_SIZE))


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """`items` in lists of `size` (the last one shorter), read lazily."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def log_path(out_dir: Path, rank: int, world: int) -> Path:
    return out_dir / ("predictions.jsonl" if world == 1 else f"predictions.part-{rank}.jsonl")


def check_manifest(out_dir: Path, record: Mapping[str, Any], main: bool) -> None:
    """Refuse to resume a folder's streamed run with other settings (one line); the main
    process records them on a first run."""
    path = out_dir / MANIFEST
    if path.is_file():
        old = read_json_object(path)
        for key, value in record.items():
            if old.get(key) != value:
                raise GPT2QAError(f"{out_dir}: its streamed run was started with "
                                  f"{key.replace('_', '-')} {old.get(key)!r}, this run has "
                                  f"{value!r}; resume it as it was started, or give another "
                                  "--out-dir")
    elif main:
        write_json_atomic(path, dict(record))


def cut_torn_line(path: Path) -> int:
    """Cut a prediction log back to its last whole line (a crash inside a write leaves the
    end of a line unwritten, or zeros): return how many bytes went. Only the end after the
    last newline is cut; a damaged line before it is `written_ids`' error."""
    if not path.is_file():
        return 0
    size = end = path.stat().st_size
    keep = 0
    with open(path, "rb") as fh:
        while end > 0:
            start = max(0, end - (1 << 16))
            fh.seek(start)
            newline = fh.read(end - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
    if keep < size:
        truncate_durably(path, keep)
    return size - keep


def log_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a prediction log, in order; a line that is not one is one DataError
    line naming the file and the line."""
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                record = loads_json(raw.decode("utf-8"), str(path))
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise DataError(str(path), "not a prediction line; the log is damaged (cut it "
                                           "before this line to answer those questions again)",
                                f"line {number}")
            yield record


def answer_lines(pipe: Any, examples: list[Any], settings: StreamSettings) -> str:
    """One chunk's log lines: the task's prediction files (`Task.files`), one line per id."""
    preds = pipe.predict(examples, settings.batch_size, settings.null_score_diff_threshold,
                         batch_invariant=True)
    files = pipe.task.files(preds)
    names = [n for n in LINE_KEYS if n in files and (settings.n_best or n != "nbest")]
    if "predictions" not in names or not all(isinstance(files[n], dict) for n in names):
        raise GPT2QAError(f"a streamed predict needs prediction files that map ids to "
                          f"answers; {pipe.task.name}'s do not")
    lines = []
    for ex in examples:
        record = {"id": ex.qas_id, **{LINE_KEYS[n]: files[n][ex.qas_id] for n in names}}
        lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
    return "".join(lines)


def walk_chunks(pipe: Any, examples: Iterable[Any], log: Path, settings: StreamSettings,
                rank: int, world: int, ids: array | None) -> tuple[int, int, int]:
    """Answer this process's chunks, skipping the ids its log already holds: (questions in
    the input, answered now, found written). `ids` collects every input id's hash."""
    written_ids = (r["id"] for r in log_records(log))
    total = answered = resumed = 0
    for k, chunk in enumerate(chunked(examples, settings.chunk_size)):
        total += len(chunk)
        if ids is not None:
            ids.extend(hash(ex.qas_id) for ex in chunk)
        if k % world != rank:
            continue
        chunk_ids = [ex.qas_id for ex in chunk]
        if len(set(chunk_ids)) < len(chunk_ids):
            twice = next(i for n, i in enumerate(chunk_ids) if i in chunk_ids[:n])
            raise GPT2QAError(f"id {twice!r} is given to more than one question; ids must be "
                              "unique")
        done = list(itertools.islice(written_ids, len(chunk)))
        if done != chunk_ids[:len(done)]:
            at = next(n for n, (a, b) in enumerate(zip(done, chunk_ids[:len(done)], strict=True))
                      if a != b)
            raise GPT2QAError(f"{log}: holds id {done[at]!r} where the input has "
                              f"{chunk_ids[at]!r}: was the input changed? Give another "
                              "--out-dir to start over")
        resumed += len(done)
        if len(done) < len(chunk):
            append_text_durably(log, answer_lines(pipe, chunk[len(done):], settings))
            answered += len(chunk) - len(done)
    if next(written_ids, None) is not None:
        raise GPT2QAError(f"{log}: holds more answers than the input has questions for it: "
                          "was the input changed? Give another --out-dir to start over")
    return total, answered, resumed


def stream_predict(pipe: Any, examples: Iterable[Any], out_dir: str | os.PathLike[str],
                   settings: StreamSettings, rank: int = 0, world: int = 1,
                   identity: Mapping[str, Any] | None = None) -> StreamResult:
    """Answer `examples` (any iterable: read as it goes) into `out_dir`: see the module
    docstring. Under several processes (`rank` of `world`) every process passes the same
    examples; they meet once, at the end, and the main process (rank 0) merges.
    `identity`: more of what a restart must keep (the model, the data file)."""
    out = Path(out_dir)
    log = log_path(out, rank, world)
    # Each process locks its own log (made empty if absent): a second run into this folder
    # is refused in one line instead of appending to the same file.
    with exclusive_lock(log):
        return _stream_locked(pipe, examples, out, log, settings, rank, world, identity)


def _stream_locked(pipe: Any, examples: Iterable[Any], out: Path, log: Path,
                   settings: StreamSettings, rank: int, world: int,
                   identity: Mapping[str, Any] | None) -> StreamResult:
    """`stream_predict`'s work, with this process's lock held."""
    record = {**asdict(settings), "processes": world, **(identity or {})}
    del record["merge"], record["batch_size"]  # neither changes a line
    check_manifest(out, record, rank == 0)
    cut_torn_line(log)
    ids = array("q") if rank == 0 else None
    total, answered, resumed = walk_chunks(pipe, examples, log, settings, rank, world, ids)
    counts = gather([answered, resumed], world)
    logs = tuple(log_path(out, k, world) for k in range(world))
    result = StreamResult(total, sum(c[0] for c in counts), sum(c[1] for c in counts), logs)
    if rank != 0:
        return result
    check_unique(ids, logs)
    if not settings.merge:
        return result
    names = ["predictions", "na_probs", *(["nbest"] if settings.n_best else [])]
    return StreamResult(result.examples, result.written, result.resumed, logs,
                        merge_logs(out, logs, total, settings.chunk_size, names))


def gather(obj: Any, world: int) -> list[Any]:
    """`obj` from every process (a barrier too); [obj] alone without a process group."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)  # between this run's own processes only
    return out


def check_unique(ids: array | None, logs: Iterable[Path]) -> None:
    """One line when two questions of the input share an id (their answers could not both
    go into predictions.json). `ids` holds hashes; an equal pair is confirmed on the logs."""
    import numpy as np

    if ids is None or len(ids) < 2:
        return
    hashes = np.sort(np.frombuffer(ids, dtype=np.int64))
    equal = set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())
    if not equal:
        return
    seen: set[str] = set()
    for log in logs:
        for rec in log_records(log):
            if hash(rec["id"]) in equal:
                if rec["id"] in seen:
                    raise GPT2QAError(f"id {rec['id']!r} is given to more than one question; "
                                      "ids must be unique")
                seen.add(rec["id"])


def merge_logs(out: Path, logs: tuple[Path, ...], total: int, chunk_size: int,
               names: list[str]) -> dict[str, Path]:
    """Write NAME.json for each name from the logs, in input order: chunk k's lines are the
    next ones of log k mod N. One line when a log is short or long (a process that did not
    finish: rerun the command to finish and merge)."""
    readers = [log_records(log) for log in logs]
    paths = {name: out / f"{name}.json" for name in names}
    with ExitStack() as stack:
        adders: dict[str, Callable[[str, Any], None]] = {
            name: stack.enter_context(json_object_writer(path)) for name, path in paths.items()}
        for k, start in enumerate(range(0, total, chunk_size)):
            want = min(chunk_size, total - start)
            got = 0
            for rec in itertools.islice(readers[k % len(logs)], want):
                got += 1
                for name in names:
                    if LINE_KEYS[name] not in rec:
                        raise GPT2QAError(f"{logs[k % len(logs)]}: id {rec['id']!r} has no "
                                          f"{LINE_KEYS[name]!r}; the log is damaged")
                    adders[name](rec["id"], rec[LINE_KEYS[name]])
            if got < want:
                raise GPT2QAError(f"{logs[k % len(logs)]}: {want - got} answers are missing "
                                  "(did a process stop early?); rerun the command to finish")
        for log, reader in zip(logs, readers, strict=True):
            if next(reader, None) is not None:
                raise GPT2QAError(f"{log}: holds more answers than the input has questions "
                                  "for it")
    return paths
