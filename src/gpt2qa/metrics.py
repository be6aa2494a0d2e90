"""The `metrics` stage: score predictions the way the official SQuAD scripts do (v2.0 and v1.1).

The numbers returned by `evaluate_v2` equal those of the official ``evaluate-v2.0.py`` for the
same inputs: the same keys in the same order, the same arithmetic (``100.0 * sum / total``,
summed in file order).  Two deliberate differences, both invisible for complete inputs:

* a question with no prediction is scored as wrong (EM 0, F1 0) at every no-answer threshold
  instead of crashing the run; the result then carries ``missing`` (the count);
* predictions for ids that are not in the data are ignored and counted under ``extra``.

Worked example (one answerable question with gold "Gustave Eiffel", prediction "Eiffel"):
normalised gold tokens ``[gustave, eiffel]``, prediction ``[eiffel]``; one token in common, so
precision 1/1, recall 1/2, F1 = 2 * 1 * 0.5 / 1.5 = 0.667; EM is 0.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2qa.data import SquadExample
from gpt2qa.errors import GPT2QAError
from gpt2qa.plots import plot_official_images

_PUNCTUATION = frozenset(string.punctuation)  # ASCII only, as in the official scripts
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


# --------------------------------------------------------------------------------------------
# Answer normalisation and per-answer scores
# --------------------------------------------------------------------------------------------

def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse white space.

    >>> normalize_answer("The  Eiffel-Tower, in Paris!")
    'eiffeltower in paris'

    Punctuation goes first, so "a-team" becomes "ateam" and keeps its "a"; articles are removed
    only as whole words, so "theater" is untouched.
    """
    no_punct = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", no_punct).split())


def get_tokens(s: str) -> list[str]:
    """The normalised tokens of an answer; ``[]`` for an empty one."""
    if not s:
        return []
    return normalize_answer(s).split()


def exact_match(pred: str, gold: str) -> int:
    """1 when the two answers are equal after `normalize_answer`, else 0."""
    return int(normalize_answer(pred) == normalize_answer(gold))


def f1(pred: str, gold: str, both_empty: float = 1.0) -> float:
    """Token F1 (bag of normalised tokens), as the official SQuAD scripts compute it.

    v2.0 and v1.1 agree except when *both* sides normalise to no tokens: v2.0 scores that 1.0
    (how an abstention "" is scored against an unanswerable question), v1.1 scores it 0.0 (no
    token in common), so `evaluate_v1` passes ``both_empty=0.0``. One side empty: 0.0 in both.
    """
    pred_toks = get_tokens(pred)
    gold_toks = get_tokens(gold)
    if not pred_toks and not gold_toks:
        return both_empty
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def gold_answers(example: SquadExample) -> list[str]:
    """The gold texts a v2 prediction is scored against: ``['']`` when none survives.

    Answers that normalise to nothing (e.g. "the" or "!") are dropped, so an answerable question
    whose only answers are such strings is scored like an unanswerable one.
    """
    texts = [a.text for a in example.answers if normalize_answer(a.text)]
    return texts or [""]


# --------------------------------------------------------------------------------------------
# Per-question scores
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuestionScore:
    """Raw (before any no-answer threshold) v2 scores of one question.

    ``prediction`` is None when the predictions had no entry for this question; such a question
    scores 0 and is never rescued by the no-answer rule.
    """

    qas_id: str
    has_ans: bool
    prediction: str | None
    exact: int
    f1: float

    @property
    def missing(self) -> bool:
        return self.prediction is None


def _check_unique_ids(examples: Sequence[SquadExample]) -> None:
    seen: set[str] = set()
    for ex in examples:
        if ex.qas_id in seen:
            raise GPT2QAError(f"examples: id={ex.qas_id}: duplicate question id")
        seen.add(ex.qas_id)
    if not seen:
        raise GPT2QAError("examples: there are no questions to score")


def _prediction(predictions: Mapping[str, str], qas_id: str, source: str) -> str | None:
    if qas_id not in predictions:
        return None
    pred = predictions[qas_id]
    if not isinstance(pred, str):
        raise GPT2QAError(f"{source}: id={qas_id}: prediction must be a string, "
                          f"got {type(pred).__name__}")
    return pred


