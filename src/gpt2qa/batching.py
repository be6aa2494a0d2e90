"""Dynamic padding and length-grouped batches, shared by training and inference."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature


def collate(features: Sequence[Feature], pad_id: int, with_labels: bool = True,
            pad_to_multiple_of: int = 1, heads: Iterable[Any] = ()) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest feature (not to max_seq_length), plus each task head's own
    inputs (`model.TaskHead.batch`).

    Padding goes on the right: under causal attention real tokens never see it, and the
    attention mask hides it from everything else. `pad_to_multiple_of` rounds the width up
    (see `pad_multiple`).
    """
    width = max(len(f.input_ids) for f in features)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    n = len(features)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    context_mask = torch.zeros((n, width), dtype=torch.bool)
    null_index = torch.empty(n, dtype=torch.long)
    for i, f in enumerate(features):
        input_ids[i, : len(f.input_ids)] = torch.tensor(f.input_ids, dtype=torch.long)
        attention_mask[i, : len(f.input_ids)] = 1
        context_mask[i, f.context_offset: f.context_end()] = True
        null_index[i] = f.null_index
    batch = {"input_ids": input_ids, "attention_mask": attention_mask,
             "context_mask": context_mask, "null_index": null_index}
    if with_labels:
        for f in features:
            for pos in (f.start_position, f.end_position):
                if pos != f.null_index and not f.context_offset <= pos < f.context_end():
                    raise GPT2QAError(f"id={f.qas_id} window {f.window_index}: label {pos} is "
                                      "neither a context token nor the null position")
        batch["start_positions"] = torch.tensor([f.start_position for f in features])
        batch["end_positions"] = torch.tensor([f.end_position for f in features])
    for head in heads:
        batch.update(head.batch(features, with_labels))
    return batch


def pad_multiple(device: torch.device) -> int:
    """Width rounding for a device: none on CPU, where every padded token costs time; 64 on
    CUDA, so kernels tuned per sequence length see a handful of shapes, not hundreds."""
    return 64 if device.type == "cuda" else 1


CPU_BATCH_FLOATS = 2 ** 20
"""Inference batch budget on CPU: batch x max_seq_length x width, about 1 M floats (4 MB)."""


CPU_INT8_BATCH_FLOATS = 2 ** 18
"""The same budget for an int8-quantised backbone: a quarter, so 1 window per forward at
GPT-2-small shape. Its faster matmuls leave padding and cache misses a bigger share, so batch
1 is faster than batch 3 there (benchmarks/README.md), and each window's activations then get
their own int8 scale, whatever else is being answered."""


def inference_batch_size(device: torch.device, width: int, max_seq_length: int,
                         int8: bool = False) -> int:
    """Features per forward when the caller does not say. 64 on CUDA, where bigger batches keep
    the GPU busy. On CPU the matmuls are large enough at batch 1, and bigger batches only push
    activations out of the caches and pad more; at GPT-2-small shape (768 wide, 384 tokens)
    the budget gives batch 3, faster than batch 64 (benchmarks/README.md). The budget keeps
    tiny test models, which are all overhead, at large batches: a 128-wide model with
    192-token windows gets 42."""
    if device.type == "cuda":
        return 64
    budget = CPU_INT8_BATCH_FLOATS if int8 else CPU_BATCH_FLOATS
    return max(1, min(64, budget // (width * max_seq_length)))


INVARIANT_MULTIPLE_CPU = 8
"""Width step of batch-invariant inference on CPU (`width_grouped_batches`): each window pads
to its length rounded up to this, at most 7 tokens more than it needs."""


def invariant_multiple(device: torch.device) -> int:
    """The width step of batch-invariant inference on `device`: 8 on CPU, `pad_multiple`'s
    64 on CUDA."""
    return max(INVARIANT_MULTIPLE_CPU, pad_multiple(device))


def width_grouped_batches(lengths: Sequence[int], batch_size: int,
                          multiple: int) -> list[list[int]]:
    """Inference batches in which every window's padded width depends on its own length
    alone: its length rounded up to `multiple`, and only windows of that same width share a
    batch (longest first, as `length_grouped_batches`). On CPU a window's scores then come out
    as the same bits whatever else is answered beside it, in whichever batch: a question gets
    the same na_prob in a file of ten or of a million, in one chunk of a streamed run or
    another (measured: a window's scores change in their last bits with its padded width, not
    with its batch's size or other windows).

    Worked example: lengths [5, 12, 9, 16] with multiple 8 and batch size 4 give widths
    8, 16, 16, 16: batches [[3, 1, 2], [0]], padded to 16 and to 8.
    """
    if batch_size < 1:
        raise GPT2QAError(f"batch size must be at least 1; got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    width = -1
    for i in order:
        own = -(-lengths[i] // multiple) * multiple
        if own != width or len(batches[-1]) == batch_size:
            batches.append([])
            width = own
        batches[-1].append(i)
    return batches


def length_grouped_batches(lengths: Sequence[int], batch_size: int,
                           generator: torch.Generator | None = None,
                           group_size: int = 50) -> list[list[int]]:
    """Split indices into batches of similar length, so dynamic padding wastes little.

    With a generator: shuffle all indices, cut them into groups of `group_size` batches, sort
    each group by length, cut it into batches, then shuffle the batches. Examples still move
    between groups every epoch, and batch order stays random. Without a generator (inference):
    sort everything by length, longest first, so a memory problem shows up at once.
    """
    if batch_size < 1:
        raise GPT2QAError(f"batch size must be at least 1; got {batch_size}")
    n = len(lengths)
    if generator is None:
        order = sorted(range(n), key=lambda i: -lengths[i])
        return [order[i: i + batch_size] for i in range(0, n, batch_size)]
    perm = torch.randperm(n, generator=generator).tolist()
    chunk = batch_size * max(group_size, 1)
    batches: list[list[int]] = []
    for c in range(0, n, chunk):
        group = sorted(perm[c: c + chunk], key=lambda i: -lengths[i])
        batches.extend(group[i: i + batch_size] for i in range(0, len(group), batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]
