"""Low-precision CPU inference: bf16 autocast on CPU and int8 dynamic quantisation."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gpt2qa import quantize
from gpt2qa.checkpoint import save_model
from gpt2qa.cli import main
from gpt2qa.config import QAConfig
from gpt2qa.data import SquadExample
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import prepare_tokenizer
from gpt2qa.inference import run_model
from gpt2qa.pipeline import QAPipeline
from helpers import tiny_model, write_tiny_squad

QA = QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16)
CONTEXTS = [
    "The Eiffel Tower was completed in 1889 in Paris, France.",
    "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    "The river Zorbel flows 412 kilometres from the Hask mountains to the sea.",
    "Tavrik is a city of 31,000 people founded by Quell Mebbit in 1834.",
]
QUESTIONS = ["Who built the tower?", "When was it completed?", "Where does the river flow?",
             "Who won the prize?", "How many people live there?", "Who founded the city?"]


def _examples() -> list[SquadExample]:
    return [SquadExample(qas_id=f"q{i}-{j}", question=q, context=c, answers=(),
                         is_impossible=False)
            for i, c in enumerate(CONTEXTS) for j, q in enumerate(QUESTIONS)]


@pytest.fixture()
def allow_bf16(monkeypatch):
    """Pretend this CPU has bf16 instructions (torch emulates bf16 without them)."""
    monkeypatch.setattr(quantize, "cpu_bf16_support", lambda: "test")


def _pipeline(tokenizer, head: str = "linear", null_position: str = "first") -> QAPipeline:
    model = tiny_model(tokenizer, QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16,
                                           head=head, null_position=null_position), n_embd=64)
    with torch.no_grad():  # spread the random logits so that near-ties are rare
        model.qa_outputs.weight.mul_(20.0)
    return QAPipeline(model.eval(), tokenizer, prepare_tokenizer(tokenizer))


def _agreement(a: list, b: list) -> float:
    return sum(x.text == y.text for x, y in zip(a, b, strict=True)) / len(a)


@pytest.mark.parametrize("head,null_position", [("linear", "first"), ("bilstm", "classifier")])
def test_bf16_on_cpu_mostly_matches_fp32(tiny_tokenizer, allow_bf16, head, null_position):
    pipe = _pipeline(tiny_tokenizer, head, null_position)
    examples = _examples()
    fp32 = pipe.predict(examples)
    pipe.precision = "bf16"
    bf16 = pipe.predict(examples)
    # Tolerance: bf16 keeps ~3 significant digits in the backbone, so near-tied spans of a
    # random model may flip; at least 80% of the 24 answers must be the same text.
    assert _agreement(fp32, bf16) >= 0.8
    diffs = [abs(a.score_diff - b.score_diff) for a, b in zip(fp32, bf16, strict=True)]
    assert max(diffs) < 0.5


def test_heads_stay_fp32_under_cpu_autocast(tiny_tokenizer, allow_bf16):
    pipe = _pipeline(tiny_tokenizer, "bilstm", "classifier")
    pipe.precision = "bf16"
    seen: list[torch.dtype] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(
        (out[0] if isinstance(out, tuple) else out).dtype))
        for m in (pipe.model.qa_outputs, pipe.model.na_classifier)]
    backbone_dtypes: list[torch.dtype] = []
    hooks.append(pipe.model.transformer.h[0].mlp.c_fc.register_forward_hook(
        lambda _m, _i, out: backbone_dtypes.append(out.dtype)))
    feats = pipe.predict(_examples()[:3])
    for h in hooks:
        h.remove()
    assert feats and seen and set(seen) == {torch.float32}
    assert set(backbone_dtypes) == {torch.bfloat16}  # the backbone did run in bf16
    assert all(p.dtype == torch.float32 for p in pipe.model.parameters())


def test_int8_quantises_backbone_only(tiny_tokenizer):
    pipe = _pipeline(tiny_tokenizer, "bilstm", "classifier")
    examples = _examples()
    fp32 = pipe.predict(examples)
    n = quantize.quantize_backbone_int8(pipe.model)
    assert n == 2 * 4  # per block: c_attn, c_proj (attention), c_fc, c_proj (MLP)
    from transformers.pytorch_utils import Conv1D

    backbone = list(pipe.model.transformer.modules())
    assert not any(isinstance(m, Conv1D) for m in pipe.model.modules())
    assert not any(type(m) is nn.Linear for m in backbone)  # all became dynamic-int8 Linears
    assert sum(type(m).__name__ == "Linear" and "quantized" in type(m).__module__
               for m in backbone) == n
    assert type(pipe.model.qa_outputs) is nn.Linear and type(pipe.model.na_classifier) is nn.Linear
    assert pipe.model.qa_outputs.weight.dtype == torch.float32
    int8 = pipe.predict(examples)
    assert len(int8) == len(fp32) and all(p.qas_id == q.qas_id for p, q in zip(int8, fp32, strict=True))
    # Tolerance as for bf16: int8 activations round to 1/127 of each row's range.
    assert _agreement(fp32, int8) >= 0.8


def test_conv1d_to_linear_is_the_same_map(tiny_tokenizer):
    model = tiny_model(tiny_tokenizer, QA, n_embd=64).eval()
    pipe = QAPipeline(model, tiny_tokenizer, prepare_tokenizer(tiny_tokenizer))
    from gpt2qa.features import convert_examples_to_features

    feats = convert_examples_to_features(_examples()[:4], tiny_tokenizer, QA.features,
                                         pipe.special_ids)
    before = run_model(model, feats, pipe.special_ids.pad)
    assert quantize.conv1d_to_linear(model.transformer) == 8
    after = run_model(model, feats, pipe.special_ids.pad)
    for a, b in zip(before, after, strict=True):
        assert torch.allclose(torch.from_numpy(a.start_logits), torch.from_numpy(b.start_logits),
                              atol=1e-4)


def test_bf16_refused_without_cpu_support(monkeypatch, tiny_tokenizer, tmp_path):
    monkeypatch.setattr(quantize, "cpu_bf16_support", lambda: "")
    model_dir = save_model(tiny_model(tiny_tokenizer, QA), tiny_tokenizer, tmp_path / "m")
    with pytest.raises(GPT2QAError, match="no avx512_bf16/amx_bf16") as info:
        QAPipeline.from_pretrained(model_dir, device="cpu", precision="bf16")
    assert "\n" not in str(info.value)
    with pytest.warns(UserWarning, match="emulated"):
        quantize.check_cpu_bf16(allow_slow=True)


def test_cpu_bf16_support_reads_cpu_flags(monkeypatch):
    quantize.cpu_bf16_support.cache_clear()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    original = quantize.Path.read_text
    monkeypatch.setattr(quantize.Path, "read_text", lambda self, **kw: (
        "flags : fpu avx2 avx512_bf16 amx_bf16\n" if str(self) == "/proc/cpuinfo"
        else original(self, **kw)))
    try:
        assert quantize.cpu_bf16_support() == "CPU flags amx_bf16, avx512_bf16"
    finally:
        quantize.cpu_bf16_support.cache_clear()


def test_cli_predict_quantize_and_precision(capsys, tmp_path, tiny_tokenizer, monkeypatch):
    model_dir = save_model(tiny_model(tiny_tokenizer, QA), tiny_tokenizer, tmp_path / "m")
    data = write_tiny_squad(tmp_path / "d.json")
    code = main(["predict", "--model", str(model_dir), "--data", str(data), "--out-dir",
                 str(tmp_path / "p"), "--quantize", "int8", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["examples"] == 3
    assert len(json.loads((tmp_path / "p" / "predictions.json").read_text())) == 3

    monkeypatch.setattr(quantize, "cpu_bf16_support", lambda: "")
    code = main(["predict", "--model", str(model_dir), "--question", "When?", "--context",
                 "In 1889.", "--precision", "bf16", "--device", "cpu"])
    _, err = capsys.readouterr()
    assert code == 2 and "no avx512_bf16/amx_bf16" in err and len(err.strip().splitlines()) == 1

    code = main(["predict", "--model", str(model_dir), "--question", "When?", "--context",
                 "In 1889.", "--precision", "bf16", "--quantize", "int8", "--device", "cpu"])
    _, err = capsys.readouterr()
    assert code == 2 and "leave --precision at fp32" in err

    monkeypatch.setattr(quantize, "cpu_bf16_support", lambda: "test")
    code = main(["predict", "--model", str(model_dir), "--question", "When was it built?",
                 "--context", "It was built in 1889.", "--precision", "bf16", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "answer" in json.loads(out)


def test_serve_flags_reach_the_pipeline(monkeypatch):
    from gpt2qa import serve
    from gpt2qa.serve.__main__ import main as serve_main

    seen: dict = {}
    monkeypatch.setattr(serve, "serve_forever", lambda model, settings, **kw: seen.update(kw))
    assert serve_main(["--model", "m", "--quantize", "int8", "--precision", "fp32"]) == 0
    assert seen["quantize"] == "int8" and seen["precision"] == "fp32"


def test_int8_weights_are_per_channel_and_engine_is_restored(tiny_tokenizer):
    pipe = _pipeline(tiny_tokenizer)
    before = torch.backends.quantized.engine
    assert not quantize.is_int8(pipe.model)
    quantize.quantize_backbone_int8(pipe.model)
    assert torch.backends.quantized.engine == before  # the global setting is not left changed
    assert quantize.is_int8(pipe.model)
    layer = pipe.model.transformer.h[0].mlp.c_fc
    assert layer.weight().qscheme() == torch.per_channel_affine
    assert layer.weight().q_per_channel_scales().numel() == layer.out_features


def test_int8_models_get_smaller_cpu_batches(tiny_tokenizer, monkeypatch):
    from gpt2qa import batching, inference

    cpu = torch.device("cpu")
    assert batching.inference_batch_size(cpu, 768, 384, int8=True) == 1  # GPT-2-small shape
    assert batching.inference_batch_size(cpu, 768, 384) == 3
    assert batching.inference_batch_size(cpu, 128, 192, int8=True) == 10
    pipe = _pipeline(tiny_tokenizer)
    quantize.quantize_backbone_int8(pipe.model)
    seen: list[int] = []
    real = inference.length_grouped_batches
    monkeypatch.setattr(inference, "length_grouped_batches",
                        lambda lengths, size, **kw: seen.append(size) or real(lengths, size, **kw))
    # A budget of two 64-wide, 64-token windows: tiny models hit the cap of 64 otherwise.
    monkeypatch.setattr(batching, "CPU_INT8_BATCH_FLOATS", 2 * 64 * QA.features.max_seq_length)
    pipe.predict(_examples()[:2])
    assert seen == [2]
    assert batching.inference_batch_size(cpu, 64, QA.features.max_seq_length) == 64
