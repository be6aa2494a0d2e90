"""Every command on every layout: train, predict, evaluate and check-spans on flat rows with
remapped columns (`--id-column` ...), MRQA training's warning, and `--dataset NAME[:CONFIG]`
through a stand-in for `datasets.load_dataset` (no network)."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import pytest

from builders import squad_rows
from gpt2qa.config import DataFormat
from gpt2qa.errors import DataError, GPT2QAError
from gpt2qa.hub_data import load_hub_dataset
from helpers import one_line_error, run, save_init_dir, write_tiny_squad

COLUMNS = ["--id-column", "key", "--question-column", "q", "--context-column", "passage",
           "--answer-column", "gold"]
RENAMES = {"id": "key", "question": "q", "context": "passage", "answers": "gold"}
SHAPE = ["--max-seq-length", "64", "--doc-stride", "16", "--max-query-length", "16"]


def remapped_rows(squad: Path) -> list[dict]:
    rows = squad_rows(json.loads(squad.read_text(encoding="utf-8")))
    return [{RENAMES.get(k, k): v for k, v in row.items()} for row in rows]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()}
                         for r in rows)
    return path


@pytest.mark.slow
def test_every_command_on_rows_with_remapped_columns(capsys, tmp_path, tiny_tokenizer):
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    squad = write_tiny_squad(tmp_path / "d.json", copies=2)
    data = write_csv(tmp_path / "rows.csv", remapped_rows(squad))
    code, out, err = run(capsys, "train", "--model", str(init), "--train-file", str(data),
                         "--eval-file", str(data), "--output-dir", str(tmp_path / "run"),
                         *SHAPE, "--batch-size", "2", "--max-steps", "2", "--no-progress",
                         *COLUMNS)
    assert code == 0, err
    assert json.loads(out)["task"] == "squad"
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text(encoding="utf-8"))
    assert (saved["data_format"], saved["question_column"]) == ("auto", "q")
    model = str(tmp_path / "run" / "model")

    code, out, err = run(capsys, "predict", "--model", model, "--data", str(data),
                         "--out-dir", str(tmp_path / "pred"), *COLUMNS)
    assert code == 0, err
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text(encoding="utf-8"))
    assert sorted(preds) == sorted(r["key"] for r in remapped_rows(squad))

    scores = []
    for argv in ([str(data), *COLUMNS], [str(squad)]):  # the same gold, two layouts
        code, out, err = run(capsys, "evaluate", argv[0], str(tmp_path / "pred" /
                                                              "predictions.json"),
                             "--na-prob-file", str(tmp_path / "pred" / "na_probs.json"),
                             *argv[1:])
        assert code == 0, err
        scores.append(json.loads(out))
    assert scores[0] == scores[1] and scores[0]["total"] == 6 and scores[0]["HasAns_total"] == 4

    code, out, err = run(capsys, "check-spans", str(data), "--tokenizer", str(init), *COLUMNS,
                         "--max-seq-length", "48", "--doc-stride", "8", "--max-query-length", "16")
    assert code == 0, err
    report = json.loads(out)
    assert (report["examples"], report["answerable"], report["exact"]) == (6, 4, 100.0)

    # Without the column flags: one line naming the file, the line, the column and the flag.
    code, _, err = run(capsys, "evaluate", str(data), str(tmp_path / "pred" / "predictions.json"))
    assert f"{data}: line 1: missing column 'id' (the columns are 'key', 'title', 'passage', " \
           "'q', 'gold'; --id-column names another)" in one_line_error(code, err)


def test_a_bad_row_stops_train_in_one_line(capsys, tmp_path, tiny_tokenizer):
    squad = write_tiny_squad(tmp_path / "d.json")
    rows = remapped_rows(squad)
    rows[2]["key"] = rows[0]["key"]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, _, err = run(capsys, "train", "--model", str(tmp_path / "none"), "--train-file",
                       str(data), "--output-dir", str(tmp_path / "run"), *COLUMNS)
    line = one_line_error(code, err)
    assert f"{data}: line 3: id=q1: duplicate id, first used at line 1" in line
    assert not (tmp_path / "run").exists()


def test_mrqa_training_warns_it_cannot_learn_to_abstain(capsys, tmp_path, tiny_tokenizer):
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    ctx = "The Eiffel Tower was completed in 1889 in Paris, France."
    start = ctx.index("1889")
    lines = [{"header": {"dataset": "Tiny", "split": "train"}},
             {"context": ctx, "qas": [
                 {"qid": f"m{i}", "question": "When was the Eiffel Tower completed?",
                  "detected_answers": [{"text": "1889", "char_spans": [[start, start + 3]]}]}
                 for i in range(4)]}]
    data = tmp_path / "mrqa.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    code, _, err = run(capsys, "train", "--model", str(init), "--train-file", str(data),
                       "--output-dir", str(tmp_path / "run"), *SHAPE, "--batch-size", "2",
                       "--max-steps", "1", "--no-progress")
    assert code == 0, err
    assert f"{data}: no unanswerable questions, so the model cannot learn to abstain" in err


def test_hotpotqa_refuses_the_row_flags(capsys, tmp_path):
    data = tmp_path / "hotpot.json"
    data.write_text(json.dumps([{"_id": "h", "question": "Who?", "answer": "Ana",
                                 "supporting_facts": [], "context": [["A", ["Ana."]]]}]))
    code, _, err = run(capsys, "check-spans", str(data), "--tokenizer", "x",
                       "--question-column", "q")
    assert "--question-column q is not supported for hotpotqa: it reads the official HotpotQA " \
           "JSON list only" in one_line_error(code, err)


# -- --dataset NAME[:CONFIG], with a stand-in for the `datasets` package -------------------------

@pytest.fixture()
def fake_hub(monkeypatch, tmp_path):
    """`datasets.load_dataset` answered from memory: splits of SQuAD rows with remapped columns
    (returned by the fixture, to edit), and the (repo, config) of each call."""
    rows = remapped_rows(write_tiny_squad(tmp_path / "d.json", copies=2))
    splits = {"train": rows, "validation": rows[:3]}
    calls: list[tuple[str, str | None]] = []

    def load_dataset(repo, config=None):
        calls.append((repo, config))
        if repo == "offline/broken":
            raise ConnectionError("no network")
        return splits

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    return splits, calls


def test_hub_dataset_with_config_and_remapped_columns(fake_hub):
    splits, calls = fake_hub
    columns = DataFormat(id_column="key", question_column="q", context_column="passage",
                         answer_column="gold")
    train, dev = load_hub_dataset("adversarial_qa:dbidaf", reading=columns)
    assert calls == [("adversarial_qa", "dbidaf")]
    assert [e.qas_id for e in train.examples] == [r["key"] for r in splits["train"]]
    assert dev is not None and len(dev.examples) == 3 and train.is_v2
    assert train.path == "hub:adversarial_qa/train"
    load_hub_dataset("squad_v2", reading=columns)
    assert calls[-1] == ("rajpurkar/squad_v2", None)
    del splits["validation"]
    _, dev = load_hub_dataset("squad", reading=columns)
    assert calls[-1] == ("rajpurkar/squad", None) and dev is None
    splits["train"][1]["key"] = splits["train"][0]["key"]
    with pytest.raises(DataError, match=r"^hub:adversarial_qa/train: row 1: id=q1-0: duplicate "
                                        r"id, first used at row 0$"):
        load_hub_dataset("adversarial_qa", reading=columns)
    with pytest.raises(GPT2QAError, match=r"--dataset offline/broken: could not load "
                                          r"offline/broken from the hub \(ConnectionError\)"):
        load_hub_dataset("offline/broken")
    with pytest.raises(GPT2QAError, match="expected NAME or NAME:CONFIG"):
        load_hub_dataset("squad:")


def test_train_on_a_hub_dataset(capsys, tmp_path, tiny_tokenizer, fake_hub):
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    code, out, err = run(capsys, "train", "--model", str(init), "--dataset", "my/qa:v1",
                         "--output-dir", str(tmp_path / "run"), *SHAPE, "--batch-size", "2",
                         "--max-steps", "1", "--no-progress", *COLUMNS)
    assert code == 0, err
    assert fake_hub[1] == [("my/qa", "v1")]
    assert "f1" in json.loads(out)["metrics"]  # evaluated on the validation split


# -- --dataset with the real `datasets` package: a local dataset folder, read offline -------------

@pytest.fixture()
def real_hub_folder(monkeypatch, tmp_path):
    """A dataset folder as `datasets.load_dataset` reads one (a local clone of a hub repository):
    train.jsonl and validation.jsonl of SQuAD rows with remapped columns; `datasets`' cache goes
    under tmp_path. Skipped without the optional extra."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    rows = remapped_rows(write_tiny_squad(tmp_path / "d.json", copies=2))
    folder = tmp_path / "hubqa"
    folder.mkdir()
    for split, part in (("train", rows), ("validation", rows[:3])):
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
    return folder


