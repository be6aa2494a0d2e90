"""HotpotQA as a task: the official JSON list (`data`), paragraph ranking and rendering into
one window per question (`inputs`), the answer-type and supporting-fact heads and their
decoding (`heads`), the official metric (`metrics`) and synthetic multi-hop data
(`synthetic`). Training, checkpoints, several processes, LoRA, int8, predict, serve and the
Python API are the engine's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpt2qa.data import json_opening
from gpt2qa.decode import WindowOutput
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import Feature
from gpt2qa.readers import sniff as squad_style
from gpt2qa.task import Evaluation, ReportSpec, Score
from gpt2qa.tasks.hotpotqa.data import HotpotDataset, HotpotExample, load_hotpot, parse_hotpot
from gpt2qa.tasks.hotpotqa.heads import (
    DEFAULT_SP_THRESHOLD,
    HotpotPrediction,
    answer_dicts,
    decode_hotpot,
    hotpot_heads,
    probabilities,
)
from gpt2qa.tasks.hotpotqa.inputs import (
    convert_hotpot_examples,
    selection_recall,
    span_report,
    window_of,
)
from gpt2qa.tasks.hotpotqa.metrics import (
    METRIC_KEYS,
    evaluate_hotpot,
    evaluate_hotpot_files,
    predictions_json,
    sp_scores,
)

LEGACY_CONFIG_NAME = "hotpot.json"
"""Where gpt2qa versions before the task field kept a HotpotQA model's threshold."""
LEGACY_WEIGHTS = {"type_head.": "task_heads.answer_type.proj.",
                  "sp_head.": "task_heads.supporting_facts.proj."}

REPORT = ReportSpec(
    scores=(
        Score("answer EM", "em", "the answer (a span, yes or no) equals the gold one after "
              "normalisation"),
        Score("answer F1", "f1", "word-overlap F1 of the answer"),
        Score("sp EM", "sp_em", "the supporting facts (title, sentence) are exactly the gold "
              "set, at the sp threshold"),
        Score("sp F1", "sp_f1", "F1 of the supporting facts against the gold set"),
        Score("joint EM", "joint_em", "answer and supporting facts both exact"),
        Score("joint F1", "joint_f1", "F1 of answer x supporting facts (precisions and "
              "recalls multiplied): the model-selection key"),
    ),
    scale=100.0,
    curves=(("answer F1", "f1"), ("sp F1", "sp_f1"), ("joint F1", "joint_f1")),
    baseline=None,
    threshold=Score("sp threshold", "sp_threshold",
                    "a sentence is a supporting fact when its probability is above this; tuned "
                    "for sp F1 on the evaluation questions (the scores above use it) and saved "
                    "with the model"),
    run_files=("predictions.json",),
    abstains=False,
)
"""`gpt2qa report` and the learning curve on HotpotQA runs: metrics are fractions (x 100)."""



def tune_sp_threshold(examples: Sequence[HotpotExample], features: Sequence[Feature],
                      outputs: Sequence[WindowOutput]) -> tuple[float, float]:
    """The threshold (0.05 ... 0.95) with the best mean supporting-fact F1, and that F1."""
    gold = {ex.qas_id: ex.supporting_facts for ex in examples}
    scored = [(window_of(f).sentence_keys, probabilities(o, f)[1], gold[f.qas_id])
              for f, o in zip(features, outputs, strict=True)]
    best = (DEFAULT_SP_THRESHOLD, -1.0)
    for threshold in np.round(np.arange(0.05, 0.96, 0.05), 2):
        total = sum(sp_scores([k for k, p in zip(keys, sp, strict=True) if p > threshold],
                              facts)[1] for keys, sp, facts in scored)
        score = total / max(len(examples), 1)
        if score > best[1] + 1e-12:
            best = (float(threshold), score)
    return best


