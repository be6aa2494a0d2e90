"""SQuAD as a task: the registry finds it, its evaluation's files score back to its metrics
through `gpt2qa evaluate`'s path, and its API shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt2qa import tasks
from gpt2qa.checkpoint import save_model
from gpt2qa.config import QAConfig
from gpt2qa.data import load_squad
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import prepare_tokenizer
from gpt2qa.inference import run_model
from helpers import tiny_model, write_tiny_squad

QA = QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16)


def test_the_registry_resolves_by_name_file_and_model(tmp_path: Path, tiny_tokenizer) -> None:
    squad_file = write_tiny_squad(tmp_path / "s.json")
    hotpot_file = tmp_path / "h.json"
    hotpot_file.write_text("[]", encoding="utf-8")
    assert tasks.resolve("auto", data=squad_file).name == "squad"
    assert tasks.resolve("auto", data=hotpot_file).name == "hotpotqa"
    assert tasks.get("hotpot") is tasks.get("hotpotqa")
    with pytest.raises(GPT2QAError, match="not a squad file"):
        tasks.resolve("squad", data=hotpot_file)
    with pytest.raises(GPT2QAError, match="unknown task 'mrqa'"):
        tasks.get("mrqa")
    model_dir = save_model(tiny_model(tiny_tokenizer, QA), tiny_tokenizer, tmp_path / "m")
    # The model directory's task wins over auto, whatever the data file is.
    assert tasks.resolve("auto", data=hotpot_file, model_dir=model_dir).name == "squad"
    assert json.loads((model_dir / "gpt2qa.json").read_text())["task"] == "squad"


def test_evaluation_files_score_back_to_its_metrics(tmp_path: Path, tiny_tokenizer) -> None:
    task = tasks.get("squad")
    data = write_tiny_squad(tmp_path / "d.json", copies=3)
    dataset = load_squad(data)
    model = tiny_model(tiny_tokenizer, QA).eval()
    special = prepare_tokenizer(tiny_tokenizer)
    features = task.features(dataset.examples, tiny_tokenizer, QA.features, special)
    outputs = run_model(model, features, special.pad)
    result = task.evaluate(dataset, features, outputs, model.config)
    assert set(result.files) == {"predictions", "na_probs", "nbest"}
    assert result.tuned == {"null_score_diff_threshold":
                            result.metrics["tuned_null_score_diff_threshold"]}
    for name, obj in result.files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(obj), encoding="utf-8")
    scored = task.score_files(str(data), str(tmp_path / "predictions.json"),
                              {"na_prob_file": str(tmp_path / "na_probs.json")})
    for key in ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"):
        assert scored[key] == pytest.approx(result.metrics[key])
    assert task.select(result.metrics) == (pytest.approx(result.metrics["tuned_f1"]),)


def test_the_api_shapes(tiny_tokenizer) -> None:
    task = tasks.get("squad")
    assert task.context_type is str and task.heads(64) == {}
    with pytest.raises(GPT2QAError, match="must be strings"):
        task.example("q", "Who?", [["Title", ["a sentence"]]])
    with pytest.raises(GPT2QAError, match="non-empty"):
        task.example("q", "  ", "context")
    assert task.parse_context("plain text", "--context") == "plain text"
