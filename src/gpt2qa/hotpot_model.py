"""Stage 3-4 for HotpotQA: the SQuAD model plus an answer-type head and a supporting-fact head.

`HotpotModel` is a `QAModel` (same backbone, same span head, linear or BiLSTM, same
`<|null|>` slot) with two more linear heads on the backbone's hidden states:

  type_head  3 logits (span / yes / no) at the `<|null|>` token, the one token that has seen
             the question and every selected paragraph under causal attention;
  sp_head    1 logit per sentence, read at the sentence's last token (trained with BCE);
             a sentence is a supporting fact when sigmoid(logit) > `sp_threshold`, which
             training tunes on the evaluation set.

Loss = span loss (yes/no questions, and spans the selection lost, point at the null slot)
+ cross-entropy of the answer type + the mean BCE over the sentences in the window.

A saved model directory is an ordinary gpt2qa model directory (`checkpoint.write_model_files`)
plus `hotpot.json` (the tuned threshold); `predict` and `train` tell the two apart by it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gpt2qa.batching import collate, inference_batch_size, length_grouped_batches
from gpt2qa.checkpoint import WEIGHTS_NAME, write_model_files
from gpt2qa.config import QAConfig
from gpt2qa.decode import WindowOutput, window_candidates
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import SpecialIds, prepare_tokenizer
from gpt2qa.hotpot_data import ANSWER_TYPES, HotpotExample
from gpt2qa.hotpot_features import HotpotFeature, convert_hotpot_examples
from gpt2qa.hotpot_metrics import sp_scores
from gpt2qa.io import atomic_dir
from gpt2qa.model import QAModel
from gpt2qa.tokenizer import load_tokenizer, refuse_remote_code

HOTPOT_CONFIG_NAME = "hotpot.json"
Fact = tuple[str, int]


@dataclass
class HotpotOutput:
    """Masked span logits and null score as in `QAOutput`, plus the two new heads."""
    start_logits: torch.Tensor
    end_logits: torch.Tensor
    null_score: torch.Tensor
    type_logits: torch.Tensor
    sp_logits: torch.Tensor
    loss: torch.Tensor | None = None


class HotpotModel(QAModel):
    """See the module docstring."""
    def __init__(self, backbone: nn.Module, config: QAConfig) -> None:
        if config.null_position != "last":
            raise GPT2QAError("a HotpotQA model needs null_position 'last'")
        super().__init__(backbone, config)
        self.type_head = nn.Linear(self.width, len(ANSWER_TYPES))
        self.sp_head = nn.Linear(self.width, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,  # type: ignore[override]
                context_mask: torch.Tensor, null_index: torch.Tensor,
                sentence_positions: torch.Tensor, sentence_mask: torch.Tensor,
                start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None,
                answer_types: torch.Tensor | None = None,
                sentence_labels: torch.Tensor | None = None) -> HotpotOutput:
        backbone_mask = None if self.skip_padding_mask else attention_mask
        # No KV cache: nothing is generated, and building one copies every layer's keys/values.
        hidden = self.transformer(input_ids=input_ids, attention_mask=backbone_mask,
                                  use_cache=False).last_hidden_state
        # Every head runs in fp32, as `QAModel`'s do (thresholds compare small differences).
        with torch.autocast(hidden.device.type, enabled=False):
            return self._hotpot_heads(hidden.float(), attention_mask, context_mask, null_index,
                                      sentence_positions, sentence_mask, start_positions,
                                      end_positions, answer_types, sentence_labels)

    def _hotpot_heads(self, hidden: torch.Tensor, attention_mask: torch.Tensor,
                      context_mask: torch.Tensor, null_index: torch.Tensor,
                      sentence_positions: torch.Tensor, sentence_mask: torch.Tensor,
                      start_positions: torch.Tensor | None, end_positions: torch.Tensor | None,
                      answer_types: torch.Tensor | None,
                      sentence_labels: torch.Tensor | None) -> HotpotOutput:
        span = self._heads(hidden, attention_mask, context_mask, null_index, start_positions,
                           end_positions)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        type_logits = self.type_head(hidden[rows, null_index])
        sent_hidden = hidden[rows[:, None], sentence_positions]  # (batch, sentences, width)
        sp_logits = self.sp_head(sent_hidden).squeeze(-1)
        loss = None
        if span.loss is not None and answer_types is not None and sentence_labels is not None:
            mask = sentence_mask.float()
            bce = F.binary_cross_entropy_with_logits(sp_logits, sentence_labels.float(),
                                                     reduction="none")
            sp_loss = (bce * mask).sum() / mask.sum().clamp(min=1.0)
            loss = span.loss + F.cross_entropy(type_logits, answer_types) + sp_loss
        return HotpotOutput(span.start_logits, span.end_logits, span.null_score, type_logits,
                            sp_logits, loss)


def collate_hotpot(features: Sequence[HotpotFeature], pad_id: int,
                   with_labels: bool = True) -> dict[str, torch.Tensor]:
    """`batching.collate` of the base features, plus sentence positions padded to the batch's
    most sentences (padding points at position 0 and is masked out)."""
    batch = collate([f.base for f in features], pad_id, with_labels=with_labels)
    n = max(1, max(len(f.sentence_positions) for f in features))
    positions = torch.zeros((len(features), n), dtype=torch.long)
    mask = torch.zeros((len(features), n), dtype=torch.bool)
    labels = torch.zeros((len(features), n), dtype=torch.float)
    for i, f in enumerate(features):
        k = len(f.sentence_positions)
        positions[i, :k] = torch.tensor(f.sentence_positions, dtype=torch.long)
        mask[i, :k] = True
        labels[i, :k] = torch.tensor(f.sentence_labels, dtype=torch.float)
    batch["sentence_positions"], batch["sentence_mask"] = positions, mask
    if with_labels:
        batch["answer_types"] = torch.tensor([f.answer_type for f in features])
        batch["sentence_labels"] = labels
    return batch


@dataclass(frozen=True)
class HotpotRaw:
    """A model's outputs for one feature, before any threshold."""
    window: WindowOutput
    type_probs: np.ndarray
    sp_probs: np.ndarray


