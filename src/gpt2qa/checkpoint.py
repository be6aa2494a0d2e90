"""All checkpoint and model-directory I/O, written atomically.

A model directory holds:
  config.json         the backbone's transformers config
  model.safetensors   every weight (`transformer.*`, `qa_outputs.*`, ...)
  tokenizer files     with gpt2qa's special tokens registered
  gpt2qa.json         QAConfig: head, layout, null position, lengths, threshold
  examples.json       optional: a few evaluation questions for the serve page's "Try an
                      example", and what the data was (`examples_json`, `read_examples`)
  README.md           the model card, in a directory a training run saved (gpt2qa.modelcard)
  adapter_config.json only in a LoRA directory, whose model.safetensors then holds only what
                      trained; the base is reloaded from the path this file names (gpt2qa.lora)

A training checkpoint (`checkpoints/step-0000100/`) is a model directory plus optimizer.pt,
scheduler.pt and trainer_state.json. Every directory is built under a temporary name and
renamed into place, so a run killed at any moment leaves only complete checkpoints. There is
no RNG file: training reseeds from (seed, step, rank) at every step, so nothing pickled beyond
tensors is ever loaded (`torch.load(..., weights_only=True)` everywhere).

Resuming reads the newest checkpoint that is whole: one that fails to load (truncated weights,
a missing or corrupt optimizer.pt, a pickle that is not plain tensors, a torn
trainer_state.json) is skipped with one warning line, and the next older one is tried.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file, save_file

from gpt2qa.card_facts import CARD_NAME, CardFacts, model_facts
from gpt2qa.config import QA_CONFIG_NAME, QAConfig, read_qa_json
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import SpecialIds, prepare_tokenizer
from gpt2qa.io import atomic_dir, write_json_atomic, write_text_atomic
from gpt2qa.lora import (
    build_adapter_model,
    frozen_keys,
    is_adapter_dir,
    is_lora,
    weights_to_save,
    write_adapter_config,
)
from gpt2qa.model import QAModel, check_config_json, check_fits
from gpt2qa.modelcard import render_card
from gpt2qa.reading import read_json_object
from gpt2qa.schedule import TrainState
from gpt2qa.task import Task
from gpt2qa.tokenizer import load_tokenizer

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "trainer_state.json"
CHECKPOINT_PREFIX = "step-"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
EXAMPLES_NAME = "examples.json"
EXAMPLES_KEPT = 5
"""How many evaluation questions a model directory keeps for the serve page."""
MAX_EXAMPLES = 20
MAX_EXAMPLES_BYTES = 1_000_000
"""Beyond these an examples.json is ignored: it is for a page's button, not a data set."""


def write_model_files(directory: Path, model: QAModel, tokenizer: Any,
                      qa: QAConfig | None = None,
                      weights: dict[str, torch.Tensor] | None = None,
                      examples: dict[str, Any] | None = None,
                      card: CardFacts | None = None) -> None:
    """Write a model directory's files into an existing (temporary) directory; `qa` (default:
    the model's own) is what gpt2qa.json records, e.g. with a tuned threshold; `weights`
    (default: the model's state dict) is the whole state of a sharded model; `examples`
    (`examples_json`), when given, is written as examples.json; `card`, when given, is
    rendered into README.md (the model card) with what this model is."""
    backbone_config = model.transformer.config
    qa = qa or model.config
    compatible = gpt2_qa_compatible(qa, backbone_config)
    # Recorded so transformers' GPT2ForQuestionAnswering.from_pretrained(dir) just works.
    backbone_config.architectures = ["GPT2ForQuestionAnswering"] if compatible else None
    backbone_config.save_pretrained(directory)
    save_file(weights_to_save(model, weights), str(directory / WEIGHTS_NAME),
              metadata={"format": "pt"})
    write_adapter_config(model, directory)
    tokenizer.save_pretrained(directory)
    (directory / QA_CONFIG_NAME).write_text(json.dumps(qa.to_json(), indent=2) + "\n",
                                            encoding="utf-8")
    if examples is not None:
        write_json_atomic(directory / EXAMPLES_NAME, examples)
    if card is not None:
        facts = model_facts(qa, backbone_config, sum(p.numel() for p in model.parameters()),
                            compatible, is_lora(model))
        write_text_atomic(directory / CARD_NAME, render_card(card, facts))


