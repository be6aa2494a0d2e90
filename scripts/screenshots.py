"""Full-page screenshots for docs/, in headless Chromium (/usr/bin/chromium).

    python3 scripts/screenshots.py report /tmp/report-out --out docs
        docs/report-1280.png and docs/report-420.png of a `gpt2qa report` folder

Headless Chromium will not make a window narrower than 500 px, so a page is shown in an
<iframe> of the wanted width (its viewport, media queries included, is that wide) on a
wrapper page, and the screenshot is cropped to the frame. The page is first loaded once, as
a copy with a small script added, to measure its height at that width; the screenshot is then
taken with the frame that tall, so it holds the whole page. Each kind of page is one function
here, and `main` dispatches on the first argument.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
MIN_WINDOW = 500
"""Headless Chromium's narrowest window."""
WIDTHS = (1280, 420)
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


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--hide-scrollbars", "--allow-file-access-from-files",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True,
                          timeout=120, check=True)


def _wrapper(page: Path, src: str, width: int, height: int) -> Path:
    wrapper = page.with_name(f".frame-{width}-{page.name}")
    wrapper.write_text(WRAPPER.format(src=src, width=width, height=height), encoding="utf-8")
    return wrapper


def measure(page: Path, width: int, profile: Path) -> dict[str, int]:
    """The page's viewport width, scroll width and height in a frame `width` px wide, from a
    copy with MEASURE added (written beside it, so relative images load, and removed after)."""
    probe = page.with_name(f".measure-{page.name}")
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    wrapper = _wrapper(page, probe.name, width, 900)
    try:
        dom = chromium(profile, f"--window-size={max(width, MIN_WINDOW)},900", "--dump-dom",
                       wrapper.as_uri()).stdout
    finally:
        probe.unlink()
        wrapper.unlink()
    start = dom.index('<pre id="measure">') + len('<pre id="measure">')
    return json.loads(dom[start:dom.index("</pre>", start)])


def full_page(page: Path, png: Path, width: int) -> Path:
    """A screenshot of the whole of `page` at `width` px (cropped to the frame)."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        size = measure(page, width, Path(tmp) / "measure")
        wrapper = _wrapper(page, page.name, width, size["height"])
        shot = Path(tmp) / "shot.png"
        try:
            chromium(Path(tmp) / "shot", f"--window-size={max(width, MIN_WINDOW)},"
                     f"{size['height']}", f"--screenshot={shot}", wrapper.as_uri())
        finally:
            wrapper.unlink()
        with Image.open(shot) as img:
            img.crop((0, 0, width, size["height"])).save(png, optimize=True)
    print(f"{png}: {width} x {size['height']} px (viewport {size['width']}, content "
          f"{size['scroll_width']} px wide)")
    return png


def report(report_dir: Path, out_dir: Path) -> list[Path]:
    """docs/report-1280.png and docs/report-420.png of a `gpt2qa report` folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "report"
        shutil.copytree(report_dir, copy)  # the measuring copy is never written to the input
        return [full_page(copy / "index.html", out_dir / f"report-{w}.png", w) for w in WIDTHS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("report", help="screenshots of a `gpt2qa report` folder")
    p.add_argument("report_dir", type=Path, help="the folder holding index.html")
    p.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"screenshots: {CHROMIUM} is absent", file=sys.stderr)
        return 2
    if args.what == "report":
        report(args.report_dir, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
