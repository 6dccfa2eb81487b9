"""Explanations beyond text classification: per-entity word attributions for token classifiers and Grad-CAM
heat maps for image classifiers, through the library, the HTML/JSON output, the CLI and POST /explain.

Each model is a tiny one trained for a few seconds on a toy set whose reason is known: the NER model tags one
made-up drug name, the image model tells a bright square from plain noise. An explanation that attributes
to the wrong token or region (an offset by the [CLS] token, a transposed heat map) fails these tests.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from assets import TINY_BERT, build_classifier_dir, minilm_tokenizer

from domainfit.cli import main
from domainfit.evaluation.explain_report import render_html, write_explanations

pytest.importorskip("captum", reason="the explain extra is not installed")

REPO = Path(__file__).resolve().parents[1]
DRUG = "zorblaxin"  # split into several WordPiece tokens: the scores of its subwords must add up to one word
FILLER = "the patient was given daily after surgery and reported mild pain on day two with no fever".split()
TAGS = ["O", "B-Drug", "I-Drug"]
IMAGE_LABELS = ["plain", "spot"]
SIZE = 32


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "domainfit", "explain", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"},
    )


# ---------------------------------------------------------------------------------------------------------
# the toy models


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT tagger trained 40 steps to tag DRUG (wherever it is in filler text) as B-Drug."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    tokenizer = minilm_tokenizer()
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(64):
        words = [str(w) for w in rng.choice(FILLER, int(rng.integers(5, 12)))]
        position = int(rng.integers(0, len(words) + 1))
        words.insert(position, DRUG)
        enc = tokenizer(words, is_split_into_words=True)
        labels, previous = [], None
        for w in enc.word_ids():  # the first subword of each word is labelled, as domainfit trains
            labels.append(-100 if w is None or w == previous else int(w == position))
            previous = w
        rows.append((enc["input_ids"], labels))
    config = BertConfig(
        **TINY_BERT,
        vocab_size=tokenizer.vocab_size,
        num_labels=3,
        id2label=dict(enumerate(TAGS)),
        label2id={t: i for i, t in enumerate(TAGS)},
    )
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        batch = [rows[i] for i in rng.integers(0, len(rows), 16)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([x + [0] * (width - len(x)) for x, _ in batch])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
        loss = model(input_ids=ids, attention_mask=(ids != 0).long(), labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    out = tmp_path_factory.mktemp("ner") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "domainfit.json").write_text(json.dumps({"task": "token-classification", "max_length": 32, "stride": 8}))
    return out


def _spot_image(rng, quadrant: int | None):
    """Dark noise, with a bright 8x8 square inside ``quadrant`` (0 top-left .. 3 bottom-right) if given."""
    from PIL import Image

    pixels = rng.integers(0, 60, (SIZE, SIZE, 3)).astype(np.uint8)
    if quadrant is not None:
        half = SIZE // 2
        y = (quadrant // 2) * half + int(rng.integers(2, half - 9))
        x = (quadrant % 2) * half + int(rng.integers(2, half - 9))
        pixels[y : y + 8, x : x + 8] = 230
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """A tiny ResNet (last map 4x4) trained 60 steps to tell a bright square ("spot") from plain noise."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    rng = np.random.default_rng(0)
    images = [_spot_image(rng, int(rng.integers(0, 4)) if i % 2 else None) for i in range(128)]
    x = torch.tensor(np.stack([(np.asarray(im, np.float32) / 255 - 0.5) / 0.5 for im in images]).transpose(0, 3, 1, 2))
    y = torch.tensor([i % 2 for i in range(128)])
    config = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=2,
        id2label=dict(enumerate(IMAGE_LABELS)),
        label2id={n: i for i, n in enumerate(IMAGE_LABELS)},
    )
    torch.manual_seed(0)
    model = ResNetForImageClassification(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        batch = torch.randint(0, 128, (16,))
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x[batch]).logits, y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    out = tmp_path_factory.mktemp("image") / "model"
    model.save_pretrained(out)
    (out / "domainfit.json").write_text(
        json.dumps(
            {
                "task": "image-classification",
                "labels": IMAGE_LABELS,
                "image_size": SIZE,
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
            }
        )
    )
    return out


