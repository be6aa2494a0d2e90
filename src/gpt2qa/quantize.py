"""Low-precision CPU inference: bf16 autocast support and int8 dynamic quantisation.

int8 (`--quantize int8`): every matmul layer of the *backbone* gets int8 weights (one scale
per output channel) and int8 activations quantised on the fly per batch (`torch.ao` dynamic
quantisation). GPT-2's layers are transformers' `Conv1D`, which computes x @ W + b with W
stored [in, out]; `quantize_dynamic` only knows `nn.Linear`, so each Conv1D first becomes an
equivalent Linear with the transposed weight (`conv1d_to_linear`). The span head, the LSTM,
the null classifier and the decoding stay fp32: they are a sliver of the FLOPs, and the
logits they make decide every answer. A LoRA model's adapters (and its trained token rows) are
first merged into the base weights (peft's `merge_and_unload`), so the int8 layers hold the
weights the adapters would have produced.

Weights are packed for oneDNN's int8 kernels where torch has them (`INT8_ENGINE`): on an
AVX2-only CPU they answer faster than the default x86 (fbgemm) engine at batch 3 and as fast
at batch 1, with the same answers. Per-channel weight scales keep more answers identical to
fp32 than one scale per matrix (both measured in benchmarks/README.md).

Quantised models are for inference only: they cannot be trained or saved by gpt2qa.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import torch
from torch import nn

from gpt2qa.errors import GPT2QAError

INT8_ENGINE = "onednn"
"""torch's quantized engine used to pack int8 weights; the packed weights carry their kernels,
so the global engine setting is restored after quantising."""

def conv1d_to_linear(module: nn.Module) -> int:
    """Replace every transformers `Conv1D` under `module` by the same map as an `nn.Linear`;
    returns how many were replaced. Outputs are equal up to float summation order."""
    from transformers.pytorch_utils import Conv1D

    swaps = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape
                linear = nn.Linear(n_in, n_out, bias=child.bias is not None,
                                   device=child.weight.device, dtype=child.weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
                swaps += 1
    return swaps


def quantize_backbone_int8(model: nn.Module) -> int:
    """Dynamic int8 quantisation of `model.transformer`'s matmul layers, in place; the heads
    are untouched (fp32). Returns the number of layers quantised. CPU only. A peft (LoRA)
    backbone is merged into plain layers first: peft's wrappers cannot hold packed int8 ones."""
    backbone = model.transformer  # type: ignore[attr-defined]
    if any(p.device.type != "cpu" for p in backbone.parameters()):
        raise GPT2QAError("--quantize int8 runs on CPU only; pass --device cpu")
    if hasattr(backbone, "peft_config"):
        backbone = model.transformer = backbone.merge_and_unload()  # type: ignore[operator]
    conv1d_to_linear(backbone)
    count = sum(isinstance(m, nn.Linear) for m in backbone.modules())
    if count == 0:
        raise GPT2QAError("--quantize int8: the backbone has no Linear/Conv1D layers to quantise")
    engines = torch.backends.quantized.supported_engines
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        try:
            if INT8_ENGINE in engines:
                torch.backends.quantized.engine = INT8_ENGINE
            model.transformer = quantize_dynamic(
                backbone, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
        finally:
            torch.backends.quantized.engine = previous
    model.eval()
    return count


def is_int8(model: nn.Module) -> bool:
    """Whether `model` holds torch.ao dynamically quantised (int8) layers."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


@cache
def cpu_bf16_support() -> str:
    """Why this CPU can run bf16 matmuls fast, or "" when it cannot: torch's CPU capability
    (AVX512_BF16 / AMX builds) or the bf16 instruction flags in /proc/cpuinfo."""
    capability = str(torch.backends.cpu.get_cpu_capability())
    if "BF16" in capability.upper() or "AMX" in capability.upper():
        return f"torch CPU capability {capability}"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return ""
    found = sorted({f for f in flags if f in ("avx512_bf16", "amx_bf16")})
    return f"CPU flags {', '.join(found)}" if found else ""


def check_cpu_bf16(allow_slow: bool = False) -> None:
    """Refuse bf16 on a CPU without bf16 instructions (it is emulated there, and slower than
    fp32), unless `allow_slow`, which only warns."""
    if cpu_bf16_support():
        return
    message = ("--precision bf16 on this CPU: no avx512_bf16/amx_bf16 instructions, so bf16 "
               "is emulated and slower than fp32; use fp32 or --quantize int8")
    if allow_slow:
        warnings.warn(message, stacklevel=2)
        return
    raise GPT2QAError(message)
