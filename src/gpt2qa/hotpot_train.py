"""Fine-tuning on HotpotQA: `gpt2qa train` hands over here when the train file is HotpotQA.

The same `TrainConfig` (``batch_size`` features per optimizer step, in ``grad_accum``
micro-batches), optimizer (`train.optimizer_for`), schedule (`train.linear_warmup_decay`),
seeding and batch order (`train.epoch_batches`) as SQuAD training; the run directory holds

  train_config.json, log.jsonl          as for SQuAD
  model/                                the best model by joint F1 (then answer F1 + sp F1),
                                        with the supporting-fact threshold tuned on the eval set
  predictions.json                      the best evaluation, in the official layout
  metrics.json                          the official keys, ``sp_threshold`` and ``step``

Not supported here (each refused with a message): --resume, --dataset, multi-process runs,
and null positions other than ``last``. Checkpoints for resuming are not written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import prepare_tokenizer
from gpt2qa.hotpot_data import HotpotDataset, HotpotExample, detect_format, load_hotpot
from gpt2qa.hotpot_features import HotpotFeature, convert_hotpot_examples, selection_recall
from gpt2qa.hotpot_metrics import evaluate_hotpot, predictions_json
from gpt2qa.hotpot_model import (
    HotpotModel,
    collate_hotpot,
    decode_hotpot,
    is_hotpot_model,
    load_hotpot_model,
    run_hotpot_model,
    save_hotpot_model,
    tune_sp_threshold,
)
from gpt2qa.io import write_json_atomic
from gpt2qa.launch import launched_processes
from gpt2qa.model import check_fits, load_backbone
from gpt2qa.pipeline import autocast_context, pick_device
from gpt2qa.schedule import (
    epoch_batches,
    fused_adamw_for,
    linear_warmup_decay,
    micro_batches,
    optimizer_for,
    seed_everything,
)
from gpt2qa.tokenizer import load_tokenizer
from gpt2qa.train import TrainResult


def is_hotpot_run(config: TrainConfig) -> bool:
    """Whether `gpt2qa train` should train on HotpotQA (the train file is a JSON list)."""
    return config.train_file is not None and detect_format(config.train_file) == "hotpot"


def _check(config: TrainConfig) -> None:
    problems = [
        (config.resume, "--resume is not supported for HotpotQA runs"),
        (launched_processes() > 1,
         "HotpotQA training runs in one process; start it without a multi-process launcher"),
        (config.dataset is not None, "--dataset is not supported for HotpotQA; pass the "
                                     "official JSON files with --train-file/--eval-file"),
        (config.null_position != "last", "HotpotQA needs --null-position last (the answer-type "
                                         "head reads the <|null|> token)"),
        (config.precision != "fp32" and not torch.cuda.is_available(),
         f"--precision {config.precision} needs a CUDA device; use fp32 on CPU"),
        (config.eval_file is not None and detect_format(config.eval_file) != "hotpot",
         f"{config.eval_file}: the train file is HotpotQA, so the eval file must be too"),
    ]
    for bad, message in problems:
        if bad:
            raise GPT2QAError(message)


def build_hotpot_model(config: TrainConfig) -> tuple[HotpotModel, Any]:
    """A fresh HotpotQA model around a backbone, or a saved HotpotQA model to continue."""
    if is_hotpot_model(config.model):
        model, tokenizer, _, _ = load_hotpot_model(config.model)
        model.train()
        return model, tokenizer
    qa = config.qa_config()
    tokenizer = load_tokenizer(config.model)
    prepare_tokenizer(tokenizer)
    backbone = load_backbone(config.model)
    backbone.resize_token_embeddings(len(tokenizer))
    check_fits(backbone, qa, len(tokenizer))
    return HotpotModel(backbone, qa), tokenizer


def _limit(examples: tuple[HotpotExample, ...], n: int) -> tuple[HotpotExample, ...]:
    return examples[:n] if n > 0 else examples


def evaluate_hotpot_model(model: HotpotModel, examples: Sequence[HotpotExample],
                          features: Sequence[HotpotFeature], pad_id: int, batch_size: int
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Official metrics with the supporting-fact threshold tuned on these examples, and the
    predictions (official layout) at that threshold."""
    raws = run_hotpot_model(model, features, pad_id, batch_size)
    threshold, _ = tune_sp_threshold(examples, features, raws)
    answers, facts = decode_hotpot(features, raws, model.config, threshold)
    metrics = evaluate_hotpot(examples, answers, facts)
    metrics["sp_threshold"] = threshold
    return metrics, predictions_json(answers, facts)


