"""Where and how the model runs: the device, the autocast context and the process group.

Shared by training, inference and the pipeline, so that each asks one place.
"""

from __future__ import annotations

from typing import Any

import torch

from gpt2qa.errors import GPT2QAError


def available_devices() -> list[str]:
    """The devices gpt2qa can run on here: cpu, each CUDA device, mps where present."""
    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def pick_device(device: str | None = None) -> torch.device:
    """`device` (``--device``: cpu, cuda, cuda:1, mps), checked against this machine, or by
    default cuda when available, else cpu. A device that does not parse, is not here (cuda
    without CUDA, cuda:7 on a one-GPU machine), or that gpt2qa cannot compute on (meta) is
    one GPT2QAError line naming the value and what is available."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = available_devices()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GPT2QAError(f"--device {device!r}: not a device name; available here: "
                          f"{', '.join(here)}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GPT2QAError(f"--device {device}: CUDA is not available on this machine; "
                              f"available here: {', '.join(here)}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GPT2QAError(f"--device {device}: no such CUDA device (this machine has "
                              f"{torch.cuda.device_count()}); available here: {', '.join(here)}")
        return dev
    if dev.type == "mps" and "mps" in here:
        return dev
    raise GPT2QAError(f"--device {device}: gpt2qa cannot run on {dev.type!r} here; available "
                      f"here: {', '.join(here)}")


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
