"""Run and model settings as frozen dataclasses, free of heavy imports (torch is not needed).

QAConfig travels with a saved model (gpt2qa.json); TrainConfig describes one fine-tuning run
and doubles as the `gpt2qa train` flags and the YAML config keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from gpt2qa.errors import GPT2QAError, check
from gpt2qa.nesting import DERIVED, SAVED, FlatSettings, build, flat_fields, flatten, nested
from gpt2qa.reading import loads_json
from gpt2qa.tracking import TRACKERS, report_to_valid

# Literal types every stage shares; they live here so that no stage imports another for them.
Layout = Literal["question-first", "context-first"]
NullPosition = Literal["first", "last", "classifier"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
NULL_POSITIONS: tuple[str, ...] = get_args(NullPosition)
NullScoring = Literal["span", "classifier"]
Misaligned = Literal["error", "skip", "fix-by-search"]
MISALIGNED_MODES: tuple[Misaligned, ...] = get_args(Misaligned)
"""The accepted values of ``misaligned``."""
Head = Literal["linear", "bilstm", "generative"]
HEADS: tuple[str, ...] = get_args(Head)
QA_CONFIG_NAME = "gpt2qa.json"
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
TaskName = Literal["auto", "squad", "hotpotqa"]
TASK_NAMES: tuple[str, ...] = get_args(TaskName)
"""`--task`: auto (from the data file or the model directory), or a registered task."""
DataFormatName = Literal["auto", "squad", "rows", "mrqa"]
DATA_FORMATS: tuple[str, ...] = get_args(DataFormatName)
"""`--data-format` (docs/data.md): auto (from the file), squad, rows or mrqa."""
QUANTIZE_MODES = ("none", "int8")
"""`--quantize`: none, or dynamic int8 quantisation of the backbone's matmuls (CPU)."""

MAX_SEQ_LENGTH = 1 << 20
"""The longest window any setting may ask for (a model's own positions usually bound it
lower: `model.check_fits`)."""
MAX_LSTM_HIDDEN = 8192
"""The widest LSTM direction `lstm_hidden_size` may ask for (GPT-2 XL's half-width is 800);
past it a gpt2qa.json typo becomes a many-gigabyte allocation."""

@dataclass(frozen=True)
class FeatureConfig:
    """How examples become windows of token ids.

    `doc_stride` is the step between the starts of consecutive windows (BERT's meaning), so
    consecutive windows overlap by `window_length - doc_stride` tokens.
    """

    max_seq_length: int = 384
    """Tokens per window, special tokens included."""
    doc_stride: int = 128
    """Tokens between the starts of consecutive context windows."""
    max_query_length: int = 64
    """Questions are cut to this many tokens."""
    layout: Layout = "question-first"
    """Token order: question before context (every context token sees the question) or after."""
    null_position: NullPosition = "last"
    """Where the no-answer score is read: first token, a <|null|> token after the input, or a
    separate classifier on it."""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise GPT2QAError(f"layout must be one of {', '.join(LAYOUTS)}; got {self.layout!r}")
        if self.null_position not in NULL_POSITIONS:
            raise GPT2QAError(f"null_position must be one of {', '.join(NULL_POSITIONS)}; "
                              f"got {self.null_position!r}")
        if self.max_query_length < 1 or self.doc_stride < 1:
            raise GPT2QAError("max_query_length and doc_stride must be at least 1")
        # Two special tokens plus at least one context token must fit beside the question.
        if self.max_seq_length > MAX_SEQ_LENGTH:
            raise GPT2QAError(f"max_seq_length must be at most {MAX_SEQ_LENGTH}; "
                              f"got {self.max_seq_length}")
        if self.max_seq_length < self.max_query_length + 3:
            raise GPT2QAError(f"max_seq_length ({self.max_seq_length}) must be at least "
                              f"max_query_length ({self.max_query_length}) + 3")


