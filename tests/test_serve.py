"""The HTTP server: every route, every limit and error, micro-batching, one real socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from gpt2qa.cli.commands import settings_from_args  # noqa: E402
from gpt2qa.cli.flags import add_serve_parser  # noqa: E402
from gpt2qa.config import QAConfig  # noqa: E402
from gpt2qa.data import SquadExample  # noqa: E402
from gpt2qa.decode import Candidate, Prediction  # noqa: E402
from gpt2qa.errors import GPT2QAError  # noqa: E402
from gpt2qa.features import convert_examples_to_features  # noqa: E402
from gpt2qa.pipeline import QAPipeline  # noqa: E402
from gpt2qa.serve import (  # noqa: E402
    BodySizeLimit,
    MicroBatcher,
    ServeSettings,
    answer_from_prediction,
    create_app,
    get_pipeline,
    serve_in_thread,
)
from helpers import run  # noqa: E402

CONTEXT = "The Eiffel Tower was completed in 1889 in Paris, France."
QUESTION = "When was the Eiffel Tower completed?"
UNICODE_CONTEXT = "🎉 Émile Zola wrote novels; café culture thrived 🎉 in the 19th century."
BOOM = "please explode"
ALWAYS = 1e6  # a threshold that never abstains: the best span is always the answer
NEVER = -1e6  # a threshold that always abstains


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    import torch

    from gpt2qa.checkpoint import save_model
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config

    torch.manual_seed(0)
    prepare_tokenizer(tiny_tokenizer)
    backbone = backbone_from_config(tiny_gpt2_config(len(tiny_tokenizer), n_positions=256))
    model = QAModel(backbone, QAConfig.of(max_seq_length=128, doc_stride=32, max_query_length=32))
    return save_model(model, tiny_tokenizer, tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="session")
def pipeline(model_dir: Path) -> QAPipeline:
    return QAPipeline.from_pretrained(model_dir, device="cpu")


@dataclass
class RecordingPipeline(QAPipeline):
    """The real pipeline, recording each predict() batch size and failing on BOOM."""

    calls: list[int] = field(default_factory=list)

    def predict(self, examples, batch_size=0, null_score_diff_threshold=None):  # type: ignore[override]
        self.calls.append(len(examples))
        if any(ex.question == BOOM for ex in examples):
            raise RuntimeError("injected failure")
        return super().predict(examples, batch_size, null_score_diff_threshold)


def recording(pipe: QAPipeline) -> RecordingPipeline:
    return RecordingPipeline(pipe.model, pipe.tokenizer, pipe.special_ids, pipe.precision)


@pytest.fixture()
def make_client(pipeline: QAPipeline) -> Iterator[Callable[..., TestClient]]:
    """make_client(**settings) -> a started TestClient (lifespan on); closed after the test."""
    with ExitStack() as stack:
        def make(pipe: QAPipeline | None = None, **settings: Any) -> TestClient:
            app = create_app(pipe or pipeline, ServeSettings(**settings))
            return stack.enter_context(TestClient(app))
        yield make


@pytest.fixture()
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def expected(pipe: QAPipeline, question: str, context: str,
             threshold: float | None) -> Prediction:
    example = SquadExample("x", question, context, (), False)
    return pipe.predict([example], null_score_diff_threshold=threshold)[0]


def check_offsets(body: dict[str, Any], context: str) -> None:
    for cand in body["candidates"]:
        assert 0 <= cand["start"] < cand["end"] <= len(context)
        assert context[cand["start"]:cand["end"]] == cand["text"]


# -- POST /v1/answer --------------------------------------------------------------------------

def test_answer_returns_top_k_candidates_with_context_offsets(client: TestClient) -> None:
    r = client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT, "top_k": 5,
                                        "null_score_diff_threshold": ALWAYS})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"answer", "is_impossible", "score", "no_answer_probability",
                         "null_score_diff_threshold", "candidates"}
    assert len(body["candidates"]) == 5
    assert all(set(c) == {"text", "score", "logit", "start", "end"} for c in body["candidates"])
    check_offsets(body, CONTEXT)
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert body["answer"] == body["candidates"][0]["text"] != ""
    assert body["is_impossible"] is False
    assert 0.0 <= body["no_answer_probability"] <= 1.0


def test_top_k_defaults_to_one(client: TestClient) -> None:
    body = client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT}).json()
    assert len(body["candidates"]) == 1


@pytest.mark.parametrize("threshold", [NEVER, -0.5, 0.0, 0.5, ALWAYS, None])
def test_answer_matches_pipeline_at_every_threshold(client: TestClient, pipeline: QAPipeline,
                                                    threshold: float | None) -> None:
    """The server decodes once and re-applies each request's threshold; it must agree with
    decoding at that threshold directly."""
    r = client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT, "top_k": 20,
                                        "null_score_diff_threshold": threshold})
    body = r.json()
    want = expected(pipeline, QUESTION, CONTEXT, threshold)
    assert body["answer"] == want.text
    assert body["is_impossible"] == want.is_impossible
    assert body["no_answer_probability"] == pytest.approx(want.na_prob)
    assert [(c["text"], c["start"], c["end"]) for c in body["candidates"]] == \
        [(c.text, c.start, c.end) for c in want.nbest]
    used = pipeline.model.config.decoding.null_score_diff_threshold if threshold is None else threshold
    assert body["null_score_diff_threshold"] == used
    if threshold == NEVER:
        assert body["answer"] == "" and body["is_impossible"] is True
        assert body["candidates"]  # the ranked spans are still reported


def test_non_ascii_offsets_are_code_points(client: TestClient) -> None:
    body = client.post("/v1/answer", json={"question": "What did Émile Zola write?",
                                           "context": UNICODE_CONTEXT, "top_k": 20}).json()
    assert len(body["candidates"]) > 5
    check_offsets(body, UNICODE_CONTEXT)


def test_long_context_uses_sliding_windows(client: TestClient, pipeline: QAPipeline) -> None:
    sentences = list(dict.fromkeys(
        ["The Eiffel Tower was completed in 1889 in Paris, France.",
         "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
         "The river Zorbel flows 412 kilometres from the Hask mountains to the sea.",
         "Tavrik is a city of 31,000 people founded by Quell Mebbit in 1834."]))
    context = " ".join(sentences * 6)
    example = SquadExample("x", QUESTION, context, (), False)
    windows = convert_examples_to_features([example], pipeline.tokenizer,
                                           pipeline.model.config.features,
                                           pipeline.special_ids)
    assert len(windows) >= 4  # far longer than max_seq_length=128 tokens
    first_window_end = windows[0].token_spans[-1][1]
    body = client.post("/v1/answer", json={"question": QUESTION, "context": context,
                                           "top_k": 20, "null_score_diff_threshold": ALWAYS}).json()
    check_offsets(body, context)
    assert len(body["candidates"]) == 20
    # Candidates come from later windows too, not just from the first 128 tokens.
    assert max(c["end"] for c in body["candidates"]) > first_window_end
    want = expected(pipeline, QUESTION, context, ALWAYS)
    assert [(c["start"], c["end"]) for c in body["candidates"]] == \
        [(c.start, c.end) for c in want.nbest]


def test_context_that_looks_like_a_path_is_just_text(client: TestClient) -> None:
    context = "/etc/passwd and ../../secret.txt are names of files, nothing more."
    body = client.post("/v1/answer", json={"question": "What are they?", "context": context,
                                           "top_k": 3}).json()
    check_offsets(body, context)


# -- bad input --------------------------------------------------------------------------------

GOOD = {"question": QUESTION, "context": CONTEXT}


@pytest.mark.parametrize(("raw", "content_type", "fragment"), [
    (b'{"question": "a", "context": ', "application/json", "malformed JSON at character"),
    (b"{'question': 'a'}", "application/json", "malformed JSON"),
    (b"", "application/json", "body: expected a JSON object"),
    (b'["a", "b"]', "application/json", "body: expected a JSON object"),
    (json.dumps(GOOD).encode(), "text/plain", "Content-Type: application/json"),
    (b'{"question": "a", "context": NaN, "top_k": 1}', "application/json", "context:"),
])
def test_unparseable_bodies_are_422(client: TestClient, raw: bytes, content_type: str,
                                    fragment: str) -> None:
    r = client.post("/v1/answer", content=raw, headers={"content-type": content_type})
    assert r.status_code == 422
    assert fragment in r.json()["detail"]
    assert "\n" not in r.json()["detail"]


@pytest.mark.parametrize(("patch", "fragment"), [
    ({"question": None}, "question: Field required"),
    ({"context": None}, "context: Field required"),
    ({"question": 7}, "question: Input should be a valid string"),
    ({"context": ["a"]}, "context: Input should be a valid string"),
    ({"question": ""}, "question: Value error, must contain a non-space character"),
    ({"question": " \t\n "}, "question: Value error, must contain a non-space character"),
    ({"context": "   "}, "context: Value error, must contain a non-space character"),
    ({"top_k": "2"}, "top_k: Input should be a valid integer"),
    ({"top_k": True}, "top_k: Input should be a valid integer"),
    ({"top_k": 1.5}, "top_k: Input should be a valid integer"),
    ({"top_k": 0}, "top_k: Input should be greater than or equal to 1"),
    ({"top_k": 21}, "top_k: must be at most 20"),
    ({"null_score_diff_threshold": "high"}, "null_score_diff_threshold: Input should be a valid number"),
    ({"threshold": 0.5}, "threshold: Extra inputs are not permitted"),
])
def test_invalid_fields_are_422_with_a_readable_message(client: TestClient,
                                                        patch: dict[str, Any],
                                                        fragment: str) -> None:
    body = {**GOOD, **patch}
    body = {k: v for k, v in body.items() if v is not None}
    r = client.post("/v1/answer", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("invalid request: ")
    assert fragment in detail


def test_infinite_threshold_is_422(client: TestClient) -> None:
    raw = b'{"question": "a", "context": "b c", "null_score_diff_threshold": Infinity}'
    r = client.post("/v1/answer", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "null_score_diff_threshold" in r.json()["detail"]


def test_context_over_the_limit_is_413_naming_it(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_context_chars=100)
    ok = c.post("/v1/answer", json={"question": "q?", "context": "a" * 100})
    assert ok.status_code == 200
    r = c.post("/v1/answer", json={"question": "q?", "context": "a" * 101})
    assert r.status_code == 413
    assert r.json()["detail"] == ("context has 101 characters; this server accepts at most 100 "
                                  "(--max-context-chars)")


def test_body_over_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_body_bytes=2048)
    r = c.post("/v1/answer", json={"question": "q?", "context": "word " * 500})
    assert r.status_code == 413
    assert "2048 bytes" in r.json()["detail"] and "--max-body-bytes" in r.json()["detail"]
    # Without Content-Length (a chunked upload) the bytes actually received are counted.
    chunks = [b'{"question": "q?", "context": "', b"x" * 1500, b"y" * 1500, b'"}']
    r = c.post("/v1/answer", content=iter(chunks), headers={"content-type": "application/json"})
    assert r.status_code == 413
    # The server is still fine afterwards.
    assert c.post("/v1/answer", json=GOOD).status_code == 200


def _asgi_call(app: Any, headers: list[tuple[bytes, bytes]],
               chunks: list[bytes]) -> tuple[int, list[dict[str, Any]]]:
    """Drive an ASGI app by hand: return (status, messages the app saw)."""
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers,
             "query_string": b"", "http_version": "1.1", "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
             for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent


@pytest.mark.parametrize(("headers", "chunks", "status", "app_called"), [
    ([(b"content-length", b"abc")], [b"{}"], 400, False),
    ([(b"content-length", b"5000")], [b"{}"], 413, False),
    ([], [b"a" * 600, b"b" * 600], 413, False),
    ([], [b"a" * 500, b"b" * 500], 200, True),
    ([(b"content-length", b"1000")], [b"a" * 500, b"b" * 500], 200, True),
])
def test_body_size_middleware(headers: list[tuple[bytes, bytes]], chunks: list[bytes],
                              status: int, app_called: bool) -> None:
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        assert message["more_body"] is False
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    got, _ = _asgi_call(BodySizeLimit(app, max_body_bytes=1024), headers, chunks)
    assert got == status
    assert bool(seen) == app_called
    if app_called:
        assert seen == [b"".join(chunks)]  # the app gets the whole body, once


# -- POST /v1/answer/batch --------------------------------------------------------------------

def test_batch_returns_one_result_per_item_in_order(client: TestClient) -> None:
    items = [
        {"question": QUESTION, "context": CONTEXT, "top_k": 3, "null_score_diff_threshold": ALWAYS},
        {"question": "What did Émile Zola write?", "context": UNICODE_CONTEXT, "top_k": 2},
        {"question": QUESTION, "context": CONTEXT, "null_score_diff_threshold": NEVER},
    ]
    r = client.post("/v1/answer/batch", json={"items": items})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 3
    for item, result in zip(items, results, strict=True):
        alone = client.post("/v1/answer", json=item).json()
        # Same answer and spans; scores agree to float precision (batch shapes differ).
        assert result["answer"] == alone["answer"]
        assert [(c["text"], c["start"], c["end"]) for c in result["candidates"]] == \
            [(c["text"], c["start"], c["end"]) for c in alone["candidates"]]
        assert result["no_answer_probability"] == pytest.approx(alone["no_answer_probability"],
                                                                abs=1e-5)
        for a, b in zip(result["candidates"], alone["candidates"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert len(result["candidates"]) == item.get("top_k", 1)
        check_offsets(result, item["context"])
    assert results[0]["answer"] != "" and results[2]["answer"] == ""


def test_batch_items_share_one_forward_pass(make_client: Callable[..., TestClient],
                                            pipeline: QAPipeline) -> None:
    pipe = recording(pipeline)
    c = make_client(pipe, max_batch_size=8, batch_wait_ms=50)
    items = [{"question": f"Question {i}?", "context": CONTEXT} for i in range(5)]
    assert c.post("/v1/answer/batch", json={"items": items}).status_code == 200
    assert pipe.calls == [5]
    assert c.get("/healthz").json()["forward_batches"] == 1


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"items": [GOOD] * 3}, 413, "batch has 3 items; this server accepts at most 2 (--max-batch-items)"),
    ({"items": [GOOD, {**GOOD, "context": "z" * 101}]}, 413, "items[1].context has 101 characters"),
    ({"items": []}, 422, "items: List should have at least 1 item"),
    ({"items": [GOOD, {"question": "q"}]}, 422, "items[1].context: Field required"),
    ({"items": [GOOD, {**GOOD, "top_k": 50}]}, 422, "items[1].top_k: must be at most 20"),
    ({"item": [GOOD]}, 422, "items: Field required"),
    ({"items": GOOD}, 422, "items: Input should be a valid list"),
])
def test_batch_errors(make_client: Callable[..., TestClient], body: dict[str, Any],
                      status: int, fragment: str) -> None:
    c = make_client(max_batch_items=2, max_context_chars=100)
    r = c.post("/v1/answer/batch", json=body)
    assert r.status_code == status
    assert fragment in r.json()["detail"]


# -- internal errors --------------------------------------------------------------------------

def test_internal_error_fails_only_that_request(make_client: Callable[..., TestClient],
                                                pipeline: QAPipeline) -> None:
    c = make_client(recording(pipeline))
    r = c.post("/v1/answer", json={"question": BOOM, "context": CONTEXT})
    assert r.status_code == 500
    assert r.json()["detail"].startswith("internal error")
    assert "injected" not in r.json()["detail"]  # no internals leak to the client
    ok = c.post("/v1/answer", json=GOOD)
    assert ok.status_code == 200 and ok.json()["candidates"]
    r = c.post("/v1/answer/batch", json={"items": [GOOD, {"question": BOOM, "context": CONTEXT}]})
    assert r.status_code == 500 and "[1]" in r.json()["detail"]
    assert c.get("/healthz").json()["status"] == "ok"
    assert c.post("/v1/answer/batch", json={"items": [GOOD, GOOD]}).status_code == 200


# -- micro-batching ---------------------------------------------------------------------------

async def _submit_all(pipe: QAPipeline, questions: list[str], max_batch_size: int,
                      wait_ms: float) -> list[Prediction | BaseException]:
    batcher = MicroBatcher(pipe, max_batch_size, wait_ms)
    await batcher.start()
    try:
        return await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(q, CONTEXT) for q in questions),
                           return_exceptions=True), timeout=60)
    finally:
        await batcher.stop()


@pytest.mark.parametrize(("max_batch_size", "calls"), [
    (4, [4, 1]),
    (8, [5]),
    (1, [1, 1, 1, 1, 1]),  # micro-batching off
])
def test_micro_batcher_groups_concurrent_questions(pipeline: QAPipeline, max_batch_size: int,
                                                   calls: list[int]) -> None:
    pipe = recording(pipeline)
    questions = [QUESTION, "Where is it?", "Who built the tower?", "When?", "What is Paris?"]
    results = asyncio.run(_submit_all(pipe, questions, max_batch_size, wait_ms=100))
    assert pipe.calls == calls
    for question, pred in zip(questions, results, strict=True):
        assert isinstance(pred, Prediction)
        alone = pipeline.answer(question, CONTEXT)
        assert (pred.best_span, pred.nbest[0].start) == (alone.best_span, alone.nbest[0].start)
        assert pred.score_diff == pytest.approx(alone.score_diff, abs=1e-4)


def test_micro_batcher_isolates_a_failing_question(pipeline: QAPipeline) -> None:
    pipe = recording(pipeline)
    questions = [QUESTION, BOOM, "Where is it?"]
    results = asyncio.run(_submit_all(pipe, questions, max_batch_size=8, wait_ms=100))
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[0], Prediction) and isinstance(results[2], Prediction)
    assert pipe.calls == [3, 1, 1, 1]  # the shared pass failed; each was retried alone


@dataclass
class SlowPipeline(RecordingPipeline):
    """Records when each predict() call starts and ends; the first call takes 4 s more."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    started: list[float] = field(default_factory=list)

    def predict(self, examples, batch_size=0, null_score_diff_threshold=None):  # type: ignore[override]
        start = time.monotonic()
        self.started.append(start)
        if not self.spans:
            time.sleep(4.0)
        out = super().predict(examples, batch_size, null_score_diff_threshold)
        self.spans.append((start, time.monotonic()))
        return out


