"""Model health checks: catch a model that collapsed to one class before it ships looking fine.

    from domainfit.evaluation.health import check_predictions
    check_predictions(y_true, y_pred, labels)      # [] for a healthy model, else a list of warnings

A fine-tuning run can end with exit 0 and a plausible accuracy while the model answers one class for
everything: multilingual-e5-small on Chinese hotel reviews at learning rate 5e-5 reached accuracy 0.685 and
macro-F1 0.406, exactly what always answering the majority class scores. :func:`check_metrics` reads the
scored dict of a split (single-label, multi-label or entity metrics) and returns warnings, each a
JSON-serialisable dict with a ``code``, a plain-language ``message``, ``advice`` (likely causes and what to
try, naming config keys) and ``classes`` (the classes concerned, with their support):

- ``collapsed``: one class takes nearly all predictions (entities: none marked at all; multi-label: no
  label, or every label, given to every example).
- ``never_predicted``: classes present in the data that the model never answers.
- ``below_majority_baseline``: macro-F1 no better than always answering the most common class.
- ``near_chance``: macro-F1 within ``NEAR_CHANCE_MARGIN`` of chance, 1/k.

The training loop checks every validation with :class:`HealthMonitor` (a log warning and a progress-bar note
when the warnings change) and the reported split with :func:`run_warnings` (into ``metrics.json``); the
report and model card open with :func:`banner_sections`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from domainfit.metrics.classification import classification_metrics

if TYPE_CHECKING:
    from domainfit.config import RunConfig

log = logging.getLogger(__name__)

# Collapse: one class takes at least this share of all predictions...
COLLAPSE_SHARE = 0.95
# ...and at least this much more than its share of the data, so that a split which really is 96% one class,
# predicted well, is not called collapsed (a class it then never predicts is still reported).
COLLAPSE_EXCESS = 0.05
# Guessing in the class proportions scores macro-F1 1/k on any class balance (each class's precision and
# recall are its share), and always answering the majority class scores less (2p / (1 + p) / k). A model
# within this margin of 1/k has learned next to nothing.
NEAR_CHANCE_MARGIN = 0.05
# Fine-tuning a pretrained encoder uses 1e-5 to 1e-4 (BERT: 2e-5 to 5e-5); below this the advice blames a
# learning rate too low rather than too high.
LOW_LEARNING_RATE = 1e-5

# the progress-bar note per warning code (the log line has the details)
_SHORT = {
    "collapsed": "collapsed to one answer",
    "below_majority_baseline": "no better than majority",
    "near_chance": "near chance",
}


def check_predictions(
    y_true: Sequence[int], y_pred: Sequence[int], labels: list[str], *, cfg: RunConfig | None = None
) -> list[dict[str, Any]]:
    """Health warnings for single-label predictions (class ids) against gold class ids.

    Args:
        y_true: gold class ids, each an index into ``labels``.
        y_pred: predicted class ids, same length.
        labels: class names; position ``i`` names class id ``i``.
        cfg: the run's config, to tailor the advice (current values, remedies already on); optional.

    Returns:
        The warnings of :func:`check_metrics`; empty when the predictions look healthy.
    """
    return check_metrics(classification_metrics(y_true, y_pred, labels), cfg=cfg)


def check_metrics(metrics: dict[str, Any], *, cfg: RunConfig | None = None) -> list[dict[str, Any]]:
    """Health warnings for one scored split, of whichever task scored it.

    Args:
        metrics: a split's scores: ``classification_metrics`` (with ``confusion_matrix``), ``entity_metrics``
            (with ``gold_entities``) or ``multilabel_metrics`` (per-class ``predicted`` counts). Other dicts
            (generation) have no class predictions to check and give no warnings.
        cfg: the run's config, to tailor the advice; optional.

    Returns:
        Warnings, most serious first: dicts with ``code``, ``message``, ``advice`` (list of str) and
        ``classes`` ({class name: support}).
    """
    if "confusion_matrix" in metrics:
        return _single_label(metrics, cfg)
    if "gold_entities" in metrics:
        return _entities(metrics, cfg)
    per_class = metrics.get("per_class") or {}
    if per_class and all("predicted" in scores for scores in per_class.values()):
        return _multi_label(metrics, cfg)
    return []


def run_warnings(metrics: dict[str, Any], cfg: RunConfig | None = None) -> list[dict[str, Any]]:
    """:func:`check_metrics` on the reported split, each warning also logged (what ``metrics.json`` keeps)."""
    warnings = check_metrics(metrics, cfg=cfg)
    for warning in warnings:
        log.warning("%s", _log_text(warning))
    return warnings


class HealthMonitor:
    """Checks each validation during training; speaks only when the warnings change.

    A collapsed model usually stays collapsed for several evaluations: the warning is logged the first
    time, again only if it changes (another class, another check), and a line says when it clears.
    ``postfix`` holds a short note for the progress bar while a warning stands.

    Args:
        cfg: the run's config, to tailor the advice; optional.
    """

    def __init__(self, cfg: RunConfig | None = None) -> None:
        self.cfg = cfg
        self.postfix: dict[str, str] = {}
        self._state: tuple = ()

    def update(self, metrics: dict[str, Any], step: int) -> dict[str, str]:
        """Check one validation's scores; returns (and keeps) the progress-bar note, ``{}`` when healthy."""
        warnings = check_metrics(metrics, cfg=self.cfg)
        state = tuple((w["code"], tuple(w["classes"])) for w in warnings)
        if state != self._state:
            if warnings:
                log.warning("validation at step %d: %s", step, "\n".join(_log_text(w) for w in warnings))
            else:
                log.info("validation at step %d: the earlier warning no longer applies", step)
            self._state = state
        self.postfix = {"warning": _short(warnings[0])} if warnings else {}
        return self.postfix


