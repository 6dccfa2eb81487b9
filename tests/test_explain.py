"""Explanations: word attributions (IG, gradient x input), the HTML/JSON output, the CLI, AOPC faithfulness."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from assets import LABELS, TEXTS, build_classifier_dir

from domainfit.cli import main
from domainfit.evaluation.explain_report import render_html, write_explanations
from domainfit.evaluation.faithfulness import aopc, random_attributions, top_words

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return build_classifier_dir(tmp_path_factory.mktemp("explain") / "model")


@pytest.fixture(scope="module")
def ig_results(classifier_dir):
    from domainfit.serving.explain import explain

    return explain(classifier_dir, TEXTS[:3], method="ig", n_steps=64)


def test_one_score_per_word_from_the_tokenizer_word_ids(ig_results, classifier_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    for result in ig_results:
        enc = tokenizer(result["text"], truncation=True, max_length=128)
        expected = len({w for w in enc.word_ids() if w is not None})
        words = result["explanations"][0]["words"]
        assert len(words) == expected
        assert all(result["text"][w["start"] : w["end"]] == w["word"] for w in words)
    assert [w["word"] for w in ig_results[0]["explanations"][0]["words"]][:3] == ["Operating", "profit", "rose"]


def test_integrated_gradients_completeness(ig_results, classifier_dir):
    """The word scores add up to p(x) - p(baseline): the baseline is the text's tokens set to padding."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    for result in ig_results:
        explanation = result["explanations"][0]
        target = LABELS.index(explanation["label"])
        enc = tokenizer(result["text"], truncation=True, max_length=128, return_tensors="pt")
        ids = enc["input_ids"]
        special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True))
        baseline = torch.where(special.bool(), ids[0], torch.tensor(tokenizer.pad_token_id)).unsqueeze(0)
        with torch.no_grad():
            p_x = model(**enc).logits.softmax(-1)[0, target].item()
            p_b = model(input_ids=baseline, attention_mask=enc["attention_mask"]).logits.softmax(-1)[0, target].item()
        total = sum(w["score"] for w in explanation["words"])
        assert explanation["probability"] == pytest.approx(p_x, abs=1e-5)
        assert abs(p_x - p_b) > 1e-3  # the check below would pass trivially on a flat model
        assert total == pytest.approx(p_x - p_b, abs=0.02 * max(abs(p_x - p_b), 0.05))
        assert abs(explanation["convergence_delta"]) < 0.01


def test_gradient_x_input_scores_each_word(classifier_dir, ig_results):
    from domainfit.serving.explain import explain

    [result] = explain(classifier_dir, TEXTS[:1], method="grad-x-input")
    words = result["explanations"][0]["words"]
    ig_words = ig_results[0]["explanations"][0]["words"]
    assert [w["word"] for w in words] == [w["word"] for w in ig_words]
    assert result["explanations"][0]["convergence_delta"] is None
    assert any(abs(w["score"]) > 0 for w in words)
    assert [w["score"] for w in words] != [w["score"] for w in ig_words]


def test_chinese_text_is_cut_into_jieba_words(classifier_dir):
    from domainfit.data.words import WordSplitter
    from domainfit.serving.explain import explain

    text = "患者因心肌梗死入院"
    [result] = explain(classifier_dir, [text], method="grad-x-input")
    assert result["unit"] == "jieba words"
    words = [w["word"] for w in result["explanations"][0]["words"]]
    assert words == WordSplitter("zh").split(text)
    assert len(words) < len(text)  # words, not characters


def test_multi_label_explains_each_label_above_its_threshold(tmp_path, classifier_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from domainfit.evaluation.explain import TextExplainer

    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir)
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    explainer = TextExplainer(
        model, tokenizer, LABELS, max_length=128, multi_label=True, thresholds=[0.0, 0.0, 1.0]
    )  # the first two always chosen, the last never
    [result] = explainer.explain(TEXTS[:1], method="grad-x-input")
    assert [e["label"] for e in result["explanations"]] in (LABELS[:2], LABELS[1::-1])
    probs = explainer.probabilities(TEXTS[:1])[0]
    assert result["explanations"][0]["probability"] == pytest.approx(float(probs[:2].max()), abs=1e-5)
    assert not np.allclose(probs.sum(), 1.0)  # sigmoid per label, not a softmax


def test_html_is_written_whole_and_holds_every_word(tmp_path, ig_results):
    out = tmp_path / "explanations.html"
    write_explanations(out, ig_results)
    page = out.read_text(encoding="utf-8")
    assert page.count('class="block"') == len(ig_results)
    for result in ig_results:
        for w in result["explanations"][0]["words"]:
            assert f">{w['word']}</span>" in page
    assert "<script" not in page and "http" not in page  # self-contained, nothing fetched
    write_explanations(tmp_path / "e.json", ig_results)
    assert json.loads((tmp_path / "e.json").read_text(encoding="utf-8")) == ig_results


def test_html_escapes_the_text():
    result = {
        "text": "<b>x</b> & y",
        "method": "ig",
        "unit": "words",
        "truncated": False,
        "explanations": [
            {
                "label": "a<",
                "probability": 0.5,
                "convergence_delta": None,
                "words": [
                    {"word": "<b>x</b>", "start": 0, "end": 8, "score": -1.0},
                    {"word": "y", "start": 11, "end": 12, "score": 0.5},
                ],
            }
        ],
    }
    page = render_html([result])
    assert "<b>x" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "a&lt;" in page
    assert "rgba(220, 40, 40, 1.000)" in page and "rgba(0, 160, 60, 0.500)" in page


# ---------------------------------------------------------------------------------------------------------
# the CLI


