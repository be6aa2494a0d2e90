"""Questions: the candidates a rendered paragraph offers, the quotas that keep each split's
unanswerable fraction and after-distractor share on target, and the SQuAD question records.

Question ids read ``{split}-{seed}-{paragraph:05d}-{question:02d}-{kind}``; `question_kind`
parses the kind (see the package docstring).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gpt2qa.errors import GPT2QAError
from gpt2qa.synthetic.names import Entity, NameBook
from gpt2qa.synthetic.plan import Paragraph, Span
from gpt2qa.synthetic.templates import ATTRIBUTES, ATTRS_BY_KIND

QuestionKind = Literal["ans", "ans-after", "unans", "unans-after"]
QUESTION_KINDS: tuple[QuestionKind, ...] = ("ans", "ans-after", "unans", "unans-after")

_ID_RE = re.compile(r"^(train|dev|hard)-(\d+)-(\d{5,})-(\d{2,})-(ans|ans-after|unans|unans-after)$")


def question_kind(qas_id: str) -> QuestionKind:
    """The kind a synthetic question id carries: ``ans``, ``ans-after``, ``unans``,
    ``unans-after`` (see the package docstring)."""
    match = _ID_RE.match(qas_id)
    if match is None:
        raise GPT2QAError(f"id={qas_id}: not a synthetic question id "
                          "({split}-{seed}-{paragraph}-{question}-{kind})")
    return match.group(5)  # type: ignore[return-value]


@dataclass(frozen=True)
class Candidate:
    """A possible question: about ``entity``'s ``attr``, with its answer or distractor span.

    ``absent`` marks an unanswerable question about a namesake of ``entity`` who is not in the
    passage (same surname, new first name); the name is drawn only when the question is used.
    """

    entity: Entity
    attr: str
    span: Span
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
    answerable: tuple[Candidate, ...]
    after: tuple[Candidate, ...]
    other: tuple[Candidate, ...]

    def enough(self, n_questions: int, unanswerable_fraction: float) -> bool:
        """Whether ``n_questions`` distinct questions of the kinds allowed can be asked."""
        if unanswerable_fraction == 0.0:
            pools: tuple[Candidate, ...] = self.answerable
        elif unanswerable_fraction == 1.0:
            pools = (*self.after, *self.other)
        else:
            pools = (*self.answerable, *self.after, *self.other)
        return len({(c.entity.name, c.attr) for c in pools}) >= n_questions


def candidates(rng: random.Random, para: Paragraph) -> _Pools:
    answerable = tuple(Candidate(f.entity, f.attr, f.value, False, f.after) for f in para.facts)
    after = tuple(Candidate(p.entity, p.attr, p.value, True, True) for p in para.probes)
    settled = {(f.entity.name, f.attr) for f in (*para.facts, *para.probes)}
    other: list[Candidate] = []
    for ent in para.mentions.values():
        for attr in ATTRS_BY_KIND[ent.kind]:
            if (ent.name, attr) in settled:
                continue
            vkind = ATTRIBUTES[(ent.kind, attr)][0]
            # Best distractor: the same attribute of another entity ("born in 1832" for the
            # sister); then another attribute of the same value kind; then any such value.
            tiers = (
                (4.0, [f.value for f in para.facts
                       if f.attr == attr and f.entity.kind == ent.kind and f.entity != ent]),
                (2.0, [f.value for f in para.facts
                       if ATTRIBUTES[(f.entity.kind, f.attr)][0] == vkind
                       and f.value.text != ent.name]),
                (1.0, [m.span for m in para.spans
                       if m.kind == vkind and m.span.text != ent.name]),
            )
            for weight, spans in tiers:
                if spans:
                    other.append(Candidate(ent, attr, rng.choice(spans), True, False, weight))
                    break
    # A namesake who is not in the passage, asked about a fact stated for a relative.
    for fact in para.facts:
        if fact.entity.kind == "person":
            other.append(Candidate(fact.entity, fact.attr, fact.value, True, False, 0.5, True))
    return _Pools(answerable, after, tuple(other))


@dataclass
class Quota:
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

    def balance(self, cand: Candidate) -> float:
        """Weight factor: above 1 when asking ``cand`` evens out its attribute's rate."""
        answerable, unanswerable = self.per_attr.get((cand.entity.kind, cand.attr), [0, 0])
        # Smoothed towards the target so that the first few questions move nothing.
        rate = (unanswerable + 4 * self.unanswerable_fraction) / (answerable + unanswerable + 4)
        gap = rate - self.unanswerable_fraction
        return math.exp(-8.0 * gap if cand.impossible else 8.0 * gap)

    def record(self, chosen: Sequence[Candidate]) -> None:
        unanswerable = [c for c in chosen if c.impossible]
        self.unanswerable_debt += self.unanswerable_fraction * len(chosen) - len(unanswerable)
        for cand in unanswerable:
            self.after_debt += self.after_share - (1.0 if cand.after else 0.0)
        for cand in chosen:
            self.per_attr.setdefault((cand.entity.kind, cand.attr), [0, 0])[
                int(cand.impossible)] += 1


def _take(rng: random.Random, pool: Sequence[Candidate], used: set[tuple[str, str, bool]],
          asked: set[tuple[str, str]], quota: Quota) -> Candidate | None:
    left = [c for c in pool if c.key not in used and (c.entity.name, c.attr) not in asked]
    if not left:
        return None
    return rng.choices(left, [c.weight * quota.balance(c) for c in left])[0]


def choose(rng: random.Random, pools: _Pools, n_questions: int, quota: Quota,
            forced: Candidate | None) -> list[Candidate]:
    chosen: list[Candidate] = [forced] if forced is not None else []
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


def qa_entry(rng: random.Random, names: NameBook, cand: Candidate, qas_id: str,
        phrasing: float | None = None) -> dict[str, Any]:
    """One SQuAD question; ``phrasing`` in [0, 1) picks the wording (random when None)."""
    entity = cand.entity
    if cand.absent:
        entity = names.entity("person", entity.surname)
    patterns = ATTRIBUTES[(entity.kind, cand.attr)][1]
    pick = rng.random() if phrasing is None else phrasing
    question = patterns[int(pick * len(patterns))].format(e=entity.surface)
    answer = {"text": cand.span.text, "answer_start": cand.span.start}
    qa: dict[str, Any] = {"id": qas_id, "question": question,
                          "answers": [] if cand.impossible else [answer],
                          "is_impossible": cand.impossible}
    if cand.impossible:
        qa["plausible_answers"] = [answer]
    return qa

