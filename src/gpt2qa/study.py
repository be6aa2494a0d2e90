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

Resuming: a cell with cell.json and every split's metrics is skipped; a cell whose training
finished but a split's metrics are missing is only evaluated; a cell with checkpoints is
resumed (`TrainConfig.resume`); anything else is removed and started afresh.  A finished
cell's checkpoints are deleted (its best model stays in model/).

Spread: the *population* standard deviation over seeds (numpy ``std`` with ddof=0); the
per-seed values are in summary.json too.

Separation: `na_auroc` is the ROC AUC of na_prob for "unanswerable" (threshold-free; 0.5 is
chance), which shows whether a model can tell the two kinds apart even where F1 sits at the
all-no-answer baseline.

Calibration: `reliability` bins na_prob into equal-width bins and compares each bin's mean
na_prob with the observed share of unanswerable questions; ECE is the count-weighted mean of
the absolute gaps.  Worked example (2 bins): probs (0.2, 0.2, 0.8, 0.8) with unanswerable
flags (no, no, yes, no): bin [0, 0.5) has mean 0.2 and share 0 (gap 0.2), bin [0.5, 1] mean
0.8 and share 0.5 (gap 0.3), so ECE = 0.5 * 0.2 + 0.5 * 0.3 = 0.25.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gpt2qa.config import HEADS, LAYOUTS, NULL_POSITIONS
from gpt2qa.errors import GPT2QAError

SPLITS = ("dev", "hard")
SELECTION_SPLIT = "dev"
"""The split that training evaluates on: checkpoint choice and threshold tuning use it."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def _positive(section: str, obj: Any, names: Sequence[str]) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise GPT2QAError(f"{section}.{name}: must be at least 1; got {getattr(obj, name)}")


@dataclass(frozen=True)
class DataSettings:
    """The synthetic benchmark (`gpt2qa.synthetic.write_benchmark`); sizes count paragraphs."""

    seed: int = 0
    n_train: int = 400
    n_dev: int = 60
    n_hard: int = 30
    level: str = "standard"
    """train/dev level (`write_benchmark`): standard or easy; the hard split is the same."""

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise GPT2QAError(f"data.seed: must be >= 0; got {self.seed}")
        if self.level not in ("standard", "easy"):
            raise GPT2QAError(f"data.level: must be standard or easy; got {self.level!r}")
        _positive("data", self, ("n_train", "n_dev", "n_hard"))


@dataclass(frozen=True)
class ModelSettings:
    """The tiny GPT-2 trained from a random init, and its tokenizer's vocabulary size."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    vocab_size: int = 1500

    def __post_init__(self) -> None:
        _positive("model", self, ("n_layer", "n_embd", "n_head"))
        if self.n_embd % self.n_head:
            raise GPT2QAError(f"model.n_embd: {self.n_embd} is not a multiple of model.n_head "
                              f"({self.n_head})")
        if self.vocab_size < 300:
            raise GPT2QAError(f"model.vocab_size: must be at least 300 (byte-level BPE needs "
                              f"256 byte tokens); got {self.vocab_size}")


