"""Inference questions/s: gpt2qa's predict path vs transformers' question-answering pipeline.

Both stacks answer the same dev questions with the same weights: a GPT-2 model saved by
`gpt2qa.checkpoint.save_model` with head=linear, null_position=first, layout=question-first,
which is the layout `GPT2ForQuestionAnswering.from_pretrained(dir)` loads (random init unless
`--model-dir` names a trained one). Each side is timed end to end, text in, answers out:

  gpt2qa  `predict_examples` (batched tokenisation, length-sorted batches with dynamic
          padding, forward, vectorised decoding), `--batch-size` features per forward (default:
          gpt2qa's own choice for the device, 3 at GPT-2-small shape on CPU).
  hf      `pipeline("question-answering")` from transformers 4.57 (the task is gone in
          transformers 5), run by another interpreter: `--hf-python` (default
          .venv-hf457/bin/python; see benchmarks/README.md to create it). It is given gpt2qa's
          input layout (<|null|> question <|sep|> context) through a TemplateProcessing
          post-processor, and handle_impossible_answer=True, max_answer_len=30, so both stacks
          answer the same inputs and may both abstain. Its batch size is the pipeline's
          default (1) unless `--hf-batch-size` says otherwise.

Rounds alternate the stacks (the HF process stays up between rounds, warm) and medians are
reported, with the agreement of the two stacks' answers where both answer. `--chunk N`
alternates them every N questions inside each round too, for a machine whose load changes.

Low-precision modes (`--quantize int8`, `--precision bf16`) run beside gpt2qa's fp32 in the
same rounds, each on its own copy of the model. Their accuracy cost is measured on a
*trained* model (`--accuracy-model DIR --accuracy-data FILE`, e.g. the demo's model and dev
split): the share of answers identical to fp32 and the official SQuAD 2.0 F1 of each mode.
bf16 on a CPU without bf16 instructions is emulated; it is measured anyway, with a warning.

    python benchmarks/bench_predict.py --tiny --questions 40 --rounds 2
    python benchmarks/bench_predict.py --questions 120 --rounds 2
    python benchmarks/bench_predict.py --questions 40 --rounds 2 --quantize int8 \
        --accuracy-model runs/demo/model --accuracy-data runs/demo/data/dev.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common

WORKER_FLAG = "--worker"
NULL_TOKEN, SEP_TOKEN = "<|null|>", "<|sep|>"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(common.DEFAULT_DATA))
    p.add_argument("--tokenizer", default=str(common.DEFAULT_TOKENIZER))
    p.add_argument("--model-dir", default="",
                   help="an HF-compatible gpt2qa model dir (default: save a random-init one)")
    p.add_argument("--tiny", action="store_true", help="2 layers, 128 wide (a quick run)")
    p.add_argument("--questions", type=int, default=120,
                   help="dev questions answered per round (a fixed random sample)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--chunk", type=int, default=0,
                   help="alternate the stacks every N questions within a round (0: whole "
                        "rounds); on a loaded machine this gives every stack the same load")
    p.add_argument("--batch-size", type=int, default=0,
                   help="gpt2qa features per forward (0: gpt2qa's default for the device)")
    p.add_argument("--hf-batch-size", type=int, default=1, help="the pipeline's batch_size")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile gpt2qa's model first (compile time is not timed)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="also time gpt2qa under CPU bf16 autocast, beside fp32")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="also time gpt2qa with the backbone quantised to int8, beside fp32")
    p.add_argument("--accuracy-model", default="",
                   help="a trained gpt2qa model dir for the accuracy line (agreement, F1)")
    p.add_argument("--accuracy-data", default="",
                   help="SQuAD 2.0 file with gold answers for --accuracy-model")
    p.add_argument("--hf-python", default=str(common.REPO / ".venv-hf457" / "bin" / "python"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--results-dir", default=str(common.RESULTS_DIR))
    p.add_argument("--name", default="")
    args = p.parse_args(argv)
    if min(args.questions, args.rounds, args.hf_batch_size) < 1 or min(args.batch_size,
                                                                        args.chunk) < 0:
        p.error("--questions, --rounds and --hf-batch-size must be at least 1, --batch-size "
                "and --chunk >= 0")
    if bool(args.accuracy_model) != bool(args.accuracy_data):
        p.error("--accuracy-model and --accuracy-data go together")
    return args


def modes_of(args: argparse.Namespace) -> list[str]:
    """gpt2qa's timed modes: fp32 always (the reference), then the low-precision ones."""
    return ["fp32"] + (["int8"] if args.quantize == "int8" else []) + (
        ["bf16"] if args.precision == "bf16" else [])


