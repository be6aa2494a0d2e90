"""HTTP guards for `gpt2qa serve`, below the FastAPI app: body size, body-read deadline and
undecodable or over-deep JSON (an ASGI middleware), and a deadline for request headers
(a uvicorn protocol). Each turns a slow or malformed client into a 4xx or a closed socket
instead of a held connection, a 400 in FastAPI's format or a shutdown that never ends.

Above them, `invalid_request` turns FastAPI's validation errors into the same one-line 422
("invalid request: items[2].top_k: Input should be a valid integer").
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from gpt2qa.errors import GPT2QAError
from gpt2qa.reading import long_number

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


# -- request body size ------------------------------------------------------------------------

class BodySizeLimit:
    """ASGI middleware: 413 for a body over `max_body_bytes`, before anything parses it.

    A declared Content-Length is checked first; the body is then read (chunked uploads too),
    counted, and handed on to the app only when it fits. A body that does not arrive in
    full within `body_timeout_s` gets 408 and the connection is closed (a client that
    declares Content-Length: 100 and sends 3 bytes would otherwise hold it, and a graceful
    shutdown, forever). A body that is not UTF-8, JSON nested too deeply for the parser, or a
    number too long for Python's int gets the same 422 format as any other malformed JSON
    (FastAPI would say 400).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int,
                 body_timeout_s: float | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _error(scope, receive, send, 400, "Content-Length is not an integer")
                return
            if length > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        deadline = (None if self.body_timeout_s is None
                    else time.monotonic() + self.body_timeout_s)
        while True:
            try:
                if deadline is None:
                    message = await receive()
                else:
                    message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                await _error(scope, receive, send, 408,
                             f"request body not received within {self.body_timeout_s:g} s "
                             "(--timeout-body)", close=True)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = body_problem(body)
        if problem is not None:
            # The same 422 body as `invalid_request` gives any other malformed JSON.
            errors = [{"loc": "body", "msg": problem, "type": "json_invalid"}]
            await JSONResponse({"detail": f"invalid request: body: {problem}", "errors": errors},
                               status_code=422)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _error(scope, receive, send, 413,
                     f"request body is over {self.max_body_bytes} bytes (--max-body-bytes)",
                     close=True)


_MAX_JSON_DEPTH = 256
"""Deeper nesting than any valid request needs, yet shallow enough for json's recursion."""
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def body_problem(body: bytes) -> str | None:
    """Why a request body cannot be parsed as JSON text before FastAPI tries (it would
    answer 400 for these), or None. Other JSON errors are left to FastAPI's own 422.

    Worked example: b'{"a": "\\xff"}' is "not valid UTF-8 at byte 7"; 300 nested arrays
    are "nested more than 256 levels deep" (brackets inside strings do not count); a number
    of 5,000 digits is over Python's int limit (json would raise ValueError: FastAPI's 400).
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return f"malformed JSON: not valid UTF-8 at byte {exc.start}"
    long, limit = long_number(text)
    if long is not None:
        return (f"malformed JSON at character {long.start()}: a number with "
                f"{len(long.group())} digits (at most {limit})")
    if text.count("[") + text.count("{") > _MAX_JSON_DEPTH:  # only then can it be too deep
        brackets = _BRACKETS.findall(_JSON_STRING.sub("", text))
        depth = itertools.accumulate(1 if b in "[{" else -1 for b in brackets)
        if max(depth, default=0) > _MAX_JSON_DEPTH:
            return f"malformed JSON: nested more than {_MAX_JSON_DEPTH} levels deep"
    return None


async def _error(scope: Scope, receive: Receive, send: Send, status: int, detail: str,
                 close: bool = False) -> None:
    headers = {"Connection": "close"} if close else None
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)


def http_parser(http: str = "auto") -> type:
    """uvicorn's HTTP/1.1 protocol class for `--http`: h11's (pure Python), httptools' (C),
    or auto: httptools' when the package is installed, else h11's (uvicorn's own rule). A
    missing httptools is one line naming the extra that installs it."""
    if http == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    if http == "httptools":
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        except ImportError:
            raise GPT2QAError("--http httptools needs the httptools package: "
                              "pip install 'uvicorn[standard]'") from None
        return HttpToolsProtocol
    return AutoHTTPProtocol


def http_protocol(timeout_headers: float, http: str = "auto") -> type:
    """uvicorn's HTTP protocol (`http_parser(http)`) with a deadline for request headers.

    uvicorn times out an idle connection only after a response (keep-alive); a client
    that connects and sends nothing, or sends its headers a byte at a time, is never
    dropped. This subclass starts a timer when the connection opens and again when each
    response ends; if no new request's headers have been parsed when it fires (no request
    cycle is in progress), the connection is closed.
    """
    base: Any = http_parser(http)

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._start_header_timer()

        def _start_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(timeout_headers, self._headers_overdue)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_overdue(self) -> None:
            self._header_timer = None
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


# -- 422 for invalid requests -----------------------------------------------------------------

def _format_loc(loc: Sequence[Any]) -> str:
    """("body", "items", 2, "context") -> "items[2].context"."""
    parts = list(loc[1:]) if loc and loc[0] == "body" else list(loc)
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def readable_errors(errors: Sequence[dict[str, Any]], is_json: bool = True) -> list[dict[str, str]]:
    """FastAPI/pydantic validation errors as {"loc", "msg", "type"} with readable messages.

    Worked example: {"loc": ("body", "items", 2, "top_k"), "msg": "Input should be a valid
    integer"} becomes {"loc": "items[2].top_k", "msg": "Input should be a valid integer"}.
    """
    out = []
    for err in errors:
        kind = str(err.get("type", ""))
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if kind == "json_invalid":
            pos = loc[-1] if loc else "?"
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            loc, msg = ("body",), f"malformed JSON at character {pos}: {reason}"
        elif loc == ("body",) and not is_json:
            msg = "send a JSON object with Content-Type: application/json"
        elif loc == ("body",) and kind in ("missing", "model_attributes_type", "dict_type"):
            msg = "expected a JSON object"
        out.append({"loc": _format_loc(loc), "msg": msg, "type": kind})
    return out


def validation_message(errors: Sequence[dict[str, str]]) -> str:
    """One line: "invalid request: question: Field required; top_k: ..."."""
    return "invalid request: " + "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """The app's RequestValidationError handler: 422 {"detail": one line, "errors": [...]}."""
    content_type = request.headers.get("content-type", "")
    errors = readable_errors(exc.errors(), is_json="json" in content_type.lower())
    return JSONResponse({"detail": validation_message(errors), "errors": errors},
                        status_code=422)
