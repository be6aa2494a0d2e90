"""W3-2, the second adversarial pass: special files are written through and never replaced,
the demo never overwrites a user's files, a folder asking for remote code is refused before
transformers sees it, over-long integers and bad devices are one line; HotpotQA predictions
are read as SQuAD's are, a model folder is checked at load (gpt2qa.json types and ranges, its
positions, finite weights and thresholds), a damaged checkpoint state is skipped, and no NaN
is written into JSON."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from gpt2qa.errors import GPT2QAError
from helpers import one_line_error, run, write_tiny_squad

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}




def write_preds(tmp_path: Path) -> Path:
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"q1": "1889", "q2": "", "q3": "poems"}))
    return preds


# -- item 1: special files and symlinks as --out-file -----------------------------------------

def test_evaluate_out_file_writes_through_a_fifo(capsys, squad_v2_file: Path,
                                                 tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as fh:  # blocks until the writer opens it
            received.append(fh.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    code, out, err = run(capsys, "evaluate", str(squad_v2_file), str(write_preds(tmp_path)),
                         "--out-file", str(fifo))
    thread.join(timeout=20)
    assert code == 0, err
    assert not thread.is_alive() and received, "the FIFO's reader got nothing"
    assert json.loads(received[0]) == json.loads(out)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not a regular file


def test_evaluate_out_file_follows_a_symlink(capsys, squad_v2_file: Path, tmp_path: Path) -> None:
    real = tmp_path / "real" / "metrics.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(Path("real") / "metrics.json")  # relative, as `ln -s` makes it
    code, out, err = run(capsys, "evaluate", str(squad_v2_file), str(write_preds(tmp_path)),
                         "--out-file", str(link))
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "metrics.json")
    assert json.loads(real.read_text()) == json.loads(out)
    assert sorted(p.name for p in real.parent.iterdir()) == ["metrics.json"]  # no temp left


def test_evaluate_out_file_through_a_dangling_symlink(capsys, squad_v2_file: Path,
                                                      tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "new.json")
    code, out, err = run(capsys, "evaluate", str(squad_v2_file), str(write_preds(tmp_path)),
                         "--out-file", str(link))
    assert code == 0, err
    assert link.is_symlink() and json.loads((tmp_path / "new.json").read_text()) == json.loads(out)
    # A link into a folder that does not exist is one line, before any work.
    bad = tmp_path / "bad.json"
    bad.symlink_to(tmp_path / "absent" / "x.json")
    code, _, err = run(capsys, "evaluate", str(squad_v2_file), str(write_preds(tmp_path)),
                       "--out-file", str(bad))
    assert "--out-file" in one_line_error(code, err) and "does not exist" in err
    assert not (tmp_path / "absent").exists()


def test_evaluate_out_file_writes_through_a_char_device(capsys, squad_v2_file: Path,
                                                        tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    node = tmp_path / "mynull"
    null = os.stat("/dev/null").st_rdev
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(os.major(null), os.minor(null)))
    except PermissionError:
        pytest.skip("this container may not make device nodes")
    code, out, err = run(capsys, "evaluate", str(squad_v2_file), str(write_preds(tmp_path)),
                         "--out-file", str(node))
    assert code == 0, err
    st = os.lstat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == null  # still the device
    assert json.loads(out)["total"] == 3


def test_a_link_to_an_open_descriptor_is_written_through(tmp_path: Path) -> None:
    """/dev/stdout and `ln -s /proc/self/fd/1 out`: the descriptor's file gets the data."""
    from gpt2qa.io import write_json_atomic

    read_end, write_end = os.pipe()
    try:
        link = tmp_path / "out_link"
        link.symlink_to(f"/proc/self/fd/{write_end}")
        write_json_atomic(link, {"a": 1})
        os.set_blocking(read_end, False)
        try:
            got = os.read(read_end, 1 << 16)
        except BlockingIOError:
            got = b""
        assert got and json.loads(got) == {"a": 1}
        assert link.is_symlink()
    finally:
        os.close(read_end)
        os.close(write_end)
    # A descriptor open on a regular file (stdout redirected to a file): same inode, appended.
    target = tmp_path / "stdout.txt"
    with open(target, "w") as fh:
        fh.write("before\n")
        fh.flush()
        inode = os.stat(target).st_ino
        link2 = tmp_path / "out_link2"
        link2.symlink_to(f"/proc/self/fd/{fh.fileno()}")
        write_json_atomic(link2, {"b": 2})
    assert os.stat(target).st_ino == inode
    assert target.read_text().startswith("before\n{")


