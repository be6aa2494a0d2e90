"""The `decode` stage: start/end logits and null scores -> answers (n-best, null threshold,
output files).

The decision rule is BERT's: for an example with windows w,

    score_diff = min_w null_w - max_{w, i<=j} (start_w[i] + end_w[j])

and the answer is "" (no answer) when score_diff > null_score_diff_threshold. With an
answerability classifier the null score is its logit z_w and score_diff = min_w z_w.
`na_prob = sigmoid(score_diff)` is monotone in score_diff, so a threshold tuned by the official
evaluator on na_probs (p*) maps back to a null_score_diff_threshold: the score_diff of the last
question answered at p* (`threshold_deciding_as`), which is logit(p*) but for rounding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpt2qa.config import DecodeConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature
from gpt2qa.io import write_json_atomic

MASK_VALUE = -1e4
"""The logit of a position that may not start or end an answer (the model masks with it)."""


def unmasked(logits: np.ndarray) -> np.ndarray:
    """Which positions may start (or end) an answer: those the model did not mask."""
    return logits > MASK_VALUE / 2


@dataclass(frozen=True)
class WindowOutput:
    """A model's scores for one feature: per-position start/end logits and one null score."""

    start_logits: np.ndarray
    end_logits: np.ndarray
    null_score: float
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Each task head's output for this window (padded as in its batch)."""
    written: str | None = None
    """A generative head's answer when it was written freely and is no piece of this window's
    context (so no span carries it); its log-probability is extra["written_score"]."""


@dataclass(frozen=True)
class Candidate:
    """One answer; `start`/`end` are character offsets into the context (end exclusive), or
    -1, -1 for a generative head's free answer that is not in the context."""

    text: str
    score: float
    start: int
    end: int


@dataclass(frozen=True)
class Prediction:
    """The decoded answer for one example."""

    qas_id: str
    text: str
    best_span: str
    score_diff: float
    na_prob: float
    nbest: tuple[Candidate, ...]

    @property
    def is_impossible(self) -> bool:
        return self.text == ""


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def decide(best_span: str, score_diff: float, threshold: float) -> str:
    """The abstain rule, the one place it is written: no answer ("") when score_diff >
    threshold, else the best span.

    Worked example: score_diff=-1.2, best_span="1889" -> "1889" at threshold 0.0, but "" at
    threshold -2.0. A higher threshold answers more often.
    """
    return "" if score_diff > threshold else best_span


def threshold_from_na_prob(p: float) -> float:
    """Invert `na_prob = sigmoid(score_diff)`: an na-prob threshold as a score-diff threshold."""
    p = min(max(p, 1e-15), 1.0 - 1e-15)
    return math.log(p / (1.0 - p))


def threshold_deciding_as(predictions: Sequence[Prediction], na_prob_threshold: float) -> float:
    """The score-diff threshold that decides each of `predictions` as the na-prob threshold
    does (the official rule: no answer when na_prob > it): the largest score_diff among the
    questions it answers. `threshold_from_na_prob` alone can land an ulp below the last
    answered question's score_diff, and `decide` would then turn that answer into "no answer";
    it is used only when no question is answered."""
    # An infinite score_diff (no span anywhere) has the best span "": it reads the same
    # answered or not, and would make the threshold infinite, which JSON cannot hold.
    answered = [p.score_diff for p in predictions
                if p.na_prob <= na_prob_threshold and math.isfinite(p.score_diff)]
    return max(answered) if answered else threshold_from_na_prob(na_prob_threshold)


def window_candidates(feature: Feature, output: WindowOutput, context: str,
                      n_best_size: int, max_answer_length: int) -> list[Candidate]:
    """The best spans of one window, without Python loops over all (start, end) pairs.

    Only context tokens may start or end a span. Take the top `n_best_size` starts and ends,
    score the k x k grid at once, keep start <= end and length <= max_answer_length.
    Worked example: context logits start=[1, 5, 2], end=[0, 1, 4] and n_best_size=2 give
    starts {1, 2} and ends {2, 1}; pairs (1,2)=9, (1,1)=6, (2,2)=6 survive in that order
    (the tie goes to the earlier start); (2,1) is reversed and dropped.
    Ties are broken by position (earlier start, then earlier end) so decoding is deterministic.
    """
    lo, hi = feature.context_offset, feature.context_end()
    if hi <= lo:
        return []
    start = np.asarray(output.start_logits[lo:hi], dtype=np.float64)
    end = np.asarray(output.end_logits[lo:hi], dtype=np.float64)
    k = min(n_best_size, hi - lo)
    # Stable sort on -score: equal scores keep position order.
    top_s = np.argsort(-start, kind="stable")[:k]
    top_e = np.argsort(-end, kind="stable")[:k]
    s_idx, e_idx = np.meshgrid(top_s, top_e, indexing="ij")
    s_idx, e_idx = s_idx.ravel(), e_idx.ravel()
    ok = (s_idx <= e_idx) & (e_idx - s_idx + 1 <= max_answer_length)
    # A masked start or end is no answer (the generative head unmasks one span per window).
    ok &= unmasked(start[s_idx]) & unmasked(end[e_idx])
    s_idx, e_idx = s_idx[ok], e_idx[ok]
    scores = start[s_idx] + end[e_idx]
    order = np.lexsort((e_idx, s_idx, -scores))[:n_best_size]
    spans = feature.token_spans
    out = []
    for i in order:
        c_start, c_end = spans[s_idx[i]][0], spans[e_idx[i]][1]
        if c_end <= c_start:  # only white space
            continue
        out.append(Candidate(context[c_start:c_end], float(scores[i]), c_start, c_end))
    return out


