"""Speed-ups keep behaviour: inference batching and length bucketing, no attention mask for
right padding, the fused tanh GELU, fused AdamW, and torch.compile."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from builders import CORPUS
from gpt2qa.batching import collate
from gpt2qa.config import QAConfig, TrainConfig
from gpt2qa.data import Answer, SquadExample
from gpt2qa.decode import decode
from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
from gpt2qa.inference import run_model
from gpt2qa.model import QAModel
from gpt2qa.pipeline import predict_examples
from gpt2qa.schedule import fused_adamw_for, optimizer_for
from helpers import tiny_model

SENTENCES = list(dict.fromkeys(CORPUS))


def _examples() -> list[SquadExample]:
    """Contexts of 1, 3 and 6 sentences: features of many lengths, the longest over several
    windows."""
    out = []
    for n in (1, 3, len(SENTENCES)):
        ctx = " ".join(SENTENCES[:n])
        answer = "1889"
        out.append(SquadExample(f"a{n}", "When was the tower completed?", ctx,
                                (Answer(answer, ctx.index(answer)),), False))
        out.append(SquadExample(f"u{n}", "Who founded the river?", ctx, (), True))
    return out


def _qa(null_position: str) -> QAConfig:
    return QAConfig.of(null_position=null_position, max_seq_length=64, doc_stride=16,
                    max_query_length=16)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy machine each of their ~1000 small
    ops would wait at a thread barrier; the results do not depend on the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def examples() -> list[SquadExample]:
    return _examples()


def test_fixture_has_varied_lengths_and_several_windows(tiny_tokenizer, examples):
    """The other tests only mean something if batches really need padding."""
    feats = convert_examples_to_features(examples, tiny_tokenizer, _qa("last").features)
    lengths = {len(f.input_ids) for f in feats}
    assert len(lengths) >= 4
    assert max(f.window_index for f in feats) >= 2


@pytest.mark.parametrize("null_position", ["first", "last", "classifier"])
def test_run_model_outputs_do_not_depend_on_batch_size(tiny_tokenizer, examples, null_position):
    qa = _qa(null_position)
    model = tiny_model(tiny_tokenizer, qa)
    special = prepare_tokenizer(tiny_tokenizer)
    feats = convert_examples_to_features(examples, tiny_tokenizer, qa.features, special)
    contexts = {ex.qas_id: ex.context for ex in examples}
    alone = run_model(model, feats, special.pad, batch_size=1)
    preds_alone = decode(contexts, feats, alone, qa.decoding)
    for batch_size in (0, 3, 8, 64):  # 0: the device's default
        batched = run_model(model, feats, special.pad, batch_size=batch_size)
        assert len(alone) == len(batched) == len(feats)
        for f, a, b in zip(feats, alone, batched, strict=True):
            # Outputs come back in feature order, one logit per real token, padding cut off.
            assert a.start_logits.shape == b.start_logits.shape == (len(f.input_ids),)
            np.testing.assert_allclose(a.start_logits, b.start_logits, atol=1e-5, rtol=0)
            np.testing.assert_allclose(a.end_logits, b.end_logits, atol=1e-5, rtol=0)
            assert math.isclose(a.null_score, b.null_score, abs_tol=1e-5)
        preds = decode(contexts, feats, batched, qa.decoding)
        assert [(p.qas_id, p.text, p.best_span) for p in preds] == \
            [(p.qas_id, p.text, p.best_span) for p in preds_alone]
        assert [[(c.start, c.end) for c in p.nbest] for p in preds] == \
            [[(c.start, c.end) for c in p.nbest] for p in preds_alone]


def test_predict_examples_same_answers_for_any_batch_size(tiny_tokenizer, examples):
    qa = _qa("first")
    model = tiny_model(tiny_tokenizer, qa, seed=3)
    special = prepare_tokenizer(tiny_tokenizer)
    one = predict_examples(model, tiny_tokenizer, special, examples, batch_size=1)
    many = predict_examples(model, tiny_tokenizer, special, examples, batch_size=16)
    assert [p.qas_id for p in one] == [ex.qas_id for ex in examples]
    for a, b in zip(one, many, strict=True):
        assert (a.text, a.best_span) == (b.text, b.best_span)
        assert math.isclose(a.score_diff, b.score_diff, abs_tol=1e-4)


def _padded_batch(tokenizer, null_position: str = "last"):
    qa = _qa(null_position)
    special = prepare_tokenizer(tokenizer)
    feats = convert_examples_to_features(_examples(), tokenizer, qa.features, special)
    feats = sorted(feats, key=lambda f: len(f.input_ids))[::3][:8]
    batch = collate(feats, special.pad)
    assert (batch["attention_mask"] == 0).any(), "the batch must hold padding"
    return qa, feats, batch


def test_right_padding_needs_no_attention_mask(tiny_tokenizer):
    """Pads sit right of every real token, so causal attention alone keeps them unseen:
    real tokens' hidden states are the same with the padding mask and with none."""
    qa, feats, batch = _padded_batch(tiny_tokenizer)
    model = tiny_model(tiny_tokenizer, qa).eval()
    with torch.no_grad():
        masked = model.transformer(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"]).last_hidden_state
        causal = model.transformer(input_ids=batch["input_ids"]).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(masked[real], causal[real], atol=1e-5, rtol=1e-5)
    # And the pads are not ignored by accident: changing a pad id changes nothing real.
    other = batch["input_ids"].clone()
    other[~real] = 5
    with torch.no_grad():
        swapped = model.transformer(input_ids=other).last_hidden_state
    torch.testing.assert_close(causal[real], swapped[real], atol=1e-5, rtol=1e-5)


def test_fused_tanh_gelu_matches_gpt2_gelu():
    """GPT-2's "gelu_new" written out in six ops vs torch's one fused tanh-GELU kernel."""
    from transformers.activations import NewGELUActivation

    x = torch.cat([torch.linspace(-12, 12, 2001), torch.randn(4000) * 3]).requires_grad_(True)
    y_new = NewGELUActivation()(x)
    (g_new,) = torch.autograd.grad(y_new.sum(), x)
    y_fused = torch.nn.GELU(approximate="tanh")(x)
    (g_fused,) = torch.autograd.grad(y_fused.sum(), x)
    torch.testing.assert_close(y_fused, y_new, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(g_fused, g_new, atol=1e-5, rtol=1e-5)


def test_models_run_the_fused_gelu_and_give_the_same_logits(tiny_tokenizer):
    """QAModel swaps GPT-2's NewGELUActivation for the fused kernel; swapping it back changes
    no output beyond float rounding, and no parameter name."""
    from transformers.activations import NewGELUActivation

    qa, _, batch = _padded_batch(tiny_tokenizer, "first")
    model = tiny_model(tiny_tokenizer, qa).eval()
    acts = [block.mlp.act for block in model.transformer.h]
    assert all(isinstance(a, torch.nn.GELU) and a.approximate == "tanh" for a in acts)
    names = list(model.state_dict())
    with torch.no_grad():
        fused = model(**batch)
        for block in model.transformer.h:
            block.mlp.act = NewGELUActivation()
        unfused = model(**batch)
    assert list(model.state_dict()) == names
    torch.testing.assert_close(fused.start_logits, unfused.start_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused.end_logits, unfused.end_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused.loss, unfused.loss, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("head", ["linear", "bilstm"])
@pytest.mark.parametrize("null_position", ["first", "last", "classifier"])
def test_causal_backbone_without_padding_mask_gives_the_same_outputs(tiny_tokenizer, head,
                                                                     null_position):
    qa, _, batch = _padded_batch(tiny_tokenizer, null_position)
    qa = dataclasses.replace(qa, head=head)
    model = tiny_model(tiny_tokenizer, qa).eval()
    assert model.skip_padding_mask, "a GPT-2 backbone is causal: it should get no padding mask"
    with torch.no_grad():
        fast = model(**batch)
        model.skip_padding_mask = False
        masked = model(**batch)
    # Logits only count at real tokens; padded positions are masked to MASK_VALUE in both.
    torch.testing.assert_close(fast.start_logits, masked.start_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.end_logits, masked.end_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.null_score, masked.null_score, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.loss, masked.loss, atol=1e-6, rtol=1e-6)


def test_non_causal_backbone_keeps_its_padding_mask():
    from transformers import BertConfig, BertModel

    backbone = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=64))
    model = QAModel(backbone, QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16))
    assert not model.skip_padding_mask


