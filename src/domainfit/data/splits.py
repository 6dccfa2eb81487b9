"""Remove duplicate texts, split examples into train/validation/test, and find texts shared by splits.

    examples, report = deduplicate(read_examples("Sentences_50Agree.txt", ...))
    splits = split_examples(examples, val_fraction=0.1, test_fraction=0.1, seed=42)

Duplicates are removed before splitting so that no text lands in two splits (a copy of a training
sentence in the test set inflates the score). The split is scikit-learn's ``train_test_split``,
stratified and seeded, applied twice: first train vs. the rest, then the rest into validation and test
(the recipe of ``shared/tools/phrasebank_split.py``; seed 42 reproduces its files exactly).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from domainfit.data.records import Example, data_error_at
from domainfit.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def normalize_text(text: str) -> str:
    """The form two texts are compared in: surrounding whitespace stripped, inner runs collapsed to
    one space. Case and punctuation are kept: "Profit rose" and "profit rose" stay distinct."""
    return " ".join(text.split())


class Conflict(NamedTuple):
    """A duplicate text whose label differs from the copy that was kept (``kept_line`` is None when the
    ``drop`` policy kept no copy)."""

    text: str
    kept_line: int | None
    kept_label: str | None
    dropped_line: int
    dropped_label: str | None


CONFLICT_POLICIES = ("first", "majority", "drop", "error")


@dataclass
class DedupReport:
    """What :func:`deduplicate` removed.

    Attributes:
        n_in: examples before.
        n_out: examples after.
        n_duplicates: examples removed (``n_in - n_out``), with every copy of a conflicting text under
            the ``drop`` policy.
        n_conflicting: removed copies whose label differed from the kept one (under ``drop``: every
            copy of a conflicting text).
        conflicts: the first few conflicting copies, with line numbers.
        path: the file, if given.
        n_conflicting_texts: distinct texts whose copies have different labels.
        policy: how a conflict was resolved (see :data:`CONFLICT_POLICIES`).
    """

    n_in: int
    n_out: int
    n_duplicates: int
    n_conflicting: int
    conflicts: list[Conflict] = field(default_factory=list)
    path: str | None = None
    n_conflicting_texts: int = 0
    policy: str = "first"

    def summary(self) -> str:
        """One line (more with conflicts) for the log."""
        where = f"{self.path}: " if self.path else ""
        text = f"{where}removed {self.n_duplicates} duplicate texts ({self.n_in} -> {self.n_out} examples)"
        if self.n_conflicting:
            kept = {
                "first": "the first label was kept",
                "majority": "the most frequent label was kept",
                "drop": "every copy of those texts was dropped",
            }[self.policy]
            text += (
                f"; {self.n_conflicting_texts} texts had copies with different labels, "
                f"{self.n_conflicting} copies in all ({kept}; data.conflicting_labels: {self.policy})"
            )
            for c in self.conflicts:
                kept_part = f"line {c.kept_line} {c.kept_label!r} kept, " if c.kept_line is not None else ""
                text += f"\n  {kept_part}line {c.dropped_line} {c.dropped_label!r} dropped: {c.text[:60]!r}"
        return text


_MAX_CONFLICTS_SHOWN = 5


def deduplicate(
    examples: Iterable[Example], *, path: str | Path | None = None, conflicting_labels: str = "first"
) -> tuple[list[Example], DedupReport]:
    """Keep one example of each normalised text (see :func:`normalize_text`).

    Args:
        examples: the examples, in file order.
        path: their file, for the report.
        conflicting_labels: what to do with a text whose copies have different labels (the annotators
            disagreed): ``"first"`` keeps the first copy; ``"majority"`` keeps the first copy of the most
            frequent label (a tie goes to the label seen first); ``"drop"`` removes every copy; ``"error"``
            raises DataError naming two lines that disagree. Copies with the same label always keep the first.

    Returns:
        The kept examples, each at the place of its text's first copy, and the report.

    Raises:
        DataError: ``conflicting_labels="error"`` and two copies of a text disagree.
        ConfigError: an unknown ``conflicting_labels``.
    """
    if conflicting_labels not in CONFLICT_POLICIES:
        raise ConfigError(
            f"unknown conflicting_labels {conflicting_labels!r}",
            key="data.conflicting_labels",
            fix=f"use one of: {', '.join(CONFLICT_POLICIES)}",
        )
    copies: dict[str, list[Example]] = {}
    n_in = 0
    for example in examples:
        n_in += 1
        copies.setdefault(normalize_text(example.text), []).append(example)
    out: list[Example] = []
    n_conflicting = n_conflicting_texts = 0
    conflicts: list[Conflict] = []
    for key, group in copies.items():
        kept = _resolve(group, conflicting_labels, path)
        if kept is not None:
            out.append(kept)
        differing = [e for e in group if e.label != kept.label] if kept is not None else group
        if kept is None or differing:
            n_conflicting_texts += 1
            n_conflicting += len(differing)
            kept_line, kept_label = (kept.line, kept.label) if kept is not None else (None, None)
            for e in differing[: _MAX_CONFLICTS_SHOWN - len(conflicts)]:
                conflicts.append(Conflict(key, kept_line, kept_label, e.line, e.label))
    report = DedupReport(
        n_in=n_in,
        n_out=len(out),
        n_duplicates=n_in - len(out),
        n_conflicting=n_conflicting,
        conflicts=conflicts,
        path=str(path) if path is not None else None,
        n_conflicting_texts=n_conflicting_texts,
        policy=conflicting_labels,
    )
    return out, report


def _resolve(group: list[Example], policy: str, path: str | Path | None) -> Example | None:
    """The copy to keep of one text's copies (file order), or None to drop them all."""
    first = group[0]
    if all(e.label == first.label for e in group) or policy == "first":
        return first
    if policy == "majority":
        counts = Counter(e.label for e in group)
        # Counter keeps first-seen order, and max() returns the first of equal counts: a tie keeps the first.
        winner = max(counts, key=counts.__getitem__)
        return next(e for e in group if e.label == winner)
    if policy == "drop":
        return None
    other = next(e for e in group if e.label != first.label)
    raise data_error_at(
        other,
        f"this text has the label {other.label!r}, but its copy on {first.where} has {first.label!r}: "
        f"{normalize_text(first.text)[:80]!r}",
        path=path,
        fix="correct the label that is wrong, or set data.conflicting_labels to first, majority or drop",
    )


