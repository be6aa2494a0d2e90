"""Every PNG gpt2qa draws: matplotlib's object API (`Figure` on an Agg canvas), no pyplot.

No pyplot means no global figure registry: a figure is an ordinary object, freed when the
last reference goes, and nothing needs closing or a display. matplotlib is imported inside
the functions because `gpt2qa --help` imports this module (through metrics).

  learning curve        train loss and eval F1 of one run (train: learning_curve.png)
  pr curves, histogram  the official evaluation's images (metrics: `--out-image-dir`)
  study, reliability    the study's F1/AUROC bars and na_prob reliability diagrams
  report                runs side by side: learning curves, abstaining PR, na_prob
                        histograms, F1 by question word (`gpt2qa report`)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2qa.config import HEADS, LAYOUTS, NULL_POSITIONS
from gpt2qa.io import atomic_file, check_output_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gpt2qa.task import ReportSpec


def new_figure(**kwargs: Any) -> Figure:
    """A Figure on its own Agg canvas (so it can be drawn and measured before saving)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Render a matplotlib Figure to a PNG on an Agg canvas, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Learning curve of one run
# --------------------------------------------------------------------------------------------

def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def points(records: Sequence[Mapping[str, Any]], event: str, key: str,
           scale: float = 1.0) -> tuple[list[float], list[float]]:
    """(steps, scale x values) of `key` in the `event` records that have both as numbers (a
    hand-edited or older log may lack either)."""
    pairs = [(r["step"], scale * r[key]) for r in records
             if r.get("event") == event and _number(r.get("step")) and _number(r.get(key))]
    return [x for x, _ in pairs], [y for _, y in pairs]


def plot_learning_curve(log_path: str | os.PathLike[str], out_png: str | os.PathLike[str],
                        spec: ReportSpec, title: str = "") -> Path:
    """Training loss and the task's eval scores (`spec.curves`) against optimizer steps."""
    return save_figure(learning_curve_figure(log_path, spec, title), out_png)


def curve_title(run_dir: str | os.PathLike[str], seed: int) -> str:
    """A learning curve's title: the run (its folder and the one above, e.g. "demo/run": the
    demo's run folder is always "run") and its seed."""
    path = Path(run_dir).resolve()
    name = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return f"learning curve: {name}, seed {seed}"


_CURVE_STYLES = (("tab:red", "o-"), ("tab:orange", "s--"), ("tab:green", "^-"),
                 ("tab:purple", "d-."))


