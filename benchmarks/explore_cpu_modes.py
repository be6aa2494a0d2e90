"""CPU inference candidates side by side (the exploration behind `--quantize int8`'s settings).

Every variant answers the same dev questions with the same GPT-2-small-shape random model;
the stacks alternate every `--chunk` questions (rotating which goes first), so on a shared
machine all of them see the same load. The HF pipeline runs in its transformers 4.57
interpreter as in bench_predict.py. Variant names are a base plus options joined by "-":

  fp32 | int8 (torch.ao dynamic int8 after Conv1D->Linear) | ortfp32 | ortint8 (ONNX Runtime;
  the model is exported with torch.onnx (dynamo) and quantised by onnxruntime's
  quantize_dynamic)
  options: b<N> batch size (default 3), pc per-channel weight scales, onednn/fbgemm quantized
  engine (default x86), math (SDPA's math kernel instead of flash), nocache (no KV cache).

    python benchmarks/explore_cpu_modes.py --questions 16 --chunk 4 --threads 1 \\
        --variants fp32,int8,int8-pc,int8-onednn,int8-b1,int8-b8,int8-nocache-math
    .venv-onnx/bin/python benchmarks/explore_cpu_modes.py --questions 24 --chunk 4 \\
        --threads 1 --variants fp32,int8-onednn-b1,ortfp32,ortint8,ortint8-pc,ortint8-b1

ONNX Runtime is not a gpt2qa dependency: run the ort variants from a venv that has onnx,
onnxscript and onnxruntime. Writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bench_predict
import common


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--questions", type=int, default=24)
    p.add_argument("--chunk", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default="fp32,int8")
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "gpt2qa-cpu-modes"),
                   help="keeps the random model and the ONNX files between runs")
    p.add_argument("--data", default=str(common.DEFAULT_DATA))
    p.add_argument("--tokenizer", default=str(common.DEFAULT_TOKENIZER))
    p.add_argument("--hf-python", default=str(common.REPO / ".venv-hf457" / "bin" / "python"))
    p.add_argument("--name", default="cpu_candidates")
    return p.parse_args(argv)


def export_onnx(model_dir: Path, out: Path) -> Path:
    """The QA model (backbone + head) as ONNX with dynamic batch and sequence axes."""
    import torch
    from torch import nn

    from gpt2qa.checkpoint import load_model

    model, _, _ = load_model(model_dir, torch.device("cpu"))

    class Outputs(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, context_mask: Any,
                    null_index: Any) -> tuple[Any, Any, Any]:
            out = self.inner(input_ids, attention_mask, context_mask, null_index)
            return out.start_logits, out.end_logits, out.null_score

    ids = torch.randint(0, 300, (3, 40))
    mask = torch.ones_like(ids)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=1024)
    names = ["input_ids", "attention_mask", "context_mask", "null_index"]
    torch.onnx.export(Outputs(model.eval()), (ids, mask, mask.bool(), torch.zeros(3).long()),
                      str(out), input_names=names,
                      output_names=["start_logits", "end_logits", "null_score"], dynamo=True,
                      dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                      "attention_mask": {0: batch, 1: seq},
                                      "context_mask": {0: batch, 1: seq},
                                      "null_index": {0: batch}}, external_data=False)
    return out


def build(name: str, model_dir: Path, work: Path, threads: int) -> Callable[[list[Any]], Any]:
    import torch
    from torch import nn
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.quantize import conv1d_to_linear

    base, *rest = name.split("-")
    opts = set(rest)
    bs = next((int(o[1:]) for o in opts if o[:1] == "b" and o[1:].isdigit()), 3)
    engine = "onednn" if "onednn" in opts else ("fbgemm" if "fbgemm" in opts else "x86")
    pipe = QAPipeline.from_pretrained(model_dir, device="cpu")
    if base.startswith("ort"):
        return ort_runner(pipe, onnx_file(base, "pc" in opts, model_dir, work), threads, bs)
    if base == "int8":
        torch.backends.quantized.engine = engine
        conv1d_to_linear(pipe.model.transformer)
        qconfig = per_channel_dynamic_qconfig if "pc" in opts else default_dynamic_qconfig
        pipe.model.transformer = quantize_dynamic(pipe.model.transformer, {nn.Linear: qconfig},
                                                  dtype=torch.qint8)
        torch.backends.quantized.engine = "x86"
    if "nocache" in opts:
        pipe.model.transformer.config.use_cache = False

    def run(examples: list[Any]) -> Any:
        torch.backends.quantized.engine = engine
        with sdpa_kernel(SDPBackend.MATH) if "math" in opts else contextlib.nullcontext():
            return pipe.predict(examples, batch_size=bs)
    return run


def onnx_file(base: str, per_channel: bool, model_dir: Path, work: Path) -> Path:
    fp32 = work / "model_fp32.onnx"
    if not fp32.exists():
        export_onnx(model_dir, fp32)
    if base == "ortfp32":
        return fp32
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = work / f"model_int8{'_pc' if per_channel else ''}.onnx"
    if not out.exists():
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8,
                         per_channel=per_channel)
    return out


def ort_runner(pipe: Any, path: Path, threads: int, bs: int) -> Callable[[list[Any]], Any]:
    """gpt2qa's own features, batching and decoding around an ONNX Runtime session."""
    import onnxruntime as ort

    from gpt2qa.batching import collate, length_grouped_batches
    from gpt2qa.decode import WindowOutput, decode
    from gpt2qa.features import convert_examples_to_features

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(examples: list[Any]) -> Any:
        feats = convert_examples_to_features(examples, pipe.tokenizer,
                                             pipe.model.config.features, pipe.special_ids)
        outs: dict[int, Any] = {}
        for idx in length_grouped_batches([len(f.input_ids) for f in feats], bs):
            batch = collate([feats[i] for i in idx], pipe.special_ids.pad, with_labels=False)
            start, end, null = session.run(None, {k: v.numpy() for k, v in batch.items()})
            for row, i in enumerate(idx):
                n = len(feats[i].input_ids)
                outs[i] = WindowOutput(start[row, :n], end[row, :n], float(null[row]))
        return decode({x.qas_id: x.context for x in examples}, feats,
                      [outs[i] for i in range(len(feats))], pipe.model.config.decoding(None))
    return run


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    common.set_threads(args.threads)
    warnings.simplefilter("ignore")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "model"
    if not (model_dir / "config.json").exists():
        bench_predict.save_random_model(common.GPT2_SMALL, args.tokenizer, model_dir, 42)
    examples = common.load_dev(args.data)
    chosen = [examples[i] for i in random.Random(42).sample(range(len(examples)),
                                                             min(args.questions, len(examples)))]
    names = args.variants.split(",")
    variants = {v: build(v, model_dir, work, args.threads) for v in names}
    for fn in variants.values():
        fn(chosen[:2])  # warm-up
    qfile = work / "questions.json"
    qfile.write_text(json.dumps([{"id": e.qas_id, "question": e.question.strip(),
                                  "context": e.context} for e in chosen]), encoding="utf-8")
    hf = bench_predict.HFWorker(args.hf_python, model_dir, qfile, args.threads, 1, args.tokenizer)
    secs = dict.fromkeys([*names, "hf"], 0.0)
    answers: dict[str, dict[str, str]] = {v: {} for v in secs}
    loads, per_chunk = [os.getloadavg()[0]], []
    try:
        for c, start in enumerate(range(0, len(chosen), args.chunk)):
            part = chosen[start: start + args.chunk]
            row = {}
            for v in names[c % len(names):] + names[: c % len(names)]:
                seconds, preds = common.timed(lambda v=v, part=part: variants[v](part))
                secs[v] += seconds
                row[v] = seconds
                answers[v].update({p.qas_id: p.text for p in preds})
            out = hf.run(start, start + len(part))
            secs["hf"] += out["seconds"]
            row["hf"] = out["seconds"]
            answers["hf"].update(out["answers"])
            per_chunk.append(row)
            loads.append(os.getloadavg()[0])
            print(f"chunk {c}: " + ", ".join(f"{k} {v:.1f}s" for k, v in row.items()),
                  file=sys.stderr, flush=True)
    finally:
        hf.close()
    modes = {}
    for v in secs:
        same = sum(answers[v][k] == answers[names[0]][k] for k in answers[names[0]])
        modes[v] = {"seconds": secs[v], "q_s": len(chosen) / secs[v],
                    "vs_hf": secs["hf"] / secs[v], f"vs_{names[0]}": secs[names[0]] / secs[v],
                    f"same_answer_as_{names[0]}_pct": 100.0 * same / len(chosen)}
        print(f"{v:24s} {modes[v]['q_s']:.3f} q/s  {modes[v]['vs_hf']:.2f}x hf  "
              f"same as {names[0]} {modes[v][f'same_answer_as_{names[0]}_pct']:.0f}%")
    payload = {"questions": len(chosen), "chunk": args.chunk, "threads": args.threads,
               "loadavg_1m": [round(x, 1) for x in loads], "modes": modes,
               "per_chunk": per_chunk, "args": vars(args)}
    print(f"wrote {common.write_result(args.name, payload)}", file=sys.stderr)
    return payload


if __name__ == "__main__":
    main()