def test_check_output_file_accepts_special_files_and_refuses_what_cannot_be_written(
        tmp_path: Path) -> None:
    from gpt2qa.io import check_output_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "real.json")
    (tmp_path / "dangling").symlink_to(tmp_path / "new.json")
    for ok in (fifo, tmp_path / "link", tmp_path / "dangling", tmp_path / "fresh.json"):
        check_output_file(ok, "--out-file")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(GPT2QAError, match="--out-file .*loop: cannot follow"):
        check_output_file(tmp_path / "loop", "--out-file")
    (tmp_path / "into_absent").symlink_to(tmp_path / "absent" / "x.json")
    with pytest.raises(GPT2QAError, match="folder does not exist"):
        check_output_file(tmp_path / "into_absent", "--out-file")


def test_atomic_dir_through_a_symlink_replaces_the_directory_and_keeps_the_link(
        tmp_path: Path) -> None:
    from gpt2qa.io import atomic_dir

    real = tmp_path / "real"
    real.mkdir()
    (real / "old.txt").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with atomic_dir(link) as tmp:
        (tmp / "new.txt").write_text("new")
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["new.txt"]


# -- item 2: the demo never overwrites a user's files -----------------------------------------

@pytest.mark.parametrize("task", ["squad", "hotpot"])
def test_demo_refuses_a_folder_of_the_users_and_leaves_it_alone(capsys, tmp_path: Path,
                                                                task: str) -> None:
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "data" / "train.json").write_text("my own data")
    # Tiny settings bound the damage of a demo that would (wrongly) start.
    code, _, err = run(capsys, "demo", "--task", task, "--out-dir", str(out), "--steps", "1",
                       "--n-train", "20", "--n-dev", "10", "--n-layer", "1", "--n-embd", "16",
                       "--n-head", "1")
    assert "mine" in one_line_error(code, err) and "--out-dir" in err
    assert (out / "data" / "train.json").read_text() == "my own data"
    assert sorted(p.name for p in out.rglob("*")) == ["data", "train.json"]  # nothing added


def test_demo_dir_guard_accepts_new_empty_and_marked_folders(tmp_path: Path) -> None:
    from gpt2qa.rundir import DEMO_MARKER, claim_demo_dir

    claim_demo_dir(tmp_path / "new")  # created, and marked first thing
    assert (tmp_path / "new" / DEMO_MARKER).is_file()
    (tmp_path / "empty").mkdir()
    claim_demo_dir(tmp_path / "empty")
    assert (tmp_path / "empty" / DEMO_MARKER).is_file()
    marked = tmp_path / "new"
    (marked / "data").mkdir()
    (marked / "data" / "train.json").write_text("a demo's data")
    claim_demo_dir(marked)  # a folder a demo wrote is the demo's to rewrite
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "demo_metrics.json").write_text("{}")
    with pytest.raises(GPT2QAError, match="did not write .*demo_metrics.json"):
        claim_demo_dir(tmp_path / "user")
    assert not (tmp_path / "user" / DEMO_MARKER).exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(GPT2QAError, match="not a directory"):
        claim_demo_dir(tmp_path / "file")


# -- item 4: a folder that asks for remote code ------------------------------------------------

