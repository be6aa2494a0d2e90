"""Model-FLOP utilisation: gpt2qa's training and inference against this machine's matmul peak.

1. Peak: fp32 GFLOP/s of square torch matmuls (`--sizes`), at the current thread setting;
   the best size is the peak. The machine is shared, so the peak is measured again right
   before every timed segment and each segment's MFU uses that adjacent peak (the summary
   also gives MFU against the best peak seen in the whole run).
2. gpt2qa training: optimizer steps (the train loop's step: collate, forward, backward, clip,
   AdamW, scheduler) on batches at evenly spaced width quantiles of one real epoch.
3. gpt2qa inference: `run_model` (collate, forward, logits to numpy) on `--infer-batch`
   features per batch (default: gpt2qa's own choice for the device, 3 at GPT-2-small shape on
   CPU), batches at width quantiles of the length-sorted inference order.
4. hf (unless `--stacks` leaves it out): GPT2ForQuestionAnswering on the same features padded
   to 384, as run_qa pads them; training steps with fused AdamW (the Trainer's default) and
   forward passes. Its MFU is given twice: FLOPs of real tokens, and of all 384 padded ones.

FLOPs are counted on real (unpadded) tokens, N = 12 L d^2 + 2d matmul weights:
    training   6 N T + 12 L d T^2   per sequence of T tokens
    inference  2 N T +  4 L d T^2
(the attention terms count the whole T x T square of QK^T and AV; see common.train_flops).

    python benchmarks/bench_mfu.py --tiny
    python benchmarks/bench_mfu.py --train-steps 3 --infer-batches 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import common


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(common.DEFAULT_DATA))
    p.add_argument("--tokenizer", default=str(common.DEFAULT_TOKENIZER))
    p.add_argument("--tiny", action="store_true", help="2 layers, 128 wide (a quick run)")
    p.add_argument("--sizes", default="512,1024,2048", help="square matmul sizes for the peak")
    p.add_argument("--peak-seconds", type=float, default=1.0, help="per peak measurement")
    p.add_argument("--batch-size", type=int, default=8, help="training batch size")
    p.add_argument("--train-steps", type=int, default=3, help="timed training steps per stack")
    p.add_argument("--infer-batch", type=int, default=0,
                   help="features per inference batch (0: gpt2qa's default for the device)")
    p.add_argument("--infer-batches", type=int, default=3, help="timed inference batches")
    p.add_argument("--stacks", default="gpt2qa,hf",
                   help="comma list from gpt2qa, gpt2qa+compile (torch.compile), hf")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--results-dir", default=str(common.RESULTS_DIR))
    p.add_argument("--name", default="")
    args = p.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.stack_list = [s.strip() for s in args.stacks.split(",") if s.strip()]
    if not args.size_list or min(args.size_list) < 1:
        p.error("--sizes must list positive sizes")
    if set(args.stack_list) - {*common.GPT2QA_STACKS, "hf"}:
        p.error(f"--stacks takes {', '.join(common.GPT2QA_STACKS)}, hf")
    if min(args.batch_size, args.train_steps, args.infer_batches) < 1 or args.infer_batch < 0:
        p.error("--batch-size and the counts must be at least 1, --infer-batch >= 0")
    return args


class Segments:
    """Timed segments, each preceded by a fresh peak measurement."""

    def __init__(self, peak_size: int, peak_seconds: float) -> None:
        self.peak_size, self.peak_seconds = peak_size, peak_seconds
        self.rows: list[dict[str, Any]] = []

    def time(self, stack: str, mode: str, flops_real: float, flops_padded: float,
             fn: Callable[[], Any]) -> None:
        peak = common.matmul_gflops(self.peak_size, self.peak_seconds)
        seconds, _ = common.timed(fn)
        achieved = flops_real / seconds / 1e9
        row = {"stack": stack, "mode": mode, "seconds": seconds, "adjacent_peak_gflops": peak,
               "gflops_real": achieved, "mfu_real": achieved / peak,
               "gflops_padded": flops_padded / seconds / 1e9,
               "mfu_padded": flops_padded / seconds / 1e9 / peak}
        self.rows.append(row)
        print(f"{stack} {mode}: {seconds:.2f}s, {achieved:.1f} GFLOP/s on real tokens, "
              f"peak beside it {peak:.1f} -> MFU {100 * row['mfu_real']:.1f}%",
              file=sys.stderr, flush=True)

    def summary(self, stack: str, mode: str, key: str = "mfu_real") -> float:
        return common.median([r[key] for r in self.rows if r["stack"] == stack
                              and r["mode"] == mode])


def hf_batch(features: Sequence[Any], pad_id: int, width: int = 384) -> dict[str, Any]:
    """The same features as HF's run_qa would feed them: padded to `width` with a mask."""
    import torch

    n = len(features)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, f in enumerate(features):
        ids[i, : len(f.input_ids)] = torch.tensor(f.input_ids)
        mask[i, : len(f.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask,
            "start_positions": torch.tensor([f.start_position for f in features]),
            "end_positions": torch.tensor([f.end_position for f in features])}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    import torch
    from transformers import GPT2ForQuestionAnswering

    from gpt2qa.batching import inference_batch_size, length_grouped_batches
    from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
    from gpt2qa.inference import run_model
    from gpt2qa.model import QAModel, backbone_from_config
    from gpt2qa.schedule import epoch_batches

    shape = common.shape_from_flag(args.tiny)
    sweep = {size: [common.matmul_gflops(size, args.peak_seconds) for _ in range(2)]
             for size in args.size_list}
    best_size = max(sweep, key=lambda s: max(sweep[s]))
    print(f"matmul sweep (GFLOP/s, {threads} threads): "
          f"{ {s: [round(x, 1) for x in v] for s, v in sweep.items()} }", file=sys.stderr)

    config = common.train_config(args.data, args.batch_size, args.seed)
    qa = config.qa
    examples = common.load_dev(args.data)
    tokenizer = common.load_gpt2_tokenizer(args.tokenizer)
    special = prepare_tokenizer(tokenizer)
    features = convert_examples_to_features(examples, tokenizer, qa.features, special)
    lengths = [len(f.input_ids) for f in features]
    infer_batch = args.infer_batch or inference_batch_size(torch.device("cpu"), shape.n_embd,
                                                           qa.features.max_seq_length)

    train_batches = epoch_batches(lengths, config, epoch=0)
    train_widths = [max(lengths[i] for i in b) for b in train_batches]
    timed_train = common.stratified_batches(train_batches, train_widths, args.train_steps)
    warm_train = max(train_batches, key=lambda b: max(lengths[i] for i in b))
    infer_batches = length_grouped_batches(lengths, infer_batch)
    infer_widths = [max(lengths[i] for i in b) for b in infer_batches]
    timed_infer = common.stratified_batches(infer_batches, infer_widths, args.infer_batches)

    def real(batch: Sequence[int], flops: Callable[..., float]) -> float:
        return flops([lengths[i] for i in batch], shape)

    def padded(batch: Sequence[int], flops: Callable[..., float], width: int | None = None
               ) -> float:
        w = width or max(lengths[i] for i in batch)
        return flops([w] * len(batch), shape)

    seg = Segments(best_size, args.peak_seconds)
    torch.manual_seed(args.seed)
    for stack in args.stack_list:
        if stack == "hf":
            model = GPT2ForQuestionAnswering(shape.gpt2_config())
            optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01,
                                          fused=True)

            def hf_step(batch: Sequence[int], model: Any = model, optimizer: Any = optimizer
                        ) -> None:
                model.train()
                loss = model(**hf_batch([features[i] for i in batch], special.pad)).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            def hf_infer(batch: Sequence[int], model: Any = model) -> None:
                model.eval()
                inputs = hf_batch([features[i] for i in batch], special.pad)
                with torch.inference_mode():
                    model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])

            hf_step(warm_train)
            for b in timed_train:
                seg.time(stack, "train", real(b, common.train_flops),
                         padded(b, common.train_flops, 384), lambda b=b: hf_step(b))
            hf_infer(timed_infer[0])
            for b in timed_infer:
                seg.time(stack, "inference", real(b, common.inference_flops),
                         padded(b, common.inference_flops, 384), lambda b=b: hf_infer(b))
            continue
        model = QAModel(backbone_from_config(shape.gpt2_config()), qa)
        trainer = common.Gpt2qaTrainer(model, config, features, special.pad,
                                       1 + len(timed_train), compiled=stack.endswith("+compile"))
        trainer.step(warm_train)
        for b in timed_train:
            seg.time(stack, "train", real(b, common.train_flops), padded(b, common.train_flops),
                     lambda b=b, t=trainer: t.step(b))
        run_model(model, [features[i] for i in timed_infer[0]], special.pad, infer_batch)
        for b in timed_infer:
            seg.time(stack, "inference", real(b, common.inference_flops),
                     padded(b, common.inference_flops),
                     lambda b=b, m=model: run_model(m, [features[i] for i in b], special.pad,
                                                    infer_batch))
        del trainer, model

    peaks = [r["adjacent_peak_gflops"] for r in seg.rows] + [x for v in sweep.values() for x in v]
    best_peak = max(peaks)
    summary: dict[str, Any] = {"shape": shape.name, "threads": threads, "infer_batch": infer_batch,
                               "peak_gflops_best": best_peak,
                               "peak_gflops_median_adjacent": common.median(
                                   [r["adjacent_peak_gflops"] for r in seg.rows])}
    targets = {"train": 0.55, "inference": 0.70}
    for stack in args.stack_list:
        key = stack.replace("+", "_")
        for mode in ("train", "inference"):
            mfu = seg.summary(stack, mode)
            summary[f"{key}_{mode}_gflops"] = seg.summary(stack, mode, "gflops_real")
            summary[f"{key}_{mode}_mfu"] = mfu
            # The shared machine sometimes starves a segment for minutes; the best segment
            # shows what the code reaches when it gets the cores.
            summary[f"{key}_{mode}_mfu_best"] = max(
                r["mfu_real"] for r in seg.rows if r["stack"] == stack and r["mode"] == mode)
            summary[f"{key}_{mode}_mfu_vs_best_peak"] = (
                seg.summary(stack, mode, "gflops_real") / best_peak)
            if stack == "hf":
                summary[f"hf_{mode}_mfu_padded"] = seg.summary(stack, mode, "mfu_padded")
            elif stack == "gpt2qa":
                summary[f"target_{mode}_met"] = "yes" if mfu >= targets[mode] else "no"
    payload = {"summary": summary, "shape": common.shape_dict(shape),
               "flop_formula": {"train": "6*N*T + 12*L*d*T^2 per sequence",
                                "inference": "2*N*T + 4*L*d*T^2 per sequence",
                                "N": "12*L*d^2 + 2*d (matmul weights; embeddings excluded)"},
               "matmul_sweep_gflops": {str(k): v for k, v in sweep.items()},
               "peak_size": best_size, "segments": seg.rows,
               "args": vars(args), "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    path = common.write_result(args.name or ("bench_mfu_tiny" if args.tiny else "bench_mfu"),
                               payload,
                               Path(args.results_dir))
    print(f"wrote {path}", file=sys.stderr)
    print(common.summary_line(summary))
    return payload


if __name__ == "__main__":
    main()
