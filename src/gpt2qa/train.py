"""Fine-tuning: setup -> fit -> evaluate_and_select, on one process or many (Accelerate).

A run directory holds:
  train_config.json        the TrainConfig used, plus the schedule resolved from it
  log.jsonl                one JSON object per line: a setup record, each logged step
                           ({"event": "train", ...}) and each evaluation ({"event": "eval", ...});
                           with --report-to, the train and eval records also go to TensorBoard
                           (tensorboard/), wandb (wandb/) or MLflow (`gpt2qa.tracking`)
  tracking.json            the wandb and mlflow run ids, so that --resume reports to the same runs
  checkpoints/step-N/      the newest checkpoints, for --resume
  model/                   the best model so far (by the task's selection key: SQuAD's tuned
                           F1, HotpotQA's joint F1), ready for `gpt2qa predict`, with a few
                           evaluation questions in examples.json (for `gpt2qa serve`'s page)
                           and its model card in README.md (gpt2qa.modelcard)
  metrics.json and the task's prediction files (SQuAD: predictions.json, na_probs.json,
  nbest.json; HotpotQA: predictions.json)   for the best evaluation
  learning_curve.png       loss and the task's evaluation scores (`Task.report`) by step

The task (`gpt2qa.task.Task`) supplies the data, windows, heads, decoding and metric; this
loop, its checkpoints and its processes are the same for every task.

One global schedule. `batch_size` is the effective batch: features per optimizer step over all
processes and accumulation steps. Each epoch is cut into global batches of exactly that size
(a pure function of seed and epoch); the last one is filled up by repeating features from the
start of the epoch's order, so every feature is used at least once per epoch and every process
runs the same number of steps. Each global batch is split into processes x grad_accum equal
micro-batches. Example: 116 features, batch_size 8, 2 processes, grad_accum 2: 15 steps per
epoch, the 15th batch holds the last 4 features plus 4 repeated ones, and each process runs two
micro-batches of 2 features per step.

Randomness (dropout) is reseeded from (seed, step, rank) at every step, so a killed and
resumed run ends with the same weights as an uninterrupted one, without saving RNG state.

With `--fsdp` the weights, gradients and optimizer state are sharded (sharding.py); what is
written stays whole. Only the main process writes files; the others wait at a barrier
(`dist_timeout`). Evaluation is sharded: each process runs the model on every world-th batch
of windows, the outputs are gathered, and the main process decodes, scores and saves.

`runsetup.setup` builds the `Run` (data, model, schedule, optimizer, run directory).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt2qa.batching import collate, pad_multiple
from gpt2qa.card_facts import CardFacts, EvalFacts
from gpt2qa.checkpoint import (
    examples_json,
    list_checkpoints,
    merge_model_dir,
    save_checkpoint,
    save_model,
)
from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature
from gpt2qa.inference import run_model
from gpt2qa.io import OutputError, free_space, write_json_atomic
from gpt2qa.model import QAModel
from gpt2qa.nesting import replace_flat
from gpt2qa.plots import curve_title, plot_learning_curve
from gpt2qa.runsetup import Run, setup
from gpt2qa.runtime import autocast_context, process_group
from gpt2qa.schedule import (
    TrainState,
    epoch_batches,
    micro_batches,
    step_seed,
)
from gpt2qa.sharding import (
    full_model_state,
    full_optimizer_state,
    is_sharded,
    no_sync,
)
from gpt2qa.task import Evaluation, Task


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    steps: int
    metrics: dict[str, Any] | None
    model_dir: Path
    main_process: bool = True
    """False in the other processes of a multi-process run (they write nothing)."""


def evaluate_model(model: QAModel, task: Task, dataset: Any, features: Sequence[Feature],
                   pad_id: int, batch_size: int, precision: str = "fp32",
                   sharded: bool = False, tokenizer: Any = None) -> Evaluation | None:
    """The task's evaluation of `model` on `dataset`: metrics, prediction files and what it
    tuned. `sharded`: every process must call this; each runs its share of the windows (see
    inference.run_model), and only the main process decodes and scores (the others get None).
    """
    outputs = run_model(model, features, pad_id, batch_size, precision=precision,
                        sharded=sharded, tokenizer=tokenizer)
    if sharded and process_group()[0] != 0:
        return None
    return task.evaluate(dataset, features, outputs, model.config)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
               scaler: torch.amp.GradScaler, accelerator: Any, features: Sequence[Feature],
               group: Sequence[Sequence[int]], pad_id: int, config: TrainConfig,
               pad_to_multiple_of: int = 1, heads: Sequence[Any] = ()) -> torch.Tensor:
    """One optimizer step over `group` (this process's micro-batches of feature indices).

    Returns the step's loss as a detached device tensor (no host sync). Gradients are synced
    across processes only on the last micro-batch. `heads`: the task heads, whose inputs
    join each batch.
    """
    total = torch.zeros((), device=accelerator.device)
    for k, idx in enumerate(group):
        batch = collate([features[i] for i in idx], pad_id, pad_to_multiple_of=pad_to_multiple_of,
                        heads=heads)
        batch = {key: v.to(accelerator.device, non_blocking=True) for key, v in batch.items()}
        with no_sync(model, accelerator, sync=k == len(group) - 1), \
                autocast_context(accelerator.device, config.precision):
            loss = model(**batch).loss / len(group)
        scaler.scale(loss).backward()
        total += loss.detach()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def evaluate_and_select(run: Run, state: TrainState, step: int) -> None:
    """Every process runs its share of the evaluation; the main one scores it and, when it is
    the best so far, saves the model (with what the task tuned) and the prediction files."""
    if run.eval_data is None:
        return
    config = run.config
    result = evaluate_model(run.raw_model, run.task, run.eval_data, run.eval_features,
                            run.special.pad, config.eval_batch_size, config.precision,
                            sharded=True, tokenizer=run.tokenizer)
    improved = False
    if result is not None and run.log is not None:
        run.log.write({"event": "eval", "step": step, **result.metrics})
        score = list(run.task.select(result.metrics))
        improved = state.best_score is None or score > state.best_score
    if not is_sharded(run.raw_model):
        if improved and result is not None:
            _save_best(run, state, step, result, None)
        return
    # Gathering a sharded model's weights takes every process: they must learn the verdict.
    import torch.distributed as dist

    verdict = [improved]
    dist.broadcast_object_list(verdict, src=0)
    if verdict[0]:
        weights = full_model_state(run.raw_model)
        if result is not None:
            _save_best(run, state, step, result, weights)


def _save_best(run: Run, state: TrainState, step: int, result: Evaluation,
               weights: dict[str, torch.Tensor] | None) -> None:
    state.best_score, state.best_step = list(run.task.select(result.metrics)), step
    save_model(run.raw_model, run.tokenizer, run.out / "model",
               qa=replace_flat(run.raw_model.config, **result.tuned), weights=weights,
               examples=examples_json(run.task, run.eval_data.examples, eval_source(run.config)),
               card=model_card(run, {**result.metrics, "step": step}))
    for name, obj in result.files.items():
        write_json_atomic(run.out / f"{name}.json", obj)
    write_json_atomic(run.out / "metrics.json", {**result.metrics, "step": step})


def model_card(run: Run, metrics: dict[str, Any] | None) -> CardFacts | None:
    """The model card's facts for a model saved now; `metrics`: the evaluation it won, with
    its step (metrics.json's content), or None when the run evaluates nothing."""
    if run.card is None:
        return None
    return CardFacts(run.card, None if metrics is None else EvalFacts(metrics, metrics["step"]))


def eval_source(config: TrainConfig) -> str:
    """What examples.json says the evaluation data was: the file's name, or the hub data set."""
    if config.eval_file:
        return Path(config.eval_file).name
    return f"{config.dataset} (validation split)" if config.dataset else ""


def _save_checkpoint(run: Run, state: TrainState, step: int) -> None:
    """Every process calls this; the main one writes (whole tensors, also when sharded)."""
    weights = optimizer_state = None
    if is_sharded(run.raw_model):
        weights = full_model_state(run.raw_model)
        optimizer_state = full_optimizer_state(run.raw_model, run.optimizer)
    if run.main:
        save_checkpoint(run.out, step, run.raw_model, run.tokenizer, run.optimizer,
                        run.scheduler, dataclasses.asdict(state), keep=run.config.keep_checkpoints,
                        weights=weights, optimizer_state=optimizer_state)


def _all_processes_mean(value: torch.Tensor, processes: int) -> float:
    if processes > 1:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value)
        value /= processes
    return float(value.item())


BAR_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps "
              "[{elapsed} elapsed, {remaining} left{postfix}]")