@dataclass(frozen=True)
class DecodeConfig:
    """How logits become answers."""

    n_best_size: int = 20
    """Start and end candidates kept per window when decoding."""
    max_answer_length: int = 30
    """Longest answer in tokens."""
    null_score_diff_threshold: float = field(default=0.0, metadata=SAVED)
    """Answer "" when the null score beats the best span's by more than this (tuned on the
    evaluation set and saved with the model)."""
    null_scoring: NullScoring = field(default="span", metadata=DERIVED)
    """span (null score from the span logits) or classifier; QAConfig derives it."""
    constrain_to_context: bool = True
    """Generative head: only token sequences that occur in the window's context may be
    written, so every answer is a piece of the context with exact offsets."""

    def __post_init__(self) -> None:
        if self.n_best_size < 1:
            raise GPT2QAError(f"n_best_size must be at least 1; got {self.n_best_size}")
        if self.max_answer_length < 1:
            raise GPT2QAError(f"max_answer_length must be at least 1; got {self.max_answer_length}")
        if not math.isfinite(self.null_score_diff_threshold):
            raise GPT2QAError("null_score_diff_threshold must be a finite number")
        if self.null_scoring not in get_args(NullScoring):
            raise GPT2QAError(f"null_scoring must be 'span' or 'classifier'; got {self.null_scoring!r}")


@dataclass(frozen=True)
class QAConfig(FlatSettings):
    """Everything besides the weights that `predict` needs; saved (flat) as gpt2qa.json."""

    head: Head = "bilstm"
    """Answer head: linear (start/end from one token), bilstm (sees text on both sides), or
    generative (the backbone's own LM head writes the answer, or <|null|>, after the input)."""
    lstm_hidden_size: int = 0
    """Hidden size of each LSTM direction (bilstm head); 0 means half the backbone width."""
    features: FeatureConfig = nested(FeatureConfig)
    decoding: DecodeConfig = nested(DecodeConfig)
    task: str = field(default="squad", metadata=SAVED)
    """The task the model was trained for (its heads, decoding and prediction files)."""
    task_state: dict[str, float] = field(default_factory=dict, metadata=SAVED)
    """What the task tuned on the evaluation set besides the null threshold (HotpotQA:
    ``sp_threshold``, the supporting-fact probability cut)."""

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise GPT2QAError(f"head must be one of {', '.join(HEADS)}; got {self.head!r}")
        if not 0 <= self.lstm_hidden_size <= MAX_LSTM_HIDDEN:
            raise GPT2QAError(f"lstm_hidden_size must be in [0, {MAX_LSTM_HIDDEN}] (0: half the "
                              f"backbone width); got {self.lstm_hidden_size}")
        if self.task not in TASK_NAMES[1:]:
            raise GPT2QAError(f"task must be one of {', '.join(TASK_NAMES[1:])}; "
                              f"got {self.task!r}")
        if not isinstance(self.task_state, dict):
            raise GPT2QAError("task_state must map names to finite numbers")
        for key, value in self.task_state.items():
            if not (isinstance(key, str) and isinstance(value, (int, float))
                    and not isinstance(value, bool) and math.isfinite(value)):
                shown = value if isinstance(value, float) else type(value).__name__
                raise GPT2QAError(f"task_state: {key} must be a finite number, got {shown}")
        if self.head == "generative" and self.features.null_position != "last":
            raise GPT2QAError("head generative writes its answer after the input: null_position "
                              f"must be last, not {self.features.null_position}")
        # How the null score is read follows from where it is: derived here, once. The
        # generative head's null score is the log-odds of <|null|> as its first answer token,
        # an answerability logit like the classifier's.
        scoring = ("classifier" if self.features.null_position == "classifier"
                   or self.head == "generative" else "span")
        object.__setattr__(self, "decoding", replace(self.decoding, null_scoring=scoring))

    def decoder(self, null_score_diff_threshold: float | None = None) -> DecodeConfig:
        """The decoding settings, with the threshold overridden when one is given."""
        if null_score_diff_threshold is None:
            return self.decoding
        return replace(self.decoding, null_score_diff_threshold=null_score_diff_threshold)

    def to_json(self) -> dict[str, Any]:
        return {"gpt2qa_version": 1, **flatten(self)}

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = QA_CONFIG_NAME) -> QAConfig:
        values = {k: v for k, v in obj.items() if k != "gpt2qa_version"}
        unknown = sorted(set(values) - set(flat_fields(cls)))
        if unknown:
            raise GPT2QAError(f"{source}: unknown field(s) {', '.join(unknown)}")
        try:
            return build(cls, values, source, strict=True)
        except (TypeError, GPT2QAError) as exc:
            raise GPT2QAError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, model_dir: str | Path) -> QAConfig:
        return cls.from_json(read_qa_json(model_dir), str(Path(model_dir) / QA_CONFIG_NAME))


