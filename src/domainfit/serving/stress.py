"""Invariance stress test of a trained text classifier: does its answer survive changes that keep the label?

    domainfit stress runs/x/model test.csv --output stress-test      # stress.json + stress.md

Every perturbation of :mod:`domainfit.data.perturb` (typos, casing, punctuation, whitespace, number formats,
Chinese script, character width, homophones) is applied to every labelled text; only the texts it changed are
predicted again. Per perturbation the result counts the texts changed, the label flips among them (split into
right -> wrong, wrong -> right and wrong -> another wrong), the flip rate, and the accuracy on the whole file
before and after: exactly ``accuracy_after = accuracy_before - (right_to_wrong - wrong_to_right) / n``.
This is CheckList's invariance (INV) test (Ribeiro et al. 2020, "Beyond Accuracy: Behavioral Testing of NLP
Models with CheckList").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from domainfit.data.perturb import PERTURBATIONS, perturb_texts, text_script
from domainfit.errors import ConfigError, DataError, MissingExtraError

# flips shown per perturbation, most confident new answer first
MAX_EXAMPLES = 5
# characters of a text kept in an example (the JSON and the report stay readable for long documents)
_EXAMPLE_CHARS = 300
STRESS_NAME = "stress.json"
STRESS_REPORT_NAME = "stress.md"


def check_perturbations(names: Sequence[str] | None) -> None:
    """Refuse unknown names, and names whose extra is missing; run before anything is read or loaded.

    Args:
        names: names the user asked for; ``None`` (the default set) passes.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones), or an empty list.
        MissingExtraError: a name whose extra is not installed.
    """
    if names is None:
        return
    if not names:
        raise ConfigError(
            "no perturbation named",
            key="--perturbations",
            fix=f"name one or more of: {', '.join(PERTURBATIONS.names())} (comma-separated).",
        )
    for name in names:
        perturbation = PERTURBATIONS.get(name, key="--perturbations")
        if not perturbation.available():
            raise MissingExtraError(
                f"the perturbation {name!r} needs {perturbation.module}, which is not installed",
                key="--perturbations",
                fix=f'pip install "domainfit[{perturbation.extra}]", or leave {name!r} out.',
            )


def select_perturbations(names: Sequence[str] | None, texts: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The perturbations to run on ``texts``, and those left out with the reason.

    Args:
        names: the names asked for (all run), or ``None``: every registered perturbation meant for the texts'
            script (:func:`domainfit.data.perturb.text_script`) whose extra is installed.
        texts: the texts to perturb.

    Returns:
        ``(names to run, {left-out name: why})``.
    """
    if names is not None:
        return list(dict.fromkeys(names)), {}
    script = text_script(texts)
    run, skipped = [], {}
    for name in PERTURBATIONS.names():
        perturbation = PERTURBATIONS.get(name)
        if perturbation.script not in ("any", script):
            skipped[name] = f"meant for {perturbation.script} text, and this data is {script}"
        elif not perturbation.available():
            skipped[name] = f'needs {perturbation.module}: pip install "domainfit[{perturbation.extra}]"'
        else:
            run.append(name)
    return run, skipped


def stress_test(
    predictor: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    perturbations: Sequence[str],
    seed: int = 0,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Run each perturbation on the texts and compare the predictor's answers before and after.

    Args:
        predictor: a loaded single-label classifier (``domainfit.load``): ``labels`` and ``predict_proba``.
        texts: the original texts.
        labels: their gold labels, each one of ``predictor.labels``.
        perturbations: names in :data:`domainfit.data.perturb.PERTURBATIONS` (:func:`check_perturbations`).
        seed: seeds every perturbation (the same seed gives the same perturbed texts).
        batch_size: texts per forward pass (default: the backend's best).

    Returns:
        ``{"n", "seed", "accuracy", "perturbations": {name: scores}}``, scores as the module docstring says.
    """
    index = {label: i for i, label in enumerate(predictor.labels)}
    gold = np.array([index[label] for label in labels])  # (n,)
    probs = predictor.predict_proba(list(texts), batch_size=batch_size)  # (n, k)
    predicted = probs.argmax(1)
    n = len(texts)
    correct = predicted == gold
    result: dict[str, Any] = {
        "n": n,
        "seed": seed,
        "accuracy": _rate(int(correct.sum()), n),
        "perturbations": {},
    }
    for name in perturbations:
        perturbed = perturb_texts(name, texts, seed=seed)
        # a text left empty (punctuation only) has nothing to classify: it counts as unchanged
        changed = [i for i, (old, new) in enumerate(zip(texts, perturbed)) if new != old and new.strip()]
        new_probs = (
            predictor.predict_proba([perturbed[i] for i in changed], batch_size=batch_size)
            if changed
            else np.zeros((0, len(predictor.labels)), dtype=np.float32)
        )
        new_predicted = new_probs.argmax(1) if changed else np.zeros(0, dtype=np.int64)
        rows = np.array(changed, dtype=np.int64)
        flipped = new_predicted != predicted[rows]  # (changed,)
        was_right, now_right = correct[rows], new_predicted == gold[rows]
        right_to_wrong = int((flipped & was_right).sum())
        wrong_to_right = int((flipped & now_right).sum())
        flips = int(flipped.sum())
        after = int(correct.sum()) - right_to_wrong + wrong_to_right
        examples = sorted(np.flatnonzero(flipped).tolist(), key=lambda j: -float(new_probs[j].max()))
        result["perturbations"][name] = {
            "about": PERTURBATIONS.get(name).about,
            "changed": len(changed),
            "changed_share": _rate(len(changed), n),
            "flips": flips,
            "flip_rate": _rate(flips, len(changed)) if changed else None,
            "right_to_wrong": right_to_wrong,
            "wrong_to_right": wrong_to_right,
            "wrong_to_wrong": flips - right_to_wrong - wrong_to_right,
            "correct_before": int(correct.sum()),
            "correct_after": after,
            "accuracy_before": result["accuracy"],
            "accuracy_after": _rate(after, n),
            "accuracy_drop": _rate(int(correct.sum()) - after, n),
            "examples": [
                _example(changed[j], texts, perturbed, labels, predictor.labels, probs, new_probs[j])
                for j in examples[:MAX_EXAMPLES]
            ],
        }
    return result


def check_labels(
    labels: Sequence[str], known: Sequence[str], lines: Sequence[int | None], *, path: Any, column: Any
) -> None:
    """Refuse a gold label the model does not know, naming the file, line and column."""
    names = set(known)
    for label, line in zip(labels, lines):
        if label not in names:
            raise DataError(
                f"label {label!r} is not one the model knows ({', '.join(known)})",
                path=path,
                line=line,
                column=column,
                fix="stress-test on data labelled with the model's label set.",
            )


def _example(
    i: int,
    texts: Sequence[str],
    perturbed: Sequence[str],
    labels: Sequence[str],
    names: list[str],
    probs: np.ndarray,
    new_row: np.ndarray,
) -> dict[str, Any]:
    before, after = int(probs[i].argmax()), int(new_row.argmax())
    return {
        "index": i,
        "label": labels[i],
        "text": texts[i][:_EXAMPLE_CHARS],
        "perturbed": perturbed[i][:_EXAMPLE_CHARS],
        "before": {"label": names[before], "probability": round(float(probs[i][before]), 4)},
        "after": {"label": names[after], "probability": round(float(new_row[after]), 4)},
    }


def _rate(count: int, total: int) -> float:
    return round(count / total, 6) if total else 0.0
