"""`gpt2qa launch`: run one gpt2qa command in N local processes, through torchrun.

    gpt2qa launch --nproc-per-node 2 train --config configs/gpt2-squad2.yaml

is `torchrun --standalone --nproc-per-node 2 -m gpt2qa train ...`: one process per GPU (or
N CPU processes over gloo), a free rendezvous port, and the exit status of the worst process.
Each process runs the same command; gpt2qa splits the work (train's global batches, sharded
evaluation, `predict --data`). For several machines use torchrun or `accelerate launch` with
their multi-node flags (README, "Scaling out").
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from gpt2qa.errors import GPT2QAError

COMMANDS = ("train", "predict")
"""The commands that split their work over processes; others would only repeat it."""


def launch_command(nproc_per_node: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command line for `gpt2qa ARGV` in `nproc_per_node` local processes."""
    if nproc_per_node < 1:
        raise GPT2QAError(f"--nproc-per-node must be at least 1; got {nproc_per_node}")
    if not argv or argv[0] not in COMMANDS:
        given = argv[0] if argv else "nothing"
        raise GPT2QAError(f"launch runs one of: {', '.join(COMMANDS)} (got {given})")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc_per_node}", "-m", "gpt2qa", *argv]


def launch(nproc_per_node: int, argv: Sequence[str]) -> int:
    """Run the command and return its exit status (non-zero if any process failed)."""
    return subprocess.run(launch_command(nproc_per_node, argv), check=False).returncode


def launched_processes() -> int:
    """How many processes the launcher started (WORLD_SIZE), 1 without a launcher."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise GPT2QAError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def process_group_on_cpu() -> bool:
    """Accelerate joins several processes over gloo only when told to use the CPU; without
    CUDA it would otherwise run N unaware copies of the job."""
    import torch

    return launched_processes() > 1 and not torch.cuda.is_available()


def check_joined(num_processes: int) -> None:
    """Refuse to go on as one of N copies that do not know about each other."""
    expected = launched_processes()
    if num_processes != expected:
        raise GPT2QAError(f"the launcher started {expected} processes but they did not join one "
                          f"process group (this one sees {num_processes})")


def check_launcher_precision(precision: str, environ: dict[str, str] | os._Environ[str] = os.environ,
                             ) -> None:
    """gpt2qa alone owns autocast and loss scaling. A launcher's mixed-precision setting
    (`accelerate config`, `accelerate launch --mixed_precision`) that disagrees with
    --precision is refused rather than silently overriding it or fighting our GradScaler."""
    launcher = environ.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower()
    if launcher not in ("", "no") and launcher != precision:
        raise GPT2QAError(
            f"the launcher asks for mixed precision {launcher} (ACCELERATE_MIXED_PRECISION, from "
            f"`accelerate config` or --mixed_precision) but this run has --precision {precision}; "
            f"gpt2qa sets precision itself: pass --precision {launcher} to gpt2qa, or launch "
            "with --mixed_precision no")
