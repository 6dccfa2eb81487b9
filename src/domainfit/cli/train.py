"""The commands that train: train, pretrain, pipeline, tune, federate and demo.

    domainfit train CONFIG [--resume] [key=value ...]
    domainfit pretrain CONFIG [--resume] [key=value ...]
    domainfit pipeline CONFIG [key=value ...]
    domainfit tune CONFIG [key=value ...] [--no-retrain]
    domainfit federate CONFIG [key=value ...] [--resume | --deploy-app DIR]
    domainfit demo [--data-dir DIR] [key=value ...]

The console command runs these on mimalloc (``TRAINING_COMMANDS``, domainfit/allocator.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
        from domainfit.errors import ConfigError
        from domainfit.federated.deploy import write_app

        if args.resume:
            raise ConfigError(
                "--resume continues a simulated federation; --deploy-app writes a deployment's app",
                fix="use one of them: a deployed server run that stopped is started again with flwr run.",
            )

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
    run_federation(cfg, args.config, resume=args.resume)
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the train, pretrain, pipeline, tune, federate and demo sub-commands to ``sub``, the parser's sub-parsers.

    Args:
        sub: what ``ArgumentParser.add_subparsers`` returned (:func:`domainfit.cli.app.build_parser`).
    """
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
    p.add_argument(
        "--resume", action="store_true", help="continue a stopped federation in output_dir after its last round"
    )
    p.set_defaults(func=_federate)

    p = sub.add_parser("demo", help="fine-tune the packaged MiniLM on Financial PhraseBank and print test metrics")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    p.add_argument(
        "--data-dir", default=None, help="folder holding financial_phrasebank/ (default: search, then download)"
    )
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=_demo)


# commands that train, and so run on mimalloc (domainfit/allocator.py)
TRAINING_COMMANDS = (_train, _pretrain, _pipeline, _tune, _demo, _federate)
