"""Question + context -> answer: the one inference path behind predict, serve and the Python
API, for every task (the task comes from the model directory's gpt2qa.json)."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

from gpt2qa import tasks
from gpt2qa.checkpoint import ModelExamples, load_model, read_examples
from gpt2qa.config import PRECISIONS, QUANTIZE_MODES
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
                     sharded: bool = False, task: Task | None = None,
                     batch_invariant: bool = False) -> list[Any]:
    """Features -> forward -> decode, for any number of examples (`sharded`,
    `batch_invariant`: see run_model). `task`: default, the one the model was trained for."""
    task = task or tasks.get(model.config.task)
    overrides: Mapping[str, Any] = {"null_score_diff_threshold": null_score_diff_threshold}
    refuse_unsupported(task, overrides)
    if features is None:
        features = task.features(examples, tokenizer, model.config.features, special_ids)
    outputs = run_model(model, features, special_ids.pad, batch_size, precision=precision,
                        sharded=sharded, batch_invariant=batch_invariant, tokenizer=tokenizer)
    return task.decode(examples, features, outputs, model.config, overrides)


@dataclass
class QAPipeline:
    """A loaded model ready to answer questions; `task` is the one it was trained for;
    `examples` a few of its evaluation questions (examples.json; None when it has none)."""

    model: QAModel
    tokenizer: Any
    special_ids: SpecialIds
    precision: str = "fp32"
    task: Task = tasks.TASKS["squad"]
    examples: ModelExamples | None = None

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike[str], device: str | None = None,
                        precision: str = "fp32", quantize: str = "none",
                        constrain_to_context: bool | None = None) -> QAPipeline:
        """`precision` bf16 on CPU needs bf16 instructions (`quantize.check_cpu_bf16`);
        `quantize` int8 quantises the backbone's matmuls for CPU inference (quantize.py);
        `constrain_to_context` (a generative model's; None: as saved) overrides whether it
        may write only pieces of the context."""
        if not isinstance(model_dir, (str, os.PathLike)):
            raise GPT2QAError("model_dir must be the path of a model directory; got "
                              f"{type(model_dir).__name__}")
        if quantize not in QUANTIZE_MODES:
            raise GPT2QAError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}; "
                              f"got {quantize!r}")
        if precision not in PRECISIONS:
            raise GPT2QAError(f"--precision must be one of {', '.join(PRECISIONS)}; "
                              f"got {precision!r}")
        dev = pick_device(device)
        if quantize != "none" and dev.type != "cpu":
            raise GPT2QAError(f"--quantize {quantize} runs on CPU only; pass --device cpu")
        if quantize != "none" and precision != "fp32":
            raise GPT2QAError(f"--quantize {quantize} already sets the matmul precision; "
                              "leave --precision at fp32")
        if dev.type == "cpu" and precision == "bf16":
            check_cpu_bf16()
        if not Path(model_dir).is_dir():
            raise GPT2QAError(f"{model_dir}: no such model directory")
        task = tasks.for_model(model_dir)
        model, tokenizer, special = load_model(Path(model_dir), dev, task)
        if constrain_to_context is not None:
            if model.config.head != "generative":
                raise GPT2QAError(f"{model_dir}: --constrain-to-context applies to a generative "
                                  f"model; this one has a {model.config.head} head")
            model.config = replace(model.config, decoding=replace(
                model.config.decoding, constrain_to_context=constrain_to_context))
        if quantize == "int8":
            quantize_backbone_int8(model)
        return cls(model, tokenizer, special, precision, task, read_examples(model_dir, task))

    def predict(self, examples: Sequence[Any], batch_size: int = 0,
                null_score_diff_threshold: float | None = None,
                sharded: bool = False, batch_invariant: bool = False) -> list[Any]:
        """Predictions for `examples`, in their order (`sharded`, `batch_invariant`: see
        `inference.run_model`)."""
        check_settings(batch_size=batch_size, null_score_diff_threshold=null_score_diff_threshold)
        return predict_examples(self.model, self.tokenizer, self.special_ids, examples,
                                batch_size, null_score_diff_threshold, self.precision,
                                sharded=sharded, task=self.task,
                                batch_invariant=batch_invariant)

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
        ``start``/``end`` (character offsets, end exclusive) and ``is_impossible``; ``score`` is
        a probability, the same as `gpt2qa serve` and `predict --question` give. Lists of
        questions and contexts (one context may serve every question) return a list, one entry
        per question. With ``top_k`` > 1 each entry is a list of up to top_k dicts: the
        decision first, then the other candidates by score (see `answer_dicts`).
        ``null_score_diff_threshold`` overrides the model's tuned one. A HotpotQA model takes
        ``context=[[title, [sentence, ...]], ...]`` (a list of those for a list of questions)
        and answers with ``answer``, ``answer_type`` (span/yes/no), ``score`` and
        ``supporting_facts`` (``[[title, sentence_index, probability], ...]``).
        """
        check_settings(top_k=top_k, batch_size=batch_size,
                       null_score_diff_threshold=null_score_diff_threshold)
        single = isinstance(question, str)
        if not single and not is_list(question):
            raise GPT2QAError("question must be a string or a list of strings; got "
                              f"{type(question).__name__}")
        if isinstance(context, (bytes, bytearray, memoryview)):
            raise GPT2QAError("context must be text (str), not bytes: decode it first")
        if not single and not isinstance(context, str) and not is_list(context):
            raise GPT2QAError("with a list of questions, context must be one context or a list "
                              f"of them; got {type(context).__name__}")
        questions = [question] if isinstance(question, str) else list(question)
        if not questions:
            raise GPT2QAError("question is an empty list: there is nothing to answer")
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


def is_list(value: Any) -> bool:
    """A list or tuple: a batch of questions or contexts (a dict, set or bytes is not one)."""
    return isinstance(value, (list, tuple))


def check_settings(**settings: Any) -> None:
    """The Python API's numbers, in one line each: `top_k` a whole number >= 1, `batch_size` a
    whole number >= 0 (0: chosen for the device), `null_score_diff_threshold` None or a
    number (not NaN)."""
    for name, value in settings.items():
        if name == "null_score_diff_threshold":
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if value is not None and (not number or math.isnan(value)):
                raise GPT2QAError(f"{name} must be a number or None; got {value!r}")
            continue
        least = 1 if name == "top_k" else 0
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
            raise GPT2QAError(f"{name} must be >= {least}, a whole number; got {value!r}")


class AnswerDict(TypedDict):
    """One answer as `QAPipeline.__call__` returns it (transformers v4's keys, plus
    ``is_impossible``)."""

    answer: str
    score: float
    start: int
    end: int
    is_impossible: bool