def split_examples(
    examples: Sequence[Example],
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    stratify: bool = True,
    path: str | Path | None = None,
    conflicting_labels: str = "first",
) -> dict[str, list[Example]]:
    """Deduplicate, then split into ``"train"``, ``"validation"`` and ``"test"``.

    Args:
        examples: all the examples of one file.
        val_fraction: share of the (deduplicated) examples for validation, in (0, 1).
        test_fraction: share for test, in [0, 1); 0 leaves out the ``"test"`` key.
        seed: the random seed; the same seed and data always give the same split.
        stratify: keep each label's share the same in every split. Unlabelled examples (every
            label None) are split without stratification.
        path: the file, for error messages.
        conflicting_labels: what to do with a text whose copies disagree (see :func:`deduplicate`).

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``, each in the shuffled order
        ``train_test_split`` returns.

    Raises:
        DataError: a class is too rare to appear in every split, or there are too few examples.
        ConfigError: the fractions are out of range.
    """
    # scikit-learn takes about a second to import; only splitting needs it.
    from sklearn.model_selection import train_test_split

    _check_fractions(val_fraction, test_fraction)
    examples, _ = deduplicate(examples, path=path, conflicting_labels=conflicting_labels)
    labels = _stratify_labels(examples, path) if stratify else None
    if labels is not None:
        _check_class_sizes(labels, val_fraction, test_fraction, path)
    # Rounding keeps 0.1 + 0.2 from becoming 0.30000000000000004, which would move one example.
    held_out = round(val_fraction + test_fraction, 10)
    try:
        train, rest = train_test_split(examples, test_size=held_out, stratify=labels, random_state=seed)
        if test_fraction == 0:
            return {"train": train, "validation": rest}
        rest_labels = [e.label for e in rest] if labels is not None else None
        validation, test = train_test_split(
            rest, test_size=round(test_fraction / held_out, 10), stratify=rest_labels, random_state=seed
        )
    except ValueError as e:
        # scikit-learn's own checks: a class left with one example after the first cut, or fewer
        # examples in a split than there are classes.
        raise DataError(
            f"cannot split {len(examples)} examples into train/validation/test with "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}: {e}",
            path=path,
            fix=_RARE_CLASS_FIX,
        ) from e
    return {"train": train, "validation": validation, "test": test}


