"""HotpotQA loader: the official layout, format detection and one-line validation errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gpt2qa.errors import DataError
from gpt2qa.tasks import for_data
from gpt2qa.tasks.hotpotqa.data import (
    examples_to_hotpot_json,
    load_hotpot,
    parse_hotpot,
)


def test_loads_records_and_round_trips(tmp_path: Path, hotpot_list, write) -> None:
    ds = load_hotpot(write(tmp_path, hotpot_list()))
    b1, c1 = ds.examples
    assert b1.supporting_facts == (("Tavrik", 0), ("Quell Mebbit", 1))
    assert b1.paragraphs[1].sentences[1] == " He was born in Quellton."
    assert (b1.answer_type, c1.answer_type) == ("span", "no")
    assert b1.gold_titles() == {"Tavrik", "Quell Mebbit"}
    again = parse_hotpot(examples_to_hotpot_json(ds.examples), "x")
    assert again.examples == ds.examples


def test_detect_format(tmp_path: Path, squad_v2_file: Path, hotpot_list, write) -> None:
    """The registry's sniffing (`--task auto`) tells the two layouts apart."""
    assert for_data(write(tmp_path, hotpot_list())).name == "hotpotqa"
    assert for_data(squad_v2_file).name == "squad"
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf  \n[" + json.dumps(hotpot_list())[1:].encode())
    assert for_data(bom).name == "hotpotqa"
    with pytest.raises(DataError, match="neither a SQuAD file"):
        for_data(write(tmp_path, "just a string", "s.json"))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d[1].update(_id="b1"), r"\[1\]: id=b1: duplicate _id, first used at \[0\]"),
    (lambda d: d[0]["supporting_facts"].append(["Nowhere", 0]),
     r"\[0\]\.supporting_facts\[2\]: id=b1: supporting fact names title \"Nowhere\""),
    (lambda d: d[0]["supporting_facts"].append(["Zorbel", 3]),
     r"\[0\]\.supporting_facts\[2\]: id=b1: .*sentence 3 of \"Zorbel\", which has 1 sentences"),
    (lambda d: d[1].update(context=[]), r"\[1\]\.context: id=c1: context is empty"),
    (lambda d: d[1]["context"][0].__setitem__(1, []), r"id=c1: paragraph \"Tavrik\" has no"),
    (lambda d: d[0].update(answer=3), r"\[0\]\.answer: id=b1: expected a string, got an integer"),
    (lambda d: d[0]["supporting_facts"][0].__setitem__(1, "0"),
     r"supporting_facts\[0\]\[1\]: id=b1: expected an integer"),
    (lambda d: d[1].pop("question"), r"\[1\]: id=c1: missing field 'question'"),
])
def test_bad_input_names_file_index_and_id(tmp_path: Path, edit, message: str, hotpot_list, write) -> None:
    data = copy.deepcopy(hotpot_list())
    edit(data)
    path = write(tmp_path, data)
    with pytest.raises(DataError, match=message) as info:
        load_hotpot(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_bad_facts_skip_records_repairs(tmp_path: Path, hotpot_list, write) -> None:
    data = hotpot_list()
    data[0]["supporting_facts"].append(["Zorbel", 5])
    ds = load_hotpot(write(tmp_path, data), bad_facts="skip")
    assert ds.examples[0].supporting_facts == (("Tavrik", 0), ("Quell Mebbit", 1))
    assert len(ds.repairs) == 1 and "id=b1" in ds.repairs[0]


def test_test_file_without_gold(tmp_path: Path, hotpot_list, write) -> None:
    data = hotpot_list()
    for item in data:
        del item["answer"], item["supporting_facts"]
    with pytest.raises(DataError, match="missing field 'answer'"):
        load_hotpot(write(tmp_path, data))
    ds = load_hotpot(write(tmp_path, data), require_gold=False)
    assert [ex.answer for ex in ds.examples] == ["", ""]


def test_top_level_object_is_refused(tmp_path: Path, write) -> None:
    with pytest.raises(DataError, match="expected a HotpotQA list"):
        load_hotpot(write(tmp_path, {"data": []}))


@pytest.mark.realdata
def test_real_first53(shared_data) -> None:
    ds = load_hotpot(shared_data("hotpotqa", "hotpot-dev-distractor-first53.json"))
    assert len(ds.examples) == 53
    types = [ex.type for ex in ds.examples]
    assert (types.count("bridge"), types.count("comparison")) == (39, 14)
    assert sum(ex.answer_type != "span" for ex in ds.examples) == 9
    assert all(len(ex.gold_titles()) == 2 for ex in ds.examples)
    assert ds.examples[0].qas_id == "5a8b57f25542995d1e6f1371"
