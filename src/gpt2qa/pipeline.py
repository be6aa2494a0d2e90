"""Question + context -> answer: the one inference path behind predict, evaluate, train and serve."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch

from gpt2qa.batching import collate, inference_batch_size, length_grouped_batches, pad_multiple
from gpt2qa.checkpoint import load_model
from gpt2qa.config import QUANTIZE_MODES
from gpt2qa.data import SquadExample
from gpt2qa.decode import Prediction, WindowOutput, decode
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature, SpecialIds, convert_examples_to_features
from gpt2qa.model import QAModel
from gpt2qa.quantize import check_cpu_bf16, is_int8, quantize_backbone_int8
from gpt2qa.sharding import is_sharded


def available_devices() -> list[str]:
    """The devices gpt2qa can run on here: cpu, each CUDA device, mps where present."""
    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def pick_device(device: str | None = None) -> torch.device:
    """`device` (``--device``: cpu, cuda, cuda:1, mps), checked against this machine, or by
    default cuda when available, else cpu. A device that does not parse, is not here (cuda
    without CUDA, cuda:7 on a one-GPU machine), or that gpt2qa cannot compute on (meta) is
    one GPT2QAError line naming the value and what is available."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = available_devices()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GPT2QAError(f"--device {device!r}: not a device name; available here: "
                          f"{', '.join(here)}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GPT2QAError(f"--device {device}: CUDA is not available on this machine; "
                              f"available here: {', '.join(here)}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GPT2QAError(f"--device {device}: no such CUDA device (this machine has "
                              f"{torch.cuda.device_count()}); available here: {', '.join(here)}")
        return dev
    if dev.type == "mps" and "mps" in here:
        return dev
    raise GPT2QAError(f"--device {device}: gpt2qa cannot run on {dev.type!r} here; available "
                      f"here: {', '.join(here)}")


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
        return self.predict([_example("q", question, context)],
                            null_score_diff_threshold=null_score_diff_threshold)[0]

    def __call__(self, question: str | Sequence[str], context: str | Sequence[str], *,
                 top_k: int = 1, null_score_diff_threshold: float | None = None,
                 batch_size: int = 0) -> AnswerDict | list[AnswerDict] | list[list[AnswerDict]]:
        """Answer like transformers v4's question-answering pipeline.

        `qa(question="Who?", context="...")` returns one dict: ``answer``, ``score``,
        ``start``/``end`` (character offsets, end exclusive) and ``is_impossible``. Lists of
        questions and contexts (one context may serve every question) return a list, one entry
        per question. With ``top_k`` > 1 each entry is a list of up to top_k dicts: the
        decision first, then the other candidates by score (see `answer_dicts`).
        ``null_score_diff_threshold`` overrides the model's tuned one.
        """
        if top_k < 1:
            raise GPT2QAError(f"top_k must be >= 1; got {top_k}")
        single = isinstance(question, str)
        questions = [question] if isinstance(question, str) else list(question)
        contexts = [context] if isinstance(context, str) else list(context)
        if len(contexts) == 1 and len(questions) > 1:
            contexts = contexts * len(questions)
        if len(contexts) != len(questions):
            raise GPT2QAError(f"{len(questions)} questions but {len(contexts)} contexts")
        examples = [_example("q" if single else str(i), q, c)
                    for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]
        preds = self.predict(examples, batch_size, null_score_diff_threshold)
        results: list[Any] = [answer_dicts(p, top_k) for p in preds]
        if top_k == 1:
            results = [r[0] for r in results]
        return results[0] if single else results


class AnswerDict(TypedDict):
    """One answer as `QAPipeline.__call__` returns it (transformers v4's keys, plus
    ``is_impossible``)."""

    answer: str
    score: float
    start: int
    end: int
    is_impossible: bool


def _example(qas_id: str, question: str, context: str) -> SquadExample:
    where = "" if qas_id == "q" else f"question {qas_id}: "
    if not isinstance(question, str) or not isinstance(context, str):
        raise GPT2QAError(f"{where}question and context must be strings")
    if not question.strip() or not context.strip():
        raise GPT2QAError(f"{where}question and context must both be non-empty")
    return SquadExample(qas_id=qas_id, question=question, context=context, answers=(),
                        is_impossible=False)


def answer_dicts(pred: Prediction, top_k: int) -> list[AnswerDict]:
    """A Prediction as ranked dicts whose scores form one distribution over "no answer" and the
    n-best spans: no answer gets na_prob; the spans share 1 - na_prob by softmax of their scores.

    Worked example: na_prob 0.2, spans "1889" (score 3.0) and "in 1889" (score 2.0): the spans'
    softmax is 0.73 / 0.27, so scores are 0.8 x 0.73 = 0.58 and 0.22, and no answer 0.2. The
    decision (the threshold rule, `decode.decide`) comes first: "1889" here if the model answers,
    else "" with 0.2, then the rest by score.
    """
    null: AnswerDict = {"answer": "", "score": pred.na_prob, "start": 0, "end": 0,
                        "is_impossible": True}
    spans: list[AnswerDict] = []
    if pred.nbest:
        top = max(c.score for c in pred.nbest)
        weights = [math.exp(c.score - top) for c in pred.nbest]
        total = sum(weights)
        spans = [{"answer": c.text, "score": (1.0 - pred.na_prob) * w / total, "start": c.start,
                  "end": c.end, "is_impossible": False} for c, w in zip(pred.nbest, weights, strict=True)]
    # nbest is ranked by score and the prediction answers with its best span, so spans[0] is it.
    first, rest = (null, spans) if pred.is_impossible or not spans else (spans[0], [null, *spans[1:]])
    rest.sort(key=lambda d: -d["score"])
    return [first, *rest][:top_k]
