"""Streamed predict (`gpt2qa predict --stream`, gpt2qa.stream): chunked, resumable after a
crash, shared by `gpt2qa launch -n 2`, and merged into the very bytes of the in-memory predict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2qa import tasks
from gpt2qa.batching import width_grouped_batches
from gpt2qa.checkpoint import save_model
from gpt2qa.cli.commands import _streamed
from gpt2qa.config import QAConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.io import json_object_writer, write_json_atomic
from gpt2qa.stream import cut_torn_line
from gpt2qa.synthetic import SyntheticConfig, generate
from helpers import one_line_error, run, tiny_model

QA = QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16)
FILES = ("predictions.json", "na_probs.json")
SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def write_flat_rows(squad: dict, path: Path) -> Path:
    """A SQuAD dict as JSON lines of flat rows (run_qa's columns), one question per line."""
    with path.open("w", encoding="utf-8") as fh:
        for article in squad["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    answers = {"text": [a["text"] for a in qa["answers"]],
                               "answer_start": [a["answer_start"] for a in qa["answers"]]}
                    row = {"id": qa["id"], "title": article["title"], "context": para["context"],
                           "question": qa["question"], "answers": answers}
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer):
    """A random tiny model; 40 synthetic questions (several windows each at 64 tokens) as a
    SQuAD file and as JSON lines; the in-memory predict's files of them."""
    tmp = tmp_path_factory.mktemp("stream")
    model = save_model(tiny_model(tiny_tokenizer, QA), tiny_tokenizer, tmp / "model")
    squad = generate(SyntheticConfig(n_passages=10, split="dev"))
    squad_file = tmp / "d.json"
    squad_file.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    lines = write_flat_rows(squad, tmp / "d.jsonl")
    return tmp, model, squad_file, lines


@pytest.fixture(scope="module")
def in_memory(setup):
    tmp, model, squad_file, _ = setup
    out = tmp / "in-memory"
    proc = subprocess.run([sys.executable, "-m", "gpt2qa", "predict", "--model", str(model),
                           "--data", str(squad_file), "--out-dir", str(out)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def contents(out: Path, names=FILES) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in names}


def test_width_grouped_batches_pad_by_own_length():
    assert width_grouped_batches([5, 12, 9, 16], 4, 8) == [[3, 1, 2], [0]]
    assert width_grouped_batches([16, 16, 16], 2, 8) == [[0, 1], [2]]
    with pytest.raises(GPT2QAError):
        width_grouped_batches([3], 0, 8)


@pytest.mark.parametrize("obj", [{}, {"a": 1.5}, {"q1": "1889", "é 🎉": "", "x\ny": 0.1},
                                 {"q": [{"text": "a", "score": -1.25, "start": 0, "end": 1}],
                                  "r": []}])
def test_json_object_writer_writes_the_bytes_of_write_json_atomic(tmp_path, obj):
    write_json_atomic(tmp_path / "whole.json", obj)
    with json_object_writer(tmp_path / "members.json") as add:
        for key, value in obj.items():
            add(key, value)
    assert (tmp_path / "members.json").read_bytes() == (tmp_path / "whole.json").read_bytes()


def test_json_object_writer_refuses_nan_and_leaves_no_file(tmp_path):
    with pytest.raises(GPT2QAError, match=r"q2\[0\]"):
        with json_object_writer(tmp_path / "p.json") as add:
            add("q1", 0.5)
            add("q2", [float("nan")])
    assert list(tmp_path.iterdir()) == []


def test_streamed_predict_writes_the_in_memory_bytes(capsys, setup, in_memory):
    tmp, model, squad_file, lines = setup
    for data, out in ((lines, tmp / "s-lines"), (squad_file, tmp / "s-squad")):
        # 40 questions in chunks of 7: six chunks, the last one short.
        extra = [] if data.suffix == ".jsonl" else ["--stream"]
        code, stdout, err = run(capsys, "predict", "--model", str(model), "--data", str(data),
                                "--out-dir", str(out), "--chunk-size", "7", "--n-best", *extra)
        assert code == 0, err
        summary = json.loads(stdout)
        assert (summary["examples"], summary["written"], summary["resumed"]) == (40, 40, 0)
        assert contents(out, (*FILES, "nbest.json")) == contents(in_memory,
                                                                 (*FILES, "nbest.json"))
        records = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        assert [r["id"] for r in records] == list(json.loads(contents(in_memory)[FILES[0]]))
        assert set(records[0]) == {"id", "answer", "na_prob", "nbest"}


def test_restart_after_a_crash_gives_the_files_of_an_uninterrupted_run(capsys, setup,
                                                                       in_memory):
    tmp, model, _, lines = setup
    args = ["predict", "--model", str(model), "--data", str(lines), "--chunk-size", "7"]
    whole = tmp / "whole"
    assert run(capsys, *args, "--out-dir", str(whole))[0] == 0
    log = (whole / "predictions.jsonl").read_bytes()
    assert b"nbest" not in log  # only with --n-best
    # A crash inside the third chunk's write: 2 chunks and 3 questions whole, then half a line.
    crashed = tmp / "crashed"
    crashed.mkdir()
    (crashed / "stream.json").write_bytes((whole / "stream.json").read_bytes())
    cut = sum(len(x) for x in log.splitlines(keepends=True)[:17])
    (crashed / "predictions.jsonl").write_bytes(log[:cut + 25])
    code, stdout, err = run(capsys, *args, "--out-dir", str(crashed))
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["written"], summary["resumed"]) == (23, 17)
    assert (crashed / "predictions.jsonl").read_bytes() == log
    assert contents(crashed) == contents(whole) == contents(in_memory)
    # All written: a rerun answers nothing and merges the same files again.
    code, stdout, _ = run(capsys, *args, "--out-dir", str(crashed))
    assert code == 0 and json.loads(stdout)["written"] == 0
    assert contents(crashed) == contents(whole)


