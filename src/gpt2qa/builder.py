"""A model to train: a fresh QA model (backbone + span head + the task's heads) around a
pretrained or saved random backbone, or a gpt2qa model directory to continue from; then
gradient checkpointing and LoRA (`lora.prepare_for_training`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gpt2qa.checkpoint import load_model
from gpt2qa.config import QA_CONFIG_NAME, QAConfig, TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import prepare_tokenizer
from gpt2qa.lora import prepare_for_training
from gpt2qa.model import QAModel, check_config_json, check_fits, load_backbone
from gpt2qa.task import Task
from gpt2qa.tokenizer import load_tokenizer


def build_model(config: TrainConfig, task: Task) -> tuple[QAModel, Any]:
    """The model `gpt2qa train` starts from, and its tokenizer (special tokens registered)."""
    qa = replace(config.qa, task=task.name)
    if (Path(config.model) / QA_CONFIG_NAME).is_file():
        model, tokenizer, _ = load_model(config.model, task=task)
        saved = model.config
        def kind(c: QAConfig) -> str:
            return f"task={c.task}, head={c.head}, null_position={c.features.null_position}"

        if kind(saved) != kind(qa):
            raise GPT2QAError(f"{config.model}: saved with {kind(saved)}; the run asks for "
                              f"{kind(qa)}")
        check_fits(model.transformer, qa, len(tokenizer))
        model.config = qa
        model.train()
        special = prepare_tokenizer(tokenizer, answer=qa.head == "generative")
        return prepare_for_training(model, config, special), tokenizer
    check_config_json(config.model)  # before the tokenizer, which reads config.json too
    tokenizer = load_tokenizer(config.model)
    special = prepare_tokenizer(tokenizer, answer=qa.head == "generative")
    backbone, lm_head = (load_backbone(config.model, with_lm_head=True)
                         if qa.head == "generative" else (load_backbone(config.model), None))
    backbone.resize_token_embeddings(len(tokenizer))
    check_fits(backbone, qa, len(tokenizer))
    model = QAModel(backbone, qa, task.heads, special)
    if model.lm_head is not None and lm_head is not None:
        # The pretrained LM head's rows; the rows of the tokens gpt2qa added stay their
        # input embeddings' (QAModel starts an untied head as a copy of them).
        rows = min(lm_head.shape[0], model.lm_head.weight.shape[0])
        with torch.no_grad():
            model.lm_head.weight[:rows].copy_(lm_head[:rows])
    return prepare_for_training(model, config, special), tokenizer
