"""PNG plots with matplotlib (Agg backend: no display needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gpt2qa.io import atomic_file


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Render a matplotlib Figure (no pyplot state) to a PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return Path(path)


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_learning_curve(log_path: str | os.PathLike[str], out_png: str | os.PathLike[str],
                        title: str = "") -> Path:
    """Training loss and eval F1 (untuned and tuned) against optimizer steps, as a PNG."""
    plt = _pyplot()
    fig = learning_curve_figure(log_path, title)
    try:
        return save_figure(fig, out_png)
    finally:
        plt.close(fig)


def learning_curve_figure(log_path: str | os.PathLike[str], title: str = "") -> Any:
    """The learning-curve Figure (a pyplot figure: the caller closes it)."""
    plt = _pyplot()
    records = read_log(log_path)
    train = [r for r in records if r.get("event") == "train"]
    evals = [r for r in records if r.get("event") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss", color="tab:blue")
    if evals:
        ax2 = ax.twinx()
        f1_key = "f1" if "f1" in evals[0] else "exact_match"
        ax2.plot([r["step"] for r in evals], [r[f1_key] for r in evals], "o-", color="tab:red",
                 label="eval F1")
        if "tuned_f1" in evals[0]:
            ax2.plot([r["step"] for r in evals], [r["tuned_f1"] for r in evals], "s--",
                     color="tab:orange", label="eval F1 (tuned threshold)")
        if "null_baseline_f1" in evals[0]:
            ax2.axhline(evals[0]["null_baseline_f1"], color="grey", linestyle=":",
                        label="all no-answer")
        ax2.set_ylabel("F1", color="tab:red")
        ax2.set_ylim(0, 100)
    # One legend below the axes: inside, it sat where the falling loss curve ends.
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=len(handles), fontsize=8, frameon=False)
    ax.set_title(title or "learning curve")
    fig.tight_layout()
    return fig
