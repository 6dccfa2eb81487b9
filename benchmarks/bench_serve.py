"""Load test of `domainfit serve`: N concurrent clients for T seconds, against offline prediction.

    .venv/bin/python benchmarks/bench_serve.py --model-dir /tmp/pb/model --clients 200 --seconds 60

Starts `domainfit serve MODEL_DIR` on a free loopback port (its own process, as in production), then runs
``--clients`` clients for ``--seconds`` seconds, each posting one PhraseBank test sentence per request, back
to back, on its own keep-alive HTTP/1.1 connection. Reports requests, errors (any non-200 or failed request),
p50/p99 latency and throughput; then stops the server (SIGTERM). Offline throughput on the same texts is measured
in this process before the server starts and again after it stops (``--repeats`` runs each; the figure is the
median of all, so a machine whose speed drifts during the test is judged on both sides of it): the
``Predictor.predict`` call that `domainfit predict` makes (model loading and file I/O not counted), with the same
backend. The ratio server/offline is the issue's figure (target: >= 0.7).

The clients are raw HTTP/1.1 over asyncio streams in this one process, not httpx: they share the cores with
the server, and 200 httpx clients cost about 11 ms of CPU per request (its connection pool scans every
connection for every request), several times what the server spends on the text; these cost about 0.1 ms.
The report gives the CPU each side used per request, and the load average, so the figure can be judged.

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
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "financial_phrasebank" / "split_seed42" / "test.csv"


def ensure_model(model_dir: str | None) -> Path:
    if model_dir:
        return Path(model_dir)
    out = Path("/tmp/pb")
    if not (out / "model" / "config.json").is_file():
        config = REPO / "src" / "domainfit" / "configs" / "phrasebank.yaml"
        subprocess.run(
            [sys.executable, "-m", "domainfit", "train", str(config), f"output.dir={out}", "train.epochs=1"],
            check=True,
            cwd=REPO,
        )
    return out / "model"


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def start_server(model_dir: Path, flags: list[str], log: Path) -> tuple[subprocess.Popen, str, list[int]]:
    """`domainfit serve` with its JSON log in a file (a pipe would fill up and stall the server). Returns the
    process, its URL, and the pids whose CPU is the server's (itself and its model process, if any)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "domainfit", "serve", str(model_dir), "--port", "0", *flags],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )
    deadline = time.monotonic() + 300
    url, pids = None, [proc.pid]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server ended with {proc.returncode}:\n{log.read_text()}")
        if url is None:
            for line in log.read_text().splitlines():
                record = json.loads(line) if line.startswith("{") else {}
                if record.get("event") == "listening":
                    url = record["url"]
                    pids += [record["model_process"]] if record.get("model_process") else []
        elif is_ready(url):
            return proc, url, pids
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not get ready in 300 s")


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read the status and the whole response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        try:
            return await asyncio.wait_for(self._read_response(), timeout)
        except BaseException:
            self.close()  # a half-read response would garble the next one on this connection
            raise

    async def _read_response(self) -> tuple[int, bytes]:
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        if "content-length" not in headers:
            raise ConnectionError("response without Content-Length")
        payload = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load_test(url: str, texts: list[str], clients: int, seconds: float, max_requests: int) -> dict:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    bodies = [json.dumps({"texts": [text]}).encode() for text in texts]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds

    async def one_client(offset: int) -> None:
        nonlocal sent
        connection = Connection(host, int(port))
        i = offset
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            start = time.perf_counter()
            try:
                status, payload = await connection.post("/predict", bodies[i % len(bodies)], timeout=60)
                if status == 200 and b'"predictions"' in payload:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                asyncio.TimeoutError,
                ValueError,
            ) as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            i += clients
        connection.close()

    cpu_before = time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(one_client(c) for c in range(clients)))
    wall = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": sent,
        "ok": len(latencies),
        "errors": errors,
        "wall_s": wall,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        "throughput": len(latencies) / wall,
        "client_cpu_s": time.process_time() - cpu_before,
    }


