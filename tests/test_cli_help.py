"""`--help` that is true for every command and task: each flag explains itself, no default reads
"None", no code markup, the demo shows each task's defaults (from the settings classes), and it
refuses the training flags that mean nothing for it. Also the demo's --threads and its
progress bar."""

from __future__ import annotations

import argparse
import io
import re

import pytest
import torch

from gpt2qa.cli import build_parser, main
from gpt2qa.cli.flags import demo_defaults
from gpt2qa.demo_config import DEMO_REFUSED, DemoConfig, HotpotDemoConfig
from gpt2qa.errors import GPT2QAError
from helpers import one_line_error, run


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def shown_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def flag_help(parser: argparse.ArgumentParser, flag: str) -> str:
    return next(a.help or "" for a in parser._actions if flag in a.option_strings)


WALKED = ["(top level)", *commands()]


@pytest.mark.parametrize("command", WALKED)
def test_every_flag_has_help_and_no_default_reads_none(command: str) -> None:
    parser = build_parser() if command == "(top level)" else commands()[command]
    for action in shown_actions(parser):
        own = re.sub(r"\s*\((default|required)\b[^()]*(\([^()]*\)[^()]*)*\)\s*$", "",
                     action.help or "")
        assert own.strip(), f"{command} {action.option_strings or action.dest}: no help text"
    text = " ".join(parser.format_help().split())
    assert "None" not in text, command
    assert "(default: )" not in text, command
    assert "``" not in text and "`" not in text, command  # rst/markdown code markup