def hostile_folder(root: Path, tokenizer: Any, where: str = "config.json") -> tuple[Path, Path]:
    """A model folder whose `where` maps AutoConfig to its own configuration_evil.py, which
    creates a marker file on import; everything else a gpt2qa model folder needs is there."""
    folder = root / "evil"
    folder.mkdir()
    tokenizer.save_pretrained(folder)
    marker = root / "PWNED"
    (folder / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n\n\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    config = {"model_type": "evil"}
    if where == "config.json":
        config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    else:
        tok_config = json.loads((folder / where).read_text())
        tok_config["auto_map"] = {"AutoTokenizer": ["configuration_evil.EvilConfig", None]}
        (folder / where).write_text(json.dumps(tok_config))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "gpt2qa.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"never read")
    return folder, marker


def gpt2qa_cli(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2qa", *args], env=ENV, capture_output=True,
                          text=True, timeout=60, **kw)


def test_predict_with_a_hostile_folder_and_no_terminal_is_one_line(tmp_path: Path,
                                                                    tiny_tokenizer: Any) -> None:
    folder, marker = hostile_folder(tmp_path, tiny_tokenizer)
    done = gpt2qa_cli("predict", "--model", str(folder), "--question", "q", "--context", "c",
                      stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "auto_map" in done.stderr and "config.json" in done.stderr
    assert "Do you wish" not in done.stdout + done.stderr
    assert not marker.exists()


def test_train_with_a_hostile_folder_runs_nothing_even_after_a_yes(tmp_path: Path,
                                                                   tiny_tokenizer: Any) -> None:
    """A user who would answer "y" to transformers' prompt: no prompt, no code."""
    folder, marker = hostile_folder(tmp_path, tiny_tokenizer)
    squad = write_tiny_squad(tmp_path / "train.json")
    done = gpt2qa_cli("train", "--model", str(folder), "--train-file", str(squad),
                      "--eval-file", str(squad), "--output-dir", str(tmp_path / "run"),
                      "--max-steps", "1", input="y\ny\ny\n")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "auto_map" in done.stderr and "Do you wish" not in done.stdout + done.stderr
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_auto_map_in_tokenizer_config_is_refused_in_process(capsys, tmp_path: Path,
                                                            tiny_tokenizer: Any) -> None:
    folder, marker = hostile_folder(tmp_path, tiny_tokenizer, where="tokenizer_config.json")
    code, _, err = run(capsys, "check-spans", str(write_tiny_squad(tmp_path / "d.json")),
                       "--tokenizer", str(folder))
    assert "tokenizer_config.json: auto_map" in one_line_error(code, err)
    assert not marker.exists()


def test_every_hub_load_is_told_not_to_trust_remote_code(tmp_path: Path) -> None:
    from gpt2qa.tokenizer import hub_kwargs

    assert hub_kwargs(str(tmp_path))["trust_remote_code"] is False
    assert hub_kwargs("some-org/some-model")["trust_remote_code"] is False


# -- item 5: integers over Python's 4,300-digit limit ------------------------------------------

BIG = "9" * 5000


@pytest.mark.parametrize("which", ["hotpot data", "squad data", "predictions", "na-prob"])
def test_an_over_long_integer_in_evaluate_files_is_one_line(capsys, squad_v2_file: Path,
                                                            tmp_path: Path, which: str) -> None:
    big = tmp_path / "big.json"
    preds, na = write_preds(tmp_path), tmp_path / "na.json"
    na.write_text(json.dumps({"q1": 0.1, "q2": 0.9, "q3": 0.6}))
    data = squad_v2_file
    if which == "hotpot data":  # the reproduction: `gpt2qa evaluate big.json big.json`
        big.write_text('[{"_id":"a","n":' + BIG + "}]")
        data = preds = big
    elif which == "squad data":
        big.write_text('{"version": "v2.0", "note": "9999",\n "data": [], "n": ' + BIG + "}")
        data = big
    elif which == "predictions":
        big.write_text('{"q1": ' + BIG + "}")
        preds = big
    else:
        big.write_text('{"q1": 0.5, "q2": ' + BIG + "}")
        na = big
    na_flag = [] if which == "hotpot data" else ["--na-prob-file", str(na)]
    code, _, err = run(capsys, "evaluate", str(data), str(preds), *na_flag)
    assert "big.json" in one_line_error(code, err) and "5000 digits" in err
    if which == "squad data":  # digits inside a string do not count; the position is exact
        assert "line 2 column 19" in err


def test_an_over_long_integer_in_hotpot_predictions_and_gpt2qa_json(tmp_path: Path) -> None:
    from gpt2qa.config import QAConfig
    from gpt2qa.tasks.hotpotqa.metrics import read_hotpot_predictions

    big = tmp_path / "preds.json"
    big.write_text('{"answer": {"a": ' + BIG + '}, "sp": {}}')
    with pytest.raises(GPT2QAError, match="preds.json: invalid JSON at line 1 column 18"):
        read_hotpot_predictions(big)
    (tmp_path / "gpt2qa.json").write_text('{"max_seq_length": ' + BIG + "}")
    with pytest.raises(GPT2QAError, match="gpt2qa.json: .*5000 digits"):
        QAConfig.load(tmp_path)


def test_the_server_answers_an_over_long_integer_with_its_422(tmp_path: Path,
                                                              tiny_tokenizer: Any) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from gpt2qa.checkpoint import save_model
    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.serve import create_app
    from helpers import tiny_model

    model_dir = save_model(tiny_model(tiny_tokenizer), tiny_tokenizer, tmp_path / "model")
    with TestClient(create_app(QAPipeline.from_pretrained(model_dir, device="cpu"))) as client:
        raw = ('{"question": "q?", "context": "' + "1" * 5000 + '", "top_k": ' + BIG + "}")
        r = client.post("/v1/answer", content=raw.encode(),
                        headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["detail"].startswith("invalid request: body: malformed JSON at character")
        assert "5000 digits" in body["detail"] and body["errors"][0]["loc"] == "body"
        # Digits inside strings are text, not numbers: this one is answered.
        ok = {"question": "q?", "context": "It was " + "1" * 5000 + " years."}
        assert client.post("/v1/answer", json=ok).status_code == 200


# -- item 14: --device values this machine cannot run on ---------------------------------------

@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    from gpt2qa.checkpoint import save_model
    from helpers import tiny_model

    return save_model(tiny_model(tiny_tokenizer), tiny_tokenizer,
                      tmp_path_factory.mktemp("device") / "model")


def unusable_devices() -> list[str]:
    import torch

    bad = ["foo", "meta", f"cuda:{max(torch.cuda.device_count(), 7)}"]
    if not torch.cuda.is_available():
        bad.append("cuda")
    return bad


@pytest.mark.parametrize("device", unusable_devices())
def test_predict_with_a_device_this_machine_lacks_is_one_line(capsys, small_model_dir: Path,
                                                              device: str) -> None:
    code, _, err = run(capsys, "predict", "--model", str(small_model_dir), "--question", "q?",
                       "--context", "It was completed in 1889.", "--device", device)
    assert f"--device {device}" in one_line_error(code, err).replace("'", "")
    assert "available here: cpu" in err


@pytest.mark.parametrize("device", unusable_devices())
def test_from_pretrained_with_a_device_this_machine_lacks_is_a_gpt2qa_error(
        small_model_dir: Path, device: str) -> None:
    from gpt2qa.pipeline import QAPipeline

    with pytest.raises(GPT2QAError, match=f"--device '?{device}'?: .*available here: cpu"):
        QAPipeline.from_pretrained(small_model_dir, device=device)


def test_usable_devices_still_load(small_model_dir: Path) -> None:
    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.runtime import pick_device

    assert pick_device("cpu").type == "cpu" and pick_device("cpu:0").type == "cpu"
    qa = QAPipeline.from_pretrained(small_model_dir, device="cpu")
    assert set(qa(question="When?", context="It was completed in 1889.")) >= {"answer", "score"}


# -- items 6 and 20: HotpotQA predictions read as the data files are ---------------------------

HOTPOT_ITEM = {"_id": "h1", "question": "Where was the founder of Tavrik born?",
               "answer": "Quellton", "type": "bridge", "level": "easy",
               "supporting_facts": [["Tavrik", 0], ["Quell Mebbit", 1]],
               "context": [["Tavrik", ["Tavrik was founded by Quell Mebbit."]],
                           ["Quell Mebbit", ["Quell Mebbit was a trader.",
                                             " He was born in Quellton."]]]}


def write_hotpot(tmp_path: Path) -> Path:
    data = tmp_path / "hotpot.json"
    data.write_text(json.dumps([HOTPOT_ITEM, {**HOTPOT_ITEM, "_id": "h2"}]))
    return data


def test_a_deeply_nested_hotpot_predictions_file_is_one_line(capsys, tmp_path: Path) -> None:
    deep = tmp_path / "preds.json"
    deep.write_text('{"answer": {"h1": ' + "[" * 100_000 + "]" * 100_000 + '}, "sp": {}}')
    code, _, err = run(capsys, "evaluate", str(write_hotpot(tmp_path)), str(deep))
    assert "preds.json: invalid JSON: nested too deeply" in one_line_error(code, err)
    # Bad UTF-8 is one line too, with the byte, as in a data file.
    deep.write_bytes(b'{"answer": {"h1": "\xff"}, "sp": {}}')
    code, _, err = run(capsys, "evaluate", str(write_hotpot(tmp_path)), str(deep))
    assert "preds.json: not valid UTF-8 at byte 19" in one_line_error(code, err)


def test_hotpot_evaluate_refuses_an_id_listed_twice(capsys, tmp_path: Path) -> None:
    preds = tmp_path / "preds.json"
    facts = '[["Tavrik", 0], ["Quell Mebbit", 1]]'
    preds.write_text('{"answer": {"h1": "Quellton", "h2": "x", "h1": "wrong"}, '
                     f'"sp": {{"h1": {facts}, "h2": {facts}}}}}')
    code, _, err = run(capsys, "evaluate", str(write_hotpot(tmp_path)), str(preds))
    assert "preds.json: answer.h1: id=h1: the predictions file lists this id twice" in \
        one_line_error(code, err)
    preds.write_text('{"answer": {"h1": "Quellton", "h2": "x"}, '
                     f'"sp": {{"h2": {facts}, "h2": []}}}}')
    code, _, err = run(capsys, "evaluate", str(write_hotpot(tmp_path)), str(preds))
    assert "sp.h2: id=h2: the predictions file lists this id twice" in one_line_error(code, err)


def test_hotpot_evaluate_warns_when_no_id_matches(capsys, tmp_path: Path) -> None:
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"answer": {"other1": "x", "other2": "y"},
                                 "sp": {"other1": [], "other2": []}}))
    code, out, err = run(capsys, "evaluate", str(write_hotpot(tmp_path)), str(preds))
    assert code == 0, err
    assert json.loads(out)["missing_answer"] == 2
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "only 0 of the 2 questions" in warning[0], err
    assert "2 predictions are for other ids" in warning[0]
    # Matching ids: no warning.
    preds.write_text(json.dumps({"answer": {"h1": "Quellton", "h2": "Quellton"},
                                 "sp": {"h1": [], "h2": []}}))
    code, out, err = run(capsys, "evaluate", str(write_hotpot(tmp_path)), str(preds))
    assert code == 0 and "warning" not in err and json.loads(out)["em"] == 1.0