def _texts_file(tmp_path: Path) -> Path:
    path = tmp_path / "texts.csv"
    path.write_text("text\n" + "\n".join(f'"{t}"' for t in TEXTS[:2]) + "\n", encoding="utf-8")
    return path


def test_cli_writes_html(tmp_path, classifier_dir, capsys):
    out = tmp_path / "out.html"
    assert (
        main(
            [
                "explain",
                str(classifier_dir),
                str(_texts_file(tmp_path)),
                "--method",
                "grad-x-input",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    page = out.read_text(encoding="utf-8")
    assert page.count('class="block"') == 2 and "Operating" in page


@pytest.mark.parametrize("case", ["method", "suffix", "input", "model", "task"])
def test_cli_bad_input_exits_2_with_one_message(tmp_path, classifier_dir, case):
    texts = _texts_file(tmp_path)
    args = [str(classifier_dir), str(texts), "--output", str(tmp_path / "out.html")]
    expected = {
        "method": "unknown explanation method 'gradxinput'",
        "suffix": "out.txt",
        "input": "input file does not exist",
        "model": "model folder does not exist",
        "task": "explanations cover",
    }[case]
    if case == "method":
        args += ["--method", "gradxinput"]
    elif case == "suffix":
        args[-1] = str(tmp_path / "out.txt")
    elif case == "input":
        args[1] = str(tmp_path / "missing.csv")
    elif case == "model":
        args[0] = str(tmp_path / "no-model")
    else:  # a task without an explainer (generation): refused by name, not with a traceback
        args[0] = str(build_classifier_dir(tmp_path / "gen", settings={"task": "generation"}))
    run = subprocess.run(
        [sys.executable, "-m", "domainfit", "explain", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in run.stderr
    assert not (tmp_path / "out.html").exists() and not (tmp_path / "out.txt").exists()


# ---------------------------------------------------------------------------------------------------------
# faithfulness: the metric code itself, on a model whose reasons are known


def _keyword_model(texts: list[str]) -> np.ndarray:
    """p(positive) rises with each 'good' and falls with each 'bad': a model whose reasons are known."""
    logits = np.array([t.split().count("good") - t.split().count("bad") for t in texts], dtype=np.float64)
    p = 1 / (1 + np.exp(-2 * logits))
    return np.stack([1 - p, p], axis=1)


def test_aopc_perfect_attribution_beats_random():
    rng = np.random.default_rng(0)
    filler = ["the", "a", "report", "said", "today", "market", "shares", "of"]
    words = []
    for _ in range(40):
        text = [str(rng.choice(filler)) for _ in range(int(rng.integers(6, 20)))]
        for _ in range(int(rng.integers(1, 4))):
            text.insert(int(rng.integers(0, len(text) + 1)), "good")
        words.append(text)
    perfect = [[1.0 if w == "good" else 0.0 for w in text] for text in words]
    targets = [1] * len(words)
    best = aopc(words, perfect, targets, _keyword_model)
    chance = aopc(words, random_attributions(words, seed=1), targets, _keyword_model)
    assert best["comprehensiveness"] > chance["comprehensiveness"] + 0.1
    assert best["sufficiency"] < chance["sufficiency"] - 0.1
    assert set(best["by_percent"]) == {1, 5, 10, 20, 50}
    # the top 1 % of a 10-word text is one word: removing the one 'good' of "good x9" drops p from sigmoid(2)
    one = aopc([["good"] + ["the"] * 9], [[1.0] + [0.0] * 9], [1], _keyword_model, percents=(1,))
    assert one["comprehensiveness"] == pytest.approx(1 / (1 + math.exp(-2)) - 0.5)
    assert one["sufficiency"] == pytest.approx(0.0)


def test_aopc_scores_each_bin_of_each_text():
    """Two texts, two bins: each (text, bin) is scored on its own perturbed text with its own target."""
    words = [["good", "good"] + ["the"] * 8, ["bad"] + ["the"] * 9]
    scores = [[1.0, 0.9] + [0.0] * 8, [1.0] + [0.0] * 9]
    result = aopc(words, scores, [1, 0], _keyword_model, percents=(10, 20))
    p = [_keyword_model([" ".join(w)])[0] for w in words]
    s1, s2 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-4))
    # text 1 (target positive): top 10 % removes one 'good', top 20 % both; text 2 (target negative):
    # removing 'bad' drops p(negative) from sigmoid(2) to 0.5 in both bins
    comp_10 = ((p[0][1] - s1) + (p[1][0] - 0.5)) / 2
    comp_20 = ((p[0][1] - 0.5) + (p[1][0] - 0.5)) / 2
    assert p[0][1] == pytest.approx(s2)
    assert result["by_percent"][10]["comprehensiveness"] == pytest.approx(comp_10)
    assert result["by_percent"][20]["comprehensiveness"] == pytest.approx(comp_20)
    # keeping only the top 10 % of text 1 keeps one 'good' (sigmoid(2)); 20 % keeps both (no drop)
    assert result["by_percent"][10]["sufficiency"] == pytest.approx(((s2 - s1) + 0.0) / 2)
    assert result["by_percent"][20]["sufficiency"] == pytest.approx(0.0)


def test_top_words_takes_at_least_one_and_rounds_up():
    assert top_words([0.1, 0.9, 0.5], 1) == {1}
    assert top_words([0.1, 0.9, 0.5], 50) == {1, 2}
    assert top_words([0.3] * 4, 50) == {0, 1}


def test_aopc_refuses_mismatched_scores():
    from domainfit.errors import DomainfitError

    with pytest.raises(DomainfitError, match="2 words but 1 scores"):
        aopc([["a", "b"]], [[1.0]], [0], _keyword_model)
