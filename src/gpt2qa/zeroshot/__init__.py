"""Zero-/few-shot baseline: answer SQuAD with a causal LM's own head, no fine-tuning.

This is the GPT-2 paper's SQuAD setting. Each question becomes a prompt

    {context}
    Q: {question}
    A:

(optionally after k solved examples from a training file) and the model continues it greedily
until it writes a newline or end-of-text, or has written ``max_new_tokens`` tokens. The stripped
continuation is the answer; one that normalises to an abstain phrase ("unanswerable", "n/a",
...) or to nothing counts as no answer (""). The output files are those of ``gpt2qa predict``,
so ``gpt2qa evaluate`` scores them.

No-answer probability (``na_scoring``):

* ``generation``: 1.0 when the model abstained, else 0.0.
* ``likelihood``: ``na_prob = sigmoid(logp(abstain) - logp(greedy))`` where ``logp(x)`` is the
  summed token log-probability of the complete answer ``x`` after the prompt: the log-probs of
  its tokens plus the log-probability of then stopping (the total probability of every
  newline-bearing token and end-of-text). Worked example: the model puts
  ``log p(" Paris") = -0.5`` and ``log p(stop | " Paris") = -0.2`` (logp = -0.7), and
  ``log p(" unanswerable") = -3.0``, ``log p(stop | " unanswerable") = -0.1`` (logp = -3.1);
  then ``na_prob = sigmoid(-3.1 - -0.7) = sigmoid(-2.4) = 0.083``. Counting the stop makes both
  sides probabilities of whole answers, so a short prefix of a longer answer gains nothing.

An abstained answer gets ``na_prob = 1.0`` in both modes: its text is already "".

Modules: `settings` (`ZeroShotConfig`), `prompts` (rendering, fitting the window, abstention),
`decoding` (greedy `generate`, continuation log-probs; imports torch), `run`
(`zero_shot_predict`, `load_causal_lm`, `run_zero_shot`; imports torch);
its flags and handler are in gpt2qa.cli. This ``__init__`` re-exports only the modules that
do not import torch, so that the CLI can build its parser quickly; import the rest from
`gpt2qa.zeroshot.decoding` and `gpt2qa.zeroshot.run`.
"""

from gpt2qa.zeroshot.prompts import (
    Prompt,
    build_prompt,
    is_abstention,
    render_prompt,
    select_shots,
    shot_answer,
)
from gpt2qa.zeroshot.settings import NA_SCORINGS, NaScoring, ZeroShotConfig

__all__ = [
    "NA_SCORINGS", "NaScoring", "Prompt", "ZeroShotConfig", "build_prompt", "is_abstention", "render_prompt", "select_shots",
    "shot_answer",
]