def test_hotpot_evaluate_accepts_a_bom_as_squad_does(capsys, tmp_path: Path) -> None:
    data = write_hotpot(tmp_path)
    plain, bommed = tmp_path / "plain.json", tmp_path / "bom.json"
    body = json.dumps({"answer": {"h1": "Quellton", "h2": "no"},
                       "sp": {"h1": [["Tavrik", 0], ["Quell Mebbit", 1]], "h2": []}})
    plain.write_text(body)
    bommed.write_bytes(b"\xef\xbb\xbf" + body.encode())
    code, expected, err = run(capsys, "evaluate", str(data), str(plain))
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", str(data), str(bommed))
    assert code == 0, err
    assert json.loads(out) == json.loads(expected) and json.loads(out)["sp_em"] == 0.5


# -- item 7: gpt2qa.json values of the wrong type, range or encoding ----------------------------

def copy_model(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for path in src.iterdir():
        (dest / path.name).write_bytes(path.read_bytes())
    return dest


def edit_qa_json(model_dir: Path, **changes: Any) -> None:
    path = model_dir / "gpt2qa.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def predict(capsys, model_dir: Path, context: str = "It was completed in 1889.") -> tuple:
    return run(capsys, "predict", "--model", str(model_dir), "--question", "When?",
               "--context", context)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("max_query_length", 16.0, "max_query_length must be a whole number, got 16.0"),
    ("n_best_size", 2.5, "n_best_size must be a whole number, got 2.5"),
    ("max_seq_length", 64.5, "max_seq_length must be a whole number, got 64.5"),
    ("doc_stride", 16.5, "doc_stride must be a whole number, got 16.5"),
    ("lstm_hidden_size", 8.5, "lstm_hidden_size must be a whole number, got 8.5"),
    ("lstm_hidden_size", 1e7, "lstm_hidden_size must be a whole number, got 10000000.0"),
    ("lstm_hidden_size", 10_000_000, "lstm_hidden_size must be in [0, 8192]"),
    ("max_answer_length", True, "max_answer_length must be a whole number, got true"),
    ("null_score_diff_threshold", "0.5", 'null_score_diff_threshold must be a finite number, '
                                        'got "0.5"'),
])
def test_gpt2qa_json_values_of_the_wrong_type_or_range_are_one_line_at_load(
        capsys, small_model_dir: Path, tmp_path: Path, field: str, value: Any,
        needle: str) -> None:
    model_dir = copy_model(small_model_dir, tmp_path / "m")
    edit_qa_json(model_dir, **{field: value})
    code, _, err = predict(capsys, model_dir)
    assert f"{model_dir / 'gpt2qa.json'}: {needle}" in one_line_error(code, err)


