"""The demo repeats bit for bit, and the README's demo table is the recorded run of this code.

benchmarks/bench_demo.py records the demo's figures per seed together with a canary: the demo
at a tiny size on one thread. The README's table must be the record's, and the canary rerun
here must give the record's losses and figures: when a change moves the demo's numbers, the
canary moves too and this fails until the benchmark is rerun and the README updated.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "benchmarks" / "results" / "demo_seeds.json"
BEGIN, END = "<!-- demo-table", "<!-- /demo-table -->"
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_demo  # noqa: E402
import common  # noqa: E402


def readme_table() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "README.md lost its demo table markers"
    block = text[text.index(BEGIN):text.index(END)]
    return [line for line in block.splitlines() if line.startswith("|")]


def test_readme_demo_table_is_the_recorded_run():
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    assert readme_table() == bench_demo.table_lines(record["seeds"])
    assert [row["seed"] for row in record["seeds"]] == [0, 1, 2]


def test_readme_names_the_record_and_its_command():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text[text.index(BEGIN):text.index(END)]
    assert "benchmarks/bench_demo.py" in start and "demo_metrics.json" in text


@pytest.mark.slow
def test_demo_repeats_bit_for_bit_and_matches_the_recorded_canary(tmp_path):
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    canary = record["canary"]
    first = bench_demo.run_canary(tmp_path / "a", canary["args"])
    second = bench_demo.run_canary(tmp_path / "b", canary["args"])
    assert first == second  # same losses, figures and weight bytes
    assert first["figures"]["dev_tuned_f1"] > first["figures"]["test_null_baseline_f1"]
    same_cpu = (common.machine_info()["torch_cpu_capability"]
                == record["machine"]["torch_cpu_capability"])
    if same_cpu:  # the recording machine's kind of CPU: the numbers must repeat exactly
        assert first["losses"] == canary["losses"], "rerun benchmarks/bench_demo.py"
        assert first["figures"] == canary["figures"], "rerun benchmarks/bench_demo.py"
    else:  # other kernels round differently; a code change still moves these far more
        assert first["losses"] == pytest.approx(canary["losses"], rel=1e-3)
        for key, value in canary["figures"].items():
            assert first["figures"][key] == pytest.approx(value, abs=3.0), key
