"""The resumable runner: bring every cell to finished, then summarise and plot.

A cell with cell.json and every split's metrics is skipped; a cell whose training finished
but a split's metrics are missing is only evaluated; a cell with checkpoints is resumed
(`TrainConfig.resume`); anything else is removed and started afresh.  A finished cell's
checkpoints are deleted (its best model stays in model/).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gpt2qa.checkpoint import list_checkpoints
from gpt2qa.decode import predictions_to_json
from gpt2qa.errors import GPT2QAError
from gpt2qa.evaluation import score_at_threshold, score_predictions
from gpt2qa.io import check_output_dir, write_json_atomic
from gpt2qa.pipeline import QAPipeline
from gpt2qa.readers import load_examples
from gpt2qa.study.config import SELECTION_SPLIT, StudyConfig
from gpt2qa.study.grid import Cell, grid_cells, split_files
from gpt2qa.study.inputs import StudyInputs, cell_train_config, check_study_dir, prepare_inputs
from gpt2qa.study.summary import summarize, write_plots
from gpt2qa.tasks import fine_tune

Action = Literal["skipped", "evaluated", "resumed", "started"]


@dataclass(frozen=True)
class CellOutcome:
    """What `run_study` did with one cell, and how long it took."""

    cell: Cell
    action: Action
    seconds: float


def evaluate_split(model_dir: Path, examples: Sequence[Any], batch_size: int
                   ) -> tuple[dict[str, Any], dict[str, str], dict[str, float]]:
    """Score a saved model on one split, the way training scores dev, plus the dev threshold.

    Keys as in training's metrics.json (official SQuAD 2.0 at score-diff threshold 0, then
    tuned_* with the threshold tuned on *this* split, null_baseline_*), plus
    ``dev_threshold_exact``/``dev_threshold_f1``: answers under the threshold saved with the
    model (tuned on dev), the number a user of `gpt2qa predict` would get.
    """
    pipe = QAPipeline.from_pretrained(model_dir)
    preds = pipe.predict(examples, batch_size=batch_size, null_score_diff_threshold=0.0)
    texts, na_probs, _ = predictions_to_json(preds)
    metrics = score_predictions(examples, preds)
    saved = pipe.model.config.decoding.null_score_diff_threshold
    at_saved = score_at_threshold(examples, preds, saved)
    metrics.update({"dev_threshold_exact": at_saved["exact"], "dev_threshold_f1": at_saved["f1"],
                    "dev_null_score_diff_threshold": saved})
    return metrics, texts, na_probs


def _final_checkpoint_done(cell_dir: Path, steps: int) -> bool:
    ckpts = list_checkpoints(cell_dir)
    return bool(ckpts) and int(ckpts[-1].name.split("-")[-1]) >= steps


def run_cell(config: StudyConfig, cell: Cell, inputs: StudyInputs, cells_dir: Path,
             split_examples: Mapping[str, Sequence[Any]], progress: bool = False) -> Action:
    """Bring one cell to finished; returns what had to be done."""
    cell_dir = cells_dir / cell.name
    marker = cell_dir / "cell.json"
    others = [s for s in config.eval_splits if s != SELECTION_SPLIT]
    complete = (cell_dir / "metrics.json").is_file() and all(
        (cell_dir / split_files(s)[0]).is_file() for s in others)
    if marker.is_file() and complete:
        return "skipped"

    action: Action = "evaluated"
    trained = marker.is_file() or (
        (cell_dir / "metrics.json").is_file() and (cell_dir / "model").is_dir()
        and _final_checkpoint_done(cell_dir, config.train.steps))
    if not trained:
        resumable = bool(list_checkpoints(cell_dir)) and \
            not _final_checkpoint_done(cell_dir, config.train.steps)
        if not resumable and cell_dir.exists():
            shutil.rmtree(cell_dir)  # a partial run with nothing to resume from
        action = "resumed" if resumable else "started"
        t0 = time.perf_counter()
        result = fine_tune(cell_train_config(config, cell, inputs, cell_dir, resume=resumable,
                                         progress=progress))
        if result.metrics is None:
            raise GPT2QAError(f"{cell_dir}: training produced no metrics.json on "
                              f"{SELECTION_SPLIT} (its best evaluation was lost?); remove "
                              "the directory to train the cell again")
        info = {**dataclasses.asdict(cell), "steps": result.steps,
                "train_seconds": round(time.perf_counter() - t0, 2)}
        write_json_atomic(marker, info)
    elif not marker.is_file():
        # Killed after training's last checkpoint but before the marker was written.
        write_json_atomic(marker, {**dataclasses.asdict(cell), "steps": config.train.steps,
                                   "train_seconds": None})
    shutil.rmtree(cell_dir / "checkpoints", ignore_errors=True)
    for split in others:
        names = split_files(split)
        if (cell_dir / names[0]).is_file():
            continue
        t0 = time.perf_counter()
        metrics, texts, na_probs = evaluate_split(cell_dir / "model", split_examples[split],
                                                  config.train.eval_batch_size)
        metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
        write_json_atomic(cell_dir / names[1], texts)
        write_json_atomic(cell_dir / names[2], na_probs)
        write_json_atomic(cell_dir / names[0], metrics)  # last: it marks the split as done
    return action


@dataclass(frozen=True)
class StudyResult:
    """The cells handled by one `run_study` call and the summary rows written after it."""

    out_dir: Path
    outcomes: tuple[CellOutcome, ...]
    summary: tuple[dict[str, Any], ...]


def run_study(config: StudyConfig, out_dir: str | os.PathLike[str],
              only: Mapping[str, Sequence[str]] | None = None, max_cells: int | None = None,
              progress: bool = False, echo: Callable[[str], None] = print) -> StudyResult:
    """Run (or resume) the grid, then summarise and plot whatever cells are finished.

    `max_cells` bounds the cells that need work in this call (skipped ones do not count).
    """
    if max_cells is not None and max_cells < 0:
        raise GPT2QAError(f"--max-cells: must be >= 0; got {max_cells}")
    out = Path(out_dir)
    check_output_dir(out, "--out-dir")
    out.mkdir(parents=True, exist_ok=True)
    check_study_dir(config, out)
    inputs = prepare_inputs(config, out)
    split_examples = {s: load_examples(inputs.data[s]).examples
                      for s in config.eval_splits if s != SELECTION_SPLIT}
    cells = grid_cells(config, only)
    outcomes: list[CellOutcome] = []
    worked = 0
    for k, cell in enumerate(cells, start=1):
        if max_cells is not None and worked >= max_cells:
            echo(f"study: stopping after {worked} cell(s) (--max-cells)")
            break
        t0 = time.perf_counter()
        action = run_cell(config, cell, inputs, out / "cells", split_examples, progress)
        seconds = time.perf_counter() - t0
        outcomes.append(CellOutcome(cell, action, seconds))
        if action != "skipped":
            worked += 1
        echo(f"[{k}/{len(cells)}] {cell.name}: {action} ({seconds:.0f} s)"
             + _cell_brief(out / "cells" / cell.name, config.eval_splits))
    rows = summarize(out)
    if rows:
        write_plots(out, rows)
    return StudyResult(out, tuple(outcomes), tuple(rows))


def _cell_brief(cell_dir: Path, splits: Sequence[str]) -> str:
    parts = []
    for split in splits:
        path = cell_dir / split_files(split)[0]
        if path.is_file():
            m = json.loads(path.read_text(encoding="utf-8"))
            parts.append(f"{split} F1 {m['f1']:.1f} (best {m.get('best_f1', float('nan')):.1f})")
    return ("  " + ", ".join(parts)) if parts else ""
