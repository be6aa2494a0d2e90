"""The FastAPI app: routes on one APIRouter, the pipeline, settings and batcher as dependencies.

Routes:
  POST /v1/answer        {"question", "context", "top_k"=1, "null_score_diff_threshold"=null};
                         a HotpotQA model takes "context": [[title, [sentence, ...]], ...]
  POST /v1/answer/batch  {"items": [...]} of the above -> {"results": [...]}
  GET  /v1/model         what the loaded model is and the limits this server enforces
  GET  /v1/examples      a few questions to try: the model's own evaluation examples
                         (examples.json in its directory), else a built-in one
  GET  /healthz          liveness, plus micro-batching counters
  GET  /                 a one-page UI (static/index.html); ?context=&question=&auto=1 fills
                         it in and asks
  GET  /docs            OpenAPI docs (Swagger UI), its script and style served from this
                         server (the fastapi-offline package), so it works offline; no
                         /redoc (ReDoc loads its logo from a CDN)

Every answer's `score` is a probability, the Python API's (`task.answer_dicts`).

`create_app` stores the pipeline, settings and batcher on `app.state`; routes reach them only
through `get_pipeline`, `get_settings` and `get_batcher` (FastAPI `Depends`), so a test can
answer with another pipeline: `app.dependency_overrides[get_pipeline] = lambda: other`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline
from pydantic import TypeAdapter, ValidationError

from gpt2qa.errors import GPT2QAError
from gpt2qa.nesting import flatten
from gpt2qa.pipeline import QAPipeline
from gpt2qa.serve.batcher import MicroBatcher
from gpt2qa.serve.middleware import BodySizeLimit, invalid_request
from gpt2qa.serve.schemas import (
    AnswerRequest,
    AnswerResponse,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    Example,
    Examples,
    Health,
    HotpotAnswerResponse,
    HotpotCandidate,
    Limits,
    ModelInfo,
    answer_from_prediction,
)
from gpt2qa.serve.settings import ServeSettings
from gpt2qa.task import refuse_unsupported
from gpt2qa.tasks.hotpotqa.heads import HotpotPrediction

logger = logging.getLogger("gpt2qa.serve")

PAGE_HEADERS = {
    # The page only talks to this server; its script and style are inline.
    "Content-Security-Policy": ("default-src 'none'; script-src 'unsafe-inline'; "
                                "style-src 'unsafe-inline'; connect-src 'self'; "
                                "img-src 'self' data:; base-uri 'none'; form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
}

BUILT_IN_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    # For a model directory without examples.json: neutral text, not the model's own data.
    "squad": [{"question": "Where does the Rhine rise?",
               "context": "The Rhine rises in the Swiss Alps and flows north through Germany "
                          "and the Netherlands to the North Sea. It is about 1,230 kilometres "
                          "long.",
               "answers": ["the Swiss Alps"]}],
    "hotpotqa": [{"question": "In which country was the founder of Tavrik born?",
                  "context": [["Tavrik", ["Tavrik is a town founded by Ilsa Morne.",
                                          " It lies on a river."]],
                              ["Ilsa Morne", ["Ilsa Morne was born in Portugal.",
                                              " She was an engineer."]]],
                  "answers": ["Portugal"]}],
}

ERRORS_DOC: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Body, context or batch over a limit"},
    422: {"model": ErrorResponse, "description": "Malformed JSON or invalid fields"},
    500: {"model": ErrorResponse, "description": "Internal error for this request only"},
}


# -- dependencies -----------------------------------------------------------------------------

# async: FastAPI would run a plain `def` dependency in its thread pool, a thread hop per request.
async def get_pipeline(request: Request) -> QAPipeline:
    """The pipeline that answers (create_app's); override it in `app.dependency_overrides`."""
    pipeline: QAPipeline = request.app.state.pipeline
    return pipeline


async def get_settings(request: Request) -> ServeSettings:
    settings: ServeSettings = request.app.state.settings
    return settings


async def get_batcher(request: Request) -> MicroBatcher:
    batcher: MicroBatcher = request.app.state.batcher
    return batcher


PipelineDep = Annotated[QAPipeline, Depends(get_pipeline)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]


# -- helpers ----------------------------------------------------------------------------------

def model_info(pipeline: QAPipeline, settings: ServeSettings) -> ModelInfo:
    model = pipeline.model
    cfg = model.config
    first = next(model.parameters(), None)
    saved = {k: v for k, v in flatten(cfg).items() if k in ModelInfo.model_fields}
    return ModelInfo(
        **saved,
        vocab_size=len(pipeline.tokenizer),
        parameter_count=sum(p.numel() for p in model.parameters()),
        device=str(first.device) if first is not None else "cpu",
        precision=pipeline.precision,
        limits=Limits(max_batch_size=settings.max_batch_size,
                      batch_wait_ms=settings.batch_wait_ms,
                      max_batch_items=settings.max_batch_items,
                      max_context_chars=settings.max_context_chars,
                      max_body_bytes=settings.max_body_bytes))


@cache
def load_page() -> str:
    return resources.files("gpt2qa").joinpath("static/index.html").read_text(encoding="utf-8")


def check_item(item: AnswerRequest, where: str, pipeline: QAPipeline,
               settings: ServeSettings) -> Any:
    """The task's example for `item`, built here so that what it cannot be is refused before
    it joins a batch: 413 for a context over the limit; 422 for top_k over the model's
    n_best_size, a context this model's task cannot read, or a setting it refuses (one line,
    as the CLI's)."""
    chars = item.context_chars()
    if chars > settings.max_context_chars:
        raise HTTPException(413, f"{where}context has {chars} characters; this "
                                 f"server accepts at most {settings.max_context_chars} "
                                 "(--max-context-chars)")
    n_best = pipeline.model.config.decoding.n_best_size
    if item.top_k > n_best:
        raise HTTPException(422, f"invalid request: {where}top_k: must be at most {n_best} "
                                 "(the model's n_best_size)")
    try:
        TypeAdapter(pipeline.task.context_type).validate_python(item.context, strict=True)
    except ValidationError as exc:
        raise HTTPException(422, f"invalid request: {where}context: "
                                 f"{exc.errors()[0]['msg']}") from None
    try:
        refuse_unsupported(pipeline.task,
                           {"null_score_diff_threshold": item.null_score_diff_threshold})
        return pipeline.task.example("request", item.question, item.context)
    except GPT2QAError as exc:
        raise HTTPException(422, f"invalid request: {where}{exc}") from None


async def run_one(item: AnswerRequest, example: Any, pipeline: QAPipeline,
                  batcher: MicroBatcher) -> AnswerResponse | HotpotAnswerResponse:
    pred = await batcher.submit_example(example, pipeline)
    if isinstance(pred, HotpotPrediction):
        return hotpot_answer(pipeline, pred, item.top_k)
    threshold = (pipeline.model.config.decoding.null_score_diff_threshold
                 if item.null_score_diff_threshold is None else item.null_score_diff_threshold)
    return answer_from_prediction(pred, threshold, item.top_k)


def hotpot_answer(pipeline: QAPipeline, pred: HotpotPrediction,
                  top_k: int) -> HotpotAnswerResponse:
    """The task's answer record and ranked candidates (`answer_dicts`: the Python API's)."""
    best = pipeline.task.answer_json(pred)
    ranked = pipeline.task.answer_dicts(pred, top_k)
    return HotpotAnswerResponse(
        **best, sp_threshold=pipeline.model.config.task_state.get("sp_threshold", 0.5),
        candidates=[HotpotCandidate(answer=c["answer"], answer_type=c["answer_type"],
                                    score=c["score"]) for c in ranked])


DISCONNECT_POLL_S = 0.1
"""How often a waiting request checks whether its client is still connected."""


class ClientGone(Exception):
    """The client closed its connection: its questions were withdrawn from the batcher."""


async def unless_disconnected(request: Request, work: list[Any]) -> list[Any]:
    """Run the coroutines `work` (each submits questions to the batcher) and return their
    results (exceptions included, as `asyncio.gather(..., return_exceptions=True)`), unless
    the client disconnects first: then every one of them is cancelled, which cancels its
    batcher future, so the batcher skips questions nobody waits for, and ClientGone is
    raised. Checked before anything is submitted and every DISCONNECT_POLL_S while waiting."""
    if await request.is_disconnected():
        for coro in work:
            coro.close()
        raise ClientGone
    tasks = [asyncio.ensure_future(coro) for coro in work]
    try:
        pending: set[asyncio.Future[Any]] = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=DISCONNECT_POLL_S)
            if pending and await request.is_disconnected():
                raise ClientGone
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
    results: list[Any] = []
    for task in tasks:
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        results.append(exc if exc is not None else task.result())
    return results


