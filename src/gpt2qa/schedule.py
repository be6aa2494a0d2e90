"""The training schedule as pure functions of the config: one global batch order per epoch,
each process's share of a batch, the learning-rate shape, per-step seeds, and the loop state a
checkpoint records. Every process computes the same numbers, so every process runs the same
steps (see train.py's docstring for the worked example)."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gpt2qa.batching import length_grouped_batches
from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError


@dataclass
class TrainState:
    """What a checkpoint records of the loop (trainer_state.json)."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_score: list[float] | None = None
    """The task's model-selection key of the best evaluation (compared in order)."""
    best_step: int | None = None
    examples_seen: int = 0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainState:
        """The loop state a checkpoint recorded; one GPT2QAError line naming the first field
        whose type or range is wrong (a damaged file must not steer training)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in obj.items() if k in names}
        best = values.get("best_score")
        if _number(best):  # written before the task key: one float
            values["best_score"] = best = [best]
        if best is not None and not (isinstance(best, list) and all(_number(v) for v in best)):
            raise GPT2QAError(f"best_score must be a list of finite numbers or null, "
                              f"got {_shown(best)}")
        for name in ("step", "epoch", "step_in_epoch", "examples_seen"):
            value = values.get(name, 0)
            if not _whole(value) or value < 0:
                raise GPT2QAError(f"{name} must be a whole number >= 0, got {_shown(value)}")
        step = values.get("step", 0)
        # Every epoch and every step of the current one took at least one step.
        for name in ("epoch", "step_in_epoch"):
            if values.get(name, 0) > step:
                raise GPT2QAError(f"{name} {values[name]} is more than step {step}")
        best_step = values.get("best_step")
        if best_step is not None and not (_whole(best_step) and 0 <= best_step <= step):
            raise GPT2QAError(f"best_step must be null or a step in [0, {step}], "
                              f"got {_shown(best_step)}")
        return cls(**values)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _shown(value: Any) -> str:
    """A value for a one-line message: short JSON scalars as they are, else their type."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a very large number"
    if isinstance(value, (list, dict)) and len(value) > 4:
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 40 else type(value).__name__


@dataclass(frozen=True)
class Schedule:
    """The run's numbers, resolved once from the config and the number of processes."""

    processes: int
    batch_size: int
    """Features per optimizer step, over all processes (the effective batch)."""
    grad_accum: int
    per_device_batch_size: int
    """Features per micro-batch on one process."""
    train_features: int
    steps_per_epoch: int
    repeated_per_epoch: int
    """Features repeated to fill the epoch's last global batch."""
    total_steps: int
    warmup_steps: int
    eval_every: int
    save_every: int

    def describe(self) -> str:
        return (f"{self.processes} process(es) x {self.grad_accum} micro-batch(es) of "
                f"{self.per_device_batch_size} = {self.batch_size} features per step; "
                f"{self.train_features} training features, {self.steps_per_epoch} steps per epoch "
                f"(the last batch repeats {self.repeated_per_epoch}); {self.total_steps} steps, "
                f"warm-up {self.warmup_steps}, evaluate every {self.eval_every}, "
                f"checkpoint every {self.save_every}")


def resolve_schedule(n_features: int, config: TrainConfig, processes: int) -> Schedule:
    """Per-device batch, steps, warm-up and boundaries, the same on every process.

    With 116 features, batch_size 8, grad_accum 2 on 2 processes: per-device batch 2,
    ceil(116 / 8) = 15 steps per epoch, 15 * 8 - 116 = 4 features repeated.
    """
    shards = processes * config.grad_accum
    if config.batch_size % shards:
        raise GPT2QAError(
            f"batch_size {config.batch_size} does not split into {processes} process(es) x "
            f"{config.grad_accum} micro-batch(es); pick a batch_size that is a multiple of "
            f"{shards}, or another --grad-accum")
    steps_per_epoch = math.ceil(n_features / config.batch_size)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    eval_every = config.eval_every or steps_per_epoch
    return Schedule(
        processes=processes, batch_size=config.batch_size, grad_accum=config.grad_accum,
        per_device_batch_size=config.batch_size // shards, train_features=n_features,
        steps_per_epoch=steps_per_epoch,
        repeated_per_epoch=steps_per_epoch * config.batch_size - n_features,
        total_steps=total, warmup_steps=int(config.warmup_ratio * total), eval_every=eval_every,
        save_every=config.save_every or eval_every)


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier: 0 -> 1 over `warmup_steps`, then linearly down to 0 at `total_steps`.

    With warmup 2 and total 10: steps 0, 1, 2, 6, 10 -> 0.0, 0.5, 1.0, 0.5, 0.0.
    """
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed for one process's optimizer step (dropout masks)."""
    return (seed * 1_000_003 + step * 8191 + rank) % (2 ** 63)


def epoch_batches(lengths: Sequence[int], config: TrainConfig, epoch: int) -> list[list[int]]:
    """One epoch's global batches: a pure function of (seed, epoch), each exactly batch_size
    features; the last is filled up with features from the start of the epoch's order."""
    gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    if config.group_by_length:
        batches = length_grouped_batches(lengths, config.batch_size, gen)
    else:
        perm = torch.randperm(len(lengths), generator=gen).tolist()
        batches = [perm[i: i + config.batch_size] for i in range(0, len(perm), config.batch_size)]
    order = [i for b in batches for i in b]
    for k, batch in enumerate(batches):
        if len(batch) < config.batch_size:
            fill = [order[j % len(order)] for j in range(config.batch_size - len(batch))]
            batches[k] = batch + fill
    return batches


def micro_batches(batch: Sequence[int], rank: int, processes: int,
                  grad_accum: int) -> list[list[int]]:
    """This process's share of one global batch: `grad_accum` contiguous micro-batches.

    Batch [0..7], 2 processes, grad_accum 2: rank 0 gets [0, 1], [2, 3]; rank 1 [4, 5], [6, 7].
    """
    size = len(batch) // (processes * grad_accum)
    first = rank * grad_accum
    return [list(batch[(first + k) * size: (first + k + 1) * size]) for k in range(grad_accum)]


def fused_adamw_for(device: torch.device) -> bool:
    """Fused AdamW (one kernel per step instead of ~10 foreach passes over the weights) where
    torch has it: CUDA and, since torch 2.4, CPU."""
    return device.type in ("cuda", "cpu")


def optimizer_for(model: torch.nn.Module, config: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and norm weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "ln" in name or "norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, fused=fused or None)
