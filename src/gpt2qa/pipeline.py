"""Question + context -> answer: the one inference path behind predict, serve and the Python
API, for every task (the task comes from the model directory's gpt2qa.json)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from gpt2qa import tasks
from gpt2qa.checkpoint import load_model
from gpt2qa.config import QUANTIZE_MODES
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature, SpecialIds
from gpt2qa.inference import run_model
from gpt2qa.model import QAModel
from gpt2qa.quantize import check_cpu_bf16, quantize_backbone_int8
from gpt2qa.runtime import pick_device
from gpt2qa.task import Task, refuse_unsupported


def predict_examples(model: QAModel, tokenizer: Any, special_ids: SpecialIds,
                     examples: Sequence[Any], batch_size: int = 0,
                     null_score_diff_threshold: float | None = None,
                     precision: str = "fp32",
                     features: Sequence[Feature] | None = None,
                     sharded: bool = False, task: Task | None = None) -> list[Any]:
    """Features -> forward -> decode, for any number of examples (`sharded`: see run_model).
    `task`: default, the one the model was trained for."""
    task = task or tasks.get(model.config.task)
    overrides: Mapping[str, Any] = {"null_score_diff_threshold": null_score_diff_threshold}
    refuse_unsupported(task, overrides)
    if features is None:
        features = task.features(examples, tokenizer, model.config.features, special_ids)
    outputs = run_model(model, features, special_ids.pad, batch_size, precision=precision,
                        sharded=sharded)
    return task.decode(examples, features, outputs, model.config, overrides)


@dataclass
class QAPipeline:
    """A loaded model ready to answer questions; `task` is the one it was trained for."""

    model: QAModel
    tokenizer: Any
    special_ids: SpecialIds
    precision: str = "fp32"
    task: Task = tasks.TASKS["squad"]

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
        if model_dir is None or not Path(model_dir).is_dir():
            raise GPT2QAError(f"{model_dir}: no such model directory")
        task = tasks.for_model(model_dir)
        model, tokenizer, special = load_model(Path(model_dir), dev, task)
        if quantize == "int8":
            quantize_backbone_int8(model)
        return cls(model, tokenizer, special, precision, task)

    def predict(self, examples: Sequence[Any], batch_size: int = 0,
                null_score_diff_threshold: float | None = None,
                sharded: bool = False) -> list[Any]:
        return predict_examples(self.model, self.tokenizer, self.special_ids, examples,
                                batch_size, null_score_diff_threshold, self.precision,
                                sharded=sharded, task=self.task)

    def answer(self, question: str, context: Any,
               null_score_diff_threshold: float | None = None) -> Any:
        """Answer one question about one context (HotpotQA: ``[[title, [sentence, ...]], ...]``)."""
        return self.predict([self.task.example("q", question, context)],
                            null_score_diff_threshold=null_score_diff_threshold)[0]

    def __call__(self, question: str | Sequence[str], context: Any, *,
                 top_k: int = 1, null_score_diff_threshold: float | None = None,
                 batch_size: int = 0) -> AnswerDict | list[AnswerDict] | list[list[AnswerDict]]:
        """Answer like transformers v4's question-answering pipeline.

        `qa(question="Who?", context="...")` returns one dict: ``answer``, ``score``,
        ``start``/``end`` (character offsets, end exclusive) and ``is_impossible``. Lists of
        questions and contexts (one context may serve every question) return a list, one entry
        per question. With ``top_k`` > 1 each entry is a list of up to top_k dicts: the
        decision first, then the other candidates by score (see `answer_dicts`).
        ``null_score_diff_threshold`` overrides the model's tuned one. A HotpotQA model takes
        ``context=[[title, [sentence, ...]], ...]`` (a list of those for a list of questions)
        and answers with ``answer``, ``answer_type`` (span/yes/no), ``score`` and
        ``supporting_facts`` (``[[title, sentence_index, probability], ...]``).
        """
        if top_k < 1:
            raise GPT2QAError(f"top_k must be >= 1; got {top_k}")
        single = isinstance(question, str)
        questions = [question] if isinstance(question, str) else list(question)
        contexts = [context] if single or isinstance(context, str) else list(context)
        if len(contexts) == 1 and len(questions) > 1:
            contexts = contexts * len(questions)
        if len(contexts) != len(questions):
            raise GPT2QAError(f"{len(questions)} questions but {len(contexts)} contexts")
        examples = [self.task.example("q" if single else str(i), q, c)
                    for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]
        preds = self.predict(examples, batch_size, null_score_diff_threshold)
        results: list[Any] = [self.task.answer_dicts(p, top_k) for p in preds]
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
