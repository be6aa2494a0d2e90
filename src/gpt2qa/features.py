"""The `features` stage: examples -> model inputs (sliding windows, char <-> token spans, labels).

GPT-2 has no [CLS], [SEP] or [PAD]. The 2019 experiment wrote "[CLS]"/"[SEP]" as text and
they became token id 0 ("!"). Here the separator and the no-answer slot are real added special
tokens (`<|sep|>`, `<|null|>`), registered with the tokenizer so the model can resize its
embedding matrix. Padding uses the end-of-text token (`<|endoftext|>`, GPT-2's only special
token; `</s>` for Llama, which has no pad token) and is always masked out by the attention
mask: that is the one documented use of it.

Sequence layouts (`layout` x `null_position`), for question Q and one window C of context:

    question-first, last:  Q <|sep|> C <|null|>     (the null slot has seen everything)
    question-first, first: <|null|> Q <|sep|> C     (BERT/run_qa style; sees nothing)
    context-first,  last:  C <|sep|> Q <|null|>
    context-first,  first: <|null|> C <|sep|> Q     (the 2019 experiment's layout)

`null_position="classifier"` uses the `last` layout; the model then reads answerability from a
separate classifier on the `<|null|>` token instead of from its span logits.

BOS: a tokenizer that puts a beginning-of-sequence token in front of its encodings (Llama's
`<s>`, Gemma's `<bos>`; GPT-2, NeoX and Qwen add none) gets it at position 0 of every layout,
before everything else, since its model saw BOS there throughout pre-training:
`<s> Q <|sep|> C <|null|>`, and `<s> <|null|> Q <|sep|> C` (null index 1) for `first`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpt2qa.config import FeatureConfig
from gpt2qa.data import SquadExample
from gpt2qa.errors import GPT2QAError

SEP_TOKEN = "<|sep|>"
NULL_TOKEN = "<|null|>"
ANSWER_TOKEN = "<|answer|>"
"""The generative head's answer marker: it takes the `<|null|>` slot at the end of the window,
and the answer (or `<|null|>`) is written after it: `Q <|sep|> C <|answer|> 1889 <|endoftext|>`.
Registered only for generative models, so the span heads' vocabulary stays as it was."""


@dataclass(frozen=True)
class SpecialIds:
    """Token ids of the added special tokens, the padding id, and the BOS id put at position 0
    (None when the tokenizer adds no BOS of its own)."""

    sep: int
    null: int
    pad: int
    bos: int | None = None
    answer: int | None = None
    """The answer marker (generative models only): it ends the window in place of <|null|>."""


@dataclass(frozen=True)
class Feature:
    """One window of one example.

    Context tokens occupy `input_ids[context_offset : context_offset + len(token_spans)]`;
    `token_spans[i]` is the (start, end) character span in the example's context of the i-th
    of them, with surrounding white space trimmed (a pure white-space token has start == end).
    `start_position`/`end_position` index `input_ids`; both equal `null_index` when the
    window holds no answer. `extra` is the task's own payload for its heads and decoding
    (None for SQuAD; HotpotQA: the rendered context and the sentences in the window).
    """

    qas_id: str
    example_index: int
    window_index: int
    input_ids: tuple[int, ...]
    context_offset: int
    token_spans: tuple[tuple[int, int], ...]
    null_index: int
    start_position: int
    end_position: int
    extra: Any = None

    @property
    def is_null(self) -> bool:
        return self.start_position == self.null_index

    def context_end(self) -> int:
        """Exclusive end of the context tokens in `input_ids`."""
        return self.context_offset + len(self.token_spans)


def prepare_tokenizer(tokenizer: Any, answer: bool = False) -> SpecialIds:
    """Register gpt2qa's special tokens with `tokenizer` (idempotent) and return their ids;
    `answer`: the generative head's answer marker too.

    Raises if a token would fall back to the unknown/`<|endoftext|>` id, which is exactly the
    silent "[CLS] -> 0" failure this project exists to avoid.
    """
    wanted = (SEP_TOKEN, NULL_TOKEN, ANSWER_TOKEN) if answer else (SEP_TOKEN, NULL_TOKEN)
    missing = [t for t in wanted if t not in tokenizer.get_vocab()]
    if missing:
        try:
            tokenizer.add_special_tokens({"additional_special_tokens": missing},
                                         replace_extra_special_tokens=False)
        except TypeError:  # transformers releases without that keyword keep old ones anyway
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
    # Pad with end-of-text (always masked out); a tokenizer without one may still have a pad.
    pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    if pad is None:
        raise GPT2QAError("the tokenizer has neither an end-of-text nor a pad token to pad with")
    ids = SpecialIds(sep=tokenizer.convert_tokens_to_ids(SEP_TOKEN),
                     null=tokenizer.convert_tokens_to_ids(NULL_TOKEN),
                     pad=pad, bos=added_bos_id(tokenizer),
                     answer=tokenizer.convert_tokens_to_ids(ANSWER_TOKEN) if answer else None)
    for name, value in zip(wanted, (ids.sep, ids.null, ids.answer), strict=False):
        if value is None or value in (0, ids.pad, tokenizer.unk_token_id) \
                or tokenizer.convert_ids_to_tokens(value) != name:
            raise GPT2QAError(f"special token {name} did not get its own id (got {value})")
    return ids


