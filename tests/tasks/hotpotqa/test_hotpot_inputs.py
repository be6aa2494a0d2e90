"""HotpotQA features: paragraph ranking, rendering with sentence spans, labels, packing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpt2qa.config import FeatureConfig
from gpt2qa.features import prepare_tokenizer
from gpt2qa.tasks.hotpotqa.data import Paragraph, parse_hotpot
from gpt2qa.tasks.hotpotqa.inputs import (
    convert_hotpot_examples,
    oracle_predictions,
    rank_paragraphs,
    render,
    selection_recall,
    window_of,
)
from gpt2qa.tasks.hotpotqa.metrics import evaluate_hotpot


def test_render_keeps_sentence_spans() -> None:
    text, sentences = render([Paragraph("Tavrik", ("Tavrik was founded.", " It grew.")),
                              Paragraph("Zorbel", ("A river.",))])
    assert text == "Tavrik: Tavrik was founded. It grew.\nZorbel: A river."
    assert [(s.title, s.index, s.start, s.end) for s in sentences] == [
        ("Tavrik", 0, 8, 27), ("Tavrik", 1, 28, 36), ("Zorbel", 0, 45, 53)]
    assert [text[s.start:s.end] for s in sentences] == ["Tavrik was founded.", "It grew.",
                                                        "A river."]


def test_bridge_hop_ranks_the_second_paragraph() -> None:
    paragraphs = [Paragraph("Born Free", ("Born Free is a film about where lions were born.",)),
                  Paragraph("Quell Mebbit", ("Quell Mebbit was born in Quellton.",)),
                  Paragraph("Tavrik", ("Tavrik was founded by Quell Mebbit.",))]
    question = "Where was the founder of Tavrik born?"
    assert rank_paragraphs(question, paragraphs)[:2] == [2, 1]
    # Without the hop the distractor wins: it shares "born" with the question in its title.
    assert rank_paragraphs(question, paragraphs, hop=False)[:2] == [2, 0]


def test_features_labels(tiny_tokenizer, hotpot_list) -> None:
    examples = parse_hotpot(hotpot_list(), "t").examples
    special = prepare_tokenizer(tiny_tokenizer)
    config = FeatureConfig(max_seq_length=128, max_query_length=24)
    f, g = convert_hotpot_examples(examples, tiny_tokenizer, config, special)
    bridge, comparison = window_of(f), window_of(g)
    assert f.input_ids[f.null_index] == special.null and f.null_index == len(f.input_ids) - 1
    assert bridge.answer_type == 0
    start = f.token_spans[f.start_position - f.context_offset][0]
    end = f.token_spans[f.end_position - f.context_offset][1]
    assert bridge.context[start:end] == "Quellton"
    # Each sentence position is the last token of its sentence.
    _, sentences = render([examples[0].paragraphs[examples[0].paragraphs.index(p)]
                           for p in examples[0].paragraphs if p.title in bridge.titles])
    for pos, key in zip(bridge.sentence_positions, bridge.sentence_keys, strict=True):
        span = f.token_spans[pos - f.context_offset]
        sent = next(s for s in sentences if (s.title, s.index) == key)
        assert span[1] == sent.end
    labelled = {k for k, y in zip(bridge.sentence_keys, bridge.sentence_labels, strict=True) if y}
    assert labelled == {("Tavrik", 0), ("Quell Mebbit", 1)}
    assert comparison.answer_type == 2 and g.is_null
    answers, facts = oracle_predictions(examples, [f, g])
    assert answers == {"b1": "Quellton", "c1": "no"}
    assert evaluate_hotpot(examples, answers, facts)["joint_em"] == 1.0


def test_packing_drops_what_does_not_fit(tiny_tokenizer, hotpot_list) -> None:
    examples = parse_hotpot(hotpot_list(), "t").examples[:1]
    config = FeatureConfig(max_seq_length=40, max_query_length=16)
    (feature,) = convert_hotpot_examples(examples, tiny_tokenizer, config)
    f = window_of(feature)
    assert len(feature.input_ids) <= 40 and f.titles[0] == "Tavrik"
    assert len(f.titles) < 3
    assert selection_recall(examples, [feature])["gold_paragraph_recall"] == len(
        {"Tavrik", "Quell Mebbit"} & set(f.titles)) / 2
    # A sentence cut by the window has no position.
    assert all(p < 40 for p in f.sentence_positions)


def test_null_position_must_be_last(tiny_tokenizer, hotpot_list) -> None:
    from gpt2qa.errors import GPT2QAError

    examples = parse_hotpot(hotpot_list(), "t").examples
    with pytest.raises(GPT2QAError, match="null_position 'last'"):
        convert_hotpot_examples(examples, tiny_tokenizer, FeatureConfig(null_position="first"))


@pytest.mark.realdata
def test_check_spans_on_real_sample(shared_data) -> None:
    data = shared_data("hotpotqa", "hotpot-dev-distractor-first53.json")
    tok = shared_data("gpt2-tokenizer")
    run = subprocess.run([sys.executable, "-m", "gpt2qa", "check-spans", str(data),
                          "--tokenizer", str(tok), "--max-seq-length", "512"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    sel, oracle = out["selection"], out["oracle"]
    assert out["examples"] == 53
    assert sel["gold_paragraph_recall"] >= out["selection_without_hop"]["gold_paragraph_recall"]
    # A lost span answer scores 0; sp EM needs both gold paragraphs in the window.
    assert oracle["em"] <= 1 - out["span_answers_lost"] / 53 + 1e-9
    assert oracle["sp_em"] <= sel["all_gold_paragraphs"] + 1e-9
    assert 0.5 < oracle["joint_f1"] < 1.0
