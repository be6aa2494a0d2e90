"""The generative head: the backbone's own language-model head writes the answer after the
window, or `<|null|>` to abstain.

One training sequence is the window, ended by the answer marker, then the answer:

    Q <|sep|> C <|answer|> 1889 <|endoftext|>        (answerable window)
    Q <|sep|> C <|answer|> <|null|> <|endoftext|>    (the window does not hold the answer)

The loss is the cross-entropy of the answer tokens only (1889 or <|null|>, and the end token),
each predicted from the position before it: the marker predicts the first answer token. It is
averaged per window, then over windows.

At inference one window gives, like a span head's:
  null score  log-odds of <|null|> as the first answer token: logit[null] - logsumexp(others).
              Decoded as an answerability logit (`null_scoring` classifier), so the question's
              na_prob is min over its windows of P(<|null|> first) and the tuned
              null_score_diff_threshold is on the same log-odds scale.
  answer      greedy decoding with the KV cache, <|null|> banned as the first token, stopped at
              the end token or max_answer_length tokens. Its score is the summed log-probability
              of the written tokens (the end token included); decode keeps the answer of the
              window where that is highest.
With `constrain_to_context` every step may only continue a token sequence that occurs in the
window's context (`ContextTrie`), so the answer is a piece of the context. It is handed on as a
span: its first and last context positions carry half the score each, every other position is
masked, and `decode` reads it exactly as a span head's best span. Unconstrained, a written
answer that is a piece of the window's context is handed on the same way; one that is not
offers no span, and `inference.run_model` renders its tokens (`extra["written"]`, -1 padded)
as free text, which decoding offers at offsets (-1, -1) with its log-probability
(`extra["written_score"]`).

The output layer is the input embedding matrix when the backbone ties them (GPT-2, Qwen2.5-0.5B,
Llama-3.2-1B); otherwise the model's own `lm_head` (loaded from the checkpoint by the builder).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gpt2qa.decode import MASK_VALUE


class ContextTrie:
    """The prefix trie of every token sequence that occurs in one context, walked lazily.

    A node is the set of context positions where the prefix read so far starts; its children
    are the tokens that follow those occurrences. Worked example, context tokens [5, 7, 5, 9]:
    the root allows {5, 7, 9}; after 5 (starts {0, 2}) the next token may be 7 or 9; after
    5, 9 (starts {2}) the context ends, so only the end token may follow.
    """

    def __init__(self, tokens: Sequence[int]) -> None:
        self.tokens = list(tokens)
        self.starts = list(range(len(self.tokens)))
        self.depth = 0

    def allowed(self) -> set[int]:
        """Tokens that extend the current prefix to a sequence of the context."""
        end = len(self.tokens)
        return {self.tokens[i + self.depth] for i in self.starts if i + self.depth < end}

    def advance(self, token: int) -> None:
        end = len(self.tokens)
        self.starts = [i for i in self.starts
                       if i + self.depth < end and self.tokens[i + self.depth] == token]
        self.depth += 1

    def first_start(self) -> int | None:
        """Where the prefix read so far first occurs in the context (None: nowhere)."""
        return self.starts[0] if self.starts else None


def find_run(tokens: Sequence[int], piece: Sequence[int]) -> int | None:
    """The first index where `piece` occurs in `tokens` as a contiguous run, else None."""
    n = len(piece)
    for i in range(len(tokens) - n + 1):
        if list(tokens[i:i + n]) == list(piece):
            return i
    return None


def output_weight(model: Any) -> torch.Tensor:
    """The (vocabulary, width) matrix that turns hidden states into next-token logits: the
    model's own `lm_head`, else the input embeddings (with LoRA's trained token rows)."""
    if model.lm_head is not None:
        return model.lm_head.weight
    embedding = model.transformer.get_input_embeddings()
    adapter = getattr(embedding, "token_adapter", None)
    if adapter is not None and not adapter.merged and adapter.active_adapters:
        return adapter.get_merged_weights(adapter.active_adapters)
    return getattr(embedding, "base_layer", embedding).weight


def answer_targets(input_ids: torch.Tensor, null_index: torch.Tensor, start: torch.Tensor,
                   end: torch.Tensor, null_id: int, end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window's answer tokens then the end token, as a (batch, longest) matrix and its
    validity mask. A window labelled null (start == null_index) answers [<|null|>, end].

    Worked example: input_ids [.. 11 12 13 ..] with the answer at positions 4..5 (tokens 12,
    13) gives [12, 13, end]; a null window gives [null, end, *] with * masked out.
    """
    is_null = start == null_index
    n_answer = torch.where(is_null, torch.ones_like(start), end - start + 1)
    width = int(n_answer.max()) + 1
    j = torch.arange(width, device=input_ids.device).unsqueeze(0)
    source = (start.unsqueeze(1) + j).clamp(max=input_ids.shape[1] - 1)
    tokens = input_ids.gather(1, source)
    tokens = torch.where(is_null.unsqueeze(1) & (j == 0), null_id, tokens)
    tokens = torch.where(j == n_answer.unsqueeze(1), end_id, tokens)
    return tokens, j <= n_answer.unsqueeze(1)


