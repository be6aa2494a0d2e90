"""HotpotQA model, training and prediction: heads, losses, save/load, the CLI end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2qa.batching import collate
from gpt2qa.checkpoint import load_model, save_model
from gpt2qa.cli import main
from gpt2qa.config import QAConfig
from gpt2qa.decode import WindowOutput
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import prepare_tokenizer
from gpt2qa.inference import run_model
from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config
from gpt2qa.task import refuse_unsupported
from gpt2qa.tasks.hotpotqa import HotpotTask, tune_sp_threshold
from gpt2qa.tasks.hotpotqa.data import parse_hotpot
from gpt2qa.tasks.hotpotqa.heads import decode_hotpot, hotpot_heads
from gpt2qa.tasks.hotpotqa.inputs import convert_hotpot_examples, window_of
from gpt2qa.tasks.hotpotqa.metrics import METRIC_KEYS

QA = QAConfig.of(task="hotpotqa", head="bilstm", max_seq_length=96, max_query_length=24)


def tiny_hotpot(tokenizer, qa: QAConfig = QA, seed: int = 0) -> QAModel:
    torch.manual_seed(seed)
    prepare_tokenizer(tokenizer)
    backbone = backbone_from_config(tiny_gpt2_config(len(tokenizer), n_layer=2, n_embd=32,
                                                     n_head=2, n_positions=128))
    return QAModel(backbone, qa, hotpot_heads)


def features_for(tokenizer, hotpot_list, qa: QAConfig = QA):
    examples = parse_hotpot(hotpot_list(), "t").examples
    return examples, convert_hotpot_examples(examples, tokenizer, qa.features)


def collate_hotpot(model, features, pad_id):
    return collate(features, pad_id, heads=model.task_heads.values())


def test_forward_loss_and_gradients(tiny_tokenizer, hotpot_list) -> None:
    model = tiny_hotpot(tiny_tokenizer)
    _, feats = features_for(tiny_tokenizer, hotpot_list)
    batch = collate_hotpot(model, feats, tiny_tokenizer.eos_token_id)
    k = [len(window_of(f).sentence_positions) for f in feats]
    assert batch["sentence_mask"].sum(1).tolist() == k
    assert batch["answer_types"].tolist() == [0, 2]
    out = model(**batch)
    type_logits, sp_logits = out.extra["answer_type"], out.extra["supporting_facts"]
    assert type_logits.shape == (2, 3) and sp_logits.shape == (2, max(k))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.task_heads["answer_type"].proj.weight.grad.abs().sum() > 0
    assert model.task_heads["supporting_facts"].proj.weight.grad.abs().sum() > 0
    with pytest.raises(GPT2QAError, match="null_position 'last'"):
        refuse_unsupported(HotpotTask(), {"null_position": "first"}, {"null_position": "last"})


def test_padding_sentences_do_not_change_the_loss(tiny_tokenizer, hotpot_list) -> None:
    model = tiny_hotpot(tiny_tokenizer).eval()
    _, feats = features_for(tiny_tokenizer, hotpot_list)
    alone = model(**collate_hotpot(model, feats[1:], tiny_tokenizer.eos_token_id))
    together = model(**collate_hotpot(model, feats, tiny_tokenizer.eos_token_id))
    k = len(window_of(feats[1]).sentence_positions)
    torch.testing.assert_close(alone.extra["supporting_facts"][0, :k],
                               together.extra["supporting_facts"][1, :k])
    torch.testing.assert_close(alone.extra["answer_type"][0], together.extra["answer_type"][1])


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def test_decode_and_threshold(tiny_tokenizer, hotpot_list) -> None:
    examples, feats = features_for(tiny_tokenizer, hotpot_list)
    f, w = feats[0], window_of(feats[0])
    gold = [int(y) for y in w.sentence_labels]
    start = np.full(len(f.input_ids), -10.0)
    end = start.copy()
    start[f.start_position], end[f.end_position] = 5.0, 5.0
    sp = np.array([0.9 if y else 0.3 for y in gold])
    # The heads' outputs are logits: log-probabilities for the type, log-odds per sentence.
    span = WindowOutput(start, end, 0.0, {"answer_type": np.log(np.array([0.8, 0.1, 0.1])),
                                          "supporting_facts": _logit(sp)})
    n_no = len(window_of(feats[1]).sentence_positions)
    no = WindowOutput(start[:len(feats[1].input_ids)], end, 0.0,
                      {"answer_type": np.log(np.array([0.1, 0.2, 0.7])),
                       "supporting_facts": _logit(np.full(n_no, 0.6))})
    preds = decode_hotpot(feats, [span, no], QA.decoding.n_best_size,
                          QA.decoding.max_answer_length, 0.5)
    answers = {p.qas_id: p.answer for p in preds}
    facts = {p.qas_id: list(p.facts) for p in preds}
    assert answers == {"b1": "Quellton", "c1": "no"}
    assert facts["b1"] == [k for k, y in zip(w.sentence_keys, gold, strict=True) if y]
    threshold, best = tune_sp_threshold(examples, feats, [span, no])
    # c1's gold facts are both at 0.6 and b1's at 0.9 over 0.3: any t in [0.3, 0.6) is perfect.
    assert 0.3 <= threshold < 0.6 and best == pytest.approx(1.0)


def test_save_load_round_trip(tiny_tokenizer, tmp_path: Path, hotpot_list) -> None:
    model = tiny_hotpot(tiny_tokenizer).eval()
    _, feats = features_for(tiny_tokenizer, hotpot_list)
    save_model(model, tiny_tokenizer, tmp_path / "m",
               qa=dataclasses.replace(QA, task_state={"sp_threshold": 0.35}))
    loaded, _, special = load_model(tmp_path / "m", task=HotpotTask())
    threshold = loaded.config.task_state["sp_threshold"]
    assert threshold == 0.35
    a = run_model(model, feats, special.pad)
    b = run_model(loaded, feats, special.pad)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.extra["supporting_facts"], y.extra["supporting_facts"],
                                   rtol=1e-5)
        np.testing.assert_allclose(x.start_logits, y.start_logits, rtol=1e-5)


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


def test_cli_train_predict_evaluate(tiny_tokenizer, tmp_path: Path, capsys, hotpot_list, write) -> None:
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
def test_real_tokenizer_real_sample(tmp_path: Path, capsys, shared_data) -> None:
    """A tiny GPT-2 with the real GPT-2 tokenizer trains on the real 53 through the CLI."""
    from gpt2qa.tokenizer import load_tokenizer

    data = shared_data("hotpotqa", "hotpot-dev-distractor-first53.json")
    tokenizer = load_tokenizer(shared_data("gpt2-tokenizer"))
    init = _init_dir(tokenizer, tmp_path / "init")
    summary = _train_predict_evaluate(init, data, tmp_path, capsys,
                                      ["--max-train-examples", "16", "--max-eval-examples", "53"])
    assert 0.0 <= summary["metrics"]["joint_f1"] <= 1.0


def test_recipe_config_parses() -> None:
    from gpt2qa.cli.commands import read_yaml_config
    from gpt2qa.config import TrainConfig
    from gpt2qa.nesting import flat_fields

    names = set(flat_fields(TrainConfig))
    path = Path(__file__).resolve().parents[3] / "configs" / "gpt2-hotpotqa.yaml"
    config = TrainConfig.of(**read_yaml_config(str(path), names))
    assert config.qa.features.null_position == "last" and config.qa.features.max_seq_length == 1024
    assert config.train_file == "hotpot_train_v1.1.json"
