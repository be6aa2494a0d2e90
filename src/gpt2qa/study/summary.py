"""Aggregate finished cells over seeds: summary.json, summary.md, study.png, reliability.png.

Spread: the *population* standard deviation over seeds (numpy ``std`` with ddof=0); the
per-seed values are in summary.json too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpt2qa.config import NULL_POSITIONS
from gpt2qa.io import write_json_atomic, write_text_atomic
from gpt2qa.plots import plot_reliability, plot_study
from gpt2qa.readers import load_examples
from gpt2qa.study.calibration import na_auroc, reliability
from gpt2qa.study.config import SELECTION_SPLIT, SPLITS
from gpt2qa.study.grid import Cell, split_files

AGGREGATED = ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh", "tuned_f1",
              "tuned_null_score_diff_threshold", "dev_threshold_f1", "ece", "auroc")


def mean_spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean and population standard deviation (ddof=0) of per-seed values.

    >>> mean_spread([60.0, 70.0])
    {'mean': 65.0, 'std': 5.0, 'min': 60.0, 'max': 70.0, 'values': [60.0, 70.0]}
    """
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return {"mean": mean, "std": std, "min": min(values), "max": max(values),
            "values": list(values)}


def _finished_cells(out: Path) -> list[tuple[Cell, Path]]:
    found = []
    cells_dir = out / "cells"
    if not cells_dir.is_dir():
        return []
    for cell_dir in sorted(cells_dir.iterdir()):
        marker = cell_dir / "cell.json"
        if not marker.is_file() or not (cell_dir / "metrics.json").is_file():
            continue
        info = json.loads(marker.read_text(encoding="utf-8"))
        found.append((Cell(info["layout"], info["null_position"], info["head"],
                           int(info["seed"])), cell_dir))
    return found


