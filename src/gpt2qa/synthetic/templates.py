"""The synthetic benchmark's vocabulary and sentence templates, as data.

Attributes and their question patterns, value lists, name syllables, and the plain and two-way
sentence templates. `slots` reads the ``{field}`` slots and checks the templates
(`check_templates`); `plan` fills them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

ENTITY_KINDS = ("person", "city", "company", "river", "mountain")

# Template field name prefix -> kind.  A field is the prefix plus an optional digit ("p2");
# a digit marks a secondary slot that usually gets a new entity.
FIELD_KINDS: Mapping[str, str] = MappingProxyType({
    "p": "person", "c": "city", "co": "company", "r": "river", "m": "mountain",
    "y": "year", "n": "population", "k": "count", "len": "length", "h": "height",
    "occ": "occupation", "prod": "product", "rel": "relation",
})

# (entity kind, attribute) -> (kind of the value, question patterns).
ATTRIBUTES: Mapping[tuple[str, str], tuple[str, tuple[str, ...]]] = MappingProxyType({
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

ATTRS_BY_KIND: Mapping[str, tuple[str, ...]] = MappingProxyType({
    kind: tuple(attr for (k, attr) in ATTRIBUTES if k == kind) for kind in ENTITY_KINDS})

# Occupations start with a consonant so that "a {occ}" reads right.
OCCUPATIONS = ("painter", "printer", "sailor", "teacher", "doctor", "poet", "merchant",
                "lawyer", "botanist", "clockmaker", "surveyor", "singer", "miner", "baker",
                "weaver", "carpenter", "tailor", "potter", "banker", "judge")
PRODUCTS = ("glass", "rope", "clocks", "paper", "bicycles", "soap", "lamps", "maps", "tea",
             "salt", "bells", "boats", "candles", "cloth", "shoes", "pianos")
RELATIONS = ("sister", "brother", "cousin", "son", "daughter", "niece", "nephew")
COMPANY_SUFFIXES = ("Works", "Mills", "Company", "Foundry", "Traders")

# Name words are syllable strings with an optional final consonant.
SYLLABLES = ("ba", "be", "bo", "da", "de", "di", "do", "fa", "fe", "ga", "go", "ha", "he",
              "ka", "ke", "ki", "ko", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na",
              "ne", "ni", "no", "pa", "pe", "ra", "re", "ri", "ro", "sa", "se", "si", "so",
              "ta", "te", "ti", "to", "va", "ve", "vi", "za", "zo")
CODAS = ("", "", "n", "r", "l", "s", "k", "m", "th")


@dataclass(frozen=True)
class FactSpec:
    """``entity`` field has attribute ``attr`` equal to the ``value`` field."""

    entity: str
    attr: str
    value: str


def _facts(*specs: str) -> tuple[FactSpec, ...]:
    """Parse ``"p.birth_year=y"`` into a `FactSpec`."""
    out = []
    for spec in specs:
        left, value = spec.split("=")
        entity, attr = left.split(".")
        out.append(FactSpec(entity, attr, value))
    return tuple(out)


@dataclass(frozen=True)
class Template:
    """One sentence pattern with ``{field}`` slots.

    A plain template states ``facts``. A two-way template also has a ``deny`` text: ``affirm``
    states ``facts`` and ``pivots``, ``deny`` states ``deny_facts`` and leaves each pivot
    unanswerable with the pivot's value as its distractor. Both texts are identical up to the
    end of every pivot value. ``unknown`` lists (field, attribute) pairs that the sentence
    deliberately leaves open ("{p} was never married").
    """

    affirm: str
    facts: tuple[FactSpec, ...] = ()
    deny: str | None = None
    deny_facts: tuple[FactSpec, ...] = ()
    pivots: tuple[FactSpec, ...] = ()
    unknown: tuple[tuple[str, str], ...] = ()

    @property
    def two_way(self) -> bool:
        return self.deny is not None


def _plain(text: str, *facts: str, unknown: tuple[tuple[str, str], ...] = ()) -> Template:
    return Template(affirm=text, facts=_facts(*facts), unknown=unknown)


def _two_way(affirm: str, deny: str, pivots: Sequence[str], facts: Sequence[str] = (),
             deny_facts: Sequence[str] = ()) -> Template:
    return Template(affirm=affirm, deny=deny, pivots=_facts(*pivots), facts=_facts(*facts),
                     deny_facts=_facts(*deny_facts))


_PLAIN_TEMPLATES: tuple[Template, ...] = (
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

_TWO_WAY_TEMPLATES: tuple[Template, ...] = (
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

