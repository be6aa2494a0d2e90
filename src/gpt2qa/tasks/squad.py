"""SQuAD 1.1 / 2.0 as a task: the official nested JSON, one context per window set, the span
head alone, the abstain rule (`decode`), and the official EM/F1 with the tuned threshold.

Its stages are the engine's span stages (`data`, `features`, `decode`, `evaluation`), which
other tasks reuse for their span answers.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from gpt2qa.config import DataFormat
from gpt2qa.data import SquadDataset, SquadExample, check_text
from gpt2qa.decode import Prediction, WindowOutput, decode, predictions_to_json
from gpt2qa.errors import GPT2QAError
from gpt2qa.evaluation import evaluate_files, score_predictions
from gpt2qa.features import (
    Feature,
    check_answer_recall,
    convert_examples_to_features,
    oracle_answers,
    span_failure_kind,
)
from gpt2qa.metrics import evaluate_v2, exact_match
from gpt2qa.readers import load_examples, sniff
from gpt2qa.task import Evaluation, ReportSpec, Score

REPORT = ReportSpec(
    scores=(
        Score("EM", "exact", "exact match at threshold 0 (abstain when the no-answer score beats "
              "the best span's); abstaining on an unanswerable question counts as right"),
        Score("F1", "f1", "word-overlap F1 at threshold 0, the same rule"),
        Score("HasAns F1", "HasAns_f1", "F1 on the answerable questions only"),
        Score("NoAns F1", "NoAns_f1", "F1 on the unanswerable questions only: the share of them "
              "abstained on"),
        Score("official best F1", "best_f1", "evaluate-v2.0's best_f1: the best no-answer "
              "probability cut over the saved answers; it can only abstain on more questions "
              "(one abstained on at threshold 0 has no span left to give)", same_data=True),
        Score("tuned F1", "tuned_f1", "the best cut over each question's best span, so it can "
              "also answer questions that threshold 0 abstained on; its choices include all of "
              "best F1's, so it is never lower. Its threshold is saved with the model and "
              "used by predict and serve", same_data=True),
        Score("all no-answer F1", "null_baseline_f1", "abstain on every question: the score "
              "to beat (the share of unanswerable questions)"),
    ),
    scale=1.0,
    curves=(("eval F1, threshold 0", "f1"), ("eval F1, tuned threshold", "tuned_f1")),
    baseline=("all no-answer F1", "null_baseline_f1"),
    threshold=Score("tuned threshold", "tuned_null_score_diff_threshold",
                    "abstain when the no-answer score beats the best span's by more than this "
                    "(a difference of logits); tuned F1's, saved with the model"),
    run_files=("predictions.json", "na_probs.json"),
    abstains=True,
)
"""`gpt2qa report` and the learning curve on SQuAD runs: scores in percent already."""


class SquadTask:
    """See the module docstring and `gpt2qa.task.Task`."""

    name = "squad"
    refuses: Mapping[str, str] = {}
    report = REPORT
    context_type = str
    windows = ("A context longer than one window is read in overlapping windows of "
               "{max_seq_length} tokens, a new one every {doc_stride} tokens; a question longer "
               "than {max_query_length} tokens is cut.")
    summary_keys = ("exact", "f1", "HasAns_f1", "NoAns_f1", "tuned_f1",
                    "tuned_null_score_diff_threshold", "null_baseline_f1", "exact_match")

    formats = ("squad", "rows", "mrqa")

    def sniff(self, path: str) -> bool:
        return sniff(path)

    def read(self, path: str, misaligned: str = "error", gold: bool = True,
             reading: DataFormat | None = None) -> SquadDataset:
        """Any layout `gpt2qa.readers` takes; without `gold` (predict, report) offsets are not
        checked and rows may lack answers."""
        return load_examples(path, misaligned, check_offsets=gold,  # type: ignore[arg-type]
                             require_answers=gold, reading=reading)

    def hub(self, name: str, misaligned: str, reading: DataFormat | None = None
            ) -> tuple[SquadDataset, SquadDataset | None]:
        from gpt2qa.hub_data import load_hub_dataset

        return load_hub_dataset(name, misaligned, reading)  # type: ignore[arg-type]

    def features(self, examples: Sequence[SquadExample], tokenizer: Any, config: Any,
                 special: Any) -> list[Feature]:
        return convert_examples_to_features(examples, tokenizer, config, special)

    def check_training(self, dataset: SquadDataset, features: Sequence[Feature], source: str,
                       config: Any) -> dict[str, Any]:
        """Warn when the model cannot learn to abstain; refuse windows that lose the answers."""
        if not any(ex.is_impossible for ex in dataset.examples):
            print(f"gpt2qa train: {source}: no unanswerable questions, so the model cannot "
                  "learn to abstain (SQuAD 2.0 files have them)", file=sys.stderr, flush=True)
        return {"answer_recall": check_answer_recall(dataset.examples, features, config, source)}

    def heads(self, width: int) -> dict[str, Any]:
        return {}

    def upgrade_config(self, model_dir: Any, qa_json: dict[str, Any]) -> dict[str, Any]:
        return qa_json

    def upgrade_weights(self, weights: dict[str, Any]) -> dict[str, Any]:
        return weights

    def decode(self, examples: Sequence[SquadExample], features: Sequence[Feature],
               outputs: Sequence[WindowOutput], qa: Any,
               overrides: Mapping[str, Any] | None = None) -> list[Prediction]:
        threshold = (overrides or {}).get("null_score_diff_threshold")
        contexts = {ex.qas_id: ex.context for ex in examples}
        return decode(contexts, features, outputs, qa.decoder(threshold))

    def evaluate(self, dataset: SquadDataset, features: Sequence[Feature],
                 outputs: Sequence[WindowOutput], qa: Any) -> Evaluation:
        """Official metrics at threshold 0, plus the threshold tuned on these examples (the
        official best_f1 search over na_probs, as a null_score_diff_threshold)."""
        preds = self.decode(dataset.examples, features, outputs, qa,
                            {"null_score_diff_threshold": 0.0})
        metrics = score_predictions(dataset.examples, preds, dataset.is_v2)
        tuned = {"null_score_diff_threshold": metrics.get("tuned_null_score_diff_threshold",
                                                          0.0)}
        return Evaluation(metrics, self.files(preds), tuned)

    def select(self, metrics: Mapping[str, Any]) -> tuple[float, ...]:
        return (float(metrics.get("tuned_f1", metrics.get("f1", 0.0))),)

    def files(self, predictions: Sequence[Prediction]) -> dict[str, Any]:
        return dict(zip(("predictions", "na_probs", "nbest"), predictions_to_json(predictions),
                        strict=True))

    def score_files(self, data: str, predictions: str, options: Mapping[str, Any]
                    ) -> dict[str, Any]:
        return evaluate_files(data, predictions, **options)

    def example(self, qas_id: str, question: Any, context: Any) -> SquadExample:
        where = "" if qas_id == "q" else f"question {qas_id}: "
        if not isinstance(question, str) or not isinstance(context, str):
            raise GPT2QAError(f"{where}question and context must be strings")
        if not question.strip() or not context.strip():
            raise GPT2QAError(f"{where}question and context must both be non-empty")
        check_text(question, f"{where}question")
        check_text(context, f"{where}context")
        return SquadExample(qas_id=qas_id, question=question, context=context, answers=(),
                            is_impossible=False)

    def answer_dicts(self, prediction: Prediction, top_k: int) -> list[dict[str, Any]]:
        return answer_dicts(prediction, top_k)

    def parse_context(self, text: str, source: str) -> str:
        return text

    def answer_json(self, prediction: Prediction) -> dict[str, Any]:
        """`predict --question`'s record: the Python API's answer (`answer_dicts`, so the same
        `score`) plus the no-answer probability."""
        return {**answer_dicts(prediction, 1)[0], "no_answer_probability": prediction.na_prob}

    def example_record(self, example: SquadExample) -> dict[str, Any]:
        return {"question": example.question, "context": example.context,
                "answers": list(dict.fromkeys(a.text for a in example.answers))}

    def check_spans(self, dataset: SquadDataset, tokenizer: Any, config: Any,
                    special: Any) -> dict[str, Any]:
        return span_report(dataset, self.features(dataset.examples, tokenizer, config, special))


def span_report(dataset: SquadDataset, features: Sequence[Feature]) -> dict[str, Any]:
    """`gpt2qa check-spans` on SQuAD: the oracle's EM/F1 (each gold answer decoded back
    through the windows' offsets) and every answer that does not survive, with why."""
    oracle = oracle_answers(dataset.examples, features)
    answerable = [ex for ex in dataset.examples if ex.qas_id in oracle]
    scores = evaluate_v2(answerable, oracle) if answerable else {"exact": 0.0, "f1": 0.0}
    golds = {ex.qas_id: ex for ex in answerable}
    spans: dict[str, set[tuple[int, int]]] = {}
    for f in features:
        spans.setdefault(f.qas_id, set()).update(f.token_spans)
    failures, kinds = [], Counter[str]()
    for qid, text in oracle.items():
        gold_texts = [a.text for a in golds[qid].answers]
        if not any(exact_match(text, g) for g in gold_texts):
            gold = golds[qid].answers[0]
            kind = span_failure_kind(sorted(spans[qid]), gold.answer_start, gold.answer_end, text)
            kinds[kind] += 1
            failures.append({"id": qid, "gold": gold_texts[0], "decoded": text, "kind": kind})
    return {"examples": len(dataset.examples), "features": len(features),
            "answerable": len(answerable), "exact": scores["exact"], "f1": scores["f1"],
            "exact_failures": len(failures), "failure_kinds": dict(kinds),
            "repairs": len(dataset.repairs), "failures": failures[:20]}


