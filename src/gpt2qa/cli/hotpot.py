"""The HotpotQA side of the CLI: `cli.py` detects the data format and hands over here."""

from __future__ import annotations

import argparse
from typing import Any

from gpt2qa.cli.commands import field_names, given, print_json
from gpt2qa.errors import GPT2QAError


def evaluate_hotpot_args(args: argparse.Namespace) -> int:
    """`gpt2qa evaluate HOTPOT.json PREDS.json`: the official HotpotQA keys as JSON."""
    from gpt2qa.hotpot_metrics import evaluate_hotpot_files
    from gpt2qa.io import write_json_atomic

    for flag, value in (("--na-prob-file", args.na_prob_file),
                        ("--out-image-dir", args.out_image_dir),
                        ("--breakdown", args.breakdown or None)):
        if value is not None:
            raise GPT2QAError(f"{flag} applies to SQuAD data; {args.data} is HotpotQA")
    result = evaluate_hotpot_files(args.data, args.predictions)
    if args.out_file:
        write_json_atomic(args.out_file, result)
    print_json(result)
    return 0


def check_spans_hotpot(args: argparse.Namespace) -> int:
    """`gpt2qa check-spans HOTPOT.json`: what the paragraph selection and the tokeniser keep.

    Prints the gold-paragraph recall of the selection (with and without the bridge hop) and
    the official metrics of the oracle: the best answers and supporting facts any model
    could output from the selected windows.
    """
    import time

    from gpt2qa.config import FeatureConfig
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.hotpot_data import load_hotpot
    from gpt2qa.hotpot_features import (
        convert_hotpot_examples,
        oracle_predictions,
        selection_recall,
    )
    from gpt2qa.hotpot_metrics import evaluate_hotpot
    from gpt2qa.tokenizer import load_tokenizer

    t0 = time.perf_counter()
    dataset = load_hotpot(args.data, bad_facts="error" if args.misaligned == "error" else "skip")
    tokenizer = load_tokenizer(args.tokenizer)
    special = prepare_tokenizer(tokenizer)
    config = FeatureConfig(**given(args, field_names(FeatureConfig)))
    examples = dataset.examples
    features = convert_hotpot_examples(examples, tokenizer, config, special)
    no_hop = convert_hotpot_examples(examples, tokenizer, config, special, hop=False)
    answers, facts = oracle_predictions(examples, features)
    oracle = evaluate_hotpot(examples, answers, facts)
    print_json({
        "file": str(args.data), "examples": len(examples),
        "max_seq_length": config.max_seq_length,
        "mean_paragraphs_selected": sum(len(f.titles) for f in features) / len(features),
        "selection": selection_recall(examples, features),
        "selection_without_hop": selection_recall(examples, no_hop),
        "oracle": {k: oracle[k] for k in ("em", "f1", "sp_em", "sp_f1", "joint_em",
                                          "joint_f1")},
        "span_answers_lost": sum(1 for ex in examples if ex.answer_type == "span"
                                 and not answers[ex.qas_id]),
        "repairs": len(dataset.repairs), "seconds": round(time.perf_counter() - t0, 3),
    })
    return 0


def train_hotpot_config(config: Any) -> int:
    """`gpt2qa train` with a HotpotQA train file."""
    from gpt2qa.hotpot_metrics import METRIC_KEYS
    from gpt2qa.hotpot_train import train_hotpot

    result = train_hotpot(config)
    summary: dict[str, Any] = {"output_dir": str(result.output_dir), "steps": result.steps,
                               "model_dir": str(result.model_dir), "task": "hotpotqa"}
    if result.metrics:
        summary["metrics"] = {k: result.metrics[k] for k in (*METRIC_KEYS, "sp_threshold")}
    print_json(summary)
    return 0


def predict_hotpot_args(args: argparse.Namespace) -> int:
    """`gpt2qa predict --model HOTPOT_MODEL --data HOTPOT.json --out-dir D`."""
    from pathlib import Path

    from gpt2qa.hotpot_data import detect_format, load_hotpot
    from gpt2qa.hotpot_metrics import predictions_json
    from gpt2qa.hotpot_model import is_hotpot_model, load_hotpot_model, predict_hotpot
    from gpt2qa.io import write_json_atomic
    from gpt2qa.pipeline import pick_device

    if args.data is None or args.out_dir is None:
        raise GPT2QAError(f"{args.model} is a HotpotQA model: give --data HOTPOT.json "
                          "--out-dir DIR (single --question/--context is SQuAD-only)")
    if not Path(args.data).is_file():
        raise GPT2QAError(f"{args.data}: no such file")
    if detect_format(args.data) != "hotpot":
        raise GPT2QAError(f"{args.data}: a SQuAD file, but {args.model} is a HotpotQA model")
    if not is_hotpot_model(args.model):
        raise GPT2QAError(f"{args.data}: a HotpotQA file, but {args.model} is not a HotpotQA "
                          "model (no hotpot.json); train one with gpt2qa train on HotpotQA data")
    if args.precision != "fp32":
        raise GPT2QAError("HotpotQA prediction runs in fp32")
    dataset = load_hotpot(args.data, require_gold=False, bad_facts="skip")
    model, tokenizer, special, threshold = load_hotpot_model(args.model, pick_device(args.device))
    answers, facts = predict_hotpot(model, tokenizer, special, dataset.examples, threshold,
                                    args.batch_size)
    path = Path(args.out_dir) / "predictions.json"
    write_json_atomic(path, predictions_json(answers, facts))
    print_json({"examples": len(answers), "sp_threshold": threshold,
                 "yes": sum(a == "yes" for a in answers.values()),
                 "no": sum(a == "no" for a in answers.values()), "predictions": str(path)})
    return 0
