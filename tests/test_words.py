"""The one word-splitting module: CJK detection, jieba words (loaded once, quietly, cached in a writable
folder, the same in every process), whitespace and letter-run English words; on real Chinese and English."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from conftest import DATASETS, PHRASEBANK_SPLIT

from domainfit.data import words
from domainfit.data.lexicon import Lexicon
from domainfit.data.masking import word_splitter
from domainfit.data.words import WordSplitter, cjk_share, has_cjk, is_chinese, jieba_segmenter, letter_words
from domainfit.errors import MissingExtraError

KUAKE_DEV = DATASETS / "cblue_kuake_qic" / "KUAKE-QIC_dev.json"


@pytest.fixture(scope="module")
def queries() -> list[str]:
    """Chinese medical search queries (KUAKE-QIC dev)."""
    if not KUAKE_DEV.is_file():
        pytest.skip(f"KUAKE-QIC not found under {DATASETS} (set DOMAINFIT_DATA)")
    return [row["query"] for row in json.loads(KUAKE_DEV.read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """English financial news sentences (Financial PhraseBank, test split)."""
    path = PHRASEBANK_SPLIT / "test.csv"
    if not path.is_file():
        pytest.skip(f"Financial PhraseBank split not found under {DATASETS} (set DOMAINFIT_DATA)")
    with open(path, encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def _query(queries: list[str], term: str) -> str:
    return next(q for q in queries if term in q)


@pytest.fixture
def fresh_jieba(monkeypatch):
    """jieba's default dictionary loaded again in this test (it is otherwise loaded once per process)."""
    words._default_segmenter.cache_clear()
    yield
    words._default_segmenter.cache_clear()


def test_cjk_detection_on_real_text(queries, sentences):
    assert all(has_cjk(q) for q in queries)
    assert not any(has_cjk(s) for s in sentences)
    assert cjk_share(queries) > 0.9 and cjk_share(sentences) == 0.0 and cjk_share(["", "  "]) == 0.0
    assert cjk_share(["ab 心梗"]) == pytest.approx(2 / 4)  # spaces are not characters here
    query, sentence = queries[0], sentences[0]
    assert is_chinese(query, "auto") and not is_chinese(query, "en")
    assert is_chinese(sentence, "zh") and not is_chinese(sentence, "auto")


def test_chinese_words_cover_the_text_and_english_words_are_whitespace_runs(queries, sentences):
    splitter = WordSplitter("auto")
    for query in queries:
        cut = splitter.split(query)
        assert splitter.join(cut, chinese=True) == query and all(cut)
    assert splitter.split(_query(queries, "多发乳腺结节")) == ["多发", "乳腺", "结节", "中药", "能", "治愈", "吗"]
    for sentence in sentences[:200]:
        assert splitter.split(sentence) == sentence.split()
        assert splitter.join(splitter.split(sentence), chinese=False) == " ".join(sentence.split())


def test_terms_stay_whole_words(queries):
    query = _query(queries, "复方锌布颗粒")  # "can a child of 15 months take compound zinc-ibuprofen granules?"
    assert "复方锌布颗粒" not in WordSplitter("zh").split(query)  # jieba alone: 复方 / 锌 / 布 / 颗粒
    assert "复方锌布颗粒" in WordSplitter("zh", ["复方锌布颗粒"]).split(query)
    query = _query(queries, "痔核脱出")
    assert "痔核" not in WordSplitter("zh").split(query)
    assert "痔核" in word_splitter("zh", Lexicon(["痔核"])).split(query)  # masking's forced frequency
    assert "痔核" not in WordSplitter("zh").split(query)  # the shared default dictionary was not changed


def test_terms_give_the_same_dictionary_in_any_order():
    # each added word changes the frequency jieba suggests for the next one (here 波立维 gets 3 or 2);
    # augmentation got its terms from a set, whose order changes with the process's hash seed
    terms = ["心肌梗死", "心梗", "氯吡格雷", "波立维"]
    forward, backward = jieba_segmenter(terms), jieba_segmenter(list(reversed(terms)))
    assert {t: forward.FREQ[t] for t in terms} == {t: backward.FREQ[t] for t in terms}
    assert forward.total == backward.total


def test_english_letter_words_leave_out_numbers_and_punctuation(sentences):
    sentence = next(s for s in sentences if "EUR" in s and "." in s)
    found = letter_words(sentence, chinese=False)
    assert found and all(any(c.isalpha() for c in w) for w in found)
    assert "." not in found and not any(w.replace(".", "").isdigit() for w in found)
    assert letter_words("Q3 profit of EUR 4.1 mn, up 12 % y-o-y; it's COVID-19", chinese=False) == [
        "Q3",
        "profit",
        "of",
        "EUR",
        "mn",
        "up",
        "y-o-y",
        "it's",
        "COVID-19",
    ]


def test_chinese_letter_words_are_jieba_words_with_latin_runs(queries):
    query = _query(queries, "紧急避孕药")  # "period on the 19th, took an emergency contraceptive on the 25th..."
    assert letter_words(query, chinese=True) == [
        "号",
        "来",
        "的",
        "月经",
        "号",
        "服用",
        "了",
        "紧急",
        "避孕药",
        "本月",
        "号",
        "怎么办",
    ]
    assert letter_words("HPV阳性 2024", chinese=True) == ["HPV", "阳性"]


def test_jieba_loads_once_quietly_with_its_cache_in_domainfits_cache_folder(fresh_jieba, monkeypatch, tmp_path, capfd):
    monkeypatch.setenv("DOMAINFIT_CACHE_DIR", str(tmp_path))
    segmenter = jieba_segmenter()
    assert jieba_segmenter() is segmenter and WordSplitter("zh").segmenter() is segmenter  # loaded once
    assert (tmp_path / "jieba" / "jieba.cache").is_file()  # not a shared /tmp file other users could replace
    import jieba

    assert segmenter is not jieba.dt  # the user's global jieba is left alone
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # no "Building prefix dict ..." lines


def test_an_unwritable_cache_folder_falls_back_without_a_traceback(fresh_jieba, monkeypatch, tmp_path, capfd):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("DOMAINFIT_CACHE_DIR", str(blocker / "cache"))  # its parent is a file
    assert WordSplitter("zh").split("多囊卵巢综合征的治疗") == ["多囊", "卵巢", "综合征", "的", "治疗"]
    assert "Traceback" not in capfd.readouterr().err


def test_without_jieba_chinese_splitting_says_what_to_install(fresh_jieba, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba now raises ImportError
    with pytest.raises(MissingExtraError, match=r"(?s)needs jieba.*pip install jieba"):
        word_splitter("zh").split("胃炎的症状是什么")  # whole-word masking used to raise a bare ImportError
    assert WordSplitter("auto").split("no Chinese here") == ["no", "Chinese", "here"]  # no jieba needed
    assert letter_words("我的脂肪瘤", chinese=True) == ["我", "的", "脂", "肪", "瘤"]  # inspect: characters