def test_cut_torn_line_keeps_every_whole_line(tmp_path):
    log = tmp_path / "p.jsonl"
    log.write_bytes(b'{"id": "a"}\n{"id": "b"}\n\x00\x00\x00')
    assert cut_torn_line(log) == 3 and log.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    assert cut_torn_line(log) == 0
    log.write_bytes(b'{"id": "a"')
    assert cut_torn_line(log) == 10 and log.read_bytes() == b""


def test_no_merge_writes_the_lines_only_and_a_rerun_merges(capsys, setup, in_memory):
    tmp, model, _, lines = setup
    args = ["predict", "--model", str(model), "--data", str(lines), "--out-dir",
            str(tmp / "nm"), "--chunk-size", "16"]
    code, stdout, _ = run(capsys, *args, "--no-merge")
    assert code == 0 and "predictions" not in json.loads(stdout)
    assert sorted(p.name for p in (tmp / "nm").iterdir()) == ["predictions.jsonl", "stream.json"]
    assert run(capsys, *args)[0] == 0
    assert contents(tmp / "nm") == contents(in_memory)


def test_a_restart_must_keep_the_settings_and_the_input(capsys, setup):
    tmp, model, _, lines = setup
    out = tmp / "keep"
    base = ["predict", "--model", str(model), "--out-dir", str(out), "--chunk-size", "16"]
    assert run(capsys, *base, "--data", str(lines), "--no-merge")[0] == 0
    err = one_line_error(*run(capsys, *base[:-1], "15", "--data", str(lines))[::2])
    assert "chunk-size 16" in err and "15" in err
    err = one_line_error(*run(capsys, *base, "--data", str(lines), "--n-best")[::2])
    assert "n-best" in err
    # The same file name with other questions: the log's ids are not the input's.
    log = (out / "predictions.jsonl").read_text().splitlines()
    changed = tmp / "changed" / "d.jsonl"
    changed.parent.mkdir()
    rows = [json.loads(x) for x in lines.read_text().splitlines()]
    rows[3]["id"] = "renamed"
    changed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "stream.json").write_text((out / "stream.json").read_text().replace(
        str(lines), str(changed)))
    err = one_line_error(*run(capsys, *base, "--data", str(changed))[::2])
    assert "renamed" in err and json.loads(log[3])["id"] in err


# The streamed input is read by gpt2qa.readers, so these are its messages (tests/test_formats.py
# holds the readers' whole bad-input table).
@pytest.mark.parametrize("line, expected", [
    ('{"id": "a", "question": "Q?"}', "line 2: id=a: missing column 'context'"),
    ('{"question": "Q?", "context": "C."}', "line 2: missing column 'id'"),
    ('["a"]', "line 2: expected an object (one row), got an array"),
    ('{"id": "a", "question": "Q?", "context": ', "line 2: invalid JSON at column 1"),
    ('{"id": "a", "question": 3, "context": "C."}', "line 2: question: id=a: expected a string"),
])
def test_a_bad_row_is_one_line_naming_file_line_and_id(capsys, setup, tmp_path, line, expected):
    _, model, _, _ = setup
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "ok", "question": "Q?", "context": "C."}\n' + line + "\n")
    err = one_line_error(*run(capsys, "predict", "--model", str(model), "--data", str(data),
                              "--out-dir", str(tmp_path / "o"))[::2])
    assert f"{data}: {expected}" in err


