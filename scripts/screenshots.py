"""The docs' screenshots, rerunnable: headless Chromium (/usr/bin/chromium) at 1280 and 420 px.

    python3 scripts/screenshots.py page --model runs/demo/run/model     # docs/serve-{1280,420}.png
    python3 scripts/screenshots.py report runs/report                   # docs/report-{1280,420}.png

Chromium runs with every host but 127.0.0.1 unresolvable: neither page may need the network.

`page` serves the model in this process, takes its first example with a gold answer (GET
/v1/examples: its own evaluation data, kept in examples.json at training time) and opens the
page with the ?context=&question=&auto=1 prefill, so the shot shows the model answering it.
`report` first loads a copy of the report with a small script added to measure its height at
each width, then shoots the whole page. There the page is shown in an <iframe> of the wanted
width (its viewport, media queries included, is that wide) on a wrapper page, and the shot is
cropped to the frame, since the window Chromium measures in is at least 500 px wide.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
MIN_WINDOW = 500
"""Headless Chromium's narrowest window."""
PAGE_HEIGHTS = {1280: 900, 420: 1300}
"""Width -> height of each page shot, in CSS pixels: the page with its answer."""
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--allow-file-access-from-files",
         "--virtual-time-budget=20000", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
MEASURE = """<script>
window.addEventListener("load", () => {
  const size = JSON.stringify({width: window.innerWidth,
    scroll_width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight});
  parent.postMessage(size, "*");
});
</script>"""
WRAPPER = """<!DOCTYPE html><html><head><meta charset="utf-8"></head>
<body style="margin:0"><iframe src="{src}" scrolling="no"
 style="border:0;display:block;width:{width}px;height:{height}px"></iframe>
<script>window.addEventListener("message", (e) => {{
  const pre = document.createElement("pre"); pre.id = "measure"; pre.textContent = e.data;
  document.body.appendChild(pre); }});</script></body></html>"""


def chromium(*args: str) -> str:
    """Run headless Chromium with a throwaway profile; its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=180, check=True).stdout


def framed(src: str, width: int, height: int, folder: Path) -> Path:
    """A wrapper page in `folder` showing `src` in a width x height frame."""
    wrapper = folder / f".frame-{width}.html"
    wrapper.write_text(WRAPPER.format(src=src, width=width, height=height), encoding="utf-8")
    return wrapper


def shoot_url(url: str, png: Path, width: int, height: int) -> Path:
    """A PNG of `url` in a width x height window (its script runs first: virtual time)."""
    chromium(f"--window-size={width},{height}", f"--screenshot={png}", url)
    if not png.is_file():
        raise SystemExit(f"screenshots: Chromium wrote no {png}")
    print(f"{png}: {width} x {height} px")
    return png


def shoot_framed(src: str, png: Path, width: int, height: int, folder: Path) -> Path:
    """A PNG of `src` (a file name relative to `folder`) in a width x height frame."""
    from PIL import Image

    wrapper = framed(src, width, height, folder)
    shot = folder / f".shot-{width}.png"
    try:
        chromium(f"--window-size={max(width, MIN_WINDOW)},{height}", f"--screenshot={shot}",
                 wrapper.as_uri())
        with Image.open(shot) as img:
            img.crop((0, 0, width, height)).save(png, optimize=True)
    finally:
        wrapper.unlink()
        shot.unlink(missing_ok=True)
    print(f"{png}: {width} x {height} px")
    return png


def measure(page: Path, width: int) -> dict[str, int]:
    """The page's viewport width, scroll width and height in a frame `width` px wide, from a
    copy with MEASURE added (written beside it, so relative images load, and removed after)."""
    probe = page.with_name(f".measure-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"),
                     encoding="utf-8")
    wrapper = framed(probe.name, width, 900, page.parent)
    try:
        dom = chromium(f"--window-size={max(width, MIN_WINDOW)},900", "--dump-dom",
                       wrapper.as_uri())
    finally:
        probe.unlink()
        wrapper.unlink()
    start = dom.index('<pre id="measure">') + len('<pre id="measure">')
    return json.loads(dom[start:dom.index("</pre>", start)])


def report(args: argparse.Namespace) -> list[Path]:
    """report-1280.png and report-420.png: the whole of a `gpt2qa report` folder's page."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "report"
        shutil.copytree(args.source, copy)  # the measuring copy is never written to the input
        shots = []
        for width in PAGE_HEIGHTS:
            height = measure(copy / "index.html", width)["height"]
            shots.append(shoot_framed("index.html", args.out_dir / f"report-{width}.png", width,
                               height, copy))
        return shots


def page(args: argparse.Namespace) -> list[Path]:
    """serve-1280.png and serve-420.png: the page answering one of the model's own
    evaluation questions."""
    import httpx

    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.serve import ServeSettings, create_app, serve_in_thread

    app = create_app(QAPipeline.from_pretrained(args.source, device="cpu"), ServeSettings(port=0))
    with serve_in_thread(app) as base:
        examples = httpx.get(f"{base}/v1/examples", timeout=30).json()
        item = next(e for e in examples["examples"] if e["answers"])
        context = item["context"]
        if not isinstance(context, str):  # HotpotQA paragraphs, as the page's text box takes them
            context = "\n\n".join(f"{t}: {''.join(s).strip()}" for t, s in context)
        query = urllib.parse.urlencode({"context": context, "question": item["question"],
                                        "auto": "1"})
        print(f"{examples['source']} example ({examples['data']}): {item['question']!r}, "
              f"gold {item['answers'][0]!r}")
        return [shoot_url(f"{base}/?{query}", args.out_dir / f"{args.prefix}-{width}.png", width,
                          height) for width, height in PAGE_HEIGHTS.items()]


TARGETS = {"page": page, "report": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("source", nargs="?", type=Path, default=None,
                        help="report: the folder holding index.html; page: the model directory "
                             "(default: --model)")
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "demo" / "run" / "model",
                        help="page: the model directory it serves (default: the demo's)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--prefix", default="serve", help="page: file names PREFIX-WIDTH.png")
    args = parser.parse_args(argv)
    if args.source is None:
        if args.target == "report":
            parser.error("report needs the report folder")
        args.source = args.model
    if not CHROMIUM.exists():
        print(f"screenshots: {CHROMIUM} is absent", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    TARGETS[args.target](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