def banner_sections(warnings: Sequence[dict[str, Any]]) -> list[str]:
    """The Markdown banner that opens report.md and the model card: ``[]`` without warnings, else one section.

    A blockquote with GitHub's CAUTION marker (drawn red there; elsewhere it reads as the word), the
    warnings in plain words, then the likely causes and what to try, without repeats.
    """
    if not warnings:
        return []
    lines = ["> [!CAUTION]", f"> ⚠️ **{_one_line(warnings[0]['message'])}**"]
    lines += [f">\n> {_one_line(w['message'])}" for w in warnings[1:]]
    advice = list(dict.fromkeys(a for w in warnings for a in w["advice"]))
    if advice:
        lines += [">", "> Likely causes, and what to try:", ">"]
        lines += [f"> - {_one_line(a)}" for a in advice]
    return ["\n".join(lines)]


# --- the checks ------------------------------------------------------------------------------------------


def _single_label(metrics: dict[str, Any], cfg: RunConfig | None) -> list[dict[str, Any]]:
    labels = list(metrics["labels"])
    matrix = np.asarray(metrics["confusion_matrix"], dtype=np.int64)  # (k, k): rows true, columns predicted
    k, n = len(labels), int(matrix.sum())
    if k < 2 or n == 0:
        return []
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)  # (k,) each
    never = {labels[i]: int(support[i]) for i in range(k) if support[i] > 0 and predicted[i] == 0}
    task = cfg.task if cfg is not None else "text-classification"
    warnings = []
    top = int(predicted.argmax())
    share = predicted[top] / n
    if share >= COLLAPSE_SHARE and share - support[top] / n >= COLLAPSE_EXCESS:
        answered = (
            f"for every one of the {n} examples"
            if predicted[top] == n
            else f"for {predicted[top]} of the {n} examples ({share:.1%})"
        )
        message = f"This model predicts only '{labels[top]}' {answered}: it has not learned to tell the classes apart."
        if never:
            message += f" {_never_text(never, 'never predicted')}."
        # imbalance explains a collapse onto the most common class, not onto a rarer one
        rare = never if support[top] == support.max() else {}
        warnings.append(
            _warning(
                "collapsed",
                message,
                {labels[top]: int(support[top]), **never},
                [_lr_high(cfg), _too_little(cfg), _imbalance(task, cfg, rare)],
            )
        )
    elif never:
        message = f"{_never_text(never, 'never predicted')}: the model does not answer {_them(never)} at all."
        rare = {name: count for name, count in never.items() if count < support.max()}
        warnings.append(
            _warning("never_predicted", message, never, [_imbalance(task, cfg, rare), _too_little(cfg), _lr_high(cfg)])
        )
    f1 = float(metrics["f1_macro"])
    majority = int(support.argmax())
    p = support[majority] / n
    majority_f1 = 2 * p / (1 + p) / k  # macro-F1 of always answering the majority class
    if f1 <= majority_f1 + 1e-6:
        message = (
            f"Macro-F1 is {f1:.3f}, no better than always answering '{labels[majority]}' "
            f"({majority_f1:.3f}, right {p:.1%} of the time)."
        )
        warnings.append(
            _warning(
                "below_majority_baseline",
                message,
                {labels[majority]: int(support[majority])},
                [_lr_high(cfg), _too_little(cfg), _check_labels()],
            )
        )
    elif f1 < 1 / k + NEAR_CHANCE_MARGIN:
        message = (
            f"Macro-F1 is {f1:.3f}, close to the {1 / k:.3f} that guessing in the class proportions "
            f"reaches with {k} classes."
        )
        warnings.append(_warning("near_chance", message, {}, [_too_little(cfg), _lr_high(cfg), _check_labels()]))
    return warnings


