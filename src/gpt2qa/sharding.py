"""Fully sharded data parallel (`train --fsdp`): torch's FSDP2 (`fully_shard`), one unit per
transformer block plus one for the rest (embeddings, final norm, the QA head).

Weights, gradients and optimizer state are split over the processes, so a model that does not
fit one device trains on several. Everything gpt2qa writes stays whole: the model directory
and checkpoints hold full (gathered) tensors, so `predict` loads them on one device and a run
resumes on any number of processes. Works over NCCL and, for the tests, over gloo on CPU.

Sharded modules run collectives in every forward, so every process must make the same number
of forward calls: sharded evaluation pads the shorter shares with a repeated batch
(pipeline.run_model).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from gpt2qa.errors import GPT2QAError


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_model(model: nn.Module, backbone: nn.Module) -> nn.Module:
    """Shard `model` in place: each of the backbone's repeated blocks (transformers'
    `_no_split_modules`: GPT2Block, LlamaDecoderLayer, ...) is one unit, the rest the root."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    if not (dist.is_available() and dist.is_initialized()):
        raise GPT2QAError("--fsdp needs several processes: start them with "
                          "`gpt2qa launch -n N train ...`")
    names = set(getattr(backbone, "_no_split_modules", None) or ())
    blocks = [m for m in backbone.modules() if type(m).__name__ in names]
    if not blocks:
        raise GPT2QAError(f"--fsdp: cannot find the repeated blocks of {type(backbone).__name__}")
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every process must call this; the main one gets the whole state dict on the CPU."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                 cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Every process must call this; the main one gets the whole optimizer state (by name)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(
        full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                              state: dict[str, Any]) -> None:
    """Load a state saved by `full_optimizer_state` (every process passes the whole dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True))


@contextmanager
def _fsdp_no_sync(model: Any) -> Iterator[None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def no_sync(model: nn.Module, accelerator: Any, sync: bool) -> Any:
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on all but the last
    micro-batch of a step."""
    if sync:
        return nullcontext()
    if is_sharded(model):
        return _fsdp_no_sync(model)
    return accelerator.no_sync(model)
