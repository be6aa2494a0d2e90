"""Every `gpt2qa` flag, declared here and nowhere else.

Settings classes (TrainConfig, DemoConfig, FeatureConfig, ServeSettings) become flags by one
mechanism, `argparsing.add_settings_flags`: one flag per field, its docstring as the help, its
default shown. `demo` serves two tasks: a default that differs between DemoConfig and
HotpotDemoConfig shows both (`demo_help`), and the training flags that mean nothing for a demo
are hidden and refused in one line (`argparsing.add_refused_flags`). Commands without a
settings class (predict, evaluate, launch, zero-shot, study, report) declare their few flags
below, one parser function each; flags several commands share (--device, --task,
--misaligned) have one function each. `build_parser` is the command table.
"""

from __future__ import annotations

import argparse
from typing import Any

import gpt2qa.cli.commands as cmd
from gpt2qa import __version__
from gpt2qa.cli.argparsing import (
    Parser,
    add_refused_flags,
    add_settings_flags,
    field_docs,
    plain_help,
    settings_fields,
    shown_default,
)
from gpt2qa.config import (
    MISALIGNED_MODES,
    PRECISIONS,
    QUANTIZE_MODES,
    TASK_NAMES,
    DataFormat,
    FeatureConfig,
    TrainConfig,
)
from gpt2qa.demo_config import DEMO_FIXED, DEMO_REFUSED, DemoConfig, HotpotDemoConfig
from gpt2qa.nesting import flat_fields, flatten
from gpt2qa.stream import DEFAULT_CHUNK_SIZE
from gpt2qa.zeroshot.settings import ZeroShotConfig

DATA_FILE_HELP = ("SQuAD JSON, flat rows (JSON lines, JSON, CSV, Parquet), MRQA JSON lines "
                  "(docs/data.md) or HotpotQA JSON")
"""The data files predict, evaluate and check-spans read, as their --help says it."""


# -- flags several commands share ----------------------------------------------------------------

def add_device_flags(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    """--device, and unless `precision` is False (zero-shot has its own) --precision and
    --quantize."""
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1 (default: cuda if available)")
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                            help="fp32; bf16 autocast on CUDA, or on a CPU with bf16 instructions "
                                 "(avx512_bf16/amx); fp16 on CUDA. Heads and decoding stay fp32")
        parser.add_argument("--quantize", choices=QUANTIZE_MODES, default="none",
                            help="int8: dynamic int8 quantisation of the backbone's matmuls, CPU "
                                 "only; the head and decoding stay fp32 (default: none)")


def add_task_flag(parser: argparse.ArgumentParser, auto: str) -> None:
    parser.add_argument("--task", choices=TASK_NAMES, default="auto",
                        help=f"squad or hotpotqa; auto takes {auto} task (default: auto)")


def add_misaligned_flag(parser: argparse.ArgumentParser) -> None:
    """--misaligned, with TrainConfig's help for it."""
    parser.add_argument("--misaligned", choices=MISALIGNED_MODES, default="error",
                        help=plain_help(field_docs(TrainConfig)["misaligned"]))


# -- the command table ---------------------------------------------------------------------------

DESCRIPTION = (
    "Fine-tune, evaluate and serve GPT-2 (and other decoder-only models) for extractive question "
    "answering: SQuAD 2.0 with honest abstention, and HotpotQA (multi-hop, yes/no answers and "
    "supporting facts). Start with gpt2qa demo (offline, on a CPU).")


