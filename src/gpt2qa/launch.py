"""`gpt2qa launch`: run one gpt2qa command in N local processes, through torchrun.

    gpt2qa launch --nproc-per-node 2 train --config configs/gpt2-squad2.yaml

is `torchrun --standalone --nproc-per-node 2 -m gpt2qa train ...`: one process per GPU (or
N CPU processes over gloo) and a free rendezvous port. torchrun's agent runs quietly
(`run_agent`): a failing process's one-line error is printed once (each process writes it to
the launcher's folder, `ERRORS_ENV`, and identical lines are shown once) and its exit status,
2 for bad input, is the launcher's; torchrun's own log lines and ChildFailedError traceback
are not shown.
Each process runs the same command; gpt2qa splits the work (train's global batches, sharded
evaluation, `predict --data`). For several machines use torchrun or `accelerate launch` with
their multi-node flags (docs/scaling.md).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gpt2qa.errors import GPT2QAError

COMMANDS = ("train", "predict")
"""The commands that split their work over processes; others would only repeat it."""

ERRORS_ENV = "GPT2QA_LAUNCH_ERRORS"
"""Set by `launch` for its processes: the folder where each writes its one-line error."""

AGENT = "import sys; from gpt2qa.launch import run_agent; sys.exit(run_agent(sys.argv[1:]))"
"""The launcher's process: torchrun's `run` with its logging and traceback turned off."""


def launch_command(nproc_per_node: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command line for `gpt2qa ARGV` in `nproc_per_node` local processes."""
    if nproc_per_node < 1:
        raise GPT2QAError(f"--nproc-per-node must be at least 1; got {nproc_per_node}")
    if not argv or argv[0] not in COMMANDS:
        given = argv[0] if argv else "nothing"
        raise GPT2QAError(f"launch runs one of: {', '.join(COMMANDS)} (got {given})")
    return [sys.executable, "-c", AGENT, "--standalone",
            f"--nproc-per-node={nproc_per_node}", "-m", "gpt2qa", *argv]


def launch(nproc_per_node: int, argv: Sequence[str]) -> int:
    """Run the command and return its exit status: that of the first process to fail (2 for
    bad input), 0 when all succeed. The failing processes' one-line errors are printed once."""
    command = launch_command(nproc_per_node, argv)
    with tempfile.TemporaryDirectory(prefix="gpt2qa-launch-") as errors:
        code = subprocess.run(command, env={**os.environ, ERRORS_ENV: errors},
                              check=False).returncode
        lines: list[str] = []
        for path in sorted(Path(errors).glob("rank-*.txt"),
                           key=lambda p: int(p.stem.split("-")[1])):
            line = path.read_text(encoding="utf-8", errors="replace").strip()
            if line and line not in lines:
                lines.append(line)
    for line in lines:
        print(line, file=sys.stderr)
    return code


def run_agent(torchrun_args: Sequence[str]) -> int:
    """torchrun in this process, quiet: its log lines are off (torch's elastic loggers read
    LOGLEVEL when created; the others inherit torch.distributed's level) and a failed process gives its own exit status, not torchrun's
    ChildFailedError traceback and status 1. A process killed by signal N gives 128 + N."""
    previous = os.environ.get("LOGLEVEL")
    os.environ["LOGLEVEL"] = "CRITICAL"
    try:
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import parse_args, run
    finally:  # the workers start with the user's environment
        if previous is None:
            os.environ.pop("LOGLEVEL", None)
        else:
            os.environ["LOGLEVEL"] = previous
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
    try:
        run(parse_args(list(torchrun_args)))
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
    return 0


def report_error(line: str) -> bool:
    """In a process `launch` started: write its one-line error for the launcher to print
    (once, however many processes fail alike) and return True; elsewhere False."""
    folder = os.environ.get(ERRORS_ENV)
    if not folder:
        return False
    try:
        (Path(folder) / f"rank-{int(os.environ.get('RANK', '0'))}.txt").write_text(
            line + "\n", encoding="utf-8")
    except (OSError, ValueError):
        return False
    return True


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
