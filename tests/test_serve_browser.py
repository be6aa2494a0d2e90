"""The served page and the API docs in headless Chromium, with every host but 127.0.0.1
unresolvable (`cdp.OFFLINE`), so nothing may come from a CDN.

The page accepts ?context=...&question=...&threshold=...&auto=1 and then asks by itself, so
Chromium's --dump-dom and --screenshot (with a virtual time budget for the fetch) are enough
there; clicking (the example button) and the docs go through the DevTools client in cdp.py.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cdp import OFFLINE, Page

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CONTEXT = ("🎉 Émile Zola wrote novels in Paris; café culture thrived there in the 19th century. "
           "The Eiffel Tower was completed in 1889.")
QUESTION = "What did Émile Zola write?"
MARK_YELLOW = (0xFF, 0xE0, 0x66)  # the page's <mark> background
THRESHOLD = 0.10521745681762668  # a tuned threshold as training saves it
EXAMPLES = {"task": "squad", "data": "synthetic (gpt2qa demo)", "synthetic": True, "examples": [
    {"question": "When was the Eiffel Tower completed?",
     "context": "The Eiffel Tower was completed in 1889 in Paris, France.", "answers": ["1889"]},
    {"question": "Who designed it?", "context": "The tower stands in Paris.", "answers": []}]}


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent")
    return CHROMIUM


@pytest.fixture(scope="module")
def server(chromium: Path, tmp_path_factory: pytest.TempPathFactory,
           tiny_tokenizer: Any) -> Iterator[str]:
    import torch

    from gpt2qa.checkpoint import save_model
    from gpt2qa.config import QAConfig
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config
    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.serve import ServeSettings, create_app, serve_in_thread

    torch.manual_seed(0)
    prepare_tokenizer(tiny_tokenizer)
    backbone = backbone_from_config(tiny_gpt2_config(len(tiny_tokenizer), n_positions=256))
    model = QAModel(backbone, QAConfig.of(max_seq_length=128, doc_stride=32, max_query_length=32,
                                          null_score_diff_threshold=THRESHOLD))
    model_dir = save_model(model, tiny_tokenizer, tmp_path_factory.mktemp("browser") / "model",
                           examples=EXAMPLES)
    app = create_app(QAPipeline.from_pretrained(model_dir, device="cpu"), ServeSettings(port=0))
    with serve_in_thread(app) as url:
        yield url


def run_chromium(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
             OFFLINE]
    return subprocess.run([str(chromium), *flags, *args], capture_output=True, text=True,
                          timeout=90, check=True)


def page_url(base: str, threshold: float) -> str:
    query = urllib.parse.urlencode({"context": CONTEXT, "question": QUESTION,
                                    "threshold": str(threshold), "auto": "1"})
    return f"{base}/?{query}"


class PageReader(HTMLParser):
    """Collects the text of elements by id, the <mark>s and the <body data-state>."""

    WANTED = ("answer", "best-span", "highlighted", "answer-text", "answer-score", "na-prob",
              "status")

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.marks: list[str] = []
        self.state: str | None = None
        self._open: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.state = a.get("data-state")
        if tag in ("meta", "input", "br", "link"):
            return
        self._open.append((tag, a.get("id") if a.get("id") in self.WANTED else None))
        if tag == "mark":
            self.marks.append(a.get("id") or "")

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident is not None:
                self.text[ident] = self.text.get(ident, "") + data


def read_page(chromium: Path, profile: Path, url: str) -> PageReader:
    dom = run_chromium(chromium, profile, "--dump-dom", url).stdout
    reader = PageReader()
    reader.feed(dom)
    return reader


def api_answer(base: str, threshold: float) -> dict[str, Any]:
    import httpx

    r = httpx.post(f"{base}/v1/answer", json={"question": QUESTION, "context": CONTEXT,
                                              "null_score_diff_threshold": threshold}, timeout=30)
    r.raise_for_status()
    return r.json()


def test_page_highlights_the_api_answer(chromium: Path, server: str, tmp_path: Path) -> None:
    threshold = 1e6  # never abstain, so the untrained model always has a span to show
    page = read_page(chromium, tmp_path / "profile", page_url(server, threshold))
    want = api_answer(server, threshold)
    assert page.state == "done", page.text.get("status")
    assert want["answer"]
    assert page.marks == ["answer"]
    assert page.text["answer"] == want["answer"]
    assert page.text["answer-text"] == want["answer"]
    # The whole context is shown around the mark, emoji (two UTF-16 units) included.
    assert page.text["highlighted"] == CONTEXT
    assert float(page.text["na-prob"]) == pytest.approx(want["no_answer_probability"], abs=1e-3)
    # The answer's probability: the API's score, as the Python API and the CLI give it.
    label, value = page.text["answer-score"].split()
    assert label == "probability" and float(value) == pytest.approx(want["score"], abs=1e-3)


def test_page_shows_abstention(chromium: Path, server: str, tmp_path: Path) -> None:
    page = read_page(chromium, tmp_path / "profile", page_url(server, -1e6))
    want = api_answer(server, -1e6)
    assert want["is_impossible"] and want["answer"] == ""
    assert page.state == "done"
    assert page.text["answer-text"] == "(no answer)"
    assert page.marks == ["best-span"]  # the best span is shown, but not as the answer
    assert page.text["best-span"] == want["candidates"][0]["text"]


def test_screenshot(chromium: Path, server: str, tmp_path: Path) -> None:
    import matplotlib.image
    import numpy as np

    shot = tmp_path / "page.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1000,800",
                 "--hide-scrollbars", page_url(server, 1e6))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    pixels = np.round(matplotlib.image.imread(shot)[..., :3] * 255).astype(np.uint8)
    assert pixels.shape == (800, 1000, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, boxes and a button, not a blank page
    # The highlighted answer was rendered: a patch of the <mark> background colour.
    assert (pixels == np.array(MARK_YELLOW, dtype=np.uint8)).all(axis=-1).sum() > 100


def local_only(page: Page, base: str) -> None:
    """Every request the page made went to this server (or was inline data)."""
    assert page.requests
    assert [u for u in page.requests if not u.startswith((base + "/", "data:"))] == []


def test_api_docs_render_offline(chromium: Path, server: str, tmp_path: Path) -> None:
    with Page(chromium, tmp_path / "profile") as page:
        page.open(server + "/docs")
        # The operations come from /openapi.json, drawn by the docs' script: no script, no path.
        page.wait_for("document.body.innerText.includes('/v1/answer/batch')")
        assert "/v1/examples" in page.js("document.body.innerText")
        local_only(page, server)


def test_example_button_fills_the_form_and_answering_shows_a_result(
        chromium: Path, server: str, tmp_path: Path) -> None:
    with Page(chromium, tmp_path / "profile") as page:
        page.open(server + "/")
        page.wait_for("document.body.dataset.ready === '1'")
        first, second = EXAMPLES["examples"]
        page.js("document.getElementById('example').click()")
        assert page.js("document.getElementById('context').value") == first["context"]
        assert page.js("document.getElementById('question').value") == first["question"]
        note = page.js("document.getElementById('example-note').textContent")
        assert "Example 1 of 2 from the model's synthetic evaluation data" in note
        assert "gold answer: 1889" in note
        page.js("document.getElementById('example').click()")  # the next one
        assert page.js("document.getElementById('question').value") == second["question"]
        assert "unanswerable" in page.js("document.getElementById('example-note').textContent")
        page.js("document.getElementById('ask').click()")
        page.wait_for("document.body.dataset.state === 'done'")
        assert page.js("document.getElementById('result').hidden") is False
        assert page.js("document.getElementById('answer-text').textContent") != ""
        # The demo's model says what it learnt from.
        assert page.js("document.getElementById('data-note').hidden") is False
        assert "synthetic" in page.js("document.getElementById('data-note').textContent")
        local_only(page, server)


def test_threshold_is_rounded_and_explained(chromium: Path, server: str, tmp_path: Path) -> None:
    with Page(chromium, tmp_path / "profile") as page:
        page.open(server + "/")
        page.wait_for("document.body.dataset.ready === '1'")
        model = page.js("document.getElementById('model').textContent")
        assert "threshold 0.105 " in model and "0.1052" not in model
        assert page.js("document.getElementById('threshold').placeholder") == "default: 0.105"
        assert page.js("document.getElementById('threshold-label').textContent") == \
            "Abstain when no-answer beats the best answer by more than"
        assert "answer more often" in page.js(
            "document.getElementById('threshold-help').textContent")
