"""A seeded synthetic SQuAD 2.0 benchmark: invented encyclopedic passages, templated questions.

It is the data of ``gpt2qa demo`` and of the study of where a causal (left-to-right) model
should read its "no answer" score.  Pure Python: everything comes from one
``random.Random`` per (split, seed), so the same config always gives the same file.

Passages are a few sentences about invented people, cities, companies, rivers and
mountains; names are built from syllables.  About a third of the questions are
unanswerable in the SQuAD 2.0 way: they ask about an entity or attribute the passage never
states, while a value of the right type (recorded as ``plausible_answers``) is present.

The point of the study is that a left-to-right reader must not be able to tell answerable
from unanswerable by the text up to the distractor.  So many sentences come from *two-way*
templates whose two versions share every character up to and including the value, and
differ only afterwards.  Worked example (the value is ``1832`` in both)::

    affirm: "In 1832, Bosa Kelimar was born in Tesanor."
    deny:   "In 1832, Bosa Kelimar's sister Lira Kelimar was born in Tesanor."

"When was Bosa Kelimar born?" is answerable (``1832``) in the first passage and unanswerable
(plausible answer ``1832``) in the second, while "When was Lira Kelimar born?" is answerable
there.  Some passages are generated as such *twins*: one article (title) holding the two
paragraphs, identical except for the text after the value in one sentence.

Question ids read ``{split}-{seed}-{paragraph:05d}-{question:02d}-{kind}``; `question_kind`
parses the kind: ``ans``, ``ans-after`` (answerable, from a two-way sentence, so only text
after the answer shows that it is one), ``unans`` (unanswerable: another entity's value,
another attribute's value, an absent namesake or a "never ..." sentence) and
``unans-after`` (unanswerable, decided only by text after the distractor).

Splits: ``train`` and ``dev`` share one distribution; ``hard`` has longer passages (several
192-token windows), more entities of each kind and more ``unans-after`` questions.  Every
name word belongs to exactly one split (a CRC-32 partition), so entity names never cross
splits, whatever the seeds.
"""

from __future__ import annotations

import functools
import math
import os
import random
import re
import string
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from gpt2qa.errors import GPT2QAError

Split = Literal["train", "dev", "hard"]
SPLITS: tuple[Split, ...] = ("train", "dev", "hard")
QuestionKind = Literal["ans", "ans-after", "unans", "unans-after"]
QUESTION_KINDS: tuple[QuestionKind, ...] = ("ans", "ans-after", "unans", "unans-after")

_ID_RE = re.compile(r"^(train|dev|hard)-(\d+)-(\d{5,})-(\d{2,})-(ans|ans-after|unans|unans-after)$")


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitPreset:
    """The per-split settings that `SyntheticConfig` fills in when a field is left as None.

    ``two_way_rate`` is the chance that a sentence comes from a two-way template, and
    ``reuse_rate`` the chance that an entity slot reuses an entity already in the passage
    (a lower rate means more entities, hence more distractors of each type).
    """

    questions_per_passage: int
    sentences_per_passage: tuple[int, int]
    after_distractor_share: float
    twin_fraction: float
    two_way_rate: float
    reuse_rate: float


SPLIT_PRESETS: Mapping[str, SplitPreset] = MappingProxyType({
    "train": SplitPreset(4, (4, 6), 0.4, 0.3, 0.35, 0.55),
    "dev": SplitPreset(4, (4, 6), 0.4, 0.3, 0.35, 0.55),
    "hard": SplitPreset(6, (15, 21), 0.7, 0.5, 0.5, 0.3),
})

_MAX_SENTENCES = 60


@dataclass(frozen=True)
class SyntheticConfig:
    """What `generate` builds: one split of the synthetic benchmark.

    Attributes:
        seed: Any int >= 0; together with ``split`` it fixes the output exactly.
        n_passages: Number of paragraphs (contexts). Twin pairs count as two.
        questions_per_passage: Questions per paragraph; None takes the split preset (4, or 6
            for ``hard``). At most the lower bound of ``sentences_per_passage``.
        unanswerable_fraction: Target share of unanswerable questions, 0..1.
        split: ``train``, ``dev`` (same distribution, disjoint names) or ``hard``.
        sentences_per_passage: Inclusive (low, high) sentence count; None takes the preset.
        after_distractor_share: Target share, among unanswerable questions, of those decided
            only by text after the distractor; None takes the preset (0.4, hard 0.7).
        twin_fraction: Share of paragraphs generated as answerable/unanswerable twin pairs;
            None takes the preset. Ignored (no twins) when the unanswerable fraction is 0 or 1.
    """

    seed: int = 0
    n_passages: int = 200
    questions_per_passage: int | None = None
    unanswerable_fraction: float = 1 / 3
    split: Split = "train"
    sentences_per_passage: tuple[int, int] | None = None
    after_distractor_share: float | None = None
    twin_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise GPT2QAError(f"SyntheticConfig.split: must be one of {', '.join(SPLITS)}; "
                              f"got {self.split!r}")
        _check_int("seed", self.seed, 0)
        _check_int("n_passages", self.n_passages, 1)
        if self.questions_per_passage is not None:
            _check_int("questions_per_passage", self.questions_per_passage, 1)
        _check_fraction("unanswerable_fraction", self.unanswerable_fraction)
        if self.after_distractor_share is not None:
            _check_fraction("after_distractor_share", self.after_distractor_share)
        if self.twin_fraction is not None:
            _check_fraction("twin_fraction", self.twin_fraction)
        if self.sentences_per_passage is not None:
            rng = self.sentences_per_passage
            if (not isinstance(rng, tuple) or len(rng) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng)
                    or not 1 <= rng[0] <= rng[1] <= _MAX_SENTENCES):
                raise GPT2QAError("SyntheticConfig.sentences_per_passage: must be a (low, high) "
                                  f"tuple of ints with 1 <= low <= high <= {_MAX_SENTENCES}; "
                                  f"got {rng!r}")
        preset = self.preset
        if preset.questions_per_passage > preset.sentences_per_passage[0]:
            # Each sentence settles at least one (entity, attribute) pair, so this many
            # sentences always offer enough distinct questions.
            raise GPT2QAError(
                f"SyntheticConfig.questions_per_passage: {preset.questions_per_passage} is more "
                f"than the fewest sentences per passage ({preset.sentences_per_passage[0]}); "
                "lower it or raise sentences_per_passage")

    @property
    def preset(self) -> SplitPreset:
        """The split preset with this config's explicit settings applied."""
        base = SPLIT_PRESETS[self.split]
        return replace(
            base,
            questions_per_passage=(base.questions_per_passage if self.questions_per_passage is None
                                   else self.questions_per_passage),
            sentences_per_passage=(base.sentences_per_passage if self.sentences_per_passage is None
                                   else self.sentences_per_passage),
            after_distractor_share=(base.after_distractor_share
                                    if self.after_distractor_share is None
                                    else self.after_distractor_share),
            twin_fraction=base.twin_fraction if self.twin_fraction is None else self.twin_fraction,
        )


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise GPT2QAError(f"SyntheticConfig.{name}: must be an int >= {minimum}; got {value!r}")


