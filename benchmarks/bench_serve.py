"""Load test of `domainfit serve`: N concurrent clients for T seconds, against offline prediction.

    .venv/bin/python benchmarks/bench_serve.py --model-dir /tmp/pb/model --clients 200 --seconds 60

Starts `domainfit serve MODEL_DIR` on a free loopback port (its own process, as in production), then runs
``--clients`` asyncio + httpx clients for ``--seconds`` seconds, each posting one PhraseBank test sentence
per request, back to back. Reports requests, errors (any non-200 or failed request), p50/p99 latency and
throughput; then stops the server (SIGTERM) and measures offline throughput on the same texts in this
process: the ``Predictor.predict`` call that `domainfit predict` makes (model loading and file I/O not
counted), with the same backend. The ratio server/offline is the issue's figure (target: >= 0.7).

Without ``--model-dir`` it trains the PhraseBank MiniLM first (``domainfit train
src/domainfit/configs/phrasebank.yaml output.dir=/tmp/pb train.epochs=1``), unless /tmp/pb/model exists.
Loopback only; bounded in time (``--seconds``) and count (``--max-requests``). The clients share the
machine's cores with the server: on a small machine they take a real share of them (the report says
how many cores other processes kept busy).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "financial_phrasebank" / "split_seed42" / "test.csv"


def ensure_model(model_dir: str | None) -> Path:
    if model_dir:
        return Path(model_dir)
    out = Path("/tmp/pb")
    if not (out / "model" / "config.json").is_file():
        config = REPO / "src" / "domainfit" / "configs" / "phrasebank.yaml"
        subprocess.run([sys.executable, "-m", "domainfit", "train", str(config), f"output.dir={out}",
                        "train.epochs=1"], check=True, cwd=REPO)
    return out / "model"


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def start_server(model_dir: Path, flags: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """`domainfit serve` with its JSON log in a file (a pipe would fill up and stall the server)."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "domainfit", "serve", str(model_dir), "--port", "0", *flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 300
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server ended with {proc.returncode}:\n{log.read_text()}")
        if url is None:
            for line in log.read_text().splitlines():
                if line.startswith("{") and json.loads(line).get("event") == "listening":
                    url = json.loads(line)["url"]
        elif httpx.get(f"{url}/ready").status_code == 200:
            return proc, url
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not get ready in 300 s")


async def load_test(url: str, texts: list[str], clients: int, seconds: float, max_requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one_client(offset: int) -> None:
            nonlocal sent
            i = offset
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                start = time.perf_counter()
                try:
                    response = await client.post("/predict", json={"texts": [texts[i % len(texts)]]})
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - start)
                    else:
                        errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                i += clients

        began = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        wall = time.perf_counter() - began
    latencies.sort()
    return {"requests": sent, "ok": len(latencies), "errors": errors, "wall_s": wall,
            "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
            "throughput": len(latencies) / wall}


def offline_throughput(model_dir: Path, texts: list[str], backend: str, repeats: int) -> tuple[float, str]:
    """Texts per second of ``Predictor.predict`` over all the texts (median of ``repeats`` after a warm-up)."""
    sys.path.insert(0, str(REPO / "src"))
    import domainfit

    predictor = domainfit.load(model_dir, backend=backend)
    predictor.predict(texts[:64])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(rates), predictor.backend


def busy_cores() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=None, help="a text model folder (default: train PhraseBank MiniLM)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CSV with a text column (PhraseBank test split)")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="offline runs (median)")
    parser.add_argument("server_flags", nargs="*", help="more `domainfit serve` flags, after --, e.g. "
                        "-- --max-batch-size 64 --max-wait-ms 10")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.seconds > 600:
        raise SystemExit("--clients must be >= 1 and --seconds in (0, 600]")

    model_dir = ensure_model(args.model_dir)
    texts = read_texts(Path(args.data))
    load_before = busy_cores()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        proc, url = start_server(model_dir, ["--backend", args.backend, "--max-queue",
                                             str(max(256, 2 * args.clients)), *args.server_flags], log)
        try:
            served = asyncio.run(load_test(url, texts, args.clients, args.seconds, args.max_requests))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    batches = [line["batch_size"] for line in lines if "batch_size" in line]
    load_during = busy_cores()
    offline, backend = offline_throughput(model_dir, texts, args.backend, args.repeats)
    ratio = served["throughput"] / offline

    print(f"\n{datetime.date.today().isoformat()}  {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs; load average before {load_before:.1f}, after the load test "
          f"{load_during:.1f}; backend {backend}; server exit code on SIGTERM {code}")
    print(f"model {model_dir}; {len(texts)} texts from {args.data}, one per request\n")
    print("| clients | seconds | requests | errors | p50 latency ms | p99 latency ms | server texts/s "
          "| mean batch size a request ran in | offline predict texts/s | server / offline |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    errors = sum(served["errors"].values())
    detail = f" ({', '.join(f'{k}: {v}' for k, v in served['errors'].items())})" if errors else ""
    mean_batch = statistics.mean(batches) if batches else float("nan")
    print(f"| {args.clients} | {served['wall_s']:.0f} | {served['requests']} | {errors}{detail} | "
          f"{served['p50_ms']:.0f} | {served['p99_ms']:.0f} | {served['throughput']:.1f} | {mean_batch:.1f} | "
          f"{offline:.1f} | {ratio:.2f} |")
    print(f"\ntarget server / offline >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'}")


if __name__ == "__main__":
    main()
