"""W3-2, second adversarial pass, items 11, 15, 16, 17 and 22: a LoRA model under --quantize
int8, a failing process under `gpt2qa launch`, hostile or damaged weights for `train --model`,
`serve` on a port in use, and the Python API's bad arguments. Each is one line, or works."""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpt2qa.errors import GPT2QAError
from helpers import one_line_error, run, save_init_dir, tiny_model, write_tiny_squad

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
CONTEXT = "It was completed in 1889."




def gpt2qa_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2qa", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    from gpt2qa.checkpoint import save_model

    return save_model(tiny_model(tiny_tokenizer), tiny_tokenizer,
                      tmp_path_factory.mktemp("r2b") / "model")


# -- item 11: a LoRA model with --quantize int8 -------------------------------------------------

def test_a_lora_model_answers_under_quantize_int8(capsys, tmp_path: Path,
                                                  tiny_tokenizer: Any) -> None:
    pytest.importorskip("peft")
    from gpt2qa.checkpoint import save_model
    from gpt2qa.config import TrainConfig
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.lora import prepare_for_training
    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.quantize import is_int8

    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    special = prepare_tokenizer(tiny_tokenizer)
    config = TrainConfig.of(model=str(init), train_file="unused.json", lora_r=4)
    lora = save_model(prepare_for_training(tiny_model(tiny_tokenizer), config, special),
                      tiny_tokenizer, tmp_path / "lora")
    assert (lora / "adapter_config.json").is_file()

    code, out, err = run(capsys, "predict", "--model", str(lora), "--quantize", "int8",
                         "--question", "When was it completed?", "--context", CONTEXT)
    assert code == 0, err
    answer = json.loads(out)
    assert "answer" in answer and "Traceback" not in err
    if answer["start"] is not None:
        assert CONTEXT[answer["start"]:answer["end"]] == answer["answer"]

    # The adapters are merged into the int8 layers: the answers follow the fp32 LoRA model's.
    fp32 = QAPipeline.from_pretrained(lora, device="cpu")
    int8 = QAPipeline.from_pretrained(lora, device="cpu", quantize="int8")
    assert is_int8(int8.model) and not is_int8(fp32.model)
    a = fp32(question="When was it completed?", context=CONTEXT)
    b = int8(question="When was it completed?", context=CONTEXT)
    assert (a["start"], a["end"]) == (b["start"], b["end"])
    assert b["score"] == pytest.approx(a["score"], abs=0.05)


# -- item 15: a failing process under `gpt2qa launch` -------------------------------------------

def test_launch_passes_a_failing_process_line_and_status_through(tmp_path: Path,
                                                                 tiny_tokenizer: Any) -> None:
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    missing = tmp_path / "missing.json"
    done = gpt2qa_cli("launch", "-n", "2", "train", "--model", str(init),
                      "--train-file", str(missing), "--output-dir", str(tmp_path / "run"),
                      "--no-progress", timeout=240)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    # Both processes fail alike: the line is printed once, and nothing of torchrun's.
    assert len(lines) == 1, done.stderr
    assert "missing.json" in lines[0] and lines[0].startswith("gpt2qa train: error:")
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr


def test_launch_command_runs_the_quiet_agent() -> None:
    """torchrun runs inside gpt2qa.launch.run_agent, which keeps its logs and traceback quiet."""
    from gpt2qa.launch import AGENT, launch_command

    command = launch_command(2, ["predict", "--model", "x"])
    assert command[:3] == [sys.executable, "-c", AGENT]
    assert command[3:] == ["--standalone", "--nproc-per-node=2", "-m", "gpt2qa",
                           "predict", "--model", "x"]


# -- item 16: hostile or damaged weights for `train --model` -----------------------------------