def build_parser() -> argparse.ArgumentParser:
    """The command table: one sub-parser per command, each declared by its own function."""
    parser = Parser(prog="gpt2qa", description=DESCRIPTION,
                    epilog="gpt2qa COMMAND --help lists a command's flags and their defaults.")
    parser.add_argument("--version", action="version", version=f"gpt2qa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="the command to run, one of:")
    for add in (add_demo_parser, add_train_parser, add_predict_parser, add_evaluate_parser,
                add_check_spans_parser, add_launch_parser, add_zero_shot_parser,
                add_study_parser, add_report_parser, add_serve_parser):
        add(sub)
    return parser


# -- demo: one parser for both demos; a flag whose default differs per task shows both ------------

DEMO_TASKS: tuple[tuple[str, type], ...] = (("squad", DemoConfig),
                                            ("hotpotqa", HotpotDemoConfig))
"""The demos `--task` picks, the first the default; their settings classes hold every default
that `demo --help` shows."""


def demo_defaults(cls: type) -> dict[str, Any]:
    """Every setting of a default run of this demo, by flag name: the demo's own fields, then
    the training settings it runs with (`DemoConfig.train_config`)."""
    demo = cls()
    own = {name: getattr(demo, name) for name in flat_fields(cls) if name != "training"}
    return {**own, **flatten(demo.train_config())}


def demo_help() -> tuple[dict[str, str], dict[str, str]]:
    """The defaults and help texts `demo --help` shows, by setting: a default that differs
    per task names both ("0.0015; 0.002 with --task hotpotqa"), and a setting only one demo
    has says so."""
    (first, first_cls), (other, other_cls) = DEMO_TASKS
    ours, theirs = demo_defaults(first_cls), demo_defaults(other_cls)
    docs = {**{n: d for n, _, _, d in settings_fields(TrainConfig)},
            **{n: d for n, _, _, d in settings_fields(first_cls)}}
    other_docs = field_docs(other_cls)
    shown: dict[str, str] = {}
    for name in {**ours, **theirs}:
        if name not in theirs or name in other_cls.unused:  # type: ignore[attr-defined]
            docs[name] = f"{docs.get(name, '')} Only for --task {first}.".lstrip()
        elif name not in ours:
            docs[name] = f"{other_docs.get(name, '')} Only for --task {other}.".lstrip()
            shown[name] = shown_default(theirs[name])
        elif ours[name] != theirs[name]:
            shown[name] = (f"{shown_default(ours[name])}; {shown_default(theirs[name])} "
                           f"with --task {other}")
        if name in ours:
            shown.setdefault(name, shown_default(ours[name]))
        if name in ours and other_docs.get(name) and other_docs[name] != docs.get(name):
            text = other_docs[name]
            docs[name] = f"{docs.get(name, '')} With --task {other}: {text[:1].lower()}{text[1:]}"
    return shown, docs


def add_demo_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa demo`: --task, the demos' own settings, the training settings a demo
    may change (--steps for max_steps), and the training flags it refuses, hidden."""
    p = sub.add_parser(
        "demo", help="train and evaluate a tiny GPT-2 on built-in synthetic SQuAD 2.0 data, "
                     "offline, in a few minutes on a CPU; --task hotpotqa for multi-hop",
        description="Train and evaluate a tiny GPT-2 on built-in synthetic data, offline: SQuAD "
                    "2.0 with abstention, or with --task hotpotqa multi-hop HotpotQA-style "
                    "questions. A default that differs between the two demos shows both.")
    p.add_argument("--task", choices=("squad", "hotpotqa", "hotpot"), default="squad",
                   help="squad: SQuAD 2.0 with abstention; hotpotqa (or hotpot): multi-hop "
                        "HotpotQA-style questions with yes/no answers and supporting facts "
                        "(default: squad)")
    shown, docs = demo_help()
    demo_fields = [name for name, *_ in settings_fields(DemoConfig)]
    add_settings_flags(p, DemoConfig, skip=("training",), shown_defaults=shown, docs=docs)
    add_settings_flags(p, HotpotDemoConfig, skip=demo_fields, shown_defaults=shown, docs=docs)
    p.add_argument("--steps", dest="max_steps", type=int, default=None, metavar="STEPS",
                   help=f"Optimizer steps: the demo always runs this many (it takes no "
                        f"--epochs). (default: {shown['max_steps']})")
    add_settings_flags(p, TrainConfig, skip=(*DEMO_FIXED, *DEMO_REFUSED, "max_steps"),
                       shown_defaults=shown, docs=docs)
    add_refused_flags(p, TrainConfig, DEMO_REFUSED)
    p.set_defaults(func=cmd.cmd_demo)
    return p


# -- the other commands -------------------------------------------------------------------------

def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa train`: every TrainConfig field, and --config for a YAML file of them."""
    p = sub.add_parser("train", help="fine-tune a decoder-only model for extractive QA (SQuAD, "
                                     "HotpotQA)")
    p.add_argument("--config", help="YAML file with any of the settings below")
    add_settings_flags(p, TrainConfig)
    p.set_defaults(func=cmd.cmd_train)
    return p


def add_predict_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa predict`: a data file (--data, --out-dir), or one question
    (--question, --context) in its place."""
    p = sub.add_parser("predict", help="answer questions (a SQuAD or HotpotQA file, or one "
                                       "question) with a trained gpt2qa model directory",
                       description="Answer a file (--data FILE --out-dir DIR) or one question "
                                   "(--question TEXT --context TEXT) with a gpt2qa model.")
    p.add_argument("--model", required=True, help="a gpt2qa model directory")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="FILE",
                        help=f"file of questions to answer (needs --out-dir): {DATA_FILE_HELP}")
    source.add_argument("--question", metavar="TEXT",
                        help="one question to answer instead of --data (needs --context); the "
                             "answer is printed as JSON")
    p.add_argument("--out-dir", metavar="DIR",
                   help="where the prediction files of --data go (SQuAD: predictions.json, "
                        "na_probs.json, nbest.json; HotpotQA: predictions.json)")
    p.add_argument("--context", metavar="TEXT",
                   help="the passage for --question: plain text for a SQuAD model; for a "
                        "HotpotQA model JSON [[title, [sentence, ...]], ...]")
    p.add_argument("--null-score-diff-threshold", type=float, default=None,
                   help="override the threshold saved with the model")
    p.add_argument("--constrain-to-context", action=argparse.BooleanOptionalAction,
                   default=None, help="generative models: write only pieces of the context "
                   "(default: the model's own setting, on unless it was trained with "
                   "--no-constrain-to-context)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="features per forward; 0 picks one for the device (64 on CUDA; on CPU "
                        "a cache-sized batch, 3 at GPT-2-small shape)")
    p.add_argument("--stream", action="store_true", help="answer --data chunk by chunk in "
                   "bounded memory into DIR/predictions.jsonl; rerun to resume (a .jsonl file "
                   "always streams; see docs/scaling.md)")
    p.add_argument("--chunk-size", type=int, metavar="N",
                   help=f"streaming: questions per chunk (default {DEFAULT_CHUNK_SIZE})")
    p.add_argument("--n-best", action="store_true", help="streaming: the n-best answers in each "
                   "line, and nbest.json (always written without streaming)")
    p.add_argument("--no-merge", action="store_true", help="streaming: write the lines only, "
                   "not predictions.json and na_probs.json (rerun without it to merge)")
    add_device_flags(p)
    add_misaligned_flag(p)
    add_settings_flags(p, DataFormat)
    add_task_flag(p, "the model directory's")
    p.set_defaults(func=cmd.cmd_predict)
    return p


def add_evaluate_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa evaluate`: the task's official metrics for a predictions file."""
    p = sub.add_parser("evaluate", help="official metrics of a predictions file: SQuAD v2.0 "
                                        "(or v1.1), or HotpotQA's answer, sp and joint")
    p.add_argument("data", help=f"gold answers: {DATA_FILE_HELP}")
    p.add_argument("predictions",
                   help="predictions JSON: for SQuAD an object id -> predicted text ('' = no "
                        "answer); for HotpotQA the official object of answer and sp")
    p.add_argument("--na-prob-file", help="SQuAD only: JSON object id -> no-answer probability")
    p.add_argument("--na-prob-thresh", type=float, default=1.0,
                   help="SQuAD only: predict no-answer when na_prob exceeds this (default 1.0: "
                        "never)")
    p.add_argument("--out-file", help="also write the metrics JSON here")
    p.add_argument("--out-image-dir",
                   help="SQuAD only: write PR curves and na-prob histograms (PNG) here")
    p.add_argument("--breakdown", action="store_true",
                   help="SQuAD only: add scores by question word and answer length")
    add_settings_flags(p, DataFormat)
    add_task_flag(p, "the data file's")
    p.set_defaults(func=cmd.cmd_evaluate)
    return p


def add_check_spans_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa check-spans`: what tokenisation and windowing keep of the answers."""
    p = sub.add_parser("check-spans", help="oracle EM/F1 of a SQuAD or HotpotQA file: do gold "
                                           "answers survive tokenisation?")
    p.add_argument("data", help=DATA_FILE_HELP)
    p.add_argument("--tokenizer", required=True, help="tokenizer directory or hub id")
    add_settings_flags(p, FeatureConfig)
    add_misaligned_flag(p)
    add_settings_flags(p, DataFormat)
    add_task_flag(p, "the data file's")
    p.set_defaults(func=cmd.cmd_check_spans)
    return p


def add_launch_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa launch`: another command, in N local processes."""
    p = sub.add_parser("launch", help="run train or predict in N local processes (torchrun)")
    p.add_argument("-n", "--nproc-per-node", type=int, default=2,
                   help="processes to start: one per GPU, or CPU processes over gloo (default: 2)")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                   help="the gpt2qa command and its flags, e.g. train --config FILE.yaml")
    p.set_defaults(func=cmd.cmd_launch)
    return p


