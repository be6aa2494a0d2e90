"""`gpt2qa serve` on a HotpotQA model: the JSON API over a live loopback socket, its one-line
422s, and the page in headless Chromium."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("fastapi")

from gpt2qa.checkpoint import save_model  # noqa: E402
from gpt2qa.config import QAConfig  # noqa: E402
from gpt2qa.features import prepare_tokenizer  # noqa: E402
from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config  # noqa: E402
from gpt2qa.pipeline import QAPipeline  # noqa: E402
from gpt2qa.serve import ServeSettings, create_app, serve_in_thread  # noqa: E402
from gpt2qa.tasks.hotpotqa.heads import hotpot_heads  # noqa: E402
from helpers import run  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
PARAGRAPHS = [["Tavrik", ["Tavrik was founded by Quell Mebbit.", "It has 31,000 people."]],
              ["Quell Mebbit", ["Quell Mebbit was a trader.", "He was born in Quellton."]]]
QUESTION = "Where was the founder of Tavrik born?"


EXAMPLES = {"task": "hotpotqa", "data": "dev.json", "synthetic": True,
            "examples": [{"question": QUESTION, "context": PARAGRAPHS, "answers": ["Quellton"]}]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    torch.manual_seed(0)
    prepare_tokenizer(tiny_tokenizer)
    backbone = backbone_from_config(tiny_gpt2_config(len(tiny_tokenizer), n_embd=32,
                                                     n_positions=256))
    qa = QAConfig.of(task="hotpotqa", max_seq_length=128, max_query_length=32,
                  task_state={"sp_threshold": 0.45})
    return save_model(QAModel(backbone, qa, hotpot_heads), tiny_tokenizer,
                      tmp_path_factory.mktemp("hotpot-serve") / "model", examples=EXAMPLES)


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[str]:
    app = create_app(QAPipeline.from_pretrained(model_dir, device="cpu"), ServeSettings(port=0))
    with serve_in_thread(app) as url:
        yield url


def test_score_is_the_same_probability_everywhere(server: str, model_dir: Path,
                                                  capsys: Any) -> None:
    """As for SQuAD (tests/test_serve.py): QAPipeline, POST /v1/answer and `predict
    --question` give the same answer with the same probability; the ranked candidates with
    the other answer types sum to at most 1."""
    qa = QAPipeline.from_pretrained(model_dir, device="cpu")
    api = qa(question=QUESTION, context=PARAGRAPHS)
    ranked = qa(question=QUESTION, context=PARAGRAPHS, top_k=5)
    body = post(server, "/v1/answer", {"question": QUESTION, "context": PARAGRAPHS,
                                       "top_k": 5}).json()
    code, out, err = run(capsys, "predict", "--model", str(model_dir), "--device", "cpu",
                         "--question", QUESTION, "--context", json.dumps(PARAGRAPHS))
    assert code == 0, err
    cli = json.loads(out)
    assert set(cli) == set(api) == {"answer", "answer_type", "score", "supporting_facts"}
    for other in (body, cli):
        assert (other["answer"], other["answer_type"]) == (api["answer"], api["answer_type"])
        assert other["score"] == pytest.approx(api["score"], abs=1e-6)
    assert [(c["answer"], c["answer_type"]) for c in body["candidates"]] == \
        [(d["answer"], d["answer_type"]) for d in ranked]
    for c, d in zip(body["candidates"], ranked, strict=True):
        assert c["score"] == pytest.approx(d["score"], abs=1e-6)
    assert all(0.0 <= c["score"] <= 1.0 for c in body["candidates"])
    assert sum(c["score"] for c in body["candidates"]) <= 1.0 + 1e-6
    assert qa.examples is not None and qa.examples.synthetic


def test_examples_from_a_hotpot_model_directory(server: str) -> None:
    import httpx

    body = httpx.get(server + "/v1/examples", timeout=30).json()
    assert body == {"source": "model", "data": "dev.json", "synthetic": True,
                    "examples": EXAMPLES["examples"]}


def post(url: str, path: str, body: Any) -> Any:
    import httpx

    return httpx.post(url + path, json=body, timeout=30)


def test_answer_type_and_supporting_facts_over_http(server: str) -> None:
    import httpx

    info = httpx.get(server + "/v1/model", timeout=30).json()
    assert info["task"] == "hotpotqa" and info["task_state"] == {"sp_threshold": 0.45}
    r = post(server, "/v1/answer", {"question": QUESTION, "context": PARAGRAPHS, "top_k": 3})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["answer_type"] in ("span", "yes", "no") and out["answer"]
    if out["answer_type"] != "span":
        assert out["answer"] == out["answer_type"]
    assert out["sp_threshold"] == 0.45
    sentences = {(t, i) for t, s in PARAGRAPHS for i in range(len(s))}
    for title, index, prob in out["supporting_facts"]:
        assert (title, index) in sentences and 0.45 < prob <= 1.0
    assert len(out["candidates"]) == 3 and out["candidates"][0]["answer"] == out["answer"]
    assert sum(c["score"] for c in out["candidates"]) <= 1.0 + 1e-6
    # The same question answers the same way through the batch route and the Python API.
    batch = post(server, "/v1/answer/batch",
                 {"items": [{"question": QUESTION, "context": PARAGRAPHS, "top_k": 3}] * 2})
    assert batch.status_code == 200 and batch.json()["results"] == [out, out]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"context": "a plain passage"}, "context: Input should be a valid list"),
    ({"context": [["Tavrik"]]}, "context[0]"),
    ({"context": [["Tavrik", "not a list"]]}, "context[0]"),
    ({"null_score_diff_threshold": 0.5},
     "--null-score-diff-threshold 0.5 is not supported for hotpotqa"),
])
def test_what_a_hotpot_model_cannot_read_is_422(server: str, body: dict, fragment: str) -> None:
    r = post(server, "/v1/answer", {"question": QUESTION, "context": PARAGRAPHS, **body})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("invalid request: ") and fragment in detail
    assert "\n" not in detail


def test_page_shows_the_hotpot_form_and_answer(server: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent")
    text = "\n\n".join(f"{t}: " + " ".join(s) for t, s in PARAGRAPHS)
    url = f"{server}/?" + urllib.parse.urlencode({"context": text, "question": QUESTION,
                                                  "auto": "1"})
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=10000", "--dump-dom", url]
    dom = subprocess.run([str(CHROMIUM), *flags], capture_output=True, text=True, timeout=90,
                         check=True).stdout
    api = post(server, "/v1/answer", {"question": QUESTION, "context": PARAGRAPHS}).json()
    assert 'data-task="hotpotqa"' in dom and 'data-state="done"' in dom
    assert f'<strong id="hotpot-answer">{api["answer"]}</strong>' in dom
    assert '<label id="context-label" for="context">Paragraphs</label>' in dom
    # Each supporting fact is listed and marked in its paragraph.
    for title, index, _ in api["supporting_facts"]:
        sentence = dict((t, s) for t, s in PARAGRAPHS)[title][index]
        assert f"<mark>{sentence} </mark>" in dom


def test_example_button_fills_the_paragraphs(server: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent")
    from cdp import Page

    with Page(CHROMIUM, tmp_path / "profile") as page:
        page.open(server + "/")
        page.wait_for("document.body.dataset.ready === '1'")
        page.js("document.getElementById('example').click()")
        assert page.js("document.getElementById('context').value") == \
            "Tavrik: Tavrik was founded by Quell Mebbit. It has 31,000 people.\n\n" \
            "Quell Mebbit: Quell Mebbit was a trader. He was born in Quellton."
        assert page.js("document.getElementById('question').value") == QUESTION
        assert "gold answer: Quellton" in page.js(
            "document.getElementById('example-note').textContent")
        page.js("document.getElementById('ask').click()")
        page.wait_for("document.body.dataset.state === 'done'")
        assert page.js("document.getElementById('hotpot-result').hidden") is False
        assert "synthetic" in page.js("document.getElementById('data-note').textContent")
