"""Augmentation: each op does what it says, lexicon and jieba words respected, seeded, train batches only,
the masked-LM op changes only masked words, and a training run shows the samples it made."""

from __future__ import annotations

import collections
import csv
import random
from pathlib import Path

import pytest
from assets import build_tiny_bert

from domainfit.config import AugmentConfig
from domainfit.data.augment import (
    AUGMENTERS,
    OpContext,
    WordSplitter,
    content_positions,
    create_augmenter,
    create_splitter,
    read_lexicon,
)
from domainfit.errors import ConfigError, DataError, ModelError
from domainfit.tasks import load_run_config as load_config

LEXICON = """# domain synonyms: one group per line
心肌梗死 心梗 MI
氯吡格雷 波立维
profit earnings
rose increased climbed
"""
EN = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the same period"
ZH = "患者因心肌梗死入院，服用氯吡格雷后好转，心梗症状减轻"


@pytest.fixture
def lexicon_path(tmp_path) -> Path:
    path = tmp_path / "synonyms.txt"
    path.write_text(LEXICON, encoding="utf-8")
    return path


def augmenter(lexicon_path, ops, **kw):
    return create_augmenter(AugmentConfig(ops=ops, lexicon=str(lexicon_path), **{"rate": 1.0, **kw}), seed=0)


def op(name: str, lexicon_path: Path):
    lexicon = read_lexicon(lexicon_path)
    return AUGMENTERS.get(name)(OpContext(lexicon, None, 10, create_splitter("auto", lexicon)))


def test_lexicon_groups_are_symmetric_and_case_insensitive(lexicon_path):
    lexicon = read_lexicon(lexicon_path)
    assert set(lexicon.lookup("心梗")) == {"心肌梗死", "MI"}
    assert set(lexicon.lookup("mi")) == {"心肌梗死", "心梗"}
    assert lexicon.lookup("Profit") == ("earnings",)
    assert lexicon.lookup("loss") == ()


def test_a_one_word_lexicon_line_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("profit earnings\nlonely\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt, line 2: .*'lonely'"):
        read_lexicon(path)


def test_swap_keeps_the_words_and_moves_some(lexicon_path):
    words = EN.split()
    out = op("swap", lexicon_path).one(list(words), 2, random.Random(1))
    assert sorted(out) == sorted(words) and out != words
    assert sum(a != b for a, b in zip(out, words)) <= 4  # two swaps move at most four words


def test_delete_removes_exactly_n_words_and_never_all(lexicon_path):
    words = EN.split()
    out = op("delete", lexicon_path).one(list(words), 3, random.Random(1))
    assert len(out) == len(words) - 3
    assert not collections.Counter(out) - collections.Counter(words)  # only removals
    assert op("delete", lexicon_path).one(["alone"], 5, random.Random(1)) == ["alone"]


def test_insert_adds_n_lexicon_synonyms(lexicon_path):
    words = EN.split()
    out = op("insert", lexicon_path).one(list(words), 2, random.Random(1))
    assert len(out) == len(words) + 2
    added = collections.Counter(out) - collections.Counter(words)
    assert set(added) <= {"earnings", "increased", "climbed"}  # synonyms of profit / rose


def test_synonym_replacement_uses_the_lexicon_only(lexicon_path):
    lexicon = read_lexicon(lexicon_path)
    words = EN.split()
    out = op("synonym", lexicon_path).one(list(words), 5, random.Random(1))
    changed = [(a, b) for a, b in zip(words, out) if a != b]
    assert changed and len(out) == len(words)
    assert all(b in lexicon.lookup(a) for a, b in changed)  # only lexicon words, only to their synonyms
    assert {a for a, _ in changed} <= {"profit", "rose"}


def test_chinese_is_cut_into_jieba_words_with_lexicon_terms_whole(lexicon_path):
    splitter = create_splitter("auto", read_lexicon(lexicon_path))
    words = splitter.split(ZH)
    assert "氯吡格雷" in words  # plain jieba cuts it into 氯 / 吡 / 格雷; the lexicon keeps it whole
    assert "心肌梗死" in words and "".join(words) == ZH
    assert splitter.split("Sales rose 5 %") == ["Sales", "rose", "5", "%"]
    assert "，" not in [words[i] for i in content_positions(words)]  # punctuation is never picked


