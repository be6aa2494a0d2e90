"""The task registry: every task gpt2qa knows, and `resolve`, which picks one at the edges.

`--task auto` (the default) takes the task recorded in a model directory (predict, serve), or
else the first task whose `sniff` accepts the data file. Adding a task is a folder here and
one line in `TASKS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gpt2qa.config import QA_CONFIG_NAME, TASK_NAMES, TrainConfig
from gpt2qa.errors import DataError, GPT2QAError
from gpt2qa.nesting import build, flatten
from gpt2qa.reading import loads_json
from gpt2qa.task import Task, refuse_unsupported
from gpt2qa.tasks.hotpotqa import HotpotTask
from gpt2qa.tasks.squad import SquadTask

TASKS: dict[str, Task] = {task.name: task for task in (SquadTask(), HotpotTask())}
ALIASES = {"hotpot": "hotpotqa"}


def get(name: str) -> Task:
    name = ALIASES.get(name, name)
    if name not in TASKS:
        raise GPT2QAError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    return TASKS[name]


def for_data(path: str | os.PathLike[str], data_format: str = "auto") -> Task:
    """The task that reads `--data-format` (a name other than auto), else the first task whose
    reader accepts this file."""
    for task in TASKS.values():
        if data_format in task.formats if data_format != "auto" else task.sniff(str(path)):
            return task
    raise DataError(str(path), "neither a SQuAD file (the official JSON, or flat rows or MRQA "
                               "lines: docs/data.md) nor a HotpotQA file (a JSON list of "
                               "questions)")


def for_model(model_dir: str | os.PathLike[str]) -> Task:
    """The task a model directory was trained for (gpt2qa.json's ``task``; a directory from
    before that field is SQuAD, or HotpotQA where a task says it wrote it)."""
    from gpt2qa.config import read_qa_json

    obj = read_qa_json(model_dir)
    for task in TASKS.values():
        obj = task.upgrade_config(model_dir, obj)
    return get(str(obj.get("task", "squad")))


def for_run(run_dir: str | os.PathLike[str]) -> Task:
    """The task a training run directory was for (`gpt2qa report`): train_config.json's
    ``task`` (train records it), else its model directory's, else SQuAD (a run from before
    either was recorded)."""
    path = Path(run_dir) / "train_config.json"
    name: Any = None
    if path.is_file():
        try:
            obj = loads_json(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            raise GPT2QAError(f"{path}: not a readable JSON file") from None
        name = obj.get("task") if isinstance(obj, dict) else None
    if isinstance(name, str) and name != "auto":
        if ALIASES.get(name, name) not in TASKS:
            raise GPT2QAError(f"{path}: task {name!r} is not one gpt2qa knows "
                              f"({', '.join(TASKS)})")
        return get(name)
    model_dir = Path(run_dir) / "model"
    if (model_dir / QA_CONFIG_NAME).is_file():
        return for_model(model_dir)
    return TASKS["squad"]


def resolve(name: str = "auto", data: str | os.PathLike[str] | None = None,
            model_dir: str | os.PathLike[str] | None = None, data_format: str = "auto") -> Task:
    """`--task`: a name, or auto (the model directory's task, else the one that reads
    `--data-format`, else the data file's). A name that is not the task a model directory was
    trained for is one line, before it loads; so is a `--data-format` the task does not read."""
    saved = (for_model(model_dir) if model_dir is not None
             and (Path(model_dir) / QA_CONFIG_NAME).is_file() else None)
    if name != "auto":
        task = get(name)
        if saved is not None and saved is not task:
            raise GPT2QAError(f"{model_dir}: a {saved.name} model, not {task.name} (--task)")
    elif saved is not None:
        task = saved
    elif data is not None:
        task = for_data(data, data_format)
    else:
        task = TASKS["squad"]
    check_format(task, data_format)
    if (data is not None and name != "auto" and data_format == "auto"
            and not task.sniff(str(data))):
        raise GPT2QAError(f"{data}: not a {task.name} file (--task {name})")
    return task


def check_format(task: Task, data_format: str) -> None:
    """One line when `--data-format` names a layout `task` does not read."""
    if data_format != "auto" and data_format not in task.formats:
        reads = ", ".join(task.formats) if task.formats else "only its own official layout"
        raise GPT2QAError(f"--data-format {data_format} is not supported for {task.name}: it "
                          f"reads {reads}")


def for_training(config: TrainConfig) -> Task:
    """The task of a training run, with every setting it cannot honour refused."""
    model_dir = config.model if (Path(config.model) / QA_CONFIG_NAME).is_file() else None
    fmt = config.reading.data_format
    task = resolve(config.task, config.train_file, None if config.train_file else model_dir,
                   fmt)
    if config.eval_file is not None and fmt == "auto" and not task.sniff(config.eval_file):
        raise GPT2QAError(f"{config.eval_file}: the train file is {task.name}, so the eval "
                          "file must be too")
    defaults = flatten(build(TrainConfig, {"train_file": "-"}))
    refuse_unsupported(task, flatten(config), defaults)
    return task


def fine_tune(config: TrainConfig, task: Task | None = None, synthetic: bool = False) -> Any:
    """`gpt2qa train` as a Python call: resolve the task, then train (`gpt2qa.train.train`;
    `synthetic`: the demos' data, which the model card says)."""
    from gpt2qa.train import train

    return train(config, task or for_training(config), synthetic)
