"""Accuracy: gpt2qa's defaults vs the standard Hugging Face SQuAD 2.0 recipe, same budget.

For each of `--seeds N` seeds (0, 1, ...), one data set, one init and one budget:

  gpt2qa      `gpt2qa demo --seed S` itself (`gpt2qa.demo.run_demo`): the synthetic SQuAD-2.0
              data, a byte-level BPE tokenizer trained on it, a random tiny GPT-2 saved as the
              init directory, then `gpt2qa.train.train` with the demo's settings (question-first,
              null last, BiLSTM head, DemoConfig's steps x batch, lr, warm-up, max_seq_length)
              and the demo's held-out test sample, scored at the dev-tuned threshold.
  hf          `transformers.GPT2ForQuestionAnswering` loaded from that same init directory,
              trained by `transformers.Trainer` on that seed's data, with the pre- and
              post-processing that examples/pytorch/question-answering/run_qa.py + utils_qa.py
              do under --version_2_with_negative, re-implemented here from their published
              behaviour. Unanswerable features are labelled at index 0 and the null score is
              read at index 0: the consistent version of the recipe.
  hf_literal  the same, with run_qa's null label taken literally: the "CLS" index is
              `input_ids.index(cls_token_id)`, else `input_ids.index(bos_token_id)`, else 0.
              GPT-2 has no CLS token, and with `pad_token = eos_token` its pad, eos and bos
              share one id, so every padded feature's null label lands on its first padding
              token, while utils_qa still reads the null score at index 0.
  generative  (optional: `--sides hf,hf_literal,generative`) `gpt2qa demo --seed S --head
              generative`: the same data, init and budget, the backbone's LM head writing the
              answer or <|null|> (docs/study.md; the detailed comparison is bench_heads.py).

Every side is trained with the settings of the gpt2qa run (read back from its
train_config.json, so a change to DemoConfig carries over): max_steps x batch_size, lr, linear
warm-up of int(warmup_ratio x steps) steps then linear decay, weight decay, clipping,
max_seq_length, n_best_size, max_answer_length, seed. Every side is scored with gpt2qa's
official SQuAD 2.0 metric (`gpt2qa.metrics`; the HF sides through `evaluate_files`, which
backs `gpt2qa evaluate`) on dev at threshold 0 and on the test sample at the threshold tuned
on dev.

Deviations from run_qa.py + utils_qa.py (all deliberate; everything else follows them:
`question.lstrip()`, `truncation="only_second"`, `padding="max_length"`, overflowing windows,
the first gold answer, the offset walk that places start/end labels, n-best over the top
start and end logits, the minimum null score over a question's windows, the "empty" fallback,
`score_diff = null_score - best non-null start - end logit`, answer "" when it is above
`null_score_diff_threshold`):

  1. `tokenizer.pad_token = tokenizer.eos_token`. GPT-2 has no pad token and run_qa's default
     `padding="max_length"` stops without one; this is the usual fix users apply.
  2. Data is read from the SQuAD JSON files with `gpt2qa.data.load_squad`, not through the
     `datasets` library.
  3. `doc_stride`: run_qa's `--doc_stride` is the overlap between windows, gpt2qa's is the step
     between window starts. The HF sides get the demo's number as their overlap. At the demo's
     max_seq_length no synthetic question needs a second window (the result file records the
     feature counts), so the two meanings give the same features here.
  4. Evaluation during training: run_qa evaluates once, after training. Here the HF sides are
     evaluated at the same steps as gpt2qa (its eval_every) and, like gpt2qa, keep the
     checkpoint with the best dev F1 at the tuned threshold.
  5. Scores: run_qa hands `evaluate`'s squad_v2 metric a no-answer probability of 0.0 for every
     question. Here na_prob = sigmoid(score_diff), gpt2qa's convention, so that the official
     best_f1 and a tuned threshold exist for every side. The test sample is answered at the
     dev-tuned `null_score_diff_threshold` (run_qa's flag, default 0.0).
  6. The forward pass for evaluation is run here (eval mode, no grad) instead of through
     run_qa's QuestionAnsweringTrainer; the logits are the same. No nbest/ prediction files
     beyond predictions.json and na_probs.json are written.
  7. Side "hf" labels unanswerable features at index 0 instead of at the CLS-lookup index: the
     one change that makes the recipe consistent for GPT-2 (side "hf_literal" keeps run_qa's).

    python benchmarks/bench_accuracy.py --seeds 3     # the measurement (see below for time)
    python benchmarks/bench_accuracy.py --tiny        # plumbing only, numbers mean nothing

Time: on 2 loaded CPUs (2026-11-30, load average 10-22) one seed at 150 steps took 911 s for
gpt2qa and 910-1,480 s for each HF side; the HF sides pad every window to max_seq_length.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common

SIDES = ("gpt2qa", "hf", "hf_literal")
HF_SIDES = ("hf", "hf_literal")
GENERATIVE = "generative"
"""An optional side (`--sides hf,hf_literal,generative`): `gpt2qa demo --head generative`, the
same data, init and budget with the backbone's LM head writing the answer; the detailed head
comparison (AUROC, question kinds, speeds, unconstrained decoding) is bench_heads.py."""
METRIC_KEYS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "total")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1, each with fresh data/init")
    p.add_argument("--tiny", action="store_true",
                   help="a few steps on a few passages with a 32-wide model (plumbing check)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--steps", type=int, default=0,
                   help="optimizer steps for every side (0: DemoConfig's, as `gpt2qa demo`)")
    p.add_argument("--jobs", type=int, default=1,
                   help="seeds run in parallel, each in its own process (give --threads 1)")
    p.add_argument("--seed-ids", default="", help="comma list of seeds (instead of 0..N-1)")
    p.add_argument("--sides", default=",".join(HF_SIDES),
                   help="HF sides to train in this call (gpt2qa always runs first)")
    p.add_argument("--work-dir", default="",
                   help="keep every run here and reuse the sides already finished there "
                   "(default: a temporary directory, removed after)")
    p.add_argument("--results-dir", default=str(common.RESULTS_DIR))
    p.add_argument("--name", default="", help="result file name (default bench_accuracy[_tiny])")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or args.steps < 0:
        p.error("--seeds and --jobs must be at least 1, --steps at least 0")
    args.seed_list = ([int(x) for x in args.seed_ids.split(",")] if args.seed_ids
                      else list(range(args.seeds)))
    args.side_list = [x.strip() for x in args.sides.split(",") if x.strip()]
    if not set(args.side_list) <= {*HF_SIDES, GENERATIVE}:
        p.error(f"--sides: choose from {', '.join((*HF_SIDES, GENERATIVE))}")
    return args


def demo_config(seed: int, out_dir: Path, tiny: bool, steps: int = 0, head: str = "") -> Any:
    """The demo's DemoConfig for this seed (its own defaults; `--tiny` shrinks everything;
    `head`: another head than the demo's)."""
    from gpt2qa.demo_config import DemoConfig

    config = DemoConfig(out_dir=str(out_dir), seed=seed, progress=False)
    training: dict[str, Any] = {}
    if tiny:
        config = dataclasses.replace(config, n_train=12, n_dev=6, n_layer=2, n_embd=32,
                                     n_head=2, vocab_size=300)
        training = {"max_steps": 4, "batch_size": 8, "max_seq_length": 128}
    if steps:
        training["max_steps"] = steps
    if head:
        training["head"] = head
    config = dataclasses.replace(config, training=training)
    return config


