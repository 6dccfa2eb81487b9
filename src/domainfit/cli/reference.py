"""The commands that list what a config can name: config keys, tasks, built-in models.

domainfit config | tasks | models
"""

from __future__ import annotations

import argparse


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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the config, tasks and models sub-commands to ``sub``, the parser's sub-parsers.

    Args:
        sub: what ``ArgumentParser.add_subparsers`` returned (:func:`domainfit.cli.app.build_parser`).
    """
    p = sub.add_parser("config", help="list every config key with its default and meaning")
    p.set_defaults(func=_config)
    sub.add_parser("tasks", help="list the tasks (task: ...)").set_defaults(func=_tasks)
    sub.add_parser("models", help="list the built-in model names (model.name: ...)").set_defaults(func=_models)