@dataclass(frozen=True)
class TrainSettings:
    """Training settings shared by every cell (see `gpt2qa.config.TrainConfig`)."""

    steps: int = 200
    batch_size: int = 32
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_seq_length: int = 192
    doc_stride: int = 64
    max_query_length: int = 32
    eval_every: int = 0
    """Evaluate on dev every N steps; 0 means only at the end (no checkpoint selection)."""
    save_every: int = 0
    """Checkpoint every N steps (for resuming); 0 means at each evaluation."""
    eval_batch_size: int = 64
    log_every: int = 10

    def __post_init__(self) -> None:
        _positive("train", self, ("steps", "batch_size", "max_seq_length", "doc_stride",
                                  "max_query_length", "eval_batch_size", "log_every"))
        if not self.lr > 0:
            raise GPT2QAError(f"train.lr: must be positive; got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise GPT2QAError(f"train.warmup_ratio: must be in [0, 1); got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise GPT2QAError(f"train.weight_decay: must be >= 0; got {self.weight_decay}")
        if self.eval_every < 0 or self.save_every < 0:
            raise GPT2QAError("train.eval_every/save_every: must be >= 0")


def _choices(section: str, values: Sequence[Any], allowed: Sequence[Any]) -> None:
    if not values:
        raise GPT2QAError(f"{section}: must list at least one value")
    if len(set(values)) != len(values):
        raise GPT2QAError(f"{section}: lists a value twice: {list(values)}")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise GPT2QAError(f"{section}: {bad[0]!r} is not one of {', '.join(map(str, allowed))}")


@dataclass(frozen=True)
class GridSettings:
    """The grid: every combination of these values is one cell."""

    layouts: tuple[str, ...] = LAYOUTS
    null_positions: tuple[str, ...] = NULL_POSITIONS
    heads: tuple[str, ...] = HEADS
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        _choices("grid.layouts", self.layouts, LAYOUTS)
        _choices("grid.null_positions", self.null_positions, NULL_POSITIONS)
        _choices("grid.heads", self.heads, HEADS)
        if not self.seeds:
            raise GPT2QAError("grid.seeds: must list at least one value")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise GPT2QAError(f"grid.seeds: must be distinct integers >= 0; got {list(self.seeds)}")


@dataclass(frozen=True)
class StudyConfig:
    """The whole study; loaded from YAML with sections data, model, train, grid, eval_splits."""

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    grid: GridSettings = field(default_factory=GridSettings)
    eval_splits: tuple[str, ...] = SPLITS
    """Splits to score every cell on; must include dev, the split training selects on."""

    def __post_init__(self) -> None:
        _choices("eval_splits", self.eval_splits, SPLITS)
        if SELECTION_SPLIT not in self.eval_splits:
            raise GPT2QAError(f"eval_splits: must include {SELECTION_SPLIT} (training evaluates "
                              "and tunes its threshold there)")

    def fixed_part(self) -> dict[str, Any]:
        """Settings that every cell of one study directory must share."""
        d = dataclasses.asdict(self)
        return {k: d[k] for k in ("data", "model", "train")}


_SECTIONS: dict[str, type] = {"data": DataSettings, "model": ModelSettings,
                              "train": TrainSettings, "grid": GridSettings}


def _coerce(where: str, value: Any, tp: Any) -> Any:
    """Check one YAML value against a field's type: int, float, str or tuple[int|str, ...]."""
    if typing.get_origin(tp) is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise GPT2QAError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(f"{where}[{i}]", v, item_tp) for i, v in enumerate(value))
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise GPT2QAError(f"{where}: expected an integer, got {type(value).__name__} "
                              f"{value!r}")
        return value
    if tp is float:
        # YAML 1.1 reads "2e-3" (no dot) as a string; accept it as the number it means.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GPT2QAError(f"{where}: expected a number, got {type(value).__name__} "
                              f"{value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise GPT2QAError(f"{where}: expected a string, got {type(value).__name__} "
                              f"{value!r}")
        return value
    raise AssertionError(f"unsupported field type {tp}")  # pragma: no cover


