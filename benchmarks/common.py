"""Shared pieces of the speed benchmarks: model shapes, data, FLOP counts, timing, results.

The benchmarks are scripts, run from the repository root:

    python benchmarks/bench_train.py --tiny        # seconds
    python benchmarks/bench_train.py               # GPT-2-small shape, minutes

Each prints one final line of key=value pairs and writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_DATA = SHARED_DATA / "squad-v2" / "cs224n-dev-v2.0.json"
DEFAULT_TOKENIZER = SHARED_DATA / "gpt2-tokenizer"
RESULTS_DIR = REPO / "benchmarks" / "results"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
if not (REPO / "src" / "gpt2qa").is_dir():  # pragma: no cover - layout guard
    raise SystemExit(f"{REPO}: expected src/gpt2qa beside benchmarks/")
if str(REPO / "src") not in sys.path:
    # Run from a checkout without `pip install -e .`: use the tree's own package.
    sys.path.insert(0, str(REPO / "src"))


@dataclass(frozen=True)
class ModelShape:
    """A GPT-2 backbone shape. `vocab_size` includes gpt2qa's two added special tokens."""

    name: str
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int = 50257 + 2
    n_positions: int = 1024

    def __post_init__(self) -> None:
        if min(self.n_layer, self.n_embd, self.n_head, self.vocab_size) < 1:
            raise ValueError(f"model shape {self.name}: every size must be positive")
        if self.n_embd % self.n_head:
            raise ValueError(f"model shape {self.name}: n_embd {self.n_embd} is not a multiple "
                             f"of n_head {self.n_head}")

    def matmul_params(self) -> int:
        """N: weights that take part in a matmul per token (embeddings are look-ups).

        Per layer: Q/K/V (3 d^2), attention output (d^2), MLP (8 d^2) = 12 d^2, plus the span
        head Linear(d, 2). Biases and layer norms are left out (Kaplan et al.'s convention).
        """
        return self.n_layer * 12 * self.n_embd ** 2 + 2 * self.n_embd

    def gpt2_config(self, dropout: float = 0.1) -> Any:
        from transformers import GPT2Config

        return GPT2Config(vocab_size=self.vocab_size, n_positions=self.n_positions,
                          n_embd=self.n_embd, n_layer=self.n_layer, n_head=self.n_head,
                          resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)


GPT2_SMALL = ModelShape("gpt2-small", n_layer=12, n_embd=768, n_head=12)
TINY = ModelShape("tiny", n_layer=2, n_embd=128, n_head=2)


def shape_from_flag(tiny: bool) -> ModelShape:
    return TINY if tiny else GPT2_SMALL


def train_flops(lengths: Sequence[int], shape: ModelShape) -> float:
    """Model FLOPs of one training step over sequences of these real (unpadded) lengths.

    Per sequence of T tokens: 6 N T for the weight matmuls (forward 2NT, backward 4NT) plus
    12 L d T^2 for attention (forward QK^T and AV are 2 T^2 d each per layer; x3 with the
    backward). The attention term counts the full T x T square, as the kernels compute it.
    """
    n, layers, d = shape.matmul_params(), shape.n_layer, shape.n_embd
    return float(sum(6 * n * t + 12 * layers * d * t * t for t in lengths))


def inference_flops(lengths: Sequence[int], shape: ModelShape) -> float:
    """Forward-only FLOPs: 2 N T + 4 L d T^2 per sequence of T real tokens."""
    n, layers, d = shape.matmul_params(), shape.n_layer, shape.n_embd
    return float(sum(2 * n * t + 4 * layers * d * t * t for t in lengths))


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0: leave torch's default); return the count in use."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def matmul_gflops(size: int, seconds: float = 1.0) -> float:
    """fp32 GFLOP/s of square size x size matmuls, run for about `seconds` after a warm-up."""
    import torch

    gen = torch.Generator().manual_seed(size)
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    calls, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b, out=out)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2.0 * size ** 3 * calls / elapsed / 1e9


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def load_dev(data: str | os.PathLike[str], limit: int = 0) -> Any:
    """The SQuAD examples of `data` (all, or the first `limit`)."""
    from gpt2qa.data import load_squad

    path = Path(data)
    if not path.is_file():
        raise SystemExit(f"{path}: no such data file (pass --data)")
    examples = load_squad(path).examples
    return examples[:limit] if limit > 0 else examples


