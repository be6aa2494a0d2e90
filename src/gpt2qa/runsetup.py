"""A training run's setup: everything `train.fit` needs before its first step.

setup: check the launcher and the folder, find the checkpoint to resume from, read the task's
data, build the model (`builder`), cut the windows, resolve the schedule, prepare the
optimizer for one process or many, and open the run directory. Nothing is written before
everything has loaded, so a failed start leaves no folder.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from gpt2qa.builder import build_model
from gpt2qa.card_facts import RunFacts, run_facts
from gpt2qa.checkpoint import (
    WEIGHTS_NAME,
    CheckpointData,
    apply_weights,
    newest_intact_checkpoint,
    remove_stale_temporaries,
)
from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature, SpecialIds, prepare_tokenizer
from gpt2qa.io import check_writable, write_json_atomic, writing
from gpt2qa.launch import check_joined, check_launcher_precision, process_group_on_cpu
from gpt2qa.lora import parameter_counts
from gpt2qa.model import QAModel
from gpt2qa.nesting import flatten
from gpt2qa.quantize import check_cpu_bf16
from gpt2qa.rundir import RunLog, check_run_dir
from gpt2qa.runtime import autocast_context
from gpt2qa.schedule import (
    Schedule,
    fused_adamw_for,
    linear_warmup_decay,
    optimizer_for,
    resolve_schedule,
    seed_everything,
)
from gpt2qa.sharding import load_full_optimizer_state, shard_model
from gpt2qa.task import Task
from gpt2qa.tracking import hyperparameters
from gpt2qa.tracking import requested as requested_trackers
from gpt2qa.tracking import start as start_tracking


def load_training_data(config: TrainConfig, task: Task) -> tuple[Any, Any | None]:
    """The task's datasets from local files, or from the hub (`--dataset`)."""
    if config.dataset is not None:
        return task.hub(config.dataset, config.misaligned, config.reading)
    assert config.train_file is not None
    train = task.read(config.train_file, config.misaligned, reading=config.reading)
    evaluation = (task.read(config.eval_file, config.misaligned, reading=config.reading)
                  if config.eval_file else None)
    return train, evaluation


def _limit(dataset: Any, n: int) -> Any:
    """The dataset with only its first `n` examples (all when n is 0)."""
    return dataclasses.replace(dataset, examples=dataset.examples[:n]) if n > 0 else dataset


def _warn(message: str) -> None:
    print(f"gpt2qa train: {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """Everything `setup` builds and `fit` / `evaluate_and_select` use."""

    config: TrainConfig
    task: Task
    out: Path
    accelerator: Any
    model: torch.nn.Module
    """What the optimizer steps: the QA model, wrapped for several processes."""
    raw_model: QAModel
    tokenizer: Any
    special: SpecialIds
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    train_features: list[Feature]
    eval_data: Any
    """The task's evaluation dataset (limited to max_eval_examples), or None."""
    eval_features: list[Feature]
    schedule: Schedule
    log: RunLog | None
    resume_state: dict[str, Any] | None = None
    """The trainer state of the checkpoint this run resumes from (its tensors are loaded)."""
    lengths: list[int] = field(default_factory=list)
    card: RunFacts | None = None
    """What the model card says of the run (the main process only)."""

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)