def _section(cls: type, raw: Any, name: str) -> Any:
    if not isinstance(raw, dict):
        raise GPT2QAError(f"{name}: expected a mapping of settings, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        key = str(key).replace("-", "_")
        if key not in known:
            raise GPT2QAError(f"{name}.{key}: unknown setting (known: {', '.join(sorted(known))})")
        values[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**values)


def study_config_from_dict(raw: Any) -> StudyConfig:
    """Build and check a StudyConfig from parsed YAML/JSON (errors name the setting)."""
    if not isinstance(raw, dict):
        raise GPT2QAError(f"expected a mapping with sections {', '.join(_SECTIONS)}, "
                          "eval_splits")
    unknown = sorted(set(raw) - set(_SECTIONS) - {"eval_splits"})
    if unknown:
        raise GPT2QAError(f"{unknown[0]}: unknown section (known: {', '.join(_SECTIONS)}, "
                          "eval_splits)")
    parts: dict[str, Any] = {name: _section(cls, raw[name], name)
                             for name, cls in _SECTIONS.items() if name in raw}
    if "eval_splits" in raw:
        parts["eval_splits"] = _coerce("eval_splits", raw["eval_splits"], tuple[str, ...])
    return StudyConfig(**parts)


def load_study_config(path: str | os.PathLike[str]) -> StudyConfig:
    """Read a study YAML file; every problem is one line naming the file and the setting."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GPT2QAError(f"{path}: cannot read study config ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise GPT2QAError(f"{path}: invalid YAML{where}") from None
    try:
        return study_config_from_dict(raw if raw is not None else {})
    except GPT2QAError as exc:
        raise GPT2QAError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    layout: str
    null_position: str
    head: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.layout}__{self.null_position}__{self.head}__seed{self.seed}"

    @property
    def config_key(self) -> tuple[str, str, str]:
        return (self.layout, self.null_position, self.head)


ONLY_KEYS = {"layout": "layout", "null_position": "null_position", "null": "null_position",
             "head": "head", "seed": "seed"}


def parse_only(items: Sequence[str], grid: GridSettings) -> dict[str, tuple[str, ...]]:
    """``--only KEY=VALUE`` filters: the same key twice means either value, keys combine.

    >>> parse_only(["null=first", "seed=0", "seed=2"], GridSettings())
    {'null_position': ('first',), 'seed': ('0', '2')}
    """
    allowed = {"layout": grid.layouts, "null_position": grid.null_positions,
               "head": grid.heads, "seed": tuple(str(s) for s in grid.seeds)}
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in ONLY_KEYS:
            raise GPT2QAError(f"--only {item}: expected KEY=VALUE with KEY one of "
                              "layout, null_position (or null), head, seed")
        canonical = ONLY_KEYS[key]
        value = value.strip()
        if value not in allowed[canonical]:
            raise GPT2QAError(f"--only {item}: {value!r} is not in the grid's "
                              f"{canonical} values ({', '.join(allowed[canonical])})")
        out[canonical] = (*out.get(canonical, ()), value)
    return out


def grid_cells(config: StudyConfig, only: Mapping[str, Sequence[str]] | None = None
               ) -> list[Cell]:
    """Every cell, seed by seed (so an interrupted study has whole seeds first)."""
    only = only or {}
    cells = []
    for seed in config.grid.seeds:
        for layout in config.grid.layouts:
            for null in config.grid.null_positions:
                for head in config.grid.heads:
                    cell = Cell(layout, null, head, seed)
                    values = {"layout": layout, "null_position": null, "head": head,
                              "seed": str(seed)}
                    if all(values[k] in v for k, v in only.items()):
                        cells.append(cell)
    return cells


# --------------------------------------------------------------------------------------------
# Preparing the shared inputs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyInputs:
    """What every cell shares: the split files, the tokenizer and one init per seed."""

    data: Mapping[str, Path]
    tokenizer_dir: Path
    init_dirs: Mapping[int, Path]


def _check_study_dir(config: StudyConfig, out: Path) -> None:
    """Refuse to mix cells trained with different data/model/train settings in one folder."""
    from gpt2qa.decode import write_json_atomic

    path = out / "study_config.json"
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise GPT2QAError(f"{path}: not valid JSON; remove it or use another --out-dir") from None
        new = config.fixed_part()
        for section, values in new.items():
            for key, value in values.items():
                before = old.get(section, {}).get(key)
                if before != value:
                    raise GPT2QAError(
                        f"{path}: this study was run with {section}.{key}={before!r}, the config "
                        f"asks for {value!r}; use another --out-dir")
    write_json_atomic(path, dataclasses.asdict(config))


def prepare_inputs(config: StudyConfig, out_dir: str | os.PathLike[str]) -> StudyInputs:
    """Write the data, train the one tokenizer and save one random init per seed (once)."""
    import torch

    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.io import atomic_dir
    from gpt2qa.model import backbone_from_config, tiny_gpt2_config
    from gpt2qa.synthetic import corpus_texts, write_benchmark
    from gpt2qa.tokenizer import load_tokenizer, train_bpe_tokenizer

    out = Path(out_dir)
    data_dir = out / "data"
    paths = {s: data_dir / f"{s}.json" for s in ("train", *SPLITS)}
    if not all(p.is_file() for p in paths.values()):
        d = config.data
        written = write_benchmark(data_dir, seed=d.seed, n_train=d.n_train, n_dev=d.n_dev,
                                  n_hard=d.n_hard, level=d.level)  # type: ignore[arg-type]
        paths = {s: written[s] for s in paths}

    tok_dir = out / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        train_json = json.loads(paths["train"].read_text(encoding="utf-8"))
        tokenizer = train_bpe_tokenizer(corpus_texts(train_json),
                                        vocab_size=config.model.vocab_size)
        prepare_tokenizer(tokenizer)
        with atomic_dir(tok_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    tokenizer = load_tokenizer(tok_dir)
    prepare_tokenizer(tokenizer)

    init_dirs = {}
    for seed in config.grid.seeds:
        init = out / f"init-seed{seed}"
        init_dirs[seed] = init
        if (init / "config.json").is_file() and (init / "model.safetensors").is_file():
            continue
        torch.manual_seed(seed)
        m = config.model
        backbone = backbone_from_config(tiny_gpt2_config(
            len(tokenizer), n_layer=m.n_layer, n_embd=m.n_embd, n_head=m.n_head,
            n_positions=max(256, config.train.max_seq_length), dropout=0.0))
        with atomic_dir(init) as tmp:
            backbone.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return StudyInputs(data=paths, tokenizer_dir=tok_dir, init_dirs=init_dirs)


def cell_train_config(config: StudyConfig, cell: Cell, inputs: StudyInputs, cell_dir: Path,
                      resume: bool = False, progress: bool = False) -> Any:
    """The TrainConfig of one cell: the shared settings plus the cell's grid values."""
    from gpt2qa.config import TrainConfig

    t = config.train
    return TrainConfig(
        model=str(inputs.init_dirs[cell.seed]), output_dir=str(cell_dir),
        train_file=str(inputs.data["train"]), eval_file=str(inputs.data[SELECTION_SPLIT]),
        head=cell.head, layout=cell.layout, null_position=cell.null_position,  # type: ignore[arg-type]
        max_seq_length=t.max_seq_length, doc_stride=t.doc_stride,
        max_query_length=t.max_query_length, max_steps=t.steps, batch_size=t.batch_size,
        eval_batch_size=t.eval_batch_size, lr=t.lr, weight_decay=t.weight_decay,
        warmup_ratio=t.warmup_ratio, eval_every=t.eval_every or t.steps,
        save_every=t.save_every, log_every=t.log_every, seed=cell.seed, keep_checkpoints=1,
        resume=resume, progress=progress)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

Action = Literal["skipped", "evaluated", "resumed", "started"]


@dataclass(frozen=True)
class CellOutcome:
    """What `run_study` did with one cell, and how long it took."""

    cell: Cell
    action: Action
    seconds: float


def split_files(split: str) -> tuple[str, str, str]:
    """(metrics, predictions, na_probs) file names of a split inside a cell directory."""
    if split == SELECTION_SPLIT:
        return "metrics.json", "predictions.json", "na_probs.json"
    return f"{split}_metrics.json", f"{split}_predictions.json", f"{split}_na_probs.json"


def evaluate_split(model_dir: Path, examples: Sequence[Any], batch_size: int
                   ) -> tuple[dict[str, Any], dict[str, str], dict[str, float]]:
    """Score a saved model on one split, the way training scores dev, plus the dev threshold.

    Keys as in training's metrics.json (official SQuAD 2.0 at score-diff threshold 0, then
    tuned_* with the threshold tuned on *this* split, null_baseline_*), plus
    ``dev_threshold_exact``/``dev_threshold_f1``: answers under the threshold saved with the
    model (tuned on dev), the number a user of `gpt2qa predict` would get.
    """
    from gpt2qa.decode import predictions_to_json
    from gpt2qa.evaluation import score_at_threshold, score_predictions
    from gpt2qa.pipeline import QAPipeline

    pipe = QAPipeline.from_pretrained(model_dir)
    preds = pipe.predict(examples, batch_size=batch_size, null_score_diff_threshold=0.0)
    texts, na_probs, _ = predictions_to_json(preds)
    metrics = score_predictions(examples, preds)
    saved = pipe.model.config.null_score_diff_threshold
    at_saved = score_at_threshold(examples, preds, saved)
    metrics.update({"dev_threshold_exact": at_saved["exact"], "dev_threshold_f1": at_saved["f1"],
                    "dev_null_score_diff_threshold": saved})
    return metrics, texts, na_probs


def _final_checkpoint_done(cell_dir: Path, steps: int) -> bool:
    from gpt2qa.checkpoint import list_checkpoints

    ckpts = list_checkpoints(cell_dir)
    return bool(ckpts) and int(ckpts[-1].name.split("-")[-1]) >= steps


def run_cell(config: StudyConfig, cell: Cell, inputs: StudyInputs, cells_dir: Path,
             split_examples: Mapping[str, Sequence[Any]], progress: bool = False) -> Action:
    """Bring one cell to finished; returns what had to be done."""
    from gpt2qa.checkpoint import list_checkpoints
    from gpt2qa.decode import write_json_atomic
    from gpt2qa.train import train

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
        result = train(cell_train_config(config, cell, inputs, cell_dir, resume=resumable,
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
    from gpt2qa.data import load_squad
    from gpt2qa.io import check_output_dir

    if max_cells is not None and max_cells < 0:
        raise GPT2QAError(f"--max-cells: must be >= 0; got {max_cells}")
    out = Path(out_dir)
    check_output_dir(out, "--out-dir")
    out.mkdir(parents=True, exist_ok=True)
    _check_study_dir(config, out)
    inputs = prepare_inputs(config, out)
    split_examples = {s: load_squad(inputs.data[s]).examples
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
        plot_study(out, rows, out / "study.png")
        plot_reliability(out, out / "reliability.png")
    return StudyResult(out, tuple(outcomes), tuple(rows))


def _cell_brief(cell_dir: Path, splits: Sequence[str]) -> str:
    parts = []
    for split in splits:
        path = cell_dir / split_files(split)[0]
        if path.is_file():
            m = json.loads(path.read_text(encoding="utf-8"))
            parts.append(f"{split} F1 {m['f1']:.1f} (best {m.get('best_f1', float('nan')):.1f})")
    return ("  " + ", ".join(parts)) if parts else ""


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width bin of na_prob; mean_prob and frac_unanswerable are None when empty."""

    lo: float
    hi: float
    count: int
    mean_prob: float | None
    frac_unanswerable: float | None


def reliability(na_probs: Sequence[float], has_ans: Sequence[bool], n_bins: int = 10
                ) -> tuple[tuple[ReliabilityBin, ...], float]:
    """Reliability of na_prob as P(unanswerable), and the expected calibration error.

    Bins are [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1] (the last one closed).  ECE is the sum
    over bins of (count / total) * |mean na_prob - share unanswerable|; see the module
    docstring for a worked example.
    """
    if n_bins < 1:
        raise GPT2QAError(f"reliability: n_bins must be at least 1; got {n_bins}")
    if len(na_probs) != len(has_ans):
        raise GPT2QAError(f"reliability: {len(na_probs)} probabilities but {len(has_ans)} labels")
    if not na_probs:
        raise GPT2QAError("reliability: no questions")
    sums = [0.0] * n_bins
    unans = [0] * n_bins
    counts = [0] * n_bins
    for p, h in zip(na_probs, has_ans, strict=True):
        if not 0.0 <= p <= 1.0:
            raise GPT2QAError(f"reliability: probability {p!r} is not in [0, 1]")
        b = min(int(p * n_bins), n_bins - 1)
        sums[b] += p
        unans[b] += int(not h)
        counts[b] += 1
    bins = []
    ece = 0.0
    total = len(na_probs)
    for b in range(n_bins):
        n = counts[b]
        mean = sums[b] / n if n else None
        frac = unans[b] / n if n else None
        if n:
            ece += n / total * abs(sums[b] / n - unans[b] / n)
        bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, n, mean, frac))
    return tuple(bins), ece


def na_auroc(na_probs: Sequence[float], has_ans: Sequence[bool]) -> float | None:
    """How well na_prob ranks unanswerable above answerable questions (ROC AUC, ties = 1/2).

    Threshold-free, so it shows whether a model can *tell* the two apart even where its
    decision rule abstains on everything. 0.5 is chance; None when a class is absent.
    Worked example: unanswerable at (0.9, 0.4), answerable at (0.4, 0.1): of the 4 pairs,
    3 are ordered right and one is a tie, so AUROC = 3.5 / 4 = 0.875.
    """
    if len(na_probs) != len(has_ans):
        raise GPT2QAError(f"na_auroc: {len(na_probs)} probabilities but {len(has_ans)} labels")
    n_pos = sum(1 for h in has_ans if not h)
    n_neg = len(has_ans) - n_pos
    if not n_pos or not n_neg:
        return None
    # Mann-Whitney U from average ranks (ties share their mean rank).
    order = sorted(range(len(na_probs)), key=lambda i: na_probs[i])
    ranks = [0.0] * len(order)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and na_probs[order[j + 1]] == na_probs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, h in zip(ranks, has_ans, strict=True) if not h)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

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
    from gpt2qa.data import load_squad

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
                               for ex in load_squad(data, check_offsets=False).examples}
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
    from gpt2qa.decode import write_json_atomic
    from gpt2qa.io import write_text_atomic

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


def _ms(stat: Mapping[str, Any] | None, digits: int = 1) -> str:
    if not stat:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def summary_markdown(rows: Sequence[Mapping[str, Any]],
                     per_cell: Sequence[Mapping[str, Any]] = ()) -> str:
    """One table per split (sorted by mean F1), then ECE per cell."""
    from gpt2qa.report import markdown_table

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
# Plots
# --------------------------------------------------------------------------------------------

_SHORT = {"question-first": "Q-first", "context-first": "C-first"}


def _config_label(layout: str, null: str, head: str) -> str:
    return f"{_SHORT.get(layout, layout)}\n{null}\n{head}"


def plot_study(out_dir: Path, rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Grouped bars per configuration and split, ± spread over seeds.

    Top: F1 at threshold 0 with the all-no-answer baselines as lines. Bottom: NA AUROC
    (can na_prob tell unanswerable from answerable at all?) with chance (0.5) as a line.
    """
    from matplotlib.figure import Figure

    from gpt2qa.plots import save_figure

    keys: list[tuple[str, str, str]] = []
    for layout in LAYOUTS:
        for null in NULL_POSITIONS:
            for head in HEADS:
                if any((r["layout"], r["null_position"], r["head"]) == (layout, null, head)
                       for r in rows):
                    keys.append((layout, null, head))
    splits = [s for s in SPLITS if any(r["split"] == s for r in rows)]
    colors = {"dev": "tab:blue", "hard": "tab:orange"}
    fig = Figure(figsize=(max(7.0, 0.95 * len(keys) + 2), 7.5))
    ax_f1, ax_auc = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    width = 0.8 / len(splits)
    for k, split in enumerate(splits):
        by_key = {(r["layout"], r["null_position"], r["head"]): r
                  for r in rows if r["split"] == split}
        for ax, metric in ((ax_f1, "f1"), (ax_auc, "auroc")):
            xs, ys, errs = [], [], []
            for i, key in enumerate(keys):
                stat = by_key[key].get(metric) if key in by_key else None
                if stat:
                    xs.append(i + (k - (len(splits) - 1) / 2) * width)
                    ys.append(stat["mean"])
                    errs.append(stat["std"])
            ax.bar(xs, ys, width=width, yerr=errs, capsize=3, color=colors[split],
                   label=f"{split} (mean ± std over seeds)")
        base = next(iter(by_key.values()))["null_baseline_f1"]
        ax_f1.axhline(base, color=colors[split], linestyle="--", linewidth=1,
                      label=f"{split}: abstain on all ({base:.1f})")
    ax_auc.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax_auc.set_xticks(range(len(keys)), [_config_label(*k) for k in keys], fontsize=7)
    ax_f1.set(ylabel="F1 (threshold 0)", ylim=(0, 100),
              title="Synthetic SQuAD 2.0 study: layout / null position / head")
    ax_auc.set(ylabel="NA AUROC", ylim=(0, 1))
    ax_f1.legend(fontsize=7, loc="upper right")
    ax_auc.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path)


def _reliability_panel(ax: Any, bins: Sequence[ReliabilityBin], ece: float, title: str) -> None:
    filled = [b for b in bins if b.count]
    ax.bar([(b.lo + b.hi) / 2 for b in filled], [b.frac_unanswerable for b in filled],
           width=[b.hi - b.lo for b in filled], edgecolor="black", alpha=0.6,
           label="observed share unanswerable")
    ax.plot([b.mean_prob for b in filled], [b.frac_unanswerable for b in filled], "o",
            color="tab:red", label="bin mean na_prob")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    for b in filled:
        ax.annotate(str(b.count), ((b.lo + b.hi) / 2, 0.02), ha="center", fontsize=6)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="na_prob", ylabel="share unanswerable")
    ax.set_title(f"{title}\nECE = {ece:.3f}", fontsize=8)


def _rank_key(row: Mapping[str, Any]) -> tuple[float, float, float]:
    """Best cell first: higher F1, then higher best F1, then lower ECE (ties are common when
    cells sit at the all-no-answer baseline)."""
    m = row["metrics"]
    return (m["f1"], m.get("best_f1", 0.0), -row["ece"])


def plot_reliability(out_dir: Path, path: Path) -> Path | None:
    """Reliability diagrams, rows = splits: the best cell by dev F1, then the best cell of each
    other null position (so a null=first cell always sits beside the best one)."""
    from matplotlib.figure import Figure

    from gpt2qa.plots import save_figure

    per_cell = cell_scores(out_dir)
    dev = sorted((r for r in per_cell if r["split"] == SELECTION_SPLIT), key=_rank_key,
                 reverse=True)
    if not dev:
        return None
    chosen = [(dev[0]["cell"], "best by dev F1")]
    for null in NULL_POSITIONS:
        if null == chosen[0][0].null_position:
            continue
        best_of = [r for r in dev if r["cell"].null_position == null]
        if best_of:
            chosen.append((best_of[0]["cell"], f"best with null={null}"))
    splits = [s for s in SPLITS if any(r["split"] == s for r in per_cell)]
    fig = Figure(figsize=(4.2 * len(chosen), 3.8 * len(splits)))
    axes = fig.subplots(len(splits), len(chosen), squeeze=False)
    for i, split in enumerate(splits):
        for j, (cell, tag) in enumerate(chosen):
            match = [r for r in per_cell if r["cell"] == cell and r["split"] == split]
            ax = axes[i][j]
            if not match:
                ax.set_visible(False)
                continue
            _reliability_panel(ax, match[0]["bins"], match[0]["ece"],
                               f"{split}: {cell.name}\n({tag})")
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def cmd_study(args: argparse.Namespace) -> int:
    config = load_study_config(args.config)
    only = parse_only(args.only or [], config.grid)
    result = run_study(config, args.out_dir, only=only, max_cells=args.max_cells,
                       progress=args.progress)
    done = sum(1 for o in result.outcomes if o.action != "skipped")
    print(f"study: {done} cell(s) run, {len(result.outcomes) - done} skipped; "
          f"summary: {result.out_dir / 'summary.md'}")
    return 0


def add_study_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa study` on an argparse sub-parsers object."""
    p = sub.add_parser("study", help="run the layout x null-position x head x seed grid on "
                                     "synthetic data, then summarise it (resumable)")
    p.add_argument("--config", required=True, help="study YAML (e.g. configs/study-synthetic.yaml)")
    p.add_argument("--out-dir", required=True, help="study directory (created; reruns resume)")
    p.add_argument("--only", action="append", metavar="KEY=VALUE",
                   help="run only matching cells: layout, null_position (null), head, seed; "
                        "repeat a key for either value")
    p.add_argument("--max-cells", type=int, default=None,
                   help="run at most N cells that need work, then summarise and stop")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="per-cell training progress bars (default: one line per cell)")
    p.set_defaults(func=cmd_study)
    return p
