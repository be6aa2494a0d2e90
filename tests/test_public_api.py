"""The public Python API: `from gpt2qa import QAPipeline`, v4-shaped calls, the README snippet."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gpt2qa
from gpt2qa.checkpoint import save_model
from gpt2qa.config import QAConfig
from gpt2qa.decode import Candidate, Prediction
from gpt2qa.errors import GPT2QAError
from gpt2qa.pipeline import QAPipeline
from gpt2qa.tasks.squad import answer_dicts
from helpers import tiny_model

README = Path(__file__).resolve().parents[1] / "README.md"
CONTEXT = "Ada Lovelace was born in London in 1815."


def readme_python_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    root = tmp_path_factory.mktemp("api")
    save_model(tiny_model(tiny_tokenizer, QAConfig.of(max_seq_length=64, doc_stride=32,
                                                   max_query_length=16)),
               tiny_tokenizer, root / "runs" / "demo" / "run" / "model")
    return root


def test_readme_snippet_runs_as_written(model_dir):
    result = subprocess.run([sys.executable, "-c", readme_python_snippet()], cwd=model_dir,
                            capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                 "PYTHONPATH": str(README.parent / "src")})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) >= 2  # the best answer, then up to 3 candidates


def test_public_names_import_lazily():
    code = "import sys, gpt2qa; print('torch' in sys.modules); print(gpt2qa.QAPipeline.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(README.parent / "src"),
                                           "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["False", "QAPipeline"]
    for name in gpt2qa.__all__:
        assert getattr(gpt2qa, name) is not None
    assert gpt2qa.fine_tune.__module__ == "gpt2qa.tasks"  # resolves the task, then trains
    with pytest.raises(AttributeError):
        gpt2qa.no_such_name  # noqa: B018


def test_call_shapes_match_the_v4_pipeline(model_dir):
    qa = QAPipeline.from_pretrained(model_dir / "runs" / "demo" / "run" / "model", device="cpu")
    question = "Where was Ada born?"
    one = qa(question=question, context=CONTEXT)
    assert set(one) == {"answer", "score", "start", "end", "is_impossible"}
    assert one["answer"] == qa.answer(question, CONTEXT).text
    assert one["is_impossible"] == (one["answer"] == "")
    if not one["is_impossible"]:
        assert CONTEXT[one["start"]:one["end"]] == one["answer"]
    ranked = qa(question=question, context=CONTEXT, top_k=3)
    assert isinstance(ranked, list) and 1 <= len(ranked) <= 3 and ranked[0] == one
    everything = qa(question=question, context=CONTEXT, top_k=1000)
    assert math.isclose(sum(d["score"] for d in everything), 1.0, rel_tol=1e-9)
    batch = qa(question=[question, "When was she born?"], context=CONTEXT)
    alone = [one, qa(question="When was she born?", context=CONTEXT)]
    assert [{**d, "score": pytest.approx(d["score"], abs=1e-5)} for d in alone] == batch
    always = qa(question=question, context=CONTEXT, null_score_diff_threshold=1e9)
    never = qa(question=question, context=CONTEXT, null_score_diff_threshold=-1e9)
    assert always["answer"] == qa.answer(question, CONTEXT).best_span != ""
    assert never == {"answer": "", "score": never["score"], "start": 0, "end": 0,
                     "is_impossible": True}


@pytest.mark.parametrize("kwargs, message", [
    ({"question": ["a?", "b?"], "context": ["x y", "y z", "z w"]}, "2 questions but 3 contexts"),
    ({"question": "a?", "context": "x y", "top_k": 0}, "top_k must be >= 1"),
    ({"question": ["a?", " "], "context": "x y"}, "question 1: question and context"),
])
def test_call_refuses_bad_input(model_dir, kwargs, message):
    qa = QAPipeline.from_pretrained(model_dir / "runs" / "demo" / "run" / "model", device="cpu")
    with pytest.raises(GPT2QAError, match=message):
        qa(**kwargs)


def _prediction(text: str, na_prob: float) -> Prediction:
    nbest = (Candidate("1889", 3.0, 10, 14), Candidate("in 1889", 2.0, 7, 14))
    diff = math.log(na_prob / (1 - na_prob))
    return Prediction(qas_id="q", text=text, best_span="1889", score_diff=diff,
                      na_prob=na_prob, nbest=nbest)


@pytest.mark.parametrize("text, expected", [
    # the worked example in answer_dicts: spans share 0.8 by softmax (0.731 / 0.269)
    ("1889", [("1889", 0.8 * 0.7310586), ("in 1889", 0.8 * 0.2689414), ("", 0.2)]),
    ("", [("", 0.2), ("1889", 0.8 * 0.7310586), ("in 1889", 0.8 * 0.2689414)]),
])
def test_answer_dicts_put_the_decision_first(text, expected):
    dicts = answer_dicts(_prediction(text, 0.2), top_k=5)
    assert [(d["answer"], round(d["score"], 6)) for d in dicts] == [
        (a, round(p, 6)) for a, p in expected]
    assert answer_dicts(_prediction(text, 0.2), top_k=1) == dicts[:1]
