"""Experiment tracking (`--report-to`): what TensorBoard, wandb (offline) and MLflow (a local
SQLite store) hold after a tiny run is read back with each tool's own reader and compared
with log.jsonl; hyperparameters; resume; only the main process reports; the one-line
refusals. No network. A tracker whose package is absent is skipped; its absence is simulated
for the missing-extra messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.tasks import fine_tune as train
from gpt2qa.tracking import TRACKERS, Tracking, installed, requested
from helpers import one_line_error, run, save_init_dir, write_tiny_squad

SRC = str(Path(__file__).resolve().parents[1] / "src")
AVAILABLE = tuple(name for name in TRACKERS if installed(name))


# -- readers: each tracker's files, read back with its own tools ---------------------------------

def logged(out: Path) -> dict[tuple[int, str], float]:
    """log.jsonl's train and eval numbers as (step, EVENT/KEY) -> value."""
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {(r["step"], f"{r['event']}/{key}"): value for r in records
            if r["event"] in ("train", "eval") for key, value in r.items()
            if key not in ("event", "step") and type(value) in (int, float)}


def settings(out: Path) -> dict[str, object]:
    """The hyperparameters a run should have stored: its flat settings (train_config.json, the
    task resolved), the setup record under setup/; what is not a number, string or boolean as text."""
    config = json.loads((out / "train_config.json").read_text())
    setup = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert setup["event"] == "setup"
    values = {**{k: v for k, v in config.items() if k != "schedule"},
              **{f"setup/{k}": v for k, v in setup.items() if k not in ("event", "step")}}
    return {k: v if type(v) in (bool, int, float, str) else str(v) for k, v in values.items()}


