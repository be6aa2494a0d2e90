"""Load test for `gpt2qa serve`: micro-batching on vs off, and HTTP parsers side by side, on
loopback, with a tiny model.

    PYTHONPATH=src python benchmarks/serve_load.py [--requests 2000] [--concurrency 32]
    PYTHONPATH=src python benchmarks/serve_load.py --http h11 httptools --modes batched \
        --rounds 3 --requests 300

`--http` takes one or more of the server's parsers (`gpt2qa serve --http`); each round runs
every parser in turn for every mode (alternating, so load from other work on the machine falls
on both), and the summary gives each parser's median over the rounds and the ratios between
parsers. The server's own CPU time per request (from /proc) is printed beside the client's.

Builds a tiny GPT-2 QA model (random weights: speed does not depend on training) and a
tokenizer from the synthetic benchmark's text in a temporary directory, then for each mode
starts the server as a subprocess on 127.0.0.1, sends a fixed number of requests over
`--concurrency` keep-alive connections, and stops it. Prints throughput, p50/p95/p99
latency, errors and the load generator's own CPU time per request for each mode, the
batched/unbatched ratios, a final `key=value` line, and writes everything to a JSON file.

The client shares the machine with the server, so its cost counts. `--client raw` (default)
writes prepared HTTP/1.1 requests on asyncio streams and reads each response whole (status
line, Content-Length, a JSON body with an answer); `--client httpx` uses httpx.AsyncClient,
which measured about 9 ms of CPU per request here, most of a core at 100 req/s, so with it
the load generator rather than the server set the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from gpt2qa.decode import write_json_atomic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "serve_load.json"


@dataclass(frozen=True)
class LoadResult:
    """One mode's measurements (latencies in milliseconds)."""

    mode: str
    http: str
    """The server's HTTP parser (`--http`)."""
    round: int
    max_batch_size: int
    batch_wait_ms: float
    requests: int
    concurrency: int
    errors: int
    seconds: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_batch_size: float
    model_busy: float
    """Share of the wall time the server spent in the model (forward + decode)."""
    client: str
    client_cpu_ms_per_request: float
    """The load generator's own CPU time (user + system) per request."""
    server_cpu_ms_per_request: float
    """The server process's CPU time (user + system, /proc) per request; NaN where unknown."""


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: q=50 of [1, 2, 3, 4] is 2, q=99 is 4."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100)
    return sorted_values[int(rank) - 1]


def build_model(out_dir: Path, seed: int, n_layer: int, n_embd: int,
                n_passages: int) -> tuple[Path, list[tuple[str, str]]]:
    """A tiny random-weight model directory plus (question, context) pairs to ask it."""
    import torch

    from gpt2qa.checkpoint import save_model
    from gpt2qa.config import QAConfig
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config
    from gpt2qa.synthetic import SyntheticConfig, corpus_texts, generate
    from gpt2qa.tokenizer import train_bpe_tokenizer

    squad = generate(SyntheticConfig(seed=seed, n_passages=n_passages, split="dev"))
    pairs = [(qa["question"], para["context"]) for article in squad["data"]
             for para in article["paragraphs"] for qa in para["qas"]]
    tokenizer = train_bpe_tokenizer(corpus_texts(squad), vocab_size=1000)
    prepare_tokenizer(tokenizer)
    torch.manual_seed(seed)
    backbone = backbone_from_config(tiny_gpt2_config(len(tokenizer), n_layer=n_layer,
                                                     n_embd=n_embd, n_positions=256))
    model = QAModel(backbone, QAConfig.of(max_seq_length=256, doc_stride=128, max_query_length=32))
    return save_model(model, tokenizer, out_dir / "model"), pairs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, port: int, max_batch_size: int, batch_wait_ms: float,
                 threads: int, quantize: str = "none",
                 http: str = "auto") -> subprocess.Popen[bytes]:
    import gpt2qa

    src = str(Path(gpt2qa.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])]),
        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "gpt2qa.serve", "--model", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--max-batch-size", str(max_batch_size),
           "--batch-wait-ms", str(batch_wait_ms), "--device", "cpu", "--log-level", "warning",
           "--quantize", quantize, "--http", http]
    return subprocess.Popen(cmd, env=env)


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {base} did not become healthy in {timeout:.0f}s")


