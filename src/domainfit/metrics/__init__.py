"""Scores of predictions against labels, one module per kind of output (pure: numpy, scikit-learn, seqeval).

Below the tasks, so each task computes its own metrics; reports that present them live in ``evaluation``.
``classification.register_selection_metric`` makes a metric usable as ``train.best_metric``.
"""