def score_questions(examples: Sequence[SquadExample], predictions: Mapping[str, str],
                    source: str = "predictions") -> tuple[QuestionScore, ...]:
    """Raw v2 EM/F1 of every question, in data order (max over `gold_answers`)."""
    _check_unique_ids(examples)
    out = []
    for ex in examples:
        pred = _prediction(predictions, ex.qas_id, source)
        if pred is None:
            out.append(QuestionScore(ex.qas_id, bool(ex.answers), None, 0, 0.0))
            continue
        golds = gold_answers(ex)
        out.append(QuestionScore(
            qas_id=ex.qas_id, has_ans=bool(ex.answers), prediction=pred,
            exact=max(exact_match(pred, g) for g in golds),
            f1=max(f1(pred, g) for g in golds)))
    return tuple(out)


def _check_thresh(na_prob_thresh: float) -> None:
    if isinstance(na_prob_thresh, bool) or not isinstance(na_prob_thresh, (int, float)) \
            or math.isnan(na_prob_thresh):
        raise GPT2QAError(f"na_prob_thresh must be a number, got {na_prob_thresh!r}")


def _check_na_coverage(scores: Sequence[QuestionScore], na_probs: Mapping[str, float],
                       source: str) -> None:
    # Only questions that were answered need a probability: a missing one is wrong regardless.
    for s in scores:
        if not s.missing and s.qas_id not in na_probs:
            raise GPT2QAError(f"{source}: id={s.qas_id}: no no-answer probability for this "
                              "question, which has a prediction")


def _thresholded(scores: Sequence[QuestionScore], na_probs: Mapping[str, float],
                 na_prob_thresh: float) -> tuple[list[float], list[float]]:
    """EM and F1 after the no-answer rule: above the threshold the prediction becomes ""."""
    exact: list[float] = []
    f1s: list[float] = []
    for s in scores:
        if not s.missing and na_probs[s.qas_id] > na_prob_thresh:
            right = float(not s.has_ans)
            exact.append(right)
            f1s.append(right)
        else:
            exact.append(s.exact)
            f1s.append(s.f1)
    return exact, f1s


def eval_block(exact: Sequence[float], f1s: Sequence[float],
               keep: Sequence[bool] | None = None) -> dict[str, Any]:
    """Mean EM and F1 in percent (official arithmetic) over the questions `keep` marks."""
    if keep is None:
        keep = [True] * len(exact)
    total = sum(keep)
    return {
        "exact": 100.0 * sum(e for e, k in zip(exact, keep, strict=True) if k) / total,
        "f1": 100.0 * sum(f for f, k in zip(f1s, keep, strict=True) if k) / total,
        "total": total,
    }


# --------------------------------------------------------------------------------------------
# Best threshold and precision-recall over the no-answer probability
# --------------------------------------------------------------------------------------------

def _ranked(scores: Sequence[QuestionScore],
            na_probs: Mapping[str, float]) -> list[tuple[float, QuestionScore]]:
    """Questions by ascending no-answer probability, ties kept in ``na_probs`` order.

    The official walk sorts the keys of the na-prob file with a stable sort, and its best
    threshold depends on the order inside ties, so the mapping order is kept.  Questions
    without a prediction come first at -inf: they count as answered (wrongly) everywhere.
    """
    answered = {s.qas_id: s for s in scores if not s.missing}
    present = [(na_probs[q], answered[q]) for q in na_probs if q in answered]
    present.sort(key=lambda pair: pair[0])
    missing = [(-math.inf, s) for s in scores if s.missing]
    return missing + present


def _best_threshold(ranked: Sequence[tuple[float, QuestionScore]],
                    score_of: Callable[[QuestionScore], float], total: int) -> tuple[float, float]:
    """Best total score over all thresholds, and the threshold that reaches it first.

    Start from "every question abstains" (each unanswerable one is right), then let the
    questions answer one by one in order of rising probability: an answerable one adds its raw
    score, an unanswerable one with a non-empty prediction loses its point.

    Worked example: unanswerable u (p=0.2, predicts "x"), answerable a (p=0.4, raw 1) ->
    start 1; after u: 0; after a: 1, never above 1, so best = 100 * 1 / 2 at threshold 0.0.
    """
    cur: float = sum(1 for _, s in ranked if not s.has_ans and not s.missing)
    best, best_thresh = cur, 0.0
    for prob, s in ranked:
        if s.missing:
            continue  # scored 0 at every threshold
        if s.has_ans:
            cur += score_of(s)
        elif s.prediction:
            cur -= 1
        if cur > best:
            best, best_thresh = cur, prob
    return 100.0 * best / total, best_thresh