def load_mode(model_dir: Path, mode: str) -> Any:
    """A CPU QAPipeline for one mode. bf16 is allowed on a CPU without bf16 instructions here
    (with a warning): the benchmark exists to measure that cost too."""
    from gpt2qa.pipeline import QAPipeline
    from gpt2qa.quantize import check_cpu_bf16

    if mode == "bf16":
        check_cpu_bf16(allow_slow=True)
        pipe = QAPipeline.from_pretrained(model_dir, device="cpu")
        pipe.precision = "bf16"
        return pipe
    return QAPipeline.from_pretrained(model_dir, device="cpu",
                                      quantize="int8" if mode == "int8" else "none")


def accuracy(model_dir: str, data: str, modes: Sequence[str]) -> dict[str, Any]:
    """Each mode on a trained model: answers identical to fp32, and official F1 / EM."""
    from gpt2qa.metrics import evaluate_v2

    examples = common.load_dev(data)
    out: dict[str, Any] = {"model_dir": model_dir, "data": data, "questions": len(examples)}
    answers: dict[str, dict[str, str]] = {}
    for mode in modes:
        preds = load_mode(Path(model_dir), mode).predict(examples)
        answers[mode] = {p.qas_id: p.text for p in preds}
        scores = evaluate_v2(examples, answers[mode])
        same = sum(answers[mode][k] == answers["fp32"][k] for k in answers["fp32"])
        out[mode] = {"f1": scores["f1"], "exact": scores["exact"],
                     "identical_to_fp32_pct": 100.0 * same / len(examples),
                     "delta_f1": scores["f1"] - out["fp32"]["f1"] if mode != "fp32" else 0.0}
        print(f"accuracy {mode}: F1 {scores['f1']:.2f}, identical to fp32 "
              f"{out[mode]['identical_to_fp32_pct']:.1f}%", file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------- model dir


def save_random_model(shape: common.ModelShape, tokenizer_dir: str, out: Path, seed: int) -> Path:
    """A random-init GPT-2 QA model in the HF-compatible layout, saved by gpt2qa."""
    import torch

    from gpt2qa.checkpoint import save_model
    from gpt2qa.config import QAConfig
    from gpt2qa.model import QAModel, backbone_from_config

    tokenizer = common.load_gpt2_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    model = QAModel(backbone_from_config(shape.gpt2_config()),
                    QAConfig.of(head="linear", layout="question-first", null_position="first",
                             max_answer_length=30))
    return save_model(model, tokenizer, out)


# --------------------------------------------------------------------------- HF worker


def worker_main(argv: Sequence[str]) -> None:
    """Runs under transformers 4.57: load the pipeline once, then answer on each "run" line.

    Prints one JSON line when ready, then one per run: {"seconds", "answers"}.
    """
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("questions")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--tokenizer-fallback", default="")
    a = p.parse_args(argv)
    import torch
    import transformers
    from transformers import GPT2ForQuestionAnswering, pipeline

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    start = time.perf_counter()
    tok, tokenizer_source = _load_hf_tokenizer(a.model_dir, a.tokenizer_fallback)
    _set_gpt2qa_layout(tok)
    tok.pad_token = tok.eos_token
    model = GPT2ForQuestionAnswering.from_pretrained(a.model_dir).eval()
    qa = pipeline("question-answering", model=model, tokenizer=tok, device=-1)
    items = json.loads(Path(a.questions).read_text(encoding="utf-8"))
    kwargs = {"handle_impossible_answer": True, "max_answer_len": 30, "top_k": 1,
              "batch_size": a.batch_size}

    def answer_all(batch: list[dict[str, str]]) -> list[str]:
        out = qa(question=[x["question"] for x in batch], context=[x["context"] for x in batch],
                 **kwargs)
        out = out if isinstance(out, list) else [out]
        return [o["answer"] for o in out]

    # The pipeline's windows, tokenised as its preprocess does, to count FLOPs.
    enc = tok([x["question"] for x in items], [x["context"] for x in items],
              truncation="only_second", max_length=384, stride=128,
              return_overflowing_tokens=True)
    lengths = [len(ids) for ids in enc["input_ids"]]
    with torch.inference_mode():
        answer_all(items[:2])  # warm-up
    print(json.dumps({"ready": True, "lengths": lengths, "transformers": transformers.__version__,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "attn_implementation": model.config._attn_implementation,
                      "tokenizer": tokenizer_source, "load_s": time.perf_counter() - start}),
          flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "run":
            break
        # "run" answers every question; "run A B" answers items[A:B] (chunked alternation).
        part = items[int(words[1]): int(words[2])] if len(words) == 3 else items
        t0 = time.perf_counter()
        with torch.inference_mode():
            answers = answer_all(part)
        seconds = time.perf_counter() - t0
        print(json.dumps({"seconds": seconds,
                          "answers": {x["id"]: ans for x, ans in zip(part, answers, strict=True)}}),
              flush=True)


def _load_hf_tokenizer(model_dir: str, fallback_dir: str) -> tuple[Any, str]:
    """The saved tokenizer as transformers 4.57 can read it; says which way it was read.

    transformers 5 writes `extra_special_tokens` as a list, which 4.57's AutoTokenizer cannot
    read; the saved tokenizer.json itself still loads. Last resort: GPT-2's original
    vocab/merges plus gpt2qa's two added tokens, in gpt2qa's order.
    """
    from transformers import AutoTokenizer, GPT2TokenizerFast

    eos = "<|endoftext|>"
    failures = []
    attempts = [
        ("AutoTokenizer(model dir)", lambda: AutoTokenizer.from_pretrained(model_dir)),
        ("tokenizer.json", lambda: GPT2TokenizerFast(
            tokenizer_file=str(Path(model_dir) / "tokenizer.json"), eos_token=eos,
            bos_token=eos, unk_token=eos)),
    ]
    if fallback_dir:
        attempts.append(("GPT-2 vocab/merges + added tokens", lambda: _from_vocab(fallback_dir)))
    for name, load in attempts:
        try:
            tok = load()
        except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
            failures.append(f"{name}: {type(exc).__name__}")
            continue
        if tok.convert_tokens_to_ids(NULL_TOKEN) in (None, tok.unk_token_id):
            failures.append(f"{name}: no {NULL_TOKEN}")
            continue
        return tok, "; ".join([*failures, f"loaded by {name}"])
    raise SystemExit(f"{model_dir}: transformers could not load the tokenizer: {failures}")


def _from_vocab(directory: str) -> Any:
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained(directory)
    tok.add_special_tokens({"additional_special_tokens": [SEP_TOKEN, NULL_TOKEN]})
    return tok


def _set_gpt2qa_layout(tok: Any) -> None:
    """Make the tokenizer lay pairs out as gpt2qa does: <|null|> question <|sep|> context."""
    from tokenizers.processors import TemplateProcessing

    null_id, sep_id = tok.convert_tokens_to_ids(NULL_TOKEN), tok.convert_tokens_to_ids(SEP_TOKEN)
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{NULL_TOKEN} $A:0", pair=f"{NULL_TOKEN} $A:0 {SEP_TOKEN} $B:1",
        special_tokens=[(NULL_TOKEN, null_id), (SEP_TOKEN, sep_id)])


class HFWorker:
    """The HF pipeline in its own interpreter, kept warm between rounds."""

    def __init__(self, python: str, model_dir: Path, questions: Path, threads: int,
                 batch_size: int, tokenizer_dir: str) -> None:
        if not Path(python).is_file():
            raise SystemExit(f"{python}: no such interpreter; create the transformers 4.57 venv "
                             "as benchmarks/README.md shows, or pass --hf-python")
        cmd = [python, str(Path(__file__).resolve()), WORKER_FLAG, str(model_dir), str(questions),
               "--threads", str(threads), "--batch-size", str(batch_size),
               "--tokenizer-fallback", tokenizer_dir]
        env = {**os.environ, "PYTHONPATH": ""}  # keep the main tree's packages out
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise SystemExit(f"the HF worker exited with status {code} (see its stderr above)")
        return json.loads(line)

    def run(self, start: int = 0, stop: int = 0) -> dict[str, Any]:
        """Answer every question, or the slice [start, stop) when stop > 0."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {start} {stop}\n" if stop > 0 else "run\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------- agreement


def agreement(ours: dict[str, str], theirs: dict[str, str]) -> dict[str, Any]:
    """How often the stacks agree: on abstaining, and on the answer where both answer."""
    from gpt2qa.metrics import exact_match, f1

    ids = sorted(ours)
    both = [i for i in ids if ours[i].strip() and theirs[i].strip()]
    same_decision = sum(bool(ours[i].strip()) == bool(theirs[i].strip()) for i in ids)
    exact = sum(exact_match(ours[i], theirs[i]) for i in both)
    return {"questions": len(ids), "both_answer": len(both),
            "both_abstain": sum(not ours[i].strip() and not theirs[i].strip() for i in ids),
            "answer_agree_pct": 100.0 * exact / len(both) if both else float("nan"),
            "answer_f1_pct": 100.0 * sum(f1(ours[i], theirs[i]) for i in both) / len(both)
            if both else float("nan"),
            "abstain_decision_agree_pct": 100.0 * same_decision / len(ids) if ids else float("nan"),
            "examples_disagreeing": [{"id": i, "gpt2qa": ours[i], "hf": theirs[i]}
                                     for i in both if not exact_match(ours[i], theirs[i])][:5]}


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    import torch

    from gpt2qa.batching import inference_batch_size
    from gpt2qa.features import convert_examples_to_features
    from gpt2qa.quantize import cpu_bf16_support, is_int8

    shape = common.shape_from_flag(args.tiny)
    examples = common.load_dev(args.data)
    picked = random.Random(args.seed).sample(range(len(examples)), min(args.questions,
                                                                         len(examples)))
    chosen = [examples[i] for i in picked]
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else save_random_model(
            shape, args.tokenizer, Path(tmp) / "model", args.seed)
        qfile = Path(tmp) / "questions.json"
        qfile.write_text(json.dumps([{"id": ex.qas_id, "question": ex.question.strip(),
                                      "context": ex.context} for ex in chosen]), encoding="utf-8")
        modes = modes_of(args)
        pipes = {mode: load_mode(model_dir, mode) for mode in modes}
        pipe = pipes["fp32"]
        for each in pipes.values():
            if args.compile:
                each.model.compile(dynamic=True)
            each.predict(chosen[:2], batch_size=args.batch_size)  # warm-up
        batch_sizes = {mode: args.batch_size or inference_batch_size(
            torch.device("cpu"), each.model.width, each.model.config.features.max_seq_length,
            int8=is_int8(each.model)) for mode, each in pipes.items()}
        batch_size = batch_sizes["fp32"]
        hf = HFWorker(args.hf_python, model_dir, qfile, threads, args.hf_batch_size,
                      args.tokenizer)
        print(f"hf worker ready: {hf.info}", file=sys.stderr, flush=True)
        ours_lengths = [len(f.input_ids) for f in convert_examples_to_features(
            chosen, pipe.tokenizer, pipe.model.config.features, pipe.special_ids)]
        theirs_lengths = hf.info.pop("lengths")
        peaks: list[float] = []
        ours: dict[str, str] = {}
        theirs: dict[str, str] = {}
        mode_answers: dict[str, dict[str, str]] = {}
        try:
            for r in range(args.rounds):
                peaks.append(max(common.matmul_gflops(n, 1.0) for n in (1024, 2048)))
                times: dict[str, float] = {}
                load = [os.getloadavg()[0]]
                step = args.chunk or len(chosen)
                for start in range(0, len(chosen), step):
                    part = chosen[start: start + step]
                    for mode, each in pipes.items():
                        seconds, preds = common.timed(lambda each=each, part=part: each.predict(
                            part, batch_size=args.batch_size))
                        mode_answers.setdefault(mode, {}).update(
                            {p.qas_id: p.text for p in preds})
                        stack = "gpt2qa" if mode == "fp32" else f"gpt2qa-{mode}"
                        times[stack] = times.get(stack, 0.0) + seconds
                    out = hf.run(start, start + len(part)) if args.chunk else hf.run()
                    theirs.update(out["answers"])
                    times["hf"] = times.get("hf", 0.0) + out["seconds"]
                    load.append(os.getloadavg()[0])
                ours = mode_answers["fp32"]
                for stack, seconds in times.items():
                    rounds.append({"stack": stack, "seconds": seconds,
                                   "questions_per_s": len(chosen) / seconds,
                                   "loadavg_1m": [round(x, 2) for x in load]})
                print(f"round {r + 1}/{args.rounds}: "
                      + ", ".join(f"{k} {v:.2f}s" for k, v in times.items())
                      + f" for {len(chosen)} questions; load average {load[0]:.1f}-"
                      + f"{max(load):.1f}", file=sys.stderr, flush=True)
        finally:
            hf.close()

    stacks = ["gpt2qa", *(f"gpt2qa-{m}" for m in modes[1:]), "hf"]
    rate = {s: common.median([x["questions_per_s"] for x in rounds if x["stack"] == s])
            for s in stacks}
    agree = agreement(ours, theirs)
    hf_seconds = common.median([x["seconds"] for x in rounds if x["stack"] == "hf"])
    ours_seconds = common.median([x["seconds"] for x in rounds if x["stack"] == "gpt2qa"])
    ours_flops = common.inference_flops(ours_lengths, shape)
    peak = common.median(peaks)
    loads = [x for r in rounds for x in r["loadavg_1m"]]
    summary = {"shape": shape.name, "questions": len(chosen), "threads": threads,
               "gpt2qa_batch_size": batch_size, "chunk": args.chunk,
               "loadavg_1m_min": min(loads), "loadavg_1m_max": max(loads),
               "gpt2qa_q_s": rate["gpt2qa"], "hf_q_s": rate["hf"],
               "gpt2qa_vs_hf": rate["gpt2qa"] / rate["hf"],
               "target_3x_met": "yes" if rate["gpt2qa"] / rate["hf"] >= 3.0 else "no",
               "gpt2qa_gflops": ours_flops / ours_seconds / 1e9,
               "hf_gflops": common.inference_flops(theirs_lengths, shape) / hf_seconds / 1e9,
               "peak_gflops": peak,
               # gpt2qa cannot beat its FLOPs at the full matmul peak: the most it could reach.
               "ratio_bound_at_peak": hf_seconds * peak * 1e9 / ours_flops,
               "answer_agree_pct": agree["answer_agree_pct"],
               "both_answer": agree["both_answer"]}
    acc = accuracy(args.accuracy_model, args.accuracy_data, modes) if args.accuracy_model \
        else None
    for mode in modes[1:]:
        summary[f"{mode}_batch_size"] = batch_sizes[mode]
        summary[f"{mode}_q_s"] = rate[f"gpt2qa-{mode}"]
        summary[f"{mode}_vs_hf"] = rate[f"gpt2qa-{mode}"] / rate["hf"]
        summary[f"{mode}_vs_fp32"] = rate[f"gpt2qa-{mode}"] / rate["gpt2qa"]
        # On the (random) benchmark model: only a sanity check, near-ties abound.
        summary[f"{mode}_same_as_fp32_random_pct"] = 100.0 * sum(
            mode_answers[mode][k] == mode_answers["fp32"][k] for k in mode_answers["fp32"]
        ) / len(chosen)
        if acc is not None:
            summary[f"{mode}_identical_pct"] = acc[mode]["identical_to_fp32_pct"]
            summary[f"{mode}_delta_f1"] = acc[mode]["delta_f1"]
        summary[f"{mode}_target_met"] = "yes" if (
            acc is not None and summary[f"{mode}_vs_hf"] >= 3.0
            and acc[mode]["delta_f1"] >= -0.5 and acc[mode]["identical_to_fp32_pct"] >= 97.0
        ) else "no"
    payload = {"summary": summary, "shape": common.shape_dict(shape), "peaks_gflops": peaks,
               "windows": {"gpt2qa": len(ours_lengths), "hf": len(theirs_lengths),
                           "gpt2qa_tokens": sum(ours_lengths), "hf_tokens": sum(theirs_lengths)},
               "args": vars(args), "hf_worker": hf.info, "agreement": agree, "rounds": rounds,
               "accuracy": acc if acc is not None else "not measured (no --accuracy-model)",
               "cpu_bf16_support": cpu_bf16_support() or "none",
               "model_dir": args.model_dir or "(random init, temporary)"}
    path = common.write_result(args.name or ("bench_predict_tiny" if args.tiny
                                             else "bench_predict"), payload,
                               Path(args.results_dir))
    print(f"wrote {path}", file=sys.stderr)
    print(common.summary_line(summary))
    return payload


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_FLAG:
        worker_main(sys.argv[2:])
    else:
        main()
