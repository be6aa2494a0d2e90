"""The grid's cells, the `--only KEY=VALUE` filter, and the file names inside a cell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpt2qa.errors import GPT2QAError
from gpt2qa.study.config import SELECTION_SPLIT, GridSettings, StudyConfig


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
                    if head == "generative" and null != "last":
                        continue  # it reads no-answer from what it writes after the input
                    cell = Cell(layout, null, head, seed)
                    values = {"layout": layout, "null_position": null, "head": head,
                              "seed": str(seed)}
                    if all(values[k] in v for k, v in only.items()):
                        cells.append(cell)
    return cells


def split_files(split: str) -> tuple[str, str, str]:
    """(metrics, predictions, na_probs) file names of a split inside a cell directory."""
    if split == SELECTION_SPLIT:
        return "metrics.json", "predictions.json", "na_probs.json"
    return f"{split}_metrics.json", f"{split}_predictions.json", f"{split}_na_probs.json"
