"""Reading, checking, deduplicating and splitting labelled text data.

Pure Python (no torch): ``readers`` turns a file into :class:`Example` records, ``splits`` removes
duplicates and makes a stratified train/validation/test split, ``labels`` maps labels to class ids.
"""

from domainfit.data.labels import LabelMap
from domainfit.data.readers import read_examples
from domainfit.data.records import Example
from domainfit.data.splits import DedupReport, Overlap, deduplicate, find_overlap, split_examples

__all__ = [
    "DedupReport",
    "Example",
    "LabelMap",
    "Overlap",
    "deduplicate",
    "find_overlap",
    "read_examples",
    "split_examples",
]