# --------------------------------------------------------------------------- HF recipe


@dataclasses.dataclass(frozen=True)
class HFFeature:
    """One run_qa feature (window). `offsets[i]` is None outside the context (utils_qa's rule)."""

    example_index: int
    input_ids: tuple[int, ...]
    attention_mask: tuple[int, ...]
    offsets: tuple[tuple[int, int] | None, ...]
    start_position: int
    end_position: int
    null_label: int


def cls_lookup(input_ids: Sequence[int], tokenizer: Any) -> int:
    """run_qa's index for unanswerable labels: the CLS token, else the BOS token, else 0.

    For GPT-2 with pad = eos = bos (one id) and right padding, that is the first padding token
    of a padded feature: input_ids [q1 q2 c1 c2 c3 PAD PAD] -> 5.
    """
    if tokenizer.cls_token_id is not None and tokenizer.cls_token_id in input_ids:
        return list(input_ids).index(tokenizer.cls_token_id)
    if tokenizer.bos_token_id is not None and tokenizer.bos_token_id in input_ids:
        return list(input_ids).index(tokenizer.bos_token_id)
    return 0


def hf_features(examples: Sequence[Any], tokenizer: Any, max_length: int, stride: int,
                literal: bool) -> list[HFFeature]:
    """run_qa's prepare_train_features and prepare_validation_features in one pass.

    Labels: a window without the whole first gold answer, and every unanswerable question, get
    the null label (index 0, or `cls_lookup` when `literal`). Otherwise the start label is the
    last token whose offset starts at or before the answer's first character, scanning on from
    the first context token; the end label the first token, scanning back from the last
    context token, that ends at or after the answer's last character. As in run_qa, the start
    scan is bounded by the sequence, not the context.
    """
    enc = tokenizer([ex.question.lstrip() for ex in examples], [ex.context for ex in examples],
                    truncation="only_second", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    out: list[HFFeature] = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ids = enc["input_ids"][i]
        ex_index = enc["overflow_to_sample_mapping"][i]
        ex = examples[ex_index]
        seq = enc.sequence_ids(i)
        null = cls_lookup(ids, tokenizer) if literal else 0
        start = end = null
        if ex.answers and not ex.is_impossible:
            a_start, a_end = ex.answers[0].answer_start, ex.answers[0].answer_end
            first = seq.index(1)
            last = len(seq) - 1 - seq[::-1].index(1)
            if offsets[first][0] <= a_start and offsets[last][1] >= a_end:
                start = first
                while start < len(offsets) and offsets[start][0] <= a_start:
                    start += 1
                start -= 1
                end = last
                while offsets[end][1] >= a_end:
                    end -= 1
                end += 1
        out.append(HFFeature(
            example_index=ex_index, input_ids=tuple(ids),
            attention_mask=tuple(enc["attention_mask"][i]),
            offsets=tuple(tuple(o) if s == 1 else None for o, s in zip(offsets, seq, strict=True)),
            start_position=start, end_position=end, null_label=null))
    return out


@dataclasses.dataclass(frozen=True)
class HFPredictions:
    texts: dict[str, str]
    """At the given threshold ("" = abstain)."""
    best_spans: dict[str, str]
    """The best non-null answer of every question (for threshold tuning)."""
    na_probs: dict[str, float]
    """sigmoid(score_diff)."""


def hf_postprocess(examples: Sequence[Any], features: Sequence[HFFeature], starts: Any,
                   ends: Any, n_best_size: int, max_answer_length: int,
                   threshold: float) -> HFPredictions:
    """utils_qa's postprocess_qa_predictions with version_2_with_negative.

    Per question: the null score is the smallest start[0] + end[0] over its windows; the
    candidates are every (start, end) among each window's top-n start and top-n end logits
    that lie in the context, in order, and are at most max_answer_length tokens; the best
    non-null one is the highest-scoring candidate with non-empty text, or a score-0 "empty"
    answer when there is none.
    """
    import numpy as np

    from gpt2qa.decode import sigmoid

    by_example: dict[int, list[int]] = defaultdict(list)
    for k, f in enumerate(features):
        by_example[f.example_index].append(k)
    texts, best_spans, na_probs = {}, {}, {}
    for ex_index, ex in enumerate(examples):
        null_score = math.inf
        best_score, best_text = -math.inf, ""
        for k in by_example[ex_index]:
            s, e, offs = starts[k], ends[k], features[k].offsets
            null_score = min(null_score, float(s[0] + e[0]))
            for i in np.argsort(s)[::-1][:n_best_size].tolist():
                if offs[i] is None:
                    continue
                for j in np.argsort(e)[::-1][:n_best_size].tolist():
                    if offs[j] is None or j < i or j - i + 1 > max_answer_length:
                        continue
                    score = float(s[i] + e[j])
                    text = ex.context[offs[i][0]:offs[j][1]]
                    if score > best_score and text:
                        best_score, best_text = score, text
        if best_score == -math.inf:
            best_score, best_text = 0.0, "empty"  # utils_qa's fallback
        diff = null_score - best_score
        texts[ex.qas_id] = "" if diff > threshold else best_text
        best_spans[ex.qas_id] = best_text
        na_probs[ex.qas_id] = sigmoid(diff)
    return HFPredictions(texts, best_spans, na_probs)


def hf_logits(model: Any, features: Sequence[HFFeature], batch_size: int = 64) -> tuple[Any, Any]:
    import numpy as np
    import torch

    model.eval()
    starts, ends = [], []
    with torch.no_grad():
        for b in range(0, len(features), batch_size):
            chunk = features[b: b + batch_size]
            out = model(input_ids=torch.tensor([f.input_ids for f in chunk]),
                        attention_mask=torch.tensor([f.attention_mask for f in chunk]))
            starts.append(out.start_logits.float().numpy())
            ends.append(out.end_logits.float().numpy())
    model.train()
    return np.concatenate(starts), np.concatenate(ends)


def score_files(data: Path, preds: HFPredictions, out_dir: Path) -> dict[str, Any]:
    """Write predictions.json + na_probs.json and score them as `gpt2qa evaluate` does."""
    from gpt2qa.decode import write_json_atomic
    from gpt2qa.evaluation import evaluate_files

    write_json_atomic(out_dir / "predictions.json", preds.texts)
    write_json_atomic(out_dir / "na_probs.json", preds.na_probs)
    return evaluate_files(data, out_dir / "predictions.json", out_dir / "na_probs.json")


def run_hf(side: str, seed: int, data: dict[str, Path], init_dir: Path, tc: dict[str, Any],
           work: Path) -> dict[str, Any]:
    """Train and score one HF side on this seed's data and init; see the module docstring."""
    import torch
    from transformers import (
        AutoTokenizer,
        GPT2ForQuestionAnswering,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from gpt2qa.data import load_squad
    from gpt2qa.decode import threshold_from_na_prob
    from gpt2qa.metrics import evaluate_v2

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(init_dir))
    tokenizer.pad_token = tokenizer.eos_token  # deviation 1
    examples = {split: load_squad(data[split]).examples for split in ("train", "dev", "test")}
    literal = side == "hf_literal"
    feats = {split: hf_features(examples[split], tokenizer, tc["max_seq_length"],
                                tc["doc_stride"], literal) for split in examples}
    dataset = [{"input_ids": list(f.input_ids), "attention_mask": list(f.attention_mask),
                "start_positions": f.start_position, "end_positions": f.end_position}
               for f in feats["train"]]
    torch.manual_seed(seed)
    model = GPT2ForQuestionAnswering.from_pretrained(str(init_dir))

    def predict(split: str, threshold: float) -> HFPredictions:
        starts, ends = hf_logits(model, feats[split])
        return hf_postprocess(examples[split], feats[split], starts, ends, tc["n_best_size"],
                              tc["max_answer_length"], threshold)

    best: dict[str, Any] = {"tuned_f1": None}
    eval_every = tc["eval_every"] or tc["max_steps"]

    class EvalAtGpt2qaSteps(TrainerCallback):  # deviation 4
        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            step = state.global_step
            if step % eval_every and step != tc["max_steps"]:
                return
            preds = predict("dev", 0.0)
            tuned = evaluate_v2(examples["dev"], preds.best_spans, preds.na_probs)
            print(f"  {side} seed {seed} step {step}: dev tuned F1 {tuned['best_f1']:.2f}",
                  file=sys.stderr, flush=True)
            if best["tuned_f1"] is None or tuned["best_f1"] > best["tuned_f1"]:
                best.update(tuned_f1=tuned["best_f1"], step=step, dev=preds,
                            threshold=threshold_from_na_prob(tuned["best_f1_thresh"]),
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})

    targs = TrainingArguments(
        output_dir=str(work / "trainer"), per_device_train_batch_size=tc["batch_size"],
        max_steps=tc["max_steps"], learning_rate=tc["lr"], weight_decay=tc["weight_decay"],
        warmup_steps=int(tc["warmup_ratio"] * tc["max_steps"]), lr_scheduler_type="linear",
        max_grad_norm=tc["max_grad_norm"], logging_strategy="no", save_strategy="no",
        eval_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=seed,
        dataloader_pin_memory=False)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its final metrics
        Trainer(model=model, args=targs, train_dataset=dataset,
                callbacks=[EvalAtGpt2qaSteps()]).train()
    model.load_state_dict(best["state"])
    dev = score_files(data["dev"], best["dev"], work / "dev")
    dev.update(tuned_f1=best["tuned_f1"], tuned_null_score_diff_threshold=best["threshold"])
    test = score_files(data["test"], predict("test", best["threshold"]), work / "test")
    train_f = feats["train"]
    null_rows = [f for f in train_f if f.start_position == f.null_label]
    answer_rows = [f for f in train_f if f.start_position != f.null_label]
    return {
        "dev": dev, "test": test, "best_step": best["step"],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "features": {
            split: {"examples": len(examples[split]), "features": len(feats[split])}
            for split in feats},
        "null_labels": {
            "train_features": len(null_rows),
            "at_index_0": sum(f.null_label == 0 for f in null_rows),
            "at_padding": sum(f.attention_mask[f.null_label] == 0 for f in null_rows)},
        "answer_labels_outside_context": sum(
            f.offsets[f.start_position] is None for f in answer_rows),
    }


