"""Features: special tokens, layouts, char<->token spans, windows and labels."""

from __future__ import annotations

import pytest

from gpt2qa.config import FeatureConfig
from gpt2qa.data import Answer, SquadExample
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import (
    NULL_TOKEN,
    SEP_TOKEN,
    char_span_to_token_span,
    convert_examples_to_features,
    feature_answer_text,
    oracle_answers,
    prepare_tokenizer,
    trim_span,
    window_starts,
)

# "Paris, 1889s." as trimmed GPT-2-style token spans (see char_span_to_token_span).
SPANS = [(0, 5), (5, 6), (7, 9), (9, 11), (11, 12), (12, 13)]


@pytest.mark.parametrize(("start", "end", "expected"), [
    (7, 11, (2, 3)),     # "1889": two whole tokens
    (7, 12, (2, 4)),     # "1889s"
    (9, 12, (3, 4)),     # "89s" starts on a token boundary
    (8, 11, (2, 3)),     # "889" starts inside " 18": widened to the whole token
    (0, 5, (0, 0)),      # first token alone
    (12, 13, (5, 5)),    # last token alone
    (6, 7, None),        # only the space between tokens
    (0, 13, (0, 5)),     # everything
])
def test_char_span_to_token_span(start, end, expected):
    assert char_span_to_token_span(SPANS, start, end) == expected


def test_char_span_skips_whitespace_only_tokens():
    spans = [(0, 3), (4, 4), (5, 9)]  # middle token is pure white space (trimmed to empty)
    assert char_span_to_token_span(spans, 3, 9) == (2, 2)
    assert char_span_to_token_span(spans, 0, 5) == (0, 0)


@pytest.mark.parametrize(("text", "span", "expected"), [
    ("in 1889", (2, 7), (3, 7)),
    ("a  b", (1, 3), (3, 3)),
    ("x\n", (0, 2), (0, 1)),
    ("abc", (0, 3), (0, 3)),
])
def test_trim_span(text, span, expected):
    assert trim_span(text, *span) == expected


@pytest.mark.parametrize(("n", "window", "stride", "expected"), [
    (10, 4, 3, [0, 3, 6]),
    (10, 4, 4, [0, 4, 8]),
    (10, 20, 5, [0]),
    (0, 4, 2, [0]),
    (9, 4, 10, [0, 4, 8]),   # stride larger than the window never skips tokens
    (5, 1, 1, [0, 1, 2, 3, 4]),
])
def test_window_starts(n, window, stride, expected):
    assert window_starts(n, window, stride) == expected


