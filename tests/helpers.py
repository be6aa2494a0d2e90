"""Builders shared by the model, train and CLI tests (tiny sizes only)."""

from __future__ import annotations

import json
from pathlib import Path

from builders import squad_v2_dict
from gpt2qa.config import QAConfig
from gpt2qa.features import prepare_tokenizer
from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config


def tiny_model(tokenizer, qa: QAConfig | None = None, seed: int = 0, n_embd: int = 32,
               dropout: float = 0.1) -> QAModel:
    import torch

    torch.manual_seed(seed)
    prepare_tokenizer(tokenizer)
    backbone = backbone_from_config(tiny_gpt2_config(len(tokenizer), n_layer=2, n_embd=n_embd,
                                                     n_head=2, n_positions=128, dropout=dropout))
    return QAModel(backbone, qa or QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16))


def save_init_dir(tokenizer, path: Path, seed: int = 0, dropout: float = 0.1) -> Path:
    """A randomly initialised backbone + tokenizer, as `gpt2qa train --model DIR` expects.
    No dropout (0.0) makes runs on 1 and 2 processes differ only in float summation order."""
    model = tiny_model(tokenizer, seed=seed, dropout=dropout)
    model.transformer.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_tiny_squad(path: Path, copies: int = 1) -> Path:
    data = squad_v2_dict()
    if copies > 1:
        base = data["data"]
        data["data"] = []
        for k in range(copies):
            for art in base:
                paras = [{"context": p["context"],
                          "qas": [{**qa, "id": f"{qa['id']}-{k}"} for qa in p["qas"]]}
                         for p in art["paragraphs"]]
                data["data"].append({"title": f"{art['title']}{k}", "paragraphs": paras})
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _pyplot():
    """matplotlib.pyplot on the Agg backend: tests that check gpt2qa's writers also take
    pyplot figures (gpt2qa itself uses only the Figure API)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`gpt2qa ARGV` in this process: (exit status, stdout, stderr)."""
    from gpt2qa.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    """Checks the house rule for bad input (exit 2, one stderr line, no traceback); the line."""
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def read_card(model_dir: Path, *run_paths: Path):
    """A model directory's README.md read through huggingface_hub's model-card parser, after
    checking that it names none of `run_paths` (the run's folders and data files, as given
    and resolved) nor the temporary folder they live in: (ModelCard, its text)."""
    import tempfile

    from huggingface_hub import ModelCard

    text = (model_dir / "README.md").read_text(encoding="utf-8")
    for path in (*run_paths, Path(tempfile.gettempdir())):
        for shown in {str(path), str(path.resolve())}:
            assert shown not in text, f"the card names {shown}"
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.library_name == "gpt2qa" and card.data.pipeline_tag == "question-answering"
    return card, text
