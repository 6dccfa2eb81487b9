"""The Parquet reader (with the ``parquet`` extra: pyarrow): columns read whole, records numbered from 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from domainfit.data.data_files import unreadable_error
from domainfit.data.records import ABSENT, READERS, RawRecord, ReadOptions, missing_column_error
from domainfit.errors import DataError, MissingExtraError


@READERS.register("parquet")
def _read_parquet(path: Path, text: str | None, options: ReadOptions) -> Iterator[RawRecord]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise MissingExtraError(
            "reading Parquet files needs pyarrow, which is not installed",
            path=path,
            fix='pip install "domainfit[parquet]"',
        ) from e
    import pyarrow as pa

    try:
        table = pq.read_table(path)
    except PermissionError as e:
        raise unreadable_error(path, e) from e
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(
            f"cannot read the file as Parquet ({e})",
            path=path,
            fix="check that this is a Parquet file, or set `format` to the file's real format",
        ) from e
    names = table.column_names
    for column, required in [
        (options.text_column, True),
        (options.label_column, options.require_labels),
        (options.group_column, True),
    ]:
        if column is not None and column not in names and required:
            raise missing_column_error(column, names, path, None)
    texts = table.column(options.text_column).to_pylist()
    has_labels = options.label_column is not None and options.label_column in names
    labels = table.column(options.label_column).to_pylist() if has_labels else [ABSENT] * len(texts)
    has_groups = options.group_column is not None
    groups = table.column(options.group_column).to_pylist() if has_groups else [None] * len(texts)
    for number, (text_value, label, group) in enumerate(zip(texts, labels, groups), start=1):
        yield RawRecord(number, text_value, label, group)
