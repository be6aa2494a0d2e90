"""How well a cell's na_prob separates and predicts unanswerable questions: AUROC and ECE.

Separation: `na_auroc` is the ROC AUC of na_prob for "unanswerable" (threshold-free; 0.5 is
chance), which shows whether a model can tell the two kinds apart even where F1 sits at the
all-no-answer baseline.

Calibration: `reliability` bins na_prob into equal-width bins and compares each bin's mean
na_prob with the observed share of unanswerable questions; ECE is the count-weighted mean of
the absolute gaps.  Worked example (2 bins): probs (0.2, 0.2, 0.8, 0.8) with unanswerable
flags (no, no, yes, no): bin [0, 0.5) has mean 0.2 and share 0 (gap 0.2), bin [0.5, 1] mean
0.8 and share 0.5 (gap 0.3), so ECE = 0.5 * 0.2 + 0.5 * 0.3 = 0.25.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpt2qa.errors import GPT2QAError


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width bin of na_prob; mean_prob and frac_unanswerable are None when empty."""

    lo: float
    hi: float
    count: int
    mean_prob: float | None
    frac_unanswerable: float | None


def reliability(na_probs: Sequence[float], has_ans: Sequence[bool], n_bins: int = 10
                ) -> tuple[tuple[ReliabilityBin, ...], float]:
    """Reliability of na_prob as P(unanswerable), and the expected calibration error.

    Bins are [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1] (the last one closed).  ECE is the sum
    over bins of (count / total) * |mean na_prob - share unanswerable|; see the module
    docstring for a worked example.
    """
    if n_bins < 1:
        raise GPT2QAError(f"reliability: n_bins must be at least 1; got {n_bins}")
    if len(na_probs) != len(has_ans):
        raise GPT2QAError(f"reliability: {len(na_probs)} probabilities but {len(has_ans)} labels")
    if not na_probs:
        raise GPT2QAError("reliability: no questions")
    sums = [0.0] * n_bins
    unans = [0] * n_bins
    counts = [0] * n_bins
    for p, h in zip(na_probs, has_ans, strict=True):
        if not 0.0 <= p <= 1.0:
            raise GPT2QAError(f"reliability: probability {p!r} is not in [0, 1]")
        b = min(int(p * n_bins), n_bins - 1)
        sums[b] += p
        unans[b] += int(not h)
        counts[b] += 1
    bins = []
    ece = 0.0
    total = len(na_probs)
    for b in range(n_bins):
        n = counts[b]
        mean = sums[b] / n if n else None
        frac = unans[b] / n if n else None
        if n:
            ece += n / total * abs(sums[b] / n - unans[b] / n)
        bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, n, mean, frac))
    return tuple(bins), ece


def na_auroc(na_probs: Sequence[float], has_ans: Sequence[bool]) -> float | None:
    """How well na_prob ranks unanswerable above answerable questions (ROC AUC, ties = 1/2).

    Threshold-free, so it shows whether a model can *tell* the two apart even where its
    decision rule abstains on everything. 0.5 is chance; None when a class is absent.
    Worked example: unanswerable at (0.9, 0.4), answerable at (0.4, 0.1): of the 4 pairs,
    3 are ordered right and one is a tie, so AUROC = 3.5 / 4 = 0.875.
    """
    if len(na_probs) != len(has_ans):
        raise GPT2QAError(f"na_auroc: {len(na_probs)} probabilities but {len(has_ans)} labels")
    n_pos = sum(1 for h in has_ans if not h)
    n_neg = len(has_ans) - n_pos
    if not n_pos or not n_neg:
        return None
    # Mann-Whitney U from average ranks (ties share their mean rank).
    order = sorted(range(len(na_probs)), key=lambda i: na_probs[i])
    ranks = [0.0] * len(order)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and na_probs[order[j + 1]] == na_probs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, h in zip(ranks, has_ans, strict=True) if not h)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
