"""Stage 6: an HTTP server for a trained model (FastAPI app, run by uvicorn).

Routes:
  POST /v1/answer        {"question", "context", "top_k"=1, "null_score_diff_threshold"=null}
  POST /v1/answer/batch  {"items": [...]} of the above -> {"results": [...]}
  GET  /v1/model         what the loaded model is and the limits this server enforces
  GET  /healthz          liveness, plus micro-batching counters
  GET  /                 a one-page UI (static/index.html); OpenAPI docs at /docs

Micro-batching: every question goes onto one asyncio queue. A single worker task takes the
first waiting item, then keeps collecting for up to `batch_wait_ms` (or until it holds
`max_batch_size` items) and runs them as one `QAPipeline.predict` call in a worker thread,
so the event loop keeps accepting requests meanwhile. Requests with different thresholds
share the model call: the batch is decoded once and each request re-applies its own
null_score_diff_threshold to `Prediction.score_diff` (the same rule as decode.py). With
`max_batch_size=1` every request gets its own model call (micro-batching off).

Offsets in answers are Python string indices into the context, i.e. Unicode code points
(a browser, which counts UTF-16 units, must convert; the page does).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import math
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpt2qa.data import SquadExample, unicode_problem
from gpt2qa.decode import Prediction, decide
from gpt2qa.errors import GPT2QAError
from gpt2qa.http_guard import BodySizeLimit, body_problem, http_protocol  # noqa: F401

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gpt2qa.pipeline import QAPipeline

logger = logging.getLogger("gpt2qa.serve")

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens, batches and limits requests (`gpt2qa serve` flags)."""

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

    def __post_init__(self) -> None:
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
        for ok, message in checks:
            if not ok:
                raise GPT2QAError(f"bad serve setting: {message}")


# -- request and response bodies --------------------------------------------------------------

class AnswerRequest(BaseModel):
    """One question about one context."""

    # strict: "3" is not an int and 1 is not a string; extra="forbid" catches misspelt fields.
    model_config = ConfigDict(strict=True, extra="forbid")

    question: str = Field(description="The question; must contain a non-space character.")
    context: str = Field(description="The passage to answer from.")
    top_k: int = Field(1, ge=1, description="How many ranked candidate spans to return.")
    null_score_diff_threshold: float | None = Field(
        None, allow_inf_nan=False,
        description="Answer nothing when score_diff exceeds this; null uses the model's own.")

    @field_validator("question", "context")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain a non-space character")
        # Refused here, in the schema, so such an item never joins (and fails) a batch.
        problem = unicode_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class BatchRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    items: list[AnswerRequest] = Field(min_length=1)


class CandidateOut(BaseModel):
    text: str
    score: float
    start: int = Field(description="Start offset in the context, in Unicode code points.")
    end: int = Field(description="Exclusive end offset; context[start:end] == text.")


class AnswerResponse(BaseModel):
    answer: str = Field(description='The answer text; "" when the model abstains.')
    is_impossible: bool
    no_answer_probability: float
    null_score_diff_threshold: float = Field(description="The threshold that was applied.")
    candidates: list[CandidateOut]


class BatchResponse(BaseModel):
    results: list[AnswerResponse]


class ErrorResponse(BaseModel):
    detail: str


class Limits(BaseModel):
    max_batch_size: int
    batch_wait_ms: float
    max_batch_items: int
    max_context_chars: int
    max_body_bytes: int


class ModelInfo(BaseModel):
    head: str
    layout: str
    null_position: str
    max_seq_length: int
    doc_stride: int
    max_query_length: int
    max_answer_length: int
    n_best_size: int
    null_score_diff_threshold: float
    vocab_size: int
    parameter_count: int
    device: str
    precision: str
    limits: Limits


class Health(BaseModel):
    status: str
    queued: int
    forward_batches: int
    questions_answered: int
    forward_seconds: float = Field(description="Wall time spent in the model (and decoding).")


