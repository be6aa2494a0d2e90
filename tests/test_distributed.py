"""Several processes (torchrun over gloo, tiny models): one global schedule, sharded
evaluation, SIGKILL + resume, one owner of precision, fp32 master weights for bf16 checkpoints.

The multi-process runs go through `gpt2qa launch`, as a user would start them. Every process
gets OMP_NUM_THREADS=1, so one- and two-process runs use the same CPU kernels.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gpt2qa.checkpoint import list_checkpoints
from gpt2qa.config import TrainConfig
from gpt2qa.errors import GPT2QAError
from gpt2qa.evaluation import evaluate_files
from gpt2qa.features import prepare_tokenizer
from gpt2qa.launch import check_launcher_precision
from gpt2qa.model import QAModel, backbone_from_config, tiny_gpt2_config
from gpt2qa.schedule import epoch_batches, micro_batches, resolve_schedule
from gpt2qa.tasks import fine_tune as train
from helpers import save_init_dir, write_tiny_squad

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
# 11 copies of the 3-question file: 33 one-window features. Batch 4 -> 9 steps per epoch, an
# odd number, and a last batch of 1 feature filled up with 3 repeated ones.
COMMON = ["--max-seq-length", "64", "--doc-stride", "16", "--max-query-length", "16",
          "--batch-size", "4", "--lr", "3e-3", "--log-every", "1", "--no-progress",
          "--seed", "3", "--max-steps", "18", "--eval-every", "9", "--save-every", "3",
          "--keep-checkpoints", "10"]


def gpt2qa(*args: str, nproc: int | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gpt2qa"]
    if nproc is not None:
        cmd += ["launch", "-n", str(nproc)]
    return subprocess.run(cmd + list(args), env=ENV, capture_output=True, text=True,
                          timeout=300, **kw)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer):
    """One training run on 1 process (batch 4) and one on 2 processes (2 features each)."""
    tmp = tmp_path_factory.mktemp("dist")
    # No dropout: the two runs then differ only in the order of float sums (all-reduce).
    save_init_dir(tiny_tokenizer, tmp / "init", dropout=0.0)
    data = write_tiny_squad(tmp / "d.json", copies=11)
    base = ["train", "--model", str(tmp / "init"), "--train-file", str(data),
            "--eval-file", str(data), *COMMON]
    out = {}
    for nproc in (1, 2):
        proc = gpt2qa(*base, "--output-dir", str(tmp / f"p{nproc}"), nproc=nproc)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[nproc] = tmp / f"p{nproc}"
    return tmp, data, base, out


@pytest.mark.slow
def test_two_processes_with_an_odd_number_of_batches_finish(runs):
    _, _, _, out = runs
    for nproc, run in out.items():
        assert (run / "metrics.json").is_file()
        schedule = json.loads((run / "train_config.json").read_text())["schedule"]
        assert schedule["processes"] == nproc
        assert schedule["batch_size"] == 4
        assert schedule["per_device_batch_size"] == 4 // nproc
        assert schedule["steps_per_epoch"] == 9 and schedule["repeated_per_epoch"] == 3
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        assert log[0]["event"] == "setup" and log[0]["processes"] == nproc
        assert [r["step"] for r in log if r["event"] == "eval"] == [9, 18]
        assert [r["step"] for r in log if r["event"] == "train"] == list(range(1, 19))


@pytest.mark.slow
def test_two_processes_match_one_process_at_the_same_global_batch(runs):
    """Same global batches, same init, no dropout: the gradients differ only in float summation
    order (each process averages 2 features, then all-reduce averages the 2 means). Over 18
    AdamW steps that stays below 1e-4 in every weight (measured: 1.5e-5), and the scores agree
    within 0.5 F1. One exception: qa_outputs.bias. Softmax ignores a shift added to every
    logit, so its true gradient is 0 and it receives only float noise, which Adam scales up to
    lr-sized steps (measured: 4e-3 apart); it changes no prediction, so it is left out."""
    _, _, _, out = runs
    one = weights(out[1] / "checkpoints" / "step-0000018")
    two = weights(out[2] / "checkpoints" / "step-0000018")
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one if k != "qa_outputs.bias")
    assert worst < 1e-4, worst
    m1 = json.loads((out[1] / "metrics.json").read_text())
    m2 = json.loads((out[2] / "metrics.json").read_text())
    assert m1["step"] == m2["step"]
    for key in ("f1", "tuned_f1", "HasAns_f1"):
        assert abs(m1[key] - m2[key]) <= 0.5, (key, m1[key], m2[key])
    loss1 = [json.loads(x)["loss"] for x in (out[1] / "log.jsonl").read_text().splitlines()
             if '"train"' in x]
    loss2 = [json.loads(x)["loss"] for x in (out[2] / "log.jsonl").read_text().splitlines()
             if '"train"' in x]
    # The logged loss is the mean over both processes, not rank 0's half.
    assert loss1 == pytest.approx(loss2, rel=1e-3)


@pytest.mark.slow
def test_two_process_predict_equals_one_process(runs):
    tmp, data, _, out = runs
    model = out[2] / "model"
    files = {}
    for nproc in (1, 2):
        dest = tmp / f"pred{nproc}"
        proc = gpt2qa("predict", "--model", str(model), "--data", str(data), "--out-dir",
                      str(dest), "--batch-size", "4", nproc=nproc)
        assert proc.returncode == 0, proc.stderr[-3000:]
        files[nproc] = {name: json.loads((dest / f"{name}.json").read_text())
                        for name in ("predictions", "na_probs", "nbest")}
        files[nproc]["metrics"] = evaluate_files(data, dest / "predictions.json",
                                                 na_prob_file=dest / "na_probs.json")
    assert len(files[1]["predictions"]) == 33
    assert files[1] == files[2]


@pytest.mark.slow
def test_sigkill_during_a_two_process_run_then_resume_matches(runs):
    tmp, _, base, out = runs
    killed = tmp / "killed"
    cmd = [sys.executable, "-m", "gpt2qa", "launch", "-n", "2", *base,
           "--output-dir", str(killed)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list_checkpoints(killed):
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)   # the launcher and both workers, at once
    proc.wait()
    done = list_checkpoints(killed)
    assert done and int(done[-1].name.split("-")[1]) < 18, "killed too late to test resume"

    resumed = gpt2qa(*base, "--output-dir", str(killed), "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = weights(out[2] / "checkpoints" / "step-0000018")
    b = weights(killed / "checkpoints" / "step-0000018")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out[2] / "metrics.json").read_text()) == \
        json.loads((killed / "metrics.json").read_text())


# -- the schedule, as pure functions ------------------------------------------------------------

def _config(**kw) -> TrainConfig:
    return TrainConfig.of(**{"train_file": "t.json", **kw})


@pytest.mark.parametrize(("n", "batch", "accum", "procs", "per_device", "steps", "repeated"), [
    (116, 8, 1, 2, 4, 15, 4),
    (100, 8, 1, 2, 4, 13, 4),
    (116, 8, 2, 2, 2, 15, 4),
    (32, 32, 2, 8, 2, 1, 0),
    (33, 4, 1, 1, 4, 9, 3),
])
def test_resolve_schedule(n, batch, accum, procs, per_device, steps, repeated):
    s = resolve_schedule(n, _config(batch_size=batch, grad_accum=accum, epochs=1), procs)
    assert (s.per_device_batch_size, s.steps_per_epoch, s.repeated_per_epoch) == \
        (per_device, steps, repeated)
    assert s.total_steps == steps and s.eval_every == steps and s.save_every == steps


def test_resolve_schedule_refuses_a_batch_that_does_not_split():
    with pytest.raises(GPT2QAError, match="multiple of 6"):
        resolve_schedule(100, _config(batch_size=16, grad_accum=2), 3)


@pytest.mark.parametrize("group_by_length", [True, False])
def test_epoch_batches_are_full_cover_everything_and_depend_only_on_seed(group_by_length):
    lengths = [10 + (i * 7) % 50 for i in range(37)]
    config = _config(batch_size=8, seed=5, group_by_length=group_by_length)
    batches = epoch_batches(lengths, config, epoch=2)
    assert all(len(b) == 8 for b in batches) and len(batches) == 5
    flat = [i for b in batches for i in b]
    assert set(flat) == set(range(37)) and len(flat) - len(set(flat)) == 3
    assert batches == epoch_batches(lengths, config, epoch=2)
    assert batches != epoch_batches(lengths, config, epoch=3)


def test_micro_batches_split_a_global_batch_without_overlap():
    batch = list(range(8))
    shares = [micro_batches(batch, r, 2, 2) for r in range(2)]
    assert shares == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    assert micro_batches(batch, 0, 1, 1) == [batch]


# -- precision ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("launcher", "precision", "refused"), [
    (None, "fp32", False), ("no", "fp32", False), ("bf16", "bf16", False),
    ("fp16", "fp16", False), ("bf16", "fp32", True), ("fp16", "fp32", True),
    ("fp16", "bf16", True),
])
def test_launcher_precision_is_accepted_only_when_it_agrees(launcher, precision, refused):
    env = {} if launcher is None else {"ACCELERATE_MIXED_PRECISION": launcher}
    if refused:
        with pytest.raises(GPT2QAError, match=f"launcher asks for mixed precision {launcher}"):
            check_launcher_precision(precision, env)
    else:
        check_launcher_precision(precision, env)


@pytest.mark.parametrize(("variable", "value"), [("ACCELERATE_MIXED_PRECISION", "bf16"),
                                                 ("ACCELERATE_USE_FSDP", "true")])
def test_a_launcher_setting_gpt2qa_does_not_follow_is_refused_before_anything_is_written(
        tmp_path, monkeypatch, tiny_tokenizer, variable, value, capsys):
    monkeypatch.setenv(variable, value)
    data = write_tiny_squad(tmp_path / "d.json")
    from gpt2qa.cli import main

    code = main(["train", "--model", str(tmp_path / "nowhere"), "--train-file", str(data),
                 "--output-dir", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert ("mixed precision bf16" if value == "bf16" else "pass --fsdp") in err
    assert not (tmp_path / "out").exists()


# -- bf16-saved checkpoints train with fp32 master weights ----------------------------------------

def _bf16_checkpoint(kind: str, tokenizer, path: Path) -> Path:
    from transformers import AutoModel, LlamaConfig, Qwen2Config

    prepare_tokenizer(tokenizer)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.eos_token_id)
    config = LlamaConfig(**common) if kind == "llama" else Qwen2Config(**common)
    torch.manual_seed(0)
    AutoModel.from_config(config).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("head", ["bilstm", "linear"])
def test_bf16_saved_checkpoint_trains_in_fp32(tmp_path, tiny_tokenizer, kind, head):
    init = _bf16_checkpoint(kind, tiny_tokenizer, tmp_path / "init")
    assert json.loads((init / "config.json").read_text())["dtype"] == "bfloat16"
    data = write_tiny_squad(tmp_path / "d.json", copies=2)
    result = train(TrainConfig.of(model=str(init), train_file=str(data), eval_file=str(data),
                               output_dir=str(tmp_path / "run"), head=head, max_steps=3,
                               batch_size=2, max_seq_length=64, doc_stride=16,
                               max_query_length=16, lr=5e-5, progress=False))
    assert result.metrics is not None
    saved = weights(result.model_dir)
    assert {t.dtype for t in saved.values()} == {torch.float32}
    first = weights(init)
    moved = [k for k, v in first.items() if not torch.equal(
        v.float(), saved[f"transformer.{k}"][: v.shape[0]] if k.endswith("embed_tokens.weight")
        else saved[f"transformer.{k}"])]
    # fp32 master weights: at lr 5e-5 every backbone tensor moves (in bf16, 44% did not).
    assert len(moved) == len(first), sorted(set(first) - set(moved))[:5]


def test_heads_compute_in_fp32_under_autocast(tiny_tokenizer, squad_v2_dict):
    from gpt2qa.batching import collate
    from gpt2qa.config import QAConfig
    from gpt2qa.data import parse_squad
    from gpt2qa.features import convert_examples_to_features

    special = prepare_tokenizer(tiny_tokenizer)
    qa = QAConfig.of(max_seq_length=64, doc_stride=16, max_query_length=16)
    torch.manual_seed(0)
    model = QAModel(backbone_from_config(tiny_gpt2_config(len(tiny_tokenizer), n_embd=32,
                                                          n_positions=128)), qa).eval()
    examples = parse_squad(squad_v2_dict(), "mem").examples
    features = convert_examples_to_features(examples, tiny_tokenizer, qa.features, special)
    batch = collate(features, special.pad, with_labels=False)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = model(**batch)
    assert out.start_logits.dtype == out.end_logits.dtype == out.null_score.dtype == torch.float32


# -- FSDP -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fsdp_trains_like_ddp_saves_whole_weights_and_resumes(runs):
    """`--fsdp` on 2 gloo processes: the same global batches as the DDP run, so the same
    weights within the DDP test's tolerance; model/ and checkpoints hold whole tensors that
    load on one process; a resume from an earlier checkpoint ends bit-identical."""
    tmp, data, base, out = runs
    fsdp = tmp / "fsdp"
    proc = gpt2qa(*base, "--output-dir", str(fsdp), "--fsdp", nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = weights(out[2] / "checkpoints" / "step-0000018")
    sharded = weights(fsdp / "checkpoints" / "step-0000018")
    assert {k: v.shape for k, v in ddp.items()} == {k: v.shape for k, v in sharded.items()}
    worst = max((ddp[k] - sharded[k]).abs().max().item() for k in ddp if k != "qa_outputs.bias")
    assert worst < 1e-4, worst

    from gpt2qa.data import load_squad
    from gpt2qa.pipeline import QAPipeline

    preds = QAPipeline.from_pretrained(fsdp / "model", device="cpu").predict(
        load_squad(data).examples, null_score_diff_threshold=0.0)
    assert {p.qas_id: p.text for p in preds} == json.loads((fsdp / "predictions.json").read_text())

    import shutil

    again = tmp / "fsdp-again"
    shutil.copytree(fsdp, again)
    shutil.rmtree(again / "checkpoints" / "step-0000018")
    resumed = gpt2qa(*base, "--output-dir", str(again), "--fsdp", "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    b = weights(again / "checkpoints" / "step-0000018")
    assert all(torch.equal(sharded[k], b[k]) for k in sharded)


def test_fsdp_without_processes_is_refused(tmp_path, tiny_tokenizer):
    from helpers import save_init_dir

    init = save_init_dir(tiny_tokenizer, tmp_path / "init")
    data = write_tiny_squad(tmp_path / "d.json")
    with pytest.raises(GPT2QAError, match="--fsdp needs several processes"):
        train(TrainConfig.of(model=str(init), train_file=str(data), output_dir=str(tmp_path / "o"),
                          max_steps=1, batch_size=2, max_seq_length=64, doc_stride=16,
                          max_query_length=16, fsdp=True, progress=False))
    assert not (tmp_path / "o").exists()


def test_a_command_leaves_no_process_group_behind(tmp_path):
    """`cli.main` tears down the group a launched command joined (after a barrier when it
    finished), so interpreter exit never meets gloo's threads: they aborted processes with
    exit 134 after their work was written."""
    import torch.distributed as dist

    from gpt2qa.cli import close_process_group

    for finished in (True, False):
        store = dist.FileStore(str(tmp_path / f"store-{finished}"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
        assert dist.is_initialized()
        close_process_group(finished)
        assert not dist.is_initialized()
    close_process_group(True)  # no group: nothing to do


@pytest.mark.parametrize("launched", [False, True])
def test_a_launched_process_ends_without_interpreter_finalization(tmp_path, launched):
    """`python -m gpt2qa` under a launcher (LOCAL_RANK set) leaves by `os._exit` once the
    command is done, so interpreter finalization (where gloo's leftover work aborted finished
    processes) never runs: an atexit hook stays silent. The exit status and what the command
    printed to a pipe still arrive; without a launcher the exit is the usual one."""
    data = write_tiny_squad(tmp_path / "d.json")
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"q1": "1889"}), encoding="utf-8")
    script = ("import atexit, runpy, sys; atexit.register(print, 'finalized'); "
              "sys.argv = ['gpt2qa'] + sys.argv[1:]; runpy.run_module('gpt2qa', "
              "run_name='__main__')")
    env = {k: v for k, v in ENV.items() if k not in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")}
    if launched:
        env["LOCAL_RANK"] = "0"
    for args, code in (([str(data), str(preds)], 0), ([str(data), str(tmp_path / "no")], 2)):
        proc = subprocess.run([sys.executable, "-c", script, "evaluate", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == code, proc.stderr
        assert ("finalized" in proc.stdout) is not launched
        if code == 0:
            assert json.loads(proc.stdout.replace("finalized", ""))["total"] == 3
        else:
            assert proc.stderr.startswith("gpt2qa evaluate: error: ")
