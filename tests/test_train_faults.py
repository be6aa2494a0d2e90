"""Training off the happy path: hostile and corrupt checkpoints, folders gpt2qa did not make,
runs killed before their first checkpoint, torn logs, data a model cannot learn from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gpt2qa.checkpoint import list_checkpoints
from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.tasks import fine_tune as train
from helpers import save_init_dir, write_tiny_squad


def config_for(tmp: Path, init: Path, data: Path, out: str, **kw) -> TrainConfig:
    base = dict(model=str(init), train_file=str(data), eval_file=None,
                output_dir=str(tmp / out), max_seq_length=64, doc_stride=16, max_query_length=16,
                batch_size=2, lr=3e-3, log_every=1, progress=False, seed=7, max_steps=6,
                save_every=2, keep_checkpoints=5)
    base.update(kw)
    return TrainConfig.of(**base)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_tokenizer):
    """A finished 6-step run with checkpoints at steps 2, 4 and 6."""
    tmp = tmp_path_factory.mktemp("faults")
    init = save_init_dir(tiny_tokenizer, tmp / "init")
    data = write_tiny_squad(tmp / "d.json", copies=2)
    train(config_for(tmp, init, data, "full"))
    return tmp, init, data


def _copy_run(finished, name: str) -> Path:
    tmp = finished[0]
    dest = tmp / name
    shutil.copytree(tmp / "full", dest)
    return dest


class Payload:
    """Unpickling this would create `marker`: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


CORRUPTIONS = {
    "truncated model.safetensors": lambda c: _truncate(c / "model.safetensors"),
    "deleted optimizer.pt": lambda c: (c / "optimizer.pt").unlink(),
    "truncated optimizer.pt": lambda c: _truncate(c / "optimizer.pt"),
    "truncated scheduler.pt": lambda c: _truncate(c / "scheduler.pt"),
    "truncated trainer_state.json": lambda c: _truncate(c / "trainer_state.json"),
    "hostile optimizer.pt": lambda c: torch.save({"state": Payload(c.parent.parent / "pwned")},
                                                 c / "optimizer.pt"),
    "hostile scheduler.pt": lambda c: torch.save(Payload(c.parent.parent / "pwned"),
                                                 c / "scheduler.pt"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_bad_newest_checkpoint_is_skipped_for_the_newest_whole_one(finished, corruption,
                                                                     capsys):
    tmp, init, data = finished
    run = _copy_run(finished, "c-" + corruption.replace(" ", "-"))
    # Pretend the run was killed after step 4: drop step 6's checkpoint, corrupt step 4's.
    shutil.rmtree(run / "checkpoints" / "step-0000006")
    CORRUPTIONS[corruption](run / "checkpoints" / "step-0000004")
    capsys.readouterr()
    result = train(config_for(tmp, init, data, run.name, resume=True))
    err = capsys.readouterr().err
    assert result.steps == 6
    warnings = [line for line in err.splitlines() if "skipping checkpoint" in line]
    assert len(warnings) == 1 and "step-0000004" in warnings[0], err
    assert not (run / "pwned").exists(), "a checkpoint ran code"
    # Resumed from step 2 and, reseeded per step, ended exactly where the uninterrupted run did.
    a = weights(tmp / "full" / "checkpoints" / "step-0000006")
    b = weights(run / "checkpoints" / "step-0000006")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_hostile_rng_file_is_never_loaded(finished):
    tmp, init, data = finished
    run = _copy_run(finished, "rng")
    shutil.rmtree(run / "checkpoints" / "step-0000006")
    torch.save(Payload(run / "pwned"), run / "checkpoints" / "step-0000004" / "rng.pt")
    assert train(config_for(tmp, init, data, "rng", resume=True)).steps == 6
    assert not (run / "pwned").exists()
    newest = run / "checkpoints" / "step-0000006"
    assert (newest / "optimizer.pt").exists() and not (newest / "rng.pt").exists()


def test_torn_last_log_line_is_dropped_on_resume(finished):
    tmp, init, data = finished
    run = _copy_run(finished, "torn")
    shutil.rmtree(run / "checkpoints" / "step-0000006")
    with (run / "log.jsonl").open("a") as fh:
        fh.write('{"event": "train", "st')
    train(config_for(tmp, init, data, "torn", resume=True))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_a_folder_that_is_not_a_run_is_refused_and_left_alone(finished):
    tmp, init, data = finished
    mine = tmp / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "my_important_model.bin").write_bytes(b"weights")
    (mine / "metrics.json").write_text('{"f1": 90}')
    (mine / "predictions.json").write_text("{}")
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    for resume in (False, True):
        with pytest.raises(GPT2QAError, match="not a gpt2qa run"):
            train(config_for(tmp, init, data, "mine", resume=resume))
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before


def test_a_run_killed_before_its_first_checkpoint_resumes_from_scratch(finished, capsys):
    tmp, init, data = finished
    run = tmp / "early"
    (run / "checkpoints" / ".step-0000002.tmp-abc123").mkdir(parents=True)
    (run / "train_config.json").write_text("{}")
    (run / "log.jsonl").write_text('{"event": "setup", "step": 0}\n')
    with pytest.raises(GPT2QAError, match="already holds a run"):
        train(config_for(tmp, init, data, "early"))
    capsys.readouterr()
    result = train(config_for(tmp, init, data, "early", resume=True))
    assert "starting from scratch" in capsys.readouterr().err
    assert result.steps == 6
    assert not (run / "checkpoints" / ".step-0000002.tmp-abc123").exists()
    a = weights(tmp / "full" / "checkpoints" / "step-0000006")
    b = weights(run / "checkpoints" / "step-0000006")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in list_checkpoints(run)] == [
        "step-0000002", "step-0000004", "step-0000006"]


