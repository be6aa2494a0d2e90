"""HotpotQA model, training and prediction: heads, losses, save/load, the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_file
from gpt2qa.cli import main
from gpt2qa.config import QAConfig
from gpt2qa.decode import WindowOutput
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import prepare_tokenizer
from gpt2qa.hotpot_data import parse_hotpot
from gpt2qa.hotpot_features import convert_hotpot_examples
from gpt2qa.hotpot_metrics import METRIC_KEYS
from gpt2qa.hotpot_model import (
    HotpotModel,
    HotpotRaw,
    collate_hotpot,
    decode_hotpot,
    load_hotpot_model,
    run_hotpot_model,
    save_hotpot_model,
    tune_sp_threshold,
)
from gpt2qa.model import backbone_from_config, tiny_gpt2_config
from test_hotpot_data import hotpot_list, write

QA = QAConfig(head="bilstm", max_seq_length=96, max_query_length=24)


def tiny_hotpot(tokenizer, qa: QAConfig = QA, seed: int = 0) -> HotpotModel:
    torch.manual_seed(seed)
    prepare_tokenizer(tokenizer)
    backbone = backbone_from_config(tiny_gpt2_config(len(tokenizer), n_layer=2, n_embd=32,
                                                     n_head=2, n_positions=128))
    return HotpotModel(backbone, qa)


def features_for(tokenizer, qa: QAConfig = QA):
    examples = parse_hotpot(hotpot_list(), "t").examples
    return examples, convert_hotpot_examples(examples, tokenizer, qa.features())


def test_forward_loss_and_gradients(tiny_tokenizer) -> None:
    model = tiny_hotpot(tiny_tokenizer)
    _, feats = features_for(tiny_tokenizer)
    batch = collate_hotpot(feats, tiny_tokenizer.eos_token_id)
    k = [len(f.sentence_positions) for f in feats]
    assert batch["sentence_mask"].sum(1).tolist() == k
    assert batch["answer_types"].tolist() == [0, 2]
    out = model(**batch)
    assert out.type_logits.shape == (2, 3) and out.sp_logits.shape == (2, max(k))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.type_head.weight.grad.abs().sum() > 0
    assert model.sp_head.weight.grad.abs().sum() > 0
    with pytest.raises(GPT2QAError, match="null_position 'last'"):
        tiny_hotpot(tiny_tokenizer, QAConfig(null_position="first"))


def test_padding_sentences_do_not_change_the_loss(tiny_tokenizer) -> None:
    model = tiny_hotpot(tiny_tokenizer).eval()
    _, feats = features_for(tiny_tokenizer)
    alone = model(**collate_hotpot(feats[1:], tiny_tokenizer.eos_token_id))
    together = model(**collate_hotpot(feats, tiny_tokenizer.eos_token_id))
    k = len(feats[1].sentence_positions)
    torch.testing.assert_close(alone.sp_logits[0, :k], together.sp_logits[1, :k])
    torch.testing.assert_close(alone.type_logits[0], together.type_logits[1])


def test_decode_and_threshold(tiny_tokenizer) -> None:
    examples, feats = features_for(tiny_tokenizer)
    f = feats[0]
    gold = [int(y) for y in f.sentence_labels]
    start = np.full(len(f.base.input_ids), -10.0)
    end = start.copy()
    start[f.base.start_position], end[f.base.end_position] = 5.0, 5.0
    sp = np.array([0.9 if y else 0.3 for y in gold])
    span = HotpotRaw(WindowOutput(start, end, 0.0), np.array([0.8, 0.1, 0.1]), sp)
    no = HotpotRaw(WindowOutput(start[:len(feats[1].base.input_ids)], end, 0.0),
                   np.array([0.1, 0.2, 0.7]), np.full(len(feats[1].sentence_positions), 0.6))
    answers, facts = decode_hotpot(feats, [span, no], QA, 0.5)
    assert answers == {"b1": "Quellton", "c1": "no"}
    assert facts["b1"] == [k for k, y in zip(f.sentence_keys, gold, strict=True) if y]
    threshold, best = tune_sp_threshold(examples, feats, [span, no])
    # c1's gold facts are both at 0.6 and b1's at 0.9 over 0.3: any t in [0.3, 0.6) is perfect.
    assert 0.3 <= threshold < 0.6 and best == pytest.approx(1.0)


def test_save_load_round_trip(tiny_tokenizer, tmp_path: Path) -> None:
    model = tiny_hotpot(tiny_tokenizer).eval()
    _, feats = features_for(tiny_tokenizer)
    save_hotpot_model(model, tiny_tokenizer, tmp_path / "m", 0.35)
    loaded, _, special, threshold = load_hotpot_model(tmp_path / "m")
    assert threshold == 0.35
    a = run_hotpot_model(model, feats, special.pad)
    b = run_hotpot_model(loaded, feats, special.pad)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.sp_probs, y.sp_probs, rtol=1e-5)
        np.testing.assert_allclose(x.window.start_logits, y.window.start_logits, rtol=1e-5)


def _init_dir(tokenizer, path: Path) -> Path:
    model = tiny_hotpot(tokenizer)
    model.transformer.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _train_predict_evaluate(init: Path, data: Path, tmp_path: Path, capsys, extra=()) -> dict:
    run = tmp_path / "run"
    rc = main(["train", "--model", str(init), "--train-file", str(data), "--eval-file",
               str(data), "--output-dir", str(run), "--max-steps", "3", "--batch-size", "4",
               "--max-seq-length", "96", "--max-query-length", "24", "--lr", "1e-3",
               "--no-progress", *extra])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "hotpotqa" and summary["steps"] == 3
    assert main(["predict", "--model", summary["model_dir"], "--data", str(data),
                 "--out-dir", str(tmp_path / "pred")]) == 0
    capsys.readouterr()
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert set(preds) == {"answer", "sp"}
    assert all(isinstance(v, list) and all(len(p) == 2 for p in v) for v in preds["sp"].values())
    assert preds == json.loads((run / "predictions.json").read_text())
    assert main(["evaluate", str(data), str(tmp_path / "pred" / "predictions.json")]) == 0
    scored = json.loads(capsys.readouterr().out)
    stored = json.loads((run / "metrics.json").read_text())
    assert {k: scored[k] for k in METRIC_KEYS} == pytest.approx(
        {k: stored[k] for k in METRIC_KEYS})
    return summary


def test_cli_train_predict_evaluate(tiny_tokenizer, tmp_path: Path, capsys) -> None:
    data = write(tmp_path, hotpot_list(), "h.json")
    init = _init_dir(tiny_tokenizer, tmp_path / "init")
    _train_predict_evaluate(init, data, tmp_path, capsys, ["--head", "linear"])
    # A SQuAD-style question to a HotpotQA model, and a SQuAD model flag, are refused cleanly.
    assert main(["predict", "--model", str(tmp_path / "run" / "model"), "--question", "q",
                 "--context", "c"]) == 2
    assert "HotpotQA model" in capsys.readouterr().err
    assert main(["train", "--model", str(init), "--train-file", str(data), "--output-dir",
                 str(tmp_path / "r2"), "--null-position", "first"]) == 2
    assert "--null-position last" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.slow
def test_real_tokenizer_real_sample(tmp_path: Path, capsys) -> None:
    """A tiny GPT-2 with the real GPT-2 tokenizer trains on the real 53 through the CLI."""
    from gpt2qa.tokenizer import load_tokenizer

    data = shared_file("hotpotqa", "hotpot-dev-distractor-first53.json")
    tokenizer = load_tokenizer(shared_file("gpt2-tokenizer"))
    init = _init_dir(tokenizer, tmp_path / "init")
    summary = _train_predict_evaluate(init, data, tmp_path, capsys,
                                      ["--max-train-examples", "16", "--max-eval-examples", "53"])
    assert 0.0 <= summary["metrics"]["joint_f1"] <= 1.0


def test_recipe_config_parses() -> None:
    from gpt2qa.cli.commands import read_yaml_config
    from gpt2qa.config import TrainConfig

    names = {f for f in TrainConfig.__dataclass_fields__}
    path = Path(__file__).resolve().parents[1] / "configs" / "gpt2-hotpotqa.yaml"
    config = TrainConfig(**read_yaml_config(str(path), names))
    assert config.null_position == "last" and config.max_seq_length == 1024
    assert config.train_file == "hotpot_train_v1.1.json"
