"""`gpt2qa demo --task hotpot`: synthetic multi-hop QA end to end, offline, in CPU minutes.

synthetic HotpotQA-layout data (`hotpot_synthetic`) -> byte-level BPE tokenizer trained on it
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2qa.config import HEADS, Head, Precision
from gpt2qa.errors import GPT2QAError
from gpt2qa.hotpot_data import HotpotExample


@dataclass(frozen=True)
class HotpotDemoConfig:
    """Settings of `gpt2qa demo --task hotpot` (flags shared with the SQuAD demo)."""

    out_dir: str = "runs/demo-hotpot"
    steps: int = 300
    seed: int = 0
    head: Head = "bilstm"
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    vocab_size: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    max_seq_length: int = 128
    """Small enough that the paragraph selection has to drop some of the 6 paragraphs."""
    n_train: int = 3000
    n_dev: int = 300
    n_test: int = 300
    n_companies: int = 3
    """Companies per question; each brings a company and a founder paragraph."""
    precision: Precision = "fp32"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.n_train < 1 or self.n_dev < 1 or self.n_test < 1:
            raise GPT2QAError("--steps, --n-train and --n-dev must be at least 1")
        if self.head not in HEADS:
            raise GPT2QAError(f"--head must be one of {', '.join(HEADS)}")
        if self.n_embd % self.n_head:
            raise GPT2QAError("--n-embd must be a multiple of --n-head")


def majority_answer(train: Sequence[HotpotExample]) -> str:
    """The most frequent training answer (ties: the first seen)."""
    return Counter(ex.answer for ex in train).most_common(1)[0][0]


def baseline_predictions(examples: Sequence[HotpotExample], answer: str
                         ) -> tuple[dict[str, str], dict[str, list[tuple[str, int]]]]:
    """`answer` for every question; sentence 0 of the top-2 overlap paragraphs as facts."""
    from gpt2qa.hotpot_features import rank_paragraphs

    answers, facts = {}, {}
    for ex in examples:
        top = rank_paragraphs(ex.question, ex.paragraphs, hop=False)[:2]
        answers[ex.qas_id] = answer
        facts[ex.qas_id] = [(ex.paragraphs[i].title, 0) for i in top]
    return answers, facts


def _prepare_model(config: HotpotDemoConfig, train_path: Path, init_dir: Path) -> Path:
    import torch

    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.hotpot_synthetic import hotpot_corpus_texts
    from gpt2qa.model import backbone_from_config, tiny_gpt2_config
    from gpt2qa.tokenizer import train_bpe_tokenizer

    items = json.loads(train_path.read_text(encoding="utf-8"))
    tokenizer = train_bpe_tokenizer(hotpot_corpus_texts(items), vocab_size=config.vocab_size)
    prepare_tokenizer(tokenizer)
    torch.manual_seed(config.seed)
    backbone = backbone_from_config(tiny_gpt2_config(
        len(tokenizer), n_layer=config.n_layer, n_embd=config.n_embd, n_head=config.n_head,
        n_positions=max(256, config.max_seq_length), dropout=0.0))
    backbone.save_pretrained(init_dir)
    tokenizer.save_pretrained(init_dir)
    return init_dir


ROWS = (("answer EM", "em"), ("answer F1", "f1"), ("sp EM", "sp_em"), ("sp F1", "sp_f1"),
        ("joint EM", "joint_em"), ("joint F1", "joint_f1"))


def format_hotpot_table(columns: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One row per official metric (as percentages), one column per system/split."""
    lines = [f"  {'':<12}" + "".join(f"{name:>20}" for name, _ in columns)]
    for label, key in ROWS:
        lines.append(f"  {label:<12}" + "".join(f"{100 * m[key]:20.1f}" for _, m in columns))
    return "\n".join(lines)


def run_hotpot_demo(config: HotpotDemoConfig) -> dict[str, Any]:
    """Run the demo; returns what it writes to demo_metrics.json."""
    from gpt2qa.config import TrainConfig
    from gpt2qa.hotpot_data import load_hotpot
    from gpt2qa.hotpot_metrics import evaluate_hotpot
    from gpt2qa.hotpot_model import load_hotpot_model, predict_hotpot
    from gpt2qa.hotpot_synthetic import write_hotpot_benchmark
    from gpt2qa.hotpot_train import train_hotpot
    from gpt2qa.io import write_json_atomic

    t0 = time.perf_counter()
    out = Path(config.out_dir)
    if (out / "run" / "log.jsonl").exists():
        raise GPT2QAError(f"{out}: already holds a demo run; choose another --out-dir")
    paths = write_hotpot_benchmark(out / "data", seed=config.seed, n_train=config.n_train,
                                   n_dev=config.n_dev, n_test=config.n_test,
                                   n_companies=config.n_companies)
    init = _prepare_model(config, paths["train"], out / "init")
    print(f"data: {out / 'data'} (train, dev, test); tiny GPT-2 + tokenizer: {init}")
    train_config = TrainConfig(
        model=str(init), train_file=str(paths["train"]), eval_file=str(paths["dev"]),
        output_dir=str(out / "run"), head=config.head, max_seq_length=config.max_seq_length,
        max_query_length=32, max_steps=config.steps, batch_size=config.batch_size, lr=config.lr,
        warmup_ratio=0.05, weight_decay=0.01, eval_every=max(config.steps // 4, 1),
        log_every=10, seed=config.seed, progress=config.progress, precision=config.precision)
    result = train_hotpot(train_config)
    if result.metrics is None:
        raise GPT2QAError("the demo run produced no evaluation")
    train_ex = load_hotpot(paths["train"]).examples
    test_ex = load_hotpot(paths["test"]).examples
    model, tokenizer, special, threshold = load_hotpot_model(result.model_dir)
    test = evaluate_hotpot(test_ex, *predict_hotpot(model, tokenizer, special, test_ex,
                                                    threshold))
    answer = majority_answer(train_ex)
    baseline = evaluate_hotpot(test_ex, *baseline_predictions(test_ex, answer))
    metrics = {"dev": result.metrics, "test": test, "baseline_test": baseline,
               "baseline_answer": answer, "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out / "demo_metrics.json", metrics)
    print(f"\ngpt2qa demo --task hotpot: tiny GPT-2 ({config.n_layer} layers, {config.n_embd} "
          f"wide, {config.head} head), {result.steps} steps, seed {config.seed}; "
          f"{len(test_ex)} held-out test questions about unseen entities")
    print(format_hotpot_table([("model, dev", result.metrics), ("model, test", test),
                               ("baselines, test", baseline)]))
    print(f"  baselines: answer {answer!r} for every question; first sentences of the top-2 "
          f"overlap paragraphs as supporting facts. sp threshold (tuned on dev) {threshold}")
    print(f"  {'wall time (s)':<12}{metrics['wall_seconds']:20.1f}")
    print(f"\nrun directory: {result.output_dir}  (model/, metrics.json, predictions.json)")
    return metrics
