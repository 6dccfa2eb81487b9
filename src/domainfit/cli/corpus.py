"""The commands on unlabelled domain text: mine a pretraining corpus, inspect a corpus's domain shift.

domainfit mine POOL... (--config CONFIG | --task-texts FILE) --output corpus.txt   # kNN-TAPT corpus
domainfit inspect (CORPUS... | --config CONFIG) [--model NAME]                    # domain-shift diagnostics
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from domainfit.errors import DataError, DomainfitError


def _column(value: str) -> str | int:
    """``--text-column 0`` means the first column of a header-less table."""
    return int(value) if value.isdigit() else value


def _mine(args: argparse.Namespace) -> None:
    from domainfit.data.corpus import iter_texts, list_text_files
    from domainfit.mining import MiningOptions, load_task_texts, mine, write_mining_outputs
    from domainfit.models.embedding import SentenceEmbedder

    if (args.config is None) == (args.task_texts is None):
        raise DomainfitError(
            "give the task's texts with exactly one of --config CONFIG or --task-texts FILE",
            fix="--config reads them as `domainfit train` does (and excludes its validation/test "
            "texts); --task-texts takes a file with one text a line",
        )
    options = MiningOptions(
        k=args.k,
        max_total=args.max_total,
        chunk_size=args.chunk_size,
        min_chars=args.min_chars,
        n_examples=args.examples,
        seed=args.seed,
    )
    options.check()
    list_text_files(args.pool)  # fail on a bad pool path before loading anything
    output = Path(args.output).resolve()
    for folder in (Path(p).resolve() for p in args.pool if Path(p).is_dir()):
        if folder in output.parents:
            raise DomainfitError(
                f"the corpus {args.output} would be written inside the pool folder {folder}: the next "
                "run would read it (and mining.json) back as pool text",
                fix="write the corpus to a folder outside the pool",
            )
    if args.config:
        task_texts, held_out, info = load_task_texts(args.config)
    else:
        task_texts = [
            t.text
            for t in iter_texts([args.task_texts], text_column=_column(args.task_text_column), encoding=args.encoding)
        ]
        held_out, info = [], {"task_source": args.task_texts}
    for path in args.exclude:
        held_out += [
            t.text for t in iter_texts([path], text_column=_column(args.task_text_column), encoding=args.encoding)
        ]
    info["excluded_from"] = (["validation and test splits of the config"] if args.config else []) + list(args.exclude)
    embedder = SentenceEmbedder(
        args.model, batch_size=args.batch_size, max_length=args.max_length, text_prefix=args.text_prefix
    )
    pool = iter_texts(
        args.pool, text_column=_column(args.text_column), encoding=args.encoding, min_chars=args.min_chars
    )
    print(
        f"{len(task_texts)} task texts, {len(held_out)} held-out texts to exclude; scoring the pool ...",
        file=sys.stderr,
    )
    result = mine(
        pool,
        task_texts,
        embedder,
        exclude_texts=held_out,
        options=options,
        progress=lambda n: print(f"\r  {n} pool texts read", end="", file=sys.stderr, flush=True),
    )
    print(file=sys.stderr)
    corpus, json_path, md_path = write_mining_outputs(
        result, args.output, {"pool": list(args.pool), "embedding_model": args.model, **info}
    )
    s, sel, rnd = result.stats, result.stats["similarity_selected"], result.stats["similarity_random_pool_sample"]
    print(
        f"selected {s['selected']} of {s['pool_texts_scored']} pool texts (k={s['k']}); "
        f"excluded as leakage: {s['excluded_as_leakage']}"
    )
    if sel and rnd:
        print(
            f"similarity to the nearest task text: selected min/median/max {sel['min']:.3f}/{sel['median']:.3f}/"
            f"{sel['max']:.3f}; random pool sample {rnd['min']:.3f}/{rnd['median']:.3f}/{rnd['max']:.3f}"
        )
    print(f"Corpus: {corpus}   Report: {md_path}")


def _inspect(args: argparse.Namespace) -> None:
    from domainfit.data.corpus import SourcedText, iter_texts, sample_texts
    from domainfit.evaluation.diagnostics import format_summary, inspect_corpus, write_inspect_outputs
    from domainfit.mining import load_task_texts

    if bool(args.corpus) == bool(args.config):
        raise DomainfitError(
            "give either corpus files/folders or --config CONFIG (not both, not neither)",
            fix="e.g. `domainfit inspect notes.txt --model minilm` or `domainfit inspect --config run.yaml`",
        )
    if args.sample < 1 or args.mlm_sample < 0:
        raise DomainfitError(
            f"--sample must be >= 1 and --mlm-sample >= 0, found {args.sample} and {args.mlm_sample}",
            fix="e.g. --sample 500 --mlm-sample 50",
        )
    model = args.model
    if args.config:
        from domainfit.config import load_config

        cfg = load_config(args.config)
        model = model or cfg.model.name
        texts = load_task_texts(args.config)[0]
        stream = (SourcedText(t, args.config, i) for i, t in enumerate(texts, start=1))
        corpus = f"train split of {args.config}"
    else:
        stream = iter_texts(args.corpus, text_column=_column(args.text_column), encoding=args.encoding)
        corpus = ", ".join(args.corpus)
    sample = [t.text for t in sample_texts(stream, args.sample, seed=args.seed)]
    if not sample:
        raise DataError(
            "the corpus holds no texts",
            path=args.corpus[0] if args.corpus else args.config,
            fix="check the path and --text-column",
        )
    metrics = {
        "corpus": corpus,
        "sample": len(sample),
        "seed": args.seed,
        **inspect_corpus(sample, model or "minilm", mlm_sample=args.mlm_sample),
    }
    out = Path(args.output or f"inspect-{Path(args.corpus[0] if args.corpus else args.config).stem}")
    _, md_path = write_inspect_outputs(metrics, out)
    print(format_summary(metrics))
    print(f"\nReport: {md_path}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the mine and inspect sub-commands to ``sub``, the parser's sub-parsers.

    Args:
        sub: what ``ArgumentParser.add_subparsers`` returned (:func:`domainfit.cli.app.build_parser`).
    """
    p = sub.add_parser(
        "mine", help="select the pool texts nearest your task's texts into a pretraining corpus (kNN-TAPT)"
    )
    p.add_argument(
        "pool", nargs="+", help="unlabelled pool: .txt (one text a line), .jsonl, .csv, .tsv files or folders"
    )
    p.add_argument(
        "--config", default=None, help="run config: mine for its training texts, exclude its validation/test texts"
    )
    p.add_argument(
        "--task-texts", default=None, help="instead of --config: a file of task texts (one a line, or .jsonl/.csv)"
    )
    p.add_argument(
        "--exclude", action="append", default=[], help="file of texts never to select (validation/test); repeatable"
    )
    p.add_argument(
        "--output", required=True, help="corpus file to write (mining.json and mining_report.md go next to it)"
    )
    p.add_argument("--k", type=int, default=20, help="pool texts taken per task text (default 20)")
    p.add_argument(
        "--max-total", type=int, default=None, help="cap on the corpus size (best-ranked neighbours kept first)"
    )
    p.add_argument(
        "--model", default="minilm", help="sentence-embedding model: name, folder or hub id (default minilm)"
    )
    p.add_argument("--text-prefix", default="", help="prepended to every text before embedding ('query: ' for e5)")
    p.add_argument("--text-column", default="text", help="JSON key / CSV column of the pool's text (0 = first column)")
    p.add_argument("--task-text-column", default="text", help="the same for --task-texts and --exclude files")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--chunk-size", type=int, default=1024, help="pool texts embedded and scored at a time")
    p.add_argument("--batch-size", type=int, default=64, help="texts per embedding forward pass")
    p.add_argument("--max-length", type=int, default=128, help="tokens per text for embedding (longer are truncated)")
    p.add_argument("--min-chars", type=int, default=10, help="skip pool texts shorter than this")
    p.add_argument("--examples", type=int, default=5, help="task texts shown with their neighbours in the report")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_mine)

    p = sub.add_parser("inspect", help="domain-shift diagnostics: [UNK] rate, fertility, split words, MLM perplexity")
    p.add_argument("corpus", nargs="*", help="text files or folders (.txt one text a line, .jsonl, .csv, .tsv)")
    p.add_argument(
        "--config", default=None, help="instead of files: the training texts (and model.name) of a run config"
    )
    p.add_argument(
        "--model", default=None, help="model name, folder or hub id (default: the config's model.name, or minilm)"
    )
    p.add_argument("--sample", type=int, default=500, help="random texts to measure (default 500)")
    p.add_argument("--mlm-sample", type=int, default=50, help="texts for the pseudo-perplexity (0 to skip)")
    p.add_argument("--text-column", default="text", help="JSON key / CSV column of the text (0 = first column)")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument(
        "--output", default=None, help="folder for inspect.json and inspect.md (default inspect-<corpus name>)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_inspect)
