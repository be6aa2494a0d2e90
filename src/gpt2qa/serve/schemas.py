"""Request and response bodies of `gpt2qa serve` (pydantic), and Prediction -> response.

A SQuAD model answers with `AnswerResponse`, a HotpotQA model with `HotpotAnswerResponse`.

Offsets in answers are Python string indices into the context, i.e. Unicode code points
(a browser, which counts UTF-16 units, must convert; the page does).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpt2qa.data import unicode_problem
from gpt2qa.decode import Prediction, decide


class AnswerRequest(BaseModel):
    """One question about one context."""

    # strict: "3" is not an int and 1 is not a string; extra="forbid" catches misspelt fields.
    model_config = ConfigDict(strict=True, extra="forbid")

    question: str = Field(description="The question; must contain a non-space character.")
    context: Any = Field(
        description="The passage to answer from (a string); for a HotpotQA model, its "
                    "paragraphs as [[title, [sentence, ...]], ...] (the task checks the shape).",
        json_schema_extra={"anyOf": [{"type": "string"}, {"type": "array"}]})
    top_k: int = Field(1, ge=1, description="How many ranked candidates to return.")
    null_score_diff_threshold: float | None = Field(
        None, allow_inf_nan=False,
        description="Answer nothing when score_diff exceeds this; null uses the model's own "
                    "(SQuAD models).")

    @field_validator("question", "context")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        if not isinstance(value, (str, list)):
            raise ValueError("must be a string (or, for a HotpotQA model, a list of "
                             "[title, [sentence, ...]])")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must contain a non-space character")
        # Refused here, in the schema, so such an item never joins (and fails) a batch.
        for text in _strings(value):
            problem = unicode_problem(text)
            if problem is not None:
                raise ValueError(problem)
        return value

    def context_chars(self) -> int:
        return sum(len(text) for text in _strings(self.context))


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value (a context is text, or paragraphs of sentences)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


class BatchRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    items: list[AnswerRequest] = Field(min_length=1)


class CandidateOut(BaseModel):
    text: str
    score: float
    start: int = Field(description="Start offset in the context, in Unicode code points.")
    end: int = Field(description="Exclusive end offset; context[start:end] == text.")


class AnswerResponse(BaseModel):
    answer: str = Field(description='The answer text; "" when the model abstains.')
    is_impossible: bool
    no_answer_probability: float
    null_score_diff_threshold: float = Field(description="The threshold that was applied.")
    candidates: list[CandidateOut]


class HotpotCandidate(BaseModel):
    answer: str
    answer_type: str = Field(description="span, yes or no.")
    score: float = Field(description="Probability: yes and no get the type head's, the spans "
                                     "share P(span).")


class HotpotAnswerResponse(BaseModel):
    """A HotpotQA model's answer: every question has one (span, yes or no)."""

    answer: str
    answer_type: str = Field(description="span, yes or no.")
    score: float
    supporting_facts: list[tuple[str, int, float]] = Field(
        description="[title, sentence_index, probability] of each sentence above sp_threshold.")
    sp_threshold: float = Field(description="The supporting-fact threshold that was applied.")
    candidates: list[HotpotCandidate]


class BatchResponse(BaseModel):
    results: list[AnswerResponse | HotpotAnswerResponse]


class ErrorResponse(BaseModel):
    detail: str


class Limits(BaseModel):
    max_batch_size: int
    batch_wait_ms: float
    max_batch_items: int
    max_context_chars: int
    max_body_bytes: int


class ModelInfo(BaseModel):
    task: str
    task_state: dict[str, float] = Field(description="What the task tuned besides the null "
                                                     "threshold (HotpotQA: sp_threshold).")
    head: str
    layout: str
    null_position: str
    max_seq_length: int
    doc_stride: int
    max_query_length: int
    max_answer_length: int
    n_best_size: int
    null_score_diff_threshold: float
    vocab_size: int
    parameter_count: int
    device: str
    precision: str
    limits: Limits


class Health(BaseModel):
    status: str
    queued: int
    forward_batches: int
    questions_answered: int
    forward_seconds: float = Field(description="Wall time spent in the model (and decoding).")


def answer_from_prediction(pred: Prediction, threshold: float, top_k: int) -> AnswerResponse:
    """Apply a per-request threshold to a Prediction (`decode.decide`, as decode_example does)."""
    text = decide(pred.best_span, pred.score_diff, threshold)
    return AnswerResponse(
        answer=text, is_impossible=text == "", no_answer_probability=pred.na_prob,
        null_score_diff_threshold=threshold,
        candidates=[CandidateOut(text=c.text, score=c.score, start=c.start, end=c.end)
                    for c in pred.nbest[:top_k]])

