"""HotpotQA's heads and decoding: an answer-type head and a supporting-fact head beside the
span head, and the answers and facts they give (`metrics.tune_sp_threshold` picks the
supporting-fact threshold on the evaluation set).

  answer_type       3 logits (span / yes / no) at the `<|null|>` token, the one token that
                    has seen the question and every selected paragraph under causal attention;
  supporting_facts  1 logit per sentence, read at the sentence's last token (trained with
                    BCE); a sentence is a supporting fact when sigmoid(logit) > sp_threshold.

Loss = span loss (yes/no questions, and spans the selection lost, point at the null slot)
+ cross-entropy of the answer type + the mean BCE over the sentences in the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gpt2qa.decode import Candidate, WindowOutput, check_finite_output, window_candidates
from gpt2qa.features import Feature
from gpt2qa.model import TaskHead
from gpt2qa.tasks.hotpotqa.data import ANSWER_TYPES
from gpt2qa.tasks.hotpotqa.inputs import window_of

Fact = tuple[str, int]
DEFAULT_SP_THRESHOLD = 0.5


class AnswerTypeHead(TaskHead):
    """span / yes / no from the `<|null|>` token's hidden state."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, len(ANSWER_TYPES))

    def batch(self, features: Sequence[Feature], with_labels: bool) -> dict[str, torch.Tensor]:
        if not with_labels:
            return {}
        return {"answer_types": torch.tensor([window_of(f).answer_type for f in features])}

    def forward(self, hidden: torch.Tensor, null_index: torch.Tensor,
                inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.proj(hidden[rows, null_index])  # (batch, 3)

    def loss(self, output: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        labels = inputs.get("answer_types")
        return None if labels is None else F.cross_entropy(output, labels)


class SupportingFactHead(TaskHead):
    """One logit per sentence in the window, at the sentence's last token."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, 1)

    def batch(self, features: Sequence[Feature], with_labels: bool) -> dict[str, torch.Tensor]:
        """Sentence positions padded to the batch's most sentences (padding points at position
        0 and is masked out)."""
        windows = [window_of(f) for f in features]
        n = max(1, max(len(w.sentence_positions) for w in windows))
        positions = torch.zeros((len(windows), n), dtype=torch.long)
        mask = torch.zeros((len(windows), n), dtype=torch.bool)
        labels = torch.zeros((len(windows), n), dtype=torch.float)
        for i, w in enumerate(windows):
            k = len(w.sentence_positions)
            positions[i, :k] = torch.tensor(w.sentence_positions, dtype=torch.long)
            mask[i, :k] = True
            labels[i, :k] = torch.tensor(w.sentence_labels, dtype=torch.float)
        batch = {"sentence_positions": positions, "sentence_mask": mask}
        if with_labels:
            batch["sentence_labels"] = labels
        return batch

    def forward(self, hidden: torch.Tensor, null_index: torch.Tensor,
                inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        sentences = hidden[rows[:, None], inputs["sentence_positions"]]  # (batch, n, width)
        return self.proj(sentences).squeeze(-1)  # (batch, n)

    def loss(self, output: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        labels = inputs.get("sentence_labels")
        if labels is None:
            return None
        mask = inputs["sentence_mask"].float()
        bce = F.binary_cross_entropy_with_logits(output, labels, reduction="none")
        return (bce * mask).sum() / mask.sum().clamp(min=1.0)


def hotpot_heads(width: int) -> dict[str, TaskHead]:
    return {"answer_type": AnswerTypeHead(width), "supporting_facts": SupportingFactHead(width)}


@dataclass(frozen=True)
class HotpotPrediction:
    """One question's answer and supporting facts.

    ``type_probs`` are P(span), P(yes), P(no); ``nbest`` the span candidates (offsets into the
    rendered context); ``sentences`` every sentence in the window with its probability, and
    ``facts`` those above the threshold, in window order.
    """

    qas_id: str
    answer: str
    answer_type: str
    type_probs: tuple[float, float, float]
    nbest: tuple[Candidate, ...]
    sentences: tuple[tuple[str, int, float], ...]
    facts: tuple[Fact, ...]


def probabilities(output: WindowOutput, feature: Feature) -> tuple[np.ndarray, np.ndarray]:
    """(answer-type probabilities, one probability per sentence in the window)."""
    k = len(window_of(feature).sentence_positions)
    types = torch.softmax(torch.from_numpy(output.extra["answer_type"]), -1).numpy()
    sp = torch.sigmoid(torch.from_numpy(output.extra["supporting_facts"][:k])).numpy()
    return types, sp


def decode_hotpot(features: Sequence[Feature], outputs: Sequence[WindowOutput],
                  n_best_size: int, max_answer_length: int, sp_threshold: float
                  ) -> list[HotpotPrediction]:
    """The answer type is the argmax of the type head; a span answer is the best span of the
    window (never "", since every HotpotQA question has an answer; the null slot only competes
    in training). Supporting facts are the sentences whose probability exceeds
    ``sp_threshold``."""
    out = []
    for f, o in zip(features, outputs, strict=True):
        check_finite_output(f.qas_id, o)
        w = window_of(f)
        types, sp = probabilities(o, f)
        kind = ANSWER_TYPES[int(np.argmax(types))]
        nbest = tuple(window_candidates(f, o, w.context, n_best_size, max_answer_length))
        if not nbest and o.written:  # a generative head's free answer, not in the paragraphs
            nbest = (Candidate(o.written, float(o.extra["written_score"]), -1, -1),)
        answer = (nbest[0].text if nbest else "") if kind == "span" else kind
        sentences = tuple((t, i, float(p)) for (t, i), p in zip(w.sentence_keys, sp, strict=True))
        out.append(HotpotPrediction(
            qas_id=f.qas_id, answer=answer, answer_type=kind,
            type_probs=(float(types[0]), float(types[1]), float(types[2])), nbest=nbest,
            sentences=sentences, facts=tuple((t, i) for t, i, p in sentences if p > sp_threshold)))
    return out


def answer_dicts(pred: HotpotPrediction, top_k: int) -> list[dict[str, Any]]:
    """Ranked answers whose scores form one distribution: yes and no get their type
    probabilities, the span candidates share P(span) by softmax of their scores. The decision
    comes first; each dict carries the supporting facts with their probabilities."""
    facts = [[t, i, p] for t, i, p in pred.sentences if (t, i) in set(pred.facts)]
    common = {"supporting_facts": facts}
    answers = [{"answer": kind, "answer_type": kind, "score": pred.type_probs[k], **common}
               for k, kind in enumerate(ANSWER_TYPES) if kind != "span"]
    if pred.nbest:
        top = max(c.score for c in pred.nbest)
        weights = [float(np.exp(c.score - top)) for c in pred.nbest]
        answers += [{"answer": c.text, "answer_type": "span",
                     "score": pred.type_probs[0] * w / sum(weights), **common}
                    for c, w in zip(pred.nbest, weights, strict=True)]
    first = next((a for a in answers if a["answer"] == pred.answer
                  and a["answer_type"] == pred.answer_type),
                 {"answer": pred.answer, "answer_type": pred.answer_type,
                  "score": pred.type_probs[0], **common})
    rest = sorted((a for a in answers if a is not first), key=lambda a: -a["score"])
    return [first, *rest][:top_k]
