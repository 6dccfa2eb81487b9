"""Domain-shift diagnostics on a hand-made vocabulary where every figure is known exactly; Chinese measured per
character with jieba words; readings at their documented thresholds; MLM head present vs. missing; clean CLI."""

from __future__ import annotations

import json
import math

import pytest
from assets import build_tiny_bert

from domainfit.cli import main
from domainfit.data.words import letter_words
from domainfit.evaluation import diagnostics as dx

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "pre",
    "##train",
    "##ing",
    "dom",
    "##ain",
    "我",
    "的",
    ".",
]
TINY = {"vocab_size": len(VOCAB), "max_position_embeddings": 64}  # the tiny BERT's shape for this vocabulary


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={token: i for i, token in enumerate(VOCAB)}, do_lower_case=True)


def test_english_figures_on_a_known_vocabulary(tokenizer):
    m = dx.tokenizer_metrics(["The cat sat on the mat .", "pretraining domain zzz"], tokenizer)
    # words: the x2, cat, sat, on, mat | pretraining (pre ##train ##ing), domain (dom ##ain), zzz ([UNK])
    assert m["language"] == "space-separated"
    assert m["words"] == 9 and m["distinct_words"] == 8
    assert m["tokens"] == 13  # 7 (with the full stop) + 3 + 2 + 1
    assert m["unk_rate"] == pytest.approx(1 / 13)
    assert m["tokens_per_word"] == pytest.approx(12 / 9)
    assert m["share_words_split_3plus"] == pytest.approx(1 / 9)
    assert m["share_distinct_words_split_3plus"] == pytest.approx(1 / 8)
    assert m["share_words_with_unk"] == pytest.approx(1 / 9)
    assert m["vocab_overlap_top_words"] == pytest.approx(5 / 8)
    split = {w["word"]: w["pieces"] for w in m["frequent_split_words"]}
    assert split == {"pretraining": ["pre", "##train", "##ing"], "domain": ["dom", "##ain"], "zzz": ["[UNK]"]}
    assert [w["word"] for w in m["frequent_unknown_words"]] == ["zzz"]


def test_chinese_is_measured_per_character_with_jieba_words(tokenizer):
    pytest.importorskip("jieba")
    m = dx.tokenizer_metrics(["我的脂肪瘤"], tokenizer)
    # characters 我 的 脂 肪 瘤 -> one token each, the last three [UNK]; jieba words 我 / 的 / 脂肪瘤
    assert m["language"] == "chinese" and m["word_segmentation"] == "jieba"
    assert m["characters"] == 5 and m["tokens"] == 5
    assert m["tokens_per_character"] == pytest.approx(1.0)
    assert m["unk_rate"] == pytest.approx(3 / 5)
    assert m["words"] == 3 and m["tokens_per_word"] == pytest.approx(5 / 3)
    assert m["share_words_split_3plus"] == pytest.approx(1 / 3)
    assert letter_words("我的脂肪瘤 and BRCA1 2024", chinese=True) == ["我", "的", "脂肪瘤", "and", "BRCA1"]


def metrics(unk=0.0, split3=0.0, fertility=1.2, overlap=0.9, language="space-separated", mlm=None):
    tok = {
        "language": language,
        "unk_token": "[UNK]",
        "unk_rate": unk,
        "share_words_split_3plus": split3,
        "tokens_per_word": fertility,
        "vocab_overlap_top_words": overlap,
        "top_words": 1000,
        "frequent_unknown_words": [{"word": "zzz"}],
    }
    return {"tokenizer": tok, "mlm": mlm or {"available": False, "reason": "no head"}}


def joined(m):
    return " ".join(dx.readings(m))


def test_unk_reading_triggers_at_its_threshold():
    assert "does not cover Chinese text" in joined(metrics(unk=dx.UNK_RATE_HIGH, language="chinese"))
    assert "multilingual" in joined(metrics(unk=dx.UNK_RATE_HIGH))
    below = joined(metrics(unk=dx.UNK_RATE_HIGH - 1e-4))
    assert "multilingual" not in below and "some characters are unknown" in below
    assert "unknown" not in joined(metrics(unk=dx.UNK_RATE_SOME - 1e-4))