def _start(config: TrainConfig) -> tuple[Any, CheckpointData | None]:
    """The process group (Accelerate), the checks that need it, and the checkpoint to resume
    from (None: a fresh run)."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

    check_launcher_precision(config.precision)
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        # On CPU Accelerate quietly runs DDP instead; on GPUs the sharded weights would reach
        # our evaluation and checkpoint code, which expects whole ones. Say so, do not guess.
        raise GPT2QAError("Accelerate's FSDP config is not used by gpt2qa: launch without it "
                          "and pass --fsdp (`gpt2qa launch -n N train ... --fsdp`)")
    seed_everything(config.seed)
    out = Path(config.output_dir)
    trackers = requested_trackers(config.report_to, config.tensorboard)  # a missing extra: now
    accelerator = Accelerator(
        mixed_precision="no", cpu=process_group_on_cpu(),
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=config.dist_timeout))],
        log_with=list(trackers) or None,
        project_config=ProjectConfiguration(project_dir=str(out),
                                            logging_dir=str(out / "tensorboard")))
    check_joined(accelerator.num_processes)
    if accelerator.device.type == "cpu" and config.precision == "bf16":
        check_cpu_bf16()  # emulated bf16 would be slower than fp32: one line instead
    autocast_context(accelerator.device, config.precision)  # refuses an unsupported precision
    check_run_dir(out, config.resume)
    check_writable(out, "--output-dir")  # a read-only location: one line before any work
    resume_from = None
    if config.resume:
        resume_from = newest_intact_checkpoint(out, warn=_warn if accelerator.is_main_process
                                               else lambda _line: None)
        if resume_from is None and accelerator.is_main_process:
            _warn(f"--resume: no usable checkpoint under {out / 'checkpoints'}; "
                  "starting from scratch in that folder")
    accelerator.wait_for_everyone()  # every process has looked before the main one writes
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return accelerator, resume_from


def _features(config: TrainConfig, task: Task, datasets: tuple[Any, Any | None], qa: Any,
              tokenizer: Any, special: SpecialIds
              ) -> tuple[list[Feature], Any, list[Feature], dict[str, Any]]:
    """Training features, the evaluation dataset and its features, and what the task checked
    of the training windows (for the setup record)."""
    train_data, eval_data = datasets
    train_data = _limit(train_data, config.max_train_examples)
    source = str(config.train_file or config.dataset)
    train_features = task.features(train_data.examples, tokenizer, qa.features, special)
    if not train_features:
        raise GPT2QAError(f"{source}: no training examples")
    checked = task.check_training(train_data, train_features, source, qa.features)
    eval_data = _limit(eval_data, config.max_eval_examples) if eval_data else None
    if eval_data is not None and not eval_data.examples:
        eval_data = None
    eval_features = (task.features(eval_data.examples, tokenizer, qa.features, special)
                     if eval_data is not None else [])
    return train_features, eval_data, eval_features, checked


def _optimize(config: TrainConfig, model: QAModel, accelerator: Any, schedule: Schedule,
              resume_from: CheckpointData | None) -> tuple[torch.nn.Module, Any, Any]:
    """(what the optimizer steps, optimizer, scheduler), restored from `resume_from`."""
    def restore(action: Callable[[], object]) -> None:
        try:
            action()
        except (RuntimeError, ValueError, KeyError) as exc:
            assert resume_from is not None
            raise GPT2QAError(f"{resume_from.path}: does not fit this run's model or settings "
                              f"({str(exc).splitlines()[0][:160]})") from None

    if resume_from is not None:
        apply_weights(model, resume_from.weights, resume_from.path / WEIGHTS_NAME)
    if config.fsdp:
        # Sharded in place (the module keeps its class and attributes); Accelerate only
        # provides the process group, so it does not wrap this model again.
        shard_model(model.to(accelerator.device), model.transformer)
    optimizer = optimizer_for(model, config, fused=fused_adamw_for(accelerator.device)
                              and not config.fsdp)
    if config.compile:
        # In place: parameter names, checkpoints and the saved model stay as without compile.
        model.compile(dynamic=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: linear_warmup_decay(s, schedule.warmup_steps, schedule.total_steps))
    if config.fsdp:
        wrapped: torch.nn.Module = model
        if resume_from is not None:
            restore(lambda: load_full_optimizer_state(model, optimizer, resume_from.optimizer))
    else:
        wrapped, optimizer = accelerator.prepare(model, optimizer)
        if resume_from is not None:
            restore(lambda: optimizer.load_state_dict(resume_from.optimizer))
    if resume_from is not None:
        restore(lambda: scheduler.load_state_dict(resume_from.scheduler))
    return wrapped, optimizer, scheduler


def _open_log(config: TrainConfig, task: Task, model: QAModel, schedule: Schedule,
              checked: dict[str, Any], resume_from: CheckpointData | None,
              accelerator: Any) -> RunLog:
    """The main process's run directory: the experiment trackers (`tracking`, given the
    settings as hyperparameters), then train_config.json, log.jsonl and its setup record.
    A tracker that cannot start removes the folder this start made, as any failed start."""
    out = Path(config.output_dir)
    created = not out.exists()
    with writing(out, "--output-dir"):
        out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    settings = {**flatten(config), "task": task.name}
    resume_step = resume_from.state["step"] if resume_from else None
    counts = parameter_counts(model)
    record = {"event": "setup", "step": 0, "task": task.name, **dataclasses.asdict(schedule),
              **checked, **counts, "lora_r": config.lora_r,
              "gradient_checkpointing": config.gradient_checkpointing}
    try:
        tracking = start_tracking(accelerator, out, hyperparameters(settings, record),
                                  resume_step, _warn)
    except GPT2QAError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    write_json_atomic(out / "train_config.json",
                      {**settings, "schedule": dataclasses.asdict(schedule)})
    log = RunLog(out, resume_step)
    log.tracking = tracking
    if tracking is not None and resume_step is not None:
        tracking.catch_up(log.records())
    if resume_from is None:
        log.write(record)
    if config.report_to.strip() == "all" and not tracking:
        _warn("--report-to all: none of tensorboard, wandb, mlflow is installed (extras "
              "gpt2qa[tensorboard], gpt2qa[wandb], gpt2qa[mlflow]); only log.jsonl is written")
    trackers = f"; reporting to {', '.join(tracking.names)}" if tracking else ""
    print(f"gpt2qa train: {task.name}; {schedule.describe()}; "
          f"{counts['trainable_parameters']:,} of {counts['total_parameters']:,} parameters "
          f"trainable ({counts['trainable_percent']}%){trackers}", file=sys.stderr, flush=True)
    return log


def setup(config: TrainConfig, task: Task, synthetic: bool = False) -> Run:
    """Check the folder, load data and model, resolve the schedule, prepare for processes.
    Nothing is written before everything has loaded, so a failed start leaves no folder.
    `synthetic`: the data is gpt2qa's synthetic data (the demos), which the model card says."""
    accelerator, resume_from = _start(config)
    datasets = load_training_data(config, task)
    model, tokenizer = build_model(config, task)
    special = prepare_tokenizer(tokenizer, answer=config.qa.head == "generative")
    train_features, eval_data, eval_features, checked = _features(
        config, task, datasets, model.config, tokenizer, special)
    schedule = resolve_schedule(len(train_features), config, accelerator.num_processes)
    wrapped, optimizer, scheduler = _optimize(config, model, accelerator, schedule, resume_from)
    log = (_open_log(config, task, model, schedule, checked, resume_from, accelerator)
           if accelerator.is_main_process else None)
    card = (run_facts(config, task, schedule, checked, synthetic)
            if accelerator.is_main_process else None)
    return Run(config=config, task=task, out=Path(config.output_dir), accelerator=accelerator,
               model=wrapped, raw_model=accelerator.unwrap_model(wrapped), tokenizer=tokenizer,
               special=special, optimizer=optimizer, scheduler=scheduler,
               scaler=torch.amp.GradScaler("cuda", enabled=config.precision == "fp16"),
               train_features=train_features, eval_data=eval_data,
               eval_features=eval_features, schedule=schedule, log=log,
               resume_state=resume_from.state if resume_from is not None else None,
               lengths=[len(f.input_ids) for f in train_features], card=card)
