"""Calibration before and after temperature scaling, for finished training runs (PhraseBank, Symptom2Disease).

    domainfit train benchmarks/phrasebank_bench.yaml output.dir=runs/cal-phrasebank
    domainfit train benchmarks/symptom2disease_bench.yaml output.dir=runs/cal-s2d
    .venv/bin/python benchmarks/bench_calibration.py runs/cal-phrasebank runs/cal-s2d [--json out.json]

Every single-label run scores its validation and test splits with the expected calibration error (15 bins)
as trained and after the temperature fitted on validation (``domainfit.tasks.trust``); this script reads the
figures from each run's ``metrics.json`` (the splits the run really used, including ones it split off itself)
and prints one Markdown table: accuracy, temperature, ECE before and after, and, when the run set
``evaluation.target_accuracy``, the abstention threshold's coverage and accuracy on that split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rows_of(run_dir: Path) -> list[list[str]]:
    """One table row per scored split of the run in ``run_dir``."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    rows = []
    for split in ("validation", "test"):
        scores = metrics.get(split)
        if not scores or "ece_calibrated" not in scores:
            continue
        chosen = scores.get("abstention") or {}
        coverage = (
            f"{chosen['coverage']:.3f} @ {chosen['accuracy']:.3f}"
            if chosen.get("min_confidence") is not None and chosen.get("accuracy") is not None
            else "-"
        )
        rows.append(
            [
                run_dir.name,
                split,
                str(scores["n"]),
                f"{scores['accuracy']:.4f}",
                f"{scores['temperature']:.3f}",
                f"{scores['ece']:.4f}",
                f"{scores['ece_calibrated']:.4f}",
                coverage,
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders written by `domainfit train`")
    parser.add_argument("--json", type=Path, default=None, help="also save the rows as JSON")
    args = parser.parse_args(argv)
    headers = ["run", "split", "n", "accuracy", "T", "ECE before", "ECE after", "abstention coverage @ accuracy"]
    rows = []
    for run in args.runs:
        if not (run / "metrics.json").is_file():
            print(f"{run}: no metrics.json (not a finished run)", file=sys.stderr)
            return 2
        found = rows_of(run)
        if not found:
            print(
                f"{run}: no calibration figures (a run from before calibration, or not single-label)", file=sys.stderr
            )
            return 2
        rows += found
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(headers) - 2)) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(headers, row)) for row in rows], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