def test_real_datasets_rows_read_as_the_same_file_does(real_hub_folder):
    from gpt2qa.readers import load_examples

    columns = DataFormat(id_column="key", question_column="q", context_column="passage",
                         answer_column="gold")
    train, dev = load_hub_dataset(str(real_hub_folder), reading=columns)
    assert train.examples == load_examples(real_hub_folder / "train.jsonl",
                                           reading=columns).examples
    assert dev is not None and dev.examples == train.examples[:3]
    assert train.is_v2 and any(e.is_impossible for e in train.examples)
    with pytest.raises(DataError, match=r"^hub:.*/hubqa/train: row 0: missing column 'id' "
                                  r"\(--id-column names another\)$"):
        load_hub_dataset(str(real_hub_folder))  # run_qa's default columns are not there
    with pytest.raises(GPT2QAError, match=r"--dataset nobody/no-such-set: could not load "
                                          r"nobody/no-such-set from the hub \("):
        load_hub_dataset("nobody/no-such-set")


def test_train_on_a_real_datasets_folder(capsys, tmp_path, tiny_tokenizer, real_hub_folder):
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    code, out, err = run(capsys, "train", "--model", str(init), "--dataset",
                         str(real_hub_folder), "--output-dir", str(tmp_path / "run"), *SHAPE,
                         "--batch-size", "2", "--max-steps", "1", "--no-progress", *COLUMNS)
    assert code == 0, err
    assert "f1" in json.loads(out)["metrics"]
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert sorted(predictions) == ["q1-0", "q2-0", "q3-0"]  # the validation split's ids
    card = (tmp_path / "run" / "model" / "README.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in card  # a local folder is named by its base name
    assert "| dataset file | `hubqa/train.jsonl` (sha256 `" in card
    assert "datasets:" not in card  # the front matter lists hub ids only
