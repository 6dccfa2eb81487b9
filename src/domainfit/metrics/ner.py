"""Entity-level metrics for token classification (seqeval, strict IOB2), shaped like the classification ones.

    from domainfit.metrics.ner import entity_metrics
    entity_metrics([["B-Disease", "I-Disease", "O"]], [["B-Disease", "O", "O"]], ["Disease"])

An entity counts as found only if its type and both edges match exactly (the CoNLL-2003 rule; seqeval's
``mode="strict", scheme=IOB2``). The built-in metric names keep their meaning one level up, so a config's
``train.best_metric`` works unchanged: ``f1_micro`` is the usual entity F1 over all mentions, ``f1_macro`` the
mean over entity types, ``f1_weighted`` weights types by gold mentions, ``accuracy`` is token (word) accuracy,
``per_class`` holds each entity type. ``entity_f1``/``entity_precision``/``entity_recall`` (= the micro ones)
and ``token_accuracy`` are registered as selection metrics under their plain names too. Given character spans
(span data), entities are scored on them: an entity counts as found only if its character edges match, so one
widened to whole tokens is an error.
"""

from __future__ import annotations

from collections.abc import Sequence

from domainfit.data.ner_readers import tags_to_entities
from domainfit.metrics.classification import register_selection_metric

Entity = tuple[str, int, int]  # (label, start, end): a character span, end exclusive
ENTITY_METRICS = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy")
for _name in ENTITY_METRICS:
    register_selection_metric(_name, "max")


def entity_metrics(
    true_tags: Sequence[Sequence[str]],
    pred_tags: Sequence[Sequence[str]],
    entity_types: Sequence[str],
    *,
    true_spans: Sequence[Sequence[Entity]] | None = None,
    pred_spans: Sequence[Sequence[Entity]] | None = None,
) -> dict:
    """Score predicted IOB2 tag sequences against gold ones, per entity and per word.

    Args:
        true_tags: gold tags, one list per sentence.
        pred_tags: predicted tags, same shapes.
        entity_types: every type the model knows (types absent from this split get zeros).
        true_spans: gold entities ``(label, start, end)`` as character spans, one list per sentence; with
            ``pred_spans``, entities are scored on exact character edges and the tags give only the token
            accuracy. Span data needs this: its gold tags are already widened to whole tokens, so scoring
            tags against tags would hide every widened entity.
        pred_spans: predicted entities as character spans, same sentences.

    Returns:
        A JSON-serialisable dict: ``n`` (sentences), ``words``, ``accuracy``/``token_accuracy``,
        ``{precision,recall,f1}_{micro,macro,weighted}``, ``entity_{precision,recall,f1}``, ``per_class``
        ({type: {precision, recall, f1, support, predicted}}), ``gold_entities``, ``predicted_entities``,
        ``labels`` (the entity types).
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    if len(true_tags) != len(pred_tags) or any(len(t) != len(p) for t, p in zip(true_tags, pred_tags)):
        raise ValueError("true_tags and pred_tags must have the same sentences and lengths")
    words = sum(len(t) for t in true_tags)
    correct = sum(a == b for t, p in zip(true_tags, pred_tags) for a, b in zip(t, p))
    if true_spans is not None and pred_spans is not None:
        if len(true_spans) != len(true_tags) or len(pred_spans) != len(true_tags):
            raise ValueError("true_spans and pred_spans must have one list per sentence")
        # one tag per character: seqeval's strict IOB2 on these compares exact character edges
        pairs = [_character_tags(t, p) for t, p in zip(true_spans, pred_spans)]
        true_tags, pred_tags = [t for t, _ in pairs], [p for _, p in pairs]
    gold = [set(tags_to_entities(list(t))) for t in true_tags]
    predicted = [set(tags_to_entities(list(p))) for p in pred_tags]
    result: dict = {"n": len(true_tags), "words": words, "accuracy": correct / words if words else 0.0}
    result["token_accuracy"] = result["accuracy"]
    report = (
        classification_report(
            [list(t) for t in true_tags],
            [list(p) for p in pred_tags],
            mode="strict",
            scheme=IOB2,
            output_dict=True,
            zero_division=0,
        )
        if any(true_tags)
        else {}
    )
    per_class = {}
    for entity_type in entity_types:
        scores = report.get(entity_type, {})
        per_class[entity_type] = {
            "precision": float(scores.get("precision", 0.0)),
            "recall": float(scores.get("recall", 0.0)),
            "f1": float(scores.get("f1-score", 0.0)),
            "support": int(scores.get("support", 0)),
            "predicted": sum(1 for s in predicted for e in s if e[0] == entity_type),
        }
    n_gold = sum(len(s) for s in gold)
    n_pred = sum(len(s) for s in predicted)
    n_hit = sum(len(g & p) for g, p in zip(gold, predicted))
    precision = n_hit / n_pred if n_pred else 0.0
    recall = n_hit / n_gold if n_gold else 0.0
    result.update(
        precision_micro=precision,
        recall_micro=recall,
        f1_micro=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    )
    for score in ("precision", "recall", "f1"):
        values = [per_class[t][score] for t in entity_types]
        supports = [per_class[t]["support"] for t in entity_types]
        result[f"{score}_macro"] = sum(values) / len(values) if values else 0.0
        result[f"{score}_weighted"] = (
            sum(v * s for v, s in zip(values, supports)) / sum(supports) if sum(supports) else 0.0
        )
        result[f"entity_{score}"] = result[f"{score}_micro"]
    result.update(gold_entities=n_gold, predicted_entities=n_pred, per_class=per_class, labels=list(entity_types))
    return result


def _character_tags(true: Sequence[Entity], pred: Sequence[Entity]) -> tuple[list[str], list[str]]:
    """IOB2 tags per character for gold and predicted character spans (same length: the last end)."""
    length = max((end for _, _, end in (*true, *pred)), default=0)
    out = []
    for spans in (true, pred):
        tags = ["O"] * length
        for label, start, end in spans:
            tags[start] = f"B-{label}"
            tags[start + 1 : end] = [f"I-{label}"] * (end - start - 1)
        out.append(tags)
    return out[0], out[1]