@pytest.fixture(scope="module")
def spot_files(tmp_path_factory) -> list[tuple[Path, int]]:
    """Eight spot images, two per quadrant, as PNG files: (path, quadrant)."""
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("spots")
    files = []
    for i in range(8):
        path = folder / f"spot{i}.png"
        _spot_image(rng, i % 4).save(path)
        files.append((path, i % 4))
    return files


# ---------------------------------------------------------------------------------------------------------
# token classification


NER_TEXTS = [f"the patient was given {DRUG} daily after surgery", DRUG, "no fever on day two"]


@pytest.fixture(scope="module")
def ner_results(ner_dir):
    from domainfit.serving.explain import explain

    return explain(ner_dir, NER_TEXTS, method="ig", n_steps=64)


def test_each_entity_is_explained_by_its_own_word_first(ner_dir, ner_results):
    import domainfit

    entities = domainfit.load(ner_dir, backend="torch").predict(NER_TEXTS)
    assert [len(e) for e in entities] == [1, 1, 0]  # the toy model learnt its one entity
    for result, spans in zip(ner_results, entities):
        assert len(result["explanations"]) == len(spans)
        for explanation, span in zip(result["explanations"], spans):
            assert explanation["entity"] == {"text": DRUG, "start": span["start"], "end": span["end"]}
            assert explanation["label"] == "Drug"
            # the attributed quantity is the score the predictor shows (one window: the same forward pass)
            assert explanation["probability"] == pytest.approx(span["score"], abs=1e-5)
            top = max(explanation["words"], key=lambda w: w["score"])
            assert (top["word"], top["start"]) == (DRUG, span["start"])
            assert all(result["text"][w["start"] : w["end"]] == w["word"] for w in explanation["words"])
    assert [w["word"] for w in ner_results[0]["explanations"][0]["words"]] == NER_TEXTS[0].split()


