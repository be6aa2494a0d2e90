"""The demo's plumbing at a tiny size (its accuracy bar is measured, not tested: see README)."""

from __future__ import annotations

import json

import pytest

from gpt2qa.cli import main
from gpt2qa.synthetic import EASY_OVERRIDES, write_benchmark
from helpers import read_card


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out-dir", str(out), "--steps", "6", "--n-train", "12", "--n-dev", "6",
                 "--n-layer", "2", "--n-embd", "32", "--n-head", "2", "--vocab-size", "300",
                 "--batch-size", "8", "--max-seq-length", "128", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    for line in ("EM", "HasAns F1", "NoAns F1", "all no-answer baseline F1",
                 "tuned null_score_diff_thr", "test, dev-tuned thr", "wall time"):
        assert line in printed
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert metrics["total"] == 18  # 6 dev paragraphs x 3 questions at the easy level
    assert metrics["null_baseline_f1"] == pytest.approx(100 * metrics["NoAns_total"] / 18)
    assert (out / "run" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    log = [json.loads(line) for line in (out / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "eval"] == [2, 4, 6]  # no doubled last eval
    demo = json.loads((out / "demo_metrics.json").read_text())
    assert demo["test"]["total"] == 18 and "f1" in demo["test"]
    margin = demo["test"]["f1"] - demo["test"]["null_baseline_f1"]
    assert demo["margin_f1"] == pytest.approx(margin, abs=0.005)
    assert printed.rstrip().splitlines()[-1].startswith("margin: test F1 ")  # printed last
    assert f"{margin:+.2f} F1" in printed
    assert (out / "run" / "model" / "gpt2qa.json").exists()
    # The model directory says its data was the demo's, for the serve page to tell.
    examples = json.loads((out / "run" / "model" / "examples.json").read_text())
    assert examples["synthetic"] is True and examples["data"] == "synthetic (gpt2qa demo)"
    assert examples["examples"] and all(e["question"] for e in examples["examples"])
    # Its model card parses, names no path of the run and says the data was synthetic.
    card, text = read_card(out / "run" / "model", tmp_path, out)
    assert "synthetic-data" in card.data.tags and "**Synthetic data.**" in text
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["f1"] == \
        round(metrics["f1"], 2)
    assert main(["demo", "--out-dir", str(out), "--steps", "1"]) == 2  # never overwrites


def test_easy_level_changes_train_and_dev_only(tmp_path):
    easy = write_benchmark(tmp_path / "e", seed=3, n_train=4, n_dev=2, n_hard=1, level="easy")
    std = write_benchmark(tmp_path / "s", seed=3, n_train=4, n_dev=2, n_hard=1)
    e_train = json.loads(easy["train"].read_text())
    questions = [qa for a in e_train["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert len(questions) == 4 * EASY_OVERRIDES["questions_per_passage"]
    assert not any(qa["id"].endswith("-after") and qa["is_impossible"] for qa in questions)
    assert easy["hard"].read_text() == std["hard"].read_text()
    assert easy["train"].read_text() != std["train"].read_text()


def test_demo_config_checks(capsys):
    assert main(["demo", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a choice now: argparse's usage error
        main(["demo", "--level", "impossible"])
    assert info.value.code == 2
