"""The `inference` stage: every window through the model, once, for every task and command.

Precision (autocast), the device's batch size, int8 backbones, sharding over processes and
FSDP are handled here and nowhere else; predict, evaluate, train and serve all call `run_model`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gpt2qa.batching import (
    collate,
    inference_batch_size,
    invariant_multiple,
    length_grouped_batches,
    pad_multiple,
    width_grouped_batches,
)
from gpt2qa.decode import WindowOutput, unmasked
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature
from gpt2qa.model import QAModel
from gpt2qa.quantize import is_int8
from gpt2qa.runtime import autocast_context, process_group
from gpt2qa.sharding import is_sharded


def run_model(model: QAModel, features: Sequence[Feature], pad_id: int, batch_size: int = 0,
              device: torch.device | None = None, precision: str = "fp32",
              sharded: bool = False, batch_invariant: bool = False,
              tokenizer: Any = None) -> list[WindowOutput]:
    """Forward every feature, in length-sorted batches; outputs come back in feature order.
    `batch_size` 0 picks one for the device (`batching.inference_batch_size`).

    `sharded`: under torch.distributed, each process runs every world-th batch and the outputs
    are gathered to every process. The batches are the ones one process would run, so each
    window's logits are the same bits as in a one-process run.

    `batch_invariant`: each window pads to a width set by its own length alone
    (`batching.width_grouped_batches`), so its logits do not depend on which other windows
    are run with it (`predict --data`, streamed or not, gives each question the same bits).

    `tokenizer`: renders a generative head's free answers (written without the constraint and
    absent from the window's context) as `WindowOutput.written`; without it they are dropped.
    """
    device = device or next(model.parameters()).device
    if batch_size == 0:
        batch_size = inference_batch_size(device, model.width, model.config.features.max_seq_length,
                                          int8=is_int8(model))
    rank, world = process_group() if sharded else (0, 1)
    fsdp = is_sharded(model)
    was_training = model.training
    model.eval()
    outputs: dict[int, WindowOutput] = {}
    lengths = [len(f.input_ids) for f in features]
    multiple = invariant_multiple(device) if batch_invariant else pad_multiple(device)
    batches = (width_grouped_batches(lengths, batch_size, multiple) if batch_invariant
               else length_grouped_batches(lengths, batch_size))
    mine: list[list[int] | None] = list(batches[rank::world])
    if fsdp and world > 1:
        # Every forward of a sharded model is a collective: all processes make the same
        # number of calls, the short ones on a batch whose outputs they drop (None).
        mine += [None] * (-(-len(batches) // world) - len(mine))
    for batch_idx in mine:
        keep = batch_idx is not None
        batch_idx = batch_idx if batch_idx is not None else batches[0]
        batch = collate([features[i] for i in batch_idx], pad_id, with_labels=False,
                        pad_to_multiple_of=multiple,
                        heads=model.task_heads.values())
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        # inference_mode tensors cannot enter FSDP's all-gathers; no_grad is enough there.
        with torch.no_grad() if fsdp else torch.inference_mode(), \
                autocast_context(device, precision):
            out = model(**batch)
        if not keep:
            continue
        start = out.start_logits.float().cpu().numpy()
        end = out.end_logits.float().cpu().numpy()
        null = out.null_score.float().cpu().numpy()
        extra = {name: value.float().cpu().numpy() for name, value in out.extra.items()}
        for row, i in enumerate(batch_idx):
            n = len(features[i].input_ids)
            outputs[i] = WindowOutput(start[row, :n], end[row, :n], float(null[row]),
                                      {name: value[row] for name, value in extra.items()},
                                      written_text(tokenizer, extra, row, start[row, :n]))
    model.train(was_training)
    if world > 1:
        import torch.distributed as dist

        shards: list[dict[int, WindowOutput] | None] = [None] * world
        # Pickled between this run's own processes only, never read from a file.
        dist.all_gather_object(shards, outputs)
        outputs = {i: o for shard in shards if shard for i, o in shard.items()}
    if len(outputs) != len(features):
        raise GPT2QAError(f"internal error: {len(features) - len(outputs)} of {len(features)} "
                          "windows got no model output")
    return [outputs[i] for i in range(len(features))]


def written_text(tokenizer: Any, extra: Mapping[str, np.ndarray], row: int,
                 start_logits: np.ndarray) -> str | None:
    """A generative head's written answer as text when no span of the window carries it (it
    left the context: unconstrained decoding), else None."""
    if tokenizer is None or "written" not in extra or bool(unmasked(start_logits).any()):
        return None
    ids = [int(t) for t in extra["written"][row] if t >= 0]
    text = tokenizer.decode(ids, skip_special_tokens=True).strip() if ids else ""
    return text or None
