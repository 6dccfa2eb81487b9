"""Classification metrics against values worked out by hand, and best-metric selection."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from domainfit.errors import ConfigError
from domainfit.metrics.classification import (
    METRIC_NAMES,
    classification_metrics,
    improves_on_best,
    is_better,
    list_selection_metrics,
    metric_direction,
    register_selection_metric,
)

# Worked by hand for y_true=[0,0,1,1,2], y_pred=[0,1,1,1,0]:
#   class 0: predicted at 0 and 4, right once -> P 1/2; 2 true, 1 found -> R 1/2; F1 1/2
#   class 1: predicted at 1,2,3, right twice  -> P 2/3; 2 true, 2 found -> R 1;   F1 4/5
#   class 2: never predicted                   -> P 0;   1 true, 0 found -> R 0;   F1 0
Y_TRUE = [0, 0, 1, 1, 2]
Y_PRED = [0, 1, 1, 1, 0]
LABELS = ["negative", "neutral", "positive"]


def test_scores_match_hand_computed_values():
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)

    assert metrics["n"] == 5
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert metrics["recall_macro"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert metrics["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 0) / 3)  # 0.4333...
    # Weighted by support 2, 2, 1.
    assert metrics["precision_weighted"] == pytest.approx((2 * 1 / 2 + 2 * 2 / 3) / 5)
    assert metrics["recall_weighted"] == pytest.approx((2 * 1 / 2 + 2 * 1) / 5)
    assert metrics["f1_weighted"] == pytest.approx((2 * 1 / 2 + 2 * 4 / 5) / 5)  # 0.52
    # Single-label: micro-averaged P, R and F1 all equal accuracy.
    for key in ("precision_micro", "recall_micro", "f1_micro"):
        assert metrics[key] == pytest.approx(0.6)

    assert metrics["per_class"]["neutral"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert metrics["per_class"]["negative"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert metrics["labels"] == LABELS


def test_result_is_plain_json_types():
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)

    assert json.loads(json.dumps(metrics)) == metrics
    assert type(metrics["f1_macro"]) is float
    assert type(metrics["per_class"]["neutral"]["support"]) is int
    assert type(metrics["confusion_matrix"][0][0]) is int


def test_label_never_predicted_scores_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's UndefinedMetricWarning would fail the test
        metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)

    assert metrics["per_class"]["positive"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert [row[2] for row in metrics["confusion_matrix"]] == [0, 0, 0]


def test_label_absent_from_data_still_has_a_row_and_column():
    metrics = classification_metrics(Y_TRUE, Y_PRED, [*LABELS, "mixed"])

    assert metrics["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert metrics["per_class"]["mixed"]["support"] == 0
    # Macro averages over every label, so the absent one pulls it down.
    assert metrics["f1_macro"] == pytest.approx((1 / 2 + 4 / 5) / 4)


def test_accepts_numpy_ints():
    np = pytest.importorskip("numpy")

    metrics = classification_metrics(np.array(Y_TRUE), np.array(Y_PRED), LABELS)

    assert metrics["accuracy"] == pytest.approx(0.6)
    assert json.dumps(metrics)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "labels", "message"),
    [
        ([0, 1], [0], LABELS, "y_true has 2 items but y_pred has 1"),
        ([0, 3], [0, 1], LABELS, r"y_true holds class ids \[3\] outside 0..2"),
        ([0, 1], [0, -1], LABELS, r"y_pred holds class ids \[-1\]"),
        ([], [], LABELS, "empty"),
        ([0], [0], ["a", "a"], "repeated"),
    ],
)
def test_bad_inputs_are_rejected(y_true, y_pred, labels, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred, labels)


def test_metric_names_are_the_scalar_keys_plus_loss():
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    scalar_keys = {key for key, value in metrics.items() if isinstance(value, float)}

    assert set(METRIC_NAMES) == scalar_keys | {"loss"}
    assert set(METRIC_NAMES) <= set(list_selection_metrics())


def test_metric_direction():
    assert metric_direction("f1_macro") == "max"
    assert metric_direction("accuracy") == "max"
    assert metric_direction("loss") == "min"


def test_unknown_metric_names_the_key_and_the_near_miss():
    with pytest.raises(ConfigError) as raised:
        metric_direction("f1_makro", key="train.best_metric")

    message = str(raised.value)
    assert "train.best_metric" in message
    assert "Did you mean 'f1_macro'?" in message
    assert "accuracy" in message  # the valid names are listed


def test_is_better_follows_the_direction():
    assert is_better("f1_macro", 0.8, 0.7)
    assert not is_better("f1_macro", 0.7, 0.8)
    assert is_better("loss", 0.3, 0.5)
    assert not is_better("loss", 0.5, 0.3)


def test_is_better_edge_cases():
    assert is_better("loss", 9.0, None)  # first evaluation always wins
    assert not is_better("f1_macro", 0.8, 0.8)  # ties keep the earlier checkpoint
    assert not is_better("loss", math.nan, 0.5)  # a diverged run is never best
    assert is_better("loss", 0.5, math.nan)


def test_registered_selection_metric_is_accepted():
    register_selection_metric("test_metrics_entity_f1", "max")

    assert metric_direction("test_metrics_entity_f1") == "max"
    assert "test_metrics_entity_f1" in list_selection_metrics()
    with pytest.raises(ValueError, match="'max' or 'min'"):
        register_selection_metric("test_metrics_bad", "up")


def test_a_tie_on_the_selection_metric_goes_to_the_lower_validation_loss():
    # NEU defects: epochs 4, 8, 9 and 10 all reached validation accuracy 0.9963; the last had the lowest loss
    assert improves_on_best("accuracy", 0.99, 0.5, None, None)  # the first evaluation is always kept
    assert improves_on_best("accuracy", 0.9963, 0.0085, 0.9963, 0.0238)
    assert not improves_on_best("accuracy", 0.9963, 0.03, 0.9963, 0.0238)
    assert not improves_on_best("accuracy", 0.98, 0.0001, 0.9963, 0.0238)  # the metric comes first
    assert improves_on_best("accuracy", 0.9970, 0.9, 0.9963, 0.0238)
    assert not improves_on_best("accuracy", 0.9963, math.nan, 0.9963, 0.0238)
    assert improves_on_best("loss", 0.2, 0.2, 0.3, 0.3)  # minimised metrics too


@pytest.mark.parametrize("seed", range(5))
def test_every_number_matches_scikit_learn(seed):
    """The metrics are counted with numpy (scikit-learn costs a training process 150 MB); sklearn is the oracle."""
    import random

    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = random.Random(seed)
    k = rng.randint(2, 7)
    labels = [f"c{i}" for i in range(k)]
    n = rng.randint(1, 60)
    y_true = [rng.randrange(k - 1) for _ in range(n)]  # the last class never occurs in the gold labels
    y_pred = [rng.randrange(k) if rng.random() < 0.5 else y for y in y_true]
    ours = classification_metrics(y_true, y_pred, labels)
    ids = list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for average in ("macro", "micro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average, zero_division=0)
            assert (ours[f"precision_{average}"], ours[f"recall_{average}"], ours[f"f1_{average}"]) == pytest.approx(
                (p, r, f)
            )
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    for i, label in enumerate(labels):
        assert ours["per_class"][label] == pytest.approx(
            {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]}
        )
    assert ours["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=ids).tolist()
    assert ours["accuracy"] == pytest.approx(sum(t == q for t, q in zip(y_true, y_pred)) / n)
