"""`gpt2qa study` on the command line: its flags (`add_study_parser`) and its handler.

Kept light: `gpt2qa --help` imports this module, and the runner (torch, transformers) is
imported only when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from gpt2qa.study.config import load_study_config
from gpt2qa.study.grid import parse_only


def cmd_study(args: argparse.Namespace) -> int:
    from gpt2qa.study.runner import run_study  # torch and transformers: only when it runs

    config = load_study_config(args.config)
    only = parse_only(args.only or [], config.grid)
    result = run_study(config, args.out_dir, only=only, max_cells=args.max_cells,
                       progress=args.progress)
    done = sum(1 for o in result.outcomes if o.action != "skipped")
    print(f"study: {done} cell(s) run, {len(result.outcomes) - done} skipped; "
          f"summary: {result.out_dir / 'summary.md'}")
    return 0


def add_study_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `gpt2qa study` on an argparse sub-parsers object."""
    p = sub.add_parser("study", help="run the layout x null-position x head x seed grid on "
                                     "synthetic data, then summarise it (resumable)")
    p.add_argument("--config", required=True, help="study YAML (e.g. configs/study-synthetic.yaml)")
    p.add_argument("--out-dir", required=True, help="study directory (created; reruns resume)")
    p.add_argument("--only", action="append", metavar="KEY=VALUE",
                   help="run only matching cells: layout, null_position (null), head, seed; "
                        "repeat a key for either value")
    p.add_argument("--max-cells", type=int, default=None,
                   help="run at most N cells that need work, then summarise and stop")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="per-cell training progress bars (default: one line per cell)")
    p.set_defaults(func=cmd_study)
    return p
