"""The `gpt2qa` command line: `flags` declares every command's flags (the command table is
`flags.build_parser`), `commands` holds one handler per command, `hotpot` the HotpotQA side.

Every GPT2QAError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gpt2qa.cli.commands import Handler, _read_yaml_config, config_from_sources
from gpt2qa.cli.flags import Parser, add_settings_flags, build_parser, field_docs
from gpt2qa.errors import GPT2QAError

__all__ = ["Parser", "_read_yaml_config", "add_settings_flags", "build_parser",
           "config_from_sources", "field_docs", "main"]


def main(argv: Sequence[str] | None = None) -> int:
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
    try:
        return handler(args)
    except GPT2QAError as exc:
        print(f"gpt2qa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gpt2qa {args.command}: interrupted", file=sys.stderr)
        return 130
