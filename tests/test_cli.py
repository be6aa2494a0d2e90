"""The CLI, invoked in-process: outputs, config files and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

from gpt2qa.cli import main
from helpers import run, save_init_dir, write_tiny_squad


def test_evaluate_prints_official_json(capsys, squad_v2_file, tmp_path):
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"q1": "1889", "q2": "", "q3": "poems"}))
    na = tmp_path / "na.json"
    na.write_text(json.dumps({"q1": 0.1, "q2": 0.9, "q3": 0.6}))
    code, out, _ = run(capsys, "evaluate", str(squad_v2_file), str(preds), "--na-prob-file",
                       str(na), "--out-file", str(tmp_path / "m.json"), "--breakdown",
                       "--out-image-dir", str(tmp_path / "img"))
    assert code == 0
    result = json.loads(out)
    assert result["exact"] == pytest.approx(200 / 3)
    assert result["total"] == 3 and result["HasAns_total"] == 2 and result["NoAns_total"] == 1
    # Walk by na_prob: start at 1 (q2 abstains), q1 +1 -> 2 of 3 at threshold 0.1; q3 adds 0.
    assert result["best_exact"] == pytest.approx(200 / 3) and result["best_exact_thresh"] == 0.1
    assert json.loads((tmp_path / "m.json").read_text()) == result
    assert (tmp_path / "img" / "pr_f1.png").read_bytes()[:4] == b"\x89PNG"
    assert "question_word" in result["breakdown"]


def test_evaluate_counts_missing_predictions(capsys, squad_v2_file, tmp_path):
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"q1": "1889"}))
    code, out, _ = run(capsys, "evaluate", str(squad_v2_file), str(preds))
    assert code == 0
    result = json.loads(out)
    assert result["missing"] == 2 and result["exact"] == pytest.approx(100 / 3)


@pytest.mark.parametrize(("argv", "needle"), [
    (["evaluate", "{tmp}/absent.json", "{tmp}/p.json"], "absent.json"),
    (["evaluate", "{tmp}/bad.json", "{tmp}/p.json"], "line 1 column"),
    (["predict", "--model", "{tmp}/plain", "--question", "Q?", "--context", "C."],
     "not a gpt2qa model directory"),
    (["predict", "--model", "{tmp}/plain", "--data", "{tmp}/absent.json", "--out-dir", "{tmp}/o"],
     "absent.json: no such file"),
    (["train", "--model", "m", "--train-file", "t.json", "--batch-size", "0"], "batch_size"),
    (["train", "--config", "{tmp}/bad.yaml"], "unknown setting(s) bogus"),
    (["train", "--config", "{tmp}/absent.yaml"], "cannot read config file"),
    (["check-spans", "{tmp}/absent.json", "--tokenizer", "{tmp}/plain"], "absent.json"),
])
def test_bad_input_is_one_line_without_traceback(capsys, tmp_path, argv, needle):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "p.json").write_text("{}")
    (tmp_path / "plain").mkdir()
    (tmp_path / "bad.yaml").write_text("bogus: 1\nlr: 0.1\n")
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_check_spans(capsys, squad_v2_file, tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    code, out, _ = run(capsys, "check-spans", str(squad_v2_file), "--tokenizer", str(tmp_path / "tok"),
                       "--max-seq-length", "48", "--doc-stride", "8", "--max-query-length", "16")
    assert code == 0
    result = json.loads(out)
    assert result["examples"] == 3 and result["answerable"] == 2
    assert result["exact"] == 100.0 and result["f1"] == 100.0 and result["failures"] == []
    assert result["features"] >= 3


def test_train_from_yaml_then_predict(capsys, tmp_path, tiny_tokenizer):
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {init}\ntrain-file: {data}\neval_file: {data}\n"
                   f"output_dir: {tmp_path / 'run'}\nmax_seq_length: 64\ndoc_stride: 16\n"
                   "max_query_length: 16\nbatch_size: 2\nlr: 0.003\nmax_steps: 3\nprogress: false\n")
    code, out, err = run(capsys, "train", "--config", str(cfg), "--max-steps", "4", "--head", "bilstm")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps"] == 4  # the flag overrides the file
    saved = json.loads((tmp_path / "run" / "model" / "gpt2qa.json").read_text())
    assert saved["head"] == "bilstm" and saved["max_seq_length"] == 64
    # A few evaluation questions for the serve page: answerable ones, then one unanswerable.
    examples = json.loads((tmp_path / "run" / "model" / "examples.json").read_text())
    assert examples["task"] == "squad" and examples["data"] == "d.json"
    assert examples["synthetic"] is False
    assert [bool(e["answers"]) for e in examples["examples"]] == [True] * 4 + [False]
    assert examples["examples"][0] == {"question": "When was the Eiffel Tower completed?",
                                       "context": "The Eiffel Tower was completed in 1889 in "
                                                  "Paris, France.", "answers": ["1889"]}
    code, out, _ = run(capsys, "predict", "--model", str(tmp_path / "run" / "model"),
                       "--question", "When was the Eiffel Tower completed?",
                       "--context", "The Eiffel Tower was completed in 1889 in Paris, France.")
    assert code == 0
    answer = json.loads(out)
    assert set(answer) >= {"answer", "score", "no_answer_probability", "is_impossible"}
    assert 0.0 <= answer["no_answer_probability"] <= 1.0
    code, out, _ = run(capsys, "predict", "--model", str(tmp_path / "run" / "model"),
                       "--data", str(data), "--out-dir", str(tmp_path / "pred"))
    assert code == 0
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(preds) == 6
    code, out, _ = run(capsys, "evaluate", str(data), str(tmp_path / "pred" / "predictions.json"),
                       "--na-prob-file", str(tmp_path / "pred" / "na_probs.json"))
    assert code == 0 and json.loads(out)["total"] == 6


def test_hub_model_offline_is_a_clear_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_tiny_squad(tmp_path / "d.json")
    code, _, err = run(capsys, "train", "--model", "no-such-org/no-such-model", "--train-file",
                       str(data), "--output-dir", str(tmp_path / "r"), "--max-steps", "1")
    assert code == 2
    assert "no-such-org/no-such-model" in err and "hub" in err
    assert len(err.strip().splitlines()) == 1


def test_dataset_without_datasets_extra_names_local_alternative(capsys, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails, as uninstalled
    code, _, err = run(capsys, "train", "--model", "x", "--dataset", "squad_v2",
                       "--output-dir", str(tmp_path / "r"))
    assert code == 2 and "--train-file" in err


def test_shipped_configs_parse(tmp_path):
    """configs/*.yaml use only known settings and valid values."""
    from pathlib import Path

    from gpt2qa.cli.commands import read_yaml_config
    from gpt2qa.config import TrainConfig
    from gpt2qa.nesting import flat_fields

    root = Path(__file__).resolve().parents[1] / "configs"
    names = set(flat_fields(TrainConfig))
    values = read_yaml_config(str(root / "gpt2-squad2.yaml"), names)
    config = TrainConfig.of(**values)
    assert config.model == "gpt2" and config.precision == "bf16"


def test_train_help_explains_each_flag_from_its_field_docstring(capsys):
    from gpt2qa.cli import field_docs
    from gpt2qa.config import TrainConfig

    docs = field_docs(TrainConfig)
    assert docs["max_steps"] == ("Optimizer steps. Above 0 they win over epochs; 0 means run "
                                 "for epochs instead.")

    @dataclasses.dataclass
    class Undocumented:
        seed: int = 0

    assert field_docs(Undocumented) == {}  # a field without a docstring gets none
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("--max-steps MAX_STEPS Optimizer steps. Above 0 they win over epochs; 0 means run "
            "for epochs instead. (default: 0)") in out
    assert "--compile, --no-compile torch.compile the model" in out