def test_a_duplicate_id_is_refused(capsys, setup, tmp_path):
    _, model, _, lines = setup
    rows = lines.read_text().splitlines()
    data = tmp_path / "dup.jsonl"
    data.write_text("\n".join([*rows, rows[0]]) + "\n")  # in another chunk than the first
    err = one_line_error(*run(capsys, "predict", "--model", str(model), "--data", str(data),
                              "--out-dir", str(tmp_path / "o"), "--chunk-size", "16")[::2])
    assert json.loads(rows[0])["id"] in err and "more than one question" in err
    assert not (tmp_path / "o" / "predictions.json").exists()


def test_streaming_flags_need_a_streamed_predict_and_hotpotqa_refuses_it(capsys, setup):
    _, model, squad_file, _ = setup
    err = one_line_error(*run(capsys, "predict", "--model", str(model), "--data",
                              str(squad_file), "--out-dir", "o", "--chunk-size", "5")[::2])
    assert "--chunk-size" in err
    args = argparse.Namespace(data="x.jsonl", stream=False, chunk_size=None, no_merge=False)
    with pytest.raises(GPT2QAError, match="not supported for hotpotqa: its predictions.json"):
        _streamed(args, tasks.get("hotpotqa"))
    assert _streamed(args, tasks.get("squad"))


@pytest.mark.slow
def test_two_processes_merge_to_the_one_process_files(setup, in_memory):
    tmp, model, _, lines = setup
    outs = {}
    for nproc in (1, 2):
        outs[nproc] = tmp / f"launch{nproc}"
        proc = subprocess.run([sys.executable, "-m", "gpt2qa", "launch", "-n", str(nproc),
                               "predict", "--model", str(model), "--data", str(lines),
                               "--out-dir", str(outs[nproc]), "--chunk-size", "6",
                               "--n-best"], env=ENV, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    parts = [outs[2] / f"predictions.part-{k}.jsonl" for k in (0, 1)]
    # 40 questions in chunks of 6: chunks 0, 2, 4, 6 (the last one 4 long) and 1, 3, 5.
    assert [len(p.read_text().splitlines()) for p in parts] == [22, 18]
    names = (*FILES, "nbest.json")
    assert contents(outs[2], names) == contents(outs[1], names) == contents(in_memory, names)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_machines_on_a_shared_folder_merge_to_the_one_process_files(setup, in_memory,
                                                                          tmp_path):
    """docs/scaling.md's M machines, as two torchrun agents (node ranks 0 and 1, one process
    each, so both have local rank 0) started from their own working directories on one host;
    only the output folder is shared. The global rank decides the part files and the merge."""
    tmp, model, _, lines = setup
    out = tmp_path / "shared-out"
    port = free_port()
    procs = []
    for node in (0, 1):
        cwd = tmp_path / f"machine{node}"
        cwd.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank",
             str(node), "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port",
             str(port), "-m", "gpt2qa", "predict", "--model", str(model), "--data", str(lines),
             "--out-dir", str(out), "--chunk-size", "6", "--n-best"],
            cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    assert [len((out / f"predictions.part-{k}.jsonl").read_text().splitlines())
            for k in (0, 1)] == [22, 18]
    names = (*FILES, "nbest.json")
    assert contents(out, names) == contents(in_memory, names)
    assert [list((tmp_path / f"machine{node}").iterdir()) for node in (0, 1)] == [[], []]


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_writes(capsys, setup):
    """The first run's lock on its log (held here, as a running predict holds it) refuses the
    second in one line, before it writes anything; the lock goes with the process."""
    from gpt2qa.io import exclusive_lock

    tmp, model, _, lines = setup
    out = tmp / "locked"
    with exclusive_lock(out / "predictions.jsonl"):
        code, _, err = run(capsys, "predict", "--model", str(model), "--data", str(lines),
                           "--out-dir", str(out))
        assert code == 2
        message = one_line_error(code, err)
        assert "another gpt2qa run is writing here now" in message and str(out) in message
        assert [p.name for p in out.iterdir()] == ["predictions.jsonl"]
        assert (out / "predictions.jsonl").read_bytes() == b""
    code, _, err = run(capsys, "predict", "--model", str(model), "--data", str(lines),
                       "--out-dir", str(out))
    assert code == 0, err


def test_a_link_in_place_of_the_log_is_refused_and_left_alone(capsys, setup, tmp_path):
    tmp, model, _, lines = setup
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (out / "predictions.jsonl").symlink_to(target)
    code, _, err = run(capsys, "predict", "--model", str(model), "--data", str(lines),
                       "--out-dir", str(out))
    assert code == 2 and "a link is refused" in one_line_error(code, err)
    assert target.read_text() == "keep" and (out / "predictions.jsonl").is_symlink()
