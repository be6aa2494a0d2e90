"""The model card: the README.md of every model directory a run saves, in the Hugging Face
model-card layout (YAML front matter, then Markdown), so the hub and `huggingface_hub`'s
`ModelCard` read it.

The card says what the model is (task, head, layout, null position, windows, tuned
thresholds), how it was trained (base model, data files by base name and sha256, steps, batch,
learning rate, seed), how it scored (the task's `ReportSpec` scores, also as the front
matter's `model-index`), how to load it and what it cannot do. It never holds a path: data
files and local model directories appear by base name only, and nothing else of the run's
settings (output folder, cache) is written, so a model directory can be shared as it is.

Rendering (`render_card`) is a pure function of three frozen records of `card_facts`:
`RunFacts` (fixed for the run), `EvalFacts` (the evaluation the saved model won) and
`ModelFacts` (what is being saved: adapter or whole, `GPT2ForQuestionAnswering`-compatible or
not), which that module collects once; `checkpoint.save_model` writes the card inside the
model directory's atomic write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gpt2qa.card_facts import CardFacts, ModelFacts, RunFacts
from gpt2qa.task import ReportSpec

CHECKED_MEANINGS = {
    "answer_recall": "of the answerable training questions keep their gold answer inside a "
                     "window (an answer outside every window cannot be learned)",
    "gold_paragraph_recall": "of the training questions' gold paragraphs are kept by the "
                             "paragraph selection",
    "all_gold_paragraphs": "of the training questions keep every gold paragraph in their "
                           "window",
}
"""What each figure of the setup record (`Task.check_training`) means, in the card's words."""


# -- rendering (pure) -------------------------------------------------------------------------

def _cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:g}"


