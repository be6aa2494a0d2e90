"""What trains: LoRA adapters through peft (the optional `gpt2qa[lora]` extra), gradient
checkpointing, and the parameter counts of a run's setup record.

With `--lora-r R` the backbone's attention projections get rank-R adapters (defaults per model
type in `LORA_TARGETS`); the rest of the backbone is frozen. The QA head (span logits, LSTM,
null classifier, an untied generative LM head) always trains in full, and so do the embedding
rows of the tokens gpt2qa adds (`<|sep|>`, `<|null|>`, and a generative head's `<|answer|>`),
through peft's trainable token indices: they are new, so a frozen random row would carry no
meaning.

A LoRA model directory is an *adapter* directory: `model.safetensors` holds only what trained
(adapters, the two token rows, the head) under the same names as in memory, and
`adapter_config.json` (peft's LoraConfig) names the base model. `load_model` rebuilds the base
from there, so the base (a hub id or a local directory) must still be reachable;
`merge_model_dir` (`gpt2qa train --merge-lora`) writes a standalone directory instead.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from gpt2qa.config import QA_CONFIG_NAME, QAConfig, TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.features import SpecialIds
from gpt2qa.model import HeadFactory, QAModel, load_backbone
from gpt2qa.reading import read_json_object

ADAPTER_CONFIG_NAME = "adapter_config.json"

LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "attn.c_proj"),
    "gpt_neo": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "gpt_neox": ("query_key_value", "attention.dense"),
    "gptj": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "phi3": ("qkv_proj", "o_proj"),
}
"""Default `--lora-target-modules` per model type: every attention projection (in and out)."""


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise GPT2QAError("--lora-r needs the peft package: pip install 'gpt2qa[lora]'") from None
    return peft


def _model_type(model: QAModel) -> str:
    return str(getattr(model.transformer.config, "model_type", ""))


def lora_targets(model_type: str, given: str = "") -> list[str]:
    """The modules to adapt: `given` (comma-separated) or the model type's default."""
    if given.strip():
        return [name.strip() for name in given.split(",") if name.strip()]
    if model_type not in LORA_TARGETS:
        raise GPT2QAError(f"no default LoRA target modules for model type {model_type!r}; "
                          "name them with --lora-target-modules (e.g. q_proj,v_proj)")
    return list(LORA_TARGETS[model_type])


def is_lora(model: QAModel) -> bool:
    return hasattr(model.transformer, "peft_config")


def _base_reference(name_or_dir: str) -> str:
    """A local directory as an absolute path, so the adapter loads from any working directory."""
    return str(Path(name_or_dir).resolve()) if Path(name_or_dir).is_dir() else name_or_dir


def prepare_for_training(model: QAModel, config: TrainConfig, special: SpecialIds) -> QAModel:
    """Apply --gradient-checkpointing and --lora-r to a freshly built or loaded model."""
    if config.gradient_checkpointing:
        backbone = model.transformer
        if not getattr(backbone, "supports_gradient_checkpointing", False):
            raise GPT2QAError(f"{config.model}: this backbone does not support "
                              "--gradient-checkpointing")
        # Non-reentrant: works with a frozen embedding (LoRA) and keeps RNG state per segment.
        kwargs = {"use_reentrant": False}
        if hasattr(backbone, "activation_checkpointing_enable"):  # its transformers 5.2x name
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if config.lora_r == 0:
        return model
    if is_lora(model) or (Path(config.model) / QA_CONFIG_NAME).is_file():
        raise GPT2QAError(f"{config.model}: --lora-r starts from a base model, not a gpt2qa model "
                          "directory (a LoRA directory trains on without --lora-r)")
    peft = _peft()
    model_type = _model_type(model)
    lora = peft.LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=lora_targets(model_type, config.lora_target_modules),
        trainable_token_indices=[i for i in (special.sep, special.null, special.answer)
                                 if i is not None],
        fan_in_fan_out=model_type == "gpt2")  # GPT-2's Conv1D stores weights transposed
    try:
        model.transformer = _wrap(model.transformer, lora)
    except ValueError as exc:
        raise GPT2QAError(f"--lora-target-modules: {str(exc).splitlines()[0]}") from None
    model.transformer.peft_config["default"].base_model_name_or_path = _base_reference(config.model)
    return model


