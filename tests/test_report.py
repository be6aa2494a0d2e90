"""`gpt2qa report`: the page from tiny real runs (SQuAD, a demo's test sample, HotpotQA), its
images, its errors, abstention PR, F1 by question word, the learning curve, and its layout at
420 px in headless Chromium."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gpt2qa import __version__, tasks
from gpt2qa.cli.flags import add_report_parser
from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.report import (
    PNG_MAGIC,
    abstention_pr,
    build_report,
    fmt,
    load_run,
    question_word_scores,
    run_labels,
)
from gpt2qa.rundir import DEMO_MARKER
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


def report(runs, out, eval_file=None):
    """`gpt2qa report` as the CLI calls it: each run's task found by `tasks.for_run`."""
    return build_report(runs, out, eval_file, task_of=tasks.for_run)


@pytest.fixture(scope="session")
def demo_run(two_runs, tmp_path_factory):
    """run-last copied into a demo folder (runs/demo/run), with the demo's test-sample file."""
    _, _, runs = two_runs
    demo = tmp_path_factory.mktemp("report-demo") / "demo"
    shutil.copytree(runs[0], demo / "run")
    (demo / DEMO_MARKER).write_text("written by gpt2qa demo\n")
    test = {"exact": 61.25, "f1": 64.5, "total": 40, "HasAns_f1": 70.0, "NoAns_f1": 55.0,
            "best_f1": 99.0, "tuned_f1": 98.0, "null_baseline_f1": 37.5}
    metrics = json.loads((demo / "run" / "metrics.json").read_text())
    (demo / "demo_metrics.json").write_text(json.dumps({**metrics, "test": test}))
    return demo, test


@pytest.fixture(scope="session")
def hotpot_run(tmp_path_factory, tiny_tokenizer):
    """A real 10-step HotpotQA run on 18 synthetic questions; records what train passed to
    the learning-curve plot."""
    import gpt2qa.train
    from gpt2qa.tasks import fine_tune
    from gpt2qa.tasks.hotpotqa.synthetic import generate

    tmp = tmp_path_factory.mktemp("report-hotpot")
    init = save_init_dir(tiny_tokenizer, tmp / "init")
    data = tmp / "hotpot.json"
    data.write_text(json.dumps(generate("train", 18, seed=5)), encoding="utf-8")
    config = TrainConfig.of(model=str(init), train_file=str(data), eval_file=str(data),
                            output_dir=str(tmp / "hot"), max_seq_length=96, max_query_length=24,
                            batch_size=4, lr=3e-3, max_steps=10, eval_every=5, log_every=2,
                            progress=False, seed=3)
    calls = []
    real = gpt2qa.train.plot_learning_curve

    def spy(*args):
        calls.append(args)
        return real(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpt2qa.train, "plot_learning_curve", spy)
        result = fine_tune(config)
    return result.output_dir, data, calls


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img\s[^>]*src="([^"]+)"', page)


def test_report_page_images_and_table(two_runs, tmp_path):
    _, _, runs = two_runs
    out = tmp_path / "report"
    index = report(runs, out)
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
        assert f'<td class="name">{run.name}</td>' in page  # the Runs table
        assert f"<td>{fmt(metrics['f1'])}</td>" in page
        assert f"<td>{fmt(metrics['null_baseline_f1'])}</td>" in page
        assert f"<td>{metrics['tuned_null_score_diff_threshold']:.3g}</td>" in page
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "| run-last |" in md and "| run-first |" in md
    assert "| tuned F1 |" in md and "| all no-answer F1 |" in md
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
        report([runs[1], broken], tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message and str(broken) in message and missing in message
    assert not (tmp_path / "out" / "index.html").exists()


def test_other_bad_inputs(two_runs, tmp_path):
    tmp, _, runs = two_runs
    with pytest.raises(GPT2QAError, match="no such run directory"):
        report([tmp_path / "absent"], tmp_path / "out")
    # Without train_config.json the gold file must come from --eval-file.
    no_config = _broken_copy(runs[0], tmp_path, "train_config.json")
    with pytest.raises(GPT2QAError, match=re.escape(f"{no_config}: missing train_config.json")):
        report([no_config], tmp_path / "out")
    # A gold file that lacks the run's questions.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": "Abc def.", "qas": [{"id": "zz", "question": "What?", "answers": [
            {"text": "Abc", "answer_start": 0}], "is_impossible": False}]}]}]}))
    with pytest.raises(GPT2QAError, match=r"predictions\.json: id=q1-0 is not in"):
        report([runs[0]], tmp_path / "out", eval_file=other)


