"""The docs' screenshots, rerunnable: headless Chromium at 1280 and 420 px wide.

    python scripts/screenshots.py page --model runs/demo/run/model   # docs/serve-{1280,420}.png

One function per target (`page`, ...), each taking the parsed flags. `page` serves the model
in this process, takes its first example with a gold answer (GET /v1/examples: its own
evaluation data, kept in examples.json at training time) and opens the page with the
?context=&question=&auto=1 prefill, so the shot shows the model answering it. Chromium runs
with every host but 127.0.0.1 unresolvable: the page must not need the network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
WIDTHS = {1280: 900, 420: 1300}
"""Width -> height of each shot, in CSS pixels: the page with its answer, without scrolling."""
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--virtual-time-budget=20000",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def shoot(url: str, out: Path, width: int, height: int) -> Path:
    """A PNG of `url` at width x height (the page's script runs first: virtual time)."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}",
                        f"--window-size={width},{height}", f"--screenshot={out}", url],
                       capture_output=True, check=True, timeout=180)
    if not out.is_file():
        raise SystemExit(f"screenshots: Chromium wrote no {out}")
    return out


def page(args: argparse.Namespace) -> list[Path]:
    """docs/serve-1280.png and docs/serve-420.png: the page answering one of the model's own
    evaluation questions."""
    import httpx

    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.serve import ServeSettings, create_app, serve_in_thread

    app = create_app(QAPipeline.from_pretrained(args.model, device="cpu"), ServeSettings(port=0))
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    written = []
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
        for width, height in WIDTHS.items():
            out = Path(args.out_dir) / f"{args.prefix}-{width}.png"
            written.append(shoot(f"{base}/?{query}", out, width, height))
    return written


TARGETS: dict[str, Callable[[argparse.Namespace], list[Path]]] = {"page": page}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--model", default=str(ROOT / "runs" / "demo" / "run" / "model"),
                        help="model directory the page serves (default: the demo's)")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    parser.add_argument("--prefix", default="serve", help="file names: PREFIX-WIDTH.png")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"screenshots: {CHROMIUM} is absent", file=sys.stderr)
        return 2
    for path in TARGETS[args.target](args):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