def test_micro_batcher_does_not_hold_jobs_that_waited_for_a_busy_model(
        pipeline: QAPipeline) -> None:
    # Two questions queue while the first one's (slow) forward runs, so by the time it ends
    # they have waited longer than batch_wait_ms (3 s). They must go together at once, not
    # after another 3 s of gathering while the model idles.
    pipe = SlowPipeline(pipeline.model, pipeline.tokenizer, pipeline.special_ids)

    async def scenario() -> list[Prediction]:
        batcher = MicroBatcher(pipe, 8, 3000.0)
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(QUESTION, CONTEXT))
            while not pipe.started:  # the first forward has started
                await asyncio.sleep(0.01)
            rest = [batcher.submit(q, CONTEXT) for q in ("Where is it?", "When?")]
            return await asyncio.wait_for(asyncio.gather(first, *rest), timeout=60)
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert all(isinstance(r, Prediction) for r in results)
    assert pipe.calls == [1, 2]
    (_, first_end), (second_start, _) = pipe.spans
    assert second_start - first_end < 2.0  # the old rule waited another 3 s here


def test_submit_before_start_is_refused(pipeline: QAPipeline) -> None:
    batcher = MicroBatcher(pipeline, 4, 1.0)
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(batcher.submit(QUESTION, CONTEXT))