def add_zero_shot_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``zero-shot`` on an argparse sub-parsers object; its ``func`` is `cmd_zero_shot`."""
    d = ZeroShotConfig()
    p = sub.add_parser("zero-shot", help="answer SQuAD with a causal LM's own head, no "
                                         "fine-tuning (GPT-2 paper baseline)")
    p.add_argument("--model", required=True, help="causal LM directory or hub id")
    p.add_argument("--data", required=True, help="SQuAD questions to answer: SQuAD JSON, flat "
                   "rows (JSON lines, JSON, CSV, Parquet) or MRQA JSON lines (docs/data.md)")
    p.add_argument("--out-dir", required=True,
                   help="where predictions.json, na_probs.json, nbest.json go")
    add_settings_flags(p, DataFormat)
    add_settings_flags(p, ZeroShotConfig, shown_defaults={
        "template": repr(d.template), "shot_template": repr(d.shot_template),
        "abstain_phrases": ",".join(d.abstain_phrases)})
    add_device_flags(p, precision=False)
    p.add_argument("--max-examples", type=int, default=None,
                   help="answer only the first N questions (metrics cover those only)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="show a progress bar on stderr")
    p.set_defaults(func=cmd.cmd_zero_shot)
    return p


def add_study_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa study` on an argparse sub-parsers object."""
    p = sub.add_parser("study", help="run the layout x null-position x head x seed grid on "
                                     "synthetic data, then summarise it (resumable)")
    p.add_argument("--config", required=True, help="study YAML (e.g. configs/study-synthetic.yaml)")
    p.add_argument("--out-dir", required=True, help="study directory (created; reruns resume)")
    p.add_argument("--only", action="append", metavar="KEY=VALUE",
                   help="run only matching cells: layout, null_position (null), head, seed; "
                        "repeat a key for either value")
    p.add_argument("--max-cells", type=int, default=None,
                   help="run at most N cells that need work, then summarise and stop")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="per-cell training progress bars (default: one line per cell)")
    p.set_defaults(func=cmd.cmd_study)
    return p


