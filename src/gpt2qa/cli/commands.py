"""What each `gpt2qa` command does: one handler per command, taking the parsed flags.

The flags themselves are declared in `cli.flags`. Handlers import the stages they run when they
run, so that building the parser (and `gpt2qa --help`) never imports torch.
"""

from __future__ import annotations

import argparse
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
    the settings class keeps its own default (`argparsing.add_settings_flags`)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def field_names(cls: type) -> list[str]:
    """A settings class's flat setting names (nested records included): its flags."""
    from gpt2qa.nesting import flat_fields

    return list(flat_fields(cls))


def config_from_sources(cls: type, args: argparse.Namespace, config_file: str | None) -> Any:
    """Dataclass defaults < YAML config file < command-line flags."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(read_yaml_config(config_file, set(field_names(cls))))
    values.update(given(args, field_names(cls)))
    from gpt2qa.nesting import build

    try:
        return build(cls, values, config_file or "settings")
    except TypeError as exc:
        raise GPT2QAError(f"bad configuration: {exc}") from None


def read_yaml_config(path: str, names: set[str]) -> dict[str, Any]:
    from gpt2qa.reading import load_yaml_mapping

    values = {str(k).replace("-", "_"): v for k, v in load_yaml_mapping(path).items()}
    unknown = sorted(set(values) - names)
    if unknown:
        raise GPT2QAError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return values


def reading_flags(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """How to read the data file (`config.DataFormat`: --data-format and the column flags),
    and the flags among them that were given (a task that reads only its own layout refuses
    them: `task.refuse_unsupported`)."""
    from gpt2qa.config import DataFormat

    flags = given(args, field_names(DataFormat))
    return DataFormat(**flags), flags


def print_json(obj: Any) -> None:
    """`obj` as JSON on stdout; NaN or infinity (not JSON) is one GPT2QAError line naming the
    first such value's place, and nothing is printed."""
    from gpt2qa.io import non_finite_path

    try:
        text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        where = non_finite_path(obj)
        raise GPT2QAError(f"not printed: {where or 'a value'} is NaN or infinite, which JSON "
                          "cannot hold") from None
    print(text)


# -- evaluate ---------------------------------------------------------------------------------

def cmd_evaluate(args: argparse.Namespace) -> int:
    from gpt2qa import tasks
    from gpt2qa.io import check_output_dir, check_output_file, write_json_atomic
    from gpt2qa.task import refuse_unsupported

    if args.out_file:
        check_output_file(args.out_file, "--out-file")
    if args.out_image_dir:
        check_output_dir(args.out_image_dir, "--out-image-dir")
    reading, reading_given = reading_flags(args)
    task = tasks.resolve(args.task, data=args.data, data_format=reading.data_format)
    options = {"na_prob_file": args.na_prob_file, "out_image_dir": args.out_image_dir,
               "breakdown": args.breakdown or None, **reading_given}
    refuse_unsupported(task, options)
    result = task.score_files(args.data, args.predictions, {
        "na_prob_file": args.na_prob_file, "na_prob_thresh": args.na_prob_thresh,
        "out_image_dir": args.out_image_dir, "with_breakdown": args.breakdown,
        "reading": reading})
    if args.out_file:
        write_json_atomic(args.out_file, result)
    _warn_on_id_mismatch(args, result)
    print_json(result)
    return 0