@pytest.mark.parametrize("damage", ["hostile pickle", "truncated safetensors"])
def test_train_from_a_model_dir_with_bad_weights_is_one_line(capsys, tmp_path: Path,
                                                             tiny_tokenizer: Any,
                                                             damage: str) -> None:
    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    weights = init / "model.safetensors"
    marker = tmp_path / "PWNED"
    if damage == "hostile pickle":
        class Hostile:
            def __reduce__(self) -> tuple[Any, ...]:
                return (os.system, (f"touch {marker}",))

        weights.unlink()
        (init / "pytorch_model.bin").write_bytes(pickle.dumps(Hostile()))
        expected = "pytorch_model.bin"
    else:
        blob = weights.read_bytes()
        weights.write_bytes(blob[: len(blob) // 2])
        expected = "model.safetensors is not a readable safetensors file"
    data = write_tiny_squad(tmp_path / "d.json")
    code, _, err = run(capsys, "train", "--model", str(init), "--train-file", str(data),
                       "--output-dir", str(tmp_path / "run"), "--max-steps", "1",
                       "--no-progress")
    assert str(init) in one_line_error(code, err) and expected in err
    assert not marker.exists()


# -- item 17: `serve` on a port in use ---------------------------------------------------------

def test_serve_on_a_port_in_use_is_one_line(model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = gpt2qa_cli("serve", "--model", str(model_dir), "--port", str(port), timeout=60)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"127.0.0.1:{port} is already in use" in done.stderr


def test_check_address_accepts_a_free_port() -> None:
    from gpt2qa.serve.run import check_address

    check_address("127.0.0.1", 0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(GPT2QAError, match="already in use"):
            check_address("127.0.0.1", taken.getsockname()[1])


# -- item 22: the Python API's bad arguments ----------------------------------------------------

@pytest.fixture(scope="module")
def qa(model_dir: Path) -> Any:
    from gpt2qa.pipeline import QAPipeline

    return QAPipeline.from_pretrained(model_dir, device="cpu")


BAD_CALLS = {
    "no questions": (dict(question=[], context=[]), "empty list"),
    "surrogate question": (dict(question="When\ud800?", context=CONTEXT),
                           "question: lone UTF-16 surrogate U+D800 at character 4"),
    "surrogate context": (dict(question="When?", context="It \udcff was"),
                          "context: undecodable byte 0xff at character 3"),
    "surrogate in a list": (dict(question=["When?", "Who\ud800?"], context=CONTEXT),
                            "question 1: question: lone UTF-16 surrogate"),
    "None question": (dict(question=None, context=CONTEXT), "got NoneType"),
    "int question": (dict(question=5, context=CONTEXT), "got int"),
    "dict question": (dict(question={"When?": 1}, context=CONTEXT), "got dict"),
    "bytes context": (dict(question=["When?"], context=CONTEXT.encode()), "not bytes"),
    "bytes single context": (dict(question="When?", context=CONTEXT.encode()), "not bytes"),
    "top_k str": (dict(question="When?", context=CONTEXT, top_k="3"), "top_k must be"),
    "top_k float": (dict(question="When?", context=CONTEXT, top_k=2.5), "top_k must be"),
    "top_k None": (dict(question="When?", context=CONTEXT, top_k=None), "top_k must be"),
    "batch_size str": (dict(question="When?", context=CONTEXT, batch_size="4"),
                       "batch_size must be"),
    "batch_size float": (dict(question="When?", context=CONTEXT, batch_size=2.5),
                         "batch_size must be"),
    "threshold str": (dict(question="When?", context=CONTEXT, null_score_diff_threshold="0.5"),
                      "null_score_diff_threshold must be"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_the_python_api_refuses_bad_arguments_in_one_line(qa: Any, case: str) -> None:
    kwargs, message = BAD_CALLS[case]
    with pytest.raises(GPT2QAError, match=re.escape(message)) as info:
        qa(**kwargs)
    assert "\n" not in str(info.value)


def test_predict_refuses_bad_numbers_too(qa: Any) -> None:
    example = qa.task.example("q", "When?", CONTEXT)
    with pytest.raises(GPT2QAError, match="batch_size must be"):
        qa.predict([example], batch_size="4")
    with pytest.raises(GPT2QAError, match="null_score_diff_threshold must be"):
        qa.predict([example], null_score_diff_threshold=float("nan"))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(model_dir=None), "model_dir must be the path of a model directory; got NoneType"),
    (dict(precision="fp8"), "--precision must be one of fp32, bf16, fp16; got 'fp8'"),
])
def test_from_pretrained_refuses_bad_arguments_before_loading(model_dir: Path, kwargs: dict,
                                                              message: str) -> None:
    from gpt2qa.pipeline import QAPipeline

    kwargs = {"model_dir": model_dir, **kwargs}
    with pytest.raises(GPT2QAError, match=re.escape(message)):
        QAPipeline.from_pretrained(**kwargs)


def test_good_calls_still_answer(qa: Any) -> None:
    one = qa(question="When?", context=CONTEXT, top_k=1, batch_size=0,
             null_score_diff_threshold=0)
    assert set(one) >= {"answer", "score", "start", "end"}
    two = qa(question=("When?", "What?"), context=[CONTEXT, CONTEXT], top_k=2,
             null_score_diff_threshold=0.5)
    assert len(two) == 2 and all(isinstance(r, list) for r in two)