def test_a_window_longer_than_the_models_positions_is_refused_at_load(
        capsys, small_model_dir: Path, tmp_path: Path) -> None:
    """It used to load, answer short questions, and fail on a long context (500 under serve)."""
    from gpt2qa.pipeline import QAPipeline

    model_dir = copy_model(small_model_dir, tmp_path / "m")
    edit_qa_json(model_dir, max_seq_length=256)  # the tiny model has 128 positions
    code, _, err = predict(capsys, model_dir)  # a short question: refused all the same
    assert (f"{model_dir / 'gpt2qa.json'}: max_seq_length 256 exceeds the model's 128 positions"
            in one_line_error(code, err))
    with pytest.raises(GPT2QAError, match="exceeds the model's 128 positions"):
        QAPipeline.from_pretrained(model_dir, device="cpu")


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"head": "bilstm\xff"}', "gpt2qa.json: not valid UTF-8 at byte 16"),
    (b'{"head": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "gpt2qa.json: invalid JSON: nested too deeply"),
], ids=["not-utf8", "nested"])
def test_a_non_utf8_or_deeply_nested_gpt2qa_json_is_one_line(capsys, small_model_dir: Path,
                                                             tmp_path: Path, content: bytes,
                                                             needle: str) -> None:
    model_dir = copy_model(small_model_dir, tmp_path / "m")
    (model_dir / "gpt2qa.json").write_bytes(content)
    code, _, err = predict(capsys, model_dir)
    assert needle in one_line_error(code, err)


