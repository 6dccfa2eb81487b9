"""The ``text<separator>label`` reader: one record a line, split on the last separator (Financial
PhraseBank's ``sentence@label``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from domainfit.data.data_files import numbered_lines
from domainfit.data.records import ABSENT, READERS, RawRecord, ReadOptions
from domainfit.errors import DataError


@READERS.register("delimited")
def _read_delimited(path: Path, text: str | None, options: ReadOptions) -> Iterator[RawRecord]:
    separator = options.separator
    if not separator:
        raise DataError(
            "`format: delimited` needs a separator (each line is `text<separator>label`)",
            path=path,
            fix="set `separator`, e.g. '@' for Financial PhraseBank",
        )
    for number, line in numbered_lines(text):
        if not line.strip():
            continue
        if separator not in line:
            if options.require_labels:
                raise DataError(
                    f"expected `text{separator}label` but the line has no {separator!r}: {line[:80]!r}",
                    path=path,
                    line=number,
                    fix=f"add `{separator}label` to the end of the line, or check `separator`",
                )
            yield RawRecord(number, line, ABSENT)
            continue
        text_part, label_part = line.rsplit(separator, 1)
        yield RawRecord(number, text_part, label_part)
