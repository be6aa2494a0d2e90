"""`gpt2qa report`: the page from two tiny real runs, its images, its errors; abstention PR."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gpt2qa.cli.flags import add_report_parser
from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.report import (
    PNG_MAGIC,
    abstention_pr,
    build_report,
    fmt,
    run_labels,
)
from helpers import save_init_dir, write_tiny_squad

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory, tiny_tokenizer):
    """Two real ~10-step runs on the hand-written file: null=last/linear and null=first."""
    from gpt2qa.tasks import fine_tune as train

    tmp = tmp_path_factory.mktemp("report-runs")
    init = save_init_dir(tiny_tokenizer, tmp / "init")
    data = write_tiny_squad(tmp / "tiny.json", copies=4)
    runs = []
    for name, null in (("run-last", "last"), ("run-first", "first")):
        config = TrainConfig.of(model=str(init), train_file=str(data), eval_file=str(data),
                             output_dir=str(tmp / name), null_position=null, max_seq_length=64,
                             doc_stride=16, max_query_length=16, batch_size=4, lr=3e-3,
                             max_steps=10, eval_every=5, log_every=2, progress=False, seed=3)
        runs.append(train(config).output_dir)
    return tmp, data, runs


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img\s[^>]*src="([^"]+)"', page)


def test_report_page_images_and_table(two_runs, tmp_path):
    _, _, runs = two_runs
    out = tmp_path / "report"
    index = build_report(runs, out)
    assert index == out / "index.html"
    page = index.read_text(encoding="utf-8")
    sources = _img_sources(page)
    assert len(sources) == 4
    for src in sources:
        assert "/" not in src and src.endswith(".png"), src  # relative, beside index.html
        data = (out / src).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, src
        from PIL import Image

        with Image.open(out / src) as img:
            img.verify()
    with_images = {p.name for p in out.glob("*.png")}
    assert with_images == set(sources)
    # Self-contained: inline CSS, no external resources.
    assert "<style>" in page and "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert f'<td class="name">{run.name}</td>' in page
        assert f"<td>{fmt(metrics['f1'])}</td>" in page
        assert f"<td>{fmt(metrics['null_baseline_f1'])}</td>" in page
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "| run-last |" in md and "| run-first |" in md
    assert "tuned F1" in md and "all-null baseline F1" in md
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_report_through_its_parser(two_runs, tmp_path, capsys):
    tmp, data, runs = two_runs
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", *map(str, runs), "--out", str(tmp_path / "r"),
                              "--eval-file", str(data)])
    assert args.func(args) == 0
    assert "index.html" in capsys.readouterr().out
    assert (tmp_path / "r" / "index.html").is_file() and (tmp_path / "r" / "summary.md").is_file()


def _broken_copy(run: Path, tmp: Path, missing: str) -> Path:
    copy = tmp / f"broken-{missing.replace('.', '-')}"
    shutil.copytree(run, copy)
    (copy / missing).unlink()
    return copy


@pytest.mark.parametrize("missing", ["metrics.json", "log.jsonl", "predictions.json",
                                     "na_probs.json"])
def test_missing_file_is_a_one_line_error(two_runs, tmp_path, missing):
    _, _, runs = two_runs
    broken = _broken_copy(runs[0], tmp_path, missing)
    with pytest.raises(GPT2QAError) as info:
        build_report([runs[1], broken], tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message and str(broken) in message and missing in message
    assert not (tmp_path / "out" / "index.html").exists()


def test_other_bad_inputs(two_runs, tmp_path):
    tmp, _, runs = two_runs
    with pytest.raises(GPT2QAError, match="no such run directory"):
        build_report([tmp_path / "absent"], tmp_path / "out")
    # Without train_config.json the gold file must come from --eval-file.
    no_config = _broken_copy(runs[0], tmp_path, "train_config.json")
    with pytest.raises(GPT2QAError, match=re.escape(f"{no_config}: missing train_config.json")):
        build_report([no_config], tmp_path / "out")
    # A gold file that lacks the run's questions.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": "Abc def.", "qas": [{"id": "zz", "question": "What?", "answers": [
            {"text": "Abc", "answer_start": 0}], "is_impossible": False}]}]}]}))
    with pytest.raises(GPT2QAError, match=r"predictions\.json: id=q1-0 is not in"):
        build_report([runs[0]], tmp_path / "out", eval_file=other)


@pytest.mark.parametrize(("probs", "has_ans", "precision", "recall", "thresholds"), [
    # The module docstring's worked example.
    ([0.9, 0.7, 0.2], [False, True, False], [1.0, 0.5, 2 / 3], [0.5, 0.5, 1.0], [0.9, 0.7, 0.2]),
    # A tie moves as one point.
    ([0.5, 0.5], [False, True], [0.5], [1.0], [0.5]),
    # Perfect separation.
    ([0.1, 0.8, 0.9], [True, False, False], [1.0, 1.0, 2 / 3], [0.5, 1.0, 1.0], [0.9, 0.8, 0.1]),
    # Nothing unanswerable: recall stays 0, precision 0.
    ([0.3, 0.6], [True, True], [0.0, 0.0], [0.0, 0.0], [0.6, 0.3]),
])
def test_abstention_pr(probs, has_ans, precision, recall, thresholds):
    p, r, t = abstention_pr(probs, has_ans)
    assert p == pytest.approx(precision) and r == pytest.approx(recall)
    assert t == pytest.approx(thresholds)


def test_abstention_pr_length_mismatch():
    with pytest.raises(GPT2QAError, match="2 probabilities but 1 labels"):
        abstention_pr([0.1, 0.2], [True])


@pytest.mark.parametrize(("dirs", "labels"), [
    (["a/run", "b/other"], ["run", "other"]),
    (["a/run", "b/run"], ["a/run", "b/run"]),
    (["a/run", "a/run"], ["a/run", "a/run#2"]),
])
def test_run_labels_are_unique(tmp_path, dirs, labels):
    assert run_labels([tmp_path / d for d in dirs]) == labels


@pytest.mark.browser
def test_page_renders_in_headless_chromium(two_runs, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent")
    _, _, runs = two_runs
    index = build_report(runs, tmp_path / "report")
    shot = tmp_path / "shot.png"
    try:
        subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                        f"--screenshot={shot}", "--window-size=1200,2000",
                        "--user-data-dir=" + str(tmp_path / "profile"), index.as_uri()],
                       capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("chromium did not finish within 120 s")
    if not shot.exists():
        pytest.skip("chromium ran but wrote no screenshot (no usable headless mode here)")
    assert shot.read_bytes()[:8] == PNG_MAGIC
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1200, 2000)
        # Not a blank page: the plots and table put many colours on it.
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 50
