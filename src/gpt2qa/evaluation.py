"""Scoring predictions: metrics as decoded, the tuned threshold, the baseline, any threshold;
scores by question word and answer length; and scoring files (`gpt2qa evaluate`).

Train, study, demo and `gpt2qa evaluate` score through here, so "the number gpt2qa reports" for
a fine-tuned model means one thing everywhere. Zero-shot does not: `zeroshot.run` reports the
official `metrics` keys as they are (what `gpt2qa evaluate` prints for its files) plus the
all-abstain baseline, without the tuned_* keys. The official EM/F1 definitions live in
`metrics`; the abstain rule itself is `decode.decide` (the decode stage owns the threshold, and
must not depend on scoring).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpt2qa.config import DataFormat
from gpt2qa.data import SquadExample
from gpt2qa.decode import Prediction, decide, threshold_deciding_as
from gpt2qa.errors import DataError, GPT2QAError
from gpt2qa.metrics import (
    eval_block,
    evaluate_v1,
    evaluate_v2,
    null_baseline,
    thresholded_scores,
)
from gpt2qa.readers import load_examples
from gpt2qa.reading import loads_json

_WORD = re.compile(r"\w+", re.UNICODE)

QUESTION_WORDS = ("what", "who", "when", "where", "which", "how", "why")
QUESTION_WORD_BUCKETS = (*QUESTION_WORDS, "other")
ANSWER_LENGTH_BUCKETS = ("no-answer", "1", "2", "3", "4-5", "6-10", "11+")


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
        "tuned_null_score_diff_threshold": threshold_deciding_as(predictions,
                                                                 tuned["best_f1_thresh"]),
        "null_baseline_exact": baseline["exact"], "null_baseline_f1": baseline["f1"],
    })
    return metrics


def score_at_threshold(examples: Sequence[SquadExample], predictions: Sequence[Prediction],
                       threshold: float) -> dict[str, Any]:
    """Official SQuAD 2.0 metrics of the answers under `threshold` (e.g. the dev-tuned one)."""
    return evaluate_v2(examples, answers_at(predictions, threshold))


# --------------------------------------------------------------------------------------------
# Breakdown by question word and answer length
# --------------------------------------------------------------------------------------------

def question_word(question: str) -> str:
    """The first of what/who/when/where/which/how/why among the question's words, or "other".

    >>> question_word("In which year, and why, did it close?")
    'which'
    """
    for word in _WORD.findall(question.lower()):
        if word in QUESTION_WORDS:
            return word
    return "other"


def answer_length_bucket(example: SquadExample) -> str:
    """Bucket of the first gold answer's length in white-space words ("no-answer" if none)."""
    if not example.answers:
        return "no-answer"
    n = len(example.answers[0].text.split())
    if n <= 3:
        return str(max(n, 1))
    if n <= 5:
        return "4-5"
    if n <= 10:
        return "6-10"
    return "11+"


def breakdown(examples: Sequence[SquadExample], predictions: Mapping[str, str],
              na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0
              ) -> dict[str, dict[str, dict[str, float]]]:
    """v2 EM/F1 (after the no-answer rule) per question word and per gold answer length.

    Returns ``{"question_word": {bucket: {"total", "exact", "f1"}}, "answer_length": {...}}``
    with buckets in `QUESTION_WORD_BUCKETS` / `ANSWER_LENGTH_BUCKETS` order; empty buckets are
    left out.  Missing predictions score 0, as in `evaluate_v2`.
    """
    _, exact, f1s = thresholded_scores(examples, predictions, na_probs, na_prob_thresh)

    def table(keys: Iterable[str], order: Sequence[str]) -> dict[str, dict[str, float]]:
        keys = list(keys)
        out = {}
        for bucket in order:
            keep = [k == bucket for k in keys]
            if any(keep):
                block = eval_block(exact, f1s, keep)
                out[bucket] = {"total": block["total"], "exact": block["exact"],
                               "f1": block["f1"]}
        return out

    return {
        "question_word": table((question_word(ex.question) for ex in examples),
                               QUESTION_WORD_BUCKETS),
        "answer_length": table((answer_length_bucket(ex) for ex in examples),
                               ANSWER_LENGTH_BUCKETS),
    }


