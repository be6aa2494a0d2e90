"""A seeded synthetic multi-hop benchmark in the official HotpotQA layout, for CPU minutes.

Each question comes with titled paragraphs about invented companies and people:

    "Tavrik Works": "Tavrik Works makes rope." "It was founded in 1834 by Quell Mebbit."
                    "Its main office is in Dorsan."
    "Quell Mebbit": "Quell Mebbit was a sailor." "Quell Mebbit was born in Kelimar."

Question types (shares in `_TYPES`):
  bridge      "Where was the founder of Tavrik Works born?" -> "Kelimar": the company
              paragraph names the founder, whose own paragraph holds the answer;
              also "What was the founder of X's occupation?"
  comparison  "Which was founded first, X or Y?" -> the older company's name;
  yes/no      "Was X founded before Y?" / "Were X and Y founded in the same city?"

Distractors are real: every question also gets other companies (with their own founders'
paragraphs), so each answer has wrong candidates of the right type in the context; they are
recorded per question as ``plausible_answers``. Sentence order inside a paragraph is shuffled,
so a supporting fact is not always sentence 0, and paragraph order is shuffled.

Splits ``train``, ``dev`` and ``test`` never share a name word (a CRC-32 partition of the
syllable-built words), so held-out questions are about unseen entities.
"""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path
from typing import Any

from gpt2qa.errors import GPT2QAError
from gpt2qa.io import write_json_atomic
from gpt2qa.synthetic.names import syllable_word
from gpt2qa.synthetic.templates import COMPANY_SUFFIXES

SPLITS = ("train", "dev", "test")
_SYLLABLES = ("ba", "be", "bo", "da", "de", "di", "do", "fa", "ga", "go", "ha", "ka", "ke",
              "ki", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "ni", "no",
              "pa", "pe", "ra", "re", "ri", "ro", "sa", "se", "si", "ta", "te", "ti", "to",
              "va", "ve", "vi", "za", "zo")
_CODAS = ("", "n", "r", "l", "s", "k", "m", "th")
_PRODUCTS = ("rope", "glass", "clocks", "paper", "soap", "lamps", "maps", "tea", "bricks",
             "boats")
_OCCUPATIONS = ("sailor", "painter", "printer", "teacher", "doctor", "poet", "merchant",
                "baker", "miner", "weaver")
_TYPES = (("bridge-born", 0.3), ("bridge-job", 0.2), ("which-first", 0.2),
          ("before-yn", 0.15), ("same-city-yn", 0.15))


def _split_of(word: str) -> str:
    bucket = zlib.crc32(word.lower().encode()) % 10
    return "train" if bucket < 7 else "dev" if bucket < 9 else "test"


class _Names:
    """Fresh capitalised words belonging to one split, never repeated within a question."""

    def __init__(self, rng: random.Random, split: str) -> None:
        self.rng, self.split = rng, split

    def word(self, used: set[str]) -> str:
        for _ in range(10_000):
            n = self.rng.choice((2, 2, 3))
            w = syllable_word(self.rng, n, _SYLLABLES, _CODAS).capitalize()
            if _split_of(w) == self.split and w not in used:
                used.add(w)
                return w
        raise GPT2QAError("synthetic names: could not find a fresh word")


def _world(rng: random.Random, names: _Names, n_companies: int) -> list[dict[str, Any]]:
    """Companies with distinct years and founders; some share a city (for same-city yes/no)."""
    used: set[str] = set()
    cities = [names.word(used) for _ in range(max(2, n_companies - 1))]
    years = rng.sample(range(1780, 1960), n_companies)
    companies = []
    for k in range(n_companies):
        founder = f"{names.word(used)} {names.word(used)}"
        companies.append({
            "name": f"{names.word(used)} {rng.choice(COMPANY_SUFFIXES)}", "year": str(years[k]),
            "city": rng.choice(cities), "product": rng.choice(_PRODUCTS), "founder": founder,
            "birthplace": names.word(used), "job": rng.choice(_OCCUPATIONS),
        })
    return companies


def _paragraphs(rng: random.Random, c: dict[str, Any]) -> list[tuple[str, list[str], dict]]:
    """The company's and the founder's paragraphs, shuffled, with each key sentence's index."""
    founded = f"was founded in {c['year']} by {c['founder']}."
    company = [("product", f"{c['name']} makes {c['product']}."), ("founded", f"It {founded}"),
               ("city", f"Its main office is in {c['city']}.")]
    person = [("job", f"{c['founder']} was a {c['job']}."),
              ("born", f"{c['founder']} was born in {c['birthplace']}.")]
    out = []
    for title, sentences in ((c["name"], company), (c["founder"], person)):
        rng.shuffle(sentences)
        if sentences[0][0] == "founded":  # a paragraph opens with the name, not "It"
            sentences[0] = ("founded", f"{c['name']} {founded}")
        index = {key: i for i, (key, _) in enumerate(sentences)}
        texts = [s if i == 0 else " " + s for i, (_, s) in enumerate(sentences)]
        out.append((title, texts, index))
    return out


