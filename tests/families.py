"""The backbone matrix shared by test_backbones and test_lora: every causal family gpt2qa
claims, as a tiny config builder, the dtype it ships in and the kind of tokenizer it uses, plus
a few SQuAD examples and a tokenizer trained per kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from builders import CORPUS
from gpt2qa.data import Answer, SquadExample
from gpt2qa.tokenizer import train_bpe_tokenizer, train_metaspace_tokenizer

WIDTH, LAYERS, HEADS, POSITIONS = 32, 2, 4, 128


def _cfg(name: str, **kw: Any) -> Callable[[int], Any]:
    def build(vocab_size: int) -> Any:
        import transformers

        return getattr(transformers, name)(vocab_size=vocab_size, **kw)

    return build


LLAMA_LIKE = dict(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, num_key_value_heads=2,
                  max_position_embeddings=POSITIONS)


@dataclass(frozen=True)
class Family:
    model_type: str
    config: Callable[[int], Any]
    dtype: torch.dtype
    """What the family's released checkpoints are saved in."""
    tokenizer: str
    """byte-level (GPT-2, NeoX, Qwen), metaspace (Llama 2, Mistral, Phi-3), metaspace-gemma."""


FAMILIES = [
    Family("gpt2", _cfg("GPT2Config", n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS,
                        n_positions=POSITIONS), torch.float32, "byte-level"),
    Family("gpt_neo", _cfg("GPTNeoConfig", hidden_size=WIDTH, num_layers=LAYERS, num_heads=HEADS,
                           attention_types=[[["global", "local"], 1]], window_size=16,
                           max_position_embeddings=POSITIONS), torch.float32, "byte-level"),
    Family("gpt_neox", _cfg("GPTNeoXConfig", hidden_size=WIDTH, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, intermediate_size=64,
                            max_position_embeddings=POSITIONS), torch.float16, "byte-level"),
    Family("gptj", _cfg("GPTJConfig", n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS, rotary_dim=4,
                        n_positions=POSITIONS), torch.float32, "byte-level"),
    Family("llama", _cfg("LlamaConfig", **LLAMA_LIKE), torch.bfloat16, "metaspace"),
    Family("mistral", _cfg("MistralConfig", **LLAMA_LIKE), torch.bfloat16, "metaspace"),
    Family("qwen2", _cfg("Qwen2Config", **LLAMA_LIKE), torch.bfloat16, "byte-level"),
    Family("phi3", _cfg("Phi3Config", **LLAMA_LIKE, pad_token_id=None), torch.bfloat16,
           "metaspace"),
    Family("gemma", _cfg("GemmaConfig", **LLAMA_LIKE, head_dim=8, pad_token_id=None),
           torch.bfloat16, "metaspace-gemma"),
]

CTX = "The Eiffel Tower was completed in 1889 in Paris, France."
EXAMPLES = [
    SquadExample("a", "When was it completed?", CTX, (Answer("1889", CTX.index("1889")),), False),
    SquadExample("b", "Who built it?", CTX, (), True),
    SquadExample("c", "Where?", CTX[:30], (), True),
]


def make_tokenizer(kind: str) -> Any:
    if kind == "byte-level":
        return train_bpe_tokenizer(CORPUS, vocab_size=400)
    if kind == "metaspace":
        return train_metaspace_tokenizer(CORPUS, vocab_size=600, limit_alphabet=40)
    return train_metaspace_tokenizer(CORPUS, vocab_size=600, limit_alphabet=40,
                                     bos="<bos>", eos="<eos>", unk="<unk>")
