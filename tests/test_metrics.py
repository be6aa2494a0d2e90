"""Tests for gpt2qa.metrics: official SQuAD v2.0 / v1.1 scoring, hand-computed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt2qa.data import Answer, SquadExample, examples_to_squad_json, load_squad
from gpt2qa.errors import GPT2QAError
from gpt2qa.evaluation import (
    answer_length_bucket,
    breakdown,
    evaluate_files,
    question_word,
    read_na_probs,
    read_predictions,
)
from gpt2qa.metrics import (
    evaluate_v1,
    evaluate_v2,
    exact_match,
    f1,
    get_tokens,
    normalize_answer,
    null_baseline,
    score_questions,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ex(qid: str, question: str, *answers: str, context: str = "") -> SquadExample:
    """An example whose answers start at their first occurrence in the context."""
    context = context or " ".join(answers) or "Nothing here."
    return SquadExample(qas_id=qid, question=question, context=context,
                        answers=tuple(Answer(a, context.find(a)) for a in answers),
                        is_impossible=not answers)


# Six questions; raw scores worked out by hand:
#   q1 pred "1889" vs ["1889", "in 1889"]         EM 1  F1 1
#   q2 pred "Eiffel" vs ["Gustave Eiffel"]        EM 0  F1 2/3  (P 1, R 1/2)
#   q3 unanswerable, pred ""                      EM 1  F1 1
#   q4 unanswerable, pred "the sea"               EM 0  F1 0
#   q5 pred "412 km" vs ["412 kilometres"]        EM 0  F1 1/2  (P 1/2, R 1/2)
#   q6 pred "" vs ["Tavrik"]                      EM 0  F1 0
MINI = [
    ex("q1", "What year was the tower completed?", "1889", "in 1889"),
    ex("q2", "Who designed the tower?", "Gustave Eiffel"),
    ex("q3", "When did the river open?"),
    ex("q4", "Where is the river's second source?"),
    ex("q5", "How long is the river Zorbel?", "412 kilometres"),
    ex("q6", "Which city did Quell Mebbit found?", "Tavrik"),
]
PREDS = {"q1": "1889", "q2": "Eiffel", "q3": "", "q4": "the sea", "q5": "412 km", "q6": ""}
NA = {"q1": 0.1, "q2": 0.6, "q3": 0.9, "q4": 0.7, "q5": 0.3, "q6": 0.8}
OFFICIAL_KEYS = ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                 "NoAns_exact", "NoAns_f1", "NoAns_total"]
BEST_KEYS = ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
PR_KEYS = ["pr_exact_ap", "pr_f1_ap", "pr_oracle_ap"]


def approx_dict(expected: dict) -> dict:
    return {k: pytest.approx(v, abs=1e-9) for k, v in expected.items()}


# --------------------------------------------------------------------------------------------
# Normalisation and per-answer scores
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Hello, World!", "hello world"),
    ("The Eiffel Tower", "eiffel tower"),
    ("theater", "theater"),                       # article inside a word stays
    ("The Theater and an anthem", "theater and anthem"),
    ("a-team", "ateam"),                          # punctuation goes before articles
    ("an apple a day", "apple day"),
    ("THE", ""),
    ("l'an 2000", "lan 2000"),
    ("  tab\tand\nnew\u00a0line  ", "tab and new line"),
    ("Émile Zola!", "émile zola"),
    ("éthe thé", "éthe thé"),                     # unicode letters are word characters
    ("the café", "café"),
    ("¿Qué? — «sí»", "¿qué — «sí»"),              # only ASCII punctuation is removed
    ("$1,000.50", "100050"),
])
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("", []), ("the", []), ("The Eiffel  Tower.", ["eiffel", "tower"]), ("!!!", []),
])
def test_get_tokens(text: str, expected: list[str]) -> None:
    assert get_tokens(text) == expected


@pytest.mark.parametrize("pred, gold, em, f1_score", [
    ("1889", "1889", 1, 1.0),
    ("The Eiffel Tower!", "eiffel tower", 1, 1.0),
    ("in 1889", "1889", 0, 2 / 3),                # P 1/2, R 1
    ("Eiffel", "Gustave Eiffel", 0, 2 / 3),       # P 1, R 1/2
    ("412 km", "412 kilometres", 0, 0.5),
    ("paris paris", "paris", 0, 2 / 3),           # counts are clipped: 1 in common
    ("Paris France", "France Paris", 0, 1.0),     # a bag of tokens
    ("a b c", "d e", 0, 0.0),
    ("", "", 1, 1.0),                             # abstain on unanswerable
    ("the", "", 1, 1.0),                          # normalises to nothing
    ("", "1889", 0, 0.0),
    ("1889", "", 0, 0.0),
])
def test_exact_match_and_f1(pred: str, gold: str, em: int, f1_score: float) -> None:
    assert exact_match(pred, gold) == em
    assert f1(pred, gold) == pytest.approx(f1_score, abs=1e-12)
    assert f1(gold, pred) == pytest.approx(f1_score, abs=1e-12)


@pytest.mark.parametrize("pred, gold", [("", ""), ("the", "!"), ("An", "")])
def test_f1_v1_and_v2_differ_only_when_both_sides_are_empty(pred: str, gold: str) -> None:
    assert f1(pred, gold) == 1.0                     # v2.0: abstaining on an unanswerable one
    assert f1(pred, gold, both_empty=0.0) == 0.0     # v1.1: no token in common
    assert f1("1889", gold, both_empty=0.0) == f1("1889", gold) == 0.0  # one side empty


def test_evaluate_v1_scores_an_empty_normalised_match_em_1_f1_0() -> None:
    # As evaluate-v1.1.py: "an" and "the" both normalise to "" (EM 1), share no token (F1 0).
    result = evaluate_v1([ex("q", "Which article?", "the")], {"q": "an"})
    assert (result["exact_match"], result["f1"]) == (100.0, 0.0)


def test_score_questions_raw_scores() -> None:
    scores = score_questions(MINI, PREDS)
    assert [(s.qas_id, s.has_ans, s.exact) for s in scores] == [
        ("q1", True, 1), ("q2", True, 0), ("q3", False, 1), ("q4", False, 0),
        ("q5", True, 0), ("q6", True, 0)]
    assert [s.f1 for s in scores] == pytest.approx([1, 2 / 3, 1, 0, 0.5, 0])


def test_gold_that_normalises_to_nothing_counts_as_no_answer() -> None:
    # The v2 rule drops gold texts that normalise to "", leaving [""]: abstaining is right.
    only_punct = [ex("p1", "What?", "!!!")]
    assert evaluate_v2(only_punct, {"p1": ""})["exact"] == 100.0
    assert evaluate_v2(only_punct, {"p1": "!!!"})["f1"] == 100.0
    # ... while v1.1 keeps it: EM matches ("" == ""), but F1 has no common token.
    assert evaluate_v1(only_punct, {"p1": ""}) == {"exact_match": 100.0, "f1": 0.0, "total": 1}


# --------------------------------------------------------------------------------------------
# evaluate_v2
# --------------------------------------------------------------------------------------------

def test_evaluate_v2_without_na_probs() -> None:
    result = evaluate_v2(MINI, PREDS)
    assert list(result) == OFFICIAL_KEYS
    assert result == approx_dict({
        "exact": 100.0 * 2 / 6, "f1": 100.0 * (1 + 2 / 3 + 1 + 0.5) / 6, "total": 6,
        "HasAns_exact": 25.0, "HasAns_f1": 100.0 * (1 + 2 / 3 + 0.5) / 4, "HasAns_total": 4,
        "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2,
    })


# Above the threshold a prediction becomes "": right (1) when unanswerable, else wrong (0).
@pytest.mark.parametrize("thresh, abstained, exact, f1_sum", [
    (1.0, [], 2, 1 + 2 / 3 + 1 + 0.5),
    (0.65, ["q3", "q4", "q6"], 3, 1 + 2 / 3 + 1 + 1 + 0.5),
    (0.5, ["q2", "q3", "q4", "q6"], 3, 1 + 1 + 1 + 0.5),
    (0.0, ["q1", "q2", "q3", "q4", "q5", "q6"], 2, 2),
])
def test_evaluate_v2_na_prob_threshold(thresh: float, abstained: list[str], exact: int,
                                       f1_sum: float) -> None:
    result = evaluate_v2(MINI, PREDS, NA, na_prob_thresh=thresh)
    assert list(result) == OFFICIAL_KEYS + BEST_KEYS
    assert result["exact"] == pytest.approx(100.0 * exact / 6, abs=1e-9)
    assert result["f1"] == pytest.approx(100.0 * f1_sum / 6, abs=1e-9)
    # The same numbers as writing "" for the abstained questions and using no threshold.
    blanked = {q: ("" if q in abstained else p) for q, p in PREDS.items()}
    plain = evaluate_v2(MINI, blanked)
    assert {k: result[k] for k in OFFICIAL_KEYS} == approx_dict(plain)


def test_best_thresholds_by_hand() -> None:
    # Start at 2 (both unanswerable right when all abstain); walk by na_prob:
    #   EM:  q1 +1 -> 3 (best, 0.1); q5 +0; q2 +0; q4 -1 ("the sea") -> 2; q6 +0; q3 +0
    #   F1:  q1 +1 -> 3 (0.1); q5 +.5 -> 3.5 (0.3); q2 +2/3 -> 4.17 (0.6); q4 -1; q6; q3
    result = evaluate_v2(MINI, PREDS, NA)
    assert result["best_exact"] == pytest.approx(100.0 * 3 / 6, abs=1e-9)
    assert result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == pytest.approx(100.0 * (2 + 1 + 0.5 + 2 / 3) / 6, abs=1e-9)
    assert result["best_f1_thresh"] == 0.6


@pytest.mark.parametrize("order, best_exact, best_thresh", [
    # Tied probabilities are walked in na_probs order, as the official stable sort does:
    # answerable-right first reaches 2 of 2 at 0.5; unanswerable-wrong first never beats 1.
    (["a", "u"], 100.0, 0.5),
    (["u", "a"], 50.0, 0.0),
])
def test_best_threshold_ties_follow_na_probs_order(order: list[str], best_exact: float,
                                                   best_thresh: float) -> None:
    examples = [ex("a", "What?", "yes"), ex("u", "Why?")]
    preds = {"a": "yes", "u": "no"}
    result = evaluate_v2(examples, preds, {q: 0.5 for q in order})
    assert result["best_exact"] == pytest.approx(best_exact)
    assert result["best_exact_thresh"] == best_thresh


def test_pr_average_precision_by_hand(tmp_path: Path) -> None:
    # Order by na_prob: q1 .1, q5 .3, q2 .6, q4 .7, q6 .8, q3 .9; 4 answerable; no ties.
    #   EM: only q1 adds -> P 1, R 1/4 at the first point; AP 0.25.
    #   F1: q1 (P 1, R .25) + q5 (P .75, R .375) + q2 (P 13/18, R 13/24) -> .25 + .09375 + 13/108
    #   oracle: P 1 for q1,q5,q2 (R .75), q4 adds nothing, q6 P 4/5 R 1 -> .75 + .2
    result = evaluate_v2(MINI, PREDS, NA, out_image_dir=tmp_path)
    assert list(result) == OFFICIAL_KEYS + BEST_KEYS + PR_KEYS
    assert result["pr_exact_ap"] == pytest.approx(25.0, abs=1e-9)
    assert result["pr_f1_ap"] == pytest.approx(100.0 * (0.25 + 0.09375 + 13 / 108), abs=1e-9)
    assert result["pr_oracle_ap"] == pytest.approx(95.0, abs=1e-9)


@pytest.mark.parametrize("order", [["a", "b", "c"], ["b", "a", "c"]])
def test_pr_points_only_between_distinct_probabilities(tmp_path: Path, order: list[str]) -> None:
    # a and b share 0.5, so no threshold separates them: first point after both
    # (P 1/2, R 1/2), then after c (P 2/3, R 1): AP = 1/4 + 1/3, whatever the tie order.
    examples = [ex("a", "What?", "yes"), ex("b", "Why?"), ex("c", "Who?", "Ann")]
    preds = {"a": "yes", "b": "", "c": "Ann"}
    probs = {"a": 0.5, "b": 0.5, "c": 0.9}
    result = evaluate_v2(examples, preds, {q: probs[q] for q in order}, out_image_dir=tmp_path)
    assert result["pr_exact_ap"] == pytest.approx(100.0 * (1 / 4 + 1 / 3), abs=1e-9)


def test_images_are_written_as_png(tmp_path: Path) -> None:
    out = tmp_path / "images" / "nested"
    evaluate_v2(MINI, PREDS, NA, out_image_dir=out)
    names = ["pr_exact.png", "pr_f1.png", "pr_oracle.png", "na_prob_hist_hasAns.png",
             "na_prob_hist_noAns.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temp files left
    for name in names:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_no_images_without_na_probs(tmp_path: Path) -> None:
    result = evaluate_v2(MINI, PREDS, out_image_dir=tmp_path / "img")
    assert list(result) == OFFICIAL_KEYS
    assert not (tmp_path / "img").exists()


def test_all_unanswerable_has_no_pr_keys(tmp_path: Path) -> None:
    examples = [ex("u1", "Why?"), ex("u2", "Why not?")]
    result = evaluate_v2(examples, {"u1": "", "u2": "x"}, {"u1": 0.2, "u2": 0.9},
                         out_image_dir=tmp_path)
    assert list(result) == ["exact", "f1", "total", "NoAns_exact", "NoAns_f1", "NoAns_total",
                            *BEST_KEYS]
    assert result["exact"] == 50.0
    # Start at 2; u1 answers "" (no change), u2 answers "x" (-1): best stays 2 at 0.0.
    assert (result["best_exact"], result["best_exact_thresh"]) == (100.0, 0.0)
    assert [p.name for p in tmp_path.iterdir()] == ["na_prob_hist_noAns.png"]


@pytest.mark.parametrize("na_has_q3", [False, True])  # a probability for q3 changes nothing
def test_missing_predictions_score_zero_and_are_never_rescued(na_has_q3: bool) -> None:
    preds = {q: p for q, p in PREDS.items() if q != "q3"}
    na = NA if na_has_q3 else {q: p for q, p in NA.items() if q != "q3"}
    result = evaluate_v2(MINI, preds, na, na_prob_thresh=0.5)
    # q3 (unanswerable) would be rescued by na 0.9 > 0.5 if present; missing, it scores 0.
    # Scores: q1 1, q2 0 (rescue of answerable), q3 0, q4 1 (rescued), q5 0/0.5, q6 0.
    assert result["exact"] == pytest.approx(100.0 * 2 / 6)
    assert result["f1"] == pytest.approx(100.0 * 2.5 / 6)
    assert result["total"] == 6 and result["NoAns_total"] == 2
    assert result["NoAns_exact"] == 50.0
    # Walk starts at 1 (only q4 can be right by abstaining); q1 -> 2 at 0.1; q4 -> 1.
    assert result["best_exact"] == pytest.approx(100.0 * 2 / 6)
    assert result["best_exact_thresh"] == 0.1
    assert list(result)[-1] == "missing" and result["missing"] == 1


def test_missing_prediction_ranks_first_in_pr_curves(tmp_path: Path) -> None:
    # c has no prediction: it counts as answered (wrongly) at every threshold, so it comes
    # first. Order c, a (.2), b (.5); 2 answerable. EM: c P 0 R 0; a P 1/2 R 1/2 -> AP 25.
    # The oracle gives c nothing either (a perfect reader still needs a prediction): 25.
    examples = [ex("a", "What?", "yes"), ex("b", "Why?"), ex("c", "Who?", "Ann")]
    result = evaluate_v2(examples, {"a": "yes", "b": ""}, {"a": 0.2, "b": 0.5, "c": 0.1},
                         out_image_dir=tmp_path)
    assert result["pr_exact_ap"] == pytest.approx(25.0, abs=1e-9)
    assert result["pr_oracle_ap"] == pytest.approx(25.0, abs=1e-9)
    assert result["missing"] == 1


def test_missing_prediction_for_answerable_question() -> None:
    preds = {q: p for q, p in PREDS.items() if q != "q1"}
    result = evaluate_v2(MINI, preds)
    assert result["exact"] == pytest.approx(100.0 * 1 / 6)
    assert result["HasAns_exact"] == 0.0
    assert result["missing"] == 1 and "extra" not in result


def test_extra_predictions_are_ignored_and_counted() -> None:
    result = evaluate_v2(MINI, {**PREDS, "zz": "x", "yy": ""})
    assert result == {**evaluate_v2(MINI, PREDS), "extra": 2}
    assert list(result)[-1] == "extra"


def test_na_probs_must_cover_answered_questions() -> None:
    na = {q: p for q, p in NA.items() if q != "q2"}
    with pytest.raises(GPT2QAError, match="id=q2"):
        evaluate_v2(MINI, PREDS, na)


@pytest.mark.parametrize("examples, preds, match", [
    (MINI + [ex("q1", "Again?", "x")], PREDS, "id=q1: duplicate"),
    ([], {}, "no questions"),
    (MINI, {**PREDS, "q5": None}, "id=q5: prediction must be a string"),
])
def test_evaluate_v2_bad_input(examples: list[SquadExample], preds: dict, match: str) -> None:
    with pytest.raises(GPT2QAError, match=match):
        evaluate_v2(examples, preds)


def test_null_baseline_is_share_of_unanswerable() -> None:
    result = null_baseline(MINI)
    assert result == approx_dict({
        "exact": 100.0 * 2 / 6, "f1": 100.0 * 2 / 6, "total": 6,
        "HasAns_exact": 0.0, "HasAns_f1": 0.0, "HasAns_total": 4,
        "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 2,
    })


# --------------------------------------------------------------------------------------------
# evaluate_v1
# --------------------------------------------------------------------------------------------

V1 = [
    ex("a", "Who won?", "Denver Broncos", "the Broncos"),
    ex("b", "Where?", "Santa Clara, California", "Levi's Stadium"),
    ex("c", "When?", "1889"),
]


def test_evaluate_v1() -> None:
    # a: "Broncos" == norm("the Broncos") -> EM 1, F1 1; b: vs [santa clara california]
    # P 1, R 2/3 -> F1 0.8; c: missing -> 0.
    result = evaluate_v1(V1, {"a": "Broncos", "b": "Santa Clara", "x": "extra"})
    assert list(result) == ["exact_match", "f1", "total", "missing", "extra"]
    assert result == approx_dict({"exact_match": 100.0 / 3, "f1": 100.0 * 1.8 / 3, "total": 3,
                                  "missing": 1, "extra": 1})


def test_evaluate_v1_complete_has_no_counts() -> None:
    result = evaluate_v1(V1, {"a": "Denver", "b": "", "c": "in 1889"})
    # a: vs "Denver Broncos" P 1 R 1/2 -> 2/3; b: empty -> 0; c: P 1/2 R 1 -> 2/3.
    assert result == approx_dict({"exact_match": 0.0, "f1": 100.0 * (4 / 3) / 3, "total": 3})


# --------------------------------------------------------------------------------------------
# Breakdown
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("question, word", [
    ("What is it?", "what"),
    ("In which year, and why, did it close?", "which"),
    ("WHO built it?", "who"),
    ("What's the name of the river?", "what"),
    ("Name the river.", "other"),
    ("Somewhat strange: whoever?", "other"),      # whole words only
    ("The tower was built when?", "when"),
    ("How and why?", "how"),
    ("", "other"),
])
def test_question_word(question: str, word: str) -> None:
    assert question_word(question) == word


@pytest.mark.parametrize("answers, bucket", [
    ((), "no-answer"),
    (("1889",), "1"),
    (("Gustave Eiffel", "Eiffel"), "2"),          # the first gold answer decides
    (("in Paris, France",), "3"),
    (("a b c d",), "4-5"),
    (("a b c d e",), "4-5"),
    (("a b c d e f",), "6-10"),
    (("one two three four five six seven eight nine ten",), "6-10"),
    (("one two three four five six seven eight nine ten eleven",), "11+"),
])
def test_answer_length_bucket(answers: tuple[str, ...], bucket: str) -> None:
    assert answer_length_bucket(ex("q", "What?", *answers)) == bucket


def test_breakdown_buckets() -> None:
    result = breakdown(MINI, PREDS)
    assert list(result["question_word"]) == ["what", "who", "when", "where", "which", "how"]
    assert result["question_word"]["who"] == approx_dict({"total": 1, "exact": 0.0,
                                                          "f1": 100 * 2 / 3})
    assert result["question_word"]["where"] == {"total": 1, "exact": 0.0, "f1": 0.0}
    # "1": q1 (1, 1), q6 (0, 0); "2": q2 (0, 2/3), q5 (0, 1/2); no-answer: q3 (1), q4 (0).
    assert result["answer_length"] == {
        "no-answer": {"total": 2, "exact": 50.0, "f1": 50.0},
        "1": {"total": 2, "exact": 50.0, "f1": 50.0},
        "2": approx_dict({"total": 2, "exact": 0.0, "f1": 100.0 * (2 / 3 + 0.5) / 2}),
    }


def test_breakdown_applies_na_threshold() -> None:
    # q3, q4, q6 abstain above 0.65: no-answer bucket becomes 2/2, q6 stays wrong.
    result = breakdown(MINI, PREDS, NA, na_prob_thresh=0.65)
    assert result["answer_length"]["no-answer"] == {"total": 2, "exact": 100.0, "f1": 100.0}
    assert result["answer_length"]["1"] == {"total": 2, "exact": 50.0, "f1": 50.0}


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture()
def mini_v2_file(tmp_path: Path) -> Path:
    return write_json(tmp_path / "mini-v2.json", examples_to_squad_json(MINI, "v2.0"))


def test_evaluate_files_v2(tmp_path: Path, mini_v2_file: Path) -> None:
    preds = write_json(tmp_path / "preds.json", PREDS)
    na = write_json(tmp_path / "na.json", NA)
    result = evaluate_files(mini_v2_file, preds, na, 0.5, tmp_path / "img", with_breakdown=True)
    assert list(result) == OFFICIAL_KEYS + BEST_KEYS + PR_KEYS + ["breakdown"]
    expected = evaluate_v2(MINI, PREDS, NA, 0.5, tmp_path / "img2")
    assert {k: result[k] for k in expected} == expected
    assert result["breakdown"] == breakdown(MINI, PREDS, NA, 0.5)
    assert (tmp_path / "img" / "pr_f1.png").read_bytes()[:8] == PNG_MAGIC


def test_evaluate_files_v1(tmp_path: Path) -> None:
    data = write_json(tmp_path / "v1.json", examples_to_squad_json(V1, "1.1"))
    preds = write_json(tmp_path / "preds.json", {"a": "Broncos", "b": "Santa Clara", "c": ""})
    result = evaluate_files(data, preds)
    assert result == approx_dict({"exact_match": 100.0 / 3, "f1": 100.0 * 1.8 / 3, "total": 3})
    na = write_json(tmp_path / "na.json", {"a": 0.1, "b": 0.1, "c": 0.1})
    with pytest.raises(GPT2QAError, match="only applies to SQuAD 2.0"):
        evaluate_files(data, preds, na)


@pytest.mark.parametrize("content, match", [
    ('["q1"]', "must be a JSON object"),
    ('{"q1": 3}', "id=q1: prediction must be a string, got int"),
    ('{"q1": "x", "q2": null}', "id=q2: prediction must be a string"),
    ('{"q1": {"text": "x"}}', "id=q1: prediction must be a string, got object"),
    ('{"q1": "x", "q1": "y"}', "id=q1: predictions file lists this id twice"),
    ('{"q1": "x",', "line 1 column 12: not valid JSON"),
])
def test_bad_predictions_file(tmp_path: Path, mini_v2_file: Path, content: str,
                              match: str) -> None:
    preds = tmp_path / "bad-preds.json"
    preds.write_text(content, encoding="utf-8")
    with pytest.raises(GPT2QAError, match=match) as info:
        evaluate_files(mini_v2_file, preds)
    message = str(info.value)
    assert message.startswith(str(preds)) and "\n" not in message


@pytest.mark.parametrize("content, match", [
    ('{"q1": 1.5}', "id=q1: no-answer probability 1.5 is not in"),
    ('{"q1": -0.1}', "id=q1: no-answer probability -0.1 is not in"),
    ('{"q1": NaN}', "id=q1: no-answer probability nan is not in"),
    ('{"q1": "0.3"}', "id=q1: no-answer probability must be a number, got str"),
    ('{"q1": true}', "id=q1: no-answer probability must be a number, got bool"),
    ('{"q1": 0.1, "q2": 0.5}', "id=q3: no no-answer probability"),  # q3 has a prediction
    ('[0.5]', "must be a JSON object"),
])
def test_bad_na_prob_file(tmp_path: Path, mini_v2_file: Path, content: str, match: str) -> None:
    preds = write_json(tmp_path / "preds.json", PREDS)
    na = tmp_path / "bad-na.json"
    na.write_text(content, encoding="utf-8")
    with pytest.raises(GPT2QAError, match=match) as info:
        evaluate_files(mini_v2_file, preds, na)
    assert str(info.value).startswith(str(na))


def test_missing_files_are_named(tmp_path: Path, mini_v2_file: Path) -> None:
    with pytest.raises(GPT2QAError, match="nope.json: predictions file not found"):
        evaluate_files(mini_v2_file, tmp_path / "nope.json")


def test_read_helpers_keep_values(tmp_path: Path) -> None:
    assert read_predictions(write_json(tmp_path / "p.json", {"q1": "Émile", "q2": ""})) == {
        "q1": "Émile", "q2": ""}
    assert read_na_probs(write_json(tmp_path / "n.json", {"q1": 0, "q2": 0.25, "q3": 1})) == {
        "q1": 0, "q2": 0.25, "q3": 1}


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_cs224n_dev_baselines(tmp_path: Path, shared_data) -> None:
    data = shared_data("squad-v2", "cs224n-dev-v2.0.json")
    examples = load_squad(data, check_offsets=False).examples
    assert len(examples) == 6078

    empty = write_json(tmp_path / "empty.json", {e.qas_id: "" for e in examples})
    result = evaluate_files(data, empty)
    assert round(result["exact"], 2) == round(result["f1"], 2) == 52.12
    assert result["exact"] == 100.0 * 3168 / 6078
    assert (result["HasAns_total"], result["NoAns_total"]) == (2910, 3168)
    assert result == null_baseline(examples)

    gold = {e.qas_id: (e.answers[0].text if e.answers else "") for e in examples}
    result = evaluate_files(data, write_json(tmp_path / "gold.json", gold))
    assert result["exact"] == result["f1"] == 100.0
    assert "missing" not in result and "extra" not in result
