"""HotpotQA's windows: paragraph selection, rendering with titles, one window per question.

Ten paragraphs rarely fit one window and the two gold ones must be seen together, so the
paragraphs are ranked by a lexical relevance score and the best are packed into the window:

1. score(p) = sum of idf(w) over the question's content words w found in p's title or text
   (idf over this question's paragraphs), plus `TITLE_WEIGHT` x idf for those in the title;
2. the top paragraph is taken; for the rest, a paragraph whose title is named in the text of
   the top paragraph gets `HOP_WEIGHT` more (the bridge entity: "founded by Quell Mebbit"
   points at the paragraph titled "Quell Mebbit");
3. paragraphs are added in rank order while they fit, skipping one that does not.

The window is the SQuAD layout with the selected paragraphs as the context, each rendered as

    "Tavrik: Tavrik was founded by Quell Mebbit. It has 31,000 people.\\nQuell Mebbit: ..."

and every sentence's character span in that text is kept. The model reads:
  - the span from the span head (the `<|null|>` slot is the target for yes/no answers and for
    spans the selection lost);
  - the answer type (span / yes / no) from the `<|null|>` token, which has seen everything;
  - one supporting-fact score per sentence from the sentence's last token.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpt2qa.config import FeatureConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import (
    Feature,
    SpecialIds,
    assemble_window,
    char_span_to_token_span,
    context_budget,
    encode_texts,
    feature_answer_text,
    prepare_tokenizer,
    trim_span,
)
from gpt2qa.tasks.hotpotqa.data import ANSWER_TYPES, HotpotExample, Paragraph

TITLE_WEIGHT = 1.0
HOP_WEIGHT = 3.0
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset("""a an the of in on at to for by with from and or is was were are be been
what which who whom whose where when why how did do does that this these those it its as
same both than first more less his her their he she they also not""".split())


@dataclass(frozen=True)
class Sentence:
    """One sentence of the rendered context: its key and trimmed character span."""

    title: str
    index: int
    start: int
    end: int


@dataclass(frozen=True)
class HotpotWindow:
    """HotpotQA's payload on a window's `Feature` (`Feature.extra`).

    ``sentence_positions[k]`` is the index in the feature's ``input_ids`` of the last token of
    ``sentence_keys[k]``, whose label is ``sentence_labels[k]``. Sentences cut off by the
    window are not listed. ``answer_type`` indexes `ANSWER_TYPES`; ``context`` is the
    rendered text the token spans point into.
    """

    context: str
    titles: tuple[str, ...]
    answer_type: int
    sentence_positions: tuple[int, ...]
    sentence_keys: tuple[tuple[str, int], ...]
    sentence_labels: tuple[int, ...]


def window_of(feature: Feature) -> HotpotWindow:
    """The HotpotQA payload of a feature that `convert_hotpot_examples` made."""
    assert isinstance(feature.extra, HotpotWindow)
    return feature.extra


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def rank_paragraphs(question: str, paragraphs: Sequence[Paragraph],
                    hop: bool = True) -> list[int]:
    """Paragraph indices, most relevant first (see the module docstring); ties keep order."""
    q = content_words(question)
    titles = [content_words(p.title) for p in paragraphs]
    words = [t | content_words("".join(p.sentences)) for t, p in zip(titles, paragraphs,
                                                                     strict=True)]
    n = len(paragraphs)
    idf = {w: math.log((1 + n) / (1 + sum(w in d for d in words))) + 1.0 for w in q}
    scores = [sum(idf[w] for w in q & d) + TITLE_WEIGHT * sum(idf[w] for w in q & t)
              for d, t in zip(words, titles, strict=True)]
    order = sorted(range(n), key=lambda i: -scores[i])
    if not hop or n < 2:
        return order
    top = order[0]
    top_text = "".join(paragraphs[top].sentences).lower()
    bonus = [HOP_WEIGHT if i != top and p.title.strip() and p.title.lower() in top_text
             else 0.0 for i, p in enumerate(paragraphs)]
    rest = sorted(order[1:], key=lambda i: -(scores[i] + bonus[i]))
    return [top, *rest]


def render(paragraphs: Sequence[Paragraph]) -> tuple[str, list[Sentence]]:
    """The context text and every sentence's trimmed span in it.

    Worked example: [("Tavrik", ["Tavrik was founded.", " It grew."])] renders as
    "Tavrik: Tavrik was founded. It grew." with sentences (8, 27) and (28, 36).
    """
    parts: list[str] = []
    sentences: list[Sentence] = []
    pos = 0
    for k, para in enumerate(paragraphs):
        head = ("\n" if k else "") + f"{para.title}:"
        parts.append(head)
        pos += len(head)
        for i, text in enumerate(para.sentences):
            piece = text if text[:1].isspace() else " " + text
            parts.append(piece)
            start, end = trim_span(piece, 0, len(piece))
            sentences.append(Sentence(para.title, i, pos + start, pos + end))
            pos += len(piece)
    return "".join(parts), sentences


def _answer_chars(example: HotpotExample, context: str,
                  sentences: Sequence[Sentence]) -> tuple[int, int] | None:
    """Where the span answer sits in the rendered context: the first occurrence inside a
    supporting sentence, else the first anywhere (case-insensitive as a fallback)."""
    answer = example.answer.strip()
    if not answer:
        return None
    facts = set(example.supporting_facts)
    for haystack, needle in ((context, answer), (context.lower(), answer.lower())):
        found = haystack.find(needle)
        first = found
        while found != -1:
            if any((s.title, s.index) in facts and s.start <= found < s.end for s in sentences):
                return found, found + len(needle)
            found = haystack.find(needle, found + 1)
        if first != -1:
            return first, first + len(needle)
    return None


def convert_hotpot_examples(examples: Sequence[HotpotExample], tokenizer: Any,
                            config: FeatureConfig, special_ids: SpecialIds | None = None,
                            hop: bool = True) -> list[Feature]:
    """One window per example, with the selected paragraphs packed into it."""
    if config.null_position != "last":
        raise GPT2QAError("HotpotQA needs null_position 'last': the answer-type head reads the "
                          "<|null|> token after the whole input")
    ids = special_ids or prepare_tokenizer(tokenizer)
    questions = encode_texts(tokenizer, [ex.question.strip() for ex in examples], offsets=False)
    features = []
    for ex_index, (ex, q_ids) in enumerate(zip(examples, questions["input_ids"], strict=True)):
        question = q_ids[: config.max_query_length]
        budget = context_budget(config, ids, question)
        order = rank_paragraphs(ex.question, ex.paragraphs, hop)
        pieces = [render([ex.paragraphs[i]])[0] for i in order]
        lengths = [len(t) for t in encode_texts(tokenizer, pieces, offsets=False)["input_ids"]]
        chosen, used = [], 0
        for i, n_tok in zip(order, lengths, strict=True):
            if used + n_tok + 1 <= budget or not chosen:  # +1: the newline between paragraphs
                chosen.append(i)
                used += n_tok + 1
        features.append(_feature(ex, ex_index, [ex.paragraphs[i] for i in chosen], question,
                                 budget, tokenizer, config, ids))
    return features


def _feature(ex: HotpotExample, ex_index: int, paragraphs: list[Paragraph],
             question: list[int], budget: int, tokenizer: Any, config: FeatureConfig,
             ids: SpecialIds) -> Feature:
    context, sentences = render(paragraphs)
    enc = encode_texts(tokenizer, [context], offsets=True)
    tok_ids = enc["input_ids"][0][:budget]  # a first paragraph longer than the window is cut
    spans = [trim_span(context, s, e) for s, e in enc["offset_mapping"][0][: len(tok_ids)]]
    input_ids, offset, null_index = assemble_window(config, ids, question, tok_ids)
    kept_end = spans[-1][1] if spans else 0
    answer_type = ANSWER_TYPES.index(ex.answer_type) if ex.answer else 0
    start = end = null_index
    chars = _answer_chars(ex, context, sentences) if answer_type == 0 else None
    if chars is not None and chars[1] <= kept_end:
        tokens = char_span_to_token_span(spans, *chars)
        if tokens is not None:
            start, end = tokens[0] + offset, tokens[1] + offset
    facts = set(ex.supporting_facts)
    positions, keys, labels = [], [], []
    for s in sentences:
        if s.end > kept_end:
            break
        tokens = char_span_to_token_span(spans, s.start, s.end)
        if tokens is None:
            continue
        positions.append(tokens[1] + offset)
        keys.append((s.title, s.index))
        labels.append(int((s.title, s.index) in facts))
    window = HotpotWindow(context=context, titles=tuple(p.title for p in paragraphs),
                          answer_type=answer_type, sentence_positions=tuple(positions),
                          sentence_keys=tuple(keys), sentence_labels=tuple(labels))
    return Feature(qas_id=ex.qas_id, example_index=ex_index, window_index=0,
                   input_ids=tuple(input_ids), context_offset=offset, token_spans=tuple(spans),
                   null_index=null_index, start_position=start, end_position=end, extra=window)


def selection_recall(examples: Sequence[HotpotExample],
                     features: Sequence[Feature]) -> dict[str, float]:
    """Gold-paragraph recall of the selection: the share of gold titles kept, and the share
    of questions with every gold paragraph kept."""
    kept = total = both = 0
    for ex, f in zip(examples, features, strict=True):
        gold = ex.gold_titles()
        hit = len(gold & set(window_of(f).titles))
        kept, total = kept + hit, total + len(gold)
        both += hit == len(gold)
    return {"gold_paragraph_recall": kept / max(total, 1),
            "all_gold_paragraphs": both / max(len(examples), 1)}


def oracle_predictions(examples: Sequence[HotpotExample], features: Sequence[Feature]
                       ) -> tuple[dict[str, str], dict[str, list[tuple[str, int]]]]:
    """The best any model can output from these features: the labelled answer decoded back
    through the offsets (or yes/no), and the gold facts among the sentences in the window."""
    answers, facts = {}, {}
    for ex, f in zip(examples, features, strict=True):
        w = window_of(f)
        if w.answer_type:
            answers[ex.qas_id] = ANSWER_TYPES[w.answer_type]
        else:
            answers[ex.qas_id] = feature_answer_text(f, w.context)
        facts[ex.qas_id] = [k for k, y in zip(w.sentence_keys, w.sentence_labels,
                                              strict=True) if y]
    return answers, facts


def span_report(dataset: Any, tokenizer: Any, config: FeatureConfig,
                special: SpecialIds) -> dict[str, Any]:
    """`gpt2qa check-spans` on HotpotQA: the gold-paragraph recall of the selection (with and
    without the bridge hop) and the official metrics of the oracle, the best answers and
    supporting facts any model could output from the selected windows."""
    from gpt2qa.tasks.hotpotqa.metrics import evaluate_hotpot

    examples = dataset.examples
    features = convert_hotpot_examples(examples, tokenizer, config, special)
    no_hop = convert_hotpot_examples(examples, tokenizer, config, special, hop=False)
    answers, facts = oracle_predictions(examples, features)
    oracle = evaluate_hotpot(examples, answers, facts)
    return {
        "examples": len(examples), "max_seq_length": config.max_seq_length,
        "mean_paragraphs_selected":
            sum(len(window_of(f).titles) for f in features) / len(features),
        "selection": selection_recall(examples, features),
        "selection_without_hop": selection_recall(examples, no_hop),
        "oracle": {k: oracle[k] for k in ("em", "f1", "sp_em", "sp_f1", "joint_em", "joint_f1")},
        "span_answers_lost": sum(1 for ex in examples if ex.answer_type == "span"
                                 and not answers[ex.qas_id]),
        "repairs": len(dataset.repairs),
    }
