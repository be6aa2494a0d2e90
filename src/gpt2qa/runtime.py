"""Where and how the model runs: the device, the autocast context and the process group.

Shared by training, inference and the pipeline, so that each asks one place.
"""

from __future__ import annotations

from typing import Any

import torch

from gpt2qa.errors import GPT2QAError


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_context(device: torch.device, precision: str) -> Any:
    """bf16/fp16 autocast on CUDA, bf16 autocast on CPU; a no-op context for fp32.

    On CPU only bf16 exists, and it is fast only with bf16 instructions: the user-facing entry
    points (`QAPipeline.from_pretrained`, the CLI) call `quantize.check_cpu_bf16` first."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if device.type == "cpu" and precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type != "cuda":
        raise GPT2QAError(f"--precision {precision} needs a CUDA device; use fp32 or bf16 on "
                          f"{device.type}")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def process_group() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group this process belongs to, or (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