@pytest.mark.parametrize(("score_diff", "threshold", "answer"), [
    (-1.2, 0.0, "1889"),
    (-1.2, -1.2, "1889"),  # abstain only when score_diff is strictly above the threshold
    (-1.2, -2.0, ""),
    (3.0, 2.5, ""),
    (3.0, 3.5, "1889"),
    (math.inf, 1e9, ""),  # no span at all
])
def test_answer_from_prediction(score_diff: float, threshold: float, answer: str) -> None:
    cands = (Candidate("1889", 4.0, 34, 38), Candidate("in 1889", 3.0, 31, 38))
    pred = Prediction("q", "", "1889", score_diff, 0.3, cands)
    out = answer_from_prediction(pred, threshold, top_k=1)
    assert out.answer == answer
    assert out.is_impossible == (answer == "")
    assert [c.text for c in out.candidates] == ["1889"]
    assert out.no_answer_probability == 0.3
    # Probabilities: the spans share 0.7 by softmax of their logits (4.0, 3.0: 0.731 / 0.269).
    assert out.candidates[0].score == pytest.approx(0.7 * 0.7310586)
    assert out.candidates[0].logit == 4.0
    assert out.score == (0.3 if answer == "" else out.candidates[0].score)


# -- one meaning of score: the Python API, HTTP and the CLI ----------------------------------

