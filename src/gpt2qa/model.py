"""The `model` stage: a decoder-only backbone plus a span head and a no-answer score.

Heads:
  linear  one Linear(d, 2) over the hidden states (the 2019 experiment's head). Under causal
          attention a token's start/end logit sees only text to its left.
  bilstm  a bidirectional LSTM over the hidden states, then Linear(2h, 2): every token gets
          right-side context too.
  generative  no span head: the backbone's own LM head writes the answer, or <|null|>, after
          the window (`gpt2qa.generative`); its answers come out as one unmasked span per
          window, and its null score as an answerability logit.

The no-answer score follows `null_position`:
  first       start[0] + end[0]; position 0 has seen nothing but itself under causal attention.
  last        start[n] + end[n] at the `<|null|>` token after the whole input.
  classifier  a separate Linear(d, 1) logit on the `<|null|>` token (trained with BCE); spans
              are then trained on answerable windows only.

A task may add heads of its own (`TaskHead`, in the `task_heads` ModuleDict; HotpotQA: the
answer type and the supporting facts): each reads the same fp32 hidden states, takes its own
batch inputs and adds its own term to the loss.

Parameter names follow transformers' GPT2ForQuestionAnswering (`transformer`, `qa_outputs`) so a
linear/first/question-first model loads there unchanged.

Two speed-ups keep every output the same (tests/test_speed_equivalence.py):
  - GPT-2's tanh-approximate GELU runs as torch's one fused kernel (`fuse_gelu`), not the six
    elementwise ops of transformers' NewGELUActivation.
  - A causal backbone gets no padding mask (`CAUSAL_MODEL_TYPES`): batches are right-padded, and
    under causal attention no real token can see a pad to its right, so the mask changes nothing
    real while it keeps SDPA off its causal (flash) kernel.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from torch import nn
from transformers import AutoModel

from gpt2qa import generative
from gpt2qa.config import QAConfig
from gpt2qa.decode import MASK_VALUE
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import SpecialIds
from gpt2qa.reading import read_json_object
from gpt2qa.tokenizer import hub_kwargs, load_failure

CAUSAL_MODEL_TYPES = frozenset({"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "qwen2",
                                "phi3", "gemma"})
"""Backbones known to attend left to right only, with positions that ignore the padding mask."""


@dataclass
class QAOutput:
    """Masked float32 logits: positions that cannot start/end an answer hold MASK_VALUE."""

    start_logits: torch.Tensor
    end_logits: torch.Tensor
    null_score: torch.Tensor
    loss: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    """Each task head's output, by the head's name."""


class TaskHead(nn.Module):
    """A task's head beside the span head (HotpotQA: answer type, supporting facts).

    It names the batch inputs it needs (`batch`, built from the features' `extra` payloads by
    `batching.collate`), reads the backbone's fp32 hidden states (`forward`) and adds its own
    term to the loss when its labels are in the batch (`loss`).
    """

    def batch(self, features: Sequence[Any], with_labels: bool) -> dict[str, torch.Tensor]:
        return {}

    def forward(self, hidden: torch.Tensor, null_index: torch.Tensor,
                inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None


HeadFactory = Callable[[int], Mapping[str, TaskHead]]
"""A task's heads for a backbone of the given width."""