def frozen_keys(model: QAModel) -> set[str]:
    """State-dict names of the parameters that do not train (the LoRA base); empty otherwise."""
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def weights_to_save(model: QAModel,
                    state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Every weight, or for a LoRA model only what trained (the base is reloaded from its
    source). `state` (default: the model's own) is the whole state of a sharded model."""
    skip = frozen_keys(model) if is_lora(model) else set()
    source = model.state_dict() if state is None else state
    return {k: v.detach().to("cpu").contiguous() for k, v in source.items() if k not in skip}


def write_adapter_config(model: QAModel, directory: Path) -> None:
    if is_lora(model):
        model.transformer.peft_config["default"].save_pretrained(str(directory))


def is_adapter_dir(model_dir: Path) -> bool:
    return (model_dir / ADAPTER_CONFIG_NAME).is_file()


FUTURE_WARNING = r"`is_gradient_checkpointing` is deprecated"
"""transformers' deprecation notice that peft triggers on every get_peft_model: two lines on
stderr that the user can do nothing about, silenced during gpt2qa's own LoRA set-up only."""


def _wrap(backbone: torch.nn.Module, lora: Any) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=FUTURE_WARNING, category=FutureWarning)
        return _peft().get_peft_model(backbone, lora)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def read_adapter_config(model_dir: Path) -> dict[str, Any]:
    """adapter_config.json read once as JSON and checked against what gpt2qa writes (peft's
    LoraConfig of `prepare_for_training`), one GPT2QAError line naming the file and the field
    for anything else; the checks that need the base model are `check_adapter_targets`."""
    path = model_dir / ADAPTER_CONFIG_NAME
    obj = read_json_object(path)

    def bad(field: str, want: str) -> GPT2QAError:
        return GPT2QAError(f"{path}: {field} must be {want}, got "
                           f"{json.dumps(obj.get(field))[:60]}")

    if obj.get("peft_type") != "LORA":
        raise bad("peft_type", '"LORA"')
    base = obj.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise bad("base_model_name_or_path", "the base model's directory or hub id")
    if not _is_int(obj.get("r")) or obj["r"] < 1:
        raise bad("r", "a positive integer")
    if not _is_number(obj.get("lora_alpha")) or obj["lora_alpha"] <= 0:
        raise bad("lora_alpha", "a finite positive number")
    if "lora_dropout" in obj and not (_is_number(obj["lora_dropout"])
                                      and 0 <= obj["lora_dropout"] < 1):
        raise bad("lora_dropout", "a number in [0, 1)")
    targets = obj.get("target_modules")
    if not (isinstance(targets, list) and targets
            and all(isinstance(t, str) and t.strip() for t in targets)):
        raise bad("target_modules", "a list of module names")
    tokens = obj.get("trainable_token_indices")
    if tokens is not None and not (isinstance(tokens, list)
                                   and all(_is_int(i) and i >= 0 for i in tokens)):
        raise bad("trainable_token_indices", "a list of token ids")
    if not isinstance(obj.get("init_lora_weights", True), bool):
        raise bad("init_lora_weights", "true or false")
    for field in ("layer_replication", "modules_to_save", "rank_pattern", "alpha_pattern"):
        if obj.get(field):
            raise GPT2QAError(f"{path}: {field} is not supported by gpt2qa (it writes none); "
                              f"got {json.dumps(obj[field])[:60]}")
    return obj


def check_adapter_targets(path: Path, obj: dict[str, Any], backbone: torch.nn.Module,
                          vocab_size: int) -> None:
    """The fields of adapter_config.json that must fit the base model: every target module
    exists in it, and every trainable token id is within its vocabulary."""
    names = [name for name, _ in backbone.named_modules()]
    for target in obj["target_modules"]:
        if not any(name == target or name.endswith("." + target) for name in names):
            raise GPT2QAError(f"{path}: target_modules names {target!r}, which the base model "
                              f"{obj['base_model_name_or_path']} does not have")
    for index in obj.get("trainable_token_indices") or []:
        if index >= vocab_size:
            raise GPT2QAError(f"{path}: trainable_token_indices holds {index}, outside the "
                              f"vocabulary of {vocab_size} tokens")


def build_adapter_model(model_dir: Path, qa: QAConfig, vocab_size: int,
                        heads: HeadFactory | None = None,
                        special: SpecialIds | None = None) -> QAModel:
    """The base backbone (from adapter_config.json's base_model_name_or_path) wrapped with
    untrained adapters of the saved shape; `load_model` then loads the saved weights into it.
    adapter_config.json is checked before peft sees it (`read_adapter_config`), and whatever
    peft still raises is one line naming the file."""
    peft = _peft()

    path = model_dir / ADAPTER_CONFIG_NAME
    obj = read_adapter_config(model_dir)
    try:
        lora = peft.LoraConfig.from_pretrained(str(model_dir))
    except Exception as exc:  # peft's own checks: ValueError, TypeError, KeyError, ...
        raise GPT2QAError(f"{path}: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
                          ) from None
    backbone = load_backbone(obj["base_model_name_or_path"])
    backbone.resize_token_embeddings(vocab_size)
    check_adapter_targets(path, obj, backbone, vocab_size)
    model = QAModel(backbone, qa, heads, special)
    try:
        model.transformer = _wrap(model.transformer, lora)
    except Exception as exc:  # what the checks above do not foresee, peft's own error types
        raise GPT2QAError(f"{path}: peft cannot apply it: "
                          f"{(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    return model


def parameter_counts(model: torch.nn.Module) -> dict[str, Any]:
    """The numbers of the setup record: trainable and total parameters."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "total_parameters": total,
            "trainable_percent": round(100.0 * trainable / max(total, 1), 3)}