# --------------------------------------------------------------------------- gpt2qa side


def run_gpt2qa(config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """`gpt2qa demo` with this config; returns (its scores, the TrainConfig it trained with)."""
    from gpt2qa.demo import run_demo
    from gpt2qa.evaluation import evaluate_files

    out = Path(config.out_dir)
    done = out / "demo_metrics.json"
    if done.is_file():  # finished by an earlier call with this --work-dir
        metrics = json.loads(done.read_text(encoding="utf-8"))
    else:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the summary line
            metrics = run_demo(config)
    tc = json.loads((out / "run" / "train_config.json").read_text(encoding="utf-8"))
    if tc["max_steps"] != config.steps or tc["seed"] != config.seed:
        raise SystemExit(f"{out}: holds a run of {tc['max_steps']} steps, seed {tc['seed']}; "
                         f"this call asks for {config.steps}, seed {config.seed}")
    # Dev scored again from the run's files, as `gpt2qa evaluate` does (same numbers as
    # metrics.json: predictions at threshold 0 of the selected checkpoint).
    dev = evaluate_files(tc["eval_file"], out / "run" / "predictions.json",
                         out / "run" / "na_probs.json")
    dev.update(tuned_f1=metrics["tuned_f1"],
               tuned_null_score_diff_threshold=metrics["tuned_null_score_diff_threshold"],
               null_baseline_f1=metrics["null_baseline_f1"])
    return {"dev": dev, "test": metrics["test"], "best_step": metrics.get("step"),
            "wall_seconds": metrics["wall_seconds"]}, tc


# --------------------------------------------------------------------------- main


def brief(scores: dict[str, Any]) -> dict[str, Any]:
    keep = (*METRIC_KEYS, "best_f1", "tuned_f1", "tuned_null_score_diff_threshold",
            "null_baseline_f1")
    return {k: scores[k] for k in keep if k in scores}


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value: JSON null, printed as nan)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def run_seed(seed: int, root: Path, tiny: bool, steps: int = 0,
             sides: Sequence[str] = HF_SIDES) -> dict[str, Any]:
    """gpt2qa then the HF sides for one seed. A side whose result file is already under `root`
    (an earlier call with this --work-dir) is read back, not run again."""
    config = demo_config(seed, root / f"seed-{seed}" / "gpt2qa", tiny, steps)
    print(f"seed {seed}: gpt2qa (gpt2qa demo --seed {seed})", file=sys.stderr, flush=True)
    result: dict[str, Any] = {"seed": seed}
    result["gpt2qa"], tc = run_gpt2qa(config)
    demo_out = Path(config.out_dir)
    data = {"train": Path(tc["train_file"]), "dev": Path(tc["eval_file"]),
            "test": demo_out / "data" / "test.json"}
    from gpt2qa.decode import write_json_atomic

    for side in HF_SIDES:
        saved = root / f"seed-{seed}" / f"{side}.json"
        if saved.is_file():
            result[side] = json.loads(saved.read_text(encoding="utf-8"))
            continue
        if side not in sides:
            continue
        print(f"seed {seed}: {side}", file=sys.stderr, flush=True)
        result[side] = run_hf(side, seed, data, demo_out / "init", tc,
                              root / f"seed-{seed}" / side)
        write_json_atomic(saved, result[side])
    if GENERATIVE in sides:
        print(f"seed {seed}: gpt2qa demo --seed {seed} --head generative", file=sys.stderr,
              flush=True)
        result[GENERATIVE], _ = run_gpt2qa(demo_config(
            seed, root / f"seed-{seed}" / GENERATIVE, tiny, steps, head=GENERATIVE))
    result["train_config"] = {k: tc[k] for k in (
        "max_steps", "batch_size", "lr", "warmup_ratio", "weight_decay", "max_grad_norm",
        "max_seq_length", "doc_stride", "n_best_size", "max_answer_length", "eval_every",
        "head", "layout", "null_position")}
    for side in (*SIDES, GENERATIVE):
        if side not in result:  # --sides left it out: this seed has no complete row yet
            continue
        result[side]["dev"] = brief(result[side]["dev"])
        result[side]["test"] = brief(result[side]["test"])
        print(f"seed {seed}: {side:<10} dev F1 {result[side]['dev']['f1']:6.2f}  test F1 "
              f"{result[side]['test']['f1']:6.2f}  ({result[side]['wall_seconds']:.0f} s)",
              file=sys.stderr, flush=True)
    write_json_atomic(root / f"seed-{seed}" / "result.json", result)  # kept with --work-dir
    return result