"""The training bar: steps done and the time left, said in words."""


def progress_bar(total: int, initial: int, show: bool, file: Any = None) -> Any:
    """The optimizer steps' progress bar, on stderr (or `file`), with the time left at the
    run's average pace so far (evaluations included, so the time left counts them too).
    Hidden unless `show`, and when the stream is not a terminal: a log file or a pipe would
    get a line per update."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=None if show else True, desc="train",
                dynamic_ncols=True, bar_format=BAR_FORMAT, smoothing=0, file=file)


def fit(run: Run, state: TrainState) -> TrainState:
    """The training loop, from `state` to the schedule's last step."""
    config, schedule, acc = run.config, run.schedule, run.accelerator
    multiple = pad_multiple(acc.device)
    bar = progress_bar(schedule.total_steps, state.step, config.progress and run.main)
    run.model.train()
    running = torch.zeros((), device=acc.device)
    running_n, window_start, window_steps = 0, time.perf_counter(), 0
    try:
        while state.step < schedule.total_steps:
            batches = epoch_batches(run.lengths, config, state.epoch)
            if state.step_in_epoch >= len(batches):  # resumed with a larger --batch-size
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
                continue
            epoch = state.epoch
            while state.epoch == epoch and state.step < schedule.total_steps:
                group = micro_batches(batches[state.step_in_epoch], run.rank, schedule.processes,
                                      schedule.grad_accum)
                torch.manual_seed(step_seed(config.seed, state.step, run.rank))
                running += train_step(run.model, run.optimizer, run.scheduler, run.scaler, acc,
                                      run.train_features, group, run.special.pad, config,
                                      multiple, list(run.raw_model.task_heads.values()))
                running_n += 1
                window_steps += 1
                state.step += 1
                state.step_in_epoch += 1
                state.examples_seen += schedule.batch_size
                step = state.step
                bar.update(1)
                boundary_eval = step % schedule.eval_every == 0 or step == schedule.total_steps
                boundary_save = step % schedule.save_every == 0 or step == schedule.total_steps
                if step % config.log_every == 0 or boundary_eval or boundary_save:
                    mean_loss = _all_processes_mean(running / running_n, schedule.processes)
                    if not math.isfinite(mean_loss):
                        last = list_checkpoints(run.out)
                        raise GPT2QAError(
                            f"loss became {mean_loss} at step {step}; stopped without saving. "
                            f"Last good checkpoint: {last[-1] if last else 'none'}. "
                            "Try a lower --lr or --precision fp32.")
                    elapsed = time.perf_counter() - window_start
                    rate = window_steps * schedule.batch_size / max(elapsed, 1e-9)
                    lr = run.scheduler.get_last_lr()[0]
                    if run.log is not None:
                        run.log.write({"event": "train", "step": step, "epoch": state.epoch,
                                       "loss": mean_loss, "lr": lr, "examples_per_s": rate})
                    bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}", ex_s=f"{rate:.1f}")
                    running = torch.zeros((), device=acc.device)
                    running_n, window_start, window_steps = 0, time.perf_counter(), 0
                if state.step_in_epoch >= len(batches):
                    state.epoch += 1
                    state.step_in_epoch = 0
                if boundary_eval:
                    evaluate_and_select(run, state, step)
                if boundary_save:
                    _save_checkpoint(run, state, step)
                if boundary_eval or boundary_save:
                    acc.wait_for_everyone()
    except OutputError as exc:
        raise _stopped(run, exc, state.step) from None
    except torch.OutOfMemoryError:
        last = list_checkpoints(run.out)
        raise GPT2QAError(
            f"out of memory at step {state.step} ({schedule.per_device_batch_size} features per "
            f"micro-batch, max_seq_length {config.qa.features.max_seq_length}); raise --grad-accum to keep "
            f"the effective batch. Last good checkpoint: {last[-1] if last else 'none'}"
        ) from None
    finally:
        bar.close()
    return state


