"""The generative head (`gpt2qa.generative`): training targets, the context trie, greedy
decoding with the KV cache, the null score, and the head through the CLI (train, resume,
2 processes, LoRA, predict, evaluate, every backbone family)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from builders import CORPUS
from families import EXAMPLES, FAMILIES, make_tokenizer
from gpt2qa.batching import collate
from gpt2qa.checkpoint import list_checkpoints, load_model
from gpt2qa.cli import main
from gpt2qa.config import QAConfig
from gpt2qa.data import SquadExample
from gpt2qa.decode import threshold_from_na_prob
from gpt2qa.features import ANSWER_TOKEN, convert_examples_to_features, prepare_tokenizer
from gpt2qa.generative import ContextTrie, answer_targets, find_run, output_weight
from gpt2qa.inference import run_model
from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config
from gpt2qa.pipeline import QAPipeline
from gpt2qa.tokenizer import train_bpe_tokenizer
from helpers import save_init_dir, write_tiny_squad

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
QA = QAConfig.of(head="generative", max_seq_length=64, doc_stride=16, max_query_length=16,
                 max_answer_length=8)
SMALL = ["--max-seq-length", "64", "--doc-stride", "16", "--max-query-length", "16",
         "--batch-size", "4", "--lr", "0.01", "--seed", "3", "--no-progress",
         "--head", "generative"]


@pytest.fixture(scope="module")
def tokenizer():
    """A tokenizer of this module's own: the answer marker must not reach other tests'."""
    tok = train_bpe_tokenizer(CORPUS, vocab_size=300)
    prepare_tokenizer(tok, answer=True)
    return tok


def generative_model(tokenizer, qa: QAConfig = QA, seed: int = 0) -> QAModel:
    torch.manual_seed(seed)
    special = prepare_tokenizer(tokenizer, answer=True)
    backbone = backbone_from_config(tiny_gpt2_config(len(tokenizer), n_layer=2, n_embd=32,
                                                     n_head=2, n_positions=128, dropout=0.0))
    return QAModel(backbone, qa, special=special).eval()


def random_examples(seed: int, n: int = 6) -> list[SquadExample]:
    """Contexts of random words from the corpus, some long enough for two windows."""
    rng = random.Random(seed)
    words = " ".join(CORPUS[:6]).split()
    out = []
    for i in range(n):
        context = " ".join(rng.choice(words) for _ in range(rng.randint(3, 60)))
        out.append(SquadExample(qas_id=f"r{seed}-{i}", question="Who built the tower?",
                                context=context, answers=(), is_impossible=False))
    return out


# -- pure pieces ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_the_context_trie_allows_exactly_the_continuations_found_in_the_context(seed):
    rng = random.Random(seed)
    context = [rng.randint(0, 5) for _ in range(rng.randint(0, 25))]
    trie, prefix = ContextTrie(context), []
    for _ in range(8):
        brute = {context[i + len(prefix)] for i in range(len(context) - len(prefix))
                 if context[i:i + len(prefix)] == prefix}
        assert trie.allowed() == brute
        if not brute:
            break
        token = rng.choice(sorted(brute))
        trie.advance(token)
        prefix.append(token)
        assert find_run(context, prefix) == trie.first_start() is not None


@pytest.mark.parametrize(("start", "end", "tokens", "valid"), [
    (2, 3, [12, 13, 99], [True, True, True]),      # answer at positions 2..3, then the end
    (4, 4, [14, 99, 99], [True, True, False]),     # one token
    (5, 5, [77, 99, 14], [True, True, False]),     # null label (start == null_index 5)
])
def test_answer_targets(start, end, tokens, valid):
    # Row of the batch: ids 10..15, null index 5; the longest answer in the batch is 2 tokens.
    ids = torch.arange(10, 16).unsqueeze(0).repeat(2, 1)
    got, mask = answer_targets(ids, torch.tensor([5, 5]), torch.tensor([start, 2]),
                               torch.tensor([end, 3]), null_id=77, end_id=99)
    assert got[0].tolist()[:sum(valid)] == tokens[:sum(valid)]
    assert mask[0].tolist() == valid


def test_the_answer_marker_ends_the_window_and_is_added_only_when_asked(tokenizer):
    plain = train_bpe_tokenizer(CORPUS, vocab_size=300)
    assert prepare_tokenizer(plain).answer is None and ANSWER_TOKEN not in plain.get_vocab()
    special = prepare_tokenizer(tokenizer, answer=True)
    feats = convert_examples_to_features(random_examples(0), tokenizer, QA.features, special)
    for f in feats:
        assert f.input_ids[f.null_index] == special.answer == f.input_ids[-1]
        assert special.null not in f.input_ids


def test_refuses_a_null_position_it_cannot_read():
    with pytest.raises(Exception, match="null_position must be last"):
        QAConfig.of(head="generative", null_position="first")


# -- decoding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_constrained_answers_are_always_pieces_of_the_context(tokenizer, seed):
    """Property: a random model on random contexts writes only text its context holds, at
    exact offsets, for every candidate of every question."""
    model = generative_model(tokenizer, seed=seed)
    special = prepare_tokenizer(tokenizer, answer=True)
    examples = random_examples(seed)
    feats = convert_examples_to_features(examples, tokenizer, QA.features, special)
    assert len(feats) > len(examples)  # some contexts take two windows
    outputs = run_model(model, feats, special.pad, batch_size=4)
    from gpt2qa import tasks

    preds = tasks.get("squad").decode(examples, feats, outputs, model.config,
                                     {"null_score_diff_threshold": 1e9})
    contexts = {e.qas_id: e.context for e in examples}
    for p in preds:
        assert p.text and p.nbest
        for c in p.nbest:
            assert contexts[p.qas_id][c.start:c.end] == c.text
        assert 0.0 < p.na_prob < 1.0


def test_unconstrained_answers_off_the_context_come_back_as_free_text(tokenizer):
    qa = QAConfig.of(head="generative", max_seq_length=64, doc_stride=16, max_query_length=16,
                     max_answer_length=8, constrain_to_context=False)
    model = generative_model(tokenizer, qa, seed=1)
    special = prepare_tokenizer(tokenizer, answer=True)
    examples = random_examples(1)
    feats = convert_examples_to_features(examples, tokenizer, qa.features, special)
    outputs = run_model(model, feats, special.pad, batch_size=4)
    rendered = run_model(model, feats, special.pad, batch_size=4, tokenizer=tokenizer)
    left = 0
    for f, o, r in zip(feats, outputs, rendered, strict=True):
        written = [int(t) for t in o.extra["written"] if t >= 0]
        context = list(f.input_ids[f.context_offset:f.context_end()])
        unmasked = (o.start_logits > -5e3).nonzero()[0].tolist()
        assert o.written is None  # no tokenizer: free answers are not rendered
        if written and find_run(context, written) is not None:
            assert unmasked == [f.context_offset + find_run(context, written)]
            assert r.written is None
        else:
            assert unmasked == []
            left += 1
            assert special.answer not in written and special.sep not in written
            assert r.written == (tokenizer.decode(written, skip_special_tokens=True).strip()
                                 or None)
    assert left, "the random model should write something off the context"
    from gpt2qa import tasks

    preds = tasks.get("squad").decode(examples, feats, rendered, qa,
                                      {"null_score_diff_threshold": 1e9})
    free = [c for p in preds for c in p.nbest if c.start == -1]
    assert free and all(c.end == -1 and c.text for c in free)
    assert all(sum(c.start == -1 for c in p.nbest) <= 1 for p in preds)


def test_batched_greedy_answers_equal_each_window_alone(tokenizer):
    """Right-padded rows of different lengths share one KV cache: the padding mask and the
    positions keep every row's answer and scores what it gets alone."""
    model = generative_model(tokenizer, seed=2)
    special = prepare_tokenizer(tokenizer, answer=True)
    feats = convert_examples_to_features(random_examples(2), tokenizer, QA.features, special)
    assert len({len(f.input_ids) for f in feats}) > 2
    with torch.no_grad():
        together = model(**collate(feats, special.pad, with_labels=False))
        for i, f in enumerate(feats):
            alone = model(**collate([f], special.pad, with_labels=False))
            n = len(f.input_ids)
            assert together.extra["written"][i].tolist() == alone.extra["written"][0].tolist()
            torch.testing.assert_close(together.start_logits[i, :n], alone.start_logits[0],
                                       atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(together.null_score[i], alone.null_score[0],
                                       atol=1e-4, rtol=1e-4)


def test_the_null_score_is_the_log_odds_of_null_first(tokenizer):
    model = generative_model(tokenizer, seed=3)
    special = prepare_tokenizer(tokenizer, answer=True)
    feats = convert_examples_to_features(random_examples(3)[:2], tokenizer, QA.features, special)
    with torch.no_grad():
        out = model(**collate(feats[:1], special.pad, with_labels=False))
        hidden = model.transformer(input_ids=torch.tensor([feats[0].input_ids])).last_hidden_state
        p = torch.softmax(hidden[0, -1] @ output_weight(model).t(), dim=-1)[special.null]
    assert float(out.null_score[0]) == pytest.approx(math.log(p / (1 - p)), abs=1e-4)


def test_the_loss_is_on_the_answer_tokens_only(tokenizer):
    """Changing the context after the answer changes nothing the loss reads; changing the
    gold answer's length does."""
    model = generative_model(tokenizer, seed=4)
    special = prepare_tokenizer(tokenizer, answer=True)
    ctx = "The Eiffel Tower was completed in 1889 in Paris, France."
    ex = SquadExample("q", "When?", ctx, answers=(), is_impossible=True)
    feats = convert_examples_to_features([ex], tokenizer, QA.features, special)
    batch = collate(feats, special.pad)
    loss = model(**batch).loss
    ids, valid = answer_targets(batch["input_ids"], batch["null_index"],
                                batch["start_positions"], batch["end_positions"],
                                special.null, special.pad)
    assert ids[0, :2].tolist() == [special.null, special.pad] and valid.sum() == 2
    with torch.no_grad():
        hidden = model.transformer(input_ids=torch.tensor(
            [[*feats[0].input_ids, special.null]])).last_hidden_state[0, -2:]
        logp = torch.log_softmax(hidden @ output_weight(model).t(), dim=-1)
    expected = -(logp[0, special.null] + logp[1, special.pad]) / 2
    assert loss.item() == pytest.approx(float(expected), abs=1e-5)


# -- through the CLI -----------------------------------------------------------------------------

def cli(capsys, *argv: str) -> dict:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    # A tokenizer without the answer marker, as a base model's: the run adds it.
    init = save_init_dir(train_bpe_tokenizer(CORPUS, vocab_size=300), tmp / "init", dropout=0.0)
    data = write_tiny_squad(tmp / "d.json", copies=4)
    base = ["train", "--model", str(init), "--train-file", str(data), "--eval-file", str(data),
            *SMALL, "--max-steps", "60", "--eval-every", "30", "--save-every", "10",
            "--log-every", "1", "--keep-checkpoints", "10"]
    code = main([*base, "--output-dir", str(tmp / "run")])
    assert code == 0
    return tmp, init, data, base


def test_a_generative_model_learns_the_tiny_file_and_predicts_through_every_door(trained,
                                                                                capsys):
    tmp, _, data, _ = trained
    run = tmp / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tuned_f1"] > metrics["null_baseline_f1"], metrics
    saved = json.loads((run / "model" / "gpt2qa.json").read_text())
    assert saved["head"] == "generative" and saved["constrain_to_context"] is True
    from helpers import read_card

    _, card = read_card(run / "model", tmp, run, data)
    card = card.replace("\\|", "|")  # the table cells escape their pipes
    assert "`Q <|sep|> C <|answer|> A <|endoftext|>`" in card
    assert "writes the answer A, or <|null|> to abstain; only pieces of the context" in card
    out = cli(capsys, "predict", "--model", str(run / "model"), "--question",
              "When was the Eiffel Tower completed?", "--context",
              "The Eiffel Tower was completed in 1889 in Paris, France.")
    pipe = QAPipeline.from_pretrained(run / "model")
    api = pipe("When was the Eiffel Tower completed?",
               "The Eiffel Tower was completed in 1889 in Paris, France.")
    assert set(api) == {"answer", "score", "start", "end", "is_impossible"}
    assert {k: out[k] for k in api} == api
    # One window, so one written answer: it and "no answer" share the probability.
    na = out["no_answer_probability"]
    assert api["score"] == pytest.approx(na if api["is_impossible"] else 1 - na, abs=1e-9)
    assert api["is_impossible"] or api["answer"] in ("1889", "1889 in Paris", "Paris")


def test_na_probs_and_the_threshold_round_trip_through_evaluate(trained, capsys):
    """As for a span head: the run's files give `evaluate` the run's own best F1, the saved
    threshold is the tuned one, and predict answers exactly where logit(na_prob) <= it."""
    tmp, _, data, _ = trained
    run = tmp / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    scored = cli(capsys, "evaluate", str(data), str(run / "predictions.json"),
                 "--na-prob-file", str(run / "na_probs.json"))
    assert scored["best_f1"] == metrics["best_f1"]
    saved = json.loads((run / "model" / "gpt2qa.json").read_text())
    assert saved["null_score_diff_threshold"] == metrics["tuned_null_score_diff_threshold"]
    assert saved["null_score_diff_threshold"] == pytest.approx(
        threshold_from_na_prob(scored["best_f1_thresh"]))
    cli(capsys, "predict", "--model", str(run / "model"), "--data", str(data), "--out-dir",
        str(tmp / "pred"))
    preds = json.loads((tmp / "pred" / "predictions.json").read_text())
    na = json.loads((tmp / "pred" / "na_probs.json").read_text())
    assert na == pytest.approx(json.loads((run / "na_probs.json").read_text()), abs=1e-5)
    threshold = saved["null_score_diff_threshold"]
    for qid, p in na.items():
        diff = math.log(p / (1 - p))
        if abs(diff - threshold) < 1e-9:  # the question the search put at the threshold:
            continue                      # logit(sigmoid(x)) may move it by an ulp either way
        assert (preds[qid] != "") == (diff < threshold), qid


@pytest.mark.slow
def test_sigkill_and_resume_match_an_uninterrupted_run(trained):
    tmp, _, _, base = trained
    full, killed = tmp / "full", tmp / "killed"
    # Both runs in subprocesses of one thread, so they run the same kernels.
    done = subprocess.run([sys.executable, "-m", "gpt2qa", *base, "--output-dir", str(full)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cmd = [sys.executable, "-m", "gpt2qa", *base, "--output-dir", str(killed)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list_checkpoints(killed):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list_checkpoints(killed)
    assert done and int(done[-1].name.split("-")[1]) < 60, "killed too late to test resume"
    resumed = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    from safetensors.torch import load_file

    a = load_file(str(full / "checkpoints" / "step-0000060" / "model.safetensors"))
    b = load_file(str(killed / "checkpoints" / "step-0000060" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((full / "metrics.json").read_text()) == \
        json.loads((killed / "metrics.json").read_text())


@pytest.mark.slow
def test_two_processes_match_one_process(trained):
    tmp, init, data, _ = trained
    base = ["train", "--model", str(init), "--train-file", str(data), "--eval-file", str(data),
            *SMALL, "--max-steps", "8", "--eval-every", "8"]
    runs = {}
    for n in (1, 2):
        out = tmp / f"p{n}"
        proc = subprocess.run([sys.executable, "-m", "gpt2qa", "launch", "-n", str(n), *base,
                               "--output-dir", str(out)], env=ENV, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[n] = out
    from safetensors.torch import load_file

    one = load_file(str(runs[1] / "model" / "model.safetensors"))
    two = load_file(str(runs[2] / "model" / "model.safetensors"))
    assert one.keys() == two.keys()
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-4
    m1, m2 = (json.loads((runs[n] / "metrics.json").read_text()) for n in (1, 2))
    for key in ("f1", "tuned_f1"):
        assert abs(m1[key] - m2[key]) <= 0.5, (key, m1[key], m2[key])


@pytest.mark.slow
def test_lora_trains_the_marker_row_and_merges(trained, capsys):
    pytest.importorskip("peft")
    tmp, init, data, _ = trained
    run = tmp / "lora"
    cli(capsys, "train", "--model", str(init), "--train-file", str(data), "--eval-file",
        str(data), *SMALL, "--max-steps", "6", "--lora-r", "4", "--merge-lora",
        "--output-dir", str(run))
    adapter = json.loads((run / "model" / "adapter_config.json").read_text())
    model, _, special = load_model(run / "model")
    assert special.answer in adapter["trainable_token_indices"]
    answers = {}
    for name in ("model", "model-merged"):
        cli(capsys, "predict", "--model", str(run / name), "--data", str(data), "--out-dir",
            str(tmp / f"lora-{name}"))
        answers[name] = json.loads((tmp / f"lora-{name}" / "na_probs.json").read_text())
    assert answers["model"] == pytest.approx(answers["model-merged"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.model_type)
def test_every_backbone_family_trains_and_predicts(family, tmp_path, capsys):
    """Tied (GPT-2) and untied (Llama, NeoX, ...) output layers alike."""
    from transformers import AutoModel

    tok = make_tokenizer(family.tokenizer)
    torch.manual_seed(0)
    AutoModel.from_config(family.config(len(tok))).save_pretrained(tmp_path / "init")
    tok.save_pretrained(tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    cli(capsys, "train", "--model", str(tmp_path / "init"), "--train-file", str(data),
        "--eval-file", str(data), *SMALL, "--max-steps", "2", "--output-dir",
        str(tmp_path / "run"), "--max-answer-length", "4")
    out = cli(capsys, "predict", "--model", str(tmp_path / "run" / "model"), "--data", str(data),
              "--out-dir", str(tmp_path / "pred"))
    assert out["examples"] == 6
    model, tok, special = load_model(tmp_path / "run" / "model")
    tied = getattr(model.transformer.config, "tie_word_embeddings", True)
    assert (model.lm_head is None) == bool(tied)
    # Rows of different lengths share one KV cache and still write what each writes alone.
    feats = convert_examples_to_features(EXAMPLES, tok, model.config.features, special)
    assert len({len(f.input_ids) for f in feats}) > 1
    with torch.no_grad():
        together = model(**collate(feats, special.pad, with_labels=False))
        for i, f in enumerate(feats):
            alone = model(**collate([f], special.pad, with_labels=False))
            assert together.extra["written"][i].tolist() == alone.extra["written"][0].tolist()
            torch.testing.assert_close(together.null_score[i], alone.null_score[0],
                                       atol=1e-4, rtol=1e-4)


def test_fsdp_is_refused_in_one_line():
    from gpt2qa.config import TrainConfig

    with pytest.raises(Exception, match="--fsdp does not run --head generative"):
        TrainConfig.of(train_file="t.json", head="generative", fsdp=True)


def test_predict_can_turn_the_constraint_off_and_a_span_model_refuses_it(trained, capsys):
    tmp, _, data, _ = trained
    pipe = QAPipeline.from_pretrained(tmp / "run" / "model", constrain_to_context=False)
    assert pipe.model.config.decoding.constrain_to_context is False
    code = main(["predict", "--model", str(tmp / "run" / "model"), "--data", str(data),
                 "--out-dir", str(tmp / "free"), "--no-constrain-to-context"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    span = [a.replace("generative", "linear") for a in SMALL]
    cli(capsys, "train", "--model", str(tmp / "init"), "--train-file", str(data), *span,
        "--max-steps", "1", "--output-dir", str(tmp / "span"))
    from gpt2qa.errors import GPT2QAError

    with pytest.raises(GPT2QAError, match="applies to a generative model; this one has a linear"):
        QAPipeline.from_pretrained(tmp / "span" / "model", constrain_to_context=True)


@pytest.mark.parametrize("quantize", ["int8"])
def test_int8_predict_answers_from_the_context(trained, quantize):
    tmp, _, data, _ = trained
    pipe = QAPipeline.from_pretrained(tmp / "run" / "model", quantize=quantize)
    ctx = "The Eiffel Tower was completed in 1889 in Paris, France."
    out = pipe("When was the Eiffel Tower completed?", ctx, top_k=3)
    for answer in out:
        assert answer["is_impossible"] or ctx[answer["start"]:answer["end"]] == answer["answer"]


def test_serve_answers_a_generative_model_like_a_span_model(trained):
    from fastapi.testclient import TestClient

    from gpt2qa.serve import ServeSettings, create_app

    tmp, _, _, _ = trained
    pipe = QAPipeline.from_pretrained(tmp / "run" / "model")
    ctx = "The Eiffel Tower was completed in 1889 in Paris, France."
    with TestClient(create_app(pipe, ServeSettings())) as client:
        info = client.get("/v1/model").json()
        assert info["head"] == "generative"
        body = client.post("/v1/answer", json={"question": "When was the Eiffel Tower "
                                               "completed?", "context": ctx,
                                               "null_score_diff_threshold": 100.0}).json()
    api = pipe("When was the Eiffel Tower completed?", ctx, null_score_diff_threshold=100.0)
    assert body["answer"] == api["answer"] != "" and not body["is_impossible"]
    first = body["candidates"][0]
    assert ctx[first["start"]:first["end"]] == first["text"] == api["answer"]
    assert first["score"] == pytest.approx(api["score"]) == pytest.approx(
        1 - body["no_answer_probability"])


@pytest.mark.slow
def test_hotpotqa_trains_a_generative_head_beside_its_own_heads(tmp_path):
    """The answer-type and supporting-fact heads read the same states; the span answers are
    written, constrained to the window's rendered paragraphs."""
    import dataclasses

    from gpt2qa import tasks
    from gpt2qa.demo_config import HotpotDemoConfig
    from gpt2qa.hotpot_demo import run_hotpot_demo

    config = dataclasses.replace(
        HotpotDemoConfig(out_dir=str(tmp_path / "demo"), seed=0, progress=False),
        n_train=20, n_dev=8, n_test=8, n_layer=2, n_embd=32, n_head=2, vocab_size=400,
        training={"head": "generative", "max_steps": 6})
    metrics = run_hotpot_demo(config)
    assert 0.0 <= metrics["test"]["joint_f1"] <= 1.0
    model_dir = tmp_path / "demo" / "run" / "model"
    pipe = QAPipeline.from_pretrained(model_dir)
    assert pipe.task.name == "hotpotqa" and pipe.model.config.head == "generative"
    task = tasks.get("hotpotqa")
    examples = task.read(str(tmp_path / "demo" / "data" / "test.json")).examples
    special = pipe.special_ids
    feats = task.features(examples, pipe.tokenizer, pipe.model.config.features, special)
    outputs = run_model(pipe.model, feats, special.pad)
    free = QAPipeline.from_pretrained(model_dir, constrain_to_context=False)
    spans = [p for p in free.predict(examples) if p.answer_type == "span"]
    assert spans and all(p.answer and p.nbest[0].text == p.answer for p in spans)
    assert any(p.nbest[0].start == -1 for p in spans)  # written off the paragraphs
    for f, o in zip(feats, outputs, strict=True):
        assert set(o.extra) == {"answer_type", "supporting_facts", "written", "written_score"}
        written = [int(t) for t in o.extra["written"] if t >= 0]
        if written:
            assert find_run(f.input_ids[f.context_offset:f.context_end()], written) is not None


def test_streamed_predict_writes_the_in_memory_bytes(trained, capsys):
    """Generation is batch-invariant too: chunks of 7 give the in-memory predict's files."""
    from gpt2qa.synthetic import SyntheticConfig, generate

    tmp, _, _, _ = trained
    data = tmp / "synthetic.json"
    data.write_text(json.dumps(generate(SyntheticConfig(n_passages=6, split="dev"))))
    model = str(tmp / "run" / "model")
    cli(capsys, "predict", "--model", model, "--data", str(data), "--out-dir", str(tmp / "mem"))
    cli(capsys, "predict", "--model", model, "--data", str(data), "--out-dir", str(tmp / "str"),
        "--stream", "--chunk-size", "7")
    for name in ("predictions.json", "na_probs.json"):
        assert (tmp / "mem" / name).read_bytes() == (tmp / "str" / name).read_bytes(), name
