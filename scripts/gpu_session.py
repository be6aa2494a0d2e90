"""One prepared GPU session: look for real GPT-2 weights, fine-tune if found, else check CUDA paths.

Run on a CUDA machine from the repository root, with the SQuAD files copied beside it:

    PYTHONPATH=src python scripts/gpu_session.py --data-dir .devdata --out "$OUT"

1. Prints the GPU and software versions.
2. Looks for cached pretrained GPT-2 weights (HF cache, *.safetensors over 100 MB).
3. If a GPT-2 is found: fine-tunes it on the SQuAD 2.0 train articles and evaluates on the
   cs224n dev half (all-null baseline 52.12), for a few head / null-position settings.
4. Always: CUDA training and inference throughput at GPT-2-small shape (random init) on the
   real-length features, fp32 vs bf16, and a short bf16/fp16 training run for finite loss.
Everything measured is printed and written to OUT/gpu_session.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def log(msg: str) -> None:
    print(msg, flush=True)


def find_gpt2(search_seconds: int) -> list[Path]:
    """Directories holding a GPT-2 config.json next to weights."""
    roots = [Path.home() / ".cache" / "huggingface", Path("/root/.cache"), Path("/models"),
             Path("/data"), Path("/opt"), Path("/workspace"), Path("/mnt"), Path("/srv")]
    if os.environ.get("HF_HOME"):
        roots.insert(0, Path(os.environ["HF_HOME"]))
    found: list[Path] = []
    try:
        out = subprocess.run(
            ["find", "/", "-xdev", "(", "-name", "*.safetensors", "-o", "-name", "pytorch_model.bin",
             ")", "-size", "+100M"], capture_output=True, text=True, timeout=search_seconds).stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    weight_files = [Path(p) for p in out.splitlines() if p.strip()]
    for root in roots:
        if root.exists():
            weight_files += list(root.rglob("*.safetensors"))[:200]
    log(f"weight files over 100 MB: {len(weight_files)}")
    for w in weight_files[:50]:
        log(f"  {w}")
    for w in weight_files:
        cfg = w.parent / "config.json"
        if cfg.exists():
            try:
                c = json.loads(cfg.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if c.get("model_type") == "gpt2" and w.parent not in found:
                found.append(w.parent)
    return found


def fine_tune(model_dir: Path, data: Path, out: Path, name: str, extra: list[str]) -> dict:
    from gpt2qa.cli import main

    run_dir = out / name
    argv = ["train", "--model", str(model_dir),
            "--train-file", str(data / "train-v2.0-first10articles.json"),
            "--eval-file", str(data / "cs224n-dev-v2.0.json"), "--output-dir", str(run_dir),
            "--precision", "bf16", "--batch-size", "32", "--epochs", "2", "--lr", "5e-5",
            "--eval-batch-size", "128", "--no-progress", *extra]
    t0 = time.perf_counter()
    code = main(argv)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if code == 0 else {}
    keys = ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "tuned_f1", "null_baseline_f1")
    result = {"name": name, "code": code, "seconds": round(time.perf_counter() - t0, 1),
              **{k: metrics.get(k) for k in keys}}
    log(f"REAL {json.dumps(result)}")
    return result


def throughput(data: Path, tok_dir: Path, precision: str, steps: int, batch: int,
               tiny: bool = False) -> dict:
    """Training and inference features/s at GPT-2-small shape on real-length features."""
    import torch
    from transformers import GPT2Config

    from gpt2qa.batching import collate, length_grouped_batches
    from gpt2qa.config import QAConfig
    from gpt2qa.data import load_squad
    from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
    from gpt2qa.model import QAModel, backbone_from_config
    from gpt2qa.pipeline import autocast_context, run_model
    from gpt2qa.tokenizer import load_tokenizer

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    tok = load_tokenizer(tok_dir)
    special = prepare_tokenizer(tok)
    examples = load_squad(data / "cs224n-dev-v2.0.json").examples
    qa = QAConfig()
    feats = convert_examples_to_features(examples, tok, qa.features(), special)
    torch.manual_seed(0)
    shape = dict(n_layer=2, n_embd=64, n_head=2) if tiny else {}
    backbone = backbone_from_config(GPT2Config(vocab_size=len(tok), **shape))
    model = QAModel(backbone, qa).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=dev.type == "cuda")
    lengths = [len(f.input_ids) for f in feats]
    batches = length_grouped_batches(lengths, batch, torch.Generator().manual_seed(0))
    model.train()

    def step(idx: list[int]) -> torch.Tensor:
        b = {k: v.to(dev, non_blocking=True) for k, v in collate([feats[i] for i in idx], special.pad).items()}
        with autocast_context(dev, precision):
            loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    for idx in batches[:10]:  # every kernel shape seen once before timing
        step(idx)
    sync()
    t0 = time.perf_counter()
    n = 0
    loss = None
    for idx in batches[10: 10 + steps]:
        loss = step(idx)
        n += len(idx)
    sync()
    train_rate = n / (time.perf_counter() - t0)
    sub = feats[:2048]
    run_model(model, sub[:256], special.pad, 128, dev, precision)
    sync()
    t0 = time.perf_counter()
    run_model(model, sub, special.pad, 128, dev, precision)
    sync()
    infer_rate = len(sub) / (time.perf_counter() - t0)
    tokens = sum(lengths) / len(lengths)
    res = {"precision": precision, "train_features_per_s": round(train_rate, 1),
           "infer_features_per_s": round(infer_rate, 1), "mean_tokens": round(tokens, 1),
           "last_loss": float(loss) if loss is not None else None,
           "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
           if dev.type == "cuda" else None}
    log(f"SPEED {json.dumps(res)}")
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return res


def mixed_precision_smoke(out: Path, precision: str, steps: int, tiny: bool) -> dict:
    """The demo through `gpt2qa train` at a given precision (Accelerate autocast, fp16 scaling)."""
    from gpt2qa.demo import DemoConfig, run_demo

    cfg = DemoConfig(out_dir=str(out / f"demo-{precision}"), steps=steps, progress=False,
                     precision=precision, n_train=100 if tiny else 1500)
    t0 = time.perf_counter()
    try:
        metrics = run_demo(cfg)
    except Exception as exc:  # report and go on: the other checks still matter
        res = {"precision": precision, "error": f"{type(exc).__name__}: {exc}"}
    else:
        res = {"precision": precision, "seconds": round(time.perf_counter() - t0, 1),
               **{k: metrics.get(k) for k in ("exact", "f1", "tuned_f1", "null_baseline_f1")}}
    log(f"DEMO {json.dumps(res)}")
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path(".devdata"))
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")))
    ap.add_argument("--search-seconds", type=int, default=45)
    ap.add_argument("--speed-steps", type=int, default=30)
    ap.add_argument("--demo-steps", type=int, default=500)
    ap.add_argument("--tiny", action="store_true", help="CPU dry run of this script")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data, tok_dir = args.data_dir / "squad-v2", args.data_dir / "gpt2-tokenizer"
    report: dict = {}
    if not args.tiny:
        subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"])
    import torch
    import transformers

    report["versions"] = {"python": sys.version.split()[0], "torch": torch.__version__,
                          "transformers": transformers.__version__,
                          "cuda": torch.cuda.is_available() and torch.cuda.get_device_name(0)}
    log(f"VERSIONS {json.dumps(report['versions'])}")
    t0 = time.perf_counter()
    found = find_gpt2(args.search_seconds) if args.search_seconds > 0 else []
    report["gpt2_dirs"] = [str(p) for p in found]
    log(f"GPT-2 checkpoints found: {report['gpt2_dirs']} ({time.perf_counter() - t0:.0f}s)")
    report["real"] = []
    if found:
        model_dir = found[0]
        for name, extra in [("linear-last-qf", []),
                            ("linear-first-cf-2019", ["--null-position", "first", "--layout", "context-first"]),
                            ("bilstm-last-qf", ["--head", "bilstm"])]:
            report["real"].append(fine_tune(model_dir, data, args.out, name, extra))
    report["speed"] = []
    precisions = ("fp32",) if args.tiny else ("fp32", "bf16")
    for precision in precisions:
        report["speed"].append(throughput(data, tok_dir, precision, args.speed_steps, 32, args.tiny))
    report["demo"] = [mixed_precision_smoke(args.out, p, args.demo_steps, args.tiny)
                      for p in (("fp32",) if args.tiny else ("bf16", "fp16"))]
    (args.out / "gpu_session.json").write_text(json.dumps(report, indent=2))
    log("DONE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
