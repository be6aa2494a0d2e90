"""`ZeroShotConfig`: how questions become prompts and continuations become answers."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal, get_args

from gpt2qa.config import PRECISIONS, Precision
from gpt2qa.errors import GPT2QAError, check
from gpt2qa.metrics import normalize_answer

NaScoring = Literal["generation", "likelihood"]
NA_SCORINGS: tuple[str, ...] = get_args(NaScoring)

_PROMPT_FIELDS = frozenset({"context", "question"})
_SHOT_FIELDS = frozenset({"context", "question", "answer"})


def _template_fields(template: str, name: str) -> set[str]:
    """The replacement fields of a str.format template; refuses positional/indexed fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise GPT2QAError(f"{name} is not a valid format string ({exc}): {template!r}") from None
    fields: set[str] = set()
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            raise GPT2QAError(f"{name}: field {{{field}}} must not carry a format spec or "
                              f"conversion: {template!r}")
        fields.add(field)
    return fields


@dataclass(frozen=True)
class ZeroShotConfig:
    """How questions become prompts and continuations become answers."""

    template: str = "{context}\nQ: {question}\nA:"
    """Prompt for one question, with {context} and {question}; write literal braces as {{ and
    }}. On the command line, \\n is a newline."""
    shot_template: str = "{context}\nQ: {question}\nA: {answer}\n\n"
    """One solved example, also with {answer}; an unanswerable one shows the first abstain
    phrase as its answer. On the command line, \\n is a newline."""
    shots: int = 0
    """Solved examples shown before each question, drawn from shots_file with
    random.Random(seed), once for the whole run."""
    shots_file: str | None = None
    """SQuAD training file to draw the shots from."""
    max_new_tokens: int = 16
    """Cap on the continuation, its stop token included. It is reserved out of the model's
    window (or the abstain phrase's length, if longer, with likelihood scoring)."""
    abstain_phrases: tuple[str, ...] = ("unanswerable", "no answer", "unknown", "none", "n/a")
    """Answers that mean no answer once normalised (official SQuAD normalisation), as does an
    answer that normalises to nothing; the first is the one shown and scored. On the command
    line, comma-separated."""
    na_scoring: NaScoring = "generation"
    """How na_prob is computed: generation (1 when abstained, else 0) or likelihood (the
    abstain phrase's log-prob against the answer's; see the package docstring)."""
    batch_size: int = 16
    """Prompts run together, left-padded."""
    seed: int = 42
    """Shot sampling."""
    precision: Precision = "fp32"
    """fp32, bf16 (CUDA, or a CPU with bf16 instructions), or fp16 on CUDA."""

    def __post_init__(self) -> None:
        phrases_ok = isinstance(self.abstain_phrases, tuple) and bool(self.abstain_phrases)
        empty = next((p for p in self.abstain_phrases if not normalize_answer(p)), None
                     ) if phrases_ok else None
        checks = [
            (_template_fields(self.template, "template") == _PROMPT_FIELDS,
             f"template must use exactly the fields {{context}} and {{question}}: "
             f"{self.template!r}"),
            (_template_fields(self.shot_template, "shot_template") == _SHOT_FIELDS,
             f"shot_template must use exactly the fields {{context}}, {{question}} and "
             f"{{answer}}: {self.shot_template!r}"),
            (self.shots >= 0, f"shots must be >= 0; got {self.shots}"),
            (self.shots <= 0 or bool(self.shots_file),
             f"shots={self.shots} needs shots_file (a SQuAD training file)"),
            (self.shots != 0 or not self.shots_file,
             f"shots_file={self.shots_file} is set but shots is 0; "
             "give the number of solved examples"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1; got {self.max_new_tokens}"),
            (phrases_ok, "abstain_phrases must be a non-empty tuple of strings"),
            (empty is None, f"abstain phrase {empty!r} normalises to nothing; every empty "
                            "answer already counts as no answer"),
            (self.na_scoring in NA_SCORINGS,
             f"na_scoring must be one of {', '.join(NA_SCORINGS)}; got {self.na_scoring!r}"),
            (self.batch_size >= 1, f"batch_size must be >= 1; got {self.batch_size}"),
            (self.precision in PRECISIONS,
             f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"),
        ]
        check(checks)
