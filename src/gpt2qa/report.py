"""`gpt2qa report RUN_DIR... --out D`: one HTML page comparing training runs.

D/index.html (all CSS inline, images as relative PNG files beside it, no external URL: copy
the folder, not just the page) and D/summary.md, with these PNG plots:

  learning_curves.png    train loss and each task's eval scores against optimizer steps
  abstain_pr.png         precision and recall of *abstaining* as the na_prob threshold moves
  na_hist.png            no-answer probability, answerable vs unanswerable, per run
  question_word.png      F1 per question word (what/who/...), grouped bars per run, with the
                         all-no-answer F1 of each group and its question count

The report knows no task: each run's task (`Task.report`, a `ReportSpec`) says which scores,
curves, baseline and threshold it has, and whether the run saved no-answer probabilities (the
last three plots, drawn for those runs only). The caller (the CLI) passes `task_of`, which
finds a run directory's task (`gpt2qa.tasks.for_run`).

Abstention precision-recall treats "unanswerable" as the positive class: at threshold t a
question is abstained on when na_prob > t (the official rule).  Worked example with na_probs
(0.9 unanswerable, 0.7 answerable, 0.2 unanswerable): lowering t past 0.9 abstains on one
question, correctly (P=1, R=1/2); past 0.7 adds a wrong one (P=1/2, R=1/2); past 0.2 adds
the second unanswerable one (P=2/3, R=1).

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt2qa import __version__
from gpt2qa.errors import GPT2QAError
from gpt2qa.evaluation import QUESTION_WORD_BUCKETS, breakdown, question_word
from gpt2qa.io import check_output_dir
from gpt2qa.plots import (
    plot_abstain_pr,
    plot_learning_curves,
    plot_na_histograms,
    plot_question_words,
)
from gpt2qa.reading import loads_json
from gpt2qa.report_page import fmt, write_pages
from gpt2qa.rundir import DEMO_MARKER
from gpt2qa.task import ReportSpec, Task

REQUIRED_FILES = ("metrics.json", "log.jsonl")
"""What every finished run holds; its task names the prediction files (`ReportSpec.run_files`)."""
DEMO_METRICS = "demo_metrics.json"
"""Beside a demo's run folder: the held-out test sample's scores ("test", "baseline_test")."""
TEST_ENTRIES = (("test", "test sample", True), ("baseline_test", "baselines on the test sample",
                                                False))
"""(demo_metrics.json key, column label, answered by the run's model) of the test columns."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

__all__ = ["PNG_MAGIC", "REQUIRED_FILES", "RunData", "abstention_pr", "build_report",
           "find_run_dir", "fmt", "load_run", "question_word_scores", "run_labels"]

TaskOf = Callable[[Path], Task]
"""A run directory -> the task it was trained for."""


# --------------------------------------------------------------------------------------------
# Loading runs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataFile:
    """A file a run trained or was evaluated on, and its number of questions (None when it
    could not be read now)."""

    role: str
    path: str
    questions: int | None


@dataclass(frozen=True)
class TestScores:
    """Scores on a demo's held-out test sample: of the run's saved model (at its tuned
    threshold), or of the demo's baselines."""

    label: str
    scores: Mapping[str, Any]
    by_model: bool


@dataclass(frozen=True)
class RunData:
    """What the report needs from one finished training run."""

    label: str
    path: Path
    task: str
    spec: ReportSpec
    metrics: Mapping[str, Any]
    log: tuple[Mapping[str, Any], ...]
    train_config: Mapping[str, Any]
    data: tuple[DataFile, ...]
    finished: str
    """When log.jsonl was last written (UTC)."""
    tests: tuple[TestScores, ...] = ()
    """The demo's held-out test sample's scores, when the run is a demo's."""
    examples: tuple[Any, ...] = ()
    """The gold examples that the run answered, in file order (abstaining tasks only)."""
    predictions: Mapping[str, str] = field(default_factory=dict)
    na_probs: Mapping[str, float] = field(default_factory=dict)

    @property
    def has_ans(self) -> dict[str, bool]:
        return {ex.qas_id: bool(ex.answers) for ex in self.examples}


def _read_json(path: Path, run_dir: Path) -> Any:
    try:
        return loads_json(path.read_text(encoding="utf-8"), str(path))
    except json.JSONDecodeError as exc:
        raise GPT2QAError(f"{run_dir}: {path.name}: not valid JSON (line {exc.lineno} "
                          f"column {exc.colno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GPT2QAError(f"{run_dir}: cannot read {path.name} ({exc})") from None


def _read_log(path: Path, run_dir: Path) -> tuple[dict[str, Any], ...]:
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise GPT2QAError(f"{run_dir}: log.jsonl line {n}: not valid JSON") from None
        if not isinstance(record, dict):
            raise GPT2QAError(f"{run_dir}: log.jsonl line {n}: not a JSON object")
        records.append(record)
    return tuple(records)


def _eval_file_for(run_dir: Path, train_config: Mapping[str, Any],
                   eval_file: str | os.PathLike[str] | None) -> Path:
    if eval_file is not None:
        path = Path(eval_file)
        if not path.is_file():
            raise GPT2QAError(f"{path}: --eval-file not found")
        return path
    if not train_config:
        raise GPT2QAError(f"{run_dir}: missing train_config.json (or pass --eval-file)")
    recorded = train_config.get("eval_file")
    if not recorded:
        raise GPT2QAError(f"{run_dir}: train_config.json has no eval_file (pass --eval-file)")
    path = Path(recorded)
    if not path.is_file():
        raise GPT2QAError(f"{run_dir}: train_config.json eval_file {recorded} not found "
                          "(pass --eval-file)")
    return path


def _is_run(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED_FILES)


def find_run_dir(path: Path) -> Path:
    """`path` itself, or the one finished run directly inside it.

    `gpt2qa demo` writes its run to runs/demo/run beside the data, so `gpt2qa report
    runs/demo` means runs/demo/run. Several runs inside is an error that names them.
    """
    if not path.is_dir():
        raise GPT2QAError(f"{path}: no such run directory")
    if _is_run(path):
        return path
    inside = sorted(child for child in path.iterdir() if child.is_dir() and _is_run(child))
    if len(inside) == 1:
        return inside[0]
    if inside:
        raise GPT2QAError(f"{path}: not a run directory itself, and it holds several runs; "
                          f"name them: {' '.join(str(c) for c in inside[:5])}")
    return path  # load_run names the first missing file


def _count(task: Task, path: Path, cache: dict[Path, Any], reading: Any = None) -> int | None:
    """The questions in a data file, or None when it cannot be read now (moved, changed)."""
    try:
        return len(_dataset(task, path, cache, reading).examples)
    except (GPT2QAError, OSError, ValueError):
        return None


def _dataset(task: Task, path: Path, cache: dict[Path, Any], reading: Any = None) -> Any:
    key = path.resolve()
    if key not in cache:
        cache[key] = task.read(str(path), gold=False, reading=reading)
    return cache[key]


def _reading(train_config: Mapping[str, Any]) -> Any:
    """How the run read its files: train_config.json's --data-format and column flags (a run
    from before them, or a task without them: None, the defaults)."""
    from gpt2qa.config import DataFormat
    from gpt2qa.nesting import flat_fields

    values = {k: train_config[k] for k in flat_fields(DataFormat) if k in train_config}
    try:
        return DataFormat(**values) if values else None
    except (GPT2QAError, TypeError):
        return None


def _data_files(task: Task, train_config: Mapping[str, Any], eval_path: Path | None,
                cache: dict[Path, Any]) -> tuple[DataFile, ...]:
    out = []
    train = train_config.get("train_file") or train_config.get("dataset")
    reading = _reading(train_config)
    if isinstance(train, str) and train:
        path = Path(train)
        out.append(DataFile("train", train, _count(task, path, cache, reading) if path.is_file()
                            else None))
    if eval_path is not None:
        out.append(DataFile("evaluation", str(eval_path), _count(task, eval_path, cache, reading)
                            if eval_path.is_file() else None))
    return tuple(out)


def _tests(path: Path) -> tuple[TestScores, ...]:
    """The demo's test-sample scores, when `path` is the run folder of a `gpt2qa demo`."""
    demo = path.parent
    if not ((demo / DEMO_MARKER).is_file() and (demo / DEMO_METRICS).is_file()):
        return ()
    scores = _read_json(demo / DEMO_METRICS, demo)
    if not isinstance(scores, dict):
        raise GPT2QAError(f"{demo}: {DEMO_METRICS}: expected a JSON object")
    return tuple(TestScores(label, scores[key], by_model) for key, label, by_model
                 in TEST_ENTRIES if isinstance(scores.get(key), dict))


def _finished(path: Path) -> str:
    stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _answers(path: Path, dataset: Any, gold_path: Path
             ) -> tuple[tuple[Any, ...], dict[str, str], dict[str, float]]:
    """The run's answers and no-answer probabilities, checked against the gold questions."""
    predictions = _read_json(path / "predictions.json", path)
    na_probs = _read_json(path / "na_probs.json", path)
    gold_ids = {ex.qas_id for ex in dataset.examples}
    for name, obj in (("predictions.json", predictions), ("na_probs.json", na_probs)):
        if not isinstance(obj, dict) or not obj:
            raise GPT2QAError(f"{path}: {name}: expected a non-empty JSON object id -> value")
        for qid in obj:
            if qid not in gold_ids:
                raise GPT2QAError(f"{path}: {name}: id={qid} is not in {gold_path}")
    # A run trained with max_eval_examples scored only a prefix: keep the questions it answered.
    answered = tuple(ex for ex in dataset.examples if ex.qas_id in predictions)
    missing = next((ex.qas_id for ex in answered if ex.qas_id not in na_probs), None)
    if missing is not None:
        raise GPT2QAError(f"{path}: na_probs.json: id={missing}: no no-answer probability")
    try:
        probs = {ex.qas_id: float(na_probs[ex.qas_id]) for ex in answered}
    except (TypeError, ValueError):
        raise GPT2QAError(f"{path}: na_probs.json: every value must be a number") from None
    return answered, predictions, probs


def load_run(run_dir: str | os.PathLike[str], label: str,
             eval_file: str | os.PathLike[str] | None = None,
             gold_cache: dict[Path, Any] | None = None, task_of: TaskOf | None = None
             ) -> RunData:
    """Read a run directory; a missing file is a one-line error naming the dir and the file.
    `task_of` finds the run's task (required once the common files are there)."""
    path = find_run_dir(Path(run_dir))
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise GPT2QAError(f"{path}: missing {name} (not a finished gpt2qa training run)")
    if task_of is None:
        raise GPT2QAError("report: no task_of given to find each run's task")
    task = task_of(path)
    spec = task.report
    for name in spec.run_files:
        if not (path / name).is_file():
            raise GPT2QAError(f"{path}: missing {name} (not a finished gpt2qa {task.name} "
                              "training run)")
    config_path = path / "train_config.json"
    train_config = _read_json(config_path, path) if config_path.is_file() else {}
    if not isinstance(train_config, dict):
        raise GPT2QAError(f"{path}: train_config.json: expected a JSON object")
    metrics = _read_json(path / "metrics.json", path)
    if not isinstance(metrics, dict):
        raise GPT2QAError(f"{path}: metrics.json: expected a JSON object")
    cache = gold_cache if gold_cache is not None else {}
    answers: tuple[tuple[Any, ...], dict[str, str], dict[str, float]] = ((), {}, {})
    if spec.abstains:
        gold_path: Path | None = _eval_file_for(path, train_config, eval_file)
        answers = _answers(path, _dataset(task, gold_path, cache, _reading(train_config)),
                           gold_path)
    else:
        recorded = eval_file or train_config.get("eval_file")
        gold_path = Path(recorded) if isinstance(recorded, (str, os.PathLike)) else None
    return RunData(
        label=label, path=path, task=task.name, spec=spec, metrics=metrics,
        log=_read_log(path / "log.jsonl", path), train_config=train_config,
        data=_data_files(task, train_config, gold_path, cache),
        finished=_finished(path / "log.jsonl"), tests=_tests(path),
        examples=answers[0], predictions=answers[1], na_probs=answers[2])


def run_labels(run_dirs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Short unique labels: the directory names, with the parent added where they clash."""
    paths = [Path(p).resolve() for p in run_dirs]
    names = [p.name for p in paths]
    labels = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


# --------------------------------------------------------------------------------------------
# Pure computations
# --------------------------------------------------------------------------------------------

def abstention_pr(na_probs: Sequence[float], has_ans: Sequence[bool]
                  ) -> tuple[list[float], list[float], list[float]]:
    """Precision and recall of abstaining (positive = unanswerable) at every distinct threshold.

    Returns (precisions, recalls, thresholds) ordered by falling threshold; the point at
    index i abstains on every question with na_prob >= thresholds[i] (ties move together).
    Recall is 0 everywhere when no question is unanswerable.  See the module docstring for a
    worked example.
    """
    if len(na_probs) != len(has_ans):
        raise GPT2QAError(f"abstention_pr: {len(na_probs)} probabilities but "
                          f"{len(has_ans)} labels")
    order = sorted(range(len(na_probs)), key=lambda i: -na_probs[i])
    n_unans = sum(1 for h in has_ans if not h)
    precisions: list[float] = []
    recalls: list[float] = []
    thresholds: list[float] = []
    true_pos = 0
    for rank, i in enumerate(order, start=1):
        true_pos += int(not has_ans[i])
        last_of_tie = rank == len(order) or na_probs[order[rank]] != na_probs[i]
        if last_of_tie:
            precisions.append(true_pos / rank)
            recalls.append(true_pos / n_unans if n_unans else 0.0)
            thresholds.append(float(na_probs[i]))
    return precisions, recalls, thresholds


@dataclass(frozen=True)
class WordScore:
    """One question word's bar: F1 of the run's answers, its questions, and the F1 of
    abstaining on all of them (the share of its questions that are unanswerable)."""

    f1: float
    questions: int
    baseline_f1: float


def question_word_scores(run: RunData) -> dict[str, WordScore]:
    """F1 per question word of one run's predictions (official rules, as predicted), with
    each group's size and all-no-answer F1."""
    table = breakdown(run.examples, run.predictions)["question_word"]
    unanswerable: dict[str, int] = {}
    for ex in run.examples:
        if not ex.answers:
            word = question_word(ex.question)
            unanswerable[word] = unanswerable.get(word, 0) + 1
    return {word: WordScore(block["f1"], int(block["total"]),
                            100.0 * unanswerable.get(word, 0) / block["total"])
            for word, block in table.items()}


def abstain_curves(runs: Sequence[RunData]) -> list[tuple[str, list[float], list[float],
                                                         list[float]]]:
    """(label, precisions, recalls, thresholds) of abstaining, per run (`abstention_pr`)."""
    curves = []
    for run in runs:
        has = run.has_ans
        curves.append((run.label, *abstention_pr([run.na_probs[q] for q in has],
                                                 list(has.values()))))
    return curves


def na_groups(runs: Sequence[RunData]) -> list[tuple[str, list[float], list[float]]]:
    """(label, na_probs of answerable questions, of unanswerable ones), per run."""
    return [(run.label, [run.na_probs[q] for q, h in run.has_ans.items() if h],
             [run.na_probs[q] for q, h in run.has_ans.items() if not h]) for run in runs]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

def _plots(runs: Sequence[RunData], out: Path) -> list[tuple[str, Path, str]]:
    """(title, PNG, note) of every plot, drawn into `out`; the abstention plots only of the
    runs whose task saved no-answer probabilities."""
    images = [("Learning curves", plot_learning_curves(
        [(r.label, r.log, r.spec) for r in runs], out / "learning_curves.png"),
        "Training loss (left) and each task's evaluation scores in percent (right) against "
        "optimizer steps; tuned scores use a threshold tuned on the same evaluation set.")]
    abstaining = [r for r in runs if r.spec.abstains]
    if not abstaining:
        return images
    first = abstaining[0].has_ans
    base_rate = sum(1 for h in first.values() if not h) / max(len(first), 1)
    per_run = [question_word_scores(r) for r in abstaining]
    words = [w for w in QUESTION_WORD_BUCKETS if any(w in table for table in per_run)]
    images += [
        ("Abstaining: precision and recall",
         plot_abstain_pr(abstain_curves(abstaining), base_rate, out / "abstain_pr.png"),
         "Positive class = unanswerable. Moving the na_prob threshold down abstains on more "
         "questions; the dotted line is the share of unanswerable questions."),
        ("No-answer probability", plot_na_histograms(na_groups(abstaining), out / "na_hist.png"),
         "Histograms of na_prob for answerable and unanswerable questions (each normalised "
         "to its group)."),
        ("F1 by question word", plot_question_words(
            [(r.label, {w: (v.f1, v.questions, v.baseline_f1) for w, v in t.items()})
             for r, t in zip(abstaining, per_run, strict=True)], words,
            out / "question_word.png"),
         "Official F1 of the saved predictions (threshold 0), split by the question's wh-word; "
         "n = questions in the group; black dashes: the group's all-no-answer F1 (the share of "
         "its questions that are unanswerable)."),
    ]
    return images


def build_report(run_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                 eval_file: str | os.PathLike[str] | None = None, *,
                 task_of: TaskOf | None = None) -> Path:
    """Write D/index.html, D/summary.md and the PNG plots; return the HTML path.
    `task_of`: a run directory -> its task (the CLI passes `gpt2qa.tasks.for_run`)."""
    if not run_dirs:
        raise GPT2QAError("report: give at least one run directory")
    check_output_dir(out_dir, "--out")
    cache: dict[Path, Any] = {}
    runs = [load_run(d, label, eval_file, cache, task_of)
            for d, label in zip(run_dirs, run_labels(run_dirs), strict=True)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = _plots(runs, out)
    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return write_pages(runs, images, out, f"written {written} by gpt2qa {__version__}")
