"""Prompts: render solved examples and the question, fit them into the model's window, and
read abstentions back out of an answer."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpt2qa.data import SquadExample
from gpt2qa.errors import GPT2QAError
from gpt2qa.metrics import normalize_answer
from gpt2qa.readers import load_examples
from gpt2qa.zeroshot.settings import ZeroShotConfig


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
    dataset = load_examples(path, check_offsets=False)
    ids = {ex.qas_id for ex in exclude}
    contexts = {ex.context for ex in exclude}
    pool = [ex for ex in dataset.examples if ex.qas_id not in ids and ex.context not in contexts]
    if len(pool) < k:
        raise GPT2QAError(f"{path}: shots={k} but only {len(pool)} questions are usable as shots "
                          f"(those sharing an id or context with the evaluated data are left out)")
    return tuple(random.Random(seed).sample(pool, k))