# --------------------------------------------------------------------------------------------
# Files (`gpt2qa evaluate`)
# --------------------------------------------------------------------------------------------

class _Pairs(list):
    """A JSON object kept as its (key, value) pairs, so that duplicate ids can be refused."""


def _read_json_object(path: str | Path, what: str) -> list[tuple[str, Any]]:
    try:
        # utf-8-sig: a leading BOM is allowed, as in SQuAD files (data.load_squad).
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
        doc = loads_json(text, str(path), object_pairs_hook=_Pairs)
    except FileNotFoundError:
        raise GPT2QAError(f"{path}: {what} file not found") from None
    except json.JSONDecodeError as exc:
        raise GPT2QAError(f"{path}: line {exc.lineno} column {exc.colno}: "
                          f"not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise GPT2QAError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise GPT2QAError(f"{path}: not valid JSON: nested too deeply") from None
    except OSError as exc:
        raise GPT2QAError(f"{path}: cannot read {what} file: {exc.strerror}") from None
    if not isinstance(doc, _Pairs):
        raise GPT2QAError(f"{path}: the {what} file must be a JSON object mapping question id "
                          f"to a value, got {type(doc).__name__}")
    seen: set[str] = set()
    for key, _ in doc:
        if key in seen:
            raise DataError(str(path), f"{what} file lists this id twice", qas_id=key)
        seen.add(key)
    return list(doc)


def read_predictions(path: str | Path) -> dict[str, str]:
    """A predictions file: a JSON object mapping question id to answer text ("" = abstain)."""
    out = {}
    for qid, value in _read_json_object(path, "predictions"):
        if not isinstance(value, str):
            kind = "object" if isinstance(value, _Pairs) else type(value).__name__
            raise DataError(str(path), f"prediction must be a string, got {kind}", qas_id=qid)
        out[qid] = value
    return out


def read_na_probs(path: str | Path) -> dict[str, float]:
    """A na-prob file: a JSON object mapping question id to a no-answer probability in [0, 1]."""
    out = {}
    for qid, value in _read_json_object(path, "na-prob"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "object" if isinstance(value, _Pairs) else type(value).__name__
            raise DataError(str(path), f"no-answer probability must be a number, got {kind}",
                            qas_id=qid)
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise DataError(str(path), f"no-answer probability {value!r} is not in [0, 1]",
                            qas_id=qid)
        out[qid] = value
    return out


def evaluate_files(data_path: str | Path, preds_path: str | Path,
                   na_prob_file: str | Path | None = None, na_prob_thresh: float = 1.0,
                   out_image_dir: str | Path | None = None,
                   with_breakdown: bool = False,
                   reading: DataFormat | None = None) -> dict[str, Any]:
    """Score a predictions file against gold answers in any layout `gpt2qa.readers` takes
    (`reading`: --data-format and the column flags), by SQuAD v2.0 or v1.1 rules from the file.

    Backs ``gpt2qa evaluate DATA.json PREDS.json``.  The official keys come first, then
    ``missing``/``extra`` when non-zero, then ``breakdown`` when asked for.  A na-prob file is
    refused for v1.1 data, which has no unanswerable questions.
    """
    dataset = load_examples(data_path, check_offsets=False, reading=reading)
    predictions = read_predictions(preds_path)
    na_probs = read_na_probs(na_prob_file) if na_prob_file is not None else None
    if dataset.is_v2:
        result = evaluate_v2(dataset.examples, predictions, na_probs, na_prob_thresh,
                             out_image_dir, preds_source=str(preds_path),
                             na_source=str(na_prob_file))
    else:
        if na_probs is not None:
            raise GPT2QAError(f"{na_prob_file}: a na-prob file only applies to SQuAD 2.0 data, "
                              f"and {data_path} is scored as SQuAD {dataset.version} (it has "
                              "no unanswerable questions)")
        result = evaluate_v1(dataset.examples, predictions)
    if with_breakdown:
        result["breakdown"] = breakdown(dataset.examples, predictions, na_probs,
                                        na_prob_thresh)
    return result
