"""Read multi-label examples (a text with a set of labels, possibly empty) and check their label sets.

    from domainfit.data.multilabel import read_multilabel_examples, MultiLabelSet
    train = read_multilabel_examples("notes.jsonl", label_separator=";")   # label: ["I10", "E11.9"] or "I10;E11.9"
    labels = MultiLabelSet.from_examples(train, path="notes.jsonl")

The label cell holds either a list (JSON / JSON Lines / Parquet arrays) or one string of labels joined
by a separator (CSV, TSV, ``text<sep>labels`` lines): ``"cancer;tumor"``. An empty list or an empty
string is an example with no labels, which multi-label data needs (a note with no codes). Every record
is read by :func:`domainfit.data.readers.read_examples`, so file, encoding and column errors are the
same as for single-label data; label errors name the file, line and column too.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainfit.data.labels import sort_labels
from domainfit.data.readers import read_examples
from domainfit.data.records import Example, LabelLocation, data_error_at
from domainfit.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MultiLabelExample(Example):
    """A text with a set of labels (a sorted tuple, maybe empty); otherwise an :class:`Example`.

    Being an ``Example`` whose ``label`` is a tuple, it goes through ``deduplicate``, ``split_examples``
    (unstratified) and ``find_overlap`` unchanged: two copies of a text with different label sets count
    as a conflict.
    """

    label: tuple[str, ...]


def parse_label_set(value: Any, where: LabelLocation, *, separator: str) -> tuple[str, ...]:
    """Turn one raw label cell into a sorted tuple of distinct labels.

    Args:
        value: a list of labels, or a string of labels joined by ``separator``; "" or [] mean no labels.
        where: the record's location, for errors.
        separator: the separator inside a string cell.

    Raises:
        DataError: the cell is missing (null), not a list or string, or holds an empty or non-text label.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise where.error(
            "the label cell is missing or null (expected a list of labels, or [] / an empty string for none)",
            fix='write [] (JSON) or leave the cell empty "" for an example with no labels',
        )
    if isinstance(value, str):
        parts = value.split(separator) if value.strip() else []
        if parts and any(not part.strip() for part in parts):
            raise where.error(
                f"the labels {value!r} hold an empty label between separators {separator!r}",
                fix=f"remove the doubled or trailing {separator!r}, or set multi_label.label_separator to "
                "the character that separates the labels",
            )
        items: list[Any] = parts
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":  # Parquet lists come as arrays
        items = list(value)
    else:
        raise where.error(
            f"expected a list of labels or a string of labels joined by {separator!r}, found "
            f"{type(value).__name__} {value!r}",
            fix='give the labels as a list, e.g. ["cancer", "tumor"], or a string such as "cancer;tumor"',
        )
    labels = []
    for item in items:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise where.error(
                f"each label must be a string or an integer, found {type(item).__name__} {item!r}",
                fix="give every label as a string",
            )
        label = str(item).strip()
        if not label:
            raise where.error("a label in the list is empty", fix="remove empty strings from the label list")
        labels.append(label)
    return tuple(sorted(set(labels)))


def read_multilabel_examples(
    path: str | Path,
    *,
    label_separator: str = ";",
    format: str = "auto",
    text_column: str | int = "text",
    label_column: str | int = "label",
    separator: str | None = None,
    encoding: str = "utf-8",
    header: bool = True,
    skip_empty: bool = False,
    skipped: list[int] | None = None,
) -> list[MultiLabelExample]:
    """Read every example of a file whose label cell holds a set of labels (see :func:`parse_label_set`).

    The other arguments are those of :func:`domainfit.data.readers.read_examples`.
    """
    examples = read_examples(
        path,
        format=format,
        text_column=text_column,
        label_column=label_column,
        separator=separator,
        encoding=encoding,
        header=header,
        require_labels=True,
        skip_empty=skip_empty,
        skipped=skipped,
        parse_label=lambda value, where: parse_label_set(value, where, separator=label_separator),
    )
    return [MultiLabelExample(e.text, e.label, e.line, e.unit) for e in examples]


class MultiLabelSet:
    """The ordered label set of a multi-label model, built from training data only.

    Order: as :func:`domainfit.data.labels.sort_labels` (numeric if every label is an integer, else
    alphabetical), so the same training data always gives the same output columns.

    Args:
        labels: the labels in output order, each once.
    """

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_examples(cls, examples: Sequence[MultiLabelExample], *, path: str | Path | None) -> MultiLabelSet:
        """Every label seen in ``examples``; DataError if no example has any label."""
        seen = {label for e in examples for label in e.label}
        if not seen:
            raise DataError(
                f"none of the {len(examples)} training examples has a label (every label set is empty)",
                path=path,
                fix="check `data.label_column` and `multi_label.label_separator`",
            )
        return cls(sort_labels(seen))

    def __len__(self) -> int:
        return len(self.labels)

    def multi_hot(self, example: MultiLabelExample) -> list[float]:
        """The example's labels as a 0/1 vector in label order (labels not in the set are ignored)."""
        row = [0.0] * len(self.labels)
        for label in example.label:
            if label in self.index:
                row[self.index[label]] = 1.0
        return row

    def check(
        self, examples: list[MultiLabelExample], path: str | Path | None, *, policy: str
    ) -> list[MultiLabelExample]:
        """Handle labels of validation/test examples that never appear in training.

        Args:
            examples: validation or test examples.
            path: their file, for messages.
            policy: ``"error"``: raise at the first such example; ``"drop"``: log a warning and remove
                those labels (the model cannot predict them, so they would only lower recall).

        Returns:
            The examples, with unseen labels removed under ``"drop"``.
        """
        unseen = Counter(label for e in examples for label in e.label if label not in self.index)
        if not unseen:
            return examples
        names = ", ".join(f"{label!r} ({n})" for label, n in unseen.most_common(8))
        if policy == "error":
            first = next(e for e in examples if any(label not in self.index for label in e.label))
            label = next(label for label in first.label if label not in self.index)
            raise data_error_at(
                first,
                f"label {label!r} never appears in the training data, so the model cannot learn it "
                f"({len(unseen)} unseen label(s) in this split: {names})",
                path=path,
                fix="add training examples with it, remove it, or set `multi_label.unseen_labels: drop` to "
                "ignore labels the training data lacks",
            )
        log.warning("%s: %d label(s) never seen in training are ignored: %s", path, len(unseen), names)
        return [
            MultiLabelExample(e.text, tuple(x for x in e.label if x in self.index), e.line, e.unit) for e in examples
        ]


def label_statistics(examples: Sequence[MultiLabelExample]) -> dict[str, Any]:
    """Counts for the report: examples, label cardinality, examples without labels, per-label counts."""
    counts = Counter(label for e in examples for label in e.label)
    n = len(examples)
    return {
        "examples": n,
        "mean_labels_per_example": round(sum(len(e.label) for e in examples) / max(n, 1), 4),
        "examples_without_labels": sum(1 for e in examples if not e.label),
        "label_counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
