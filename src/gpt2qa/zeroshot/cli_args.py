"""``gpt2qa zero-shot``: its flags (`add_zero_shot_parser`) and its handler (`cmd_zero_shot`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gpt2qa.config import PRECISIONS
from gpt2qa.errors import GPT2QAError
from gpt2qa.io import check_output_dir
from gpt2qa.zeroshot.settings import NA_SCORINGS, ZeroShotConfig


def _unescape(template: str) -> str:
    """Let a shell-typed template say \\n for a newline."""
    return template.replace("\\n", "\n")


def cmd_zero_shot(args: argparse.Namespace) -> int:
    """Handler of ``gpt2qa zero-shot``: prints the metrics as JSON."""
    # Imported here: torch and transformers load only when the command runs, not for --help.
    from gpt2qa.zeroshot.run import run_zero_shot

    if not Path(args.data).is_file():
        raise GPT2QAError(f"{args.data}: no such file")
    check_output_dir(args.out_dir, "--out-dir")
    values: dict[str, Any] = {}
    for name in ("shots", "shots_file", "max_new_tokens", "na_scoring", "batch_size", "seed",
                 "precision"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for name in ("template", "shot_template"):
        if getattr(args, name) is not None:
            values[name] = _unescape(getattr(args, name))
    if args.abstain_phrases is not None:
        values["abstain_phrases"] = tuple(p.strip() for p in args.abstain_phrases.split(",")
                                          if p.strip())
    config = ZeroShotConfig(**values)
    metrics = run_zero_shot(args.model, args.data, args.out_dir, config, device=args.device,
                            max_examples=args.max_examples, progress=args.progress)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def add_zero_shot_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``zero-shot`` on an argparse sub-parsers object; its ``func`` is `cmd_zero_shot`."""
    d = ZeroShotConfig()
    p = sub.add_parser("zero-shot", help="answer SQuAD with a causal LM's own head, no "
                                         "fine-tuning (GPT-2 paper baseline)")
    p.add_argument("--model", required=True, help="causal LM directory or hub id")
    p.add_argument("--data", required=True, help="SQuAD JSON file to answer")
    p.add_argument("--out-dir", required=True,
                   help="where predictions.json, na_probs.json, nbest.json go")
    p.add_argument("--shots", type=int, default=None, help=f"solved examples to show "
                                                           f"(default: {d.shots})")
    p.add_argument("--shots-file", default=None, help="SQuAD training file to draw shots from")
    p.add_argument("--template", default=None,
                   help=f"prompt with {{context}} and {{question}}; \\n is a newline "
                        f"(default: {d.template!r})")
    p.add_argument("--shot-template", default=None,
                   help=f"solved-example template, also with {{answer}} "
                        f"(default: {d.shot_template!r})")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"(default: {d.max_new_tokens})")
    p.add_argument("--abstain-phrases", default=None,
                   help=f"comma-separated answers that mean no answer; the first is the one "
                        f"shown and scored (default: {','.join(d.abstain_phrases)})")
    p.add_argument("--na-scoring", choices=NA_SCORINGS, default=None,
                   help=f"(default: {d.na_scoring})")
    p.add_argument("--batch-size", type=int, default=None, help=f"(default: {d.batch_size})")
    p.add_argument("--seed", type=int, default=None, help=f"shot sampling (default: {d.seed})")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help=f"(default: {d.precision})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--max-examples", type=int, default=None,
                   help="answer only the first N questions (metrics cover those only)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="show a progress bar on stderr")
    p.set_defaults(func=cmd_zero_shot)
    return p
