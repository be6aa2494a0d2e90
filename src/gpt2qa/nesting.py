"""Nested settings records, read and written flat.

A settings record may hold others (QAConfig holds FeatureConfig and DecodeConfig; TrainConfig
holds QAConfig): each setting is declared once, in the record that owns it. What users see
stays flat: one flag per setting, one YAML key, one key in gpt2qa.json. `flat_fields` maps
the flat names to attribute paths, `build` makes a record from flat names, `flatten` is its
inverse.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import field, fields
from typing import Any, get_type_hints

from gpt2qa.errors import GPT2QAError

SAVED = {"saved": True}
"""Field metadata: recorded with a trained model (tuned), not a training setting, so the
QAConfig nested in TrainConfig leaves it out of the flags and YAML keys."""
DERIVED = {"derived": True, **SAVED}
"""Field metadata: set by the record that holds this one; never a flag or a key."""


# -- nested settings, read and written flat (flags, YAML keys, gpt2qa.json) ----------------------

def flat_fields(cls: type, settings_only: bool = False,
                inside: bool = False) -> dict[str, tuple[str, ...]]:
    """Every leaf setting of a (nested) settings class: flat name -> attribute path.

    QAConfig: {"head": ("head",), "max_seq_length": ("features", "max_seq_length"), ...}.
    Nested records leave out DERIVED fields, and under `settings_only` SAVED ones too.
    """
    out: dict[str, tuple[str, ...]] = {}
    for f in fields(cls):
        if (inside and f.metadata.get("derived")) or (settings_only and f.metadata.get("saved")):
            continue
        inner = f.metadata.get("nested")
        if inner is None:
            out[f.name] = (f.name,)
            continue
        below = flat_fields(inner, settings_only or f.metadata["settings_only"], True)
        out.update({k: (f.name, *path) for k, path in below.items()})
    return out


def build(cls: type, values: Mapping[str, Any], source: str = "settings",
          strict: bool = False) -> Any:
    """A (nested) settings record from flat names; one line for an unknown name. `strict`
    (a file such as gpt2qa.json) also checks each value's JSON type first (`check_types`)."""
    paths = flat_fields(cls)
    unknown = sorted(set(values) - set(paths))
    if unknown:
        raise GPT2QAError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    if strict:
        check_types(cls, values, source)
    return _build(cls, {paths[k]: v for k, v in values.items()})


def leaf_types(cls: type) -> dict[str, Any]:
    """Each flat setting's declared type (`flat_fields`' leaves): {"max_seq_length": int, ...}."""
    out: dict[str, Any] = {}
    for name, path in flat_fields(cls).items():
        owner = cls
        for part in path[:-1]:
            owner = next(f for f in fields(owner) if f.name == part).metadata["nested"]
        out[name] = get_type_hints(owner)[path[-1]]
    return out


def check_types(cls: type, values: Mapping[str, Any], source: str) -> None:
    """One GPT2QAError line naming `source` and the field unless every int setting is an int
    (not a bool, not 16.0), every float a finite number and every bool a bool, as read from
    a file; other types (choices, task_state) are checked by the records themselves."""
    types = leaf_types(cls)
    for name, value in values.items():
        kind = types[name]
        got = f"got {json.dumps(value) if _plain(value) else type(value).__name__}"
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise GPT2QAError(f"{source}: {name} must be a whole number, {got}")
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
            raise GPT2QAError(f"{source}: {name} must be a finite number, {got}")
        if kind is bool and not isinstance(value, bool):
            raise GPT2QAError(f"{source}: {name} must be true or false, {got}")
        if kind is str and not isinstance(value, str):
            raise GPT2QAError(f"{source}: {name} must be a string, {got}")


def _plain(value: Any) -> bool:
    """Whether `value` is a short JSON scalar worth quoting in a message."""
    if isinstance(value, int):
        return value.bit_length() <= 64
    return value is None or isinstance(value, float) or (isinstance(value, str)
                                                         and len(value) <= 40)


def _build(cls: type, values: dict[tuple[str, ...], Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.metadata.get("nested") is not None:
            inner = {path[1:]: v for path, v in values.items() if path[0] == f.name}
            kwargs[f.name] = _build(f.metadata["nested"], inner)
        elif (f.name,) in values:
            kwargs[f.name] = values[(f.name,)]
    return cls(**kwargs)


def flatten(record: Any) -> dict[str, Any]:
    """The leaf settings of a record by flat name (`build`'s inverse)."""
    out: dict[str, Any] = {}
    for name, path in flat_fields(type(record)).items():
        value = record
        for part in path:
            value = getattr(value, part)
        out[name] = value
    return out


def replace_flat(record: Any, **changes: Any) -> Any:
    """`dataclasses.replace` by flat names: replace_flat(qa, max_seq_length=64)."""
    return build(type(record), {**flatten(record), **changes})


class FlatSettings:
    """`of`: build a nested settings record from flat names, as the flags and YAML do."""

    @classmethod
    def of(cls, **settings: Any) -> Any:
        """QAConfig.of(head="linear", max_seq_length=64) == QAConfig(head="linear",
        features=FeatureConfig(max_seq_length=64))."""
        return build(cls, settings)


def nested(cls: type, settings_only: bool = False) -> Any:
    """A field holding a nested settings record (its defaults); `settings_only` leaves the
    record's SAVED fields out of the flat names."""
    return field(default_factory=cls, metadata={"nested": cls, "settings_only": settings_only})
