"""SQuAD 2.0 from the Hugging Face hub, through the optional `datasets` extra."""

from __future__ import annotations

from gpt2qa.config import Misaligned
from gpt2qa.data import SquadDataset, parse_squad
from gpt2qa.errors import GPT2QAError

HUB_DATASETS = {"squad_v2": ("rajpurkar/squad_v2", "v2.0"), "squad": ("rajpurkar/squad", "1.1")}


def _to_squad_json(rows, version: str) -> dict:
    """The hub's flat rows -> the official nested layout, one article per title."""
    articles: dict[str, dict] = {}
    for row in rows:
        article = articles.setdefault(row["title"], {"title": row["title"], "paragraphs": []})
        paras = article["paragraphs"]
        if not paras or paras[-1]["context"] != row["context"]:
            paras.append({"context": row["context"], "qas": []})
        answers = [{"text": t, "answer_start": s}
                   for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True)]
        qa = {"id": row["id"], "question": row["question"], "answers": answers}
        if version == "v2.0":
            qa["is_impossible"] = not answers
        paras[-1]["qas"].append(qa)
    return {"version": version, "data": list(articles.values())}


def load_hub_dataset(name: str, misaligned: Misaligned = "error") -> tuple[SquadDataset, SquadDataset]:
    """(train, validation) of a hub SQuAD dataset."""
    if name not in HUB_DATASETS:
        raise GPT2QAError(f"--dataset {name!r}: known hub datasets are {', '.join(HUB_DATASETS)}")
    hint = ("use local files instead: --train-file train-v2.0.json --eval-file dev-v2.0.json "
            "(the official SQuAD 2.0 JSON)")
    try:
        import datasets
    except ImportError:
        raise GPT2QAError(f"--dataset {name} needs the optional extra: "
                          f"pip install 'gpt2qa[datasets]'; or {hint}") from None
    repo, version = HUB_DATASETS[name]
    try:
        ds = datasets.load_dataset(repo)
    except Exception as exc:  # the hub raises many types; all mean the same to the user
        raise GPT2QAError(f"--dataset {name}: could not download {repo} from the hub "
                          f"({type(exc).__name__}); {hint}") from None
    return tuple(parse_squad(_to_squad_json(ds[split], version), f"hub:{repo}/{split}", misaligned)
                 for split in ("train", "validation"))  # type: ignore[return-value]
