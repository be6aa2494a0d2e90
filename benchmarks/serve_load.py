"""Load test for `gpt2qa serve`: micro-batching on vs off, on loopback, with a tiny model.

    PYTHONPATH=src python benchmarks/serve_load.py [--requests 2000] [--concurrency 32]

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
import json
import os
import platform
import resource
import socket
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
                 threads: int, quantize: str = "none") -> subprocess.Popen[bytes]:
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
           "--quantize", quantize]
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
                        concurrency: int) -> tuple[list[float], int, float]:
    """`send_load` over plain asyncio streams (see the module doc)."""
    address = base.removeprefix("http://")
    host, port = address.rsplit(":", 1)
    requests = [_request_bytes(address, q, c) for q, c in pairs]
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
                    ok = status == 200 and "answer" in json.loads(body)
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
             threads: int, client: str = "raw", quantize: str = "none") -> LoadResult:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(model_dir, port, max_batch_size, batch_wait_ms, threads, quantize)
    try:
        wait_healthy(base, proc)
        send = send_load_raw if client == "raw" else send_load
        asyncio.run(send(base, pairs, min(50, n_requests), concurrency))  # warm-up
        before = httpx.get(f"{base}/healthz").json()
        cpu_before = _cpu_seconds()
        latencies, errors, wall = asyncio.run(send(base, pairs, n_requests, concurrency))
        client_cpu = _cpu_seconds() - cpu_before
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
    return LoadResult(mode=mode, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
                      requests=n_requests, concurrency=concurrency, errors=errors,
                      seconds=round(wall, 3), throughput_rps=round(n_requests / wall, 1),
                      p50_ms=round(percentile(ms, 50), 2), p95_ms=round(percentile(ms, 95), 2),
                      p99_ms=round(percentile(ms, 99), 2),
                      mean_batch_size=round(answered / batches, 2) if batches else 0.0,
                      model_busy=round((after["forward_seconds"] - before["forward_seconds"])
                                       / wall, 3),
                      client=client, client_cpu_ms_per_request=round(
                          client_cpu / n_requests * 1000, 2))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.max_batch_size < 2:
        parser.error("--requests and --concurrency must be >= 1, --max-batch-size >= 2")

    # Other work on the machine shares the cores with server and client: record how busy it was.
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gpt2qa-serve-load-") as tmp:
        model_dir, pairs = build_model(Path(tmp), args.seed, args.n_layer, args.n_embd,
                                       args.passages)
        print(f"model: {args.n_layer} layers x {args.n_embd} wide (random weights); "
              f"{len(pairs)} distinct questions; {args.requests} requests per mode over "
              f"{args.concurrency} connections", flush=True)
        results = []
        for mode, size, wait in (("batched", args.max_batch_size, args.batch_wait_ms),
                                 ("unbatched", 1, 0.0)):
            res = run_mode(mode, model_dir, pairs, args.requests, args.concurrency, size, wait,
                           args.server_threads, args.client, args.quantize)
            print(f"{mode:>9}: {res.throughput_rps:8.1f} req/s  p50 {res.p50_ms:7.1f} ms  "
                  f"p95 {res.p95_ms:7.1f} ms  p99 {res.p99_ms:7.1f} ms  errors {res.errors}  "
                  f"mean batch {res.mean_batch_size:.2f}  model busy {res.model_busy:.0%}  "
                  f"client CPU {res.client_cpu_ms_per_request:.2f} ms/req  "
                  f"({res.seconds:.1f} s)", flush=True)
            results.append(res)

    on, off = results
    ratio = {"throughput": round(on.throughput_rps / off.throughput_rps, 2),
             "p50": round(on.p50_ms / off.p50_ms, 2), "p95": round(on.p95_ms / off.p95_ms, 2),
             "p99": round(on.p99_ms / off.p99_ms, 2)}
    print()
    print(f"{'':>16} {'batched':>10} {'unbatched':>10} {'ratio':>7}")
    for label, a, b, r in (("throughput req/s", on.throughput_rps, off.throughput_rps,
                            ratio["throughput"]),
                           ("p50 ms", on.p50_ms, off.p50_ms, ratio["p50"]),
                           ("p95 ms", on.p95_ms, off.p95_ms, ratio["p95"]),
                           ("p99 ms", on.p99_ms, off.p99_ms, ratio["p99"])):
        print(f"{label:>16} {a:>10.1f} {b:>10.1f} {r:>6.2f}x")
    record: dict[str, Any] = {
        "benchmark": "serve_load", "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "cpu": {"processor": common.machine_info()["processor"], "flags": common.cpu_flags()},
        "load_average_1min": {"start": round(load_before[0], 2),
                              "end": round(os.getloadavg()[0], 2)},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": [asdict(r) for r in results], "ratio_batched_over_unbatched": ratio,
    }
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}")
    print(f"requests={args.requests} concurrency={args.concurrency} "
          f"batched_rps={on.throughput_rps} unbatched_rps={off.throughput_rps} "
          f"speedup={ratio['throughput']} batched_p50_ms={on.p50_ms} unbatched_p50_ms={off.p50_ms} "
          f"batched_p99_ms={on.p99_ms} unbatched_p99_ms={off.p99_ms} "
          f"mean_batch={on.mean_batch_size} errors={on.errors + off.errors}")
    return 1 if on.errors or off.errors else 0


if __name__ == "__main__":
    sys.exit(main())