def check_finite_output(qas_id: str, output: WindowOutput) -> None:
    """One GPT2QAError line naming the question when the model's scores for it hold NaN or
    infinity (damaged weights, an overflow): an answer decoded from them would be arbitrary,
    and its abstain rule would compare NaN. Masked positions are finite (model.MASK_VALUE)."""
    named = {"start logits": output.start_logits, "end logits": output.end_logits,
             "null score": np.asarray(output.null_score), **output.extra}
    for name, values in named.items():
        values = np.asarray(values)
        if values.dtype.kind == "f" and not bool(np.isfinite(values).all()):
            raise GPT2QAError(f"id={qas_id}: the model's {name} hold NaN or infinite values; "
                              "no answer can be decoded (are the weights damaged?)")


def decode_example(qas_id: str, context: str, features: Sequence[Feature],
                   outputs: Sequence[WindowOutput], config: DecodeConfig) -> Prediction:
    """Aggregate every window of one example into its n-best list and final answer.

    A span seen by two overlapping windows keeps its best score; the same text at different
    places stays as separate candidates.
    """
    if not features:
        raise GPT2QAError(f"id={qas_id}: no features to decode")
    for output in outputs:
        check_finite_output(qas_id, output)
    best: dict[tuple[int, int], Candidate] = {}
    for feature, output in zip(features, outputs, strict=True):
        for cand in window_candidates(feature, output, context, config.n_best_size,
                                      config.max_answer_length):
            key = (cand.start, cand.end)
            if key not in best or cand.score > best[key].score:
                best[key] = cand
        if output.written:  # free text: one candidate per question, at offsets (-1, -1)
            cand = Candidate(output.written, float(output.extra["written_score"]), -1, -1)
            if (-1, -1) not in best or cand.score > best[-1, -1].score:
                best[-1, -1] = cand
    nbest = sorted(best.values(), key=lambda c: (-c.score, c.start, c.end))[: config.n_best_size]
    null = min(o.null_score for o in outputs)
    if config.null_scoring == "classifier":
        diff = null
    elif nbest:
        diff = null - nbest[0].score
    else:
        diff = math.inf
    best_span = nbest[0].text if nbest else ""
    text = decide(best_span, diff, config.null_score_diff_threshold)
    return Prediction(qas_id=qas_id, text=text, best_span=best_span,
                      score_diff=diff, na_prob=sigmoid(diff) if math.isfinite(diff) else 1.0,
                      nbest=tuple(nbest))


def decode(contexts: Mapping[str, str], features: Sequence[Feature],
           outputs: Sequence[WindowOutput], config: DecodeConfig) -> list[Prediction]:
    """Decode all examples, in the order their first feature appears."""
    if len(features) != len(outputs):
        raise GPT2QAError(f"{len(features)} features but {len(outputs)} outputs")
    grouped: dict[str, tuple[list[Feature], list[WindowOutput]]] = {}
    for feature, output in zip(features, outputs, strict=True):
        feats, outs = grouped.setdefault(feature.qas_id, ([], []))
        feats.append(feature)
        outs.append(output)
    return [decode_example(qid, contexts[qid], feats, outs, config)
            for qid, (feats, outs) in grouped.items()]


def predictions_to_json(predictions: Sequence[Prediction]) -> tuple[dict, dict, dict]:
    """The three official-style outputs: id -> text, id -> na_prob, id -> ranked candidates."""
    preds = {p.qas_id: p.text for p in predictions}
    na_probs = {p.qas_id: p.na_prob for p in predictions}
    nbest = {p.qas_id: [{"text": c.text, "score": c.score, "start": c.start, "end": c.end}
                        for c in p.nbest] for p in predictions}
    return preds, na_probs, nbest


def write_predictions(predictions: Sequence[Prediction], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write predictions.json, na_probs.json and nbest.json into `out_dir`."""
    out = Path(out_dir)
    paths = {name: out / f"{name}.json" for name in ("predictions", "na_probs", "nbest")}
    for name, obj in zip(paths, predictions_to_json(predictions), strict=True):
        write_json_atomic(paths[name], obj)
    return paths
