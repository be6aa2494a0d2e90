"""`gpt2qa demo`: the whole job on built-in defaults, offline, in about three minutes on 2 CPUs.

synthetic SQuAD 2.0 data -> byte-level BPE tokenizer trained on it -> tiny GPT-2 from a config
-> fine-tune -> evaluate on a held-out split -> table, metrics.json and a learning curve.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2qa.config import HEADS, Head, Precision, TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Layout, NullPosition


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings; every field is a `gpt2qa demo` flag."""

    out_dir: str = "runs/demo"
    steps: int = 600
    seed: int = 0
    head: Head = "bilstm"
    """bilstm: measured to learn the synthetic task much faster than linear from scratch."""
    layout: Layout = "question-first"
    null_position: NullPosition = "last"
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    vocab_size: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    max_seq_length: int = 192
    doc_stride: int = 64
    level: str = "easy"
    """Synthetic train/dev level: easy (learnable in CPU minutes) or standard (the study's)."""
    n_train: int = 1500
    """Synthetic training passages (3 questions each at the easy level, 4 at standard)."""
    n_dev: int = 200
    eval_split: str = "dev"
    """Which held-out split to evaluate on: dev (same distribution) or hard."""
    precision: Precision = "fp32"
    """bf16 or fp16 need CUDA."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise GPT2QAError("--steps must be at least 1")
        if self.head not in HEADS:
            raise GPT2QAError(f"--head must be one of {', '.join(HEADS)}")
        if self.level not in ("easy", "standard"):
            raise GPT2QAError("--level must be easy or standard")
        if self.n_train < 1 or self.n_dev < 1:
            raise GPT2QAError("--n-train and --n-dev must be at least 1")
        if self.eval_split not in ("dev", "hard"):
            raise GPT2QAError("--eval-split must be dev or hard")
        if self.n_embd % self.n_head:
            raise GPT2QAError("--n-embd must be a multiple of --n-head")


def prepare_demo_model(config: DemoConfig, data_paths: dict[str, Path], init_dir: Path) -> Path:
    """Train the tokenizer on the synthetic train split and save a random tiny GPT-2 beside it."""
    import torch

    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.model import backbone_from_config, tiny_gpt2_config
    from gpt2qa.synthetic import corpus_texts
    from gpt2qa.tokenizer import train_bpe_tokenizer

    train_json = json.loads(data_paths["train"].read_text(encoding="utf-8"))
    tokenizer = train_bpe_tokenizer(corpus_texts(train_json), vocab_size=config.vocab_size)
    prepare_tokenizer(tokenizer)
    torch.manual_seed(config.seed)
    backbone = backbone_from_config(tiny_gpt2_config(
        len(tokenizer), n_layer=config.n_layer, n_embd=config.n_embd, n_head=config.n_head,
        n_positions=max(256, config.max_seq_length), dropout=0.0))
    backbone.save_pretrained(init_dir)
    tokenizer.save_pretrained(init_dir)
    return init_dir


def format_table(dev: dict[str, Any], test: dict[str, Any]) -> str:
    """Dev at threshold 0 and tuned on dev; test (a fresh sample) at the dev-tuned threshold."""
    rows = [("EM", "exact", "exact"), ("F1", "f1", "f1"), ("HasAns F1", "HasAns_f1", "HasAns_f1"),
            ("NoAns F1", "NoAns_f1", "NoAns_f1"),
            ("all no-answer baseline F1", "null_baseline_f1", "null_baseline_f1")]
    lines = [f"  {'':<28}{'dev, thr 0':>12}{'test, dev-tuned thr':>22}"]
    for name, dkey, tkey in rows:
        lines.append(f"  {name:<28}{dev[dkey]:12.2f}{test[tkey]:22.2f}")
    lines.append(f"  {'F1 with thr tuned on dev':<28}{dev['tuned_f1']:12.2f}")
    lines.append(f"  {'tuned null_score_diff_thr':<28}{dev['tuned_null_score_diff_threshold']:12.3f}")
    return "\n".join(lines)


def evaluate_on_fresh_sample(config: DemoConfig, model_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Score the saved model (with its dev-tuned threshold) on a new dev-distribution sample."""
    from gpt2qa.data import load_squad
    from gpt2qa.decode import predictions_to_json, write_json_atomic
    from gpt2qa.metrics import evaluate_v2, null_baseline
    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.synthetic import EASY_OVERRIDES, SyntheticConfig, generate

    extra = dict(EASY_OVERRIDES) if config.level == "easy" else {}
    path = data_dir / "test.json"
    write_json_atomic(path, generate(SyntheticConfig(seed=config.seed + 1, n_passages=config.n_dev,
                                                     split="dev", **extra)))
    examples = load_squad(path).examples
    pipe = QAPipeline.from_pretrained(model_dir, device="cpu" if config.precision == "fp32" else None)
    texts, na_probs, _ = predictions_to_json(pipe.predict(examples))
    metrics = evaluate_v2(examples, texts, na_probs)
    metrics["null_baseline_f1"] = null_baseline(examples)["f1"]
    return metrics


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns metrics.json's content (with wall time)."""
    from gpt2qa.synthetic import write_benchmark
    from gpt2qa.train import train

    t0 = time.perf_counter()
    out = Path(config.out_dir)
    if (out / "run" / "log.jsonl").exists():
        raise GPT2QAError(f"{out}: already holds a demo run; choose another --out-dir")
    paths = write_benchmark(out / "data", seed=config.seed, n_train=config.n_train,
                            n_dev=config.n_dev, level=config.level)  # type: ignore[arg-type]
    init = prepare_demo_model(config, paths, out / "init")
    print(f"data: {out / 'data'}  (train, dev, hard); tiny GPT-2 + tokenizer: {init}")
    train_config = TrainConfig(
        model=str(init), train_file=str(paths["train"]), eval_file=str(paths[config.eval_split]),
        output_dir=str(out / "run"), head=config.head, layout=config.layout,
        null_position=config.null_position, max_seq_length=config.max_seq_length,
        doc_stride=config.doc_stride, max_query_length=32, max_steps=config.steps,
        batch_size=config.batch_size, lr=config.lr, warmup_ratio=0.05, weight_decay=0.01,
        # Four evaluations, the last at the final step (ceil: 750 steps must not also eval at 748).
        eval_every=max(-(-config.steps // 4), 1), log_every=10, seed=config.seed,
        progress=config.progress, keep_checkpoints=1, precision=config.precision)
    result = train(train_config)
    if result.metrics is None:
        raise GPT2QAError("the demo run produced no evaluation")
    test = evaluate_on_fresh_sample(config, result.model_dir, out / "data")
    metrics = {**result.metrics, "test": test, "wall_seconds": round(time.perf_counter() - t0, 1)}
    from gpt2qa.decode import write_json_atomic

    write_json_atomic(out / "demo_metrics.json", metrics)
    print(f"\ngpt2qa demo: tiny GPT-2 ({config.n_layer} layers, {config.n_embd} wide, "
          f"{config.head} head), {config.steps} steps; {config.eval_split} split "
          f"({metrics['total']} questions) and a fresh test sample ({test['total']})")
    print(format_table(metrics, test))
    print(f"  {'wall time (s)':<28}{metrics['wall_seconds']:8.1f}")
    print(f"\nrun directory: {result.output_dir}  (model/, metrics.json, predictions.json, "
          "learning_curve.png)")
    return metrics
