"""Zero-/few-shot baseline: answer SQuAD with a causal LM's own head, no fine-tuning.

This is the GPT-2 paper's SQuAD setting. Each question becomes a prompt

    {context}
    Q: {question}
    A:

(optionally after k solved examples from a training file) and the model continues it greedily
until it writes a newline or end-of-text, or has written ``max_new_tokens`` tokens. The stripped
continuation is the answer; one that normalises to an abstain phrase ("unanswerable", "n/a",
...) or to nothing counts as no answer (""). The output files are those of ``gpt2qa predict``,
so ``gpt2qa evaluate`` scores them.

No-answer probability (``na_scoring``):

* ``generation``: 1.0 when the model abstained, else 0.0.
* ``likelihood``: ``na_prob = sigmoid(logp(abstain) - logp(greedy))`` where ``logp(x)`` is the
  summed token log-probability of the complete answer ``x`` after the prompt: the log-probs of
  its tokens plus the log-probability of then stopping (the total probability of every
  newline-bearing token and end-of-text). Worked example: the model puts
  ``log p(" Paris") = -0.5`` and ``log p(stop | " Paris") = -0.2`` (logp = -0.7), and
  ``log p(" unanswerable") = -3.0``, ``log p(stop | " unanswerable") = -0.1`` (logp = -3.1);
  then ``na_prob = sigmoid(-3.1 - -0.7) = sigmoid(-2.4) = 0.083``. Counting the stop makes both
  sides probabilities of whole answers, so a short prefix of a longer answer gains nothing.

An abstained answer gets ``na_prob = 1.0`` in both modes: its text is already "".
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gpt2qa.config import PRECISIONS, Precision
from gpt2qa.data import SquadExample, load_squad
from gpt2qa.decode import Candidate, Prediction, sigmoid, write_predictions
from gpt2qa.errors import GPT2QAError
from gpt2qa.metrics import normalize_answer

NaScoring = Literal["generation", "likelihood"]
NA_SCORINGS: tuple[str, ...] = ("generation", "likelihood")

_PROMPT_FIELDS = frozenset({"context", "question"})
_SHOT_FIELDS = frozenset({"context", "question", "answer"})


def _template_fields(template: str, name: str) -> set[str]:
    """The replacement fields of a str.format template; refuses positional/indexed fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise GPT2QAError(f"{name} is not a valid format string ({exc}): {template!r}") from None
    fields: set[str] = set()
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            raise GPT2QAError(f"{name}: field {{{field}}} must not carry a format spec or "
                              f"conversion: {template!r}")
        fields.add(field)
    return fields


