r"""Turn Symptom2Disease (symptom descriptions labelled with one of 24 diseases) into instruction/response JSONL.

    python scripts/symptom2disease_to_instructions.py \
        ../shared/datasets/symptom2disease/Symptom2Disease.csv ~/data/s2d-gen

Each row becomes {"instruction": "Which disease do these symptoms most likely indicate?", "input": <the
patient's own description>, "response": "These symptoms most likely indicate <disease>."}. The response is a
template sentence around the dataset's label, so the task is really diagnosis phrased as generation: it
exercises the generation pipeline on real clinical-style text, and exact match / ROUGE-L measure whether the
disease is named. Texts are deduplicated first (the CSV repeats 47 of 1,200), then split 80/10/10 per disease
with a fixed seed, so no description is in two splits. Writes train.jsonl, validation.jsonl, test.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections import defaultdict
from pathlib import Path

INSTRUCTION = "Which disease do these symptoms most likely indicate?"
RESPONSE = "These symptoms most likely indicate {disease}."


def convert(
    csv_path: Path, out_dir: Path, *, seed: int = 42, fractions: tuple[float, float] = (0.1, 0.1)
) -> dict[str, int]:
    """Write the three JSONL files; returns the number of examples in each."""
    by_disease: dict[str, list[str]] = defaultdict(list)
    seen = set()
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text, disease = row["text"].strip(), row["label"].strip()
            key = " ".join(text.lower().split())
            if text and disease and key not in seen:
                seen.add(key)
                by_disease[disease].append(text)
    rng = random.Random(seed)
    splits: dict[str, list[dict[str, str]]] = {"train": [], "validation": [], "test": []}
    for disease in sorted(by_disease):
        texts = by_disease[disease]
        rng.shuffle(texts)
        n_val, n_test = (max(1, round(fr * len(texts))) for fr in fractions)
        parts = {"validation": texts[:n_val], "test": texts[n_val : n_val + n_test], "train": texts[n_val + n_test :]}
        for name, part in parts.items():
            splits[name] += [
                {"instruction": INSTRUCTION, "input": t, "response": RESPONSE.format(disease=disease)} for t in part
            ]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        rng.shuffle(rows)
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return {name: len(rows) for name, rows in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="Symptom2Disease.csv (columns index,label,text)")
    parser.add_argument("out_dir", type=Path, help="folder for train/validation/test.jsonl (outside the repo)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    counts = convert(args.csv, args.out_dir, seed=args.seed)
    print(", ".join(f"{name}: {n}" for name, n in counts.items()), f"-> {args.out_dir}")


if __name__ == "__main__":
    main()
