"""The study: config checks, grid filters, calibration, aggregation, a tiny real run, resume."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from gpt2qa.cli.flags import add_study_parser
from gpt2qa.errors import GPT2QAError
from gpt2qa.study import (
    Cell,
    GridSettings,
    StudyConfig,
    cell_train_config,
    grid_cells,
    load_study_config,
    mean_spread,
    na_auroc,
    parse_only,
    prepare_inputs,
    reliability,
    run_study,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY_YAML = """
data: {seed: 0, n_train: 12, n_dev: 3, n_hard: 2}
model: {n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 400}
train: {steps: 8, batch_size: 8, lr: 3e-3, max_seq_length: 96, doc_stride: 32,
        max_query_length: 24, log_every: 2, save_every: 4, eval_batch_size: 32}
grid: {layouts: [question-first], null_positions: [first, last], heads: [linear], seeds: [0]}
eval_splits: [dev, hard]
"""


def tiny_config(tmp_path: Path, text: str = TINY_YAML) -> StudyConfig:
    path = tmp_path / "study.yaml"
    path.write_text(text, encoding="utf-8")
    return load_study_config(path)


# --------------------------------------------------------------------------------------------
# Calibration and aggregation (pure)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("probs", "has_ans", "n_bins", "ece"), [
    # 1 of 4 unanswerable, all predicted 0.25: perfectly calibrated.
    ([0.25] * 4, [False, True, True, True], 10, 0.0),
    # Confident and always wrong: 1.0 on answerable, 0.0 on unanswerable.
    ([1.0, 1.0, 0.0, 0.0], [True, True, False, False], 10, 1.0),
    # The module docstring's worked example.
    ([0.2, 0.2, 0.8, 0.8], [True, True, False, True], 2, 0.25),
    # Constant 0.9, half unanswerable: one bin, gap 0.4.
    ([0.9] * 10, [False] * 5 + [True] * 5, 10, 0.4),
    # Two bins, each calibrated on its own.
    ([0.05] * 20 + [0.95] * 20, [True] * 20 + [False] * 20, 10, 0.05),
])
def test_reliability_ece(probs, has_ans, n_bins, ece):
    bins, got = reliability(probs, has_ans, n_bins)
    assert got == pytest.approx(ece)
    assert len(bins) == n_bins
    assert sum(b.count for b in bins) == len(probs)


def test_reliability_bins_edges_and_empty_bins():
    bins, _ = reliability([0.0, 0.1, 0.99, 1.0], [True, True, False, False], 10)
    counts = [b.count for b in bins]
    # 0.1 opens bin 1; 1.0 belongs to the last, closed bin.
    assert counts == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[2].mean_prob is None and bins[2].frac_unanswerable is None
    assert bins[9].mean_prob == pytest.approx(0.995) and bins[9].frac_unanswerable == 1.0
    assert (bins[0].lo, bins[0].hi) == (0.0, 0.1)


@pytest.mark.parametrize(("probs", "has_ans", "n_bins", "needle"), [
    ([0.5], [True, False], 10, "1 probabilities but 2 labels"),
    ([1.5], [True], 10, "not in [0, 1]"),
    ([0.5], [True], 0, "n_bins must be at least 1"),
    ([], [], 10, "no questions"),
])
def test_reliability_refuses_bad_input(probs, has_ans, n_bins, needle):
    with pytest.raises(GPT2QAError, match=re_escape(needle)):
        reliability(probs, has_ans, n_bins)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(("probs", "has_ans", "auroc"), [
    ([0.9, 0.4, 0.4, 0.1], [False, False, True, True], 0.875),  # the docstring's example
    ([0.9, 0.8, 0.2], [False, False, True], 1.0),
    ([0.1, 0.2, 0.9], [False, False, True], 0.0),
    ([0.5] * 4, [False, True, False, True], 0.5),
    ([0.3, 0.6], [True, True], None),  # no unanswerable question
])
def test_na_auroc(probs, has_ans, auroc):
    got = na_auroc(probs, has_ans)
    assert got == (None if auroc is None else pytest.approx(auroc))


@pytest.mark.parametrize(("values", "mean", "std"), [
    ([60.0, 70.0], 65.0, 5.0),
    ([50.0], 50.0, 0.0),
    ([1.0, 2.0, 3.0], 2.0, math.sqrt(2 / 3)),  # population std, not sample std (1.0)
])
def test_mean_spread_is_population_std(values, mean, std):
    got = mean_spread(values)
    assert got["mean"] == pytest.approx(mean) and got["std"] == pytest.approx(std)
    assert got["values"] == values and got["min"] == min(values) and got["max"] == max(values)


def _write_cell(out: Path, cell: Cell, f1: float, na_probs: dict[str, float]) -> None:
    d = out / "cells" / cell.name
    d.mkdir(parents=True)
    (d / "cell.json").write_text(json.dumps(dataclasses.asdict(cell)))
    (d / "metrics.json").write_text(json.dumps(
        {"exact": f1 - 5, "f1": f1, "total": 3, "HasAns_f1": f1, "NoAns_f1": 100.0,
         "best_f1": f1 + 1, "best_f1_thresh": 0.5, "tuned_f1": f1 + 2,
         "tuned_null_score_diff_threshold": 0.0, "null_baseline_f1": 100 / 3}))
    (d / "na_probs.json").write_text(json.dumps(na_probs))


def test_summarize_aggregates_hand_made_cells(tmp_path, squad_v2_dict):
    # squad_v2_dict: q1 and q3 answerable, q2 unanswerable.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dev.json").write_text(json.dumps(squad_v2_dict()))
    calibrated = {"q1": 0.0, "q2": 1.0, "q3": 0.0}      # ECE 0
    inverted = {"q1": 1.0, "q2": 0.0, "q3": 1.0}        # ECE 1
    _write_cell(tmp_path, Cell("question-first", "last", "linear", 0), 60.0, calibrated)
    _write_cell(tmp_path, Cell("question-first", "last", "linear", 1), 70.0, inverted)
    _write_cell(tmp_path, Cell("context-first", "first", "bilstm", 0), 80.0, calibrated)
    # Unfinished (no cell.json): left out.
    (tmp_path / "cells" / "context-first__first__bilstm__seed1").mkdir()
    rows = summarize(tmp_path)
    assert [(r["layout"], r["split"]) for r in rows] == [("context-first", "dev"),
                                                         ("question-first", "dev")]
    second = rows[1]
    assert second["seeds"] == [0, 1]
    assert second["f1"]["mean"] == pytest.approx(65.0) and second["f1"]["std"] == pytest.approx(5.0)
    assert second["tuned_f1"]["mean"] == pytest.approx(67.0)
    assert second["ece"]["mean"] == pytest.approx(0.5) and second["ece"]["std"] == pytest.approx(0.5)
    assert second["auroc"]["values"] == [pytest.approx(1.0), pytest.approx(0.0)]
    assert second["null_baseline_f1"] == pytest.approx(100 / 3)
    assert second["dev_threshold_f1"] is None
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert "population" in saved["spread"] and len(saved["cells"]) == 3
    md = (tmp_path / "summary.md").read_text()
    # Sorted by mean F1: 80 before 65.
    assert md.index("80.0 ± 0.0") < md.index("65.0 ± 5.0")
    assert "all-no-answer baseline F1 = 33.3" in md and "## ECE per cell" in md
    assert "## NA AUROC per cell" in md


# --------------------------------------------------------------------------------------------
# Config and grid
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "needle"), [
    ("train: {steps: 0}", "train.steps: must be at least 1; got 0"),
    ("train: {steps: ten}", "train.steps: expected an integer, got str 'ten'"),
    ("train: {lr: fast}", "train.lr: expected a number"),
    ("train: {stepz: 3}", "train.stepz: unknown setting"),
    ("train: [1, 2]", "train: expected a mapping of settings"),
    ("bogus: 1", "bogus: unknown section"),
    ("model: {n_embd: 30, n_head: 4}", "model.n_embd: 30 is not a multiple of model.n_head"),
    ("model: {vocab_size: 100}", "model.vocab_size: must be at least 300"),
    ("grid: {layouts: [sideways]}", "grid.layouts: 'sideways' is not one of"),
    ("grid: {heads: [linear, linear]}", "grid.heads: lists a value twice"),
    ("grid: {seeds: []}", "grid.seeds: must list at least one value"),
    ("grid: {seeds: 3}", "grid.seeds: expected a list"),
    ("eval_splits: [hard]", "eval_splits: must include dev"),
    ("eval_splits: [dev, test]", "eval_splits: 'test' is not one of dev, hard"),
    ("data: {n_train: 1", "invalid YAML at line"),
    ("- a\n- b", "expected a mapping"),
])
def test_config_errors_are_one_line(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GPT2QAError) as info:
        load_study_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and needle in message


def test_config_file_in_repo_is_the_full_grid():
    config = load_study_config(ROOT / "configs" / "study-synthetic.yaml")
    assert len(grid_cells(config)) == 36
    assert config.eval_splits == ("dev", "hard")
    assert config.grid.seeds == (0, 1, 2)


def test_the_head_axis_config_has_a_generative_cell_only_where_it_can_abstain(tmp_path):
    config = load_study_config(ROOT / "configs" / "study-heads.yaml")
    assert [(c.head, c.seed) for c in grid_cells(config)] == [
        (head, seed) for seed in (0, 1, 2) for head in ("bilstm", "linear", "generative")]
    every_null = tmp_path / "grid.yaml"
    every_null.write_text((ROOT / "configs" / "study-heads.yaml").read_text().replace(
        "null_positions: [last]", "null_positions: [first, last, classifier]"))
    cells = grid_cells(load_study_config(every_null))
    assert {c.null_position for c in cells if c.head == "generative"} == {"last"}
    assert len(cells) == 3 * (2 * 3 + 1)


@pytest.mark.slow
def test_a_generative_cell_runs_and_is_summarised(tmp_path):
    text = TINY_YAML.replace("null_positions: [first, last], heads: [linear]",
                             "null_positions: [first, last], heads: [linear, generative]")
    config = tiny_config(tmp_path, text)
    result = run_study(config, tmp_path / "D", echo=lambda _line: None)
    names = [o.cell.name for o in result.outcomes]
    assert "question-first__last__generative__seed0" in names
    assert "question-first__first__generative__seed0" not in names
    cell = tmp_path / "D" / "cells" / "question-first__last__generative__seed0"
    assert json.loads((cell / "model" / "gpt2qa.json").read_text())["head"] == "generative"
    summary = json.loads((tmp_path / "D" / "summary.json").read_text())
    assert "generative" in json.dumps(summary)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    config = tiny_config(tmp_path)  # TINY_YAML writes lr: 3e-3, which YAML 1.1 reads as text
    assert config.train.lr == pytest.approx(3e-3)


def test_missing_config_file(tmp_path):
    with pytest.raises(GPT2QAError, match="cannot read study config"):
        load_study_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(("items", "expected"), [
    ([], {}),
    (["null=first"], {"null_position": ("first",)}),
    (["layout=context-first", "seed=0", "seed=2"],
     {"layout": ("context-first",), "seed": ("0", "2")}),
    (["null-position=classifier", "head=bilstm"],
     {"null_position": ("classifier",), "head": ("bilstm",)}),
])
def test_parse_only(items, expected):
    assert parse_only(items, GridSettings()) == expected


@pytest.mark.parametrize(("items", "needle"), [
    (["null"], "expected KEY=VALUE"),
    (["colour=red"], "expected KEY=VALUE"),
    (["seed=7"], "'7' is not in the grid's seed values"),
    (["head=transformer"], "'transformer' is not in the grid's head values"),
])
def test_parse_only_errors(items, needle):
    with pytest.raises(GPT2QAError, match=re_escape(needle)):
        parse_only(items, GridSettings())


def test_grid_cells_order_and_filter():
    config = StudyConfig()
    cells = grid_cells(config)
    assert len(cells) == 36 and len({c.name for c in cells}) == 36
    # Seed by seed, so an interrupted study has whole seeds.
    assert [c.seed for c in cells] == [0] * 12 + [1] * 12 + [2] * 12
    assert cells[0].name == "question-first__first__linear__seed0"
    only = parse_only(["null=first", "seed=1"], config.grid)
    picked = grid_cells(config, only)
    assert len(picked) == 4
    assert all(c.null_position == "first" and c.seed == 1 for c in picked)


# --------------------------------------------------------------------------------------------
# A tiny real study: 2 cells x 1 seed
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    config = tiny_config(tmp)
    lines: list[str] = []
    result = run_study(config, tmp / "D", echo=lines.append)
    return config, tmp / "D", result, lines


def _png_ok(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, path


@pytest.mark.slow
def test_study_runs_cells_and_writes_summary(tiny_study):
    from gpt2qa.data import load_squad
    from gpt2qa.metrics import evaluate_v2

    config, out, result, lines = tiny_study
    assert [o.action for o in result.outcomes] == ["started", "started"]
    assert len(lines) == 2 and "dev F1" in lines[0] and "hard F1" in lines[0]
    for name in ("data/train.json", "data/dev.json", "data/hard.json", "tokenizer/tokenizer.json",
                 "init-seed0/model.safetensors", "study_config.json"):
        assert (out / name).is_file(), name
    hard = load_squad(out / "data" / "hard.json").examples
    for cell in grid_cells(config):
        d = out / "cells" / cell.name
        for name in ("cell.json", "metrics.json", "na_probs.json", "model/gpt2qa.json",
                     "hard_metrics.json", "hard_predictions.json", "hard_na_probs.json",
                     "log.jsonl", "train_config.json"):
            assert (d / name).is_file(), (cell.name, name)
        assert not (d / "checkpoints").exists()
        train_config = json.loads((d / "train_config.json").read_text())
        assert (train_config["layout"], train_config["null_position"], train_config["head"],
                train_config["seed"]) == (cell.layout, cell.null_position, cell.head, cell.seed)
        assert train_config["model"] == str(out / "init-seed0")  # shared init per seed
        # hard_metrics.json is what the official rules give for the saved files.
        metrics = json.loads((d / "hard_metrics.json").read_text())
        preds = json.loads((d / "hard_predictions.json").read_text())
        na = json.loads((d / "hard_na_probs.json").read_text())
        again = evaluate_v2(hard, preds, na)
        assert metrics["f1"] == pytest.approx(again["f1"])
        assert metrics["best_f1"] == pytest.approx(again["best_f1"])
        assert metrics["total"] == len(hard)
        for key in ("dev_threshold_f1", "tuned_f1", "null_baseline_f1",
                    "tuned_null_score_diff_threshold"):
            assert key in metrics
    assert len(result.summary) == 4  # 2 configurations x 2 splits
    assert {r["split"] for r in result.summary} == {"dev", "hard"}
    md = (out / "summary.md").read_text()
    assert "## dev" in md and "## hard" in md and "±" in md
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["cells"]) == 4
    assert all(0.0 <= c["ece"] <= 1.0 and len(c["reliability"]) == 10 for c in summary["cells"])
    _png_ok(out / "study.png")
    _png_ok(out / "reliability.png")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.slow
def test_rerun_skips_finished_cells(tiny_study):
    config, out, _, _ = tiny_study
    files = sorted((out / "cells").glob("*/*metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in files}
    result = run_study(config, out, echo=lambda _: None)
    assert [o.action for o in result.outcomes] == ["skipped", "skipped"]
    assert {p: p.stat().st_mtime_ns for p in files} == before


@pytest.mark.slow
def test_cli_parser_runs_the_study(tiny_study, capsys):
    config, out, _, _ = tiny_study
    parser = argparse.ArgumentParser()
    add_study_parser(parser.add_subparsers(dest="command"))
    cfg = out.parent / "study.yaml"
    args = parser.parse_args(["study", "--config", str(cfg), "--out-dir", str(out),
                              "--only", "null=first", "--max-cells", "1"])
    assert args.func(args) == 0
    assert "0 cell(s) run, 1 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_changed_settings_in_same_dir_are_refused(tiny_study, tmp_path):
    _, out, _, _ = tiny_study
    changed = tiny_config(tmp_path, TINY_YAML.replace("steps: 8", "steps: 9"))
    with pytest.raises(GPT2QAError, match=r"train\.steps=8, the config asks for 9"):
        run_study(changed, out, echo=lambda _: None)


@pytest.mark.slow
def test_partial_cells_resume_or_restart(tmp_path):
    from gpt2qa.tasks import fine_tune as train

    config = tiny_config(tmp_path)
    out = tmp_path / "D"
    inputs = prepare_inputs(config, out)
    first, second = grid_cells(config)
    # Cell 1: as if killed after its step-4 checkpoint, before any evaluation: train 4 of
    # the 8 steps without an eval file (so no metrics.json, and no best score to restore).
    half = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=4))
    cell_dir = out / "cells" / first.name
    train(dataclasses.replace(cell_train_config(half, first, inputs, cell_dir), eval_file=None))
    assert not (cell_dir / "metrics.json").exists()
    # Tag the logged step 2: a resume keeps the log up to its checkpoint, a restart wipes it.
    log_path = cell_dir / "log.jsonl"
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    records = [{**r, "tag": "kept"} if r["step"] == 2 else r for r in records]
    log_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    # Cell 2: a partial directory with nothing to resume from.
    junk = out / "cells" / second.name
    junk.mkdir(parents=True)
    (junk / "log.jsonl").write_text('{"event": "train", "step": 1, "loss": 9.9}\n')

    result = run_study(config, out, echo=lambda _: None)
    assert [o.action for o in result.outcomes] == ["resumed", "started"]
    records = [json.loads(line) for line in (cell_dir / "log.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["event"] == "train"]
    assert train_steps == [2, 4, 6, 8]
    assert next(r for r in records if r["step"] == 2).get("tag") == "kept"
    assert json.loads((cell_dir / "metrics.json").read_text())["step"] == 8
    assert (cell_dir / "hard_metrics.json").is_file() and (cell_dir / "cell.json").is_file()
    junk_log = [json.loads(line) for line in (junk / "log.jsonl").read_text().splitlines()]
    assert all(r.get("loss") != 9.9 for r in junk_log)
    # A finished cell whose hard metrics were lost is only re-evaluated.
    (cell_dir / "hard_metrics.json").unlink()
    again = run_study(config, out, echo=lambda _: None)
    assert [o.action for o in again.outcomes] == ["evaluated", "skipped"]
    assert (cell_dir / "hard_metrics.json").is_file()
    shutil.rmtree(out)
