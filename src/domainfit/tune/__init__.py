"""Hyperparameter search over an ordinary run config, on Optuna: trials, pruning, best config, report.

    domainfit tune src/domainfit/configs/tune_phrasebank.yaml [key=value ...] [--no-retrain]

A tune config names a run config (``config:``, plus ``overrides`` applied to every trial) and a search space
of its dotted keys (``train.learning_rate: {low: 1e-5, high: 1e-3, log: true}``, ``train.batch_size:
{choices: [16, 32]}``). Trial 0 is the run config's own values, so the report can say whether the search
beat the default. Every trial is an ordinary ``domainfit train`` run folder (``output_dir/trials/NNN``),
scored by the validation ``metric`` of the checkpoint the run selects (the one it ships).

Pruning without touching the training loop: tune registers a listener with ``training.events``, which the
loop calls after every evaluation's checkpoint. It reports the evaluation to Optuna and, when the pruner says
so, stops the run as Ctrl-C would (the run folder records ``interrupted``), before the next batch. Running
trials epoch by epoch with ``--resume`` was the alternative, but the stretched learning-rate schedule would
make a trial another run than the config it reports, and every stage would test and save a model.

Trials live in SQLite (``output_dir/study.db``), so a killed command is continued by running it again:
finished trials are kept, and a trial that was running is resumed from its run folder's last checkpoint
(the same Optuna trial, the same parameters). A rerun under other settings (space, metric, run config)
is refused. At the end: ``best.yaml`` (the best trial's resolved run config), one retraining on it into
``output_dir/best/`` (its test score is the one to quote), ``report.md``, ``history.png`` and
``importance.png`` (fANOVA).
"""

from domainfit.tune.config import Param, TuneConfig, import_optuna, load_tune_config
from domainfit.tune.report import format_tune_report, format_verdict
from domainfit.tune.study import run_tune

__all__ = [
    "Param",
    "TuneConfig",
    "format_tune_report",
    "format_verdict",
    "import_optuna",
    "load_tune_config",
    "run_tune",
]
