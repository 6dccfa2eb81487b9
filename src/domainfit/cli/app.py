"""Run one ``domainfit`` sub-command: the parser, logging, and a user error as one message with exit code 2.

    domainfit [--offline] COMMAND ...

The sub-commands come from the modules beside this one, each adding its own with ``add_commands``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from domainfit.cli import corpus, deploy, evaluate, reference, train
from domainfit.cli.train import TRAINING_COMMANDS
from domainfit.errors import DomainfitError
from domainfit.version import __version__

EXIT_USER_ERROR = 2
# in the order `domainfit --help` lists their sub-commands
COMMAND_GROUPS = (train, evaluate, deploy, corpus, reference)


def build_parser() -> argparse.ArgumentParser:
    """The ``domainfit`` parser: the global options, then each group's sub-commands (``COMMAND_GROUPS``)."""
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
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
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


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, but ``key=value`` overrides may also follow a flag (``train cfg.yaml --resume
    train.epochs=5``): argparse ends a command's positional overrides at the first flag, and its intermixed
    parsing does not work with sub-commands."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv[1:]``, the console command).

    Returns:
        The exit code: 0, 2 for a user error (:class:`~domainfit.errors.DomainfitError`, one message on
        stderr), 130 when interrupted.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(build_parser(), argv)
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
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun / accelerate launch: leave the group together
            from domainfit.training.distributed import end_processes

            end_processes()
    except DomainfitError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process meets the same error: rank 0 says it
            print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted. Checkpoints are kept: add --resume to continue.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `domainfit tasks | head`: the reader has gone, which is no error of ours
        # Python would report the failed flush of stdout at exit: point it at devnull (Python's docs, "signal")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
