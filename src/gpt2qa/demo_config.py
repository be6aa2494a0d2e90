"""`gpt2qa demo`'s settings: the SQuAD and HotpotQA demos' own data and tiny-model shape
(DemoConfig, HotpotDemoConfig), and their training settings as TrainConfig overrides, with the
TrainConfig fields a demo sets itself (DEMO_FIXED) or refuses (DEMO_REFUSED).

They live apart from `config` because only the demo edge (demo.py, hotpot_demo.py, the CLI's
`demo` command) uses them, while every stage imports `config`; like it, this module is free of
heavy imports (torch is not needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

from gpt2qa.config import TrainConfig
from gpt2qa.errors import check
from gpt2qa.nesting import build, flat_fields

SQUAD_DEMO_TRAINING: dict[str, Any] = {
    "head": "bilstm",  # measured to learn the synthetic task much faster than linear from scratch
    "max_steps": 900, "batch_size": 32, "lr": 1.5e-3, "warmup_ratio": 0.05, "weight_decay": 0.01,
    "max_seq_length": 192, "doc_stride": 64, "max_query_length": 32, "log_every": 10,
    "keep_checkpoints": 1,
}
"""`gpt2qa demo`'s training settings (TrainConfig fields), before the user's flags."""

HOTPOT_DEMO_TRAINING: dict[str, Any] = {
    "head": "bilstm", "max_steps": 300, "batch_size": 16, "lr": 2e-3, "warmup_ratio": 0.05,
    "weight_decay": 0.01,
    # Small enough that the paragraph selection has to drop some of the 6 paragraphs.
    "max_seq_length": 128, "max_query_length": 32, "log_every": 10,
}
"""`gpt2qa demo --task hotpot`'s training settings (TrainConfig fields)."""

DEMO_FIXED = ("model", "task", "output_dir", "train_file", "eval_file", "dataset", "seed",
              "progress", "eval_every", "resume", "data_format", "id_column", "question_column",
              "context_column", "answer_column")
"""TrainConfig fields a demo sets itself (paths, seed, the evaluation schedule)."""

_CURVE = "the demo's learning curve is run/learning_curve.png; use gpt2qa train"
_ONE_PROCESS = "the demo trains its tiny model in one process; use gpt2qa train"
_WHOLE = "the demo trains its tiny model whole; use gpt2qa train for LoRA"
DEMO_REFUSED: dict[str, str] = {
    "epochs": "the demo always runs --steps optimizer steps (steps win over epochs); set --steps",
    "fsdp": _ONE_PROCESS, "dist_timeout": _ONE_PROCESS,
    "tensorboard": _CURVE, "report_to": _CURVE,
    "lora_r": _WHOLE, "lora_alpha": _WHOLE, "lora_dropout": _WHOLE,
    "lora_target_modules": _WHOLE, "merge_lora": _WHOLE,
    "misaligned": "the synthetic answers always match their offsets",
}
"""TrainConfig fields that mean nothing for a demo, each with the one line that refuses it."""

DemoLevel = Literal["easy", "standard"]
DemoSplit = Literal["dev", "hard"]