def read_qa_json(model_dir: str | Path) -> dict[str, Any]:
    """A model directory's gpt2qa.json as a JSON object (one line when it is not one)."""
    path = Path(model_dir) / QA_CONFIG_NAME
    if not path.is_file():
        raise GPT2QAError(f"{model_dir}: not a gpt2qa model directory (no {QA_CONFIG_NAME}); "
                          "train one with `gpt2qa train` or `gpt2qa demo`")
    try:
        obj = loads_json(path.read_bytes().decode("utf-8-sig"), str(path))
    except OSError as exc:
        raise GPT2QAError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise GPT2QAError(f"{path}: not valid UTF-8 at byte {exc.start} ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise GPT2QAError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise GPT2QAError(f"{path}: invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise GPT2QAError(f"{path}: expected a JSON object")
    return obj


@dataclass(frozen=True)
class DataFormat:
    """How a data file is read (`gpt2qa.readers`; docs/data.md): its layout, and for flat rows
    the columns that hold each field (HF run_qa.py's names by default)."""

    data_format: DataFormatName = "auto"
    """auto (from the file's name and first bytes), squad (the official nested JSON), rows
    (one question per row: JSON lines, a JSON list, CSV or Parquet) or mrqa (MRQA JSON lines)."""
    id_column: str = "id"
    """Column of each row's unique question id (rows)."""
    question_column: str = "question"
    """Column of each row's question (rows)."""
    context_column: str = "context"
    """Column of each row's context passage (rows)."""
    answer_column: str = "answers"
    """Column of each row's answers, {text: [...], answer_start: [...]}; empty lists mean
    unanswerable; a CSV cell holds it as JSON (rows)."""

    def __post_init__(self) -> None:
        columns = [self.id_column, self.question_column, self.context_column, self.answer_column]
        check([(self.data_format in DATA_FORMATS, f"data_format must be one of "
                                                  f"{', '.join(DATA_FORMATS)}"),
               (all(isinstance(c, str) and c.strip() for c in columns) and len(set(columns)) == 4,
                f"the id, question, context and answer columns must be four different "
                f"non-empty names; got {', '.join(map(repr, columns))}")])


@dataclass(frozen=True)
class TrainConfig(FlatSettings):
    """One fine-tuning run. Every field is also a `gpt2qa train` flag and a YAML config key."""

    model: str = "gpt2"
    """Hub id or local directory of a decoder-only model, or a gpt2qa model directory."""
    task: TaskName = "auto"
    """auto (the first task whose reader accepts the train file), squad or hotpotqa."""
    output_dir: str = "runs/gpt2qa"
    """Run directory: log, checkpoints, the best model in model/."""
    train_file: str | None = None
    """File to train on: SQuAD JSON, flat rows (JSON lines, JSON, CSV, Parquet), MRQA JSON
    lines (docs/data.md) or HotpotQA JSON."""
    eval_file: str | None = None
    """A file of the same task to evaluate on (its official metric; picks the best model and
    tunes the task's threshold)."""
    dataset: str | None = None
    """Hub dataset NAME or NAME:CONFIG: squad_v2, squad, or any with SQuAD's columns, or a
    local dataset folder (docs/data.md); needs the optional datasets extra."""
    reading: DataFormat = nested(DataFormat)
    """How the train and eval files (or hub rows) are read; each is a flag of its own."""
    qa: QAConfig = nested(QAConfig, settings_only=True)
    """The model's QA settings (head, windows, decoding); each is a flag of its own."""
    epochs: float = 2.0
    """Passes over the training features (fractions allowed); used only when max_steps is 0,
    since a positive max_steps wins."""
    max_steps: int = 0
    """Optimizer steps. Above 0 they win over epochs; 0 means run for epochs instead."""
    batch_size: int = 16
    """Features per optimizer step, summed over all processes and accumulation steps (the
    effective batch): it means the same on 1 or N devices."""
    grad_accum: int = 1
    """Micro-batches per optimizer step on each process; each holds
    batch_size / (processes x grad_accum) features. Raise it when a batch does not fit."""
    eval_batch_size: int = 0
    """Features per forward pass when evaluating; 0 picks one for the device (64 on CUDA, 3 for
    GPT-2 small on CPU, where small batches run faster)."""
    lr: float = 5e-5
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.01
    """AdamW weight decay on the weight matrices (biases and layer norms get none)."""
    warmup_ratio: float = 0.1
    """Share of the steps spent warming the learning rate up from 0."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    seed: int = 42
    """Seed of everything random in the run: the new heads' weights, the batch order and
    dropout."""
    precision: Precision = "fp32"
    """fp32, or bf16/fp16 autocast on CUDA (bf16 also on a CPU with bf16 instructions). Weights
    stay fp32 (master weights) and the span head computes in fp32; gpt2qa alone owns
    precision, whatever the launcher says."""
    eval_every: int = 0
    """Evaluate every N optimizer steps; 0 means at the end of each epoch."""
    save_every: int = 0
    """Checkpoint every N optimizer steps; 0 means at each evaluation."""
    log_every: int = 10
    """Write a training log line every N optimizer steps."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    group_by_length: bool = True
    """Batch features of similar length together (less padding); the order still shuffles."""
    compile: bool = False
    """torch.compile the model (in place): faster steps after a long first compile, so it pays
    only on long runs (benchmarks/README.md). Losses match the eager model within float
    tolerance (tests/test_speed_equivalence)."""
    misaligned: Misaligned = "error"
    """Answers whose offsets do not match their text: error, skip, or fix-by-search (each repair is
    reported)."""
    max_train_examples: int = 0
    """Use only the first N training examples (0: all), for quick trials."""
    max_eval_examples: int = 0
    """Evaluate on only the first N evaluation examples (0: all), for quick trials."""
    report_to: str = "none"
    """Where the train and eval records of log.jsonl, and the settings as hyperparameters,
    also go: none, tensorboard, wandb, mlflow, all (those of the three installed), or a comma
    list such as wandb,mlflow; Trainer's flag and values. Each needs its extra (pip install
    'gpt2qa[wandb]'). none by default, as Trainer's since transformers v5: nothing is sent
    anywhere unless asked (docs/training.md, Experiment tracking)."""
    tensorboard: bool = False
    """Same as --report-to tensorboard, added to whatever --report-to names (kept for older
    commands and configs)."""
    resume: bool = False
    """Continue the run in output_dir from its newest checkpoint."""
    progress: bool = True
    """Show a progress bar of the optimizer steps with the time left, on stderr and only when
    it is a terminal (a log file or a pipe gets none)."""
    fsdp: bool = False
    """Shard weights, gradients and optimizer state over the processes (FSDP2, one unit per
    transformer block), for models that do not fit one device. Saved models stay whole."""
    dist_timeout: int = 1800
    """Seconds one process waits for the others (evaluation, checkpoints) before the run stops
    with an error, when several processes train together."""
    lora_r: int = 0
    """LoRA rank; 0 trains every weight. LoRA trains rank-r adapters, the QA head and the
    <|sep|>/<|null|> embedding rows, and freezes the rest (needs pip install 'gpt2qa[lora]')."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (updates are scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA adapters' input."""
    lora_target_modules: str = ""
    """Comma-separated module names to adapt; empty: every attention projection of the model
    type (docs/models.md)."""
    merge_lora: bool = False
    """Also write model-merged/: the best LoRA model folded into a standalone model directory."""
    gradient_checkpointing: bool = False
    """Recompute the backbone's activations in the backward pass: less memory, more time."""

    def __post_init__(self) -> None:
        checks = [
            (self.epochs > 0 or self.max_steps > 0, "epochs or max_steps must be positive"),
            (self.max_steps >= 0, "max_steps must be >= 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.eval_batch_size >= 0, "eval_batch_size must be >= 0 (0: pick for the device)"),
            (self.lr > 0, "lr must be positive"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.max_grad_norm > 0, "max_grad_norm must be positive"),
            (self.eval_every >= 0 and self.save_every >= 0, "eval_every/save_every must be >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (self.dist_timeout >= 1, "dist_timeout must be >= 1 second"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.task in TASK_NAMES, f"task must be one of {', '.join(TASK_NAMES)}"),
            (self.misaligned in MISALIGNED_MODES,
             "misaligned must be error, skip or fix-by-search"),
            (self.train_file is not None or self.dataset is not None,
             "give --train-file (or --dataset squad_v2)"),
            (self.lora_r >= 0, "lora_r must be >= 0 (0: no LoRA)"),
            (self.lora_alpha > 0 and 0 <= self.lora_dropout < 1,
             "lora_alpha must be positive and lora_dropout in [0, 1)"),
            (not self.merge_lora or self.lora_r > 0, "--merge-lora needs --lora-r"),
            (not (self.fsdp and self.qa.head == "generative"),
             "--fsdp does not run --head generative: its greedy answers stop after a different "
             "number of steps in each process, and every FSDP forward is collective"),
            (report_to_valid(self.report_to),
             f"report_to must be none, all, or one or more of {', '.join(TRACKERS)} joined by "
             f"commas; got {self.report_to!r}"),
        ]
        check(checks, "bad training setting: ")