@dataclass(frozen=True)
class ZeroShotConfig:
    """How questions become prompts and continuations become answers.

    ``template`` holds ``{context}`` and ``{question}``; ``shot_template`` also holds
    ``{answer}`` and renders one solved example (an unanswerable one gets the first abstain
    phrase as its answer). ``shots`` solved examples are drawn from ``shots_file`` (a SQuAD
    training file) with ``random.Random(seed)``, once for the whole run. Write literal braces
    as ``{{`` and ``}}``.

    ``max_new_tokens`` caps the continuation (its stop token included) and is reserved out of
    the model's window (or the abstain phrase's length, if longer, with likelihood scoring). An answer that normalises (official SQuAD normalisation) to one of
    ``abstain_phrases``, or to nothing, is no answer. ``na_scoring`` picks how ``na_prob`` is
    computed (see the module docstring). ``batch_size`` prompts run together, left-padded.
    ``precision`` is fp32, or bf16/fp16 autocast on CUDA.
    """

    template: str = "{context}\nQ: {question}\nA:"
    shot_template: str = "{context}\nQ: {question}\nA: {answer}\n\n"
    shots: int = 0
    shots_file: str | None = None
    max_new_tokens: int = 16
    abstain_phrases: tuple[str, ...] = ("unanswerable", "no answer", "unknown", "none", "n/a")
    na_scoring: NaScoring = "generation"
    batch_size: int = 16
    seed: int = 42
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        if _template_fields(self.template, "template") != _PROMPT_FIELDS:
            raise GPT2QAError(f"template must use exactly the fields {{context}} and "
                              f"{{question}}: {self.template!r}")
        if _template_fields(self.shot_template, "shot_template") != _SHOT_FIELDS:
            raise GPT2QAError(f"shot_template must use exactly the fields {{context}}, "
                              f"{{question}} and {{answer}}: {self.shot_template!r}")
        if self.shots < 0:
            raise GPT2QAError(f"shots must be >= 0; got {self.shots}")
        if self.shots > 0 and not self.shots_file:
            raise GPT2QAError(f"shots={self.shots} needs shots_file (a SQuAD training file)")
        if self.shots == 0 and self.shots_file:
            raise GPT2QAError(f"shots_file={self.shots_file} is set but shots is 0; "
                              f"give the number of solved examples")
        if self.max_new_tokens < 1:
            raise GPT2QAError(f"max_new_tokens must be >= 1; got {self.max_new_tokens}")
        if not isinstance(self.abstain_phrases, tuple) or not self.abstain_phrases:
            raise GPT2QAError("abstain_phrases must be a non-empty tuple of strings")
        for phrase in self.abstain_phrases:
            if not normalize_answer(phrase):
                raise GPT2QAError(f"abstain phrase {phrase!r} normalises to nothing; every empty "
                                  f"answer already counts as no answer")
        if self.na_scoring not in NA_SCORINGS:
            raise GPT2QAError(f"na_scoring must be one of {', '.join(NA_SCORINGS)}; "
                              f"got {self.na_scoring!r}")
        if self.batch_size < 1:
            raise GPT2QAError(f"batch_size must be >= 1; got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise GPT2QAError(f"precision must be one of {', '.join(PRECISIONS)}; "
                              f"got {self.precision!r}")


# --------------------------------------------------------------------------------------------
# Answers and abstention
# --------------------------------------------------------------------------------------------

def is_abstention(answer: str, abstain_phrases: Sequence[str]) -> bool:
    """Whether a generated answer means "no answer": it normalises to nothing or to a phrase.

    >>> is_abstention(" Unanswerable.", ("unanswerable",))
    True
    >>> is_abstention("unanswerable question", ("unanswerable",))
    False
    """
    norm = normalize_answer(answer)
    return not norm or norm in {normalize_answer(p) for p in abstain_phrases}


def shot_answer(example: SquadExample, config: ZeroShotConfig) -> str:
    """The answer a solved example shows: its first gold text, or the first abstain phrase."""
    if example.is_impossible or not example.answers:
        return config.abstain_phrases[0]
    return example.answers[0].text


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prompt:
    """One rendered prompt: its text and token ids, how many shots and context characters it kept."""

    qas_id: str
    text: str
    input_ids: tuple[int, ...]
    shots_used: int
    context_chars: int
    """Characters of the example's context in the prompt (its length when nothing was cut)."""

    def context_cut(self, example: SquadExample) -> bool:
        return self.context_chars < len(example.context)


def render_prompt(example: SquadExample, shots: Sequence[SquadExample], config: ZeroShotConfig,
                  context: str | None = None) -> str:
    """Shots (each through ``shot_template``), then ``template`` for the example itself."""
    head = "".join(config.shot_template.format(context=s.context, question=s.question,
                                               answer=shot_answer(s, config)) for s in shots)
    ctx = example.context if context is None else context
    return head + config.template.format(context=ctx, question=example.question)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def build_prompt(example: SquadExample, shots: Sequence[SquadExample], tokenizer: Any,
                 config: ZeroShotConfig, max_tokens: int) -> Prompt:
    """The prompt for one example, at most ``max_tokens`` tokens long.

    When it is too long, solved examples go first, the last one first. When the bare prompt
    is still too long, the context is cut: its beginning is kept (whole tokens of the context
    tokenised alone) and its end dropped; the question and the template are never cut.
    Worked example: budget 40, the bare prompt takes 52 tokens of which the context is 45, so
    the first 45 - 12 = 33 context tokens are kept; if re-tokenising the joined text still
    gives 41, one more context token goes.
    Raises `GPT2QAError` when even an empty context does not fit.
    """
    for n in range(len(shots), -1, -1):
        text = render_prompt(example, shots[:n], config)
        ids = _encode(tokenizer, text)
        if len(ids) <= max_tokens:
            return Prompt(example.qas_id, text, tuple(ids), n, len(example.context))
    # No shot left and the full context does not fit: cut the context.
    enc = tokenizer(example.context, add_special_tokens=False, return_offsets_mapping=True)
    ends = [end for _, end in enc["offset_mapping"]]
    keep = max(len(ends) - (len(ids) - max_tokens), 0)
    while True:
        chars = ends[keep - 1] if keep > 0 else 0
        text = render_prompt(example, (), config, context=example.context[:chars])
        ids = _encode(tokenizer, text)
        if len(ids) <= max_tokens:
            return Prompt(example.qas_id, text, tuple(ids), 0, chars)
        if keep == 0:
            raise GPT2QAError(f"id={example.qas_id}: the question and template alone take "
                              f"{len(ids)} tokens, more than the {max_tokens} the model's window "
                              f"leaves after max_new_tokens")
        keep = max(keep - max(len(ids) - max_tokens, 1), 0)


