"""Data for the Chinese pretraining ablation (``pretraining_zh.yaml``): the task's own splits as text files,
and a corpus mined (kNN-TAPT) from a mixed unlabelled pool.

    PYTHONPATH=src python benchmarks/ablation/prepare_zh.py          # ~3 min on 1 core; writes runs/ablation-zh-data

Splits come from domainfit's own loader with the ablation's fine-tune config and overrides, so the files hold
exactly what the fine-tunes see:

- ``train_all.txt``: every training-split query (labels dropped): the curated TAPT corpus and the joint
  objective's unlabelled stream. ``task_train.txt``: the 1,000 labelled queries the fine-tunes learn from.
- ``val.txt``: the validation split (model selection; also the pretraining stages' held-out perplexity).
  ``test.txt``: the test split (KUAKE-QIC_dev.json), never read by any pretraining stage.

Pool for mining, one file per source (``pool/``): the blind official test queries (in domain, unlabelled; not
the test split used here) and ChnSentiCorp hotel/product reviews (Chinese, another domain). ``domainfit mine``
embeds both with e5 and keeps the ``--k`` nearest pool texts of each labelled query; its mining.json says how many
came from each source.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "datasets"


def write_lines(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(t.split()) + "\n" for t in texts), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "src/domainfit/configs/kuake_qic_e5.yaml")
    parser.add_argument(
        "--task-size", type=int, default=1000, help="labelled training queries (data.max_train_samples)"
    )
    parser.add_argument("--k", type=int, default=3, help="pool texts mined per labelled query")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ablation-zh-data")
    args = parser.parse_args()

    from domainfit.config import load_config
    from domainfit.tasks import create_task

    cfg = load_config(args.config)
    full = create_task(cfg.task).load_data(cfg).splits
    task = (
        create_task(cfg.task).load_data(load_config(args.config, [f"data.max_train_samples={args.task_size}"])).splits
    )
    write_lines(args.out / "train_all.txt", [e.text for e in full["train"]])
    write_lines(args.out / "task_train.txt", [e.text for e in task["train"]])
    write_lines(args.out / "val.txt", [e.text for e in full["validation"]])
    write_lines(args.out / "test.txt", [e.text for e in full["test"]])
    blind = json.loads((DATA / "cblue_kuake_qic" / "KUAKE-QIC_test.json").read_text(encoding="utf-8"))
    write_lines(args.out / "pool" / "kuake_blind_test_queries.txt", [r["query"] for r in blind])
    with open(DATA / "chnsenticorp" / "train.tsv", encoding="utf-8") as f:  # text<TAB>label, no header
        reviews = [line.rsplit("\t", 1)[0] for line in f if line.strip()]
    write_lines(args.out / "pool" / "chnsenticorp_reviews.txt", reviews)
    print(
        f"train {len(full['train'])} (labelled for the fine-tunes: {len(task['train'])}), validation "
        f"{len(full['validation'])}, test {len(full['test'])}; pool: {len(blind)} blind KUAKE queries, "
        f"{len(reviews)} reviews"
    )
    cmd = [
        sys.executable,
        "-m",
        "domainfit",
        "mine",
        str(args.out / "pool"),
        "--task-texts",
        str(args.out / "task_train.txt"),
        "--exclude",
        str(args.out / "val.txt"),
        "--exclude",
        str(args.out / "test.txt"),
        "--exclude",
        str(args.out / "train_all.txt"),
        "--model",
        cfg.model.name,
        "--text-prefix",
        cfg.model.text_prefix,
        "--max-length",
        "128",
        "--k",
        str(args.k),
        "--output",
        str(args.out / "mined" / "corpus.txt"),
    ]
    print(" ".join(cmd[2:]), flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
