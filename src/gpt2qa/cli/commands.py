"""What each `gpt2qa` command does: one handler per command, taking the parsed flags.

The flags themselves are declared in `cli.flags`. Handlers import the stages they run when they
run, so that building the parser (and `gpt2qa --help`) never imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gpt2qa.errors import GPT2QAError

Handler = Callable[[argparse.Namespace], int]


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The flags among `names` that were given: settings flags parse as None when absent, so
    the settings class keeps its own default (`flags.add_settings_flags`)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def config_from_sources(cls: type, args: argparse.Namespace, config_file: str | None) -> Any:
    """Dataclass defaults < YAML config file < command-line flags."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(read_yaml_config(config_file, set(field_names(cls))))
    values.update(given(args, field_names(cls)))
    try:
        return cls(**values)
    except TypeError as exc:
        raise GPT2QAError(f"bad configuration: {exc}") from None


def read_yaml_config(path: str, names: set[str]) -> dict[str, Any]:
    from gpt2qa.io import load_yaml_mapping

    values = {str(k).replace("-", "_"): v for k, v in load_yaml_mapping(path).items()}
    unknown = sorted(set(values) - names)
    if unknown:
        raise GPT2QAError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return values


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


# -- evaluate ---------------------------------------------------------------------------------

def cmd_evaluate(args: argparse.Namespace) -> int:
    from gpt2qa.evaluation import evaluate_files
    from gpt2qa.hotpot_data import detect_format
    from gpt2qa.io import check_output_dir, check_output_file, write_json_atomic

    if args.out_file:
        check_output_file(args.out_file, "--out-file")
    if args.out_image_dir:
        check_output_dir(args.out_image_dir, "--out-image-dir")
    if detect_format(args.data) == "hotpot":
        from gpt2qa.cli.hotpot import evaluate_hotpot_args

        return evaluate_hotpot_args(args)
    result = evaluate_files(args.data, args.predictions, na_prob_file=args.na_prob_file,
                            na_prob_thresh=args.na_prob_thresh, out_image_dir=args.out_image_dir,
                            with_breakdown=args.breakdown)
    if args.out_file:
        write_json_atomic(args.out_file, result)
    _warn_on_id_mismatch(args, result)
    print_json(result)
    return 0


