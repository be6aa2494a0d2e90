"""Experiment tracking (`--report-to`, Trainer's flag and values): the records of log.jsonl,
also sent to TensorBoard, Weights & Biases or MLflow through Accelerate's trackers.

What a tracker gets: every train and eval record of log.jsonl as metrics named EVENT/KEY
(train/loss, train/lr, eval/f1, eval/HasAns_exact, ...) at the record's step, numbers only;
and, once, when its run starts, the run's settings as hyperparameters: every flat setting by
its flag's name (`nesting.flatten`; task is the resolved one, as in train_config.json) and the
setup record's values under setup/ (the resolved schedule, the parameter counts). A value
that is not a number, string or boolean is sent as text, as Trainer does (an unset file is
"None").

Where: the project is gpt2qa (WANDB_PROJECT renames it, as it does Trainer's) and the run is
named after the output directory. TensorBoard writes OUTPUT_DIR/tensorboard/PROJECT; wandb
keeps its local files under OUTPUT_DIR/wandb unless WANDB_DIR says otherwise (with
WANDB_MODE=offline nothing leaves the machine); mlflow writes to MLFLOW_TRACKING_URI (mlflow's
default: ./mlflow.db), in the experiment MLFLOW_EXPERIMENT_NAME or else the project.

Only the main process reports: the run directory's log, and with it the trackers, exist on
the main process alone (`runsetup`), and Accelerate's trackers act on the main process only.

Resume: the ids of the wandb and mlflow runs are kept in OUTPUT_DIR/tracking.json, and a run
continued with --resume reports to the same tracker runs from its checkpoint's step on:
- TensorBoard: a new event file in the same folder, written with purge_step just past the
  checkpoint, so TensorBoard hides what the killed run logged after it (log.jsonl drops those
  lines too);
- wandb: the same run id (resume="allow"). wandb ignores a step below the last one it holds;
  those are the steps the killed run had already logged, with the same values (training
  resumes bit for bit) but for the timing. What the killed process had not yet handed over
  is sent again from log.jsonl (`Tracking.catch_up`). Offline, each start is a folder of its
  own under wandb/, with the same run id, and each holds the history from step 1;
- mlflow: the same run, started again; the steps between the checkpoint and the kill appear
  twice in its metric history.
The hyperparameters are stored when a tracker's run starts; a resumed run keeps them (mlflow
refuses to change a parameter, and --resume itself is one), except wandb's config, which each
start stores again (a killed process may have taken it along).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from gpt2qa.errors import GPT2QAError
from gpt2qa.io import write_json_atomic, writing
from gpt2qa.reading import read_json_object

TRACKERS: tuple[str, ...] = ("tensorboard", "wandb", "mlflow")
"""`--report-to`'s trackers: Accelerate's tracker names, each also the name of the package it
needs and of gpt2qa's optional extra that installs it."""
STATE_NAME = "tracking.json"
"""The run directory's record of its wandb and mlflow run ids, for --resume."""
DEFAULT_PROJECT = "gpt2qa"
"""The project (wandb), experiment (mlflow) and folder (TensorBoard) a run is filed under."""


def report_to_valid(value: object) -> bool:
    """Whether `value` is a `--report-to` value: none, all, or tracker names joined by commas
    (none and all stand alone, as in Trainer)."""
    if not isinstance(value, str):
        return False
    names = [part.strip() for part in value.split(",")]
    if len(names) == 1 and names[0] in ("none", "all"):
        return True
    return all(name in TRACKERS for name in names)


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it. A module set to None in
    sys.modules (how a test hides an installed package) counts as missing."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def requested(report_to: str, tensorboard: bool = False) -> tuple[str, ...]:
    """The trackers a run reports to, in TRACKERS order: those --report-to names (all: those of
    TRACKERS installed, as Trainer's all), and tensorboard for --tensorboard. A named tracker
    whose package is missing stops the run before it starts, in one line naming the extra."""
    asked = {part.strip() for part in report_to.split(",")} - {"none"}
    named = (asked - {"all"}) | ({"tensorboard"} if tensorboard else set())
    for name in TRACKERS:
        if name in named and not installed(name):
            flag = f"--report-to {name}" if name in asked else "--tensorboard"
            raise GPT2QAError(f"{flag} needs the {name} package: pip install 'gpt2qa[{name}]'")
    if "all" in asked:
        named |= {name for name in TRACKERS if installed(name)}
    return tuple(name for name in TRACKERS if name in named)


