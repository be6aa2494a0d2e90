"""`gpt2qa report RUN_DIR... --out D`: one HTML page comparing training runs.

D/index.html (all CSS inline, images as relative PNG files beside it, no external URL: copy
the folder, not just the page) and
D/summary.md, with these PNG plots:

  learning_curves.png    train loss and eval F1 against optimizer steps, one line per run
  abstain_pr.png         precision and recall of *abstaining* as the na_prob threshold moves
  na_hist.png            no-answer probability, answerable vs unanswerable, per run
  question_word.png      F1 per question word (what/who/...), grouped bars per run

Abstention precision-recall treats "unanswerable" as the positive class: at threshold t a
question is abstained on when na_prob > t (the official rule).  Worked example with na_probs
(0.9 unanswerable, 0.7 answerable, 0.2 unanswerable): lowering t past 0.9 abstains on one
question, correctly (P=1, R=1/2); past 0.7 adds a wrong one (P=1/2, R=1/2); past 0.2 adds
the second unanswerable one (P=2/3, R=1).

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2qa.data import load_squad
from gpt2qa.errors import GPT2QAError
from gpt2qa.evaluation import QUESTION_WORD_BUCKETS, breakdown
from gpt2qa.io import check_output_dir, loads_json, write_text_atomic
from gpt2qa.plots import (
    plot_abstain_pr,
    plot_learning_curves,
    plot_na_histograms,
    plot_question_words,
)
from gpt2qa.study.summary import markdown_table

REQUIRED_FILES = ("metrics.json", "log.jsonl", "predictions.json", "na_probs.json")
TABLE_COLUMNS = (
    ("EM", "exact"), ("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("NoAns F1", "NoAns_f1"),
    ("best F1", "best_f1"), ("tuned F1", "tuned_f1"), ("all-null baseline F1", "null_baseline_f1"),
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table; '-' for a missing one."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


# --------------------------------------------------------------------------------------------
# Loading runs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunData:
    """What the report needs from one finished training run."""

    label: str
    path: Path
    metrics: Mapping[str, Any]
    log: tuple[Mapping[str, Any], ...]
    predictions: Mapping[str, str]
    na_probs: Mapping[str, float]
    train_config: Mapping[str, Any]
    eval_file: Path
    examples: tuple[Any, ...]
    """The gold SquadExamples that the run answered, in file order."""

    @property
    def has_ans(self) -> dict[str, bool]:
        return {ex.qas_id: bool(ex.answers) for ex in self.examples}


def _read_json(path: Path, run_dir: Path) -> Any:
    try:
        return loads_json(path.read_text(encoding="utf-8"), str(path))
    except json.JSONDecodeError as exc:
        raise GPT2QAError(f"{run_dir}: {path.name}: not valid JSON (line {exc.lineno} "
                          f"column {exc.colno})") from None
    except OSError as exc:
        raise GPT2QAError(f"{run_dir}: cannot read {path.name} ({exc.strerror})") from None


def _read_log(path: Path, run_dir: Path) -> tuple[dict[str, Any], ...]:
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise GPT2QAError(f"{run_dir}: log.jsonl line {n}: not valid JSON") from None
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


def load_run(run_dir: str | os.PathLike[str], label: str,
             eval_file: str | os.PathLike[str] | None = None,
             gold_cache: dict[Path, Any] | None = None) -> RunData:
    """Read a run directory; a missing file is a one-line error naming the dir and the file."""
    path = find_run_dir(Path(run_dir))
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise GPT2QAError(f"{path}: missing {name} (not a finished gpt2qa training run)")
    config_path = path / "train_config.json"
    train_config = _read_json(config_path, path) if config_path.is_file() else {}
    gold_path = _eval_file_for(path, train_config, eval_file)
    cache = gold_cache if gold_cache is not None else {}
    if gold_path.resolve() not in cache:
        cache[gold_path.resolve()] = load_squad(gold_path, check_offsets=False)
    dataset = cache[gold_path.resolve()]
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
    answered = [ex for ex in dataset.examples if ex.qas_id in predictions]
    missing = next((ex.qas_id for ex in answered if ex.qas_id not in na_probs), None)
    if missing is not None:
        raise GPT2QAError(f"{path}: na_probs.json: id={missing}: no no-answer probability")
    return RunData(
        label=label, path=path, metrics=_read_json(path / "metrics.json", path),
        log=_read_log(path / "log.jsonl", path), predictions=predictions,
        na_probs={ex.qas_id: float(na_probs[ex.qas_id]) for ex in answered},
        train_config=train_config, eval_file=gold_path, examples=tuple(answered))


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


def question_word_f1(run: RunData) -> dict[str, float]:
    """F1 per question word of one run's predictions (official rules, as predicted)."""
    table = breakdown(run.examples, run.predictions)["question_word"]
    return {word: block["f1"] for word, block in table.items()}


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
# The page
# --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f2f2f2; } td.name { text-align: left; font-family: monospace; }
td.name, th { overflow-wrap: anywhere; }
img { max-width: 100%; border: 1px solid #eee; }
p.note { color: #555; font-size: 0.9em; }
"""


def metric_rows(runs: Sequence[RunData]) -> list[list[str]]:
    rows = []
    for run in runs:
        m = run.metrics
        rows.append([run.label, *(fmt(m.get(key)) for _, key in TABLE_COLUMNS),
                     fmt(m.get("step"), 0), str(m.get("total", "-"))])
    return rows


def _header() -> list[str]:
    return ["run", *(name for name, _ in TABLE_COLUMNS), "step", "questions"]


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_cols: int = 1) -> str:
    """An HTML table; the first `text_cols` columns are text (left-aligned), the rest numbers."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="name">{html.escape(c)}</td>' if i < text_cols
                         else f"<td>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _settings(run: RunData) -> str:
    cfg = run.train_config
    keys = ("model", "layout", "null_position", "head", "max_steps", "batch_size", "lr", "seed")
    parts = [f"{k}={cfg[k]}" for k in keys if k in cfg]
    return ", ".join(parts) if parts else "(no train_config.json)"


def build_report(run_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                 eval_file: str | os.PathLike[str] | None = None) -> Path:
    """Write D/index.html, D/summary.md and the PNG plots; return the HTML path."""
    if not run_dirs:
        raise GPT2QAError("report: give at least one run directory")
    check_output_dir(out_dir, "--out")
    cache: dict[Path, Any] = {}
    runs = [load_run(d, label, eval_file, cache)
            for d, label in zip(run_dirs, run_labels(run_dirs), strict=True)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = runs[0].has_ans
    base_rate = sum(1 for h in first.values() if not h) / max(len(first), 1)
    per_run = [question_word_f1(r) for r in runs]
    words = [w for w in QUESTION_WORD_BUCKETS if any(w in table for table in per_run)]
    images = [
        ("Learning curves", plot_learning_curves([(r.label, r.log) for r in runs],
                                                 out / "learning_curves.png"),
         "Training loss (left) and evaluation F1 (right; dashed: threshold tuned on the same "
         "evaluation set) against optimizer steps."),
        ("Abstaining: precision and recall",
         plot_abstain_pr(abstain_curves(runs), base_rate, out / "abstain_pr.png"),
         "Positive class = unanswerable. Moving the na_prob threshold down abstains on more "
         "questions; the dotted line is the share of unanswerable questions."),
        ("No-answer probability", plot_na_histograms(na_groups(runs), out / "na_hist.png"),
         "Histograms of na_prob for answerable and unanswerable questions (each normalised "
         "to its group)."),
        ("F1 by question word", plot_question_words(
            [(r.label, t) for r, t in zip(runs, per_run, strict=True)], words,
            out / "question_word.png"),
         "Official F1 of the saved predictions, split by the question's wh-word."),
    ]
    header, rows = _header(), metric_rows(runs)
    settings_rows = [[r.label, str(r.path), str(r.eval_file), _settings(r)] for r in runs]
    settings_header = ["run", "directory", "evaluation file", "settings"]

    md = ["# gpt2qa report\n", markdown_table(header, rows),
          "\nScores in percent, official SQuAD 2.0 rules, at each run's best evaluation. "
          "`best F1`: best na_prob threshold on these predictions; `tuned F1`: best threshold "
          "on each question's best span; baseline: abstain on every question.\n",
          "\n## Runs\n", markdown_table(settings_header, settings_rows, 4), "\n## Plots\n"]
    md += [f"- {title}: ![{title}]({png.name})\n" for title, png, _ in images]
    write_text_atomic(out / "summary.md", "".join(md))

    sections = "".join(
        f"<h2>{html.escape(title)}</h2><p class=\"note\">{html.escape(note)}</p>"
        f"<img src=\"{html.escape(png.name)}\" alt=\"{html.escape(title)}\">"
        for title, png, note in images)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>gpt2qa report</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>gpt2qa report: {len(runs)} run{'s' if len(runs) != 1 else ''}</h1>"
        "<h2>Metrics</h2><p class=\"note\">Percent, official SQuAD 2.0 rules, at each run's "
        "best evaluation. best F1: best na_prob threshold on the predictions; tuned F1: best "
        "threshold on each question's best span; baseline: abstain on every question.</p>"
        f"{_html_table(header, rows)}<h2>Runs</h2>{_html_table(settings_header, settings_rows, 4)}"
        f"{sections}</body></html>\n")
    return write_text_atomic(out / "index.html", page)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