# -- micro-batching ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    example: SquadExample
    future: asyncio.Future[Prediction]
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Collects concurrent questions into shared `pipeline.predict` calls (see module doc).

    `start()` and `stop()` must run on the event loop that calls `submit()`.
    """

    def __init__(self, pipeline: QAPipeline, max_batch_size: int, batch_wait_ms: float) -> None:
        self.pipeline = pipeline
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.forward_batches = 0
        self.questions_answered = 0
        self.forward_seconds = 0.0
        self._ids = itertools.count()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("MicroBatcher already started")
        self._queue = asyncio.Queue()
        # One thread: forward passes run one at a time, never competing for the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpt2qa-forward")
        self._task = asyncio.create_task(self._run(), name="gpt2qa-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(RuntimeError("server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def submit(self, question: str, context: str) -> Prediction:
        """Queue one question; resolve with its Prediction (decoded at the model's threshold)."""
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("MicroBatcher is not running")
        example = SquadExample(qas_id=f"r{next(self._ids)}", question=question, context=context,
                               answers=(), is_impossible=False)
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(example, future))
        return await future

    async def _collect(self, jobs: list[_Job]) -> None:
        """Wait for one job, then gather more until the batch is full or the wait is over.

        The wait counts from when the first job was queued, not from when it was taken: a job
        that already waited out a busy model is not held back again (the model would idle)."""
        assert self._queue is not None
        jobs.append(await self._queue.get())
        deadline = jobs[0].queued_at + self.batch_wait_s
        while len(jobs) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._queue.empty():
                try:
                    jobs.append(self._queue.get_nowait())  # take what is already waiting
                    continue
                except asyncio.QueueEmpty:
                    break
            # Not wait_for: cancelling a Queue.get that has just won could drop its item.
            getter = asyncio.ensure_future(self._queue.get())
            try:
                done, _ = await asyncio.wait({getter}, timeout=remaining)
            except asyncio.CancelledError:
                getter.cancel()
                raise
            if getter not in done:
                getter.cancel()
                try:
                    jobs.append(await getter)  # it may have won the race after all
                except asyncio.CancelledError:
                    pass
                break
            jobs.append(getter.result())

    async def _run(self) -> None:
        while True:
            jobs: list[_Job] = []
            try:
                await self._collect(jobs)
                # A request whose client went away has a cancelled future: skip its work.
                live = [j for j in jobs if not j.future.done()]
                if live:
                    await self._process(live)
            except asyncio.CancelledError:
                for job in jobs:
                    _resolve(job.future, exc=RuntimeError("server is shutting down"))
                raise

    async def _process(self, jobs: Sequence[_Job]) -> None:
        loop = asyncio.get_running_loop()
        examples = [j.example for j in jobs]
        start = time.perf_counter()
        try:
            preds = await loop.run_in_executor(self._executor, self._predict, examples)
        except Exception as exc:
            self.forward_seconds += time.perf_counter() - start
            if len(jobs) > 1:
                # Retry one by one so that one bad input fails only its own request.
                for job in jobs:
                    await self._process([job])
                return
            _resolve(jobs[0].future, exc=exc)
            return
        self.forward_seconds += time.perf_counter() - start
        self.forward_batches += 1
        self.questions_answered += len(jobs)
        for job in jobs:
            pred = preds.get(job.example.qas_id)
            if pred is None:
                _resolve(job.future, exc=RuntimeError(f"no prediction for {job.example.qas_id}"))
            else:
                _resolve(job.future, pred)

    def _predict(self, examples: list[SquadExample]) -> dict[str, Prediction]:
        # The forward batch size is the device's (pipeline default), not the number of requests.
        preds = self.pipeline.predict(examples, null_score_diff_threshold=None)
        return {p.qas_id: p for p in preds}