def _entities(metrics: dict[str, Any], cfg: RunConfig | None) -> list[dict[str, Any]]:
    per_class = metrics["per_class"]
    gold = int(metrics["gold_entities"])
    if gold > 0 and int(metrics["predicted_entities"]) == 0:
        message = f"This model marks no entities at all: it tags every word 'O' (the data holds {gold} entities)."
        support = {t: int(s["support"]) for t, s in per_class.items() if s["support"] > 0}
        return [
            _warning(
                "collapsed",
                message,
                support,
                [_lr_high(cfg), _too_little(cfg), _imbalance("token-classification", cfg, support)],
            )
        ]
    never = {t: int(s["support"]) for t, s in per_class.items() if s["support"] > 0 and s["predicted"] == 0}
    if never:
        message = (
            f"{_never_text(never, 'never marked', unit='entities')}: the model does not find {_them(never)} at all."
        )
        most = max(int(s["support"]) for s in per_class.values())
        rare = {name: count for name, count in never.items() if count < most}
        return [
            _warning(
                "never_predicted",
                message,
                never,
                [_imbalance("token-classification", cfg, rare), _too_little(cfg), _lr_high(cfg)],
            )
        ]
    return []


def _multi_label(metrics: dict[str, Any], cfg: RunConfig | None) -> list[dict[str, Any]]:
    per_class = metrics["per_class"]
    n = int(metrics["n"])
    support = {label: int(s["support"]) for label, s in per_class.items() if s["support"] > 0}
    if not support:
        return []
    task = "multi-label-classification"
    if all(s["predicted"] == 0 for s in per_class.values()):
        message = "This model gives no label to any example: every probability stays below its threshold."
        return [
            _warning("collapsed", message, support, [_imbalance(task, cfg, support), _too_little(cfg), _lr_high(cfg)])
        ]
    if all(s["predicted"] == n for s in per_class.values()):
        message = "This model gives every label to every example: it has not learned which labels apply."
        return [_warning("collapsed", message, support, [_lr_high(cfg), _too_little(cfg), _check_labels()])]
    never = {label: count for label, count in support.items() if per_class[label]["predicted"] == 0}
    if never:
        message = f"{_never_text(never, 'never given')}: the model does not give {_them(never)} to any example."
        rare = {name: count for name, count in never.items() if count < max(support.values())}
        return [
            _warning("never_predicted", message, never, [_imbalance(task, cfg, rare), _too_little(cfg), _lr_high(cfg)])
        ]
    return []


# --- advice ------------------------------------------------------------------------------------------------