# -- item 12: a damaged trainer_state.json or optimizer.pt on resume ----------------------------

@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    """A run folder with whole checkpoints at steps 2 and 4."""
    import torch

    from gpt2qa.checkpoint import save_checkpoint
    from helpers import tiny_model

    out = tmp_path_factory.mktemp("resume") / "run"
    model = tiny_model(tiny_tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    for step in (2, 4):
        state = {"step": step, "epoch": 1, "step_in_epoch": 1, "best_score": [0.5, 1.0],
                 "best_step": 2, "examples_seen": 2 * step}
        save_checkpoint(out, step, model, tiny_tokenizer, optimizer, scheduler, state, keep=5)
    return out


STATE_DAMAGE = {
    "best_score string": {"best_score": "x"},
    "step_in_epoch string": {"step_in_epoch": "x"},
    "epoch 1e30": {"epoch": 1e30},
    "epoch huge int": {"epoch": 10 ** 30},
    "step -100": {"step": -100},
    "step of another checkpoint": {"step": 3},
    "best_score NaN": {"best_score": [float("nan")]},
    "best_step beyond step": {"best_step": 99},
    "examples_seen bool": {"examples_seen": True},
}


def _damaged_copy(two_checkpoints: Path, tmp_path: Path) -> Path:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(two_checkpoints, run_dir)
    return run_dir


@pytest.mark.parametrize("damage", sorted(STATE_DAMAGE))
def test_a_damaged_trainer_state_is_skipped_for_the_next_older_checkpoint(
        two_checkpoints: Path, tmp_path: Path, damage: str) -> None:
    from gpt2qa.checkpoint import newest_intact_checkpoint

    run_dir = _damaged_copy(two_checkpoints, tmp_path)
    path = run_dir / "checkpoints" / "step-0000004" / "trainer_state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **STATE_DAMAGE[damage]}))
    warnings: list[str] = []
    found = newest_intact_checkpoint(run_dir, warn=warnings.append)
    assert found is not None and found.path.name == "step-0000002"
    assert len(warnings) == 1 and "skipping checkpoint step-0000004" in warnings[0]
    assert "trainer_state.json" in warnings[0] and "\n" not in warnings[0]


@pytest.mark.parametrize("what", ["bare tensor optimizer", "list scheduler"])
def test_an_optimizer_or_scheduler_file_of_the_wrong_shape_is_skipped(
        two_checkpoints: Path, tmp_path: Path, what: str) -> None:
    import torch

    from gpt2qa.checkpoint import newest_intact_checkpoint

    run_dir = _damaged_copy(two_checkpoints, tmp_path)
    checkpoint = run_dir / "checkpoints" / "step-0000004"
    if what == "bare tensor optimizer":
        torch.save(torch.zeros(3), checkpoint / "optimizer.pt")
    else:
        torch.save([1, 2], checkpoint / "scheduler.pt")
    warnings: list[str] = []
    found = newest_intact_checkpoint(run_dir, warn=warnings.append)
    assert found is not None and found.path.name == "step-0000002"
    name = "optimizer.pt" if "optimizer" in what else "scheduler.pt"
    assert len(warnings) == 1 and f"{name}: not a" in warnings[0]


def test_an_old_float_best_score_is_still_read() -> None:
    from gpt2qa.schedule import TrainState

    state = TrainState.from_json({"step": 4, "epoch": 1, "step_in_epoch": 1,
                                  "best_score": 0.75, "best_step": 4, "examples_seen": 8})
    assert state.best_score == [0.75]
    with pytest.raises(GPT2QAError, match="step must be a whole number >= 0, got -100"):
        TrainState.from_json({"step": -100})


def test_resume_with_a_negative_step_trains_no_extra_steps(capsys, tmp_path: Path,
                                                           tiny_tokenizer: Any) -> None:
    """`step: -100` used to train 135 steps; now the checkpoint is skipped with one line."""
    from gpt2qa.config import TrainConfig
    from gpt2qa.tasks import fine_tune
    from helpers import save_init_dir

    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    settings = dict(model=str(init), train_file=str(data), output_dir=str(tmp_path / "run"),
                    max_seq_length=64, doc_stride=16, max_query_length=16, batch_size=2,
                    lr=3e-3, log_every=1, progress=False, seed=7, max_steps=4, save_every=2,
                    keep_checkpoints=5)
    fine_tune(TrainConfig.of(**settings))
    path = tmp_path / "run" / "checkpoints" / "step-0000004" / "trainer_state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "step": -100}))
    capsys.readouterr()
    result = fine_tune(TrainConfig.of(**settings, resume=True))
    err = capsys.readouterr().err
    assert result.steps == 4
    warnings = [line for line in err.splitlines() if "skipping checkpoint" in line]
    assert len(warnings) == 1 and "step-0000004" in warnings[0] and "step" in warnings[0], err
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "run" / "log.jsonl").read_text().splitlines()
             if json.loads(line).get("event") == "train"]
    # Resumed after step 2 (the log keeps what came before it): two more steps, no more.
    assert steps == [1, 2, 3, 4], steps