def _precision_recall(ranked: Sequence[tuple[float, QuestionScore]],
                      score_of: Callable[[QuestionScore], float],
                      num_has_ans: int) -> tuple[float, list[float], list[float]]:
    """Average precision (in %) and the curve's points, thresholds only between distinct probs.

    Worked example: a (answerable, raw 1, p=0.5), b (unanswerable, p=0.5), c (answerable, raw 1,
    p=0.9): no threshold can split a from b, so the first point is after b: P=1/2, R=1/2;
    then after c: P=2/3, R=1.  AP = 1/2 * 1/2 + 2/3 * 1/2 = 0.5833 -> 58.33.
    """
    true_pos = 0.0
    precisions, recalls = [1.0], [0.0]
    avg_prec = 0.0
    for i, (prob, s) in enumerate(ranked):
        if s.has_ans:
            true_pos += score_of(s)
        cur_p = true_pos / float(i + 1)
        cur_r = true_pos / float(num_has_ans)
        if i == len(ranked) - 1 or prob != ranked[i + 1][0]:
            avg_prec += cur_p * (cur_r - recalls[-1])
            precisions.append(cur_p)
            recalls.append(cur_r)
    return 100.0 * avg_prec, precisions, recalls


def _exact_of(s: QuestionScore) -> float:
    return s.exact


def _f1_of(s: QuestionScore) -> float:
    return s.f1


def _oracle_of(s: QuestionScore) -> float:
    # A perfect reader: every answerable question is right once it answers.
    return 0.0 if s.missing else float(s.has_ans)


# --------------------------------------------------------------------------------------------
# Public evaluations
# --------------------------------------------------------------------------------------------

def _with_counts(result: dict[str, Any], missing: int, examples: Sequence[SquadExample],
                 predictions: Mapping[str, str]) -> dict[str, Any]:
    """`result` plus ``missing`` (questions without a prediction) and ``extra`` (predictions
    for unknown ids), each only when non-zero."""
    if missing:
        result["missing"] = missing
    ids = {ex.qas_id for ex in examples}
    extra = sum(1 for q in predictions if q not in ids)
    if extra:
        result["extra"] = extra
    return result


def thresholded_scores(examples: Sequence[SquadExample], predictions: Mapping[str, str],
                       na_probs: Mapping[str, float] | None, na_prob_thresh: float,
                       preds_source: str = "predictions", na_source: str = "na_probs"
                       ) -> tuple[tuple[QuestionScore, ...], list[float], list[float]]:
    """Raw scores, then EM and F1 per question after the no-answer rule at `na_prob_thresh`.

    Without ``na_probs`` every probability is 0.0, as in the official script without a
    na-prob file. Errors name `preds_source` / `na_source`.
    """
    _check_thresh(na_prob_thresh)
    scores = score_questions(examples, predictions, preds_source)
    if na_probs is None:
        probs: Mapping[str, float] = {s.qas_id: 0.0 for s in scores if not s.missing}
    else:
        _check_na_coverage(scores, na_probs, na_source)
        probs = na_probs
    exact, f1s = _thresholded(scores, probs, na_prob_thresh)
    return scores, exact, f1s


