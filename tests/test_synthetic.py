"""The synthetic SQuAD 2.0 benchmark: determinism, exact spans, splits, twins, lengths."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from gpt2qa.errors import GPT2QAError
from gpt2qa.synthetic import (
    QUESTION_KINDS,
    SyntheticConfig,
    check_templates,
    corpus_texts,
    generate,
    question_kind,
    template_vocabulary,
    templates,
    write_benchmark,
)

SIZES = {"train": 300, "dev": 120, "hard": 60}


@pytest.fixture(scope="module")
def splits() -> dict[str, dict]:
    return {split: generate(SyntheticConfig(seed=7, n_passages=n, split=split))
            for split, n in SIZES.items()}


def _paragraphs(squad: dict) -> list[dict]:
    return [p for article in squad["data"] for p in article["paragraphs"]]


def _qas(squad: dict) -> list[tuple[dict, str]]:
    return [(qa, p["context"]) for p in _paragraphs(squad) for qa in p["qas"]]


def _name_words(squad: dict) -> set[str]:
    """Capitalised words that no template uses: the words of entity names."""
    vocab = template_vocabulary()
    words: set[str] = set()
    for text in corpus_texts(squad):
        words.update(w for w in re.findall(r"\b[A-Z][a-z]+\b", text) if w.lower() not in vocab)
    return words


def test_templates_are_consistent() -> None:
    check_templates()


def test_template_check_catches_a_prefix_that_differs_before_the_value(monkeypatch) -> None:
    bad = templates._two_way("In {y}, {p} was born in {c}.", "By {y}, {p} had left {c}.",
                             pivots=["p.birth_year=y"])
    monkeypatch.setattr(templates, "_TWO_WAY_TEMPLATES", (bad,))
    with pytest.raises(RuntimeError, match="differ before the end"):
        check_templates()


def test_same_seed_same_output_other_seed_or_split_differs() -> None:
    config = SyntheticConfig(seed=3, n_passages=40)
    first = json.dumps(generate(config), sort_keys=True)
    assert json.dumps(generate(SyntheticConfig(seed=3, n_passages=40)), sort_keys=True) == first
    assert json.dumps(generate(SyntheticConfig(seed=4, n_passages=40)), sort_keys=True) != first
    dev = generate(SyntheticConfig(seed=3, n_passages=40, split="dev"))
    assert json.dumps(dev, sort_keys=True) != first


@pytest.mark.parametrize("split", list(SIZES))
def test_layout_and_exact_spans(splits, split) -> None:
    squad = splits[split]
    assert squad["version"] == "v2.0"
    paragraphs = _paragraphs(squad)
    assert len(paragraphs) == SIZES[split]
    n_q = SyntheticConfig(split=split).preset.questions_per_passage
    assert all(len(p["qas"]) == n_q for p in paragraphs)
    for qa, context in _qas(squad):
        assert qa["question"].endswith("?")
        if qa["is_impossible"]:
            assert qa["answers"] == []
            spans = qa["plausible_answers"]
            assert len(spans) == 1
        else:
            assert "plausible_answers" not in qa
            spans = qa["answers"]
            assert len(spans) == 1
        for span in spans:
            start = span["answer_start"]
            assert span["text"]
            assert context[start:start + len(span["text"])] == span["text"], qa["id"]


@pytest.mark.parametrize(("pattern", "value"), [
    (r"^(When|In what year)\b", r"\d{4}"),
    (r"^How many\b|population", r"[\d,]+"),
    (r"^How long\b|length", r"[\d]+ kilometres"),
    (r"^How high\b|height", r"[\d,]+ metres"),
    (r"^What did .* work as\?|occupation", r"[a-z]+"),
    (r"^(Which river|Where does)", r"[A-Z][a-z]+ River|Mount [A-Z][a-z]+"),
])
def test_answers_and_distractors_have_the_asked_type(splits, pattern, value) -> None:
    seen = Counter()
    for qa, _context in _qas(splits["train"]) + _qas(splits["hard"]):
        if re.search(pattern, qa["question"]):
            (span,) = qa["plausible_answers"] if qa["is_impossible"] else qa["answers"]
            assert re.fullmatch(value, span["text"]), (qa["id"], qa["question"], span)
            seen[qa["is_impossible"]] += 1
    assert seen[True] > 0 and seen[False] > 0


@pytest.mark.parametrize("fraction", [0.0, 0.2, 1 / 3, 0.5, 1.0])
def test_unanswerable_fraction_follows_the_config(fraction) -> None:
    squad = generate(SyntheticConfig(seed=1, n_passages=160, unanswerable_fraction=fraction))
    flags = [qa["is_impossible"] for qa, _ in _qas(squad)]
    assert abs(sum(flags) / len(flags) - fraction) <= 0.02
    if fraction in (0.0, 1.0):
        assert all(flag == bool(fraction) for flag in flags)


def test_default_fraction_is_a_third_in_every_split(splits) -> None:
    for squad in splits.values():
        flags = [qa["is_impossible"] for qa, _ in _qas(squad)]
        assert abs(sum(flags) / len(flags) - 1 / 3) <= 0.02


def test_ids_unique_parseable_and_disjoint_between_splits(splits) -> None:
    ids = {split: [qa["id"] for qa, _ in _qas(squad)] for split, squad in splits.items()}
    for split, values in ids.items():
        assert len(values) == len(set(values))
        assert all(v.startswith(f"{split}-7-") for v in values)
        for qa, _ in _qas(splits[split]):
            kind = question_kind(qa["id"])
            assert kind in QUESTION_KINDS
            assert kind.startswith("unans") == qa["is_impossible"]
    assert not set(ids["train"]) & (set(ids["dev"]) | set(ids["hard"]))
    assert not set(ids["dev"]) & set(ids["hard"])


def test_entity_names_never_cross_splits(splits) -> None:
    words = {split: _name_words(squad) for split, squad in splits.items()}
    assert all(len(w) > 200 for w in words.values())
    assert not words["train"] & words["dev"]
    assert not words["train"] & words["hard"]
    assert not words["dev"] & words["hard"]
    # Even the same seed in two splits draws from disjoint name stocks.
    titles = {split: {a["title"] for a in squad["data"]} for split, squad in splits.items()}
    assert not titles["train"] & titles["dev"]


def test_every_unanswerable_has_an_in_context_distractor_and_a_named_entity(splits) -> None:
    for squad in splits.values():
        for qa, context in _qas(squad):
            if qa["is_impossible"]:
                (plausible,) = qa["plausible_answers"]
                assert plausible["text"] in context
                # The question names an entity (not a bare template), and the distractor is
                # not the asked-about entity itself.
                assert plausible["text"] not in qa["question"]


def test_hard_split_is_longer_and_leans_on_after_distractor_cases(splits) -> None:
    def mean_chars(squad: dict) -> float:
        return statistics.mean(len(p["context"]) for p in _paragraphs(squad))

    assert mean_chars(splits["hard"]) > 2.5 * mean_chars(splits["train"])

    def after_share(squad: dict) -> float:
        kinds = [question_kind(qa["id"]) for qa, _ in _qas(squad) if qa["is_impossible"]]
        return kinds.count("unans-after") / len(kinds)

    assert after_share(splits["train"]) == pytest.approx(0.4, abs=0.06)
    assert after_share(splits["hard"]) == pytest.approx(0.7, abs=0.06)


@pytest.mark.parametrize("split", list(SIZES))
def test_after_distractor_twins_share_the_prefix_through_the_distractor(splits, split) -> None:
    """In each twin article an unanswerable question's context, cut right after its
    distractor, equals the answerable twin's context cut after its answer; only later text
    tells them apart."""
    twins = [a["paragraphs"] for a in splits[split]["data"] if len(a["paragraphs"]) == 2]
    assert len(twins) >= 10
    for affirm, deny in twins:
        assert affirm["context"] != deny["context"]
        answerable = {qa["question"]: qa for qa in affirm["qas"] if not qa["is_impossible"]}
        matched = 0
        for qa in deny["qas"]:
            twin = answerable.get(qa["question"])
            if question_kind(qa["id"]) != "unans-after" or twin is None:
                continue
            assert question_kind(twin["id"]) == "ans-after"
            (distractor,) = qa["plausible_answers"]
            assert twin["answers"] == [distractor]
            end = distractor["answer_start"] + len(distractor["text"])
            assert affirm["context"][:end] == deny["context"][:end]
            matched += 1
        assert matched >= 1, (affirm["context"], deny["context"])


def test_question_alone_does_not_predict_answerability(splits) -> None:
    """Grouping by question wording (names masked) beats the global majority by < 3 points."""
    vocab = template_vocabulary()
    squad = generate(SyntheticConfig(seed=2, n_passages=500))
    groups: dict[str, Counter] = defaultdict(Counter)
    flags = []
    for qa, _ in _qas(squad):
        wording = re.sub(r"\b[A-Z][a-z]+\b",
                         lambda m: m.group() if m.group().lower() in vocab else "E",
                         qa["question"])
        groups[wording][qa["is_impossible"]] += 1
        flags.append(qa["is_impossible"])
    majority = max(sum(flags), len(flags) - sum(flags)) / len(flags)
    by_wording = sum(max(c.values()) for c in groups.values()) / len(flags)
    assert by_wording - majority < 0.03


def test_answering_needs_the_question(splits) -> None:
    """Most year answers sit in a passage with another year in it."""
    with_rival = total = 0
    for qa, context in _qas(splits["train"]):
        for span in qa["answers"] + qa.get("plausible_answers", []):
            if re.fullmatch(r"\d{4}", span["text"]):
                total += 1
                with_rival += len(set(re.findall(r"\b\d{4}\b", context))) >= 2
    assert total > 100 and with_rival / total > 0.75


def test_write_benchmark_writes_three_whole_files(tmp_path: Path) -> None:
    paths = write_benchmark(tmp_path / "bench", seed=5, n_train=12, n_dev=6, n_hard=3)
    assert set(paths) == {"train", "dev", "hard"}
    for split, path in paths.items():
        assert path == tmp_path / "bench" / f"{split}.json"
        n = {"train": 12, "dev": 6, "hard": 3}[split]
        on_disk = json.loads(path.read_text(encoding="utf-8"))
        assert on_disk == generate(SyntheticConfig(seed=5, n_passages=n, split=split))
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == [
        "dev.json", "hard.json", "train.json"]


def test_write_benchmark_refuses_a_file_as_directory(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("x")
    with pytest.raises(GPT2QAError, match="not a directory"):
        write_benchmark(target)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"split": "test"}, "split"),
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
    ({"n_passages": 0}, "n_passages"),
    ({"questions_per_passage": 0}, "questions_per_passage"),
    ({"questions_per_passage": 5}, "questions_per_passage"),
    ({"unanswerable_fraction": 1.5}, "unanswerable_fraction"),
    ({"after_distractor_share": -0.1}, "after_distractor_share"),
    ({"twin_fraction": "half"}, "twin_fraction"),
    ({"sentences_per_passage": (5, 3)}, "sentences_per_passage"),
    ({"sentences_per_passage": [4, 6]}, "sentences_per_passage"),
])
def test_config_rejects_bad_settings(kwargs, field) -> None:
    with pytest.raises(GPT2QAError, match=rf"SyntheticConfig\.{field}:") as info:
        SyntheticConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_config_overrides_the_split_preset() -> None:
    config = SyntheticConfig(split="hard", questions_per_passage=2, sentences_per_passage=(3, 3),
                             twin_fraction=0.0)
    squad = generate(replace(config, n_passages=10))
    assert all(len(p["qas"]) == 2 for p in _paragraphs(squad))
    assert all(len(a["paragraphs"]) == 1 for a in squad["data"])


def test_corpus_texts_lists_contexts_then_their_questions(splits) -> None:
    squad = splits["dev"]
    texts = corpus_texts(squad)
    expected = []
    for p in _paragraphs(squad):
        expected.append(p["context"])
        expected.extend(qa["question"] for qa in p["qas"])
    assert texts == expected
    with pytest.raises(GPT2QAError, match=r"data\[0\]\.paragraphs\[0\]\.context"):
        corpus_texts({"data": [{"paragraphs": [{"context": 3, "qas": []}]}]})


def test_question_kind_rejects_foreign_ids() -> None:
    assert question_kind("dev-0-00012-03-unans-after") == "unans-after"
    with pytest.raises(GPT2QAError, match="id=5733be284776f41900661182"):
        question_kind("5733be284776f41900661182")


def test_token_lengths_fit_the_demo_windows(splits) -> None:
    """With a 1,500-token BPE trained on the data, train/dev fit one 192-token window and
    every hard context needs more than one."""
    from gpt2qa.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(corpus_texts(splits["train"]), vocab_size=1500)

    def lengths(squad: dict) -> list[int]:
        out = []
        for p in _paragraphs(squad):
            n_ctx = len(tok(p["context"])["input_ids"])
            out.extend(n_ctx + len(tok(qa["question"])["input_ids"]) for qa in p["qas"])
        return out

    for split in ("train", "dev"):
        n = lengths(splits[split])
        assert statistics.mean(n) < 130 and max(n) < 192, split
    hard = [len(tok(p["context"])["input_ids"]) for p in _paragraphs(splits["hard"])]
    assert 250 <= statistics.mean(hard) <= 500
    assert min(hard) > 192