def metrics_table(page: str, which: int = 0) -> dict[str, list[str]]:
    """The `which`-th metrics table of a page as {row name: cells}, "scored on" included."""
    table = re.findall(r"<table>(.*?)</table>", page)[which]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)
        rows[cells[0]] = cells[1:]
    return rows


def test_a_demo_run_shows_its_test_sample_date_version_and_data(demo_run, two_runs, tmp_path):
    from gpt2qa.data import load_squad

    demo, test = demo_run
    _, data, _ = two_runs
    page = report([demo], tmp_path / "r").read_text(encoding="utf-8")  # the folder: its run
    metrics = json.loads((demo / "run" / "metrics.json").read_text())
    rows = metrics_table(page)
    assert rows["scored on"] == [f"eval: {data.name}", "test sample"]
    assert rows["questions"] == [str(metrics["total"]), "40"]
    assert rows["EM"] == [fmt(metrics["exact"]), "61.25"]
    assert rows["F1"] == [fmt(metrics["f1"]), "64.50"]
    assert rows["all no-answer F1"] == [fmt(metrics["null_baseline_f1"]), "37.50"]
    # Scores tuned on the questions they score are not shown for the test sample; the
    # threshold it was answered at (the saved one) is, to 3 significant digits.
    assert rows["official best F1"] == [fmt(metrics["best_f1"]), "-"]
    assert rows["tuned F1"] == [fmt(metrics["tuned_f1"]), "-"]
    threshold = f"{metrics['tuned_null_score_diff_threshold']:.3g}"
    assert rows["tuned threshold"] == [threshold, threshold]
    assert f"by gpt2qa {__version__}" in page
    assert re.search(r"written \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    n = len(load_squad(data).examples)
    runs_table = metrics_table(page, 1)
    assert runs_table["run"] == ["task", "train data", "evaluation data", "last logged"]
    assert runs_table["demo"][:3] == ["squad", f"{data.name} ({n} questions)",
                                      f"{data.name} ({n} questions)"]
    # The settings are a <details> of their own, not a table cell.
    assert re.search(r"<details><summary>demo: directory, files and settings</summary>"
                     r"<dl><dt>directory</dt><dd>[^<]*/demo/run</dd>", page)
    legend = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert "evaluate-v2.0" in legend["official best F1"]
    assert "never lower" in legend["tuned F1"]
    md = (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    assert "| demo, test sample |" in md and "| tuned F1 | " + fmt(metrics["tuned_f1"]) + " | - |" in md


def test_question_word_scores_count_and_baseline(two_runs):
    import dataclasses

    _, _, runs = two_runs
    run = load_run(runs[0], "r", task_of=tasks.for_run)
    scores = question_word_scores(run)
    assert sum(v.questions for v in scores.values()) == len(run.examples)
    abstain = {ex.qas_id: "" for ex in run.examples}
    gold = {ex.qas_id: ex.answers[0].text if ex.answers else "" for ex in run.examples}
    assert any(ex.answers for ex in run.examples) and any(not ex.answers for ex in run.examples)
    # Abstaining everywhere scores (official F1) exactly each group's all-no-answer F1,
    # which is counted separately; the gold answers score 100.
    for word, v in question_word_scores(dataclasses.replace(run, predictions=abstain)).items():
        assert v.f1 == pytest.approx(v.baseline_f1), word
        assert v.baseline_f1 == pytest.approx(100.0 * sum(
            1 for ex in run.examples if not ex.answers
            and question_word_of(ex.question) == word) / v.questions)
    assert {v.f1 for v in question_word_scores(
        dataclasses.replace(run, predictions=gold)).values()} == {100.0}


def question_word_of(question: str) -> str:
    from gpt2qa.evaluation import question_word

    return question_word(question)


def test_learning_curve_names_the_run_and_labels_the_baseline(two_runs):
    from gpt2qa.plots import curve_title, learning_curve_figure

    _, _, runs = two_runs
    log = [json.loads(line) for line in (runs[0] / "log.jsonl").read_text().splitlines()]
    base = next(r for r in log if r["event"] == "eval")["null_baseline_f1"]
    fig = learning_curve_figure(runs[0] / "log.jsonl", tasks.get("squad").report,
                                curve_title(runs[0], 3))
    ax_loss, ax_f1 = fig.axes
    assert ax_loss.get_title() == f"learning curve: {runs[0].parent.name}/run-last, seed 3"
    # The dotted line is on the F1 axis, at the baseline, and named there with its value.
    dotted = [line for line in ax_f1.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and dotted[0].get_ydata()[0] == pytest.approx(base)
    assert [t.get_text() for t in ax_f1.texts] == [f"all no-answer F1 = {base:.1f}"]
    # One legend, below the axes (not over the curves).
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = ax_loss.get_legend().get_window_extent(renderer)
    assert box.y1 < ax_loss.get_window_extent(renderer).y0
    assert f"all no-answer F1 = {base:.1f}" in [t.get_text() for t in
                                                 ax_loss.get_legend().get_texts()]


def test_a_hotpot_run_writes_its_learning_curve(hotpot_run):
    from gpt2qa.plots import learning_curve_figure

    out, _, calls = hotpot_run
    assert (out / "learning_curve.png").read_bytes()[:8] == PNG_MAGIC
    (log, png, spec, title), = calls
    assert (log, png) == (out / "log.jsonl", out / "learning_curve.png")
    assert spec is tasks.get("hotpotqa").report
    assert title == f"learning curve: {out.parent.name}/hot, seed 3"
    evals = [json.loads(line) for line in log.read_text().splitlines()
             if json.loads(line)["event"] == "eval"]
    ax_f1 = learning_curve_figure(log, spec, title).axes[1]
    drawn = {line.get_label(): list(line.get_ydata()) for line in ax_f1.get_lines()}
    # HotpotQA's metrics are fractions: drawn in percent, as the F1 axis says.
    for label, key in (("answer F1", "f1"), ("sp F1", "sp_f1"), ("joint F1", "joint_f1")):
        assert drawn[f"{label} (right axis)"] == pytest.approx([100 * r[key] for r in evals])


def test_a_hotpot_run_is_reported(hotpot_run, tmp_path):
    out, data, _ = hotpot_run
    page = report([out], tmp_path / "r").read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics_table(page)
    assert rows["scored on"] == [f"eval: {data.name}"]
    assert rows["questions"] == ["18"]
    for header, key in (("answer EM", "em"), ("answer F1", "f1"), ("sp EM", "sp_em"),
                        ("sp F1", "sp_f1"), ("joint EM", "joint_em"), ("joint F1", "joint_f1")):
        assert rows[header] == [fmt(100 * metrics[key])], header
    assert rows["sp threshold"] == [f"{metrics['sp_threshold']:.3g}"]
    assert metrics_table(page, 1)["hot"][:2] == ["hotpotqa", f"{data.name} (18 questions)"]
    # No no-answer probabilities: the learning curves only.
    assert _img_sources(page) == ["learning_curves.png"]
    assert sorted(p.name for p in (tmp_path / "r").glob("*.png")) == ["learning_curves.png"]


def test_a_hotpot_demo_shows_its_test_sample_and_baselines(hotpot_run, tmp_path):
    out, _, _ = hotpot_run
    demo = tmp_path / "demo-hotpot"
    shutil.copytree(out, demo / "run")
    (demo / DEMO_MARKER).write_text("written by gpt2qa demo\n")
    keys = ("em", "f1", "sp_em", "sp_f1", "joint_em", "joint_f1")
    test = {**{k: 0.5 for k in keys}, "total": 30}
    baseline = {**{k: 0.25 for k in keys}, "total": 30}
    (demo / "demo_metrics.json").write_text(json.dumps(
        {"dev": {}, "test": test, "baseline_test": baseline, "baseline_answer": "yes"}))
    page = report([demo], tmp_path / "r").read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics_table(page)
    assert rows["scored on"][1:] == ["test sample", "baselines on the test sample"]
    assert rows["joint F1"] == [fmt(100 * metrics["joint_f1"]), "50.00", "25.00"]
    assert rows["questions"][1:] == ["30", "30"]
    # The baselines are not the model: no step, no threshold.
    threshold = f"{metrics['sp_threshold']:.3g}"
    assert rows["sp threshold"] == [threshold, threshold, "-"]
    assert rows["step"] == [str(metrics["step"]), str(metrics["step"]), "-"]


def test_a_hotpot_run_without_predictions_is_one_line(hotpot_run, tmp_path):
    out, _, _ = hotpot_run
    broken = _broken_copy(out, tmp_path, "predictions.json")
    with pytest.raises(GPT2QAError) as info:
        report([broken], tmp_path / "out")
    assert str(info.value) == (f"{broken}: missing predictions.json (not a finished gpt2qa "
                               "hotpotqa training run)")


def test_a_runs_task_is_the_recorded_one(two_runs, hotpot_run, tmp_path):
    assert tasks.for_run(hotpot_run[0]).name == "hotpotqa"
    assert tasks.for_run(two_runs[2][0]).name == "squad"
    # No train_config.json: the model directory's task.
    hot = tmp_path / "hot"
    shutil.copytree(hotpot_run[0] / "model", hot / "model")
    assert tasks.for_run(hot).name == "hotpotqa"
    assert tasks.for_run(tmp_path).name == "squad"  # neither: a run from before both
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train_config.json").write_text("{")
    with pytest.raises(GPT2QAError, match="train_config.json: not a readable JSON file"):
        tasks.for_run(bad)
    (bad / "train_config.json").write_text('{"task": "nope"}')
    with pytest.raises(GPT2QAError, match="task 'nope' is not one gpt2qa knows"):
        tasks.for_run(bad)


def test_log_records_without_numbers_are_left_out_of_the_curves(two_runs, tmp_path):
    from gpt2qa.plots import learning_curve_figure

    _, _, runs = two_runs
    copy = tmp_path / "odd"
    shutil.copytree(runs[0], copy)
    with (copy / "log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"event": "eval"}\n{"event": "train", "step": 99, "loss": "x"}\n'
                 '{"event": "eval", "step": 99, "f1": null, "tuned_f1": 12.5}\n')
    assert report([copy], tmp_path / "r").is_file()
    ax_loss, ax_f1 = learning_curve_figure(copy / "log.jsonl", tasks.get("squad").report).axes
    assert 99 not in ax_loss.get_lines()[0].get_xdata()
    f1_line, tuned_line = ax_f1.get_lines()[:2]
    assert 99 not in f1_line.get_xdata() and tuned_line.get_xdata()[-1] == 99


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
    index = report(runs, tmp_path / "report")
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


# -- the page at 420 px in headless Chromium ---------------------------------------------------

# Headless Chromium makes no window narrower than 500 px, so the page is shown in a 420 px
# <iframe> (its viewport and media queries are then 420 px), and a script added to a copy of
# the page measures it there and posts the result to the wrapper, which --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const lines = (el) => { const r = document.createRange(); r.selectNodeContents(el);
    return new Set([...r.getClientRects()].map((b) => Math.round(b.top))).size; };
  parent.postMessage(JSON.stringify({width: window.innerWidth,
    page: document.documentElement.scrollWidth, body: document.body.scrollWidth,
    wrappers: [...document.querySelectorAll(".scroll")].map((w) => [w.scrollWidth, w.clientWidth]),
    wrapped: [...document.querySelectorAll("th, td")].filter((c) => lines(c) > 1)
      .map((c) => c.textContent)}), "*");
});
</script>"""
FRAME = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="probe.html" style="border:0;width:420px;height:900px"></iframe>
<script>window.addEventListener("message", (e) => { const pre = document.createElement("pre");
  pre.id = "m"; pre.textContent = e.data; document.body.appendChild(pre); });</script>
</body></html>"""


def layout_at_420(index: Path, tmp: Path, css: str = "") -> dict:
    """How `index` lays out 420 px wide, with `css` appended to its style (controls)."""
    page = index.read_text(encoding="utf-8").replace("</style>", css + "</style>")
    (index.parent / "probe.html").write_text(page.replace("</body>", PROBE + "</body>"),
                                             encoding="utf-8")
    (index.parent / "frame.html").write_text(FRAME, encoding="utf-8")
    out = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", "--disable-background-networking",
                          "--disable-component-update", "--disable-extensions",
                          "--hide-scrollbars", f"--user-data-dir={tmp}",
                          "--virtual-time-budget=10000", "--window-size=500,900", "--dump-dom",
                          (index.parent / "frame.html").as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'<pre id="m">(.*?)</pre>', out, re.S)
    assert found, out[-2000:]
    return json.loads(html_unescape(found.group(1)))


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


@pytest.mark.browser
def test_page_at_420_px_scrolls_its_tables_not_itself(two_runs, demo_run, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent")
    _, _, runs = two_runs
    demo, _ = demo_run
    index = report([*runs, demo], tmp_path / "report")  # 4 score columns: wider than 420 px
    layout = layout_at_420(index, tmp_path / "p1")
    assert layout["width"] == 420
    assert layout["page"] <= 420 and layout["body"] <= 420, layout
    # The metrics table is wider than the screen, and its wrapper scrolls it.
    assert any(scroll > client for scroll, client in layout["wrappers"]), layout
    assert all(client <= 420 for _, client in layout["wrappers"])
    assert layout["wrapped"] == []  # no cell's text breaks onto a second line
    # Controls: the same page without the wrappers' scrolling runs off the screen, and
    # with wrapping cells some header breaks; the checks above would have seen both.
    loose = layout_at_420(index, tmp_path / "p2", ".scroll { overflow-x: visible; }")
    assert loose["page"] > 420
    squeezed = layout_at_420(index, tmp_path / "p3", "th, td { white-space: normal; }")
    assert squeezed["wrapped"]
