"""gpt2qa: extractive question answering with decoder-only models on SQuAD 2.0.

The public Python API (README, "Python"):

    from gpt2qa import QAPipeline
    qa = QAPipeline.from_pretrained("runs/demo/run/model")
    qa(question="Who founded it?", context="...")   # {"answer", "score", "start", "end", ...}

Names load on first use, so `import gpt2qa` (and `gpt2qa --help`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "QAPipeline": "gpt2qa.pipeline",
    "AnswerDict": "gpt2qa.pipeline",
    "TrainConfig": "gpt2qa.config",
    "QAConfig": "gpt2qa.config",
    "DemoConfig": "gpt2qa.demo_config",
    "fine_tune": "gpt2qa.tasks",
    "TrainResult": "gpt2qa.train",
    "evaluate_files": "gpt2qa.evaluation",
    "load_squad": "gpt2qa.data",
    "GPT2QAError": "gpt2qa.errors",
}
__all__ = ["AnswerDict", "DemoConfig", "GPT2QAError", "QAConfig", "QAPipeline", "TrainConfig",
           "TrainResult", "__version__", "evaluate_files", "fine_tune", "load_squad"]

if TYPE_CHECKING:
    from gpt2qa.config import QAConfig, TrainConfig
    from gpt2qa.data import load_squad
    from gpt2qa.demo_config import DemoConfig
    from gpt2qa.errors import GPT2QAError
    from gpt2qa.evaluation import evaluate_files
    from gpt2qa.pipeline import AnswerDict, QAPipeline
    from gpt2qa.tasks import fine_tune
    from gpt2qa.train import TrainResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpt2qa' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
