"""Fine-tuning: AdamW with linear warm-up and decay, evaluation, atomic checkpoints and resume.

A run directory holds:
  train_config.json        the TrainConfig used
  log.jsonl                one JSON object per logged step ({"event": "train", ...}) and per
                           evaluation ({"event": "eval", ...})
  checkpoints/step-N/      the newest checkpoints, for --resume
  model/                   the best model so far (by tuned F1), ready for `gpt2qa predict`
  predictions.json, na_probs.json, nbest.json, metrics.json   for the best evaluation
  learning_curve.png

Resuming restores weights, optimizer, scheduler, RNG state and the position in the epoch's
batch order (which is a pure function of seed and epoch), so a killed-and-resumed run ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt2qa.batching import collate, length_grouped_batches, pad_multiple
from gpt2qa.config import TrainConfig
from gpt2qa.data import SquadDataset, SquadExample
from gpt2qa.decode import predictions_to_json, threshold_from_na_prob, write_json_atomic
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import (
    Feature,
    convert_examples_to_features,
    prepare_tokenizer,
)
from gpt2qa.model import QAModel, check_fits
from gpt2qa.pipeline import autocast_context


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    steps: int
    metrics: dict[str, Any] | None
    model_dir: Path


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


def epoch_batches(lengths: Sequence[int], config: TrainConfig, epoch: int,
                  rank: int = 0, world: int = 1) -> list[list[int]]:
    """The batch order of one epoch: a pure function of (seed, epoch), then this rank's share."""
    gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    if config.group_by_length:
        batches = length_grouped_batches(lengths, config.batch_size, gen)
    else:
        perm = torch.randperm(len(lengths), generator=gen).tolist()
        batches = [perm[i: i + config.batch_size] for i in range(0, len(perm), config.batch_size)]
    return batches[rank::world]


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


def load_training_data(config: TrainConfig) -> tuple[SquadDataset, SquadDataset | None]:
    """Local files, or the hub's squad_v2 through the optional `datasets` extra."""
    from gpt2qa.data import load_squad

    if config.dataset is not None:
        from gpt2qa.hub_data import load_hub_dataset

        return load_hub_dataset(config.dataset, config.misaligned)
    assert config.train_file is not None
    train = load_squad(config.train_file, config.misaligned)
    evaluation = load_squad(config.eval_file, config.misaligned) if config.eval_file else None
    return train, evaluation


