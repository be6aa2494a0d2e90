"""HotpotQA on the shared engine, through the CLI on tiny models: resume after SIGKILL, two
processes, LoRA, int8, the one-line refusals, the Python API and model directories written by
older gpt2qa versions. Each is the capability SQuAD already had; nothing here is HotpotQA code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gpt2qa.checkpoint import list_checkpoints
from gpt2qa.cli import main
from gpt2qa.pipeline import QAPipeline
from gpt2qa.tasks.hotpotqa.synthetic import generate
from helpers import save_init_dir

SRC = str(Path(__file__).resolve().parents[3] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
# 18 synthetic questions, one window each: batch 4 -> 5 steps per epoch (the last one filled up).
COMMON = ["--max-seq-length", "96", "--max-query-length", "24", "--batch-size", "4",
          "--lr", "3e-3", "--log-every", "1", "--no-progress", "--seed", "3",
          "--max-steps", "10", "--eval-every", "5", "--save-every", "2",
          "--keep-checkpoints", "10"]


def gpt2qa(*args: str, nproc: int | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gpt2qa"]
    if nproc is not None:
        cmd += ["launch", "-n", str(nproc)]
    return subprocess.run(cmd + list(args), env=ENV, capture_output=True, text=True,
                          timeout=300)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer):
    """A tiny GPT-2 without dropout, 18 synthetic multi-hop questions, and two training runs of
    them: one process and two processes at the same global batch."""
    tmp = tmp_path_factory.mktemp("hotpot-engine")
    save_init_dir(tiny_tokenizer, tmp / "init", dropout=0.0)
    data = tmp / "hotpot.json"
    data.write_text(json.dumps(generate("train", 18, seed=5)), encoding="utf-8")
    base = ["train", "--model", str(tmp / "init"), "--train-file", str(data),
            "--eval-file", str(data), *COMMON]
    runs = {}
    for nproc in (1, 2):
        proc = gpt2qa(*base, "--output-dir", str(tmp / f"p{nproc}"), nproc=nproc)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[nproc] = tmp / f"p{nproc}"
    return tmp, data, runs


@pytest.mark.slow
def test_two_processes_match_one_process(setup):
    """As tests/test_distributed.py for SQuAD: same global batches, no dropout, weights within
    1e-4 (qa_outputs.bias left out: its true gradient is 0), scores within half a point, and
    the evaluation sharded over both processes."""
    _, _, runs = setup
    one = weights(runs[1] / "checkpoints" / "step-0000010")
    two = weights(runs[2] / "checkpoints" / "step-0000010")
    assert one.keys() == two.keys()
    assert {"task_heads.answer_type.proj.weight", "task_heads.supporting_facts.proj.weight"} \
        <= one.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one if k != "qa_outputs.bias")
    assert worst < 1e-4, worst
    m1 = json.loads((runs[1] / "metrics.json").read_text())
    m2 = json.loads((runs[2] / "metrics.json").read_text())
    assert m1["step"] == m2["step"]
    for key in ("f1", "sp_f1", "joint_f1"):
        assert abs(m1[key] - m2[key]) <= 0.005, (key, m1[key], m2[key])
    for run, nproc in ((runs[1], 1), (runs[2], 2)):
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        assert log[0]["event"] == "setup" and log[0]["task"] == "hotpotqa"
        assert log[0]["processes"] == nproc
        assert [r["step"] for r in log if r["event"] == "eval"] == [5, 10]
    saved = json.loads((runs[2] / "model" / "gpt2qa.json").read_text())
    assert saved["task"] == "hotpotqa" and saved["task_state"]["sp_threshold"] == m2["sp_threshold"]


@pytest.mark.slow
def test_two_process_predict_equals_one_process(setup):
    tmp, data, runs = setup
    files = []
    for nproc in (1, 2):
        dest = tmp / f"pred{nproc}"
        proc = gpt2qa("predict", "--model", str(runs[2] / "model"), "--data", str(data),
                      "--out-dir", str(dest), "--batch-size", "4", nproc=nproc)
        assert proc.returncode == 0, proc.stderr[-3000:]
        files.append(json.loads((dest / "predictions.json").read_text()))
    assert len(files[0]["answer"]) == 18 and files[0] == files[1]
    assert files[0] == json.loads((runs[2] / "predictions.json").read_text())


@pytest.mark.slow
def test_sigkill_and_resume_match_an_uninterrupted_run(setup):
    tmp, data, runs = setup
    killed = tmp / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "gpt2qa", *(
        "train", "--model", str(tmp / "init"), "--train-file", str(data), "--eval-file",
        str(data), *COMMON), "--output-dir", str(killed)], env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list_checkpoints(killed):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    done = list_checkpoints(killed)
    assert done and int(done[-1].name.split("-")[1]) < 10
    # Resumed through the CLI at the same thread count as the uninterrupted run (p1).
    resumed = gpt2qa("train", "--model", str(tmp / "init"), "--train-file", str(data),
                     "--eval-file", str(data), *COMMON, "--output-dir", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["steps"] == 10
    a = weights(runs[1] / "checkpoints" / "step-0000010")
    b = weights(killed / "checkpoints" / "step-0000010")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((runs[1] / "metrics.json").read_text()) == \
        json.loads((killed / "metrics.json").read_text())


@pytest.mark.slow
def test_lora_and_merge(setup, capsys):
    pytest.importorskip("peft")
    tmp, data, _ = setup
    out = tmp / "lora"
    assert main(["train", "--model", str(tmp / "init"), "--train-file", str(data),
                 "--eval-file", str(data), "--output-dir", str(out), *COMMON,
                 "--lora-r", "4", "--merge-lora"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "hotpotqa" and summary["steps"] == 10
    setup_record = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert setup_record["lora_r"] == 4
    assert setup_record["trainable_parameters"] < setup_record["total_parameters"]
    assert (out / "model" / "adapter_config.json").is_file()
    adapter = QAPipeline.from_pretrained(out / "model", device="cpu")
    merged = QAPipeline.from_pretrained(out / "model-merged", device="cpu")
    assert adapter.task.name == merged.task.name == "hotpotqa"
    examples = adapter.task.read(str(data)).examples
    a, b = adapter.predict(examples), merged.predict(examples)
    assert [p.answer for p in a] == [p.answer for p in b]
    assert [p.facts for p in a] == [p.facts for p in b]


@pytest.mark.slow
def test_predict_int8_and_refusals(setup, capsys):
    tmp, data, runs = setup
    model = str(runs[1] / "model")
    assert main(["predict", "--model", model, "--data", str(data), "--out-dir",
                 str(tmp / "int8"), "--quantize", "int8", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "hotpotqa" and printed["examples"] == 18
    preds = json.loads((tmp / "int8" / "predictions.json").read_text())
    assert set(preds) == {"answer", "sp"} and len(preds["answer"]) == 18
    # A setting HotpotQA has no use for is refused in one line, not ignored.
    assert main(["predict", "--model", model, "--data", str(data), "--out-dir",
                 str(tmp / "thr"), "--null-score-diff-threshold", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--null-score-diff-threshold 0.5 is not supported for hotpotqa" \
        in err[0]
    assert not (tmp / "thr" / "predictions.json").exists()
    assert main(["train", "--model", str(tmp / "init"), "--train-file", str(data),
                 "--output-dir", str(tmp / "fp16"), "--precision", "fp16"]) == 2
    assert "--precision fp16 needs a CUDA device" in capsys.readouterr().err
    # --task names the task: a SQuAD file is refused for a HotpotQA run, and the reverse.
    assert main(["evaluate", str(data), str(tmp / "int8" / "predictions.json"),
                 "--task", "squad"]) == 2
    assert "not a squad file" in capsys.readouterr().err


@pytest.mark.slow
def test_python_api_on_a_hotpot_model(setup):
    _, _, runs = setup
    qa = QAPipeline.from_pretrained(runs[1] / "model", device="cpu")
    assert qa.task.name == "hotpotqa"
    # Training kept five of its evaluation questions for the serve page, as the task reads them.
    assert qa.examples is not None and qa.examples.data == "hotpot.json"
    assert len(qa.examples.items) == 5 and not qa.examples.synthetic
    for item in qa.examples.items:
        assert qa(question=item["question"], context=item["context"])["answer"]
    context = [["Tavrik", ["Tavrik was founded by Quell Mebbit.", " It has 31,000 people."]],
               ["Quell Mebbit", ["Quell Mebbit was a trader.", " He was born in Quellton."]]]
    best = qa(question="Where was the founder of Tavrik born?", context=context)
    assert best["answer_type"] in ("span", "yes", "no") and best["answer"]
    assert 0.0 <= best["score"] <= 1.0
    for title, index, prob in best["supporting_facts"]:
        assert (title, index) in {("Tavrik", 0), ("Tavrik", 1), ("Quell Mebbit", 0),
                                  ("Quell Mebbit", 1)}
        assert prob > qa.model.config.task_state["sp_threshold"]
    ranked = qa(question="Was Tavrik founded?", context=context, top_k=3)
    assert len(ranked) == 3 and ranked[0]["answer"] == qa(
        question="Was Tavrik founded?", context=context)["answer"]
    assert sorted((r["score"] for r in ranked[1:]), reverse=True) == [r["score"]
                                                                      for r in ranked[1:]]
    both = qa(question=["Who founded Tavrik?", "Where was he born?"], context=[context, context])
    assert isinstance(both, list) and len(both) == 2
    from gpt2qa.errors import GPT2QAError

    with pytest.raises(GPT2QAError, match="context"):
        qa(question="Who?", context="plain text is not a list of paragraphs")


@pytest.mark.slow
def test_a_model_directory_from_before_the_task_field_still_loads(setup):
    """Older HotpotQA models kept the threshold in hotpot.json and named their heads
    type_head / sp_head; they load as today's, with the same answers."""
    from safetensors.torch import load_file, save_file

    tmp, data, runs = setup
    old = tmp / "old-model"
    new = runs[1] / "model"
    old.mkdir()
    for path in new.iterdir():
        (old / path.name).write_bytes(path.read_bytes())
    qa = json.loads((new / "gpt2qa.json").read_text())
    threshold = qa.pop("task_state")["sp_threshold"]
    qa.pop("task")
    (old / "gpt2qa.json").write_text(json.dumps(qa))
    (old / "hotpot.json").write_text(json.dumps({"task": "hotpotqa", "sp_threshold": threshold}))
    renames = {"task_heads.answer_type.proj.": "type_head.",
               "task_heads.supporting_facts.proj.": "sp_head."}
    state = {}
    for key, value in load_file(str(new / "model.safetensors")).items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        state[renames[prefix] + key[len(prefix):] if prefix else key] = value
    assert "type_head.weight" in state
    save_file(state, str(old / "model.safetensors"), metadata={"format": "pt"})
    examples = QAPipeline.from_pretrained(new).task.read(str(data)).examples
    was, now = QAPipeline.from_pretrained(old), QAPipeline.from_pretrained(new)
    assert was.task.name == "hotpotqa"
    assert was.model.config.task_state == {"sp_threshold": threshold}
    assert [(p.answer, p.facts) for p in was.predict(examples)] == \
        [(p.answer, p.facts) for p in now.predict(examples)]


