"""Broken machines (issue W3-2 items 13, 18 and 19): a full disk or a read-only output location
is one line, never a traceback; non-finite logits are refused at decode time, never written as
NaN; a server stops computing for clients that have left.

The disk tests mount a real tmpfs (a small one fills up; a remounted read-only one refuses
writes, which chmod cannot do for root) and are skipped where mounting is not permitted."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpt2qa.checkpoint import newest_intact_checkpoint, save_model
from gpt2qa.cli import main
from gpt2qa.config import DecodeConfig, QAConfig
from gpt2qa.decode import WindowOutput, decode
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
from helpers import save_init_dir, tiny_model, write_tiny_squad

# -- helpers ----------------------------------------------------------------------------------

def _mount(directory: Path, size: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """mount(name, size, read_only=False) -> a fresh tmpfs folder, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "2m", read_only: bool = False) -> Path:
        directory = tmp_path / name
        _mount(directory, size)
        mounted.append(directory)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True, timeout=30)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=30)


def _one_error_line(capsys: Any, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"gpt2qa {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: Any, tiny_tokenizer: Any) -> Path:
    path = tmp_path_factory.mktemp("machines") / "model"
    prepare_tokenizer(tiny_tokenizer)
    save_model(tiny_model(tiny_tokenizer).eval(), tiny_tokenizer, path)
    return path


def _train_args(init: Path, data: Path, out: Path, **kw: Any) -> list[str]:
    args = ["train", "--model", str(init), "--train-file", str(data), "--output-dir", str(out),
            "--max-seq-length", "64", "--doc-stride", "16", "--max-query-length", "16",
            "--batch-size", "2", "--no-progress", "--seed", "7"]
    for key, value in kw.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


# -- 13. a full disk during a checkpoint --------------------------------------------------------

def test_a_full_disk_during_a_checkpoint_is_one_line_naming_the_last_good_one(
        capsys: Any, tmp_path: Path, tiny_tokenizer: Any, tmpfs: Any) -> None:
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    disk = tmpfs("disk", "2m")
    out = disk / "run"
    code = main(_train_args(init, data, out, max_steps=200, save_every=1, keep_checkpoints=1000,
                            log_every=1))
    line = _one_error_line(capsys, "train")
    assert code == 2
    assert "No space left on device" in line and "free" in line, line
    last = newest_intact_checkpoint(out, warn=lambda _line: None)
    assert last is not None, "not even one checkpoint fit: make the tmpfs larger"
    assert f"Last good checkpoint: {last.path}" in line, line
    # Every checkpoint on the disk is whole; no temporary directory is left behind.
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


def test_a_failed_checkpoint_write_leaves_no_partial_directory(tmp_path: Path, tiny_tokenizer: Any,
                                                             tmpfs: Any) -> None:
    from gpt2qa.io import OutputError

    disk = tmpfs("small", "64k")
    model = tiny_model(tiny_tokenizer).eval()
    with pytest.raises(OutputError) as caught:
        save_model(model, tiny_tokenizer, disk / "model")
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).startswith(f"{disk / 'model'}: cannot write (No space left")
    assert list(disk.iterdir()) == []


# -- 13. a read-only output location ------------------------------------------------------------

def test_train_into_a_read_only_location_is_one_line(capsys: Any, tmp_path: Path,
                                                     tiny_tokenizer: Any, tmpfs: Any) -> None:
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json")
    ro = tmpfs("ro", read_only=True)
    code = main(_train_args(init, data, ro / "run", max_steps=2))
    line = _one_error_line(capsys, "train")
    assert code == 2
    assert str(ro / "run") in line and "Read-only file system" in line, line


def test_predict_out_dir_on_a_read_only_location_is_one_line(capsys: Any, model_dir: Path,
                                                             squad_v2_file: Path,
                                                             tmpfs: Any) -> None:
    ro = tmpfs("ro", read_only=True)
    code = main(["predict", "--model", str(model_dir), "--data", str(squad_v2_file),
                 "--out-dir", str(ro / "preds")])
    line = _one_error_line(capsys, "predict")
    assert code == 2
    assert str(ro / "preds") in line and "Read-only file system" in line, line


def test_evaluate_out_file_on_a_read_only_location_is_one_line(capsys: Any, squad_v2_file: Path,
                                                               tmp_path: Path, tmpfs: Any) -> None:
    preds = tmp_path / "p.json"
    preds.write_text("{}", encoding="utf-8")
    ro = tmpfs("ro", read_only=True)
    code = main(["evaluate", str(squad_v2_file), str(preds), "--out-file", str(ro / "m.json")])
    line = _one_error_line(capsys, "evaluate")
    assert code == 2
    assert str(ro / "m.json") in line and "Read-only file system" in line, line


@pytest.mark.parametrize("task", ["squad", "hotpot"])
def test_demo_out_dir_on_a_read_only_location_is_refused_before_training(
        capsys: Any, tmpfs: Any, task: str) -> None:
    ro = tmpfs("ro", read_only=True)
    start = time.monotonic()
    code = main(["demo", "--task", task, "--out-dir", str(ro / "demo")])
    line = _one_error_line(capsys, "demo")
    assert code == 2
    assert str(ro / "demo") in line and "Read-only file system" in line, line
    assert time.monotonic() - start < 30  # refused up front, not after a training run