# -- item 18: NaN or inf weights, and NaN in JSON ------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_model_with_non_finite_weights_is_refused_at_load(capsys, small_model_dir: Path,
                                                            tmp_path: Path, bad: float) -> None:
    from safetensors.torch import load_file, save_file

    model_dir = copy_model(small_model_dir, tmp_path / "m")
    weights = model_dir / "model.safetensors"
    state = load_file(str(weights))
    name = sorted(k for k in state if k.startswith("qa_outputs"))[0]
    state[name].view(-1)[0] = bad
    save_file(state, str(weights), metadata={"format": "pt"})
    code, out, err = predict(capsys, model_dir)
    assert f"{weights}: tensor {name} holds NaN or infinite values" in one_line_error(code, err)
    assert "NaN" not in out


def test_write_json_atomic_never_writes_nan(tmp_path: Path) -> None:
    from gpt2qa.io import write_json_atomic

    target = tmp_path / "m.json"
    target.write_text('{"old": 1}')
    with pytest.raises(GPT2QAError, match=r"m.json: not written: predictions\[1\].score is NaN"):
        write_json_atomic(target, {"predictions": [{"score": 1.0}, {"score": float("nan")}]})
    with pytest.raises(GPT2QAError, match="m.json: not written: f1 is NaN or infinite"):
        write_json_atomic(target, {"f1": float("-inf")})
    assert target.read_text() == '{"old": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary left
    write_json_atomic(target, {"f1": 0.5})
    assert json.loads(target.read_text()) == {"f1": 0.5}


