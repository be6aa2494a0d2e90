"""Streamed predict at scale: peak memory by size, throughput against the in-memory predict,
and a SIGKILL at a random moment followed by a restart.

Questions come from the demo's synthetic generator (`gpt2qa.synthetic`, dev split, one seed
per block of 1,000 questions, so ids never repeat) as JSON lines of flat rows; the model is a
random-init tiny GPT-2 (2 layers, 128 wide) with GPT-2's tokenizer, windows of 384 tokens.

For each size a child process runs `gpt2qa predict --data FILE.jsonl --out-dir D` (streamed:
chunks of `--chunk-size`, merged at the end) and reports its own peak RSS
(`resource.getrusage`), its time and its CPU time (user + system: on a machine shared with
other work, the steadier measure of the work done). At the smallest size, in the same run and alternating
with it for `--rounds` rounds, two in-memory runs answer the same questions from one SQuAD
JSON file:

  in-memory        `gpt2qa predict --data FILE.json` as it ships (batch-invariant windows);
  in-memory-old    the same with the batching predict had before streaming came (windows
                   padded to the longest of their batch), for the cost of batch invariance.

The streamed files must be byte-identical to the in-memory ones. Then a streamed run at the
smallest size is killed with SIGKILL at a random moment (seeded) after its first chunk is
written, and rerun; its merged files and its log must be byte-identical to the uninterrupted
run's.

    python benchmarks/bench_stream.py                       # 10k and 100k questions
    python benchmarks/bench_stream.py --sizes 10000,100000,1000000
    python benchmarks/bench_stream.py --sizes 2000 --rounds 1 --kills 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common

WORKER_FLAG = "--worker"
RESULT_PREFIX = "BENCH_STREAM_RESULT "
FILES = ("predictions.json", "na_probs.json")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000",
                   help="questions per streamed run, comma-separated (the smallest also runs "
                        "in memory and is killed)")
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating rounds of streamed and in-memory runs at the smallest size")
    p.add_argument("--kills", type=int, default=1, help="SIGKILL-then-restart trials")
    p.add_argument("--threads", type=int, default=1, help="OMP/torch threads per child process")
    p.add_argument("--seed", type=int, default=0, help="the kill moments' random generator")
    p.add_argument("--tokenizer", default=str(common.DEFAULT_TOKENIZER))
    p.add_argument("--work-dir", default="", help="keep data and outputs here (default: a "
                                                  "temporary folder, removed at the end)")
    p.add_argument("--name", default="stream", help="benchmarks/results/NAME.json")
    return p.parse_args(argv)


# -- data and model -------------------------------------------------------------------------

def flat_rows(n: int) -> Any:
    """The first `n` synthetic dev questions as flat rows (run_qa's columns), in order."""
    from gpt2qa.synthetic import SyntheticConfig, generate

    made, seed = 0, 0
    while made < n:
        squad = generate(SyntheticConfig(seed=seed, n_passages=250, split="dev"))
        for article in squad["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    if made == n:
                        return
                    made += 1
                    yield {"id": qa["id"], "title": article["title"], "context": para["context"],
                           "question": qa["question"],
                           "answers": {"text": [a["text"] for a in qa["answers"]],
                                       "answer_start": [a["answer_start"] for a in qa["answers"]]}}
        seed += 1


def write_data(work: Path, n: int, squad_too: bool) -> dict[str, Path]:
    """d-N.jsonl (and, with `squad_too`, the same questions as d-N.json: one article per
    question, in the same order)."""
    paths = {"jsonl": work / f"d-{n}.jsonl"}
    articles = []
    with paths["jsonl"].open("w", encoding="utf-8") as fh:
        for row in flat_rows(n):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            if squad_too:
                answers = [{"text": t, "answer_start": s} for t, s in
                           zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True)]
                articles.append({"title": row["title"], "paragraphs": [{
                    "context": row["context"], "qas": [{
                        "id": row["id"], "question": row["question"], "answers": answers,
                        "is_impossible": not answers}]}]})
    if squad_too:
        paths["json"] = work / f"d-{n}.json"
        paths["json"].write_text(json.dumps({"version": "v2.0", "data": articles},
                                            ensure_ascii=False), encoding="utf-8")
    return paths


def save_tiny_model(path: Path, tokenizer_dir: str) -> Path:
    from gpt2qa.checkpoint import save_model
    from gpt2qa.config import QAConfig
    from gpt2qa.model import QAModel, backbone_from_config

    tokenizer = common.load_gpt2_tokenizer(tokenizer_dir)
    shape = common.TINY
    import torch

    torch.manual_seed(0)
    config = common.ModelShape(shape.name, shape.n_layer, shape.n_embd, shape.n_head,
                               vocab_size=len(tokenizer)).gpt2_config(dropout=0.0)
    model = QAModel(backbone_from_config(config), QAConfig.of(max_seq_length=384))
    return save_model(model, tokenizer, path)


# -- child processes --------------------------------------------------------------------------

def worker(mode: str, argv: list[str]) -> None:
    """In a child process: one `gpt2qa` command, then its time and peak RSS on one line.
    `old`: the in-memory predict with the batching it had before (padded to the batch's
    longest window)."""
    import resource

    from gpt2qa.cli import main
    from gpt2qa.pipeline import QAPipeline

    if mode == "old":
        original = QAPipeline.predict

        def predict(self: Any, examples: Any, *args: Any, **kwargs: Any) -> Any:
            return original(self, examples, *args, **{**kwargs, "batch_invariant": False})

        QAPipeline.predict = predict  # type: ignore[method-assign]
    start = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(RESULT_PREFIX + json.dumps({"code": code, "seconds": seconds,
                                      "cpu_seconds": usage.ru_utime + usage.ru_stime,
                                      "peak_rss_mb": usage.ru_maxrss / 1024}))  # kB on Linux


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONPATH": str(common.REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_child(mode: str, argv: list[str], threads: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, WORKER_FLAG, mode, *argv],
                          env=child_env(threads), capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"bench_stream: {mode} {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    if result["code"] != 0:
        raise SystemExit(f"bench_stream: {mode} exited {result['code']}:\n{proc.stderr[-3000:]}")
    return result


def predict_argv(model: Path, data: Path, out: Path, chunk: int | None = None) -> list[str]:
    argv = ["predict", "--model", str(model), "--data", str(data), "--out-dir", str(out)]
    return argv + (["--chunk-size", str(chunk)] if chunk else [])


def same_files(a: Path, b: Path, names: Sequence[str] = FILES) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


# -- the measurements -------------------------------------------------------------------------

def compare_at_smallest(args: argparse.Namespace, model: Path, data: dict[str, Path], n: int,
                        work: Path) -> dict[str, Any]:
    """Streamed vs in-memory vs in-memory-old at one size, alternating, `rounds` rounds."""
    runs: dict[str, list[dict[str, Any]]] = {"streamed": [], "in-memory": [],
                                             "in-memory-old": []}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            out = work / f"{name}-{n}-r{r}"
            if name == "streamed":
                argv = predict_argv(model, data["jsonl"], out, args.chunk_size)
            else:
                argv = predict_argv(model, data["json"], out)
            result = run_child("old" if name == "in-memory-old" else "cli", argv, args.threads)
            runs[name].append({**result, "out": out})
            print(f"  {name:14s} round {r}: {n / result['seconds']:.1f} questions/s, "
                  f"{n / result['cpu_seconds']:.1f} per CPU second, peak RSS "
                  f"{result['peak_rss_mb']:.0f} MB", flush=True)
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        seconds = common.median([x["seconds"] for x in results])
        cpu = common.median([x["cpu_seconds"] for x in results])
        summary[name] = {"questions_per_s": n / seconds, "median_seconds": seconds,
                         "seconds": [x["seconds"] for x in results],
                         "questions_per_cpu_s": n / cpu, "median_cpu_seconds": cpu,
                         "cpu_seconds": [x["cpu_seconds"] for x in results],
                         "peak_rss_mb": max(x["peak_rss_mb"] for x in results)}
    stream_out, memory_out = runs["streamed"][0]["out"], runs["in-memory"][0]["out"]
    summary["streamed_equals_in_memory"] = same_files(stream_out, memory_out)
    summary["streamed_over_in_memory"] = (summary["streamed"]["questions_per_s"]
                                          / summary["in-memory"]["questions_per_s"])
    summary["streamed_over_in_memory_old"] = (summary["streamed"]["questions_per_s"]
                                              / summary["in-memory-old"]["questions_per_s"])
    for other in ("in-memory", "in-memory-old"):
        summary[f"streamed_over_{other.replace('-', '_')}_cpu"] = (
            summary["streamed"]["questions_per_cpu_s"] / summary[other]["questions_per_cpu_s"])
    summary["reference_out"] = str(stream_out)
    return summary


def kill_and_restart(args: argparse.Namespace, model: Path, data: Path, reference: Path,
                     seconds: float, work: Path, trial: int) -> dict[str, Any]:
    """SIGKILL a streamed run at a random moment, rerun it, compare with `reference`."""
    rng = random.Random(f"bench_stream/{args.seed}/{trial}")
    out = work / f"killed-{trial}"
    argv = predict_argv(model, data, out, args.chunk_size)
    cmd = [sys.executable, "-m", "gpt2qa", *argv]
    log = out / "predictions.jsonl"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=child_env(args.threads), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while not log.is_file() and proc.poll() is None:  # the model is loaded, lines are coming
        time.sleep(0.01)
    first_line = time.perf_counter() - start
    time.sleep(rng.uniform(0.0, 0.9) * max(0.0, seconds - first_line))
    kill_at = time.perf_counter() - start
    finished_first = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raw = log.read_bytes() if log.is_file() else b""
    state = {"kill_at_s": kill_at, "first_chunk_at_s": first_line,
             "finished_before_kill": finished_first,
             "lines_at_kill": raw.count(b"\n"), "torn_bytes_at_kill": len(raw) - (
                 raw.rfind(b"\n") + 1)}
    restart = run_child("cli", argv, args.threads)
    identical = same_files(out, reference, (*FILES, "predictions.jsonl"))
    print(f"  kill {trial}: at {kill_at:.1f} s, {state['lines_at_kill']} lines written; "
          f"restart byte-identical: {identical}", flush=True)
    return {**state, "restart_seconds": restart["seconds"], "byte_identical": identical}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    model = save_tiny_model(work / "model", args.tokenizer)
    payload: dict[str, Any] = {"sizes": sizes, "chunk_size": args.chunk_size,
                               "threads": args.threads, "rounds": args.rounds,
                               "model": {**common.shape_dict(common.TINY),
                                         "max_seq_length": 384, "init": "random"},
                               "streamed": {}}
    for i, n in enumerate(sizes):
        start = time.perf_counter()
        data = write_data(work, n, squad_too=i == 0)
        print(f"{n} questions written in {time.perf_counter() - start:.1f} s", flush=True)
        if i == 0:
            payload["smallest"] = compare_at_smallest(args, model, data, n, work)
            reference = Path(payload["smallest"].pop("reference_out"))
            seconds = payload["smallest"]["streamed"]["median_seconds"]
            payload["kills"] = [kill_and_restart(args, model, data["jsonl"], reference, seconds,
                                                 work, t) for t in range(args.kills)]
            result = {"seconds": seconds,
                      "cpu_seconds": payload["smallest"]["streamed"]["median_cpu_seconds"],
                      "peak_rss_mb": payload["smallest"]["streamed"]["peak_rss_mb"]}
        else:
            result = run_child("cli", predict_argv(model, data["jsonl"], work / f"streamed-{n}",
                                                   args.chunk_size), args.threads)
        payload["streamed"][str(n)] = {"seconds": result["seconds"],
                                       "questions_per_s": n / result["seconds"],
                                       "cpu_seconds": result["cpu_seconds"],
                                       "peak_rss_mb": result["peak_rss_mb"]}
        print(f"  streamed {n}: {n / result['seconds']:.1f} questions/s, peak RSS "
              f"{result['peak_rss_mb']:.0f} MB", flush=True)
        for path in data.values():
            path.unlink()
    rss = [payload["streamed"][str(n)]["peak_rss_mb"] for n in sizes]
    payload["rss_largest_over_second_largest"] = rss[-1] / rss[-2] if len(rss) > 1 else None
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        payload = run(args, work)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
            payload = run(args, Path(tmp))
    path = common.write_result(args.name, payload)
    small = payload["smallest"]
    print(common.summary_line({
        "sizes": "/".join(map(str, payload["sizes"])),
        "rss_mb": "/".join(f"{payload['streamed'][str(n)]['peak_rss_mb']:.0f}"
                           for n in payload["sizes"]),
        "streamed_qps": small["streamed"]["questions_per_s"],
        "in_memory_qps": small["in-memory"]["questions_per_s"],
        "ratio": small["streamed_over_in_memory"],
        "cpu_ratio": small["streamed_over_in_memory_cpu"],
        "identical": small["streamed_equals_in_memory"],
        "kills_identical": all(k["byte_identical"] for k in payload["kills"]),
        "result": path}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_FLAG:
        worker(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
