"""Peak memory and features/s: full fine-tuning vs LoRA vs LoRA + gradient checkpointing.

Shapes: GPT-2 117M and 345M, and Qwen2.5-0.5B (24 layers, 896 wide, 14 heads with 2 KV heads,
MLP 4864, vocabulary 151936), each randomly initialised from its config (no weights are
downloaded). Features are real: cs224n dev questions tokenised with GPT-2's tokenizer, the
longest ones first, so every batch is about `--max-seq-length` wide.

Each (shape, mode) cell runs in its own process, so its peak is its own: on CPU the peak
resident set size (ru_maxrss) and the same minus the process's size before the model was
built; on CUDA `torch.cuda.max_memory_allocated`. A cell builds the model the way
`gpt2qa train` does (`QAModel` + `gpt2qa.lora.prepare_for_training` + `optimizer_for`), runs
`--warmup` untimed and `--steps` timed optimizer steps, and reports features/s over the timed
ones.

`--estimate` prints instead a computed (not measured) estimate at full scale (bf16 autocast,
fp32 weights, AdamW, batch 16 x 384): the numbers behind the memory comments in configs/.

    python benchmarks/bench_memory.py                       # CPU, small scale, a few minutes
    python benchmarks/bench_memory.py --device cuda --precision bf16 --batch-size 16 \
        --max-seq-length 384                                # full scale on a GPU
    python benchmarks/bench_memory.py --estimate
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import common

MODES = ("full", "lora", "lora+gc")


@dataclass(frozen=True)
class Shape:
    name: str
    model_type: str
    layers: int
    width: int
    heads: int
    kv_heads: int
    mlp: int
    vocab: int

    def config(self) -> Any:
        import transformers

        if self.model_type == "gpt2":
            return transformers.GPT2Config(vocab_size=self.vocab, n_positions=1024,
                                           n_embd=self.width, n_layer=self.layers,
                                           n_head=self.heads)
        return transformers.Qwen2Config(
            vocab_size=self.vocab, hidden_size=self.width, intermediate_size=self.mlp,
            num_hidden_layers=self.layers, num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads, max_position_embeddings=32768,
            tie_word_embeddings=True)

    def params(self) -> int:
        """Backbone parameters (embeddings included, biases and norms left out)."""
        d, kv = self.width, self.width * self.kv_heads // self.heads
        attn = 2 * d * d + 2 * d * kv
        mlp = (2 if self.model_type == "gpt2" else 3) * d * self.mlp
        pos = 1024 * d if self.model_type == "gpt2" else 0
        return self.layers * (attn + mlp) + self.vocab * d + pos


SHAPES = {s.name: s for s in (
    Shape("gpt2-117m", "gpt2", 12, 768, 12, 12, 3072, 50257 + 2),
    Shape("gpt2-345m", "gpt2", 24, 1024, 16, 16, 4096, 50257 + 2),
    Shape("qwen2.5-0.5b", "qwen2", 24, 896, 14, 2, 4864, 151936),
    Shape("llama-3.2-1b", "llama", 16, 2048, 32, 8, 8192, 128256),
)}
MEASURED = ("gpt2-117m", "gpt2-345m", "qwen2.5-0.5b")


def rss_mib() -> float:
    for line in open("/proc/self/status", encoding="utf-8"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_cell(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModel

    from gpt2qa.batching import collate
    from gpt2qa.config import QAConfig, TrainConfig
    from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
    from gpt2qa.lora import parameter_counts, prepare_for_training
    from gpt2qa.model import QAModel
    from gpt2qa.runtime import autocast_context
    from gpt2qa.schedule import optimizer_for

    shape, mode = SHAPES[args.cell[0]], args.cell[1]
    device = torch.device(args.device)
    torch.manual_seed(0)
    tokenizer = common.load_gpt2_tokenizer(args.tokenizer)
    special = prepare_tokenizer(tokenizer)
    qa = QAConfig.of(head="bilstm", max_seq_length=args.max_seq_length, doc_stride=128)
    examples = common.load_dev(args.data, limit=200)
    feats = sorted(convert_examples_to_features(examples, tokenizer, qa.features, special),
                   key=lambda f: -len(f.input_ids))
    n_batches = args.warmup + args.steps
    batches = [feats[i * args.batch_size:(i + 1) * args.batch_size] for i in range(n_batches)]
    baseline = rss_mib()

    config = TrainConfig.of(model="(benchmark)", train_file="(benchmark)",
                         lora_r=args.lora_r if mode != "full" else 0,
                         gradient_checkpointing=mode == "lora+gc", precision=args.precision)
    model = QAModel(AutoModel.from_config(shape.config(), dtype=torch.float32), qa)
    model = prepare_for_training(model, config, special).to(device).train()
    optimizer = optimizer_for(model, config, fused=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for k, feats_k in enumerate(batches):
        batch = {key: v.to(device) for key, v in collate(feats_k, special.pad).items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast_context(device, args.precision):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= args.warmup:
            times.append(time.perf_counter() - start)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"shape": shape.name, "mode": mode, **parameter_counts(model),
              "features_per_s": args.steps * args.batch_size / sum(times),
              "width": max(len(f.input_ids) for b in batches for f in b),
              "peak_rss_mib": round(peak_rss), "rss_before_model_mib": round(baseline),
              "peak_over_before_model_mib": round(peak_rss - baseline)}
    if device.type == "cuda":
        result["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


def estimate(shape: Shape, mode: str, batch: int = 16, seq: int = 384,
             lora_share: float = 0.01) -> float:
    """GiB, computed: fp32 weights (4 B/param); for what trains, fp32 gradients (4 B) and
    AdamW's two moments (8 B); bf16 activations of about 34 s b h bytes per layer (Korthikanti
    et al. 2022, without the attention-score term that SDPA's fused kernels do not store).
    Gradient checkpointing keeps each layer's input (2 s b h) plus one layer's activations."""
    p = shape.params()
    trainable = p if mode == "full" else lora_share * p
    states = 4 * p + 12 * trainable
    layer = 34 * seq * batch * shape.width
    acts = (shape.layers * 2 * seq * batch * shape.width + layer if mode == "lora+gc"
            else shape.layers * layer)
    return (states + acts) / 2**30


def print_estimates() -> None:
    print("computed estimate, GiB (bf16 autocast, fp32 weights, AdamW, batch 16 x 384):")
    print(f"{'shape':14} {'params':>8} " + " ".join(f"{m:>8}" for m in MODES))
    for shape in SHAPES.values():
        cells = " ".join(f"{estimate(shape, m):8.1f}" for m in MODES)
        print(f"{shape.name:14} {shape.params() / 1e6:7.0f}M {cells}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(MEASURED))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--tokenizer", default=str(common.DEFAULT_TOKENIZER))
    parser.add_argument("--estimate", action="store_true", help="print the computed estimate")
    parser.add_argument("--cell", nargs=2, metavar=("SHAPE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.estimate:
        print_estimates()
        return 0
    if args.cell:
        print(json.dumps(run_cell(args)))
        return 0
    rows: list[dict[str, Any]] = []
    settings = {k: getattr(args, k) for k in ("batch_size", "max_seq_length", "steps", "warmup",
                                              "lora_r", "device", "precision")}
    cells = [(n, m) for n in args.shapes.split(",") for m in args.modes.split(",")]
    passthrough = [f"--{key.replace('_', '-')}={getattr(args, key)}" for key in (
        "batch_size", "max_seq_length", "steps", "warmup", "lora_r", "device", "precision",
        "data", "tokenizer")]
    for name, mode in cells:
        cmd = [sys.executable, __file__, *passthrough, "--cell", name, mode]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            rows.append({"shape": name, "mode": mode, "error": tail})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
        # Written after every cell, so a run stopped early still leaves what it measured.
        common.write_result(f"bench_memory_{args.device.split(':')[0]}",
                            {"settings": settings, "rows": rows,
                             "complete": len(rows) == len(cells)})
    print(f"{'shape':14} {'mode':8} {'trainable':>11} {'total':>12} {'peak MiB':>9} "
          f"{'over base':>9} {'feat/s':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['shape']:14} {r['mode']:8} error: {r['error']}")
            continue
        peak = r.get("cuda_max_allocated_mib", r["peak_rss_mib"])
        print(f"{r['shape']:14} {r['mode']:8} {r['trainable_parameters']:>11,} "
              f"{r['total_parameters']:>12,} {peak:>9} {r['peak_over_before_model_mib']:>9} "
              f"{r['features_per_s']:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