def _score_value(report: ReportSpec, metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return round(float(value) * report.scale, 2)


def front_matter(card: CardFacts, model: ModelFacts) -> dict[str, Any]:
    """The card's YAML metadata (the hub's model-card fields)."""
    run = card.run
    meta: dict[str, Any] = {"library_name": "gpt2qa", "pipeline_tag": "question-answering"}
    if run.base.license:
        meta["license"] = run.base.license
    if run.base.hub_id:
        meta["base_model"] = run.base.hub_id
        meta["base_model_relation"] = "adapter" if model.adapter else "finetune"
    if run.datasets:
        meta["datasets"] = list(run.datasets)
    meta["tags"] = ["gpt2qa", run.task, "extractive-qa"] + (
        ["synthetic-data"] if run.synthetic else []) + (["lora"] if run.lora_r else [])
    metrics = []
    if card.evaluation is not None:
        for score in run.report.scores:
            value = _score_value(run.report, card.evaluation.metrics, score.key)
            if value is not None:
                metrics.append({"type": score.key, "value": value, "name": score.header})
    if metrics:
        dataset = {"name": run.eval_data or "evaluation data", "type": run.eval_loader or "json"}
        if run.datasets:
            dataset["split"] = "validation"
        meta["model-index"] = [{"name": run.name, "results": [{
            "task": {"type": "question-answering", "name": "Question Answering"},
            "dataset": dataset, "metrics": metrics}]}]
    return meta


def sequence(layout: str, null_position: str, head: str = "bilstm") -> str:
    """One window's token order (features.py's layouts): "Q <|sep|> C <|null|>"; a generative
    head's window ends with its answer marker, and the answer follows it."""
    body = ["Q", "<|sep|>", "C"] if layout == "question-first" else ["C", "<|sep|>", "Q"]
    if head == "generative":
        return " ".join([*body, "<|answer|>", "A", "<|endoftext|>"])
    return " ".join(["<|null|>", *body] if null_position == "first" else [*body, "<|null|>"])


def _model_section(card: CardFacts, model: ModelFacts) -> list[str]:
    run, qa = card.run, model.qa
    f = qa.features
    size = ", ".join(part for part in (
        f"{model.layers} layers" if model.layers else "",
        f"{model.width} wide" if model.width else "",
        f"{model.positions} positions" if model.positions else "",
        f"{model.parameters:,} parameters") if part)
    head = qa.head + (f" (LSTM {qa.lstm_hidden_size or 'half the width'} per direction)"
                      if qa.head == "bilstm" else "")
    if qa.head == "generative":
        head += (" (the backbone's LM head writes the answer A, or <|null|> to abstain; "
                 + ("only pieces of the context" if qa.decoding.constrain_to_context
                    else "free text") + ")")
    tuned_on = (f"tuned on {run.eval_data}" if card.evaluation is not None and run.eval_data
                else "not tuned: the run had no evaluation data")
    order = sequence(f.layout, f.null_position, qa.head)
    rows = [("task", f"`{run.task}`"), ("backbone", f"{model.model_type}: {size}"),
            ("head", head), ("layout", f"{f.layout}: `{order}` "
                                       "(Q the question, C a window of the context)"),
            ("null position", f.null_position + (" (a classifier on the last token)"
                                                 if f.null_position == "classifier" else "")),
            ("windows", f"max_seq_length {f.max_seq_length}, doc_stride {f.doc_stride}, "
                        f"max_query_length {f.max_query_length} (tokens)")]
    if run.report.abstains:
        rows.append(("no-answer threshold",
                     f"{_number(qa.decoding.null_score_diff_threshold)} "
                     f"(`null_score_diff_threshold`, {tuned_on})"))
    for key, value in sorted(qa.task_state.items()):
        rows.append((key.replace("_", " "), f"{_number(value)} (`{key}`, {tuned_on})"))
    if model.adapter:
        rows.append(("LoRA", f"adapter directory (r={run.lora_r}, alpha={run.lora_alpha:g}): "
                             "holds only what trained; the base is reloaded from the path "
                             "adapter_config.json names"))
    elif run.lora_r:
        rows.append(("LoRA", f"trained with LoRA (r={run.lora_r}), adapters merged into the "
                             "base: a standalone model"))
    lines = ["## Model", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
    return lines


def _training_section(run: RunFacts) -> list[str]:
    rows = [("base model", run.base.label)]
    rows += [(f.role, f"`{f.name}` (sha256 `{f.sha256}`)") for f in run.data_files]
    rows += [("hub data set", f"`{name}`") for name in run.datasets]
    if run.synthetic:
        rows.append(("data", "synthetic, from gpt2qa's generator (`gpt2qa demo`)"))
    rows += [("steps", f"{run.steps:,} optimizer steps"),
             ("batch", f"{run.batch_size} features per step (over {run.processes} "
                       f"process{'es' if run.processes > 1 else ''})"),
             ("learning rate", f"{_number(run.lr)} peak (AdamW, weight decay "
                               f"{_number(run.weight_decay)}, {run.warmup_ratio:.0%} warm-up, "
                               "linear decay)"),
             ("seed", str(run.seed)), ("precision", run.precision)]
    lines = ["## Training", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
    return lines


def _evaluation_section(card: CardFacts) -> list[str]:
    run = card.run
    if card.evaluation is None:
        return ["## Evaluation", "", "The run had no evaluation data, so there are no scores."]
    metrics = card.evaluation.metrics
    total = metrics.get("total")
    where = f"on `{run.eval_data}`" if run.eval_data else "on the evaluation data"
    count = f" ({total:,} questions)" if isinstance(total, int) else ""
    lines = ["## Evaluation", "",
             f"The saved model's evaluation at step {card.evaluation.step:,}, {where}{count}, "
             "in percent:", "", "| score | value | what it is |", "| --- | ---: | --- |"]
    for score in run.report.scores:
        value = _score_value(run.report, metrics, score.key)
        if value is not None:
            note = " (tuned on these questions: optimistic)" if score.same_data else ""
            lines.append(f"| {score.header} | {value:.2f} | {_cell(score.meaning + note)} |")
    threshold = run.report.threshold
    if threshold is not None and isinstance(metrics.get(threshold.key), (int, float)):
        lines.append(f"| {threshold.header} | {_number(float(metrics[threshold.key]))} | "
                     f"{_cell(threshold.meaning)} |")
    return lines


EXAMPLE_QUESTION = "Who designed the bridge?"
EXAMPLE_TEXT = "The bridge was designed by Ada Park and opened in 1931."
EXAMPLE_PARAGRAPHS = [["Old Bridge", ["The bridge was designed by Ada Park.",
                                      "It opened in 1931."]]]


def _usage_section(run: RunFacts, model: ModelFacts) -> list[str]:
    context: Any = EXAMPLE_TEXT if run.text_context else EXAMPLE_PARAGRAPHS
    body = json.dumps({"question": EXAMPLE_QUESTION, "context": context})
    lines = ["## How to use", "", "With gpt2qa installed (`path/to/this/folder` is this model "
             "directory):", "",
             "```python", "from gpt2qa import QAPipeline", "",
             'qa = QAPipeline.from_pretrained("path/to/this/folder")',
             f"print(qa(question={EXAMPLE_QUESTION!r}, context={context!r}))", "```", "",
             "Over HTTP (a JSON API and a web page):", "", "```bash",
             "gpt2qa serve --model path/to/this/folder",
             "curl -s http://127.0.0.1:8000/v1/answer -H 'Content-Type: application/json' \\",
             f"  -d '{body}'", "```"]
    if model.compatible:
        lines += ["", "It is also a valid `transformers` checkpoint: "
                  "`GPT2ForQuestionAnswering.from_pretrained` gives the same start and end "
                  "logits (the no-answer score is the first token's). It expects gpt2qa's input "
                  "layout above, with the `<|null|>` and `<|sep|>` tokens its tokenizer "
                  "holds, and the abstain rule is gpt2qa's: decode with gpt2qa to get the "
                  "same answers.", "",
                  "```python", "from transformers import GPT2ForQuestionAnswering", "",
                  'model = GPT2ForQuestionAnswering.from_pretrained("path/to/this/folder")',
                  "```"]
    return lines


def _limits_section(card: CardFacts, model: ModelFacts) -> list[str]:
    run, f = card.run, model.qa.features
    lines = ["## Limits", "",
             "- It answers from the context it is given, never from memory.",
             "- " + run.windows.format(max_seq_length=f.max_seq_length,
                                       doc_stride=f.doc_stride,
                                       max_query_length=f.max_query_length)]
    for key, value in run.checked:
        meaning = CHECKED_MEANINGS.get(key, "")
        if meaning:
            lines.append(f"- In training, {100 * value:.1f}% {meaning} (`{key}`, log.jsonl's "
                         "setup record).")
        else:
            lines.append(f"- Setup record: `{key}` = {_number(value)}.")
    if run.report.abstains:
        lines.append("- It abstains (answers \"\") when the no-answer score beats the best "
                     "span's by more than the threshold; pass `null_score_diff_threshold` to "
                     "answer more or abstain more.")
    if card.evaluation is not None:
        lines.append("- The thresholds were tuned on the same questions it was evaluated on; "
                     "expect somewhat lower scores on new data.")
    if run.synthetic:
        lines.append("- **Synthetic data.** It was trained and evaluated on gpt2qa's "
                     "synthetic questions (the demo), to show the pipeline end to end: its "
                     "scores say nothing about real text, and it does not answer questions "
                     "about real text well.")
    return lines


def render_card(card: CardFacts, model: ModelFacts) -> str:
    """The whole README.md: front matter, then the sections."""
    import yaml

    meta = yaml.safe_dump(front_matter(card, model), sort_keys=False, allow_unicode=True)
    run = card.run
    kind = "LoRA adapter" if model.adapter else "model"
    intro = (f"A question-answering {kind} for gpt2qa's `{run.task}` task, fine-tuned with "
             f"gpt2qa from {run.base.label}.")
    parts = [["---", meta.rstrip("\n"), "---", "", f"# {run.name}", "", intro],
             _model_section(card, model), _training_section(run), _evaluation_section(card),
             _usage_section(run, model), _limits_section(card, model)]
    return "\n\n".join("\n".join(part) for part in parts) + "\n"