def added_bos_id(tokenizer: Any) -> int | None:
    """The BOS id if the tokenizer itself puts one in front of an encoding (Llama), else None
    (GPT-2 declares `<|endoftext|>` as its BOS but never adds it)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bos if with_special[:1] == [bos] and without[:1] != [bos] else None


def trim_span(context: str, start: int, end: int) -> tuple[int, int]:
    """Shrink a character span so it neither starts nor ends with white space.

    GPT-2 tokens carry their leading space: in "in 1889" the token " 1889" has the untrimmed
    span (2, 7); trimmed it is (3, 7), so the decoded answer is "1889", not " 1889".
    """
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def char_span_to_token_span(spans: Sequence[tuple[int, int]], char_start: int,
                            char_end: int) -> tuple[int, int] | None:
    """Map an answer's characters [char_start, char_end) to inclusive token indices.

    The start token is the first non-empty token that ends after `char_start`; the end token
    is the last non-empty token that starts before `char_end`. Worked example, context
    "Paris, 1889s." with trimmed token spans
        0:"Paris"(0,5) 1:","(5,6) 2:" 18"(7,9) 3:"89"(9,11) 4:"s"(11,12) 5:"."(12,13)
    answer "1889" = chars [7, 11) -> tokens (2, 3); answer "1889s" = [7, 12) -> (2, 4);
    answer "89s" = [9, 12) -> (3, 4). An answer that starts or ends inside a token is widened
    to whole tokens ("889" = [8, 11) -> (2, 3), decoding back as "1889"). Returns None when no
    token overlaps the answer (for example an answer made only of white space).
    """
    start_tok = end_tok = None
    for i, (s, e) in enumerate(spans):
        if s == e:
            continue
        if start_tok is None and e > char_start:
            start_tok = i
        if s < char_end:
            end_tok = i
    if start_tok is None or end_tok is None or end_tok < start_tok:
        return None
    return start_tok, end_tok


def window_starts(n_context: int, window: int, doc_stride: int) -> list[int]:
    """Start offsets of the sliding windows over `n_context` tokens.

    With 10 context tokens, windows of 4 and doc_stride 3: starts [0, 3, 6]; the last window
    [6, 10) reaches the end, so no further window is made. An empty context still gets one
    (empty) window so that the question is not lost.
    """
    if window < 1:
        raise GPT2QAError("no room for context tokens in the window")
    starts = [0]
    while starts[-1] + window < n_context:
        starts.append(starts[-1] + min(window, doc_stride))
    return starts


def assemble_window(config: FeatureConfig, ids: SpecialIds, question: Sequence[int],
              context: Sequence[int]) -> tuple[list[int], int, int]:
    """Lay out one window; return (input_ids, context_offset, null_index). A generative
    model's windows end with its answer marker where the span heads' end with <|null|>."""
    prefix = [] if ids.bos is None else [ids.bos]
    last = ids.null if ids.answer is None else ids.answer
    if config.layout == "question-first":
        body = [*question, ids.sep]
        offset = len(body)
        body += context
    else:
        body = [*context, ids.sep, *question]
        offset = 0
    if config.null_position == "first":
        return [*prefix, ids.null, *body], len(prefix) + 1 + offset, len(prefix)
    return [*prefix, *body, last], len(prefix) + offset, len(prefix) + len(body)


def context_budget(config: FeatureConfig, ids: SpecialIds, question: Sequence[int]) -> int:
    """How many context tokens fit in one window beside `question`: max_seq_length less the
    question, <|sep|>, <|null|> and the BOS slot when the tokenizer adds one, so that every
    window of every task is at most max_seq_length tokens."""
    return config.max_seq_length - len(question) - 2 - (ids.bos is not None)


def encode_texts(tokenizer: Any, texts: list[str], offsets: bool) -> Any:
    """Tokenise `texts` without special tokens, optionally with character offsets."""
    # split_special_tokens: a context that literally contains "<|sep|>" must stay plain text.
    return tokenizer(texts, add_special_tokens=False, return_offsets_mapping=offsets,
                     split_special_tokens=True, return_attention_mask=False)


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer: Any,
                                 config: FeatureConfig,
                                 special_ids: SpecialIds | None = None) -> list[Feature]:
    """Tokenise every example (in batches, each distinct context once) and cut it into windows.

    Training labels use the first gold answer; a window that does not contain the whole
    answer, and every unanswerable example, is labelled with its null index.
    """
    ids = special_ids or prepare_tokenizer(tokenizer)
    contexts = list(dict.fromkeys(ex.context for ex in examples))
    ctx_enc = encode_texts(tokenizer, contexts, offsets=True)
    ctx_tokens: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}
    for text, tok_ids, offs in zip(contexts, ctx_enc["input_ids"], ctx_enc["offset_mapping"],
                                   strict=True):
        ctx_tokens[text] = (tok_ids, [trim_span(text, s, e) for s, e in offs])
    q_enc = encode_texts(tokenizer, [ex.question.strip() for ex in examples], offsets=False)

    features: list[Feature] = []
    for ex_index, (ex, q_ids) in enumerate(zip(examples, q_enc["input_ids"], strict=True)):
        question = q_ids[: config.max_query_length]
        tok_ids, spans = ctx_tokens[ex.context]
        answer_tokens = None
        if ex.answers and not ex.is_impossible:
            gold = ex.answers[0]
            answer_tokens = char_span_to_token_span(spans, gold.answer_start, gold.answer_end)
        window = context_budget(config, ids, question)
        for w, start in enumerate(window_starts(len(tok_ids), window, config.doc_stride)):
            end = min(start + window, len(tok_ids))
            input_ids, offset, null_index = assemble_window(config, ids, question, tok_ids[start:end])
            start_pos = end_pos = null_index
            if answer_tokens is not None and start <= answer_tokens[0] \
                    and answer_tokens[1] < end:
                start_pos = answer_tokens[0] - start + offset
                end_pos = answer_tokens[1] - start + offset
            features.append(Feature(
                qas_id=ex.qas_id, example_index=ex_index, window_index=w,
                input_ids=tuple(input_ids), context_offset=offset,
                token_spans=tuple(spans[start:end]), null_index=null_index,
                start_position=start_pos, end_position=end_pos))
    return features


def feature_answer_text(feature: Feature, context: str) -> str:
    """The context text that a feature's label points at ("" for a null label)."""
    if feature.is_null:
        return ""
    first = feature.token_spans[feature.start_position - feature.context_offset]
    last = feature.token_spans[feature.end_position - feature.context_offset]
    return context[first[0]:last[1]]


