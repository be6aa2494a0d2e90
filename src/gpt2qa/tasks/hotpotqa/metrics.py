"""The official HotpotQA evaluation (``hotpot_evaluate_v1.py``), written from its definition.

Per question, with SQuAD's answer normalisation (`metrics.normalize_answer`):

* answer: EM is normalised equality. F1/precision/recall come from the bag of normalised
  tokens, except that when either side normalises to "yes", "no" or "noanswer" and the two
  differ, all three are 0. No common token (two empty answers included) is also 0.
* supporting facts: sets of (title, sentence index) pairs; tp/fp/fn give precision and
  recall (0 when the denominator is 0), F1 (0 when both are 0), and EM = 1 when fp = fn = 0.
* joint: precision = answer precision x sp precision, recall likewise, F1 from those two,
  EM = answer EM x sp EM.

Every key is summed over the gold questions and divided by their number. A question whose
answer is missing from the predictions adds 0 to the answer keys and to every joint key,
and the same for a missing supporting-fact entry: that is what the official script does.

Worked example (gold "Chief of Protocol", facts {(A, 0), (B, 1)}; predicted "Chief of
Protocol of the US", facts {(A, 0), (C, 2)}): answer tokens [chief, of, protocol, of, us]
vs [chief, of, protocol]: 3 common, prec 3/5, recall 1, F1 0.75, EM 0. Facts tp 1, fp 1,
fn 1: prec 0.5, recall 0.5, F1 0.5, EM 0. Joint prec 0.3, recall 0.5, F1 0.375, EM 0.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpt2qa.data import read_json_document
from gpt2qa.errors import DataError, GPT2QAError
from gpt2qa.metrics import normalize_answer
from gpt2qa.tasks.hotpotqa.data import HotpotExample, load_hotpot

METRIC_KEYS = ("em", "f1", "prec", "recall", "sp_em", "sp_f1", "sp_prec", "sp_recall",
               "joint_em", "joint_f1", "joint_prec", "joint_recall")
"""The official output keys, in its order."""

_SPECIAL = ("yes", "no", "noanswer")

Fact = tuple[str, int]


def answer_scores(prediction: str, gold: str) -> tuple[float, float, float, float]:
    """(em, f1, precision, recall) of one answer, as the official script scores it."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    em = float(pred == ref)
    if (pred in _SPECIAL or ref in _SPECIAL) and pred != ref:
        return em, 0.0, 0.0, 0.0
    pred_toks, ref_toks = pred.split(), ref.split()
    same = sum((Counter(pred_toks) & Counter(ref_toks)).values())
    if same == 0:
        return em, 0.0, 0.0, 0.0
    prec, recall = same / len(pred_toks), same / len(ref_toks)
    return em, 2 * prec * recall / (prec + recall), prec, recall


def sp_scores(prediction: Iterable[Fact], gold: Iterable[Fact]) -> tuple[float, float, float, float]:
    """(em, f1, precision, recall) of one supporting-fact set."""
    pred, ref = {tuple(f) for f in prediction}, {tuple(f) for f in gold}
    tp = len(pred & ref)
    fp, fn = len(pred - ref), len(ref - pred)
    prec = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * recall / (prec + recall) if prec + recall else 0.0
    return float(fp + fn == 0), f1, prec, recall


