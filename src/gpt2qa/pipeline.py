"""Question + context -> answer: the one inference path behind predict, evaluate, train and serve."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt2qa.batching import collate, inference_batch_size, length_grouped_batches, pad_multiple
from gpt2qa.data import SquadExample
from gpt2qa.decode import Prediction, WindowOutput, decode
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature, SpecialIds, convert_examples_to_features
from gpt2qa.model import QAModel
from gpt2qa.sharding import is_sharded


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_context(device: torch.device, precision: str) -> Any:
    """bf16/fp16 autocast on CUDA, bf16 autocast on CPU; a no-op context for fp32.

    On CPU only bf16 exists, and it is fast only with bf16 instructions: the user-facing entry
    points (`QAPipeline.from_pretrained`, the CLI) call `quantize.check_cpu_bf16` first."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if device.type == "cpu" and precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type != "cuda":
        raise GPT2QAError(f"--precision {precision} needs a CUDA device; use fp32 or bf16 on "
                          f"{device.type}")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def process_group() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group this process belongs to, or (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def run_model(model: QAModel, features: Sequence[Feature], pad_id: int, batch_size: int = 0,
              device: torch.device | None = None, precision: str = "fp32",
              sharded: bool = False) -> list[WindowOutput]:
    """Forward every feature, in length-sorted batches; outputs come back in feature order.
    `batch_size` 0 picks one for the device (`batching.inference_batch_size`).

    `sharded`: under torch.distributed, each process runs every world-th batch and the outputs
    are gathered to every process. The batches are the ones one process would run, so each
    window's logits are the same bits as in a one-process run.
    """
    device = device or next(model.parameters()).device
    if batch_size == 0:
        from gpt2qa.quantize import is_int8

        batch_size = inference_batch_size(device, model.width, model.config.max_seq_length,
                                          int8=is_int8(model))
    rank, world = process_group() if sharded else (0, 1)
    fsdp = is_sharded(model)
    was_training = model.training
    model.eval()
    outputs: dict[int, WindowOutput] = {}
    batches = length_grouped_batches([len(f.input_ids) for f in features], batch_size)
    mine: list[list[int] | None] = list(batches[rank::world])
    if fsdp and world > 1:
        # Every forward of a sharded model is a collective: all processes make the same
        # number of calls, the short ones on a batch whose outputs they drop (None).
        mine += [None] * (-(-len(batches) // world) - len(mine))
    for batch_idx in mine:
        keep = batch_idx is not None
        batch_idx = batch_idx if batch_idx is not None else batches[0]
        batch = collate([features[i] for i in batch_idx], pad_id, with_labels=False,
                        pad_to_multiple_of=pad_multiple(device))
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
        for row, i in enumerate(batch_idx):
            n = len(features[i].input_ids)
            outputs[i] = WindowOutput(start[row, :n], end[row, :n], float(null[row]))
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


def predict_examples(model: QAModel, tokenizer: Any, special_ids: SpecialIds,
                     examples: Sequence[SquadExample], batch_size: int = 0,
                     null_score_diff_threshold: float | None = None,
                     precision: str = "fp32",
                     features: Sequence[Feature] | None = None,
                     sharded: bool = False) -> list[Prediction]:
    """Features -> forward -> decode, for any number of examples (`sharded`: see run_model)."""
    if features is None:
        features = convert_examples_to_features(examples, tokenizer, model.config.features(),
                                                special_ids)
    outputs = run_model(model, features, special_ids.pad, batch_size, precision=precision,
                        sharded=sharded)
    contexts = {ex.qas_id: ex.context for ex in examples}
    return decode(contexts, features, outputs, model.config.decoding(null_score_diff_threshold))


@dataclass
class QAPipeline:
    """A loaded model ready to answer questions."""

    model: QAModel
    tokenizer: Any
    special_ids: SpecialIds
    precision: str = "fp32"

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike[str], device: str | None = None,
                        precision: str = "fp32", quantize: str = "none") -> QAPipeline:
        """`precision` bf16 on CPU needs bf16 instructions (`quantize.check_cpu_bf16`);
        `quantize` int8 quantises the backbone's matmuls for CPU inference (quantize.py)."""
        from gpt2qa.checkpoint import load_model
        from gpt2qa.quantize import QUANTIZE_MODES, check_cpu_bf16, quantize_backbone_int8

        if quantize not in QUANTIZE_MODES:
            raise GPT2QAError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}; "
                              f"got {quantize!r}")
        dev = pick_device(device)
        if quantize != "none" and dev.type != "cpu":
            raise GPT2QAError(f"--quantize {quantize} runs on CPU only; pass --device cpu")
        if quantize != "none" and precision != "fp32":
            raise GPT2QAError(f"--quantize {quantize} already sets the matmul precision; "
                              "leave --precision at fp32")
        if dev.type == "cpu" and precision == "bf16":
            check_cpu_bf16()
        model, tokenizer, special = load_model(Path(model_dir), dev)
        if quantize == "int8":
            quantize_backbone_int8(model)
        return cls(model, tokenizer, special, precision)

    def predict(self, examples: Sequence[SquadExample], batch_size: int = 0,
                null_score_diff_threshold: float | None = None,
                sharded: bool = False) -> list[Prediction]:
        return predict_examples(self.model, self.tokenizer, self.special_ids, examples,
                                batch_size, null_score_diff_threshold, self.precision,
                                sharded=sharded)

    def answer(self, question: str, context: str,
               null_score_diff_threshold: float | None = None) -> Prediction:
        """Answer one question about one context."""
        if not question.strip() or not context.strip():
            raise GPT2QAError("question and context must both be non-empty")
        example = SquadExample(qas_id="q", question=question, context=context, answers=(),
                               is_impossible=False)
        return self.predict([example], null_score_diff_threshold=null_score_diff_threshold)[0]