def test_split_readings_trigger_at_their_thresholds():
    assert "likely to help" in joined(metrics(split3=dx.SPLIT3_HIGH))
    assert "moderate" in joined(metrics(split3=dx.SPLIT3_HIGH - 1e-4))
    assert "moderate" in joined(metrics(split3=dx.SPLIT3_MODERATE))
    assert "vocabulary fits" in joined(metrics(split3=dx.SPLIT3_MODERATE - 1e-4))
    # with most tokens unknown, splits are not the problem: no advice to pretrain
    assert "will not help" in joined(metrics(unk=0.5, split3=0.3)) and "likely to help" not in joined(
        metrics(unk=0.5, split3=0.3)
    )


def test_fertility_and_overlap_readings_trigger_at_their_thresholds():
    assert "tokens per word" in joined(metrics(fertility=dx.FERTILITY_HIGH))
    assert "tokens per word" not in joined(metrics(fertility=dx.FERTILITY_HIGH - 0.01))
    assert "most frequent words" in joined(metrics(overlap=dx.OVERLAP_LOW - 0.01))
    assert "most frequent words" not in joined(metrics(overlap=dx.OVERLAP_LOW))


def test_pseudo_perplexity_with_an_mlm_head_and_none_without(tmp_path, tokenizer):
    import torch

    texts = ["the cat sat on the mat .", "pretraining domain"]
    with_head = build_tiny_bert(tmp_path / "mlm", head="mlm", tokenizer=tokenizer, **TINY)
    result = dx.mlm_metrics(str(with_head), tokenizer, texts)
    assert result["available"] and result["tokens_scored"] == 7 + 5
    # the same number by hand: mask one position at a time
    model, missing = dx.load_mlm(str(with_head))
    assert missing == []
    logps = []
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            for i in range(1, ids.shape[1] - 1):
                masked = ids.clone()
                masked[0, i] = tokenizer.mask_token_id
                logps.append(model(input_ids=masked).logits[0, i].log_softmax(-1)[ids[0, i]].item())
    assert result["pseudo_perplexity"] == pytest.approx(math.exp(-sum(logps) / len(logps)), rel=1e-4)

    base = build_tiny_bert(tmp_path / "base", head="encoder", tokenizer=tokenizer, **TINY)
    without = dx.mlm_metrics(str(base), tokenizer, texts)
    assert not without["available"] and any(k.startswith("cls.predictions") for k in without["missing_keys"])
    assert "no perplexity" in joined({**metrics(), "mlm": without})


def test_cli_writes_json_and_markdown(tmp_path, tokenizer, capsys):
    model = build_tiny_bert(tmp_path / "model", head="encoder", tokenizer=tokenizer, **TINY)
    corpus = tmp_path / "notes.txt"
    corpus.write_text("the cat sat on the mat .\npretraining domain zzz\n", encoding="utf-8")
    out = tmp_path / "inspect"
    assert main(["inspect", str(corpus), "--model", str(model), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[UNK] rate" in printed and "reading:" in printed
    report = json.loads((out / "inspect.json").read_text(encoding="utf-8"))
    assert report["sample"] == 2 and report["tokenizer"]["unk_rate"] == pytest.approx(1 / 13)
    assert report["mlm"]["available"] is False and report["readings"]
    md = (out / "inspect.md").read_text(encoding="utf-8")
    assert "## Reading" in md and report["readings"][0] in md
    assert sorted(p.name for p in out.iterdir()) == ["inspect.json", "inspect.md"]


def test_cli_errors_are_one_clean_message(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert "missing.txt" in err and "not found" in err and "Traceback" not in err
    assert main(["inspect"]) == 2
    assert "--config" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    assert main(["inspect", str(empty)]) == 2
    assert "no texts" in capsys.readouterr().err


def test_cli_reads_a_run_config_and_its_model(tmp_path, tokenizer, capsys):
    model = build_tiny_bert(tmp_path / "model", head="mlm", tokenizer=tokenizer, **TINY)
    rows = [("the cat sat on the mat .", "a"), ("pretraining domain zzz", "b")] * 10
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f'"{t} {i}",{l}\n' for i, (t, l) in enumerate(rows)), encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model:\n  name: {model}\ndata:\n  train: {train}\n  validation_fraction: 0.2\n  test_fraction: 0.2\n",
        encoding="utf-8",
    )
    out = tmp_path / "inspect"
    assert main(["inspect", "--config", str(config), "--mlm-sample", "2", "--output", str(out)]) == 0, (
        capsys.readouterr().err
    )
    report = json.loads((out / "inspect.json").read_text(encoding="utf-8"))
    assert report["model"] == str(model) and report["sample"] == 12  # the train split only: 20 rows - 4 - 4
    assert report["mlm"]["available"] and report["mlm"]["texts"] == 2 and report["mlm"]["pseudo_perplexity"] > 1
