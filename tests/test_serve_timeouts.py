"""Server timeouts on a real loopback socket: slow bodies, slow headers, idle clients and a
graceful shutdown that a stalled client cannot hold up, on each HTTP parser (`--http`: h11,
and httptools when it is installed). Each test is bounded by seconds."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from gpt2qa.config import QAConfig  # noqa: E402
from gpt2qa.pipeline import QAPipeline  # noqa: E402
from gpt2qa.serve import ServeSettings, create_app, uvicorn_config  # noqa: E402

GOOD = {"question": "When was the Eiffel Tower completed?",
        "context": "The Eiffel Tower was completed in 1889 in Paris, France."}
STACKS = ["h11"] + (["httptools"] if importlib.util.find_spec("httptools") else [])
"""The HTTP parsers every socket test runs on (`ServeSettings.http`)."""


@pytest.fixture(scope="module")
def pipeline(tiny_tokenizer: Any) -> QAPipeline:
    from gpt2qa.features import prepare_tokenizer
    from helpers import tiny_model

    special = prepare_tokenizer(tiny_tokenizer)
    model = tiny_model(tiny_tokenizer, QAConfig.of(max_seq_length=64, doc_stride=16,
                                                max_query_length=16)).eval()
    return QAPipeline(model, tiny_tokenizer, special, "fp32")


class Running:
    """A uvicorn server on 127.0.0.1 in a thread; `stop()` times the graceful shutdown."""

    def __init__(self, app: Any, settings: ServeSettings) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn_config(app, settings, "warning", access_log=False))
        self.http = settings.http
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.settimeout(10)
        return sock

    def stop(self) -> float:
        start = time.monotonic()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server did not shut down within 30 s"
        return time.monotonic() - start


@pytest.fixture(params=STACKS)
def running(pipeline: QAPipeline, request: pytest.FixtureRequest) -> Iterator[Any]:
    servers: list[Running] = []

    def start(**settings: Any) -> Running:
        settings = ServeSettings(port=0, http=request.param, **settings)
        servers.append(Running(create_app(pipeline, settings), settings))
        return servers[-1]

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (10 s at most)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def post_head(length: int) -> bytes:
    return (f"POST /v1/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_a_body_that_never_arrives_gets_408_and_is_dropped(running: Any) -> None:
    server = running(timeout_body=0.5)
    sock = server.connect()
    sock.sendall(post_head(100) + b'{"q')  # promises 100 bytes, sends 3
    start = time.monotonic()
    reply = read_all(sock)
    elapsed = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408")
    assert b"--timeout-body" in reply
    assert 0.4 < elapsed < 5  # cut off by the timeout, and the socket was closed (EOF)
    sock.close()


def test_a_stalled_client_does_not_hold_up_shutdown(running: Any) -> None:
    server = running(timeout_body=30, timeout_graceful_shutdown=1)
    sock = server.connect()
    sock.sendall(post_head(100) + b'{"q')
    time.sleep(0.3)  # the request is in flight, waiting for its body
    took = server.stop()
    assert took < 5, f"shutdown took {took:.1f} s"
    sock.close()


def test_silent_and_slow_header_clients_are_disconnected(running: Any) -> None:
    server = running(timeout_headers=0.5, timeout_keep_alive=0.5)
    silent = server.connect()
    slow = server.connect()
    start = time.monotonic()
    slow.sendall(b"POST /v1/answer HTTP/1.1\r\nHo")  # and never finishes its headers
    assert read_all(silent) == b""
    assert read_all(slow) == b""
    assert time.monotonic() - start < 5
    silent.close()
    slow.close()


def read_one_response(sock: socket.socket) -> bytes:
    """One whole response (headers, then Content-Length bytes of body), so that the next read
    on a kept-alive connection starts at the next response, however the bytes were split."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest


def test_a_normal_request_and_keep_alive_still_work(running: Any) -> None:
    server = running(timeout_headers=2, timeout_keep_alive=0.5, timeout_body=2)
    parser = {"h11": "H11Protocol", "httptools": "HttpToolsProtocol"}[server.http]
    assert [c.__name__ for c in server.server.config.http_protocol_class.__mro__][1] == parser
    body = json.dumps(GOOD).encode()
    sock = server.connect()
    for _ in range(2):  # two requests on one kept-alive connection
        sock.sendall(post_head(len(body)) + body)
        head = read_one_response(sock)
        assert head.startswith(b"HTTP/1.1 200")
    start = time.monotonic()
    read_all(sock)  # then the idle connection is closed after the keep-alive timeout
    assert time.monotonic() - start < 5
    sock.close()


def test_timeouts_are_flags_with_defaults() -> None:
    import argparse

    from gpt2qa.cli.commands import settings_from_args
    from gpt2qa.cli.flags import add_serve_arguments

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    settings = settings_from_args(parser.parse_args(["--model", "m", "--timeout-body", "7"]))
    assert (settings.timeout_body, settings.timeout_headers, settings.timeout_keep_alive,
            settings.timeout_graceful_shutdown) == (7.0, 10.0, 5.0, 10.0)
    assert "(default: 10.0)" in parser.format_help()
    with pytest.raises(Exception, match="timeout_body"):
        ServeSettings(timeout_body=0)


def test_the_http_flag_picks_the_parser(capsys, tmp_path, monkeypatch) -> None:
    import argparse
    import sys

    from gpt2qa.cli.commands import settings_from_args
    from gpt2qa.cli.flags import add_serve_arguments
    from gpt2qa.errors import GPT2QAError
    from gpt2qa.serve.middleware import http_parser
    from helpers import one_line_error, run

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert settings_from_args(parser.parse_args(["--model", "m"])).http == "auto"
    for stack in STACKS:
        assert settings_from_args(parser.parse_args(["--model", "m", "--http", stack])).http \
            == stack
    assert "--http {auto,h11,httptools}" in parser.format_help()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--model", "m", "--http", "h2"])
    assert exited.value.code == 2 and "invalid choice: 'h2'" in capsys.readouterr().err
    # httptools missing: one line naming the extra, before the model (absent here) loads.
    monkeypatch.setitem(sys.modules, "httptools", None)
    monkeypatch.delitem(sys.modules, "uvicorn.protocols.http.httptools_impl", raising=False)
    with pytest.raises(GPT2QAError, match="uvicorn\\[standard\\]"):
        http_parser("httptools")
    err = one_line_error(*run(capsys, "serve", "--model", str(tmp_path / "absent"), "--port",
                              "0", "--http", "httptools")[::2])
    assert "--http httptools needs the httptools package" in err


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
def test_sigterm_stops_a_real_gpt2qa_serve_despite_a_stalled_client(tmp_path, tiny_tokenizer,
                                                                    stack: str) -> None:
    """The reported case end to end: `gpt2qa serve --http STACK` in its own process, one client
    that promised 100 body bytes and sent 3, then SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from gpt2qa.checkpoint import save_model
    from helpers import tiny_model

    model_dir = save_model(tiny_model(tiny_tokenizer), tiny_tokenizer, tmp_path / "model")
    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpt2qa", "serve", "--model", str(model_dir), "--port",
         str(port), "--timeout-graceful-shutdown", "1", "--log-level", "warning",
         "--http", stack],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "gpt2qa serve did not start in 120 s"
                time.sleep(0.5)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(post_head(100) + b'{"q')
        time.sleep(0.3)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took = time.monotonic() - start
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 5, f"SIGTERM took {took:.1f} s"