@pytest.mark.parametrize("name", ["swap", "delete", "insert", "synonym"])
def test_chinese_ops_never_split_a_jieba_word(name, lexicon_path):
    aug = augmenter(lexicon_path, [name], alpha=0.3)
    words = aug.splitter.split(ZH)
    synonyms = {s for w in words for s in aug.ops[name].lexicon.lookup(w)} if name in ("insert", "synonym") else set()
    for seed in range(5):
        out = aug.ops[name].one(list(words), 3, random.Random(seed))
        assert set(out) <= set(words) | synonyms  # whole words only: moved, dropped, added or replaced
    text = aug.augment([ZH], [0])[0]
    assert text is not None and " " not in text  # joined back without spaces


def test_augmentation_is_reproducible_and_fresh_each_epoch(lexicon_path):
    texts, keys = [EN, ZH, "Shares in the company fell sharply after the profit warning"], [0, 1, 2]
    a = augmenter(lexicon_path, ["swap", "delete", "insert", "synonym"], rate=0.7)
    b = augmenter(lexicon_path, ["swap", "delete", "insert", "synonym"], rate=0.7)
    epochs_a = [a.augment(texts, keys) for _ in range(4)]
    epochs_b = [b.augment(texts, keys) for _ in range(4)]
    assert epochs_a == epochs_b  # same seed, same draws
    assert len({tuple(e) for e in epochs_a}) > 1  # a new augmentation on each draw
    other = create_augmenter(
        AugmentConfig(ops=["swap", "delete", "insert", "synonym"], lexicon=str(lexicon_path), rate=0.7), seed=1
    )
    assert [other.augment(texts, keys) for _ in range(4)] != epochs_a


def test_rate_is_the_share_of_augmented_texts(lexicon_path):
    aug = augmenter(lexicon_path, ["swap"], rate=0.3)
    out = aug.augment([EN] * 2000, list(range(2000)))
    assert 0.25 < sum(t is not None for t in out) / 2000 < 0.35
    assert all(t is None for t in augmenter(lexicon_path, ["swap"], rate=0.0).augment([EN] * 50, list(range(50))))


def test_preview_shows_every_op_and_leaves_training_draws_alone(lexicon_path):
    ops = ["swap", "delete", "insert", "synonym"]
    a, b = augmenter(lexicon_path, ops, rate=0.5), augmenter(lexicon_path, ops, rate=0.5)
    samples = a.preview([EN, ZH, EN, ZH], 4)
    assert [s[0] for s in samples] == ops and all(new and new != old for _, old, new in samples)
    assert a.augment([EN, ZH], [0, 1]) == b.augment([EN, ZH], [0, 1])


def test_config_checks_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: x.csv\naugment:\n  ops: [swap, synonym]\n")
    with pytest.raises(ConfigError, match="augment.lexicon"):
        load_config(path)
    with pytest.raises(ConfigError, match="augment.ops.*Valid names: delete, insert, mlm, swap, synonym"):
        load_config(path, ["augment.ops=[swop]"])
    with pytest.raises(ConfigError, match="augment.mlm_model"):
        load_config(path, ["augment.ops=[mlm]"])
    assert load_config(path, ["augment.ops=[swap, delete]"]).augment.ops == ["swap", "delete"]


# ----------------------------------------------------------------------------------------------------------
# Task collate: training batches only