def _score(metrics: dict[str, Any]) -> tuple[float, float]:
    return metrics["joint_f1"], metrics["f1"] + metrics["sp_f1"]


def train_hotpot(config: TrainConfig) -> TrainResult:
    """Train on a HotpotQA file; see the module docstring for what the run directory holds."""
    from tqdm.auto import tqdm

    _check(config)
    out = Path(config.output_dir)
    if (out / "log.jsonl").exists():
        raise GPT2QAError(f"{out}: already holds a run; choose a new --output-dir")
    bad_facts = "error" if config.misaligned == "error" else "skip"
    assert config.train_file is not None
    train_data = load_hotpot(config.train_file, bad_facts=bad_facts)
    eval_data: HotpotDataset | None = (load_hotpot(config.eval_file, bad_facts=bad_facts)
                                       if config.eval_file else None)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    device = pick_device(None)
    model, tokenizer = build_hotpot_model(config)
    model.to(device)
    special = prepare_tokenizer(tokenizer)
    feature_config = model.config.features()
    train_examples = _limit(train_data.examples, config.max_train_examples)
    train_features = convert_hotpot_examples(train_examples, tokenizer, feature_config, special)
    eval_examples = _limit(eval_data.examples, config.max_eval_examples) if eval_data else ()
    eval_features = convert_hotpot_examples(eval_examples, tokenizer, feature_config, special)
    write_json_atomic(out / "train_config.json", dataclasses.asdict(config))
    log_path = out / "log.jsonl"
    log_path.write_text("", encoding="utf-8")

    def log(record: dict[str, Any]) -> None:
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    if eval_examples:
        log({"event": "selection", "step": 0, **selection_recall(eval_examples, eval_features)})
    lengths = [len(f.base.input_ids) for f in train_features]
    steps_per_epoch = len(epoch_batches(lengths, config, 0))  # one global batch per step
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    warmup = int(config.warmup_ratio * total)
    eval_every = config.eval_every or steps_per_epoch
    optimizer = optimizer_for(model, config, fused=fused_adamw_for(device))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: linear_warmup_decay(s, warmup, total))
    best: dict[str, Any] | None = None
    model_dir = out / "model"

    def do_eval(step: int) -> None:
        nonlocal best
        if not eval_examples:
            return
        metrics, preds = evaluate_hotpot_model(model, eval_examples, eval_features, special.pad,
                                               config.eval_batch_size)
        log({"event": "eval", "step": step, **metrics})
        if best is None or _score(metrics) > _score(best):
            best = {**metrics, "step": step}
            save_hotpot_model(model, tokenizer, model_dir, metrics["sp_threshold"])
            write_json_atomic(out / "predictions.json", preds)
            write_json_atomic(out / "metrics.json", best)

    step, epoch, t0 = 0, 0, time.perf_counter()
    bar = tqdm(total=total, disable=not config.progress, desc="train hotpot")
    model.train()
    while step < total:
        batches = epoch_batches(lengths, config, epoch)
        for batch_indices in batches:
            if step >= total:
                break
            group = micro_batches(batch_indices, 0, 1, config.grad_accum)
            loss_sum = 0.0
            for idx in group:
                batch = collate_hotpot([train_features[i] for i in idx], special.pad)
                with autocast_context(device, config.precision):
                    loss = model(**{k: v.to(device) for k, v in batch.items()}).loss / len(group)
                loss.backward()
                loss_sum += float(loss.detach())
            if not math.isfinite(loss_sum):
                raise GPT2QAError(f"{out}: loss became {loss_sum} at step {step}; lower --lr")
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % config.log_every == 0 or step == total:
                log({"event": "train", "step": step, "epoch": epoch, "loss": loss_sum,
                     "lr": scheduler.get_last_lr()[0],
                     "seconds": round(time.perf_counter() - t0, 2)})
            if step % eval_every == 0 and step < total:
                do_eval(step)
        epoch += 1
    bar.close()
    do_eval(step)
    if best is None:  # no eval file: keep the final weights with the default threshold
        save_hotpot_model(model, tokenizer, model_dir, 0.5)
    return TrainResult(output_dir=out, steps=step, metrics=best, model_dir=model_dir)
