"""`gpt2qa demo` as a user runs it: its figures per seed, its time, and a tiny canary run.

For each seed in `--seeds`: `gpt2qa demo --seed S` in a fresh process, one seed at a time, at
torch's default thread count unless `--threads` (the README quotes the default). It records
the demo's own figures (its demo_metrics.json), the demo's own clock and the whole command's,
and the load average before and after, beside the CPU's model and speed flags. The README's
demo table is copied from this file, and tests/test_demo_figures.py checks that it still is.

The canary is the demo at a tiny size on 1 thread, run twice in this process: the two runs
must be bit-identical, and their losses and figures are recorded with the seeds. The test
reruns it; when the code changes the demo's numbers the canary changes too, the test fails,
and this script must be rerun (then the README's table updated from what it prints).

    python benchmarks/bench_demo.py --seeds 0 1 2    # about 3 minutes per seed on 2 idle cores
    python benchmarks/bench_demo.py --seeds 0 --name demo_seed0_smoke   # one seed, elsewhere
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# The canary's demo flags: the demo's code path at a size that trains in seconds.
# The canary's demo flags: the demo's code path at a size that trains in seconds and still
# learns a little (tuned F1 above the all-no-answer baseline), so decoding changes show too.
CANARY_ARGS = ["--steps", "300", "--n-train", "600", "--n-dev", "30", "--n-layer", "2",
               "--n-embd", "64", "--n-head", "4", "--vocab-size", "400", "--batch-size", "16",
               "--max-seq-length", "128", "--threads", "1", "--no-progress"]


def source_digest() -> str:
    """sha256 over src/gpt2qa's Python files, to say which code a record came from."""
    root = Path(__file__).resolve().parents[1] / "src" / "gpt2qa"
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_canary(out_dir: Path, args: list[str]) -> dict[str, Any]:
    """One tiny demo in this process: its figures, losses and a weights digest."""
    from gpt2qa.cli import main

    code = main(["demo", "--out-dir", str(out_dir), *args])
    if code != 0:
        raise SystemExit(f"canary demo failed with exit status {code}")
    demo = json.loads((out_dir / "demo_metrics.json").read_text(encoding="utf-8"))
    log = [json.loads(line) for line in
           (out_dir / "run" / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    weights = (out_dir / "run" / "model" / "model.safetensors").read_bytes()
    return {"figures": figures(demo),
            "losses": [r["loss"] for r in log if r.get("event") == "train"],
            "weights_sha256": hashlib.sha256(weights).hexdigest()}


def figures(demo: dict[str, Any]) -> dict[str, float]:
    """What the README quotes from one demo_metrics.json, rounded as printed."""
    test = demo["test"]
    return {"dev_f1": round(demo["f1"], 2), "dev_tuned_f1": round(demo["tuned_f1"], 2),
            "threshold": round(demo["tuned_null_score_diff_threshold"], 3),
            "test_f1": round(test["f1"], 2), "test_null_baseline_f1": round(
                test["null_baseline_f1"], 2),
            "margin_f1": round(test["f1"] - test["null_baseline_f1"], 2)}


def table_lines(seeds: list[dict[str, Any]]) -> list[str]:
    """The README's demo table, exactly as it must read."""
    lines = ["| seed | dev F1, thr 0 | dev F1, tuned thr | test F1, dev-tuned thr | "
             "all no-answer F1 (test) | margin | demo time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in seeds:
        lines.append(f"| {row['seed']} | {row['dev_f1']:.2f} | {row['dev_tuned_f1']:.2f} | "
                     f"{row['test_f1']:.2f} | {row['test_null_baseline_f1']:.2f} | "
                     f"{row['margin_f1']:+.2f} | {row['demo_seconds']:.0f} |")
    return lines


def run_seed(seed: int, out_root: Path, threads: int | None) -> dict[str, Any]:
    """`gpt2qa demo --seed S` in its own process, timed from outside and by itself."""
    command = [sys.executable, "-m", "gpt2qa", "demo", "--seed", str(seed), "--out-dir",
               str(out_root / f"seed-{seed}"), "--no-progress"]
    command += ["--threads", str(threads)] if threads else []
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    command_seconds = time.perf_counter() - start
    demo = json.loads((out_root / f"seed-{seed}" / "demo_metrics.json").read_text(
        encoding="utf-8"))
    return {"seed": seed, **figures(demo), "threads": demo["threads"],
            "demo_seconds": demo["wall_seconds"],
            "command_seconds": round(command_seconds, 1),
            "loadavg_1m": {"before": round(load_before, 2),
                           "after": round(os.getloadavg()[0], 2)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per demo (default: torch's default, as `gpt2qa demo`)")
    parser.add_argument("--name", default="demo_seeds", help="results file name")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        root = Path(tmp)
        first, second = (run_canary(root / f"canary-{i}", CANARY_ARGS) for i in (1, 2))
        if first != second:
            raise SystemExit(f"the canary did not repeat:\n{first}\n{second}")
        seeds = [run_seed(seed, root, args.threads) for seed in args.seeds]
    payload = {"date": time.strftime("%Y-%m-%d"), "source_sha256": source_digest(),
               "demo_threads": args.threads or torch.get_num_threads(),
               "seeds": seeds, "canary": {"args": CANARY_ARGS, **first}}
    path = common.write_result(args.name, payload)
    print("\n".join(table_lines(seeds)))
    print(f"wrote {path}")
    print(common.summary_line({f"seed{r['seed']}_test_f1": r["test_f1"] for r in seeds}
                              | {"max_demo_seconds": max(r["demo_seconds"] for r in seeds)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
