"""`gpt2qa demo --task hotpot`: synthetic multi-hop QA end to end, offline, in CPU minutes.

synthetic HotpotQA-layout data (`tasks.hotpotqa.synthetic`) -> byte-level BPE tokenizer trained on it
-> tiny GPT-2 from a config -> `gpt2qa train` on HotpotQA -> the official metrics on the dev
split (where the supporting-fact threshold is tuned) and on the held-out test split, beside
two baselines:

  majority answer   every question answered with the most frequent training answer
                    (a span has no fixed text, so this is the commonest yes/no);
  top-2 first sent. the two paragraphs with the most question-word overlap, and their first
                    sentences as the supporting facts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from gpt2qa import tasks
from gpt2qa.checkpoint import record_model_data
from gpt2qa.demo import DEMO_DATA, prepare_tiny_model, start_demo, with_demo_threads
from gpt2qa.demo_config import HotpotDemoConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.io import write_json_atomic
from gpt2qa.pipeline import QAPipeline
from gpt2qa.tasks.hotpotqa.data import HotpotExample, load_hotpot
from gpt2qa.tasks.hotpotqa.inputs import rank_paragraphs
from gpt2qa.tasks.hotpotqa.metrics import evaluate_hotpot
from gpt2qa.tasks.hotpotqa.synthetic import hotpot_corpus_texts, write_hotpot_benchmark
from gpt2qa.train import train


def majority_answer(train: Sequence[HotpotExample]) -> str:
    """The most frequent training answer (ties: the first seen)."""
    return Counter(ex.answer for ex in train).most_common(1)[0][0]


def baseline_predictions(examples: Sequence[HotpotExample], answer: str
                         ) -> tuple[dict[str, str], dict[str, list[tuple[str, int]]]]:
    """`answer` for every question; sentence 0 of the top-2 overlap paragraphs as facts."""
    answers, facts = {}, {}
    for ex in examples:
        top = rank_paragraphs(ex.question, ex.paragraphs, hop=False)[:2]
        answers[ex.qas_id] = answer
        facts[ex.qas_id] = [(ex.paragraphs[i].title, 0) for i in top]
    return answers, facts


ROWS = (("answer EM", "em"), ("answer F1", "f1"), ("sp EM", "sp_em"), ("sp F1", "sp_f1"),
        ("joint EM", "joint_em"), ("joint F1", "joint_f1"))


def format_hotpot_table(columns: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One row per official metric (as percentages), one column per system/split."""
    lines = [f"  {'':<12}" + "".join(f"{name:>20}" for name, _ in columns)]
    for label, key in ROWS:
        lines.append(f"  {label:<12}" + "".join(f"{100 * m[key]:20.1f}" for _, m in columns))
    return "\n".join(lines)


@with_demo_threads
def run_hotpot_demo(config: HotpotDemoConfig) -> dict[str, Any]:
    """Run the demo; returns what it writes to demo_metrics.json."""
    out, t0 = start_demo(config)
    paths = write_hotpot_benchmark(out / "data", seed=config.seed, n_train=config.n_train,
                                   n_dev=config.n_dev, n_test=config.n_test,
                                   n_companies=config.n_companies)
    items = json.loads(paths["train"].read_text(encoding="utf-8"))
    init = prepare_tiny_model(config, hotpot_corpus_texts(items), out / "init")
    print(f"data: {out / 'data'} (train, dev, test); tiny GPT-2 + tokenizer: {init}")
    train_config = config.train_config(str(init), str(paths["train"]), str(paths["dev"]),
                                       str(out / "run"))
    task = tasks.get("hotpotqa")
    result = train(train_config, task, synthetic=True)
    if result.metrics is None:
        raise GPT2QAError("the demo run produced no evaluation")
    record_model_data(result.model_dir, DEMO_DATA, synthetic=True)
    train_ex = load_hotpot(paths["train"]).examples
    test_ex = load_hotpot(paths["test"]).examples
    pipe = QAPipeline.from_pretrained(result.model_dir, device="cpu")
    threshold = pipe.model.config.task_state["sp_threshold"]
    test = task.score(test_ex, pipe.predict(test_ex))
    answer = majority_answer(train_ex)
    baseline = evaluate_hotpot(test_ex, *baseline_predictions(test_ex, answer))
    metrics = {"dev": result.metrics, "test": test, "baseline_test": baseline,
               "baseline_answer": answer,
               "margin_f1": round(100 * (test["f1"] - baseline["f1"]), 2),
               "margin_joint_f1": round(100 * (test["joint_f1"] - baseline["joint_f1"]), 2),
               "threads": torch.get_num_threads(),
               "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out / "demo_metrics.json", metrics)
    print(f"\ngpt2qa demo --task hotpot: tiny GPT-2 ({config.n_layer} layers, {config.n_embd} "
          f"wide, {train_config.qa.head} head), {result.steps} steps, seed {config.seed}; "
          f"{len(test_ex)} held-out test questions about unseen entities")
    print(format_hotpot_table([("model, dev", result.metrics), ("model, test", test),
                               ("baselines, test", baseline)]))
    print(f"  baselines: answer {answer!r} for every question; first sentences of the top-2 "
          f"overlap paragraphs as supporting facts. sp threshold (tuned on dev) {threshold}")
    print(f"  {'wall time (s)':<12}{metrics['wall_seconds']:20.1f}")
    print(f"\nrun directory: {result.output_dir}  (model/, metrics.json, predictions.json, "
          f"learning_curve.png); these figures: {out / 'demo_metrics.json'}")
    print(f"\nmargin: test answer F1 {100 * test['f1']:.1f} - baseline {100 * baseline['f1']:.1f} "
          f"= {metrics['margin_f1']:+.1f}; joint F1 {100 * test['joint_f1']:.1f} - "
          f"{100 * baseline['joint_f1']:.1f} = {metrics['margin_joint_f1']:+.1f}")
    return metrics