def _warn_on_id_mismatch(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """One stderr line when most questions have no prediction: probably the wrong file pair
    (say SQuAD 1.1 dev against v2.0 predictions), which would otherwise score a quiet 0."""
    total = int(result.get("total", 0))
    matched = total - int(result.get("missing", 0))
    if total and matched < total / 2:
        print(f"gpt2qa evaluate: warning: only {matched} of the {total} questions in {args.data} "
              f"have a prediction in {args.predictions} ({result.get('extra', 0)} predictions "
              "are for other ids); are these the right files?", file=sys.stderr)


# -- check-spans ------------------------------------------------------------------------------

def cmd_check_spans(args: argparse.Namespace) -> int:

    from gpt2qa.config import FeatureConfig
    from gpt2qa.data import load_squad
    from gpt2qa.features import (
        convert_examples_to_features,
        oracle_answers,
        prepare_tokenizer,
        span_failure_kind,
    )
    from gpt2qa.hotpot_data import detect_format
    from gpt2qa.metrics import evaluate_v2
    from gpt2qa.tokenizer import load_tokenizer

    if detect_format(args.data) == "hotpot":
        from gpt2qa.cli.hotpot import check_spans_hotpot

        return check_spans_hotpot(args)
    t0 = time.perf_counter()
    dataset = load_squad(args.data, args.misaligned)
    tokenizer = load_tokenizer(args.tokenizer)
    special = prepare_tokenizer(tokenizer)
    config = FeatureConfig(**given(args, field_names(FeatureConfig)))
    features = convert_examples_to_features(dataset.examples, tokenizer, config, special)
    oracle = oracle_answers(dataset.examples, features)
    answerable = [ex for ex in dataset.examples if ex.qas_id in oracle]
    scores = evaluate_v2(answerable, oracle) if answerable else {"exact": 0.0, "f1": 0.0}
    golds = {ex.qas_id: ex for ex in answerable}
    failures = []
    from gpt2qa.metrics import exact_match

    spans: dict[str, set[tuple[int, int]]] = {}
    for f in features:
        spans.setdefault(f.qas_id, set()).update(f.token_spans)
    kinds: dict[str, int] = {}
    for qid, text in oracle.items():
        gold_texts = [a.text for a in golds[qid].answers]
        if not any(exact_match(text, g) for g in gold_texts):
            gold = golds[qid].answers[0]
            kind = span_failure_kind(sorted(spans[qid]), gold.answer_start, gold.answer_end, text)
            kinds[kind] = kinds.get(kind, 0) + 1
            failures.append({"id": qid, "gold": gold_texts[0], "decoded": text, "kind": kind})
    print_json({
        "file": str(args.data), "examples": len(dataset.examples), "features": len(features),
        "answerable": len(answerable), "exact": scores["exact"], "f1": scores["f1"],
        "exact_failures": len(failures), "failure_kinds": kinds, "repairs": len(dataset.repairs),
        "seconds": round(time.perf_counter() - t0, 3), "failures": failures[:20],
    })
    return 0


# -- train --------------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from gpt2qa.config import TrainConfig
    from gpt2qa.train import train

    config = config_from_sources(TrainConfig, args, args.config)
    from gpt2qa.hotpot_train import is_hotpot_run

    if is_hotpot_run(config):
        from gpt2qa.cli.hotpot import train_hotpot_config

        return train_hotpot_config(config)
    result = train(config)
    if not result.main_process:
        return 0
    summary: dict[str, Any] = {"output_dir": str(result.output_dir), "steps": result.steps,
                               "model_dir": str(result.model_dir)}
    if result.metrics:
        keys = ("exact", "f1", "HasAns_f1", "NoAns_f1", "tuned_f1",
                "tuned_null_score_diff_threshold", "null_baseline_f1", "exact_match")
        summary["metrics"] = {k: result.metrics[k] for k in keys if k in result.metrics}
    print_json(summary)
    return 0


# -- predict --------------------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    from gpt2qa.data import load_squad
    from gpt2qa.decode import write_predictions
    from gpt2qa.hotpot_data import detect_format
    from gpt2qa.hotpot_model import is_hotpot_model
    from gpt2qa.pipeline import QAPipeline

    if is_hotpot_model(args.model) or (args.data is not None and Path(args.data).is_file()
                                       and detect_format(args.data) == "hotpot"):
        from gpt2qa.cli.hotpot import predict_hotpot_args

        return predict_hotpot_args(args)
    if (args.data is None) == (args.question is None):
        raise GPT2QAError("give either --data FILE --out-dir DIR, or --question Q --context C")
    if args.data is not None and args.out_dir is None:
        raise GPT2QAError("--data needs --out-dir for predictions.json, na_probs.json, nbest.json")
    if args.question is not None and args.context is None:
        raise GPT2QAError("--question needs --context")
    if args.data is not None and not Path(args.data).is_file():
        raise GPT2QAError(f"{args.data}: no such file")
    if args.out_dir is not None:
        from gpt2qa.io import check_output_dir

        check_output_dir(args.out_dir, "--out-dir")
    if args.question is not None:
        from gpt2qa.data import check_text

        check_text(args.question, "--question")
        check_text(args.context, "--context")
    group = _process_group_from_launcher()
    device = str(group.device) if group is not None else args.device
    pipe = QAPipeline.from_pretrained(args.model, device=device, precision=args.precision,
                                      quantize=args.quantize)
    main_process = group is None or group.is_main_process
    if args.question is not None:
        if not main_process:
            return 0
        pred = pipe.answer(args.question, args.context, args.null_score_diff_threshold)
        best = pred.nbest[0] if pred.nbest else None
        print_json({"answer": pred.text, "is_impossible": pred.is_impossible,
                     "score": best.score if best else None,
                     "no_answer_probability": pred.na_prob,
                     "start": best.start if best and pred.text else None,
                     "end": best.end if best and pred.text else None})
        return 0
    dataset = load_squad(args.data, args.misaligned, check_offsets=False)
    preds = pipe.predict(dataset.examples, args.batch_size, args.null_score_diff_threshold,
                         sharded=group is not None)
    if not main_process:
        return 0
    paths = write_predictions(preds, args.out_dir)
    print_json({"examples": len(preds), "no_answer": sum(p.is_impossible for p in preds),
                 **{k: str(v) for k, v in paths.items()}})
    return 0


def _process_group_from_launcher() -> Any:
    """Accelerate's process state when a launcher (torchrun, accelerate launch, `gpt2qa
    launch`) started several processes, else None."""
    from gpt2qa.launch import check_joined, launched_processes, process_group_on_cpu

    if launched_processes() <= 1:
        return None
    from accelerate import PartialState

    state = PartialState(cpu=process_group_on_cpu())
    check_joined(state.num_processes)
    return state


def cmd_launch(args: argparse.Namespace) -> int:
    from gpt2qa.launch import launch

    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    return launch(args.nproc_per_node, argv)


# -- demo -----------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from gpt2qa.config import DEMO_FIXED, DemoConfig, HotpotDemoConfig, TrainConfig

    training = given(args, (n for n in field_names(TrainConfig) if n not in DEMO_FIXED))
    cls = HotpotDemoConfig if args.task == "hotpot" else DemoConfig
    config = cls(**given(args, field_names(cls)), training=training)
    if args.task == "hotpot":
        from gpt2qa.hotpot_demo import run_hotpot_demo

        run_hotpot_demo(config)
    else:
        from gpt2qa.demo import run_demo

        run_demo(config)
    return 0


# -- zero-shot, study, report, serve ----------------------------------------------------------

def _unescape(template: str) -> str:
    """Let a shell-typed template say \\n for a newline."""
    return template.replace("\\n", "\n")


def cmd_zero_shot(args: argparse.Namespace) -> int:
    """Handler of ``gpt2qa zero-shot``: prints the metrics as JSON."""
    from gpt2qa.io import check_output_dir
    from gpt2qa.zeroshot.run import run_zero_shot
    from gpt2qa.zeroshot.settings import ZeroShotConfig

    if not Path(args.data).is_file():
        raise GPT2QAError(f"{args.data}: no such file")
    check_output_dir(args.out_dir, "--out-dir")
    values: dict[str, Any] = {}
    for name in ("shots", "shots_file", "max_new_tokens", "na_scoring", "batch_size", "seed",
                 "precision"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for name in ("template", "shot_template"):
        if getattr(args, name) is not None:
            values[name] = _unescape(getattr(args, name))
    if args.abstain_phrases is not None:
        values["abstain_phrases"] = tuple(p.strip() for p in args.abstain_phrases.split(",")
                                          if p.strip())
    config = ZeroShotConfig(**values)
    metrics = run_zero_shot(args.model, args.data, args.out_dir, config, device=args.device,
                            max_examples=args.max_examples, progress=args.progress)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from gpt2qa.study.config import load_study_config
    from gpt2qa.study.grid import parse_only
    from gpt2qa.study.runner import run_study  # torch and transformers: only when it runs

    config = load_study_config(args.config)
    only = parse_only(args.only or [], config.grid)
    result = run_study(config, args.out_dir, only=only, max_cells=args.max_cells,
                       progress=args.progress)
    done = sum(1 for o in result.outcomes if o.action != "skipped")
    print(f"study: {done} cell(s) run, {len(result.outcomes) - done} skipped; "
          f"summary: {result.out_dir / 'summary.md'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from gpt2qa.report import build_report

    path = build_report(args.runs, args.out, args.eval_file)
    print(f"report: {path}  (and {path.parent / 'summary.md'})")
    return 0


def settings_from_args(args: argparse.Namespace) -> Any:
    """ServeSettings from the flags that were given (the others keep the model's defaults)."""
    from gpt2qa.serve.settings import ServeSettings

    if getattr(args, "missing", None):
        raise GPT2QAError(args.missing)
    return ServeSettings(**given(args, ServeSettings.model_fields))


def cmd_serve(args: argparse.Namespace) -> int:
    # Looked up on the package when the command runs: the app and torch load only then (and a
    # test can replace `gpt2qa.serve.serve_forever`).
    from gpt2qa import serve

    serve.serve_forever(args.model, settings_from_args(args), device=args.device,
                        precision=args.precision, log_level=args.log_level,
                        quantize=args.quantize)
    return 0