# -- routes -----------------------------------------------------------------------------------

router = APIRouter()


@router.post("/v1/answer", response_model=AnswerResponse | HotpotAnswerResponse,
             responses=ERRORS_DOC)
async def answer(item: AnswerRequest, pipeline: PipelineDep, settings: SettingsDep,
                 batcher: BatcherDep, request: Request) -> AnswerResponse | HotpotAnswerResponse:
    """Answer one question about one context (a SQuAD model may abstain; a HotpotQA model
    answers span, yes or no, with its supporting facts)."""
    example = check_item(item, "", pipeline, settings)
    try:
        (result,) = await unless_disconnected(request,
                                              [run_one(item, example, pipeline, batcher)])
    except ClientGone:
        raise HTTPException(499, "client closed the connection") from None
    if isinstance(result, BaseException):
        logger.error("POST /v1/answer failed", exc_info=result)
        raise HTTPException(500, "internal error while answering; see the server log")
    return result


@router.post("/v1/answer/batch", response_model=BatchResponse, responses=ERRORS_DOC)
async def answer_batch(batch: BatchRequest, pipeline: PipelineDep, settings: SettingsDep,
                       batcher: BatcherDep, request: Request) -> BatchResponse:
    """Answer several questions; they share forward passes with all other traffic."""
    if len(batch.items) > settings.max_batch_items:
        raise HTTPException(413, f"batch has {len(batch.items)} items; this server accepts "
                                 f"at most {settings.max_batch_items} (--max-batch-items)")
    examples = [check_item(item, f"items[{i}].", pipeline, settings)
                for i, item in enumerate(batch.items)]
    try:
        results = await unless_disconnected(
            request, [run_one(item, example, pipeline, batcher)
                      for item, example in zip(batch.items, examples, strict=True)])
    except ClientGone:
        raise HTTPException(499, "client closed the connection") from None
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    if failed:
        for i in failed:
            logger.error("POST /v1/answer/batch item %d failed", i, exc_info=results[i])
        raise HTTPException(500, "internal error while answering items "
                                 f"{failed[:10]}; see the server log")
    return BatchResponse(results=[r for r in results if not isinstance(r, BaseException)])


