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

Modules: `settings` (`SyntheticConfig`, split presets), `templates` (vocabulary and sentence
templates, as data), `slots` (filling and checking templates), `names` (entities and values),
`plan` (passage plans and rendering), `questions` (candidates, quotas, question records),
`writer` (`generate`, `write_benchmark`).
"""

from gpt2qa.synthetic.questions import QUESTION_KINDS, QuestionKind, question_kind
from gpt2qa.synthetic.settings import SPLIT_PRESETS, SPLITS, Split, SplitPreset, SyntheticConfig
from gpt2qa.synthetic.slots import check_templates, template_vocabulary
from gpt2qa.synthetic.templates import ENTITY_KINDS
from gpt2qa.synthetic.writer import (
    EASY_OVERRIDES,
    Level,
    corpus_texts,
    generate,
    write_benchmark,
)

__all__ = [
    "EASY_OVERRIDES", "ENTITY_KINDS", "QUESTION_KINDS", "SPLITS", "SPLIT_PRESETS", "Level",
    "QuestionKind", "Split", "SplitPreset", "SyntheticConfig", "check_templates", "corpus_texts",
    "generate", "question_kind", "template_vocabulary", "write_benchmark",
]