@pytest.mark.parametrize("threshold", [ALWAYS, NEVER, None])
def test_score_is_the_same_probability_everywhere(client: TestClient, pipeline: QAPipeline,
                                                  model_dir: Path, capsys: Any,
                                                  threshold: float | None) -> None:
    """One question through QAPipeline, POST /v1/answer and `predict --question` (in this
    process): the same decision with the same score, a probability; the candidates' scores
    match the Python API's ranked list, and with no-answer they sum to at most 1."""
    api = pipeline(question=QUESTION, context=CONTEXT, null_score_diff_threshold=threshold)
    n_best = pipeline.model.config.decoding.n_best_size
    ranked = pipeline(question=QUESTION, context=CONTEXT, top_k=n_best + 1,  # + no answer
                      null_score_diff_threshold=threshold)
    body = client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT,
                                           "top_k": n_best,
                                           "null_score_diff_threshold": threshold}).json()
    flags = [] if threshold is None else ["--null-score-diff-threshold", str(threshold)]
    code, out, err = run(capsys, "predict", "--model", str(model_dir), "--device", "cpu",
                         "--question", QUESTION, "--context", CONTEXT, *flags)
    assert code == 0, err
    cli = json.loads(out)
    assert api["answer"] == body["answer"] == cli["answer"]
    assert api["score"] == pytest.approx(body["score"], abs=1e-6)
    assert api["score"] == pytest.approx(cli["score"], abs=1e-6)
    assert {k: v for k, v in cli.items() if k not in ("score", "no_answer_probability")} == \
        {k: v for k, v in api.items() if k != "score"}
    assert cli["no_answer_probability"] == pytest.approx(body["no_answer_probability"], abs=1e-6)
    if threshold == NEVER:
        assert api["is_impossible"] and api["score"] == pytest.approx(
            body["no_answer_probability"], abs=1e-6)
    spans = [d for d in ranked if not d["is_impossible"]]
    assert [(c["text"], c["start"], c["end"]) for c in body["candidates"]] == \
        [(d["answer"], d["start"], d["end"]) for d in spans]
    for c, d in zip(body["candidates"], spans, strict=True):
        assert c["score"] == pytest.approx(d["score"], abs=1e-6)
    scores = [c["score"] for c in body["candidates"]] + [body["no_answer_probability"]]
    assert all(0.0 <= p <= 1.0 for p in scores)
    assert sum(scores) <= 1.0 + 1e-9
    assert sum(d["score"] for d in ranked) == pytest.approx(1.0)  # all n-best: nothing left out
    # The logit is each span's raw score, ranked as the probabilities are.
    logits = [c["logit"] for c in body["candidates"]]
    assert logits == sorted(logits, reverse=True)


