"""The `gpt2qa serve` flags and command (`add_serve_parser`), and `python -m gpt2qa.serve`.

All of serve's flag declarations are in `add_serve_arguments`. This module imports only the
settings model, so building the CLI's parser stays cheap; the app (FastAPI, torch) is
imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from gpt2qa.errors import GPT2QAError
from gpt2qa.serve.settings import ServeSettings


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
    """Each ServeSettings field's docstring on one line, %-escaped for argparse."""
    return {name: " ".join((f.description or "").split()).replace("%", "%%")
            for name, f in ServeSettings.model_fields.items()}


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    names = ServeSettings.model_fields.keys()
    return ServeSettings(**{k: v for k, v in vars(args).items() if k in names})


def cmd_serve(args: argparse.Namespace) -> int:
    # Looked up on the package when the command runs: the app and torch load only then (and a
    # test can replace `gpt2qa.serve.serve_forever`).
    from gpt2qa import serve

    serve.serve_forever(args.model, settings_from_args(args), device=args.device,
                        precision=args.precision, log_level=args.log_level,
                        quantize=args.quantize)
    return 0


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa serve` on the CLI's sub-parsers (`sub` from add_subparsers)."""
    p = sub.add_parser("serve", help="serve a gpt2qa model over HTTP (JSON API and a web page)")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gpt2qa.serve ...` (benchmarks/serve_load.py): the same as `gpt2qa serve`."""
    from gpt2qa.cli import Parser

    parser = Parser(prog="gpt2qa serve", description="serve a gpt2qa model over HTTP")
    add_serve_arguments(parser)
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.refuse_unknown(extras)
    try:
        return cmd_serve(args)
    except GPT2QAError as exc:
        print(f"gpt2qa serve: error: {exc}", file=sys.stderr)
        return 2

