"""The synthetic multi-hop benchmark and the HotpotQA demo's baselines."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from gpt2qa.hotpot_demo import baseline_predictions, format_hotpot_table, majority_answer
from gpt2qa.tasks.hotpotqa.data import parse_hotpot
from gpt2qa.tasks.hotpotqa.metrics import METRIC_KEYS, evaluate_hotpot
from gpt2qa.tasks.hotpotqa.synthetic import _split_of, generate
from helpers import read_card


def test_generate_is_valid_seeded_and_varied() -> None:
    items = generate("train", 200, seed=3)
    assert items == generate("train", 200, seed=3)
    assert items != generate("train", 200, seed=4)
    examples = parse_hotpot(items, "synthetic").examples  # every fact points at a sentence
    kinds = Counter(ex.qas_id.split("-", 3)[3] for ex in examples)
    assert set(kinds) == {"bridge-born", "bridge-job", "which-first", "before-yn",
                          "same-city-yn"}
    answers = Counter(ex.answer_type for ex in examples)
    assert answers["yes"] > 10 and answers["no"] > 10
    for ex, item in zip(examples, items, strict=True):
        assert len(ex.paragraphs) == 6 and len(ex.gold_titles()) == 2
        # The facts name the sentences that hold the evidence.
        texts = {p.title: p.sentences for p in ex.paragraphs}
        founded = [texts[t][i] for t, i in ex.supporting_facts if "founded" in texts[t][i]]
        if ex.type == "bridge":
            assert ex.answer in "".join(texts[t][i] for t, i in ex.supporting_facts)
            assert len(founded) == 1 and ex.answer not in item["plausible_answers"]
            # The wrong candidates are in the context too: real distractors.
            context = "".join("".join(s) for s in texts.values())
            assert all(p in context for p in item["plausible_answers"])
    # Supporting sentences are not always first, so "sentence 0" is not a free answer.
    assert Counter(i for ex in examples for _, i in ex.supporting_facts)[0] < 0.6 * 400


def test_splits_share_no_name_words() -> None:
    words = {}
    for split in ("train", "dev", "test"):
        items = generate(split, 50, seed=0)
        words[split] = {w for it in items for title, _ in it["context"] for w in title.split()
                        if w not in ("Works", "Mills", "Company", "Foundry", "Traders")}
        assert all(_split_of(w) == split for w in words[split])
    assert not words["train"] & words["dev"] and not words["dev"] & words["test"]


def test_baselines_score_what_they_should() -> None:
    examples = parse_hotpot(generate("dev", 100, seed=0), "dev").examples
    answer = majority_answer(examples)
    assert answer in ("yes", "no")
    result = evaluate_hotpot(examples, *baseline_predictions(examples, answer))
    share = sum(ex.answer == answer for ex in examples) / len(examples)
    assert result["em"] == result["f1"] == share
    assert 0 < result["sp_f1"] < 1
    table = format_hotpot_table([("a", result), ("b", result)])
    assert table.count("\n") == 6 and "joint F1" in table
    assert set(METRIC_KEYS) <= set(result)


@pytest.mark.slow
def test_hotpot_demo_runs_end_to_end_and_prints_its_margin_last(tmp_path, capsys):
    from gpt2qa.cli import main

    out = tmp_path / "demo"
    code = main(["demo", "--task", "hotpotqa", "--out-dir", str(out), "--steps", "4",
                 "--n-train", "16", "--n-dev", "6", "--n-layer", "2", "--n-embd", "32",
                 "--n-head", "2", "--vocab-size", "300", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    demo = json.loads((out / "demo_metrics.json").read_text())
    for key in ("f1", "joint_f1"):
        margin = 100 * (demo["test"][key] - demo["baseline_test"][key])
        assert demo[f"margin_{key}"] == pytest.approx(margin, abs=0.005)
    card, text = read_card(out / "run" / "model", tmp_path, out)
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["joint_f1"] == \
        round(100 * demo["dev"]["joint_f1"], 2)
    assert "**Synthetic data.**" in text and "| sp threshold |" in text
    last = printed.rstrip().splitlines()[-1]
    assert last.startswith("margin: test answer F1 ") and f"{demo['margin_f1']:+.1f}" in last
