"""Scoring predictions: metrics as decoded, the tuned threshold, the baseline, any threshold.

Train, study, demo and zero-shot score through here, so "the number gpt2qa reports" means one
thing everywhere. The official EM/F1 definitions live in `metrics`; the abstain rule itself is
`decode.decide` (the decode stage owns the threshold, and must not depend on scoring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpt2qa.data import SquadExample
from gpt2qa.decode import Prediction, decide, threshold_from_na_prob
from gpt2qa.metrics import evaluate_v1, evaluate_v2, null_baseline


def answers_at(predictions: Sequence[Prediction], threshold: float) -> dict[str, str]:
    """Each question's answer under `threshold` (the same Predictions, any threshold)."""
    return {p.qas_id: decide(p.best_span, p.score_diff, threshold) for p in predictions}


def score_predictions(examples: Sequence[SquadExample], predictions: Sequence[Prediction],
                      is_v2: bool = True) -> dict[str, Any]:
    """Official metrics of `predictions` as decoded, plus, for SQuAD 2.0, the tuned threshold.

    v2 keys: the official ones (exact, f1, HasAns_*, NoAns_*, best_*), then ``tuned_exact`` /
    ``tuned_f1`` / ``tuned_null_score_diff_threshold`` (the official best-F1 search over
    na_probs, mapped back to a score-diff threshold) and ``null_baseline_exact`` /
    ``null_baseline_f1`` (answering "no answer" to everything). v1.1 data has no abstention:
    its keys are the official v1.1 ones.
    """
    texts = {p.qas_id: p.text for p in predictions}
    if not is_v2:
        return evaluate_v1(examples, texts)
    na_probs = {p.qas_id: p.na_prob for p in predictions}
    metrics = evaluate_v2(examples, texts, na_probs)
    tuned = evaluate_v2(examples, {p.qas_id: p.best_span for p in predictions}, na_probs)
    baseline = null_baseline(examples)
    metrics.update({
        "tuned_exact": tuned["best_exact"], "tuned_f1": tuned["best_f1"],
        "tuned_null_score_diff_threshold": threshold_from_na_prob(tuned["best_f1_thresh"]),
        "null_baseline_exact": baseline["exact"], "null_baseline_f1": baseline["f1"],
    })
    return metrics


def score_at_threshold(examples: Sequence[SquadExample], predictions: Sequence[Prediction],
                       threshold: float) -> dict[str, Any]:
    """Official SQuAD 2.0 metrics of the answers under `threshold` (e.g. the dev-tuned one)."""
    return evaluate_v2(examples, answers_at(predictions, threshold))
