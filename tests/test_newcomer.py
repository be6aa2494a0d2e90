"""A newcomer's first hour: flags, help, the report on the demo folder, the learning-curve
legend and hub ids that cannot be reached."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from gpt2qa.cli import build_parser, main
from gpt2qa.errors import GPT2QAError

COMMANDS = ("demo", "train", "predict", "evaluate", "check-spans", "zero-shot", "serve", "study",
            "report")


def usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_a_mistyped_flag_prints_the_subcommands_usage_with_a_suggestion(capsys) -> None:
    err = usage_error(capsys, ["evaluate", "d.json", "p.json", "--out-fil", "m.json"])
    assert err.startswith("usage: gpt2qa evaluate ")
    assert "unrecognized arguments: --out-fil m.json" in err
    assert "did you mean --out-file?" in err


def test_abbreviated_flags_are_refused(capsys) -> None:
    err = usage_error(capsys, ["demo", "--step", "3"])  # would have run as --steps 3
    assert err.startswith("usage: gpt2qa demo ") and "did you mean --steps?" in err


def test_every_parser_refuses_abbreviations() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert not parser.allow_abbrev
    assert set(COMMANDS) <= set(subparsers.choices)
    assert all(not p.allow_abbrev for p in subparsers.choices.values())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_shows_its_default_in_help(capsys, command: str) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    options = text.split("options:")[1]
    entries = re.split(r"\n  (?=-)", options)[1:]
    assert entries
    for entry in entries:
        if entry.startswith("-h, --help"):
            continue
        flat = " ".join(entry.split())
        assert "(default" in flat or "(required)" in flat, f"{command}: {flat}"


# -- report on the demo folder ------------------------------------------------------------------

def fake_run(path: Path) -> Path:
    from gpt2qa.report import REQUIRED_FILES

    path.mkdir(parents=True)
    for name in REQUIRED_FILES:
        (path / name).write_text("{}")
    return path


def test_report_finds_the_one_run_inside_a_folder(tmp_path: Path) -> None:
    from gpt2qa.report import find_run_dir

    demo = tmp_path / "demo"
    (demo / "data").mkdir(parents=True)
    run = fake_run(demo / "run")
    assert find_run_dir(demo) == run
    assert find_run_dir(run) == run
    fake_run(demo / "run2")
    with pytest.raises(GPT2QAError, match="holds several runs; name them: .*run .*run2"):
        find_run_dir(demo)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_run_dir(empty) == empty  # load_run then names the missing file
    with pytest.raises(GPT2QAError, match="missing metrics.json"):
        from gpt2qa.report import load_run

        load_run(empty, "x")


# -- the learning-curve legend ------------------------------------------------------------------

def test_learning_curve_legend_does_not_cover_the_axes(tmp_path: Path) -> None:
    from gpt2qa import tasks
    from gpt2qa.plots import learning_curve_figure
    from helpers import _pyplot

    log = tmp_path / "log.jsonl"
    records = [{"event": "train", "step": s, "loss": 6.0 / s} for s in range(1, 101)]
    records += [{"event": "eval", "step": s, "f1": 30.0 + s / 5, "tuned_f1": 35.0 + s / 5,
                 "null_baseline_f1": 33.3} for s in (25, 50, 75, 100)]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    fig = learning_curve_figure(log, tasks.get("squad").report)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
        assert len(legends) == 1
        box = legends[0].get_window_extent(renderer)
        assert len(legends[0].get_texts()) == 4  # loss, F1, tuned F1, baseline
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer))
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)
    finally:
        _pyplot().close(fig)


# -- hub ids that cannot be reached -------------------------------------------------------------

def test_unreachable_hub_fails_at_once(monkeypatch, capsys, squad_v2_file: Path,
                                       tmp_path: Path) -> None:
    from gpt2qa.tokenizer import hub_kwargs, hub_reachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert not hub_reachable()
    # trust_remote_code=False always (W3-2): a downloaded model never runs its own code.
    assert hub_kwargs("no-such-org/no-such-model") == {"local_files_only": True,
                                                      "trust_remote_code": False}
    assert hub_kwargs(str(tmp_path)) == {"trust_remote_code": False}  # a local dir: no hub
    from transformers import AutoTokenizer  # noqa: F401  (import time is not the hub's)

    start = time.monotonic()
    code = main(["check-spans", str(squad_v2_file), "--tokenizer", "no-such-org/no-such-tok"])
    err = capsys.readouterr().err
    assert time.monotonic() - start < 15
    assert code == 2 and "cannot be reached" in err and len(err.strip().splitlines()) == 1
    code = main(["zero-shot", "--model", "no-such-org/no-such-model", "--data",
                 str(squad_v2_file), "--out-dir", str(tmp_path / "zs")])
    assert code == 2 and "no-such-org/no-such-model" in capsys.readouterr().err
    assert not (tmp_path / "zs").exists()  # a failed run leaves no empty folder
