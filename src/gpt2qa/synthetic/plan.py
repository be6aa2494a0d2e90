"""Passage plans: choose templates and fill their slots sentence by sentence, then render a
plan as a paragraph with every fact, probe and value located by character offset.

A plan is rendered once per version: a twin pair prints the ``twin`` sentence as ``affirm``
in its first paragraph and as ``deny`` in its second, and every other sentence alike.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gpt2qa.synthetic import templates
from gpt2qa.synthetic.names import Entity, NameBook, fresh_value
from gpt2qa.synthetic.settings import SplitPreset
from gpt2qa.synthetic.slots import (
    all_claims,
    field_kind,
    field_names,
    fill,
    is_secondary,
    template_fields,
)
from gpt2qa.synthetic.templates import ENTITY_KINDS, Template

Polarity = Literal["plain", "affirm", "deny", "twin"]


@dataclass(frozen=True)
class _Block:
    """One planned sentence: a template, its slot values and which version to print.

    ``twin`` prints ``affirm`` in the first paragraph of a twin pair and ``deny`` in the second.
    """

    template: Template
    values: Mapping[str, str]
    entities: Mapping[str, Entity]
    polarity: Polarity


@dataclass
class PlanState:
    """What a passage plan has used so far (local to one plan)."""

    main: Entity
    entities: list[Entity]
    bindable: set[str]
    claims: set[tuple[str, str]]
    used_values: set[str]
    blocks: list[_Block] = field(default_factory=list)


@functools.cache
def _topic_kinds(tpl: Template) -> frozenset[str]:
    kinds = (field_kind(f) for f in template_fields(tpl) if not is_secondary(f))
    return frozenset(kind for kind in kinds if kind in ENTITY_KINDS)


def add_block(rng: random.Random, names: NameBook, state: PlanState, preset: SplitPreset,
               two_way: bool, polarity: Polarity) -> None:
    """Choose a template, fill its slots and append the sentence to the plan."""
    first = not state.blocks
    pool = templates._TWO_WAY_TEMPLATES if two_way else templates._PLAIN_TEMPLATES
    if first:  # the first sentence introduces the title entity
        pool = tuple(t for t in pool if state.main.kind in _topic_kinds(t))
    # Favour templates about the title entity's kind; repeat a template only now and then.
    used = Counter(id(b.template) for b in state.blocks)
    weights = [(3.0 if state.main.kind in _topic_kinds(t) else 1.0) * 0.25 ** used[id(t)]
               for t in pool]
    tpl = rng.choices(pool, weights)[0]

    fields = template_fields(tpl)
    needs: dict[str, set[str]] = {f: set() for f in fields}
    for name, attr in all_claims(tpl):
        needs[name].add(attr)
    has_relation = any(field_kind(f) == "relation" for f in fields)
    values: dict[str, str] = {}
    entities: dict[str, Entity] = {}
    new: list[Entity] = []
    main_placed = False
    # Primary slots first, so a relative ({p2}) can take the surname of {p}.
    for name in sorted(fields, key=lambda f: (is_secondary(f), fields.index(f))):
        kind = field_kind(name)
        if kind not in ENTITY_KINDS:
            values[name] = fresh_value(rng, kind, state.used_values)
            continue
        taken = {e.name for e in entities.values()}
        eligible = [e for e in state.entities
                    if e.kind == kind and e.name in state.bindable and e.name not in taken
                    and not any((e.name, a) in state.claims for a in needs[name])]
        chosen: Entity | None = None
        if first and not main_placed and kind == state.main.kind and not is_secondary(name):
            chosen, main_placed = state.main, True
        elif is_secondary(name):
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

    in_both = set(field_names(tpl.affirm)) & set(field_names(tpl.deny)) if tpl.two_way else set(fields)
    for name, ent in entities.items():
        if ent in new:
            state.entities.append(ent)
            # An entity that only one version prints must not be used by later sentences:
            # the other twin would mention it without introducing it.
            if name in in_both:
                state.bindable.add(ent.name)
    for name, attr in all_claims(tpl):
        state.claims.add((entities[name].name, attr))
    state.blocks.append(_Block(tpl, MappingProxyType(values), MappingProxyType(entities),
                               polarity))


@dataclass(frozen=True)
class Span:
    text: str
    start: int


@dataclass(frozen=True)
class _Fact:
    entity: Entity
    attr: str
    value: Span
    after: bool


@dataclass(frozen=True)
class _Mention:
    kind: str
    span: Span


@dataclass(frozen=True)
class Paragraph:
    context: str
    facts: tuple[_Fact, ...]
    probes: tuple[_Fact, ...]          # two-way pivots printed in their deny version
    mentions: Mapping[str, Entity]    # entities printed, by name
    spans: tuple[_Mention, ...]        # every printed slot value


def render(blocks: Sequence[_Block], deny_twin: bool) -> Paragraph:
    sentences: list[str] = []
    facts: list[_Fact] = []
    probes: list[_Fact] = []
    mentions: dict[str, Entity] = {}
    spans: list[_Mention] = []
    offset = 0
    for block in blocks:
        tpl = block.template
        polarity = block.polarity
        if polarity == "twin":
            polarity = "deny" if deny_twin else "affirm"
        text_tpl = tpl.deny if polarity == "deny" and tpl.deny is not None else tpl.affirm
        sentence, local = fill(text_tpl, block.values)
        at = {name: Span(block.values[name], offset + start)
              for name, (start, _end) in local.items()}
        for name, span in at.items():
            if name in block.entities:
                mentions.setdefault(block.entities[name].name, block.entities[name])
            spans.append(_Mention(field_kind(name), span))
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
    return Paragraph(" ".join(sentences), tuple(facts), tuple(probes),
                      MappingProxyType(mentions), tuple(spans))

