"""What every cell shares: the split files, one tokenizer, one random init per seed; and the
TrainConfig of a cell."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import prepare_tokenizer
from gpt2qa.io import atomic_dir, write_json_atomic
from gpt2qa.model import save_tiny_gpt2
from gpt2qa.study.config import SELECTION_SPLIT, SPLITS, StudyConfig
from gpt2qa.study.grid import Cell
from gpt2qa.synthetic import corpus_texts, write_benchmark
from gpt2qa.tokenizer import load_tokenizer, train_bpe_tokenizer


@dataclass(frozen=True)
class StudyInputs:
    """What every cell shares: the split files, the tokenizer and one init per seed."""

    data: Mapping[str, Path]
    tokenizer_dir: Path
    init_dirs: Mapping[int, Path]


def check_study_dir(config: StudyConfig, out: Path) -> None:
    """Refuse to mix cells trained with different data/model/train settings in one folder."""
    path = out / "study_config.json"
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise GPT2QAError(f"{path}: not valid JSON; remove it or use another --out-dir") from None
        new = config.fixed_part()
        for section, values in new.items():
            for key, value in values.items():
                before = old.get(section, {}).get(key)
                if before != value:
                    raise GPT2QAError(
                        f"{path}: this study was run with {section}.{key}={before!r}, the config "
                        f"asks for {value!r}; use another --out-dir")
    write_json_atomic(path, dataclasses.asdict(config))


def prepare_inputs(config: StudyConfig, out_dir: str | os.PathLike[str]) -> StudyInputs:
    """Write the data, train the one tokenizer and save one random init per seed (once)."""
    out = Path(out_dir)
    data_dir = out / "data"
    paths = {s: data_dir / f"{s}.json" for s in ("train", *SPLITS)}
    if not all(p.is_file() for p in paths.values()):
        d = config.data
        written = write_benchmark(data_dir, seed=d.seed, n_train=d.n_train, n_dev=d.n_dev,
                                  n_hard=d.n_hard, level=d.level)  # type: ignore[arg-type]
        paths = {s: written[s] for s in paths}

    tok_dir = out / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        train_json = json.loads(paths["train"].read_text(encoding="utf-8"))
        tokenizer = train_bpe_tokenizer(corpus_texts(train_json),
                                        vocab_size=config.model.vocab_size)
        prepare_tokenizer(tokenizer)
        with atomic_dir(tok_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    tokenizer = load_tokenizer(tok_dir)
    prepare_tokenizer(tokenizer)

    init_dirs = {}
    for seed in config.grid.seeds:
        init = out / f"init-seed{seed}"
        init_dirs[seed] = init
        if (init / "config.json").is_file() and (init / "model.safetensors").is_file():
            continue
        m = config.model
        with atomic_dir(init) as tmp:
            save_tiny_gpt2(tmp, tokenizer, seed, m.n_layer, m.n_embd, m.n_head,
                           config.train.max_seq_length)
    return StudyInputs(data=paths, tokenizer_dir=tok_dir, init_dirs=init_dirs)


def cell_train_config(config: StudyConfig, cell: Cell, inputs: StudyInputs, cell_dir: Path,
                      resume: bool = False, progress: bool = False) -> TrainConfig:
    """The TrainConfig of one cell: the shared overrides plus the cell's grid values."""
    return config.train.train_config(
        model=str(inputs.init_dirs[cell.seed]), output_dir=str(cell_dir),
        train_file=str(inputs.data["train"]), eval_file=str(inputs.data[SELECTION_SPLIT]),
        head=cell.head, layout=cell.layout, null_position=cell.null_position,
        seed=cell.seed, keep_checkpoints=1, resume=resume, progress=progress)
