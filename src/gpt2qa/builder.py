"""A model to train: a fresh QA model (backbone + span head + the task's heads) around a
pretrained or saved random backbone, or a gpt2qa model directory to continue from; then
gradient checkpointing and LoRA (`lora.prepare_for_training`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt2qa.checkpoint import load_model
from gpt2qa.config import QA_CONFIG_NAME, TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import prepare_tokenizer
from gpt2qa.lora import prepare_for_training
from gpt2qa.model import QAModel, check_fits, load_backbone
from gpt2qa.task import Task
from gpt2qa.tokenizer import load_tokenizer


def build_model(config: TrainConfig, task: Task) -> tuple[QAModel, Any]:
    """The model `gpt2qa train` starts from, and its tokenizer (special tokens registered)."""
    qa = config.qa_config(task.name)
    if (Path(config.model) / QA_CONFIG_NAME).is_file():
        model, tokenizer, _ = load_model(config.model, task=task)
        saved = model.config
        if (saved.task, saved.head, saved.null_position) != (qa.task, qa.head, qa.null_position):
            raise GPT2QAError(f"{config.model}: saved with task={saved.task}, head={saved.head}, "
                              f"null_position={saved.null_position}; the run asks for "
                              f"task={qa.task}, head={qa.head}, null_position={qa.null_position}")
        check_fits(model.transformer, qa, len(tokenizer))
        model.config = qa
        model.train()
        return prepare_for_training(model, config, prepare_tokenizer(tokenizer)), tokenizer
    tokenizer = load_tokenizer(config.model)
    special = prepare_tokenizer(tokenizer)
    backbone = load_backbone(config.model)
    backbone.resize_token_embeddings(len(tokenizer))
    check_fits(backbone, qa, len(tokenizer))
    model = QAModel(backbone, qa, task.heads)
    return prepare_for_training(model, config, special), tokenizer