@dataclass(frozen=True)
class DemoConfig:
    """`gpt2qa demo`: built-in synthetic SQuAD 2.0 data, a byte-level BPE tokenizer trained on it
    and a tiny GPT-2 from a config, trained and scored offline. Training settings are
    `TrainConfig` overrides: SQUAD_DEMO_TRAINING, then `training` (the flags)."""

    out_dir: str = "runs/demo"
    """Where the data, the initial model and the run go."""
    seed: int = 0
    """Seed of the data, the initial weights and training."""
    n_layer: int = 2
    """Transformer blocks of the tiny GPT-2."""
    n_embd: int = 128
    """Width of the tiny GPT-2 (hidden size); a multiple of n_head."""
    n_head: int = 4
    """Attention heads per block."""
    vocab_size: int = 1500
    """Byte-level BPE vocabulary, trained on the synthetic training split."""
    level: DemoLevel = "easy"
    """Synthetic train/dev level: easy (learnable in CPU minutes) or standard (the study's)."""
    n_train: int = 8000
    """Synthetic training passages (3 questions each at the easy level, 4 at standard). The
    steps (not the epochs) decide how often each is seen: more passages seen fewer times score
    higher than fewer seen often (benchmarks/README.md)."""
    n_dev: int = 200
    """Synthetic dev passages, evaluated during training (the null threshold is tuned on them);
    the fresh test sample scored at the end is as large."""
    eval_split: DemoSplit = "dev"
    """Which held-out split to evaluate on: dev (same distribution) or hard."""
    progress: bool = True
    """Show a progress bar of the training steps with the time left, on stderr and only when
    it is a terminal."""
    threads: int | None = None
    """Threads torch uses within each operation (torch.set_num_threads) during the demo, set
    back afterwards; not set: torch's default. The figures repeat for the same seed and thread
    count."""
    training: dict[str, Any] = field(default_factory=dict)
    """TrainConfig overrides on top of the demo's own (flags such as --lr and --steps)."""

    defaults: ClassVar[dict[str, Any]] = SQUAD_DEMO_TRAINING
    unused: ClassVar[tuple[str, ...]] = ()
    """DemoConfig fields this demo does not use: given another value, they are refused."""

    def __post_init__(self) -> None:
        _check_demo(self, [(self.level in ("easy", "standard"), "--level must be easy or standard"),
                           (self.eval_split in ("dev", "hard"), "--eval-split must be dev or hard")])

    def train_config(self, model: str = "", train_file: str = "", eval_file: str = "",
                     output_dir: str = "") -> TrainConfig:
        """The run's TrainConfig: the demo's settings, the user's overrides, these paths (none:
        the training settings alone), and four evaluations, the last at the final step (ceil:
        750 steps must not also eval at 748)."""
        return build(TrainConfig, {
            **self.settings(), "model": model, "train_file": train_file, "eval_file": eval_file,
            "output_dir": output_dir, "seed": self.seed, "progress": self.progress,
            "eval_every": max(-(-self.steps // 4), 1)})

    def settings(self) -> dict[str, Any]:
        """The TrainConfig overrides in force: the demo's own, then the user's."""
        return {**self.defaults, **self.training}

    @property
    def steps(self) -> int:
        return int(self.settings()["max_steps"])


@dataclass(frozen=True)
class HotpotDemoConfig(DemoConfig):
    """`gpt2qa demo --task hotpot`: synthetic multi-hop questions (HotpotQA's layout) with yes/no
    answers and supporting facts; the same model shape and overrides as DemoConfig."""

    out_dir: str = "runs/demo-hotpot"
    n_train: int = 3000
    """Synthetic training questions."""
    n_dev: int = 300
    """Synthetic dev questions, evaluated during training (the thresholds are tuned on them)."""
    n_test: int = 300
    """Synthetic held-out test questions, about entities unseen in training."""
    n_companies: int = 3
    """Companies per question; each brings a company and a founder paragraph."""

    defaults: ClassVar[dict[str, Any]] = HOTPOT_DEMO_TRAINING
    unused: ClassVar[tuple[str, ...]] = ("level", "eval_split")

    def __post_init__(self) -> None:
        base = {f.name: f.default for f in fields(DemoConfig)}
        changed = [f"--{n.replace('_', '-')}" for n in self.unused if getattr(self, n) != base[n]]
        _check_demo(self, [(self.n_test >= 1, "--n-test must be at least 1"),
                           (self.n_companies >= 2, "--n-companies must be at least 2"),
                           (not changed, f"{', '.join(changed)}: only for the SQuAD demo, not "
                                           "--task hotpotqa")])

    def train_config(self, model: str = "", train_file: str = "", eval_file: str = "",
                     output_dir: str = "") -> TrainConfig:
        config = super().train_config(model, train_file, eval_file, output_dir)
        return replace(config, eval_every=max(config.max_steps // 4, 1))


def _check_demo(config: DemoConfig, extra: list[tuple[bool, str]]) -> None:
    unknown = sorted(set(config.training) - set(flat_fields(TrainConfig)) - set(DEMO_FIXED))
    fixed = sorted(set(config.training) & set(DEMO_FIXED))
    refused = sorted(set(config.training) & set(DEMO_REFUSED))
    checks = [
        (not unknown, f"unknown training setting(s) {', '.join(unknown)}"),
        (not fixed, f"the demo sets {', '.join(fixed)} itself"),
        (not refused, f"not a demo setting: {', '.join(refused)} "
                      f"({DEMO_REFUSED[refused[0]] if refused else ''})"),
        (config.threads is None or config.threads >= 1, "--threads must be at least 1"),
        (config.steps >= 1, "--steps must be at least 1"),
        (config.n_train >= 1 and config.n_dev >= 1, "--n-train and --n-dev must be at least 1"),
        (config.n_embd % config.n_head == 0, "--n-embd must be a multiple of --n-head"),
        *extra,
    ]
    check(checks)
    config.train_config()  # TrainConfig checks the training settings