def select_shots(path: str | os.PathLike[str], k: int, seed: int,
                 exclude: Sequence[SquadExample] = ()) -> tuple[SquadExample, ...]:
    """``k`` solved examples from a SQuAD file, drawn with ``random.Random(seed)``.

    Examples that share an id or a context with ``exclude`` (the questions being answered)
    are never drawn, so a shot cannot give its answer away.
    """
    dataset = load_squad(path, check_offsets=False)
    ids = {ex.qas_id for ex in exclude}
    contexts = {ex.context for ex in exclude}
    pool = [ex for ex in dataset.examples if ex.qas_id not in ids and ex.context not in contexts]
    if len(pool) < k:
        raise GPT2QAError(f"{path}: shots={k} but only {len(pool)} questions are usable as shots "
                          f"(those sharing an id or context with the evaluated data are left out)")
    return tuple(random.Random(seed).sample(pool, k))


# --------------------------------------------------------------------------------------------
# Model windows and stop tokens
# --------------------------------------------------------------------------------------------

_WINDOW_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length",
                 "seq_length")


def model_window(model: Any, tokenizer: Any = None) -> int:
    """The longest sequence the model takes: its config's position count (or the tokenizer's)."""
    config = getattr(model, "config", None)
    for attr in _WINDOW_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**8:
        return limit
    raise GPT2QAError(f"cannot tell the context window of {type(model).__name__}: its config "
                      f"has none of {', '.join(_WINDOW_ATTRS)}")


def stop_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """End-of-text and every token whose text holds a newline (GPT-2: "\\n", "\\n\\n", ...).

    Found by decoding each vocabulary entry once (about 1 s for GPT-2's 50k entries), so it
    works for any tokenizer, byte-level or not.
    """
    n = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
    stops = {i for i, t in enumerate(texts) if "\n" in t}
    if tokenizer.eos_token_id is not None:
        stops.add(int(tokenizer.eos_token_id))
    if not stops:
        raise GPT2QAError(f"{type(tokenizer).__name__}: no end-of-text token and no token "
                          f"with a newline, so generation could never stop")
    return tuple(sorted(stops))


def _pad_id(tokenizer: Any) -> int:
    for value in (tokenizer.eos_token_id, tokenizer.pad_token_id):
        if value is not None:
            return int(value)
    raise GPT2QAError(f"{type(tokenizer).__name__} has neither an eos nor a pad token to pad with")


# --------------------------------------------------------------------------------------------
# Greedy decoding and continuation scoring (left padding, KV cache)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Generation:
    """One greedy continuation.

    ``token_ids`` are the answer tokens (stop token excluded); ``stop_token`` is the newline or
    end-of-text token that ended it, or None when ``max_new_tokens`` ran out; ``stop_logprob``
    is log P(any stop token) at that point (None likewise).
    """

    token_ids: tuple[int, ...]
    token_logprobs: tuple[float, ...]
    stop_token: int | None
    stop_logprob: float | None

    @property
    def logprob(self) -> float:
        """Summed log-probability of the answer, with the stop when there is one."""
        return sum(self.token_logprobs) + (self.stop_logprob or 0.0)