def oracle_answers(examples: Sequence[SquadExample], features: Sequence[Feature]) -> dict[str, str]:
    """For each answerable example: its gold label decoded back to text through the offsets.

    This is the best any model can do with these features; scoring it against the gold answers
    measures what tokenisation and windowing lose. An answer that no window holds whole
    decodes to "".
    """
    out = {ex.qas_id: "" for ex in examples if ex.answers and not ex.is_impossible}
    for f in features:
        if f.qas_id in out and not out[f.qas_id] and not f.is_null:
            out[f.qas_id] = feature_answer_text(f, examples[f.example_index].context)
    return out


def span_failure_kind(spans: Sequence[tuple[int, int]], char_start: int, char_end: int,
                      decoded: str) -> str:
    """Why a gold answer did not survive tokenisation, for `check-spans`.

    "sub-token": the answer starts or ends strictly inside a token (in "1889s" with tokens
    "18", "89s", the gold "1889" ends inside "89s"), so no token span can match it: an
    annotation finer than the vocabulary, not an offset bug. "window": no window holds the
    whole answer. "other": anything else, which would point at an offset bug.
    """
    if not decoded:
        return "window"
    if any(s < char_start < e or s < char_end < e for s, e in spans):
        return "sub-token"
    return "other"


MIN_ANSWER_RECALL = 0.9
"""Below this share of answerable training questions whose gold span fits some window, training
would mostly learn to abstain; `gpt2qa train` stops instead."""


def answer_recall(examples: Sequence[SquadExample], features: Sequence[Feature]) -> float:
    """Share of answerable examples whose gold span lies whole inside at least one window."""
    answerable = {ex.qas_id for ex in examples if ex.answers and not ex.is_impossible}
    if not answerable:
        return 1.0
    found = {f.qas_id for f in features if not f.is_null and f.qas_id in answerable}
    return len(found) / len(answerable)


def check_answer_recall(examples: Sequence[SquadExample], features: Sequence[Feature],
                        config: FeatureConfig, source: str) -> float:
    """`answer_recall`, refused in one line below MIN_ANSWER_RECALL (a tokenizer that loses
    text, or windows too short for the answers)."""
    recall = answer_recall(examples, features)
    if recall < MIN_ANSWER_RECALL:
        raise GPT2QAError(
            f"{source}: only {100 * recall:.1f}% of the answerable training questions keep their "
            f"gold answer inside a window (max_seq_length {config.max_seq_length}, doc_stride "
            f"{config.doc_stride}); check the tokenizer with `gpt2qa check-spans`")
    return recall