@router.get("/v1/model", response_model=ModelInfo)
async def get_model(pipeline: PipelineDep, settings: SettingsDep) -> ModelInfo:
    """The loaded model's settings and this server's limits."""
    return model_info(pipeline, settings)


@router.get("/v1/examples", response_model=Examples)
async def get_examples(pipeline: PipelineDep) -> Examples:
    """Questions to try: the model's own evaluation examples (its examples.json, which
    training writes) with the gold answers, else a built-in one; `synthetic` says that the
    model learnt from synthetic data (the demo's), not from real text."""
    saved = pipeline.examples
    if saved is not None and saved.items:
        return Examples(source="model", data=saved.data, synthetic=saved.synthetic,
                        examples=[Example(**item) for item in saved.items])
    built_in = BUILT_IN_EXAMPLES.get(pipeline.task.name, [])
    return Examples(source="built-in", data=saved.data if saved else "",
                    synthetic=saved.synthetic if saved else False,
                    examples=[Example(**item) for item in built_in])


@router.get("/healthz", response_model=Health)
async def healthz(batcher: BatcherDep) -> Health:
    return Health(status="ok", queued=batcher.queued,
                  forward_batches=batcher.forward_batches,
                  questions_answered=batcher.questions_answered,
                  forward_seconds=round(batcher.forward_seconds, 6))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(load_page(), headers=PAGE_HEADERS)


# -- the app ----------------------------------------------------------------------------------

@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    batcher: MicroBatcher = app.state.batcher
    await batcher.start()
    try:
        yield
    finally:
        await batcher.stop()


API_DESCRIPTION = """Extractive question answering: SQuAD 2.0 style with abstention, or
HotpotQA style with yes/no and supporting facts.

Every `score` is a probability, the same number the Python API (`QAPipeline`) and
`gpt2qa predict --question` give: no answer gets the model's no-answer probability and the
candidate answers share the rest, so a response's candidates and its no-answer
probability sum to at most 1. A SQuAD
candidate's raw span score is its `logit`."""


def create_app(pipeline: QAPipeline, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app around one loaded pipeline. Run it with uvicorn or TestClient."""
    settings = settings or ServeSettings()
    load_page()  # a missing page fails here, at start-up, not on the first visit
    # FastAPIOffline: FastAPI whose /docs takes Swagger UI from this server, not a CDN.
    app = FastAPIOffline(
        redoc_url=None, title="gpt2qa", version="1", lifespan=lifespan,
        description=API_DESCRIPTION,
        # No badge from the online spec validator: the page fetches nothing from elsewhere.
        swagger_ui_parameters={"validatorUrl": None})
    app.state.pipeline = pipeline
    app.state.settings = settings
    app.state.batcher = MicroBatcher(pipeline, settings.max_batch_size, settings.batch_wait_ms)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes,
                       body_timeout_s=settings.timeout_body)
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.include_router(router)
    return app