# -- GET /v1/examples ---------------------------------------------------------------------------

EXAMPLES = {"task": "squad", "data": "dev.json", "synthetic": False, "examples": [
    {"question": QUESTION, "context": CONTEXT, "answers": ["1889"]},
    {"question": "Who designed it?", "context": CONTEXT, "answers": []}]}


def model_with_examples(model_dir: Path, tmp_path: Path, examples: Any) -> Path:
    """A copy of the session's model directory with `examples` as its examples.json (a str is
    written as it is, anything else as JSON)."""
    import shutil

    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    text = examples if isinstance(examples, str) else json.dumps(examples)
    (copy / "examples.json").write_text(text, encoding="utf-8")
    return copy


def test_examples_come_from_the_model_directory(make_client: Callable[..., TestClient],
                                                model_dir: Path, tmp_path: Path) -> None:
    pipe = QAPipeline.from_pretrained(model_with_examples(model_dir, tmp_path, EXAMPLES),
                                      device="cpu")
    body = make_client(pipe).get("/v1/examples").json()
    assert body == {"source": "model", "data": "dev.json", "synthetic": False,
                    "examples": EXAMPLES["examples"]}


def test_examples_fall_back_to_a_built_in_one(client: TestClient) -> None:
    body = client.get("/v1/examples").json()  # the session's model has no examples.json
    assert body["source"] == "built-in" and body["synthetic"] is False
    (item,) = body["examples"]
    answer = client.post("/v1/answer", json={"question": item["question"],
                                             "context": item["context"]})
    assert answer.status_code == 200
    assert item["answers"][0] in item["context"]


