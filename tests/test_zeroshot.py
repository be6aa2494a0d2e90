"""Zero-/few-shot baseline: prompts, abstention, greedy decoding with left padding, outputs, CLI."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

from gpt2qa.cli.flags import add_zero_shot_parser
from gpt2qa.data import Answer, SquadExample
from gpt2qa.decode import sigmoid
from gpt2qa.errors import GPT2QAError
from gpt2qa.evaluation import evaluate_files
from gpt2qa.zeroshot import (
    ZeroShotConfig,
    build_prompt,
    is_abstention,
    render_prompt,
    select_shots,
)
from gpt2qa.zeroshot.decoding import (
    Generation,
    continuation_logprobs,
    greedy_generate,
    stop_token_ids,
)
from gpt2qa.zeroshot.run import run_zero_shot, zero_shot_predict

CTX = "The Eiffel Tower was completed in 1889 in Paris, France."
EX = SquadExample("q1", "When was the Eiffel Tower completed?", CTX,
                  (Answer("1889", CTX.index("1889")),), False)
RIVER = "The river Zorbel flows 412 kilometres from the Hask mountains to the sea."
SHOT_A = SquadExample("s1", "Where does the river flow?", RIVER,
                      (Answer("to the sea", RIVER.index("to the sea")),), False)
SHOT_B = SquadExample("s2", "Who founded the tower?",
                      "Tavrik is a city of 31,000 people founded by Quell Mebbit in 1834.",
                      (), True)


def _tiny_lm(tokenizer, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    # initializer_range 0.5: logits far enough apart that argmax does not hinge on rounding.
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(tokenizer),
                        n_positions=128, bos_token_id=eos, eos_token_id=eos,
                        initializer_range=0.5)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny matrices gain nothing from a second thread, and on a busy 2-core machine the
    threads' hand-offs made each 32-wide matmul ~10x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_lm(tiny_tokenizer):
    return _tiny_lm(tiny_tokenizer)


@pytest.fixture(scope="module")
def tiny_lm_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-lm")
    _tiny_lm(tiny_tokenizer).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


class ScriptedLM(GPT2LMHeadModel):
    """A real causal LM (``base``'s weights) whose generation step s is pushed (+1000) towards
    ``script[s]``.

    The step is the number of positions added since the prompt (the call with an empty cache).
    """

    def __init__(self, base, script: list[int]) -> None:
        super().__init__(base.config)
        self.load_state_dict(base.state_dict())
        self.eval()
        self.script = script
        self.start = 0

    def forward(self, input_ids=None, cache=None, **kwargs):
        seen = 0 if cache is None else cache.get_seq_length()
        if seen == 0:
            self.start = input_ids.shape[1]
        out = super().forward(input_ids=input_ids, cache=cache, **kwargs)
        step = seen + input_ids.shape[1] - self.start
        if step < len(self.script):
            out.logits[:, -1, self.script[step]] += 1000.0
        return out


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# -- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, fragment", [
    ({"template": "{context} {question} {answer}"}, "template must use exactly"),
    ({"template": "Q: {question}"}, "template must use exactly"),
    ({"template": "{context} {question"}, "not a valid format string"),
    ({"template": "{context!r} {question}"}, "format spec or conversion"),
    ({"shot_template": "{context} {question}"}, "shot_template must use exactly"),
    ({"shots": 2}, "needs shots_file"),
    ({"shots_file": "train.json"}, "shots is 0"),
    ({"shots": -1}, "shots must be >= 0"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"abstain_phrases": ()}, "abstain_phrases"),
    ({"abstain_phrases": ("the",)}, "normalises to nothing"),
    ({"na_scoring": "oracle"}, "na_scoring"),
    ({"batch_size": 0}, "batch_size"),
    ({"precision": "int8"}, "precision"),
])
def test_config_refuses_bad_settings(kwargs, fragment):
    with pytest.raises(GPT2QAError, match=fragment):
        ZeroShotConfig(**kwargs)


# -- abstention ---------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, phrases, expected", [
    ("unanswerable", None, True),
    (" Unanswerable. ", None, True),
    ("No answer", None, True),
    ("N/A", None, True),
    ("none", None, True),
    ("Unknown!", None, True),
    ("", None, True),
    ("   ", None, True),
    ("the", None, True),  # normalises to nothing
    ("unknown soldier", None, False),
    ("Nonetheless", None, False),
    ("1889", None, False),
    ("idk", ("idk",), True),
    ("unanswerable", ("idk",), False),
])
def test_is_abstention(answer, phrases, expected):
    assert is_abstention(answer, phrases or ZeroShotConfig().abstain_phrases) is expected


# -- prompts --------------------------------------------------------------------------------------

def test_render_prompt_with_shots():
    config = ZeroShotConfig()
    text = render_prompt(EX, [SHOT_A, SHOT_B], config)
    assert text == (f"{SHOT_A.context}\nQ: {SHOT_A.question}\nA: to the sea\n\n"
                    f"{SHOT_B.context}\nQ: {SHOT_B.question}\nA: unanswerable\n\n"
                    f"{CTX}\nQ: {EX.question}\nA:")


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


@pytest.mark.parametrize("case, expect_shots, expect_cut", [
    ("roomy", 2, False),
    ("one-shot-fits", 1, False),
    ("bare-fits-exactly", 0, False),
    ("cut-context", 0, True),
])
def test_build_prompt_drops_shots_then_cuts_context(tiny_tokenizer, case, expect_shots,
                                                    expect_cut):
    config = ZeroShotConfig()
    shots = [SHOT_A, SHOT_B]
    bare = _n_tokens(tiny_tokenizer, render_prompt(EX, [], config))
    one = _n_tokens(tiny_tokenizer, render_prompt(EX, shots[:1], config))
    budget = {"roomy": 10_000, "one-shot-fits": one, "bare-fits-exactly": bare,
              "cut-context": bare - 5}[case]
    prompt = build_prompt(EX, shots, tiny_tokenizer, config, budget)
    assert len(prompt.input_ids) <= budget
    assert list(prompt.input_ids) == list(tiny_tokenizer(prompt.text)["input_ids"])
    assert prompt.shots_used == expect_shots
    assert prompt.context_cut(EX) is expect_cut
    # The question and template tail always survive whole; the context keeps its beginning.
    tail = f"\nQ: {EX.question}\nA:"
    assert prompt.text.endswith(tail)
    kept = prompt.text[: -len(tail)]
    assert kept.endswith(CTX[: prompt.context_chars])
    if expect_cut:
        assert 0 < prompt.context_chars < len(CTX)
        # The cut is as short as it can be: one more context token would not fit.
        ends = [e for _, e in tiny_tokenizer(CTX, add_special_tokens=False,
                                             return_offsets_mapping=True)["offset_mapping"]]
        nxt = min(e for e in ends if e > prompt.context_chars)
        longer = render_prompt(EX, [], config, context=CTX[:nxt])
        assert _n_tokens(tiny_tokenizer, longer) > budget


def test_build_prompt_refuses_when_question_alone_does_not_fit(tiny_tokenizer):
    config = ZeroShotConfig()
    question_only = _n_tokens(tiny_tokenizer, render_prompt(EX, [], config, context=""))
    with pytest.raises(GPT2QAError, match="id=q1: the question and template alone take"):
        build_prompt(EX, [], tiny_tokenizer, config, question_only - 1)


def test_select_shots_is_seeded_and_skips_evaluated_contexts(tmp_path, squad_v2_dict):
    data = squad_v2_dict()
    extra = {"title": "More", "paragraphs": [
        {"context": SHOT_A.context, "qas": [
            {"id": "s1", "question": SHOT_A.question, "is_impossible": False,
             "answers": [{"text": "to the sea", "answer_start": RIVER.index("to the sea")}]}]},
        {"context": SHOT_B.context, "qas": [
            {"id": "s2", "question": SHOT_B.question, "is_impossible": True, "answers": []}]},
    ]}
    data["data"].append(extra)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    first = select_shots(path, 2, seed=3, exclude=[EX])
    assert first == select_shots(path, 2, seed=3, exclude=[EX])
    assert all(s.context != CTX for s in first)  # q1/q2 share EX's context
    assert {s.qas_id for s in select_shots(path, 3, seed=0, exclude=[EX])} == {"q3", "s1", "s2"}
    with pytest.raises(GPT2QAError, match="shots=4 but only 3"):
        select_shots(path, 4, seed=0, exclude=[EX])


# -- greedy decoding --------------------------------------------------------------------------

def _reference_greedy(model, prompt: list[int], stops: set[int], max_new: int) -> Generation:
    """One prompt, no padding, no cache: the full sequence re-run at every step."""
    seq, tokens, logps = list(prompt), [], []
    with torch.no_grad():
        for _ in range(max_new):
            logprobs = torch.log_softmax(model(torch.tensor([seq])).logits[0, -1].float(), -1)
            best = int(logprobs.argmax())
            if best in stops:
                mass = float(logprobs[sorted(stops)].logsumexp(-1))
                return Generation(tuple(tokens), tuple(logps), best, mass)
            tokens.append(best)
            logps.append(float(logprobs[best]))
            seq.append(best)
    return Generation(tuple(tokens), tuple(logps), None, None)


@pytest.mark.parametrize("batch_size", [3, 2])
def test_batched_greedy_matches_unbatched_reference(tiny_tokenizer, tiny_lm, batch_size):
    texts = ["Paris.", "Marie Curie won the Nobel Prize in Physics.",
             "The river Zorbel flows 412 kilometres from the Hask mountains to the sea. "
             "Tavrik is a city of 31,000 people founded by Quell Mebbit in 1834."]
    prompts = [_ids(tiny_tokenizer, t) for t in texts]
    assert len({len(p) for p in prompts}) == 3  # different lengths: left padding is exercised
    stops = set(stop_token_ids(tiny_tokenizer))
    got = greedy_generate(tiny_lm, prompts, sorted(stops), tiny_tokenizer.eos_token_id,
                          max_new_tokens=6, batch_size=batch_size)
    for prompt, gen in zip(prompts, got, strict=True):
        ref = _reference_greedy(tiny_lm, prompt, stops, 6)
        assert gen.token_ids == ref.token_ids
        assert gen.stop_token == ref.stop_token
        assert gen.token_logprobs == pytest.approx(ref.token_logprobs, abs=1e-4)
        assert (gen.stop_logprob is None) == (ref.stop_logprob is None)
    assert sum(len(g.token_ids) for g in got) >= 6  # the comparison covered real decoding


def test_greedy_ignores_the_models_generation_defaults(tiny_tokenizer):
    """A hub generation_config.json may ask for a repetition penalty (Qwen2's does); greedy
    decoding must stay plain greedy on the raw logits, and the model's config is put back."""
    model = _tiny_lm(tiny_tokenizer)
    model.generation_config.repetition_penalty = 5.0
    model.generation_config.no_repeat_ngram_size = 1
    prompt = _ids(tiny_tokenizer, CTX)
    stops = set(stop_token_ids(tiny_tokenizer))
    ref = _reference_greedy(model, prompt, stops, 8)
    assert len(set(ref.token_ids)) < len(ref.token_ids)  # a repeat: the penalties would bite
    (gen,) = greedy_generate(model, [prompt], sorted(stops), tiny_tokenizer.eos_token_id,
                             max_new_tokens=8)
    assert gen.token_ids == ref.token_ids and gen.stop_token == ref.stop_token
    assert gen.token_logprobs == pytest.approx(ref.token_logprobs, abs=1e-4)
    assert model.generation_config.repetition_penalty == 5.0
    assert model.generation_config.no_repeat_ngram_size == 1


def test_greedy_stops_at_newline_and_at_max_new_tokens(tiny_tokenizer, tiny_lm):
    newline = _ids(tiny_tokenizer, "\n")
    assert len(newline) == 1
    answer = _ids(tiny_tokenizer, " Eiffel Tower")
    after = _ids(tiny_tokenizer, " in Paris")
    stops = stop_token_ids(tiny_tokenizer)
    prompt = [_ids(tiny_tokenizer, CTX + "\nQ: " + EX.question + "\nA:")]
    eos = tiny_tokenizer.eos_token_id

    stopped = greedy_generate(ScriptedLM(tiny_lm, answer + newline + after), prompt, stops, eos,
                              max_new_tokens=12)[0]
    assert stopped.token_ids == tuple(answer)
    assert stopped.stop_token == newline[0]
    assert stopped.stop_logprob is not None and stopped.stop_logprob <= 0.0

    capped = greedy_generate(ScriptedLM(tiny_lm, answer + after), prompt, stops, eos,
                             max_new_tokens=2)[0]
    assert capped.token_ids == tuple(answer + after)[:2]
    assert capped.stop_token is None and capped.stop_logprob is None


def test_continuation_scores_agree_with_greedy_and_reference(tiny_tokenizer, tiny_lm):
    """KV-cache decoding, one left-padded forward and an unpadded reference agree on log-probs."""
    stops = stop_token_ids(tiny_tokenizer)
    prompts = [_ids(tiny_tokenizer, t) for t in ("Paris.", CTX, CTX + " Who built the tower?")]
    gens = greedy_generate(tiny_lm, prompts, stops, tiny_tokenizer.eos_token_id,
                           max_new_tokens=5)
    conts = [list(g.token_ids) for g in gens]
    assert all(conts)
    scores = continuation_logprobs(tiny_lm, prompts, conts, stops, tiny_tokenizer.eos_token_id,
                                   batch_size=3)
    for prompt, cont, gen, score in zip(prompts, conts, gens, scores, strict=True):
        with torch.no_grad():
            lp = torch.log_softmax(tiny_lm(torch.tensor([prompt + cont])).logits[0].float(), -1)
        tokens = sum(float(lp[len(prompt) - 1 + j, t]) for j, t in enumerate(cont))
        stop = float(lp[-1, list(stops)].logsumexp(-1))
        assert sum(gen.token_logprobs) == pytest.approx(tokens, abs=1e-4)
        assert score == pytest.approx(tokens + stop, abs=1e-4)


# -- predictions -------------------------------------------------------------------------------

@pytest.mark.parametrize("continuation, text, in_context", [
    (" 1889\n", "1889", True),
    (" Paris, France\n", "Paris, France", True),
    (" a castle\n", "a castle", False),
    (" Unanswerable.\n", "", False),
    (" N/A\n", "", False),
    ("\n", "", False),
])
def test_zero_shot_predict_generation_mode(tiny_tokenizer, tiny_lm, continuation, text,
                                           in_context):
    model = ScriptedLM(tiny_lm, _ids(tiny_tokenizer, continuation) + _ids(tiny_tokenizer, " x"))
    pred = zero_shot_predict(model, tiny_tokenizer, [EX], ZeroShotConfig())[0]
    raw = continuation.strip()
    assert pred.text == text
    assert pred.best_span == raw
    assert pred.na_prob == (0.0 if text else 1.0)
    (cand,) = pred.nbest
    assert cand.text == raw
    assert math.isfinite(cand.score) and cand.score <= 0.0
    if in_context:
        assert CTX[cand.start: cand.end] == raw
    else:
        assert (cand.start, cand.end) == (-1, -1)


def test_likelihood_na_scoring(tiny_tokenizer, tiny_lm):
    examples = [EX, SquadExample("q2", "Who designed it?", CTX, (), True),
                SquadExample("q3", "Where?", CTX * 8, (), True)]
    config = ZeroShotConfig(na_scoring="likelihood", max_new_tokens=4)
    preds = zero_shot_predict(tiny_lm, tiny_tokenizer, examples, config)
    assert [p.qas_id for p in preds] == ["q1", "q2", "q3"]
    assert all(0.0 <= p.na_prob <= 1.0 for p in preds)
    # Each answered prediction's na_prob is sigmoid(logp(" unanswerable") - logp(greedy)).
    # " unanswerable" (5 tokens here) is longer than max_new_tokens, so it sets the reserve.
    abstain_ids = _ids(tiny_tokenizer, " unanswerable")
    assert len(abstain_ids) > config.max_new_tokens
    window = tiny_lm.config.n_positions - len(abstain_ids)
    stops = stop_token_ids(tiny_tokenizer)
    answered = [(ex, p) for ex, p in zip(examples, preds, strict=True) if p.text]
    assert answered, "the random model should answer something"
    for ex, pred in answered:
        prompt = build_prompt(ex, [], tiny_tokenizer, config, window)
        (abstain,) = continuation_logprobs(tiny_lm, [list(prompt.input_ids)],
                                           [abstain_ids], stops,
                                           tiny_tokenizer.eos_token_id)
        assert pred.na_prob == pytest.approx(sigmoid(abstain - pred.nbest[0].score), abs=1e-6)
        assert 0.0 < pred.na_prob < 1.0
    # q3 (8 copies of CTX) only fits cut: the window and the scoring pass stayed in bounds.
    cut = build_prompt(examples[2], [], tiny_tokenizer, config, window)
    assert cut.context_cut(examples[2]) and len(cut.input_ids) + len(abstain_ids) <= 128


def test_run_zero_shot_writes_files_that_evaluate_reads(tiny_lm_dir, squad_v2_file, tmp_path):
    out = tmp_path / "out"
    metrics = run_zero_shot(str(tiny_lm_dir), squad_v2_file, out,
                            ZeroShotConfig(max_new_tokens=3, na_scoring="likelihood"))
    preds = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    na = json.loads((out / "na_probs.json").read_text(encoding="utf-8"))
    nbest = json.loads((out / "nbest.json").read_text(encoding="utf-8"))
    assert set(preds) == set(na) == set(nbest) == {"q1", "q2", "q3"}
    for cands in nbest.values():
        assert len(cands) == 1 and set(cands[0]) == {"text", "score", "start", "end"}
    scored = evaluate_files(squad_v2_file, out / "predictions.json", out / "na_probs.json")
    assert metrics["null_baseline_f1"] == pytest.approx(100.0 / 3)  # 1 of 3 unanswerable
    assert {k: v for k, v in metrics.items() if k != "null_baseline_f1"} == scored
    assert metrics["total"] == 3 and "best_f1" in metrics


# -- CLI ----------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt2qa")
    add_zero_shot_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_handler_prints_metrics(tiny_lm_dir, squad_v2_file, tmp_path, capsys):
    out = tmp_path / "cli-out"
    args = _parser().parse_args([
        "zero-shot", "--model", str(tiny_lm_dir), "--data", str(squad_v2_file),
        "--out-dir", str(out), "--max-new-tokens", "3", "--max-examples", "2",
        "--template", "{context}\\nQuestion: {question}\\nAnswer:", "--batch-size", "2",
        "--na-scoring", "generation", "--device", "cpu"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["total"] == 2
    assert set(json.loads((out / "predictions.json").read_text(encoding="utf-8"))) == {"q1", "q2"}
    na = json.loads((out / "na_probs.json").read_text(encoding="utf-8"))
    assert set(na.values()) <= {0.0, 1.0}  # generation mode


def test_cli_reads_flat_rows_with_remapped_columns(tiny_lm_dir, squad_v2_file, tmp_path,
                                                    capsys):
    """The column flags of the other commands: the same questions as JSON lines with run_qa's
    columns renamed give the same files as the SQuAD JSON."""
    from builders import squad_rows

    renames = {"id": "key", "question": "q", "context": "passage", "answers": "gold"}
    rows = [{renames.get(k, k): v for k, v in row.items()}
            for row in squad_rows(json.loads(squad_v2_file.read_text(encoding="utf-8")))]
    lines = tmp_path / "rows.jsonl"
    lines.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    common = ["--model", str(tiny_lm_dir), "--max-new-tokens", "3", "--batch-size", "2",
              "--device", "cpu"]
    printed = {}
    for name, data, columns in (
            ("json", squad_v2_file, []),
            ("rows", lines, ["--id-column", "key", "--question-column", "q",
                             "--context-column", "passage", "--answer-column", "gold"])):
        args = _parser().parse_args(["zero-shot", "--data", str(data), "--out-dir",
                                     str(tmp_path / name), *common, *columns])
        assert args.func(args) == 0
        printed[name] = json.loads(capsys.readouterr().out)
    assert printed["rows"] == printed["json"] and printed["json"]["total"] == len(rows)
    for name in ("predictions.json", "na_probs.json"):
        assert (tmp_path / "rows" / name).read_bytes() == (tmp_path / "json" / name).read_bytes()
    args = _parser().parse_args(["zero-shot", "--data", str(lines), "--out-dir",
                                 str(tmp_path / "plain"), *common])
    with pytest.raises(GPT2QAError, match=r"rows.jsonl: line 1: missing column 'id' "
                                          r"\(--id-column names another\)$"):
        args.func(args)


@pytest.mark.parametrize("make_dir", [False, True])
def test_cli_missing_or_empty_model_dir_is_one_line(squad_v2_file, tmp_path, make_dir):
    model_dir = tmp_path / "no-model"
    if make_dir:
        model_dir.mkdir()
    args = _parser().parse_args(["zero-shot", "--model", str(model_dir), "--data",
                                 str(squad_v2_file), "--out-dir", str(tmp_path / "o")])
    with pytest.raises(GPT2QAError) as info:
        args.func(args)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(model_dir))
    assert ("could not load" in message) is make_dir
    assert not (tmp_path / "o").exists()


def test_cli_refuses_shots_without_file(tiny_lm_dir, squad_v2_file, tmp_path):
    args = _parser().parse_args(["zero-shot", "--model", str(tiny_lm_dir), "--data",
                                 str(squad_v2_file), "--out-dir", str(tmp_path), "--shots", "2"])
    with pytest.raises(GPT2QAError, match="needs shots_file"):
        args.func(args)


@pytest.mark.parametrize("precision,message", [("fp16", "needs a CUDA device"),
                                               ("bf16", "no avx512_bf16/amx_bf16")])
def test_cli_refuses_half_precision_on_cpu(tiny_lm_dir, squad_v2_file, tmp_path, monkeypatch,
                                           precision, message):
    from gpt2qa import quantize

    monkeypatch.setattr(quantize, "cpu_bf16_support", lambda: "")  # a CPU without bf16
    args = _parser().parse_args(["zero-shot", "--model", str(tiny_lm_dir), "--data",
                                 str(squad_v2_file), "--out-dir", str(tmp_path / "o"),
                                 "--precision", precision, "--device", "cpu"])
    with pytest.raises(GPT2QAError, match=message):
        args.func(args)
    assert not (tmp_path / "o").exists()