@dataclass(frozen=True)
class _ForwardStyle:
    """Which keyword arguments a model's forward accepts (transformers renamed the cache one)."""

    cache_kw: str
    position_ids: bool
    logits_to_keep: bool


def _forward_style(model: Any) -> _ForwardStyle:
    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    return _ForwardStyle(cache_kw, "position_ids" in params, "logits_to_keep" in params)


def _forward(model: Any, style: _ForwardStyle, ids: Any, mask: Any, positions: Any,
             cache: Any = None, keep: int = 1) -> tuple[Any, Any]:
    """Logits of the last ``keep`` positions, and the updated KV cache."""
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": True}
    if style.position_ids:
        kwargs["position_ids"] = positions
    if cache is not None:
        kwargs[style.cache_kw] = cache
    if style.logits_to_keep:
        kwargs["logits_to_keep"] = keep  # a 1024 x 50k logit slab per prompt is not needed
    out = model(**kwargs)
    new_cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
    return out.logits[:, -keep:, :].float(), new_cache


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any, Any]:
    """Left-padded ids, attention mask and position ids (0 at each row's first real token).

    Worked example: rows [5, 6, 7] and [8] give ids [[5,6,7],[p,p,8]], mask [[1,1,1],[0,0,1]]
    and positions [[0,1,2],[0,0,0]]: row 2's only token sits at position 0, as it would alone.
    """
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices longest first, so similar lengths share a batch (and memory trouble shows early)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def _model_device(model: Any) -> Any:
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def greedy_generate(model: Any, prompts: Sequence[Sequence[int]], stop_ids: Sequence[int],
                    pad_id: int, max_new_tokens: int, batch_size: int = 16,
                    precision: str = "fp32", progress: bool = False) -> list[Generation]:
    """Greedy continuations of token-id prompts, batched with left padding and a KV cache.

    A row stops at its first stop token (not part of the answer) or after ``max_new_tokens``
    tokens, the stop token included. Finished rows keep being fed padding, which the results
    ignore. Results come back in prompt order.
    """
    import torch

    from gpt2qa.pipeline import autocast_context

    if not prompts:
        return []
    if any(not p for p in prompts):
        raise GPT2QAError("greedy_generate: every prompt needs at least one token")
    device = _model_device(model)
    style = _forward_style(model)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    results: list[Generation | None] = [None] * len(prompts)
    batches = _batches([len(p) for p in prompts], batch_size)
    with torch.inference_mode(), autocast_context(device, precision), \
            _progress(len(prompts), progress, "zero-shot") as bar:
        for idx in batches:
            for i, gen in zip(idx, _greedy_batch(model, style, [prompts[i] for i in idx],
                                                 stops, pad_id, max_new_tokens), strict=True):
                results[i] = gen
            bar.update(len(idx))
    return [r for r in results if r is not None]


def _greedy_batch(model: Any, style: _ForwardStyle, rows: Sequence[Sequence[int]], stops: Any,
                  pad_id: int, max_new_tokens: int) -> list[Generation]:
    import torch

    device = stops.device
    ids, mask, positions = _left_pad(rows, pad_id, device)
    logits, cache = _forward(model, style, ids, mask, positions)
    n = len(rows)
    tokens: list[list[int]] = [[] for _ in range(n)]
    logps: list[list[float]] = [[] for _ in range(n)]
    stop_tok: list[int | None] = [None] * n
    stop_lp: list[float | None] = [None] * n
    done = [False] * n
    next_pos = positions[:, -1:] + 1
    for step in range(max_new_tokens):
        logprobs = torch.log_softmax(logits[:, -1, :], dim=-1)
        best = logprobs.argmax(dim=-1)
        best_lp = logprobs.gather(1, best[:, None])[:, 0]
        is_stop = torch.isin(best, stops)
        stop_mass = logprobs[:, stops].logsumexp(dim=-1)
        best_l, best_lp_l = best.tolist(), best_lp.tolist()
        is_stop_l, stop_mass_l = is_stop.tolist(), stop_mass.tolist()
        for r in range(n):
            if done[r]:
                continue
            if is_stop_l[r]:
                done[r] = True
                stop_tok[r], stop_lp[r] = best_l[r], stop_mass_l[r]
            else:
                tokens[r].append(best_l[r])
                logps[r].append(best_lp_l[r])
        if all(done) or step == max_new_tokens - 1:
            break
        feed = torch.where(torch.tensor(done, device=device), torch.full_like(best, pad_id), best)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits, cache = _forward(model, style, feed[:, None], mask, next_pos, cache)
        next_pos = next_pos + 1
    return [Generation(tuple(tokens[r]), tuple(logps[r]), stop_tok[r], stop_lp[r])
            for r in range(n)]


