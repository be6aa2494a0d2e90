"""Training examples/s: gpt2qa's training step vs transformers' Trainer, side by side.

Both stacks train the same model shape (GPT-2 small, random init, vocab 50257 + 2; `--tiny`
for a quick run) with batch size 8 on features of the same dev questions, tokenised with
GPT-2's real tokenizer:

  gpt2qa  the real train-loop pieces: `epoch_batches` (length-grouped batches), `collate`
          (dynamic padding), `QAModel` forward/backward, clipping, `optimizer_for` (AdamW),
          the LR scheduler, all under Accelerate as in `gpt2qa.train.train`. The layout is the
          HF-compatible one (<|null|> question <|sep|> context).
  hf      `transformers.Trainer` + `GPT2ForQuestionAnswering` on run_qa-style features:
          truncation="only_second", max_length=384, stride=128, padding="max_length",
          pad_token = eos, unanswerable labels at position 0.

Which batches are timed: gpt2qa's cost depends on each batch's width, so its timed batches are
a stratified sample of one real epoch (the batches at evenly spaced width quantiles), the same
`--steps` batches in every round; its rate is examples / seconds over them. Every hf batch is
8 x 384, so any batch is typical; the Trainer trains on the run_qa features of the same
questions. A training example is one feature (one window).

Interleaving: the machine is shared and its load moves within minutes, so the stacks take turns
step by step. One Trainer run drives everything: after each of its steps a callback runs one
step of every gpt2qa stack; each hf step is timed from the callback's exit to the next step's
end (its data loading included). The first `--warmup` steps of every stack are not timed; the
rest form `--rounds` rounds of `--steps` steps, and the medians over rounds are reported.

    python benchmarks/bench_train.py --tiny --steps 3 --warmup 1 --rounds 2
    python benchmarks/bench_train.py --steps 3 --warmup 1 --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common


@dataclasses.dataclass(frozen=True)
class Round:
    stack: str
    examples: int
    tokens_real: int | None
    tokens_padded: int
    seconds: float

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(common.DEFAULT_DATA))
    p.add_argument("--tokenizer", default=str(common.DEFAULT_TOKENIZER))
    p.add_argument("--tiny", action="store_true", help="2 layers, 128 wide (a quick run)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--stacks", default="gpt2qa,hf",
                   help="comma list from gpt2qa, gpt2qa+compile (torch.compile, as `train "
                   "--compile`), hf (hf is always run: its Trainer drives the interleaving)")
    p.add_argument("--results-dir", default=str(common.RESULTS_DIR))
    p.add_argument("--name", default="", help="result file name (default bench_train[_tiny])")
    args = p.parse_args(argv)
    if min(args.steps, args.warmup, args.rounds, args.batch_size) < 1:
        p.error("--steps, --warmup, --rounds and --batch-size must be at least 1")
    args.stack_list = [s.strip() for s in args.stacks.split(",") if s.strip()]
    bad = [s for s in args.stack_list if s not in common.GPT2QA_STACKS + ("hf",)]
    if bad:
        p.error(f"unknown stack(s): {', '.join(bad)}")
    if "hf" not in args.stack_list or len(args.stack_list) < 2:
        p.error("--stacks must name hf and at least one gpt2qa stack")
    return args


# --------------------------------------------------------------------------- gpt2qa side


class Gpt2qaStack:
    """One gpt2qa contender: its model, trainer, and the batches it steps through."""

    def __init__(self, name: str, model: Any, features: Sequence[Any], config: Any,
                 pad_id: int, warm: Sequence[Sequence[int]],
                 timed: Sequence[Sequence[int]], rounds: int) -> None:
        self.name, self.features = name, features
        self.schedule = [*warm, *(list(timed) * rounds)]
        self.trainer = common.Gpt2qaTrainer(model, config, features, pad_id,
                                            len(self.schedule), compiled=name.endswith("+compile"))
        self.seconds: list[float] = []

    def step(self, k: int) -> None:
        batch = self.schedule[k]
        start = time.perf_counter()
        self.trainer.step(batch)
        self.seconds.append(time.perf_counter() - start)


# --------------------------------------------------------------------------- HF side


def hf_tokenizer(directory: str) -> Any:
    from transformers import GPT2Tokenizer

    # The directory holds GPT-2's original vocab.json + merges.txt (transformers 5's
    # GPT2Tokenizer is the fast, tokenizers-backed one).
    tok = GPT2Tokenizer.from_pretrained(directory)
    tok.pad_token = tok.eos_token  # what HF users do for GPT-2
    return tok


def hf_train_features(examples: Sequence[Any], tokenizer: Any, max_length: int = 384,
                      stride: int = 128) -> list[dict[str, list[int] | int]]:
    """run_qa's prepare_train_features, for GPT-2 (no [CLS]: null labels point at token 0)."""
    enc = tokenizer([ex.question.lstrip() for ex in examples], [ex.context for ex in examples],
                    truncation="only_second", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    out: list[dict[str, list[int] | int]] = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ex = examples[enc["overflow_to_sample_mapping"][i]]
        seq = enc.sequence_ids(i)
        start = end = 0
        if ex.answers and not ex.is_impossible:
            a_start = ex.answers[0].answer_start
            a_end = a_start + len(ex.answers[0].text)
            first = seq.index(1)
            last = len(seq) - 1 - seq[::-1].index(1)
            if offsets[first][0] <= a_start and offsets[last][1] >= a_end:
                start = first
                while start <= last and offsets[start][0] <= a_start:
                    start += 1
                start -= 1
                end = last
                while end >= first and offsets[end][1] >= a_end:
                    end -= 1
                end += 1
        out.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                    "start_positions": start, "end_positions": end})
    return out