def learning_curve_figure(log_path: str | os.PathLike[str], spec: ReportSpec,
                          title: str = "") -> Figure:
    """The learning-curve Figure, on an Agg canvas: loss on the left axis, the task's eval
    scores in percent on the right one, its baseline as a labelled line on that axis, and one
    legend below the plot (inside, it covered the curves' ends)."""
    records = read_log(log_path)
    fig = new_figure(figsize=(7, 4.6))
    ax = fig.subplots()
    ax.plot(*points(records, "train", "loss"), color="tab:blue", label="train loss (left axis)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss", color="tab:blue")
    curves = [(label, points(records, "eval", key, spec.scale)) for label, key in spec.curves]
    curves = [(label, xy) for label, xy in curves if xy[0]]
    if curves:
        ax2 = ax.twinx()
        for (label, xy), (color, style) in zip(curves, _CURVE_STYLES, strict=False):
            ax2.plot(*xy, style, color=color, label=f"{label} (right axis)")
        base = points(records, "eval", spec.baseline[1], spec.scale)[1] if spec.baseline else []
        if spec.baseline is not None and base:
            value = base[0]
            text = f"{spec.baseline[0]} = {value:.1f}"
            ax2.axhline(value, color="grey", linestyle=":", label=text)
            # Named on the line itself, at the right (the F1 axis' side), where the loss is low.
            ax2.text(0.99, value, text, transform=ax2.get_yaxis_transform(), ha="right",
                     va="bottom", fontsize=8, color="dimgrey")
        ax2.set_ylabel("evaluation score (%)", color="tab:red")
        ax2.set_ylim(0, 100)
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.15),
              ncol=2 if len(handles) > 3 else max(len(handles), 1), fontsize=8,
              frameon=False)
    ax.set_title(title or "learning curve", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# The official evaluation's images (as evaluate-v2.0.py draws them)
# --------------------------------------------------------------------------------------------

def plot_pr_curve(precisions: Sequence[float], recalls: Sequence[float], path: Path,
                  title: str) -> Path:
    """A precision-recall step curve, filled below."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.step(recalls, precisions, color="b", alpha=0.2, where="post")
    ax.fill_between(recalls, precisions, step="post", alpha=0.2, color="b")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0.0, 1.05)
    ax.set_ylim(0.0, 1.05)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_na_histogram(probs: Sequence[float], path: Path, name: str) -> Path:
    """Histogram of no-answer probabilities (20 bins over [0, 1]), as shares of `probs`."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.hist(probs, weights=[1.0 / len(probs)] * len(probs), bins=20, range=(0.0, 1.0))
    ax.set_xlabel("Model probability of no-answer")
    ax.set_ylabel("Proportion of dataset")
    ax.set_title(f"Histogram of no-answer probability: {name}")
    return save_figure(fig, path)


_PR_TITLES = {
    "pr_exact": "Precision-Recall curve for Exact Match score",
    "pr_f1": "Precision-Recall curve for F1 score",
    "pr_oracle": "Oracle Precision-Recall curve (binary task of HasAns vs. NoAns)",
}


def plot_official_images(image_dir: str | os.PathLike[str],
                         pr_curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                         na_probs: Mapping[str, Sequence[float]]) -> None:
    """The official evaluation's PNGs in `image_dir` (created; `--out-image-dir`).

    `pr_curves`: (precisions, recalls) by ``pr_exact``/``pr_f1``/``pr_oracle``, each drawn to
    ``<key>.png``; `na_probs`: the no-answer probabilities by ``hasAns``/``noAns``, each
    non-empty group drawn to ``na_prob_hist_<name>.png``.
    """
    path = Path(image_dir)
    check_output_dir(path, "--out-image-dir")
    path.mkdir(parents=True, exist_ok=True)
    for key, (precisions, recalls) in pr_curves.items():
        plot_pr_curve(precisions, recalls, path / f"{key}.png", _PR_TITLES[key])
    for name, probs in na_probs.items():
        if probs:
            plot_na_histogram(probs, path / f"na_prob_hist_{name}.png", name)


# --------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------

_SHORT = {"question-first": "Q-first", "context-first": "C-first"}
_SPLIT_COLORS = {"dev": "tab:blue", "hard": "tab:orange"}


def _config_label(layout: str, null: str, head: str) -> str:
    return f"{_SHORT.get(layout, layout)}\n{null}\n{head}"


def plot_study(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Grouped bars per configuration and split, ± spread over seeds (`study.summarize` rows,
    splits in row order).

    Top: F1 at threshold 0 with the all-no-answer baselines as lines. Bottom: NA AUROC
    (can na_prob tell unanswerable from answerable at all?) with chance (0.5) as a line.
    """
    keys: list[tuple[str, str, str]] = []
    for layout in LAYOUTS:
        for null in NULL_POSITIONS:
            for head in HEADS:
                if any((r["layout"], r["null_position"], r["head"]) == (layout, null, head)
                       for r in rows):
                    keys.append((layout, null, head))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig = new_figure(figsize=(max(7.0, 0.95 * len(keys) + 2), 7.5))
    ax_f1, ax_auc = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    width = 0.8 / len(splits)
    for k, split in enumerate(splits):
        by_key = {(r["layout"], r["null_position"], r["head"]): r
                  for r in rows if r["split"] == split}
        for ax, metric in ((ax_f1, "f1"), (ax_auc, "auroc")):
            xs, ys, errs = [], [], []
            for i, key in enumerate(keys):
                stat = by_key[key].get(metric) if key in by_key else None
                if stat:
                    xs.append(i + (k - (len(splits) - 1) / 2) * width)
                    ys.append(stat["mean"])
                    errs.append(stat["std"])
            ax.bar(xs, ys, width=width, yerr=errs, capsize=3, color=_SPLIT_COLORS[split],
                   label=f"{split} (mean ± std over seeds)")
        base = next(iter(by_key.values()))["null_baseline_f1"]
        ax_f1.axhline(base, color=_SPLIT_COLORS[split], linestyle="--", linewidth=1,
                      label=f"{split}: abstain on all ({base:.1f})")
    ax_auc.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax_auc.set_xticks(range(len(keys)), [_config_label(*k) for k in keys], fontsize=7)
    ax_f1.set(ylabel="F1 (threshold 0)", ylim=(0, 100),
              title="Synthetic SQuAD 2.0 study: layout / null position / head")
    ax_auc.set(ylabel="NA AUROC", ylim=(0, 1))
    ax_f1.legend(fontsize=7, loc="upper right")
    ax_auc.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path)


def _reliability_panel(ax: Any, bins: Sequence[Any], ece: float, title: str) -> None:
    filled = [b for b in bins if b.count]
    ax.bar([(b.lo + b.hi) / 2 for b in filled], [b.frac_unanswerable for b in filled],
           width=[b.hi - b.lo for b in filled], edgecolor="black", alpha=0.6,
           label="observed share unanswerable")
    ax.plot([b.mean_prob for b in filled], [b.frac_unanswerable for b in filled], "o",
            color="tab:red", label="bin mean na_prob")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    for b in filled:
        ax.annotate(str(b.count), ((b.lo + b.hi) / 2, 0.02), ha="center", fontsize=6)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="na_prob", ylabel="share unanswerable")
    ax.set_title(f"{title}\nECE = {ece:.3f}", fontsize=8)


def plot_reliability(panels: Sequence[Sequence[tuple[str, Sequence[Any], float] | None]],
                     path: Path) -> Path:
    """Reliability diagrams on a grid: ``panels[i][j]`` is (title, `ReliabilityBin`s, ECE), or
    None for an empty place."""
    n_rows, n_cols = len(panels), len(panels[0])
    fig = new_figure(figsize=(4.2 * n_cols, 3.8 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, row in enumerate(panels):
        for j, panel in enumerate(row):
            if panel is None:
                axes[i][j].set_visible(False)
                continue
            title, bins, ece = panel
            _reliability_panel(axes[i][j], bins, ece, title)
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Runs side by side (gpt2qa report)
# --------------------------------------------------------------------------------------------

def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_learning_curves(logs: Sequence[tuple[str, Sequence[Mapping[str, Any]], ReportSpec]],
                         path: Path) -> Path:
    """Train loss (left) and each run's eval scores in percent (right; its task's `curves`, one
    line style per curve), one colour per (label, log, spec); each distinct baseline as a
    labelled grey line."""
    fig = new_figure(figsize=(11, 4.4))
    ax_loss, ax_f1 = fig.subplots(1, 2)
    styles = ("o-", "s--", "^:", "d-.")
    baselines: dict[str, float] = {}
    for (label, log, spec), color in zip(logs, _colors(len(logs)), strict=True):
        ax_loss.plot(*points(log, "train", "loss"), color=color, label=label)
        curves = [(name, points(log, "eval", key, spec.scale)) for name, key in spec.curves]
        for (name, xy), style in zip([c for c in curves if c[1][0]], styles, strict=False):
            ax_f1.plot(*xy, style, color=color, alpha=1.0 if style == styles[0] else 0.65,
                       label=f"{label}: {name}")
        base = points(log, "eval", spec.baseline[1], spec.scale)[1] if spec.baseline else []
        if spec.baseline is not None and base:
            baselines.setdefault(f"{spec.baseline[0]} = {base[0]:.1f}", base[0])
    for text, value in baselines.items():
        ax_f1.axhline(value, color="grey", linestyle=":", label=text)
        ax_f1.text(0.99, value, text, transform=ax_f1.get_yaxis_transform(), ha="right",
                   va="bottom", fontsize=7, color="dimgrey")
    ax_loss.set(xlabel="optimizer step", ylabel="train loss", title="training loss")
    ax_f1.set(xlabel="optimizer step", ylabel="score (%)", title="evaluation scores",
              ylim=(0, 100))
    for ax in (ax_loss, ax_f1):  # below each panel, not over its curves
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                  frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_abstain_pr(curves: Sequence[tuple[str, Sequence[float], Sequence[float],
                                           Sequence[float]]],
                    base_rate: float | None, path: Path) -> Path:
    """Precision/recall of abstaining per (label, precisions, recalls, thresholds), a dot at
    na_prob > 0.5, and the share of unanswerable questions (`base_rate`) as a line."""
    fig = new_figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for (label, precision, recall, thresholds), color in zip(curves, _colors(len(curves)),
                                                             strict=True):
        ax.step(recall, precision, where="post", color=color, label=label)
        # Mark the decision rule the run used (na_prob > 0.5, i.e. score diff > 0).
        above = [k for k, t in enumerate(thresholds) if t > 0.5]
        if above:
            k = above[-1]
            ax.plot(recall[k], precision[k], "o", color=color)
    if base_rate is not None:
        ax.axhline(base_rate, color="grey", linestyle=":", label="abstain on all (base rate)")
    ax.set(xlabel="recall of unanswerable questions", ylabel="precision of abstaining",
           xlim=(0, 1.02), ylim=(0, 1.02),
           title="abstaining as the na_prob threshold moves (dot: na_prob > 0.5)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_na_histograms(groups: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                       path: Path) -> Path:
    """One panel per (label, answerable na_probs, unanswerable na_probs), 3 to a row."""
    n = len(groups)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = new_figure(figsize=(4.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, (label, ans, unans) in enumerate(groups):
        ax = axes[k // cols][k % cols]
        for values, name, color in ((ans, "answerable", "tab:blue"),
                                    (unans, "unanswerable", "tab:red")):
            if values:
                ax.hist(values, bins=20, range=(0.0, 1.0), alpha=0.55, color=color,
                        weights=[1.0 / len(values)] * len(values),
                        label=f"{name} ({len(values)})")
        ax.set(xlabel="no-answer probability", ylabel="share of group", title=label)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_question_words(tables: Sequence[tuple[str, Mapping[str, tuple[float, int, float]]]],
                        words: Sequence[str], path: Path) -> Path:
    """Grouped bars of F1 per question word (in `words` order), one colour per (label, table);
    a table maps a word to (F1, questions, all-no-answer F1): each bar is labelled n=questions
    and crossed by a black dash at its group's all-no-answer F1."""
    fig = new_figure(figsize=(max(6.5, 1.2 * len(words) * max(1, len(tables)) / 2 + 3), 4.4))
    ax = fig.add_subplot()
    width = 0.8 / max(len(tables), 1)
    dash_label = "all no-answer F1 of the group"
    for k, ((label, table), color) in enumerate(zip(tables, _colors(len(tables)), strict=True)):
        xs = [i + (k - (len(tables) - 1) / 2) * width for i in range(len(words))]
        present = [(x, table[w]) for x, w in zip(xs, words, strict=True) if w in table]
        bars = ax.bar([x for x, _ in present], [f1 for _, (f1, _, _) in present], width=width,
                      color=color, label=label)
        ax.bar_label(bars, [f"n={n}" for _, (_, n, _) in present], fontsize=7, padding=2)
        ax.hlines([base for _, (_, _, base) in present], [x - width / 2 for x, _ in present],
                  [x + width / 2 for x, _ in present], colors="black", linestyles="--",
                  linewidth=1.5, label=dash_label)
        dash_label = "_"  # one legend entry for all the dashes
    ax.set_xticks(range(len(words)), words)
    ax.set(ylabel="F1 (%)", ylim=(0, 108), title="F1 by question word (n: questions)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3,
              frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)
