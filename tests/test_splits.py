"""Tests for domainfit.data.splits: deduplication, stratified seeded splits, overlap between splits."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from domainfit.data.readers import read_examples
from domainfit.data.records import Example
from domainfit.data.splits import deduplicate, find_overlap, normalize_text, split_examples
from domainfit.errors import ConfigError, DataError

DATASETS = Path(os.environ.get("DOMAINFIT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
PHRASEBANK = DATASETS / "financial_phrasebank"
needs_datasets = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"shared datasets not found at {DATASETS}")


def make(counts: dict[str, int]) -> list[Example]:
    """Distinct texts with the given number of examples per label."""
    out = []
    for label, n in counts.items():
        out += [Example(f"{label} example {i}", label, len(out) + i + 1) for i in range(n)]
    return out


def texts(examples: list[Example]) -> list[str]:
    return [e.text for e in examples]


# ----------------------------------------------------------------------------------------------
# deduplicate
# ----------------------------------------------------------------------------------------------


def test_normalize_text_collapses_whitespace_and_keeps_case():
    assert normalize_text("  Profit \t rose\n  sharply ") == "Profit rose sharply"
    assert normalize_text("Profit") != normalize_text("profit")


def test_deduplicate_keeps_first_and_counts_conflicts():
    examples = [
        Example("Profit rose", "positive", 1),
        Example("Profit  rose", "positive", 2),  # same text, same label
        Example("Sales fell", "negative", 3),
        Example("Profit rose ", "neutral", 4),  # same text, other label
        Example("profit rose", "neutral", 5),  # differs in case: kept
    ]
    kept, report = deduplicate(examples, path="d.csv")
    assert [e.line for e in kept] == [1, 3, 5]
    assert kept[0].label == "positive"
    assert (report.n_in, report.n_out, report.n_duplicates, report.n_conflicting) == (5, 3, 2, 1)
    assert report.conflicts[0][1:] == (1, "positive", 4, "neutral")
    summary = report.summary()
    assert "d.csv" in summary and "removed 2 duplicate" in summary and "line 4" in summary


def test_deduplicate_without_duplicates():
    examples = make({"a": 3})
    kept, report = deduplicate(examples)
    assert kept == examples and report.n_duplicates == 0 and report.n_conflicting == 0


# ----------------------------------------------------------------------------------------------
# split_examples
# ----------------------------------------------------------------------------------------------


def test_split_sizes_and_stratification():
    examples = make({"a": 60, "b": 30, "c": 10})
    splits = split_examples(examples, val_fraction=0.1, test_fraction=0.1, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 80, "validation": 10, "test": 10}
    assert Counter(e.label for e in splits["test"]) == {"a": 6, "b": 3, "c": 1}
    assert sorted(texts(splits["train"] + splits["validation"] + splits["test"])) == sorted(texts(examples))


def test_split_removes_duplicates_first():
    examples = make({"a": 20, "b": 20})
    copies = [Example(e.text + " ", e.label, 100 + i) for i, e in enumerate(examples)]
    splits = split_examples(examples + copies, seed=1)
    assert sum(len(v) for v in splits.values()) == 40
    assert find_overlap(splits) == []


def test_zero_test_fraction_leaves_out_test():
    splits = split_examples(make({"a": 20, "b": 20}), val_fraction=0.25, test_fraction=0)
    assert set(splits) == {"train", "validation"} and len(splits["validation"]) == 10


def test_rare_class_names_class_count_and_fix():
    with pytest.raises(DataError) as info:
        split_examples(make({"common": 100, "rare": 4}), path="all.csv")
    error = info.value
    assert "'rare'" in error.what and "has 4 example" in error.what and "at least 10" in error.what
    assert error.path == "all.csv" and "data.stratify: false" in error.fix


def test_rare_class_is_fine_without_stratification():
    splits = split_examples(make({"common": 100, "rare": 4}), stratify=False)
    assert sum(len(v) for v in splits.values()) == 104


def test_too_few_examples_is_a_data_error():
    with pytest.raises(DataError, match="cannot split 2 examples"):
        split_examples(make({"a": 1, "b": 1}), stratify=False)


def test_unlabelled_examples_split_without_stratification():
    examples = [Example(f"t{i}", None, i) for i in range(50)]
    assert len(split_examples(examples)["test"]) == 5


def test_partly_unlabelled_examples_cannot_be_stratified():
    examples = make({"a": 20, "b": 20}) + [Example("no label", None, 99)]
    with pytest.raises(DataError) as info:
        split_examples(examples)
    assert info.value.line == 99 and "data.stratify: false" in info.value.fix


@pytest.mark.parametrize("val, test", [(0, 0.1), (0.5, 0.5), (0.1, -0.1), (1.2, 0)])
def test_bad_fractions(val, test):
    with pytest.raises(ConfigError):
        split_examples(make({"a": 20, "b": 20}), val_fraction=val, test_fraction=test)


# Copies of one text with labels neutral, positive, positive (lines 1, 3, 4) and two texts that agree.
DISAGREEING = [
    Example("Profit rose", "neutral", 1),
    Example("Sales fell", "negative", 2),
    Example("Profit  rose", "positive", 3),
    Example("Profit rose", "positive", 4),
    Example("Costs rose", "negative", 5),
]


@pytest.mark.parametrize(
    "policy, kept",
    [
        ("first", [(1, "neutral"), (2, "negative"), (5, "negative")]),
        ("majority", [(3, "positive"), (2, "negative"), (5, "negative")]),  # at the text's first place
        ("drop", [(2, "negative"), (5, "negative")]),
    ],
)
def test_conflicting_labels_policies(policy, kept):
    out, report = deduplicate(DISAGREEING, path="d.csv", conflicting_labels=policy)
    assert [(e.line, e.label) for e in out] == kept
    assert report.n_conflicting_texts == 1 and report.policy == policy
    assert report.n_duplicates == 5 - len(kept)
    assert f"conflicting_labels: {policy}" in report.summary() and "line 3" in report.summary()


def test_majority_tie_keeps_the_first_label():
    out, _ = deduplicate(DISAGREEING[:3], conflicting_labels="majority")  # neutral vs positive, 1 each
    assert [(e.line, e.label) for e in out] == [(1, "neutral"), (2, "negative")]


def test_conflicting_labels_error_names_both_lines():
    with pytest.raises(DataError) as info:
        deduplicate(DISAGREEING, path="d.csv", conflicting_labels="error")
    error = info.value
    assert error.line == 3 and "line 1" in error.what
    assert "'neutral'" in error.what and "'positive'" in error.what
    assert "data.conflicting_labels" in error.fix


def test_split_examples_applies_the_policy():
    examples = make({"a": 20, "b": 20}) + [Example("a example 0", "b", 99), Example("a example 0", "b", 100)]
    splits = split_examples(examples, seed=0, conflicting_labels="majority")
    labels = {e.text: e.label for part in splits.values() for e in part}
    assert labels["a example 0"] == "b"
    with pytest.raises(DataError):
        split_examples(examples, seed=0, conflicting_labels="error")


def test_make_splits_records_and_logs_conflicts(caplog):
    from types import SimpleNamespace

    from domainfit.data.splits import make_splits

    train = make({"a": 20, "b": 20}) + [Example("a example 0", "b", 99)]
    data = SimpleNamespace(
        train="t.csv",
        validation_fraction=0.1,
        test_fraction=0.1,
        split_seed=0,
        max_train_samples=None,
        conflicting_labels="drop",
    )
    info = {"files": {"train": "t.csv"}}
    with caplog.at_level("WARNING", logger="domainfit.data.splits"):
        splits = make_splits(train, {}, data, info, stratify=True)
    assert sum(map(len, splits.values())) == 39  # both copies of "a example 0" dropped
    assert info["dedup"] == {
        "rows_read": 41,
        "unique": 39,
        "duplicates_removed": 2,
        "conflicting_labels": 2,
        "conflicting_texts": 1,
        "conflicting_labels_policy": "drop",
    }
    assert "every copy of those texts was dropped" in caplog.text


# ----------------------------------------------------------------------------------------------
# find_overlap
# ----------------------------------------------------------------------------------------------


def test_find_overlap_reports_both_splits_and_lines():
    splits = {
        "train": [Example("Profit rose", "p", 2), Example("Sales fell", "n", 3), Example("Sales fell", "n", 4)],
        "validation": [Example("Profit  rose", "p", 5), Example("Other", "n", 6)],
        "test": [Example("Profit rose", "p", 7), Example("Other", "n", 8)],
    }
    overlaps = find_overlap(splits)
    assert [tuple(o) for o in overlaps] == [
        ("Profit rose", "train", 2, "validation", 5),
        ("Profit rose", "train", 2, "test", 7),
        ("Other", "validation", 6, "test", 8),
    ]
    described = overlaps[0].describe({"train": "train.csv", "validation": "val.csv"})
    assert described.startswith("'train.csv' line 2 and 'val.csv' line 5")


# ----------------------------------------------------------------------------------------------
# Financial PhraseBank 50Agree
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phrasebank() -> list[Example]:
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    return read_examples(
        PHRASEBANK / "FinancialPhraseBank-v1.0" / "Sentences_50Agree.txt",
        format="delimited",
        separator="@",
        encoding="latin-1",
    )


@needs_datasets
def test_phrasebank_duplicates(phrasebank):
    kept, report = deduplicate(phrasebank)
    assert (report.n_in, report.n_out, report.n_conflicting) == (4846, 4838, 2)


@needs_datasets
def test_phrasebank_split_is_disjoint_stratified_and_reproducible(phrasebank):
    splits = split_examples(phrasebank, seed=42)
    assert find_overlap(splits) == []
    assert {k: len(v) for k, v in splits.items()} == {"train": 3870, "validation": 484, "test": 484}

    kept, _ = deduplicate(phrasebank)
    overall = Counter(e.label for e in kept)
    for name, part in splits.items():
        counts = Counter(e.label for e in part)
        for label, n in overall.items():
            assert abs(counts[label] / len(part) - n / len(kept)) < 0.01, (name, label)

    assert split_examples(phrasebank, seed=42) == splits
    assert texts(split_examples(phrasebank, seed=7)["test"]) != texts(splits["test"])


@needs_datasets
def test_phrasebank_seed42_reproduces_the_shared_split_files(phrasebank):
    splits = split_examples(phrasebank, seed=42)
    for name, file in [("train", "train.csv"), ("validation", "val.csv"), ("test", "test.csv")]:
        expected = read_examples(PHRASEBANK / "split_seed42" / file)
        assert [(e.text, e.label) for e in splits[name]] == [(e.text, e.label) for e in expected], name


def test_skip_empty_is_counted_in_the_run_data_info(tmp_path):
    from domainfit.config import DataConfig
    from domainfit.tasks.text_classification import load_classification_splits

    rows = "".join(f"{label} example {i},{label}\n" for label in ("a", "b") for i in range(20))
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + rows + "  ,a\n", encoding="utf-8")
    test = tmp_path / "test.csv"
    test.write_text('text,label\n"",a\nb example 99,b\n', encoding="utf-8")
    data = DataConfig(train=str(train), test=str(test), skip_empty=True)
    info = load_classification_splits(data).info
    assert info["empty_texts_skipped"] == {"train": 1, "test": 1}
    with pytest.raises(DataError):
        load_classification_splits(DataConfig(train=str(train), test=str(test)))
