"""benchmarks/bench_accuracy.py: the run_qa re-implementation's labels and decoding, and a
`--tiny` smoke run (the benchmark itself is not part of the suite)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt2qa.data import Answer, SquadExample
from gpt2qa.tokenizer import train_bpe_tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_accuracy as bench  # noqa: E402

CTX = "The Eiffel Tower was completed in 1889 in Paris, France."


@pytest.fixture(scope="module")
def hf_tok(corpus):
    tok = train_bpe_tokenizer(corpus, vocab_size=400)
    tok.pad_token = tok.eos_token  # as the benchmark does (run_qa needs a pad token)
    return tok


def _examples() -> list[SquadExample]:
    return [SquadExample("a", "When was the Eiffel Tower completed?", CTX,
                         (Answer("1889", CTX.index("1889")),), False),
            SquadExample("u", "Who designed the Eiffel Tower?", CTX, (), True)]


def test_labels_decode_to_the_answer_and_null_index_follows_the_variant(hf_tok):
    examples = _examples()
    for literal in (False, True):
        feats = bench.hf_features(examples, hf_tok, max_length=48, stride=8, literal=literal)
        assert [f.example_index for f in feats] == [0, 1]
        answered, impossible = feats
        text = CTX[answered.offsets[answered.start_position][0]:
                   answered.offsets[answered.end_position][1]]
        assert text.strip() == "1889"
        assert impossible.start_position == impossible.end_position == impossible.null_label
        first_pad = impossible.attention_mask.index(0)
        # run_qa literally: bos = eos = pad, so the "CLS" is the first padding token.
        assert impossible.null_label == (first_pad if literal else 0)
        assert impossible.input_ids[first_pad] == hf_tok.eos_token_id
        # Question tokens and padding are outside the context: no offsets.
        assert impossible.offsets[0] is None and impossible.offsets[first_pad] is None


def test_cls_lookup_without_padding_falls_back_to_zero(hf_tok):
    assert bench.cls_lookup([5, 6, 7], hf_tok) == 0
    assert bench.cls_lookup([5, 6, hf_tok.eos_token_id, hf_tok.eos_token_id], hf_tok) == 2


def _feature(example_index: int, offsets):
    n = len(offsets)
    return bench.HFFeature(example_index, tuple(range(n)), (1,) * n, tuple(offsets), 0, 0, 0)


def test_postprocess_null_rule_min_null_over_windows_and_empty_fallback():
    ex = [SquadExample("q", "question?", "ab cd ef", (), True),
          SquadExample("r", "question?", "xy", (), True)]
    # Example q has two windows; tokens 1..3 are context "ab", " cd", " ef".
    offs = [None, (0, 2), (2, 5), (5, 8)]
    feats = [_feature(0, offs), _feature(0, offs), _feature(1, [None] * 4)]
    starts = np.array([[1.0, 0.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    ends = np.array([[1.0, 0.0, 0.0, 2.0], [4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # q: null = min(1+1, 4+4) = 2; best span " cd ef" (3 + 2 = 5); diff = 2 - 5 = -3.
    preds = bench.hf_postprocess(ex, feats, starts, ends, n_best_size=4, max_answer_length=30,
                                 threshold=0.0)
    assert preds.texts["q"] == " cd ef" and preds.best_spans["q"] == " cd ef"
    assert preds.na_probs["q"] == pytest.approx(1 / (1 + math.exp(3)))
    # r has no context token: utils_qa's "empty" answer with score 0, diff = null 0 - 0.
    assert preds.best_spans["r"] == "empty" and preds.na_probs["r"] == pytest.approx(0.5)
    assert preds.texts["r"] == "empty"  # 0 is not above threshold 0
    strict = bench.hf_postprocess(ex, feats, starts, ends, 4, 30, threshold=-3.5)
    assert strict.texts == {"q": "", "r": ""}
    short = bench.hf_postprocess(ex, feats, starts, ends, 4, max_answer_length=1, threshold=0.0)
    assert short.best_spans["q"] == " cd"  # one-token spans only: 3 + 0 beats " ef" (0 + 2)


@pytest.mark.slow
def test_tiny_run_prints_one_summary_line_and_writes_the_result(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_accuracy.py"), "--tiny", "--seeds",
         "1", "--results-dir", str(tmp_path), "--work-dir", str(tmp_path / "work"),
         "--sides", "hf,hf_literal,generative"],
        capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    fields = dict(part.split("=", 1) for part in lines[0].split())
    for key in ("gpt2qa_f1", "hf_f1", "hf_literal_f1", "gpt2qa_test_f1", "hf_test_f1",
                "hf_literal_test_f1", "generative_f1", "generative_test_f1"):
        assert 0.0 <= float(fields[key]) <= 100.0
        assert fields[f"{key}_sd"] == "nan"  # one seed: no spread
    assert float(fields["gpt2qa_minus_hf"]) == pytest.approx(
        float(fields["gpt2qa_f1"]) - float(fields["hf_f1"]), abs=0.02)
    result = json.loads((tmp_path / "bench_accuracy_tiny.json").read_text())
    (run,) = result["runs"]
    for side in ("gpt2qa", "hf", "hf_literal", "generative"):
        for split in ("dev", "test"):
            scores = run[side][split]
            for key in ("exact", "f1", "HasAns_f1", "NoAns_f1"):
                assert isinstance(scores[key], float) and 0.0 <= scores[key] <= 100.0
            assert scores["total"] == 18  # 6 passages x 3 questions
        assert 0.0 <= run[side]["dev"]["best_f1"] <= 100.0
        assert run[side]["wall_seconds"] > 0
    literal = run["hf_literal"]["null_labels"]
    # Padded windows get the first pad; full windows (no pad) fall back to index 0.
    assert literal["at_padding"] > 0
    assert literal["at_padding"] + literal["at_index_0"] == literal["train_features"]
    assert run["hf"]["null_labels"]["at_index_0"] == run["hf"]["null_labels"]["train_features"]
    assert (tmp_path / "work" / "seed-0" / "hf" / "test" / "predictions.json").is_file()
