"""The `gpt2qa` command line: `flags` declares every command's flags (the command table is
`flags.build_parser`) with the parser and settings-to-flags tools of `argparsing`, `commands`
holds one handler per command, `hotpot` the HotpotQA side.

Every GPT2QAError becomes one line on stderr and exit status 2.

This package imports `flags` only when `main` runs or one of its names is looked up here (and
`argparsing` only for one of its own names), so that `flags` (which imports `commands` for the
handlers) and this package never import each other while loading.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpt2qa.cli.commands import Handler, config_from_sources
from gpt2qa.errors import GPT2QAError

if TYPE_CHECKING:
    from gpt2qa.cli.argparsing import Parser, add_settings_flags, field_docs
    from gpt2qa.cli.flags import build_parser

__all__ = ["Parser", "add_settings_flags", "build_parser", "config_from_sources", "field_docs",
           "main"]

_HOMES = {"Parser": "argparsing", "add_settings_flags": "argparsing", "field_docs": "argparsing",
          "build_parser": "flags"}
"""The submodule each name of `__all__` that is not defined here comes from, loaded on first
look-up."""


def main(argv: Sequence[str] | None = None) -> int:
    from gpt2qa.cli.flags import build_parser

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers' own per-load progress bars would drown ours.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # argparse would print the top-level usage; the sub-command's is the useful one.
        subparsers = next(a for a in parser._actions
                          if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].refuse_unknown(extras)
    handler: Handler = args.func
    finished = False
    try:
        code = handler(args)
        finished = True
        return code
    except GPT2QAError as exc:
        from gpt2qa.launch import report_error

        line = f"gpt2qa {args.command}: error: {exc}"
        if not report_error(line):  # under `gpt2qa launch`, the launcher prints it once
            print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gpt2qa {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        close_process_group(finished)


def close_process_group(finished: bool) -> None:
    """Tear down the torch.distributed group a command joined under a launcher, after every
    process has `finished` (a barrier; not after a failure, which the launcher handles). Left
    to the interpreter's exit, or torn down while a peer still works, gloo's threads sometimes
    abort the process ("terminate called without an active exception", exit 134) after its
    work is done and written."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        found = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
        globals()[name] = found  # later look-ups skip this function
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
