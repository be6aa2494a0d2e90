"""Request and response bodies of `gpt2qa serve` (pydantic), and Prediction -> response.

A SQuAD model answers with `AnswerResponse`, a HotpotQA model with `HotpotAnswerResponse`.

Offsets in answers are Python string indices into the context, i.e. Unicode code points
(a browser, which counts UTF-16 units, must convert; the page does).
"""

from __future__ import annotations

from dataclasses import replace
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
        description="Abstain when no-answer beats the best answer by more than this: "
                    "score_diff (the no-answer logit minus the best span's logit) > threshold. "
                    "Higher answers more often; null uses the model's tuned one (SQuAD models).")

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


SCORE_DOC = ("Probability, the Python API's (`QAPipeline`): no answer gets the model's "
             "no-answer probability and the candidate spans share the rest by softmax of "
             "their logits, so the candidates' scores plus no_answer_probability sum to at "
             "most 1.")


class CandidateOut(BaseModel):
    text: str
    score: float = Field(description=SCORE_DOC)
    logit: float = Field(description="The span's raw score (start logit + end logit; a "
                                     "generative head's: the log-probability of the answer it "
                                     "wrote), the number its probability comes from; "
                                     "comparable only between candidates of one answer.")
    start: int = Field(description="Start offset in the context, in Unicode code points (-1: "
                                   "a generative model's free answer, not in the context).")
    end: int = Field(description="Exclusive end offset; context[start:end] == text (-1 with "
                                 "start -1).")


class AnswerResponse(BaseModel):
    answer: str = Field(description='The answer text; "" when the model abstains.')
    is_impossible: bool
    score: float = Field(description="Probability of the answer given: the no-answer "
                                     "probability when the model abstains, else the first "
                                     "candidate's score.")
    no_answer_probability: float
    null_score_diff_threshold: float = Field(
        description="The threshold that was applied (see the request's).")
    candidates: list[CandidateOut] = Field(
        description="The best spans (up to top_k), by score; the first is the answer unless "
                    "the model abstains.")


class HotpotCandidate(BaseModel):
    answer: str
    answer_type: str = Field(description="span, yes or no.")
    score: float = Field(description="Probability, the Python API's: yes and no get the type "
                                     "head's, the spans share P(span) by softmax of their "
                                     "logits.")


class HotpotAnswerResponse(BaseModel):
    """A HotpotQA model's answer: every question has one (span, yes or no)."""

    answer: str
    answer_type: str = Field(description="span, yes or no.")
    score: float = Field(description="The answer's probability (its candidate's score).")
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


class Example(BaseModel):
    question: str
    context: Any = Field(description="As a request's context: text, or for a HotpotQA model "
                                     "[[title, [sentence, ...]], ...].")
    answers: list[str] = Field(description="The gold answers; none: unanswerable.")


class Examples(BaseModel):
    source: str = Field(description='"model": the model\'s own evaluation examples (its '
                                    'examples.json); "built-in": a neutral one.')
    data: str = Field(description="What the model's evaluation data was (a file name, or "
                                  '"synthetic (gpt2qa demo)"); "" when unknown.')
    synthetic: bool = Field(description="The model learnt from synthetic data (the demo's): "
                                        "expect answers only to questions like its examples.")
    examples: list[Example]


class Health(BaseModel):
    status: str
    queued: int
    forward_batches: int
    questions_answered: int
    forward_seconds: float = Field(description="Wall time spent in the model (and decoding).")


def answer_from_prediction(pred: Prediction, threshold: float, top_k: int) -> AnswerResponse:
    """Apply a per-request threshold to a Prediction (`decode.decide`, as decode_example does),
    then score it with the Python API's `answer_dicts`, so both give the same numbers."""
    from gpt2qa.tasks.squad import answer_dicts  # loads torch: not at `gpt2qa serve --help`

    decided = replace(pred, text=decide(pred.best_span, pred.score_diff, threshold))
    ranked = answer_dicts(decided, len(pred.nbest) + 1)
    logits = {(c.start, c.end): c.score for c in pred.nbest}
    spans = [d for d in ranked if not d["is_impossible"]][:top_k]
    return AnswerResponse(
        answer=decided.text, is_impossible=decided.is_impossible, score=ranked[0]["score"],
        no_answer_probability=pred.na_prob, null_score_diff_threshold=threshold,
        candidates=[CandidateOut(text=d["answer"], score=d["score"],
                                 logit=logits[d["start"], d["end"]], start=d["start"],
                                 end=d["end"]) for d in spans])