def load_backbone(name_or_dir: str) -> torch.nn.Module:
    """`AutoModel.from_pretrained`, with a one-line message when it cannot be had."""
    from transformers import AutoModel

    from gpt2qa.tokenizer import _load_failure

    try:
        return AutoModel.from_pretrained(name_or_dir, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise GPT2QAError(_load_failure(name_or_dir, "model", exc)) from None


def build_model(config: TrainConfig) -> tuple[QAModel, Any]:
    """A fresh QA model around a pretrained (or saved random) backbone, or a gpt2qa model."""
    from gpt2qa.checkpoint import load_model
    from gpt2qa.config import QA_CONFIG_NAME
    from gpt2qa.lora import prepare_for_training
    from gpt2qa.tokenizer import load_tokenizer

    qa = config.qa_config()
    if (Path(config.model) / QA_CONFIG_NAME).is_file():
        model, tokenizer, _ = load_model(config.model)
        if model.config.head != qa.head or model.config.null_position != qa.null_position:
            raise GPT2QAError(f"{config.model}: saved with head={model.config.head}, "
                              f"null_position={model.config.null_position}; the run asks for "
                              f"head={qa.head}, null_position={qa.null_position}")
        model.config = qa
        model.train()
        return prepare_for_training(model, config, prepare_tokenizer(tokenizer)), tokenizer
    tokenizer = load_tokenizer(config.model)
    prepare_tokenizer(tokenizer)
    backbone = load_backbone(config.model)
    backbone.resize_token_embeddings(len(tokenizer))
    check_fits(backbone, qa, len(tokenizer))
    model = QAModel(backbone, qa)
    return prepare_for_training(model, config, prepare_tokenizer(tokenizer)), tokenizer


def _limit(examples: tuple[SquadExample, ...], n: int) -> tuple[SquadExample, ...]:
    return examples[:n] if n > 0 else examples


class _Log:
    """log.jsonl (and TensorBoard when asked): one JSON object per line, flushed at once."""

    def __init__(self, output_dir: Path, resume_step: int | None, tensorboard: bool) -> None:
        self.path = output_dir / "log.jsonl"
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():
            # Drop what was logged after the checkpoint we resume from: it will happen again.
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise GPT2QAError("--tensorboard needs the tensorboard package: "
                                  "pip install 'gpt2qa[tensorboard]'") from None
            self.writer = SummaryWriter(str(output_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(f"{record['event']}/{key}", value, record["step"])


def log_setup(log: _Log, model: torch.nn.Module, config: TrainConfig, fresh: bool) -> None:
    """The setup record (first line of log.jsonl) and its parameter counts on stderr."""
    import sys

    from gpt2qa.lora import parameter_counts

    counts = parameter_counts(model)
    if fresh:
        log.write({"event": "setup", "step": 0, **counts, "lora_r": config.lora_r,
                   "gradient_checkpointing": config.gradient_checkpointing})
    print(f"gpt2qa train: {counts['trainable_parameters']:,} of {counts['total_parameters']:,} "
          f"parameters trainable ({counts['trainable_percent']}%)", file=sys.stderr)


def evaluate_model(model: QAModel, tokenizer: Any, examples: Sequence[SquadExample],
                   features: Sequence[Feature], is_v2: bool, batch_size: int,
                   precision: str = "fp32") -> tuple[dict[str, Any], tuple[dict, dict, dict]]:
    """Official metrics at threshold 0, plus the threshold tuned on these examples.

    Tuning uses each question's best span and its na_prob (the official best_f1 search); the
    tuned threshold is reported as a null_score_diff_threshold.
    """
    from gpt2qa.metrics import evaluate_v1, evaluate_v2, null_baseline
    from gpt2qa.pipeline import predict_examples

    special = prepare_tokenizer(tokenizer)
    preds = predict_examples(model, tokenizer, special, examples, batch_size,
                             null_score_diff_threshold=0.0, precision=precision,
                             features=features)
    files = predictions_to_json(preds)
    texts, na_probs, _ = files
    if not is_v2:
        return evaluate_v1(examples, texts), files
    metrics = evaluate_v2(examples, texts, na_probs)
    tuned = evaluate_v2(examples, {p.qas_id: p.best_span for p in preds}, na_probs)
    baseline = null_baseline(examples)
    metrics.update({
        "tuned_exact": tuned["best_exact"], "tuned_f1": tuned["best_f1"],
        "tuned_null_score_diff_threshold": threshold_from_na_prob(tuned["best_f1_thresh"]),
        "null_baseline_exact": baseline["exact"], "null_baseline_f1": baseline["f1"],
    })
    return metrics, files


def selection_score(metrics: dict[str, Any]) -> float:
    return float(metrics.get("tuned_f1", metrics.get("f1", 0.0)))


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
               scaler: torch.amp.GradScaler, accelerator: Any, features: Sequence[Feature],
               group: Sequence[Sequence[int]], pad_id: int, config: TrainConfig,
               pad_to_multiple_of: int = 1) -> torch.Tensor:
    """One optimizer step over `group` (grad_accum micro-batches of feature indices).

    Returns the step's loss as a detached device tensor (no host sync). Gradients are synced
    across processes only on the last micro-batch.
    """
    total = torch.zeros((), device=accelerator.device)
    for k, idx in enumerate(group):
        batch = collate([features[i] for i in idx], pad_id, pad_to_multiple_of=pad_to_multiple_of)
        batch = {key: v.to(accelerator.device, non_blocking=True) for key, v in batch.items()}
        sync = k == len(group) - 1
        with accelerator.no_sync(model) if not sync else nullcontext(), \
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


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) one fine-tuning run; see the module docstring for what it writes."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from gpt2qa.checkpoint import (
        list_checkpoints,
        load_checkpoint_state,
        save_checkpoint,
        save_model,
    )
    from gpt2qa.plots import plot_learning_curve

    out = Path(config.output_dir)
    checkpoints = list_checkpoints(out) if config.resume else []
    if config.resume and not checkpoints:
        raise GPT2QAError(f"{out}: --resume given but no checkpoint found under {out / 'checkpoints'}")
    if not config.resume and (out / "log.jsonl").exists():
        raise GPT2QAError(f"{out}: already holds a run; pass --resume to continue it, "
                          "or choose a new --output-dir")
    if config.precision != "fp32" and not torch.cuda.is_available():
        raise GPT2QAError(f"--precision {config.precision} needs a CUDA device; use fp32 on CPU")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    # Accelerate is the distributed engine only; autocast and fp16 loss scaling are ours, so
    # several runs with different precisions can share one process (the study, the tests).
    accelerator = Accelerator()
    main = accelerator.is_main_process
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
    multiple = pad_multiple(accelerator.device)

    train_data, eval_data = load_training_data(config)
    model, tokenizer = build_model(config)
    special = prepare_tokenizer(tokenizer)
    qa = model.config
    train_examples = _limit(train_data.examples, config.max_train_examples)
    train_features = convert_examples_to_features(train_examples, tokenizer, qa.features(), special)
    eval_examples = _limit(eval_data.examples, config.max_eval_examples) if eval_data else ()
    eval_features = (convert_examples_to_features(eval_examples, tokenizer, qa.features(), special)
                     if eval_examples else [])
    lengths = [len(f.input_ids) for f in train_features]
    if not train_features:
        raise GPT2QAError(f"{config.train_file}: no training examples")

    rank, world = accelerator.process_index, accelerator.num_processes
    micro_per_epoch = len(epoch_batches(lengths, config, 0, rank, world))
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    warmup = int(config.warmup_ratio * total_steps)
    eval_every = config.eval_every or steps_per_epoch
    save_every = config.save_every or eval_every

    optimizer = optimizer_for(model, config, fused=fused_adamw_for(accelerator.device))
    if config.compile:
        # In place: parameter names, checkpoints and the saved model stay as without compile.
        model.compile(dynamic=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: linear_warmup_decay(s, warmup, total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model: QAModel = accelerator.unwrap_model(model)

    state: dict[str, Any] = {"step": 0, "epoch": 0, "micro_in_epoch": 0, "best_score": None,
                             "best_step": None, "examples_seen": 0}
    if checkpoints:
        state = load_checkpoint_state(checkpoints[-1], raw_model, optimizer, scheduler)
    if main:
        write_json_atomic(out / "train_config.json", dataclasses.asdict(config))
    log = _Log(out, state["step"] if checkpoints else None, config.tensorboard and main)
    if main:
        log_setup(log, raw_model, config, fresh=not checkpoints)

    def do_eval(step: int) -> None:
        if not eval_examples or not main:
            return
        metrics, files = evaluate_model(raw_model, tokenizer, eval_examples, eval_features,
                                        eval_data.is_v2 if eval_data else True,
                                        config.eval_batch_size, config.precision)
        log.write({"event": "eval", "step": step, **metrics})
        score = selection_score(metrics)
        if state["best_score"] is None or score > state["best_score"]:
            state["best_score"], state["best_step"] = score, step
            threshold = metrics.get("tuned_null_score_diff_threshold", 0.0)
            raw_model.config = dataclasses.replace(qa, null_score_diff_threshold=threshold)
            save_model(raw_model, tokenizer, out / "model")
            raw_model.config = qa
            for name, obj in zip(("predictions", "na_probs", "nbest"), files, strict=True):
                write_json_atomic(out / f"{name}.json", obj)
            write_json_atomic(out / "metrics.json", {**metrics, "step": step})

    bar = tqdm(total=total_steps, initial=state["step"], disable=not (config.progress and main),
               desc="train", dynamic_ncols=True)
    model.train()
    running = torch.zeros((), device=accelerator.device)
    running_n, window_start, window_examples = 0, time.perf_counter(), 0
    try:
        while state["step"] < total_steps:
            batches = epoch_batches(lengths, config, state["epoch"], rank, world)
            micro = state["micro_in_epoch"]
            while micro < len(batches) and state["step"] < total_steps:
                group = batches[micro: micro + config.grad_accum]
                running += train_step(model, optimizer, scheduler, scaler, accelerator,
                                      train_features, group, special.pad, config, multiple)
                window_examples += sum(len(idx) for idx in group)
                micro += len(group)
                running_n += 1
                state["step"] += 1
                state["micro_in_epoch"] = micro
                state["examples_seen"] += sum(len(i) for i in group) * world
                step = state["step"]
                bar.update(1)
                boundary_eval = step % eval_every == 0 or step == total_steps
                boundary_save = step % save_every == 0 or step == total_steps
                if step % config.log_every == 0 or boundary_eval or boundary_save:
                    mean_loss = (running / running_n).item()
                    if not math.isfinite(mean_loss):
                        last = list_checkpoints(out)
                        raise GPT2QAError(
                            f"loss became {mean_loss} at step {step}; stopped without saving. "
                            f"Last good checkpoint: {last[-1] if last else 'none'}. "
                            "Try a lower --lr or --precision fp32.")
                    elapsed = time.perf_counter() - window_start
                    rate = window_examples * world / max(elapsed, 1e-9)
                    lr = scheduler.get_last_lr()[0]
                    if main:
                        log.write({"event": "train", "step": step, "epoch": state["epoch"],
                                   "loss": mean_loss, "lr": lr, "examples_per_s": rate})
                    bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}", ex_s=f"{rate:.1f}")
                    running = torch.zeros((), device=accelerator.device)
                    running_n, window_start, window_examples = 0, time.perf_counter(), 0
                if micro >= len(batches):
                    state["epoch"] += 1
                    state["micro_in_epoch"] = 0
                if boundary_eval:
                    do_eval(step)
                if boundary_save and main:
                    save_checkpoint(out, step, raw_model, tokenizer, optimizer, scheduler,
                                    dict(state), keep=config.keep_checkpoints)
                accelerator.wait_for_everyone()
    except torch.OutOfMemoryError:
        last = list_checkpoints(out)
        raise GPT2QAError(
            f"out of memory at step {state['step']} (batch size {config.batch_size}, "
            f"max_seq_length {config.max_seq_length}); lower --batch-size and raise --grad-accum "
            f"to keep the effective batch. Last good checkpoint: {last[-1] if last else 'none'}"
        ) from None
    finally:
        bar.close()

    metrics = None
    if main:
        if not eval_examples:
            save_model(raw_model, tokenizer, out / "model")
        elif (out / "metrics.json").exists():
            metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        plot_learning_curve(out / "log.jsonl", out / "learning_curve.png")
        if config.merge_lora:
            from gpt2qa.lora import merge_model_dir

            merge_model_dir(out / "model", out / "model-merged")
    return TrainResult(output_dir=out, steps=state["step"], metrics=metrics, model_dir=out / "model")
