"""Decoding with the model's own language-model head: greedy continuations (`model.generate`
on left-padded batches) and the log-probability of a given continuation.

This module imports torch and transformers; the package's ``__init__`` does not import it, so
that building the CLI's parser stays quick.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm
from transformers import GenerationConfig

from gpt2qa.batching import length_grouped_batches
from gpt2qa.errors import GPT2QAError
from gpt2qa.runtime import autocast_context

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


def pad_token_id(tokenizer: Any) -> int:
    """The id left padding uses: end-of-text, else the pad token."""
    for value in (tokenizer.eos_token_id, tokenizer.pad_token_id):
        if value is not None:
            return int(value)
    raise GPT2QAError(f"{type(tokenizer).__name__} has neither an eos nor a pad token to pad with")



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



def _left_pad(rows: Sequence[Sequence[int]], pad_id: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ids, attention mask and position ids (0 at each row's first real token).

    Worked example: rows [5, 6, 7] and [8] give ids [[5,6,7],[p,p,8]], mask [[1,1,1],[0,0,1]]
    and positions [[0,1,2],[0,0,0]]: row 2's only token sits at position 0, as it would alone.
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@contextmanager
def _plain_generation_config(model: Any) -> Iterator[None]:
    """Let `generate` see no model-specific defaults while inside.

    `generate` fills every setting the call leaves unset from the model's own
    generation_config.json, and some ask for sampling settings or a repetition penalty (Qwen2's
    does); a penalty would change greedy tokens and their scores. The model's config is put
    back on exit.
    """
    own = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = own


def greedy_generate(model: Any, prompts: Sequence[Sequence[int]], stop_ids: Sequence[int],
                    pad_id: int, max_new_tokens: int, batch_size: int = 16,
                    precision: str = "fp32", progress: bool = False) -> list[Generation]:
    """Greedy continuations of token-id prompts: `model.generate` on left-padded batches.

    A row stops at its first stop token (not part of the answer) or after ``max_new_tokens``
    tokens, the stop token included; finished rows are fed padding, which the results ignore.
    Each answer token's log-prob is its transition score (`compute_transition_scores` on the
    log-softmaxed scores); ``stop_logprob`` sums the probability of every stop token at the
    step that stopped. Results come back in prompt order.
    """
    if not prompts:
        return []
    if any(not p for p in prompts):
        raise GPT2QAError("greedy_generate: every prompt needs at least one token")
    device = _model_device(model)
    stop_list = sorted(set(stop_ids))
    stops = torch.tensor(stop_list, dtype=torch.long, device=device)
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                              eos_token_id=stop_list, pad_token_id=pad_id, output_scores=True,
                              return_dict_in_generate=True)
    results: list[Generation | None] = [None] * len(prompts)
    with torch.inference_mode(), autocast_context(device, precision), \
            _plain_generation_config(model), \
            tqdm(total=len(prompts), desc="zero-shot", unit="q", disable=not progress) as bar:
        for idx in length_grouped_batches([len(p) for p in prompts], batch_size):
            ids, mask, _ = _left_pad([prompts[i] for i in idx], pad_id, device)
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            token_lp = model.compute_transition_scores(out.sequences, out.scores,
                                                       normalize_logits=True)
            # [rows, steps]: log P(any stop token) at each step.
            stop_lp = torch.stack([torch.log_softmax(s.float(), -1)[:, stops].logsumexp(-1)
                                   for s in out.scores], dim=1)
            new = out.sequences[:, ids.shape[1]:]
            is_stop = torch.isin(new, stops)
            for b, i in enumerate(idx):
                results[i] = _generation(new[b].tolist(), token_lp[b].tolist(),
                                         stop_lp[b].tolist(), is_stop[b].tolist())
            bar.update(len(idx))
    return [r for r in results if r is not None]


def _generation(tokens: list[int], token_lp: list[float], stop_lp: list[float],
                is_stop: list[bool]) -> Generation:
    """One row of `generate`'s output, cut at its first stop token."""
    for step, stopped in enumerate(is_stop):
        if stopped:
            return Generation(tuple(tokens[:step]), tuple(token_lp[:step]), tokens[step],
                              stop_lp[step])
    return Generation(tuple(tokens), tuple(token_lp), None, None)


def continuation_logprobs(model: Any, prompts: Sequence[Sequence[int]],
                          continuations: Sequence[Sequence[int]], stop_ids: Sequence[int],
                          pad_id: int, batch_size: int = 16,
                          precision: str = "fp32") -> list[float]:
    """``logp(c | prompt)`` per row: summed token log-probs of ``c``, plus log P(stop) after it.

    One left-padded forward per batch; row i's continuation fills its last ``len(c_i)``
    positions, so its token j is predicted at position ``width - len(c_i) + j - 1``.
    """
    if len(prompts) != len(continuations):
        raise GPT2QAError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    device = _model_device(model)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    rows = [list(p) + list(c) for p, c in zip(prompts, continuations, strict=True)]
    out: list[float] = [0.0] * len(rows)
    with torch.inference_mode(), autocast_context(device, precision):
        for idx in length_grouped_batches([len(r) for r in rows], batch_size):
            keep = max(len(continuations[i]) for i in idx) + 1
            ids, mask, positions = _left_pad([rows[i] for i in idx], pad_id, device)
            # logits_to_keep: a window x vocabulary logit slab per row is not needed.
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                           use_cache=False, logits_to_keep=keep).logits
            logprobs = torch.log_softmax(logits[:, -keep:, :].float(), dim=-1)
            for b, i in enumerate(idx):
                cont = list(continuations[i])
                first = keep - len(cont) - 1  # the slot that predicts the first token
                total = sum(float(logprobs[b, first + j, tok]) for j, tok in enumerate(cont))
                out[i] = total + float(logprobs[b, keep - 1, stops].logsumexp(-1))
    return out