def _resolve(future: asyncio.Future[Prediction], pred: Prediction | None = None,
             exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(pred)  # type: ignore[arg-type]


def answer_from_prediction(pred: Prediction, threshold: float, top_k: int) -> AnswerResponse:
    """Apply a per-request threshold to a Prediction (`decode.decide`, as decode_example does)."""
    text = decide(pred.best_span, pred.score_diff, threshold)
    return AnswerResponse(
        answer=text, is_impossible=text == "", no_answer_probability=pred.na_prob,
        null_score_diff_threshold=threshold,
        candidates=[CandidateOut(text=c.text, score=c.score, start=c.start, end=c.end)
                    for c in pred.nbest[:top_k]])


# -- the app ----------------------------------------------------------------------------------

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


def model_info(pipeline: QAPipeline, settings: ServeSettings) -> ModelInfo:
    model = pipeline.model
    cfg = model.config
    first = next(model.parameters(), None)
    return ModelInfo(
        head=cfg.head, layout=cfg.layout, null_position=cfg.null_position,
        max_seq_length=cfg.max_seq_length, doc_stride=cfg.doc_stride,
        max_query_length=cfg.max_query_length, max_answer_length=cfg.max_answer_length,
        n_best_size=cfg.n_best_size, null_score_diff_threshold=cfg.null_score_diff_threshold,
        vocab_size=len(pipeline.tokenizer),
        parameter_count=sum(p.numel() for p in model.parameters()),
        device=str(first.device) if first is not None else "cpu",
        precision=pipeline.precision,
        limits=Limits(max_batch_size=settings.max_batch_size,
                      batch_wait_ms=settings.batch_wait_ms,
                      max_batch_items=settings.max_batch_items,
                      max_context_chars=settings.max_context_chars,
                      max_body_bytes=settings.max_body_bytes))


def load_page() -> str:
    return resources.files("gpt2qa").joinpath("static/index.html").read_text(encoding="utf-8")


PAGE_HEADERS = {
    # The page only talks to this server; its script and style are inline.
    "Content-Security-Policy": ("default-src 'none'; script-src 'unsafe-inline'; "
                                "style-src 'unsafe-inline'; connect-src 'self'; "
                                "img-src 'self' data:; base-uri 'none'; form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
}


def create_app(pipeline: QAPipeline, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app around one loaded pipeline. Run it with uvicorn or TestClient."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    settings = settings or ServeSettings()
    batcher = MicroBatcher(pipeline, settings.max_batch_size, settings.batch_wait_ms)
    info = model_info(pipeline, settings)
    default_threshold = pipeline.model.config.null_score_diff_threshold
    n_best = pipeline.model.config.n_best_size
    page = load_page()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="gpt2qa", version="1", lifespan=lifespan,
                  description="Extractive question answering with abstention (SQuAD 2.0 style).")
    app.state.batcher = batcher
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes,
                       body_timeout_s=settings.timeout_body)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        errors = readable_errors(exc.errors(), is_json="json" in content_type.lower())
        return JSONResponse({"detail": validation_message(errors), "errors": errors},
                            status_code=422)

    def check_item(item: AnswerRequest, where: str) -> None:
        if len(item.context) > settings.max_context_chars:
            raise HTTPException(413, f"{where}context has {len(item.context)} characters; this "
                                     f"server accepts at most {settings.max_context_chars} "
                                     "(--max-context-chars)")
        if item.top_k > n_best:
            raise HTTPException(422, f"invalid request: {where}top_k: must be at most {n_best} "
                                     "(the model's n_best_size)")

    async def run_one(item: AnswerRequest) -> AnswerResponse:
        pred = await batcher.submit(item.question, item.context)
        threshold = (default_threshold if item.null_score_diff_threshold is None
                     else item.null_score_diff_threshold)
        return answer_from_prediction(pred, threshold, item.top_k)

    errors_doc: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorResponse, "description": "Body, context or batch over a limit"},
        422: {"model": ErrorResponse, "description": "Malformed JSON or invalid fields"},
        500: {"model": ErrorResponse, "description": "Internal error for this request only"},
    }

    @app.post("/v1/answer", response_model=AnswerResponse, responses=errors_doc)
    async def answer(item: AnswerRequest) -> AnswerResponse:
        """Answer one question about one context (or abstain)."""
        check_item(item, "")
        try:
            return await run_one(item)
        except Exception:
            logger.exception("POST /v1/answer failed")
            raise HTTPException(500, "internal error while answering; see the server log") from None

    @app.post("/v1/answer/batch", response_model=BatchResponse, responses=errors_doc)
    async def answer_batch(batch: BatchRequest) -> BatchResponse:
        """Answer several questions; they share forward passes with all other traffic."""
        if len(batch.items) > settings.max_batch_items:
            raise HTTPException(413, f"batch has {len(batch.items)} items; this server accepts "
                                     f"at most {settings.max_batch_items} (--max-batch-items)")
        for i, item in enumerate(batch.items):
            check_item(item, f"items[{i}].")
        results = await asyncio.gather(*(run_one(item) for item in batch.items),
                                       return_exceptions=True)
        failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        if failed:
            for i in failed:
                logger.error("POST /v1/answer/batch item %d failed", i, exc_info=results[i])
            raise HTTPException(500, "internal error while answering items "
                                     f"{failed[:10]}; see the server log")
        return BatchResponse(results=[r for r in results if isinstance(r, AnswerResponse)])

    @app.get("/v1/model", response_model=ModelInfo)
    async def get_model() -> ModelInfo:
        """The loaded model's settings and this server's limits."""
        return info

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok", queued=batcher.queued,
                      forward_batches=batcher.forward_batches,
                      questions_answered=batcher.questions_answered,
                      forward_seconds=round(batcher.forward_seconds, 6))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    return app


