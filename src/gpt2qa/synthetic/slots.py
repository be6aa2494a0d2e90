"""Template slots: what kind each ``{field}`` holds, filling a sentence, checking the templates.

Worked example: ``_fill("{p} was born in {y}.", {"p": "Bosa Kelimar", "y": "1832"})`` gives
``("Bosa Kelimar was born in 1832.", {"p": (0, 12), "y": (25, 29)})``.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping

from gpt2qa.synthetic import templates
from gpt2qa.synthetic.templates import (
    ATTRIBUTES,
    COMPANY_SUFFIXES,
    ENTITY_KINDS,
    FIELD_KINDS,
    OCCUPATIONS,
    PRODUCTS,
    RELATIONS,
    FactSpec,
    Template,
)


@functools.cache
def field_kind(name: str) -> str:
    match = re.fullmatch(r"([a-z]+?)(\d*)", name)
    if match is None or match.group(1) not in FIELD_KINDS:
        raise RuntimeError(f"synthetic template field {{{name}}} has no known kind")
    return FIELD_KINDS[match.group(1)]


def is_secondary(name: str) -> bool:
    return name[-1].isdigit()


def field_names(text: str) -> list[str]:
    """Field names in order of first appearance."""
    out: list[str] = []
    for _literal, name, _spec, _conv in string.Formatter().parse(text):
        if name is not None and name not in out:
            out.append(name)
    return out


@functools.cache
def template_fields(tpl: Template) -> tuple[str, ...]:
    names = field_names(tpl.affirm)
    for name in field_names(tpl.deny or ""):
        if name not in names:
            names.append(name)
    return tuple(names)


def all_claims(tpl: Template) -> list[tuple[str, str]]:
    """Every (field, attribute) the template settles, in either version."""
    claims = [(f.entity, f.attr) for f in (*tpl.facts, *tpl.pivots, *tpl.deny_facts)]
    return claims + list(tpl.unknown)


def fill(text: str, values: Mapping[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
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
    # Read through the module, so that a test can swap in a broken template.
    for tpl in (*templates._PLAIN_TEMPLATES, *templates._TWO_WAY_TEMPLATES):
        where = f"synthetic template {tpl.affirm!r}"
        fields = template_fields(tpl)
        kinds = {name: field_kind(name) for name in fields}
        groups: list[tuple[str, tuple[FactSpec, ...]]] = [
            (tpl.affirm, tpl.facts + tpl.pivots), (tpl.deny or "", tpl.deny_facts)]
        for text, facts in groups:
            present = set(field_names(text))
            for fact in facts:
                key = (kinds.get(fact.entity, "?"), fact.attr)
                if key not in ATTRIBUTES or ATTRIBUTES[key][0] != kinds.get(fact.value):
                    raise RuntimeError(f"{where}: fact {fact} does not fit the field kinds")
                if not {fact.entity, fact.value} <= present:
                    raise RuntimeError(f"{where}: fact {fact} uses a field its text lacks")
        for name, attr in tpl.unknown:
            if (kinds.get(name, "?"), attr) not in ATTRIBUTES:
                raise RuntimeError(f"{where}: unknown ({name}, {attr}) does not fit")
        if tpl.deny is None:
            if tpl.pivots or tpl.deny_facts:
                raise RuntimeError(f"{where}: pivots need a deny text")
            continue
        if not tpl.pivots:
            raise RuntimeError(f"{where}: a two-way template needs a pivot")
        one_sided = set(field_names(tpl.affirm)) ^ set(field_names(tpl.deny))
        if any(not is_secondary(n) and kinds[n] in ENTITY_KINDS for n in one_sided):
            raise RuntimeError(f"{where}: only secondary entity fields may occur in one version")
        # Distinct placeholder values show where the two versions part.
        probe = {name: f"<{name}>" for name in fields}
        affirm, a_spans = fill(tpl.affirm, probe)
        deny, d_spans = fill(tpl.deny, probe)
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
    for tpl in (*templates._PLAIN_TEMPLATES, *templates._TWO_WAY_TEMPLATES):
        texts.extend([tpl.affirm, tpl.deny or ""])
    for _kind, patterns in ATTRIBUTES.values():
        texts.extend(patterns)
    texts.extend([*OCCUPATIONS, *PRODUCTS, *RELATIONS, *COMPANY_SUFFIXES,
                  "mount", "river", "the", "kilometres", "metres"])
    words: set[str] = set()
    for text in texts:
        literal = re.sub(r"\{[a-z0-9]+\}", " ", text)
        words.update(w.lower() for w in re.findall(r"[A-Za-z]+", literal))
    return frozenset(words)

