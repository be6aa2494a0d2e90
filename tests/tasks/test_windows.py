"""Every task's windows through the registry: at most max_seq_length tokens for every tokenizer,
with the BOS slot (Llama-style tokenizers) counted, and the layout the engine expects."""

from __future__ import annotations

import pytest

from gpt2qa import tasks
from gpt2qa.config import FeatureConfig
from gpt2qa.data import Answer, SquadExample
from gpt2qa.features import prepare_tokenizer
from gpt2qa.tasks.hotpotqa.data import parse_hotpot
from gpt2qa.tasks.hotpotqa.synthetic import generate, hotpot_corpus_texts
from gpt2qa.tokenizer import train_bpe_tokenizer, train_metaspace_tokenizer

HOTPOT = generate("train", 8, seed=2)
CONTEXT = " ".join(f"Sentence {i} says that Tavrik was founded in {1800 + i}." for i in range(30))
SQUAD = [SquadExample("s1", "When was Tavrik founded?", CONTEXT,
                      (Answer("1829", CONTEXT.index("1829")),), False),
         SquadExample("s2", "Who founded Zorbel?", CONTEXT, (), True)]
CORPUS = [CONTEXT, *hotpot_corpus_texts(HOTPOT)] * 3


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    return {"metaspace (adds BOS)": train_metaspace_tokenizer(CORPUS, vocab_size=500,
                                                              limit_alphabet=60),
            "byte-level (no BOS)": train_bpe_tokenizer(CORPUS, vocab_size=400)}


@pytest.mark.parametrize("family", ["metaspace (adds BOS)", "byte-level (no BOS)"])
@pytest.mark.parametrize("task_name", ["squad", "hotpotqa"])
@pytest.mark.parametrize("max_seq_length", [40, 64, 96])
def test_no_window_is_longer_than_max_seq_length(tokenizers, family, task_name,
                                                 max_seq_length) -> None:
    tokenizer = tokenizers[family]
    special = prepare_tokenizer(tokenizer)
    task = tasks.get(task_name)
    examples = SQUAD if task_name == "squad" else parse_hotpot(HOTPOT, "synthetic").examples
    config = FeatureConfig(max_seq_length=max_seq_length, doc_stride=16, max_query_length=16)
    features = task.features(examples, tokenizer, config, special)
    assert {f.qas_id for f in features} == {ex.qas_id for ex in examples}
    longest = max(len(f.input_ids) for f in features)
    assert longest <= max_seq_length
    # The windows are full: a context longer than the window fills it to the last token.
    assert longest >= max_seq_length - (8 if task_name == "hotpotqa" else 0)
    for f in features:
        ids = list(f.input_ids)
        assert ids[f.null_index] == special.null and f.null_index == len(ids) - 1
        if special.bos is not None:
            assert ids[0] == special.bos and ids.count(special.bos) == 1
        else:
            assert "metaspace" not in family