@torch.inference_mode()
def run_hotpot_model(model: HotpotModel, features: Sequence[HotpotFeature], pad_id: int,
                     batch_size: int = 0) -> list[HotpotRaw]:
    """Forward every feature (length-sorted batches); outputs in feature order."""
    device = next(model.parameters()).device
    if batch_size == 0:
        batch_size = inference_batch_size(device, model.width, model.config.max_seq_length)
    was_training = model.training
    model.eval()
    out: list[HotpotRaw | None] = [None] * len(features)
    lengths = [len(f.base.input_ids) for f in features]
    for idx in length_grouped_batches(lengths, batch_size):
        batch = collate_hotpot([features[i] for i in idx], pad_id, with_labels=False)
        res = model(**{k: v.to(device) for k, v in batch.items()})
        start, end = res.start_logits.cpu().numpy(), res.end_logits.cpu().numpy()
        types = torch.softmax(res.type_logits, -1).cpu().numpy()
        sp = torch.sigmoid(res.sp_logits).cpu().numpy()
        for row, i in enumerate(idx):
            n, k = lengths[i], len(features[i].sentence_positions)
            window = WindowOutput(start[row, :n], end[row, :n], float(res.null_score[row]))
            out[i] = HotpotRaw(window, types[row], sp[row, :k])
    model.train(was_training)
    return [o for o in out if o is not None]


def decode_hotpot(features: Sequence[HotpotFeature], raws: Sequence[HotpotRaw],
                  config: QAConfig, sp_threshold: float
                  ) -> tuple[dict[str, str], dict[str, list[Fact]]]:
    """Answers and supporting facts in the official layout's two maps.

    The answer type is the argmax of the type head; a span answer is the best span of the
    window (never "", since every HotpotQA question has an answer; the null slot only competes
    in training). Supporting facts are the sentences whose probability exceeds
    ``sp_threshold``, in window order.
    """
    answers: dict[str, str] = {}
    facts: dict[str, list[Fact]] = {}
    for f, raw in zip(features, raws, strict=True):
        kind = ANSWER_TYPES[int(np.argmax(raw.type_probs))]
        if kind == "span":
            cands = window_candidates(f.base, raw.window, f.context, config.n_best_size,
                                      config.max_answer_length)
            answers[f.qas_id] = cands[0].text if cands else ""
        else:
            answers[f.qas_id] = kind
        facts[f.qas_id] = [key for key, p in zip(f.sentence_keys, raw.sp_probs, strict=True)
                           if p > sp_threshold]
    return answers, facts


