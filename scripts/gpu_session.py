"""One prepared GPU session: look for real GPT-2 weights, fine-tune if found, else check CUDA paths.

Run on a CUDA machine from the repository root, with the SQuAD files copied beside it:

    PYTHONPATH=src python scripts/gpu_session.py --data-dir .devdata --out "$OUT"

1. Prints the GPU and software versions.
2. Looks for cached pretrained GPT-2 weights (HF cache, *.safetensors over 100 MB).
3. If a GPT-2 is found: fine-tunes it on the SQuAD 2.0 train articles and evaluates on the
   cs224n dev half (all-null baseline 52.12), for a few head / null-position settings.
4. Always: CUDA training and inference features/s at GPT-2-small shape (random init) through
   gpt2qa's training step, fp32 and bf16 (`--no-fp32`: bf16 only; `--compile`: bf16 under
   torch.compile too, real-length only), on the real-length dev windows and on the full
   384-token ones; `--demo-steps N`: the demo at bf16 and fp16 for finite losses.
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


def throughput(data: Path, tok_dir: Path, runs: list[tuple[str, bool]], steps: int, batch: int,
               tiny: bool = False) -> list[dict]:
    """Training and inference features/s at GPT-2-small shape, through the training step that
    `gpt2qa train` runs (`benchmarks/common.Gpt2qaTrainer`: fused AdamW, Accelerate, padding to
    a multiple of 64 on CUDA), for each (precision, compiled) in `runs`, on two feature sets:
    the real-length cs224n dev windows (length-grouped, dynamic padding) and only the full
    384-token windows (the fixed shape every batch has in a pad-to-384 stack)."""
    import torch
    from transformers import GPT2Config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from common import Gpt2qaTrainer
    from gpt2qa.batching import length_grouped_batches
    from gpt2qa.config import QAConfig, TrainConfig
    from gpt2qa.data import load_squad
    from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
    from gpt2qa.inference import run_model
    from gpt2qa.model import QAModel, backbone_from_config
    from gpt2qa.tokenizer import load_tokenizer

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    tok = load_tokenizer(tok_dir)
    special = prepare_tokenizer(tok)
    examples = load_squad(data / "cs224n-dev-v2.0.json").examples
    qa = QAConfig.of()
    all_feats = convert_examples_to_features(examples, tok, qa.features, special)
    full = [f for f in all_feats if len(f.input_ids) == qa.features.max_seq_length]
    shape = dict(n_layer=2, n_embd=64, n_head=2) if tiny else {}
    results = []
    for precision, compiled in runs:
        sets = [("real-length", all_feats)] + ([] if compiled else [("full-384", full)])
        for feat_name, feats in sets:
            torch.manual_seed(0)
            backbone = backbone_from_config(GPT2Config(vocab_size=len(tok), **shape))
            model = QAModel(backbone, qa).to(dev)
            cfg = TrainConfig.of(train_file="unused", batch_size=batch,
                              precision=precision if dev.type == "cuda" else "fp32")
            tr = Gpt2qaTrainer(model, cfg, feats, special.pad, total_steps=10 ** 6,
                               compiled=compiled)
            lengths = [len(f.input_ids) for f in feats]
            batches = length_grouped_batches(lengths, batch, torch.Generator().manual_seed(0))
            batches = (batches * (1 + (10 + steps) // len(batches)))[: 10 + steps]
            t_first = time.perf_counter()
            for k, idx in enumerate(batches[:10]):  # compile, every kernel shape, before timing
                tr.step_fn(tr.model, tr.optimizer, tr.scheduler, tr.scaler, tr.accelerator,
                           feats, [idx], special.pad, cfg, tr.multiple)
                if compiled and k < 2:
                    sync()
                    log(f"  warm-up step {k + 1} done at {time.perf_counter() - t_first:.0f} s")
            sync()
            warm_s = time.perf_counter() - t_first
            t0 = time.perf_counter()
            n = 0
            total = torch.zeros((), device=dev)
            timed = batches[10: 10 + steps]
            for idx in timed:  # no host sync inside the loop
                total += tr.step_fn(tr.model, tr.optimizer, tr.scheduler, tr.scaler,
                                    tr.accelerator, feats, [idx], special.pad, cfg, tr.multiple)
                n += len(idx)
            sync()
            train_rate = n / (time.perf_counter() - t0)
            log(f"  train {train_rate:.1f} features/s "
                f"({feat_name}, {precision}, compiled={compiled})")
            sub = feats[:2048]
            t_inf = time.perf_counter()
            run_model(tr.model, sub[:256], special.pad, 128, dev, cfg.precision)
            sync()
            if compiled:
                log(f"  inference warm-up (compile) {time.perf_counter() - t_inf:.0f} s")
            t0 = time.perf_counter()
            run_model(tr.model, sub, special.pad, 128, dev, cfg.precision)
            sync()
            infer_rate = len(sub) / (time.perf_counter() - t0)
            res = {"precision": cfg.precision, "compiled": compiled, "features": feat_name,
                   "train_features_per_s": round(train_rate, 1),
                   "infer_features_per_s": round(infer_rate, 1),
                   "mean_tokens": round(sum(lengths) / len(lengths), 1),
                   "warmup_s": round(warm_s, 1),
                   "mean_loss": float(total) / max(len(timed), 1),
                   "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                   if dev.type == "cuda" else None}
            res["n_features"] = len(feats)
            log(f"SPEED {json.dumps(res)}")
            results.append(res)
            del tr, model, backbone
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    return results


def mixed_precision_smoke(out: Path, precision: str, steps: int, tiny: bool) -> dict:
    """The demo through `gpt2qa train` at a given precision (Accelerate autocast, fp16 scaling)."""
    from gpt2qa.demo import run_demo
    from gpt2qa.demo_config import DemoConfig

    cfg = DemoConfig(out_dir=str(out / f"demo-{precision}"), progress=False,
                     n_train=100 if tiny else 1500,
                     training={"max_steps": steps, "precision": precision})
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
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (bf16)")
    ap.add_argument("--no-fp32", action="store_true", help="speed: bf16 runs only")
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
    runs = [("fp32", False)] if args.tiny else [("fp32", False), ("bf16", False)]
    if args.no_fp32 and not args.tiny:
        runs = [("bf16", False)]
    if args.compile:
        runs.append(("fp32" if args.tiny else "bf16", True))
    report["speed"] = throughput(data, tok_dir, runs, args.speed_steps, 32, args.tiny)
    if args.demo_steps > 0:
        report["demo"] = [mixed_precision_smoke(args.out, p, args.demo_steps, args.tiny)
                          for p in (("fp32",) if args.tiny else ("bf16", "fp16"))]
    (args.out / "gpu_session.json").write_text(json.dumps(report, indent=2))
    log("DONE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
