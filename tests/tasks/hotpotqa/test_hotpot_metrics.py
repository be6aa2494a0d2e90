"""The official HotpotQA metric, on hand-computed cases and on the real 53 dev questions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2qa.errors import DataError
from gpt2qa.tasks.hotpotqa.data import load_hotpot, parse_hotpot
from gpt2qa.tasks.hotpotqa.metrics import (
    METRIC_KEYS,
    answer_scores,
    evaluate_hotpot,
    read_hotpot_predictions,
    sp_scores,
)

REAL = ("hotpotqa", "hotpot-dev-distractor-first53.json")


@pytest.mark.parametrize("pred, gold, expected", [
    ("Chief of Protocol", "Chief of Protocol", (1, 1, 1, 1)),
    # 3 common of 5 predicted, 3 gold tokens: prec 0.6, recall 1, F1 0.75
    ("Chief of Protocol of the US", "Chief of Protocol", (0, 0.75, 0.6, 1.0)),
    ("The Yes.", "yes", (1, 1, 1, 1)),            # normalises to "yes"
    ("no", "yes", (0, 0, 0, 0)),
    ("yes it is", "yes", (0, 0, 0, 0)),           # yes/no mismatch: 0 despite a common token
    ("noanswer", "New York", (0, 0, 0, 0)),
    ("New York City", "no", (0, 0, 0, 0)),
    ("", "", (1, 0, 0, 0)),                       # official quirk: EM 1 but F1 0
    ("York", "New York", (0, 2 / 3, 1.0, 0.5)),
])
def test_answer_scores(pred: str, gold: str, expected: tuple) -> None:
    assert answer_scores(pred, gold) == pytest.approx(expected)


@pytest.mark.parametrize("pred, gold, expected", [
    ([("A", 0), ("B", 1)], [("B", 1), ("A", 0)], (1, 1, 1, 1)),
    ([("A", 0), ("C", 2)], [("A", 0), ("B", 1)], (0, 0.5, 0.5, 0.5)),
    ([("A", 0)], [("A", 0), ("B", 1)], (0, 2 / 3, 1.0, 0.5)),
    ([("A", 0), ("A", 0), ["B", 1]], [("A", 0), ("B", 1)], (1, 1, 1, 1)),  # sets; lists ok
    ([], [("A", 0)], (0, 0, 0, 0)),
    ([], [], (1, 0, 0, 0)),
])
def test_sp_scores(pred, gold, expected) -> None:
    assert sp_scores(pred, gold) == pytest.approx(expected)


def test_evaluate_joint_and_missing(hotpot_list) -> None:
    examples = parse_hotpot(hotpot_list(), "t").examples
    answers = {"b1": "Quellton city", "c1": "no"}        # b1: prec 1/2, recall 1
    facts = {"b1": [("Tavrik", 0), ("Zorbel", 0)]}       # b1: prec 1/2, recall 1/2; c1 missing
    result = evaluate_hotpot(examples, answers, facts)
    assert list(result)[:12] == list(METRIC_KEYS)
    # b1 answer: em 0, f1 2/3, prec .5, recall 1; c1: all 1.
    assert result["em"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["prec"] == pytest.approx(0.75)
    # sp: b1 only (c1 missing scores 0).
    assert result["sp_f1"] == pytest.approx(0.25)
    assert result["sp_recall"] == pytest.approx(0.25)
    # joint: b1 prec .25, recall .5, F1 1/3; c1 adds 0 because its sp is missing.
    assert result["joint_prec"] == pytest.approx(0.125)
    assert result["joint_recall"] == pytest.approx(0.25)
    assert result["joint_f1"] == pytest.approx(1 / 6)
    assert result["joint_em"] == 0
    assert (result["missing_sp"], result["total"]) == (1, 2)
    assert "missing_answer" not in result


def test_bad_predictions_file(tmp_path: Path, write) -> None:
    with pytest.raises(DataError, match="official HotpotQA layout"):
        read_hotpot_predictions(write(tmp_path, {"b1": "x"}, "p.json"))
    with pytest.raises(DataError, match=r"sp\.b1\[0\]: id=b1: expected \[title, sentence_index\]"):
        read_hotpot_predictions(write(tmp_path, {"answer": {}, "sp": {"b1": [["A"]]}}, "p.json"))


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2qa", *argv], capture_output=True,
                          text=True, check=False)


@pytest.mark.realdata
def test_real_gold_empty_and_partial(tmp_path: Path, write, shared_data) -> None:
    path = shared_data(*REAL)
    examples = load_hotpot(path).examples
    gold_answers = {ex.qas_id: ex.answer for ex in examples}
    gold_facts = {ex.qas_id: list(ex.supporting_facts) for ex in examples}
    perfect = evaluate_hotpot(examples, gold_answers, gold_facts)
    assert all(perfect[k] == 1.0 for k in METRIC_KEYS)
    empty = evaluate_hotpot(examples, {}, {})
    assert all(empty[k] == 0.0 for k in METRIC_KEYS)
    # "yes" everywhere: right exactly on the yes answers, 0 on every span and "no".
    n_yes = sum(ex.answer == "yes" for ex in examples)
    yes = evaluate_hotpot(examples, dict.fromkeys(gold_answers, "yes"), gold_facts)
    assert yes["em"] == yes["f1"] == yes["joint_f1"] == pytest.approx(n_yes / 53)
    # Question 1 (gold "Chief of Protocol", facts on two paragraphs): a longer answer and
    # only the first gold fact; every other question perfect.
    q = examples[1]
    assert q.answer == "Chief of Protocol"
    answers = {**gold_answers, q.qas_id: "Chief of Protocol of the US"}
    facts = {**gold_facts, q.qas_id: [q.supporting_facts[0]]}
    n_sp = len(set(q.supporting_facts))
    part = evaluate_hotpot(examples, answers, facts)
    sp_f1 = 2 * (1 / n_sp) / (1 + 1 / n_sp)
    assert part["f1"] == pytest.approx((52 + 0.75) / 53)
    assert part["prec"] == pytest.approx((52 + 0.6) / 53)
    assert part["sp_f1"] == pytest.approx((52 + sp_f1) / 53)
    jp, jr = 0.6 * 1.0, 1.0 * (1 / n_sp)
    assert part["joint_f1"] == pytest.approx((52 + 2 * jp * jr / (jp + jr)) / 53)
    assert part["joint_em"] == pytest.approx(52 / 53)
    # The CLI prints the same numbers from files.
    preds = write(tmp_path, {"answer": answers, "sp": facts}, "preds.json")
    run = _cli("evaluate", str(path), str(preds))
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert {k: printed[k] for k in METRIC_KEYS} == pytest.approx({k: part[k] for k in METRIC_KEYS})
    bad = _cli("evaluate", str(path), str(preds), "--breakdown")
    assert bad.returncode == 2 and "applies to SQuAD data" in bad.stderr