def test_train_refuses_a_folder_holding_the_users_files(tmp_path, tiny_tokenizer, capsys):
    """The run-directory guard is the engine's, so HotpotQA has it too (it used to delete
    model/notes.txt and overwrite metrics.json in such a folder)."""
    data = tmp_path / "h.json"
    data.write_text(json.dumps(generate("train", 4, seed=1)), encoding="utf-8")
    mine = tmp_path / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "notes.txt").write_text("keep me")
    (mine / "metrics.json").write_text("{}")
    assert main(["train", "--model", "gpt2", "--train-file", str(data), "--output-dir",
                 str(mine)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert (mine / "model" / "notes.txt").read_text() == "keep me"
    assert (mine / "metrics.json").read_text() == "{}"


@pytest.mark.slow
def test_a_task_the_model_was_not_trained_for_is_refused_before_loading(setup, capsys,
                                                                        monkeypatch):
    """`--task` on predict and serve is checked against the model directory (serve used to
    accept the flag and ignore it)."""
    from gpt2qa import serve

    tmp, data, runs = setup
    model = str(runs[1] / "model")
    loaded: list[str] = []
    monkeypatch.setattr(serve, "serve_forever", lambda *a, **k: loaded.append(a[0]))
    for argv in (["predict", "--model", model, "--data", str(data), "--out-dir",
                  str(tmp / "wrong-task")],
                 ["serve", "--model", model]):
        assert main([*argv, "--task", "squad"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"gpt2qa {argv[0]}: error: {model}: a hotpotqa model, not squad (--task)"]
    assert loaded == [] and not (tmp / "wrong-task").exists()
    assert main(["serve", "--model", model, "--task", "hotpotqa"]) == 0 and loaded == [model]