def _stopped(run: Run, exc: OutputError, step: int) -> GPT2QAError:
    """A write that failed mid-run (full disk, read-only folder): one line naming what could
    not be written, the last good checkpoint and the free space. Every checkpoint is written
    under a temporary name first, so the ones listed are whole and `--resume` continues
    from the last one bit for bit."""
    last = list_checkpoints(run.out)
    space = "" if "free on that disk" in str(exc) else f"; {free_space(run.out)} under {run.out}"
    return GPT2QAError(f"{exc}; stopped at step {step}. Last good checkpoint: "
                       f"{last[-1] if last else 'none'}{space}. Make room (or fix the folder) "
                       "and rerun with --resume")


def train(config: TrainConfig, task: Task, synthetic: bool = False) -> TrainResult:
    """Run (or resume) one fine-tuning run of `task`; see the module docstring for what it
    writes. `gpt2qa.tasks.fine_tune` picks the task from the config and the data.
    `synthetic`: the data is gpt2qa's synthetic data (the demos); the model card says so."""
    run = setup(config, task, synthetic)
    state = (TrainState.from_json(run.resume_state) if run.resume_state is not None
             else TrainState())
    state = fit(run, state)
    metrics = None
    weights = full_model_state(run.raw_model) if (
        is_sharded(run.raw_model) and run.eval_data is None) else None
    if run.main:
        try:
            if run.eval_data is None:
                save_model(run.raw_model, run.tokenizer, run.out / "model", weights=weights,
                           card=model_card(run, None))
            elif (run.out / "metrics.json").exists():
                metrics = json.loads((run.out / "metrics.json").read_text(encoding="utf-8"))
            plot_learning_curve(run.out / "log.jsonl", run.out / "learning_curve.png",
                                run.task.report, curve_title(run.out, config.seed))
            if config.merge_lora:
                merge_model_dir(run.out / "model", run.out / "model-merged", task,
                                model_card(run, metrics))
        except OutputError as exc:
            raise _stopped(run, exc, state.step) from None
        if run.log is not None:
            run.log.close()  # the experiment trackers' runs end with the training
    run.accelerator.wait_for_everyone()
    return TrainResult(output_dir=run.out, steps=state.step, metrics=metrics,
                       model_dir=run.out / "model", main_process=run.main)

