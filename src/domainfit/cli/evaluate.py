"""The commands that score a trained model on labelled data: evaluate and stress.

domainfit evaluate MODEL_DIR DATA [--output DIR] [--group-column COLUMN] [--against OTHER_MODEL_DIR]
domainfit stress MODEL_DIR DATA [--output DIR] [--perturbations a,b] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from domainfit.cli.options import add_max_chars, add_reading_options, positive_int, probability, read_inputs
from domainfit.errors import DataError, DomainfitError


def _evaluate(args: argparse.Namespace) -> None:
    import domainfit
    from domainfit.evaluation.calibration_report import trust_metrics, trust_sections
    from domainfit.evaluation.comparison_report import comparison_section, verdict
    from domainfit.evaluation.html_report import write_html_report
    from domainfit.evaluation.report import format_metrics_table, write_report
    from domainfit.io.atomic import write_text_atomic
    from domainfit.metrics.classification import classification_metrics
    from domainfit.metrics.errors import error_examples
    from domainfit.serving import multilabel_predictor as ml
    from domainfit.serving.files import check_input_file, check_output_folder, output_error
    from domainfit.serving.model_folder import check_model_dir

    task = ml.read_task(check_model_dir(args.model_dir))
    if task not in ("text-classification", ml.TASK):
        raise DomainfitError(
            f"`domainfit evaluate` scores text and multi-label classifiers; {args.model_dir} is a {task} model",
            path=args.model_dir,
            fix="retrain with the labelled file as data.test (its run folder then holds metrics.json and "
            "report.md for it), or use `domainfit predict` and score the output yourself.",
        )
    check_input_file(args.data)
    # an existing folder is written into as predict replaces an existing file: its metrics.json and report.md
    # are replaced, each whole; checked here, before reading the data and predicting
    out = check_output_folder(args.output or f"eval-{Path(args.data).stem}")
    if args.against is not None:
        _check_against(args, task)
    if args.group_column is not None:
        if task == ml.TASK:
            raise DomainfitError(
                "--group-column is for single-label text models; this is a multi-label model",
                path=args.model_dir,
                fix="drop --group-column.",
            )
        from domainfit.metrics.slices import import_metric_frame

        import_metric_frame()  # before the data is read and predicted: fairlearn may be missing
    if task == ml.TASK:  # label sets: its own scores and report
        metrics = ml.evaluate_file(
            args.model_dir,
            args.data,
            out,
            backend=args.backend,
            batch_size=args.batch_size,
            max_chars=args.max_chars,
            format=args.format,
            text_column=args.text_column,
            label_column=args.label_column,
            separator=args.separator,
            encoding=args.encoding,
            header=not args.no_header,
        )
        print(
            f"micro F1 {metrics['f1_micro']:.4f}  macro F1 {metrics['f1_macro']:.4f}  "
            f"Hamming loss {metrics['hamming_loss']:.4f}\nReport: {out / 'report.md'}"
        )
        return
    examples = read_inputs(args.data, args, require_labels=True, group_column=args.group_column)
    predictor = domainfit.load(args.model_dir, backend=args.backend, max_chars=args.max_chars)
    known = {label: i for i, label in enumerate(predictor.labels)}
    for e in examples:
        if e.label not in known:
            raise DataError(
                f"label {e.label!r} is not one the model knows ({', '.join(predictor.labels)})",
                path=args.data,
                line=e.line,
                column=args.label_column,
                fix="evaluate on data labelled with the model's label set, or retrain with this label.",
            )
    probs = predictor.predict_proba([e.text for e in examples], batch_size=args.batch_size)
    gold = [known[e.label] for e in examples]
    metrics = classification_metrics(gold, probs.argmax(1).tolist(), predictor.labels)
    metrics["errors"] = error_examples([e.text for e in examples], gold, probs, predictor.labels)
    groups = [e.group for e in examples] if args.group_column else None
    metrics.update(trust_metrics(probs, gold, predictor, groups, args.group_column, args.max_gap))
    comparison = None
    if args.against is not None:
        comparison = _compare(args, examples, gold, probs.argmax(1).tolist(), predictor.labels)
        metrics["comparison"] = comparison
    try:
        out.mkdir(parents=True, exist_ok=True)
        summary = {"data": args.data, "model": args.model_dir, **metrics}
        write_text_atomic(out / "metrics.json", json.dumps(summary, indent=1, ensure_ascii=False))
        report = {
            "title": f"Evaluation of {args.model_dir} on {args.data}",
            "split_name": Path(args.data).name,
            "context": {"model": args.model_dir, "data": args.data, "backend": predictor.backend},
        }
        sections = trust_sections(out, metrics, Path(args.data).name)
        if comparison is not None:
            sections.append(comparison_section(comparison, Path(args.data).name))
        write_report(out, metrics, **report, extra_sections=sections)
        write_html_report(out, metrics, **report)  # report.html beside report.md
    except OSError as e:  # a full disk: say so, not a traceback
        raise output_error(e, out / "metrics.json") from e
    print(format_metrics_table(metrics))
    if comparison is not None:
        print(f"\n{verdict(comparison)}")
    print(f"\nReport: {out / 'report.md'} (and report.html)")


def _check_against(args: argparse.Namespace, task: str) -> None:
    """Refuse --against, before anything is read or predicted, unless both folders hold text classifiers of
    the same labels."""
    from domainfit.serving import multilabel_predictor as ml
    from domainfit.serving.model_folder import check_model_dir, read_labels

    other = ml.read_task(check_model_dir(args.against))
    if task != "text-classification" or other != "text-classification":
        raise DomainfitError(
            f"--against compares two single-label text classifiers; {args.model_dir} is a {task} model and "
            f"{args.against} a {other} model",
            path=args.against if task == "text-classification" else args.model_dir,
            fix="give the model folders of two text-classification runs, or drop --against.",
        )
    labels, other_labels = read_labels(Path(args.model_dir)), read_labels(Path(args.against))
    if sorted(labels) != sorted(other_labels):
        raise DomainfitError(
            f"{args.against} knows the labels {', '.join(other_labels)}; {args.model_dir} knows "
            f"{', '.join(labels)}: they cannot be compared on one labelled file",
            path=args.against,
            fix="compare two models trained on the same label set.",
        )


def _compare(
    args: argparse.Namespace, examples: list, gold: list[int], predicted: list[int], labels: list[str]
) -> dict:
    """Predict ``examples`` with the --against model and compare it with ``predicted`` by a paired bootstrap."""
    import domainfit
    from domainfit.metrics.paired_bootstrap import paired_bootstrap

    other = domainfit.load(args.against, backend=args.backend, max_chars=args.max_chars)  # labels: checked
    position = {label: i for i, label in enumerate(labels)}  # the other model's ids -> this model's
    probs = other.predict_proba([e.text for e in examples], batch_size=args.batch_size)
    other_predicted = [position[other.labels[i]] for i in probs.argmax(1).tolist()]
    result = paired_bootstrap(gold, predicted, other_predicted, len(labels), resamples=args.resamples, seed=args.seed)
    return {"against": args.against, **result}


def _stress(args: argparse.Namespace) -> None:
    import domainfit
    from domainfit.evaluation.robustness import robustness_rows, robustness_section
    from domainfit.io.atomic import write_text_atomic
    from domainfit.serving import multilabel_predictor as ml
    from domainfit.serving.files import check_input_file, check_output_folder, output_error
    from domainfit.serving.model_folder import check_model_dir
    from domainfit.serving.stress import (
        STRESS_NAME,
        STRESS_REPORT_NAME,
        check_labels,
        check_perturbations,
        select_perturbations,
        stress_test,
    )
    from domainfit.serving.stress_record import open_run_record, record_stress

    # every check before the model is loaded
    names = None if args.perturbations is None else [n.strip() for n in args.perturbations.split(",") if n.strip()]
    check_perturbations(names)
    task = ml.read_task(check_model_dir(args.model_dir))
    if task != "text-classification":
        raise DomainfitError(
            f"`domainfit stress` tests single-label text classifiers; {args.model_dir} is a {task} model",
            path=args.model_dir,
            fix="give the model folder of a text-classification run.",
        )
    check_input_file(args.data)
    out = check_output_folder(args.output or f"stress-{Path(args.data).stem}")
    examples = read_inputs(args.data, args, require_labels=True)
    perturbations, skipped = select_perturbations(names, [e.text for e in examples])
    with open_run_record(args.model_dir, record=not args.no_record) as run:  # locked until recorded
        predictor = domainfit.load(args.model_dir, backend=args.backend, max_chars=args.max_chars)
        check_labels(
            [e.label for e in examples],
            predictor.labels,
            [e.line for e in examples],
            path=args.data,
            column=args.label_column,
        )
        result = {
            "model": args.model_dir,
            "data": args.data,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "backend": predictor.backend,
            **stress_test(
                predictor,
                [e.text for e in examples],
                [e.label for e in examples],
                perturbations=perturbations,
                seed=args.seed,
                batch_size=args.batch_size,
            ),
            "skipped": skipped,
        }
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / STRESS_NAME, json.dumps(result, indent=1, ensure_ascii=False))
            title = f"# Robustness of {args.model_dir} on {args.data}"
            write_text_atomic(out / STRESS_REPORT_NAME, title + "\n\n" + robustness_section(result) + "\n")
        except OSError as e:  # a full disk: say so, not a traceback
            raise output_error(e, out / STRESS_NAME) from e
        recorded = record_stress(run, result, predictor.labels) if run is not None else []
    print(f"{'perturbation':16} {'changed':>8} {'flips':>6} {'flip rate':>9} {'acc drop':>9}")
    for name, changed, flips, flip_rate, _, _, drop in robustness_rows(result):
        print(f"{name:16} {changed:>8} {flips:>6} {flip_rate:>9} {drop:>9}")
    print(f"\nReport: {out / STRESS_REPORT_NAME}")
    if recorded:
        print(f"Recorded in the run: {', '.join(str(path) for path in recorded)}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the evaluate and stress sub-commands to ``sub``, the parser's sub-parsers.

    Args:
        sub: what ``ArgumentParser.add_subparsers`` returned (:func:`domainfit.cli.app.build_parser`).
    """
    from domainfit.data.perturb import PERTURBATIONS  # pure Python: the names for --help

    p = sub.add_parser("evaluate", help="score a trained model on a labelled file")
    p.add_argument("model_dir")
    p.add_argument("data")
    p.add_argument(
        "--output",
        default=None,
        help="folder for metrics.json and report.md (default: "
        "eval-<data name>); if it exists, those files in it are replaced",
    )
    add_reading_options(p)
    add_max_chars(p)
    p.add_argument(
        "--group-column",
        default=None,
        help="column (JSON key) naming each record's group "
        "(hospital, region, ...): every score per group and the gaps between groups",
    )
    p.add_argument(
        "--max-gap",
        type=probability,
        default=0.1,
        help="with --group-column: flag a score whose largest gap between groups exceeds this (default 0.1)",
    )
    p.add_argument(
        "--against",
        default=None,
        metavar="OTHER_MODEL_DIR",
        help="also predict DATA with this model (a text classifier with the same labels) and say whether "
        "MODEL_DIR is really above or below it: every score's difference with a paired-bootstrap interval, "
        "in the report and metrics.json ('comparison')",
    )
    p.add_argument(
        "--resamples",
        type=positive_int,
        default=10_000,
        help="with --against: bootstrap resamples (default 10000)",
    )
    p.add_argument("--seed", type=int, default=0, help="with --against: seed of the resampling (default 0)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "stress",
        help="invariance stress test of a text classifier: typos, casing, punctuation, "
        "numbers, Chinese script/width/homophones",
    )
    p.add_argument("model_dir")
    p.add_argument("data", help="labelled file, read as evaluate reads it")
    p.add_argument(
        "--output",
        default=None,
        help="folder for stress.json and stress.md (default: "
        "stress-<data name>); if it exists, those files in it are replaced",
    )
    p.add_argument(
        "--perturbations",
        default=None,
        help="comma-separated names (default: those for the "
        "data's script, Latin or Chinese, whose extra is installed): " + ", ".join(PERTURBATIONS.names()),
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbations (default 0)")
    p.add_argument(
        "--no-record",
        action="store_true",
        help="do not record the results in the training run "
        "around MODEL_DIR (by default, when MODEL_DIR is a run's model/ folder, they go into its "
        "metrics.json under 'stress', and its model card, report.md and report.html are "
        "written again)",
    )
    add_reading_options(p)
    add_max_chars(p)
    p.set_defaults(func=_stress)
