"""What one split of the synthetic benchmark looks like: `SyntheticConfig` and the split presets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

from gpt2qa.errors import GPT2QAError, check

Split = Literal["train", "dev", "hard"]
SPLITS: tuple[Split, ...] = ("train", "dev", "hard")


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

MAX_SENTENCES = 60


@dataclass(frozen=True)
class SyntheticConfig:
    """What `generate` builds: one split of the synthetic benchmark."""

    seed: int = 0
    """Any int >= 0; together with ``split`` it fixes the output exactly."""
    n_passages: int = 200
    """Number of paragraphs (contexts). Twin pairs count as two."""
    questions_per_passage: int | None = None
    """Questions per paragraph; None takes the split preset (4, or 6 for ``hard``). At most
    the lower bound of ``sentences_per_passage``."""
    unanswerable_fraction: float = 1 / 3
    """Target share of unanswerable questions, 0..1."""
    split: Split = "train"
    """``train``, ``dev`` (same distribution, disjoint names) or ``hard``."""
    sentences_per_passage: tuple[int, int] | None = None
    """Inclusive (low, high) sentence count; None takes the preset."""
    after_distractor_share: float | None = None
    """Target share, among unanswerable questions, of those decided only by text after the
    distractor; None takes the preset (0.4, hard 0.7)."""
    twin_fraction: float | None = None
    """Share of paragraphs generated as answerable/unanswerable twin pairs; None takes the
    preset. Ignored (no twins) when the unanswerable fraction is 0 or 1."""

    def __post_init__(self) -> None:
        spp = self.sentences_per_passage
        checks = [
            (self.split in SPLITS,
             f"split: must be one of {', '.join(SPLITS)}; got {self.split!r}"),
            (_is_int(self.seed, 0), f"seed: must be an int >= 0; got {self.seed!r}"),
            (_is_int(self.n_passages, 1),
             f"n_passages: must be an int >= 1; got {self.n_passages!r}"),
            (self.questions_per_passage is None or _is_int(self.questions_per_passage, 1),
             f"questions_per_passage: must be an int >= 1; got {self.questions_per_passage!r}"),
            (_is_fraction(self.unanswerable_fraction),
             "unanswerable_fraction: must be a number in [0, 1]; "
             f"got {self.unanswerable_fraction!r}"),
            (self.after_distractor_share is None or _is_fraction(self.after_distractor_share),
             "after_distractor_share: must be a number in [0, 1]; "
             f"got {self.after_distractor_share!r}"),
            (self.twin_fraction is None or _is_fraction(self.twin_fraction),
             f"twin_fraction: must be a number in [0, 1]; got {self.twin_fraction!r}"),
            (spp is None or (isinstance(spp, tuple) and len(spp) == 2
                             and all(_is_int(v, 1) for v in spp)
                             and spp[0] <= spp[1] <= MAX_SENTENCES),
             "sentences_per_passage: must be a (low, high) tuple of ints with "
             f"1 <= low <= high <= {MAX_SENTENCES}; got {spp!r}"),
        ]
        check(checks, "SyntheticConfig.")
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


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_fraction(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0.0 <= float(value) <= 1.0)