def _check_fraction(name: str, value: object) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not 0.0 <= float(value) <= 1.0):
        raise GPT2QAError(f"SyntheticConfig.{name}: must be a number in [0, 1]; got {value!r}")


# ---------------------------------------------------------------------------------------------
# Vocabulary: attributes, questions, values, sentence templates
# ---------------------------------------------------------------------------------------------

ENTITY_KINDS = ("person", "city", "company", "river", "mountain")

# Template field name prefix -> kind.  A field is the prefix plus an optional digit ("p2");
# a digit marks a secondary slot that usually gets a new entity.
_FIELD_KINDS: Mapping[str, str] = MappingProxyType({
    "p": "person", "c": "city", "co": "company", "r": "river", "m": "mountain",
    "y": "year", "n": "population", "k": "count", "len": "length", "h": "height",
    "occ": "occupation", "prod": "product", "rel": "relation",
})

# (entity kind, attribute) -> (kind of the value, question patterns).
_ATTRIBUTES: Mapping[tuple[str, str], tuple[str, tuple[str, ...]]] = MappingProxyType({
    ("person", "birth_year"): ("year", ("When was {e} born?", "In what year was {e} born?")),
    ("person", "death_year"): ("year", ("When did {e} die?", "In what year did {e} die?")),
    ("person", "birthplace"): ("city", ("Where was {e} born?", "In which town was {e} born?")),
    ("person", "occupation"): ("occupation", ("What did {e} work as?",
                                              "What was the occupation of {e}?")),
    ("person", "spouse"): ("person", ("Who did {e} marry?", "Who was {e} married to?")),
    ("city", "population"): ("population", ("How many people live in {e}?",
                                            "What is the population of {e}?")),
    ("city", "founding_year"): ("year", ("When was {e} founded?", "In what year was {e} founded?")),
    ("city", "founder"): ("person", ("Who founded {e}?", "Who was the founder of {e}?")),
    ("city", "river"): ("river", ("Which river flows through {e}?",)),
    ("company", "founding_year"): ("year", ("When was {e} founded?",
                                            "In what year was {e} founded?")),
    ("company", "founder"): ("person", ("Who founded {e}?", "Who was the founder of {e}?")),
    ("company", "headquarters"): ("city", ("Where is {e} based?",
                                           "In which town is {e} based?")),
    ("company", "employees"): ("count", ("How many people work for {e}?",
                                         "How many employees does {e} have?")),
    ("company", "product"): ("product", ("What does {e} make?", "What does {e} produce?")),
    ("river", "length"): ("length", ("How long is {e}?", "What is the length of {e}?")),
    ("river", "source"): ("mountain", ("Where does {e} rise?",)),
    ("mountain", "height"): ("height", ("How high is {e}?", "What is the height of {e}?")),
    ("mountain", "first_ascent"): ("year", ("When was {e} first climbed?",
                                            "In what year was {e} first climbed?")),
    ("mountain", "first_climber"): ("person", ("Who first climbed {e}?",
                                               "Who was the first to climb {e}?")),
})

_ATTRS_BY_KIND: Mapping[str, tuple[str, ...]] = MappingProxyType({
    kind: tuple(attr for (k, attr) in _ATTRIBUTES if k == kind) for kind in ENTITY_KINDS})

# Occupations start with a consonant so that "a {occ}" reads right.
_OCCUPATIONS = ("painter", "printer", "sailor", "teacher", "doctor", "poet", "merchant",
                "lawyer", "botanist", "clockmaker", "surveyor", "singer", "miner", "baker",
                "weaver", "carpenter", "tailor", "potter", "banker", "judge")
_PRODUCTS = ("glass", "rope", "clocks", "paper", "bicycles", "soap", "lamps", "maps", "tea",
             "salt", "bells", "boats", "candles", "cloth", "shoes", "pianos")
_RELATIONS = ("sister", "brother", "cousin", "son", "daughter", "niece", "nephew")
_COMPANY_SUFFIXES = ("Works", "Mills", "Company", "Foundry", "Traders")

