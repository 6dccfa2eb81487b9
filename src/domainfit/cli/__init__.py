"""The ``domainfit`` command.

    domainfit demo                                   # fine-tune the packaged MiniLM on Financial PhraseBank
    domainfit train CONFIG [--resume] [key=value ...]
    domainfit pretrain CONFIG [--resume] [key=value ...]   # continued MLM/CLM pretraining on domain text
    domainfit pipeline CONFIG [key=value ...]        # pretrain -> fine-tune -> compare with the baseline, resumable
    domainfit tune CONFIG [key=value ...] [--no-retrain]   # hyperparameter search (Optuna), resumable
    domainfit federate CONFIG [key=value ...] [--deploy-app DIR]   # federated fine-tuning (Flower); DIR: deployed app
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

``app.py`` assembles the parser and runs a command; each other module holds one group of sub-commands and
registers their parsers with its ``add_commands``: ``train.py`` (train, pretrain, pipeline, tune, federate,
demo), ``evaluate.py`` (evaluate, stress), ``deploy.py`` (predict, export, explain, serve), ``corpus.py``
(mine, inspect), ``reference.py`` (config, tasks, models); ``options.py`` holds the options they share.
"""

from domainfit.cli.app import build_parser, go_offline, main

__all__ = ["build_parser", "go_offline", "main"]