def _lr_high(cfg: RunConfig | None) -> str | None:
    if cfg is not None and cfg.train.learning_rate < LOW_LEARNING_RATE:
        return None  # _too_little covers a low rate
    now = f" (now {cfg.train.learning_rate:g})" if cfg is not None else ""
    return (
        f"Learning rate too high: the weights overshoot and settle on one answer. Lower "
        f"`train.learning_rate`{now}, e.g. to 2e-5 (1e-5 for large multilingual models), or raise "
        "`train.warmup_ratio`."
    )


def _too_little(cfg: RunConfig | None) -> str:
    epochs = f" (now {cfg.train.epochs})" if cfg is not None else ""
    if cfg is not None and cfg.train.learning_rate < LOW_LEARNING_RATE:
        return (
            f"Learning rate too low: `train.learning_rate` is {cfg.train.learning_rate:g}, and the model "
            f"still answers from its starting point. Raise it to 2e-5 to 5e-5, or raise "
            f"`train.epochs`{epochs}."
        )
    return (
        f"Too little training (too few epochs, or a learning rate far below 1e-5): the "
        f"model still answers from its starting point. Raise `train.epochs`{epochs}."
    )


def _check_labels() -> str:
    return (
        "Labels that do not follow from the inputs: check a few training examples in `data.train` "
        "against their labels (and that `data.label_column` names the label column)."
    )


def _imbalance(task: str, cfg: RunConfig | None, classes: dict[str, int]) -> str | None:
    if not classes:
        return None
    rare = ", ".join(f"'{c}'" for c in list(classes)[:5]) + (" ..." if len(classes) > 5 else "")
    if task == "text-classification":
        reg = cfg.regularization if cfg is not None else None
        remedies = []
        if reg is None or reg.class_weights == "none":
            remedies.append("`regularization.class_weights: balanced`")
        if reg is None or not reg.oversample:
            remedies.append("`regularization.oversample: true`")
        if reg is None or reg.objective != "focal":
            remedies.append("`regularization.objective: focal`")
        if remedies:
            listed = ", ".join(remedies[:-1]) + f" or {remedies[-1]}" if len(remedies) > 1 else remedies[0]
            return (
                f"Class imbalance: rare classes ({rare}) lose to common ones. Try {listed}, or add "
                "labelled examples of them."
            )
        return (
            f"Class imbalance: class weights, oversampling and the focal loss are already on; add examples of {rare}."
        )
    if task == "multi-label-classification":
        if cfg is None or not cfg.multi_label.pos_weight:
            return (
                f"Rare labels ({rare}): their few positives lose to the many negatives. Try "
                "`multi_label.pos_weight: true`, or add examples that have them."
            )
        return f"Rare labels ({rare}): `multi_label.pos_weight` is already on; add examples that have them."
    if task == "token-classification":
        return f"Rare entity types ({rare}): add annotated sentences that contain them."
    # image classification: its loss takes no class weights (regularization.* applies to text)
    return f"Class imbalance: rare classes ({rare}) lose to common ones; add examples of them."


# --- wording -------------------------------------------------------------------------------------------


def _warning(code: str, message: str, classes: dict[str, int], advice: list[str | None]) -> dict[str, Any]:
    return {"code": code, "message": message, "advice": list(dict.fromkeys(a for a in advice if a)), "classes": classes}


def _never_text(never: dict[str, int], verb: str, *, unit: str = "examples") -> str:
    named = [f"'{name}' ({count} {unit})" for name, count in never.items()]
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + f" and {named[-1]}"
    return f"{listed} {'is' if len(named) == 1 else 'are'} {verb}"


def _them(never: dict[str, int]) -> str:
    return "it" if len(never) == 1 else "them"


def _short(warning: dict[str, Any]) -> str:
    if warning["code"] == "never_predicted":
        count = len(warning["classes"])
        return f"{count} class{'es' if count > 1 else ''} never predicted"
    return _SHORT[warning["code"]]


def _log_text(warning: dict[str, Any]) -> str:
    return "\n".join([warning["message"], *(f"  - {a}" for a in warning["advice"])])


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