def project_name() -> str:
    return os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT


def metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """What trackers get of a log.jsonl record: a train or eval record's numbers as EVENT/KEY
    (its step goes with them, not among them); nothing of any other record."""
    event = record.get("event")
    if event not in ("train", "eval"):
        return {}
    return {f"{event}/{key}": value for key, value in record.items()
            if key not in ("event", "step") and isinstance(value, (int, float))
            and not isinstance(value, bool)}


def hyperparameters(settings: Mapping[str, Any], setup: Mapping[str, Any]) -> dict[str, Any]:
    """The run's settings as trackers store them: `settings` (the flat ones, as in
    train_config.json) and the setup record's values under setup/; anything but a number,
    string or boolean as text."""
    values = {**settings, **{f"setup/{key}": value for key, value in setup.items()
                             if key not in ("event", "step")}}
    return {key: value if isinstance(value, (bool, int, float, str)) else str(value)
            for key, value in values.items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class Tracking:
    """The started trackers of a run (main process only): `log` sends a log.jsonl record,
    `finish` closes them."""

    def __init__(self, accelerator: Any, warn: Callable[[str], None],
                 resumed: Collection[str] = ()) -> None:
        self.accelerator = accelerator
        self.warn = warn
        self.resumed = frozenset(resumed)
        """The trackers whose earlier run this start continues (wandb, mlflow)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(tracker.name for tracker in self.accelerator.trackers)

    def log(self, record: Mapping[str, Any]) -> None:
        """Send `record` (`metrics`) to each tracker at its step. A tracker that fails (a
        server gone away) is dropped with one line, and training goes on: log.jsonl keeps
        every record. So each tracker is called on its own, not through Accelerator.log."""
        values = metrics(record)
        if not values:
            return
        for tracker in list(self.accelerator.trackers):
            try:
                tracker.log(values, step=int(record["step"]))
            except Exception as exc:
                self.accelerator.trackers.remove(tracker)
                self.warn(f"--report-to {tracker.name}: stopped reporting at step "
                          f"{record['step']} ({_first_line(exc)}); log.jsonl has every record")

    def catch_up(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Send a continued wandb run the records of log.jsonl (those kept up to the
        checkpoint) from the first step wandb does not hold on. A killed process takes with it
        what wandb had not yet written out (offline, its file is written in blocks), and wandb
        ignores a step below its last, so without this the steps before the checkpoint could
        be missing. Offline, wandb holds nothing at start, and every record is sent again."""
        for tracker in self.accelerator.trackers:
            if tracker.name != "wandb" or "wandb" not in self.resumed:
                continue
            first = int(getattr(tracker.tracker, "starting_step", 0) or 0)
            for record in records:
                values = metrics(record)
                if values and int(record["step"]) >= first:
                    tracker.log(values, step=int(record["step"]))

    def finish(self) -> None:
        """Close every tracker (their files flushed, the wandb and mlflow runs finished); a
        second call does nothing. Accelerator.end_training would do this too, but it also
        destroys the process group, which train() does not own."""
        trackers, self.accelerator.trackers = list(self.accelerator.trackers), []
        for tracker in trackers:
            tracker.finish()


def start(accelerator: Any, out: Path, hparams: Mapping[str, Any], resume_step: int | None,
          warn: Callable[[str], None]) -> Tracking | None:
    """Start the trackers the accelerator was made with (`log_with`), on the main process:
    a fresh tracker run gets `hparams`; with `resume_step` (a checkpoint's step) the runs in
    tracking.json are continued (module docstring). None when there is no tracker."""
    names = tuple(str(name) for name in accelerator.log_with)
    if not names:
        return None
    state = _read_state(out, warn) if resume_step is not None else {}
    resumed = _resumable(state, names, warn)
    kwargs = _init_kwargs(names, out, resumed, resume_step)
    try:
        with writing(out):
            accelerator.init_trackers(project_name(), init_kwargs=kwargs)
            for tracker in accelerator.trackers:
                if not _keeps_hyperparameters(tracker.name, resumed, resume_step):
                    tracker.store_init_configuration(dict(hparams))
    except GPT2QAError:
        raise
    except Exception as exc:
        culprit = type(exc).__module__.split(".")[0]
        raise GPT2QAError(f"--report-to: {culprit if culprit in TRACKERS else 'a tracker'} "
                          f"could not start ({_first_line(exc)})") from None
    write_json_atomic(out / STATE_NAME, {**state, **_run_ids(accelerator)})
    return Tracking(accelerator, warn, resumed)


def _keeps_hyperparameters(name: str, resumed: Collection[str], resume_step: int | None) -> bool:
    """Whether a continued tracker run keeps the hyperparameters it started with: mlflow's
    (it refuses to change a parameter) and TensorBoard's (each store is a run of its own in
    its hparams view). wandb's config is stored again: a killed process may have taken it
    along before wandb wrote it out, and wandb lets it change."""
    return (name == "mlflow" and name in resumed) or (name == "tensorboard"
                                                      and resume_step is not None)


def _read_state(out: Path, warn: Callable[[str], None]) -> dict[str, str]:
    """tracking.json's run ids; none when it is missing or unreadable (new tracker runs)."""
    path = out / STATE_NAME
    if not path.exists():
        return {}
    try:
        state = read_json_object(path)
    except GPT2QAError as exc:
        warn(f"--resume: {exc}; the trackers start new runs")
        return {}
    return {key: value for key, value in state.items()
            if key in TRACKERS and isinstance(value, str) and value}


def _resumable(state: Mapping[str, str], names: tuple[str, ...],
               warn: Callable[[str], None]) -> dict[str, str]:
    """The tracker runs to continue: wandb's by id (resume="allow" makes it when it is gone),
    mlflow's when its store still holds it (else a new run, said in one line)."""
    out = {name: state[name] for name in ("wandb", "mlflow") if name in names and name in state}
    if "mlflow" in out:
        import mlflow

        try:
            mlflow.MlflowClient().get_run(out["mlflow"])
        except Exception:
            warn(f"--resume: mlflow run {out.pop('mlflow')} is not in "
                 f"{mlflow.get_tracking_uri()}; starting a new mlflow run")
    return out


def _init_kwargs(names: tuple[str, ...], out: Path, resumed: Mapping[str, str],
                 resume_step: int | None) -> dict[str, dict[str, Any]]:
    """Each tracker's arguments (Accelerate's init_kwargs): the run's name, wandb's folder,
    the runs to continue and TensorBoard's purge step."""
    name = Path(out).resolve().name
    kwargs: dict[str, dict[str, Any]] = {"tensorboard": {}, "wandb": {"name": name},
                                         "mlflow": {"run_name": name}}
    if (out / "tensorboard" / project_name()).exists():
        # Hide what an earlier start logged past the step this one continues from.
        kwargs["tensorboard"]["purge_step"] = (resume_step or 0) + 1
    if not os.environ.get("WANDB_DIR"):
        kwargs["wandb"]["dir"] = str(out)
    if "wandb" in resumed:
        kwargs["wandb"].update(id=resumed["wandb"], resume="allow")
    if "mlflow" in resumed:
        kwargs["mlflow"]["run_id"] = resumed["mlflow"]
    return {tracker: kwargs[tracker] for tracker in names}


def _run_ids(accelerator: Any) -> dict[str, str]:
    """The started wandb and mlflow runs' ids, for tracking.json."""
    ids = {}
    for tracker in accelerator.trackers:
        if tracker.name == "wandb":
            ids["wandb"] = str(tracker.tracker.id)
        elif tracker.name == "mlflow":
            ids["mlflow"] = str(tracker.tracker.info.run_id)
    return ids
