"""The `gpt2qa` command line. Each sub-command parses flags and calls one stage function.

Heavy imports (torch, transformers) happen inside the commands, so `gpt2qa evaluate` and
`gpt2qa --help` start fast. Every GPT2QAError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import inspect
import json
import os
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gpt2qa import __version__
from gpt2qa.errors import GPT2QAError

Handler = Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, or says it is required (README: `--help`
    lists each default)."""

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        text = action.help or ""
        return not (not action.option_strings or action.required
                    or action.default is argparse.SUPPRESS
                    or "(default" in text or "%(default)" in text)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required and action.option_strings:
            return f"{action.help or ''} (required)".lstrip()
        if not self._shows_default(action):
            return action.help
        default = "not set" if action.default is None else "%(default)s"
        return f"{action.help or ''} (default: {default})".lstrip()

    def _format_action(self, action: argparse.Action) -> str:
        if not (action.help or "").strip() and self._shows_default(action):
            default = "not set" if action.default is None else "%(default)s"
            action = copy.copy(action)  # argparse prints nothing for a flag without help
            action.help = f"(default: {default})"
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    """gpt2qa's parsers: no abbreviated flags (`--step` must not run as `--steps`), the
    defaults in --help, and a "did you mean" for a mistyped flag. Sub-parsers made by
    `add_subparsers` are of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def refuse_unknown(self, extras: Sequence[str]) -> typing.NoReturn:
        """Exit 2 with this parser's usage, naming the unknown flags and the closest ones."""
        import difflib

        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        hints = []
        for extra in extras:
            flag = extra.split("=", 1)[0]
            if flag.startswith("-"):
                close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
                if close:
                    hints.append(f"{flag} -> did you mean {close[0]}?")
        message = f"unrecognized arguments: {' '.join(extras)}"
        self.error(message + (f" ({'; '.join(hints)})" if hints else ""))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_type(tp: Any) -> tuple[Callable[[str], Any] | None, tuple[str, ...] | None]:
    """argparse type and choices for a dataclass field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _field_type(args[0])
    if origin is typing.Literal:
        return str, tuple(str(a) for a in typing.get_args(tp))
    if tp in (int, float, str):
        return tp, None
    return None, None


def field_docs(cls: type) -> dict[str, str]:
    '''The string literal under each field of a dataclass (its attribute docstring), by name:

        max_steps: int = 0
        """Optimizer steps; 0 means run `epochs` epochs."""   ->  {"max_steps": "Optimizer ..."}
    '''
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for stmt, after in zip(body, body[1:], strict=False):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = (),
                        shown_defaults: dict[str, Any] | None = None) -> None:
    """One flag per field of a config dataclass, defaulting to 'not given' (None); the help
    text is the field's docstring and the default it shows is `shown_defaults` or the field's."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        tp = hints[field.name]
        doc = docs.get(field.name, "").replace("%", "%%")
        default = (shown_defaults or {}).get(field.name, field.default)
        help_text = f"{doc} (default: {default})" if doc else f"(default: {default})"
        if tp is bool:
            parser.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
            continue
        conv, choices = _field_type(tp)
        parser.add_argument(_flag(field.name), type=conv, choices=choices, default=None,
                            metavar=None if choices else field.name.upper(), help=help_text)


def config_from_sources(cls: type, args: argparse.Namespace, config_file: str | None) -> Any:
    """Dataclass defaults < YAML config file < command-line flags."""
    values: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    if config_file:
        values.update(_read_yaml_config(config_file, names))
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise GPT2QAError(f"bad configuration: {exc}") from None


def _read_yaml_config(path: str, names: set[str]) -> dict[str, Any]:
    from gpt2qa.io import load_yaml_mapping

    values = {str(k).replace("-", "_"): v for k, v in load_yaml_mapping(path).items()}
    unknown = sorted(set(values) - names)
    if unknown:
        raise GPT2QAError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return values