def tune_sp_threshold(examples: Sequence[HotpotExample], features: Sequence[HotpotFeature],
                      raws: Sequence[HotpotRaw]) -> tuple[float, float]:
    """The threshold (0.05 ... 0.95) with the best mean supporting-fact F1, and that F1."""
    gold = {ex.qas_id: ex.supporting_facts for ex in examples}
    best = (0.5, -1.0)
    for threshold in np.round(np.arange(0.05, 0.96, 0.05), 2):
        total = 0.0
        for f, raw in zip(features, raws, strict=True):
            pred = [k for k, p in zip(f.sentence_keys, raw.sp_probs, strict=True) if p > threshold]
            total += sp_scores(pred, gold[f.qas_id])[1]
        score = total / max(len(examples), 1)
        if score > best[1] + 1e-12:
            best = (float(threshold), score)
    return best


def predict_hotpot(model: HotpotModel, tokenizer: Any, special: SpecialIds,
                   examples: Sequence[HotpotExample], sp_threshold: float,
                   batch_size: int = 0) -> tuple[dict[str, str], dict[str, list[Fact]]]:
    """Examples -> features -> forward -> the official predictions' two maps."""
    features = convert_hotpot_examples(examples, tokenizer, model.config.features(), special)
    raws = run_hotpot_model(model, features, special.pad, batch_size)
    return decode_hotpot(features, raws, model.config, sp_threshold)


def save_hotpot_model(model: HotpotModel, tokenizer: Any, out_dir: str | os.PathLike[str],
                      sp_threshold: float) -> Path:
    """A gpt2qa model directory plus hotpot.json, written atomically."""
    with atomic_dir(out_dir) as tmp:
        write_model_files(tmp, model, tokenizer)
        (tmp / HOTPOT_CONFIG_NAME).write_text(
            json.dumps({"task": "hotpotqa", "sp_threshold": sp_threshold}, indent=2) + "\n",
            encoding="utf-8")
    return Path(out_dir)


def is_hotpot_model(model_dir: str | os.PathLike[str]) -> bool:
    return (Path(model_dir) / HOTPOT_CONFIG_NAME).is_file()


def load_hotpot_model(model_dir: str | os.PathLike[str], device: str | torch.device = "cpu"
                      ) -> tuple[HotpotModel, Any, SpecialIds, float]:
    """Load what `save_hotpot_model` wrote: model, tokenizer, special ids, sp threshold."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel


    model_dir = Path(model_dir)
    try:
        meta = json.loads((model_dir / HOTPOT_CONFIG_NAME).read_text(encoding="utf-8"))
        threshold = float(meta["sp_threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GPT2QAError(f"{model_dir / HOTPOT_CONFIG_NAME}: not a readable HotpotQA model "
                          f"config ({exc})") from None
    qa = QAConfig.load(model_dir)
    refuse_remote_code(model_dir)
    try:
        backbone = AutoModel.from_config(AutoConfig.from_pretrained(model_dir,
                                                                    trust_remote_code=False))
    except (OSError, ValueError) as exc:
        raise GPT2QAError(f"{model_dir}/config.json: {str(exc).splitlines()[0]}") from None
    tokenizer = load_tokenizer(model_dir)
    special = prepare_tokenizer(tokenizer)
    backbone.resize_token_embeddings(len(tokenizer))
    model = HotpotModel(backbone, qa)
    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise GPT2QAError(f"{model_dir}: missing {WEIGHTS_NAME}")
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise GPT2QAError(f"{weights}: weights do not match a HotpotQA model "
                          f"(missing {len(missing)}, unexpected {len(unexpected)})")
    model.to(device).eval()
    return model, tokenizer, special, threshold

