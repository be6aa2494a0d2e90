"""Running the app: the uvicorn configuration (address, timeouts, header deadline), a server
in a background thread (tests, benchmarks) and `serve_forever` (`gpt2qa serve`)."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from gpt2qa.errors import GPT2QAError
from gpt2qa.pipeline import QAPipeline
from gpt2qa.serve.app import create_app
from gpt2qa.serve.middleware import http_parser, http_protocol
from gpt2qa.serve.settings import ServeSettings

logger = logging.getLogger("gpt2qa.serve")

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def uvicorn_config(app: Any, settings: ServeSettings, log_level: str = "info",
                   **overrides: Any) -> uvicorn.Config:
    """The uvicorn.Config for `settings`: address, HTTP parser, timeouts and the header
    deadline."""
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "log_level": log_level, "lifespan": "on",
        "http": http_protocol(settings.timeout_headers, settings.http),
        "timeout_keep_alive": settings.timeout_keep_alive,
        "timeout_graceful_shutdown": settings.timeout_graceful_shutdown,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0,
                    log_level: str = "warning", startup_timeout: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread; yield its base URL, then stop it.

    The timeouts are those of the app's ServeSettings (`create_app` records them)."""
    settings = getattr(getattr(app, "state", None), "settings", None) or ServeSettings()
    server = uvicorn.Server(uvicorn_config(app, settings, log_level, host=host, port=port,
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="gpt2qa-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise GPT2QAError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    url_host = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{url_host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def serve_forever(model_dir: str, settings: ServeSettings, device: str | None = None,
                  precision: str = "fp32", log_level: str = "info",
                  quantize: str = "none") -> None:
    """Load a model directory and serve it until interrupted; an address it cannot listen on
    is refused in one line, before the model loads, and so is an --http parser that is not
    installed."""
    check_address(settings.host, settings.port)
    http_parser(settings.http)
    pipeline = QAPipeline.from_pretrained(model_dir, device=device, precision=precision,
                                          quantize=quantize)
    app = create_app(pipeline, settings)
    if settings.host not in LOOPBACK_HOSTS:
        logger.warning("binding %s: the server has no authentication; anyone who can reach "
                       "this address can use the model", settings.host)
    try:
        uvicorn.Server(uvicorn_config(app, settings, log_level)).run()
    except SystemExit as exc:  # uvicorn's startup failure (its error is logged above)
        if exc.code in (None, 0):
            raise
        raise GPT2QAError(f"the server could not start on {settings.host}:{settings.port}"
                          ) from None


def check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server cannot listen on (a port in use, a host
    that is not this machine's), by binding it as uvicorn would (SO_REUSEADDR) and letting
    go; uvicorn itself would log six lines and exit 3."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise GPT2QAError(f"--host {host}: cannot be resolved ({exc})") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise GPT2QAError(f"--port {port}: {host}:{port} is already in use (another "
                                      "server?); pick another port") from None
                raise GPT2QAError(f"--host {host} --port {port}: cannot listen there: "
                                  f"{exc.strerror or exc}") from None
