"""The backbone matrix: every family gpt2qa claims, tiny, end to end through the CLI.

Each row is a tiny random backbone (2 layers, 32 wide) saved with `save_pretrained` in the
dtype its family ships in, next to a tokenizer of the kind the family ships with. It trains
(2 steps), saves, loads, predicts and evaluates through `gpt2qa.cli.main`, and then checks
that skipping the padding mask (right padding under causal attention) gives every row the
logits it gets alone. A model type outside `CAUSAL_MODEL_TYPES` keeps the padding mask.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from families import EXAMPLES, FAMILIES, HEADS, LAYERS, POSITIONS, WIDTH, Family, make_tokenizer
from gpt2qa.batching import collate
from gpt2qa.checkpoint import load_model
from gpt2qa.cli import main
from gpt2qa.config import QAConfig
from gpt2qa.features import convert_examples_to_features, prepare_tokenizer
from gpt2qa.model import CAUSAL_MODEL_TYPES, QAModel
from helpers import write_tiny_squad


def save_family_dir(family: Family, path: Path, seed: int = 0, tokenizer: Any = None) -> Path:
    """A random tiny backbone saved in its family's dtype, with its tokenizer."""
    from transformers import AutoModel

    tokenizer = tokenizer or make_tokenizer(family.tokenizer)
    torch.manual_seed(seed)
    backbone = AutoModel.from_config(family.config(len(tokenizer)))
    assert backbone.config.model_type == family.model_type
    backbone.to(family.dtype).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_matrix_covers_every_claimed_causal_type():
    assert {f.model_type for f in FAMILIES} == set(CAUSAL_MODEL_TYPES)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.model_type)
def test_family_end_to_end(family: Family, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    run_family(family, save_family_dir(family, tmp_path / "init"), tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.realdata
def test_neox_with_gpt2s_real_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         shared_data):
    """Pythia's shape of checkpoint (GPT-NeoX, fp16) with GPT-2's own 50257-token tokenizer."""
    from gpt2qa.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(shared_data("gpt2-tokenizer"))
    family = next(f for f in FAMILIES if f.model_type == "gpt_neox")
    run_family(family, save_family_dir(family, tmp_path / "init", tokenizer=tokenizer), tmp_path,
               capsys)


def run_family(family: Family, init: Path, tmp_path: Path,
               capsys: pytest.CaptureFixture[str]) -> None:
    saved = json.loads((init / "config.json").read_text())
    assert saved["dtype"] == str(family.dtype).removeprefix("torch.")
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    run = tmp_path / "run"
    summary = cli(capsys, "train", "--model", str(init), "--train-file", str(data),
                  "--eval-file", str(data), "--output-dir", str(run), "--max-seq-length", "64",
                  "--doc-stride", "16", "--max-query-length", "16", "--batch-size", "2",
                  "--max-steps", "2", "--lr", "0.003", "--no-progress")
    assert summary["steps"] == 2 and "f1" in summary["metrics"]
    out = cli(capsys, "predict", "--model", str(run / "model"), "--data", str(data),
              "--out-dir", str(tmp_path / "pred"))
    assert out["examples"] == 6
    metrics = cli(capsys, "evaluate", str(data), str(tmp_path / "pred" / "predictions.json"),
                  "--na-prob-file", str(tmp_path / "pred" / "na_probs.json"))
    assert metrics["total"] == 6
    # predict reproduces what train measured on the same file with the saved model.
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert set(preds) == set(json.loads((run / "predictions.json").read_text()))

    model, tokenizer, special = load_model(run / "model")
    assert model.skip_padding_mask
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # Llama-style tokenizers put BOS at position 0 of every window; byte-level ones add none.
    assert (special.bos is not None) == family.tokenizer.startswith("metaspace")
    assert_right_padding_is_invisible(model, tokenizer)


def assert_right_padding_is_invisible(model: QAModel, tokenizer: Any) -> None:
    """Rows of different lengths batched together (right-padded, maybe without a padding mask)
    get the logits each gets alone, and those the masked path gives."""
    special = prepare_tokenizer(tokenizer)
    feats = convert_examples_to_features(EXAMPLES, tokenizer, model.config.features, special)
    assert len({len(f.input_ids) for f in feats}) > 1  # there is padding to hide
    model.eval()
    with torch.no_grad():
        together = model(**collate(feats, special.pad))
        skip = model.skip_padding_mask
        model.skip_padding_mask = False
        masked = model(**collate(feats, special.pad))
        model.skip_padding_mask = skip
        for i, f in enumerate(feats):
            alone = model(**collate([f], special.pad))
            n = len(f.input_ids)
            for got in (together, masked):
                torch.testing.assert_close(got.start_logits[i, :n], alone.start_logits[0],
                                           atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(got.end_logits[i, :n], alone.end_logits[0],
                                           atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(got.null_score[i], alone.null_score[0],
                                           atol=1e-4, rtol=1e-4)


def test_type_outside_the_matrix_keeps_the_padding_mask():
    """Decision: an unlisted model type is not refused; it runs with the padding mask passed
    to the backbone (correct for any attention pattern, only slower)."""
    from transformers import AutoModel, OPTConfig

    tokenizer = make_tokenizer("byte-level")
    prepare_tokenizer(tokenizer)
    torch.manual_seed(0)
    backbone = AutoModel.from_config(OPTConfig(
        vocab_size=len(tokenizer), hidden_size=WIDTH, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, ffn_dim=64, word_embed_proj_dim=WIDTH,
        max_position_embeddings=POSITIONS))
    model = QAModel(backbone, QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16))
    assert backbone.config.model_type not in CAUSAL_MODEL_TYPES
    assert not model.skip_padding_mask
    assert_right_padding_is_invisible(model, tokenizer)
