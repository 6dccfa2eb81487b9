"""Map label strings to contiguous class ids and back, and check evaluation labels against training.

label_map = LabelMap.from_examples(train)      # training labels only
label_map.check(validation, "val.csv")         # a label never seen in training is an error
model_config.update(label_map.to_dict())       # {"id2label": ..., "label2id": ...}
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from domainfit.data.records import Example, data_error_at
from domainfit.errors import DataError

_INTEGER = re.compile(r"[+-]?\d+")


class LabelMap:
    """A fixed, ordered list of class labels; a label's id is its position.

    Order: if every label is an integer string, numeric order ("2" before "10"); otherwise
    alphabetical. The order depends only on the set of labels, so the same data always gives the
    same ids.

    Args:
        labels: the labels in id order, each once.
    """

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels: list[str] = list(labels)
        self._ids = {label: i for i, label in enumerate(self.labels)}
        if len(self._ids) != len(self.labels):
            duplicates = sorted({label for label in self.labels if self.labels.count(label) > 1})
            raise DataError(
                f"each label must appear once in the label list, found duplicates: {', '.join(duplicates)}",
                fix="list every label exactly once",
            )

    @classmethod
    def from_examples(cls, examples: Iterable[Example], *, path: str | Path | None = None) -> LabelMap:
        """Build the map from the labels of the training examples.

        Args:
            examples: the training examples (never validation or test: ids must not depend on them).
            path: the training file, for error messages.

        Raises:
            DataError: an example has no label, or there are fewer than two distinct labels.
        """
        seen: set[str] = set()
        for example in examples:
            if example.label is None:
                raise data_error_at(
                    example,
                    "the example has no label (a classifier needs a label on every training example)",
                    path=path,
                    fix="fill in the label or remove this row",
                )
            seen.add(example.label)
        if len(seen) < 2:
            found = f"only {next(iter(seen))!r}" if seen else "none"
            raise DataError(
                f"expected at least two distinct labels in the training data, found {found}",
                path=path,
                fix="check `label_column` and that the training file holds examples of every class",
            )
        return cls(sort_labels(seen))

    @classmethod
    def from_id2label(cls, id2label: Mapping[int | str, str]) -> LabelMap:
        """Rebuild the map from a saved ``id2label`` (keys may be ints or, after JSON, strings)."""
        try:
            by_id = {int(i): str(label) for i, label in id2label.items()}
        except ValueError as e:
            raise DataError(
                f"id2label keys must be class ids 0..n-1, found {sorted(map(str, id2label))}",
                fix="give id2label as {0: 'first label', 1: 'second label', ...}",
            ) from e
        if sorted(by_id) != list(range(len(by_id))):
            raise DataError(
                f"id2label keys must be the ids 0..{len(by_id) - 1} with none missing, found {sorted(by_id)}",
                fix="give id2label as {0: 'first label', 1: 'second label', ...}",
            )
        return cls(by_id[i] for i in range(len(by_id)))

    def id(self, label: str) -> int:
        """The class id of ``label``; DataError (listing the known labels) if it is unknown."""
        try:
            return self._ids[label]
        except KeyError:
            raise DataError(
                f"unknown label {label!r}{self._near_miss(label)} (known labels: {', '.join(self.labels)})",
                fix="use one of the known labels",
            ) from None

    def name(self, i: int) -> str:
        """The label with class id ``i``."""
        return self.labels[i]

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self.labels == other.labels

    def __repr__(self) -> str:
        return f"LabelMap({self.labels!r})"

    def check(self, examples: Iterable[Example], path: str | Path | None) -> None:
        """Raise DataError at the first example whose label never appears in training.

        Examples without a label (an unlabelled test file) are skipped.

        Args:
            examples: validation or test examples.
            path: their file, for the message.
        """
        examples = list(examples)
        unseen = [e for e in examples if e.label is not None and e.label not in self._ids]
        if not unseen:
            return
        first = unseen[0]
        others = sorted({e.label for e in unseen} - {first.label})
        more = f"; {len(unseen)} records in all have unseen labels" if len(unseen) > 1 else ""
        if others:
            more += f" (also: {', '.join(map(repr, others[:5]))})"
        raise data_error_at(
            first,
            f"label {first.label!r} never appears in the training data{self._near_miss(first.label)} "
            f"(training labels: {', '.join(self.labels)}){more}",
            path=path,
            fix="correct the label, add training examples of this class, or remove these rows",
        )

    def to_dict(self) -> dict[str, dict]:
        """``{"id2label": {0: label, ...}, "label2id": {label: 0, ...}}``, as transformers configs hold them."""
        return {
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: i for i, label in enumerate(self.labels)},
        }

    def _near_miss(self, label: str) -> str:
        near = difflib.get_close_matches(label, self.labels, n=1)
        if not near:
            lowered = {known.lower(): known for known in self.labels}
            near = [lowered[label.lower()]] if label.lower() in lowered else []
        return f" (did you mean {near[0]!r}?)" if near else ""


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Numeric order if every label is an integer string ("2" before "10"), else alphabetical."""
    labels = set(labels)
    if labels and all(_INTEGER.fullmatch(label) for label in labels):
        # The tie-break on the string keeps "01" and "1" (both 1) in a fixed order.
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)
