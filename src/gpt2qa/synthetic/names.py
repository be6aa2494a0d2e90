"""Invented entities and values: syllable-built names, split-disjoint, never a template word."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from gpt2qa.synthetic.settings import SPLITS, Split
from gpt2qa.synthetic.templates import (
    CODAS,
    COMPANY_SUFFIXES,
    OCCUPATIONS,
    PRODUCTS,
    RELATIONS,
    SYLLABLES,
)


def syllable_word(rng: random.Random, n_syllables: int, syllables: Sequence[str],
                  codas: Sequence[str]) -> str:
    """``n_syllables`` random syllables and a coda, lower case ("ke" + "li" + "m" -> "kelim").

    The HotpotQA generator builds its names the same way, from its own syllable lists.
    """
    return "".join(rng.choice(syllables) for _ in range(n_syllables)) + rng.choice(codas)


@dataclass(frozen=True)
class Entity:
    """An invented entity. ``name`` is what templates insert ("Zorbel River", "Mount Hask")."""

    name: str
    kind: str
    surname: str = ""

    @property
    def surface(self) -> str:
        """How a question refers to it."""
        return f"the {self.name}" if self.kind == "river" else self.name


class NameBook:
    """Fresh name words for one split: never reused, never a template word, and always in
    this split's third of the CRC-32 partition (so no name word is shared between splits)."""

    def __init__(self, rng: random.Random, split: Split, reserved: frozenset[str]) -> None:
        self._rng = rng
        self._part = SPLITS.index(split)
        self._reserved = reserved
        self._used: set[str] = set()

    def word(self) -> str:
        rng = self._rng
        while True:
            n = 2 if rng.random() < 0.7 else 3
            word = syllable_word(rng, n, SYLLABLES, CODAS)
            if (word in self._used or word in self._reserved
                    or zlib.crc32(word.encode("ascii")) % len(SPLITS) != self._part):
                continue
            self._used.add(word)
            return word.capitalize()

    def entity(self, kind: str, surname: str | None = None) -> Entity:
        if kind == "person":
            last = surname or self.word()
            return Entity(f"{self.word()} {last}", kind, last)
        if kind == "city":
            return Entity(self.word(), kind)
        if kind == "company":
            return Entity(f"{self.word()} {self._rng.choice(COMPANY_SUFFIXES)}", kind)
        if kind == "river":
            return Entity(f"{self.word()} River", kind)
        if kind == "mountain":
            return Entity(f"Mount {self.word()}", kind)
        raise RuntimeError(f"no entity kind {kind!r}")


def fresh_value(rng: random.Random, kind: str, used: set[str]) -> str:
    """A value of a non-entity kind, distinct from the passage's other values when possible."""
    text = ""
    for _ in range(40):
        if kind == "year":
            text = str(rng.randint(1620, 1990))
        elif kind == "population":
            text = f"{rng.randint(12, 990) * 100:,}"
        elif kind == "count":
            text = f"{rng.randint(30, 9500):,}"
        elif kind == "length":
            text = f"{rng.randint(40, 990)} kilometres"
        elif kind == "height":
            text = f"{rng.randint(900, 8400):,} metres"
        elif kind == "occupation":
            text = rng.choice(OCCUPATIONS)
        elif kind == "product":
            text = rng.choice(PRODUCTS)
        elif kind == "relation":
            return rng.choice(RELATIONS)
        else:
            raise RuntimeError(f"no value kind {kind!r}")
        if text not in used:
            break
    used.add(text)
    return text

