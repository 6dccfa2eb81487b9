"""The serve load test's clients (benchmarks/bench_serve.py): raw keep-alive HTTP/1.1 against the real server
(uvicorn, a tiny model) count every answered request, one connection per client, and every refusal as an error."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest
from assets import TEXTS, build_classifier_dir

pytest.importorskip("fastapi", reason="the serve extra is not installed")
import uvicorn  # noqa: E402

import domainfit  # noqa: E402
from domainfit.serving.server import ServerSettings, create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_serve", REPO / "benchmarks" / "bench_serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """A real uvicorn server on a free loopback port, serving a tiny classifier; yields its URL and app."""
    predictor = domainfit.load(build_classifier_dir(tmp_path_factory.mktemp("bench-serve") / "model"))
    app = create_app(predictor, ServerSettings(max_batch_size=8, max_wait_ms=2, max_text_chars=200))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    bench = _bench_module()
    deadline = time.monotonic() + 60
    while not bench.is_ready(url):
        assert time.monotonic() < deadline, "the server did not get ready"
        time.sleep(0.05)
    yield url, app, bench
    server.should_exit = True
    thread.join(30)
    sock.close()


def test_load_test_counts_every_answer_over_one_keep_alive_connection_per_client(server_url):
    url, app, bench = server_url
    opened = []
    real_open = asyncio.open_connection

    async def counting_open(*args, **kwargs):
        opened.append(args)
        return await real_open(*args, **kwargs)

    asyncio.open_connection = counting_open
    try:
        result = asyncio.run(bench.load_test(url, list(TEXTS), clients=4, seconds=30, max_requests=40))
    finally:
        asyncio.open_connection = real_open
    assert result["requests"] == 40
    assert result["ok"] == 40 and result["errors"] == {}
    assert len(opened) == 4  # keep-alive: no reconnect per request
    assert result["p50_ms"] > 0 and result["client_cpu_s"] >= 0
    assert app.state.batcher.queue_depth == 0


def test_load_test_counts_refused_requests_as_errors(server_url):
    url, _, bench = server_url
    too_long = ["x" * 500]  # over the server's max_text_chars: a 422 for every request
    result = asyncio.run(bench.load_test(url, too_long, clients=2, seconds=30, max_requests=6))
    assert result["ok"] == 0
    assert result["errors"] == {"422": 6}