_RARE_CLASS_FIX = (
    "merge rare classes into a related one, add examples of them, give larger val/test fractions, "
    "or set `data.stratify: false`"
)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"expected 0 < val_fraction < 1, 0 <= test_fraction < 1 and a sum below 1, found "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}",
            fix="use fractions such as data.validation_fraction: 0.1 and data.test_fraction: 0.1",
        )


def _stratify_labels(examples: list[Example], path: str | Path | None) -> list[str] | None:
    unlabelled = [e for e in examples if e.label is None]
    if len(unlabelled) == len(examples):
        return None
    if unlabelled:
        raise data_error_at(
            unlabelled[0],
            f"cannot stratify by label: {len(unlabelled)} of {len(examples)} examples have no label",
            path=path,
            fix="fill in the missing labels, remove those rows, or set `data.stratify: false`",
        )
    return [e.label for e in examples]


def _check_class_sizes(labels: list[str], val_fraction: float, test_fraction: float, path: str | Path | None) -> None:
    """Each class needs enough examples to expect at least one in every split."""
    held_out = [f for f in (val_fraction, test_fraction) if f > 0]
    n_splits = 1 + len(held_out)
    # 1 / 0.1 is 10.000000000000002 in floating point; the rounding keeps it 10.
    needed = max(n_splits, math.ceil(round(1 / min(held_out), 6)))
    counts = Counter(labels)
    rare = sorted((count, label) for label, count in counts.items() if count < needed)
    if not rare:
        return
    count, label = rare[0]
    others = ", ".join(f"{lab!r} ({n})" for n, lab in rare[1:6])
    also = f"; also too rare: {others}" if others else ""
    raise DataError(
        f"class {label!r} has {count} example(s) after removing duplicates, too few to stratify: with "
        f"val_fraction={val_fraction} and test_fraction={test_fraction} each class needs at least "
        f"{needed} to expect one example in every split{also}",
        path=path,
        fix=_RARE_CLASS_FIX,
    )


class Overlap(NamedTuple):
    """A text found in two splits."""

    text: str
    first_split: str
    first_line: int
    second_split: str
    second_line: int

    def describe(self, paths: Mapping[str, str | Path] | None = None) -> str:
        """``'train.csv' line 3 and 'test.csv' line 9: "Profits rose"``, naming files when known."""
        paths = paths or {}
        first = paths.get(self.first_split, self.first_split)
        second = paths.get(self.second_split, self.second_split)
        return f"{str(first)!r} line {self.first_line} and {str(second)!r} line {self.second_line}: {self.text[:80]!r}"


def find_overlap(splits: Mapping[str, Sequence[Example]]) -> list[Overlap]:
    """Texts (normalised, see :func:`normalize_text`) that appear in more than one split.

    Meant for user-given train/validation/test files, where an overlap is worth a warning rather than
    an error. Repeats inside one split are not reported.

    Args:
        splits: split name -> examples, e.g. ``{"train": [...], "validation": [...]}``.

    Returns:
        One Overlap per text and later split it reappears in, pointing at the first occurrence in the
        earliest split (in the mapping's order).
    """
    first_seen: dict[str, tuple[str, int]] = {}
    overlaps: list[Overlap] = []
    for name, examples in splits.items():
        in_this_split: dict[str, int] = {}
        for example in examples:
            in_this_split.setdefault(normalize_text(example.text), example.line)
        for key, line in in_this_split.items():
            if key in first_seen:
                first_name, first_line = first_seen[key]
                overlaps.append(Overlap(key, first_name, first_line, name, line))
            else:
                first_seen[key] = (name, line)
    return overlaps