def test_the_task_augments_training_batches_only(tmp_path, tiny_bert, lexicon_path):
    from transformers import AutoTokenizer

    from domainfit.data.records import Example
    from domainfit.tasks import TaskData, create_task

    path = tmp_path / "c.yaml"
    path.write_text(
        f"data:\n  train: x.csv\nmodel:\n  name: {tiny_bert}\naugment:\n  ops: [swap, delete]\n"
        f"  rate: 1.0\n  lexicon: {lexicon_path}\n"
    )
    cfg = load_config(path)
    task = create_task("text-classification")
    task.augmenter = create_augmenter(cfg.augment, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    examples = [Example(EN, "positive", 2), Example("Shares fell sharply after the profit warning", "negative", 3)]
    features = task.encode(examples, tokenizer, cfg, TaskData(splits={}, labels=["negative", "positive"]))
    plain = tokenizer([e.text for e in examples], truncation=True, max_length=128)["input_ids"]
    assert [it["input_ids"] for it in features.items] == plain  # encoding itself is never augmented
    eval_batch = task.collate(features.items, tokenizer)
    again = task.collate(features.items, tokenizer, train=False)
    assert eval_batch["input_ids"].tolist() == again["input_ids"].tolist()
    for row, ids in zip(eval_batch["input_ids"].tolist(), plain):
        assert row[: len(ids)] == ids
    train_batch = task.collate(features.items, tokenizer, train=True)
    assert train_batch["input_ids"].tolist() != eval_batch["input_ids"].tolist()
    assert train_batch["labels"].tolist() == eval_batch["labels"].tolist()
    assert [it["input_ids"] for it in features.items] == plain  # the stored features are not modified


# ----------------------------------------------------------------------------------------------------------
# Masked-LM substitution


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> Path:
    # wide weights: varied predictions
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-mlm"), head="mlm", initializer_range=0.5)


def test_mlm_substitution_changes_only_masked_words(tiny_mlm):
    ctx = OpContext(None, str(tiny_mlm), 5, WordSplitter("en"))
    mlm = AUGMENTERS.get("mlm")(ctx)
    sentences = [EN.split(), "Shares in the company fell sharply after the warning".split()]
    n = [2, 3]
    out = mlm.apply([list(s) for s in sentences], n, [random.Random(0), random.Random(1)])
    for words, new, k in zip(sentences, out, n):
        assert len(new) == len(words)
        changed = [i for i, (a, b) in enumerate(zip(words, new)) if a != b]
        assert 1 <= len(changed) <= k  # only the masked words (a refill can equal the original only if skipped)
        assert all(new[i].strip() and not new[i].startswith("##") for i in changed)
    again = mlm.apply([list(s) for s in sentences], n, [random.Random(0), random.Random(1)])
    assert again == out  # seeded


def test_mlm_substitution_never_masks_numbers(tiny_mlm):
    ctx = OpContext(None, str(tiny_mlm), 5, WordSplitter("en"))
    mlm = AUGMENTERS.get("mlm")(ctx)
    words = "Net sales rose 13.1 % to EUR 58 mn , up from ３０ mn".split()
    numbers = [i for i, w in enumerate(words) if any(c.isdecimal() for c in w)]
    for seed in range(20):  # ask for every word: only the ones without a digit can change
        out = mlm.apply([list(words)], [len(words)], [random.Random(seed)])[0]
        assert [out[i] for i in numbers] == [words[i] for i in numbers]
        assert out != words


def test_mlm_refuses_a_model_without_an_mlm_head(tmp_path, tiny_bert):
    ctx = OpContext(None, str(tiny_bert), 5, WordSplitter("en"))  # a classifier: encoder only
    with pytest.raises(ModelError, match="no trained masked-LM head"):
        AUGMENTERS.get("mlm")(ctx)


# ----------------------------------------------------------------------------------------------------------
# A training run shows the remedy is on


def test_training_writes_augmentation_samples(tmp_path, tiny_bert, lexicon_path, tiny_mlm):
    from domainfit.training import train

    with open(tmp_path / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(40):
            label = ["negative", "neutral", "positive"][i % 3]
            writer.writerow([f"Operating profit rose to EUR {i}.1 mn from EUR 8.7 mn {label} {i}", label])
    path = tmp_path / "c.yaml"
    path.write_text(
        f"model:\n  name: {tiny_bert}\n  max_length: 32\ndata:\n  train: {tmp_path / 'train.csv'}\n"
        f"  validation_fraction: 0.2\n  test_fraction: 0.2\n"
        f"train:\n  epochs: 1\n  batch_size: 8\n  num_threads: 1\n  best_metric: loss\n"
        f"augment:\n  ops: [swap, delete, insert, synonym, mlm]\n  lexicon: {lexicon_path}\n"
        f"  mlm_model: {tiny_mlm}\n  samples: 5\noutput:\n  dir: {tmp_path / 'out'}\n"
    )
    train(load_config(path))
    text = (tmp_path / "out" / "augment_samples.txt").read_text(encoding="utf-8")
    assert [line.strip("[]") for line in text.splitlines() if line.startswith("[")] == [
        "swap",
        "delete",
        "insert",
        "synonym",
        "mlm",
    ]
    assert text.count("original:") == 5 and "(unchanged" not in text
