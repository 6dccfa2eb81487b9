"""`domainfit serve`: the micro-batcher, every endpoint and limit over TestClient on tiny models, the real
command in a subprocess (SIGTERM shutdown), and the try-it page in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from assets import LABELS, TEXTS, build_classifier_dir

pytest.importorskip("fastapi", reason="the serve extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import domainfit  # noqa: E402
from domainfit.serving.batcher import MicroBatcher, QueueFullError  # noqa: E402
from domainfit.serving.server import ServerSettings, create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_classifier_dir(tmp_path_factory.mktemp("serve-model"))


@pytest.fixture(scope="module")
def predictor(model_dir):
    return domainfit.load(model_dir)


def wait_ready(client: TestClient) -> None:
    for _ in range(600):
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"not ready: {client.get('/ready').json()}")


@contextmanager
def serving(predictor, **settings):
    with TestClient(create_app(predictor, ServerSettings(**settings))) as client:
        wait_ready(client)
        yield client


def metric(client: TestClient, name: str, **labels) -> float:
    headers = {"X-API-Key": client.app_key} if hasattr(client, "app_key") else {}
    for family in text_string_to_metric_families(client.get("/metrics", headers=headers).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


class Gated:
    """A predictor that holds every call until ``release`` is set (to fill the queue, or delay warm-up)."""

    def __init__(self, predictor) -> None:
        self.inner, self.backend = predictor, predictor.backend
        self.started, self.release = threading.Event(), threading.Event()

    def predict(self, items):
        self.started.set()
        assert self.release.wait(30)
        return self.inner.predict(items)


# ----------------------------------------------------------------------------------------------------------
# The micro-batcher on its own


def test_batcher_runs_queued_requests_together_and_returns_each_its_slice():
    batches = []
    batcher = MicroBatcher(
        lambda items: (batches.append(list(items)), [x * 10 for x in items])[1], max_batch_size=4, max_wait_ms=0
    )
    futures = [batcher.submit(items) for items in ([1], [2, 3], [4], [5])]  # queued before the worker starts
    batcher.start()
    results = [f.result(5) for f in futures]
    batcher.close(5)
    assert batches == [[1, 2, 3, 4], [5]]  # at most 4 items; requests are never split
    assert [r.results for r in results] == [[10], [20, 30], [40], [50]]
    assert [r.batch_size for r in results] == [4, 4, 4, 1]


def test_batcher_gives_a_bad_request_its_error_and_the_others_their_results():
    def predict(items):
        if "bad" in items:
            raise ValueError("bad item")
        return [x.upper() for x in items]

    batcher = MicroBatcher(predict, max_batch_size=8, max_wait_ms=0)
    good, bad, other = batcher.submit(["a"]), batcher.submit(["bad"]), batcher.submit(["b", "c"])
    batcher.start()
    assert good.result(5).results == ["A"] and other.result(5).results == ["B", "C"]
    with pytest.raises(ValueError, match="bad item"):
        bad.result(5)
    batcher.close(5)


def test_batcher_refuses_beyond_max_queue_and_drains_on_close():
    batcher = MicroBatcher(lambda items: items, max_batch_size=1, max_wait_ms=0, max_queue=2)
    first, second = batcher.submit([1]), batcher.submit([2])
    with pytest.raises(QueueFullError):
        batcher.submit([3])
    batcher.start()
    batcher.close(5)  # what was queued still runs
    assert first.result(0).results == [1] and second.result(0).results == [2]


# ----------------------------------------------------------------------------------------------------------
# Endpoints


def test_predict_returns_the_predictors_results_in_order(predictor):
    texts = TEXTS[:5]
    with serving(predictor) as client:
        response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    assert body["task"] == "text-classification"
    expected = predictor.predict(texts)
    assert [p["label"] for p in body["predictions"]] == [e["label"] for e in expected]
    for got, want in zip(body["predictions"], expected):
        assert set(got["probabilities"]) == set(LABELS)
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_concurrent_requests_run_in_one_batch(predictor):
    texts = TEXTS[:4]
    # the batch runs as soon as it holds 4 texts; the long wait only matters if the threads were very slow
    with serving(predictor, max_batch_size=4, max_wait_ms=20_000) as client:
        responses = [None] * 4

        def post(i):
            responses[i] = client.post("/predict", json={"texts": [texts[i]]})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert metric(client, "domainfit_batch_size_count") == 1
        assert metric(client, "domainfit_batch_size_sum") == 4
    expected = predictor.predict(texts)
    for response, want in zip(responses, expected):  # each request got its own text's result back
        assert response.status_code == 200
        got = response.json()["predictions"]
        assert len(got) == 1 and got[0]["score"] == pytest.approx(want["score"], abs=1e-4)
        assert got[0]["label"] == want["label"]


BAD_REQUESTS = [
    (b'{"texts": ["a",', 400, "not valid JSON"),
    (b'["a"]', 422, "expected a JSON object"),
    (b'{"texts": "one text"}', 422, '"texts" must be a list'),
    (b'{"texts": ["ok", 3]}', 422, "texts[1] must be a string"),
    (b'{"texts": ["ok", "  "]}', 422, "texts[1] is empty"),
    (b'{"texts": []}', 422, '"texts" is empty'),
    (b'{"text": ["a"]}', 422, "unknown field(s) 'text'"),
    (b'{"texts": ["a", "b", "c"]}', 422, "holds 3 items; the limit is 2"),
    (b'{"texts": ["' + b"x" * 50 + b'"]}', 422, "texts[0] has 50 characters; the limit is 40"),
    (b'{"texts": ["' + b"x" * 300 + b'"]}', 413, "the limit is 200 bytes"),
]


@pytest.mark.parametrize("body,status,needle", BAD_REQUESTS)
def test_bad_requests_get_one_clear_4xx_json_error(predictor, body, status, needle):
    with serving(predictor, max_items=2, max_text_chars=40, max_body_bytes=200) as client:
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status
        assert needle in response.json()["error"]
        assert "Traceback" not in response.text
        assert metric(client, "domainfit_requests_total", endpoint="/predict", status=str(status)) == 1


def test_body_without_a_length_is_cut_off_at_the_limit(predictor):
    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b"x" * 100

    with serving(predictor, max_body_bytes=200) as client:
        response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit is 200 bytes" in response.json()["error"]


def test_wrong_content_type_is_415(predictor):
    with serving(predictor) as client:
        response = client.post("/predict", content=b"a text", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["fix"]


def test_full_queue_answers_429_with_retry_after(predictor):
    gated = Gated(predictor)
    gated.release.set()  # let warm-up through
    app = create_app(gated, ServerSettings(max_batch_size=1, max_wait_ms=0, max_queue=1))
    with TestClient(app) as client:
        wait_ready(client)
        gated.release.clear()
        gated.started.clear()
        results = {}
        running = threading.Thread(target=lambda: results.update(a=client.post("/predict", json={"texts": ["a"]})))
        running.start()
        assert gated.started.wait(30)  # the first request holds the worker
        queued = threading.Thread(target=lambda: results.update(b=client.post("/predict", json={"texts": ["b"]})))
        queued.start()
        for _ in range(600):
            if app.state.batcher.queue_depth == 1:
                break
            time.sleep(0.01)
        assert metric(client, "domainfit_queue_depth") == 1
        refused = client.post("/predict", json={"texts": ["c"]})
        gated.release.set()
        running.join(30)
        queued.join(30)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert "busy" in refused.json()["error"]
    assert results["a"].status_code == 200 and results["b"].status_code == 200


def test_ready_only_after_warm_up_while_health_answers_at_once(predictor):
    gated = Gated(predictor)
    with TestClient(create_app(gated, ServerSettings())) as client:
        assert gated.started.wait(30)  # warm-up is running (and held)
        assert client.get("/health").json() == {"status": "ok"}
        not_ready = client.get("/ready")
        gated.release.set()
        wait_ready(client)
        ready = client.get("/ready").json()
    assert not_ready.status_code == 503 and "warming up" in not_ready.json()["error"]
    assert ready == {"status": "ready", "task": "text-classification", "backend": predictor.backend}


def test_api_key_guards_predict_and_metrics_but_not_the_probes(predictor):
    with serving(predictor, api_key="s3cret") as client:
        body = {"texts": ["Profit rose."]}
        assert client.post("/predict", json=body).status_code == 401
        wrong = client.post("/predict", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong API key" in wrong.json()["error"]
        assert client.post("/predict", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/predict", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
        assert '"auth": true' in client.get("/").text  # the page asks for the key


def test_metrics_count_requests_latency_batches_and_queue(predictor):
    with serving(predictor) as client:
        client.post("/predict", json={"texts": TEXTS[:3]})
        client.post("/predict", json={"texts": [""]})
        text = client.get("/metrics").text
        assert metric(client, "domainfit_requests_total", endpoint="/predict", status="200") == 1
        assert metric(client, "domainfit_requests_total", endpoint="/predict", status="422") == 1
        assert metric(client, "domainfit_request_latency_seconds_count", endpoint="/predict") == 2
        assert metric(client, "domainfit_batch_size_sum") == 3  # the warm-up is not counted
        assert "domainfit_queue_depth 0.0" in text


def test_one_json_log_line_per_request(predictor, caplog):
    with caplog.at_level(logging.INFO, logger="domainfit.serve"), serving(predictor) as client:
        client.post("/predict", json={"texts": TEXTS[:2]})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "domainfit.serve"]
    predict = [line for line in lines if line["path"] == "/predict"]
    assert len(predict) == 1
    assert predict[0]["method"] == "POST" and predict[0]["status"] == 200
    assert predict[0]["items"] == 2 and predict[0]["batch_size"] == 2 and predict[0]["latency_ms"] > 0


def test_openapi_docs_and_page_are_served(predictor):
    with serving(predictor) as client:
        schema = client.get("/openapi.json").json()
        assert {"/predict", "/health", "/ready", "/metrics"} <= set(schema["paths"])
        assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]
        assert client.get("/docs").status_code == 200
        page = client.get("/").text
    assert '"task": "text-classification"' in page and '"explain": true' in page  # text models explain
    assert not re.search(r"""(src|href)=["']https?://""", page)  # nothing fetched from the network