class HotpotTask:
    """See the module docstring and `gpt2qa.task.Task`."""

    name = "hotpotqa"
    refuses: Mapping[str, str] = {
        "null_position": "it needs --null-position last (null_position 'last'): the "
                         "answer-type head reads the <|null|> token after the whole input",
        "dataset": "pass the official JSON files with --train-file/--eval-file",
        "null_score_diff_threshold": "every HotpotQA question has an answer; the tuned "
                                     "cut is the supporting-fact threshold (sp_threshold)",
        "na_prob_file": "it applies to SQuAD data",
        "out_image_dir": "it applies to SQuAD data",
        "breakdown": "it applies to SQuAD data",
        **dict.fromkeys(("data_format", "id_column", "question_column", "context_column",
                         "answer_column"), "it reads the official HotpotQA JSON list only"),
        "stream": "its predictions.json is one object of answers and of supporting facts, "
                  "not written a question at a time; answer the file without --stream",
    }
    report = REPORT
    context_type = list
    windows = ("Each question gets one window of {max_seq_length} tokens: its paragraphs are "
               "ranked by overlap with the question and packed in while they fit, and the rest "
               "are dropped; a question longer than {max_query_length} tokens is cut.")
    summary_keys = (*METRIC_KEYS, "sp_threshold")

    formats: tuple[str, ...] = ()

    def sniff(self, path: str) -> bool:
        """A JSON list that is not flat rows (`gpt2qa.readers.sniff` tells them apart)."""
        return json_opening(path) == "[" and not squad_style(path)

    def read(self, path: str, misaligned: str = "error", gold: bool = True,
             reading: Any = None) -> HotpotDataset:
        """The official JSON list; `reading` (--data-format, the column flags) is refused at
        the edges (`refuses`)."""
        return load_hotpot(path, require_gold=gold,
                           bad_facts="error" if misaligned == "error" else "skip")

    def hub(self, name: str, misaligned: str, reading: Any = None) -> tuple[Any, Any]:
        raise GPT2QAError(f"--dataset {name}: {self.refuses['dataset']}")

    def features(self, examples: Sequence[HotpotExample], tokenizer: Any, config: Any,
                 special: Any) -> list[Feature]:
        return convert_hotpot_examples(examples, tokenizer, config, special)

    def check_training(self, dataset: HotpotDataset, features: Sequence[Feature], source: str,
                       config: Any) -> dict[str, Any]:
        return selection_recall(dataset.examples, features)

    def heads(self, width: int) -> dict[str, Any]:
        return hotpot_heads(width)

    def upgrade_config(self, model_dir: Any, qa_json: dict[str, Any]) -> dict[str, Any]:
        """A model directory from before the task field: hotpot.json holds the threshold."""
        legacy = Path(model_dir) / LEGACY_CONFIG_NAME
        if "task" in qa_json or not legacy.is_file():
            return qa_json
        try:
            threshold = float(json.loads(legacy.read_text(encoding="utf-8"))["sp_threshold"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise GPT2QAError(f"{legacy}: not a readable HotpotQA model config ({exc})") from None
        if not math.isfinite(threshold):  # NaN or inf: no supporting fact would ever be kept
            raise GPT2QAError(f"{legacy}: sp_threshold must be a finite number, got {threshold}")
        return {**qa_json, "task": self.name, "task_state": {"sp_threshold": threshold}}

    def upgrade_weights(self, weights: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in weights.items():
            old = next((p for p in LEGACY_WEIGHTS if key.startswith(p)), None)
            out[LEGACY_WEIGHTS[old] + key[len(old):] if old else key] = value
        return out

    def decode(self, examples: Sequence[HotpotExample], features: Sequence[Feature],
               outputs: Sequence[WindowOutput], qa: Any,
               overrides: Mapping[str, Any] | None = None) -> list[HotpotPrediction]:
        threshold = (overrides or {}).get(
            "sp_threshold", qa.task_state.get("sp_threshold", DEFAULT_SP_THRESHOLD))
        return decode_hotpot(features, outputs, qa.decoding.n_best_size,
                             qa.decoding.max_answer_length, threshold)

    def evaluate(self, dataset: HotpotDataset, features: Sequence[Feature],
                 outputs: Sequence[WindowOutput], qa: Any) -> Evaluation:
        """Official metrics at the supporting-fact threshold tuned on these examples."""
        threshold, _ = tune_sp_threshold(dataset.examples, features, outputs)
        preds = self.decode(dataset.examples, features, outputs, qa, {"sp_threshold": threshold})
        metrics = self.score(dataset.examples, preds)
        metrics["sp_threshold"] = threshold
        return Evaluation(metrics, self.files(preds), {"task_state": {"sp_threshold": threshold}})

    def score(self, examples: Sequence[HotpotExample],
              predictions: Sequence[HotpotPrediction]) -> dict[str, Any]:
        return evaluate_hotpot(examples, {p.qas_id: p.answer for p in predictions},
                               {p.qas_id: list(p.facts) for p in predictions})

    def select(self, metrics: Mapping[str, Any]) -> tuple[float, ...]:
        return float(metrics["joint_f1"]), float(metrics["f1"] + metrics["sp_f1"])

    def files(self, predictions: Sequence[HotpotPrediction]) -> dict[str, Any]:
        return {"predictions": predictions_json({p.qas_id: p.answer for p in predictions},
                                                {p.qas_id: p.facts for p in predictions})}

    def score_files(self, data: str, predictions: str, options: Mapping[str, Any]
                    ) -> dict[str, Any]:
        return evaluate_hotpot_files(data, predictions)  # its options are refused (`refuses`)

    def example(self, qas_id: str, question: Any, context: Any) -> HotpotExample:
        """A question about ``[[title, [sentence, ...]], ...]``, checked as a data file is."""
        item = {"_id": qas_id, "question": question, "context": context}
        return parse_hotpot([item], "request", require_gold=False).examples[0]

    def answer_dicts(self, prediction: HotpotPrediction, top_k: int) -> list[dict[str, Any]]:
        return answer_dicts(prediction, top_k)

    def parse_context(self, text: str, source: str) -> Any:
        """``[[title, [sentence, ...]], ...]`` as JSON text."""
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise GPT2QAError(f"{source}: a HotpotQA model reads JSON [[title, [sentence, ...]], "
                              f"...] (invalid JSON at column {exc.colno}: {exc.msg})") from None

    def answer_json(self, prediction: HotpotPrediction) -> dict[str, Any]:
        """`predict --question`'s record: the Python API's answer (`answer_dicts`)."""
        return answer_dicts(prediction, 1)[0]

    def example_record(self, example: HotpotExample) -> dict[str, Any]:
        return {"question": example.question,
                "context": [[p.title, list(p.sentences)] for p in example.paragraphs],
                "answers": [example.answer]}

    def check_spans(self, dataset: HotpotDataset, tokenizer: Any, config: Any,
                    special: Any) -> dict[str, Any]:
        return span_report(dataset, tokenizer, config, special)
