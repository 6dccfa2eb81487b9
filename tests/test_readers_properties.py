"""Property-based tests for domainfit.data.readers: whatever the bytes, the reader returns examples or raises
one DomainfitError (never another exception, never a hang).

    pytest tests/test_readers_properties.py

Hypothesis generates random bytes, near-valid tables and JSON, and random column names; each test keeps to
~150 examples so the file runs in seconds.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domainfit.data.readers import read_examples
from domainfit.data.records import Example
from domainfit.errors import DomainfitError

# No example database: the runs stay independent and nothing is written into the checkout.
SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Column names as a user might type them (or mistype them): any text, numbers among them.
columns = st.one_of(st.text(max_size=8), st.integers(min_value=-2, max_value=4), st.sampled_from(["text", "label"]))
encodings = st.sampled_from(["utf-8", "latin-1", "cp1252", "gb18030", "utf-16"])
suffixes = st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt"])
# Bytes with the characters that matter to the formats over-represented.
structural = st.sampled_from(
    [
        b",",
        b"\t",
        b"\n",
        b"\r",
        b'"',
        b"@",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b"\\",
        b"\x00",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\xc3\xa9",
        b"\xe9",
        b"text",
        b"label",
        b" ",
    ]
)
messy_bytes = st.one_of(
    st.binary(max_size=200), st.lists(st.one_of(structural, st.binary(max_size=4)), max_size=60).map(b"".join)
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


def read_or_error(path: Path, **kwargs) -> list[Example] | DomainfitError:
    """The examples, or the DomainfitError; any other exception fails the test."""
    try:
        examples = read_examples(path, **kwargs)
    except DomainfitError as e:
        assert str(e).strip(), "an error must say something"
        return e
    assert examples, "a successful read returns at least one example"
    for e in examples:
        assert isinstance(e, Example) and isinstance(e.text, str) and e.text and e.text == e.text.strip()
        assert e.label is None or (isinstance(e.label, str) and e.label == e.label.strip())
        assert isinstance(e.line, int) and e.line >= 1
    return examples


@SETTINGS
@given(
    data=messy_bytes,
    suffix=suffixes,
    text_column=columns,
    label_column=st.one_of(st.none(), columns),
    header=st.booleans(),
    encoding=encodings,
    skip_empty=st.booleans(),
)
def test_random_bytes_give_examples_or_a_domainfit_error(
    folder, data, suffix, text_column, label_column, header, encoding, skip_empty
):
    path = folder / f"data{suffix}"
    path.write_bytes(data)
    fmt = "delimited" if suffix == ".txt" else "auto"
    read_or_error(
        path,
        format=fmt,
        separator="@" if fmt == "delimited" else None,
        text_column=text_column,
        label_column=label_column,
        header=header,
        encoding=encoding,
        require_labels=label_column is not None,
        skip_empty=skip_empty,
    )


@SETTINGS
@given(
    data=messy_bytes,
    fmt=st.sampled_from(["csv", "tsv", "delimited"]),
    separator=st.one_of(st.none(), st.text(min_size=1, max_size=2)),
    header=st.booleans(),
)
def test_random_separators_give_examples_or_a_domainfit_error(folder, data, fmt, separator, header):
    path = folder / "data.sep"
    path.write_bytes(data)
    read_or_error(
        path,
        format=fmt,
        separator=separator,
        header=header,
        text_column="text" if header else 0,
        label_column="label" if header else 1,
    )


cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
# Now and then a field longer than csv's default limit of 131,072 characters (a long clinical note).
table_cells = st.one_of(cells, st.sampled_from([131_072, 131_073, 140_000]).map(lambda n: "x" * n))


@SETTINGS
@given(
    names=st.lists(cells, min_size=1, max_size=4),
    rows=st.lists(st.lists(table_cells, max_size=5), max_size=6),
    delimiter=st.sampled_from([",", "\t", ";"]),
    text_column=columns,
    label_column=columns,
    header=st.booleans(),
)
def test_random_tables_give_examples_or_a_domainfit_error(
    folder, names, rows, delimiter, text_column, label_column, header
):
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(names)
    writer.writerows(rows)
    path = folder / "table.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    result = read_or_error(path, separator=delimiter, text_column=text_column, label_column=label_column, header=header)
    if not isinstance(result, DomainfitError) and header and isinstance(text_column, str):
        assert text_column in [n.strip() for n in names]


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), cells)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(cells, inner, max_size=3)),
    max_leaves=12,
)
keys = st.sampled_from(["text", "label", "Text", "0", ""])
records = st.one_of(
    st.fixed_dictionaries({"text": json_values, "label": json_values}), st.dictionaries(keys, json_values), json_values
)
# Raw JSON text that json.dumps would not write: nesting up to far past the recursion limit, huge integers.
raw_labels = st.one_of(
    st.sampled_from([1, 500, 2000, 200_000]).map(lambda d: "[" * d + "]" * d),
    st.sampled_from([1, 4300, 4301]).map(lambda n: "9" * n),
)
RAW_RECORD = '{{"text": "t", "label": {}}}'


@SETTINGS
@given(
    items=st.lists(st.one_of(records.map(json.dumps), raw_labels.map(RAW_RECORD.format)), max_size=5),
    as_array=st.booleans(),
    text_column=columns,
    label_column=columns,
    require_labels=st.booleans(),
)
def test_random_json_records_give_examples_or_a_domainfit_error(
    folder, items, as_array, text_column, label_column, require_labels
):
    if as_array:
        path = folder / "records.json"
        path.write_text("[" + ",\n".join(items) + "]", encoding="utf-8")
    else:
        path = folder / "records.jsonl"
        path.write_text("".join(item + "\n" for item in items), encoding="utf-8")
    read_or_error(path, text_column=text_column, label_column=label_column, require_labels=require_labels)


@SETTINGS
@given(
    texts=st.lists(table_cells.filter(lambda t: t.strip() and "\x00" not in t), min_size=1, max_size=5),
    labels=st.lists(st.sampled_from(["a", "b", "c"]), min_size=5, max_size=5),
)
def test_well_formed_csv_round_trips(folder, texts, labels):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(zip(texts, labels))
    path = folder / "round_trip.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    result = read_or_error(path)
    assert not isinstance(result, DomainfitError), str(result)
    assert [(e.text, e.label) for e in result] == [(t.strip(), label) for t, label in zip(texts, labels)]
