"""The commands that put a trained model to work: predict, export, explain and serve.

domainfit predict MODEL_DIR INPUT --output OUT.csv
domainfit export MODEL_DIR
domainfit explain MODEL_DIR INPUT [--method ig|grad-x-input|grad-cam] [--output out.html|out.json]
domainfit serve MODEL_DIR [--port 8000] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import csv
import os

from domainfit.cli.options import (
    add_max_chars,
    add_min_confidence,
    add_reading_options,
    non_negative_float,
    positive_int,
    read_inputs,
)
from domainfit.errors import DomainfitError


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
    examples = read_inputs(args.input, args, require_labels=False, read_labels=False)
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
        options["parity_texts"] = [e.text for e in read_inputs(args.parity_data, args, require_labels=False)]
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
        items = [e.text for e in read_inputs(args.input, args, require_labels=False, read_labels=False)]
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
        model_process=args.model_process,
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the predict, export, explain and serve sub-commands to ``sub``, the parser's sub-parsers.

    Args:
        sub: what ``ArgumentParser.add_subparsers`` returned (:func:`domainfit.cli.app.build_parser`).
    """
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
    add_reading_options(p)
    add_max_chars(p)
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation models: longest response in tokens")
    add_min_confidence(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("export", help="write ONNX (fp32 + int8) into the model folder, with a parity check")
    p.add_argument("model_dir")
    p.add_argument("--no-quantize", action="store_true")
    p.add_argument(
        "--parity-data", default=None, help="file of texts for the parity check (image models: a folder of images)"
    )
    add_reading_options(p)
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
    add_reading_options(p)
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
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for the model")
    p.add_argument("--max-batch-size", type=positive_int, default=128, help="most texts/images per model call")
    p.add_argument(
        "--max-wait-ms",
        type=non_negative_float,
        default=5.0,
        help="how long a request may wait for others to share its batch (default 5)",
    )
    p.add_argument(
        "--max-queue", type=positive_int, default=256, help="requests waiting for the model; more are answered 429"
    )
    p.add_argument("--max-body-bytes", type=positive_int, default=2_000_000, help="largest request body (413 beyond)")
    p.add_argument("--max-items", type=positive_int, default=64, help="most texts or images in one request")
    p.add_argument("--max-text-chars", type=positive_int, default=20_000, help="longest text in characters")
    p.add_argument(
        "--graceful-timeout",
        type=non_negative_float,
        default=30.0,
        help="on SIGTERM, seconds in-flight requests may take to finish",
    )
    p.add_argument(
        "--model-process",
        choices=("auto", "on", "off"),  # serving.model_process.MODEL_PROCESS (not imported: the CLI starts fast)
        default="auto",
        help="run the model in a worker process, apart from the server's event loop (auto: for the eager "
        "PyTorch backends, whose Python-side work would hold the GIL; text, multi-label, NER and image models)",
    )
    add_min_confidence(p)
    p.set_defaults(func=_serve)
