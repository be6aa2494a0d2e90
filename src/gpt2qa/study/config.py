"""The study's settings (sections data, model, train, grid, eval_splits) and its YAML loader.

The `train:` section is a set of overrides of `gpt2qa.config.TrainConfig`, shared by every
cell: `TrainSettings.train_config(**cell)` builds the TrainConfig of one cell from them, and
TrainConfig's own checks judge the values.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gpt2qa.config import HEADS, LAYOUTS, NULL_POSITIONS, TrainConfig
from gpt2qa.errors import GPT2QAError, check
from gpt2qa.nesting import build
from gpt2qa.reading import load_yaml_mapping

SPLITS = ("dev", "hard")
SELECTION_SPLIT = "dev"
"""The split that training evaluates on: checkpoint choice and threshold tuning use it."""


def _at_least_1(section: str, obj: Any, names: Sequence[str]) -> list[tuple[bool, str]]:
    return [(getattr(obj, name) >= 1,
             f"{section}.{name}: must be at least 1; got {getattr(obj, name)}") for name in names]


def _choices(name: str, values: Sequence[Any], allowed: Sequence[Any]) -> list[tuple[bool, str]]:
    bad = [v for v in values if v not in allowed]
    return [(bool(values), f"{name}: must list at least one value"),
            (len(set(values)) == len(values), f"{name}: lists a value twice: {list(values)}"),
            (not bad, f"{name}: {next(iter(bad), None)!r} is not one of "
                      f"{', '.join(map(str, allowed))}")]


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
        check([(self.seed >= 0, f"data.seed: must be >= 0; got {self.seed}"),
               (self.level in ("standard", "easy"),
                f"data.level: must be standard or easy; got {self.level!r}"),
               *_at_least_1("data", self, ("n_train", "n_dev", "n_hard"))])


@dataclass(frozen=True)
class ModelSettings:
    """The tiny GPT-2 trained from a random init, and its tokenizer's vocabulary size."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    vocab_size: int = 1500

    def __post_init__(self) -> None:
        check([*_at_least_1("model", self, ("n_layer", "n_embd", "n_head")),
               (self.n_head < 1 or self.n_embd % self.n_head == 0,  # n_head < 1 failed above
                f"model.n_embd: {self.n_embd} is not a multiple of model.n_head "
                f"({self.n_head})"),
               (self.vocab_size >= 300, f"model.vocab_size: must be at least 300 (byte-level "
                                        f"BPE needs 256 byte tokens); got {self.vocab_size}")])


@dataclass(frozen=True)
class TrainSettings:
    """Overrides of `gpt2qa.config.TrainConfig` shared by every cell.

    Each field sets the TrainConfig field of the same name (its docstring there says what it
    means), with two study rules: `steps` sets max_steps and must be at least 1 (a study
    counts steps, not epochs), and an `eval_every` of 0 means one evaluation at the end (no
    checkpoint selection). The defaults suit the tiny model trained from scratch.
    """

    steps: int = 200
    batch_size: int = 32
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_seq_length: int = 192
    doc_stride: int = 64
    max_query_length: int = 32
    eval_every: int = 0
    save_every: int = 0
    eval_batch_size: int = 64
    log_every: int = 10

    def __post_init__(self) -> None:
        # TrainConfig allows 0 for both (epochs; pick for the device); the study needs numbers.
        check(_at_least_1("train", self, ("steps", "eval_batch_size")))
        try:
            self.train_config(train_file="data/train.json")  # a cell's file names come later
        except GPT2QAError as exc:
            raise GPT2QAError(f"train: {exc}") from None

    def overrides(self) -> dict[str, Any]:
        """The TrainConfig fields these settings set, by TrainConfig's names."""
        values = dataclasses.asdict(self)
        values["max_steps"] = values.pop("steps")
        values["eval_every"] = self.eval_every or self.steps
        return values

    def train_config(self, **cell: Any) -> TrainConfig:
        """TrainConfig's defaults, these overrides, then a cell's own values on top."""
        return build(TrainConfig, {**self.overrides(), **cell})


@dataclass(frozen=True)
class GridSettings:
    """The grid: every combination of these values is one cell."""

    layouts: tuple[str, ...] = LAYOUTS
    null_positions: tuple[str, ...] = NULL_POSITIONS
    heads: tuple[str, ...] = ("linear", "bilstm")
    """The span heads unless the config lists generative too; a generative cell exists for
    null position last only (it writes its answer after the input)."""
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        check([*_choices("grid.layouts", self.layouts, LAYOUTS),
               *_choices("grid.null_positions", self.null_positions, NULL_POSITIONS),
               *_choices("grid.heads", self.heads, HEADS),
               (bool(self.seeds), "grid.seeds: must list at least one value"),
               (len(set(self.seeds)) == len(self.seeds) and min(self.seeds, default=0) >= 0,
                f"grid.seeds: must be distinct integers >= 0; got {list(self.seeds)}")])


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
        check([*_choices("eval_splits", self.eval_splits, SPLITS),
               (SELECTION_SPLIT in self.eval_splits, f"eval_splits: must include "
                f"{SELECTION_SPLIT} (training evaluates and tunes its threshold there)")])

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
    raw = load_yaml_mapping(path, "study config")
    try:
        return study_config_from_dict(raw)
    except GPT2QAError as exc:
        raise GPT2QAError(f"{path}: {exc}") from None
