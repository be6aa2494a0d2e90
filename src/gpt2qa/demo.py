"""`gpt2qa demo`: the whole job on built-in defaults, offline, in minutes on a CPU.

synthetic SQuAD 2.0 data -> byte-level BPE tokenizer trained on it -> tiny GPT-2 from a config
-> fine-tune -> evaluate on a held-out split -> table, metrics.json and a learning curve.
The settings are `demo_config.DemoConfig`; `prepare_tiny_model` and `start_demo` also serve the
HotpotQA demo.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from gpt2qa.checkpoint import record_model_data
from gpt2qa.data import load_squad
from gpt2qa.demo_config import DemoConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.evaluation import score_predictions
from gpt2qa.features import prepare_tokenizer
from gpt2qa.io import write_json_atomic
from gpt2qa.model import save_tiny_gpt2
from gpt2qa.pipeline import QAPipeline
from gpt2qa.rundir import claim_demo_dir
from gpt2qa.synthetic import (
    EASY_OVERRIDES,
    SyntheticConfig,
    corpus_texts,
    generate,
    write_benchmark,
)
from gpt2qa.tasks import fine_tune
from gpt2qa.tokenizer import train_bpe_tokenizer

DEMO_DATA = "synthetic (gpt2qa demo)"
"""What a demo model's examples.json says its data was, so the serve page can say so."""

Demo = TypeVar("Demo", bound=DemoConfig)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` intra-op threads (None: leave torch's setting), set back afterwards:
    the demo's figures repeat for the same seed and thread count."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_demo_threads(run: Callable[[Demo], dict[str, Any]]) -> Callable[[Demo], dict[str, Any]]:
    """A demo run under its config's `threads` (`torch_threads`)."""

    @functools.wraps(run)
    def wrapper(config: Demo) -> dict[str, Any]:
        with torch_threads(config.threads):
            return run(config)

    return wrapper


def start_demo(config: DemoConfig) -> tuple[Path, float]:
    """The demo's folder (refusing one gpt2qa's demo did not write, or one that holds a run;
    `rundir.claim_demo_dir` marks it) and its start time."""
    out = Path(config.out_dir)
    if (out / "run" / "log.jsonl").exists():
        raise GPT2QAError(f"{out}: already holds a demo run; choose another --out-dir")
    claim_demo_dir(out)
    return out, time.perf_counter()


def prepare_tiny_model(config: DemoConfig, texts: Iterable[str], init_dir: Path) -> Path:
    """Train the tokenizer on `texts` and save a random tiny GPT-2 beside it."""
    tokenizer = train_bpe_tokenizer(texts, vocab_size=config.vocab_size)
    prepare_tokenizer(tokenizer)
    save_tiny_gpt2(init_dir, tokenizer, config.seed, config.n_layer, config.n_embd,
                   config.n_head, config.train_config().qa.features.max_seq_length)
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


def margin_f1(test: dict[str, Any]) -> float:
    """What the demo exists to show: test F1 above answering "no answer" to every question."""
    return round(test["f1"] - test["null_baseline_f1"], 2)


def evaluate_on_fresh_sample(config: DemoConfig, model_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Score the saved model (with its dev-tuned threshold) on a new dev-distribution sample."""
    extra = dict(EASY_OVERRIDES) if config.level == "easy" else {}
    path = data_dir / "test.json"
    write_json_atomic(path, generate(SyntheticConfig(seed=config.seed + 1, n_passages=config.n_dev,
                                                     split="dev", **extra)))
    examples = load_squad(path).examples
    precision = config.train_config().precision
    pipe = QAPipeline.from_pretrained(model_dir, device="cpu" if precision == "fp32" else None)
    return score_predictions(examples, pipe.predict(examples))  # at the model's own threshold


@with_demo_threads
def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns metrics.json's content (with wall time)."""
    out, t0 = start_demo(config)
    paths = write_benchmark(out / "data", seed=config.seed, n_train=config.n_train,
                            n_dev=config.n_dev, level=config.level)
    train_json = json.loads(paths["train"].read_text(encoding="utf-8"))
    init = prepare_tiny_model(config, corpus_texts(train_json), out / "init")
    print(f"data: {out / 'data'}  (train, dev, hard); tiny GPT-2 + tokenizer: {init}")
    train_config = config.train_config(str(init), str(paths["train"]),
                                       str(paths[config.eval_split]), str(out / "run"))
    result = fine_tune(train_config, synthetic=True)
    if result.metrics is None:
        raise GPT2QAError("the demo run produced no evaluation")
    record_model_data(result.model_dir, DEMO_DATA, synthetic=True)
    test = evaluate_on_fresh_sample(config, result.model_dir, out / "data")
    metrics = {**result.metrics, "test": test, "margin_f1": margin_f1(test),
               "threads": torch.get_num_threads(),
               "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out / "demo_metrics.json", metrics)
    print(f"\ngpt2qa demo: tiny GPT-2 ({config.n_layer} layers, {config.n_embd} wide, "
          f"{train_config.qa.head} head), {train_config.max_steps} steps; {config.eval_split} split "
          f"({metrics['total']} questions) and a fresh test sample ({test['total']})")
    print(format_table(metrics, test))
    print(f"  {'wall time (s)':<28}{metrics['wall_seconds']:8.1f}")
    print(f"\nrun directory: {result.output_dir}  (model/, metrics.json, predictions.json, "
          f"learning_curve.png); these figures: {out / 'demo_metrics.json'}")
    print(f"\nmargin: test F1 {test['f1']:.2f} - all no-answer {test['null_baseline_f1']:.2f} = "
          f"{metrics['margin_f1']:+.2f} F1 (fresh test sample, threshold tuned on dev)")
    return metrics