def _print_json(obj: Any) -> None:
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
        from gpt2qa.hotpot_cli import evaluate_hotpot_args

        return evaluate_hotpot_args(args)
    result = evaluate_files(args.data, args.predictions, na_prob_file=args.na_prob_file,
                            na_prob_thresh=args.na_prob_thresh, out_image_dir=args.out_image_dir,
                            with_breakdown=args.breakdown)
    if args.out_file:
        write_json_atomic(args.out_file, result)
    _warn_on_id_mismatch(args, result)
    _print_json(result)
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
    import time

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
        from gpt2qa.hotpot_cli import check_spans_hotpot

        return check_spans_hotpot(args)
    t0 = time.perf_counter()
    dataset = load_squad(args.data, args.misaligned)
    tokenizer = load_tokenizer(args.tokenizer)
    special = prepare_tokenizer(tokenizer)
    config = FeatureConfig(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                           max_query_length=args.max_query_length, layout=args.layout,
                           null_position=args.null_position)
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
    _print_json({
        "file": str(args.data), "examples": len(dataset.examples), "features": len(features),
        "answerable": len(answerable), "exact": scores["exact"], "f1": scores["f1"],
        "exact_failures": len(failures), "failure_kinds": kinds, "repairs": len(dataset.repairs),
        "seconds": round(time.perf_counter() - t0, 3), "failures": failures[:20],
    })
    return 0


def _add_feature_flags(p: argparse.ArgumentParser) -> None:
    from gpt2qa.config import LAYOUTS, NULL_POSITIONS, FeatureConfig

    d = FeatureConfig()
    p.add_argument("--max-seq-length", type=int, default=d.max_seq_length)
    p.add_argument("--doc-stride", type=int, default=d.doc_stride)
    p.add_argument("--max-query-length", type=int, default=d.max_query_length)
    p.add_argument("--layout", choices=LAYOUTS, default=d.layout)
    p.add_argument("--null-position", choices=NULL_POSITIONS, default=d.null_position)


