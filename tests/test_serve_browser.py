"""The served page in headless Chromium: fill the form from the URL, ask, read the highlight.

The page accepts ?context=...&question=...&threshold=...&auto=1 and then asks by itself, so
Chromium's --dump-dom and --screenshot (with a virtual time budget for the fetch) are enough;
no DevTools client is needed.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CONTEXT = ("🎉 Émile Zola wrote novels in Paris; café culture thrived there in the 19th century. "
           "The Eiffel Tower was completed in 1889.")
QUESTION = "What did Émile Zola write?"
MARK_YELLOW = (0xFF, 0xE0, 0x66)  # the page's <mark> background


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
    model = QAModel(backbone, QAConfig.of(max_seq_length=128, doc_stride=32, max_query_length=32))
    model_dir = save_model(model, tiny_tokenizer, tmp_path_factory.mktemp("browser") / "model")
    app = create_app(QAPipeline.from_pretrained(model_dir, device="cpu"), ServeSettings(port=0))
    with serve_in_thread(app) as url:
        yield url


def run_chromium(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    return subprocess.run([str(chromium), *flags, *args], capture_output=True, text=True,
                          timeout=90, check=True)


def page_url(base: str, threshold: float) -> str:
    query = urllib.parse.urlencode({"context": CONTEXT, "question": QUESTION,
                                    "threshold": str(threshold), "auto": "1"})
    return f"{base}/?{query}"


class PageReader(HTMLParser):
    """Collects the text of elements by id, the <mark>s and the <body data-state>."""

    WANTED = ("answer", "best-span", "highlighted", "answer-text", "na-prob", "status")

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