def answer_dicts(pred: Prediction, top_k: int) -> list[dict[str, Any]]:
    """A Prediction as ranked dicts whose scores form one distribution over "no answer" and the
    n-best spans: no answer gets na_prob; the spans share 1 - na_prob by softmax of their scores.

    Worked example: na_prob 0.2, spans "1889" (score 3.0) and "in 1889" (score 2.0): the spans'
    softmax is 0.73 / 0.27, so scores are 0.8 x 0.73 = 0.58 and 0.22, and no answer 0.2. The
    decision (the threshold rule, `decode.decide`) comes first: "1889" here if the model answers,
    else "" with 0.2, then the rest by score.
    """
    null = {"answer": "", "score": pred.na_prob, "start": 0, "end": 0, "is_impossible": True}
    spans: list[dict[str, Any]] = []
    if pred.nbest:
        top = max(c.score for c in pred.nbest)
        weights = [math.exp(c.score - top) for c in pred.nbest]
        total = sum(weights)
        spans = [{"answer": c.text, "score": (1.0 - pred.na_prob) * w / total, "start": c.start,
                  "end": c.end, "is_impossible": False}
                 for c, w in zip(pred.nbest, weights, strict=True)]
    # nbest is ranked by score and the prediction answers with its best span, so spans[0] is it.
    first, rest = ((null, spans) if pred.is_impossible or not spans
                   else (spans[0], [null, *spans[1:]]))
    rest.sort(key=lambda d: -d["score"])
    return [first, *rest][:top_k]