def test_predict_is_documented_though_it_is_a_plain_starlette_route(predictor):
    """/predict skips FastAPI's per-request work, so its OpenAPI entry is written by hand: it must stay complete."""
    with serving(predictor) as client:
        operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
        wrong_method = client.get("/predict")
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"texts", "images"} <= set(body["properties"])
    assert {"200", "400", "413", "422", "429"} <= set(operation["responses"])
    assert "Predict for every text" in operation["description"]
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]  # the JSON error, not FastAPI's


def test_bodies_only_the_json_module_reads_are_still_answered(predictor):
    """orjson parses the hot path; a body it refuses but JSON allows (UTF-16, RFC 8259 section 8.1's other
    encodings) falls back to the json module, as the server always read it."""
    with serving(predictor) as client:
        utf16 = json.dumps({"texts": ["Profit rose."]}).encode("utf-16")
        response = client.post("/predict", content=utf16, headers={"content-type": "application/json"})
        utf8 = client.post("/predict", json={"texts": ["Profit rose."]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == utf8.json()["predictions"]


def test_explain_endpoint_gives_word_attributions_of_the_predicted_label(model_dir, predictor):
    """The real explainer (Integrated Gradients on PyTorch): one score per word of the text."""
    with TestClient(create_app(predictor, ServerSettings(), model_dir=model_dir)) as client:
        wait_ready(client)
        response = client.post("/explain", json={"texts": ["Operating profit rose sharply"]})
    assert response.status_code == 200, response.text
    first = response.json()["explanations"][0]["explanations"][0]
    assert [w["word"] for w in first["words"]] == ["Operating", "profit", "rose", "sharply"]
    assert first["label"] in {"negative", "neutral", "positive"} and 0 < first["probability"] <= 1


def test_a_model_in_a_worker_process_answers_predict_and_explain_and_stops_with_the_server(model_dir, predictor):
    apart = domainfit.load(model_dir, backend="torch", model_process="on")
    worker = apart._runner.pid
    texts = ["Operating profit rose sharply", "Shares dropped."]
    with TestClient(create_app(apart, ServerSettings(), model_dir=model_dir)) as client:
        wait_ready(client)
        predicted = client.post("/predict", json={"texts": texts})
        explained = client.post("/explain", json={"texts": texts[:1]})  # a PyTorch copy in the server's process
    assert predicted.status_code == 200 and explained.status_code == 200, (predicted.text, explained.text)
    assert [p["label"] for p in predicted.json()["predictions"]] == [p["label"] for p in predictor.predict(texts)]
    assert apart._runner.pid is None  # the lifespan's shutdown stopped the worker
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def test_an_explainer_can_be_plugged_in(predictor):
    def explain(p, texts):
        return [{"words": [{"word": w, "score": 1.0} for w in t.split()]} for t in texts]

    with TestClient(create_app(predictor, ServerSettings(), explainer=explain)) as client:
        wait_ready(client)
        response = client.post("/explain", json={"texts": ["Profit rose"]})
        page = client.get("/").text
    assert response.json()["explanations"][0]["words"][1] == {"word": "rose", "score": 1.0}
    assert '"explain": true' in page


# ----------------------------------------------------------------------------------------------------------
# Other tasks


def test_multi_label_and_token_classification_results(tmp_path):
    from transformers import BertForTokenClassification

    ml = build_classifier_dir(
        tmp_path / "ml",
        settings={"task": "multi-label-classification", "labels": LABELS, "thresholds": dict.fromkeys(LABELS, 0.5)},
    )
    config = json.loads((ml / "config.json").read_text())
    (ml / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    with serving(domainfit.load(ml)) as client:
        result = client.post("/predict", json={"texts": ["Profit rose."]}).json()
    assert result["task"] == "multi-label-classification"
    assert set(result["predictions"][0]) == {"labels", "probabilities"}

    ner = build_classifier_dir(
        tmp_path / "ner", settings={"task": "token-classification", "max_length": 32, "stride": 8}
    )
    tags = ["O", "B-Disease", "I-Disease"]
    config = json.loads((ner / "config.json").read_text())
    config.update(id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})
    BertForTokenClassification.from_pretrained(
        ner, id2label=config["id2label"], label2id=config["label2id"], ignore_mismatched_sizes=True
    ).save_pretrained(ner)
    with serving(domainfit.load(ner)) as client:
        result = client.post("/predict", json={"texts": ["Cystic fibrosis is inherited."]}).json()
    assert result["task"] == "token-classification"
    entities = result["predictions"][0]["entities"]
    assert all({"start", "end", "label", "text", "score"} == set(e) for e in entities)


@pytest.fixture(scope="module")
def image_model_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    out = tmp_path_factory.mktemp("image-model")
    names = ["crack", "ok"]
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=37,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    ViTForImageClassification(config).save_pretrained(out)
    (out / "domainfit.json").write_text(
        json.dumps(
            {
                "task": "image-classification",
                "labels": names,
                "image_size": 16,
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
            }
        )
    )
    return out


def _png(colour) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_model_takes_uploads_and_base64(image_model_dir):
    predictor = domainfit.load(image_model_dir)
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    with serving(predictor) as client:
        uploaded = client.post(
            "/predict", files=[("files", ("red.png", red, "image/png")), ("files", ("blue.png", blue, "image/png"))]
        )
        encoded = client.post("/predict", json={"images": [base64.b64encode(blue).decode()]})
        broken = client.post("/predict", files=[("files", ("x.png", b"not an image", "image/png"))])
        bad_b64 = client.post("/predict", json={"images": ["%%%"]})
        page = client.get("/").text
    assert uploaded.status_code == 200 and len(uploaded.json()["predictions"]) == 2
    assert uploaded.json()["predictions"][1]["probabilities"] == pytest.approx(
        encoded.json()["predictions"][0]["probabilities"]
    )
    assert broken.status_code == 422 and "'x.png' is not an image" in broken.json()["error"]
    assert bad_b64.status_code == 422 and "images[0] is not valid base64" in bad_b64.json()["error"]
    assert '"task": "image-classification"' in page


# ----------------------------------------------------------------------------------------------------------
# The command


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}


def _start(model_dir: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """`domainfit serve` on a free loopback port; returns the process and its URL once /ready is 200."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "domainfit", "serve", str(model_dir), "--port", "0", *flags],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = None
    while url is None:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"the server ended: {proc.wait()}")
        if line.startswith("{") and json.loads(line).get("event") == "listening":
            proc.listening = json.loads(line)  # type: ignore[attr-defined]
            url = proc.listening["url"]
    for _ in range(600):
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not get ready")


def test_serve_command_finishes_in_flight_requests_on_sigterm(model_dir):
    import httpx

    # a long batch wait keeps the request in flight while SIGTERM arrives
    proc, url = _start(model_dir, "--max-wait-ms", "3000", "--max-batch-size", "64")
    assert url.startswith("http://127.0.0.1:")
    result = {}
    request = threading.Thread(
        target=lambda: result.update(r=httpx.post(f"{url}/predict", json={"texts": ["Profit rose."]}, timeout=60))
    )
    request.start()
    for _ in range(300):
        if "domainfit_queue_depth 1.0" in httpx.get(f"{url}/metrics").text:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    request.join(60)
    code = proc.wait(60)
    stderr = proc.stderr.read()
    assert result["r"].status_code == 200
    assert result["r"].json()["predictions"][0]["label"] in LABELS
    assert code == 0
    assert "Traceback" not in stderr
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert {"method": "POST", "path": "/predict", "status": 200}.items() <= next(
        line for line in logged if line.get("path") == "/predict"
    ).items()
    # eager PyTorch ran in a worker process (--model-process auto), and the shutdown stopped it
    worker = proc.listening["model_process"]
    assert isinstance(worker, int) and worker != proc.pid
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def test_serve_command_user_errors_exit_2_with_one_message(tmp_path):
    import socket

    missing = subprocess.run(
        [sys.executable, "-m", "domainfit", "serve", str(tmp_path / "nope"), "--port", "0"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "model folder does not exist" in missing.stderr
    assert str(tmp_path / "nope") in missing.stderr and "Traceback" not in missing.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [sys.executable, "-m", "domainfit", "serve", str(tmp_path), "--port", str(port)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    assert "--port" in taken.stderr and "Traceback" not in taken.stderr
    empty_key = subprocess.run(
        [sys.executable, "-m", "domainfit", "serve", str(tmp_path), "--port", "0"],
        env={**_env(), "DOMAINFIT_API_KEY": " "},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert empty_key.returncode == 2 and "DOMAINFIT_API_KEY" in empty_key.stderr
    assert "Traceback" not in empty_key.stderr


# ----------------------------------------------------------------------------------------------------------
# The page, in a real browser


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


needs_chromium = pytest.mark.skipif(
    _chromium() is None,
    reason="headless Chromium + chromedriver not installed (Debian: apt-get install chromium chromium-driver)",
)


def _headless_chromium():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1000,800",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)


# what /explain gives a token classifier: one explanation per entity (domainfit.evaluation.explain_entities)
_NER_TEXT = "Aspirin and ibuprofen ease pain"
_NER_EXPLANATION = {
    "text": _NER_TEXT,
    "explanations": [
        {
            "label": "DRUG",
            "probability": 0.91,
            "entity": {"text": "Aspirin", "start": 0, "end": 7},
            "words": [
                {"word": "Aspirin", "start": 0, "end": 7, "score": 0.8},
                {"word": "and", "start": 8, "end": 11, "score": 0.1},
                {"word": "ibuprofen", "start": 12, "end": 21, "score": -0.2},
            ],
        },
        {
            "label": "DRUG",
            "probability": 0.77,
            "entity": {"text": "ibuprofen", "start": 12, "end": 21},
            "words": [
                {"word": "and", "start": 8, "end": 11, "score": 0.05},
                {"word": "ibuprofen", "start": 12, "end": 21, "score": 0.6},
                {"word": "pain", "start": 27, "end": 31, "score": 0.2},
            ],
        },
    ],
}


@needs_chromium
def test_page_shows_the_label_in_headless_chromium(model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _headless_chromium()
    proc, url = _start(model_dir)
    try:
        driver.get(url + "/")
        driver.find_element(By.ID, "text").send_keys("Operating profit rose to EUR 13.1 mn .")
        driver.find_element(By.ID, "predict").click()
        label = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "label").text)
        bars = driver.find_elements(By.CSS_SELECTOR, "#probs .row")
        # the explanation of the predicted label follows: every word of the text, coloured
        words = WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#explanation .block span"))
        line = driver.find_element(By.CSS_SELECTOR, "#explanation .line").text
        screenshot = tmp_path / "serve-page.png"
        driver.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
        assert driver.find_element(By.ID, "error").text == ""
        # a token classifier's explanation: every entity gets its own line, the entity's words outlined
        driver.execute_script("clear(); showExplanation(arguments[0], arguments[1]);", _NER_TEXT, _NER_EXPLANATION)
        blocks = driver.find_elements(By.CSS_SELECTOR, "#explanation .block")
        entity_lines = [
            [(w.text, w.get_attribute("class")) for w in b.find_elements(By.CSS_SELECTOR, "span")] for b in blocks
        ]
        entity_texts = [b.find_element(By.CSS_SELECTOR, ".line").text for b in blocks]
        heads = [b.find_element(By.CSS_SELECTOR, ".head").text for b in blocks]
    finally:
        driver.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert label in LABELS and len(bars) == len(LABELS)
    assert len(words) >= 5 and line == "Operating profit rose to EUR 13.1 mn ."  # the whole text, gaps kept
    assert screenshot.stat().st_size > 0
    assert heads == ["DRUG · “Aspirin” · probability 0.910", "DRUG · “ibuprofen” · probability 0.770"]
    assert entity_texts == [_NER_TEXT, _NER_TEXT]  # the whole text on each line, the gaps kept
    assert entity_lines == [
        [("Aspirin", "entity"), ("and", ""), ("ibuprofen", "")],
        [("and", ""), ("ibuprofen", "entity"), ("pain", "")],
    ]


@needs_chromium
def test_page_shows_the_grad_cam_heat_map_over_the_image(image_model_dir, tmp_path):
    """The page sends the image to /explain after /predict and lays the heat map over it as the HTML report
    of `domainfit explain` does: colour in proportion to the heat, the image unchanged where it is cold."""
    import httpx
    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pixels = np.zeros((40, 40, 3), dtype=np.uint8)
    pixels[:, :] = (40, 40, 160)
    pixels[10:30, 20:] = (250, 250, 250)  # a white bar on blue: this tiny ViT's map is hot in one corner
    image = tmp_path / "bar.png"
    Image.fromarray(pixels).save(image)
    driver = _headless_chromium()
    proc, url = _start(image_model_dir)
    try:
        served = httpx.post(
            f"{url}/explain", files=[("files", ("bar.png", image.read_bytes(), "image/png"))], timeout=60
        ).json()["explanations"][0]
        driver.get(url + "/")
        driver.find_element(By.ID, "file").send_keys(str(image))
        driver.find_element(By.ID, "predict").click()
        canvas = WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#explanation canvas"))
        label = driver.find_element(By.ID, "label").text
        head = driver.find_element(By.CSS_SELECTOR, "#explanation .head").text
        width, height, data = driver.execute_script(
            "const c = arguments[0]; return [c.width, c.height, "
            "Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];",
            canvas[0],
        )
        assert driver.find_element(By.ID, "error").text == ""
    finally:
        driver.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert len(canvas) == 1 and label == served["explanations"][0]["label"] and head.startswith(label)
    assert (width, height) == (40, 40)  # the image's own size (under the page's 320 px)
    from domainfit.evaluation.explain_report import heatmap_overlay

    shown = np.asarray(data, dtype=np.float64).reshape(40, 40, 4)[..., :3]
    heatmap = served["explanations"][0]["heatmap"]
    _, report = heatmap_overlay(Image.fromarray(pixels), heatmap)
    # the report's overlay, to the rounding of its 8-bit copy of the heat map
    assert np.abs(shown - np.asarray(report, dtype=np.float64)).max() <= 3
    heat = np.asarray(
        Image.fromarray(np.asarray(heatmap, dtype=np.float32)).resize((40, 40), Image.Resampling.BILINEAR)
    )  # (40, 40)
    assert heat.max() > 0.9 and (heat == 0).mean() > 0.2  # this image has hot and cold regions
    cold, hot = heat == 0, heat > 0.9
    assert np.abs(shown - pixels)[cold].max() <= 2  # the image itself where the map is cold
    assert np.abs(shown - pixels)[hot].sum(-1).min() > 60  # coloured where it is hot