def continuation_logprobs(model: Any, prompts: Sequence[Sequence[int]],
                          continuations: Sequence[Sequence[int]], stop_ids: Sequence[int],
                          pad_id: int, batch_size: int = 16,
                          precision: str = "fp32") -> list[float]:
    """``logp(c | prompt)`` per row: summed token log-probs of ``c``, plus log P(stop) after it.

    One left-padded forward per batch; row i's continuation fills its last ``len(c_i)``
    positions, so its token j is predicted at position ``width - len(c_i) + j - 1``.
    """
    import torch

    from gpt2qa.pipeline import autocast_context

    if len(prompts) != len(continuations):
        raise GPT2QAError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    device = _model_device(model)
    style = _forward_style(model)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    rows = [list(p) + list(c) for p, c in zip(prompts, continuations, strict=True)]
    out: list[float] = [0.0] * len(rows)
    with torch.inference_mode(), autocast_context(device, precision):
        for idx in _batches([len(r) for r in rows], batch_size):
            keep = max(len(continuations[i]) for i in idx) + 1
            ids, mask, positions = _left_pad([rows[i] for i in idx], pad_id, device)
            logits, _ = _forward(model, style, ids, mask, positions, keep=keep)
            logprobs = torch.log_softmax(logits, dim=-1)
            for b, i in enumerate(idx):
                cont = list(continuations[i])
                first = keep - len(cont) - 1  # the slot that predicts the first token
                total = sum(float(logprobs[b, first + j, tok]) for j, tok in enumerate(cont))
                out[i] = total + float(logprobs[b, keep - 1, stops].logsumexp(-1))
    return out


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="q")


# --------------------------------------------------------------------------------------------
# Examples -> predictions
# --------------------------------------------------------------------------------------------

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
    pad_id = _pad_id(tokenizer)
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

    For bf16/fp16 (CUDA only) the weights are loaded in that type, so autocast has nothing to
    re-cast at each decoding step and the weights take half the memory. Greedy answers then
    differ from fp32 ones on some questions (near-tied logits).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from gpt2qa.pipeline import autocast_context
    from gpt2qa.tokenizer import _load_failure, hub_kwargs

    kwargs: dict[str, Any] = dict(hub_kwargs(name_or_dir))
    if precision != "fp32":
        autocast_context(torch.device(device or "cpu"), precision)  # refuses non-CUDA devices
        kwargs["dtype"] = torch.bfloat16 if precision == "bf16" else torch.float16
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_dir, **kwargs)
    except (OSError, ValueError) as exc:
        raise GPT2QAError(_load_failure(name_or_dir, "causal language model", exc)) from None
    if device is not None:
        model = model.to(device)
    return model.eval()