# -- item 21: a non-finite sp_threshold ----------------------------------------------------------

@pytest.fixture(scope="module")
def hotpot_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    import torch

    from gpt2qa.checkpoint import save_model
    from gpt2qa.config import QAConfig
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config
    from gpt2qa.tasks.hotpotqa import HotpotTask

    torch.manual_seed(0)
    prepare_tokenizer(tiny_tokenizer)
    backbone = backbone_from_config(tiny_gpt2_config(len(tiny_tokenizer), n_layer=1, n_embd=16,
                                                     n_head=1, n_positions=128))
    qa = QAConfig.of(max_seq_length=96, max_query_length=24, task="hotpotqa",
                     task_state={"sp_threshold": 0.5})
    model = QAModel(backbone, qa, HotpotTask().heads)
    return save_model(model, tiny_tokenizer, tmp_path_factory.mktemp("hotpot") / "model")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_sp_threshold_is_one_line(capsys, hotpot_model_dir: Path, tmp_path: Path,
                                               bad: str) -> None:
    context = json.dumps(HOTPOT_ITEM["context"])
    # In gpt2qa.json's task_state: the line names the threshold.
    model_dir = copy_model(hotpot_model_dir, tmp_path / "m")
    qa_json = json.loads((model_dir / "gpt2qa.json").read_text())
    qa_json["task_state"] = {"sp_threshold": "BAD"}
    (model_dir / "gpt2qa.json").write_text(json.dumps(qa_json).replace('"BAD"', bad))
    code, _, err = predict(capsys, model_dir, context)
    assert "gpt2qa.json: task_state: sp_threshold must be a finite number" in \
        one_line_error(code, err)
    # In a directory from before the task field (hotpot.json): the line names that file.
    legacy = copy_model(hotpot_model_dir, tmp_path / "legacy")
    qa_json.pop("task")
    qa_json.pop("task_state")
    (legacy / "gpt2qa.json").write_text(json.dumps(qa_json))
    (legacy / "hotpot.json").write_text('{"task": "hotpotqa", "sp_threshold": ' + bad + "}")
    code, _, err = predict(capsys, legacy, context)
    assert f"{legacy / 'hotpot.json'}: sp_threshold must be a finite number" in \
        one_line_error(code, err)
    # A finite one still loads and predicts.
    (legacy / "hotpot.json").write_text('{"task": "hotpotqa", "sp_threshold": 0.4}')
    code, out, err = predict(capsys, legacy, context)
    assert code == 0, err