def load_gpt2_tokenizer(directory: str | os.PathLike[str] = DEFAULT_TOKENIZER) -> Any:
    """GPT-2's real tokenizer with gpt2qa's special tokens registered (vocab 50257 + 2)."""
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.tokenizer import load_tokenizer

    if not Path(directory).is_dir():
        raise SystemExit(f"{directory}: no such tokenizer directory (pass --tokenizer)")
    tokenizer = load_tokenizer(directory)
    prepare_tokenizer(tokenizer)
    return tokenizer


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux
        load = (float("nan"),) * 3
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "processor": _cpu_name(),
            "cpu_flags": cpu_flags(),
            "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "loadavg_1m_at_end": round(load[0], 2)}


SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """The instruction-set flags that decide CPU speed (int8 wants VNNI, bf16 wants
    AVX512_BF16 or AMX): a result is only comparable with others from the same kind of CPU."""
    try:
        words = set(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split())
    except OSError:  # pragma: no cover - not on Linux
        return []
    return [flag for flag in SPEED_FLAGS if flag in words]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not on Linux
        pass
    return platform.processor() or "unknown"


def write_result(name: str, payload: dict[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    """Write benchmarks/results/<name>.json atomically and return its path."""
    from gpt2qa.decode import write_json_atomic

    path = out_dir / f"{name}.json"
    write_json_atomic(path, {"benchmark": name, "unix_time": int(time.time()),
                             "machine": machine_info(), **payload})
    return path


def summary_line(fields: dict[str, Any]) -> str:
    """One line of key=value pairs; floats to 4 significant digits; None (a value that does
    not exist, such as the spread of one seed) as nan."""
    parts = []
    for key, value in fields.items():
        text = (f"{value:.4g}" if isinstance(value, float)
                else "nan" if value is None else str(value))
        parts.append(f"{key}={text.replace(' ', '_')}")
    return " ".join(parts)


def shape_dict(shape: ModelShape) -> dict[str, Any]:
    return {**asdict(shape), "matmul_params": shape.matmul_params()}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------- gpt2qa training

GPT2QA_STACKS = ("gpt2qa", "gpt2qa+compile")
"""gpt2qa as it ships, and the same with torch.compile (`gpt2qa train --compile`)."""


def train_config(data: str, batch_size: int, seed: int) -> Any:
    """gpt2qa's TrainConfig in the HF-compatible layout (<|null|> question <|sep|> context)."""
    from gpt2qa.config import TrainConfig

    return TrainConfig.of(model="(benchmark)", train_file=data, batch_size=batch_size, seed=seed,
                       null_position="first", layout="question-first", head="linear",
                       group_by_length=True, progress=False)


def stratified_batches(batches: Sequence[Sequence[int]], widths: Sequence[int],
                       count: int) -> list[list[int]]:
    """`count` batches at evenly spaced quantiles of batch width (cost grows with width).

    With widths [10, 50, 20, 40, 30] and count 2: sorted by width the batches are
    10, 20, 30, 40, 50; quantiles 0.25 and 0.75 pick positions 1 and 3 -> widths 20 and 40.
    """
    if count < 1 or not batches:
        return []
    order = sorted(range(len(batches)), key=lambda i: (widths[i], i))
    picks = [order[min(len(order) - 1, int((k + 0.5) * len(order) / count))] for k in range(count)]
    return [list(batches[i]) for i in picks]


def gpt2qa_step_fn() -> tuple[Callable[..., Any], str]:
    """gpt2qa's training step: the very function `gpt2qa.train.train` runs each step."""
    from gpt2qa.train import train_step

    return train_step, "gpt2qa.train.train_step"


class Gpt2qaTrainer:
    """gpt2qa's optimizer, scheduler, scaler and Accelerate set-up, as train() has them."""

    def __init__(self, model: Any, config: Any, features: Sequence[Any], pad_id: int,
                 total_steps: int, compiled: bool = False) -> None:
        import torch
        from accelerate import Accelerator

        from gpt2qa.batching import pad_multiple
        from gpt2qa.schedule import fused_adamw_for, linear_warmup_decay, optimizer_for

        self.step_fn, self.step_source = gpt2qa_step_fn()
        self.accelerator = Accelerator(mixed_precision="no")  # precision is gpt2qa's
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
        self.multiple = pad_multiple(self.accelerator.device)
        optimizer = optimizer_for(model, config, fused=fused_adamw_for(self.accelerator.device))
        if compiled:
            model.compile(dynamic=True)  # as train() does for --compile
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: linear_warmup_decay(s, 0, max(total_steps, 1)))
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.model.train()
        self.features, self.pad_id, self.config = features, pad_id, config

    def step(self, batch: Sequence[int]) -> float:
        loss = self.step_fn(self.model, self.optimizer, self.scheduler, self.scaler,
                            self.accelerator, self.features, [batch], self.pad_id, self.config,
                            self.multiple)
        value = float(loss)
        if value != value or value in (float("inf"), float("-inf")):
            raise SystemExit(f"gpt2qa: loss became {value}")
        return value
