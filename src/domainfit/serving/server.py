"""``domainfit serve MODEL_DIR``: an HTTP server for any trained model folder (FastAPI + uvicorn).

    domainfit serve runs/phrasebank/model --port 8000
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["Profit rose."]}'

Endpoints: ``POST /predict`` (JSON ``{"texts": [...]}``; image models: multipart ``files`` or JSON
``{"images": [base64, ...]}``), ``GET /`` (a small page to try the model), ``/docs`` (OpenAPI), ``/health``
(the process is up), ``/ready`` (the model is loaded and warmed up), ``/metrics`` (Prometheus). Concurrent
requests are batched together (:mod:`domainfit.serving.batcher`). Every limit is answered with a 4xx JSON
error ``{"error": ..., "fix": ...}``; a request never sees a traceback. One JSON log line per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import io
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from domainfit.errors import DomainfitError, MissingExtraError

try:  # the one place that checks the serve extra
    import orjson
    import prometheus_client
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, Response
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.routing import Route
except ImportError as e:
    raise MissingExtraError(
        f"`domainfit serve` needs FastAPI, uvicorn, orjson and prometheus-client ({e})",
        fix='pip install "domainfit[serve]"',
    ) from e

from domainfit.serving.batcher import BatcherClosedError, MicroBatcher, QueueFullError
from domainfit.serving.image_predictor import ImagePredictor
from domainfit.serving.model_process import MODEL_PROCESS
from domainfit.serving.multilabel_predictor import MultiLabelPredictor

API_KEY_ENV = "DOMAINFIT_API_KEY"
# endpoints that read or reveal the model's outputs; the page, the docs and the probes stay open so a load
# balancer can check the process and a person can read how to call it
PROTECTED_PATHS = ("/predict", "/explain", "/metrics")
KNOWN_PATHS = (
    "/",
    "/predict",
    "/explain",
    "/health",
    "/ready",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/redoc",
    "/docs/oauth2-redirect",
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
access_log = logging.getLogger("domainfit.serve")


@dataclass(frozen=True)
class ServerSettings:
    """Limits and batching of the server; every field is a ``domainfit serve`` flag."""

    max_batch_size: int = 128  # items the model sees in one forward pass at most
    max_wait_ms: float = 5.0  # how long a request may wait for others to fill its batch
    max_queue: int = 256  # requests waiting for the model; beyond it: 429
    max_body_bytes: int = 2_000_000  # request body; beyond it: 413
    max_items: int = 64  # texts or images in one request
    max_text_chars: int = 20_000  # characters in one text (the model reads far fewer; this bounds memory)
    api_key: str | None = None  # required as "Authorization: Bearer KEY" or "X-API-Key: KEY" when set
    graceful_timeout_s: float = 30.0  # on SIGTERM, how long in-flight requests may take to finish
    # the model in a worker process ("auto": for eager PyTorch backends; domainfit.serving.model_process)
    model_process: str = "auto"

    def check(self) -> None:
        """Raise a DomainfitError naming the flag of the first invalid setting."""
        for name in ("max_batch_size", "max_queue", "max_body_bytes", "max_items", "max_text_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DomainfitError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("max_wait_ms", "graceful_timeout_s"):
            if getattr(self, name) < 0:
                raise DomainfitError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.model_process not in MODEL_PROCESS:
            raise DomainfitError(
                f"--model-process must be one of {', '.join(MODEL_PROCESS)}, got {self.model_process!r}"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise DomainfitError(
                f"the API key is empty (--api-key or {API_KEY_ENV})",
                fix=f"give a non-empty key, or unset {API_KEY_ENV} to serve without one.",
            )


class Problem(Exception):
    """A request the server refuses: answered as JSON ``{"error": message, "fix": fix}`` with ``status``."""

    def __init__(
        self, status: int, message: str, fix: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.fix, self.headers = status, message, fix, headers


# orjson, not the json module: about 10x faster for the answers and log lines the server writes per request
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` as a compact UTF-8 JSON response (NaN becomes null)."""
    return Response(
        orjson.dumps(body, option=_ORJSON_OPTIONS), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(
    status: int, message: str, fix: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The JSON body every refused request gets."""
    body: dict[str, Any] = {"error": message}
    if fix:
        body["fix"] = fix
    return json_response(body, status, headers)


# ----------------------------------------------------------------------------------------------------------
# What the model takes and gives


def task_of(predictor: Any) -> str:
    """The task a loaded predictor serves (its inputs and outputs differ by task)."""
    if isinstance(predictor, ImagePredictor):
        return "image-classification"
    if isinstance(predictor, MultiLabelPredictor):
        return "multi-label-classification"
    return getattr(predictor, "task", None) or "text-classification"


def _warm_up_item(predictor: Any, task: str) -> Any:
    if task == "image-classification":
        from PIL import Image

        size = predictor.preprocessing.size
        return Image.new("RGB", (size, size) if isinstance(size, int) else tuple(size))
    return "Warm-up text."


def _model_call(predictor: Any, task: str) -> Callable[[list[Any]], list[Any]]:
    """items -> one JSON-ready result per item. Entity spans are wrapped so every result is an object."""
    if task == "token-classification":
        return lambda items: [{"entities": spans} for spans in predictor.predict(items)]
    return lambda items: predictor.predict(items)


def default_explainer(model_dir: str | Path | None) -> Callable[..., list[dict[str, Any]]]:
    """``POST /explain`` for every task :mod:`domainfit.serving.explain` registers, with the task's default
    method: word attributions (Integrated Gradients) for text and multi-label models, per entity for token
    classifiers, Grad-CAM heat maps for image models; on PyTorch fp32. When the server runs on ONNX or bf16 (no
    usable gradients), a PyTorch copy of the model is loaded from ``model_dir`` on the first request."""
    from domainfit.serving.explain import explainer_for

    built: dict[str, Any] = {}
    lock = threading.Lock()

    def explain(predictor: Any, texts: list[str]) -> list[dict[str, Any]]:
        with lock:
            if "explainer" not in built:
                try:
                    built["explainer"] = explainer_for(predictor)
                except DomainfitError:
                    if model_dir is None:
                        raise
                    built["explainer"] = explainer_for(model_dir)
        return built["explainer"].explain(texts)  # the explainer checks them

    return explain


class PredictRequest(BaseModel):
    """``POST /predict`` as JSON. Text models take ``texts``; image models ``images`` (base64)."""

    texts: list[str] | None = Field(
        None,
        description="texts to classify (generation: instructions)",
        examples=[["Operating profit rose to EUR 13.1 mn ."]],
    )
    images: list[str] | None = Field(None, description="image models: base64-encoded image files")


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "image models: image files",
                        }
                    },
                }
            },
        },
    }
}


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "fix": {"type": "string"}},
    "required": ["error"],
}


def add_predict_to_docs(app: FastAPI, description: str) -> None:
    """Describe ``POST /predict`` (a plain Starlette route, which FastAPI leaves out) in ``/openapi.json``."""
    error = {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    operation = {
        "summary": "Predict",
        "description": description,
        "operationId": "predict_predict_post",
        **_PREDICT_BODY,
        "responses": {
            "200": {
                "description": "one result per item, in the order sent",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "task": {"type": "string"},
                                "predictions": {"type": "array", "items": {"type": "object"}},
                            },
                        }
                    }
                },
            },
            "400": {"description": "the body is not valid JSON", **error},
            "401": {"description": "missing or wrong API key (when the server has one)", **error},
            "413": {"description": "the body is over --max-body-bytes", **error},
            "415": {"description": "unsupported content-type", **error},
            "422": {"description": "an item is missing, empty, too long or unreadable", **error},
            "429": {"description": "the queue is full (--max-queue); retry after Retry-After", **error},
            "503": {"description": "the server is shutting down", **error},
        },
    }
    generate = app.openapi  # FastAPI's own, which caches the schema it builds

    def openapi() -> dict[str, Any]:
        schema = generate()
        if "/predict" not in schema["paths"]:
            schema["paths"] = {"/predict": {"post": operation}, **schema["paths"]}
        return schema

    app.openapi = openapi  # the documented way to extend FastAPI's schema


def _check_texts(value: Any, settings: ServerSettings, *, allow_objects: bool) -> list[Any]:
    if not isinstance(value, list):
        raise Problem(
            422,
            f'"texts" must be a list of strings, got {type(value).__name__}',
            fix='send {"texts": ["first text", "second text"]}.',
        )
    _check_count(len(value), "texts", settings)
    for i, text in enumerate(value):
        if allow_objects and isinstance(text, dict) and isinstance(text.get("instruction"), str):
            text = text["instruction"]  # generation: {"instruction": ..., "input": ...}
        if not isinstance(text, str):
            raise Problem(
                422, f"texts[{i}] must be a string, got {type(text).__name__}", fix="send every text as a JSON string."
            )
        if not text.strip():
            raise Problem(
                422,
                f"texts[{i}] is empty or only whitespace: nothing to predict",
                fix="drop empty texts from the request.",
            )
        if len(text) > settings.max_text_chars:
            raise Problem(
                422,
                f"texts[{i}] has {len(text)} characters; the limit is {settings.max_text_chars}",
                fix="send a shorter text, or restart the server with a larger --max-text-chars.",
            )
    return value


def _check_count(n: int, what: str, settings: ServerSettings) -> None:
    if n == 0:
        raise Problem(422, f'"{what}" is empty: nothing to predict', fix=f"send at least one item in {what}.")
    if n > settings.max_items:
        raise Problem(
            422,
            f'"{what}" holds {n} items; the limit is {settings.max_items} per request',
            fix="split the request, or restart the server with a larger --max-items.",
        )


def _decode_image(data: bytes, name: str) -> Any:
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode now, so a broken file is this request's 422 and not a failed batch
        return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise Problem(
            422, f"{name} is not an image Pillow can read ({e})", fix="send a JPEG, PNG, BMP or TIFF file."
        ) from e


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or a 400 Problem saying where it breaks."""
    try:
        return orjson.loads(body)  # the fast path: UTF-8 JSON, as nearly every client sends
    except orjson.JSONDecodeError:
        pass
    # what orjson refuses the json module may still take (a UTF-16 body, NaN); its messages are also the ones
    # the server always gave, so a broken body is explained exactly as before
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise Problem(
            400,
            f"the body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})",
            fix='send a JSON object such as {"texts": ["a text"]}.',
        ) from e
    except UnicodeDecodeError as e:
        raise Problem(400, f"the body is not UTF-8 text: {e}", fix="send UTF-8 encoded JSON.") from e


async def read_items(request: Request, task: str, settings: ServerSettings) -> list[Any]:
    """The request's texts or images, checked against the limits; a Problem (4xx) if anything is off."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_image = task == "image-classification"
    if content_type == "multipart/form-data":
        if not is_image:
            raise Problem(
                415,
                "this is a text model: send JSON, not a form",
                fix='POST {"texts": [...]} with content-type: application/json.',
            )
        form = await request.form(max_files=settings.max_items, max_fields=settings.max_items)
        files = [f for f in form.getlist("files") + form.getlist("file") if hasattr(f, "read")]
        _check_count(len(files), "files", settings)
        datas = [(await f.read(), f"file {f.filename!r}") for f in files]
        return await run_in_threadpool(lambda: [_decode_image(d, name) for d, name in datas])
    if content_type not in ("application/json", ""):
        raise Problem(
            415,
            f"unsupported content-type {content_type!r}",
            fix="send JSON (application/json)" + (" or a multipart form of files" if is_image else "") + ".",
        )
    data = parse_json(await request.body())
    key = "images" if is_image else "texts"
    if not isinstance(data, dict):
        raise Problem(
            422,
            f"expected a JSON object with {key!r}, got a JSON {type(data).__name__}",
            fix=f'send {{"{key}": [...]}}.',
        )
    unknown = sorted(set(data) - {key})
    if unknown or key not in data:
        found = f"unknown field(s) {', '.join(map(repr, unknown))}" if unknown else f"no {key!r} field"
        raise Problem(422, f"{found}; this {task} model takes {key!r}", fix=f'send {{"{key}": [...]}}.')
    if not is_image:
        return _check_texts(data[key], settings, allow_objects=task == "generation")
    images = data[key]
    if not isinstance(images, list):
        raise Problem(422, '"images" must be a list of base64 strings', fix='send {"images": ["iVBORw0..."]}.')
    _check_count(len(images), "images", settings)
    raw = []
    for i, text in enumerate(images):
        if not isinstance(text, str):
            raise Problem(422, f"images[{i}] must be a base64 string, got {type(text).__name__}")
        try:  # a data URL ("data:image/png;base64,....") as a browser's FileReader gives it is fine too
            raw.append(base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True))
        except (binascii.Error, ValueError, IndexError) as e:
            raise Problem(422, f"images[{i}] is not valid base64 ({e})", fix="base64-encode the image file.") from e
    return await run_in_threadpool(lambda: [_decode_image(d, f"images[{i}]") for i, d in enumerate(raw)])


# ----------------------------------------------------------------------------------------------------------
# Metrics, logs, limits and keys: one ASGI layer in front of every request


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (two apps in one process do not clash)."""

    def __init__(self, max_batch_size: int, queue_depth: Callable[[], int]) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "domainfit_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.latency = prometheus_client.Histogram(
            "domainfit_request_latency_seconds",
            "time from request to response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch_size})
        self.batch_size = prometheus_client.Histogram(
            "domainfit_batch_size",
            "items per model call",
            buckets=[s for s in sizes if s <= max_batch_size],
            registry=self.registry,
        )
        self.queue_depth = prometheus_client.Gauge(
            "domainfit_queue_depth", "requests waiting for the model", registry=self.registry
        )
        self.queue_depth.set_function(queue_depth)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def children(self, endpoint: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of one endpoint and status, looked up once: ``.labels()``
        takes a lock and builds a key on every call."""
        key = (endpoint, status)
        if key not in self._children:
            self._children[key] = (
                self.requests.labels(endpoint, str(status)),
                self.latency.labels(endpoint),
            )
        return self._children[key]

    def render(self) -> Response:
        return Response(
            prometheus_client.generate_latest(self.registry), media_type=prometheus_client.CONTENT_TYPE_LATEST
        )


class Gate:
    """ASGI middleware: API key, body size limit, metrics and one JSON log line per request.

    The key and the declared size are checked before the body is read, so an unauthenticated or oversized
    request costs no memory; a body sent without a length is read only up to the limit.
    """

    def __init__(self, app: Any, settings: ServerSettings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}
        scope["state"] = {**scope.get("state", {})}

        async def send_and_record(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._check_key(scope) or self._check_length(scope)
            if refusal is None:
                receive, refusal = await self._read_body(receive)
            if refusal is not None:
                await refusal(scope, receive, send_and_record)
            else:
                await self.app(scope, receive, send_and_record)
        finally:
            self._record(scope, status["code"], time.perf_counter() - start)

    def _check_key(self, scope: dict) -> Response | None:
        if self.settings.api_key is None or scope["path"] not in PROTECTED_PATHS:
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-api-key") or ""
        if not given and headers.get("authorization", "").lower().startswith("bearer "):
            given = headers["authorization"][7:].strip()
        if given and secrets.compare_digest(given.encode(), self.settings.api_key.encode()):
            return None
        return error_response(
            401,
            "missing or wrong API key" if given or headers.get("authorization") else "this server needs an API key",
            fix="send the header 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def _check_length(self, scope: dict) -> Response | None:
        for name, value in scope["headers"]:
            if name.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return error_response(400, f"invalid Content-Length header {value.decode('latin-1')!r}")
                if length > self.settings.max_body_bytes:
                    return self._too_large(length)
        return None

    def _too_large(self, length: int | None) -> Response:
        size = f"{length} bytes" if length is not None else "more"
        return error_response(
            413,
            f"the request body is {size}; the limit is {self.settings.max_body_bytes} bytes",
            fix="send fewer or smaller items per request, or restart the server with a larger --max-body-bytes.",
        )

    async def _read_body(self, receive: Callable) -> tuple[Callable, Response | None]:
        """Read the whole body (up to the limit) and hand the app a ``receive`` that replays it."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return receive, None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.settings.max_body_bytes:
                return receive, self._too_large(None)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replaying_receive() -> dict:
            return replay.pop() if replay else await receive()

        return replaying_receive, None

    def _record(self, scope: dict, status: int, seconds: float) -> None:
        endpoint = scope["path"] if scope["path"] in KNOWN_PATHS else "other"  # bounded label values
        count, latency = self.metrics.children(endpoint, status)
        count.inc()
        latency.observe(seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "latency_ms": round(seconds * 1000, 2),
        }
        for key in ("items", "batch_size"):
            if key in scope["state"]:
                line[key] = scope["state"][key]
        access_log.info(orjson.dumps(line).decode())


# ----------------------------------------------------------------------------------------------------------
# The app


def create_app(
    predictor: Any,
    settings: ServerSettings | None = None,
    *,
    explainer: Callable[..., list[dict[str, Any]]] | None = None,
    model_dir: str | Path | None = None,
) -> FastAPI:
    """A FastAPI app serving ``predictor`` (anything ``domainfit.load`` returns).

    The batcher's worker thread starts, and the model is warmed up in the background, when the app's lifespan
    starts (uvicorn, or ``with TestClient(app)``); ``/ready`` answers 200 from then on.

    Args:
        predictor: the loaded model.
        settings: limits and batching (defaults: :class:`ServerSettings`).
        explainer: ``explain(predictor, items)`` for ``POST /explain``; default for the tasks
            :mod:`domainfit.serving.explain` registers: :func:`default_explainer`.
        model_dir: the folder ``predictor`` was loaded from (the explainer loads a PyTorch copy from it when
            the server runs on ONNX).
    """
    settings = settings or ServerSettings()
    settings.check()
    task = task_of(predictor)
    from domainfit.serving.explain import TASKS as EXPLAINED_TASKS

    if explainer is None and task in EXPLAINED_TASKS:
        explainer = default_explainer(model_dir)
    model_lock = threading.Lock()  # one forward pass at a time: the batcher's and the explainer's
    call_model = _model_call(predictor, task)
    ready = threading.Event()
    state: dict[str, Any] = {"not_ready": "the model is warming up"}

    def run_batch(items: list[Any]) -> list[Any]:
        with model_lock:
            return call_model(items)

    metrics = Metrics(settings.max_batch_size, lambda: batcher.queue_depth)
    batcher = MicroBatcher(
        run_batch,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        on_batch=metrics.batch_size.observe,
    )

    def warm_up() -> None:
        try:
            item = _warm_up_item(predictor, task)
            with model_lock:
                call_model([item])
        except Exception as e:  # noqa: BLE001 - reported by /ready and the log; the server stays up
            state["not_ready"] = f"warm-up failed: {type(e).__name__}: {e}"
            access_log.error(json.dumps({"event": "warm-up failed", "error": str(e)}))
            return
        state.pop("not_ready", None)
        ready.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        threading.Thread(target=warm_up, name="domainfit-warm-up", daemon=True).start()
        yield
        stop_being_ready()
        await run_in_threadpool(batcher.close)  # runs what is still queued, then stops the worker
        close = getattr(predictor, "close", None)
        if close is not None:
            await run_in_threadpool(close)  # the model's worker process, if it has one

    app = FastAPI(
        title="domainfit",
        lifespan=lifespan,
        description=f"A {task} model served by domainfit (backend {predictor.backend}).",
    )
    app.state.batcher, app.state.ready, app.state.settings = batcher, ready, settings

    @app.exception_handler(Problem)
    async def _problem(request: Request, e: Problem) -> Response:
        return error_response(e.status, e.message, e.fix, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> Response:
        return error_response(e.status_code, str(e.detail), headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is up (it may still be warming up: see /ready)."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"description": "loading, warming up or shutting down"}})
    async def is_ready() -> Response:
        """The model is loaded and warmed up, and the server is not shutting down."""
        if ready.is_set():
            return json_response({"status": "ready", "task": task, "backend": predictor.backend})
        return error_response(503, state.get("not_ready", "not ready"))

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: requests by endpoint and status, latency, batch sizes, queue depth."""
        return metrics.render()

    async def predict(request: Request) -> Response:
        """Predict for every text (or image) of the request, in order.

        Results per task: text and image classification ``{"label", "score", "probabilities"}``; multi-label
        ``{"labels", "probabilities"}``; token classification ``{"entities": [{"start", "end", "label",
        "text", "score"}]}``; generation ``{"generated"}``.
        """
        items = await read_items(request, task, settings)
        request.state.items = len(items)
        try:
            future = batcher.submit(items)
        except QueueFullError as e:
            raise Problem(
                429,
                f"the server is busy: {e}",
                fix="retry after a moment, or restart the server with a larger --max-queue.",
                headers={"Retry-After": "1"},
            ) from e
        except BatcherClosedError as e:
            raise Problem(503, "the server is shutting down", fix="retry on another instance.") from e
        try:
            result = await asyncio.wrap_future(future)
        except DomainfitError as e:  # the model refused this input (what it says is for the user)
            raise Problem(422, str(e)) from e
        request.state.batch_size = result.batch_size
        return json_response({"task": task, "predictions": result.results})

    # the hot path: a plain Starlette route, without FastAPI's per-request dependency solving (which parses
    # cookies and query strings /predict never reads), first in the table so it is the first route matched;
    # its OpenAPI entry is written out by add_predict_to_docs
    app.router.routes.insert(0, Route("/predict", predict, methods=["POST"], include_in_schema=False))
    add_predict_to_docs(app, inspect.cleandoc(predict.__doc__ or ""))

    if explainer is not None:  # the tasks domainfit.serving.explain registers

        @app.post("/explain", openapi_extra=_PREDICT_BODY)
        async def explain(request: Request) -> Response:
            """Why, per text or image (sent as to /predict): ``{"explanations": [explain()'s dict per item]}``:
            word attributions; per entity for token classifiers; a Grad-CAM heat map for image models."""
            texts = await read_items(request, task, settings)

            def run() -> list[dict[str, Any]]:
                with model_lock:
                    return explainer(predictor, texts)

            try:
                return json_response({"task": task, "explanations": await run_in_threadpool(run)})
            except DomainfitError as e:
                raise Problem(422, str(e)) from e

    page_config = {
        "task": task,
        "auth": settings.api_key is not None,
        "explain": explainer is not None,
        "max_text_chars": settings.max_text_chars,
    }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(render_page(page_config))

    def stop_being_ready() -> None:
        ready.clear()
        state["not_ready"] = "shutting down"

    app.state.stop_being_ready = stop_being_ready
    # around FastAPI's own error handling, so what that answers is logged and counted too
    app.add_middleware(Gate, settings=settings, metrics=metrics)
    return app


def render_page(config: dict[str, Any]) -> str:
    """The try-it page (``serving/page.html``, self-contained: no CDN, no network) with the server's settings."""
    html = resources.files("domainfit.serving").joinpath("page.html").read_text(encoding="utf-8")
    settings = json.dumps(config).replace("</", "<\\/")  # cannot close the <script> it sits in
    return html.replace("/*DOMAINFIT_CONFIG*/null", settings)


# ----------------------------------------------------------------------------------------------------------
# The command


class _Server(uvicorn.Server):
    """uvicorn's server, told about SIGTERM/SIGINT first: /ready turns 503 at once (a load balancer stops
    sending), uvicorn stops accepting and lets in-flight requests finish; then the process exits 0."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)
        # a requested stop is the normal end of a server: exit 0, not re-raised as a signal or KeyboardInterrupt
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), or a DomainfitError naming the flag to change."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise DomainfitError(
            f"cannot resolve --host {host!r}: {e}",
            fix="give an address such as 127.0.0.1 (this machine only) or 0.0.0.0.",
        ) from e
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise DomainfitError(
            f"cannot listen on {host}:{port}: {e.strerror or e}",
            fix="choose another --port (0 picks a free one), or stop the process using it.",
        ) from e
    return sock


def configure_access_log() -> None:
    """One JSON object per line on stderr, nothing else in front of it."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.handlers[:] = [handler]
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def serve(
    model_dir: str | Path,
    settings: ServerSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    num_threads: int | None = None,
    min_confidence: float | None = None,
) -> None:
    """Load ``model_dir`` and serve it until SIGTERM or Ctrl-C.

    Args:
        model_dir: a model folder written by ``domainfit train`` (any task).
        settings: limits and batching.
        host: address to listen on; the default answers this machine only.
        port: TCP port; 0 picks a free one (printed).
        backend: as in :func:`domainfit.load`.
        num_threads: CPU threads for the model.
        min_confidence: single-label models answer "abstain" below it (default: the folder's own, if any).
    """
    from domainfit.serving.loader import load

    settings.check()
    sock = listen_socket(host, port)  # before the model loads: a busy port fails in a second, not a minute
    try:
        predictor = load(
            model_dir,
            backend=backend,
            num_threads=num_threads,
            min_confidence=min_confidence,
            model_process=settings.model_process,
        )
        app = create_app(predictor, settings, model_dir=model_dir)
        configure_access_log()
        bound_host, bound_port = sock.getsockname()[:2]
        access_log.info(
            json.dumps(
                {
                    "event": "listening",
                    "url": f"http://{bound_host}:{bound_port}",
                    "model": str(model_dir),
                    "task": task_of(predictor),
                    "backend": predictor.backend,
                    "model_process": getattr(predictor, "model_process_pid", None),
                    "settings": {**asdict(settings), "api_key": settings.api_key is not None},
                }
            )
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=settings.graceful_timeout_s,
        )
        _Server(config, app.state.stop_being_ready).run(sockets=[sock])
    finally:
        sock.close()