def answer_loss(model: Any, input_ids: torch.Tensor, null_index: torch.Tensor,
                start: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced cross-entropy on the answer tokens; returns (loss, the hidden states
    of the window positions) so task heads read the same states as under a span head."""
    ids = model.answer_ids
    targets, valid = answer_targets(input_ids, null_index, start, end, ids.null, ids.pad)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1)
    j = torch.arange(targets.shape[1], device=input_ids.device).unsqueeze(0)
    # The answer (all but its end token) goes right after the marker; the rest stays padding.
    width = int((null_index + valid.sum(1)).max())
    sequence = torch.full((input_ids.shape[0], max(width, input_ids.shape[1])), ids.pad,
                          dtype=input_ids.dtype, device=input_ids.device)
    sequence[:, :input_ids.shape[1]] = input_ids
    feed = valid & (j < valid.sum(1, keepdim=True) - 1)
    place = (null_index.unsqueeze(1) + 1 + j).clamp(max=sequence.shape[1] - 1)
    sequence[rows.expand_as(place)[feed], place[feed]] = targets[feed]
    lengths = null_index + valid.sum(1)
    mask = (torch.arange(sequence.shape[1], device=input_ids.device).unsqueeze(0)
            < lengths.unsqueeze(1)).long()
    hidden = model.transformer(input_ids=sequence,
                               attention_mask=None if model.skip_padding_mask else mask,
                               use_cache=False).last_hidden_state
    # Position null_index + j predicts target j.
    at = (null_index.unsqueeze(1) + j).clamp(max=sequence.shape[1] - 1)
    with torch.autocast(hidden.device.type, enabled=False):
        states = hidden[rows.expand_as(at)[valid], at[valid]].float()
        logits = states @ output_weight(model).float().t()
        per_token = F.cross_entropy(logits, targets[valid], reduction="none")
        # Each window's mean over its answer tokens, then the mean over windows: like the span
        # heads' per-window loss, so that a batch split over processes or micro-batches
        # averages to the same number whatever the answers' lengths.
        per_window = per_token.new_zeros(input_ids.shape[0]).index_add(
            0, rows.expand_as(at)[valid], per_token)
        loss = (per_window / valid.sum(1)).mean()
    return loss, hidden[:, :input_ids.shape[1]]


def write_answers(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  context_mask: torch.Tensor, null_index: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                             dict[str, torch.Tensor]]:
    """Greedy answers for a batch of windows; returns (start logits, end logits, null score,
    the window positions' hidden states, {"written": tokens, "written_score": their
    log-probability}) as the module docstring says."""
    ids, decoding = model.answer_ids, model.config.decoding
    batch, width = input_ids.shape
    rows = torch.arange(batch, device=input_ids.device)
    out = model.transformer(input_ids=input_ids,
                            attention_mask=None if model.skip_padding_mask else attention_mask,
                            use_cache=True)
    hidden, past = out.last_hidden_state, _cache(out)
    cache_name = _cache_argument(model.transformer)
    weight = output_weight(model).float()
    with torch.autocast(hidden.device.type, enabled=False):
        logits = hidden[rows, null_index].float() @ weight.t()
    others = logits.clone()
    others[:, ids.null] = -torch.inf
    null_score = logits[:, ids.null] - torch.logsumexp(others, dim=-1)

    contexts = [input_ids[r][context_mask[r]].tolist() for r in range(batch)]
    tries = [ContextTrie(c) for c in contexts] if decoding.constrain_to_context else None
    written: list[list[int]] = [[] for _ in range(batch)]
    scores = torch.zeros(batch, dtype=torch.float64)
    done = [False] * batch
    mask = attention_mask.clone()
    for step in range(decoding.max_answer_length + 1):
        logp = torch.log_softmax(logits, dim=-1)
        allowed = _allowed(logits.shape, step, tries, done, ids, decoding.max_answer_length)
        choice = logits.masked_fill(~allowed.to(logits.device), -torch.inf).argmax(dim=-1)
        for r in range(batch):
            if done[r]:
                continue
            token = int(choice[r])
            scores[r] += float(logp[r, token])
            if token == ids.pad:
                done[r] = True
                continue
            written[r].append(token)
            if tries is not None:
                tries[r].advance(token)
        if all(done) or step == decoding.max_answer_length:
            break
        mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
        position = (null_index + 1 + step).unsqueeze(1)
        out = model.transformer(input_ids=choice.unsqueeze(1), attention_mask=mask,
                                position_ids=position, use_cache=True, **{cache_name: past})
        past = _cache(out)
        with torch.autocast(hidden.device.type, enabled=False):
            logits = out.last_hidden_state[:, -1].float() @ weight.t()
    start, end = _as_spans(written, scores, contexts, context_mask, tries, width)
    padded = torch.full((batch, decoding.max_answer_length), -1.0)
    for r, tokens in enumerate(written):
        padded[r, :len(tokens)] = torch.tensor(tokens, dtype=torch.float32)
    return (start.to(hidden.device), end.to(hidden.device), null_score, hidden,
            {"written": padded.to(hidden.device),
             "written_score": scores.float().to(hidden.device)})


def _cache(output: Any) -> Any:
    """The KV cache of a forward: `cache` in transformers >= 5.2x, `past_key_values` before."""
    return output.get("cache", output.get("past_key_values"))


def _cache_argument(backbone: nn.Module) -> str:
    """The forward's name for the KV cache it continues from (see `_cache`)."""
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _allowed(shape: torch.Size, step: int, tries: list[ContextTrie] | None,
             done: list[bool], ids: Any, max_length: int) -> torch.Tensor:
    """Which next tokens each row may write: never <|null|> (its probability is the null
    score) nor gpt2qa's other tokens; not the end token first; only the end token once
    max_length tokens are written; with the trie only continuations of a context sequence
    (or the end token)."""
    allowed = torch.ones(shape, dtype=torch.bool)
    allowed[:, [i for i in (ids.null, ids.sep, ids.answer, ids.bos) if i is not None]] = False
    if tries is not None:
        allowed[:] = False
        for r, trie in enumerate(tries):
            if not done[r]:
                allowed[r, sorted(trie.allowed())] = True
    if step == 0:
        allowed[:, ids.pad] = False
        # An empty context has nothing to copy: the row writes the end token and offers no span.
        allowed[~allowed.any(dim=1), ids.pad] = True
    else:
        allowed[:, ids.pad] = True
    if step == max_length:
        allowed[:] = False
        allowed[:, ids.pad] = True
    return allowed


def _as_spans(written: list[list[int]], scores: torch.Tensor, contexts: list[list[int]],
              context_mask: torch.Tensor, tries: list[ContextTrie] | None, width: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each written answer as start/end logits over the window (see the module docstring)."""
    start = torch.full((len(written), width), MASK_VALUE)
    end = torch.full((len(written), width), MASK_VALUE)
    for r, tokens in enumerate(written):
        if not tokens:
            continue
        at = tries[r].first_start() if tries is not None else find_run(contexts[r], tokens)
        if at is None:
            continue
        offset = int(context_mask[r].nonzero()[0])
        half = float(scores[r]) / 2
        start[r, offset + at] = half
        end[r, offset + at + len(tokens) - 1] = half
    return start, end


def tied(backbone: nn.Module) -> bool:
    """Whether the backbone's LM head is its input embedding matrix."""
    config = getattr(backbone, "config", None)
    text = getattr(config, "get_text_config", lambda: config)()
    return bool(getattr(text, "tie_word_embeddings", True))
