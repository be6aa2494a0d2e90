"""Model: shapes, masking, null scores, heads, and the HF-compatible export."""

from __future__ import annotations

import pytest
import torch

from gpt2qa.batching import collate, inference_batch_size, length_grouped_batches
from gpt2qa.checkpoint import load_model, save_model
from gpt2qa.config import QAConfig
from gpt2qa.data import Answer, SquadExample
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
from gpt2qa.model import MASK_VALUE, bilstm_packed, bilstm_right_padded
from helpers import tiny_model

CTX = "The Eiffel Tower was completed in 1889 in Paris, France."
EXAMPLES = [
    SquadExample("a", "When was it completed?", CTX, (Answer("1889", CTX.index("1889")),), False),
    SquadExample("b", "Who built it?", CTX, (), True),
    SquadExample("c", "Where?", CTX[:30], (), True),
]


def batch_for(tok, qa):
    ids = prepare_tokenizer(tok)
    feats = convert_examples_to_features(EXAMPLES, tok, qa.features, ids)
    return feats, collate(feats, ids.pad)


@pytest.mark.parametrize("head", ["linear", "bilstm"])
@pytest.mark.parametrize("null_position", ["first", "last", "classifier"])
def test_shapes_masking_and_loss(tiny_tokenizer, head, null_position):
    qa = QAConfig.of(head=head, null_position=null_position, max_seq_length=64, doc_stride=16,
                  max_query_length=16)
    model = tiny_model(tiny_tokenizer, qa)
    feats, batch = batch_for(tiny_tokenizer, qa)
    out = model(**batch)
    n, width = batch["input_ids"].shape
    assert out.start_logits.shape == out.end_logits.shape == (n, width)
    assert out.null_score.shape == (n,)
    assert out.loss is not None and torch.isfinite(out.loss)
    allowed = batch["context_mask"].clone()
    if null_position != "classifier":
        allowed[torch.arange(n), batch["null_index"]] = True
    # Question, separator and padding positions can never start or end an answer.
    assert (out.start_logits[~allowed] == MASK_VALUE).all()
    assert (out.end_logits[~allowed] == MASK_VALUE).all()
    assert (out.start_logits[allowed] > MASK_VALUE).all()
    if null_position != "classifier":
        rows = torch.arange(n)
        expected = out.start_logits[rows, batch["null_index"]] + out.end_logits[rows, batch["null_index"]]
        assert torch.allclose(out.null_score, expected)
    out.loss.backward()
    assert model.qa_outputs.weight.grad is not None


def test_first_position_null_is_blind_under_causal_attention(tiny_tokenizer):
    """Position 0 sees nothing but itself: with a linear head its null score is one constant
    for every input. (A bilstm head's backward direction reads the whole input, even there.)"""
    qa = QAConfig.of(head="linear", null_position="first", max_seq_length=64, doc_stride=16,
                  max_query_length=16)
    model = tiny_model(tiny_tokenizer, qa).eval()
    _, batch = batch_for(tiny_tokenizer, qa)
    with torch.no_grad():
        null = model(**batch).null_score
    assert torch.allclose(null, null[0].expand_as(null), atol=1e-5)
    qa_last = QAConfig.of(head="linear", null_position="last", max_seq_length=64, doc_stride=16,
                       max_query_length=16)
    model = tiny_model(tiny_tokenizer, qa_last).eval()
    _, batch = batch_for(tiny_tokenizer, qa_last)
    with torch.no_grad():
        null = model(**batch).null_score
    assert not torch.allclose(null, null[0].expand_as(null), atol=1e-5)


@pytest.mark.parametrize("head", ["linear", "bilstm"])
def test_logits_do_not_depend_on_batch_padding(tiny_tokenizer, head):
    qa = QAConfig.of(head=head, max_seq_length=64, doc_stride=16, max_query_length=16)
    model = tiny_model(tiny_tokenizer, qa).eval()
    ids = prepare_tokenizer(tiny_tokenizer)
    feats = convert_examples_to_features(EXAMPLES, tiny_tokenizer, qa.features, ids)
    with torch.no_grad():
        together = model(**collate(feats, ids.pad))
        for i, f in enumerate(feats):
            alone = model(**collate([f], ids.pad))
            n = len(f.input_ids)
            assert torch.allclose(alone.start_logits[0], together.start_logits[i, :n], atol=1e-5)
            assert torch.allclose(alone.null_score[0], together.null_score[i], atol=1e-5)


@pytest.mark.parametrize("lengths", [[5], [1, 5], [3, 5, 2], [5, 5], [1, 1, 4], [2, 4, 4, 1]])
@pytest.mark.parametrize("bias", [True, False])
def test_bilstm_right_padded_matches_packing(lengths, bias):
    """Outputs and gradients equal the packed run's; pads come out as zeros in both; each row
    equals the same row run alone."""
    torch.manual_seed(len(lengths))
    lstm = torch.nn.LSTM(6, 3, batch_first=True, bidirectional=True, bias=bias)
    x = torch.randn(len(lengths), max(lengths), 6, requires_grad=True)
    lens = torch.tensor(lengths)
    want = bilstm_packed(lstm, x, lens)
    got = bilstm_right_padded(lstm, x, lens)
    for row, n in enumerate(lengths):
        alone, _ = lstm(x[row:row + 1, :n])
        assert torch.allclose(got[row, :n], alone[0], atol=1e-6)
        assert not got[row, n:].any()
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-6)
    weights = torch.randn_like(want)
    want_grads = torch.autograd.grad((want * weights).sum(), [x, *lstm.parameters()])
    got_grads = torch.autograd.grad((got * weights).sum(), [x, *lstm.parameters()])
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, w, atol=1e-5)