def run_zero_shot(model_name: str, data_path: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str], config: ZeroShotConfig,
                  device: str | None = None, max_examples: int | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Answer a SQuAD file, write predictions/na_probs/nbest.json, return official metrics.

    The metrics are `evaluate_v2` (with the na-probs, so ``best_f1`` and its threshold are
    included) for v2.0 data or `evaluate_v1` for v1.1, plus ``null_baseline_f1`` (the F1 of
    abstaining everywhere). ``max_examples`` keeps the first N questions, and the metrics are
    over those only.
    """
    from gpt2qa.metrics import evaluate_v1, evaluate_v2, null_baseline
    from gpt2qa.pipeline import pick_device
    from gpt2qa.tokenizer import load_tokenizer

    if max_examples is not None and max_examples < 1:
        raise GPT2QAError(f"max_examples must be >= 1; got {max_examples}")
    dataset = load_squad(data_path, check_offsets=False)
    examples = list(dataset.examples[:max_examples] if max_examples else dataset.examples)
    if not examples:
        raise GPT2QAError(f"{data_path}: no questions to answer")
    tokenizer = load_tokenizer(model_name)
    model = load_causal_lm(model_name, pick_device(device), config.precision)
    predictions = zero_shot_predict(model, tokenizer, examples, config, progress=progress)
    write_predictions(predictions, out_dir)
    preds = {p.qas_id: p.text for p in predictions}
    if dataset.is_v2:
        metrics = evaluate_v2(examples, preds, {p.qas_id: p.na_prob for p in predictions})
        metrics["null_baseline_f1"] = null_baseline(examples)["f1"]
    else:
        metrics = evaluate_v1(examples, preds)
        metrics["null_baseline_f1"] = evaluate_v1(examples, {ex.qas_id: "" for ex in examples})["f1"]
    return metrics


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _unescape(template: str) -> str:
    """Let a shell-typed template say \\n for a newline."""
    return template.replace("\\n", "\n")


def cmd_zero_shot(args: argparse.Namespace) -> int:
    """Handler of ``gpt2qa zero-shot``: prints the metrics as JSON."""
    from gpt2qa.io import check_output_dir

    if not Path(args.data).is_file():
        raise GPT2QAError(f"{args.data}: no such file")
    check_output_dir(args.out_dir, "--out-dir")
    values: dict[str, Any] = {}
    for name in ("shots", "shots_file", "max_new_tokens", "na_scoring", "batch_size", "seed",
                 "precision"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for name in ("template", "shot_template"):
        if getattr(args, name) is not None:
            values[name] = _unescape(getattr(args, name))
    if args.abstain_phrases is not None:
        values["abstain_phrases"] = tuple(p.strip() for p in args.abstain_phrases.split(",")
                                          if p.strip())
    config = ZeroShotConfig(**values)
    metrics = run_zero_shot(args.model, args.data, args.out_dir, config, device=args.device,
                            max_examples=args.max_examples, progress=args.progress)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def add_zero_shot_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``zero-shot`` on an argparse sub-parsers object; its ``func`` is `cmd_zero_shot`."""
    d = ZeroShotConfig()
    p = sub.add_parser("zero-shot", help="answer SQuAD with a causal LM's own head, no "
                                         "fine-tuning (GPT-2 paper baseline)")
    p.add_argument("--model", required=True, help="causal LM directory or hub id")
    p.add_argument("--data", required=True, help="SQuAD JSON file to answer")
    p.add_argument("--out-dir", required=True,
                   help="where predictions.json, na_probs.json, nbest.json go")
    p.add_argument("--shots", type=int, default=None, help=f"solved examples to show "
                                                           f"(default: {d.shots})")
    p.add_argument("--shots-file", default=None, help="SQuAD training file to draw shots from")
    p.add_argument("--template", default=None,
                   help=f"prompt with {{context}} and {{question}}; \\n is a newline "
                        f"(default: {d.template!r})")
    p.add_argument("--shot-template", default=None,
                   help=f"solved-example template, also with {{answer}} "
                        f"(default: {d.shot_template!r})")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"(default: {d.max_new_tokens})")
    p.add_argument("--abstain-phrases", default=None,
                   help=f"comma-separated answers that mean no answer; the first is the one "
                        f"shown and scored (default: {','.join(d.abstain_phrases)})")
    p.add_argument("--na-scoring", choices=NA_SCORINGS, default=None,
                   help=f"(default: {d.na_scoring})")
    p.add_argument("--batch-size", type=int, default=None, help=f"(default: {d.batch_size})")
    p.add_argument("--seed", type=int, default=None, help=f"shot sampling (default: {d.seed})")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help=f"(default: {d.precision})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--max-examples", type=int, default=None,
                   help="answer only the first N questions (metrics cover those only)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="show a progress bar on stderr")
    p.set_defaults(func=cmd_zero_shot)
    return p