def _request_bytes(host: str, question: str, context: str) -> bytes:
    body = json.dumps({"question": question, "context": context, "top_k": 3}).encode()
    head = (f"POST /v1/answer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole HTTP/1.1 response with a Content-Length body: (status, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), None)
    if length is None:
        raise ConnectionError("response without Content-Length")
    return status, await reader.readexactly(length)


async def send_load_raw(base: str, pairs: list[tuple[str, str]], n_requests: int,
                        concurrency: int, healthz: bool = False
                        ) -> tuple[list[float], int, float]:
    """`send_load` over plain asyncio streams (see the module doc); `healthz`: GET /healthz
    instead of questions (the HTTP stack and the app's routing alone, no model work)."""
    address = base.removeprefix("http://")
    host, port = address.rsplit(":", 1)
    requests = ([f"GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n".encode("ascii")]
                if healthz else [_request_bytes(address, q, c) for q, c in pairs])
    expected = "questions_answered" if healthz else "answer"
    latencies: list[float] = []
    errors = 0
    next_index = iter(range(n_requests))

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in next_index:  # shared iterator: each index is sent exactly once
                t0 = time.perf_counter()
                try:
                    writer.write(requests[i % len(requests)])
                    status, body = await _read_response(reader)
                    ok = status == 200 and expected in json.loads(body)
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok
                if not ok:  # the connection's state is unknown: start a fresh one
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


async def send_load(base: str, pairs: list[tuple[str, str]], n_requests: int,
                    concurrency: int) -> tuple[list[float], int, float]:
    """Send n_requests over `concurrency` connections with httpx; return latencies (s),
    errors, wall s."""
    latencies: list[float] = []
    errors = 0
    next_index = iter(range(n_requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in next_index:  # shared iterator: each index is sent exactly once
            question, context = pairs[i % len(pairs)]
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/answer", json={"question": question,
                                                          "context": context, "top_k": 3})
                ok = r.status_code == 200 and "answer" in r.json()
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def run_mode(mode: str, model_dir: Path, pairs: list[tuple[str, str]], n_requests: int,
             concurrency: int, max_batch_size: int, batch_wait_ms: float,
             threads: int, client: str = "raw", quantize: str = "none",
             http: str = "auto", round_: int = 0) -> LoadResult:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(model_dir, port, max_batch_size, batch_wait_ms, threads, quantize, http)
    try:
        wait_healthy(base, proc)
        send = (functools.partial(send_load_raw, healthz=mode == "healthz") if client == "raw"
                else send_load)
        asyncio.run(send(base, pairs, min(50, n_requests), concurrency))  # warm-up
        before = httpx.get(f"{base}/healthz").json()
        cpu_before, server_before = _cpu_seconds(), process_cpu_seconds(proc.pid)
        latencies, errors, wall = asyncio.run(send(base, pairs, n_requests, concurrency))
        client_cpu = _cpu_seconds() - cpu_before
        server_cpu = process_cpu_seconds(proc.pid) - server_before
        after = httpx.get(f"{base}/healthz").json()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    batches = after["forward_batches"] - before["forward_batches"]
    answered = after["questions_answered"] - before["questions_answered"]
    ms = sorted(x * 1000 for x in latencies)
    return LoadResult(mode=mode, http=http, round=round_, max_batch_size=max_batch_size,
                      batch_wait_ms=batch_wait_ms,
                      requests=n_requests, concurrency=concurrency, errors=errors,
                      seconds=round(wall, 3), throughput_rps=round(n_requests / wall, 1),
                      p50_ms=round(percentile(ms, 50), 2), p95_ms=round(percentile(ms, 95), 2),
                      p99_ms=round(percentile(ms, 99), 2),
                      mean_batch_size=round(answered / batches, 2) if batches else 0.0,
                      model_busy=round((after["forward_seconds"] - before["forward_seconds"])
                                       / wall, 3),
                      client=client, client_cpu_ms_per_request=round(
                          client_cpu / n_requests * 1000, 2),
                      server_cpu_ms_per_request=round(server_cpu / n_requests * 1000, 2))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """Another process's CPU time so far (user + system, its threads included), from
    /proc/PID/stat; NaN where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SUMMARY_KEYS = ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_request",
                "mean_batch_size")
"""The per-run figures the summary takes medians of and compares."""
MODES = ("batched", "unbatched", "healthz")
"""batched: the server's micro-batching on (--max-batch-size); unbatched: off (1); healthz:
GET /healthz on the batched server, the HTTP stack's own cost without model work."""


def medians(results: list[LoadResult]) -> dict[tuple[str, str], dict[str, float]]:
    """(http, mode) -> the median over the rounds of each SUMMARY_KEYS figure."""
    groups: dict[tuple[str, str], list[LoadResult]] = {}
    for res in results:
        groups.setdefault((res.http, res.mode), []).append(res)
    return {key: {name: round(statistics.median(getattr(r, name) for r in runs), 2)
                  for name in SUMMARY_KEYS} for key, runs in groups.items()}


def print_table(title: str, columns: list[str], rows: dict[str, list[float]],
                ratio_of: tuple[int, int] | None) -> None:
    """One summary table: a row per figure, a column per system, and the ratio of two."""
    print(f"\n{title}")
    print(f"{'':>22}" + "".join(f"{c:>12}" for c in columns)
          + (f"{'ratio':>9}" if ratio_of else ""))
    for label, values in rows.items():
        line = f"{label:>22}" + "".join(f"{v:>12.2f}" for v in values)
        if ratio_of:
            a, b = values[ratio_of[0]], values[ratio_of[1]]
            line += f"{a / b:>8.2f}x" if b else f"{'-':>9}"
        print(line)


def summarise(results: list[LoadResult], stacks: list[str], modes: list[str]
              ) -> dict[str, Any]:
    """Print the comparison tables; return the medians and ratios for the JSON record: per
    parser batched over unbatched, and per mode each parser over the first one given."""
    med = medians(results)
    labels = {"throughput_rps": "throughput req/s", "p50_ms": "p50 ms", "p95_ms": "p95 ms",
              "p99_ms": "p99 ms", "server_cpu_ms_per_request": "server CPU ms/req",
              "mean_batch_size": "mean batch"}
    ratios: dict[str, Any] = {}
    if {"batched", "unbatched"} <= set(modes):
        for stack in stacks:
            a, b = med[(stack, "batched")], med[(stack, "unbatched")]
            print_table(f"--http {stack}: batched vs unbatched (medians)", list(MODES[:2]),
                        {labels[k]: [a[k], b[k]] for k in SUMMARY_KEYS}, (0, 1))
            ratios[f"{stack}: batched over unbatched"] = {
                k: round(a[k] / b[k], 2) if b[k] else None for k in SUMMARY_KEYS}
    for mode in modes if len(stacks) > 1 else ():
        cells = [med[(stack, mode)] for stack in stacks]
        print_table(f"{mode}: HTTP parsers side by side (medians)", stacks,
                    {labels[k]: [c[k] for c in cells] for k in SUMMARY_KEYS}, (len(stacks) - 1, 0))
        for stack, cell in zip(stacks[1:], cells[1:], strict=True):
            ratios[f"{mode}: {stack} over {stacks[0]}"] = {
                k: round(cell[k] / cells[0][k], 2) if cells[0][k] else None for k in SUMMARY_KEYS}
    return {"medians": {f"{stack} {mode}": m for (stack, mode), m in med.items()},
            "ratios": ratios}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per mode")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent connections")
    parser.add_argument("--max-batch-size", type=int, default=16,
                        help="micro-batch size for the batched mode")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--passages", type=int, default=60, help="synthetic passages to ask about")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-threads", type=int, default=0,
                        help="OMP/MKL threads for the server's torch (0: torch's default)")
    parser.add_argument("--quantize", choices=("none", "int8"), default="none",
                        help="the server's --quantize (int8: dynamic int8 backbone matmuls)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load generator: prepared requests on asyncio streams, or httpx")
    parser.add_argument("--http", nargs="+", choices=("auto", "h11", "httptools"),
                        default=["auto"], help="the server's HTTP parser(s), run in turn")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES[:2]),
                        help="batched (--max-batch-size), unbatched (1), healthz (GET /healthz: "
                             "the HTTP stack alone)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times every (parser, mode) runs, alternating; medians are kept")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.max_batch_size < 2 or args.rounds < 1:
        parser.error("--requests, --concurrency and --rounds must be >= 1, "
                     "--max-batch-size >= 2")
    if "healthz" in args.modes and args.client != "raw":
        parser.error("--modes healthz needs --client raw")
    args.http, args.modes = list(dict.fromkeys(args.http)), list(dict.fromkeys(args.modes))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Other work on the machine shares the cores with server and client: record how busy it was.
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gpt2qa-serve-load-") as tmp:
        model_dir, pairs = build_model(Path(tmp), args.seed, args.n_layer, args.n_embd,
                                       args.passages)
        print(f"model: {args.n_layer} layers x {args.n_embd} wide (random weights); "
              f"{len(pairs)} distinct questions; {args.requests} requests per run over "
              f"{args.concurrency} connections", flush=True)
        results = []
        for round_ in range(args.rounds):
            for stack in args.http:
                for mode in args.modes:
                    size, wait = ((1, 0.0) if mode == "unbatched"
                                  else (args.max_batch_size, args.batch_wait_ms))
                    res = run_mode(mode, model_dir, pairs, args.requests, args.concurrency,
                                   size, wait, args.server_threads, args.client, args.quantize,
                                   stack, round_)
                    print(f"round {round_} {stack:>9} {mode:>9}: {res.throughput_rps:8.1f} "
                          f"req/s  p50 {res.p50_ms:7.1f} ms  p95 {res.p95_ms:7.1f} ms  "
                          f"p99 {res.p99_ms:7.1f} ms  errors {res.errors}  mean batch "
                          f"{res.mean_batch_size:.2f}  model busy {res.model_busy:.0%}  "
                          f"server CPU {res.server_cpu_ms_per_request:.2f} ms/req  client CPU "
                          f"{res.client_cpu_ms_per_request:.2f} ms/req  ({res.seconds:.1f} s)",
                          flush=True)
                    results.append(res)
    summary = summarise(results, args.http, args.modes)
    errors = sum(r.errors for r in results)
    record: dict[str, Any] = {
        "benchmark": "serve_load", "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "cpu": {"processor": common.machine_info()["processor"], "flags": common.cpu_flags()},
        "load_average_1min": {"start": round(load_before[0], 2),
                              "end": round(os.getloadavg()[0], 2)},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": [asdict(r) for r in results], **summary,
    }
    write_json_atomic(args.out, record)
    print(f"\nwrote {args.out}")
    print(" ".join([f"requests={args.requests}", f"concurrency={args.concurrency}",
                    f"rounds={args.rounds}"]
                   + [f"{key.replace(' ', '_')}_rps={m['throughput_rps']}"
                      for key, m in summary["medians"].items()] + [f"errors={errors}"]))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
