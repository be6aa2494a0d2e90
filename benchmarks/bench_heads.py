"""Span head or generation? The demo's data, init, budget and seeds, one run per head.

For each seed S (0, 1, ...) and each head (bilstm, linear, generative), `gpt2qa demo --seed S
--head H` itself (`gpt2qa.demo.run_demo`): the same synthetic SQuAD 2.0 data, tokenizer and
random tiny GPT-2 init, the same steps x batch, lr and evaluations; only the head differs. The
generative model is then decoded a second time without `constrain_to_context`
("generative-free": the same weights, free greedy decoding).

Per side it records:
  dev      EM/F1/HasAns/NoAns at threshold 0, tuned F1 and its threshold, NA AUROC;
  test     the demo's fresh test sample at the dev-tuned threshold (F1, HasAns/NoAns), NA
           AUROC, and F1 by synthetic question kind (ans, ans-after, unans, unans-after);
  speed    prediction questions/s on the test sample (QAPipeline.predict, fp32, timed here
           side by side in this process), and training examples/s: after the seeds, each head
           trains --speed-steps more steps from seed 0's init on its data, the heads in turn,
           twice (forward, then reverse order), in this process; the mean of the log's
           examples/s after its first line;
  off      test questions answered with free text that is no piece of the context
           (offsets -1, -1; only without the constraint, 0 with it).

`--small-shape-questions N` (needs ../shared/data) also times prediction at GPT-2-small shape
(12 x 768, GPT-2's real tokenizer, random weights) on the first N SQuAD 2.0 dev questions:
bilstm against generative at max_answer_length 4 (about a SQuAD answer's length in tokens) and
30 (the default; random weights rarely stop early, so this is the slow end), rounds
alternating, medians.

With `--task hotpotqa`, the same three heads on `gpt2qa demo --task hotpotqa` (its synthetic
multi-hop data; yes/no come from the answer-type head under every head, the span from the
head): answer, supporting-fact and joint EM/F1 on dev and on the held-out test questions, and
the same two speeds.

    python benchmarks/bench_heads.py --seeds 3    # the measurement (docs/study.md)
    python benchmarks/bench_heads.py --seeds 3 --task hotpotqa
    python benchmarks/bench_heads.py --tiny       # plumbing only, numbers mean nothing
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common

HEADS = ("bilstm", "linear", "generative")
SIDES = (*HEADS, "generative-free")
KINDS = ("ans", "ans-after", "unans", "unans-after")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--tiny", action="store_true", help="a few steps with a 32-wide model")
    p.add_argument("--task", choices=("squad", "hotpotqa"), default="squad")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--work-dir", default="", help="keep the runs here, and reuse the demo "
                   "runs already there: only scoring and speeds run again (default: a "
                   "temporary directory, removed after)")
    p.add_argument("--speed-steps", type=int, default=60,
                   help="training steps per head and round of the training-speed pass")
    p.add_argument("--small-shape-questions", type=int, default=0,
                   help="also time prediction at GPT-2-small shape on this many questions")
    p.add_argument("--results-dir", default=str(common.RESULTS_DIR))
    p.add_argument("--name", default="", help="result file name (default bench_heads[_tiny])")
    return p.parse_args(argv)


def demo_config(seed: int, head: str, out_dir: Path, tiny: bool) -> Any:
    from gpt2qa.demo_config import DemoConfig

    config = DemoConfig(out_dir=str(out_dir), seed=seed, progress=False)
    training: dict[str, Any] = {"head": head}
    if tiny:
        config = dataclasses.replace(config, n_train=12, n_dev=6, n_layer=2, n_embd=32,
                                     n_head=2, vocab_size=300)
        training.update(max_steps=4, batch_size=8, max_seq_length=128)
    return dataclasses.replace(config, training=training)


def train_speeds(root: Path, tiny: bool, steps: int) -> dict[str, float]:
    """Training examples/s per head, measured in turn on seed 0's data and init (see the
    module docstring): each head's mean over two rounds."""
    import shutil

    from gpt2qa.tasks import fine_tune

    rates: dict[str, list[float]] = {head: [] for head in HEADS}
    for round_ in range(2):
        for head in (HEADS if round_ == 0 else HEADS[::-1]):
            demo = root / "seed-0" / head
            config = demo_config(0, head, demo, tiny).train_config(
                str(demo / "init"), str(demo / "data" / "train.json"), "",
                str(root / "speed" / f"{head}-{round_}"))
            config = dataclasses.replace(config, eval_file=None, max_steps=steps, eval_every=0,
                                         log_every=max(steps // 6, 1), save_every=0)
            shutil.rmtree(config.output_dir, ignore_errors=True)
            with contextlib.redirect_stdout(sys.stderr):
                fine_tune(config)
            train = log_rates(Path(config.output_dir))
            rates[head].append(statistics.fmean(train[1:] or train))
    return {head: round(statistics.fmean(values), 1) for head, values in rates.items()}


def small_shape_speeds(n_questions: int, root: Path, rounds: int = 3) -> dict[str, Any]:
    """Questions/s at GPT-2-small shape, random weights (module docstring): bilstm, and
    generative writing at most 4 and at most 30 tokens."""
    import torch

    from gpt2qa.checkpoint import save_model
    from gpt2qa.config import QAConfig
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.model import QAModel, backbone_from_config
    from gpt2qa.pipeline import QAPipeline

    examples = common.load_dev(common.DEFAULT_DATA, n_questions)
    sides = {"bilstm": ("bilstm", 30), "generative-4": ("generative", 4),
             "generative-30": ("generative", 30)}
    pipes = {}
    for name, (head, length) in sides.items():
        tokenizer = common.load_gpt2_tokenizer()
        special = prepare_tokenizer(tokenizer, answer=head == "generative")
        torch.manual_seed(0)
        backbone = backbone_from_config(common.GPT2_SMALL.gpt2_config(dropout=0.0))
        backbone.resize_token_embeddings(len(tokenizer))
        model = QAModel(backbone, QAConfig.of(head=head, max_answer_length=length),
                        special=special)
        pipes[name] = QAPipeline.from_pretrained(save_model(model, tokenizer, root / name),
                                                 device="cpu")
    times: dict[str, list[float]] = {name: [] for name in sides}
    words: dict[str, float] = {}
    for round_ in range(rounds):
        for name in (list(sides) if round_ % 2 == 0 else list(sides)[::-1]):
            seconds, preds = common.timed(lambda: pipes[name].predict(examples))  # noqa: B023
            times[name].append(seconds)
            words[name] = statistics.fmean(len(p.best_span.split()) for p in preds)
    out: dict[str, Any] = {"questions": len(examples), "rounds": rounds}
    for name in sides:
        out[f"{name}_questions_per_s"] = round(len(examples) / common.median(times[name]), 2)
        out[f"{name}_answer_words"] = round(words[name], 2)
    for name in ("generative-4", "generative-30"):
        out[f"{name}_slowdown_vs_bilstm"] = round(
            out["bilstm_questions_per_s"] / out[f"{name}_questions_per_s"], 2)
    return out


def demo_once(run: Any, config: Any) -> dict[str, Any]:
    """The demo's metrics: run it, or read them back when --work-dir already holds the run
    (only the scoring and the speeds are then measured again)."""
    done = Path(config.out_dir) / "demo_metrics.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    with contextlib.redirect_stdout(sys.stderr):
        return run(config)


def hotpot_seed(seed: int, root: Path, tiny: bool) -> dict[str, Any]:
    """The HotpotQA demo per head: its dev and test scores (x100) and the two speeds."""
    from gpt2qa import tasks
    from gpt2qa.demo_config import HotpotDemoConfig
    from gpt2qa.hotpot_demo import run_hotpot_demo
    from gpt2qa.pipeline import QAPipeline

    keys = ("em", "f1", "sp_em", "sp_f1", "joint_em", "joint_f1")
    result: dict[str, Any] = {"seed": seed}
    for head in HEADS:
        out = root / f"seed-{seed}" / f"hotpot-{head}"
        config = HotpotDemoConfig(out_dir=str(out), seed=seed, progress=False,
                                  training={"head": head})
        if tiny:
            config = dataclasses.replace(config, n_train=20, n_dev=10, n_test=10,
                                         training={"head": head, "max_steps": 4})
        print(f"seed {seed}: gpt2qa demo --task hotpotqa --seed {seed} --head {head}",
              file=sys.stderr, flush=True)
        metrics = demo_once(run_hotpot_demo, config)
        test = tasks.get("hotpotqa").read(str(out / "data" / "test.json")).examples
        pipe = QAPipeline.from_pretrained(out / "run" / "model", device="cpu")
        seconds, _ = common.timed(lambda: pipe.predict(test))  # noqa: B023 - called here
        result[head] = {
            "dev": {k: round(100 * metrics["dev"][k], 2) for k in keys},
            "test": {k: round(100 * metrics["test"][k], 2) for k in keys},
            "baseline_test": {k: round(100 * metrics["baseline_test"][k], 2) for k in keys},
            "train_examples_per_s": train_rate(out / "run"),
            "predict_questions_per_s": round(len(test) / seconds, 1),
            "demo_seconds": metrics["wall_seconds"]}
        print(f"seed {seed}: hotpot {head:<10} test answer F1 {result[head]['test']['f1']:6.2f}"
              f"  joint F1 {result[head]['test']['joint_f1']:6.2f}", file=sys.stderr, flush=True)
    return result


def summarise_hotpot(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"seeds": len(runs)}
    for head in HEADS:
        for split in ("dev", "test"):
            for key in ("f1", "sp_f1", "joint_f1"):
                values = [r[head][split][key] for r in runs]
                summary[f"{head}_{split}_{key}"] = round(statistics.fmean(values), 2)
                summary[f"{head}_{split}_{key}_sd"] = (round(statistics.stdev(values), 2)
                                                       if len(values) > 1 else None)
        for key in ("train_examples_per_s", "predict_questions_per_s"):
            summary[f"{head}_{key}"] = round(statistics.fmean(r[head][key] for r in runs), 1)
    summary["baseline_test_f1"] = round(statistics.fmean(
        r["bilstm"]["baseline_test"]["f1"] for r in runs), 2)
    return summary


def by_kind(examples: Sequence[Any], answers: dict[str, str]) -> dict[str, float]:
    """Mean official F1 (x100) per synthetic question kind."""
    from gpt2qa.metrics import score_questions
    from gpt2qa.synthetic.questions import question_kind

    groups: dict[str, list[float]] = {}
    for score in score_questions(examples, answers):
        groups.setdefault(question_kind(score.qas_id), []).append(score.f1)
    return {k: round(100 * statistics.fmean(groups[k]), 2) for k in KINDS if k in groups}


def log_rates(run_dir: Path) -> list[float]:
    """The examples/s of each of the run's training log lines, in order."""
    return [r["examples_per_s"] for r in map(json.loads, (run_dir / "log.jsonl").open())
            if "examples_per_s" in r]


def train_rate(run_dir: Path) -> float:
    """Mean examples/s over the run's training log lines."""
    return round(statistics.fmean(log_rates(run_dir)), 1)


def score_side(pipe: Any, dev: Sequence[Any], test: Sequence[Any]) -> dict[str, Any]:
    """Dev at threshold 0 (and tuned), test at the dev-tuned threshold, AUROC, kinds, speed."""
    from gpt2qa.evaluation import answers_at, score_at_threshold, score_predictions
    from gpt2qa.study import na_auroc

    dev_preds = pipe.predict(dev, null_score_diff_threshold=0.0)
    dev_scores = score_predictions(dev, dev_preds)
    threshold = dev_scores["tuned_null_score_diff_threshold"]
    seconds, test_preds = common.timed(lambda: pipe.predict(test, null_score_diff_threshold=0.0))
    test_scores = score_at_threshold(test, test_preds, threshold)
    keep = ("exact", "f1", "HasAns_f1", "NoAns_f1")
    off = sum(1 for p in test_preds if p.nbest and p.nbest[0].start < 0)
    return {
        "dev": {**{k: dev_scores[k] for k in keep}, "tuned_f1": dev_scores["tuned_f1"],
                "tuned_threshold": threshold, "null_baseline_f1": dev_scores["null_baseline_f1"],
                "auroc": na_auroc([p.na_prob for p in dev_preds],
                                  [bool(e.answers) for e in dev])},
        "test": {**{k: test_scores[k] for k in keep},
                 "auroc": na_auroc([p.na_prob for p in test_preds],
                                   [bool(e.answers) for e in test]),
                 "by_kind": by_kind(test, answers_at(test_preds, threshold)),
                 "answers_off_the_context": off},
        "predict_questions_per_s": round(len(test) / seconds, 1),
    }


def run_seed(seed: int, root: Path, tiny: bool) -> dict[str, Any]:
    from gpt2qa.data import load_squad
    from gpt2qa.demo import run_demo
    from gpt2qa.pipeline import QAPipeline

    result: dict[str, Any] = {"seed": seed}
    for head in HEADS:
        config = demo_config(seed, head, root / f"seed-{seed}" / head, tiny)
        print(f"seed {seed}: gpt2qa demo --seed {seed} --head {head}", file=sys.stderr,
              flush=True)
        metrics = demo_once(run_demo, config)
        out = Path(config.out_dir)
        dev = load_squad(out / "data" / "dev.json").examples
        test = load_squad(out / "data" / "test.json").examples
        pipe = QAPipeline.from_pretrained(out / "run" / "model", device="cpu")
        variants = [(head, True)] + ([("generative-free", False)] if head == "generative"
                                     else [])
        for side, constrain in variants:
            qa = pipe.model.config
            pipe.model.config = dataclasses.replace(qa, decoding=dataclasses.replace(
                qa.decoding, constrain_to_context=constrain))
            result[side] = {**score_side(pipe, dev, test),
                            "train_examples_per_s": train_rate(out / "run"),
                            "demo_seconds": metrics["wall_seconds"]}
            print(f"seed {seed}: {side:<16} dev F1 {result[side]['dev']['f1']:6.2f} tuned "
                  f"{result[side]['dev']['tuned_f1']:6.2f}  test F1 "
                  f"{result[side]['test']['f1']:6.2f}  AUROC {result[side]['test']['auroc']}",
                  file=sys.stderr, flush=True)
    return result


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd over seeds of each side's headline numbers."""
    paths = {"dev_f1": ("dev", "f1"), "dev_tuned_f1": ("dev", "tuned_f1"),
             "test_f1": ("test", "f1"), "test_HasAns_f1": ("test", "HasAns_f1"),
             "test_NoAns_f1": ("test", "NoAns_f1"), "dev_auroc": ("dev", "auroc"),
             "test_auroc": ("test", "auroc")}
    summary: dict[str, Any] = {"seeds": len(runs)}
    for side in SIDES:
        for name, (split, key) in paths.items():
            values = [r[side][split][key] for r in runs if r[side][split][key] is not None]
            summary[f"{side}_{name}"] = round(statistics.fmean(values), 3) if values else None
            summary[f"{side}_{name}_sd"] = (round(statistics.stdev(values), 3)
                                            if len(values) > 1 else None)
        for kind in KINDS:
            values = [r[side]["test"]["by_kind"].get(kind) for r in runs]
            values = [v for v in values if v is not None]
            summary[f"{side}_test_f1_{kind}"] = round(statistics.fmean(values), 2) if values else None
        for key in ("train_examples_per_s", "predict_questions_per_s"):
            summary[f"{side}_{key}"] = round(statistics.fmean(r[side][key] for r in runs), 1)
        summary[f"{side}_test_answers_off_the_context"] = round(statistics.fmean(
            r[side]["test"]["answers_off_the_context"] for r in runs), 1)
    summary["generative_predict_slowdown_vs_bilstm"] = round(
        summary["bilstm_predict_questions_per_s"] / summary["generative_predict_questions_per_s"],
        2)
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    start = time.perf_counter()
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-heads-"))
    try:
        one = hotpot_seed if args.task == "hotpotqa" else run_seed
        runs = [one(seed, root, args.tiny) for seed in range(args.seeds)]
        speeds = train_speeds(root, args.tiny, args.speed_steps) if args.task == "squad" else {}
        small = (small_shape_speeds(args.small_shape_questions, root / "small-shape")
                 if args.small_shape_questions else {})
    finally:
        if not args.work_dir:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    summary = {**(summarise_hotpot(runs) if args.task == "hotpotqa" else summarise(runs)),
               **{f"{head}_train_examples_per_s_side_by_side": v for head, v in speeds.items()},
               "threads": threads, "wall_s": round(time.perf_counter() - start, 1)}
    name = args.name or ("bench_heads" + ("_hotpotqa" if args.task == "hotpotqa" else "")
                         + ("_tiny" if args.tiny else ""))
    summary.update({f"small_shape_{k}": v for k, v in small.items()})
    path = common.write_result(name, {"summary": summary, "args": vars(args), "runs": runs},
                               Path(args.results_dir))
    print(f"wrote {path}", file=sys.stderr)
    print(common.summary_line(summary))
    return {"summary": summary, "runs": runs}


if __name__ == "__main__":
    main()
