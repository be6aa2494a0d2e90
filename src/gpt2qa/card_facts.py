"""The model card's facts: what a run, its evaluation and a saved model are, collected once
(`run_facts`, `base_model_facts`, `model_facts`) into frozen records that `modelcard.render_card`
turns into text.

Collecting reads files: the data files, to hash them (by base name: a card never holds a
path), and the base model's local card or config.json, for its hub id and license. Rendering
reads nothing, so it is a pure function of these records.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2qa.config import QAConfig, TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.hub_data import split_name
from gpt2qa.task import ReportSpec, Task

CARD_NAME = "README.md"

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
"""A hub repository id (`gpt2`, `Qwen/Qwen2.5-0.5B`): no path separator beyond the one
slash, no `~`, no leading dot, so nothing that could be a path on this machine."""
LICENSE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
"""A license identifier as the hub's `license` field spells one (`mit`, `apache-2.0`)."""

LOADERS = {".csv": "csv", ".parquet": "parquet", ".tsv": "csv"}
"""The `datasets` loader a local data file would use (the model-index's dataset `type`);
anything else is read as JSON."""


@dataclass(frozen=True)
class DataFile:
    """One local data file of the run, by base name, with its sha256."""

    role: str
    """How the card's table names it: "training data", "evaluation data", or "dataset file" (a
    file of a local `--dataset` folder)."""
    name: str
    sha256: str


@dataclass(frozen=True)
class BaseModel:
    """What the card says of `--model`."""

    hub_id: str | None
    """The front matter's `base_model`: the hub id given, or the one a local directory's own
    card names (a gpt2qa model directory, a hub snapshot); None for any other local model."""
    label: str
    """How the card's text names it (a hub id, or a local directory by base name)."""
    license: str | None = None
    """The base model's license, when its local card or config.json states one."""


@dataclass(frozen=True)
class RunFacts:
    """What a training run was: fixed from its start, the same for every model it saves."""

    name: str
    """The run folder's base name: the model-index's model name and the card's title."""
    task: str
    report: ReportSpec
    text_context: bool
    """A context is one text (False: the task's structured context, e.g. titled paragraphs)."""
    windows: str
    """How contexts become windows (`Task.windows`, with FeatureConfig fields in braces)."""
    base: BaseModel
    datasets: tuple[str, ...]
    """Hub data sets the run read (`--dataset`), for the front matter."""
    data_files: tuple[DataFile, ...]
    eval_data: str
    """What the evaluation data was: a file's base name or a hub data set's name; "" for none."""
    eval_loader: str
    """The model-index's dataset `type`: the hub data set, or the loader of a local file."""
    steps: int
    batch_size: int
    lr: float
    seed: int
    warmup_ratio: float
    weight_decay: float
    precision: str
    processes: int
    lora_r: int = 0
    lora_alpha: float = 0.0
    checked: tuple[tuple[str, float], ...] = ()
    """The setup record's figures (`Task.check_training`), e.g. answer_recall."""
    synthetic: bool = False
    """Trained and evaluated on gpt2qa's synthetic data (the demos)."""


@dataclass(frozen=True)
class EvalFacts:
    """The evaluation the saved model won: its metrics (metrics.json's) and step."""

    metrics: Mapping[str, Any]
    step: int


@dataclass(frozen=True)
class CardFacts:
    """What `checkpoint.save_model` needs, beside the model itself, to write the card."""

    run: RunFacts
    evaluation: EvalFacts | None = None


@dataclass(frozen=True)
class ModelFacts:
    """What is being saved: read off the model and its config as it is written."""

    qa: QAConfig
    model_type: str
    layers: int | None
    width: int | None
    positions: int | None
    parameters: int
    compatible: bool
    """A valid `transformers.GPT2ForQuestionAnswering` checkpoint (linear head, null first,
    question first, GPT-2 backbone: `checkpoint.write_model_files` decides)."""
    adapter: bool
    """A LoRA adapter directory (its base is reloaded from adapter_config.json's path)."""


# -- collecting the facts (reads files) -------------------------------------------------------

def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return obj if isinstance(obj, dict) else {}


def card_metadata(text: str) -> dict[str, Any]:
    """A model card's YAML front matter as a mapping ({} when it has none or it is not
    valid YAML)."""
    import yaml

    match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.DOTALL)
    if match is None:
        return {}
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _local_card(path: Path) -> dict[str, Any]:
    try:
        return card_metadata(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}


