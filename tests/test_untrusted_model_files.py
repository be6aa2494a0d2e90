"""W3-2 items 8-10: a model folder's config.json, tokenizer files and LoRA adapter_config.json
are files a user receives. Each crafted file below gave a traceback (or NaN answers, or ran
for minutes) and is now one line, exit status 2, naming the file and the field; a LoRA load
prints nothing on stderr."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import one_line_error, run, save_init_dir, tiny_model

SRC = str(Path(__file__).resolve().parents[1] / "src")
QUESTION = ("--question", "When was it completed?", "--context", "It was completed in 1889.")
SHORT = ("--max-seq-length", "64", "--doc-stride", "16", "--max-query-length", "16")




def edited(source: Path, target: Path, name: str, change: Callable[[Any], Any] | str) -> Path:
    """A copy of the folder `source` whose file `name` is `change` (text), or `change` applied
    to the file's JSON object."""
    shutil.copytree(source, target)
    path = target / name
    if isinstance(change, str):
        path.write_text(change, encoding="utf-8")
    else:
        path.write_text(json.dumps(change(json.loads(path.read_text(encoding="utf-8")))),
                        encoding="utf-8")
    return target


def setting(**values: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda obj: {**obj, **values}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    from gpt2qa.checkpoint import save_model

    return save_model(tiny_model(tiny_tokenizer), tiny_tokenizer,
                      tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    return save_init_dir(tiny_tokenizer, tmp_path_factory.mktemp("init") / "init")


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any,
             init_dir: Path) -> Path:
    """A LoRA adapter directory as `train --lora-r 4` writes it (base: `init_dir`)."""
    pytest.importorskip("peft")
    from gpt2qa.checkpoint import save_model
    from gpt2qa.config import TrainConfig
    from gpt2qa.features import prepare_tokenizer
    from gpt2qa.lora import prepare_for_training

    model = prepare_for_training(
        tiny_model(tiny_tokenizer),
        TrainConfig.of(model=str(init_dir), train_file="unused.json", lora_r=4),
        prepare_tokenizer(tiny_tokenizer))
    return save_model(model, tiny_tokenizer, tmp_path_factory.mktemp("lora") / "lora")


# -- item 8: config.json -----------------------------------------------------------------------

HUGE_COUNT = re.compile(r"at least [\d,]{14,} parameters")
"""At least 10,000,000,000 parameters: more than any test machine's memory."""

CONFIGS = {
    "list": ("[]", "config.json: expected a JSON object, got list"),
    "flash-private": (setting(_attn_implementation="flash_attention_2"),
                      "config.json: _attn_implementation 'flash_attention_2' is not supported"),
    "flash": (setting(attn_implementation="flash_attention_2"),
              "config.json: attn_implementation 'flash_attention_2' is not supported"),
    "vocab-float": (setting(vocab_size=1e10),
                    "config.json: vocab_size must be a positive integer, got 10000000000.0"),
    "vocab-int": (setting(vocab_size=10**10), HUGE_COUNT),
    # The issue's n_layer 1,000,000 is 10 billion parameters (69 GiB with its layers'
    # objects): refused on this machine; 100 times that is refused on any machine.
    "layers": (setting(n_layer=10**8), HUGE_COUNT),
    "heads-string": (setting(n_head="x"), "config.json: n_head must be a positive integer"),
}


def check_refusal(err: str, needle: str | re.Pattern[str]) -> None:
    assert "config.json" in err, err
    if isinstance(needle, str):
        assert needle in err, err
    else:
        assert needle.search(err), err


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_predict_refuses_a_crafted_config_json_in_one_line(capsys, tmp_path: Path,
                                                           model_dir: Path, case: str) -> None:
    change, needle = CONFIGS[case]
    folder = edited(model_dir, tmp_path / "model", "config.json", change)
    code, out, err = run(capsys, "predict", "--model", str(folder), *QUESTION)
    check_refusal(one_line_error(code, err), needle)
    assert out == ""


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_train_refuses_a_crafted_config_json_in_one_line(capsys, tmp_path: Path, init_dir: Path,
                                                         squad_v2_file: Path, case: str) -> None:
    change, needle = CONFIGS[case]
    folder = edited(init_dir, tmp_path / "init", "config.json", change)
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "--model", str(folder), "--train-file", str(squad_v2_file),
                       "--output-dir", str(run_dir), "--max-steps", "1", "--no-progress", *SHORT)
    check_refusal(one_line_error(code, err), needle)
    assert not (run_dir / "model").exists()


