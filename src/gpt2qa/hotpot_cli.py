"""The HotpotQA side of the CLI: `cli.py` detects the data format and hands over here."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gpt2qa.errors import GPT2QAError


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def evaluate_hotpot_args(args: argparse.Namespace) -> int:
    """`gpt2qa evaluate HOTPOT.json PREDS.json`: the official HotpotQA keys as JSON."""
    from gpt2qa.decode import write_json_atomic
    from gpt2qa.hotpot_metrics import evaluate_hotpot_files

    for flag, value in (("--na-prob-file", args.na_prob_file),
                        ("--out-image-dir", args.out_image_dir),
                        ("--breakdown", args.breakdown or None)):
        if value is not None:
            raise GPT2QAError(f"{flag} applies to SQuAD data; {args.data} is HotpotQA")
    result = evaluate_hotpot_files(args.data, args.predictions)
    if args.out_file:
        write_json_atomic(args.out_file, result)
    _print_json(result)
    return 0
