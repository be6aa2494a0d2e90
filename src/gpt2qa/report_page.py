"""The text of `gpt2qa report`: index.html and summary.md from loaded runs (`report.RunData`).

One metrics table per task among the runs (each task names its own scores, `ReportSpec`): a
row per score, a column per run and set of questions scored (its evaluation file, then a
demo's held-out test sample beside it), and a legend under it that says what each row is. Then
a table of the runs (task, data files with question counts, last log time), each run's
directory and settings in a <details> element, and the plots. Short cells never wrap, and
every table sits in a wrapper that scrolls sideways, so on a narrow screen a table scrolls
instead of the page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2qa.io import write_text_atomic
from gpt2qa.study.summary import markdown_table
from gpt2qa.task import ReportSpec

if TYPE_CHECKING:
    from gpt2qa.report import RunData

SETTINGS = ("model", "layout", "null_position", "head", "max_steps", "batch_size", "lr", "seed")
"""The train_config.json keys shown under each run."""


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table; '-' for a missing one."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_threshold(value: Any) -> str:
    """A tuned threshold to 3 significant digits ('-' when missing)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return f"{value:.3g}"
    return "-"


def _scaled(metrics: Mapping[str, Any], key: str, scale: float) -> str:
    value = metrics.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt(scale * value)
    return fmt(value)


# --------------------------------------------------------------------------------------------
# Tables (rows of strings, shared by the page and summary.md)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """One column of a metrics table: a run scored on one set of questions."""

    run: str
    scored_on: str
    cells: tuple[str, ...]


def _eval_name(run: RunData) -> str:
    names = [Path(d.path).name for d in run.data if d.role == "evaluation"]
    return f"eval: {names[0]}" if names else "evaluation"


def row_names(spec: ReportSpec) -> list[str]:
    threshold = [spec.threshold.header] if spec.threshold else []
    return ["step", "questions", *(s.header for s in spec.scores), *threshold]


def metric_columns(runs: Sequence[RunData], spec: ReportSpec) -> list[Column]:
    """Each run's best evaluation, then its test-sample columns. A test sample is answered by
    the saved model at its tuned threshold; scores tuned on the data they score are left out
    there."""
    columns = []
    for run in runs:
        m = run.metrics
        step = fmt(m.get("step"), 0)
        threshold = [fmt_threshold(m.get(spec.threshold.key))] if spec.threshold else []
        columns.append(Column(run.label, _eval_name(run), (
            step, fmt(m.get("total"), 0), *(_scaled(m, s.key, spec.scale) for s in spec.scores),
            *threshold)))
        for test in run.tests:
            columns.append(Column(run.label, test.label, (
                step if test.by_model else "-", fmt(test.scores.get("total"), 0),
                *("-" if s.same_data else _scaled(test.scores, s.key, spec.scale)
                  for s in spec.scores),
                *(threshold if test.by_model else ["-" for _ in threshold]))))
    return columns


def legend(spec: ReportSpec, runs: Sequence[RunData]) -> list[tuple[str, str]]:
    """(row, what it is) for the legend under the metrics table of `runs`."""
    tests = [t for run in runs for t in run.tests]
    items = [("eval", "the evaluation file, scored at the run's best step (the model saved)")]
    if any(t.by_model for t in tests):
        items.append(("test sample", "the demo's held-out questions, answered by that saved "
                                     "model, which applies its tuned threshold"))
    if not all(t.by_model for t in tests):
        items.append(("baselines", "the demo's trivial systems on the same test questions"))
    items.append(("questions", "how many questions were scored"))
    items += [(s.header, s.meaning) for s in spec.scores]
    if spec.threshold:
        items.append((spec.threshold.header, spec.threshold.meaning))
    hidden = []
    if tests and any(s.same_data for s in spec.scores):
        hidden.append("for a test sample, a score tuned on the data it scores")
    if not all(t.by_model for t in tests):
        hidden.append("for a baseline, the model's step and threshold")
    if hidden:
        items.append(("-", "not shown: " + "; ".join(hidden)))
    return items


def runs_rows(runs: Sequence[RunData]) -> list[list[str]]:
    rows = []
    for run in runs:
        data = {d.role: d for d in run.data}
        cells = []
        for role in ("train", "evaluation"):
            d = data.get(role)
            count = "" if d is None or d.questions is None else f" ({d.questions:,} questions)"
            cells.append("-" if d is None else f"{Path(d.path).name}{count}")
        rows.append([run.label, run.task, *cells, run.finished])
    return rows


RUNS_HEADER = ["run", "task", "train data", "evaluation data", "last logged"]


def settings(run: RunData) -> list[tuple[str, str]]:
    """(name, value): the run's directory, its data files in full, and its main settings."""
    items = [("directory", str(run.path))]
    items += [(f"{d.role} file", d.path) for d in run.data]
    items += [(k, str(run.train_config[k])) for k in SETTINGS if k in run.train_config]
    return items


def spec_groups(runs: Sequence[RunData]) -> list[tuple[ReportSpec, list[RunData]]]:
    """The runs grouped by their task's ReportSpec, in first-seen order."""
    groups: list[tuple[ReportSpec, list[RunData]]] = []
    for run in runs:
        for spec, members in groups:
            if spec == run.spec:
                members.append(run)
                break
        else:
            groups.append((run.spec, [run]))
    return groups


