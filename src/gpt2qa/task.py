"""What the engine asks of a task: the `Task` protocol, and the one place settings are refused.

The engine (features, model, inference, train, checkpoint, pipeline) is written once; a task
(`gpt2qa.tasks.squad`, `gpt2qa.tasks.hotpotqa`, ...) plugs in what differs between data sets:

  reading      sniff(path), read(path, misaligned, gold, reading) -> a dataset with
               `.examples`; formats: the --data-format layouts its reader takes
               (`config.DataFormat`, `gpt2qa.readers`)
  windows      features(examples, tokenizer, config, special) -> `Feature`s (task payload in
               `Feature.extra`)
  heads        heads(width) -> extra modules beside the span head; each reads the backbone's
               hidden states, takes its own batch inputs and adds its own loss term
               (`model.TaskHead`); upgrade_config / upgrade_weights read model directories
               that older gpt2qa versions wrote
  decoding     decode(examples, features, outputs, qa, overrides) -> predictions
  scoring      evaluate(...) -> `Evaluation` (metrics, prediction files, tuned state),
               select(metrics) -> the model-selection key
  files        files(predictions) -> {name: JSON object}; score_files(data, predictions, ...)
  the API      example(id, question, context), parse_context(text), answer_dicts (QAPipeline,
               serve, predict --question: the one place answers get their `score`),
               answer_json (predict --question, serve), example_record (examples.json)
  diagnostics  check_spans(dataset, tokenizer, config, special) (`gpt2qa check-spans`)
  reporting    report: a `ReportSpec`, what the learning curve and `gpt2qa report` show of
               a run (its scores, curves, baseline and tuned threshold)

A task brings no loop, loader, saver or command: every capability of the engine (resume,
several processes, LoRA, int8, serve, the Python API) serves every task. The engine imports
this module, never `gpt2qa.tasks`; the task is chosen once, at the edges (the CLI, the
pipeline factory, the demo and serve), by `gpt2qa.tasks.resolve`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gpt2qa.errors import GPT2QAError


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: what log.jsonl and metrics.json record, the prediction files
    (name -> JSON object, written as NAME.json) and the QAConfig fields tuned on the data
    (saved with the best model)."""

    metrics: dict[str, Any]
    files: dict[str, Any]
    tuned: dict[str, Any]


@dataclass(frozen=True)
class Score:
    """One number `gpt2qa report` shows of a run: a metrics.json key, its column header and
    the one line of the page's legend that says what it is."""

    header: str
    key: str
    meaning: str
    same_data: bool = False
    """Tuned on the very questions it scores (an optimistic figure): not shown for a test
    sample, which is scored at the threshold tuned on the evaluation data."""


@dataclass(frozen=True)
class ReportSpec:
    """What the learning curve (train) and `gpt2qa report` show of a task's runs; the report
    asks the run's task for this instead of knowing any task."""

    scores: tuple[Score, ...]
    scale: float
    """Multiplies the metrics into percent (1 when the task's metrics are percent already)."""
    curves: tuple[tuple[str, str], ...]
    """(legend label, eval-record key): the evaluation scores drawn against steps."""
    baseline: tuple[str, str] | None
    """(label, eval-record key) of a trivial system's score, drawn as a labelled line."""
    threshold: Score | None
    """The cut tuned on the evaluation data and saved with the model (shown as is)."""
    run_files: tuple[str, ...]
    """The prediction files a finished run holds beside metrics.json and log.jsonl."""
    abstains: bool
    """The run saved each question's no-answer probability (na_probs.json) beside its answer
    (predictions.json): the report draws abstention precision/recall, the probabilities'
    histograms and F1 by question word."""


class Task(Protocol):
    """See the module docstring."""

    name: str
    refuses: Mapping[str, str]
    """Settings this task cannot honour (TrainConfig fields or prediction flags) -> why.
    A listed setting given away from its default is refused by `refuse_unsupported`."""
    summary_keys: tuple[str, ...]
    """The metrics `gpt2qa train` prints."""
    report: ReportSpec
    """What the learning curve and `gpt2qa report` show of this task's runs."""
    context_type: type
    """What one question's context is in the Python API and over HTTP: str (SQuAD), or list
    (HotpotQA's [[title, [sentence, ...]], ...]); `example` checks the rest."""
    windows: str
    """How a question and its context become the model's windows, in one sentence for the
    model card, with `FeatureConfig` fields in braces ({max_seq_length}, {doc_stride},
    {max_query_length})."""

    formats: tuple[str, ...]
    """The `--data-format` values (besides auto) its reader takes; none: its own layout only."""

    def sniff(self, path: str) -> bool: ...

    def read(self, path: str, misaligned: str = "error", gold: bool = True,
             reading: Any = None) -> Any: ...

    def hub(self, name: str, misaligned: str, reading: Any = None) -> tuple[Any, Any]: ...

    def features(self, examples: Sequence[Any], tokenizer: Any, config: Any,
                 special: Any) -> list[Any]: ...

    def check_training(self, dataset: Any, features: Sequence[Any], source: str,
                       config: Any) -> dict[str, Any]: ...

    def heads(self, width: int) -> dict[str, Any]: ...

    def upgrade_config(self, model_dir: Any, qa_json: dict[str, Any]) -> dict[str, Any]: ...

    def upgrade_weights(self, weights: dict[str, Any]) -> dict[str, Any]: ...

    def decode(self, examples: Sequence[Any], features: Sequence[Any], outputs: Sequence[Any],
               qa: Any, overrides: Mapping[str, Any] | None = None) -> list[Any]: ...

    def evaluate(self, dataset: Any, features: Sequence[Any], outputs: Sequence[Any],
                 qa: Any) -> Evaluation: ...

    def select(self, metrics: Mapping[str, Any]) -> tuple[float, ...]: ...

    def files(self, predictions: Sequence[Any]) -> dict[str, Any]: ...

    def score_files(self, data: str, predictions: str, options: Mapping[str, Any]
                    ) -> dict[str, Any]: ...

    def example(self, qas_id: str, question: Any, context: Any) -> Any: ...

    def answer_dicts(self, prediction: Any, top_k: int) -> list[dict[str, Any]]: ...

    def parse_context(self, text: str, source: str) -> Any: ...

    def answer_json(self, prediction: Any) -> dict[str, Any]: ...

    def example_record(self, example: Any) -> dict[str, Any]: ...
    """``{"question", "context", "answers": [text, ...]}``: an evaluation example as the model
    directory's examples.json keeps it (the inverse of `example`; no answers: unanswerable)."""

    def check_spans(self, dataset: Any, tokenizer: Any, config: Any,
                    special: Any) -> dict[str, Any]: ...


def refuse_unsupported(task: Task, given: Mapping[str, Any],
                       defaults: Mapping[str, Any] | None = None) -> None:
    """One line for the first setting in `given` that `task` lists in `refuses` and that is
    set away from its default (`defaults`; with none, any value that is not None counts)."""
    for name, why in task.refuses.items():
        if name not in given or given[name] is None:
            continue
        if defaults is not None and given[name] == defaults.get(name):
            continue
        flag = "--" + name.replace("_", "-")
        raise GPT2QAError(f"{flag} {given[name]} is not supported for {task.name}: {why}")