def test_collate_refuses_label_outside_context(tiny_tokenizer):
    qa = QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16)
    ids = prepare_tokenizer(tiny_tokenizer)
    f = convert_examples_to_features(EXAMPLES[:1], tiny_tokenizer, qa.features, ids)[0]
    import dataclasses

    bad = dataclasses.replace(f, start_position=0)
    with pytest.raises(GPT2QAError, match="id=a"):
        collate([bad], ids.pad)


def test_length_grouped_batches_are_a_partition():
    lengths = [5, 30, 7, 22, 9, 40, 3, 18, 11, 27]
    gen = torch.Generator().manual_seed(0)
    batches = length_grouped_batches(lengths, 3, gen, group_size=2)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(10))
    assert all(1 <= len(b) <= 3 for b in batches)
    again = length_grouped_batches(lengths, 3, torch.Generator().manual_seed(0), group_size=2)
    assert again == batches
    sorted_batches = length_grouped_batches(lengths, 4)
    assert [lengths[i] for i in sorted_batches[0]] == [40, 30, 27, 22]


@pytest.mark.parametrize(("device", "width", "max_seq_length", "expected"), [
    ("cpu", 768, 384, 3),      # GPT-2 small: 1 M floats / (768 x 384) = 3.6
    ("cpu", 128, 192, 42),     # the demo's 128-wide model
    ("cpu", 64, 64, 64),       # tiny test models: capped at 64
    ("cpu", 1600, 1024, 1),    # GPT-2 XL with long windows: never below 1
    ("cuda", 768, 384, 64),    # GPUs want big batches whatever the shape
])
def test_inference_batch_size(device, width, max_seq_length, expected):
    assert inference_batch_size(torch.device(device), width, max_seq_length) == expected


def test_hf_compatible_export(tiny_tokenizer, tmp_path):
    """linear + first + question-first loads in transformers' GPT2ForQuestionAnswering."""
    from transformers import GPT2ForQuestionAnswering

    qa = QAConfig.of(head="linear", null_position="first", layout="question-first",
                  max_seq_length=64, doc_stride=16, max_query_length=16)
    model = tiny_model(tiny_tokenizer, qa).eval()
    save_model(model, tiny_tokenizer, tmp_path / "m")
    hf = GPT2ForQuestionAnswering.from_pretrained(tmp_path / "m").eval()
    _, batch = batch_for(tiny_tokenizer, qa)
    with torch.no_grad():
        ours = model(**batch)
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    allowed = batch["context_mask"].clone()
    allowed[:, 0] = True
    assert torch.allclose(ours.start_logits[allowed], theirs.start_logits[allowed], atol=1e-5)
    assert torch.allclose(ours.end_logits[allowed], theirs.end_logits[allowed], atol=1e-5)


@pytest.mark.parametrize("head", ["linear", "bilstm"])
@pytest.mark.parametrize("null_position", ["last", "classifier"])
def test_save_load_round_trip(tiny_tokenizer, tmp_path, head, null_position):
    qa = QAConfig.of(head=head, null_position=null_position, max_seq_length=64, doc_stride=16,
                  max_query_length=16, null_score_diff_threshold=1.5)
    model = tiny_model(tiny_tokenizer, qa).eval()
    save_model(model, tiny_tokenizer, tmp_path / "m")
    loaded, tok, _ = load_model(tmp_path / "m")
    assert loaded.config == qa
    _, batch = batch_for(tok, qa)
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    assert torch.equal(a.start_logits, b.start_logits) and torch.equal(a.null_score, b.null_score)


def test_load_errors(tmp_path, tiny_tokenizer):
    with pytest.raises(GPT2QAError, match="no such model directory"):
        load_model(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GPT2QAError, match="not a gpt2qa model directory"):
        load_model(tmp_path / "plain")
    with pytest.raises(GPT2QAError, match="head"):
        QAConfig.of(head="mlp")  # type: ignore[arg-type]


@pytest.mark.parametrize("head", ["linear", "bilstm"])
def test_padding_to_a_multiple_changes_nothing_but_width(tiny_tokenizer, head):
    qa = QAConfig.of(head=head, max_seq_length=64, doc_stride=16, max_query_length=16)
    model = tiny_model(tiny_tokenizer, qa).eval()
    ids = prepare_tokenizer(tiny_tokenizer)
    feats = convert_examples_to_features(EXAMPLES, tiny_tokenizer, qa.features, ids)
    plain, rounded = collate(feats, ids.pad), collate(feats, ids.pad, pad_to_multiple_of=64)
    assert rounded["input_ids"].shape[1] == 64 and plain["input_ids"].shape[1] < 64
    with torch.no_grad():
        a, b = model(**plain), model(**rounded)
    width = plain["input_ids"].shape[1]
    assert torch.allclose(a.start_logits, b.start_logits[:, :width], atol=1e-5)
    assert torch.allclose(a.null_score, b.null_score, atol=1e-5)