def test_a_write_failure_is_one_output_error_line(tmp_path: Path, monkeypatch: Any) -> None:
    """Without mounting: the atomic writers turn EROFS/ENOSPC into one line and leave no
    temporary file behind."""
    from gpt2qa import io

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(io.os, "replace", refuse)
    with pytest.raises(io.OutputError, match=r"out\.json: cannot write \(Read-only file system\)"):
        io.write_json_atomic(tmp_path / "out.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(io.OutputError, match=r"No space left on device; .* free on that disk"):
        with io.atomic_dir(tmp_path / "d") as tmp:
            raise RuntimeError("Error while serializing: I/O error: No space left on device "
                               f"(os error {errno.ENOSPC}) in {tmp}")
    assert list(tmp_path.iterdir()) == []


# -- 18. non-finite logits at decode time --------------------------------------------------------

@pytest.mark.parametrize("bad", ["start", "end", "null"])
def test_nan_logits_are_refused_at_decode_naming_the_question(tiny_tokenizer: Any,
                                                              bad: str) -> None:
    from gpt2qa.data import SquadExample

    special = prepare_tokenizer(tiny_tokenizer)
    qa = QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16)
    context = "The Eiffel Tower was completed in 1889 in Paris, France."
    example = SquadExample(qas_id="q-nan", question="When?", context=context, answers=(),
                           is_impossible=True)
    features = convert_examples_to_features([example], tiny_tokenizer, qa.features, special)
    outputs = []
    for f in features:
        n = len(f.input_ids)
        start, end, null = np.zeros(n, np.float32), np.zeros(n, np.float32), 0.0
        if bad == "start":
            start[n // 2] = np.nan
        elif bad == "end":
            end[:] = np.inf
        else:
            null = float("nan")
        outputs.append(WindowOutput(start, end, null))
    with pytest.raises(GPT2QAError, match="id=q-nan: .*NaN or infinite"):
        decode({"q-nan": context}, features, outputs, DecodeConfig())


def test_nan_logits_are_refused_by_the_hotpot_decode_naming_the_question() -> None:
    from types import SimpleNamespace

    from gpt2qa.tasks.hotpotqa.heads import decode_hotpot

    output = WindowOutput(np.zeros(8, np.float32), np.zeros(8, np.float32), 0.0,
                          {"type_logits": np.array([np.nan, 0.0, 0.0], np.float32)})
    with pytest.raises(GPT2QAError, match="id=h-nan: .*type_logits hold NaN or infinite"):
        decode_hotpot([SimpleNamespace(qas_id="h-nan")], [output], 5, 30, 0.5)


def test_print_json_never_prints_nan(capsys: Any) -> None:
    from gpt2qa.cli.commands import print_json

    with pytest.raises(GPT2QAError, match=r"predictions\[0\]\.score is NaN"):
        print_json({"predictions": [{"score": float("nan")}]})
    assert capsys.readouterr().out == ""


# -- 19. a server stops computing for clients that have left -----------------------------------

def _post(base: str, path: str, body: dict[str, Any], timeout: float = 60) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def _health(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(base + "/healthz", timeout=30) as response:
        return json.loads(response.read())


def _abandon(base: str, body: bytes) -> None:
    """Send a whole request, then close the connection without reading the reply."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v1/answer/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    sock.close()


def test_abandoned_batches_are_not_computed_and_do_not_delay_a_live_request(
        tiny_tokenizer: Any) -> None:
    pytest.importorskip("fastapi")
    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.serve import ServeSettings, create_app, serve_in_thread

    special = prepare_tokenizer(tiny_tokenizer)
    model = tiny_model(tiny_tokenizer, QAConfig.of(max_seq_length=64, doc_stride=16,
                                                    max_query_length=16)).eval()
    pipeline = QAPipeline(model, tiny_tokenizer, special, "fp32")
    # One question per model call: abandoned work is many calls, each skippable.
    settings = ServeSettings(port=0, max_batch_size=1, batch_wait_ms=0)
    words = "The Eiffel Tower was completed in 1889 in Paris, France, by Gustave Eiffel. "
    big = {"question": "When was the Eiffel Tower completed?",
           "context": (words * 300)[:19_000]}
    batch = {"items": [big] * 8}
    short = {"question": "When was the Eiffel Tower completed?", "context": words}
    with serve_in_thread(create_app(pipeline, settings)) as base:
        # What one batch of 8 costs when somebody waits for it.
        start = time.monotonic()
        status, _ = _post(base, "/v1/answer/batch", batch, timeout=120)
        one_batch = time.monotonic() - start
        assert status == 200
        before = _health(base)["questions_answered"]
        body = json.dumps(batch).encode()
        for _ in range(3):
            _abandon(base, body)
        time.sleep(0.3)  # the abandoned requests have reached the server
        start = time.monotonic()
        status, reply = _post(base, "/v1/answer", short, timeout=120)
        latency = time.monotonic() - start
        assert status == 200 and reply["candidates"]
        # The abandoned work would take 3 * one_batch; at most the model call in flight when
        # a client left is finished.
        assert latency < one_batch, (latency, one_batch)
        deadline = time.monotonic() + 3 * one_batch + 5
        while _health(base)["queued"] and time.monotonic() < deadline:
            time.sleep(0.05)
        answered = _health(base)["questions_answered"] - before - 1
        assert answered <= 6, f"{answered} of 24 abandoned questions were computed"