def gpt2_qa_compatible(qa: QAConfig, backbone_config: Any) -> bool:
    """Whether the saved directory is also a `transformers.GPT2ForQuestionAnswering`
    checkpoint: a linear head reading the null score at the first token, question first, on
    a GPT-2 backbone."""
    return (qa.head == "linear" and qa.features.null_position == "first"
            and qa.features.layout == "question-first"
            and getattr(backbone_config, "model_type", "") == "gpt2")


def save_model(model: QAModel, tokenizer: Any, out_dir: str | os.PathLike[str],
               qa: QAConfig | None = None,
               weights: dict[str, torch.Tensor] | None = None,
               examples: dict[str, Any] | None = None,
               card: CardFacts | None = None) -> Path:
    """Save a model directory atomically (replacing any earlier one gpt2qa wrote there), with
    its model card when `card` is given (a training run's)."""
    with atomic_dir(out_dir) as tmp:
        write_model_files(tmp, model, tokenizer, qa, weights, examples, card)
    return Path(out_dir)


# -- examples.json ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelExamples:
    """A model directory's examples.json: a few of its evaluation questions, each
    ``{"question", "context", "answers": [text, ...]}`` in the task's own shapes, what that
    data was (`data`, e.g. the evaluation file's name) and whether it was synthetic."""

    data: str
    synthetic: bool
    items: tuple[dict[str, Any], ...]


def examples_json(task: Task, examples: Iterable[Any], data: str,
                  synthetic: bool = False) -> dict[str, Any]:
    """examples.json's content: among the first 200 of `examples`, the first EXAMPLES_KEPT - 1
    answerable questions and the first unanswerable one (all answerable when there is none),
    so that the page shows both an answer and an abstention."""
    answerable: list[dict[str, Any]] = []
    unanswerable: list[dict[str, Any]] = []
    for example in itertools.islice(examples, 200):
        record = task.example_record(example)
        (answerable if record["answers"] else unanswerable).append(record)
        if len(answerable) >= EXAMPLES_KEPT and unanswerable:
            break
    kept = answerable[:EXAMPLES_KEPT - min(1, len(unanswerable))] + unanswerable[:1]
    return {"task": task.name, "data": data, "synthetic": synthetic, "examples": kept}


def record_model_data(model_dir: str | os.PathLike[str], data: str, synthetic: bool) -> None:
    """Say in a model directory's examples.json what its data was (the demo: synthetic); the
    examples it holds are kept (none when it has no such file)."""
    path = Path(model_dir) / EXAMPLES_NAME
    obj = read_json_object(path) if path.is_file() else {"examples": []}
    write_json_atomic(path, {**obj, "data": data, "synthetic": synthetic})


def read_examples(model_dir: str | os.PathLike[str], task: Task,
                  warn: Callable[[str], None] | None = None) -> ModelExamples | None:
    """A model directory's examples.json, or None when it has none (older gpt2qa versions
    wrote none). A file that is malformed (not JSON, wrong shapes, a question the task
    cannot read, too large) is ignored with one warning line: the examples only fill a
    form, so they never stop a model from loading."""
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    path = Path(model_dir) / EXAMPLES_NAME
    if not path.exists():
        return None
    try:
        if path.is_file() and path.stat().st_size > MAX_EXAMPLES_BYTES:
            raise GPT2QAError(f"{path}: larger than {MAX_EXAMPLES_BYTES} bytes")
        return parse_examples(read_json_object(path), task, path)
    except (GPT2QAError, OSError) as exc:
        warn(f"warning: {exc}; ignored (the page offers a built-in example instead)")
        return None