# Name words are syllable strings with an optional final consonant.
_SYLLABLES = ("ba", "be", "bo", "da", "de", "di", "do", "fa", "fe", "ga", "go", "ha", "he",
              "ka", "ke", "ki", "ko", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na",
              "ne", "ni", "no", "pa", "pe", "ra", "re", "ri", "ro", "sa", "se", "si", "so",
              "ta", "te", "ti", "to", "va", "ve", "vi", "za", "zo")
_CODAS = ("", "", "n", "r", "l", "s", "k", "m", "th")


@dataclass(frozen=True)
class _FactSpec:
    """``entity`` field has attribute ``attr`` equal to the ``value`` field."""

    entity: str
    attr: str
    value: str


def _facts(*specs: str) -> tuple[_FactSpec, ...]:
    """Parse ``"p.birth_year=y"`` into a `_FactSpec`."""
    out = []
    for spec in specs:
        left, value = spec.split("=")
        entity, attr = left.split(".")
        out.append(_FactSpec(entity, attr, value))
    return tuple(out)


@dataclass(frozen=True)
class _Template:
    """One sentence pattern with ``{field}`` slots.

    A plain template states ``facts``. A two-way template also has a ``deny`` text: ``affirm``
    states ``facts`` and ``pivots``, ``deny`` states ``deny_facts`` and leaves each pivot
    unanswerable with the pivot's value as its distractor. Both texts are identical up to the
    end of every pivot value. ``unknown`` lists (field, attribute) pairs that the sentence
    deliberately leaves open ("{p} was never married").
    """

    affirm: str
    facts: tuple[_FactSpec, ...] = ()
    deny: str | None = None
    deny_facts: tuple[_FactSpec, ...] = ()
    pivots: tuple[_FactSpec, ...] = ()
    unknown: tuple[tuple[str, str], ...] = ()

    @property
    def two_way(self) -> bool:
        return self.deny is not None


def _plain(text: str, *facts: str, unknown: tuple[tuple[str, str], ...] = ()) -> _Template:
    return _Template(affirm=text, facts=_facts(*facts), unknown=unknown)


def _two_way(affirm: str, deny: str, pivots: Sequence[str], facts: Sequence[str] = (),
             deny_facts: Sequence[str] = ()) -> _Template:
    return _Template(affirm=affirm, deny=deny, pivots=_facts(*pivots), facts=_facts(*facts),
                     deny_facts=_facts(*deny_facts))


_PLAIN_TEMPLATES: tuple[_Template, ...] = (
    # people
    _plain("{p} was born in {y} in {c}.", "p.birth_year=y", "p.birthplace=c"),
    _plain("{p} was a {occ} born in {c} in {y}.", "p.occupation=occ", "p.birthplace=c",
           "p.birth_year=y"),
    _plain("Born in {c} in {y}, {p} later worked as a {occ}.", "p.birthplace=c",
           "p.birth_year=y", "p.occupation=occ"),
    _plain("{p} was born in {y}, not in {y2} as some sources claim.", "p.birth_year=y"),
    _plain("{p2}, the {rel} of {p}, was born in {y}.", "p2.birth_year=y"),
    _plain("{p} trained as a {occ2} but later worked as a {occ}.", "p.occupation=occ"),
    _plain("{p} worked as a {occ} in {c} for many years.", "p.occupation=occ"),
    _plain("{p} died in {c} in {y}.", "p.death_year=y"),
    _plain("{p} married {p2} in {y}.", "p.spouse=p2", "p2.spouse=p"),
    _plain("{p} was never married.", unknown=(("p", "spouse"),)),
    _plain("{p} never worked as a {occ2}, although {p2} did.", "p2.occupation=occ2",
           unknown=(("p", "occupation"),)),
    # cities
    _plain("{c} is a town of {n} people on the {r}.", "c.population=n", "c.river=r"),
    _plain("{c} was founded in {y} by {p}.", "c.founding_year=y", "c.founder=p"),
    _plain("{p} founded {c} in {y}.", "c.founder=p", "c.founding_year=y"),
    _plain("{c} has a population of {n}.", "c.population=n"),
    _plain("The {r} flows through {c}.", "c.river=r"),
    _plain("{c} was founded in {y} and now has {n} residents.", "c.founding_year=y",
           "c.population=n"),
    _plain("{c} lies on the {r}, not on the {r2}.", "c.river=r"),
    # companies
    _plain("{co} was founded in {y} by {p}, a {occ} living in {c}.", "co.founding_year=y",
           "co.founder=p", "p.occupation=occ"),
    _plain("{co} makes {prod} and is based in {c}.", "co.product=prod", "co.headquarters=c"),
    _plain("{co} employs {k} people at its headquarters in {c}.", "co.employees=k",
           "co.headquarters=c"),
    _plain("Based in {c}, {co} has {k} employees.", "co.headquarters=c", "co.employees=k"),
    _plain("{co} has never moved its headquarters from {c}.", "co.headquarters=c"),
    _plain("{co} stopped making {prod2} long ago and now makes {prod}.", "co.product=prod"),
    _plain("{p}, not {p2}, founded {co} in {y}.", "co.founder=p", "co.founding_year=y"),
    _plain("{co} was founded in {y} and makes {prod}.", "co.founding_year=y", "co.product=prod"),
    # rivers and mountains
    _plain("The {r} is {len} long and rises on {m}.", "r.length=len", "r.source=m"),
    _plain("{m} is {h} high.", "m.height=h"),
    _plain("{m} rises {h} above the sea and was first climbed in {y}.", "m.height=h",
           "m.first_ascent=y"),
    _plain("{p} first climbed {m} in {y}.", "m.first_climber=p", "m.first_ascent=y"),
    _plain("The {r} runs for {len} before it reaches the sea.", "r.length=len"),
    _plain("The {r} rises on {m}, which is {h} high.", "r.source=m", "m.height=h"),
)

