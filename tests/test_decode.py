"""Decoding on hand-written logits: n-best, ties, windows, null threshold, output files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gpt2qa.config import DecodeConfig
from gpt2qa.decode import (
    Prediction,
    WindowOutput,
    decide,
    decode,
    decode_example,
    sigmoid,
    threshold_deciding_as,
    threshold_from_na_prob,
    window_candidates,
    write_predictions,
)
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature

CONTEXT = "Paris is big. Rome is old."
# Five context tokens: "Paris"(0,5) " is"(6,8) " big."(9,13) " Rome"(14,18) " is old."(19,26)
SPANS = ((0, 5), (6, 8), (9, 13), (14, 18), (19, 26))


def feature(spans=SPANS, offset=2, null_index=None, qas_id="q", window=0) -> Feature:
    """A window laid out as [q, sep, context..., null]."""
    n = offset + len(spans) + 1
    null = n - 1 if null_index is None else null_index
    return Feature(qas_id=qas_id, example_index=0, window_index=window,
                   input_ids=tuple(range(n)), context_offset=offset, token_spans=tuple(spans),
                   null_index=null, start_position=null, end_position=null)


def output(start_ctx, end_ctx, null=0.0, offset=2) -> WindowOutput:
    """Logits over the whole window: -100 outside the context, given values inside."""
    n = offset + len(start_ctx) + 1
    start = np.full(n, -100.0)
    end = np.full(n, -100.0)
    start[offset: offset + len(start_ctx)] = start_ctx
    end[offset: offset + len(end_ctx)] = end_ctx
    return WindowOutput(start, end, null)


@pytest.mark.parametrize(("start", "end", "n_best", "max_len", "expected"), [
    # best pair is start 3, end 3 ("Rome")
    ([0, 0, 0, 5, 0], [0, 0, 0, 5, 0], 20, 30, [("Rome", 10.0)]),
    # reversed pairs are dropped: best start after best end
    ([0, 0, 0, 0, 9], [9, 0, 0, 0, 1], 20, 30, [("is old.", 10.0)]),
    # max_answer_length 1 forbids "Paris is big." (3 tokens)
    ([9, 0, 0, 0, 0], [0, 0, 9, 0, 1], 20, 1, [("Paris", 9.0)]),
    # ties: equal scores come in position order (earlier start, then earlier end)
    ([1, 1, 0, 0, 0], [0, 1, 0, 0, 0], 20, 30, [("Paris is", 2.0), ("is", 2.0)]),
])
def test_window_candidates_best(start, end, n_best, max_len, expected):
    cands = window_candidates(feature(), output(start, end), CONTEXT, n_best, max_len)
    got = [(c.text, c.score) for c in cands[: len(expected)]]
    assert got == expected
    for c in cands:
        assert CONTEXT[c.start: c.end] == c.text


def test_window_candidates_never_leave_the_context():
    # Huge logits on question and null positions must not produce spans.
    out = output([0, 0, 0, 0, 0], [0, 0, 0, 0, 0])
    out.start_logits[0] = out.end_logits[0] = 1000.0
    out.start_logits[-1] = out.end_logits[-1] = 1000.0
    cands = window_candidates(feature(), out, CONTEXT, 20, 30)
    assert cands and all(c.score == 0.0 for c in cands)


def test_n_best_size_limits_and_orders():
    cands = window_candidates(feature(), output([5, 4, 3, 2, 1], [1, 2, 3, 4, 5]), CONTEXT, 3, 30)
    assert len(cands) == 3
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)


def test_null_threshold_rule():
    # best span "Rome" = 4 + 4 = 8; null 10 -> diff 2
    f, o = feature(), output([0, 0, 0, 4, 0], [0, 0, 0, 4, 0], null=10.0)
    for threshold, expected in [(0.0, ""), (1.99, ""), (2.0, "Rome"), (5.0, "Rome")]:
        pred = decode_example("q", CONTEXT, [f], [o], DecodeConfig(null_score_diff_threshold=threshold))
        assert pred.text == expected
        assert pred.best_span == "Rome"
        assert pred.score_diff == pytest.approx(2.0)
        assert pred.na_prob == pytest.approx(1 / (1 + math.exp(-2.0)))


def test_classifier_null_scoring_uses_the_logit_alone():
    f, o = feature(), output([0, 0, 0, 4, 0], [0, 0, 0, 4, 0], null=-3.0)
    pred = decode_example("q", CONTEXT, [f], [o], DecodeConfig(null_scoring="classifier"))
    assert pred.text == "Rome" and pred.score_diff == -3.0
    o2 = output([0, 0, 0, 4, 0], [0, 0, 0, 4, 0], null=0.5)
    assert decode_example("q", CONTEXT, [f], [o2], DecodeConfig(null_scoring="classifier")).text == ""


def test_windows_aggregate_best_span_and_min_null():
    # Window A covers tokens 0-2, window B tokens 2-4 (overlap on " big.").
    fa = feature(spans=SPANS[:3], window=0)
    fb = feature(spans=SPANS[2:], window=1)
    oa = output([1, 0, 2], [0, 0, 2], null=6.0)      # best "big." = 4
    ob = output([3, 5, 0], [0, 5, 0], null=9.0)      # best "Rome" = 10
    pred = decode_example("q", CONTEXT, [fa, fb], [oa, ob], DecodeConfig())
    assert pred.text == "Rome"
    assert pred.score_diff == pytest.approx(6.0 - 10.0)  # min null over windows - best span
    texts = [c.text for c in pred.nbest]
    assert texts[0] == "Rome" and "big." in texts
    assert len({(c.start, c.end) for c in pred.nbest}) == len(pred.nbest)  # no duplicates
    # An answer crossing the window boundary is found only where both ends are in one window.
    assert "big. Rome" in texts


def test_overlap_keeps_best_score_of_shared_span():
    fa = feature(spans=SPANS[:3], window=0)
    fb = feature(spans=SPANS[2:], window=1)
    oa = output([0, 0, 7], [0, 0, 7])   # " big." scores 14 in window A
    ob = output([1, 0, 0], [1, 0, 0])   # and 2 in window B
    pred = decode_example("q", CONTEXT, [fa, fb], [oa, ob], DecodeConfig())
    big = [c for c in pred.nbest if c.text == "big."]
    assert len(big) == 1 and big[0].score == 14.0


def test_window_where_question_fills_most_of_the_length():
    # One context token only.
    f = feature(spans=SPANS[3:4], offset=30)
    o = output([2.0], [1.0], null=0.0, offset=30)
    pred = decode_example("q", CONTEXT, [f], [o], DecodeConfig())
    assert pred.text == "Rome" and pred.nbest[0].score == 3.0


def test_empty_context_window_means_no_answer():
    f = feature(spans=(), offset=3)
    o = WindowOutput(np.zeros(4), np.zeros(4), 0.0)
    pred = decode_example("q", CONTEXT, [f], [o], DecodeConfig())
    assert pred.text == "" and pred.na_prob == 1.0 and pred.nbest == ()


def test_decode_groups_by_example_and_writes_files(tmp_path):
    f1, f2 = feature(qas_id="a"), feature(qas_id="b")
    o1 = output([0, 0, 0, 4, 0], [0, 0, 0, 4, 0], null=0.0)
    o2 = output([0, 0, 0, 4, 0], [0, 0, 0, 4, 0], null=20.0)
    preds = decode({"a": CONTEXT, "b": CONTEXT}, [f1, f2], [o1, o2], DecodeConfig())
    assert [(p.qas_id, p.text) for p in preds] == [("a", "Rome"), ("b", "")]
    paths = write_predictions(preds, tmp_path / "out")
    assert json.loads(paths["predictions"].read_text()) == {"a": "Rome", "b": ""}
    na = json.loads(paths["na_probs"].read_text())
    assert 0.0 <= na["a"] < 0.5 < na["b"] <= 1.0
    nbest = json.loads(paths["nbest"].read_text())
    top = nbest["a"][0]
    assert top == {"text": "Rome", "score": 8.0, "start": 14, "end": 18}
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_threshold_round_trip():
    for diff in (-5.0, -0.3, 0.0, 2.5, 10.0):
        assert threshold_from_na_prob(sigmoid(diff)) == pytest.approx(diff, abs=1e-6)


# score_diffs of the last answered question; logit(sigmoid(d)) lands an ulp below the first two.
@pytest.mark.parametrize("boundary", [0.482, -1.27085470670648, 0.3, -1.2, 2.5])
def test_tuned_threshold_decides_every_question_as_the_na_prob_threshold(boundary):
    """The official best-threshold rule answers where na_prob <= p*; the saved score-diff
    threshold must answer the very same questions, the last answered one included."""
    diffs = (boundary - 1.0, boundary - 1e-9, boundary, boundary + 1e-9, boundary + 2.0)
    preds = [Prediction(f"q{k}", "", "x", d, sigmoid(d), ()) for k, d in enumerate(diffs)]
    p_star = sigmoid(boundary)
    official = [p.na_prob > p_star for p in preds]
    assert official == [False, False, False, True, True]
    threshold = threshold_deciding_as(preds, p_star)
    assert [decide(p.best_span, p.score_diff, threshold) == "" for p in preds] == official
    # With no question answered, the na-prob threshold is mapped back as it is.
    assert threshold_deciding_as(preds[3:], p_star) == threshold_from_na_prob(p_star)


def test_tuned_threshold_stays_finite_when_a_question_has_no_span():
    """A question without any span has score_diff inf, na_prob 1 and best span "": answering
    everything (p* = 1) must not make the saved threshold infinite."""
    preds = [Prediction("a", "x", "x", -2.0, sigmoid(-2.0), ()),
             Prediction("b", "y", "y", 40.0, sigmoid(40.0), ()),
             Prediction("c", "", "", math.inf, 1.0, ())]
    assert sigmoid(40.0) == 1.0
    assert threshold_deciding_as(preds, 1.0) == 40.0
    assert [decide(p.best_span, p.score_diff, 40.0) for p in preds] == ["x", "y", ""]


def test_logit_of_the_na_prob_threshold_alone_can_drop_the_last_answer():
    """Why `threshold_deciding_as` exists: the round trip loses the boundary question here."""
    assert threshold_from_na_prob(sigmoid(0.482)) < 0.482


def test_config_checks_and_mismatch():
    with pytest.raises(GPT2QAError):
        DecodeConfig(n_best_size=0)
    with pytest.raises(GPT2QAError):
        DecodeConfig(null_score_diff_threshold=math.inf)
    with pytest.raises(GPT2QAError):
        decode({"q": CONTEXT}, [feature()], [], DecodeConfig())
