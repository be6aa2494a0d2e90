"""The model card (README.md) of a trained model directory: hub-parsable, path-free, and saying
what the run was, how it scored and how to load the model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from gpt2qa import tasks
from gpt2qa.card_facts import (
    BaseModel,
    CardFacts,
    DataFile,
    EvalFacts,
    ModelFacts,
    RunFacts,
    base_model_facts,
    card_metadata,
)
from gpt2qa.config import QAConfig
from gpt2qa.modelcard import render_card
from helpers import read_card, run, save_init_dir, write_tiny_squad


def test_a_training_run_writes_a_card_the_hub_parser_reads(tmp_path, capsys, tiny_tokenizer):
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "tiny-squad.json", copies=2)
    out = tmp_path / "my-run"
    code, _, err = run(capsys, "train", "--model", str(init), "--train-file", str(data),
                       "--eval-file", str(data), "--output-dir", str(out), "--max-steps", "4",
                       "--max-seq-length", "64", "--doc-stride", "16", "--max-query-length",
                       "16", "--batch-size", "2", "--lr", "0.01", "--seed", "7",
                       "--no-progress", "--head", "linear", "--null-position", "first")
    assert code == 0, err
    card, text = read_card(out / "model", tmp_path, init, data, out)

    metrics = json.loads((out / "metrics.json").read_text())
    index = card.data.to_dict()["model-index"][0]
    assert index["name"] == "my-run"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["exact"] == round(metrics["exact"], 2)
    assert results["tuned_f1"] == round(metrics["tuned_f1"], 2)
    assert {r.dataset_name for r in card.data.eval_results} == {"tiny-squad.json"}
    assert card.data.base_model is None  # a local init directory has no hub id ...
    assert "a local model directory `init`" in text  # ... and is named by its base name only

    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert f"`tiny-squad.json` (sha256 `{digest}`)" in text
    for row in ("| steps | 4 optimizer steps |", "| seed | 7 |", "| learning rate | 0.01 peak",
                "| batch | 2 features per step"):
        assert row in text
    threshold = json.loads((out / "model" / "gpt2qa.json").read_text())[
        "null_score_diff_threshold"]
    assert threshold == metrics["tuned_null_score_diff_threshold"]
    assert f"| no-answer threshold | {threshold:g} " in text
    assert f"| tuned threshold | {threshold:g} |" in text
    assert f"at step {metrics['step']}, on `tiny-squad.json` ({metrics['total']} questions)" in text
    setup = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert f"{100 * setup['answer_recall']:.1f}% of the answerable training questions" in text
    assert r"| layout | question-first: `<\|null\|> Q <\|sep\|> C`" in text  # pipes escaped
    assert "| windows | max_seq_length 64, doc_stride 16, max_query_length 16 (tokens) |" in text
    assert "overlapping windows of 64 tokens, a new one every 16 tokens" in text
    # linear head, null first, question first, GPT-2: also a transformers checkpoint.
    assert "GPT2ForQuestionAnswering.from_pretrained" in text
    assert 'QAPipeline.from_pretrained("path/to/this/folder")' in text
    assert "gpt2qa serve --model path/to/this/folder" in text
    assert "Synthetic" not in text


# -- rendering, from the records alone ---------------------------------------------------------

def _facts(task: str = "squad", **run) -> tuple[CardFacts, ModelFacts]:
    spec = tasks.get(task)
    facts = RunFacts(
        name="gpt2-squad", task=spec.name, report=spec.report,
        text_context=spec.context_type is str, windows=spec.windows, base=BaseModel("gpt2", "`gpt2` (hub)", "mit"),
        datasets=("squad_v2",), data_files=(DataFile("training data", "train.json", "ab" * 32),),
        eval_data="squad_v2", eval_loader="squad_v2", steps=100, batch_size=16, lr=5e-5,
        seed=42, warmup_ratio=0.1, weight_decay=0.01, precision="bf16", processes=2,
        checked=(("answer_recall", 0.987),))
    model = ModelFacts(qa=QAConfig.of(task=spec.name), model_type="gpt2", layers=12,
                       width=768, positions=1024, parameters=124_000_000, compatible=False,
                       adapter=False)
    return CardFacts(replace(facts, **run), EvalFacts({"exact": 70.123, "f1": 73.5,
                                                       "HasAns_f1": 70.0, "NoAns_f1": 77.0,
                                                       "tuned_null_score_diff_threshold": -1.5,
                                                       "total": 11873}, 2000)), model


def test_the_front_matter_is_the_hubs_schema():
    card, model = _facts()
    meta = card_metadata(render_card(card, model))
    assert meta["base_model"] == "gpt2" and meta["license"] == "mit"
    assert meta["base_model_relation"] == "finetune" and meta["datasets"] == ["squad_v2"]
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "squad_v2", "type": "squad_v2", "split": "validation"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        "exact": 70.12, "f1": 73.5, "HasAns_f1": 70.0, "NoAns_f1": 77.0}
    text = render_card(card, model)
    assert "98.7% of the answerable training questions" in text
    assert "GPT2ForQuestionAnswering" not in text  # not a compatible head
    assert "2 processes" in text and "bf16" in text


def test_an_adapter_a_run_without_evaluation_and_synthetic_data():
    card, model = _facts(lora_r=8, lora_alpha=16.0, synthetic=True)
    adapter = replace(model, adapter=True)
    text = render_card(CardFacts(card.run), adapter)
    meta = card_metadata(text)
    assert "model-index" not in meta  # no scores, no model-index
    assert meta["base_model_relation"] == "adapter" and "synthetic-data" in meta["tags"]
    assert "no evaluation data" in text and "not tuned" in text
    assert "adapter directory (r=8" in text and "**Synthetic data.**" in text
    merged = render_card(card, replace(model, compatible=True))
    assert "adapters merged into the base" in merged and "GPT2ForQuestionAnswering" in merged


def test_a_hotpot_card_scales_its_scores_and_shows_a_list_context():
    card, model = _facts("hotpotqa")
    metrics = {"em": 0.5, "f1": 0.625, "sp_em": 0.25, "sp_f1": 0.5, "joint_em": 0.125,
               "joint_f1": 0.3125, "sp_threshold": 0.35, "total": 8}
    model = replace(model, qa=QAConfig.of(task="hotpotqa", task_state={"sp_threshold": 0.35}))
    text = render_card(CardFacts(card.run, EvalFacts(metrics, 10)), model)
    assert "| joint F1 | 31.25 |" in text and "| sp threshold | 0.35 |" in text
    assert "| sp threshold | 0.35 (`sp_threshold`, tuned on squad_v2) |" in text
    assert "no-answer threshold" not in text  # HotpotQA does not abstain
    assert '"context": [["Old Bridge", ["The bridge was' in text
    assert "Each question gets one window of 384 tokens" in text
    values = {m["type"]: m["value"] for m in
              card_metadata(text)["model-index"][0]["results"][0]["metrics"]}
    assert values["joint_f1"] == 31.25 and values["em"] == 50.0


def test_base_model_facts_never_give_a_path(tmp_path, monkeypatch):
    # "~/models/x" and "../x" must name nothing that exists, wherever the suite runs from.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "cwd" / "here").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd" / "here")
    assert base_model_facts("gpt2") == BaseModel("gpt2", "`gpt2` (Hugging Face hub)")
    for given in (str(tmp_path / "absent"), "~/models/x", "../x"):
        assert base_model_facts(given) == BaseModel(None, "a local model")
    local = tmp_path / "finetuned"
    local.mkdir()
    (local / "README.md").write_text("---\nbase_model: gpt2\nlicense: mit\n---\n# x\n")
    assert base_model_facts(str(local)) == BaseModel(
        "gpt2", "a local model directory `finetuned`, itself from `gpt2`", "mit")
    (local / "README.md").write_text("---\nbase_model: /home/me/x\nlicense: [1]\n---\n")
    (local / "config.json").write_text('{"license": "apache-2.0"}')
    assert base_model_facts(str(local)) == BaseModel(
        None, "a local model directory `finetuned`", "apache-2.0")
    snapshot = tmp_path / "models--openai-community--gpt2" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert base_model_facts(str(snapshot)).hub_id == "openai-community/gpt2"


@pytest.mark.parametrize("text", ["no front matter", "---\n: [\n---\n", "---\n- a list\n---\n"])
def test_card_metadata_of_an_odd_card_is_empty(text):
    assert card_metadata(text) == {}


def test_a_dataset_folder_is_listed_by_relative_names(tmp_path, monkeypatch):
    """`--dataset DIR`: every plain file below DIR, named from DIR's own name down, with its
    sha256; hidden paths (a clone's .git) and special files are left out; a file that cannot
    be read is one line naming it."""
    import hashlib
    import os

    from gpt2qa import card_facts
    from gpt2qa.errors import GPT2QAError

    folder = tmp_path / "qa"
    (folder / "data").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "train.jsonl").write_text("a\n")
    (folder / "data" / "validation.jsonl").write_text("b\n")
    (folder / ".git" / "HEAD").write_text("ref")
    (folder / ".hidden.jsonl").write_text("c\n")
    os.mkfifo(folder / "pipe")
    files = card_facts.dataset_folder_files(folder)
    assert [(f.role, f.name) for f in files] == [("dataset file", "qa/data/validation.jsonl"),
                                                 ("dataset file", "qa/train.jsonl")]
    assert files[1].sha256 == hashlib.sha256(b"a\n").hexdigest()

    def unreadable(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(card_facts, "file_sha256", unreadable)
    with pytest.raises(GPT2QAError, match=r"^--dataset .*qa: cannot read data/validation.jsonl "
                                          r"to hash it for the model card \(Permission denied\)$"):
        card_facts.dataset_folder_files(folder)


def test_a_hub_short_name_is_not_taken_for_a_folder_of_that_name(tmp_path, monkeypatch):
    """The card follows what `datasets.load_dataset` reads: `--dataset squad` is the hub's
    rajpurkar/squad even beside a folder named squad, while a local folder rajpurkar/squad_v2
    is what `--dataset squad_v2` reads, named by its base name with its files."""
    from types import SimpleNamespace

    from gpt2qa import tasks
    from gpt2qa.card_facts import run_facts
    from gpt2qa.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "squad").mkdir()  # not what `--dataset squad` reads: rajpurkar/squad is
    (tmp_path / "squad_v2").mkdir()
    (tmp_path / "rajpurkar" / "squad_v2").mkdir(parents=True)
    (tmp_path / "rajpurkar" / "squad_v2" / "train.jsonl").write_text("{}\n")
    schedule = SimpleNamespace(total_steps=1, batch_size=2, processes=1)
    facts = {}
    for name in ("squad", "rajpurkar/squad_v2", "squad_v2"):
        config = TrainConfig.of(model="gpt2", dataset=name, output_dir=str(tmp_path / "run"))
        facts[name] = run_facts(config, tasks.get("squad"), schedule, {})
    assert facts["squad"].datasets == ("squad",) and facts["squad"].data_files == ()
    for name in ("rajpurkar/squad_v2", "squad_v2"):  # the short name reads that repository
        assert facts[name].datasets == () and facts[name].eval_data == "squad_v2"
        assert [f.name for f in facts[name].data_files] == ["squad_v2/train.jsonl"]