def _warn_on_id_mismatch(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """One stderr line when most questions have no prediction: probably the wrong file pair
    (say SQuAD 1.1 dev against v2.0 predictions), which would otherwise score a quiet 0.
    A HotpotQA result counts its missing answers and supporting facts apart: the larger."""
    total = int(result.get("total", 0))
    missing = result.get("missing", max(result.get("missing_answer", 0),
                                        result.get("missing_sp", 0)))
    matched = total - int(missing)
    if total and matched < total / 2:
        print(f"gpt2qa evaluate: warning: only {matched} of the {total} questions in {args.data} "
              f"have a prediction in {args.predictions} ({result.get('extra', 0)} predictions "
              "are for other ids); are these the right files?", file=sys.stderr)


# -- check-spans ------------------------------------------------------------------------------

def cmd_check_spans(args: argparse.Namespace) -> int:
    """What tokenisation and windowing keep of the gold answers: the task's own report."""
    from gpt2qa import tasks
    from gpt2qa.config import FeatureConfig
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.task import refuse_unsupported
    from gpt2qa.tokenizer import load_tokenizer

    t0 = time.perf_counter()
    reading, reading_given = reading_flags(args)
    task = tasks.resolve(args.task, data=args.data, data_format=reading.data_format)
    refuse_unsupported(task, reading_given)
    dataset = task.read(args.data, args.misaligned, reading=reading)
    tokenizer = load_tokenizer(args.tokenizer)
    special = prepare_tokenizer(tokenizer)
    config = FeatureConfig(**given(args, field_names(FeatureConfig)))
    report = task.check_spans(dataset, tokenizer, config, special)
    print_json({"file": str(args.data), "task": task.name, **report,
                "seconds": round(time.perf_counter() - t0, 3)})
    return 0


# -- train --------------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from gpt2qa import tasks
    from gpt2qa.config import TrainConfig
    from gpt2qa.train import train

    config = config_from_sources(TrainConfig, args, args.config)
    task = tasks.for_training(config)
    result = train(config, task)
    if not result.main_process:
        return 0
    summary: dict[str, Any] = {"output_dir": str(result.output_dir), "steps": result.steps,
                               "model_dir": str(result.model_dir), "task": task.name}
    if result.metrics:
        summary["metrics"] = {k: result.metrics[k] for k in task.summary_keys
                              if k in result.metrics}
    print_json(summary)
    return 0


# -- predict --------------------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    from gpt2qa import tasks
    from gpt2qa.io import check_output_dir, write_json_atomic
    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.task import refuse_unsupported

    if (args.data is None) == (args.question is None):
        raise GPT2QAError("give either --data FILE --out-dir DIR, or --question Q --context C")
    if args.data is not None and args.out_dir is None:
        raise GPT2QAError("--data needs --out-dir for the prediction files")
    if args.question is not None and args.context is None:
        raise GPT2QAError("--question needs --context")
    if args.data is not None and not Path(args.data).is_file():
        raise GPT2QAError(f"{args.data}: no such file")
    if args.out_dir is not None:
        check_output_dir(args.out_dir, "--out-dir")
    reading, reading_given = reading_flags(args)
    task = tasks.resolve(args.task, model_dir=args.model, data_format=reading.data_format)
    refuse_unsupported(task, reading_given)
    streamed = _streamed(args, task)
    if args.data is not None and reading.data_format == "auto" and not task.sniff(args.data):
        raise GPT2QAError(f"{args.data}: not a {task.name} file, but {args.model} is a "
                          f"{task.name} model")
    if streamed:
        from gpt2qa.stream import bound_kernel_cache

        bound_kernel_cache()
    group = _process_group_from_launcher()
    device = str(group.device) if group is not None else args.device
    pipe = QAPipeline.from_pretrained(args.model, device=device, precision=args.precision,
                                      quantize=args.quantize,
                                      constrain_to_context=args.constrain_to_context)
    main_process = group is None or group.is_main_process
    if args.question is not None:
        if main_process:
            print_json(_answer_one(pipe, args))
        return 0
    if streamed:
        return _predict_streamed(args, pipe, group, reading)
    dataset = task.read(args.data, args.misaligned, gold=False, reading=reading)
    preds = pipe.predict(dataset.examples, args.batch_size, args.null_score_diff_threshold,
                         sharded=group is not None, batch_invariant=True)
    if not main_process:
        return 0
    paths = {}
    for name, obj in task.files(preds).items():
        paths[name] = Path(args.out_dir) / f"{name}.json"
        write_json_atomic(paths[name], obj)
    print_json({"examples": len(preds), "task": task.name,
                **{k: str(v) for k, v in paths.items()}})
    return 0


def _streamed(args: argparse.Namespace, task: Any) -> bool:
    """Whether `predict` streams (--stream, or a JSON-lines --data); the streaming flags
    without it, and a task that cannot stream (its `refuses`), are one line each."""
    from gpt2qa.stream import is_json_lines

    streamed = args.data is not None and (args.stream or is_json_lines(args.data))
    if not streamed and (args.stream or args.chunk_size is not None or args.no_merge):
        raise GPT2QAError("--stream, --chunk-size and --no-merge are for answering a --data "
                          "file streamed (--stream, or a .jsonl file)")
    why = task.refuses.get("stream")
    if streamed and why:
        raise GPT2QAError(f"a streamed predict (--stream, or a .jsonl --data) is not supported "
                          f"for {task.name}: {why}")
    return streamed


def _predict_streamed(args: argparse.Namespace, pipe: Any, group: Any,
                      reading: Any) -> int:
    """`predict --stream`: `gpt2qa.stream`; the main process prints the summary."""
    import os

    from gpt2qa.readers import iter_examples
    from gpt2qa.stream import DEFAULT_CHUNK_SIZE, StreamSettings, stream_predict

    settings = StreamSettings(
        chunk_size=DEFAULT_CHUNK_SIZE if args.chunk_size is None else args.chunk_size,
        n_best=args.n_best, merge=not args.no_merge, batch_size=args.batch_size,
        null_score_diff_threshold=args.null_score_diff_threshold)
    # Read as consumed: JSON lines, CSV and Parquet a line or row group at a time; the
    # stream refuses a repeated id itself, so the reader need not remember every id.
    examples = iter_examples(args.data, reading, args.misaligned, check_offsets=False,
                             require_answers=False, unique_ids=False)
    rank, world = (group.process_index, group.num_processes) if group is not None else (0, 1)
    identity = {"model": os.path.abspath(args.model), "data": os.path.abspath(args.data)}
    result = stream_predict(pipe, examples, args.out_dir, settings, rank, world, identity)
    if rank == 0:
        print_json({"examples": result.examples, "task": pipe.task.name,
                    "chunk_size": settings.chunk_size, "processes": world,
                    "written": result.written, "resumed": result.resumed,
                    "logs": [str(p) for p in result.logs],
                    **{k: str(v) for k, v in result.merged.items()}})
    return 0


def _answer_one(pipe: Any, args: argparse.Namespace) -> dict[str, Any]:
    """`predict --question Q --context C`: the task's answer record, as JSON."""
    from gpt2qa.data import check_text

    check_text(args.question, "--question")
    check_text(args.context, "--context")
    context = pipe.task.parse_context(args.context, "--context")
    return pipe.task.answer_json(pipe.answer(args.question, context,
                                             args.null_score_diff_threshold))


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
    """One demo run; a flag the demo refuses (`argparsing.add_refused_flags`) or one the other
    task's demo alone has is one line, before anything runs."""
    from gpt2qa.config import TrainConfig
    from gpt2qa.demo_config import DEMO_FIXED, DemoConfig, HotpotDemoConfig

    if getattr(args, "refused", None):
        raise GPT2QAError(args.refused[0])
    training = given(args, (n for n in field_names(TrainConfig) if n not in DEMO_FIXED))
    hotpot = args.task in ("hotpot", "hotpotqa")  # the demo is an edge: it picks the task
    cls = HotpotDemoConfig if hotpot else DemoConfig
    stray = given(args, set(field_names(HotpotDemoConfig)) - set(field_names(cls)))
    if stray:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(stray))
        raise GPT2QAError(f"{flags}: only for --task hotpotqa")
    config = cls(**given(args, field_names(cls)), training=training)
    if hotpot:
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
    values = given(args, field_names(ZeroShotConfig))
    for name in ("template", "shot_template"):
        if name in values:
            values[name] = _unescape(values[name])
    if "abstain_phrases" in values:
        values["abstain_phrases"] = tuple(p.strip() for p in values["abstain_phrases"].split(",")
                                          if p.strip())
    config = ZeroShotConfig(**values)
    metrics = run_zero_shot(args.model, args.data, args.out_dir, config, device=args.device,
                            max_examples=args.max_examples, progress=args.progress,
                            reading=reading_flags(args)[0])
    print_json(metrics)
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
    from gpt2qa import tasks
    from gpt2qa.report import build_report

    path = build_report(args.runs, args.out, args.eval_file, task_of=tasks.for_run)
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

    if args.task != "auto":  # a --task the model was not trained for: one line, before loading
        from gpt2qa import tasks

        tasks.resolve(args.task, model_dir=args.model)
    serve.serve_forever(args.model, settings_from_args(args), device=args.device,
                        precision=args.precision, log_level=args.log_level,
                        quantize=args.quantize)
    return 0