_TWO_WAY_TEMPLATES: tuple[_Template, ...] = (
    # people
    _two_way("In {y}, {p} was born in {c}.",
             "In {y}, {p}'s {rel} {p2} was born in {c}.",
             pivots=["p.birth_year=y"], facts=["p.birthplace=c"],
             deny_facts=["p2.birth_year=y", "p2.birthplace=c"]),
    _two_way("Church records give {y} as the year {p} was born.",
             "Church records give {y} as the year {p} was baptised, but the record of {p}'s "
             "birth was lost.",
             pivots=["p.birth_year=y"]),
    _two_way("In {y}, {p} became engaged to {p2}, and the two married a year later.",
             "In {y}, {p} became engaged to {p2}, but the engagement was broken off and {p} "
             "never married.",
             pivots=["p.spouse=p2", "p2.spouse=p"]),
    _two_way("{p} trained as a {occ} in {c} and worked as one for many years.",
             "{p} trained as a {occ} in {c} but never worked as one.",
             pivots=["p.occupation=occ"]),
    _two_way("In {y}, {p} died in {c}.",
             "In {y}, {p} was wrongly reported to have died in {c}.",
             pivots=["p.death_year=y"]),
    _two_way("{p} grew up in {c}, where {p} was born.",
             "{p} grew up in {c}, although {p} was born elsewhere.",
             pivots=["p.birthplace=c"]),
    # companies
    _two_way("{p} founded {co} in {y}.",
             "{p} did not found {co}, contrary to rumours, but joined it in {y}.",
             pivots=["co.founder=p"], facts=["co.founding_year=y"]),
    _two_way("The founder of {co} is often said to be {p}, and old company papers confirm "
             "this.",
             "The founder of {co} is often said to be {p}, but old company papers show this is "
             "a myth.",
             pivots=["co.founder=p"]),
    _two_way("{co} opened an office in {c} in {y} and soon moved its headquarters there.",
             "{co} opened an office in {c} in {y} but kept its headquarters elsewhere.",
             pivots=["co.headquarters=c"]),
    _two_way("{c} is home to the headquarters of {co}.",
             "{c} is home to a small branch of {co}.",
             pivots=["co.headquarters=c"]),
    _two_way("{co} traces its history to {y}, when it was founded.",
             "{co} traces its history to {y}, but the year of its founding is unknown.",
             pivots=["co.founding_year=y"]),
    _two_way("Some {k} people work for {co}.",
             "Some {k} people work for {co2}, the main rival of {co}.",
             pivots=["co.employees=k"], deny_facts=["co2.employees=k"]),
    _two_way("{co} is known for the {prod} sold in its shops, all of which it makes itself.",
             "{co} is known for the {prod} sold in its shops, although it has never made any.",
             pivots=["co.product=prod"]),
    # cities
    _two_way("A figure of {n} residents is often quoted for {c}, and the last census "
             "confirmed it.",
             "A figure of {n} residents is often quoted for {c}, but it is wrong, and no census "
             "has been taken there.",
             pivots=["c.population=n"]),
    _two_way("The census of {y} counted {n} people in {c}.",
             "The census of {y} counted {n} people in {c2}, a village near {c}.",
             pivots=["c.population=n"], deny_facts=["c2.population=n"]),
    _two_way("{p} led the first settlers to {c} and founded the town in {y}.",
             "{p} led the first settlers to {c}, but the town had been founded long before.",
             pivots=["c.founder=p"], facts=["c.founding_year=y"]),
    _two_way("The {r} flows past {c} and right through the old town.",
             "The {r} flows past {c} but never through it.",
             pivots=["c.river=r"]),
    # rivers and mountains
    _two_way("A length of {len} is often given for the {r}, and modern surveys agree.",
             "A length of {len} is often given for the {r}, but that figure belongs to the "
             "{r2}.",
             pivots=["r.length=len"], deny_facts=["r2.length=len"]),
    _two_way("Old maps give a height of {h} for {m}, and this was confirmed in {y}.",
             "Old maps give a height of {h} for {m}, but {m} has never been properly measured.",
             pivots=["m.height=h"]),
    _two_way("In {y}, {p} reached the top of {m}, the first person ever to do so.",
             "In {y}, {p} tried to reach the top of {m} but turned back, and {m} has never "
             "been climbed.",
             pivots=["m.first_ascent=y", "m.first_climber=p"]),
)


@functools.cache
def _field_kind(name: str) -> str:
    match = re.fullmatch(r"([a-z]+?)(\d*)", name)
    if match is None or match.group(1) not in _FIELD_KINDS:
        raise RuntimeError(f"synthetic template field {{{name}}} has no known kind")
    return _FIELD_KINDS[match.group(1)]


def _is_secondary(name: str) -> bool:
    return name[-1].isdigit()


def _fields(text: str) -> list[str]:
    """Field names in order of first appearance."""
    out: list[str] = []
    for _literal, name, _spec, _conv in string.Formatter().parse(text):
        if name is not None and name not in out:
            out.append(name)
    return out


@functools.cache
def _template_fields(tpl: _Template) -> tuple[str, ...]:
    names = _fields(tpl.affirm)
    for name in _fields(tpl.deny or ""):
        if name not in names:
            names.append(name)
    return tuple(names)


def _all_claims(tpl: _Template) -> list[tuple[str, str]]:
    """Every (field, attribute) the template settles, in either version."""
    claims = [(f.entity, f.attr) for f in (*tpl.facts, *tpl.pivots, *tpl.deny_facts)]
    return claims + list(tpl.unknown)