# -- running it -------------------------------------------------------------------------------

def uvicorn_config(app: Any, settings: ServeSettings, log_level: str = "info",
                   **overrides: Any) -> Any:
    """The uvicorn.Config for `settings`: address, timeouts and the header deadline."""
    import uvicorn

    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "log_level": log_level, "lifespan": "on",
        "http": http_protocol(settings.timeout_headers),
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
    import uvicorn

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
    """Load a model directory and serve it until interrupted."""
    import uvicorn

    from gpt2qa.pipeline import QAPipeline

    pipeline = QAPipeline.from_pretrained(model_dir, device=device, precision=precision,
                                          quantize=quantize)
    app = create_app(pipeline, settings)
    if settings.host not in LOOPBACK_HOSTS:
        logger.warning("binding %s: the server has no authentication; anyone who can reach "
                       "this address can use the model", settings.host)
    uvicorn.Server(uvicorn_config(app, settings, log_level)).run()


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The `gpt2qa serve` flags; defaults come from ServeSettings."""
    d = ServeSettings()
    docs = _field_docs()
    parser.add_argument("--model", required=True, help="a gpt2qa model directory")
    parser.add_argument("--host", default=d.host,
                        help=f"interface to bind (default: {d.host}, loopback only)")
    parser.add_argument("--port", type=int, default=d.port, help=f"(default: {d.port})")
    parser.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                        help="most questions gathered into one model call; 1 turns "
                             "micro-batching off "
                             f"(default: {d.max_batch_size})")
    parser.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms,
                        help="how long to gather concurrent questions into one batch "
                             f"(default: {d.batch_wait_ms})")
    parser.add_argument("--max-batch-items", type=int, default=d.max_batch_items,
                        help=f"most items in one /v1/answer/batch request (default: {d.max_batch_items})")
    parser.add_argument("--max-context-chars", type=int, default=d.max_context_chars,
                        help=f"longest context accepted (default: {d.max_context_chars})")
    parser.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                        help=f"largest request body accepted (default: {d.max_body_bytes})")
    for name in ("timeout_keep_alive", "timeout_headers", "timeout_body",
                 "timeout_graceful_shutdown"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name),
                            metavar="SECONDS",
                            help=f"{docs[name]} (default: {getattr(d, name)})")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1 (default: cuda if available)")
    from gpt2qa.quantize import PRECISION_HELP, QUANTIZE_HELP, QUANTIZE_MODES

    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help=PRECISION_HELP)
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, default="none", help=QUANTIZE_HELP)
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"),
                        default="info", help="(default: info)")


def _field_docs() -> dict[str, str]:
    from gpt2qa.cli import field_docs

    return {k: v.replace("%", "%%") for k, v in field_docs(ServeSettings).items()}


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    names = {f.name for f in fields(ServeSettings)}
    return ServeSettings(**{k: v for k, v in vars(args).items() if k in names})


def cmd_serve(args: argparse.Namespace) -> int:
    serve_forever(args.model, settings_from_args(args), device=args.device,
                  precision=args.precision, log_level=args.log_level, quantize=args.quantize)
    return 0


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa serve` on the CLI's sub-parsers (`sub` from add_subparsers)."""
    p = sub.add_parser("serve", help="serve a gpt2qa model over HTTP (JSON API and a web page)")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gpt2qa.serve ...`: the same flags as `gpt2qa serve`."""
    from gpt2qa.cli import Parser

    parser = Parser(prog="gpt2qa serve", description=__doc__.splitlines()[0])
    add_serve_arguments(parser)
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.refuse_unknown(extras)
    try:
        return cmd_serve(args)
    except GPT2QAError as exc:
        print(f"gpt2qa serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
