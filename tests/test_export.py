"""ONNX export: the graphs load, take any batch and length, match PyTorch, and the report says so."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from assets import TEXTS, build_classifier_dir

from domainfit.errors import DomainfitError, MissingExtraError, ModelError
from domainfit.export import BUILTIN_PARITY_TEXTS, export_onnx
from domainfit.serving import load
from domainfit.serving.predictor import read_text_side
from domainfit.serving.runners import OnnxRunner, TorchRunner, load_torch_model
from domainfit.serving.tokenizing import pad_inputs


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict]:
    model_dir = build_classifier_dir(tmp_path_factory.mktemp("tiny") / "model")
    report = export_onnx(model_dir)
    return model_dir, report


def _padded_batch(model_dir: Path, texts: list[str]) -> dict[str, np.ndarray]:
    tokenizer, _, _ = read_text_side(model_dir)
    ids, type_ids = tokenizer(texts)
    return pad_inputs(ids, type_ids, tokenizer.pad_id)


def test_export_writes_both_models_and_the_report(exported):
    model_dir, report = exported
    onnx_dir = model_dir / "onnx"
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["export.json", "model.int8.onnx", "model.onnx"]
    assert json.loads((onnx_dir / "export.json").read_text()) == report
    assert report["opset"] == 17 and report["domainfit_version"]
    assert report["parity"] == {"texts": len(BUILTIN_PARITY_TEXTS), "source": "built-in"}
    assert set(report["models"]) == {"onnx", "onnx-int8", "torch-bf16"}
    assert report["models"]["onnx-int8"]["size_mb"] < report["models"]["onnx"]["size_mb"]


def test_onnx_fp32_logits_match_torch_for_any_batch_and_length(exported):
    model_dir, report = exported
    torch_runner = TorchRunner(load_torch_model(model_dir))
    session = OnnxRunner(model_dir / "onnx" / "model.onnx", num_threads=1)
    assert session.input_names == ("input_ids", "attention_mask", "token_type_ids")
    # padded, single, repeated, truncated at 128 tokens
    for texts in (TEXTS, TEXTS[:1], TEXTS[2:3] * 5, ["x " * 200]):
        inputs = _padded_batch(model_dir, texts)
        np.testing.assert_allclose(session(inputs), torch_runner(inputs), atol=1e-4)
    assert report["models"]["onnx"]["label_agreement"] == 1.0
    assert report["models"]["onnx"]["max_abs_prob_diff"] < 1e-4


def test_bf16_parity_is_measured(exported):
    _, report = exported
    bf16 = report["models"]["torch-bf16"]
    assert bf16["file"] is None
    assert 0.0 < bf16["max_abs_prob_diff"] < 0.1  # bf16 rounds (> 0) but keeps 2-3 significant digits


def test_int8_parity_is_measured(exported):
    model_dir, report = exported
    int8 = report["models"]["onnx-int8"]
    assert 0.0 <= int8["label_agreement"] <= 1.0
    assert int8["disagreements"] == round((1 - int8["label_agreement"]) * len(BUILTIN_PARITY_TEXTS))
    assert 0.0 < int8["max_abs_prob_diff"] <= 1.0  # > 0: the int8 weights really are quantised


def test_int8_keeps_the_recipe_that_agrees_best(exported):
    _, report = exported
    quantization, int8 = report["quantization"], report["models"]["onnx-int8"]
    tried = quantization["tried"]
    # a later, less quantised recipe is tried only if the previous one missed the bar
    assert all(t["label_agreement"] < 0.995 for t in tried[:-1])
    assert int8["label_agreement"] == max(t["label_agreement"] for t in tried)
    assert quantization["recipe"] in [t["recipe"] for t in tried]


def test_int8_tries_each_recipe_until_one_agrees(tmp_path, monkeypatch):
    model_dir = build_classifier_dir(tmp_path / "model", layers=3)
    monkeypatch.setattr("domainfit.export.onnx.AUTO_MIN_AGREEMENT", 1.01)  # no recipe is good enough

    report = export_onnx(model_dir, parity_texts=TEXTS)

    quantization = report["quantization"]
    assert [t["recipe"] for t in quantization["tried"]] == ["all-int8", "ffn-output-fp32", "outer-layers-fp32"]
    best = max(quantization["tried"], key=lambda t: t["label_agreement"])  # first one wins a tie
    assert quantization["recipe"] == best["recipe"]
    assert report["models"]["onnx-int8"]["label_agreement"] == best["label_agreement"]


def test_outer_layers_are_found(tmp_path):
    from domainfit.export.onnx import _outer_layers

    model_dir = build_classifier_dir(tmp_path / "model", layers=3)
    export_onnx(model_dir, quantize=False, parity_texts=TEXTS[:2])

    names = _outer_layers(model_dir / "onnx" / "model.onnx")

    assert len(names) == 8  # per layer: the fused attention + attention output, FFN in, FFN out
    assert {"Attention_0", "Attention_2"} <= set(names) and "Attention_1" not in names
    assert not [name for name in names if "layer.1/" in name]


def test_outer_layers_need_three_layers(exported):
    from domainfit.export.onnx import _outer_layers

    model_dir, _ = exported
    assert _outer_layers(model_dir / "onnx" / "model.onnx") is None


def test_ffn_output_projections_are_found(exported):
    from domainfit.export.onnx import _down_projections

    model_dir, _ = exported
    names = _down_projections(model_dir / "onnx" / "model.onnx")
    assert sorted(names) == [f"/model/bert/encoder/layer.{i}/output/dense/MatMul" for i in range(2)]


def test_bert_attention_is_fused(exported):
    _, report = exported
    assert report["fusion"]["applied"] is True
    assert report["fusion"]["fused_ops"]["Attention"] == 2  # one per layer


def test_model_without_token_type_ids_exports_two_inputs(tmp_path):
    model_dir = build_classifier_dir(tmp_path / "model", arch="distilbert")

    report = export_onnx(model_dir, quantize=False, parity_texts=TEXTS)

    runner = OnnxRunner(model_dir / "onnx" / "model.onnx", num_threads=1)
    assert runner.input_names == ("input_ids", "attention_mask")
    assert report["models"]["onnx"]["label_agreement"] == 1.0
    assert report["models"]["onnx"]["max_abs_prob_diff"] < 1e-4


def test_without_quantize_auto_serves_fp32_onnx(tmp_path, monkeypatch):
    monkeypatch.setattr("domainfit.serving.backends.cpu_has_native_bf16", lambda: False)
    model_dir = build_classifier_dir(tmp_path / "model")

    report = export_onnx(model_dir, quantize=False, parity_texts=TEXTS)

    assert report["parity"] == {"texts": len(TEXTS), "source": "given"}
    assert list(report["models"]) == ["onnx", "torch-bf16"]
    assert not (model_dir / "onnx" / "model.int8.onnx").exists()
    assert load(model_dir).backend == "onnx"


def test_failed_export_leaves_no_report_and_no_half_files(tmp_path, monkeypatch):
    model_dir = build_classifier_dir(tmp_path / "model")
    export_onnx(model_dir, parity_texts=TEXTS[:2])

    def broken_quantize(fp32_path, work, parity_of):
        (work / "int8.onnx").write_bytes(b"half a model")
        raise RuntimeError("killed")

    monkeypatch.setattr("domainfit.export.onnx._quantize", broken_quantize)
    with pytest.raises(RuntimeError, match="killed"):
        export_onnx(model_dir, parity_texts=TEXTS[:2])

    # no report, no int8 file, no temp files
    assert sorted(p.name for p in (model_dir / "onnx").iterdir()) == ["model.onnx"]
    assert load(model_dir).backend == "torch"  # nothing vouches for the ONNX files


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch):
    model_dir = build_classifier_dir(tmp_path / "model")
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError

    with pytest.raises(MissingExtraError, match=r'pip install "domainfit\[export\]"'):
        export_onnx(model_dir)


def test_bad_arguments(tmp_path, exported):
    model_dir, _ = exported
    with pytest.raises(ModelError, match="does not exist"):
        export_onnx(tmp_path / "nope")
    with pytest.raises(DomainfitError, match="parity_texts is empty"):
        export_onnx(model_dir, parity_texts=[])
    with pytest.raises(DomainfitError, match="text 1 is empty"):
        export_onnx(model_dir, parity_texts=["fine", " "])
    with pytest.raises(DomainfitError, match="opset"):
        export_onnx(model_dir, opset=9)


def test_reexport_after_retraining_is_current_again(tmp_path):
    model_dir = build_classifier_dir(tmp_path / "model")
    export_onnx(model_dir, quantize=False, parity_texts=TEXTS)
    retrained = build_classifier_dir(tmp_path / "retrained", seed=1)
    shutil.copy(retrained / "model.safetensors", model_dir / "model.safetensors")
    with pytest.raises(ModelError, match="export"):
        load(model_dir, backend="onnx")

    export_onnx(model_dir, quantize=False, parity_texts=TEXTS)

    expected = load(model_dir, backend="torch").predict_proba(TEXTS)
    np.testing.assert_allclose(load(model_dir, backend="onnx").predict_proba(TEXTS), expected, atol=1e-5)


def test_export_removes_work_folders_of_killed_exports(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setattr("domainfit.serving.backends.cpu_has_native_bf16", lambda: False)
    model_dir = build_classifier_dir(tmp_path / "model")
    onnx_dir = model_dir / "onnx"
    onnx_dir.mkdir()
    proc = subprocess.Popen(["true"])
    proc.wait()
    killed = onnx_dir / f".export-{proc.pid}-abcd1234"  # kill -9 gave the TemporaryDirectory no chance
    legacy = onnx_dir / ".export-k2j4h5g6"  # the name used before work folders carried a process id
    running = onnx_dir / f".export-{os.getppid()}-efgh5678"  # another export, still at work
    for folder in (killed, legacy, running):
        folder.mkdir()
        (folder / "exported.onnx").write_bytes(b"half a model")

    export_onnx(model_dir, quantize=False, parity_texts=TEXTS[:2])

    assert not killed.exists() and not legacy.exists()
    assert running.exists()
    assert sorted(p.name for p in onnx_dir.iterdir()) == sorted([running.name, "export.json", "model.onnx"])