def test_entity_integrated_gradients_add_up_to_the_score_change(ner_dir, ner_results):
    """Completeness: the word scores add up to score(x) - score(baseline), the text's tokens set to padding."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(ner_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(ner_dir)
    explanation = ner_results[0]["explanations"][0]
    enc = tokenizer(NER_TEXTS[0], return_offsets_mapping=True, return_tensors="pt")
    first = [i for i, (s, _) in enumerate(enc["offset_mapping"][0].tolist()) if s == explanation["entity"]["start"]][0]
    ids = enc["input_ids"]
    baseline = ids.clone()
    baseline[0, 1:-1] = tokenizer.pad_token_id  # [CLS] and [SEP] kept
    with torch.no_grad():
        p_x = model(input_ids=ids).logits.softmax(-1)[0, first, TAGS.index("B-Drug")].item()
        p_b = model(input_ids=baseline).logits.softmax(-1)[0, first, TAGS.index("B-Drug")].item()
    assert p_x - p_b > 0.3  # the drug name matters: a check that would pass on a flat model is ruled out
    total = sum(w["score"] for w in explanation["words"])
    assert total == pytest.approx(p_x - p_b, abs=0.02)
    assert abs(explanation["convergence_delta"]) < 0.01


def test_long_text_is_explained_on_the_window_around_its_entity(ner_dir):
    from domainfit.evaluation.explain_entities import entity_window
    from domainfit.serving.explain import explain

    assert entity_window(3, 4, 10, 30) == (0, 10)  # a short text: all of it
    assert entity_window(50, 51, 100, 30) == (36, 66)  # centred
    assert entity_window(2, 2, 100, 30) == (0, 30) and entity_window(98, 99, 100, 30) == (70, 100)  # at the edges
    assert entity_window(10, 60, 100, 30) == (10, 40)  # longer than the window: its start kept
    text = " ".join(FILLER) + f" and then {DRUG} " + " ".join(FILLER)
    [result] = explain(ner_dir, [text], method="grad-x-input")
    assert result["truncated"] is True and result["method"] == "grad-x-input"
    [explanation] = result["explanations"]
    assert explanation["convergence_delta"] is None
    words = [w["word"] for w in explanation["words"]]
    assert DRUG in words and len(words) < len(text.split())  # only the window's words are scored
    assert words == text.split()[text.split().index(DRUG) - words.index(DRUG) :][: len(words)]


def test_entity_html_has_one_line_per_entity_with_the_entity_outlined(tmp_path, ner_results):
    out = tmp_path / "entities.html"
    write_explanations(out, ner_results)
    page = out.read_text(encoding="utf-8")
    assert page.count('class="block"') == 3  # one per entity, and the text without any
    assert len(re.findall(f'class="w entity"[^>]*>{DRUG}</span>', page)) == 2 == page.count('class="w entity"')
    assert f"&ldquo;{DRUG}&rdquo;" in page and "no entity found" in page


# ---------------------------------------------------------------------------------------------------------
# images: Grad-CAM


def _quadrant_means(heatmap: np.ndarray) -> list[float]:
    half = heatmap.shape[0] // 2
    return [float(heatmap[r * half : (r + 1) * half, c * half : (c + 1) * half].mean()) for r in (0, 1) for c in (0, 1)]


@pytest.fixture(scope="module")
def cam_results(image_dir, spot_files):
    from domainfit.serving.explain import explain

    return explain(image_dir, [path for path, _ in spot_files])


def test_grad_cam_is_brightest_in_the_quadrant_of_the_spot(cam_results, spot_files):
    for result, (path, quadrant) in zip(cam_results, spot_files):
        assert result["image"] == str(path) and result["method"] == "grad-cam"
        assert result["layer"].startswith("resnet.encoder.stages.1")  # the last convolution
        assert result["size"] == [SIZE, SIZE]
        [explanation] = result["explanations"]
        assert explanation["label"] == "spot" and explanation["probability"] > 0.5
        heatmap = np.asarray(explanation["heatmap"])
        assert heatmap.shape == (SIZE, SIZE) and heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
        means = _quadrant_means(heatmap)
        assert int(np.argmax(means)) == quadrant, (path.name, means)


def test_grad_cam_refuses_a_model_without_convolutions_and_other_methods():
    import torch

    from domainfit.errors import DomainfitError, ModelError
    from domainfit.evaluation.explain_images import GradCamExplainer, last_conv_layer

    with pytest.raises(ModelError, match="Grad-CAM needs a convolutional layer"):
        last_conv_layer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)))
    stack = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    assert last_conv_layer(stack)[0] == "2"
    explainer = GradCamExplainer(stack, ["a"], preprocessing=None, layer=("2", stack[2]))
    with pytest.raises(DomainfitError, match="unknown explanation method 'ig'"):
        explainer.explain([], method="ig")


def test_image_html_embeds_the_image_and_the_overlay(tmp_path, cam_results, spot_files):
    from PIL import Image

    out = tmp_path / "heatmaps.html"
    write_explanations(out, cam_results[:2], images=[path for path, _ in spot_files[:2]])
    page = out.read_text(encoding="utf-8")
    assert page.count('class="block"') == 2
    urls = page.split('src="data:image/png;base64,')[1:]
    assert len(urls) == 4  # the image and the heat map over it, per image
    overlay = Image.open(io.BytesIO(base64.b64decode(urls[1].split('"')[0])))
    plain = Image.open(io.BytesIO(base64.b64decode(urls[0].split('"')[0])))
    assert overlay.size == plain.size == (SIZE, SIZE)
    # the colour is laid on where the map is hot: the spot's quadrant changes most
    change = np.abs(np.asarray(overlay, np.float32) - np.asarray(plain, np.float32)).sum(-1)
    assert int(np.argmax(_quadrant_means(change))) == spot_files[0][1]
    assert "<script" not in page and "<link" not in page and 'src="http' not in page
    write_explanations(tmp_path / "heatmaps.json", cam_results[:1])
    assert json.loads((tmp_path / "heatmaps.json").read_text(encoding="utf-8")) == cam_results[:1]
    # without the images the page still says what was explained
    assert "spot" in render_html(cam_results[:1]) and "base64" not in render_html(cam_results[:1])


# ---------------------------------------------------------------------------------------------------------
# the CLI


def test_cli_explains_entities_and_images(tmp_path, ner_dir, image_dir, spot_files, capsys):
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in NER_TEXTS), encoding="utf-8")
    out = tmp_path / "entities.html"
    assert main(["explain", str(ner_dir), str(texts), "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count('class="w entity"') == 2
    assert main(["explain", str(ner_dir), str(texts)]) == 0
    assert f"Drug '{DRUG}'" in capsys.readouterr().out

    folder = spot_files[0][0].parent
    out = tmp_path / "heatmaps.html"
    assert main(["explain", str(image_dir), str(folder), "--output", str(out)]) == 0  # a folder of images
    assert out.read_text(encoding="utf-8").count('class="block"') == len(spot_files)
    capsys.readouterr()
    assert main(["explain", str(image_dir), str(spot_files[0][0])]) == 0  # one image, to the terminal
    assert "spot\t" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["method", "missing", "task"])
def test_cli_bad_image_or_task_input_exits_2_with_one_message(tmp_path, image_dir, spot_files, case):
    args = [str(image_dir), str(spot_files[0][0]), "--output", str(tmp_path / "out.html")]
    expected = {"method": "unknown explanation method 'ig'", "missing": "does not exist", "task": "explanations cover"}[
        case
    ]
    if case == "method":
        args += ["--method", "ig"]  # a text method on an image model: the image methods are listed
    elif case == "missing":
        args[1] = str(tmp_path / "nope.png")
    else:  # a task without an explainer: refused before the model is loaded
        args[0] = str(build_classifier_dir(tmp_path / "gen", settings={"task": "generation"}))
    run = _run(*args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in run.stderr
    if case == "method":
        assert "grad-cam" in run.stderr
    assert not (tmp_path / "out.html").exists()


# ---------------------------------------------------------------------------------------------------------
# POST /explain


def test_explain_endpoint_for_entities_and_images(ner_dir, image_dir, spot_files):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    import domainfit
    from domainfit.serving.server import ServerSettings, create_app

    with TestClient(create_app(domainfit.load(ner_dir), ServerSettings(), model_dir=ner_dir)) as client:
        ok = client.post("/explain", json={"texts": NER_TEXTS[:1]})
        empty = client.post("/explain", json={"texts": [" "]})
    assert ok.status_code == 200, ok.text
    [explanation] = ok.json()["explanations"][0]["explanations"]
    assert explanation["entity"]["text"] == DRUG and explanation["label"] == "Drug"
    assert max(explanation["words"], key=lambda w: w["score"])["word"] == DRUG
    assert empty.status_code == 422

    png = spot_files[0][0].read_bytes()
    with TestClient(create_app(domainfit.load(image_dir), ServerSettings(), model_dir=image_dir)) as client:
        uploaded = client.post("/explain", files=[("files", ("spot.png", png, "image/png"))])
        encoded = client.post("/explain", json={"images": [base64.b64encode(png).decode()]})
        broken = client.post("/explain", files=[("files", ("x.png", b"not an image", "image/png"))])
        texts = client.post("/explain", json={"texts": ["a text"]})
    assert uploaded.status_code == 200, uploaded.text
    [result] = uploaded.json()["explanations"]
    heatmap = np.asarray(result["explanations"][0]["heatmap"])
    assert heatmap.shape == (SIZE, SIZE) and int(np.argmax(_quadrant_means(heatmap))) == spot_files[0][1]
    assert encoded.json()["explanations"][0]["explanations"] == result["explanations"]
    assert broken.status_code == 422 and "not an image" in broken.json()["error"]
    assert texts.status_code == 422 and "images" in texts.json()["error"]