def test_special_tokens_are_real_and_distinct(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = prepare_tokenizer(tok)
    assert len({ids.sep, ids.null, ids.pad}) == 3
    assert 0 not in (ids.sep, ids.null)
    assert tok.convert_ids_to_tokens(ids.sep) == SEP_TOKEN
    assert tok.convert_ids_to_tokens(ids.null) == NULL_TOKEN
    assert ids.sep < len(tok) and ids.null < len(tok)
    assert prepare_tokenizer(tok) == ids  # idempotent


def test_unregistered_strings_would_map_to_unknown(tiny_tokenizer):
    """The 2019 bug: "[CLS]" is not a GPT-2 token. Our features never look such strings up."""
    tok = tiny_tokenizer
    assert tok.convert_tokens_to_ids("[CLS]") == tok.unk_token_id  # the silent fallback exists
    ids = prepare_tokenizer(tok)
    ex = SquadExample("q", "What is [CLS]?", "The [SEP] token is text here.", (), True)
    feature = convert_examples_to_features([ex], tok, FeatureConfig(max_seq_length=64,
                                                                    max_query_length=16), ids)[0]
    # Only our two special ids are out-of-text tokens; no unknown/eos ids in the input.
    assert tok.unk_token_id not in feature.input_ids
    assert ids.pad not in feature.input_ids
    assert feature.input_ids.count(ids.sep) == 1 and feature.input_ids.count(ids.null) == 1


def test_special_token_text_in_context_stays_text(tiny_tokenizer):
    ids = prepare_tokenizer(tiny_tokenizer)
    ex = SquadExample("q", "Where?", f"a {SEP_TOKEN} b {NULL_TOKEN} c <|endoftext|>", (), True)
    feature = convert_examples_to_features([ex], tiny_tokenizer, FeatureConfig(64, 32, 16), ids)[0]
    assert feature.input_ids.count(ids.sep) == 1
    assert feature.input_ids.count(ids.null) == 1
    assert ids.pad not in feature.input_ids


CONTEXT = "The Eiffel Tower was completed in 1889 in Paris, France."
EXAMPLE = SquadExample("q1", "When was the tower completed?", CONTEXT,
                       (Answer("1889", CONTEXT.index("1889")),), False)


@pytest.mark.parametrize(("layout", "null_position", "null_at"), [
    ("question-first", "last", "end"),
    ("question-first", "first", 0),
    ("question-first", "classifier", "end"),
    ("context-first", "last", "end"),
    ("context-first", "first", 0),
])
def test_layouts_label_the_answer(tiny_tokenizer, layout, null_position, null_at):
    ids = prepare_tokenizer(tiny_tokenizer)
    config = FeatureConfig(max_seq_length=128, doc_stride=32, max_query_length=32,
                           layout=layout, null_position=null_position)
    (f,) = convert_examples_to_features([EXAMPLE], tiny_tokenizer, config, ids)
    assert f.null_index == (len(f.input_ids) - 1 if null_at == "end" else 0)
    assert f.input_ids[f.null_index] == ids.null
    assert feature_answer_text(f, CONTEXT) == "1889"
    assert f.context_offset <= f.start_position <= f.end_position < f.context_end()
    sep = f.input_ids.index(ids.sep)
    if layout == "question-first":
        assert sep == f.context_offset - 1
    else:
        assert sep == f.context_end()
    # The context tokens, decoded, are the context.
    ctx_ids = f.input_ids[f.context_offset: f.context_end()]
    assert tiny_tokenizer.decode(list(ctx_ids)) == CONTEXT


def test_unanswerable_gets_null_label(tiny_tokenizer):
    ids = prepare_tokenizer(tiny_tokenizer)
    ex = SquadExample("q2", "Who designed it?", CONTEXT, (), True)
    (f,) = convert_examples_to_features([ex], tiny_tokenizer, FeatureConfig(128, 32, 32), ids)
    assert f.is_null and f.start_position == f.end_position == f.null_index


def test_sliding_windows_cover_context_and_label_once(tiny_tokenizer):
    ids = prepare_tokenizer(tiny_tokenizer)
    context = " ".join(["Filler words about rivers and towers."] * 12) + " " + CONTEXT
    ex = SquadExample("q3", "When?", context, (Answer("1889", context.index("1889")),), False)
    config = FeatureConfig(max_seq_length=32, doc_stride=8, max_query_length=8)
    feats = convert_examples_to_features([ex], tiny_tokenizer, config, ids)
    assert len(feats) > 3
    assert all(len(f.input_ids) <= 32 for f in feats)
    labelled = [f for f in feats if not f.is_null]
    assert labelled and all(feature_answer_text(f, context) == "1889" for f in labelled)
    # Every context character is inside some window.
    covered = set()
    for f in feats:
        for s, e in f.token_spans:
            covered.update(range(s, e))
    assert all(i in covered for i, ch in enumerate(context) if not ch.isspace())
    # Consecutive windows start doc_stride tokens apart.
    first_spans = [f.token_spans[0] for f in feats]
    assert first_spans == sorted(first_spans)


def test_answer_split_across_windows_is_null_there(tiny_tokenizer):
    ids = prepare_tokenizer(tiny_tokenizer)
    context = "one two three four five six seven eight nine ten eleven twelve"
    answer = "five six seven eight"
    ex = SquadExample("q4", "Which?", context, (Answer(answer, context.index(answer)),), False)
    n_answer = len(tiny_tokenizer(" " + answer, add_special_tokens=False)["input_ids"])
    n_question = len(tiny_tokenizer("Which?", add_special_tokens=False)["input_ids"])
    # A window just big enough for the answer: some windows cut it and must say null.
    config = FeatureConfig(max_seq_length=n_question + 2 + n_answer + 1, doc_stride=1,
                           max_query_length=n_question)
    feats = convert_examples_to_features([ex], tiny_tokenizer, config, ids)
    texts = [feature_answer_text(f, context) for f in feats]
    assert set(texts) == {"", answer}
    assert oracle_answers([ex], feats) == {"q4": answer}
    # A window smaller than the answer: no window holds it, the oracle decodes "".
    small = FeatureConfig(max_seq_length=n_question + 2 + n_answer - 1, doc_stride=1,
                          max_query_length=n_question)
    feats = convert_examples_to_features([ex], tiny_tokenizer, small, ids)
    assert all(f.is_null for f in feats)
    assert oracle_answers([ex], feats) == {"q4": ""}


def test_question_fills_most_of_the_window(tiny_tokenizer):
    ids = prepare_tokenizer(tiny_tokenizer)
    question = "When was the Eiffel Tower completed in Paris, France, and by whom " * 3
    config = FeatureConfig(max_seq_length=40, doc_stride=16, max_query_length=36)
    long_q = SquadExample("q5", question, CONTEXT, EXAMPLE.answers, False)
    feats = convert_examples_to_features([long_q], tiny_tokenizer, config, ids)
    assert all(len(f.input_ids) <= 40 for f in feats)
    assert all(1 <= len(f.token_spans) <= 2 for f in feats)  # 40 - 36 - 2 context tokens
    assert oracle_answers([EXAMPLE], []) == {"q1": ""}
    assert any(not f.is_null for f in feats)


def test_config_checks():
    with pytest.raises(GPT2QAError, match="layout"):
        FeatureConfig(layout="sideways")  # type: ignore[arg-type]
    with pytest.raises(GPT2QAError, match="max_seq_length"):
        FeatureConfig(max_seq_length=10, max_query_length=8)
    with pytest.raises(GPT2QAError, match="null_position"):
        FeatureConfig(null_position="middle")  # type: ignore[arg-type]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(("name", "min_f1", "min_exact"), [
    ("cs224n-dev-v2.0.json", 99.9, 99.0),
    # Train has one gold answer per question and 25 of 4,371 are sub-token annotations
    # ("7" inside the token "17", "Japan" inside "Japanese"): 99.46 F1, measured.
    ("train-v2.0-first10articles.json", 99.4, 99.0),
])
def test_oracle_f1_on_real_squad(name, min_f1, min_exact, shared_data):
    """Gold answers survive GPT-2 tokenisation, measured on real SQuAD 2.0."""
    from gpt2qa.data import load_squad
    from gpt2qa.metrics import evaluate_v2
    from gpt2qa.tokenizer import load_tokenizer

    path = shared_data("squad-v2", name)
    tok = load_tokenizer(shared_data("gpt2-tokenizer"))
    ids = prepare_tokenizer(tok)
    assert ids.pad == 50256 and ids.sep == 50257 and ids.null == 50258
    examples = load_squad(path).examples
    feats = convert_examples_to_features(examples, tok, FeatureConfig(), ids)
    oracle = oracle_answers(examples, feats)
    answerable = [ex for ex in examples if ex.qas_id in oracle]
    scores = evaluate_v2(answerable, oracle)
    assert scores["f1"] >= min_f1
    assert scores["exact"] >= min_exact