def _question(rng: random.Random, kind: str, world: list[dict[str, Any]],
              paras: dict[str, tuple[list[str], dict]]) -> dict[str, Any]:
    a, b = world[0], world[1]
    fact = lambda title, key: [title, paras[title][1][key]]  # noqa: E731
    if kind == "bridge-born":
        return {"question": f"Where was the founder of {a['name']} born?",
                "answer": a["birthplace"], "type": "bridge",
                "supporting_facts": [fact(a["name"], "founded"), fact(a["founder"], "born")],
                "plausible_answers": [c["birthplace"] for c in world[1:]]}
    if kind == "bridge-job":
        return {"question": f"What was the occupation of the founder of {a['name']}?",
                "answer": a["job"], "type": "bridge",
                "supporting_facts": [fact(a["name"], "founded"), fact(a["founder"], "job")],
                "plausible_answers": sorted({c["job"] for c in world[1:]} - {a["job"]})}
    facts = [fact(a["name"], "founded"), fact(b["name"], "founded")]
    x, y = (a, b) if rng.random() < 0.5 else (b, a)
    if kind == "which-first":
        older = x if int(x["year"]) < int(y["year"]) else y
        return {"question": f"Which was founded first, {x['name']} or {y['name']}?",
                "answer": older["name"], "type": "comparison", "supporting_facts": facts,
                "plausible_answers": [y["name"] if older is x else x["name"]]}
    if kind == "before-yn":
        answer = "yes" if int(x["year"]) < int(y["year"]) else "no"
        return {"question": f"Was {x['name']} founded before {y['name']}?", "answer": answer,
                "type": "comparison", "supporting_facts": facts, "plausible_answers": []}
    facts = [fact(a["name"], "city"), fact(b["name"], "city")]
    return {"question": f"Were {x['name']} and {y['name']} founded in the same city?",
            "answer": "yes" if a["city"] == b["city"] else "no", "type": "comparison",
            "supporting_facts": facts, "plausible_answers": []}


def generate(split: str, n: int, seed: int, n_companies: int = 3) -> list[dict[str, Any]]:
    """``n`` questions of one split in the official layout (plus ``plausible_answers``).

    Each question has ``2 * n_companies`` paragraphs: its gold pair(s) and the rest about
    other companies and founders. Same (split, n, seed, n_companies) -> same list.
    """
    if split not in SPLITS:
        raise GPT2QAError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if n < 1 or n_companies < 2:
        raise GPT2QAError("need n >= 1 questions and n_companies >= 2")
    rng = random.Random(f"hotpot-{split}-{seed}")
    names = _Names(rng, split)
    kinds, weights = zip(*_TYPES, strict=True)
    out = []
    for q in range(n):
        kind = rng.choices(kinds, weights)[0]
        world = _world(rng, names, n_companies)
        if kind == "same-city-yn":  # balance yes and no
            if rng.random() < 0.5:
                world[1]["city"] = world[0]["city"]
            elif world[1]["city"] == world[0]["city"]:
                others = [c["city"] for c in world if c["city"] != world[0]["city"]]
                world[1]["city"] = others[0] if others else names.word({world[0]["city"]})
        context, paras = [], {}
        for c in world:
            for title, texts, index in _paragraphs(rng, c):
                context.append([title, texts])
                paras[title] = (texts, index)
        rng.shuffle(context)
        item = _question(rng, kind, world, paras)
        out.append({"_id": f"{split}-{seed}-{q:05d}-{kind}", "question": item["question"],
                    "answer": item["answer"], "type": item["type"], "level": "synthetic",
                    "supporting_facts": item["supporting_facts"], "context": context,
                    "plausible_answers": item["plausible_answers"]})
    return out


def write_hotpot_benchmark(out_dir: str | os.PathLike[str], seed: int = 0, n_train: int = 3000,
                           n_dev: int = 300, n_test: int = 300,
                           n_companies: int = 3) -> dict[str, Path]:
    """Write train.json, dev.json and test.json (official layout) into ``out_dir``."""
    out = Path(out_dir)
    paths = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        paths[split] = out / f"{split}.json"
        write_json_atomic(paths[split], generate(split, n, seed, n_companies))
    return paths


def hotpot_corpus_texts(items: list[dict[str, Any]]) -> list[str]:
    """Questions, titles and paragraphs, for training a tokenizer."""
    texts = []
    for item in items:
        texts.append(item["question"])
        for title, sentences in item["context"]:
            texts.append(f"{title}: {''.join(sentences)}")
    return texts