def test_a_failed_start_leaves_no_folder(finished):
    tmp, _, data = finished
    with pytest.raises(GPT2QAError):
        train(config_for(tmp, tmp / "no-such-model", data, "never"))
    assert not (tmp / "never").exists()


def test_a_gpt2qa_model_with_too_few_positions_is_refused(finished):
    tmp, _, data = finished
    with pytest.raises(GPT2QAError, match="exceeds the model's 128 positions"):
        train(config_for(tmp, tmp / "full" / "model", data, "refit", max_seq_length=384))
    assert not (tmp / "refit").exists()


def test_answers_that_fit_no_window_stop_training(finished):
    tmp, init, _ = finished
    context = " ".join(["The Eiffel Tower was completed in 1889 in Paris, France."] * 6)
    answer = context[:200]
    data = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": f"q{k}", "question": "What was completed?", "is_impossible": False,
         "answers": [{"text": answer, "answer_start": 0}]} for k in range(4)]}]}]}
    path = tmp / "long.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GPT2QAError, match=r"only 0\.0% of the answerable training questions"):
        train(config_for(tmp, init, path, "long"))


def test_a_file_without_unanswerable_questions_gets_a_warning(finished, capsys):
    tmp, init, _ = finished
    v1 = json.loads(write_tiny_squad(tmp / "v1.json").read_text())
    v1["version"] = "1.1"
    for article in v1["data"]:
        for para in article["paragraphs"]:
            para["qas"] = [{k: v for k, v in qa.items() if k not in ("is_impossible",
                                                                      "plausible_answers")}
                           for qa in para["qas"] if qa["answers"]]
    (tmp / "v1.json").write_text(json.dumps(v1))
    train(config_for(tmp, init, tmp / "v1.json", "v1", max_steps=1))
    assert "cannot learn to abstain" in capsys.readouterr().err


def test_resume_from_a_checkpoint_at_an_epoch_boundary_matches(finished):
    """6 features, batch 2: 3 steps per epoch, so step 3's checkpoint ends epoch 0. The resumed
    run must start epoch 1 with epoch 1's order, exactly as the uninterrupted run did."""
    tmp, init, data = finished
    full = train(config_for(tmp, init, data, "edge-full", save_every=3))
    cut = tmp / "edge-cut"
    shutil.copytree(full.output_dir, cut)
    shutil.rmtree(cut / "checkpoints" / "step-0000006")
    train(config_for(tmp, init, data, "edge-cut", save_every=3, resume=True))
    a = weights(full.output_dir / "checkpoints" / "step-0000006")
    b = weights(cut / "checkpoints" / "step-0000006")
    assert all(torch.equal(a[k], b[k]) for k in a)
