"""The ``domainfit`` command is assembled from one module per group of sub-commands (``domainfit/cli/``): each
sub-command is added by exactly one group, the commands that train are the ones run on mimalloc, and the
console script and ``python -m domainfit`` reach the same ``main``."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from domainfit.cli.app import COMMAND_GROUPS, TRAINING_COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
# what `domainfit --help` lists, in its order
COMMANDS = [
    "train",
    "pretrain",
    "pipeline",
    "tune",
    "federate",
    "demo",
    "evaluate",
    "stress",
    "predict",
    "export",
    "explain",
    "serve",
    "mine",
    "inspect",
    "config",
    "tasks",
    "models",
]
TRAINING = {"train", "pretrain", "pipeline", "tune", "federate", "demo"}
# the least each command takes to parse
ARGUMENTS = {
    "train": ["c.yaml"],
    "pretrain": ["c.yaml"],
    "pipeline": ["c.yaml"],
    "tune": ["c.yaml"],
    "federate": ["c.yaml"],
    "evaluate": ["model", "data.csv"],
    "stress": ["model", "data.csv"],
    "predict": ["model", "in.csv"],
    "export": ["model"],
    "explain": ["model", "in.csv"],
    "serve": ["model"],
    "mine": ["pool.txt", "--output", "corpus.txt"],
}


def _added_by(group) -> list[str]:
    sub = argparse.ArgumentParser().add_subparsers()
    group.add_commands(sub)
    return list(sub.choices)


def test_every_command_is_added_by_exactly_one_group_in_the_help_order():
    added = [name for group in COMMAND_GROUPS for name in _added_by(group)]
    assert added == COMMANDS
    parser = build_parser()
    for name in COMMANDS:  # each handler lives in the module that adds its parser
        args = parser.parse_args([name, *ARGUMENTS.get(name, [])])
        owner = next(group for group in COMMAND_GROUPS if name in _added_by(group))
        assert args.func.__module__ == owner.__name__, name


def test_the_commands_that_train_are_the_ones_run_on_mimalloc():
    parser = build_parser()
    trains = {
        name for name in COMMANDS if parser.parse_args([name, *ARGUMENTS.get(name, [])]).func in TRAINING_COMMANDS
    }
    assert trains == TRAINING


def test_the_console_script_and_python_m_reach_main():
    # [project.scripts] (tomllib is Python 3.11+, and this is one line)
    script = re.search(r'^domainfit = "(.+)"$', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    module, _, name = script.group(1).partition(":")
    assert getattr(import_module(module), name) is import_module("domainfit.cli.app").main
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for entry in ("domainfit", "domainfit.cli"):
        proc = subprocess.run(
            [sys.executable, "-m", entry, "--help"], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert all(name in proc.stdout for name in COMMANDS)


def test_overrides_may_follow_a_flag_and_anything_else_is_refused(capsys):
    from domainfit.cli.app import build_parser, parse_args

    parser = build_parser()
    args = parse_args(parser, ["train", "c.yaml", "a.b=1", "--resume", "train.epochs=5"])
    assert args.resume and args.overrides == ["a.b=1", "train.epochs=5"]  # in the command line's order
    for argv in (["train", "c.yaml", "--resume", "--bogus"], ["train", "c.yaml", "--resume", "stray"]):
        with pytest.raises(SystemExit):
            parse_args(parser, argv)
        assert "unrecognized arguments" in capsys.readouterr().err
