"""All checkpoint and model-directory I/O, written atomically.

A model directory holds:
  config.json         the backbone's transformers config
  model.safetensors   every weight (`transformer.*`, `qa_outputs.*`, ...)
  tokenizer files     with gpt2qa's special tokens registered
  gpt2qa.json         QAConfig: head, layout, null position, lengths, threshold
  adapter_config.json only in a LoRA directory, whose model.safetensors then holds only what
                      trained; the base is reloaded from the path this file names (gpt2qa.lora)

A training checkpoint (`checkpoints/step-0000100/`) is a model directory plus optimizer.pt,
scheduler.pt, rng.pt and trainer_state.json. Every directory is built under a temporary name
and renamed into place, so a run killed at any moment leaves only complete checkpoints.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt2qa.config import QA_CONFIG_NAME, QAConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import SpecialIds, prepare_tokenizer
from gpt2qa.lora import (
    build_adapter_model,
    frozen_keys,
    is_adapter_dir,
    weights_to_save,
    write_adapter_config,
)
from gpt2qa.model import QAModel
from gpt2qa.tokenizer import load_tokenizer

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "trainer_state.json"
CHECKPOINT_PREFIX = "step-"


@contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_model_files(directory: Path, model: QAModel, tokenizer: Any) -> None:
    """Write a model directory's files into an existing (temporary) directory."""
    from safetensors.torch import save_file

    backbone_config = model.transformer.config
    qa = model.config
    compatible = (qa.head == "linear" and qa.null_position == "first"
                  and qa.layout == "question-first"
                  and getattr(backbone_config, "model_type", "") == "gpt2")
    # Recorded so transformers' GPT2ForQuestionAnswering.from_pretrained(dir) just works.
    backbone_config.architectures = ["GPT2ForQuestionAnswering"] if compatible else None
    backbone_config.save_pretrained(directory)
    save_file(weights_to_save(model), str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    write_adapter_config(model, directory)
    tokenizer.save_pretrained(directory)
    (directory / QA_CONFIG_NAME).write_text(json.dumps(qa.to_json(), indent=2) + "\n",
                                            encoding="utf-8")


def save_model(model: QAModel, tokenizer: Any, out_dir: str | os.PathLike[str]) -> Path:
    """Save a model directory atomically (replacing any earlier one)."""
    with atomic_dir(out_dir) as tmp:
        write_model_files(tmp, model, tokenizer)
    return Path(out_dir)


def load_model(model_dir: str | os.PathLike[str], device: str | torch.device = "cpu",
               ) -> tuple[QAModel, Any, SpecialIds]:
    """Load a gpt2qa model directory: only the directory is needed, never the hub."""
    from transformers import AutoConfig, AutoModel

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise GPT2QAError(f"{model_dir}: no such model directory")
    qa = QAConfig.load(model_dir)
    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise GPT2QAError(f"{model_dir}: missing {WEIGHTS_NAME}")
    tokenizer = load_tokenizer(model_dir)
    special = prepare_tokenizer(tokenizer)
    if is_adapter_dir(model_dir):
        model = build_adapter_model(model_dir, qa, len(tokenizer))
    else:
        try:
            # fp32 whatever dtype config.json names (from_config would follow a saved bf16).
            backbone = AutoModel.from_config(AutoConfig.from_pretrained(model_dir),
                                             dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise GPT2QAError(f"{model_dir}/config.json: {str(exc).splitlines()[0]}") from None
        backbone.resize_token_embeddings(len(tokenizer))
        model = QAModel(backbone, qa)
    load_weights(model, weights)
    return model.to(device).eval(), tokenizer, special


def load_weights(model: QAModel, weights: Path) -> None:
    """Load a weights file strictly, except that a LoRA model's frozen base is not in it."""
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    missing = [k for k in missing if k not in frozen_keys(model)]
    if missing or unexpected:
        raise GPT2QAError(f"{weights}: weights do not match {QA_CONFIG_NAME} "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: str | os.PathLike[str], step: int, model: QAModel, tokenizer: Any,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    trainer_state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoints/step-NNNNNNN atomically, then drop all but the newest `keep`."""
    root = Path(output_dir) / "checkpoints"
    final = root / f"{CHECKPOINT_PREFIX}{step:07d}"
    with atomic_dir(final) as tmp:
        write_model_files(tmp, model, tokenizer)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
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


def load_checkpoint_state(checkpoint: Path, model: QAModel, optimizer: torch.optim.Optimizer,
                          scheduler: Any) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from `checkpoint`; return trainer state."""
    load_weights(model, checkpoint / WEIGHTS_NAME)
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(checkpoint / "rng.pt", weights_only=False))
    return json.loads((checkpoint / STATE_NAME).read_text(encoding="utf-8"))
