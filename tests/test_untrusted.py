"""Untrusted files and text: every bad input is one line (exit 2) or a 4xx, never a
traceback, and a poisoned item never reaches the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import builders
from gpt2qa.data import load_squad
from gpt2qa.errors import DataError, GPT2QAError
from helpers import one_line_error, run


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    from gpt2qa.checkpoint import save_model
    from helpers import tiny_model

    return save_model(tiny_model(tiny_tokenizer), tiny_tokenizer,
                      tmp_path_factory.mktemp("untrusted") / "model")


def copy_model(model_dir: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(model_dir, to))


# -- lone surrogates and undecodable bytes (item 6) --------------------------------------------

def poisoned_squad(tmp_path: Path, field: str = "question") -> Path:
    data = builders.squad_v2_dict()
    qa = data["data"][0]["paragraphs"][0]["qas"][1]
    qa[field] = "Who designed \ud800 it?"
    path = tmp_path / "poisoned.json"
    path.write_text(json.dumps(data), encoding="utf-8")  # ensure_ascii: a "\ud800" escape
    return path


def test_load_squad_names_file_json_path_and_id_of_a_lone_surrogate(tmp_path: Path,
                                                                    squad_v2_dict) -> None:
    path = poisoned_squad(tmp_path)
    with pytest.raises(DataError) as info:
        load_squad(path)
    message = str(info.value)
    assert "data[0].paragraphs[0].qas[1].question" in message
    assert "id=q2" in message and "U+D800" in message and str(path) in message
    # A correctly paired escape (an emoji written as two escapes) is fine.
    data = squad_v2_dict()
    data["data"][0]["paragraphs"][0]["qas"][0]["question"] = "When \U0001f389 was it completed?"
    (tmp_path / "ok.json").write_text(json.dumps(data), encoding="utf-8")
    assert len(load_squad(tmp_path / "ok.json").examples) == 3


def test_check_spans_and_predict_refuse_a_poisoned_file(capsys, tmp_path: Path,
                                                        model_dir: Path) -> None:
    path = poisoned_squad(tmp_path, "question")
    err = one_line_error(*run(capsys, "check-spans", str(path), "--tokenizer",
                              str(model_dir))[::2])
    assert "qas[1].question" in err and "id=q2" in err
    err = one_line_error(*run(capsys, "predict", "--model", str(model_dir), "--data", str(path),
                              "--out-dir", str(tmp_path / "out"))[::2])
    assert "qas[1].question" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--question", "when\udcff?", "--question: undecodable byte 0xff at character 4"),
    ("--context", "It was \ud800 1889.", "--context: lone UTF-16 surrogate U+D800"),
])
def test_predict_refuses_undecodable_argument_text(capsys, model_dir: Path, flag: str,
                                                   value: str, needle: str) -> None:
    argv = {"--question": "When?", "--context": "It was 1889."}
    argv[flag] = value
    code, _, err = run(capsys, "predict", "--model", str(model_dir),
                       *[x for kv in argv.items() for x in kv])
    assert needle in one_line_error(code, err)


# -- over HTTP (items 6 and 10) -----------------------------------------------------------------

@pytest.fixture()
def client(model_dir: Path) -> Any:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.serve import create_app

    class Counting(QAPipeline):
        calls = 0

        def predict(self, examples, batch_size=0, null_score_diff_threshold=None):  # type: ignore[override]
            type(self).calls += 1
            return super().predict(examples, batch_size, null_score_diff_threshold)

    base = QAPipeline.from_pretrained(model_dir, device="cpu")
    pipe = Counting(base.model, base.tokenizer, base.special_ids, base.precision)
    with TestClient(create_app(pipe)) as test_client:
        test_client.pipe = pipe
        yield test_client


GOOD = {"question": "When was it completed?", "context": "It was completed in 1889."}


def post(client: Any, path: str, raw: bytes) -> Any:
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def test_lone_surrogates_are_422_and_never_reach_a_batch(client: Any) -> None:
    raw = b'{"question": "when \\ud800?", "context": "It was completed in 1889."}'
    r = post(client, "/v1/answer", raw)
    assert r.status_code == 422
    assert "question" in r.json()["detail"] and "U+D800" in r.json()["detail"]
    batch = (b'{"items": [' + json.dumps(GOOD).encode() + b', {"question": "a?", '
             b'"context": "b \\udcff c"}]}')
    r = post(client, "/v1/answer/batch", batch)
    assert r.status_code == 422
    assert "items[1].context" in r.json()["detail"]
    assert client.pipe.calls == 0  # refused by the schema: no model call at all
    assert client.post("/v1/answer", json=GOOD).status_code == 200


@pytest.mark.parametrize(("raw", "needle"), [
    (b'{"question": "caf\xe9?", "context": "x y"}', "not valid UTF-8 at byte 17"),
    (b'{"question": "\xed\xa0\x80", "context": "x y"}', "not valid UTF-8"),  # encoded surrogate
    (b"[" * 5000 + b"]" * 5000, "nested more than 256 levels deep"),
])
def test_undecodable_and_over_deep_bodies_get_the_422_format(client: Any, raw: bytes,
                                                             needle: str) -> None:
    r = post(client, "/v1/answer", raw)
    assert r.status_code == 422
    body = r.json()
    assert body["detail"].startswith("invalid request: body: malformed JSON")
    assert needle in body["detail"] and body["errors"][0]["loc"] == "body"


def test_a_body_with_a_bom_is_accepted(client: Any) -> None:
    r = post(client, "/v1/answer", b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    assert r.status_code == 200


# -- predictions and na-prob files (items 8 and 10) ---------------------------------------------

def test_bom_is_accepted_in_predictions_as_in_squad_files(capsys, squad_v2_file: Path,
                                                          tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    data = tmp_path / "bom-data.json"
    data.write_bytes(bom + squad_v2_file.read_bytes())
    preds = tmp_path / "p.json"
    preds.write_bytes(bom + json.dumps({"q1": "1889", "q2": "", "q3": "novels"}).encode())
    na = tmp_path / "na.json"
    na.write_bytes(bom + json.dumps({"q1": 0.1, "q2": 0.9, "q3": 0.2}).encode())
    code, out, _ = run(capsys, "evaluate", str(data), str(preds), "--na-prob-file", str(na))
    assert code == 0 and json.loads(out)["exact"] == 100.0


@pytest.mark.parametrize("which", ["predictions", "na-prob"])
def test_deeply_nested_files_are_one_line(capsys, squad_v2_file: Path, tmp_path: Path,
                                          which: str) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"q1": ' + "[" * 100_000 + "]" * 100_000 + "}")
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"q1": "1889"}))
    argv = ([str(deep)] if which == "predictions"
            else [str(preds), "--na-prob-file", str(deep)])
    code, _, err = run(capsys, "evaluate", str(squad_v2_file), *argv)
    assert "deep.json: not valid JSON: nested too deeply" in one_line_error(code, err)


# -- output paths (item 8) ----------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "target", "needle"), [
    ("--out-file", "dir", "is a directory"),
    ("--out-file", "file/m.json", "is a file, not a directory"),
    ("--out-image-dir", "file", "is a file, not a directory"),
    ("--out-image-dir", "file/img", "is a file, not a directory"),
])
def test_evaluate_output_paths_are_checked(capsys, squad_v2_file: Path, tmp_path: Path,
                                           flag: str, target: str, needle: str) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("mine")
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"q1": "1889"}))
    na = tmp_path / "na.json"
    na.write_text(json.dumps({"q1": 0.5}))
    code, _, err = run(capsys, "evaluate", str(squad_v2_file), str(preds), "--na-prob-file",
                       str(na), flag, str(tmp_path / target))
    err = one_line_error(code, err)
    assert flag in err and needle in err
    assert (tmp_path / "file").read_text() == "mine"


def test_predict_out_dir_that_is_a_file(capsys, squad_v2_file: Path, tmp_path: Path,
                                        model_dir: Path) -> None:
    (tmp_path / "file").write_text("mine")
    code, _, err = run(capsys, "predict", "--model", str(model_dir), "--data", str(squad_v2_file),
                       "--out-dir", str(tmp_path / "file"))
    assert "--out-dir" in one_line_error(code, err)
    assert (tmp_path / "file").read_text() == "mine"


# -- damaged model directories (item 8) and empty tokenizers (item 9) ---------------------------

def truncate_weights(d: Path) -> None:
    weights = d / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def wrong_width(d: Path) -> None:
    config = json.loads((d / "config.json").read_text())
    config["n_embd"] = 64
    (d / "config.json").write_text(json.dumps(config))


def no_tokenizer(d: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                 "special_tokens_map.json"):
        (d / name).unlink(missing_ok=True)


@pytest.mark.parametrize(("damage", "needle"), [
    (truncate_weights, "model.safetensors: not a readable safetensors file"),
    (wrong_width, "weights do not match"),
    (no_tokenizer, "no tokenizer files"),
])
def test_damaged_model_dir_is_one_line(capsys, tmp_path: Path, model_dir: Path, damage: Any,
                                       needle: str) -> None:
    from gpt2qa.checkpoint import load_model

    broken = copy_model(model_dir, tmp_path / "model")
    damage(broken)
    with pytest.raises(GPT2QAError, match=needle):
        load_model(broken)
    code, _, err = run(capsys, "predict", "--model", str(broken), "--question", "When?",
                       "--context", "It was 1889.")
    assert needle in one_line_error(code, err)


def test_a_tokenizer_without_tokens_is_refused(capsys, tmp_path: Path,
                                               squad_v2_file: Path) -> None:
    from transformers import GPT2TokenizerFast

    from gpt2qa.tokenizer import load_tokenizer

    (tmp_path / "vocab.json").write_text('{"a": 0}')
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    # transformers 5 builds this without a word; it maps every text to [].
    empty = GPT2TokenizerFast(vocab_file=str(tmp_path / "vocab.json"),
                              merges_file=str(tmp_path / "merges.txt"))
    empty.save_pretrained(tmp_path / "tok")
    with pytest.raises(GPT2QAError, match="maps text to no tokens"):
        load_tokenizer(tmp_path / "tok")
    code, _, err = run(capsys, "check-spans", str(squad_v2_file), "--tokenizer",
                       str(tmp_path / "tok"))
    assert "maps text to no tokens" in one_line_error(code, err)


# -- id mismatch (newcomer) ---------------------------------------------------------------------

def test_evaluate_warns_when_most_ids_do_not_match(capsys, squad_v2_file: Path,
                                                   tmp_path: Path) -> None:
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"other1": "x", "other2": "", "q1": "1889"}))
    code, out, err = run(capsys, "evaluate", str(squad_v2_file), str(preds))
    assert code == 0 and json.loads(out)["missing"] == 2
    assert "warning: only 1 of the 3 questions" in err and "2 predictions are for other ids" in err
    assert len(err.strip().splitlines()) == 1
    preds.write_text(json.dumps({"q1": "1889", "q2": ""}))
    code, _, err = run(capsys, "evaluate", str(squad_v2_file), str(preds))
    assert code == 0 and err == ""


@pytest.mark.parametrize("command", ["report", "study"])
def test_report_and_study_out_that_is_a_file(capsys, tmp_path: Path, command: str) -> None:
    (tmp_path / "file").write_text("mine")
    argv = (["report", str(tmp_path), "--out", str(tmp_path / "file")] if command == "report"
            else ["study", "--config", "configs/study-synthetic.yaml", "--out-dir",
                  str(tmp_path / "file")])
    if command == "study" and not Path("configs/study-synthetic.yaml").is_file():
        pytest.skip("run from the repository root")
    code, _, err = run(capsys, *argv)
    assert "is a file, not a directory" in one_line_error(code, err)
    assert (tmp_path / "file").read_text() == "mine"