def run_interleaved(model: Any, dataset: Sequence[dict[str, Any]], args: argparse.Namespace,
                    work: Path, others: Sequence[Gpt2qaStack]) -> list[float]:
    """Train `model` with the Trainer; after each of its steps, one step of every other stack.

    Returns the hf step times (end of the previous callback to the end of this step).
    """
    from transformers import Trainer, TrainerCallback, TrainingArguments

    total = args.warmup + args.steps * args.rounds

    class Interleave(TrainerCallback):
        def __init__(self) -> None:
            self.mark = 0.0
            self.seconds: list[float] = []

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            self.mark = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.seconds.append(time.perf_counter() - self.mark)
            k = len(self.seconds) - 1
            for stack in others:
                stack.step(k)
            print(f"step {k + 1}/{total}: hf {self.seconds[-1]:.2f}s "
                  + " ".join(f"{o.name} {o.seconds[-1]:.2f}s" for o in others),
                  file=sys.stderr, flush=True)
            self.mark = time.perf_counter()

    clock = Interleave()
    targs = TrainingArguments(
        output_dir=str(work), per_device_train_batch_size=args.batch_size,
        max_steps=total, learning_rate=5e-5, weight_decay=0.01,
        max_grad_norm=1.0, logging_strategy="no", save_strategy="no", eval_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, seed=args.seed,
        dataloader_pin_memory=False)
    Trainer(model=model, args=targs, train_dataset=dataset, callbacks=[clock]).train()
    if len(clock.seconds) != total:
        raise SystemExit(f"hf: expected {total} steps, saw {len(clock.seconds)}")
    return clock.seconds


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = common.set_threads(args.threads)
    import torch
    from transformers import GPT2ForQuestionAnswering

    from gpt2qa.config import QAConfig
    from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
    from gpt2qa.model import QAModel, backbone_from_config
    from gpt2qa.schedule import epoch_batches

    shape = common.shape_from_flag(args.tiny)
    config = common.train_config(args.data, args.batch_size, args.seed)
    qa: QAConfig = config.qa
    examples = common.load_dev(args.data)
    tokenizer = common.load_gpt2_tokenizer(args.tokenizer)
    special = prepare_tokenizer(tokenizer)
    features = convert_examples_to_features(examples, tokenizer, qa.features, special)
    lengths = [len(f.input_ids) for f in features]
    batches = epoch_batches(lengths, config, epoch=0)
    widths = [max(lengths[i] for i in b) for b in batches]
    timed_batches = common.stratified_batches(batches, widths, args.steps)
    timed_set = {tuple(b) for b in timed_batches}
    # Warm-up: the widest batch first (allocates the most), then others not timed.
    widest = max(range(len(batches)), key=lambda i: widths[i])
    warm = [batches[widest]] + [b for b in batches if tuple(b) not in timed_set
                                and b is not batches[widest]][: args.warmup - 1]

    used = sorted({features[i].example_index for b in [*warm, *timed_batches] for i in b})
    hf_tok = hf_tokenizer(args.tokenizer)
    hf_data = hf_train_features([examples[i] for i in used], hf_tok)

    torch.manual_seed(args.seed)
    models: dict[str, Any] = {"hf": GPT2ForQuestionAnswering(shape.gpt2_config())}
    for stack in args.stack_list:
        if stack != "hf":
            models[stack] = QAModel(backbone_from_config(shape.gpt2_config()), qa)
    attn = {s: getattr(getattr(m, "config", None), "_attn_implementation", None)
            or m.transformer.config._attn_implementation for s, m in models.items()}

    others = [Gpt2qaStack(stack, models[stack], features, config, special.pad, warm,
                          timed_batches, args.rounds)
              for stack in args.stack_list if stack != "hf"]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as work:
        hf_seconds = run_interleaved(models["hf"], hf_data, args, Path(work), others)

    real = sum(lengths[i] for b in timed_batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in timed_batches)
    rounds: list[Round] = []
    for r in range(args.rounds):
        part = slice(args.warmup + r * args.steps, args.warmup + (r + 1) * args.steps)
        for o in others:
            rounds.append(Round(o.name, sum(len(b) for b in timed_batches), real, padded,
                                sum(o.seconds[part])))
        n = args.steps * args.batch_size
        # Which features the Trainer's sampler drew is not recorded: real tokens unknown.
        rounds.append(Round("hf", n, None, n * len(hf_data[0]["input_ids"]),
                            sum(hf_seconds[part])))
    for x in rounds:
        print(f"{x.stack}: {x.examples} examples in {x.seconds:.2f}s = "
              f"{x.examples_per_s:.3f} ex/s", file=sys.stderr)

    rates = {s: common.median([x.examples_per_s for x in rounds if x.stack == s])
             for s in args.stack_list}
    summary: dict[str, Any] = {"shape": shape.name, "batch_size": args.batch_size,
                               "threads": threads}
    for stack, rate in rates.items():
        summary[f"{stack.replace('+', '_')}_ex_s"] = rate
    if "hf" in rates:
        for stack in rates:
            if stack != "hf":
                ratio = rates[stack] / rates["hf"]
                summary[f"{stack.replace('+', '_')}_vs_hf"] = ratio
        if "gpt2qa" in rates:
            summary["target_2x_met"] = "yes" if rates["gpt2qa"] / rates["hf"] >= 2.0 else "no"
    _, step_source = common.gpt2qa_step_fn()
    payload = {
        "summary": summary, "shape": common.shape_dict(shape),
        "args": {k: v for k, v in vars(args).items() if k != "stack_list"},
        "step_function": step_source,
        "attn_implementation": attn,
        "features": {"gpt2qa": len(features), "hf_for_used_questions": len(hf_data),
                     "questions_used": len(used), "epoch_batches": len(batches),
                     "epoch_mean_width": sum(widths) / len(widths),
                     "timed_widths": [max(lengths[i] for i in b) for b in timed_batches],
                     "mean_real_length": sum(lengths) / len(lengths)},
        "rounds": [{**dataclasses.asdict(x), "examples_per_s": x.examples_per_s} for x in rounds],
        "step_seconds": {"hf": hf_seconds, **{o.name: o.seconds for o in others}},
        "schedule_widths": [max(lengths[i] for i in b) for b in others[0].schedule]
        if others else [],
    }
    name = args.name or ("bench_train_tiny" if args.tiny else "bench_train")
    path = common.write_result(name, payload,
                               Path(args.results_dir))
    print(f"wrote {path}", file=sys.stderr)
    print(common.summary_line(summary))
    return payload


if __name__ == "__main__":
    main()