@pytest.mark.parametrize(("examples", "problem"), [
    ("{not json", "not a readable JSON file"),
    ([EXAMPLES], "expected a JSON object"),
    ({**EXAMPLES, "examples": "x"}, "examples must be a list"),
    ({**EXAMPLES, "examples": [{"question": "Q?"}]}, "examples[0]: question and context"),
    ({**EXAMPLES, "examples": [{"question": "Q?", "context": "c", "answers": [1]}]},
     "examples[0].answers"),
    ({**EXAMPLES, "synthetic": "yes"}, "synthetic must be true or false"),
    ({**EXAMPLES, "task": "hotpotqa"}, "task is 'hotpotqa'"),
    ({**EXAMPLES, "examples": EXAMPLES["examples"] * 11}, "at most 20 items"),
])
def test_a_malformed_examples_file_is_ignored_with_one_warning(
        make_client: Callable[..., TestClient], model_dir: Path, tmp_path: Path, capsys: Any,
        examples: Any, problem: str) -> None:
    """The file only fills the page's form: the model loads and serves; the page gets the
    built-in example, and stderr one line naming the file and what is wrong."""
    pipe = QAPipeline.from_pretrained(model_with_examples(model_dir, tmp_path, examples),
                                      device="cpu")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("warning: ") and "examples.json" in line and problem in line
    assert pipe.examples is None
    c = make_client(pipe)
    assert c.get("/v1/examples").json()["source"] == "built-in"
    assert c.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT}).status_code \
        == 200


