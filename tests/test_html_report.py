"""report.html: self-contained (inline CSS, data-URI images, no URLs), written by training and evaluate,
readable in a real browser."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil

import pytest

from domainfit.cli import main
from domainfit.evaluation.html_report import HTML_SECTIONS, write_html_report
from domainfit.evaluation.report import write_report
from domainfit.metrics.classification import classification_metrics
from domainfit.metrics.errors import error_examples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["negative", "neutral", "<script>alert(1)</script>"]
HISTORY = [
    {"epoch": 1, "step": 10, "train_loss": 0.9, "validation": {"f1_macro": 0.50, "loss": 0.80}},
    {"epoch": 2, "step": 20, "train_loss": 0.6, "validation": {"f1_macro": 0.61, "loss": 0.70}},
]


def _images(page: str) -> list[bytes]:
    encoded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    return [base64.b64decode(data) for data in encoded]


def assert_self_contained(page: str) -> None:
    """No resource the browser would fetch: every src/href is a data URI or an anchor, and no URL at all."""
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert all(link.startswith(("data:", "#")) for link in links), links
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", page, re.IGNORECASE)
    assert "<script" not in page.lower()  # a label is text, never markup


def test_html_report_holds_scores_images_mistakes_and_placeholders(tmp_path):
    y_true, probs = (
        [0, 0, 1, 1, 2],
        [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.6, 0.3, 0.1]],
    )
    metrics = classification_metrics(y_true, [0, 1, 1, 1, 0], LABELS)
    texts = ["t0", "profit fell", "t2", "t3", "shares <b>rose</b>"]
    metrics["errors"] = error_examples(texts, y_true, probs, LABELS)
    warnings = [
        {
            "code": "never_predicted",
            "message": "'x' is never predicted",
            "advice": ["Raise train.epochs."],
            "classes": {"x": 1},
        }
    ]
    kwargs = {"title": "Sentiment", "history": HISTORY, "warnings": warnings, "context": {"model": "tiny"}}
    write_report(tmp_path, metrics, **kwargs)

    page = write_html_report(tmp_path, metrics, **kwargs).read_text(encoding="utf-8")

    assert_self_contained(page)
    assert "Accuracy <strong>0.6000</strong> on 5 examples" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#x27;x&#x27; is never predicted" in page and "Raise train.epochs." in page  # the banner
    images = _images(page)
    assert len(images) == 2 and all(png.startswith(PNG_MAGIC) and len(png) > 5_000 for png in images)
    assert images[0] == (tmp_path / "confusion_matrix.png").read_bytes()
    # mistakes, surest first: 0.7 'neutral' for a 'negative' text, then 0.6 'negative' for the third class
    assert page.index("profit fell") < page.index("shares &lt;b&gt;rose&lt;/b&gt;")
    assert "negative 0.60, neutral 0.30" in page
    for key in ("calibration", "stress", "groups"):
        section = re.search(rf"<section id='{key}'>.*?</section>", page, re.S).group()
        assert "Not measured" in section and HTML_SECTIONS.get(key).title in section


def test_optional_sections_are_filled_from_metrics_json_and_stress_json(tmp_path):
    metrics = classification_metrics([0, 1, 2], [0, 1, 2], LABELS)
    (tmp_path / "metrics.json").write_text(json.dumps({"calibration": {"ece": 0.0312, "bins": 10}}))
    stress = {
        "n": 3,
        "accuracy": 1.0,
        "skipped": {},
        "perturbations": {
            "typos": {
                "changed": 3,
                "flips": 1,
                "flip_rate": 1 / 3,
                "accuracy_before": 1.0,
                "accuracy_after": 0.6667,
                "accuracy_drop": 0.3333,
                "examples": [
                    {
                        "index": 0,
                        "label": "neutral",
                        "text": "Profit rose",
                        "perturbed": "Porfit rose",
                        "before": {"label": "neutral", "probability": 0.8},
                        "after": {"label": "negative", "probability": 0.55},
                    }
                ],
            }
        },
    }
    (tmp_path / "stress.json").write_text(json.dumps(stress))

    page = write_html_report(tmp_path, metrics, title="t").read_text(encoding="utf-8")

    calibration = re.search(r"<section id='calibration'>.*?</section>", page, re.S).group()
    assert "<td>ece</td><td>0.0312</td>" in calibration and "Not measured" not in calibration
    robustness = re.search(r"<section id='stress'>.*?</section>", page, re.S).group()
    assert "<td>typos</td><td>3</td><td>1</td><td>33.3%</td>" in robustness
    assert "Porfit rose" in robustness and "negative (0.55)" in robustness
    assert "Not measured" in re.search(r"<section id='groups'>.*?</section>", page, re.S).group()
    assert "No training history" in page
    assert "The model made no mistakes" not in page  # no errors key: no section


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_bert, phrasebank_split):
    from test_training import write_config

    from domainfit.tasks import load_run_config
    from domainfit.training import train

    tmp = tmp_path_factory.mktemp("html-run")
    cfg = load_run_config(
        write_config(tmp, tiny_bert, phrasebank_split, tmp / "out", epochs=1, eval_every=2, best_metric="loss"),
        ["data.max_train_samples=48"],
    )
    return tmp / "out", train(cfg)


def test_training_run_writes_a_self_contained_report_html(trained_run):
    out, results = trained_run
    page = (out / "report.html").read_text(encoding="utf-8")

    assert_self_contained(page)
    test = results["test"]
    assert f"Accuracy <strong>{test['accuracy']:.4f}</strong> on {test['n']} examples" in page
    images = _images(page)
    assert len(images) == 2 and images[0] == (out / "confusion_matrix.png").read_bytes()  # matrix + curves
    # the mistakes are real test texts, with the probabilities the model gave them
    errors = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["test"]["errors"]
    assert errors and errors == results["test"]["errors"]
    assert all(e["label"] != e["predicted"] for e in errors)
    assert [e["probability"] for e in errors] == sorted((e["probability"] for e in errors), reverse=True)
    assert errors[0]["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:40] in page


def test_evaluate_writes_report_html_with_its_mistakes(trained_run, phrasebank_split, tmp_path, capsys):
    out, results = trained_run
    ev = tmp_path / "ev"
    assert (
        main(
            [
                "evaluate",
                str(out / "model"),
                str(phrasebank_split / "test.csv"),
                "--output",
                str(ev),
                "--backend",
                "torch",
            ]
        )
        == 0
    )
    page = (ev / "report.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    metrics = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    with open(phrasebank_split / "test.csv", encoding="utf-8", newline="") as f:
        rows = {(row["text"], row["label"]) for row in csv.DictReader(f)}
    mistakes = metrics["n"] - sum(metrics["confusion_matrix"][i][i] for i in range(3))
    assert len(metrics["errors"]) == min(20, mistakes)
    for e in metrics["errors"]:  # real test rows the model got wrong, named with the probability it gave
        assert (e["text"], e["label"]) in rows and e["predicted"] != e["label"]
        assert e["probabilities"][e["predicted"]] == e["probability"] == max(e["probabilities"].values())
    assert "No training history" in page and len(_images(page)) == 1


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(
    _chromium() is None,
    reason="headless Chromium + chromedriver not installed (Debian: apt-get install chromium chromium-driver)",
)
def test_report_html_renders_in_headless_chromium(trained_run, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.common.by import By

    out, results = trained_run
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,2400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        driver.get((out / "report.html").as_uri())
        screenshot = tmp_path / "report-html.png"
        driver.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
        heading = driver.find_element(By.TAG_NAME, "h1").text
        # every image decoded: a broken data URI has naturalWidth 0
        widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
        accuracy = driver.find_element(By.CSS_SELECTOR, "#scores .big strong").text
    finally:
        driver.quit()
    assert heading.startswith("domainfit text-classification")
    assert len(widths) == 2 and all(w > 100 for w in widths)
    assert accuracy == f"{results['test']['accuracy']:.4f}"
    assert screenshot.read_bytes().startswith(PNG_MAGIC)