def parse_examples(obj: dict[str, Any], task: Task, path: Path) -> ModelExamples:
    """Check examples.json's content (see `ModelExamples`); GPT2QAError names the field."""
    data, synthetic, items = obj.get("data", ""), obj.get("synthetic", False), obj.get("examples")
    if obj.get("task", task.name) != task.name:
        raise GPT2QAError(f"{path}: task is {obj.get('task')!r}, but the model is a "
                          f"{task.name} model")
    if not isinstance(data, str) or len(data) > 200:
        raise GPT2QAError(f"{path}: data must be a string of at most 200 characters")
    if not isinstance(synthetic, bool):
        raise GPT2QAError(f"{path}: synthetic must be true or false")
    if not isinstance(items, list) or len(items) > MAX_EXAMPLES:
        raise GPT2QAError(f"{path}: examples must be a list of at most {MAX_EXAMPLES} items")
    kept = []
    for i, item in enumerate(items):
        where = f"{path}: examples[{i}]"
        if not isinstance(item, dict):
            raise GPT2QAError(f"{where}: expected an object, got {type(item).__name__}")
        answers = item.get("answers", [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise GPT2QAError(f"{where}.answers: must be a list of strings")
        try:
            task.example("q", item.get("question"), item.get("context"))
        except GPT2QAError as exc:
            raise GPT2QAError(f"{where}: {exc}") from None
        kept.append({"question": item["question"], "context": item["context"],
                     "answers": answers})
    return ModelExamples(data, synthetic, tuple(kept))


def load_model(model_dir: str | os.PathLike[str], device: str | torch.device = "cpu",
               task: Task | None = None) -> tuple[QAModel, Any, SpecialIds]:
    """Load a gpt2qa model directory: only the directory is needed, never the hub. `task`
    (the one gpt2qa.json names; None: no task heads) builds its heads and upgrades what
    older gpt2qa versions wrote."""
    from transformers import AutoConfig, AutoModel

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise GPT2QAError(f"{model_dir}: no such model directory")
    obj = read_qa_json(model_dir)
    if task is not None:
        obj = task.upgrade_config(model_dir, obj)
    qa = QAConfig.from_json(obj, str(model_dir / QA_CONFIG_NAME))
    heads = task.heads if task is not None else None
    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise GPT2QAError(f"{model_dir}: missing {WEIGHTS_NAME}")
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise GPT2QAError(f"{model_dir}: no tokenizer files (expected one of "
                          f"{', '.join(TOKENIZER_FILES)})")
    check_config_json(model_dir)  # before the tokenizer, which reads config.json too
    tokenizer = load_tokenizer(model_dir)
    special = prepare_tokenizer(tokenizer, answer=qa.head == "generative")
    if is_adapter_dir(model_dir):
        model = build_adapter_model(model_dir, qa, len(tokenizer), heads, special)
    else:
        try:
            # fp32 whatever dtype config.json names: bf16 comes only from autocast.
            backbone = AutoModel.from_config(
                AutoConfig.from_pretrained(model_dir, trust_remote_code=False),
                dtype=torch.float32)
        except (OSError, ValueError, TypeError, ImportError, StrictDataclassError) as exc:
            raise GPT2QAError(f"{model_dir}/config.json: {str(exc).splitlines()[0]}") from None
        backbone.resize_token_embeddings(len(tokenizer))
        model = QAModel(backbone, qa, heads, special)
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise GPT2QAError(f"{weights}: not a readable safetensors file (truncated or damaged?): "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                          ) from None
    check_finite(state, weights)
    if task is not None:
        state = task.upgrade_weights(state)
    apply_weights(model, state, weights)
    try:  # a gpt2qa.json asking for more positions than the backbone has fails here, not later
        check_fits(model.transformer, qa, len(tokenizer))
    except GPT2QAError as exc:
        raise GPT2QAError(f"{model_dir / QA_CONFIG_NAME}: {exc}") from None
    return model.to(device).eval(), tokenizer, special


def check_finite(state: dict[str, torch.Tensor], source: Path) -> None:
    """One GPT2QAError line naming `source` and the first tensor holding NaN or infinity: such
    a model answers with NaN scores, and its abstain rule compares NaN (one pass)."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise GPT2QAError(f"{source}: tensor {name} holds NaN or infinite values; "
                              "this model cannot answer (retrain it, or resume from an "
                              "earlier checkpoint)")


def apply_weights(model: QAModel, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load `state` strictly, except that a LoRA model's frozen base is not in it; a mismatch
    is one line naming `source`."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape mismatch, e.g. config.json's n_embd was changed
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line),
                      str(exc).splitlines()[0])
        raise GPT2QAError(f"{source}: weights do not match {source.parent / 'config.json'}: "
                          f"{detail}") from None
    missing = [k for k in missing if k not in frozen_keys(model)]
    if missing or unexpected:
        raise GPT2QAError(f"{source}: weights do not match {QA_CONFIG_NAME} "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def save_checkpoint(output_dir: str | os.PathLike[str], step: int, model: QAModel, tokenizer: Any,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    trainer_state: dict[str, Any], keep: int = 2,
                    weights: dict[str, torch.Tensor] | None = None,
                    optimizer_state: dict[str, Any] | None = None) -> Path:
    """Write checkpoints/step-NNNNNNN atomically, then drop all but the newest `keep`.
    `weights` / `optimizer_state` replace the model's and optimizer's own (sharded runs)."""
    root = Path(output_dir) / "checkpoints"
    final = root / f"{CHECKPOINT_PREFIX}{step:07d}"
    with atomic_dir(final) as tmp:
        write_model_files(tmp, model, tokenizer, weights=weights)
        torch.save(optimizer.state_dict() if optimizer_state is None else optimizer_state,
                   tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / STATE_NAME).write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are never listed)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir()
             if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


@dataclass
class CheckpointData:
    """Everything a checkpoint holds, read fully into memory (so it is known to be whole)."""

    path: Path
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    state: dict[str, Any]


def read_checkpoint(checkpoint: Path) -> CheckpointData:
    """Read and check one checkpoint; GPT2QAError names the first file that is not whole."""
    def read(name: str, loader: Callable[[Path], Any]) -> Any:
        path = checkpoint / name
        if not path.is_file():
            raise GPT2QAError(f"{path}: missing")
        try:
            return loader(path)
        except Exception as exc:  # truncated, corrupt, or a pickle that is not plain tensors
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise GPT2QAError(f"{path}: unreadable ({first})") from None

    state = read(STATE_NAME, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise GPT2QAError(f"{checkpoint / STATE_NAME}: no step recorded")
    try:
        TrainState.from_json(state)  # types and ranges: a bad one is skipped like a torn one
    except GPT2QAError as exc:
        raise GPT2QAError(f"{checkpoint / STATE_NAME}: {exc}") from None
    named = checkpoint.name[len(CHECKPOINT_PREFIX):]
    if named.isdigit() and state["step"] != int(named):
        raise GPT2QAError(f"{checkpoint / STATE_NAME}: step {state['step']} is not the "
                          f"checkpoint's own ({int(named)})")
    optimizer = read("optimizer.pt", lambda p: torch.load(p, weights_only=True))
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list)):
        raise GPT2QAError(f"{checkpoint / 'optimizer.pt'}: not an optimizer state "
                          f"(expected a dict with state and param_groups, got "
                          f"{type(optimizer).__name__})")
    scheduler = read("scheduler.pt", lambda p: torch.load(p, weights_only=True))
    if not isinstance(scheduler, dict):
        raise GPT2QAError(f"{checkpoint / 'scheduler.pt'}: not a scheduler state (expected a "
                          f"dict, got {type(scheduler).__name__})")
    return CheckpointData(
        path=checkpoint, weights=read(WEIGHTS_NAME, lambda p: load_file(str(p))),
        optimizer=optimizer, scheduler=scheduler, state=state)


def newest_intact_checkpoint(output_dir: str | os.PathLike[str],
                             warn: Callable[[str], None] | None = None) -> CheckpointData | None:
    """The newest checkpoint that reads back whole; each skipped one gets one warning line."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    for checkpoint in reversed(list_checkpoints(output_dir)):
        try:
            return read_checkpoint(checkpoint)
        except GPT2QAError as exc:
            warn(f"warning: skipping checkpoint {checkpoint.name}: {exc}")
    return None


def remove_stale_temporaries(output_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete what an `atomic_dir` killed mid-write left behind (`.NAME.tmp-*`, `.NAME.old-*`).
    Only those names, which gpt2qa alone makes, are touched."""
    removed = []
    out = Path(output_dir)
    for parent in (out, out / "checkpoints"):
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if path.is_dir() and path.name.startswith(".") and (
                    ".tmp-" in path.name or ".old-" in path.name):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def merge_model_dir(adapter_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    task: Task | None = None, card: CardFacts | None = None) -> Path:
    """Fold a LoRA directory's adapters (and token rows) into the base: a standalone model dir
    (with the adapter directory's examples.json, when it has one that reads as JSON, and the
    model card `card` gives, now of a whole model)."""
    model, tokenizer, _ = load_model(adapter_dir, task=task)
    if not is_lora(model):
        raise GPT2QAError(f"{adapter_dir}: not a LoRA adapter directory")
    model.transformer = model.transformer.merge_and_unload()
    examples = Path(adapter_dir) / EXAMPLES_NAME
    try:
        kept = read_json_object(examples) if examples.is_file() else None
    except GPT2QAError:
        kept = None  # it only fills the page's form; `read_examples` warns where it is read
    return save_model(model, tokenizer, out_dir, examples=kept, card=card)