# -- the pipeline is a dependency --------------------------------------------------------------

@dataclass
class FirstWordPipeline(QAPipeline):
    """Answers every question with its context's first word (score_diff -3.0, na_prob 0.25),
    as real Prediction records, and records the questions it was asked."""

    asked: list[str] = field(default_factory=list)

    def predict(self, examples, batch_size=0, null_score_diff_threshold=None):  # type: ignore[override]
        preds = []
        for ex in examples:
            self.asked.append(ex.question)
            word = ex.context.split()[0]
            start = ex.context.index(word)
            preds.append(Prediction(ex.qas_id, word, word, -3.0, 0.25,
                                    (Candidate(word, 7.5, start, start + len(word)),)))
        return preds


def test_dependency_override_replaces_the_pipeline(pipeline: QAPipeline) -> None:
    own = recording(pipeline)
    other = FirstWordPipeline(pipeline.model, pipeline.tokenizer, pipeline.special_ids)
    app = create_app(own, ServeSettings(batch_wait_ms=0))
    app.dependency_overrides[get_pipeline] = lambda: other
    context = "  Zorbel flows 412 kilometres to the sea."
    with TestClient(app) as c:
        r = c.post("/v1/answer", json={"question": "Which river?", "context": context})
        assert r.status_code == 200
        assert r.json() == {"answer": "Zorbel", "is_impossible": False,
                            "no_answer_probability": 0.25,
                            "null_score_diff_threshold": pipeline.model.config.decoding.null_score_diff_threshold,
                            "score": 0.75,  # the one span takes all but the no-answer 0.25
                            "candidates": [{"text": "Zorbel", "score": 0.75, "logit": 7.5,
                                            "start": 2, "end": 8}]}
        # The request's own threshold still decides: score_diff -3.0 > -5.0, so it abstains.
        r = c.post("/v1/answer/batch", json={"items": [
            {"question": "Which river?", "context": context, "null_score_diff_threshold": -5.0},
            {"question": "First?", "context": "Tavrik is a city."}]})
        assert [(x["answer"], x["is_impossible"]) for x in r.json()["results"]] == \
            [("", True), ("Tavrik", False)]
        assert other.asked == ["Which river?", "Which river?", "First?"]
        assert own.calls == []  # the app's own pipeline was never asked
        app.dependency_overrides.clear()
        r = c.post("/v1/answer", json={"question": "Which river?", "context": context})
        assert r.status_code == 200 and own.calls == [1] and len(other.asked) == 3


# -- other routes -----------------------------------------------------------------------------

def test_healthz(client: TestClient) -> None:
    before = client.get("/healthz").json()
    assert before["status"] == "ok" and before["queued"] == 0
    client.post("/v1/answer", json=GOOD)
    after = client.get("/healthz").json()
    assert after["questions_answered"] == before["questions_answered"] + 1
    assert after["forward_batches"] == before["forward_batches"] + 1
    assert after["forward_seconds"] > before["forward_seconds"]


