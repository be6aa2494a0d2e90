"""`gpt2qa study`: the layout x null-position x head x seed grid on the synthetic benchmark.

Question: where should a causal (left-to-right) model read its "no answer" score?  At
position 0 (``null_position=first``) the null token has attended to nothing but itself, so
its span logits cannot depend on the question or the context; ``last`` and ``classifier``
read a token that has seen everything.  The grid crosses that with the input order
(``layout``) and the span head (``linear`` sees only the left context, ``bilstm`` both sides).

The study directory D holds:

  study_config.json            the StudyConfig (data/model/train must match on a rerun)
  data/{train,dev,hard}.json   the synthetic benchmark, written once
  tokenizer/                   one byte-level BPE tokenizer trained on data/train.json
  init-seedS/                  a random tiny GPT-2 per seed, shared by every cell of that seed
  cells/<layout>__<null>__<head>__seed<S>/
                               a normal `gpt2qa train` run directory, evaluated on dev
                               (metrics.json, na_probs.json, model/, ...), plus for every other
                               split X in eval_splits: X_metrics.json, X_predictions.json,
                               X_na_probs.json, and cell.json once training has finished
  summary.json, summary.md     mean and spread over seeds per (layout, null, head) and split
  study.png                    F1 per configuration (dev and hard), error bars, baselines
  reliability.png              na_prob reliability: best cell beside the best of each other
                               null position (so always a null=first cell)

The package, one job a module:

  config       the settings (the `train:` section overrides gpt2qa.config.TrainConfig), YAML
  grid         cells, `--only` filters, a split's file names inside a cell
  inputs       the shared data, tokenizer and inits; a cell's TrainConfig
  runner       the resumable runner (resume rules in its docstring)
  calibration  NA AUROC and reliability/ECE (worked examples in its docstring)
  summary      aggregation over seeds, summary.md/json, which cells the plots show
  (the PNGs are drawn by gpt2qa.plots)

`inputs` and `runner` import torch and transformers, so their names are loaded on first
use. Its flags and handler are in gpt2qa.cli (`flags.add_study_parser`, `commands.cmd_study`).
"""

from __future__ import annotations

import importlib
from typing import Any

from gpt2qa.study.calibration import ReliabilityBin, na_auroc, reliability
from gpt2qa.study.config import (
    SELECTION_SPLIT,
    SPLITS,
    DataSettings,
    GridSettings,
    ModelSettings,
    StudyConfig,
    TrainSettings,
    load_study_config,
    study_config_from_dict,
)
from gpt2qa.study.grid import ONLY_KEYS, Cell, grid_cells, parse_only, split_files
from gpt2qa.study.summary import (
    AGGREGATED,
    cell_scores,
    markdown_table,
    mean_spread,
    reliability_panels,
    summarize,
    summary_markdown,
    write_plots,
)

_LAZY = {
    "StudyInputs": "inputs", "prepare_inputs": "inputs", "cell_train_config": "inputs",
    "check_study_dir": "inputs",
    "Action": "runner", "CellOutcome": "runner", "StudyResult": "runner",
    "evaluate_split": "runner", "run_cell": "runner", "run_study": "runner",
}

__all__ = [
    "AGGREGATED", "ONLY_KEYS", "SELECTION_SPLIT", "SPLITS", "Cell", "DataSettings",
    "GridSettings", "ModelSettings", "ReliabilityBin", "StudyConfig", "TrainSettings",
    "cell_scores", "grid_cells", "load_study_config",
    "markdown_table", "mean_spread", "na_auroc", "parse_only", "reliability",
    "reliability_panels", "split_files", "study_config_from_dict", "summarize",
    "summary_markdown", "write_plots", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"gpt2qa.study.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'gpt2qa.study' has no attribute {name!r}")
