"""What several sub-commands share: the options that read an input file, and the argument types.

A command that reads a labelled or unlabelled file (evaluate, stress, predict, export, explain) takes the same
``--format``/``--text-column``/... options (:func:`add_reading_options`) and reads it with :func:`read_inputs`.
"""

from __future__ import annotations

import argparse


def read_inputs(
    path: str,
    args: argparse.Namespace,
    *,
    require_labels: bool,
    read_labels: bool = True,
    group_column: str | None = None,
):
    """The examples of ``path``, read as the command's reading options (:func:`add_reading_options`) say."""
    from domainfit.data.readers import read_examples

    return read_examples(
        path,
        format=args.format,
        text_column=args.text_column,
        label_column=args.label_column if read_labels else None,
        separator=args.separator,
        encoding=args.encoding,
        header=not args.no_header,
        require_labels=require_labels,
        group_column=group_column,
    )


def add_reading_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reading the input file")
    g.add_argument("--format", default="auto", help="auto, csv, tsv, jsonl, json, parquet or delimited")
    # A number given with --no-header is a 0-based column index (the reader turns "0" into 0 there).
    g.add_argument(
        "--text-column", default="text", help="column or JSON key of the text (with --no-header: a 0-based number)"
    )
    g.add_argument(
        "--label-column", default="label", help="column or JSON key of the label (with --no-header: a 0-based number)"
    )
    g.add_argument("--separator", default=None, help="field separator (needed for delimited text)")
    g.add_argument("--encoding", default="utf-8")
    g.add_argument("--no-header", action="store_true", help="CSV/TSV without a header row (columns by index)")
    g.add_argument("--batch-size", type=int, default=None, help="texts per batch (default: best for the backend)")
    g.add_argument(
        "--backend",
        default="auto",
        help="auto, torch, torch-bf16, onnx, onnx-int8, torch-bf16+onnx (batches on bf16 torch, single texts on ONNX)",
    )


def add_max_chars(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-chars",
        type=positive_int,
        default=None,
        help="cut each text to this many characters before tokenising, so one huge text cannot "
        "take all the memory; the count cut is logged (default: 16 per token of the "
        "model's max_length, 128 times that for models that read whole texts in windows; "
        "text models)",
    )


def add_min_confidence(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-confidence",
        type=probability,
        default=None,
        help="single-label models: answer 'abstain' (route to a person) when the top probability "
        "is below this (default: the model's own, chosen for evaluation.target_accuracy)",
    )


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def probability(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}")
    return number


def non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return number