# -- train --------------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from gpt2qa.config import TrainConfig
    from gpt2qa.train import train

    config = config_from_sources(TrainConfig, args, args.config)
    from gpt2qa.hotpot_train import is_hotpot_run

    if is_hotpot_run(config):
        from gpt2qa.hotpot_cli import train_hotpot_config

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
    _print_json(summary)
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
        from gpt2qa.hotpot_cli import predict_hotpot_args

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
        _print_json({"answer": pred.text, "is_impossible": pred.is_impossible,
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
    _print_json({"examples": len(preds), "no_answer": sum(p.is_impossible for p in preds),
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

    training = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                if f.name not in DEMO_FIXED and getattr(args, f.name, None) is not None}
    cls = HotpotDemoConfig if args.task == "hotpot" else DemoConfig
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if getattr(args, f.name, None) is not None}
    config = cls(**values, training=training)
    if args.task == "hotpot":
        from gpt2qa.hotpot_demo import run_hotpot_demo

        run_hotpot_demo(config)
    else:
        from gpt2qa.demo import run_demo

        run_demo(config)
    return 0


# -- parser ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from gpt2qa.config import DEMO_FIXED, SQUAD_DEMO_TRAINING, DemoConfig, TrainConfig
    from gpt2qa.quantize import PRECISION_HELP, QUANTIZE_HELP, QUANTIZE_MODES

    parser = Parser(
        prog="gpt2qa",
        description="Fine-tune, evaluate and serve GPT-2 (and other decoder-only models) for "
                    "extractive question answering on SQuAD 2.0, with honest abstention.")
    parser.add_argument("--version", action="version", version=f"gpt2qa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train and evaluate a tiny GPT-2 on built-in synthetic "
                                    "SQuAD 2.0 data (no network, ~3 minutes on 2 CPU cores)")
    add_dataclass_flags(p, DemoConfig, skip=("training",))
    p.add_argument("--steps", dest="max_steps", type=int, default=None,
                   help=f"Optimizer steps (default: {SQUAD_DEMO_TRAINING['max_steps']}; "
                        "300 with --task hotpot)")
    add_dataclass_flags(p, TrainConfig, skip=(*DEMO_FIXED, "max_steps"),
                        shown_defaults=SQUAD_DEMO_TRAINING)
    p.add_argument("--task", choices=("squad", "hotpot"), default="squad",
                   help="squad: SQuAD 2.0 with abstention; hotpot: multi-hop HotpotQA-style "
                        "questions with yes/no answers and supporting facts (default: squad)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="fine-tune a decoder-only model for SQuAD-style QA")
    p.add_argument("--config", help="YAML file with any of the settings below")
    add_dataclass_flags(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="answer questions with a trained gpt2qa model directory")
    p.add_argument("--model", required=True, help="a gpt2qa model directory")
    p.add_argument("--data", help="SQuAD JSON file to answer")
    p.add_argument("--out-dir", help="where predictions.json, na_probs.json, nbest.json go")
    p.add_argument("--question")
    p.add_argument("--context")
    p.add_argument("--null-score-diff-threshold", type=float, default=None,
                   help="override the threshold saved with the model")
    p.add_argument("--batch-size", type=int, default=0,
                   help="features per forward; 0 picks one for the device (64 on CUDA; on CPU "
                        "a cache-sized batch, 3 at GPT-2-small shape)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help=PRECISION_HELP)
    p.add_argument("--quantize", choices=QUANTIZE_MODES, default="none", help=QUANTIZE_HELP)
    p.add_argument("--misaligned", choices=("error", "skip", "fix-by-search"), default="error")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="official SQuAD v2.0 (or v1.1) metrics for a predictions file")
    p.add_argument("data", help="SQuAD JSON with gold answers")
    p.add_argument("predictions", help="JSON object: id -> predicted text ('' = no answer)")
    p.add_argument("--na-prob-file", help="JSON object: id -> no-answer probability")
    p.add_argument("--na-prob-thresh", type=float, default=1.0,
                   help="predict no-answer when na_prob exceeds this (default 1.0: never)")
    p.add_argument("--out-file", help="also write the metrics JSON here")
    p.add_argument("--out-image-dir", help="write PR curves and na-prob histograms (PNG) here")
    p.add_argument("--breakdown", action="store_true",
                   help="add scores by question word and answer length")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("check-spans", help="oracle EM/F1: do gold answers survive tokenisation?")
    p.add_argument("data", help="SQuAD JSON file")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory or hub id")
    _add_feature_flags(p)
    p.add_argument("--misaligned", choices=("error", "skip", "fix-by-search"), default="error")
    p.set_defaults(func=cmd_check_spans)

    p = sub.add_parser("launch", help="run train or predict in N local processes (torchrun)")
    p.add_argument("-n", "--nproc-per-node", type=int, default=2,
                   help="processes to start: one per GPU, or CPU processes over gloo (default: 2)")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                   help="the gpt2qa command and its flags, e.g. train --config FILE.yaml")
    p.set_defaults(func=cmd_launch)

    from gpt2qa.report import add_report_parser
    from gpt2qa.study import add_study_parser
    from gpt2qa.zeroshot import add_zero_shot_parser

    add_zero_shot_parser(sub)
    add_study_parser(sub)
    add_report_parser(sub)
    try:
        from gpt2qa.serve import add_serve_parser
    except ImportError as exc:  # FastAPI missing: say so only when serve is used
        p = sub.add_parser("serve", help="serve a gpt2qa model over HTTP (needs FastAPI)")
        p.set_defaults(func=_missing(f"gpt2qa serve needs FastAPI and uvicorn ({exc})"))
    else:
        add_serve_parser(sub)
    return parser


def _missing(message: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        raise GPT2QAError(message)

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers' own per-load progress bars would drown ours.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # argparse would print the top-level usage; the sub-command's is the useful one.
        subparsers = next(a for a in parser._actions
                          if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].refuse_unknown(extras)
    handler: Handler = args.func
    try:
        return handler(args)
    except GPT2QAError as exc:
        print(f"gpt2qa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gpt2qa {args.command}: interrupted", file=sys.stderr)
        return 130