def tensorboard_scalars(out: Path) -> dict[tuple[int, str], float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard" / "gpt2qa"), size_guidance={"scalars": 0})
    acc.Reload()  # purges what a resumed run's purge_step hides, as TensorBoard shows it
    return {(e.step, tag): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}


def tensorboard_hparams(out: Path) -> list[dict]:
    import yaml

    return [yaml.safe_load(p.read_text()) for p in
            sorted((out / "tensorboard" / "gpt2qa").glob("*/hparams.yml"))]


def mlflow_runs(uri: str) -> list[dict]:
    """Every run of the gpt2qa experiment: id, name, params and its metric history as
    (step, key) -> values in the order they were logged."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("gpt2qa")
    out = []
    for r in client.search_runs([experiment.experiment_id]):
        history: dict[tuple[int, str], list[float]] = {}
        for key in r.data.metrics:
            for m in sorted(client.get_metric_history(r.info.run_id, key),
                            key=lambda m: m.timestamp):
                history.setdefault((m.step, key), []).append(m.value)
        out.append({"id": r.info.run_id, "name": r.info.run_name, "params": r.data.params,
                    "history": history, "status": r.info.status})
    return out


def wandb_records(path: Path):
    """The records of a wandb run file (.wandb): a LevelDB-style log of 32 KiB blocks after a
    7-byte header, each chunk a 7-byte header (crc, length, type) and a piece of a protobuf
    Record; type 1 is a whole record, 2-4 its first, middle and last pieces."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, pieces = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pieces += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


def _key(item) -> str:
    """A wandb record item's key: `key`, or (newer wandb) `nested_key`'s parts."""
    return item.key or "/".join(item.nested_key)


def wandb_offline(out: Path) -> list[dict]:
    """Each offline start under OUTPUT_DIR/wandb, oldest first: run id, project, name,
    config and history as (step, key) -> value."""
    starts = []
    for path in sorted((out / "wandb").glob("offline-run-*/run-*.wandb")):
        start: dict = {"config": {}, "history": {}}
        for rec in wandb_records(path):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                start.update(id=rec.run.run_id, project=rec.run.project,
                             name=rec.run.display_name)
            elif kind == "config":
                start["config"].update({_key(i): json.loads(i.value_json)
                                        for i in rec.config.update if not _key(i).startswith("_")})
            elif kind == "history":
                row = {_key(i): json.loads(i.value_json) for i in rec.history.item}
                start["history"].update({(row["_step"], k): v for k, v in row.items()
                                         if not k.startswith("_")})
        starts.append(start)
    return starts


# -- a run reporting to every installed tracker, then resumed -------------------------------------

def tracker_env(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    """Offline trackers, files under `tmp`: wandb offline and silent, MLflow on SQLite (mlflow 3
    refuses a file:// store unless told MLFLOW_ALLOW_FILE_STORE; SQLite is its default now)."""
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    for name in ("WANDB_DIR", "WANDB_PROJECT", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        mp.delenv(name, raising=False)
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_CONSOLE", "off")
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def snapshot(out: Path, uri: str) -> dict:
    """What each installed tracker holds now, and log.jsonl."""
    return {"log": logged(out), "settings": settings(out),
            "tracking": json.loads((out / "tracking.json").read_text()),
            "tensorboard": tensorboard_scalars(out) if "tensorboard" in AVAILABLE else None,
            "tb_hparams": tensorboard_hparams(out) if "tensorboard" in AVAILABLE else None,
            "mlflow": mlflow_runs(uri) if "mlflow" in AVAILABLE else None,
            "wandb": wandb_offline(out) if "wandb" in AVAILABLE else None}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_tokenizer):
    """A 6-step run reporting to every installed tracker (snapshot), then its last checkpoint
    removed (as if killed after logging step 6 but before saving it) and the run resumed from
    step 3 (snapshot)."""
    if not AVAILABLE:
        pytest.skip("none of tensorboard, wandb, mlflow is installed")
    tmp = tmp_path_factory.mktemp("tracking")
    init = save_init_dir(tiny_tokenizer, tmp / "init")
    data = write_tiny_squad(tmp / "d.json", copies=4)
    settings_ = dict(model=str(init), train_file=str(data), eval_file=str(data),
                     output_dir=str(tmp / "run"), max_seq_length=64, doc_stride=16,
                     max_query_length=16, batch_size=2, lr=3e-3, log_every=1, progress=False,
                     seed=7, max_steps=6, eval_every=3, save_every=3, keep_checkpoints=5,
                     report_to=",".join(AVAILABLE))
    with pytest.MonkeyPatch.context() as mp:
        uri = tracker_env(mp, tmp)
        out = train(TrainConfig.of(**settings_)).output_dir
        first = snapshot(out, uri)
        shutil.rmtree(out / "checkpoints" / "step-0000006")
        train(TrainConfig.of(**settings_, resume=True))
        resumed = snapshot(out, uri)
    return out, first, resumed


def test_the_run_logs_train_and_eval_records(tracked):
    _, first, _ = tracked
    keys = {key for _, key in first["log"]}
    assert {"train/loss", "train/lr", "train/examples_per_s", "eval/f1", "eval/exact",
            "eval/HasAns_f1", "eval/best_f1_thresh"} <= keys
    assert sorted({step for step, key in first["log"] if key == "eval/f1"}) == [3, 6]
    assert sorted({step for step, key in first["log"] if key == "train/loss"}) == [1, 2, 3, 4, 5, 6]


@pytest.mark.skipif("tensorboard" not in AVAILABLE, reason="tensorboard is not installed")
def test_tensorboard_holds_log_jsonl_and_the_settings(tracked):
    out, first, resumed = tracked
    assert first["tensorboard"] == pytest.approx(first["log"], rel=1e-6)  # float32 scalars
    # One set of hyperparameters, stored when the run started; the resume adds none.
    assert first["tb_hparams"] == [first["settings"]]
    assert resumed["tb_hparams"] == first["tb_hparams"]
    # Resumed: steps 4-6 of the first start are purged; what TensorBoard shows is log.jsonl.
    assert resumed["tensorboard"] == pytest.approx(resumed["log"], rel=1e-6)
    assert resumed["log"][(5, "train/examples_per_s")] != first["log"][(5, "train/examples_per_s")]
    assert len(list((out / "tensorboard" / "gpt2qa").glob("events.out.tfevents.*"))) == 2


@pytest.mark.skipif("mlflow" not in AVAILABLE, reason="mlflow is not installed")
def test_mlflow_holds_log_jsonl_and_the_settings(tracked):
    out, first, resumed = tracked
    (run_,) = first["mlflow"]
    assert run_["name"] == out.name and run_["id"] == first["tracking"]["mlflow"]
    assert run_["status"] == "FINISHED"
    assert {key: values[-1] for key, values in run_["history"].items()} == first["log"]
    assert all(len(values) == 1 for values in run_["history"].values())
    assert run_["params"] == {k: str(v) for k, v in first["settings"].items()}
    # Resumed: the same run (still one), steps 4-6 logged twice, the last time as log.jsonl.
    (again,) = resumed["mlflow"]
    assert again["id"] == run_["id"] and resumed["tracking"] == first["tracking"]
    assert {key: values[-1] for key, values in again["history"].items()} == resumed["log"]
    assert {step for (step, _), v in again["history"].items() if len(v) == 2} == {4, 5, 6}
    assert again["params"] == run_["params"]  # kept from the start: resume is still False
    assert again["params"]["resume"] == "False"


@pytest.mark.skipif("wandb" not in AVAILABLE, reason="wandb is not installed")
def test_wandb_offline_holds_log_jsonl_and_the_settings(tracked):
    out, first, resumed = tracked
    (start,) = first["wandb"]
    assert start["id"] == first["tracking"]["wandb"]
    assert (start["project"], start["name"]) == ("gpt2qa", out.name)
    assert start["history"] == first["log"]
    assert start["config"] == first["settings"]
    # Resumed: a second offline start of the same run id holding the whole history (steps
    # 1-3 sent again from log.jsonl: a killed process takes along what wandb had not written
    # out, its first start's file can be empty), then 4-6 as trained again; and the config
    # again (as resumed).
    assert [s["id"] for s in resumed["wandb"]] == [start["id"]] * 2
    later = resumed["wandb"][1]
    assert later["config"] == resumed["settings"] != first["settings"]
    assert later["config"]["resume"] is True
    assert later["history"] == resumed["log"]
    assert {k: v for k, v in later["history"].items() if k[0] <= 3} == \
        {k: v for k, v in start["history"].items() if k[0] <= 3}


# -- only the main process reports ------------------------------------------------------------------

def test_a_process_that_is_not_the_main_one_starts_no_tracker(tmp_path, tiny_tokenizer,
                                                               monkeypatch):
    if "tensorboard" not in AVAILABLE:
        pytest.skip("tensorboard is not installed")
    from accelerate import Accelerator

    from gpt2qa.runsetup import setup
    from gpt2qa.tasks import for_training

    monkeypatch.setattr(Accelerator, "is_main_process", property(lambda self: False))
    config = TrainConfig.of(model=str(save_init_dir(tiny_tokenizer, tmp_path / "init")),
                            train_file=str(write_tiny_squad(tmp_path / "d.json")),
                            output_dir=str(tmp_path / "run"), max_seq_length=64,
                            doc_stride=16, max_query_length=16, max_steps=1,
                            report_to="tensorboard")
    built = setup(config, for_training(config))
    assert [str(t) for t in built.accelerator.log_with] == ["tensorboard"]
    assert built.log is None and built.accelerator.trackers == []
    assert not (tmp_path / "run").exists()  # nothing written, no tracker folder


@pytest.mark.slow
def test_two_processes_report_once(tmp_path, tiny_tokenizer):
    if not AVAILABLE:
        pytest.skip("none of tensorboard, wandb, mlflow is installed")
    init = save_init_dir(tiny_tokenizer, tmp_path / "init", dropout=0.0)
    data = write_tiny_squad(tmp_path / "d.json", copies=4)
    out, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env.update(PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline",
               WANDB_SILENT="true", WANDB_CONSOLE="off", MLFLOW_TRACKING_URI=uri)
    proc = subprocess.run(
        [sys.executable, "-m", "gpt2qa", "launch", "-n", "2", "train", "--model", str(init),
         "--train-file", str(data), "--eval-file", str(data), "--output-dir", str(out),
         "--max-seq-length", "64", "--doc-stride", "16", "--max-query-length", "16",
         "--batch-size", "4", "--lr", "3e-3", "--log-every", "1", "--no-progress",
         "--max-steps", "4", "--eval-every", "2", "--report-to", ",".join(AVAILABLE)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("reporting to") == 1
    log = logged(out)
    assert {step for step, _ in log} == {1, 2, 3, 4}
    if "tensorboard" in AVAILABLE:
        assert len(list((out / "tensorboard" / "gpt2qa").glob("events.out.tfevents.*"))) == 1
        assert tensorboard_scalars(out) == pytest.approx(log, rel=1e-6)
    if "wandb" in AVAILABLE:
        (start,) = wandb_offline(out)
        assert start["history"] == log
    if "mlflow" in AVAILABLE:
        (run_,) = mlflow_runs(uri)
        assert {key: values[-1] for key, values in run_["history"].items()} == log


# -- HotpotQA's records too ---------------------------------------------------------------------------

@pytest.mark.skipif("tensorboard" not in AVAILABLE, reason="tensorboard is not installed")
def test_hotpotqa_eval_records_reach_the_tracker(tmp_path, tiny_tokenizer):
    from gpt2qa.tasks.hotpotqa.synthetic import generate

    data = tmp_path / "hotpot.json"
    data.write_text(json.dumps(generate("train", 8, seed=5)), encoding="utf-8")
    config = TrainConfig.of(model=str(save_init_dir(tiny_tokenizer, tmp_path / "init")),
                            train_file=str(data), eval_file=str(data),
                            output_dir=str(tmp_path / "run"), max_seq_length=96,
                            max_query_length=24, batch_size=4, log_every=1, progress=False,
                            max_steps=2, eval_every=2, tensorboard=True)
    out = train(config).output_dir
    log = logged(out)
    assert {"eval/joint_f1", "eval/sp_f1", "eval/f1"} <= {key for _, key in log}
    assert tensorboard_scalars(out) == pytest.approx(log, rel=1e-6)


# -- the flag, the alias and the refusals -------------------------------------------------------------

@pytest.mark.parametrize(("report_to", "tensorboard", "expected"), [
    ("none", False, ()),
    ("none", True, ("tensorboard",)),
    ("mlflow, wandb", False, ("wandb", "mlflow")),
    ("tensorboard", True, ("tensorboard",)),  # the alias and the flag: reported once
    ("wandb", True, ("tensorboard", "wandb")),
])
def test_report_to_names_and_the_tensorboard_alias(monkeypatch, report_to, tensorboard, expected):
    monkeypatch.setattr("gpt2qa.tracking.installed", lambda name: True)
    assert requested(report_to, tensorboard) == expected


def test_all_means_the_installed_trackers(monkeypatch):
    monkeypatch.setattr("gpt2qa.tracking.installed", lambda name: name != "wandb")
    assert requested("all") == ("tensorboard", "mlflow")
    monkeypatch.setattr("gpt2qa.tracking.installed", lambda name: False)
    assert requested("all") == ()


@pytest.mark.parametrize("value", ["none,wandb", "all,mlflow", "comet_ml", "", "WandB",
                                   "wandb,,mlflow"])
def test_a_bad_report_to_is_one_line(capsys, tmp_path, value):
    with pytest.raises(GPT2QAError, match="report_to must be none, all, or one or more of "
                                          "tensorboard, wandb, mlflow"):
        TrainConfig.of(train_file="x.json", report_to=value)
    code, _, err = run(capsys, "train", "--train-file", "x.json", "--report-to", value,
                       "--output-dir", str(tmp_path / "run"))
    assert "report_to must be" in one_line_error(code, err)


@pytest.mark.parametrize(("argv", "module", "flag"), [
    (["--report-to", "wandb"], "wandb", "--report-to wandb"),
    (["--report-to", "tensorboard,mlflow"], "mlflow", "--report-to mlflow"),
    (["--report-to", "tensorboard"], "tensorboard", "--report-to tensorboard"),
    (["--tensorboard"], "tensorboard", "--tensorboard"),
])
def test_a_missing_extra_is_one_line_before_training_starts(capsys, tmp_path, monkeypatch,
                                                            argv, module, flag):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    real = installed  # ... and the other trackers named as if installed
    monkeypatch.setattr("gpt2qa.tracking.installed", lambda name: name != module or real(name))
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--model", str(tmp_path / "no-such-model"),
                       "--train-file", str(write_tiny_squad(tmp_path / "d.json")),
                       "--output-dir", str(out), *argv)
    line = one_line_error(code, err)
    assert f"{flag} needs the {module} package: pip install 'gpt2qa[{module}]'" in line
    assert not out.exists()  # before the data, the model or the run folder


@pytest.mark.skipif("mlflow" not in AVAILABLE, reason="mlflow is not installed")
def test_a_tracker_that_cannot_start_is_one_line_and_leaves_no_folder(capsys, tmp_path,
                                                                     tiny_tokenizer,
                                                                     monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nonsense://store")
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--model", str(save_init_dir(tiny_tokenizer,
                                                                     tmp_path / "init")),
                       "--train-file", str(write_tiny_squad(tmp_path / "d.json")),
                       "--output-dir", str(out), "--max-seq-length", "64", "--doc-stride",
                       "16", "--max-query-length", "16", "--max-steps", "1",
                       "--report-to", "mlflow")
    assert "--report-to: mlflow could not start (" in one_line_error(code, err)
    assert not out.exists()


def test_a_failing_tracker_is_dropped_and_training_goes_on():
    seen: list = []

    class Fake:
        def __init__(self, name, fail):
            self.name, self.fail = name, fail

        def log(self, values, step):
            if self.fail:
                raise ConnectionError("server went away\nmore detail")
            seen.append((self.name, step, values))

    warnings: list[str] = []
    accelerator = SimpleNamespace(trackers=[Fake("mlflow", True), Fake("tensorboard", False)])
    tracking = Tracking(accelerator, warnings.append)
    tracking.log({"event": "setup", "step": 0, "total_steps": 9})  # setup: hyperparameters only
    tracking.log({"event": "train", "step": 2, "loss": 1.5, "epoch": 0, "note": "x", "ok": True})
    tracking.log({"event": "eval", "step": 3, "f1": 50.0})
    assert seen == [("tensorboard", 2, {"train/loss": 1.5, "train/epoch": 0}),
                    ("tensorboard", 3, {"eval/f1": 50.0})]
    assert warnings == ["--report-to mlflow: stopped reporting at step 2 (ConnectionError: "
                        "server went away); log.jsonl has every record"]
    assert tracking.names == ("tensorboard",)