def offline_throughput(model_dir: Path, texts: list[str], backend: str, repeats: int) -> tuple[list[float], str]:
    """Texts per second of ``Predictor.predict`` over all the texts (``repeats`` runs after a warm-up)."""
    sys.path.insert(0, str(REPO / "src"))
    import domainfit

    predictor = domainfit.load(model_dir, backend=backend)
    predictor.predict(texts[:64])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    return rates, predictor.backend


def busy_cores() -> float:
    return os.getloadavg()[0]


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the server process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=None, help="a text model folder (default: train PhraseBank MiniLM)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CSV with a text column (PhraseBank test split)")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--backend", default="auto")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="`domainfit serve --max-batch-size` (default: the server's own)",
    )
    parser.add_argument("--max-wait-ms", type=float, default=None, help="`domainfit serve --max-wait-ms`")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="`domainfit serve --threads` (the offline run keeps `domainfit predict`'s own setting)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="offline runs (median)")
    parser.add_argument(
        "server_flags", nargs="*", help="more `domainfit serve` flags, after --, e.g. -- --max-queue 1000"
    )
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.seconds > 600:
        raise SystemExit("--clients must be >= 1 and --seconds in (0, 600]")

    model_dir = ensure_model(args.model_dir)
    texts = read_texts(Path(args.data))
    flags = ["--backend", args.backend, "--max-queue", str(max(256, 2 * args.clients))]
    for flag, value in (
        ("--max-batch-size", args.max_batch_size),
        ("--max-wait-ms", args.max_wait_ms),
        ("--threads", args.threads),
    ):
        if value is not None:
            flags += [flag, str(value)]
    flags += args.server_flags
    offline_before, _ = offline_throughput(model_dir, texts, args.backend, args.repeats)
    load_before = busy_cores()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        proc, url, pids = start_server(model_dir, flags, log)
        server_cpu_ready = sum(server_cpu_s(pid) for pid in pids)
        try:
            served = asyncio.run(load_test(url, texts, args.clients, args.seconds, args.max_requests))
            load_during = busy_cores()
            server_cpu = sum(server_cpu_s(pid) for pid in pids) - server_cpu_ready
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    batches = [line["batch_size"] for line in lines if "batch_size" in line]
    offline_after, backend = offline_throughput(model_dir, texts, args.backend, args.repeats)
    offline = statistics.median(offline_before + offline_after)
    load_after = busy_cores()
    ratio = served["throughput"] / offline

    print(
        f"\n{datetime.date.today().isoformat()}  {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs; load average (1 min) before {load_before:.1f}, at the end of the "
        f"load test {load_during:.1f}, after the offline run {load_after:.1f}; backend {backend}; server "
        f"exit code on SIGTERM {code}"
    )
    print(f"server: domainfit serve {' '.join(flags)}" + (" (model in a worker process)" if len(pids) > 1 else ""))
    ok = max(served["ok"], 1)
    print(
        f"CPU per answered request during the load test: server {1000 * server_cpu / ok:.2f} ms, clients "
        f"{1000 * served['client_cpu_s'] / ok:.2f} ms (this machine's {os.cpu_count()} CPUs give "
        f"{1000 * os.cpu_count() * served['wall_s'] / ok:.2f} ms per request at this throughput)"
    )
    print(f"model {model_dir}; {len(texts)} texts from {args.data}, one per request")
    print(
        f"offline texts/s, median before the load test {statistics.median(offline_before):.1f}, after "
        f"{statistics.median(offline_after):.1f} (the table's figure: the median of all {2 * args.repeats} runs)\n"
    )
    print(
        "| clients | seconds | requests | errors | p50 latency ms | p99 latency ms | server texts/s "
        "| mean batch size a request ran in | offline predict texts/s | server / offline |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    errors = sum(served["errors"].values())
    detail = f" ({', '.join(f'{k}: {v}' for k, v in served['errors'].items())})" if errors else ""
    mean_batch = statistics.mean(batches) if batches else float("nan")
    print(
        f"| {args.clients} | {served['wall_s']:.0f} | {served['requests']} | {errors}{detail} | "
        f"{served['p50_ms']:.0f} | {served['p99_ms']:.0f} | {served['throughput']:.1f} | {mean_batch:.1f} | "
        f"{offline:.1f} | {ratio:.2f} |"
    )
    print(f"\ntarget server / offline >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'}")


if __name__ == "__main__":
    main()