# --------------------------------------------------------------------------------------------
# The page and summary.md
# --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } th.name, td.name { text-align: left; }
td.name:first-child { background: #fff; }
th:first-child, td:first-child { position: sticky; left: 0; }
dl.legend { display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em;
            font-size: 0.85em; color: #444; margin: 0.5em 0 1em; }
dl.legend dt { font-weight: 600; } dl.legend dd { margin: 0; }
details { margin: 0.4em 0; font-size: 0.9em; }
details dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.1em 1em; }
details dd { margin: 0; font-family: monospace; overflow-wrap: anywhere; min-width: 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
p.note, p.meta { color: #555; font-size: 0.9em; }
@media (max-width: 600px) {
  dl.legend, details dl { grid-template-columns: 1fr; }
  dl.legend dd, details dd { margin-left: 1em; }
}
"""


def _cells(tag: str, values: Sequence[str], text_cols: int) -> str:
    return "".join(f'<{tag} class="name">{html.escape(v)}</{tag}>' if i < text_cols
                   else f"<{tag}>{html.escape(v)}</{tag}>" for i, v in enumerate(values))


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_cols: int = 1,
                over: Sequence[tuple[str, int]] = ()) -> str:
    """An HTML table in a sideways-scrolling wrapper; the first `text_cols` columns are text
    (left-aligned), the rest numbers. `over`: (text, columns spanned) of a header row above."""
    top = ""
    if over:
        top = "<tr>" + "".join(f'<th class="name">{html.escape(t)}</th>' if k == 0 else
                               f'<th colspan="{n}">{html.escape(t)}</th>'
                               for k, (t, n) in enumerate(over)) + "</tr>"
    head = f"<tr>{_cells('th', header, text_cols)}</tr>"
    body = "".join(f"<tr>{_cells('td', row, text_cols)}</tr>" for row in rows)
    return (f'<div class="scroll"><table><thead>{top}{head}</thead>'
            f"<tbody>{body}</tbody></table></div>")


def _metrics_table(columns: Sequence[Column], spec: ReportSpec) -> str:
    over: list[tuple[str, int]] = [("run", 1)]
    for column in columns:
        if len(over) > 1 and over[-1][0] == column.run:
            over[-1] = (column.run, over[-1][1] + 1)
        else:
            over.append((column.run, 1))
    rows = [[name, *(c.cells[i] for c in columns)] for i, name in enumerate(row_names(spec))]
    return _html_table(["scored on", *(c.scored_on for c in columns)], rows, 1, over)


def _dl(items: Sequence[tuple[str, str]], css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return (f"<dl{cls}>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                   for k, v in items) + "</dl>")


_NOTE = ("Scores in percent at each run's best evaluation (the step shown, whose model was "
         "saved), official rules of each task.")


def _page(runs: Sequence[RunData], images: Sequence[tuple[str, Path, str]], meta: str) -> str:
    parts = [f"<h1>gpt2qa report: {len(runs)} run{'s' if len(runs) != 1 else ''}</h1>",
             f'<p class="meta">{html.escape(meta)}</p>', "<h2>Metrics</h2>",
             f'<p class="note">{html.escape(_NOTE)}</p>']
    for spec, members in spec_groups(runs):
        parts.append(_metrics_table(metric_columns(members, spec), spec))
        parts.append(_dl(legend(spec, members), "legend"))
    parts.append("<h2>Runs</h2>")
    parts.append(_html_table(RUNS_HEADER, runs_rows(runs), 5))
    parts += [f"<details><summary>{html.escape(r.label)}: directory, files and settings"
              f"</summary>{_dl(settings(r))}</details>" for r in runs]
    parts += [f'<h2>{html.escape(title)}</h2><p class="note">{html.escape(note)}</p>'
              f'<img src="{html.escape(png.name)}" alt="{html.escape(title)}">'
              for title, png, note in images]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>gpt2qa report</title><style>{_CSS}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def _markdown(runs: Sequence[RunData], images: Sequence[tuple[str, Path, str]],
              meta: str) -> str:
    md = ["# gpt2qa report\n", f"\n{meta}. {_NOTE}\n"]
    for spec, members in spec_groups(runs):
        columns = metric_columns(members, spec)
        rows = [[name, *(c.cells[i] for c in columns)] for i, name in enumerate(row_names(spec))]
        header = ["", *(f"{c.run}, {c.scored_on}" for c in columns)]
        md += ["\n", markdown_table(header, rows, 1), "\n"]
        md += [f"- **{k}**: {v}\n" for k, v in legend(spec, members)]
    md += ["\n## Runs\n\n", markdown_table(RUNS_HEADER, runs_rows(runs), 5)]
    for run in runs:
        md.append(f"\n{run.label}: " + "; ".join(f"{k} `{v}`" for k, v in settings(run)) + "\n")
    md.append("\n## Plots\n\n")
    md += [f"- {title}: ![{title}]({png.name})\n" for title, png, _ in images]
    return "".join(md)


def write_pages(runs: Sequence[RunData], images: Sequence[tuple[str, Path, str]], out: Path,
                meta: str) -> Path:
    """Write out/summary.md and out/index.html; return the page's path."""
    write_text_atomic(out / "summary.md", _markdown(runs, images, meta))
    return write_text_atomic(out / "index.html", _page(runs, images, meta))