def _cached(repo_id: str, filename: str) -> Path | None:
    """A file of a hub repository when it is already in the local cache (no network call)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # an id the hub library refuses, an unreadable cache: no facts
        return None
    return Path(found) if isinstance(found, str) else None


def _hub_id_of_snapshot(path: Path) -> str | None:
    """`org/name` for a hub cache snapshot (.../models--org--name/snapshots/HASH)."""
    repo = path.resolve().parent.parent.name
    if not repo.startswith("models--"):
        return None
    hub_id = repo[len("models--"):].replace("--", "/")
    return hub_id if HUB_ID.fullmatch(hub_id) else None


def _license(meta: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    for value in (meta.get("license"), config.get("license")):
        if isinstance(value, str) and LICENSE.fullmatch(value):
            return value
    return None


def base_model_facts(model: str) -> BaseModel:
    """`--model` as the card names it. A hub id is kept; a local directory appears by base
    name, with the hub id its own card or cache path names (else none). The license comes
    from the base's card or config.json, when they are on this machine: the card makes no
    network call."""
    path = Path(model)
    if path.is_dir():
        meta, config = _local_card(path / CARD_NAME), _local_json(path / "config.json")
        named = meta.get("base_model")
        named = named[0] if isinstance(named, list) and named else named
        hub_id = _hub_id_of_snapshot(path) or (
            named if isinstance(named, str) and HUB_ID.fullmatch(named) else None)
        label = f"a local model directory `{path.resolve().name or 'model'}`"
        if hub_id:
            label += f", itself from `{hub_id}`"
        return BaseModel(hub_id, label, _license(meta, config))
    if not HUB_ID.fullmatch(model):
        return BaseModel(None, "a local model")
    readme, config_json = _cached(model, CARD_NAME), _cached(model, "config.json")
    return BaseModel(model, f"`{model}` (Hugging Face hub)",
                     _license(_local_card(readme) if readme else {},
                              _local_json(config_json) if config_json else {}))


def dataset_folder_files(folder: Path) -> tuple[DataFile, ...]:
    """The files of a local dataset folder (`--dataset DIR`), named relative to its parent, so
    the card says "qa/train.jsonl" and not where the folder lay; hidden paths (.git) are left
    out."""
    root = folder.resolve()
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(p.startswith(".") for p in path.relative_to(root).parts):
            continue
        try:
            files.append(DataFile("dataset file", path.relative_to(root.parent).as_posix(),
                                  file_sha256(path)))
        except OSError as exc:
            raise GPT2QAError(f"--dataset {folder}: cannot read {path.relative_to(root)} to "
                              f"hash it for the model card ({exc.strerror or exc})") from None
    return tuple(files)


def run_facts(config: TrainConfig, task: Task, schedule: Any, checked: Mapping[str, Any],
              synthetic: bool = False) -> RunFacts:
    """The run's facts, once at its start: `schedule` is the resolved `schedule.Schedule`,
    `checked` what the task checked of the training windows (the setup record's figures)."""
    files = tuple(DataFile(role, Path(path).name, file_sha256(path))
                  for role, path in (("training data", config.train_file),
                                     ("evaluation data", config.eval_file))
                  if path and Path(path).is_file())
    hub = config.dataset.split(":", 1)[0] if config.dataset else ""
    read_from = Path(split_name(config.dataset)[0]) if config.dataset else None
    if read_from is not None and read_from.is_dir():  # `datasets` read a local folder
        files += dataset_folder_files(read_from)
        hub, eval_data, loader = "", read_from.resolve().name, read_from.resolve().name
    elif config.eval_file:
        eval_data = Path(config.eval_file).name
        loader = LOADERS.get(Path(config.eval_file).suffix.lower(), "json")
    else:
        eval_data, loader = hub, hub
    return RunFacts(
        name=Path(config.output_dir).resolve().name or "gpt2qa-model", task=task.name,
        report=task.report, text_context=task.context_type is str, windows=task.windows,
        base=base_model_facts(config.model), datasets=(hub,) if hub else (), data_files=files,
        eval_data=eval_data, eval_loader=loader, steps=schedule.total_steps,
        batch_size=schedule.batch_size, lr=config.lr, seed=config.seed,
        warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
        precision=config.precision, processes=schedule.processes, lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        checked=tuple((k, float(v)) for k, v in checked.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)),
        synthetic=synthetic)


def model_facts(qa: QAConfig, backbone_config: Any, parameters: int, compatible: bool,
                adapter: bool) -> ModelFacts:
    """What the card says of a model being saved (`backbone_config`: its transformers config)."""
    def size(name: str) -> int | None:
        value = getattr(backbone_config, name, None)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return ModelFacts(qa=qa, model_type=str(getattr(backbone_config, "model_type", "") or "?"),
                      layers=size("num_hidden_layers"), width=size("hidden_size"),
                      positions=size("max_position_embeddings"), parameters=parameters,
                      compatible=compatible, adapter=adapter)