def cell_scores(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per finished cell and split: its metrics and its na_prob ECE (10 bins)."""
    out = Path(out_dir)
    gold: dict[str, dict[str, bool]] = {}
    rows = []
    for cell, cell_dir in _finished_cells(out):
        for split in SPLITS:
            metrics_name, _, na_name = split_files(split)
            if not (cell_dir / metrics_name).is_file():
                continue
            if split not in gold:
                data = out / "data" / f"{split}.json"
                gold[split] = {ex.qas_id: bool(ex.answers)
                               for ex in load_examples(data, check_offsets=False).examples}
            metrics = json.loads((cell_dir / metrics_name).read_text(encoding="utf-8"))
            na_probs = json.loads((cell_dir / na_name).read_text(encoding="utf-8"))
            ids = [q for q in na_probs if q in gold[split]]
            probs, labels = [na_probs[q] for q in ids], [gold[split][q] for q in ids]
            bins, ece = reliability(probs, labels)
            rows.append({"cell": cell, "split": split, "metrics": metrics, "ece": ece,
                         "auroc": na_auroc(probs, labels), "bins": bins})
    return rows


def summarize(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Aggregate finished cells over seeds; write summary.json and summary.md; return rows.

    One row per (layout, null_position, head, split), sorted within a split by mean F1
    (threshold 0, the model's own decision rule), best first.
    """
    out = Path(out_dir)
    per_cell = cell_scores(out)
    groups: dict[tuple[str, tuple[str, str, str]], list[dict[str, Any]]] = {}
    for row in per_cell:
        groups.setdefault((row["split"], row["cell"].config_key), []).append(row)
    rows: list[dict[str, Any]] = []
    for (split, (layout, null, head)), members in groups.items():
        members.sort(key=lambda r: r["cell"].seed)
        entry: dict[str, Any] = {"layout": layout, "null_position": null, "head": head,
                                 "split": split, "seeds": [r["cell"].seed for r in members],
                                 "questions": members[0]["metrics"].get("total"),
                                 "null_baseline_f1": members[0]["metrics"].get(
                                     "null_baseline_f1")}
        for key in AGGREGATED:
            values = [r[key] if key in ("ece", "auroc") else r["metrics"].get(key)
                      for r in members]
            values = [float(v) for v in values if v is not None]
            entry[key] = mean_spread(values) if values else None
        rows.append(entry)
    order = {s: i for i, s in enumerate(SPLITS)}
    rows.sort(key=lambda r: (order[r["split"]], -r["f1"]["mean"]))
    cells_json = [{"cell": r["cell"].name, **dataclasses.asdict(r["cell"]), "split": r["split"],
                   "f1": r["metrics"].get("f1"), "best_f1": r["metrics"].get("best_f1"),
                   "ece": r["ece"], "auroc": r["auroc"],
                   "reliability": [dataclasses.asdict(b) for b in r["bins"]]}
                  for r in per_cell]
    write_json_atomic(out / "summary.json", {
        "spread": "population standard deviation over seeds (ddof=0)",
        "configs": rows, "cells": cells_json})
    write_text_atomic(out / "summary.md", summary_markdown(rows, per_cell))
    return rows


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------

def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_cols: int = 1) -> str:
    """A Markdown table; the first `text_cols` columns left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < text_cols else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _ms(stat: Mapping[str, Any] | None, digits: int = 1) -> str:
    if not stat:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def summary_markdown(rows: Sequence[Mapping[str, Any]],
                     per_cell: Sequence[Mapping[str, Any]] = ()) -> str:
    """One table per split (sorted by mean F1), then ECE per cell."""
    lines = ["# Study summary\n",
             "Mean ± population standard deviation over seeds, in percent (ECE and thresholds "
             "as fractions / score differences). F1 and EM at the model's own rule (score "
             "difference threshold 0); `best F1` / `best thr`: best na_prob threshold on the "
             "same split (an oracle); `tuned thr`: that threshold as a score difference; "
             "`F1 @dev thr`: with the threshold tuned on dev. ECE: 10 equal-width bins of "
             "na_prob vs the share of unanswerable questions. NA AUROC: how well na_prob "
             "ranks unanswerable above answerable questions (0.5 = chance).\n"]
    for split in SPLITS:
        block = [r for r in rows if r["split"] == split]
        if not block:
            continue
        base = block[0]["null_baseline_f1"]
        lines.append(f"\n## {split} ({block[0]['questions']} questions; all-no-answer "
                     f"baseline F1 = {base:.1f})\n\n")
        header = ["layout", "null", "head", "seeds", "F1", "EM", "HasAns F1", "NoAns F1",
                  "best F1", "best thr", "tuned thr", "F1 @dev thr", "ECE", "NA AUROC",
                  "baseline F1"]
        body = [[r["layout"], r["null_position"], r["head"], str(len(r["seeds"])),
                 _ms(r["f1"]), _ms(r["exact"]), _ms(r["HasAns_f1"]), _ms(r["NoAns_f1"]),
                 _ms(r["best_f1"]), _ms(r["best_f1_thresh"], 2),
                 _ms(r["tuned_null_score_diff_threshold"], 2),
                 _ms(r["dev_threshold_f1"]) if split != SELECTION_SPLIT else "-",
                 _ms(r["ece"], 3), _ms(r["auroc"], 3),
                 f"{r['null_baseline_f1']:.1f}"] for r in block]
        lines.append(markdown_table(header, body, text_cols=3))
    if per_cell:
        seeds = sorted({r["cell"].seed for r in per_cell})
        for title, key, digits in (("ECE", "ece", 3), ("NA AUROC", "auroc", 3)):
            lines.append(f"\n## {title} per cell\n\n")
            header = ["layout", "null", "head", "split", *(f"seed {s}" for s in seeds)]
            table: dict[tuple[Any, ...], dict[int, Any]] = {}
            for r in per_cell:
                table.setdefault((*r["cell"].config_key, r["split"]), {})[r["cell"].seed] = r[key]
            body = [[*k, *("-" if vals.get(s) is None else f"{vals[s]:.{digits}f}" for s in seeds)]
                    for k, vals in sorted(table.items(), key=lambda kv: (kv[0][3], kv[0][:3]))]
            lines.append(markdown_table(header, body, text_cols=4))
    return "".join(lines)


# --------------------------------------------------------------------------------------------
# Plots (drawn by gpt2qa.plots)
# --------------------------------------------------------------------------------------------

def _rank_key(row: Mapping[str, Any]) -> tuple[float, float, float]:
    """Best cell first: higher F1, then higher best F1, then lower ECE (ties are common when
    cells sit at the all-no-answer baseline)."""
    m = row["metrics"]
    return (m["f1"], m.get("best_f1", 0.0), -row["ece"])


def reliability_panels(per_cell: Sequence[Mapping[str, Any]]
                       ) -> list[list[tuple[str, Any, float] | None]]:
    """Rows = splits, columns = the best cell by dev F1, then the best cell of each other null
    position (so a null=first cell always sits beside the best one); [] without dev cells."""
    dev = sorted((r for r in per_cell if r["split"] == SELECTION_SPLIT), key=_rank_key,
                 reverse=True)
    if not dev:
        return []
    chosen = [(dev[0]["cell"], "best by dev F1")]
    for null in NULL_POSITIONS:
        if null == chosen[0][0].null_position:
            continue
        best_of = [r for r in dev if r["cell"].null_position == null]
        if best_of:
            chosen.append((best_of[0]["cell"], f"best with null={null}"))
    splits = [s for s in SPLITS if any(r["split"] == s for r in per_cell)]
    panels: list[list[tuple[str, Any, float] | None]] = []
    for split in splits:
        row: list[tuple[str, Any, float] | None] = []
        for cell, tag in chosen:
            match = [r for r in per_cell if r["cell"] == cell and r["split"] == split]
            row.append((f"{split}: {cell.name}\n({tag})", match[0]["bins"], match[0]["ece"])
                       if match else None)
        panels.append(row)
    return panels


def write_plots(out_dir: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """study.png from the summary rows and reliability.png from the finished cells."""
    out = Path(out_dir)
    plot_study(rows, out / "study.png")
    panels = reliability_panels(cell_scores(out))
    if panels:
        plot_reliability(panels, out / "reliability.png")