def _fill(text: str, values: Mapping[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill ``{field}`` slots; return the sentence and each field's first (start, end)."""
    parts: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    for literal, name, _spec, _conv in string.Formatter().parse(text):
        parts.append(literal)
        pos += len(literal)
        if name is not None:
            value = values[name]
            spans.setdefault(name, (pos, pos + len(value)))
            parts.append(value)
            pos += len(value)
    sentence = "".join(parts)
    # Sentence case: upper-casing one letter keeps every offset.
    return sentence[:1].upper() + sentence[1:], spans


def check_templates() -> None:
    """Raise RuntimeError if a template is inconsistent (run by the tests and by `generate`).

    Checks: every field has a kind; every fact names a real attribute of its entity's kind and
    a value field of the attribute's value kind; every field a fact uses occurs in the text
    that states it; only secondary (digit) entity fields occur in one version of a two-way
    template;
    and each pivot value ends before the two versions first differ.
    """
    for tpl in (*_PLAIN_TEMPLATES, *_TWO_WAY_TEMPLATES):
        where = f"synthetic template {tpl.affirm!r}"
        fields = _template_fields(tpl)
        kinds = {name: _field_kind(name) for name in fields}
        groups: list[tuple[str, tuple[_FactSpec, ...]]] = [
            (tpl.affirm, tpl.facts + tpl.pivots), (tpl.deny or "", tpl.deny_facts)]
        for text, facts in groups:
            present = set(_fields(text))
            for fact in facts:
                key = (kinds.get(fact.entity, "?"), fact.attr)
                if key not in _ATTRIBUTES or _ATTRIBUTES[key][0] != kinds.get(fact.value):
                    raise RuntimeError(f"{where}: fact {fact} does not fit the field kinds")
                if not {fact.entity, fact.value} <= present:
                    raise RuntimeError(f"{where}: fact {fact} uses a field its text lacks")
        for name, attr in tpl.unknown:
            if (kinds.get(name, "?"), attr) not in _ATTRIBUTES:
                raise RuntimeError(f"{where}: unknown ({name}, {attr}) does not fit")
        if tpl.deny is None:
            if tpl.pivots or tpl.deny_facts:
                raise RuntimeError(f"{where}: pivots need a deny text")
            continue
        if not tpl.pivots:
            raise RuntimeError(f"{where}: a two-way template needs a pivot")
        one_sided = set(_fields(tpl.affirm)) ^ set(_fields(tpl.deny))
        if any(not _is_secondary(n) and kinds[n] in ENTITY_KINDS for n in one_sided):
            raise RuntimeError(f"{where}: only secondary entity fields may occur in one version")
        # Distinct placeholder values show where the two versions part.
        probe = {name: f"<{name}>" for name in fields}
        affirm, a_spans = _fill(tpl.affirm, probe)
        deny, d_spans = _fill(tpl.deny, probe)
        for pivot in tpl.pivots:
            end = a_spans[pivot.value][1]
            if a_spans[pivot.value] != d_spans.get(pivot.value) or affirm[:end] != deny[:end]:
                raise RuntimeError(f"{where}: the versions differ before the end of "
                                   f"{{{pivot.value}}}")


def template_vocabulary() -> frozenset[str]:
    """Every word (lower-cased) that templates, questions and value lists use.

    Generated names never use one of these words, so any capitalised word outside this set
    in a generated passage is part of an entity name.
    """
    texts: list[str] = []
    for tpl in (*_PLAIN_TEMPLATES, *_TWO_WAY_TEMPLATES):
        texts.extend([tpl.affirm, tpl.deny or ""])
    for _kind, patterns in _ATTRIBUTES.values():
        texts.extend(patterns)
    texts.extend([*_OCCUPATIONS, *_PRODUCTS, *_RELATIONS, *_COMPANY_SUFFIXES,
                  "mount", "river", "the", "kilometres", "metres"])
    words: set[str] = set()
    for text in texts:
        literal = re.sub(r"\{[a-z0-9]+\}", " ", text)
        words.update(w.lower() for w in re.findall(r"[A-Za-z]+", literal))
    return frozenset(words)


# ---------------------------------------------------------------------------------------------
# Entities and names
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entity:
    """An invented entity. ``name`` is what templates insert ("Zorbel River", "Mount Hask")."""

    name: str
    kind: str
    surname: str = ""

    @property
    def surface(self) -> str:
        """How a question refers to it."""
        return f"the {self.name}" if self.kind == "river" else self.name


class _NameBook:
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
            word = "".join(rng.choice(_SYLLABLES) for _ in range(n)) + rng.choice(_CODAS)
            if (word in self._used or word in self._reserved
                    or zlib.crc32(word.encode("ascii")) % len(SPLITS) != self._part):
                continue
            self._used.add(word)
            return word.capitalize()

    def entity(self, kind: str, surname: str | None = None) -> _Entity:
        if kind == "person":
            last = surname or self.word()
            return _Entity(f"{self.word()} {last}", kind, last)
        if kind == "city":
            return _Entity(self.word(), kind)
        if kind == "company":
            return _Entity(f"{self.word()} {self._rng.choice(_COMPANY_SUFFIXES)}", kind)
        if kind == "river":
            return _Entity(f"{self.word()} River", kind)
        if kind == "mountain":
            return _Entity(f"Mount {self.word()}", kind)
        raise RuntimeError(f"no entity kind {kind!r}")


def _value(rng: random.Random, kind: str, used: set[str]) -> str:
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
            text = rng.choice(_OCCUPATIONS)
        elif kind == "product":
            text = rng.choice(_PRODUCTS)
        elif kind == "relation":
            return rng.choice(_RELATIONS)
        else:
            raise RuntimeError(f"no value kind {kind!r}")
        if text not in used:
            break
    used.add(text)
    return text


# ---------------------------------------------------------------------------------------------
# Passage plans and rendering
# ---------------------------------------------------------------------------------------------

Polarity = Literal["plain", "affirm", "deny", "twin"]


@dataclass(frozen=True)
class _Block:
    """One planned sentence: a template, its slot values and which version to print.

    ``twin`` prints ``affirm`` in the first paragraph of a twin pair and ``deny`` in the second.
    """

    template: _Template
    values: Mapping[str, str]
    entities: Mapping[str, _Entity]
    polarity: Polarity


@dataclass
class _PlanState:
    """What a passage plan has used so far (local to one plan)."""

    main: _Entity
    entities: list[_Entity]
    bindable: set[str]
    claims: set[tuple[str, str]]
    used_values: set[str]
    blocks: list[_Block] = field(default_factory=list)


@functools.cache
def _topic_kinds(tpl: _Template) -> frozenset[str]:
    kinds = (_field_kind(f) for f in _template_fields(tpl) if not _is_secondary(f))
    return frozenset(kind for kind in kinds if kind in ENTITY_KINDS)


def _add_block(rng: random.Random, names: _NameBook, state: _PlanState, preset: SplitPreset,
               two_way: bool, polarity: Polarity) -> None:
    """Choose a template, fill its slots and append the sentence to the plan."""
    first = not state.blocks
    pool = _TWO_WAY_TEMPLATES if two_way else _PLAIN_TEMPLATES
    if first:  # the first sentence introduces the title entity
        pool = tuple(t for t in pool if state.main.kind in _topic_kinds(t))
    # Favour templates about the title entity's kind; repeat a template only now and then.
    used = Counter(id(b.template) for b in state.blocks)
    weights = [(3.0 if state.main.kind in _topic_kinds(t) else 1.0) * 0.25 ** used[id(t)]
               for t in pool]
    tpl = rng.choices(pool, weights)[0]

    fields = _template_fields(tpl)
    needs: dict[str, set[str]] = {f: set() for f in fields}
    for name, attr in _all_claims(tpl):
        needs[name].add(attr)
    has_relation = any(_field_kind(f) == "relation" for f in fields)
    values: dict[str, str] = {}
    entities: dict[str, _Entity] = {}
    new: list[_Entity] = []
    main_placed = False
    # Primary slots first, so a relative ({p2}) can take the surname of {p}.
    for name in sorted(fields, key=lambda f: (_is_secondary(f), fields.index(f))):
        kind = _field_kind(name)
        if kind not in ENTITY_KINDS:
            values[name] = _value(rng, kind, state.used_values)
            continue
        taken = {e.name for e in entities.values()}
        eligible = [e for e in state.entities
                    if e.kind == kind and e.name in state.bindable and e.name not in taken
                    and not any((e.name, a) in state.claims for a in needs[name])]
        chosen: _Entity | None = None
        if first and not main_placed and kind == state.main.kind and not _is_secondary(name):
            chosen, main_placed = state.main, True
        elif _is_secondary(name):
            if eligible and rng.random() < 0.15:
                chosen = rng.choice(eligible)
        elif state.main in eligible and rng.random() < 0.7:
            chosen = state.main  # keep the passage about its title entity
        elif eligible and rng.random() < preset.reuse_rate:
            chosen = rng.choice(eligible)
        if chosen is None:
            surname = None
            if has_relation and kind == "person" and name != "p" and "p" in entities:
                surname = entities["p"].surname
            chosen = names.entity(kind, surname)
            new.append(chosen)
        entities[name] = chosen
        values[name] = chosen.name

    in_both = set(_fields(tpl.affirm)) & set(_fields(tpl.deny)) if tpl.two_way else set(fields)
    for name, ent in entities.items():
        if ent in new:
            state.entities.append(ent)
            # An entity that only one version prints must not be used by later sentences:
            # the other twin would mention it without introducing it.
            if name in in_both:
                state.bindable.add(ent.name)
    for name, attr in _all_claims(tpl):
        state.claims.add((entities[name].name, attr))
    state.blocks.append(_Block(tpl, MappingProxyType(values), MappingProxyType(entities),
                               polarity))


@dataclass(frozen=True)
class _Span:
    text: str
    start: int


@dataclass(frozen=True)
class _Fact:
    entity: _Entity
    attr: str
    value: _Span
    after: bool


@dataclass(frozen=True)
class _Mention:
    kind: str
    span: _Span


@dataclass(frozen=True)
class _Paragraph:
    context: str
    facts: tuple[_Fact, ...]
    probes: tuple[_Fact, ...]          # two-way pivots printed in their deny version
    mentions: Mapping[str, _Entity]    # entities printed, by name
    spans: tuple[_Mention, ...]        # every printed slot value


def _render(blocks: Sequence[_Block], deny_twin: bool) -> _Paragraph:
    sentences: list[str] = []
    facts: list[_Fact] = []
    probes: list[_Fact] = []
    mentions: dict[str, _Entity] = {}
    spans: list[_Mention] = []
    offset = 0
    for block in blocks:
        tpl = block.template
        polarity = block.polarity
        if polarity == "twin":
            polarity = "deny" if deny_twin else "affirm"
        text_tpl = tpl.deny if polarity == "deny" and tpl.deny is not None else tpl.affirm
        sentence, local = _fill(text_tpl, block.values)
        at = {name: _Span(block.values[name], offset + start)
              for name, (start, _end) in local.items()}
        for name, span in at.items():
            if name in block.entities:
                mentions.setdefault(block.entities[name].name, block.entities[name])
            spans.append(_Mention(_field_kind(name), span))
        if polarity == "deny":
            facts.extend(_Fact(block.entities[f.entity], f.attr, at[f.value], False)
                         for f in tpl.deny_facts)
            probes.extend(_Fact(block.entities[f.entity], f.attr, at[f.value], True)
                          for f in tpl.pivots)
        else:
            facts.extend(_Fact(block.entities[f.entity], f.attr, at[f.value], False)
                         for f in tpl.facts)
            facts.extend(_Fact(block.entities[f.entity], f.attr, at[f.value], True)
                         for f in tpl.pivots)
        sentences.append(sentence)
        offset += len(sentence) + 1
    return _Paragraph(" ".join(sentences), tuple(facts), tuple(probes),
                      MappingProxyType(mentions), tuple(spans))


# ---------------------------------------------------------------------------------------------
# Questions
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Candidate:
    """A possible question: about ``entity``'s ``attr``, with its answer or distractor span.

    ``absent`` marks an unanswerable question about a namesake of ``entity`` who is not in the
    passage (same surname, new first name); the name is drawn only when the question is used.
    """

    entity: _Entity
    attr: str
    span: _Span
    impossible: bool
    after: bool
    weight: float = 1.0
    absent: bool = False

    @property
    def key(self) -> tuple[str, str, bool]:
        return (self.entity.name, self.attr, self.absent)

    @property
    def kind(self) -> QuestionKind:
        if self.impossible:
            return "unans-after" if self.after else "unans"
        return "ans-after" if self.after else "ans"


@dataclass(frozen=True)
class _Pools:
    answerable: tuple[_Candidate, ...]
    after: tuple[_Candidate, ...]
    other: tuple[_Candidate, ...]

    def enough(self, n_questions: int, unanswerable_fraction: float) -> bool:
        """Whether ``n_questions`` distinct questions of the kinds allowed can be asked."""
        if unanswerable_fraction == 0.0:
            pools: tuple[_Candidate, ...] = self.answerable
        elif unanswerable_fraction == 1.0:
            pools = (*self.after, *self.other)
        else:
            pools = (*self.answerable, *self.after, *self.other)
        return len({(c.entity.name, c.attr) for c in pools}) >= n_questions


def _candidates(rng: random.Random, para: _Paragraph) -> _Pools:
    answerable = tuple(_Candidate(f.entity, f.attr, f.value, False, f.after) for f in para.facts)
    after = tuple(_Candidate(p.entity, p.attr, p.value, True, True) for p in para.probes)
    settled = {(f.entity.name, f.attr) for f in (*para.facts, *para.probes)}
    other: list[_Candidate] = []
    for ent in para.mentions.values():
        for attr in _ATTRS_BY_KIND[ent.kind]:
            if (ent.name, attr) in settled:
                continue
            vkind = _ATTRIBUTES[(ent.kind, attr)][0]
            # Best distractor: the same attribute of another entity ("born in 1832" for the
            # sister); then another attribute of the same value kind; then any such value.
            tiers = (
                (4.0, [f.value for f in para.facts
                       if f.attr == attr and f.entity.kind == ent.kind and f.entity != ent]),
                (2.0, [f.value for f in para.facts
                       if _ATTRIBUTES[(f.entity.kind, f.attr)][0] == vkind
                       and f.value.text != ent.name]),
                (1.0, [m.span for m in para.spans
                       if m.kind == vkind and m.span.text != ent.name]),
            )
            for weight, spans in tiers:
                if spans:
                    other.append(_Candidate(ent, attr, rng.choice(spans), True, False, weight))
                    break
    # A namesake who is not in the passage, asked about a fact stated for a relative.
    for fact in para.facts:
        if fact.entity.kind == "person":
            other.append(_Candidate(fact.entity, fact.attr, fact.value, True, False, 0.5, True))
    return _Pools(answerable, after, tuple(other))


@dataclass
class _Quota:
    """Keeps the split's unanswerable fraction and after-distractor share on target.

    Error diffusion: whatever a paragraph could not supply is added to the next one's target.
    It also keeps each attribute's unanswerable rate near the split's, so that the question
    alone ("When did X die?") says little about answerability: a candidate whose choice
    would move its attribute's running rate towards the target is preferred.
    """

    unanswerable_fraction: float
    after_share: float
    unanswerable_debt: float = 0.0
    after_debt: float = 0.0
    per_attr: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def n_unanswerable(self, rng: random.Random, n_questions: int, low: int, high: int) -> int:
        want = self.unanswerable_fraction * n_questions + self.unanswerable_debt
        count = math.floor(want) + (1 if rng.random() < want - math.floor(want) else 0)
        return min(max(count, low), high)

    def want_after(self, rng: random.Random) -> bool:
        return rng.random() < self.after_share + self.after_debt

    def balance(self, cand: _Candidate) -> float:
        """Weight factor: above 1 when asking ``cand`` evens out its attribute's rate."""
        answerable, unanswerable = self.per_attr.get((cand.entity.kind, cand.attr), [0, 0])
        # Smoothed towards the target so that the first few questions move nothing.
        rate = (unanswerable + 4 * self.unanswerable_fraction) / (answerable + unanswerable + 4)
        gap = rate - self.unanswerable_fraction
        return math.exp(-8.0 * gap if cand.impossible else 8.0 * gap)

    def record(self, chosen: Sequence[_Candidate]) -> None:
        unanswerable = [c for c in chosen if c.impossible]
        self.unanswerable_debt += self.unanswerable_fraction * len(chosen) - len(unanswerable)
        for cand in unanswerable:
            self.after_debt += self.after_share - (1.0 if cand.after else 0.0)
        for cand in chosen:
            self.per_attr.setdefault((cand.entity.kind, cand.attr), [0, 0])[
                int(cand.impossible)] += 1


def _take(rng: random.Random, pool: Sequence[_Candidate], used: set[tuple[str, str, bool]],
          asked: set[tuple[str, str]], quota: _Quota) -> _Candidate | None:
    left = [c for c in pool if c.key not in used and (c.entity.name, c.attr) not in asked]
    if not left:
        return None
    return rng.choices(left, [c.weight * quota.balance(c) for c in left])[0]


def _choose(rng: random.Random, pools: _Pools, n_questions: int, quota: _Quota,
            forced: _Candidate | None) -> list[_Candidate]:
    chosen: list[_Candidate] = [forced] if forced is not None else []
    low = 1 if forced is not None and forced.impossible else 0
    high = n_questions - (1 if forced is not None and not forced.impossible else 0)
    n_unans = quota.n_unanswerable(rng, n_questions, low, high)
    slots = [True] * (n_unans - low) + [False] * (n_questions - len(chosen) - (n_unans - low))
    used = {c.key for c in chosen}
    # Never ask about the same (entity, attribute) twice in one paragraph.
    asked = {(c.entity.name, c.attr) for c in chosen}
    for impossible in slots:
        if impossible:
            order = ([pools.after, pools.other] if quota.want_after(rng)
                     else [pools.other, pools.after])
            if quota.unanswerable_fraction < 1.0:
                order.append(pools.answerable)
        else:
            order = [pools.answerable]
            if quota.unanswerable_fraction > 0.0:
                order += [pools.other, pools.after]
        for pool in order:
            cand = _take(rng, pool, used, asked, quota)
            if cand is not None:
                chosen.append(cand)
                used.add(cand.key)
                asked.add((cand.entity.name, cand.attr))
                break
    quota.record(chosen)
    rng.shuffle(chosen)
    return chosen


def _qa(rng: random.Random, names: _NameBook, cand: _Candidate, qas_id: str,
        phrasing: float | None = None) -> dict[str, Any]:
    """One SQuAD question; ``phrasing`` in [0, 1) picks the wording (random when None)."""
    entity = cand.entity
    if cand.absent:
        entity = names.entity("person", entity.surname)
    patterns = _ATTRIBUTES[(entity.kind, cand.attr)][1]
    pick = rng.random() if phrasing is None else phrasing
    question = patterns[int(pick * len(patterns))].format(e=entity.surface)
    answer = {"text": cand.span.text, "answer_start": cand.span.start}
    qa: dict[str, Any] = {"id": qas_id, "question": question,
                          "answers": [] if cand.impossible else [answer],
                          "is_impossible": cand.impossible}
    if cand.impossible:
        qa["plausible_answers"] = [answer]
    return qa


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

def generate(config: SyntheticConfig) -> dict[str, Any]:
    """Build one split as an official-layout SQuAD v2.0 dict.

    Deterministic per (split, seed). Each article holds one paragraph, or two for a twin pair.
    """
    check_templates()
    preset = config.preset
    rng = random.Random(f"gpt2qa.synthetic/{config.split}/{config.seed}")
    names = _NameBook(rng, config.split, template_vocabulary())
    quota = _Quota(config.unanswerable_fraction, preset.after_distractor_share)
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
        state = _PlanState(main, [main], {main.name}, set(), set())
        for i in range(n_sentences):
            if i == pivot_at:
                _add_block(rng, names, state, preset, True, "twin")
            elif rng.random() < preset.two_way_rate:
                _add_block(rng, names, state, preset, True, rng.choice(("affirm", "deny")))
            else:
                _add_block(rng, names, state, preset, False, "plain")
        versions = (False, True) if twin else (False,)
        for extra in range(_MAX_SENTENCES + 1):
            paragraphs = [_render(state.blocks, deny) for deny in versions]
            pools = [_candidates(rng, para) for para in paragraphs]
            if all(p.enough(n_q, config.unanswerable_fraction) for p in pools):
                break
            if extra == _MAX_SENTENCES:
                raise GPT2QAError(f"SyntheticConfig.questions_per_passage: cannot find {n_q} "
                                  "distinct questions of the allowed kinds for a passage")
            # Rare ("never married" settles no answerable pair): add a sentence.
            _add_block(rng, names, state, preset, False, "plain")

        forced: list[_Candidate | None] = [None] * len(versions)
        if twin:
            pivot = rng.choice(state.blocks[pivot_at].template.pivots)
            ent = state.blocks[pivot_at].entities[pivot.entity]
            for i, pool in enumerate((pools[0].answerable, pools[1].after)):
                forced[i] = next(c for c in pool if c.entity == ent and c.attr == pivot.attr)

        # Twins ask their shared question in the same words.
        twin_phrasing = rng.random()
        paras_out = []
        for para, pool, force in zip(paragraphs, pools, forced, strict=True):
            chosen = _choose(rng, pool, n_q, quota, force)
            qas = [_qa(rng, names, cand,
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


def question_kind(qas_id: str) -> QuestionKind:
    """The kind a synthetic question id carries: ``ans``, ``ans-after``, ``unans``,
    ``unans-after`` (see the module docstring)."""
    match = _ID_RE.match(qas_id)
    if match is None:
        raise GPT2QAError(f"id={qas_id}: not a synthetic question id "
                          "({split}-{seed}-{paragraph}-{question}-{kind})")
    return match.group(5)  # type: ignore[return-value]


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
    from gpt2qa.decode import write_json_atomic

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