def sample_per_class(examples: Sequence[Example], k: int, *, seed: int) -> list[Example]:
    """At most ``k`` examples of every label, drawn at random with ``seed`` (the low-resource setting);
    the kept examples stay in their original order. Classes with fewer than ``k`` keep all of theirs."""
    return _draw_per_label(examples, lambda n: min(n, k), seed)


def sample_fraction(examples: Sequence[Example], fraction: float, *, seed: int) -> list[Example]:
    """``fraction`` of every label's examples (rounded, at least one), drawn at random with ``seed``: the
    low-resource setting that keeps the classes' own proportions, so a rare class stays rare. The kept examples
    stay in their original order."""
    return _draw_per_label(examples, lambda n: max(1, round(fraction * n)), seed)


def _draw_per_label(examples: Sequence[Example], count: Callable[[int], int], seed: int) -> list[Example]:
    """``count(n)`` of the ``n`` examples of every label, drawn with ``seed``, in their original order."""
    import random

    by_label: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_label.setdefault(e.label, []).append(i)
    rng = random.Random(seed)
    keep = set()
    for label in sorted(by_label, key=str):
        members = by_label[label]
        k = count(len(members))
        keep.update(members if k >= len(members) else rng.sample(members, k))
    return [e for i, e in enumerate(examples) if i in keep]


def make_splits(
    train: list[Example],
    given: dict[str, list[Example]],
    data: Any,
    info: dict[str, Any],
    *,
    stratify: bool,
    what: str = "texts",
) -> dict[str, list[Example]]:
    """The split every labelled task shares: deduplicate, split off validation/test where no file gives them,
    warn about overlap between splits, and cut ``data.max_train_samples``. Fills ``info`` (split, dedup, overlap).

    Args:
        train: examples of ``data.train``.
        given: examples of the validation/test files that exist.
        data: the run's ``DataConfig``.
        info: provenance for the report; ``info["files"]`` names the files.
        stratify: keep class proportions (single-label tasks); False splits at random (seeded).
        what: what an example is, for the overlap warning ("texts", "images").
    """
    policy = data.conflicting_labels
    if "validation" in given:
        train, report = deduplicate(train, path=data.train, conflicting_labels=policy)
        splits = {"train": train, **given}
    else:
        test_fraction = 0.0 if "test" in given else data.test_fraction
        splits = split_examples(
            train,
            val_fraction=data.validation_fraction,
            test_fraction=test_fraction,
            seed=data.split_seed,
            stratify=stratify,
            path=data.train,
            conflicting_labels=policy,
        )
        _, report = deduplicate(train, path=data.train, conflicting_labels=policy)
        splits.update(given)
        info["split"] = {
            "from": data.train,
            "validation_fraction": data.validation_fraction,
            "test_fraction": test_fraction,
            "seed": data.split_seed,
            "stratified": stratify,
        }
    if report.n_duplicates:
        # Conflicting labels are label noise the user should know of: a warning, not an info line.
        (log.warning if report.n_conflicting else log.info)("%s", report.summary())
    info["dedup"] = {
        "rows_read": report.n_in,
        "unique": report.n_out,
        "duplicates_removed": report.n_duplicates,
        "conflicting_labels": report.n_conflicting,
        "conflicting_texts": report.n_conflicting_texts,
        "conflicting_labels_policy": policy,
    }
    overlap = find_overlap(splits)
    if overlap:
        log.warning(
            "%d %s appear in more than one split, e.g. %s; scores on those splits are optimistic.",
            len(overlap),
            what,
            overlap[0].describe(info["files"]),
        )
        info["overlap_between_splits"] = len(overlap)
    if data.max_train_samples is not None:
        splits["train"] = splits["train"][: data.max_train_samples]
    return splits
