"""Tests for domainfit.data.labels.LabelMap."""

from __future__ import annotations

import json

import pytest

from domainfit.data.labels import LabelMap, sort_labels
from domainfit.data.records import Example
from domainfit.errors import DataError


def examples(*labels: str | None) -> list[Example]:
    return [Example(f"text {i}", label, i + 2) for i, label in enumerate(labels)]


def test_integer_labels_are_in_numeric_order():
    label_map = LabelMap.from_examples(examples("10", "2", "1", "2", "-1"))
    assert label_map.labels == ["-1", "1", "2", "10"]
    assert label_map.id("2") == 2 and label_map.name(3) == "10"


def test_other_labels_are_alphabetical():
    label_map = LabelMap.from_examples(examples("positive", "negative", "neutral", "10", "2"))
    assert label_map.labels == ["10", "2", "negative", "neutral", "positive"]
    assert len(label_map) == 5


def test_sort_labels_is_stable_for_equal_integers():
    assert sort_labels(["1", "01", "0"]) == ["0", "01", "1"]


def test_to_dict_round_trips_through_json():
    label_map = LabelMap.from_examples(examples("b", "a", "c"))
    saved = label_map.to_dict()
    assert saved == {"id2label": {0: "a", 1: "b", 2: "c"}, "label2id": {"a": 0, "b": 1, "c": 2}}
    reloaded = json.loads(json.dumps(saved))  # keys become strings, as in a saved config.json
    assert LabelMap.from_id2label(reloaded["id2label"]) == label_map


def test_from_id2label_rejects_gaps():
    with pytest.raises(DataError, match="0..1"):
        LabelMap.from_id2label({0: "a", 2: "b"})


def test_check_names_file_line_and_unseen_label():
    label_map = LabelMap.from_examples(examples("negative", "positive"))
    label_map.check(examples("positive", None, "negative"), "val.csv")  # known labels and unlabelled pass
    with pytest.raises(DataError) as info:
        label_map.check(examples("positive", "Positive", "other"), "val.csv")
    error = info.value
    assert error.path == "val.csv" and error.line == 3
    assert "'Positive'" in error.what and "negative, positive" in error.what
    assert "did you mean 'positive'" in error.what and "'other'" in error.what
    assert error.fix


def test_check_says_record_for_json_arrays():
    label_map = LabelMap.from_examples(examples("a", "b"))
    with pytest.raises(DataError) as info:
        label_map.check([Example("t", "c", 7, unit="record")], "dev.json")
    assert info.value.line is None and "record 7" in str(info.value)


def test_unknown_label_id_lists_known_labels():
    with pytest.raises(DataError, match="known labels: a, b"):
        LabelMap.from_examples(examples("a", "b")).id("c")


def test_training_labels_must_be_present_and_varied():
    with pytest.raises(DataError) as info:
        LabelMap.from_examples(examples("a", None), path="train.csv")
    assert info.value.line == 3
    with pytest.raises(DataError, match="only 'a'"):
        LabelMap.from_examples(examples("a", "a"))
