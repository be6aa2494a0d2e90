"""LoRA through peft, the setup record and gradient checkpointing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

from families import EXAMPLES, FAMILIES, make_tokenizer  # noqa: E402
from gpt2qa.batching import collate  # noqa: E402
from gpt2qa.checkpoint import load_model  # noqa: E402
from gpt2qa.cli import main  # noqa: E402
from gpt2qa.config import QAConfig, TrainConfig  # noqa: E402
from gpt2qa.features import convert_examples_to_features, prepare_tokenizer  # noqa: E402
from gpt2qa.lora import LORA_TARGETS, is_lora, parameter_counts, prepare_for_training  # noqa: E402
from gpt2qa.model import QAModel  # noqa: E402
from gpt2qa.nesting import flat_fields  # noqa: E402
from gpt2qa.tasks import fine_tune as train  # noqa: E402
from helpers import read_card, save_init_dir, tiny_model, write_tiny_squad  # noqa: E402

QA = QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def train_args(init: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(init), "--train-file", str(data), "--eval-file", str(data),
            "--output-dir", str(out), "--max-seq-length", "64", "--doc-stride", "16",
            "--max-query-length", "16", "--batch-size", "2", "--lr", "0.01", "--seed", "7",
            "--no-progress", *extra]


def lora_config(init: Path, **kw) -> TrainConfig:
    return TrainConfig.of(model=str(init), train_file="unused.json", **kw)


def test_lora_run_adapter_dir_merge_and_predict(tmp_path, capsys, tiny_tokenizer):
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, *train_args(init, data, run, "--max-steps", "6",
                                                 "--lora-r", "4", "--merge-lora"))
    assert code == 0, err
    setup = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert setup["event"] == "setup" and setup["lora_r"] == 4
    share = setup["trainable_parameters"] / setup["total_parameters"]
    assert share < 0.20, setup
    assert f"{setup['trainable_parameters']:,} of {setup['total_parameters']:,} parameters" in err

    model_dir, merged_dir = run / "model", run / "model-merged"
    assert (model_dir / "adapter_config.json").is_file()
    assert not (merged_dir / "adapter_config.json").exists()
    assert (merged_dir / "examples.json").read_text() == (model_dir / "examples.json").read_text()
    # The adapter directory holds only what trained: far smaller than the standalone one.
    assert (model_dir / "model.safetensors").stat().st_size < \
        0.5 * (merged_dir / "model.safetensors").stat().st_size

    # Both directories carry a model card: the adapter's and the merged, standalone model's.
    adapter_card, adapter_text = read_card(model_dir, tmp_path, init, data, run)
    merged_card, merged_text = read_card(merged_dir, tmp_path, init, data, run)
    assert "adapter directory (r=4" in adapter_text and "lora" in adapter_card.data.tags
    assert "adapters merged into the base" in merged_text
    assert merged_card.data.eval_results == adapter_card.data.eval_results
    assert [r.metric_value for r in merged_card.data.eval_results if r.metric_type == "tuned_f1"
            ] == [round(json.loads((run / "metrics.json").read_text())["tuned_f1"], 2)]

    adapter, tok, special = load_model(model_dir)
    merged, _, _ = load_model(merged_dir)
    assert is_lora(adapter) and not is_lora(merged)
    base = QAModel(__import__("transformers").AutoModel.from_pretrained(init), QA).transformer
    base_wte = base.get_input_embeddings().weight
    wte = merged.transformer.get_input_embeddings().weight
    # Frozen rows stay the base's; the two added tokens' rows trained.
    added = torch.zeros(len(wte), dtype=torch.bool)
    added[[special.sep, special.null]] = True
    assert len(base_wte) == len(wte)
    assert torch.equal(wte[~added], base_wte[~added])
    assert not torch.allclose(wte[added], base_wte[added])
    feats = convert_examples_to_features(EXAMPLES, tok, adapter.config.features, special)
    with torch.no_grad():
        a, b = adapter(**collate(feats, special.pad)), merged(**collate(feats, special.pad))
    torch.testing.assert_close(a.start_logits, b.start_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.null_score, b.null_score, atol=1e-4, rtol=1e-4)

    for directory in (model_dir, merged_dir):
        code, out, err = run_cli(capsys, "predict", "--model", str(directory), "--data", str(data),
                                 "--out-dir", str(tmp_path / directory.name),
                                 "--null-score-diff-threshold", "0")
        assert code == 0, err
    # predict on the adapter dir reproduces train's own evaluation (at threshold 0).
    assert json.loads((tmp_path / "model" / "predictions.json").read_text()) == \
        json.loads((run / "predictions.json").read_text())
    # serve loads it like any model directory.
    from fastapi.testclient import TestClient

    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.serve import ServeSettings, create_app

    app = create_app(QAPipeline.from_pretrained(model_dir, device="cpu"), ServeSettings())
    with TestClient(app) as client:
        reply = client.post("/v1/answer", json={"question": "When was it completed?",
                                                "context": "It was completed in 1889."})
        assert reply.status_code == 200 and "answer" in reply.json()
        info = client.get("/v1/model").json()
        assert info["parameter_count"] == setup["total_parameters"]


@pytest.mark.slow
def test_lora_resume_matches_an_uninterrupted_run(tmp_path, tiny_tokenizer):
    from safetensors.torch import load_file

    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    common = dict(model=str(init), train_file=str(data), eval_file=str(data), max_seq_length=64,
                  doc_stride=16, max_query_length=16, batch_size=2, lr=0.01, progress=False,
                  seed=7, max_steps=6, save_every=3, eval_every=3, keep_checkpoints=3,
                  lora_r=4)
    full = train(TrainConfig.of(output_dir=str(tmp_path / "full"), **common))
    # A run stopped after its step-3 checkpoint: everything later removed.
    cut = tmp_path / "cut"
    shutil.copytree(full.output_dir, cut)
    shutil.rmtree(cut / "checkpoints" / "step-0000006")
    shutil.rmtree(cut / "model")
    resumed = train(TrainConfig.of(output_dir=str(cut), resume=True, **common))
    assert resumed.steps == 6
    a = load_file(str(full.output_dir / "checkpoints" / "step-0000006" / "model.safetensors"))
    b = load_file(str(cut / "checkpoints" / "step-0000006" / "model.safetensors"))
    assert a.keys() == b.keys() and any("lora_A" in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(x) for x in (cut / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log].count("setup") == 1


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.model_type)
def test_default_targets_per_family(family):
    from transformers import AutoModel

    tok = make_tokenizer(family.tokenizer)
    special = prepare_tokenizer(tok)
    torch.manual_seed(0)
    model = QAModel(AutoModel.from_config(family.config(len(tok))), QA)
    before = parameter_counts(model)["total_parameters"]
    model = prepare_for_training(model, lora_config(Path("base"), lora_r=2), special)
    adapted = {name.split(".lora_A")[0] for name, _ in model.named_parameters() if ".lora_A" in name}
    for target in LORA_TARGETS[family.model_type]:
        assert any(name.endswith(target) for name in adapted), (target, sorted(adapted))
    counts = parameter_counts(model)
    assert counts["total_parameters"] > before and counts["trainable_parameters"] < before
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert {"qa_outputs", "lstm"} <= trainable
    feats = convert_examples_to_features(EXAMPLES, tok, QA.features, special)
    out = model(**collate(feats, special.pad))
    out.loss.backward()
    assert model.qa_outputs.weight.grad is not None


def test_lora_errors_are_one_line(tmp_path, capsys, tiny_tokenizer, monkeypatch):
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json")
    code, _, err = run_cli(capsys, *train_args(init, data, tmp_path / "a", "--max-steps", "1",
                                               "--lora-r", "2", "--lora-target-modules", "nope"))
    assert code == 2 and "--lora-target-modules" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, *train_args(init, data, tmp_path / "b", "--merge-lora"))
    assert code == 2 and "--merge-lora needs --lora-r" in err
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now raises ImportError
    code, _, err = run_cli(capsys, *train_args(init, data, tmp_path / "c", "--max-steps", "1",
                                               "--lora-r", "2"))
    assert code == 2 and "pip install 'gpt2qa[lora]'" in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_type_needs_target_modules(tiny_tokenizer):
    from transformers import AutoModel, OPTConfig

    from gpt2qa.errors import GPT2QAError

    special = prepare_tokenizer(tiny_tokenizer)
    backbone = AutoModel.from_config(OPTConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=64))
    with pytest.raises(GPT2QAError, match="no default LoRA target modules for model type 'opt'"):
        prepare_for_training(QAModel(backbone, QA), lora_config(Path("b"), lora_r=2), special)
    model = prepare_for_training(QAModel(backbone, QA), lora_config(
        Path("b"), lora_r=2, lora_target_modules="q_proj, v_proj"), special)
    assert is_lora(model)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_tokenizer):
    special = prepare_tokenizer(tiny_tokenizer)
    feats = convert_examples_to_features(EXAMPLES, tiny_tokenizer, QA.features, special)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(tiny_tokenizer, QA, seed=3).train()
        model = prepare_for_training(model, lora_config(
            Path("b"), gradient_checkpointing=checkpointing), special)
        assert model.transformer.is_activation_checkpointing == checkpointing
        torch.manual_seed(11)  # the same dropout masks (non-reentrant recomputation keeps them)
        model(**collate(feats, special.pad)).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("name", "lora_r"), [("gpt2-medium-squad2.yaml", 0),
                                              ("qwen2.5-0.5b-squad2-lora.yaml", 16),
                                              ("llama-3.2-1b-squad2-lora.yaml", 16)])
def test_recipes_parse(name, lora_r):
    from gpt2qa.cli.commands import read_yaml_config

    path = Path(__file__).resolve().parents[1] / "configs" / name
    text = path.read_text()
    assert "Memory (computed, not measured" in text
    config = TrainConfig.of(**read_yaml_config(str(path), set(flat_fields(TrainConfig))))
    assert config.lora_r == lora_r and config.precision == "bf16"