class QAModel(nn.Module):
    """Backbone + span head + no-answer score + the task's heads. See the module docstring."""

    def __init__(self, backbone: nn.Module, config: QAConfig,
                 heads: HeadFactory | None = None, special: SpecialIds | None = None) -> None:
        """`special`: the tokenizer's gpt2qa tokens, which the generative head writes."""
        super().__init__()
        self.config = config
        self.transformer = backbone
        width = _hidden_size(backbone)
        self.width = width
        self.lm_head: nn.Linear | None = None
        if config.head == "generative":
            if special is None or special.answer is None:
                raise GPT2QAError("internal error: a generative head needs the tokenizer's "
                                  "<|answer|> token")
            self.answer_ids = special
            if not generative.tied(backbone):
                rows = backbone.get_input_embeddings().weight
                self.lm_head = nn.Linear(width, rows.shape[0], bias=False)
                with torch.no_grad():
                    self.lm_head.weight.copy_(rows)
        elif config.head == "bilstm":
            hidden = config.lstm_hidden_size or max(width // 2, 1)
            self.lstm = nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
            self.qa_outputs = nn.Linear(2 * hidden, 2)
        else:
            self.qa_outputs = nn.Linear(width, 2)
        if config.features.null_position == "classifier" and config.head != "generative":
            self.na_classifier = nn.Linear(width, 1)
        # Empty for SQuAD, so its parameter names stay GPT2ForQuestionAnswering's.
        self.task_heads = nn.ModuleDict(dict(heads(width)) if heads else {})
        fuse_gelu(backbone)
        model_type = getattr(getattr(backbone, "config", None), "model_type", None)
        self.skip_padding_mask = model_type in CAUSAL_MODEL_TYPES

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                context_mask: torch.Tensor, null_index: torch.Tensor,
                start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None,
                **inputs: torch.Tensor) -> QAOutput:
        """`attention_mask` must be right padding (1s then 0s), as `collate` makes it;
        `inputs` are the task heads' own batch inputs (`TaskHead.batch`)."""
        if self.config.head == "generative":
            return self._generative(input_ids, attention_mask, context_mask, null_index,
                                    start_positions, end_positions, inputs)
        backbone_mask = None if self.skip_padding_mask else attention_mask
        # No KV cache: nothing is generated, and building one copies every layer's keys/values.
        hidden = self.transformer(input_ids=input_ids, attention_mask=backbone_mask,
                                  use_cache=False).last_hidden_state
        # The heads run in fp32 even under autocast: null-score differences are small numbers
        # compared against a threshold, and bf16 keeps only about 3 significant digits.
        with torch.autocast(hidden.device.type, enabled=False):
            hidden = hidden.float()
            out = self._heads(hidden, attention_mask, context_mask, null_index,
                              start_positions, end_positions)
            return self._task_heads(out, hidden, null_index, inputs)

    def _task_heads(self, out: QAOutput, hidden: torch.Tensor, null_index: torch.Tensor,
                    inputs: dict[str, torch.Tensor]) -> QAOutput:
        """Each task head's output and loss term, from the fp32 hidden states."""
        for name, head in self.task_heads.items():
            out.extra[name] = head(hidden, null_index, inputs)
            term = head.loss(out.extra[name], inputs) if out.loss is not None else None
            if term is not None:
                out.loss = out.loss + term
        return out

    def _generative(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    context_mask: torch.Tensor, null_index: torch.Tensor,
                    start_positions: torch.Tensor | None, end_positions: torch.Tensor | None,
                    inputs: dict[str, torch.Tensor]) -> QAOutput:
        """Training: the answer tokens' loss; inference: greedy answers (`gpt2qa.generative`)."""
        if start_positions is not None and end_positions is not None:
            loss, hidden = generative.answer_loss(self, input_ids, null_index, start_positions,
                                                  end_positions)
            empty = hidden.new_zeros(0)
            out = QAOutput(empty, empty, empty, loss)
        else:
            start, end, null, hidden, written = generative.write_answers(
                self, input_ids, attention_mask, context_mask, null_index)
            out = QAOutput(start, end, null, None, dict(written))
        with torch.autocast(hidden.device.type, enabled=False):
            return self._task_heads(out, hidden.float(), null_index, inputs)

    def _heads(self, hidden: torch.Tensor, attention_mask: torch.Tensor,
               context_mask: torch.Tensor, null_index: torch.Tensor,
               start_positions: torch.Tensor | None,
               end_positions: torch.Tensor | None) -> QAOutput:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if self.config.head == "bilstm":
            span_hidden = self._bilstm(hidden, attention_mask)
        else:
            span_hidden = hidden
        logits = self.qa_outputs(span_hidden)
        start_logits, end_logits = logits[..., 0], logits[..., 1]

        allowed = context_mask.bool()
        if self.config.features.null_position != "classifier":
            allowed = allowed.clone()
            allowed[rows, null_index] = True
        start_logits = start_logits.masked_fill(~allowed, MASK_VALUE)
        end_logits = end_logits.masked_fill(~allowed, MASK_VALUE)

        if self.config.features.null_position == "classifier":
            null_score = self.na_classifier(hidden[rows, null_index]).squeeze(-1)
        else:
            null_score = start_logits[rows, null_index] + end_logits[rows, null_index]

        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self._loss(start_logits, end_logits, null_score, null_index,
                              start_positions, end_positions)
        return QAOutput(start_logits, end_logits, null_score, loss)

    def _bilstm(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Either way a feature's logits do not depend on how long the other features in its
        # batch are. The unpacked run is measured on CPU only; CUDA keeps cuDNN's packed kernel.
        lengths = attention_mask.sum(dim=1)
        if hidden.device.type == "cpu":
            return bilstm_right_padded(self.lstm, hidden, lengths)
        return bilstm_packed(self.lstm, hidden, lengths)

    def _loss(self, start_logits: torch.Tensor, end_logits: torch.Tensor,
              null_score: torch.Tensor, null_index: torch.Tensor,
              start_positions: torch.Tensor, end_positions: torch.Tensor) -> torch.Tensor:
        if self.config.features.null_position != "classifier":
            return (F.cross_entropy(start_logits, start_positions)
                    + F.cross_entropy(end_logits, end_positions)) / 2
        is_null = (start_positions == null_index).float()
        answerable = 1.0 - is_null
        # Null rows have no valid span target; point them at 0 and weight them out.
        safe_start = torch.where(is_null.bool(), 0, start_positions)
        safe_end = torch.where(is_null.bool(), 0, end_positions)
        span = (F.cross_entropy(start_logits, safe_start, reduction="none")
                + F.cross_entropy(end_logits, safe_end, reduction="none")) / 2
        span_loss = (span * answerable).sum() / answerable.sum().clamp(min=1.0)
        return span_loss + F.binary_cross_entropy_with_logits(null_score, is_null)


def bilstm_packed(lstm: nn.LSTM, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A bidirectional `lstm` over right-padded rows through `pack_padded_sequence`, which keeps
    the pads out of the backward direction; pad positions come out as zeros."""
    packed = nn.utils.rnn.pack_padded_sequence(hidden, lengths.clamp(min=1).cpu(),
                                               batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=hidden.shape[1])
    return out


def bilstm_right_padded(lstm: nn.LSTM, hidden: torch.Tensor, lengths: torch.Tensor
                        ) -> torch.Tensor:
    """A one-layer bidirectional `lstm` over right-padded rows, as if each row ran alone.

    The forward direction reads real tokens before any pad, so it runs on the batch as it is.
    The backward direction would read the pads first; each row's real tokens are reversed
    instead, so that they come first, and its outputs are reversed back. Worked example, a
    row of length 3 padded to 5: positions [0 1 2 3 4] are read as [2 1 0 3 4]; the same index
    maps the outputs back. Pad positions come out as zeros. Same numbers as `bilstm_packed`,
    which is slower on CPU, forward and backward (benchmarks/README.md).
    """
    steps = hidden.shape[1]
    positions = torch.arange(steps, device=hidden.device).expand(hidden.shape[0], steps)
    lengths = lengths.to(hidden.device).clamp(min=1).unsqueeze(1)
    real = positions < lengths
    flip = torch.where(real, lengths - 1 - positions, positions).unsqueeze(-1)
    forward = _lstm_direction(lstm, hidden, "")
    backward = _lstm_direction(lstm, hidden.gather(1, flip.expand_as(hidden)), "_reverse")
    backward = backward.gather(1, flip.expand_as(backward))
    return torch.cat([forward, backward], dim=-1) * real.unsqueeze(-1).to(hidden.dtype)


def _lstm_direction(lstm: nn.LSTM, x: torch.Tensor, suffix: str) -> torch.Tensor:
    """Run one direction of a one-layer bidirectional `lstm` (its own weights) over `x`."""
    weights = [getattr(lstm, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh")]
    if lstm.bias:
        weights += [getattr(lstm, f"{name}_l0{suffix}") for name in ("bias_ih", "bias_hh")]
    zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)
    out, _, _ = torch.lstm(x, (zeros, zeros), weights, lstm.bias, 1, 0.0, lstm.training,
                           False, True)
    return out


def fuse_gelu(backbone: nn.Module) -> int:
    """Swap transformers' NewGELUActivation (GPT-2's "gelu_new") for the same function as one
    fused kernel; returns how many were swapped. No parameters change, so checkpoints do not."""
    from transformers.activations import NewGELUActivation

    swaps = 0
    for module in list(backbone.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, NewGELUActivation):
                setattr(module, name, nn.GELU(approximate="tanh"))
                swaps += 1
    return swaps


def _hidden_size(backbone: nn.Module) -> int:
    config = getattr(backbone, "config", None)
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise GPT2QAError(f"cannot tell the hidden size of backbone {type(backbone).__name__}")


def tiny_gpt2_config(vocab_size: int, n_layer: int = 2, n_embd: int = 64, n_head: int = 2,
                     n_positions: int = 512, dropout: float = 0.1) -> Any:
    """A small GPT-2 config for tests, the demo and the synthetic study."""
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                      n_layer=n_layer, n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout,
                      attn_pdrop=dropout, bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)


def backbone_from_config(config: Any) -> nn.Module:
    """A randomly initialised backbone (for tests and the demo)."""
    from transformers import AutoModel

    return AutoModel.from_config(config)


def save_tiny_gpt2(out_dir: Any, tokenizer: Any, seed: int, n_layer: int, n_embd: int,
                   n_head: int, max_seq_length: int) -> None:
    """Save a random tiny GPT-2 (drawn after torch.manual_seed(seed), no dropout, at least 256
    positions) and `tokenizer` into `out_dir`: the start model of the demo and the study."""
    torch.manual_seed(seed)
    backbone = backbone_from_config(tiny_gpt2_config(
        len(tokenizer), n_layer=n_layer, n_embd=n_embd, n_head=n_head,
        n_positions=max(256, max_seq_length), dropout=0.0))
    backbone.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def check_fits(backbone: nn.Module, config: QAConfig, vocab_size: int) -> None:
    """Refuse settings the backbone cannot run, before any training time is spent."""
    max_pos = getattr(backbone.config, "n_positions", None) or getattr(
        backbone.config, "max_position_embeddings", None)
    if max_pos is not None and config.features.max_seq_length > max_pos:
        raise GPT2QAError(f"max_seq_length {config.features.max_seq_length} exceeds the model's "
                          f"{max_pos} positions")
    emb = backbone.get_input_embeddings().weight.shape[0]
    if emb < vocab_size:
        raise GPT2QAError(f"the model has {emb} token embeddings but the tokenizer needs {vocab_size}")


CONFIG_NAME = "config.json"

ATTENTION_KEYS = ("_attn_implementation", "attn_implementation", "_attn_implementation_internal")
ATTENTION_ALLOWED = (None, "eager", "sdpa")
"""What a config.json may ask for: flash attention and the like need packages (and a GPU) that
gpt2qa neither needs nor checks; transformers would fail with an ImportError mid-load."""

SIZE_FIELDS = ("vocab_size", "n_positions", "max_position_embeddings", "n_embd", "hidden_size",
               "d_model", "n_layer", "num_hidden_layers", "n_inner", "intermediate_size",
               "ffn_dim", "n_head", "num_attention_heads")
"""config.json's sizes, each a positive integer (or null) when present."""

LEARNED_POSITIONS = frozenset({"gpt2", "gpt_neo", "gpt_bigcode", "opt"})
"""Model types whose position embeddings are a table of n_positions rows (others rotate)."""

LAYER_OVERHEAD_BYTES = 32 * 1024
"""Python objects per transformer layer beyond its weights (a tiny GPT2Block measures ~30 KB)."""


def _first(obj: dict[str, Any], *names: str) -> int:
    for name in names:
        if isinstance(obj.get(name), int):
            return int(obj[name])
    return 0


def parameter_estimate(obj: dict[str, Any]) -> int:
    """A lower bound on the backbone's parameter count from config.json's sizes, before anything
    is allocated: embeddings (vocabulary, and learned positions) plus per layer the attention's
    query and output projections (2 h^2) and the MLP's two matrices (2 h x intermediate)."""
    width = _first(obj, "n_embd", "hidden_size", "d_model")
    layers = _first(obj, "n_layer", "num_hidden_layers")
    inner = _first(obj, "n_inner", "intermediate_size", "ffn_dim") or 4 * width
    positions = (_first(obj, "n_positions", "max_position_embeddings")
                 if obj.get("model_type") in LEARNED_POSITIONS else 0)
    return (_first(obj, "vocab_size") + positions) * width + layers * (2 * width * width
                                                                      + 2 * width * inner)


def memory_available() -> int | None:
    """Bytes this process can still allocate: /proc/meminfo's MemAvailable (else the physical
    memory), capped by a cgroup v2 memory limit; None when none of these can be read."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            found = min(found, int(limit))
    except OSError:
        pass
    return found


def check_config_json(directory: str | os.PathLike[str]) -> None:
    """Read a local model folder's config.json once as JSON, before transformers does, and
    refuse in one line naming the file and the field: a file that is not a JSON object, an
    attention implementation other than eager or sdpa, a size that is not a positive integer,
    and sizes whose parameters (fp32, plus per-layer overhead) exceed the memory this machine
    has available. A folder without config.json is left to the loader."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir() or not path.is_file():
        return
    obj = read_json_object(path)
    for key in ATTENTION_KEYS:
        if obj.get(key) not in ATTENTION_ALLOWED:
            raise GPT2QAError(f"{path}: {key} {obj[key]!r} is not supported; gpt2qa runs "
                              "'eager' or 'sdpa' attention (remove the field)")
    for key in SIZE_FIELDS:
        value = obj.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise GPT2QAError(f"{path}: {key} must be a positive integer, got "
                              f"{json.dumps(value)[:40]}")
    count = parameter_estimate(obj)
    layers = _first(obj, "n_layer", "num_hidden_layers")
    needed = 4 * count + layers * LAYER_OVERHEAD_BYTES
    available = memory_available()
    if available is not None and needed > available:
        raise GPT2QAError(f"{path}: describes at least {count:,} parameters ({needed / 2**30:,.1f} "
                          f"GiB in fp32 with {layers:,} layers), more than the "
                          f"{available / 2**30:,.1f} GiB of memory available here")


def load_backbone(name_or_dir: str, with_lm_head: bool = False) -> Any:
    """`AutoModel.from_pretrained` in fp32 (transformers 5 would keep a bf16 checkpoint in bf16:
    no fp32 master weights), with a one-line message when it cannot be had. `with_lm_head`:
    (backbone, its pretrained LM head's weight, or None when tied to the embeddings or
    absent), read through AutoModelForCausalLM (the generative head). A local folder's
    config.json is checked first (`check_config_json`); a pickle weights file that holds more
    than tensors (torch.load's weights_only refuses it: nothing runs) and a truncated or
    damaged weights file are one line too."""
    check_config_json(name_or_dir)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol")  # torch.load's note
            if not with_lm_head:
                return AutoModel.from_pretrained(name_or_dir, dtype=torch.float32,
                                                 **hub_kwargs(name_or_dir))
            return _backbone_and_head(name_or_dir)
    except (OSError, ValueError, TypeError, ImportError, StrictDataclassError) as exc:
        raise GPT2QAError(load_failure(name_or_dir, "model", exc)) from None
    except SafetensorError as exc:
        raise GPT2QAError(f"{name_or_dir}: model.safetensors is not a readable safetensors file "
                          f"(truncated or damaged?): {str(exc).splitlines()[0]}") from None
    except (pickle.UnpicklingError, RuntimeError) as exc:
        files = sorted(p.name for p in Path(name_or_dir).glob("*")
                       if p.suffix in (".bin", ".safetensors", ".pt", ".pth"))
        where = f"{name_or_dir}/{files[0]}" if len(files) == 1 else str(name_or_dir)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise GPT2QAError(f"{where}: the model's weights cannot be loaded safely "
                          f"({type(exc).__name__}: {first})") from None


def _backbone_and_head(name_or_dir: str) -> tuple[nn.Module, torch.Tensor | None]:
    """The causal LM's base model and its untied output matrix (None when tied)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a saved base model has no lm_head: "newly initialized"
    try:
        causal, info = AutoModelForCausalLM.from_pretrained(
            name_or_dir, dtype=torch.float32, output_loading_info=True, **hub_kwargs(name_or_dir))
    finally:
        hf_logging.set_verbosity(verbosity)
    backbone = causal.base_model
    head = causal.get_output_embeddings()
    missing = any("lm_head" in key for key in info.get("missing_keys", ()))
    if generative.tied(backbone) or head is None or missing:
        return backbone, None
    return backbone, head.weight.detach()
