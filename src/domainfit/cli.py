"""The ``domainfit`` command.

    domainfit demo                                   # fine-tune the packaged MiniLM on Financial PhraseBank
    domainfit train CONFIG [--resume] [key=value ...]
    domainfit pretrain CONFIG [--resume] [key=value ...]   # continued MLM/CLM pretraining on domain text
    domainfit pipeline CONFIG [key=value ...]        # pretrain -> fine-tune -> compare with the baseline, resumable
    domainfit tune CONFIG [key=value ...] [--no-retrain]   # hyperparameter search (Optuna), resumable
    domainfit federate CONFIG [key=value ...] [--deploy-app DIR]   # federated fine-tuning (Flower);
                                                                   # DIR: a real deployment
    domainfit evaluate MODEL_DIR DATA [--output DIR]
    domainfit stress MODEL_DIR DATA [--output DIR] [--perturbations a,b] [--no-record]   # invariance tests
    domainfit predict MODEL_DIR INPUT --output OUT.csv
    domainfit export MODEL_DIR
    domainfit explain MODEL_DIR INPUT [--method ig|grad-x-input|grad-cam] [--output out.html|out.json]   # why
    domainfit serve MODEL_DIR [--port 8000] [--api-key KEY]  # HTTP server: /predict, a try-it page, /metrics
    domainfit config                                 # every config key with its default and meaning
    domainfit tasks | models                         # the registered tasks; the built-in (offline) model names
    domainfit mine POOL... (--config CONFIG | --task-texts FILE) --output corpus.txt   # kNN-TAPT corpus
    domainfit inspect (CORPUS... | --config CONFIG) [--model NAME]                    # domain-shift diagnostics

User errors (bad config, bad data, missing model) print one message and exit 2; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

from domainfit.errors import DataError, DomainfitError
from domainfit.version import __version__

EXIT_USER_ERROR = 2


def _train_and_report(cfg, *, resume: bool) -> None:
    from domainfit.training import train

    train(cfg, resume=resume)
    print(f"\nDone. Model: {Path(cfg.output.dir) / 'model'}   Report: {Path(cfg.output.dir) / 'report.md'}")


def _pipeline(args: argparse.Namespace) -> None:
    from domainfit.pipeline import load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(args.config, args.overrides)
    run_pipeline(cfg)
    print(f"\nDone. Report: {Path(cfg.output_dir) / 'report.md'}   Lineage: {Path(cfg.output_dir) / 'pipeline.json'}")


def _tune(args: argparse.Namespace) -> None:
    from domainfit.tune import load_tune_config, run_tune

    cfg = load_tune_config(args.config, args.overrides)
    try:
        run_tune(cfg, retrain=not args.no_retrain)
    except KeyboardInterrupt:
        print(
            "\ninterrupted. Finished trials are kept in study.db: run the same command again to continue "
            "(the running trial resumes from its last checkpoint).",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    out = Path(cfg.output_dir)
    print(f"\nDone. Report: {out / 'report.md'}   Best config: {out / 'best.yaml'}")


def _federate(args: argparse.Namespace) -> None:
    from domainfit.config.federate import load_federate_config
    from domainfit.federated.simulation import run_federation

    if args.deploy_app:
        from domainfit.federated.deploy import write_app

        cfg = load_federate_config(args.config, args.overrides, deployed=True)
        app = write_app(cfg, args.config, args.deploy_app, args.overrides)
        print(
            f"Wrote the Flower app {app}. Run (docs/federated.md, section Deployment; --insecure only for a "
            "loopback test, see there for TLS):\n"
            "  server:  flower-superlink --insecure --disable-runtime-dependency-installation\n"
            + "".join(
                f"  site {name}:  flower-supernode --insecure --superlink SERVER:9092 "
                f'--node-config \'site="{name}" data="{cfg.sites[name]}"\'\n'
                for name in cfg.sites
            )
            + f"  run (on the server, with a [superlink.domainfit] connection in ~/.flwr/config.toml):  "
            f"flwr run {app} domainfit --stream"
        )
        return
    cfg = load_federate_config(args.config, args.overrides)
    run_federation(cfg, args.config)
    print(f"\nDone. Global model: {Path(cfg.output_dir) / 'model'}   Report: {Path(cfg.output_dir) / 'report.md'}")


def _train(args: argparse.Namespace) -> None:
    from domainfit.tasks import load_run_config as load_config

    cfg = load_config(args.config, args.overrides)
    _train_and_report(cfg, resume=args.resume)


def _pretrain(args: argparse.Namespace) -> None:
    from domainfit.config import load_pretrain_config
    from domainfit.training.pretrain import pretrain

    cfg = load_pretrain_config(args.config, args.overrides)
    pretrain(cfg, resume=args.resume)
    print(f"\nDone. Model: {Path(cfg.output.dir) / 'model'}   Report: {Path(cfg.output.dir) / 'report.md'}")


def _demo(args: argparse.Namespace) -> None:
    from importlib import resources

    from domainfit.data.sources import locate
    from domainfit.tasks import load_run_config as load_config

    data_file = locate("financial_phrasebank", args.data_dir)
    print(f"Financial PhraseBank: {data_file}")
    config = resources.files("domainfit") / "configs" / "phrasebank.yaml"
    overrides = [f"data.train={data_file}", *args.overrides]
    cfg = load_config(Path(str(config)), overrides)
    _train_and_report(cfg, resume=args.resume)


def _read_inputs(
    path: str,
    args: argparse.Namespace,
    *,
    require_labels: bool,
    read_labels: bool = True,
    group_column: str | None = None,
):
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


def _predict(args: argparse.Namespace) -> None:
    import domainfit
    from domainfit.serving.files import check_input_file, check_output_file, write_output
    from domainfit.serving.generator import predict_file, read_generation_settings
    from domainfit.serving.image_predictor import is_image_model_dir, predict_images_command

    if is_image_model_dir(args.model_dir):  # inputs are image files and folders
        predict_images_command(
            args.model_dir,
            [args.input, *args.more_inputs],
            args.output,
            batch_size=args.batch_size,
            backend=args.backend,
            min_confidence=args.min_confidence,
        )
        return
    if read_generation_settings(args.model_dir) is not None:  # generation model: JSONL/TXT in, JSONL out
        n = predict_file(
            args.model_dir, args.input, args.output, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
        )
        print(f"{n} generations -> {args.output}")
        return
    if args.more_inputs or not args.output:
        raise DomainfitError(
            "a text model takes one input file and --output", fix="domainfit predict MODEL_DIR in.csv --output out.csv"
        )
    check_input_file(args.input)
    out = check_output_file(args.output)  # before reading and predicting, which can take hours
    # predict never uses a label column, so it is not read (a multi-label file holds lists there)
    examples = _read_inputs(args.input, args, require_labels=False, read_labels=False)
    predictor = domainfit.load(
        args.model_dir, backend=args.backend, max_chars=args.max_chars, min_confidence=args.min_confidence
    )
    if getattr(predictor, "task", None) == "token-classification":  # entity spans: JSON Lines (or CSV)
        from domainfit.serving.token_predictor import write_span_predictions

        n = write_span_predictions(predictor, [e.text for e in examples], out, args.batch_size)
        print(f"{n} texts' entities -> {args.output}")
        return
    results = predictor.predict([e.text for e in examples], batch_size=args.batch_size)
    from domainfit.serving.multilabel_predictor import MultiLabelPredictor, write_predictions_csv

    if isinstance(predictor, MultiLabelPredictor):  # a set of labels per text: text, labels, p_<label>...
        write_predictions_csv(out, [e.text for e in examples], results, predictor)
        print(f"{len(results)} predictions ({predictor.backend}) -> {out}")
        return
    with write_output(out, newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "score", *[f"p_{label}" for label in predictor.labels]])
        for e, r in zip(examples, results):
            w.writerow(
                [e.text, r["label"], f"{r['score']:.6f}", *[f"{r['probabilities'][l]:.6f}" for l in predictor.labels]]
            )
    print(f"{len(results)} predictions ({predictor.backend}) -> {out}")


def _evaluate(args: argparse.Namespace) -> None:
    import domainfit
    from domainfit.evaluation.calibration_report import trust_metrics, trust_sections
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
    examples = _read_inputs(args.data, args, require_labels=True, group_column=args.group_column)
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
    try:
        out.mkdir(parents=True, exist_ok=True)
        summary = {"data": args.data, "model": args.model_dir, **metrics}
        write_text_atomic(out / "metrics.json", json.dumps(summary, indent=1, ensure_ascii=False))
        report = {
            "title": f"Evaluation of {args.model_dir} on {args.data}",
            "split_name": Path(args.data).name,
            "context": {"model": args.model_dir, "data": args.data, "backend": predictor.backend},
        }
        write_report(out, metrics, **report, extra_sections=trust_sections(out, metrics, Path(args.data).name))
        write_html_report(out, metrics, **report)  # report.html beside report.md
    except OSError as e:  # a full disk: say so, not a traceback
        raise output_error(e, out / "metrics.json") from e
    print(format_metrics_table(metrics))
    print(f"\nReport: {out / 'report.md'} (and report.html)")


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
    examples = _read_inputs(args.data, args, require_labels=True)
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


def _export(args: argparse.Namespace) -> None:
    from domainfit.export import export_model
    from domainfit.export.registry import folder_task

    options: dict[str, object] = {"quantize": not args.no_quantize}
    if args.parity_data and folder_task(args.model_dir) == "image-classification":
        from domainfit.serving.image_predictor import expand_image_inputs

        options["parity_images"] = expand_image_inputs([args.parity_data])  # a folder of images, or one image
    elif args.parity_data:
        from domainfit.serving.files import check_input_file

        check_input_file(args.parity_data)
        options["parity_texts"] = [e.text for e in _read_inputs(args.parity_data, args, require_labels=False)]
    export_model(args.model_dir, **options)


def _explain(args: argparse.Namespace) -> None:
    from domainfit.evaluation.explain import check_method
    from domainfit.evaluation.explain_report import output_format, write_explanations
    from domainfit.serving.explain import explain, spec_for_folder
    from domainfit.serving.files import check_input_file, check_output_file

    # every check before the model is loaded and the gradients run
    spec = spec_for_folder(args.model_dir)
    method = check_method(args.method or spec.methods[0], spec.methods)
    if args.steps < 1:
        raise DomainfitError(f"--steps must be a positive integer, got {args.steps}", fix="e.g. --steps 50")
    out = None
    if args.output is not None:
        output_format(args.output)
        out = check_output_file(args.output)
    if spec.inputs == "images":
        from domainfit.serving.image_predictor import expand_image_inputs

        items: list = expand_image_inputs([args.input])  # an image file, or a folder of them
    else:
        check_input_file(args.input)
        items = [e.text for e in _read_inputs(args.input, args, require_labels=False, read_labels=False)]
    results = explain(args.model_dir, items, method=method, n_steps=args.steps)
    if out is not None:
        write_explanations(
            out,
            results,
            title=f"Explanations of {args.model_dir} on {args.input}",
            images=items if spec.inputs == "images" else None,
        )
        print(f"{len(results)} {spec.inputs} explained ({method}) -> {out}")
        return
    for result in results:  # no --output: each label (entity) with its five strongest words, or the map's peak
        for e in result["explanations"]:
            if "heatmap" in e:
                import numpy as np

                heat = np.asarray(e["heatmap"])
                row, col = np.unravel_index(int(heat.argmax()), heat.shape)
                print(
                    f"{e['label']}\t{e['probability']:.4f}\tpeak at x={col / heat.shape[1]:.2f} "
                    f"y={row / heat.shape[0]:.2f} of the image\t{result['image']}"
                )
                continue
            top = sorted(e["words"], key=lambda w: -abs(w["score"]))[:5]
            words = ", ".join(f"{w['word']} {w['score']:+.3f}" for w in top)
            label = f"{e['label']} {e['entity']['text']!r}" if "entity" in e else e["label"]
            print(f"{label}\t{e['probability']:.4f}\t{words}\t{result['text'][:60]}")


def _serve(args: argparse.Namespace) -> None:
    from domainfit.serving.server import API_KEY_ENV, ServerSettings, serve

    settings = ServerSettings(
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_bytes=args.max_body_bytes,
        max_items=args.max_items,
        max_text_chars=args.max_text_chars,
        api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV),
        graceful_timeout_s=args.graceful_timeout,
    )
    serve(
        args.model_dir,
        settings,
        host=args.host,
        port=args.port,
        backend=args.backend,
        num_threads=args.threads,
        min_confidence=args.min_confidence,
    )


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


def _config(args: argparse.Namespace) -> None:
    from domainfit.config import describe_fields

    for key, default, help in describe_fields():
        print(f"{key:32} {default:12} {help}")


def _tasks(args: argparse.Namespace) -> None:
    from domainfit.tasks import TASKS

    for name in TASKS.names():
        doc = (TASKS.get(name).__doc__ or "").strip().splitlines()
        print(f"{name:28} {doc[0] if doc else ''}")


def _models(args: argparse.Namespace) -> None:
    from domainfit.models.causal_lm import GGUF_MODELS
    from domainfit.models.loading import BUILTIN_MODELS
    from domainfit.tasks.image_classification import BUILTIN_IMAGE_MODELS

    rows = [(name, "text tasks", about) for name, (about, _) in BUILTIN_MODELS.items()]
    rows += [(name, "image-classification", about) for name, about in BUILTIN_IMAGE_MODELS.items()]
    rows += [(name, "generation", about) for name, (_, _, about) in GGUF_MODELS.items()]
    for name, use, about in rows:
        print(f"{name:20} {use:22} {about}")
    print("\nAlso: any Hugging Face model id (when the hub is reachable or cached) or a local model folder.")


def _add_reading_options(p: argparse.ArgumentParser) -> None:
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


def _add_max_chars(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-chars",
        type=_positive_int,
        default=None,
        help="cut each text to this many characters before tokenising, so one huge text cannot "
        "take all the memory; the count cut is logged (default: 16 per token of the "
        "model's max_length, 128 times that for models that read whole texts in windows; "
        "text models)",
    )


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def _probability(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}")
    return number


def _add_min_confidence(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-confidence",
        type=_probability,
        default=None,
        help="single-label models: answer 'abstain' (route to a person) when the top probability "
        "is below this (default: the model's own, chosen for evaluation.target_accuracy)",
    )


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    from domainfit.data.perturb import PERTURBATIONS  # pure Python: the names for --help

    parser = argparse.ArgumentParser(
        prog="domainfit", description="Adapt pretrained transformers to your domain's data."
    )
    parser.add_argument("--version", action="version", version=f"domainfit {__version__}")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never touch the network: a model that is not a local folder, a built-in name or already "
        "in the Hugging Face cache fails at once with what to do (also: DOMAINFIT_OFFLINE=1 or "
        "HF_HUB_OFFLINE=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune from a YAML config")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. train.learning_rate=3e-5")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in output.dir")
    p.set_defaults(func=_train)

    p = sub.add_parser("pretrain", help="continue pretraining (masked or causal LM) on unlabelled domain text")
    p.add_argument("config", help="YAML pretraining config (see docs/pretraining.md)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. train.max_steps=2000")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in output.dir")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("pipeline", help="pretrain -> fine-tune -> evaluate, with a no-pretraining baseline, over seeds")
    p.add_argument("config", help="YAML pipeline config (see docs/pretraining.md)")
    p.add_argument("overrides", nargs="*", help="top-level overrides, e.g. seeds=[42,43,44] output_dir=runs/p2")
    p.set_defaults(func=_pipeline)

    p = sub.add_parser("tune", help="hyperparameter search over a run config (Optuna): pruning, best config")
    p.add_argument("config", help="YAML tune config: run config, search space, trials (see docs/tune.md)")
    p.add_argument("overrides", nargs="*", help="top-level overrides, e.g. trials=30 output_dir=runs/tune2")
    p.add_argument(
        "--no-retrain",
        action="store_true",
        help="write best.yaml and the report, but do not train the best config again (no test score)",
    )
    p.set_defaults(func=_tune)

    p = sub.add_parser("federate", help="federated fine-tuning: N sites train locally, a Flower strategy averages")
    p.add_argument("config", help="YAML federate config (see docs/federated.md)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rounds=5 strategy=fedprox")
    p.add_argument(
        "--deploy-app",
        metavar="DIR",
        default=None,
        help="do not simulate: write the Flower app "
        "of a real deployment (flower-superlink, one flower-supernode per site, flwr run DIR)",
    )
    p.set_defaults(func=_federate)

    p = sub.add_parser("demo", help="fine-tune the packaged MiniLM on Financial PhraseBank and print test metrics")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    p.add_argument(
        "--data-dir", default=None, help="folder holding financial_phrasebank/ (default: search, then download)"
    )
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=_demo)

    p = sub.add_parser("evaluate", help="score a trained model on a labelled file")
    p.add_argument("model_dir")
    p.add_argument("data")
    p.add_argument(
        "--output",
        default=None,
        help="folder for metrics.json and report.md (default: "
        "eval-<data name>); if it exists, those files in it are replaced",
    )
    _add_reading_options(p)
    _add_max_chars(p)
    p.add_argument(
        "--group-column",
        default=None,
        help="column (JSON key) naming each record's group "
        "(hospital, region, ...): every score per group and the gaps between groups",
    )
    p.add_argument(
        "--max-gap",
        type=_probability,
        default=0.1,
        help="with --group-column: flag a score whose largest gap between groups exceeds this (default 0.1)",
    )
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
    _add_reading_options(p)
    _add_max_chars(p)
    p.set_defaults(func=_stress)

    p = sub.add_parser("predict", help="label every text of a file, or every image given")
    p.add_argument("model_dir")
    p.add_argument("input")
    p.add_argument("more_inputs", nargs="*", help="image models: more image files or folders")
    p.add_argument(
        "--output",
        default=None,
        help="file to write: CSV text (or path), label, score, p_<label>...; "
        "token classification: JSON Lines of entity spans (CSV if the name ends in .csv); generation: JSONL; "
        "required for text models, image models print to the terminal without it",
    )
    _add_reading_options(p)
    _add_max_chars(p)
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation models: longest response in tokens")
    _add_min_confidence(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("export", help="write ONNX (fp32 + int8) into the model folder, with a parity check")
    p.add_argument("model_dir")
    p.add_argument("--no-quantize", action="store_true")
    p.add_argument(
        "--parity-data", default=None, help="file of texts for the parity check (image models: a folder of images)"
    )
    _add_reading_options(p)
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "explain",
        help="which words made a text classifier choose its label, which words made "
        "an entity, which regions an image's label (HTML or JSON)",
    )
    p.add_argument("model_dir")
    p.add_argument(
        "input",
        help="file of texts (CSV, TSV, JSON Lines, JSON or Parquet; --text-column); image "
        "models: an image file or a folder of images",
    )
    p.add_argument(
        "--method",
        default=None,
        help="text and token classification: ig (Integrated Gradients, "
        "default) or grad-x-input (faster); image models: grad-cam (default)",
    )
    p.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps (default 50)")
    p.add_argument(
        "--output",
        default=None,
        help="out.html (highlighted texts) or out.json (words and scores); "
        "without it, each text's strongest words are printed",
    )
    _add_reading_options(p)
    p.set_defaults(func=_explain)
    p = sub.add_parser("serve", help="serve a model over HTTP: POST /predict, a try-it page at /, /docs, /metrics")
    p.add_argument("model_dir")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: this machine only; 0.0.0.0 for every interface)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (0 picks a free one; the log says which)")
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' (or X-API-Key) on "
        "/predict, /explain and /metrics (default: the DOMAINFIT_API_KEY environment variable, if set)",
    )
    p.add_argument("--backend", default="auto", help="as for predict: auto, torch, torch-bf16, onnx, onnx-int8, ...")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for the model")
    p.add_argument("--max-batch-size", type=_positive_int, default=32, help="most texts/images per model call")
    p.add_argument(
        "--max-wait-ms",
        type=_non_negative_float,
        default=5.0,
        help="how long a request may wait for others to share its batch (default 5)",
    )
    p.add_argument(
        "--max-queue", type=_positive_int, default=256, help="requests waiting for the model; more are answered 429"
    )
    p.add_argument("--max-body-bytes", type=_positive_int, default=2_000_000, help="largest request body (413 beyond)")
    p.add_argument("--max-items", type=_positive_int, default=64, help="most texts or images in one request")
    p.add_argument("--max-text-chars", type=_positive_int, default=20_000, help="longest text in characters")
    p.add_argument(
        "--graceful-timeout",
        type=_non_negative_float,
        default=30.0,
        help="on SIGTERM, seconds in-flight requests may take to finish",
    )
    _add_min_confidence(p)
    p.set_defaults(func=_serve)

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

    p = sub.add_parser("config", help="list every config key with its default and meaning")
    p.set_defaults(func=_config)
    sub.add_parser("tasks", help="list the tasks (task: ...)").set_defaults(func=_tasks)
    sub.add_parser("models", help="list the built-in model names (model.name: ...)").set_defaults(func=_models)
    return parser


def _quiet_transformers() -> None:
    """Keep the terminal to our progress bar and results: no weight-loading reports or shard bars."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def go_offline() -> None:
    """Make every Hugging Face library fail at once instead of trying the network (air-gapped machines)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"


def _quiet_other_processes() -> None:
    """Under ``torchrun`` / ``accelerate launch`` the main process speaks for all (progress, logs, metrics,
    user errors); the others keep only errors, so a run reads as it does in one process."""
    if os.environ.get("WORLD_SIZE", "1") == "1":
        return  # one process (importing training here would load torch for every command)
    from domainfit.training.distributed import is_main_process

    if not is_main_process():
        logging.getLogger().setLevel(logging.ERROR)
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  for the process's life


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if args.offline or os.environ.get("DOMAINFIT_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        go_offline()  # before anything imports huggingface_hub, which reads these once
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "accelerate", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        if argv is None and args.func in TRAINING_COMMANDS:  # the console command, not a library call
            from domainfit.allocator import reexec_on_mimalloc

            reexec_on_mimalloc(sys.argv[1:])  # before torch is imported: nothing of this process is kept
        _quiet_transformers()
        _quiet_other_processes()
        args.func(args)
    except DomainfitError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process meets the same error: rank 0 says it
            print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted. Checkpoints are kept: add --resume to continue.", file=sys.stderr)
        return 130
    return 0


# commands that train, and so run on mimalloc (domainfit/allocator.py)
TRAINING_COMMANDS = (_train, _pretrain, _pipeline, _tune, _demo, _federate)

if __name__ == "__main__":
    sys.exit(main())