def evaluate_v2(examples: Sequence[SquadExample], predictions: Mapping[str, str],
                na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0,
                out_image_dir: str | Path | None = None, *, preds_source: str = "predictions",
                na_source: str = "na_probs") -> dict[str, Any]:
    """Official SQuAD 2.0 scores (keys in the official order), in percent.

    Keys: ``exact, f1, total``, then ``HasAns_*``/``NoAns_*`` when such questions exist; with
    ``na_probs``: ``best_exact, best_exact_thresh, best_f1, best_f1_thresh``; with ``na_probs``
    and ``out_image_dir``: ``pr_exact_ap, pr_f1_ap, pr_oracle_ap`` (when some question is
    answerable) and the PNG curves/histograms in that folder.  Then ``missing``/``extra`` only
    when non-zero.  A prediction whose ``na_probs`` value is above ``na_prob_thresh`` counts as
    "".  Every question that has a prediction needs an ``na_probs`` entry.  Errors name
    `preds_source` and `na_source` (the files, when scoring files).
    """
    scores, exact, f1s = thresholded_scores(examples, predictions, na_probs, na_prob_thresh,
                                            preds_source, na_source)
    has_ans = [s.has_ans for s in scores]
    no_ans = [not h for h in has_ans]

    result = eval_block(exact, f1s)
    if any(has_ans):
        result.update({f"HasAns_{k}": v for k, v in eval_block(exact, f1s, has_ans).items()})
    if any(no_ans):
        result.update({f"NoAns_{k}": v for k, v in eval_block(exact, f1s, no_ans).items()})

    if na_probs is not None:
        ranked = _ranked(scores, na_probs)
        best_exact, exact_thresh = _best_threshold(ranked, _exact_of, len(scores))
        best_f1, f1_thresh = _best_threshold(ranked, _f1_of, len(scores))
        result["best_exact"] = best_exact
        result["best_exact_thresh"] = exact_thresh
        result["best_f1"] = best_f1
        result["best_f1_thresh"] = f1_thresh
        if out_image_dir is not None:
            curves = _pr_curves(ranked, sum(has_ans))
            result.update({f"{key}_ap": ap for key, (ap, _, _) in curves.items()})
            histograms = {name: [na_probs[s.qas_id] for s, k in zip(scores, keep, strict=True)
                                 if k and s.qas_id in na_probs]
                          for name, keep in (("hasAns", has_ans), ("noAns", no_ans))}
            plot_official_images(
                out_image_dir, {key: (p, r) for key, (_, p, r) in curves.items()}, histograms)

    return _with_counts(result, sum(1 for s in scores if s.missing), examples, predictions)


def _pr_curves(ranked: Sequence[tuple[float, QuestionScore]], num_has_ans: int
               ) -> dict[str, tuple[float, list[float], list[float]]]:
    """``pr_exact``, ``pr_f1``, ``pr_oracle``: (average precision, precisions, recalls)."""
    if num_has_ans == 0:
        return {}  # recall is undefined without answerable questions
    return {key: _precision_recall(ranked, score_of, num_has_ans)
            for key, score_of in (("pr_exact", _exact_of), ("pr_f1", _f1_of),
                                  ("pr_oracle", _oracle_of))}


def null_baseline(examples: Sequence[SquadExample]) -> dict[str, Any]:
    """The v2 scores of abstaining ("") on every question: the share of unanswerable ones."""
    return evaluate_v2(examples, {ex.qas_id: "" for ex in examples})


def evaluate_v1(examples: Sequence[SquadExample], predictions: Mapping[str, str]
                ) -> dict[str, Any]:
    """Official SQuAD 1.1 scores: ``exact_match`` and ``f1`` in percent, plus ``total``.

    Max over every gold text (no filtering of empty ones); a missing prediction scores 0 and is
    counted under ``missing``; a question without gold answers (not possible in v1.1) scores 0.
    ``extra`` counts predictions for unknown ids.  Both only when non-zero.
    """
    _check_unique_ids(examples)
    em_sum = 0
    f1_sum = 0.0
    missing = 0
    for ex in examples:
        pred = _prediction(predictions, ex.qas_id, "predictions")
        if pred is None:
            missing += 1
            continue
        golds = [a.text for a in ex.answers]
        if not golds:
            continue
        em_sum += max(exact_match(pred, g) for g in golds)
        f1_sum += max(f1(pred, g, both_empty=0.0) for g in golds)
    total = len(examples)
    result: dict[str, Any] = {
        "exact_match": 100.0 * em_sum / total,
        "f1": 100.0 * f1_sum / total,
        "total": total,
    }
    return _with_counts(result, missing, examples, predictions)