def test_model_info(make_client: Callable[..., TestClient], pipeline: QAPipeline) -> None:
    c = make_client(max_batch_size=3, max_context_chars=777)
    info = c.get("/v1/model").json()
    cfg = pipeline.model.config
    assert (info["head"], info["layout"], info["null_position"]) == \
        (cfg.head, cfg.features.layout, cfg.features.null_position)
    assert (info["max_seq_length"], info["doc_stride"], info["max_query_length"]) == (128, 32, 32)
    assert info["null_score_diff_threshold"] == cfg.decoding.null_score_diff_threshold
    assert info["vocab_size"] == len(pipeline.tokenizer)
    assert info["parameter_count"] == sum(p.numel() for p in pipeline.model.parameters())
    assert info["device"] == "cpu" and info["precision"] == "fp32"
    assert info["limits"]["max_batch_size"] == 3 and info["limits"]["max_context_chars"] == 777


def test_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    for marker in ('id="context"', 'id="question"', 'id="ask"', '"/v1/answer"',
                   'createElement("mark")', 'id="na-prob"'):
        assert marker in r.text
    assert "innerHTML" not in r.text  # answers are inserted as text, never as markup


def test_openapi_docs(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI's script and style come from this server, not a CDN (the browser test
    # checks that it renders with the network off); ReDoc, which fetches its logo, is off.
    assert re.findall(r"https?://", docs.text) == []
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', docs.text):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/answer", "/v1/answer/batch", "/v1/model", "/v1/examples", "/healthz"} <= \
        set(paths)
    assert "413" in paths["/v1/answer"]["post"]["responses"]
    assert "Every `score` is a probability" in spec["info"]["description"]
    score = spec["components"]["schemas"]["CandidateOut"]["properties"]["score"]
    assert score["description"].startswith("Probability")


@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/etc/passwd", "/index.html",
                                  "/v1/answer/../../gpt2qa.json",
                                  "/static-offline-docs/../../../../etc/passwd",
                                  "/static-offline-docs/%2e%2e/core.py"])
def test_no_file_serving(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


# -- settings and CLI flags -------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"max_batch_size": 0}, {"batch_wait_ms": -1.0}, {"batch_wait_ms": math.nan},
    {"max_batch_items": 0}, {"max_context_chars": 0}, {"max_body_bytes": 100},
    {"port": 70000}, {"host": " "},
])
def test_settings_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(GPT2QAError, match="bad serve setting"):
        ServeSettings(**bad)


def test_serve_parser_defaults_to_loopback() -> None:
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model", "m"])
    settings = settings_from_args(args)
    assert settings == ServeSettings()
    assert settings.host == "127.0.0.1"
    args = parser.parse_args(["serve", "--model", "m", "--max-batch-size", "1", "--port", "0",
                              "--max-context-chars", "50", "--batch-wait-ms", "2.5"])
    settings = settings_from_args(args)
    assert (settings.max_batch_size, settings.port, settings.max_context_chars,
            settings.batch_wait_ms) == (1, 0, 50, 2.5)
    assert args.func.__name__ == "cmd_serve"


# -- a real socket ----------------------------------------------------------------------------

def test_real_socket_server_and_concurrent_micro_batches(pipeline: QAPipeline) -> None:
    pipe = recording(pipeline)
    app = create_app(pipe, ServeSettings(port=0, max_batch_size=16, batch_wait_ms=200))
    questions = [f"{QUESTION} ({i})" for i in range(8)]
    with serve_in_thread(app) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as resp:
            assert json.load(resp)["status"] == "ok"
        request = urllib.request.Request(
            f"{url}/v1/answer", data=json.dumps({**GOOD, "top_k": 2}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = json.load(resp)
        check_offsets(body, CONTEXT)

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                return await asyncio.gather(*(http.post("/v1/answer", json={
                    "question": q, "context": CONTEXT, "null_score_diff_threshold": ALWAYS})
                    for q in questions))

        responses = asyncio.run(fire())
        health = httpx.get(f"{url}/healthz").json()
    assert [r.status_code for r in responses] == [200] * len(questions)
    for question, resp in zip(questions, responses, strict=True):
        assert resp.json()["answer"] == expected(pipeline, question, CONTEXT, ALWAYS).text
    # Eight concurrent requests shared forward passes (1 + at most 7 for the burst).
    assert health["forward_batches"] < 1 + len(questions)
    assert max(pipe.calls) > 1
