"""Examples -> predictions: prompt, decode greedily, read the answer and its no-answer
probability; and the whole run from a model name and a SQuAD file to scored output files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from gpt2qa.config import DataFormat
from gpt2qa.data import SquadExample
from gpt2qa.decode import Candidate, Prediction, sigmoid, write_predictions
from gpt2qa.errors import GPT2QAError
from gpt2qa.metrics import evaluate_v1, evaluate_v2, null_baseline
from gpt2qa.quantize import check_cpu_bf16
from gpt2qa.readers import load_examples
from gpt2qa.runtime import autocast_context, pick_device
from gpt2qa.tokenizer import hub_kwargs, load_failure, load_tokenizer
from gpt2qa.zeroshot.decoding import (
    Generation,
    continuation_logprobs,
    greedy_generate,
    model_window,
    pad_token_id,
    stop_token_ids,
)
from gpt2qa.zeroshot.prompts import build_prompt, is_abstention, select_shots
from gpt2qa.zeroshot.settings import ZeroShotConfig


def answer_text(tokenizer: Any, gen: Generation) -> str:
    """The continuation's text up to its first newline, stripped."""
    ids = list(gen.token_ids) + ([gen.stop_token] if gen.stop_token is not None else [])
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return text.split("\n", 1)[0].strip()


def _abstain_ids(tokenizer: Any, prompt_text: str, phrase: str) -> list[int]:
    # The answer follows "A:" after a space, as in the shot template.
    text = phrase if prompt_text[-1:].isspace() else " " + phrase
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def zero_shot_predict(model: Any, tokenizer: Any, examples: Sequence[SquadExample],
                      config: ZeroShotConfig,
                      shot_examples: Sequence[SquadExample] | None = None,
                      progress: bool = False) -> list[Prediction]:
    """Answer every example by greedy continuation; predictions come back in example order.

    ``shot_examples`` (if given) are the solved examples to show; otherwise ``config.shots``
    are drawn from ``config.shots_file``. Each prediction has one n-best candidate: the
    stripped continuation, its summed log-prob (stop included), and its character offsets in
    the context when it occurs there verbatim (else -1, -1).
    """
    if not examples:
        return []
    if shot_examples is None:
        shot_examples = (select_shots(config.shots_file, config.shots, config.seed, examples)
                         if config.shots and config.shots_file else ())
    window = model_window(model, tokenizer)
    reserve = config.max_new_tokens
    if config.na_scoring == "likelihood":  # the abstain phrase is scored after the prompt too
        phrase = config.abstain_phrases[0]
        reserve = max(reserve, *(len(_abstain_ids(tokenizer, end, phrase)) for end in (":", " ")))
    budget = window - reserve
    if budget < 1:
        raise GPT2QAError(f"max_new_tokens={config.max_new_tokens} leaves no room for a prompt "
                          f"in the model's {window}-token window")
    prompts = [build_prompt(ex, shot_examples, tokenizer, config, budget) for ex in examples]
    stop_ids = stop_token_ids(tokenizer)
    pad_id = pad_token_id(tokenizer)
    gens = greedy_generate(model, [p.input_ids for p in prompts], stop_ids, pad_id,
                           config.max_new_tokens, config.batch_size, config.precision, progress)
    abstain_lp: list[float] | None = None
    if config.na_scoring == "likelihood":
        conts = [_abstain_ids(tokenizer, p.text, config.abstain_phrases[0]) for p in prompts]
        abstain_lp = continuation_logprobs(model, [p.input_ids for p in prompts], conts,
                                           stop_ids, pad_id, config.batch_size, config.precision)
    predictions = []
    for i, (ex, gen) in enumerate(zip(examples, gens, strict=True)):
        raw = answer_text(tokenizer, gen)
        start = ex.context.find(raw) if raw else -1
        end = start + len(raw) if start >= 0 else -1
        abstained = is_abstention(raw, config.abstain_phrases)
        if abstained:
            diff, na_prob = math.inf, 1.0
        elif abstain_lp is not None:
            diff = abstain_lp[i] - gen.logprob
            na_prob = sigmoid(diff)
        else:
            diff, na_prob = -math.inf, 0.0
        predictions.append(Prediction(
            qas_id=ex.qas_id, text="" if abstained else raw, best_span=raw, score_diff=diff,
            na_prob=na_prob, nbest=(Candidate(raw, gen.logprob, start, end),)))
    return predictions


def load_causal_lm(name_or_dir: str, device: Any = None, precision: str = "fp32") -> Any:
    """``AutoModelForCausalLM.from_pretrained``, in eval mode, with a one-line failure message.

    For bf16/fp16 (fp16 on CUDA only) the weights are loaded in that type, so autocast has
    nothing to re-cast at each decoding step and the weights take half the memory. Greedy
    answers then differ from fp32 ones on some questions (near-tied logits).
    """
    kwargs: dict[str, Any] = dict(hub_kwargs(name_or_dir))
    if precision != "fp32":
        dev = torch.device(device or "cpu")
        autocast_context(dev, precision)  # refuses fp16 off CUDA
        if dev.type == "cpu":
            check_cpu_bf16()
        kwargs["dtype"] = torch.bfloat16 if precision == "bf16" else torch.float16
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_dir, **kwargs)
    except (OSError, ValueError) as exc:
        raise GPT2QAError(load_failure(name_or_dir, "causal language model", exc)) from None
    if device is not None:
        model = model.to(device)
    return model.eval()


def run_zero_shot(model_name: str, data_path: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str], config: ZeroShotConfig,
                  device: str | None = None, max_examples: int | None = None,
                  progress: bool = False, reading: DataFormat | None = None) -> dict[str, Any]:
    """Answer a SQuAD file (in any layout `readers.load_examples` reads, as `reading` says),
    write predictions/na_probs/nbest.json, return official metrics.

    The metrics are `evaluate_v2` (with the na-probs, so ``best_f1`` and its threshold are
    included) for v2.0 data or `evaluate_v1` for v1.1, plus ``null_baseline_f1`` (the F1 of
    abstaining everywhere). ``max_examples`` keeps the first N questions, and the metrics are
    over those only.
    """
    if max_examples is not None and max_examples < 1:
        raise GPT2QAError(f"max_examples must be >= 1; got {max_examples}")
    dataset = load_examples(data_path, check_offsets=False, reading=reading)
    examples = list(dataset.examples[:max_examples] if max_examples else dataset.examples)
    if not examples:
        raise GPT2QAError(f"{data_path}: no questions to answer")
    tokenizer = load_tokenizer(model_name)
    model = load_causal_lm(model_name, pick_device(device), config.precision)
    predictions = zero_shot_predict(model, tokenizer, examples, config, progress=progress)
    write_predictions(predictions, out_dir)
    preds = {p.qas_id: p.text for p in predictions}
    # Not `evaluation.score_predictions`: its tuned_* keys would join these, while the keys
    # here are exactly what `gpt2qa evaluate` prints for the written files, plus the baseline.
    if dataset.is_v2:
        metrics = evaluate_v2(examples, preds, {p.qas_id: p.na_prob for p in predictions})
        metrics["null_baseline_f1"] = null_baseline(examples)["f1"]
    else:
        metrics = evaluate_v1(examples, preds)
        metrics["null_baseline_f1"] = evaluate_v1(examples, {ex.qas_id: "" for ex in examples})["f1"]
    return metrics