def test_the_walk_sees_every_command_and_the_demo_help_is_the_same_for_each_task(capsys) -> None:
    assert {"demo", "train", "predict", "evaluate", "check-spans", "launch", "zero-shot",
            "study", "report", "serve"} <= set(WALKED)
    helps = []
    for argv in (["demo", "--help"], ["demo", "--task", "hotpotqa", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1]  # both tasks' defaults, whichever --task came first


def test_demo_help_shows_both_tasks_defaults_from_the_settings_classes() -> None:
    demo = commands()["demo"]
    squad, hotpot = demo_defaults(DemoConfig), demo_defaults(HotpotDemoConfig)
    flags = {a.dest: a for a in shown_actions(demo)}  # --steps sets max_steps
    differ = {n for n in squad.keys() & hotpot.keys() & flags.keys() if squad[n] != hotpot[n]}
    # The ones a newcomer trips on; the rest follow from the classes.
    assert {"lr", "batch_size", "max_seq_length", "doc_stride", "n_train", "n_dev",
            "max_steps", "out_dir"} <= differ
    assert squad["lr"] == DemoConfig.defaults["lr"]
    assert hotpot["lr"] == HotpotDemoConfig.defaults["lr"]
    for name in differ:
        text = flags[name].help or ""
        assert f"(default: {squad[name]}; {hotpot[name]} with --task hotpotqa)" in text, name
    assert "(default: 0.0015; 0.002 with --task hotpotqa)" in flag_help(demo, "--lr")
    assert "(default: 32)" in flag_help(demo, "--max-query-length")  # the same for both
    assert "Only for --task hotpotqa" in flag_help(demo, "--n-test")
    assert "Only for --task squad" in flag_help(demo, "--level")


def test_demo_help_lists_choices_and_says_steps_win() -> None:
    text = " ".join(commands()["demo"].format_help().split())
    assert "--level {easy,standard}" in text and "--eval-split {dev,hard}" in text
    assert "--steps STEPS Optimizer steps: the demo always runs this many" in text
    train = " ".join(commands()["train"].format_help().split())
    assert "a positive max_steps wins" in train and "(default: not set)" in train


@pytest.mark.parametrize("argv", [["--fsdp"], ["--no-fsdp"], ["--lora-r", "8"], ["--lora-r=8"],
                                  ["--tensorboard"], ["--dist-timeout", "60"], ["--epochs", "2"],
                                  ["--merge-lora"], ["--misaligned", "skip"],
                                  ["--report-to", "wandb"], ["--report-to=tensorboard"]])
def test_demo_refuses_training_flags_that_mean_nothing_for_it(capsys, tmp_path, argv) -> None:
    out = tmp_path / "demo"
    code, _, err = run(capsys, "demo", "--out-dir", str(out), *argv)
    line = one_line_error(code, err)
    assert line.startswith(f"gpt2qa demo: error: {argv[0].split('=')[0]}: ")
    assert not out.exists()  # refused before anything ran
    demo = commands()["demo"]  # hidden from --help
    assert argv[0].split("=")[0] not in {o for a in shown_actions(demo) for o in a.option_strings}


def test_demo_refuses_them_from_python_too() -> None:
    for name in DEMO_REFUSED:
        with pytest.raises(GPT2QAError, match=f"not a demo setting: {name} "):
            DemoConfig(training={name: 1})


@pytest.mark.parametrize(("argv", "needle"), [
    (["--n-test", "5"], "--n-test: only for --task hotpotqa"),
    (["--n-companies", "4"], "--n-companies: only for --task hotpotqa"),
    (["--task", "hotpotqa", "--n-test", "0"], "--n-test must be at least 1"),
    (["--task", "hotpot", "--level", "standard"], "--level: only for the SQuAD demo"),
    (["--task", "hotpotqa", "--eval-split", "hard"], "--eval-split: only for the SQuAD demo"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--task", "hotpotqa", "--threads", "-2"], "--threads must be at least 1"),
])
def test_demo_flags_for_one_task_or_out_of_range_are_one_line(capsys, tmp_path, argv,
                                                              needle) -> None:
    code, _, err = run(capsys, "demo", "--out-dir", str(tmp_path / "d"), *argv)
    assert needle in one_line_error(code, err)


def test_demo_level_is_a_choice(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--level", "impossible"])
    assert info.value.code == 2
    assert "invalid choice: 'impossible' (choose from" in capsys.readouterr().err


def test_predict_usage_shows_question_replaces_data() -> None:
    predict = commands()["predict"]
    assert "[--data FILE | --question TEXT]" in predict.format_usage()
    assert "instead of --data" in flag_help(predict, "--question")
    assert "--question" in flag_help(predict, "--context")
    with pytest.raises(SystemExit):
        predict.parse_args(["--model", "m", "--data", "d.json", "--question", "q"])


def test_top_level_help_names_both_tasks_and_no_measured_time() -> None:
    # A time depends on the machine: it lives in the README beside the command that measures it.
    text = " ".join(build_parser().format_help().split())
    assert "SQuAD 2.0" in text and "HotpotQA" in text
    assert "a few minutes on a CPU" in text and not re.search(r"\d+ minutes", text)


def test_demo_threads_apply_to_the_run_and_are_set_back(capsys, tmp_path, monkeypatch) -> None:
    import gpt2qa.demo

    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    seen = []

    def stop(config, synthetic=False):  # the training stage: note the threads, then stop there
        seen.append((torch.get_num_threads(), synthetic))
        raise GPT2QAError("stopped by the test")

    monkeypatch.setattr(gpt2qa.demo, "fine_tune", stop)
    code, _, err = run(capsys, "demo", "--out-dir", str(tmp_path / "d"), "--threads", str(wanted),
                       "--n-train", "4", "--n-dev", "2", "--vocab-size", "300",
                       "--n-embd", "32", "--n-head", "2", "--no-progress")
    assert "stopped by the test" in one_line_error(code, err)
    # ... and the demo tells training its data is synthetic (the model card says so).
    assert seen == [(wanted, True)] and torch.get_num_threads() == before


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_training_bar_shows_the_time_left_on_a_terminal_only() -> None:
    from gpt2qa.train import progress_bar

    shown = Terminal()
    bar = progress_bar(4, 1, True, shown)
    bar.update(3)
    bar.close()
    last = shown.getvalue().strip().split("\r")[-1]
    assert re.search(r"4/4 steps \[\d\d:\d\d elapsed, \d\d:\d\d left", last), last
    for stream, show in ((io.StringIO(), True), (Terminal(), False)):  # a pipe; --no-progress
        bar = progress_bar(4, 0, show, stream)
        bar.update(4)
        bar.close()
        assert stream.getvalue() == ""
