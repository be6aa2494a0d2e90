"""The server's settings (`gpt2qa serve` flags): a frozen pydantic model, like the request bodies.

Each field's docstring is its description (pydantic's `use_attribute_docstrings`) and its
--help text. Any bad value, a wrong type included, is one GPT2QAError line starting
"bad serve setting: ", which the CLI prints without a traceback.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from gpt2qa.errors import GPT2QAError, check


class ServeSettings(BaseModel):
    """How the server listens, batches and limits requests (`gpt2qa serve` flags)."""

    # strict: True is not a port and "5" is not a wait; extra="forbid" catches misspelt names.
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid",
                              use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Interface to bind; loopback by default so the model is not exposed by accident."""
    port: int = 8000
    """TCP port; 0 picks a free one."""
    max_batch_size: int = 16
    """Most questions gathered into one model call; 1 turns micro-batching off. The call's
    forward batches are sized for the device (`batching.inference_batch_size`)."""
    batch_wait_ms: float = 5.0
    """How long the batch worker waits for more questions after the first one arrives."""
    max_batch_items: int = 64
    """Most items accepted by POST /v1/answer/batch (413 beyond)."""
    max_context_chars: int = 20_000
    """Longest context accepted, in characters (413 beyond)."""
    max_body_bytes: int = 1_000_000
    """Largest request body accepted, checked before JSON parsing (413 beyond)."""
    timeout_keep_alive: float = 5.0
    """Seconds an idle kept-alive connection stays open after a response."""
    timeout_headers: float = 10.0
    """Seconds a client has to send a request's headers, counted from the moment it connects
    (or its previous response ends); a slower or silent client is disconnected."""
    timeout_body: float = 30.0
    """Seconds a client has to send the whole request body once its headers arrived; a slower
    one gets 408 and is disconnected."""
    timeout_graceful_shutdown: float = 10.0
    """Seconds a shutdown (SIGTERM, Ctrl-C) waits for requests in flight before cancelling them."""
    http: Literal["auto", "h11", "httptools"] = "auto"
    """HTTP/1.1 parser: httptools (C, installed with uvicorn[standard]), h11 (pure Python), or
    auto: httptools when it is installed, else h11."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # Type errors (the range checks below raise GPT2QAError themselves), one line:
            # "bad serve setting: port: Input should be a valid integer; got 'x'".
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}; got {e['input']!r}"
                                 for e in exc.errors())
            raise GPT2QAError(f"bad serve setting: {problems}") from None

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        checks = [
            (bool(self.host.strip()), "host must not be empty"),
            (0 <= self.port <= 65535, f"port must be in 0..65535; got {self.port}"),
            (self.max_batch_size >= 1, f"max_batch_size must be >= 1; got {self.max_batch_size}"),
            (math.isfinite(self.batch_wait_ms) and 0 <= self.batch_wait_ms <= 1000,
             f"batch_wait_ms must be in 0..1000; got {self.batch_wait_ms}"),
            (self.max_batch_items >= 1, f"max_batch_items must be >= 1; got {self.max_batch_items}"),
            (self.max_context_chars >= 1,
             f"max_context_chars must be >= 1; got {self.max_context_chars}"),
            (self.max_body_bytes >= 1024, f"max_body_bytes must be >= 1024; got {self.max_body_bytes}"),
        ]
        for name in ("timeout_keep_alive", "timeout_headers", "timeout_body",
                     "timeout_graceful_shutdown"):
            value = getattr(self, name)
            checks.append((math.isfinite(value) and 0 < value <= 3600,
                           f"{name} must be in (0, 3600] seconds; got {value}"))
        check(checks, "bad serve setting: ")
        return self