def test_a_config_that_fits_still_loads(capsys, tmp_path: Path, model_dir: Path) -> None:
    """The checks refuse only what they name: eager attention and the saved sizes load."""
    folder = edited(model_dir, tmp_path / "model", "config.json",
                    setting(attn_implementation="eager"))
    code, out, err = run(capsys, "predict", "--model", str(folder), *QUESTION)
    assert code == 0, err
    assert "answer" in json.loads(out)


# -- item 9: tokenizer files -------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "needle"), [
    ("tokenizer.json", '{"version":"1.0","model":{}}',
     "tokenizer.json: not a tokenizer the tokenizers library can build"),
    ("tokenizer_config.json", "[]", "tokenizer_config.json: expected a JSON object, got list"),
])
def test_predict_refuses_crafted_tokenizer_files_in_one_line(capsys, tmp_path: Path,
                                                             model_dir: Path, name: str,
                                                             text: str, needle: str) -> None:
    folder = edited(model_dir, tmp_path / "model", name, text)
    code, _, err = run(capsys, "predict", "--model", str(folder), *QUESTION)
    assert needle in one_line_error(code, err)
    assert str(folder / name) in err


# -- item 10: LoRA adapter_config.json ---------------------------------------------------------

ADAPTERS = {
    "base-int": (setting(base_model_name_or_path=5), "base_model_name_or_path must be"),
    "r-string": (setting(r="x"), 'r must be a positive integer, got "x"'),
    "r-negative": (setting(r=-1), "r must be a positive integer, got -1"),
    "r-zero": (setting(r=0), "r must be a positive integer, got 0"),
    "targets-unknown": (setting(target_modules=["nope"]),
                        "target_modules names 'nope', which the base model"),
    "targets-string": (setting(target_modules="c_attn"),
                       'target_modules must be a list of module names, got "c_attn"'),
    "tokens-out-of-range": (setting(trainable_token_indices=[100000]),
                            "trainable_token_indices holds 100000, outside the vocabulary"),
    "layer-replication": (setting(layer_replication=[[0, 1]]),
                          "layer_replication is not supported"),
    "init-bogus": (setting(init_lora_weights="bogus"),
                   'init_lora_weights must be true or false, got "bogus"'),
    # peft 0.21.2 itself answers this one in a line; gpt2qa now refuses it before peft.
    "init-loftq": (setting(init_lora_weights="loftq"),
                   'init_lora_weights must be true or false, got "loftq"'),
    "peft-type": (setting(peft_type="BOGUS"), 'peft_type must be "LORA", got "BOGUS"'),
    "modules-to-save": (setting(modules_to_save=["wte"]), "modules_to_save is not supported"),
    "alpha-nan": (setting(lora_alpha=float("nan")),
                  "lora_alpha must be a finite positive number, got NaN"),
    "list": ("[]", "expected a JSON object, got list"),
}


@pytest.mark.parametrize("case", sorted(ADAPTERS))
def test_predict_refuses_a_crafted_adapter_config_in_one_line(capsys, tmp_path: Path,
                                                              lora_dir: Path, case: str) -> None:
    change, needle = ADAPTERS[case]
    folder = edited(lora_dir, tmp_path / "lora", "adapter_config.json", change)
    code, out, err = run(capsys, "predict", "--model", str(folder), *QUESTION)
    assert f"{folder / 'adapter_config.json'}: {needle}" in one_line_error(code, err)
    assert out == ""  # lora_alpha NaN answered with "score": NaN before


class Marker:
    """Unpickling this would create `path` (a pickle that runs code)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_a_lora_base_with_a_hostile_bin_is_one_line_and_runs_nothing(
        capsys, tmp_path: Path, init_dir: Path, lora_dir: Path) -> None:
    import torch

    marker = tmp_path / "PWNED"
    base = tmp_path / "base"
    shutil.copytree(init_dir, base)
    (base / "model.safetensors").unlink()
    torch.save({"transformer.wte.weight": Marker(str(marker))}, base / "pytorch_model.bin")
    folder = edited(lora_dir, tmp_path / "lora", "adapter_config.json",
                    setting(base_model_name_or_path=str(base)))
    code, _, err = run(capsys, "predict", "--model", str(folder), *QUESTION)
    assert f"{base / 'pytorch_model.bin'}: the model's weights cannot be loaded safely" \
        in one_line_error(code, err)
    assert not marker.exists()


def test_loading_a_lora_dir_prints_nothing_on_stderr(lora_dir: Path) -> None:
    """transformers' FutureWarning (`is_gradient_checkpointing`), two lines on every LoRA load
    through peft, is silenced during gpt2qa's own load; the answer is unchanged."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "gpt2qa", "predict", "--model", str(lora_dir),
                           *QUESTION], capture_output=True, text=True, env=env, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "answer" in json.loads(done.stdout)
