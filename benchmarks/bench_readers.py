"""Reading N questions in each layout (`gpt2qa.readers`): seconds and peak memory, whole-file
loading against streaming.

The questions are a real SQuAD 2.0 file's (default: the first ten training articles),
repeated with fresh ids up to `--n`, written once to a temporary folder as the official
nested JSON, flat rows in JSON lines, CSV and (with pyarrow) Parquet. Each (layout, mode)
cell runs in its own process, started from a small one, so its peak resident set size
(ru_maxrss) is its own:

  load          `load_examples`: every question in memory, as train and evaluate read
  stream        `iter_examples`, each question dropped once counted (ids remembered)
  stream-noids  the same with ``unique_ids=False`` (a caller that checks ids itself)

    python benchmarks/bench_readers.py             # 200k questions, a minute or two
    python benchmarks/bench_readers.py --n 20000   # seconds
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import common

DEFAULT_SOURCE = common.SHARED_DATA / "squad-v2" / "train-v2.0-first10articles.json"
MODES = ("load", "stream", "stream-noids")
CELL = """
import json, resource, sys, time
from gpt2qa.readers import iter_examples, load_examples
path, mode = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if mode == "load":
    n = len(load_examples(path).examples)
else:
    n = sum(1 for _ in iter_examples(path, unique_ids=mode == "stream"))
print(json.dumps({"questions": n, "seconds": round(time.perf_counter() - t, 2),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024)}))
"""


def rows_of(source: Path, n: int) -> list[dict[str, Any]]:
    """`n` flat rows: the file's questions, repeated with ids made unique."""
    squad = json.loads(source.read_text(encoding="utf-8"))
    base = [{"id": qa["id"], "title": art.get("title", ""), "context": par["context"],
             "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for art in squad["data"] for par in art["paragraphs"] for qa in par["qas"]]
    return [{**row, "id": f"{row['id']}-{k}"} for k in range(n // len(base) + 1)
            for row in base][:n]


def write_files(rows: list[dict[str, Any]], folder: Path) -> dict[str, Path]:
    """The same rows as the official JSON, JSON lines, CSV and (with pyarrow) Parquet."""
    paths = {"squad": folder / "squad.json", "jsonl": folder / "rows.jsonl",
             "csv": folder / "rows.csv"}
    articles: dict[str, dict[str, Any]] = {}
    for row in rows:
        paras = articles.setdefault(row["title"], {"title": row["title"], "paragraphs": []})
        if not paras["paragraphs"] or paras["paragraphs"][-1]["context"] != row["context"]:
            paras["paragraphs"].append({"context": row["context"], "qas": []})
        answers = row["answers"]
        paras["paragraphs"][-1]["qas"].append({
            "id": row["id"], "question": row["question"], "is_impossible": not answers["text"],
            "answers": [{"text": t, "answer_start": s}
                        for t, s in zip(answers["text"], answers["answer_start"], strict=True)]})
    paths["squad"].write_text(json.dumps({"version": "v2.0", "data": list(articles.values())}),
                              encoding="utf-8")
    with open(paths["jsonl"], "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    with open(paths["csv"], "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "answers": json.dumps(row["answers"])} for row in rows)
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        print("pyarrow is not installed: no Parquet cells", file=sys.stderr)
    else:
        paths["parquet"] = folder / "rows.parquet"
        pq.write_table(pyarrow.Table.from_pylist(rows), paths["parquet"])
    return paths


def run_cell(path: Path, mode: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CELL, str(path), mode], check=True,
                         capture_output=True, text=True,
                         env={"PYTHONPATH": str(common.REPO / "src"), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="questions per file")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="SQuAD JSON whose questions are repeated")
    parser.add_argument("--write-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_to:  # in a child process: a cell's ru_maxrss starts at its parent's size
        print(json.dumps({k: str(v) for k, v in
                          write_files(rows_of(args.source, args.n), args.write_to).items()}))
        return
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        written = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--source",
                                  str(args.source), "--write-to", tmp], check=True,
                                 capture_output=True, text=True).stdout
        for layout, name in json.loads(written).items():
            path = Path(name)
            for mode in MODES if layout != "squad" else ("load",):
                cell = {"layout": layout, "mode": mode, "mib_on_disk":
                        round(path.stat().st_size / 2**20, 1), **run_cell(path, mode)}
                print(json.dumps(cell), flush=True)
                cells.append(cell)
    common.write_result("bench_readers", {"n": args.n, "source": args.source.name,
                                          "cells": cells, "machine": common.machine_info()})
    print(" ".join(f"{c['layout']}/{c['mode']}={c['seconds']}s,{c['peak_rss_mib']}MiB"
                   for c in cells))


if __name__ == "__main__":
    main()