def _fused_adamw_on_cpu() -> bool:
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    try:
        torch.optim.AdamW([p], fused=True).step()
    except (RuntimeError, TypeError):
        return False
    return True


@pytest.mark.skipif(not _fused_adamw_on_cpu(), reason="this torch has no fused CPU AdamW")
def test_fused_adamw_steps_like_foreach(tmp_path):
    """optimizer_for(fused=True) on CPU takes the same steps as the foreach path."""
    config = TrainConfig.of(train_file=str(tmp_path / "unused.json"), lr=1e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    init = {"h0_weight": torch.randn(16, 8, generator=gen), "ln_weight": torch.randn(8, generator=gen)}
    grads = [{k: torch.randn(v.shape, generator=gen) * 1e-2 for k, v in init.items()}
             for _ in range(4)]
    final = {}
    for fused in (False, True):
        model = torch.nn.ParameterDict({k: torch.nn.Parameter(v.clone()) for k, v in init.items()})
        optimizer = optimizer_for(model, config, fused=fused)
        assert bool(optimizer.defaults.get("fused")) == fused
        for g in grads:
            for k, v in g.items():
                model[k].grad = v.clone()
            optimizer.step()
        final[fused] = {k: p.detach().clone() for k, p in model.items()}
    for k, p in final[False].items():
        assert not torch.equal(p, init[k])
        torch.testing.assert_close(final[True][k], p, atol=1e-6, rtol=1e-5)


@pytest.mark.skipif(not _fused_adamw_on_cpu(), reason="this torch has no fused CPU AdamW")
def test_fused_adamw_trains_a_model_like_foreach(tiny_tokenizer, tmp_path):
    """Same losses step by step on a tiny model (weights whose gradient is rounding noise may
    move differently: Adam divides by sqrt(v) + eps, so the two paths' last bits show)."""
    qa, _, batch = _padded_batch(tiny_tokenizer, "first")
    config = TrainConfig.of(train_file=str(tmp_path / "unused.json"), lr=1e-3,
                         null_position="first", max_seq_length=64, doc_stride=16,
                         max_query_length=16)
    losses = {}
    for fused in (False, True):
        model = tiny_model(tiny_tokenizer, qa, seed=7).eval()  # eval: no dropout noise
        optimizer = optimizer_for(model, config, fused=fused)
        losses[fused] = []
        for _ in range(4):
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses[fused].append(loss.item())
    assert losses[False][-1] < losses[False][0]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


def test_training_uses_fused_adamw_on_cpu_and_cuda():
    assert fused_adamw_for(torch.device("cpu")) == _fused_adamw_on_cpu()
    assert fused_adamw_for(torch.device("cuda"))


@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear", "generative"])
def test_compiled_training_matches_eager(tiny_tokenizer, tmp_path, head):
    """`compile=True` trains to the same losses as eager (no dropout, so both draw no random
    numbers) and saves a model with the usual parameter names. (Inductor's C++ build takes
    most of this test's time; evaluation would compile a third graph, so there is none.)"""
    from safetensors.torch import load_file

    from gpt2qa.model import backbone_from_config, tiny_gpt2_config
    from gpt2qa.tasks import fine_tune as train
    from helpers import write_tiny_squad

    prepare_tokenizer(tiny_tokenizer)
    torch.manual_seed(0)
    init = tmp_path / "init"
    backbone_from_config(tiny_gpt2_config(len(tiny_tokenizer), n_embd=32, n_positions=128,
                                          dropout=0.0)).save_pretrained(init)
    tiny_tokenizer.save_pretrained(init)
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    runs = {}
    for compiled in (False, True):
        out = tmp_path / f"run-{compiled}"
        train(TrainConfig.of(model=str(init), train_file=str(data),
                          output_dir=str(out), max_seq_length=64, doc_stride=16,
                          max_query_length=16, batch_size=4, lr=3e-3, max_steps=6, log_every=1,
                          progress=False, seed=3, head=head, compile=compiled))
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        runs[compiled] = [r["loss"] for r in log if r["event"] == "train"]
    assert len(runs[False]) == 6 and runs[False][-1] < runs[False][0]
    np.testing.assert_allclose(runs[True], runs[False], rtol=1e-3)
    saved = {tmp_path / f"run-{c}" / "model" / "model.safetensors" for c in (False, True)}
    keys = [sorted(load_file(str(p))) for p in saved]
    assert keys[0] == keys[1] and not any("_orig_mod" in k for k in keys[0])


def test_forward_builds_no_kv_cache(tiny_tokenizer):
    """Nothing is generated, so the backbone must not copy keys/values into a cache."""
    model = tiny_model(tiny_tokenizer).eval()
    caches: list = []
    model.transformer.register_forward_hook(
        lambda _m, _i, out: caches.append(out.past_key_values))
    ids = torch.randint(0, 100, (2, 10))
    mask = torch.ones_like(ids)
    model(ids, mask, mask.bool(), torch.zeros(2, dtype=torch.long))
    assert caches == [None]
