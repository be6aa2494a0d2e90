"""SQuAD-style datasets from the Hugging Face hub, through the optional `datasets` extra.

`--dataset NAME[:CONFIG]`: squad_v2 and squad (the official repositories, with their SQuAD
version), or any hub dataset whose rows have SQuAD's columns (adversarial_qa:adversarialQA,
squad_adversarial:AddSent, ...), read as flat rows by `gpt2qa.readers` with the column flags
(`DataFormat`). NAME may be a local folder, which `datasets.load_dataset` reads as it reads a
hub repository. Training takes the train split and evaluates on the validation split when
there is one.
"""

from __future__ import annotations

from gpt2qa.config import DataFormat, Misaligned
from gpt2qa.data import SquadDataset
from gpt2qa.errors import GPT2QAError
from gpt2qa.readers import rows_dataset

HUB_DATASETS = {"squad_v2": ("rajpurkar/squad_v2", "v2.0"), "squad": ("rajpurkar/squad", "1.1")}
"""Short names -> (hub repository, SQuAD version)."""


def split_name(name: str) -> tuple[str, str | None]:
    """``NAME[:CONFIG]`` -> (repository, config or None); a short name becomes its repository.

    Worked example: "adversarial_qa:dbidaf" -> ("adversarial_qa", "dbidaf").
    """
    repo, sep, config = name.partition(":")
    if not repo.strip() or (sep and not config.strip()):
        raise GPT2QAError(f"--dataset {name!r}: expected NAME or NAME:CONFIG")
    return HUB_DATASETS.get(repo, (repo, ""))[0], config or None


def load_hub_dataset(name: str, misaligned: Misaligned = "error",
                     reading: DataFormat | None = None) -> tuple[SquadDataset, SquadDataset | None]:
    """(train, validation or None) of a hub dataset with SQuAD's columns."""
    repo, config = split_name(name)
    version = HUB_DATASETS.get(name.partition(":")[0], ("", None))[1]
    hint = ("use local files instead: --train-file FILE --eval-file FILE (docs/data.md: SQuAD "
            "JSON, JSON lines, CSV, Parquet or MRQA)")
    try:
        import datasets
    except ImportError:
        raise GPT2QAError(f"--dataset {name} needs the optional extra: "
                          f"pip install 'gpt2qa[datasets]'; or {hint}") from None
    try:
        ds = datasets.load_dataset(repo, config) if config else datasets.load_dataset(repo)
    except Exception as exc:  # the hub raises many types; all mean the same to the user
        raise GPT2QAError(f"--dataset {name}: could not load {repo} from the hub "
                          f"({type(exc).__name__}); {hint}") from None
    if "train" not in ds:
        raise GPT2QAError(f"--dataset {name}: no train split (it has {', '.join(ds)})")
    train = rows_dataset(ds["train"], f"hub:{repo}/train", reading, misaligned, version)
    evaluation = (rows_dataset(ds["validation"], f"hub:{repo}/validation", reading, misaligned,
                               version) if "validation" in ds else None)
    return train, evaluation