def evaluate_hotpot(examples: Sequence[HotpotExample], answers: Mapping[str, str],
                    facts: Mapping[str, Sequence[Fact]]) -> dict[str, Any]:
    """The official metrics (fractions in [0, 1]) plus ``total``, and ``missing_answer`` /
    ``missing_sp`` / ``extra`` counts when they are non-zero."""
    if not examples:
        raise GPT2QAError("examples: there are no questions to score")
    sums = dict.fromkeys(METRIC_KEYS, 0.0)
    missing = {"answer": 0, "sp": 0}
    for ex in examples:
        parts: list[tuple[float, float, float, float]] = []
        for name, prefix, preds, scorer, gold in (
                ("answer", "", answers, answer_scores, ex.answer),
                ("sp", "sp_", facts, sp_scores, ex.supporting_facts)):
            if ex.qas_id not in preds:
                missing[name] += 1
                continue
            scores = scorer(preds[ex.qas_id], gold)  # type: ignore[operator]
            for key, value in zip(("em", "f1", "prec", "recall"), scores, strict=True):
                sums[prefix + key] += value
            parts.append(scores)
        if len(parts) < 2:
            continue
        a, s = parts
        prec, recall = a[2] * s[2], a[3] * s[3]
        sums["joint_prec"] += prec
        sums["joint_recall"] += recall
        sums["joint_f1"] += 2 * prec * recall / (prec + recall) if prec + recall else 0.0
        sums["joint_em"] += a[0] * s[0]
    n = len(examples)
    result: dict[str, Any] = {key: sums[key] / n for key in METRIC_KEYS}
    result["total"] = n
    ids = {ex.qas_id for ex in examples}
    extra = len((set(answers) | set(facts)) - ids)
    for key, value in (("missing_answer", missing["answer"]), ("missing_sp", missing["sp"]),
                       ("extra", extra)):
        if value:
            result[key] = value
    return result


class _Object(dict):
    """A JSON object that remembers the keys it was given more than once."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def read_hotpot_predictions(path: str | Path) -> tuple[dict[str, str], dict[str, list[Fact]]]:
    """An official predictions file: ``{"answer": {id: text}, "sp": {id: [[title, idx], ...]}}``,
    read as the data files are (`data.read_json_document`: a BOM is fine; bad UTF-8, invalid
    JSON and nesting too deep are one line). An id listed twice is refused, as SQuAD's are."""
    name = str(path)
    if not Path(path).exists():
        raise GPT2QAError(f"{name}: predictions file not found")
    obj = read_json_document(path, object_pairs_hook=_object)
    if not isinstance(obj, dict) or not isinstance(obj.get("answer"), dict) \
            or not isinstance(obj.get("sp"), dict):
        raise DataError(name, 'expected the official HotpotQA layout {"answer": {id: text}, '
                              '"sp": {id: [[title, sentence_index], ...]}}')
    if obj.duplicates:
        raise DataError(name, "the predictions file lists this key twice", obj.duplicates[0])
    for part in ("answer", "sp"):
        if obj[part].duplicates:
            qid = obj[part].duplicates[0]
            raise DataError(name, "the predictions file lists this id twice", f"{part}.{qid}",
                            qid)
    answers: dict[str, str] = {}
    for qid, text in obj["answer"].items():
        if not isinstance(text, str):
            raise DataError(name, f"answer must be a string, got {type(text).__name__}",
                            f"answer.{qid}", qid)
        answers[qid] = text
    facts: dict[str, list[Fact]] = {}
    for qid, pairs in obj["sp"].items():
        if not isinstance(pairs, list):
            raise DataError(name, "expected a list of [title, sentence_index]", f"sp.{qid}", qid)
        out = []
        for k, pair in enumerate(pairs):
            if (not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str)
                    or not isinstance(pair[1], int) or isinstance(pair[1], bool)):
                raise DataError(name, f"expected [title, sentence_index], got {json.dumps(pair)}",
                                f"sp.{qid}[{k}]", qid)
            out.append((pair[0], pair[1]))
        facts[qid] = out
    return answers, facts


def predictions_json(answers: Mapping[str, str],
                     facts: Mapping[str, Iterable[Fact]]) -> dict[str, Any]:
    """The official predictions layout, as `io.write_json_atomic` writes it."""
    return {"answer": dict(answers),
            "sp": {qid: [[t, i] for t, i in pairs] for qid, pairs in facts.items()}}


def evaluate_hotpot_files(data_path: str | Path, preds_path: str | Path) -> dict[str, Any]:
    """Backs ``gpt2qa evaluate HOTPOT.json PREDS.json``."""
    dataset = load_hotpot(data_path)
    answers, facts = read_hotpot_predictions(preds_path)
    return evaluate_hotpot(dataset.examples, answers, facts)
