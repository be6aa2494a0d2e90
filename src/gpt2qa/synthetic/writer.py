"""Assemble one split (`generate`) and write the benchmark files (`write_benchmark`)."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from gpt2qa.errors import GPT2QAError
from gpt2qa.io import write_json_atomic
from gpt2qa.synthetic.names import NameBook
from gpt2qa.synthetic.plan import PlanState, add_block, render
from gpt2qa.synthetic.questions import Candidate, Quota, candidates, choose, qa_entry
from gpt2qa.synthetic.settings import MAX_SENTENCES, Split, SyntheticConfig
from gpt2qa.synthetic.slots import check_templates, template_vocabulary


def generate(config: SyntheticConfig) -> dict[str, Any]:
    """Build one split as an official-layout SQuAD v2.0 dict.

    Deterministic per (split, seed). Each article holds one paragraph, or two for a twin pair.
    """
    check_templates()
    preset = config.preset
    rng = random.Random(f"gpt2qa.synthetic/{config.split}/{config.seed}")
    names = NameBook(rng, config.split, template_vocabulary())
    quota = Quota(config.unanswerable_fraction, preset.after_distractor_share)
    twins_allowed = 0.0 < config.unanswerable_fraction < 1.0
    # A twin article holds two paragraphs: pairing a share t' of articles puts a share
    # 2t'/(1+t') of paragraphs in pairs, so t' = t/(2-t) gives twin_fraction t.
    twin_rate = preset.twin_fraction / (2.0 - preset.twin_fraction) if twins_allowed else 0.0
    kind_weights = {"person": 4.0, "company": 2.5, "city": 2.0, "river": 0.75, "mountain": 0.75}
    n_q = preset.questions_per_passage

    articles: list[dict[str, Any]] = []
    n_done = 0
    while n_done < config.n_passages:
        twin = config.n_passages - n_done >= 2 and rng.random() < twin_rate
        n_sentences = rng.randint(*preset.sentences_per_passage)
        pivot_at = rng.randrange(n_sentences) if twin else -1
        main_kind = rng.choices(list(kind_weights), list(kind_weights.values()))[0]
        main = names.entity(main_kind)
        state = PlanState(main, [main], {main.name}, set(), set())
        for i in range(n_sentences):
            if i == pivot_at:
                add_block(rng, names, state, preset, True, "twin")
            elif rng.random() < preset.two_way_rate:
                add_block(rng, names, state, preset, True, rng.choice(("affirm", "deny")))
            else:
                add_block(rng, names, state, preset, False, "plain")
        versions = (False, True) if twin else (False,)
        for extra in range(MAX_SENTENCES + 1):
            paragraphs = [render(state.blocks, deny) for deny in versions]
            pools = [candidates(rng, para) for para in paragraphs]
            if all(p.enough(n_q, config.unanswerable_fraction) for p in pools):
                break
            if extra == MAX_SENTENCES:
                raise GPT2QAError(f"SyntheticConfig.questions_per_passage: cannot find {n_q} "
                                  "distinct questions of the allowed kinds for a passage")
            # Rare ("never married" settles no answerable pair): add a sentence.
            add_block(rng, names, state, preset, False, "plain")

        forced: list[Candidate | None] = [None] * len(versions)
        if twin:
            pivot = rng.choice(state.blocks[pivot_at].template.pivots)
            ent = state.blocks[pivot_at].entities[pivot.entity]
            for i, pool in enumerate((pools[0].answerable, pools[1].after)):
                forced[i] = next(c for c in pool if c.entity == ent and c.attr == pivot.attr)

        # Twins ask their shared question in the same words.
        twin_phrasing = rng.random()
        paras_out = []
        for para, pool, force in zip(paragraphs, pools, forced, strict=True):
            chosen = choose(rng, pool, n_q, quota, force)
            qas = [qa_entry(rng, names, cand,
                       f"{config.split}-{config.seed}-{n_done:05d}-{j:02d}-{cand.kind}",
                       twin_phrasing if cand is force else None)
                   for j, cand in enumerate(chosen)]
            paras_out.append({"context": para.context, "qas": qas})
            n_done += 1
        articles.append({"title": main.name, "paragraphs": paras_out})

    squad = {"version": "v2.0", "data": articles}
    _self_check(squad)
    return squad


def _self_check(squad: Mapping[str, Any]) -> None:
    """Every answer and distractor must be an exact substring at its offset."""
    for article in squad["data"]:
        for para in article["paragraphs"]:
            ctx = para["context"]
            for qa in para["qas"]:
                for ans in (*qa["answers"], *qa.get("plausible_answers", ())):
                    start = ans["answer_start"]
                    if ctx[start:start + len(ans["text"])] != ans["text"]:
                        raise RuntimeError(f"synthetic generator bug: id={qa['id']}: answer "
                                           f"{ans['text']!r} is not at {start}")


def corpus_texts(squad: Mapping[str, Any]) -> list[str]:
    """Contexts and questions of a SQuAD dict, in file order (e.g. to train a tokenizer)."""
    texts: list[str] = []
    try:
        for a, article in enumerate(squad["data"]):
            for p, para in enumerate(article["paragraphs"]):
                path = f"data[{a}].paragraphs[{p}]"
                if not isinstance(para.get("context"), str):
                    raise GPT2QAError(f"<squad dict>: {path}.context: must be a string")
                texts.append(para["context"])
                for q, qa in enumerate(para.get("qas", [])):
                    if not isinstance(qa.get("question"), str):
                        raise GPT2QAError(f"<squad dict>: {path}.qas[{q}].question: must be a "
                                          f"string; id={qa.get('id')}")
                    texts.append(qa["question"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise GPT2QAError(f"<squad dict>: not the official SQuAD layout ({exc!r})") from None
    return texts


Level = Literal["standard", "easy"]

#: The "easy" train/dev level of the demo: short passages, no twins, no unanswerables that
#: only text after the distractor decides. A tiny GPT-2 learns it in CPU minutes.
EASY_OVERRIDES: Mapping[str, Any] = MappingProxyType({
    "twin_fraction": 0.0, "after_distractor_share": 0.0, "sentences_per_passage": (3, 4),
    "questions_per_passage": 3})


def write_benchmark(out_dir: str | os.PathLike[str], seed: int = 0, n_train: int = 1000,
                    n_dev: int = 150, n_hard: int = 100, level: Level = "standard",
                    ) -> dict[str, Path]:
    """Write ``train.json``, ``dev.json`` and ``hard.json`` under ``out_dir``; return the paths.

    ``n_*`` count paragraphs; the defaults give about 4,000 / 600 / 600 questions (4 per
    paragraph in train and dev, 6 in hard). ``level="easy"`` makes train and dev from
    `EASY_OVERRIDES` (3 questions per paragraph); the hard split is the same at both levels.
    Each file appears whole or not at all.
    """
    if level not in ("standard", "easy"):
        raise GPT2QAError(f"level must be standard or easy; got {level!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GPT2QAError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    sizes: dict[Split, int] = {"train": n_train, "dev": n_dev, "hard": n_hard}
    paths: dict[str, Path] = {}
    for split, n in sizes.items():
        extra = dict(EASY_OVERRIDES) if level == "easy" and split != "hard" else {}
        path = out / f"{split}.json"
        write_json_atomic(path, generate(SyntheticConfig(seed=seed, n_passages=n, split=split,
                                                          **extra)))
        paths[split] = path
    return paths