def add_report_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa report` on an argparse sub-parsers object."""
    p = sub.add_parser("report", help="an HTML page (and summary.md) comparing training runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="gpt2qa training run directories")
    p.add_argument("--out", required=True, help="output folder for index.html, summary.md, PNGs")
    p.add_argument("--eval-file", default=None,
                   help="SQuAD or HotpotQA file with the gold answers (default: each run's eval_file)")
    p.set_defaults(func=cmd.cmd_report)
    return p


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The `gpt2qa serve` flags: ServeSettings' fields, then the model and how to run it."""
    parser.add_argument("--model", required=True, help="a gpt2qa model directory")
    try:
        from gpt2qa.serve.settings import ServeSettings  # pydantic: installed with FastAPI
    except ImportError as exc:
        parser.set_defaults(missing=f"gpt2qa serve needs FastAPI and uvicorn ({exc})")
    else:
        add_settings_flags(parser, ServeSettings)
    add_device_flags(parser)
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"),
                        default="info", help="uvicorn's log level (default: info)")
    add_task_flag(parser, "the model directory's")


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa serve` on the CLI's sub-parsers (`sub` from add_subparsers)."""
    p = sub.add_parser("serve", help="serve a gpt2qa model over HTTP (JSON API and a web page)")
    add_serve_arguments(p)
    p.set_defaults(func=cmd.cmd_serve)
    return p