def _seed_process(seed: int, root: Path, tiny: bool, steps: int, sides: Sequence[str],
                  threads: int) -> dict[str, Any]:
    """One seed in a worker process (--jobs)."""
    common.set_threads(threads)
    return run_seed(seed, root, tiny, steps, sides)


def summarise(runs: Sequence[dict[str, Any]], wall: float) -> dict[str, Any]:
    summary: dict[str, Any] = {"seeds": len(runs)}
    for split, suffix in (("dev", ""), ("test", "_test")):
        for side in SIDES:
            mean, sd = mean_sd([r[side][split]["f1"] for r in runs])
            summary[f"{side}{suffix}_f1"] = mean
            summary[f"{side}{suffix}_f1_sd"] = sd
        summary[f"gpt2qa_minus_hf{suffix}"] = (summary[f"gpt2qa{suffix}_f1"]
                                               - summary[f"hf{suffix}_f1"])
    if all(GENERATIVE in r for r in runs):
        for split, suffix in (("dev", ""), ("test", "_test")):
            mean, sd = mean_sd([r[GENERATIVE][split]["f1"] for r in runs])
            summary[f"{GENERATIVE}{suffix}_f1"], summary[f"{GENERATIVE}{suffix}_f1_sd"] = mean, sd
    summary["null_baseline_f1"] = statistics.fmean(
        r["gpt2qa"]["dev"]["null_baseline_f1"] for r in runs)
    summary["gap_10_met"] = ("yes" if min(summary["gpt2qa_minus_hf"],
                                          summary["gpt2qa_minus_hf_test"]) >= 10 else "no")
    summary["wall_s"] = round(wall, 1)
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    start = time.perf_counter()
    made_temp = not args.work_dir
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-accuracy-"))
    try:
        seeds, n = args.seed_list, len(args.seed_list)
        if args.jobs == 1:
            runs = [run_seed(seed, root, args.tiny, args.steps, args.side_list)
                    for seed in seeds]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")
                                     ) as pool:
                runs = list(pool.map(_seed_process, seeds, [root] * n, [args.tiny] * n,
                                     [args.steps] * n, [args.side_list] * n, [threads] * n))
    finally:
        if made_temp:  # only the directory this run created
            shutil.rmtree(root, ignore_errors=True)
    complete = [r for r in runs if all(side in r for side in SIDES)]
    incomplete = [r for r in runs if r not in complete]
    if incomplete:
        print(f"seeds {[r['seed'] for r in incomplete]}: not every side has run (see --sides); "
              "left out of the summary", file=sys.stderr)
    if not complete:
        return {"runs": runs}
    summary = summarise(complete, time.perf_counter() - start)
    summary["threads"] = threads
    summary["wall_s_sides"] = round(sum(r[side]["wall_seconds"] for r in complete
                                        for side in SIDES), 1)
    payload = {"summary": summary, "args": vars(args), "tiny": args.tiny, "runs": complete,
               "incomplete_runs": incomplete}
    name = args.name or ("bench_accuracy_tiny" if args.tiny else "bench_accuracy")
    path = common.write_result(name, payload, Path(args.results_dir))
    print(f"wrote {path}", file=sys.stderr)
    print(common.summary_line(summary))
    return payload


if __name__ == "__main__":
    main()
